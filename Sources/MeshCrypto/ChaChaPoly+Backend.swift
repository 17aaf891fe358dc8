internal import CMeshChaCha

extension ChaChaPoly {
    /// Which ChaCha20 code seals and opens; for tests that must cover both.
    @_spi(Testing)
    public enum Backend: Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// Portable C, one block at a time, available everywhere.
        case portable
        /// Eight blocks at once on AVX2.
        case avx2

        /// Whether this CPU and operating system can run ``avx2``; asked once.
        public static var avx2IsAvailable: Bool { ChaChaPoly.avx2Available }

        /// The backend `ChaChaPoly` uses on this machine.
        public static var preferred: Backend { avx2IsAvailable ? .avx2 : .portable }

        public var description: String {
            switch self {
            case .portable: "portable"
            case .avx2: "avx2"
            }
        }

        /// The C functions' `avx2` argument.
        var flag: Int32 { self == .avx2 ? 1 : 0 }
    }

    /// Whether the AVX2 code can run here, asked once with `cpuid` and `xgetbv`.
    static let avx2Available: Bool = cmesh_chacha_avx2_available() != 0

    /// XORs the ChaCha20 keystream (RFC 8439 2.4) into bytes; the RFC's test vectors call it.
    ///
    /// - Parameters:
    ///   - key: 32 key bytes.
    ///   - counter: The first block's counter.
    ///   - nonce: 12 nonce bytes.
    ///   - input: The bytes to encrypt or decrypt.
    ///   - backend: The ChaCha20 code to run.
    /// - Returns: `input` XOR the keystream.
    @_spi(Testing)
    public static func chaCha20(key: [UInt8], counter: UInt32, nonce: [UInt8], _ input: [UInt8], backend: Backend)
        -> [UInt8]
    {
        precondition(key.count == keyByteCount && nonce.count == nonceByteCount, "ChaCha20: key 32, nonce 12 bytes")
        precondition(backend == .portable || avx2Available, "ChaCha20: no AVX2 on this machine")
        var output = [UInt8](repeating: 0, count: input.count)
        output.withUnsafeMutableBufferPointer { out in
            input.withUnsafeBufferPointer { bytes in
                cmesh_chacha20_xor(backend.flag, key, counter, nonce, bytes.baseAddress, out.baseAddress, bytes.count)
            }
        }
        return output
    }

    /// The Poly1305 one-time authenticator (RFC 8439 2.5); the RFC's test vectors call it.
    ///
    /// - Parameters:
    ///   - key: 32 bytes, r then s.
    ///   - message: The bytes to authenticate.
    /// - Returns: The 16-byte tag.
    @_spi(Testing)
    public static func poly1305(key: [UInt8], message: [UInt8]) -> [UInt8] {
        precondition(key.count == keyByteCount, "Poly1305: the key is 32 bytes")
        var tag = [UInt8](repeating: 0, count: tagByteCount)
        message.withUnsafeBufferPointer { bytes in
            cmesh_poly1305(key, bytes.baseAddress, bytes.count, &tag)
        }
        return tag
    }

    /// Runs the C seal; buffers checked by the caller.
    static func sealRaw(
        backend: Backend, key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
        authenticating additional: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
        ciphertext: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer
    ) {
        cmesh_chachapoly_seal(
            backend.flag, bytes(key), bytes(nonce), bytes(additional), additional.count, bytes(plaintext),
            ciphertext.assumingMemoryBound(to: UInt8.self), plaintext.count, tag.assumingMemoryBound(to: UInt8.self))
    }

    /// Runs the C seal of a message in pieces; buffers checked by the caller.
    static func sealPiecesRaw(
        backend: Backend, key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
        authenticating additional: UnsafeRawBufferPointer, pieces: [UnsafeRawBufferPointer],
        ciphertext: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer
    ) {
        let described = pieces.map { cmesh_piece(bytes: bytes($0), length: $0.count) }
        cmesh_chachapoly_seal_pieces(
            backend.flag, bytes(key), bytes(nonce), bytes(additional), additional.count, described, described.count,
            ciphertext.assumingMemoryBound(to: UInt8.self), tag.assumingMemoryBound(to: UInt8.self))
    }

    /// Runs the C open; buffers checked by the caller. Returns whether the tag matched.
    static func openRaw(
        backend: Backend, key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
        authenticating additional: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
        plaintext: UnsafeMutableRawPointer, tag: UnsafeRawPointer
    ) -> Bool {
        cmesh_chachapoly_open(
            backend.flag, bytes(key), bytes(nonce), bytes(additional), additional.count, bytes(ciphertext),
            plaintext.assumingMemoryBound(to: UInt8.self), ciphertext.count, tag.assumingMemoryBound(to: UInt8.self))
            == 1
    }

    /// The first byte of a buffer as C's `const uint8_t *`, `nil` for an empty buffer.
    @inline(__always)
    private static func bytes(_ buffer: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}
