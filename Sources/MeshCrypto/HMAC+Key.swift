import Foundation

extension HMAC {
    /// A secret key with its HMAC padding already hashed, for authenticating many messages.
    ///
    /// Holds the hash states after absorbing `key ⊕ ipad` and `key ⊕ opad` (RFC 2104), so each MAC
    /// made from it skips those two blocks. MeshCrypto's addition: CryptoKit has no equivalent, and
    /// code moving there passes the ``SymmetricKey`` instead.
    public struct Key: Sendable {
        /// The hash state after the key XOR 0x36 block.
        @usableFromInline
        let inner: H

        /// The hash state after the key XOR 0x5c block.
        @usableFromInline
        let outer: H

        /// Prepares a key.
        ///
        /// - Parameters:
        ///   - key: The secret key; one longer than the hash's block is hashed first.
        @inlinable
        public init(_ key: SymmetricKey) {
            self.init(key, startingFrom: H())
        }

        /// Prepares a key, starting every hash from copies of `hasher`.
        ///
        /// - Parameters:
        ///   - key: The secret key; one longer than the hash's block is hashed first.
        ///   - hasher: A fresh hasher; tests pass one configured with a particular backend.
        @_spi(Testing)
        public init(_ key: SymmetricKey, hasher: H) {
            self.init(key, startingFrom: hasher)
        }

        /// Hashes the padded key blocks, starting every hash from copies of `hasher`.
        @usableFromInline
        init(_ key: SymmetricKey, startingFrom hasher: H) {
            let blockByteCount = H.blockByteCount
            precondition(H.Digest.byteCount <= blockByteCount, "HMAC: digest longer than the hash's block")
            (inner, outer) = withUnsafeTemporaryAllocation(byteCount: blockByteCount, alignment: 16) { pad in
                pad.initializeMemory(as: UInt8.self, repeating: 0)
                key.withUnsafeBytes { keyBytes in
                    if keyBytes.count > blockByteCount {
                        var keyHasher = hasher
                        keyHasher.update(bufferPointer: keyBytes)
                        keyHasher.finalize().withUnsafeBytes { pad.copyMemory(from: $0) }
                    } else {
                        pad.copyMemory(from: keyBytes)
                    }
                }

                for index in 0..<blockByteCount { pad[index] ^= 0x36 }
                var inner = hasher
                inner.update(bufferPointer: UnsafeRawBufferPointer(pad))

                for index in 0..<blockByteCount { pad[index] ^= 0x36 ^ 0x5c }
                var outer = hasher
                outer.update(bufferPointer: UnsafeRawBufferPointer(pad))

                // The pad is key material; leave none of it behind on the stack.
                pad.initializeMemory(as: UInt8.self, repeating: 0)
                return (inner, outer)
            }
        }
    }
}
