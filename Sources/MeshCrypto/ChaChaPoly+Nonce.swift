import Foundation

extension ChaChaPoly {
    /// A 12-byte ChaCha20-Poly1305 nonce: never seal two messages with the same key and nonce.
    public struct Nonce: ContiguousBytes, Sequence, Sendable {
        /// The 12 bytes in order; the tuple's memory is the nonce.
        let storage: (UInt32, UInt32, UInt32)

        /// A random nonce from the system's secure random number generator.
        public init() {
            var generator = SystemRandomNumberGenerator()
            storage = (generator.next(), generator.next(), generator.next())
        }

        /// A nonce from existing bytes, e.g. one received from a peer.
        ///
        /// - Parameters:
        ///   - data: Exactly 12 bytes.
        /// - Throws: ``CryptoKitError/incorrectParameterSize`` when `data` is not 12 bytes.
        public init<D: DataProtocol>(data: D) throws {
            guard data.count == ChaChaPoly.nonceByteCount else { throw CryptoKitError.incorrectParameterSize }
            var storage: (UInt32, UInt32, UInt32) = (0, 0, 0)
            withUnsafeMutableBytes(of: &storage) { bytes in
                bytes.copyBytes(from: data)
            }
            self.storage = storage
        }

        /// Calls `body` with the 12 nonce bytes.
        ///
        /// - Parameters:
        ///   - body: A closure that reads the bytes; the pointer is valid only during the call.
        /// - Returns: What `body` returns.
        /// - Throws: What `body` throws.
        public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try Swift.withUnsafeBytes(of: storage, body)
        }

        /// The nonce's bytes in order.
        public func makeIterator() -> Array<UInt8>.Iterator {
            withUnsafeBytes { Array($0) }.makeIterator()
        }
    }
}
