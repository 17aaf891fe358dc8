import MeshCrypto

/// Seals the frames a keyed connection writes into authenticated records.
///
/// A record is a 4-byte big-endian length `L`, then `L - 32` bytes of whole frames, then a 32-byte
/// HMAC-SHA256 tag under the direction's session key over the record's sequence number (8 bytes,
/// big-endian, counting from 0 in each direction and never sent), the length and the frames.
/// The sequence number is implicit, so a relay that drops, reorders, replays or injects a record
/// makes the next tag fail, and the receiver closes the connection.
struct RecordSealer: Sendable {
    static let tagLength = 32
    /// Frames are gathered into records of about this many bytes; one larger frame goes alone.
    static let targetRecordLength = 64 * 1024

    /// The longest record a receiver must accept for frames up to `maximumFrameLength`.
    static func maximumRecordLength(maximumFrameLength: Int) -> Int {
        max(targetRecordLength, 4 + maximumFrameLength) + tagLength
    }

    private let key: HMAC<SHA256>.Key
    private(set) var sequence: UInt64 = 0

    init(key: HMAC<SHA256>.Key) {
        self.key = key
    }

    /// Appends the record holding `frames` to `output`.
    mutating func seal(_ frames: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let length = UInt32(frames.count + Self.tagLength)
        let header = RecordSealer.bigEndian(length)
        output.append(contentsOf: header)
        output.append(contentsOf: frames)
        let tag = RecordSealer.tag(key: key, sequence: sequence, header: header, frames: frames)
        output.append(contentsOf: tag)
        sequence &+= 1
    }

    static func tag(key: HMAC<SHA256>.Key, sequence: UInt64, header: [UInt8], frames: UnsafeRawBufferPointer)
        -> HashedAuthenticationCode<SHA256>
    {
        var mac = HMAC<SHA256>(key: key)
        withUnsafeBytes(of: sequence.bigEndian) { mac.update(bufferPointer: $0) }
        header.withUnsafeBytes { mac.update(bufferPointer: $0) }
        mac.update(bufferPointer: frames)
        return mac.finalize()
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value)]
    }
}

/// Checks and unwraps the records a keyed connection reads (see ``RecordSealer``).
struct RecordOpener: Sendable {
    /// Raw bytes from the socket, split at record lengths; a length over the limit throws before
    /// any allocation, as for frames.
    var decoder: FrameDecoder
    private let key: HMAC<SHA256>.Key
    private(set) var sequence: UInt64 = 0

    init(key: HMAC<SHA256>.Key, maximumRecordLength: Int) {
        self.key = key
        self.decoder = FrameDecoder(maximumFrameLength: maximumRecordLength)
    }

    /// Verifies every complete record received and appends its frames to `frames`.
    ///
    /// - Throws: ``ConnectionError/protocolViolation(_:)`` for a record whose tag does not match
    ///   (bytes injected, altered, dropped, reordered or replayed), ``FrameError`` for a bad length.
    mutating func open(into frames: inout FrameDecoder) throws {
        while let record = try decoder.nextRecord() {
            guard record.count > RecordSealer.tagLength else {
                throw ConnectionError.protocolViolation("record of \(record.count) bytes is shorter than its tag")
            }
            let body = record.lowerBound..<(record.upperBound - RecordSealer.tagLength)
            let header = RecordSealer.bigEndian(UInt32(record.count))
            let valid = decoder.withBytes(record) { raw -> Bool in
                let frameBytes = UnsafeRawBufferPointer(rebasing: raw[0..<body.count])
                let expected = RecordSealer.tag(key: key, sequence: sequence, header: header, frames: frameBytes)
                return expected.withUnsafeBytes { expectedBytes in
                    constantTimeEquals(expectedBytes, UnsafeRawBufferPointer(rebasing: raw[body.count...]))
                }
            }
            guard valid else {
                throw ConnectionError.protocolViolation(
                    "record \(sequence) failed authentication: bytes were injected, altered, dropped or replayed on the way")
            }
            decoder.withBytes(body) { frames.append($0) }
            sequence &+= 1
        }
    }
}
