import Foundation

/// ChaCha20-Poly1305 (RFC 8439): authenticated encryption with a 256-bit ``SymmetricKey``.
///
/// ```swift
/// let key = SymmetricKey(size: .bits256)
/// let box = try ChaChaPoly.seal(message, using: key, authenticating: header)
/// let wire = box.combined                      // nonce ‖ ciphertext ‖ tag
/// let opened = try ChaChaPoly.open(ChaChaPoly.SealedBox(combined: wire), using: key, authenticating: header)
/// ```
///
/// The API has swift-crypto's shape. Without a nonce, `seal` draws a random 12-byte one; a
/// (key, nonce) pair must never seal two different messages.
///
/// How it works: our C target `CMeshChaCha` does the arithmetic. On AVX2 (checked once with
/// `cpuid`), ChaCha20 runs eight blocks at once and Poly1305 (radix 2^64, 128-bit products)
/// absorbs 64 bytes of ciphertext between the column and diagonal rounds, so the vector and the
/// multiply units work side by side; elsewhere both run one block at a time in portable C.
/// Opening checks the tag in constant time and never returns (or leaves in an output buffer) a
/// byte of a message whose tag is wrong. No branch or memory address depends on the key or the
/// data.
public enum ChaChaPoly {
    /// Every tag is 16 bytes.
    static let tagByteCount = 16
    /// Every nonce is 12 bytes.
    static let nonceByteCount = 12
    /// Every key is 32 bytes.
    static let keyByteCount = 32

    /// Encrypts and authenticates a message, and authenticates additional data sent in the clear.
    ///
    /// - Parameters:
    ///   - message: The plaintext.
    ///   - key: A 256-bit key.
    ///   - nonce: A nonce never used before with this key; `nil` draws a random one.
    ///   - authenticatedData: Data the tag covers but that is not encrypted, such as a header.
    /// - Returns: The nonce, ciphertext and tag.
    /// - Throws: ``CryptoKitError/incorrectKeySize`` unless `key` is 256 bits.
    public static func seal<Plaintext: DataProtocol, AuthenticatedData: DataProtocol>(
        _ message: Plaintext, using key: SymmetricKey, nonce: Nonce? = nil,
        authenticating authenticatedData: AuthenticatedData
    ) throws -> SealedBox {
        let prepared = try Key(key)
        let nonce = nonce ?? Nonce()
        return withContiguousBytes(of: message) { plaintext in
            withContiguousBytes(of: authenticatedData) { additional in
                var combined = Data(count: nonceByteCount + plaintext.count + tagByteCount)
                combined.withUnsafeMutableBytes { output in
                    nonce.withUnsafeBytes { nonceBytes in
                        output.copyMemory(from: nonceBytes)
                        prepared.seal(
                            nonce: nonceBytes, authenticating: additional, plaintext: plaintext,
                            into: UnsafeMutableRawBufferPointer(rebasing: output[nonceByteCount...]))
                    }
                }
                return SealedBox(validatedCombined: combined)
            }
        }
    }

    /// Encrypts and authenticates a message.
    ///
    /// - Parameters:
    ///   - message: The plaintext.
    ///   - key: A 256-bit key.
    ///   - nonce: A nonce never used before with this key; `nil` draws a random one.
    /// - Returns: The nonce, ciphertext and tag.
    /// - Throws: ``CryptoKitError/incorrectKeySize`` unless `key` is 256 bits.
    public static func seal<Plaintext: DataProtocol>(_ message: Plaintext, using key: SymmetricKey, nonce: Nonce? = nil)
        throws -> SealedBox
    {
        try seal(message, using: key, nonce: nonce, authenticating: EmptyCollection<UInt8>())
    }

    /// Checks a sealed box's tag and decrypts it.
    ///
    /// - Parameters:
    ///   - sealedBox: The nonce, ciphertext and tag received.
    ///   - key: The key it was sealed with.
    ///   - authenticatedData: The additional data it was sealed with.
    /// - Returns: The plaintext.
    /// - Throws: ``CryptoKitError/authenticationFailure`` when the tag does not match (a forged or
    ///   corrupted box, or a wrong key, nonce or additional data);
    ///   ``CryptoKitError/incorrectKeySize`` unless `key` is 256 bits.
    public static func open<AuthenticatedData: DataProtocol>(
        _ sealedBox: SealedBox, using key: SymmetricKey, authenticating authenticatedData: AuthenticatedData
    ) throws -> Data {
        let prepared = try Key(key)
        return try withContiguousBytes(of: authenticatedData) { additional in
            try sealedBox.combined.withUnsafeBytes { combined in
                let ciphertextAndTag = UnsafeRawBufferPointer(rebasing: combined[nonceByteCount...])
                var plaintext = Data(count: ciphertextAndTag.count - tagByteCount)
                _ = try plaintext.withUnsafeMutableBytes { output in
                    try prepared.open(
                        nonce: UnsafeRawBufferPointer(rebasing: combined[..<nonceByteCount]),
                        authenticating: additional, ciphertext: ciphertextAndTag, into: output)
                }
                return plaintext
            }
        }
    }

    /// Checks a sealed box's tag and decrypts it.
    ///
    /// - Parameters:
    ///   - sealedBox: The nonce, ciphertext and tag received.
    ///   - key: The key it was sealed with.
    /// - Returns: The plaintext.
    /// - Throws: ``CryptoKitError/authenticationFailure`` when the tag does not match;
    ///   ``CryptoKitError/incorrectKeySize`` unless `key` is 256 bits.
    public static func open(_ sealedBox: SealedBox, using key: SymmetricKey) throws -> Data {
        try open(sealedBox, using: key, authenticating: EmptyCollection<UInt8>())
    }
}

/// Calls `body` with the bytes of `data`, copying them only when they are not contiguous.
func withContiguousBytes<D: DataProtocol, R>(of data: D, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    if let result = try data.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
        return result
    }
    if data.regions.count == 1, let region = data.regions.first {
        return try region.withUnsafeBytes(body)
    }
    return try Array(data).withUnsafeBytes(body)
}
