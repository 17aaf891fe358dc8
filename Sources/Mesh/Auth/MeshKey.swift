import MeshCrypto
import Synchronization

/// Turns the text of a mesh key into the key the handshake uses.
///
/// A key is text (what `mesh keygen` prints, a file's contents, `$MESH_AUTHKEY`): at least
/// ``minimumLength`` bytes of UTF-8. It is stretched with PBKDF2-HMAC-SHA256 (100,000 rounds,
/// a fixed salt) before use, so that a recorded handshake costs an offline guesser that many
/// MACs per guess. Every process stretches each key once (about 50 ms) and keeps the result.
public enum MeshKey {
    /// The shortest key accepted, in bytes of UTF-8.
    public static let minimumLength = 16
    /// PBKDF2 iterations; part of the protocol (every side must use the same).
    static let rounds = 100_000
    static let salt = Array("swift-mesh/2 authkey".utf8)

    private static let cache = Mutex<[String: SymmetricKey]>([:])

    /// Checks that `text` is long enough to be a key.
    ///
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` naming `mesh keygen`.
    public static func validate(_ text: String) throws(MeshError) {
        let length = text.utf8.count
        if length < minimumLength { throw .weakKey(length: length, minimum: minimumLength) }
    }

    /// The stretched key for `text`, or `nil` for none (an open mesh): `nil` and "" mean no key.
    ///
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` for a key under ``minimumLength`` bytes.
    package static func stretched(_ text: String?) throws(MeshError) -> SymmetricKey? {
        guard let text, !text.isEmpty else { return nil }
        try validate(text)
        if let known = cache.withLock({ $0[text] }) { return known }
        let key = PBKDF2<SHA256>.deriveKey(password: Array(text.utf8), salt: salt, rounds: rounds, outputByteCount: 32)
        cache.withLock { cache in
            if cache.count > 64 { cache.removeAll() }  // bounded: a process uses one or two keys
            cache[text] = key
        }
        return key
    }
}
