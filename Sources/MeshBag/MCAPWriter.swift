import Foundation
import Mesh

/// Builds an MCAP file in memory, piece by piece, for the caller to write out.
///
/// Messages gather in an open chunk; ``closeChunk()`` turns it into a Chunk record followed by
/// one Message Index record per channel in it. Finished bytes wait in the writer until
/// ``takeOutput()`` hands them over, so the caller decides when and where the file is written
/// (`mesh bag record` writes on a thread of its own, at least every second). ``finish()`` adds
/// the Data End record, the summary (schemas, channels, statistics, chunk indexes), the summary
/// offsets, the footer and the closing magic. Every CRC field is filled in: each chunk's, the
/// data section's and the summary's.
///
/// A file cut off after any ``takeOutput()`` ends on a record boundary, so everything before
/// it can be read back (``MCAPReader`` reports such a file as cut short).
package struct MCAPWriter: Sendable {
    /// Where one closed chunk sits, for its Chunk Index record.
    private struct ChunkIndex {
        var startTime: UInt64
        var endTime: UInt64
        var offset: UInt64
        var length: UInt64
        var messageIndexOffsets: [(UInt16, UInt64)]
        var messageIndexLength: UInt64
        var size: UInt64
    }

    /// Bytes ready for the file, not yet taken: whole segments, then `output`.
    private var segments: [[UInt8]] = []
    private var segmentBytes = 0
    private var output = MCAPBytes()
    /// The file offset of `output`'s first byte.
    private var taken: UInt64 = 0
    private var dataSectionCRC = CRC32()
    private var chunk = MCAPBytes()
    private var chunkStartTime = UInt64.max
    private var chunkEndTime: UInt64 = 0
    /// Per channel id: the (log time, offset in chunk) of each message in the open chunk.
    private var chunkIndex: [[(UInt64, UInt64)]] = []
    private var chunkChannels: [UInt16] = []
    private var schemas: [MCAP.Schema] = []
    private var channels: [MCAP.Channel] = []
    private var sequences: [UInt32] = []
    private var chunkIndexes: [ChunkIndex] = []
    package private(set) var statistics = MCAP.Statistics()
    package private(set) var isFinished = false

    /// Starts a file: the magic and a Header record.
    ///
    /// - Parameters:
    ///   - profile: the MCAP profile (`""` for none; `ros1`/`ros2` name ROS conventions).
    ///   - library: who wrote the file, free-form.
    package init(profile: String = "", library: String) {
        output.append(MCAP.magic)
        let at = output.beginRecord(.header)
        output.string(profile)
        output.string(library)
        output.endRecord(lengthAt: at)
        sequences.append(0)
        chunkIndex.append([])
        dataSectionCRC.update(output.bytes)
    }

    /// Bytes produced so far, taken or not: the file's size if it ended here.
    package var size: UInt64 { offset + UInt64(chunk.count) }

    /// Bytes in the open chunk.
    package var openChunkBytes: Int { chunk.count }

    /// Bytes finished and waiting for ``takeOutput()``.
    package var pendingBytes: Int { segmentBytes + output.count }

    /// Adds a Schema record (to the data section now, and to the summary at the end).
    ///
    /// - Returns: its id, from 1.
    package mutating func addSchema(name: String, encoding: String, data: [UInt8]) -> UInt16 {
        let schema = MCAP.Schema(id: UInt16(schemas.count + 1), name: name, encoding: encoding, data: data)
        schemas.append(schema)
        statistics.schemaCount += 1
        appendData { $0.schema(schema) }
        return schema.id
    }

    /// Adds a Channel record (to the data section now, and to the summary at the end).
    ///
    /// - Parameters:
    ///   - schemaID: a schema from ``addSchema(name:encoding:data:)``, or 0 for none.
    /// - Returns: its id, from 1; at most 65,535 channels.
    package mutating func addChannel(
        topic: String, messageEncoding: String, schemaID: UInt16 = 0, metadata: [String: String] = [:]
    ) -> UInt16? {
        guard channels.count < Int(UInt16.max) else { return nil }
        let channel = MCAP.Channel(
            id: UInt16(channels.count + 1), schemaID: schemaID, topic: topic, messageEncoding: messageEncoding,
            metadata: metadata)
        channels.append(channel)
        sequences.append(0)
        chunkIndex.append([])
        statistics.channelCount += 1
        appendData { $0.channel(channel) }
        return channel.id
    }

    /// Adds a Message record to the open chunk; its sequence number counts up per channel from 1.
    ///
    /// - Parameters:
    ///   - channelID: from ``addChannel(topic:messageEncoding:schemaID:metadata:)``.
    ///   - logTime: when it was recorded, in nanoseconds since 1970.
    ///   - publishTime: when it was sent, as far as the recorder knows.
    package mutating func append(
        channelID: UInt16, logTime: UInt64, publishTime: UInt64, data: UnsafeRawBufferPointer
    ) {
        let channel = Int(channelID)
        precondition(channel >= 1 && channel <= channels.count, "unknown channel \(channelID)")
        sequences[channel] &+= 1
        if chunkIndex[channel].isEmpty { chunkChannels.append(channelID) }
        chunkIndex[channel].append((logTime, UInt64(chunk.count)))
        chunk.u8(MCAP.Opcode.message.rawValue)
        chunk.u64(UInt64(2 + 4 + 8 + 8 + data.count))
        chunk.u16(channelID)
        chunk.u32(sequences[channel])
        chunk.u64(logTime)
        chunk.u64(publishTime)
        chunk.raw(data)
        chunkStartTime = min(chunkStartTime, logTime)
        chunkEndTime = max(chunkEndTime, logTime)
        if statistics.messageCount == 0 {
            statistics.messageStartTime = logTime
            statistics.messageEndTime = logTime
        } else {
            statistics.messageStartTime = min(statistics.messageStartTime, logTime)
            statistics.messageEndTime = max(statistics.messageEndTime, logTime)
        }
        statistics.messageCount += 1
        statistics.channelMessageCounts[channelID, default: 0] += 1
    }

    /// Adds a Message record; see ``append(channelID:logTime:publishTime:data:)``.
    package mutating func append(channelID: UInt16, logTime: UInt64, publishTime: UInt64, data: Data) {
        data.withUnsafeBytes { append(channelID: channelID, logTime: logTime, publishTime: publishTime, data: $0) }
    }

    /// Ends the open chunk (if it holds anything): a Chunk record, then its Message Index records.
    package mutating func closeChunk() {
        guard !chunkChannels.isEmpty else { return }
        let chunkOffset = offset
        let recordsLength = UInt64(chunk.count)
        let start = output.count
        output.u8(MCAP.Opcode.chunk.rawValue)
        output.u64(8 + 8 + 8 + 4 + 4 + 8 + recordsLength)
        output.u64(chunkStartTime)
        output.u64(chunkEndTime)
        output.u64(recordsLength)
        let recordsCRC = CRC32.checksum(chunk.bytes)
        output.u32(recordsCRC)
        output.string("")
        output.u64(recordsLength)
        output.bytes.withUnsafeBytes { dataSectionCRC.update(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        // The records are hashed once: their CRC extends the data section's.
        dataSectionCRC.append(checksum: recordsCRC, length: chunk.count)
        // The records move into the output as they are: one copy less for large messages.
        segments.append(output.bytes)
        segments.append(chunk.bytes)
        segmentBytes += output.count + chunk.count
        output.bytes = []
        chunk.bytes = []
        chunk.bytes.reserveCapacity(Int(recordsLength))
        let chunkLength = offset - chunkOffset
        var indexOffsets: [(UInt16, UInt64)] = []
        let indexStart = offset
        for channelID in chunkChannels.sorted() {
            indexOffsets.append((channelID, offset))
            var entries = chunkIndex[Int(channelID)]
            if zip(entries, entries.dropFirst()).contains(where: { $0.0 > $1.0 }) { entries.sort { $0.0 < $1.0 } }
            appendData { out in
                let at = out.beginRecord(.messageIndex)
                out.u16(channelID)
                out.lengthPrefixed { out in
                    for (time, offset) in entries {
                        out.u64(time)
                        out.u64(offset)
                    }
                }
                out.endRecord(lengthAt: at)
            }
            chunkIndex[Int(channelID)].removeAll(keepingCapacity: true)
        }
        chunkIndexes.append(
            ChunkIndex(
                startTime: chunkStartTime, endTime: chunkEndTime, offset: chunkOffset, length: chunkLength,
                messageIndexOffsets: indexOffsets, messageIndexLength: offset - indexStart, size: recordsLength))
        statistics.chunkCount += 1
        chunkChannels.removeAll(keepingCapacity: true)
        chunkStartTime = .max
        chunkEndTime = 0
    }

    /// The file offset the next finished byte goes to.
    private var offset: UInt64 { taken + UInt64(segmentBytes + output.count) }

    /// Hands over the finished bytes (everything before the open chunk), in order.
    package mutating func takeOutput() -> [[UInt8]] {
        var bytes = segments
        if !output.bytes.isEmpty { bytes.append(output.bytes) }
        taken = offset
        segments = []
        segmentBytes = 0
        output.bytes = []
        return bytes
    }

    /// Closes the open chunk and ends the file: Data End, summary, summary offsets, footer, magic.
    /// Take the rest with ``takeOutput()``; nothing may be added after.
    package mutating func finish() {
        guard !isFinished else { return }
        isFinished = true
        closeChunk()
        let dataEnd = output.beginRecord(.dataEnd)
        output.u32(dataSectionCRC.value)
        output.endRecord(lengthAt: dataEnd)

        // The summary is built in `output` alone, so its CRC can be taken over one buffer.
        segments.append(output.bytes)
        segmentBytes += output.count
        output.bytes = []
        let summaryStart = offset
        var groups: [(MCAP.Opcode, UInt64, UInt64)] = []
        func group(_ opcode: MCAP.Opcode, _ body: (inout MCAPBytes) -> Void) {
            let start = output.count
            body(&output)
            if output.count > start {
                groups.append((opcode, summaryStart + UInt64(start), UInt64(output.count - start)))
            }
        }
        group(.schema) { out in for schema in schemas { out.schema(schema) } }
        group(.channel) { out in for channel in channels { out.channel(channel) } }
        group(.statistics) { out in out.statistics(statistics) }
        group(.chunkIndex) { out in
            for index in chunkIndexes {
                let at = out.beginRecord(.chunkIndex)
                out.u64(index.startTime)
                out.u64(index.endTime)
                out.u64(index.offset)
                out.u64(index.length)
                out.lengthPrefixed { map in
                    for (channelID, offset) in index.messageIndexOffsets {
                        map.u16(channelID)
                        map.u64(offset)
                    }
                }
                out.u64(index.messageIndexLength)
                out.string("")
                out.u64(index.size)
                out.u64(index.size)
                out.endRecord(lengthAt: at)
            }
        }
        let summaryOffsetStart = offset
        for (opcode, start, length) in groups {
            let at = output.beginRecord(.summaryOffset)
            output.u8(opcode.rawValue)
            output.u64(start)
            output.u64(length)
            output.endRecord(lengthAt: at)
        }
        // The summary CRC covers the footer up to its own field, length included: write it out first.
        output.u8(MCAP.Opcode.footer.rawValue)
        output.u64(8 + 8 + 4)
        output.u64(summaryStart)
        output.u64(summaryOffsetStart)
        output.u32(CRC32.checksum(output.bytes))
        output.append(MCAP.magic)
    }

    /// Appends data-section records made by `body`, keeping the data section's CRC.
    private mutating func appendData(_ body: (inout MCAPBytes) -> Void) {
        let start = output.count
        body(&output)
        output.bytes.withUnsafeBytes { dataSectionCRC.update(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }
}

extension MCAPBytes {
    mutating func schema(_ schema: MCAP.Schema) {
        let at = beginRecord(.schema)
        u16(schema.id)
        string(schema.name)
        string(schema.encoding)
        u32(UInt32(schema.data.count))
        append(schema.data)
        endRecord(lengthAt: at)
    }

    mutating func channel(_ channel: MCAP.Channel) {
        let at = beginRecord(.channel)
        u16(channel.id)
        u16(channel.schemaID)
        string(channel.topic)
        string(channel.messageEncoding)
        map(channel.metadata)
        endRecord(lengthAt: at)
    }

    mutating func statistics(_ statistics: MCAP.Statistics) {
        let at = beginRecord(.statistics)
        u64(statistics.messageCount)
        u16(statistics.schemaCount)
        u32(statistics.channelCount)
        u32(statistics.attachmentCount)
        u32(statistics.metadataCount)
        u32(statistics.chunkCount)
        u64(statistics.messageStartTime)
        u64(statistics.messageEndTime)
        lengthPrefixed { out in
            for channelID in statistics.channelMessageCounts.keys.sorted() {
                out.u16(channelID)
                out.u64(statistics.channelMessageCounts[channelID]!)
            }
        }
        endRecord(lengthAt: at)
    }
}
