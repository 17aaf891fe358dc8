import Foundation

extension ChaChaPoly {
    /// A sealed message: nonce, ciphertext and tag, as sent over the wire.
    public struct SealedBox: Sendable {
        /// The nonce (12 bytes), the ciphertext, then the tag (16 bytes), in one buffer.
        public let combined: Data

        /// The 16-byte authentication tag.
        public var tag: Data {
            Data(combined.suffix(ChaChaPoly.tagByteCount))
        }

        /// The encrypted message, as long as the plaintext.
        public var ciphertext: Data {
            Data(combined.dropFirst(ChaChaPoly.nonceByteCount).dropLast(ChaChaPoly.tagByteCount))
        }

        /// The nonce the message was sealed with.
        public var nonce: ChaChaPoly.Nonce {
            var storage: (UInt32, UInt32, UInt32) = (0, 0, 0)
            withUnsafeMutableBytes(of: &storage) { bytes in
                bytes.copyBytes(from: combined.prefix(ChaChaPoly.nonceByteCount))
            }
            return Nonce(storage: storage)
        }

        /// A sealed box from its combined form, as received.
        ///
        /// - Parameters:
        ///   - combined: The nonce, ciphertext and tag, in that order.
        /// - Throws: ``CryptoKitError/incorrectParameterSize`` when shorter than a nonce and a tag.
        public init<D: DataProtocol>(combined: D) throws {
            guard combined.count >= ChaChaPoly.nonceByteCount + ChaChaPoly.tagByteCount else {
                throw CryptoKitError.incorrectParameterSize
            }
            self.combined = Data(combined)
        }

        /// A sealed box from its three parts.
        ///
        /// - Parameters:
        ///   - nonce: The nonce it was sealed with.
        ///   - ciphertext: The encrypted message.
        ///   - tag: The 16-byte tag.
        /// - Throws: ``CryptoKitError/incorrectParameterSize`` unless `tag` is 16 bytes.
        public init<C: DataProtocol, T: DataProtocol>(nonce: ChaChaPoly.Nonce, ciphertext: C, tag: T) throws {
            guard tag.count == ChaChaPoly.tagByteCount else { throw CryptoKitError.incorrectParameterSize }
            var combined = Data(capacity: ChaChaPoly.nonceByteCount + ciphertext.count + tag.count)
            nonce.withUnsafeBytes { combined.append(contentsOf: $0) }
            combined.append(contentsOf: ciphertext)
            combined.append(contentsOf: tag)
            self.combined = combined
        }

        /// Wraps a combined buffer `seal` produced, which is long enough by construction.
        init(validatedCombined: Data) {
            combined = validatedCombined
        }
    }
}

extension ChaChaPoly.Nonce {
    /// A nonce from bytes already read.
    init(storage: (UInt32, UInt32, UInt32)) {
        self.storage = storage
    }
}
