extension Noise {
    /// A ChaCha20-Poly1305 key `k` (or none) and a message counter `n` (section 5.1).
    ///
    /// Without a key, encryption and decryption pass bytes through unchanged, as the handshake's
    /// early messages do. A failed decryption leaves the counter where it was.
    package struct CipherState: Sendable {
        /// `k`, or `nil` while empty.
        private var key: ChaChaPoly.Key?

        /// `n`: the next message's nonce.
        package private(set) var nonce: UInt64 = 0

        /// An empty cipher state.
        package init() {}

        /// A cipher state with key `k` and `n = 0`.
        ///
        /// - Parameters:
        ///   - key: 32 bytes.
        package init(key: [UInt8]) {
            initializeKey(key)
        }

        /// `HasKey()`.
        package var hasKey: Bool { key != nil }

        /// `InitializeKey(key)`: sets `k` (or empties it for `nil`) and `n = 0`.
        ///
        /// - Parameters:
        ///   - key: 32 bytes, or `nil` for empty.
        package mutating func initializeKey(_ key: [UInt8]?) {
            self.key = key.map { ChaChaPoly.Key(Bytes32(checked: $0), backend: .preferred) }
            nonce = 0
        }

        /// `SetNonce(nonce)`.
        ///
        /// - Parameters:
        ///   - nonce: The next message's nonce.
        package mutating func setNonce(_ nonce: UInt64) {
            self.nonce = nonce
        }

        /// `EncryptWithAd(ad, plaintext)`: seals with nonce `n` and increments `n`; no key means
        /// the plaintext is returned as it is.
        ///
        /// - Parameters:
        ///   - additional: The associated data.
        ///   - plaintext: The message.
        /// - Returns: The ciphertext and its 16-byte tag.
        /// - Throws: ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1.
        package mutating func encrypt(authenticating additional: [UInt8] = [], _ plaintext: [UInt8]) throws
            -> [UInt8]
        {
            guard let key else { return plaintext }
            guard nonce != .max else { throw Error.nonceExhausted }
            let sealed = Self.seal(key: key, nonce: nonce, additional: additional, plaintext: plaintext)
            nonce += 1
            return sealed
        }

        /// `DecryptWithAd(ad, ciphertext)`: opens with nonce `n` and increments `n` on success;
        /// no key means the ciphertext is returned as it is.
        ///
        /// - Parameters:
        ///   - additional: The associated data.
        ///   - ciphertext: The ciphertext and its tag.
        /// - Returns: The plaintext.
        /// - Throws: ``Noise/Error/decryptionFailed`` when the tag does not match (`n` is then
        ///   unchanged); ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1.
        package mutating func decrypt(authenticating additional: [UInt8] = [], _ ciphertext: [UInt8]) throws
            -> [UInt8]
        {
            guard let key else { return ciphertext }
            guard nonce != .max else { throw Error.nonceExhausted }
            guard ciphertext.count >= ChaChaPoly.tagByteCount else { throw Error.decryptionFailed }
            var plaintext = [UInt8](repeating: 0, count: ciphertext.count - ChaChaPoly.tagByteCount)
            do {
                _ = try plaintext.withUnsafeMutableBytes { output in
                    try additional.withUnsafeBytes { ad in
                        try ciphertext.withUnsafeBytes { input in
                            try key.open(counter: nonce, authenticating: ad, ciphertext: input, into: output)
                        }
                    }
                }
            } catch {
                throw Error.decryptionFailed
            }
            nonce += 1
            return plaintext
        }

        /// Seals a transport message in place: `EncryptWithAd` over the first `count` bytes of
        /// `buffer`, whose tag goes into the 16 bytes after them; `n` goes up by one.
        ///
        /// - Parameters:
        ///   - buffer: The plaintext followed by 16 bytes of room for the tag.
        ///   - count: How many bytes of `buffer` are plaintext.
        ///   - additional: The associated data.
        /// - Throws: ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1;
        ///   ``Noise/Error/missingKey(_:)`` for an empty cipher state.
        package mutating func sealInPlace(
            _ buffer: UnsafeMutableRawBufferPointer, count: Int, authenticating additional: UnsafeRawBufferPointer
        ) throws {
            guard let key else { throw Error.missingKey("a transport key") }
            guard nonce != .max else { throw Error.nonceExhausted }
            precondition(buffer.count >= count + ChaChaPoly.tagByteCount, "sealInPlace: no room for the tag")
            key.seal(
                counter: nonce, authenticating: additional,
                plaintext: UnsafeRawBufferPointer(rebasing: buffer[..<count]), into: buffer)
            nonce += 1
        }

        /// Seals a transport message made of `pieces` into `output`, out of place: `EncryptWithAd`
        /// of the pieces back to back, the ciphertext and then the 16-byte tag written to `output`
        /// (the plaintext is never joined or copied first); `n` goes up by one.
        ///
        /// - Parameters:
        ///   - pieces: The plaintext, in order.
        ///   - output: At least the pieces' total length + 16 bytes, overlapping none of them.
        ///   - additional: The associated data.
        /// - Throws: ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1;
        ///   ``Noise/Error/missingKey(_:)`` for an empty cipher state.
        package mutating func seal(
            _ pieces: [UnsafeRawBufferPointer], into output: UnsafeMutableRawBufferPointer,
            authenticating additional: UnsafeRawBufferPointer
        ) throws {
            guard let key else { throw Error.missingKey("a transport key") }
            guard nonce != .max else { throw Error.nonceExhausted }
            key.seal(counter: nonce, authenticating: additional, pieces: pieces, into: output)
            nonce += 1
        }

        /// Opens a transport message into `output`: checks the tag that ends `ciphertext` and writes
        /// the plaintext there; `n` goes up by one on success only.
        ///
        /// - Parameters:
        ///   - ciphertext: The ciphertext followed by its 16-byte tag.
        ///   - output: At least `ciphertext.count - 16` bytes, not overlapping `ciphertext`.
        ///   - additional: The associated data.
        /// - Returns: The plaintext's length.
        /// - Throws: ``Noise/Error/decryptionFailed`` for a wrong tag or a message shorter than a
        ///   tag; ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1.
        package mutating func open(
            _ ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
            authenticating additional: UnsafeRawBufferPointer
        ) throws -> Int {
            guard let key else { throw Error.missingKey("a transport key") }
            guard nonce != .max else { throw Error.nonceExhausted }
            let length: Int
            do {
                length = try key.open(counter: nonce, authenticating: additional, ciphertext: ciphertext, into: output)
            } catch {
                throw Error.decryptionFailed
            }
            nonce += 1
            return length
        }

        /// Opens a transport message in place: checks the tag that ends `buffer` and decrypts the
        /// bytes before it where they lie; `n` goes up by one on success only.
        ///
        /// - Parameters:
        ///   - buffer: The ciphertext followed by its 16-byte tag.
        ///   - additional: The associated data.
        /// - Returns: The plaintext's length, at the start of `buffer`.
        /// - Throws: ``Noise/Error/decryptionFailed`` for a wrong tag or a buffer shorter than a
        ///   tag; ``Noise/Error/nonceExhausted`` once `n` reached 2^64 - 1.
        package mutating func openInPlace(
            _ buffer: UnsafeMutableRawBufferPointer, authenticating additional: UnsafeRawBufferPointer
        ) throws -> Int {
            guard let key else { throw Error.missingKey("a transport key") }
            guard nonce != .max else { throw Error.nonceExhausted }
            let length: Int
            do {
                length = try key.open(counter: nonce, authenticating: additional, ciphertext: UnsafeRawBufferPointer(buffer), into: buffer)
            } catch {
                throw Error.decryptionFailed
            }
            nonce += 1
            return length
        }

        /// `Rekey()`: replaces `k` with the first 32 bytes of encrypting 32 zeros with nonce
        /// 2^64 - 1 (section 4.2's default `REKEY`); `n` is unchanged.
        package mutating func rekey() {
            guard let key else { return }
            let next = Self.seal(key: key, nonce: .max, additional: [], plaintext: [UInt8](repeating: 0, count: 32))
            self.key = ChaChaPoly.Key(Bytes32(checked: Array(next.prefix(32))), backend: key.backend)
        }

        /// `ENCRYPT(k, n, ad, plaintext)`.
        private static func seal(key: ChaChaPoly.Key, nonce: UInt64, additional: [UInt8], plaintext: [UInt8])
            -> [UInt8]
        {
            var output = [UInt8](repeating: 0, count: plaintext.count + ChaChaPoly.tagByteCount)
            output.withUnsafeMutableBytes { output in
                additional.withUnsafeBytes { ad in
                    plaintext.withUnsafeBytes { input in
                        key.seal(counter: nonce, authenticating: ad, plaintext: input, into: output)
                    }
                }
            }
            return output
        }
    }
}
