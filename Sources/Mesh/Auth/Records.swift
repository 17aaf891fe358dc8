import MeshCrypto

/// Seals the frames a keyed connection writes into encrypted records (protocol version 3).
///
/// A record is a 4-byte big-endian length `L`, then `L - 16` bytes of ciphertext, then the 16-byte
/// Poly1305 tag: Noise's `EncryptWithAd` of the next piece of the frame stream (at most 64 KiB, so
/// a large frame spans several records) under the direction's transport key, with
/// the 4 length bytes as associated data and the direction's message counter as the nonce (never
/// sent). So a relay that drops, reorders, replays or injects a record makes the next tag fail,
/// and the receiver closes the connection; and nobody without the transport key reads a byte.
///
/// Every ``rekeyInterval`` messages a direction replaces its key with Noise's `Rekey()`; the
/// counter keeps counting. A key in use therefore says nothing about the records sealed before
/// its last rekey.
struct RecordSealer: Sendable {
    static let tagLength = 16
    /// The most bytes of the frame stream one record carries; the Swift sender cuts there.
    static let targetRecordLength = 64 * 1024
    /// Messages per key in each direction before `Rekey()`: 2^20.
    static let defaultRekeyInterval: UInt64 = 1 << 20

    /// The longest record a receiver must accept for frames up to `maximumFrameLength`.
    static func maximumRecordLength(maximumFrameLength: Int) -> Int {
        max(targetRecordLength, 4 + maximumFrameLength) + tagLength
    }

    private var cipher: Noise.CipherState
    private let rekeyInterval: UInt64

    init(cipher: Noise.CipherState, rekeyInterval: UInt64 = defaultRekeyInterval) {
        self.cipher = cipher
        self.rekeyInterval = max(2, rekeyInterval)
    }

    /// The next record's nonce.
    var sequence: UInt64 { cipher.nonce }

    /// Appends the record holding `frames` (a piece of the frame stream) to `output`.
    ///
    /// - Throws: ``Noise/Error/nonceExhausted`` after 2^64 - 1 records: the connection must end.
    mutating func seal(_ frames: UnsafeRawBufferPointer, into output: inout [UInt8]) throws {
        try seal([frames], into: &output)
    }

    /// Appends the record holding `pieces` back to back (a stretch of the frame stream, held in
    /// pieces: queued bytes and retained payloads) to `output`.
    ///
    /// Sealed out of place: the ciphertext is written into `output` straight from the pieces, so
    /// the plaintext is read once and never copied, and the tag covers the pieces as one message.
    /// - Throws: ``Noise/Error/nonceExhausted`` after 2^64 - 1 records: the connection must end.
    mutating func seal(_ pieces: [UnsafeRawBufferPointer], into output: inout [UInt8]) throws {
        let length = pieces.reduce(0) { $0 + $1.count }
        let header = RecordSealer.bigEndian(UInt32(length + Self.tagLength))
        output.append(contentsOf: header)
        let start = output.count
        var room = length + Self.tagLength
        while room > 0 {  // room for the ciphertext, grown with memcpy rather than byte by byte
            let step = min(room, Self.zeros.count)
            Self.zeros.withUnsafeBytes { output.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<step])) }
            room -= step
        }
        try output.withUnsafeMutableBytes { raw in
            try header.withUnsafeBytes { ad in
                try cipher.seal(pieces, into: UnsafeMutableRawBufferPointer(rebasing: raw[start...]), authenticating: ad)
            }
        }
        if cipher.nonce % rekeyInterval == 0 { cipher.rekey() }
    }

    /// What a record's room in the output is grown with before the seal writes over it.
    private static let zeros = [UInt8](repeating: 0, count: targetRecordLength + tagLength)

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value)]
    }
}

/// Checks, decrypts and unwraps the records a keyed connection reads (see ``RecordSealer``).
struct RecordOpener: Sendable {
    /// Raw bytes from the socket, split at record lengths; a length over the limit throws before
    /// any allocation, as for frames.
    var decoder: FrameDecoder
    private var cipher: Noise.CipherState
    private let rekeyInterval: UInt64
    /// Records opened so far in this direction (the confirmation is not one), for error texts.
    private var opened: UInt64 = 0

    init(cipher: Noise.CipherState, maximumRecordLength: Int, rekeyInterval: UInt64 = RecordSealer.defaultRekeyInterval) {
        self.cipher = cipher
        self.rekeyInterval = max(2, rekeyInterval)
        self.decoder = FrameDecoder(maximumFrameLength: maximumRecordLength)
    }

    /// The next record's nonce.
    var sequence: UInt64 { cipher.nonce }

    /// Opens every complete record received into `frames`, which reads the stream of frames.
    ///
    /// - Throws: ``ConnectionError/protocolViolation(_:)`` for a record whose length leaves no
    ///   room for a frame (checked as soon as the length is in) or whose tag does not match (bytes
    ///   injected, altered, dropped, reordered or replayed); ``FrameError`` for a bad length.
    mutating func open(into frames: inout FrameDecoder) throws {
        while true {
            if let length = decoder.nextLength, length <= RecordSealer.tagLength {
                throw ConnectionError.protocolViolation("record of \(length) bytes holds no frame")
            }
            guard let record = try decoder.nextRecord() else { return }
            let header = RecordSealer.bigEndian(UInt32(record.count))
            let number = opened
            var cipher = self.cipher
            // Opened straight into the frame buffer: the plaintext is written once.
            let length = decoder.withBytes(record) { sealed -> Int? in
                header.withUnsafeBytes { ad in
                    frames.readInto(minimumSpace: sealed.count - RecordSealer.tagLength, largeFrames: .makeRoom) { space in
                        try? cipher.open(sealed, into: space, authenticating: ad)
                    }
                }
            }
            guard length != nil else {
                throw ConnectionError.protocolViolation(
                    "record \(number) failed authentication: bytes were injected, altered, dropped or replayed on the way")
            }
            if cipher.nonce % rekeyInterval == 0 { cipher.rekey() }
            self.cipher = cipher
            opened += 1
        }
    }
}
