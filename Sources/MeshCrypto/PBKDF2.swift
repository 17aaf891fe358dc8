import Foundation

/// PBKDF2 (RFC 8018, section 5.2) over ``HMAC``: a deliberately slow key derivation, so that
/// each guess at a password costs an offline attacker `rounds` MACs.
///
/// ```swift
/// let stretched = PBKDF2<SHA256>.deriveKey(
///     password: Array("a long passphrase".utf8), salt: Array("salt".utf8), rounds: 100_000, outputByteCount: 32)
/// ```
public enum PBKDF2<H: HashFunction> {
    /// Derives `outputByteCount` bytes from `password` and `salt` with `rounds` iterations.
    ///
    /// - Parameters:
    ///   - password: The secret, any length (HMAC hashes one longer than a block).
    ///   - salt: Non-secret bytes that make precomputed tables useless.
    ///   - rounds: Iterations per output block, at least 1.
    ///   - outputByteCount: The derived key's length.
    /// - Returns: The derived key.
    public static func deriveKey(password: [UInt8], salt: [UInt8], rounds: Int, outputByteCount: Int)
        -> SymmetricKey
    {
        precondition(rounds >= 1, "PBKDF2: at least one round")
        precondition(outputByteCount >= 0, "PBKDF2: negative length")
        let key = HMAC<H>.Key(SymmetricKey(data: password))
        var output: [UInt8] = []
        output.reserveCapacity(outputByteCount)
        var block: UInt32 = 1
        while output.count < outputByteCount {
            var mac = HMAC<H>(key: key)
            mac.update(data: salt)
            mac.update(data: [UInt8(block >> 24), UInt8(truncatingIfNeeded: block >> 16),
                              UInt8(truncatingIfNeeded: block >> 8), UInt8(truncatingIfNeeded: block)])
            var u = mac.finalize().digest
            var t = Array(u.withUnsafeBytes { Array($0) })
            for _ in 1..<max(rounds, 1) {
                // One HMAC of the previous block, straight from the prepared pad states.
                var inner = key.inner
                u.withUnsafeBytes { inner.update(bufferPointer: $0) }
                var outer = key.outer
                inner.finalize().withUnsafeBytes { outer.update(bufferPointer: $0) }
                u = outer.finalize()
                u.withUnsafeBytes { bytes in
                    for index in t.indices { t[index] ^= bytes[index] }
                }
            }
            output.append(contentsOf: t.prefix(outputByteCount - output.count))
            block += 1
        }
        return SymmetricKey(data: output)
    }
}
