/// The Noise Protocol Framework (revision 34) for the suite `25519_ChaChaPoly_SHA256`: X25519,
/// ChaCha20-Poly1305 and SHA-256.
///
/// ```swift
/// var initiator = try Noise.HandshakeState(
///     protocolName: "Noise_XX_25519_ChaChaPoly_SHA256", role: .initiator, staticKey: myKey)
/// let first = try initiator.writeMessage()               // -> e
/// let payload = try initiator.readMessage(second)        // <- e, ee, s, es
/// let third = try initiator.writeMessage(payload: hello)  // -> s, se
/// var (send, receive) = try initiator.split()            // transport CipherStates
/// let ciphertext = try send.encrypt(plaintext)
/// ```
///
/// The three layers follow the specification's sections 5.1 to 5.3 name for name, so each can
/// be read against the text:
///
/// - ``CipherState`` is a key and a 64-bit nonce counter: `EncryptWithAd`, `DecryptWithAd`,
///   `Rekey`. The nonce is four zero bytes then the counter little-endian.
/// - ``SymmetricState`` is the chaining key `ck` and handshake hash `h`: `MixKey`, `MixHash`,
///   `MixKeyAndHash`, `EncryptAndHash`, `DecryptAndHash`, `Split`. Its `HKDF` is the
///   specification's (HMAC-SHA256 extract, then two or three expand blocks), which is RFC 5869's
///   HKDF with the chaining key as salt and empty info.
/// - ``HandshakeState`` interprets a ``HandshakePattern``'s tokens (`e`, `s`, `ee`, `es`, `se`,
///   `ss`, `psk`) after mixing the pre-message keys, so every pattern of the specification,
///   fundamental, one-way or deferred, with any `psk` modifiers, works from one table of
///   pattern strings.
///
/// The types are `package`: the mesh's transport builds on them, and MeshCrypto's public API
/// stays CryptoKit's shape. Everything is checked against the cacophony test vectors for this
/// suite in `Tests/MeshCryptoTests`.
package enum Noise {
    /// The longest Noise message, handshake or transport: 65,535 bytes.
    package static let maximumMessageLength = 65_535

    /// The length of a hash output and of a DH public key in this suite.
    static let hashLength = 32
    static let dhLength = 32

    /// What goes wrong in a Noise handshake or session.
    package enum Error: Swift.Error, Hashable, Sendable, CustomStringConvertible {
        /// The protocol name is not `Noise_<pattern>_25519_ChaChaPoly_SHA256` with a pattern this
        /// implementation knows.
        case unsupportedProtocol(String)
        /// The pattern needs a key that was not given, e.g. the responder's static key for `NK`.
        case missingKey(String)
        /// Fewer pre-shared keys than the pattern's `psk` tokens, or one not 32 bytes long.
        case badPresharedKeys
        /// `writeMessage` on the side that should read next, or the other way round.
        case notMyTurn
        /// The handshake has already sent or received its last message.
        case handshakeFinished
        /// `split` before the handshake's last message.
        case handshakeNotFinished
        /// A message shorter than the keys and tags its pattern promises.
        case messageTooShort
        /// A message over 65,535 bytes, or one that would become longer than that.
        case messageTooLong(Int)
        /// A message whose tag does not match: forged, corrupted, replayed or out of order.
        case decryptionFailed
        /// The peer's public key is a point of small order, so DH gives all zeros.
        case invalidPublicKey
        /// The cipher state's nonce reached 2^64 - 1; the session must rekey or end.
        case nonceExhausted

        package var description: String {
            switch self {
            case .unsupportedProtocol(let name): "Noise: unsupported protocol name \(name)"
            case .missingKey(let which): "Noise: the pattern needs \(which), which was not given"
            case .badPresharedKeys: "Noise: the pattern's psk tokens need that many 32-byte pre-shared keys"
            case .notMyTurn: "Noise: it is the other side's turn to send"
            case .handshakeFinished: "Noise: the handshake is already finished"
            case .handshakeNotFinished: "Noise: the handshake is not finished yet"
            case .messageTooShort: "Noise: message too short for its pattern"
            case .messageTooLong(let length): "Noise: message of \(length) bytes is over 65,535"
            case .decryptionFailed: "Noise: message failed authentication"
            case .invalidPublicKey: "Noise: the peer's public key has small order"
            case .nonceExhausted: "Noise: nonce exhausted; rekey or start a new session"
            }
        }
    }

    /// Which side of a handshake this is.
    package enum Role: Sendable, Hashable {
        /// Sends the first handshake message.
        case initiator
        /// Receives the first handshake message.
        case responder
    }
}
