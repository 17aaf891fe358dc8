import Foundation

/// The 32-byte output of ``SHA256``.
///
/// Iterating yields the bytes in order (`Array(digest)`), `description` is lowercase hex, and `==`
/// looks at every byte whatever the inputs, so comparing against a secret leaks no timing.
public struct SHA256Digest: Digest {
    /// Every SHA-256 digest is 32 bytes.
    public static let byteCount = 32

    /// The digest bytes in order, stored inline: the memory of this tuple is the digest.
    let storage: (UInt64, UInt64, UInt64, UInt64)

    /// Serializes the final state words big-endian.
    init(state: SHA256.Words) {
        var storage: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        Swift.withUnsafeBytes(of: state) { words in
            withUnsafeMutableBytes(of: &storage) { bytes in
                for index in 0..<8 {
                    let word = words.load(fromByteOffset: 4 * index, as: UInt32.self)
                    bytes.storeBytes(of: word.bigEndian, toByteOffset: 4 * index, as: UInt32.self)
                }
            }
        }
        self.storage = storage
    }

    /// Calls `body` with the 32 digest bytes.
    ///
    /// - Parameters:
    ///   - body: A closure that reads the bytes; the pointer is valid only during the call.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage, body)
    }

    /// The digest as 64 lowercase hex digits.
    public var description: String {
        withUnsafeBytes { lowercaseHex($0) }
    }

    /// Compares all 32 bytes without stopping at the first difference.
    public static func == (lhs: SHA256Digest, rhs: SHA256Digest) -> Bool {
        let difference =
            (lhs.storage.0 ^ rhs.storage.0) | (lhs.storage.1 ^ rhs.storage.1)
            | (lhs.storage.2 ^ rhs.storage.2) | (lhs.storage.3 ^ rhs.storage.3)
        return difference == 0
    }

    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public func makeIterator() -> Iterator {
        Iterator(storage: storage)
    }

    /// Yields a digest's bytes in order.
    public struct Iterator: IteratorProtocol, Sendable {
        let storage: (UInt64, UInt64, UInt64, UInt64)
        var offset = 0

        public mutating func next() -> UInt8? {
            guard offset < SHA256Digest.byteCount else { return nil }
            defer { offset += 1 }
            return Swift.withUnsafeBytes(of: storage) { $0[offset] }
        }
    }

    public var underestimatedCount: Int { Self.byteCount }
}
