import Foundation
import Mesh

/// Reads an MCAP file front to back, message by message, checking what it can as it goes.
///
/// It reads files from any writer that leaves chunks uncompressed: messages inside chunks or
/// loose in the data section, records it does not know skipped (as the specification asks). Each
/// chunk's CRC is checked before its messages are handed out, the data section's CRC at the Data
/// End record, and the summary (CRC, statistics against what was read) at the end.
///
/// A file that stops in the middle of a record, as one from a killed recorder does, is not an
/// error: reading ends there, ``cutShortAt`` says where, and everything before it was returned.
/// Damage it can see (a wrong CRC, a field that runs past its record, a bad magic) throws
/// ``MCAP/ReadError`` with the offset.
///
/// The bytes are usually a memory-mapped file (``init(path:)``), so a large recording costs
/// address space, not memory.
package struct MCAPReader {
    /// Where the reader is.
    private enum Position {
        /// Between records of the data section, at this offset.
        case top(Int)
        /// Inside the chunk whose records span `records`, at `offset`; then at `next` on top.
        case chunk(offset: Int, records: Range<Int>, next: Int)
        /// At the end: nothing more to read.
        case end
    }

    package let data: Data
    package private(set) var profile = ""
    package private(set) var library = ""
    package private(set) var schemas: [UInt16: MCAP.Schema] = [:]
    package private(set) var channels: [UInt16: MCAP.Channel] = [:]
    /// What was read so far: messages per channel, time range, chunks.
    package private(set) var statistics = MCAP.Statistics()
    /// The statistics the file's summary states, once the end was reached and it had one.
    package private(set) var summaryStatistics: MCAP.Statistics?
    /// True once the whole file was read and it ended properly: Data End, footer, magic.
    package private(set) var endedCleanly = false
    /// Where the file stops in the middle of a record (or before its Data End), when it does.
    package private(set) var cutShortAt: Int?
    /// Why reading stopped early, for the message that reports ``cutShortAt``.
    package private(set) var cutShortReason: String?
    private var position: Position

    /// Reads `data` (the whole file).
    ///
    /// - Throws: ``MCAP/ReadError/notMCAP(offset:reason:)`` unless it starts with the magic and a Header record.
    package init(data: Data) throws(MCAP.ReadError) {
        self.data = data.startIndex == 0 ? data : Data(data)
        position = .top(0)
        guard data.count >= MCAP.magic.count else {
            throw .notMCAP(offset: 0, reason: "\(data.count) bytes, shorter than the 8-byte MCAP magic")
        }
        guard self.data.prefix(MCAP.magic.count).elementsEqual(MCAP.magic) else {
            throw .notMCAP(offset: 0, reason: "the file does not start with the MCAP magic bytes")
        }
        let headerAt = MCAP.magic.count
        guard let header = try record(at: headerAt, in: headerAt..<self.data.count) else {
            throw .notMCAP(offset: headerAt, reason: "the file ends inside its header")
        }
        guard header.opcode == MCAP.Opcode.header.rawValue else {
            throw .corrupt(offset: headerAt, reason: "the first record has opcode 0x\(String(header.opcode, radix: 16)), not a Header")
        }
        var fields = Fields(data: self.data, range: header.content, recordOffset: headerAt)
        profile = try fields.string()
        library = try fields.string()
        position = .top(header.end)
    }

    /// Maps the file at `path` and reads it.
    ///
    /// - Throws: ``MCAP/ReadError`` for what is in it; the file system's error when it cannot be opened.
    package init(path: String) throws {
        let url = URL(fileURLWithPath: path)
        try self.init(data: try Data(contentsOf: url, options: .alwaysMapped))
    }

    /// The next message in file order, or `nil` at the end (see ``endedCleanly`` and ``cutShortAt``).
    ///
    /// - Throws: ``MCAP/ReadError`` for damage; reading cannot go on after that.
    package mutating func next() throws(MCAP.ReadError) -> MCAP.Message? {
        while true {
            switch position {
            case .end:
                return nil
            case .chunk(let offset, let records, let next):
                guard offset < records.upperBound else {
                    position = .top(next)
                    continue
                }
                guard let record = try record(at: offset, in: records) else {
                    throw .corrupt(offset: offset, reason: "a record runs past the end of its chunk")
                }
                position = .chunk(offset: record.end, records: records, next: next)
                if let message = try take(record, at: offset) { return message }
            case .top(let offset):
                guard let record = try record(at: offset, in: offset..<data.count) else {
                    stopShort(at: offset, reason: offset == data.count ? "the file ends before its Data End record" : "the file ends inside a record")
                    return nil
                }
                position = .top(record.end)
                switch MCAP.Opcode(rawValue: record.opcode) {
                case .chunk:
                    try enterChunk(record, at: offset)
                case .dataEnd:
                    try finish(dataEnd: record, at: offset)
                    position = .end
                case .footer:
                    throw .corrupt(offset: offset, reason: "a Footer record before the Data End record")
                default:
                    if let message = try take(record, at: offset) { return message }
                }
            }
        }
    }

    /// Reads to the end, discarding the messages; returns how many there were.
    package mutating func readToEnd() throws(MCAP.ReadError) -> Int {
        var count = 0
        while try next() != nil { count += 1 }
        return count
    }

    // MARK: Records

    /// One record's opcode and where its content and the whole record end.
    private struct Record {
        var opcode: UInt8
        var content: Range<Int>
        var end: Int { content.upperBound }
    }

    /// The record at `offset`, or `nil` when `range` ends before the record does.
    private func record(at offset: Int, in range: Range<Int>) throws(MCAP.ReadError) -> Record? {
        guard range.upperBound - offset >= 9 else { return nil }
        let opcode = data[offset]
        let length = data.littleEndian(UInt64.self, at: offset + 1)
        guard length <= UInt64(range.upperBound - offset - 9) else { return nil }
        return Record(opcode: opcode, content: (offset + 9)..<(offset + 9 + Int(length)))
    }

    private mutating func stopShort(at offset: Int, reason: String) {
        cutShortAt = offset
        cutShortReason = reason
        position = .end
    }

    /// Handles a record that may appear anywhere in the data section; returns it if it is a message.
    private mutating func take(_ record: Record, at offset: Int) throws(MCAP.ReadError) -> MCAP.Message? {
        var fields = Fields(data: data, range: record.content, recordOffset: offset)
        switch MCAP.Opcode(rawValue: record.opcode) {
        case .message:
            let channelID = try fields.u16()
            let sequence = try fields.u32()
            let logTime = try fields.u64()
            let publishTime = try fields.u64()
            guard channels[channelID] != nil else {
                throw .corrupt(offset: offset, reason: "a message on channel \(channelID), which no Channel record defined before it")
            }
            let message = MCAP.Message(
                channelID: channelID, sequence: sequence, logTime: logTime, publishTime: publishTime,
                data: data.subdata(in: fields.rest))
            count(message)
            return message
        case .schema:
            let schema = MCAP.Schema(
                id: try fields.u16(), name: try fields.string(), encoding: try fields.string(), data: try fields.bytes32())
            schemas[schema.id] = schema
        case .channel:
            let channel = try fields.channel()
            if channel.schemaID != 0, schemas[channel.schemaID] == nil {
                throw .corrupt(offset: offset, reason: "channel \(channel.id) names schema \(channel.schemaID), which no Schema record defined before it")
            }
            if channels[channel.id] == nil { statistics.channelCount += 1 }
            channels[channel.id] = channel
        case .header:
            throw .corrupt(offset: offset, reason: "a second Header record")
        default:
            break  // indexes, attachments, metadata and records from later versions: skipped
        }
        return nil
    }

    private mutating func count(_ message: MCAP.Message) {
        if statistics.messageCount == 0 {
            statistics.messageStartTime = message.logTime
            statistics.messageEndTime = message.logTime
        } else {
            statistics.messageStartTime = min(statistics.messageStartTime, message.logTime)
            statistics.messageEndTime = max(statistics.messageEndTime, message.logTime)
        }
        statistics.messageCount += 1
        statistics.channelMessageCounts[message.channelID, default: 0] += 1
    }

    private mutating func enterChunk(_ record: Record, at offset: Int) throws(MCAP.ReadError) {
        var fields = Fields(data: data, range: record.content, recordOffset: offset)
        _ = try fields.u64()
        _ = try fields.u64()
        let uncompressedSize = try fields.u64()
        let crc = try fields.u32()
        let compression = try fields.string()
        let recordsLength = try fields.u64()
        guard compression.isEmpty else {
            throw .unsupported(offset: offset, reason: "a chunk compressed with \"\(compression)\"; mesh bag reads uncompressed chunks only (rewrite it with `mcap convert --compression none`)")
        }
        guard recordsLength == UInt64(fields.rest.count), uncompressedSize == recordsLength else {
            throw .corrupt(offset: offset, reason: "a chunk's sizes disagree (\(recordsLength) bytes of records, \(uncompressedSize) uncompressed, \(fields.rest.count) in the record)")
        }
        let records = fields.rest
        if crc != 0 {
            let actual = data.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[records])) }
            guard actual == crc else {
                throw .corrupt(offset: offset, reason: "chunk CRC mismatch (stored \(hex(crc)), computed \(hex(actual)))")
            }
        }
        statistics.chunkCount += 1
        position = .chunk(offset: records.lowerBound, records: records, next: record.end)
    }

    // MARK: The end

    /// Checks the Data End record, the summary and the footer.
    private mutating func finish(dataEnd: Record, at offset: Int) throws(MCAP.ReadError) {
        var fields = Fields(data: data, range: dataEnd.content, recordOffset: offset)
        let storedCRC = try fields.u32()
        if storedCRC != 0 {
            let actual = data.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<offset])) }
            guard actual == storedCRC else {
                throw .corrupt(offset: offset, reason: "data section CRC mismatch (stored \(hex(storedCRC)), computed \(hex(actual)))")
            }
        }
        // Footer: opcode, length, summary start, summary offset start, summary CRC; then the magic.
        let footerLength = 1 + 8 + 8 + 8 + 4
        let footerAt = data.count - MCAP.magic.count - footerLength
        guard footerAt >= dataEnd.end else {
            stopShort(at: dataEnd.end, reason: "the file ends before its footer")
            return
        }
        guard data.suffix(MCAP.magic.count).elementsEqual(MCAP.magic) else {
            stopShort(at: data.count, reason: "the file does not end with the MCAP magic (cut short or still being written)")
            return
        }
        guard let footer = try record(at: footerAt, in: footerAt..<(data.count - MCAP.magic.count)),
            footer.opcode == MCAP.Opcode.footer.rawValue, footer.content.count == 20
        else {
            throw .corrupt(offset: footerAt, reason: "no Footer record before the closing magic")
        }
        var footerFields = Fields(data: data, range: footer.content, recordOffset: footerAt)
        let summaryStart = Int(clamping: try footerFields.u64())
        let summaryOffsetStart = Int(clamping: try footerFields.u64())
        let summaryCRC = try footerFields.u32()
        guard summaryStart != 0 else {
            endedCleanly = true
            return
        }
        guard summaryStart >= dataEnd.end, summaryStart <= footerAt,
            summaryOffsetStart == 0 || (summaryOffsetStart >= summaryStart && summaryOffsetStart <= footerAt)
        else {
            throw .corrupt(offset: footerAt, reason: "the footer's summary offsets (\(summaryStart), \(summaryOffsetStart)) point outside the summary")
        }
        if summaryCRC != 0 {
            let actual = data.withUnsafeBytes {
                CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[summaryStart..<(footerAt + 1 + 8 + 8 + 8)]))
            }
            guard actual == summaryCRC else {
                throw .corrupt(offset: summaryStart, reason: "summary CRC mismatch (stored \(hex(summaryCRC)), computed \(hex(actual)))")
            }
        }
        var at = summaryStart
        while at < footerAt {
            guard let record = try record(at: at, in: at..<footerAt) else {
                throw .corrupt(offset: at, reason: "a summary record runs into the footer")
            }
            if record.opcode == MCAP.Opcode.statistics.rawValue {
                var fields = Fields(data: data, range: record.content, recordOffset: at)
                summaryStatistics = try fields.statistics()
            }
            at = record.end
        }
        if let stated = summaryStatistics, stated.messageCount != statistics.messageCount {
            throw .corrupt(offset: summaryStart, reason: "the summary counts \(stated.messageCount) messages, the data section holds \(statistics.messageCount)")
        }
        endedCleanly = true
    }
}

private func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

extension Data {
    /// A little-endian integer at `offset` (the caller checked the bounds).
    func littleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// Reads the fields of one record, never past its end.
private struct Fields {
    let data: Data
    private(set) var range: Range<Int>
    /// Where the record starts, for errors.
    let recordOffset: Int

    init(data: Data, range: Range<Int>, recordOffset: Int) {
        self.data = data
        self.range = range
        self.recordOffset = recordOffset
    }

    /// The bytes not read yet.
    var rest: Range<Int> { range }

    private mutating func take(_ count: Int, _ what: String) throws(MCAP.ReadError) -> Range<Int> {
        guard count >= 0, count <= range.count else {
            throw .corrupt(offset: recordOffset, reason: "\(what) runs past the end of its record")
        }
        let taken = range.lowerBound..<(range.lowerBound + count)
        range = taken.upperBound..<range.upperBound
        return taken
    }

    mutating func u16() throws(MCAP.ReadError) -> UInt16 { data.littleEndian(UInt16.self, at: try take(2, "a field").lowerBound) }
    mutating func u32() throws(MCAP.ReadError) -> UInt32 { data.littleEndian(UInt32.self, at: try take(4, "a field").lowerBound) }
    mutating func u64() throws(MCAP.ReadError) -> UInt64 { data.littleEndian(UInt64.self, at: try take(8, "a field").lowerBound) }

    mutating func string() throws(MCAP.ReadError) -> String {
        let length = Int(try u32())
        let bytes = try take(length, "a string")
        guard let text = String(validating: data[bytes], as: UTF8.self) else {
            throw .corrupt(offset: recordOffset, reason: "a string that is not UTF-8")
        }
        return text
    }

    mutating func bytes32() throws(MCAP.ReadError) -> [UInt8] {
        let length = Int(try u32())
        return Array(data[try take(length, "a byte field")])
    }

    mutating func channel() throws(MCAP.ReadError) -> MCAP.Channel {
        let id = try u16()
        let schemaID = try u16()
        let topic = try string()
        let encoding = try string()
        let mapLength = Int(try u32())
        var map = Fields(data: data, range: try take(mapLength, "a map"), recordOffset: recordOffset)
        var metadata: [String: String] = [:]
        while !map.range.isEmpty {
            let key = try map.string()
            metadata[key] = try map.string()
        }
        return MCAP.Channel(id: id, schemaID: schemaID, topic: topic, messageEncoding: encoding, metadata: metadata)
    }

    mutating func statistics() throws(MCAP.ReadError) -> MCAP.Statistics {
        var statistics = MCAP.Statistics()
        statistics.messageCount = try u64()
        statistics.schemaCount = try u16()
        statistics.channelCount = try u32()
        statistics.attachmentCount = try u32()
        statistics.metadataCount = try u32()
        statistics.chunkCount = try u32()
        statistics.messageStartTime = try u64()
        statistics.messageEndTime = try u64()
        let mapLength = Int(try u32())
        var map = Fields(data: data, range: try take(mapLength, "a map"), recordOffset: recordOffset)
        while !map.range.isEmpty {
            let channelID = try map.u16()
            statistics.channelMessageCounts[channelID] = try map.u64()
        }
        return statistics
    }
}
