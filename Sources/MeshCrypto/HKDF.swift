import Foundation

/// HKDF (RFC 5869): derives keys from input keying material, extract then expand, over ``HMAC``.
///
/// ```swift
/// let sessionKey = HKDF<SHA256>.deriveKey(
///     inputKeyMaterial: key, salt: nonces, info: Array("purpose".utf8), outputByteCount: 32)
/// ```
///
/// CryptoKit's shape (`HKDF<H>.deriveKey`), with byte arrays for salt and info.
public enum HKDF<H: HashFunction> {
    /// Extract: `PRK = HMAC(salt, IKM)`; an empty salt means a block of zeros' worth (RFC 5869 2.2).
    ///
    /// - Parameters:
    ///   - inputKeyMaterial: The secret to derive from.
    ///   - salt: Optional non-secret randomness; empty is allowed.
    /// - Returns: The pseudorandom key, one digest long.
    public static func extract(inputKeyMaterial: SymmetricKey, salt: [UInt8]) -> SymmetricKey {
        let saltKey = SymmetricKey(data: salt.isEmpty ? [UInt8](repeating: 0, count: H.Digest.byteCount) : salt)
        let prk = inputKeyMaterial.withUnsafeBytes { ikm in
            var mac = HMAC<H>(key: saltKey)
            mac.update(bufferPointer: ikm)
            return Array(mac.finalize())
        }
        return SymmetricKey(data: prk)
    }

    /// Expand: `T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i)`, concatenated and cut to `outputByteCount`.
    ///
    /// - Parameters:
    ///   - pseudoRandomKey: The output of ``extract(inputKeyMaterial:salt:)``.
    ///   - info: Context that binds the output to its use.
    ///   - outputByteCount: At most 255 digests.
    /// - Returns: The derived key.
    public static func expand(pseudoRandomKey: SymmetricKey, info: [UInt8], outputByteCount: Int) -> SymmetricKey {
        precondition(outputByteCount >= 0 && outputByteCount <= 255 * H.Digest.byteCount, "HKDF: output too long")
        let key = HMAC<H>.Key(pseudoRandomKey)
        var output: [UInt8] = []
        output.reserveCapacity(outputByteCount)
        var previous: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < outputByteCount {
            var mac = HMAC<H>(key: key)
            mac.update(data: previous)
            mac.update(data: info)
            mac.update(data: [counter])
            previous = Array(mac.finalize())
            output.append(contentsOf: previous.prefix(outputByteCount - output.count))
            counter &+= 1
        }
        return SymmetricKey(data: output)
    }

    /// Extract then expand.
    ///
    /// - Parameters:
    ///   - inputKeyMaterial: The secret to derive from.
    ///   - salt: Optional non-secret randomness.
    ///   - info: Context that binds the output to its use.
    ///   - outputByteCount: The derived key's length.
    /// - Returns: The derived key.
    public static func deriveKey(
        inputKeyMaterial: SymmetricKey, salt: [UInt8] = [], info: [UInt8] = [], outputByteCount: Int
    ) -> SymmetricKey {
        expand(
            pseudoRandomKey: extract(inputKeyMaterial: inputKeyMaterial, salt: salt), info: info,
            outputByteCount: outputByteCount)
    }
}
