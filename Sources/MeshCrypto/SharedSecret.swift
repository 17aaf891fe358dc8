import Foundation

/// The result of a key agreement: secret bytes to derive keys from, not to use as a key directly.
///
/// swift-crypto's type. Printing one shows no secret bytes, and `==` compares in constant time.
public struct SharedSecret: ContiguousBytes, Sendable, Hashable, CustomStringConvertible {
    /// The 32 secret bytes.
    let bytes: Bytes32

    init(bytes: Bytes32) {
        self.bytes = bytes
    }

    /// Calls `body` with the secret bytes.
    ///
    /// - Parameters:
    ///   - body: A closure that reads the bytes; the pointer is valid only during the call.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }

    /// Derives a symmetric key from the secret with HKDF (RFC 5869).
    ///
    /// - Parameters:
    ///   - hashFunction: The hash HKDF runs on, e.g. `SHA256.self`.
    ///   - salt: Non-secret randomness or a fixed context string; may be empty.
    ///   - sharedInfo: Context binding the key to its use.
    ///   - outputByteCount: The key's length, at most 255 digests.
    /// - Returns: The derived key.
    public func hkdfDerivedSymmetricKey<H: HashFunction, Salt: DataProtocol, SI: DataProtocol>(
        using hashFunction: H.Type, salt: Salt, sharedInfo: SI, outputByteCount: Int
    ) -> SymmetricKey {
        let secret = bytes.withUnsafeBytes { SymmetricKey(data: $0) }
        return HKDF<H>.deriveKey(
            inputKeyMaterial: secret, salt: Array(salt), info: Array(sharedInfo), outputByteCount: outputByteCount)
    }

    /// Compares two secrets without stopping at the first differing byte.
    public static func == (lhs: SharedSecret, rhs: SharedSecret) -> Bool {
        Bytes32.constantTimeEquals(lhs.bytes, rhs.bytes)
    }

    /// Compares the secret with bytes without stopping at the first differing byte.
    ///
    /// - Parameters:
    ///   - lhs: The secret.
    ///   - rhs: Bytes, e.g. an expected value in a test.
    /// - Returns: `true` when `rhs` holds exactly the secret's bytes.
    public static func == <D: DataProtocol>(lhs: SharedSecret, rhs: D) -> Bool {
        lhs.withUnsafeBytes { secret in withContiguousBytes(of: rhs) { constantTimeEquals(secret, $0) } }
    }

    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// Says what the value is, never its bytes.
    public var description: String { "SharedSecret(32 bytes)" }
}
