import Foundation

/// A message authentication code computed by ``HMAC``.
///
/// Iterating yields its bytes (`Array(mac)`), `description` is lowercase hex, and `==` compares
/// every byte without an early exit.
public struct HashedAuthenticationCode<H: HashFunction>: Hashable, Sendable, ContiguousBytes, Sequence,
    CustomStringConvertible
{
    /// The underlying hash of the outer HMAC pass.
    @usableFromInline
    let digest: H.Digest

    @inlinable
    init(digest: H.Digest) {
        self.digest = digest
    }

    /// The code's length in bytes (32 for HMAC-SHA256).
    public var byteCount: Int { H.Digest.byteCount }

    /// Calls `body` with the code's bytes.
    ///
    /// - Parameters:
    ///   - body: A closure that reads the bytes; the pointer is valid only during the call.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try digest.withUnsafeBytes(body)
    }

    /// The code as lowercase hex.
    public var description: String {
        withUnsafeBytes { lowercaseHex($0) }
    }

    public func makeIterator() -> H.Digest.Iterator {
        digest.makeIterator()
    }

    /// Compares every byte without stopping at the first difference.
    @inlinable
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in constantTimeEquals(left, right) }
        }
    }

    public func hash(into hasher: inout Hasher) {
        digest.hash(into: &hasher)
    }
}
