import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshBag

/// Our MCAP writer and reader, without a mesh: round trips, and every way a file can be cut or damaged.
@Suite("MCAP writer and reader")
struct MCAPTests {
    /// A message as the tests write it.
    struct Written: Equatable {
        var channel: UInt16
        var logTime: UInt64
        var data: [UInt8]
    }

    /// Writes `count` messages over three channels, closing a chunk every `chunkEvery` messages.
    static func sampleFile(count: Int = 40, chunkEvery: Int = 7, seed: UInt64 = 1) -> (bytes: [UInt8], messages: [Written]) {
        var generator = SplitMix64(seed: seed)
        var writer = MCAPWriter(library: "tests")
        let schema = writer.addSchema(name: "Pose", encoding: "jsonschema", data: Array("{\"type\":\"object\"}".utf8))
        let json = writer.addChannel(topic: "pose", messageEncoding: "json", schemaID: schema, metadata: ["sender": "a", "sender_id": "01"])!
        let raw = writer.addChannel(topic: "blob", messageEncoding: "application/octet-stream", metadata: [:])!
        let other = writer.addChannel(topic: "pose", messageEncoding: "json", metadata: ["sender": "b"])!
        var file: [UInt8] = []
        var messages: [Written] = []
        for index in 0..<count {
            let channel = [json, raw, other][index % 3]
            let length = Int(generator.next() % 200)
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let time = 1_700_000_000_000_000_000 + UInt64(index) * 1_000_000
            writer.append(channelID: channel, logTime: time, publishTime: time, data: Data(data))
            messages.append(Written(channel: channel, logTime: time, data: data))
            if index % chunkEvery == chunkEvery - 1 {
                writer.closeChunk()
                for segment in writer.takeOutput() { file += segment }
            }
        }
        writer.finish()
        for segment in writer.takeOutput() { file += segment }
        return (file, messages)
    }

    /// Reads every message; returns them and the reader at the end.
    static func readAll(_ bytes: [UInt8]) throws -> ([Written], MCAPReader) {
        var reader = try MCAPReader(data: Data(bytes))
        var messages: [Written] = []
        while let message = try reader.next() {
            messages.append(Written(channel: message.channelID, logTime: message.logTime, data: Array(message.data)))
        }
        return (messages, reader)
    }

    @Test("CRC-32 matches the standard check value and zlib's")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([]) == 0)
        #expect(CRC32.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x414F_A339)
        // Streaming in uneven pieces equals one call, across the 8-byte fast path's edges.
        var generator = SplitMix64(seed: 7)
        let bytes = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var crc = CRC32()
        var start = 0
        for size in [1, 3, 8, 15, 64, 7, 200] {
            crc.update(Array(bytes[start..<(start + size)]))
            start += size
        }
        crc.update(Array(bytes[start...]))
        #expect(crc.value == CRC32.checksum(bytes))
        // The accelerated path (when this CPU has it) equals the table at every length and alignment.
        for length in 0...300 {
            for offset in 0..<4 {
                let slice = Array(bytes[offset..<(offset + length)])
                #expect(CRC32.checksum(slice) == CRC32.portableChecksum(slice), "length \(length) at \(offset)")
            }
        }
        #expect(CRC32.checksum(bytes) == CRC32.portableChecksum(bytes))
        // Combining two checksums equals hashing the bytes together, at every split.
        for split in [0, 1, 7, 8, 9, 100, 999, 1000] {
            let a = CRC32.checksum(Array(bytes[..<split]))
            let b = CRC32.checksum(Array(bytes[split...]))
            #expect(CRC32.combine(a, b, length: bytes.count - split) == CRC32.checksum(bytes), "split at \(split)")
            var extended = CRC32()
            extended.update(Array(bytes[..<split]))
            extended.append(checksum: b, length: bytes.count - split)
            #expect(extended.value == CRC32.checksum(bytes))
        }
        // A long run of zeros (the shift operator's powers wrap with period 32).
        let zeros = [UInt8](repeating: 0, count: 3 << 20)
        #expect(CRC32.combine(CRC32.checksum([1, 2, 3]), CRC32.checksum(zeros), length: zeros.count) == CRC32.checksum([1, 2, 3] + zeros))
    }

    @Test("what the writer writes, the reader reads back: messages, channels, summary")
    func roundTrip() throws {
        let (bytes, written) = MCAPTests.sampleFile()
        #expect(Array(bytes.prefix(8)) == MCAP.magic && Array(bytes.suffix(8)) == MCAP.magic)
        let (read, reader) = try MCAPTests.readAll(bytes)
        #expect(read == written)
        #expect(reader.endedCleanly && reader.cutShortAt == nil)
        #expect(reader.library == "tests")
        #expect(reader.channels.count == 3)
        #expect(reader.channels[1]?.metadata == ["sender": "a", "sender_id": "01"])
        #expect(reader.schemas[1]?.name == "Pose")
        let stated = try #require(reader.summaryStatistics)
        #expect(stated.messageCount == 40 && stated.channelCount == 3 && stated.schemaCount == 1)
        #expect(stated.chunkCount == 6)  // 5 full chunks of 7, and the rest
        #expect(stated.channelMessageCounts == [1: 14, 2: 13, 3: 13])
        #expect(stated.messageStartTime == written.first!.logTime && stated.messageEndTime == written.last!.logTime)
        #expect(reader.statistics.channelMessageCounts == stated.channelMessageCounts)
    }

    @Test("an empty recording is a valid file")
    func empty() throws {
        var writer = MCAPWriter(library: "tests")
        writer.finish()
        let bytes = writer.takeOutput().flatMap { $0 }
        let (read, reader) = try MCAPTests.readAll(bytes)
        #expect(read.isEmpty && reader.endedCleanly && reader.summaryStatistics?.messageCount == 0)
    }

    @Test("a file cut at any byte reads up to its last whole chunk, or fails with the offset; never crashes")
    func truncatedEverywhere() throws {
        let (bytes, written) = MCAPTests.sampleFile(count: 12, chunkEvery: 4)
        for length in 0..<bytes.count {
            let cut = Array(bytes.prefix(length))
            do {
                let (read, reader) = try MCAPTests.readAll(cut)
                #expect(!reader.endedCleanly, "cut at \(length) read as a clean file")
                #expect(reader.cutShortAt != nil && reader.cutShortAt! <= length)
                #expect(Array(written.prefix(read.count)) == read, "cut at \(length): not a prefix")
            } catch let error as MCAP.ReadError {
                // Only a file cut inside the magic or the header is not an MCAP file at all.
                guard case .notMCAP(let offset, _) = error else {
                    Issue.record("cut at \(length): \(error)")
                    continue
                }
                #expect(length < 8 + 9 + 100 && offset <= length)
            }
        }
    }

    @Test("every single flipped byte is caught: an error with the offset, or a file that did not end cleanly")
    func flippedBytes() throws {
        let (bytes, written) = MCAPTests.sampleFile(count: 9, chunkEvery: 4)
        for index in 0..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x5A
            do {
                let (read, reader) = try MCAPTests.readAll(damaged)
                #expect(!reader.endedCleanly, "a flip at \(index) went unnoticed")
                #expect(Array(written.prefix(read.count)) == read, "a flip at \(index) changed what was read")
            } catch let error as MCAP.ReadError {
                #expect(error.offset >= 0 && error.offset <= bytes.count)
                #expect(error.description.contains("offset \(error.offset)"))
            }
        }
    }

    @Test("not MCAP, compressed chunks and a message before its channel are errors that say so")
    func foreignFiles() throws {
        #expect(throws: MCAP.ReadError.notMCAP(offset: 0, reason: "the file does not start with the MCAP magic bytes")) {
            try MCAPReader(data: Data("PK\u{3}\u{4} this is a zip file, honestly".utf8))
        }
        #expect(throws: MCAP.ReadError.self) { try MCAPReader(data: Data()) }

        // A chunk that claims zstd compression.
        var out = MCAPBytes()
        out.append(MCAP.magic)
        var at = out.beginRecord(.header)
        out.string("")
        out.string("hand-made")
        out.endRecord(lengthAt: at)
        let chunkOffset = out.count
        at = out.beginRecord(.chunk)
        out.u64(0)
        out.u64(0)
        out.u64(4)
        out.u32(0)
        out.string("zstd")
        out.u64(4)
        out.append([1, 2, 3, 4])
        out.endRecord(lengthAt: at)
        var reader = try MCAPReader(data: Data(out.bytes))
        #expect(throws: MCAP.ReadError.self) { _ = try reader.next() }
        do {
            _ = try reader.next()
        } catch {
            #expect(error.offset == chunkOffset && error.description.contains("zstd"))
        }

        // A message on a channel nobody defined.
        var loose = MCAPBytes()
        loose.append(MCAP.magic)
        at = loose.beginRecord(.header)
        loose.string("")
        loose.string("")
        loose.endRecord(lengthAt: at)
        at = loose.beginRecord(.message)
        loose.u16(9)
        loose.u32(1)
        loose.u64(1)
        loose.u64(1)
        loose.endRecord(lengthAt: at)
        var orphan = try MCAPReader(data: Data(loose.bytes))
        #expect(throws: MCAP.ReadError.self) { _ = try orphan.next() }
    }

    @Test("a record claiming an enormous length is read as a cut-off file, allocating nothing")
    func enormousLength() throws {
        var out = MCAPBytes()
        out.append(MCAP.magic)
        let at = out.beginRecord(.header)
        out.string("")
        out.string("")
        out.endRecord(lengthAt: at)
        let bogus = out.count
        out.u8(MCAP.Opcode.chunk.rawValue)
        out.u64(UInt64.max)
        out.append([0, 0, 0])
        var reader = try MCAPReader(data: Data(out.bytes))
        #expect(try reader.next() == nil)
        #expect(reader.cutShortAt == bogus && !reader.endedCleanly)
    }
}
