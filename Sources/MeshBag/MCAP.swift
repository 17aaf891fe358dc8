import Foundation
import Mesh

/// MCAP, the recording format of the robotics world (ROS 2's default, read by Foxglove,
/// PlotJuggler and the `mcap` tools): what `mesh bag` writes and reads.
///
/// A file is the magic, a Header record, the data section (Schema, Channel and Message records,
/// here grouped in uncompressed Chunks each followed by its Message Index records), a Data End
/// record, the summary section (Schema, Channel, Statistics and Chunk Index records), one Summary
/// Offset record per summary group, the Footer and the magic again. Every record is an opcode
/// byte, a little-endian 64-bit length and that many bytes. ``MCAPWriter`` writes files,
/// ``MCAPReader`` reads them (ours and other writers'); docs/CLI.md says how `mesh bag` maps
/// mesh messages onto channels.
package enum MCAP {
    /// The 8 bytes at both ends of every MCAP file (major version `0`).
    package static let magic: [UInt8] = [0x89, 0x4D, 0x43, 0x41, 0x50, 0x30, 0x0D, 0x0A]

    /// Record types.
    package enum Opcode: UInt8, Sendable {
        case header = 0x01
        case footer = 0x02
        case schema = 0x03
        case channel = 0x04
        case message = 0x05
        case chunk = 0x06
        case messageIndex = 0x07
        case chunkIndex = 0x08
        case attachment = 0x09
        case attachmentIndex = 0x0A
        case statistics = 0x0B
        case metadata = 0x0C
        case metadataIndex = 0x0D
        case summaryOffset = 0x0E
        case dataEnd = 0x0F
    }

    /// How messages of a channel are shaped; id 0 means "no schema".
    package struct Schema: Sendable, Equatable {
        package var id: UInt16
        package var name: String
        package var encoding: String
        package var data: [UInt8]

        package init(id: UInt16, name: String, encoding: String, data: [UInt8]) {
            self.id = id
            self.name = name
            self.encoding = encoding
            self.data = data
        }
    }

    /// One stream of messages: a topic, its message encoding and free-form metadata.
    package struct Channel: Sendable, Equatable {
        package var id: UInt16
        package var schemaID: UInt16
        package var topic: String
        package var messageEncoding: String
        package var metadata: [String: String]

        package init(id: UInt16, schemaID: UInt16, topic: String, messageEncoding: String, metadata: [String: String]) {
            self.id = id
            self.schemaID = schemaID
            self.topic = topic
            self.messageEncoding = messageEncoding
            self.metadata = metadata
        }
    }

    /// One message: its channel, sequence number, times (nanoseconds since 1970) and bytes.
    package struct Message: Sendable {
        package var channelID: UInt16
        package var sequence: UInt32
        package var logTime: UInt64
        package var publishTime: UInt64
        package var data: Data
    }

    /// The summary's counts.
    package struct Statistics: Sendable, Equatable {
        package var messageCount: UInt64 = 0
        package var schemaCount: UInt16 = 0
        package var channelCount: UInt32 = 0
        package var attachmentCount: UInt32 = 0
        package var metadataCount: UInt32 = 0
        package var chunkCount: UInt32 = 0
        package var messageStartTime: UInt64 = 0
        package var messageEndTime: UInt64 = 0
        package var channelMessageCounts: [UInt16: UInt64] = [:]

        package init() {}
    }

    /// Why a file could not be read. Each names the byte offset where reading stopped.
    package enum ReadError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The file does not start with the MCAP magic.
        case notMCAP(offset: Int, reason: String)
        /// A record or field is inconsistent, or a checksum does not match.
        case corrupt(offset: Int, reason: String)
        /// The file uses something this reader does not implement (compressed chunks).
        case unsupported(offset: Int, reason: String)

        package var offset: Int {
            switch self {
            case .notMCAP(let offset, _), .corrupt(let offset, _), .unsupported(let offset, _): return offset
            }
        }

        package var description: String {
            switch self {
            case .notMCAP(let offset, let reason): return "not an MCAP file (at offset \(offset)): \(reason)"
            case .corrupt(let offset, let reason): return "corrupt MCAP file at offset \(offset): \(reason)"
            case .unsupported(let offset, let reason): return "unsupported MCAP content at offset \(offset): \(reason)"
            }
        }
    }
}

/// Appends MCAP's little-endian primitives to a byte buffer.
struct MCAPBytes {
    var bytes: [UInt8] = []

    var count: Int { bytes.count }

    mutating func u8(_ value: UInt8) { bytes.append(value) }

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }

    mutating func u32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    mutating func u64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    /// Appends raw bytes with one copy (a raw buffer appended as a generic sequence goes byte by byte).
    mutating func raw(_ source: UnsafeRawBufferPointer) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        bytes.append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: source.count))
    }

    /// A `uint32` byte length, then the UTF-8.
    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            u32(UInt32(utf8.count))
            raw(UnsafeRawBufferPointer(utf8))
        }
    }

    /// Starts a record: opcode and a length placeholder. Returns where the length goes.
    mutating func beginRecord(_ opcode: MCAP.Opcode) -> Int {
        u8(opcode.rawValue)
        let at = bytes.count
        u64(0)
        return at
    }

    /// Fills in the length of the record begun at `lengthAt`.
    mutating func endRecord(lengthAt: Int) {
        let length = UInt64(bytes.count - lengthAt - 8).littleEndian
        withUnsafeBytes(of: length) { raw in
            for index in 0..<8 { bytes[lengthAt + index] = raw[index] }
        }
    }

    /// A `uint32` byte length, then what `body` appends.
    mutating func lengthPrefixed(_ body: (inout MCAPBytes) -> Void) {
        let at = bytes.count
        u32(0)
        body(&self)
        let length = UInt32(bytes.count - at - 4).littleEndian
        withUnsafeBytes(of: length) { raw in
            for index in 0..<4 { bytes[at + index] = raw[index] }
        }
    }

    /// A string-to-string map, keys sorted so the same map always gives the same bytes.
    mutating func map(_ map: [String: String]) {
        lengthPrefixed { out in
            for key in map.keys.sorted() {
                out.string(key)
                out.string(map[key]!)
            }
        }
    }

    mutating func append(_ other: [UInt8]) { bytes.append(contentsOf: other) }
}
