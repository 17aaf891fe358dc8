@_spi(Testing) import MeshCrypto

/// The SHA-256 compression functions this machine can run, for tests that must cover each one.
let availableBackends: [SHA256.Backend] = {
    if !SHA256.Backend.acceleratedIsAvailable {
        print("MeshCryptoTests: no SHA extensions on this CPU (or built without CMeshSHA); testing the portable backend only")
    }
    return SHA256.Backend.allCases.filter { $0 == .portable || SHA256.Backend.acceleratedIsAvailable }
}()

/// SHA-256 of `message` on one backend.
func sha256(_ message: [UInt8], backend: SHA256.Backend) -> SHA256Digest {
    var hasher = SHA256(backend: backend)
    hasher.update(data: message)
    return hasher.finalize()
}

/// A prepared HMAC-SHA256 key whose hashing runs on one backend.
func hmacKey(_ key: [UInt8], backend: SHA256.Backend) -> HMAC<SHA256>.Key {
    HMAC<SHA256>.Key(SymmetricKey(data: key), hasher: SHA256(backend: backend))
}

/// HMAC-SHA256 of `message` on one backend.
func hmacSHA256(key: [UInt8], message: [UInt8], backend: SHA256.Backend) -> HashedAuthenticationCode<SHA256> {
    HMAC<SHA256>.authenticationCode(for: message, using: hmacKey(key, backend: backend))
}

/// The ChaCha20 backends this machine can run, for tests that must cover each one.
let availableChaChaBackends: [ChaChaPoly.Backend] = {
    if !ChaChaPoly.Backend.avx2IsAvailable {
        print("MeshCryptoTests: no AVX2 on this CPU; testing the portable ChaCha20 only")
    }
    return ChaChaPoly.Backend.allCases.filter { $0 == .portable || ChaChaPoly.Backend.avx2IsAvailable }
}()
