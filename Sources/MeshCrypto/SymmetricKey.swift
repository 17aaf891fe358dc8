import Foundation

/// Secret key bytes for ``HMAC``.
///
/// Printing a key shows its size, never its bytes; `==` compares in constant time.
public struct SymmetricKey: Sendable, ContiguousBytes, Equatable, CustomStringConvertible,
    CustomDebugStringConvertible
{
    /// The key bytes.
    @usableFromInline
    let bytes: [UInt8]

    /// Creates a key from existing secret bytes.
    ///
    /// - Parameters:
    ///   - data: The key bytes, any length (HMAC hashes keys longer than its block size).
    @inlinable
    public init<D: DataProtocol>(data: D) {
        bytes = Array(data)
    }

    /// Creates a key from a key agreement's shared secret, as swift-crypto's
    /// `SymmetricKey(data:)` for any `ContiguousBytes` does. Prefer deriving one with
    /// ``SharedSecret/hkdfDerivedSymmetricKey(using:salt:sharedInfo:outputByteCount:)``.
    ///
    /// - Parameters:
    ///   - data: The shared secret; its 32 bytes become the key.
    public init(data: SharedSecret) {
        bytes = data.withUnsafeBytes { Array($0) }
    }

    /// Creates a random key from the system's secure random number generator.
    ///
    /// - Parameters:
    ///   - size: The key length.
    public init(size: SymmetricKeySize) {
        var generator = SystemRandomNumberGenerator()
        bytes = (0..<size.bitCount / 8).map { _ in generator.next() }
    }

    /// The key length in bits.
    public var bitCount: Int { bytes.count * 8 }

    /// Calls `body` with the key bytes.
    ///
    /// - Parameters:
    ///   - body: A closure that reads the bytes; the pointer is valid only during the call.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }

    /// Compares two keys without stopping at the first differing byte.
    public static func == (lhs: SymmetricKey, rhs: SymmetricKey) -> Bool {
        constantTimeEquals(lhs.bytes, rhs.bytes)
    }

    /// The key's size, not its bytes.
    public var description: String { "SymmetricKey(\(bitCount) bits)" }

    /// The key's size, not its bytes.
    public var debugDescription: String { description }
}

/// The length of a randomly generated ``SymmetricKey``.
public struct SymmetricKeySize: Sendable, Hashable {
    /// The length in bits, a positive multiple of 8.
    public let bitCount: Int

    /// A size in bits.
    ///
    /// - Parameters:
    ///   - bitCount: A positive multiple of 8.
    public init(bitCount: Int) {
        precondition(bitCount > 0 && bitCount % 8 == 0, "SymmetricKeySize: \(bitCount) is not a positive multiple of 8")
        self.bitCount = bitCount
    }

    /// 128 bits.
    public static let bits128 = SymmetricKeySize(bitCount: 128)
    /// 192 bits.
    public static let bits192 = SymmetricKeySize(bitCount: 192)
    /// 256 bits, the usual choice for HMAC-SHA256.
    public static let bits256 = SymmetricKeySize(bitCount: 256)
}
