import Foundation

extension ChaChaPoly {
    /// A 256-bit ChaCha20-Poly1305 key held inline, for sealing and opening into caller buffers.
    ///
    /// The transport's fast path: no `Data`, no allocation, the output may be the input's own
    /// memory (in place), and a 64-bit counter can stand in for the nonce, encoded as the Noise
    /// Protocol Framework does for ChaChaPoly: four zero bytes, then the counter little-endian.
    /// Printing a key shows no key bytes.
    package struct Key: Sendable, CustomStringConvertible {
        /// The key bytes.
        private let bytes: Bytes32

        /// The ChaCha20 code to run.
        package let backend: Backend

        /// Prepares a key.
        ///
        /// - Parameters:
        ///   - key: A 256-bit key.
        ///   - backend: The ChaCha20 code to run; tests pick one, everyone else the default.
        /// - Throws: ``CryptoKitError/incorrectKeySize`` unless `key` is 256 bits.
        package init(_ key: SymmetricKey, backend: Backend = .preferred) throws {
            try self.init(Bytes32(key), backend: backend)
        }

        /// Prepares a key from 32 bytes.
        ///
        /// - Parameters:
        ///   - bytes: Exactly 32 key bytes.
        ///   - backend: The ChaCha20 code to run.
        /// - Throws: ``CryptoKitError/incorrectKeySize`` unless `bytes` is 32 bytes.
        package init<D: ContiguousBytes>(bytes: D, backend: Backend = .preferred) throws {
            try self.init(Bytes32(bytes), backend: backend)
        }

        /// Prepares a key from bytes already checked.
        init(_ bytes: Bytes32, backend: Backend) {
            precondition(backend == .portable || ChaChaPoly.avx2Available, "ChaChaPoly: no AVX2 on this machine")
            self.bytes = bytes
            self.backend = backend
        }

        package var description: String { "ChaChaPoly.Key(\(backend))" }

        /// Encrypts `plaintext` into `output` and writes the tag right after the ciphertext.
        ///
        /// - Parameters:
        ///   - nonce: 12 nonce bytes.
        ///   - additional: Data the tag covers but that is not encrypted.
        ///   - plaintext: The message.
        ///   - output: At least `plaintext.count + 16` bytes; may start at `plaintext`'s first byte
        ///     (in place) but must not otherwise overlap it.
        package func seal(
            nonce: UnsafeRawBufferPointer, authenticating additional: UnsafeRawBufferPointer,
            plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
        ) {
            precondition(nonce.count == ChaChaPoly.nonceByteCount, "ChaChaPoly: the nonce is 12 bytes")
            precondition(output.count >= plaintext.count + ChaChaPoly.tagByteCount, "ChaChaPoly: output too small")
            Self.checkAliasing(UnsafeRawPointer(output.baseAddress), plaintext)
            bytes.withUnsafeBytes { key in
                ChaChaPoly.sealRaw(
                    backend: backend, key: key, nonce: nonce, authenticating: additional, plaintext: plaintext,
                    ciphertext: output.baseAddress!, tag: output.baseAddress! + plaintext.count)
            }
        }

        /// Encrypts the message made of `pieces` back to back into `output`, tag after the
        /// ciphertext, without joining them first: the bytes are those ``seal(nonce:authenticating:plaintext:into:)``
        /// writes for the joined message.
        ///
        /// - Parameters:
        ///   - nonce: 12 nonce bytes.
        ///   - additional: Data the tag covers but that is not encrypted.
        ///   - pieces: The message, in order; any lengths, empty ones included.
        ///   - output: At least the pieces' total length + 16 bytes, overlapping none of them.
        package func seal(
            nonce: UnsafeRawBufferPointer, authenticating additional: UnsafeRawBufferPointer,
            pieces: [UnsafeRawBufferPointer], into output: UnsafeMutableRawBufferPointer
        ) {
            precondition(nonce.count == ChaChaPoly.nonceByteCount, "ChaChaPoly: the nonce is 12 bytes")
            if pieces.count == 1 { return seal(nonce: nonce, authenticating: additional, plaintext: pieces[0], into: output) }
            let length = pieces.reduce(0) { $0 + $1.count }
            precondition(output.count >= length + ChaChaPoly.tagByteCount, "ChaChaPoly: output too small")
            for piece in pieces { Self.checkDisjoint(UnsafeRawPointer(output.baseAddress), length, piece) }
            bytes.withUnsafeBytes { key in
                ChaChaPoly.sealPiecesRaw(
                    backend: backend, key: key, nonce: nonce, authenticating: additional, pieces: pieces,
                    ciphertext: output.baseAddress!, tag: output.baseAddress! + length)
            }
        }

        /// ``seal(nonce:authenticating:pieces:into:)`` with the Noise nonce for `counter`.
        package func seal(
            counter: UInt64, authenticating additional: UnsafeRawBufferPointer, pieces: [UnsafeRawBufferPointer],
            into output: UnsafeMutableRawBufferPointer
        ) {
            Self.withCounterNonce(counter) { nonce in
                seal(nonce: nonce, authenticating: additional, pieces: pieces, into: output)
            }
        }

        /// Checks the tag that ends `ciphertext` and decrypts the rest into `output`.
        ///
        /// - Parameters:
        ///   - nonce: 12 nonce bytes.
        ///   - additional: The additional data the message was sealed with.
        ///   - ciphertext: The ciphertext followed by its 16-byte tag.
        ///   - output: At least `ciphertext.count - 16` bytes; may start at `ciphertext`'s first
        ///     byte (in place) but must not otherwise overlap it. When the tag is wrong it is
        ///     left all zeros.
        /// - Returns: The plaintext's length, `ciphertext.count - 16`.
        /// - Throws: ``CryptoKitError/authenticationFailure`` when the tag does not match;
        ///   ``CryptoKitError/incorrectParameterSize`` when `ciphertext` is shorter than a tag.
        @discardableResult
        package func open(
            nonce: UnsafeRawBufferPointer, authenticating additional: UnsafeRawBufferPointer,
            ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
        ) throws -> Int {
            precondition(nonce.count == ChaChaPoly.nonceByteCount, "ChaChaPoly: the nonce is 12 bytes")
            guard ciphertext.count >= ChaChaPoly.tagByteCount else { throw CryptoKitError.incorrectParameterSize }
            let length = ciphertext.count - ChaChaPoly.tagByteCount
            precondition(output.count >= length, "ChaChaPoly: output too small")
            let body = UnsafeRawBufferPointer(rebasing: ciphertext[..<length])
            Self.checkAliasing(UnsafeRawPointer(output.baseAddress), body)
            // The tag must survive an in-place decryption that writes over the bytes before it.
            var tag: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &tag) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: ciphertext[length...])) }
            let valid = bytes.withUnsafeBytes { key in
                withUnsafeBytes(of: tag) { tagBytes in
                    ChaChaPoly.openRaw(
                        backend: backend, key: key, nonce: nonce, authenticating: additional, ciphertext: body,
                        // An empty output has no address; nothing is written for an empty
                        // message, so any valid pointer will do.
                        plaintext: output.baseAddress ?? UnsafeMutableRawPointer(mutating: ciphertext.baseAddress!),
                        tag: tagBytes.baseAddress!)
                }
            }
            guard valid else { throw CryptoKitError.authenticationFailure }
            return length
        }

        /// Seals with the Noise nonce for `counter`: four zero bytes, then the counter little-endian.
        ///
        /// - Parameters:
        ///   - counter: The message number; never the same twice for one key.
        ///   - additional: Data the tag covers but that is not encrypted.
        ///   - plaintext: The message.
        ///   - output: At least `plaintext.count + 16` bytes; may be `plaintext`'s own memory.
        package func seal(
            counter: UInt64, authenticating additional: UnsafeRawBufferPointer, plaintext: UnsafeRawBufferPointer,
            into output: UnsafeMutableRawBufferPointer
        ) {
            Self.withCounterNonce(counter) { nonce in
                seal(nonce: nonce, authenticating: additional, plaintext: plaintext, into: output)
            }
        }

        /// Opens with the Noise nonce for `counter`: four zero bytes, then the counter little-endian.
        ///
        /// - Parameters:
        ///   - counter: The message number it was sealed with.
        ///   - additional: The additional data it was sealed with.
        ///   - ciphertext: The ciphertext followed by its tag.
        ///   - output: At least `ciphertext.count - 16` bytes; may be `ciphertext`'s own memory.
        /// - Returns: The plaintext's length.
        /// - Throws: ``CryptoKitError/authenticationFailure`` when the tag does not match.
        @discardableResult
        package func open(
            counter: UInt64, authenticating additional: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer,
            into output: UnsafeMutableRawBufferPointer
        ) throws -> Int {
            try Self.withCounterNonce(counter) { nonce in
                try open(nonce: nonce, authenticating: additional, ciphertext: ciphertext, into: output)
            }
        }

        /// Calls `body` with the 12-byte nonce Noise uses for message number `counter`.
        private static func withCounterNonce<R>(_ counter: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R)
            rethrows -> R
        {
            let nonce: (UInt32, UInt32, UInt32) = (
                0, UInt32(truncatingIfNeeded: counter).littleEndian, UInt32(truncatingIfNeeded: counter >> 32).littleEndian
            )
            return try withUnsafeBytes(of: nonce, body)
        }

        /// Traps when `length` bytes of output at `output` overlap `input` at all.
        private static func checkDisjoint(_ output: UnsafeRawPointer?, _ length: Int, _ input: UnsafeRawBufferPointer) {
            guard let output, let start = input.baseAddress, !input.isEmpty, length > 0 else { return }
            precondition(
                output >= start + input.count || output + length <= start,
                "ChaChaPoly: a sealed piece must not overlap the output")
        }

        /// Traps when an output buffer overlaps its input other than exactly in place.
        private static func checkAliasing(_ output: UnsafeRawPointer?, _ input: UnsafeRawBufferPointer) {
            guard let output, let start = input.baseAddress, !input.isEmpty else { return }
            precondition(
                output == start || output >= start + input.count || output + input.count <= start,
                "ChaChaPoly: the output must be the input's memory exactly, or not overlap it")
        }
    }
}
