/// What MeshCrypto's key agreement and encryption throw, with CryptoKit's name and cases.
///
/// swift-crypto's `CryptoKitError` has these cases and a few more that only its platform
/// backends produce; code that catches these moves between the two libraries unchanged.
public enum CryptoKitError: Error, Hashable, Sendable {
    /// A key has the wrong length: X25519 keys are 32 bytes and ChaChaPoly keys 256 bits.
    case incorrectKeySize
    /// An input has the wrong length: a nonce that is not 12 bytes, or a sealed box shorter than
    /// its nonce and tag.
    case incorrectParameterSize
    /// A sealed box did not open: its tag does not match the key, nonce, ciphertext and
    /// authenticated data, so it was forged, corrupted or sealed under something else.
    case authenticationFailure
    /// An input is well formed but unusable: an X25519 public key that is a point of small order,
    /// for which the shared secret would be all zeros (RFC 7748 section 6.1).
    case invalidParameter
}

/// CryptoKit's other name for ``CryptoKitError``.
public typealias CryptoError = CryptoKitError
