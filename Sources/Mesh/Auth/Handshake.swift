import MeshCrypto

/// The opening exchange of every mesh connection, as a pure state machine.
///
/// Both sides send a ``hello`` at once: magic bytes, protocol version, whether they use an authkey,
/// and a fresh 32-byte nonce. With a key, the connecting side then proves it with
/// `HMAC(key, "swift-mesh/1 connector" ‖ connectorNonce ‖ acceptorNonce)`; the accepting side checks
/// that in constant time and answers with a verdict byte and its own proof under the label
/// `"swift-mesh/1 acceptor"`. The labels stop a proof being reflected back; the nonces stop one
/// being replayed on another connection; the key never crosses the wire.
///
/// Feed received bytes to ``receive(_:)`` (never more than ``bytesWanted``) and perform the
/// returned actions. No sockets, no clocks: the connection owns those.
struct Handshake: Sendable {
    enum Role: Sendable, Equatable {
        /// The side that dialled.
        case connector
        /// The side that accepted.
        case acceptor
    }

    /// What the connection should do next.
    enum Action: Sendable, Equatable {
        case send([UInt8])
        case established
        case fail(HandshakeError)
    }

    static let magic: [UInt8] = Array("MESH".utf8)
    static let version: UInt8 = 1
    static let nonceLength = 32
    static let helloLength = 4 + 1 + 1 + nonceLength
    static let proofLength = 32
    static let verdictLength = 1 + proofLength
    private static let connectorLabel = Array("swift-mesh/1 connector".utf8)
    private static let acceptorLabel = Array("swift-mesh/1 acceptor".utf8)

    private enum Stage: Sendable, Equatable {
        case idle, awaitingHello, awaitingProof, awaitingVerdict, established, failed
    }

    let role: Role
    private let key: SymmetricKey?
    private let localNonce: [UInt8]
    private var peerNonce: [UInt8] = []
    private var stage = Stage.idle
    private var buffer: [UInt8] = []

    /// - Parameters:
    ///   - role: whether this side dialled or accepted.
    ///   - key: the shared authkey, or `nil` for an open mesh.
    ///   - nonce: 32 bytes; defaults to fresh bytes from the system's secure generator.
    init(role: Role, key: SymmetricKey?, nonce: [UInt8]? = nil) {
        self.role = role
        self.key = key
        self.localNonce = nonce ?? Handshake.freshNonce()
    }

    /// True once the handshake succeeded.
    var isEstablished: Bool { stage == .established }

    /// How many more bytes the current stage needs; the connection reads no more than this.
    var bytesWanted: Int {
        switch stage {
        case .idle, .awaitingHello: return Handshake.helloLength - buffer.count
        case .awaitingProof: return Handshake.proofLength - buffer.count
        case .awaitingVerdict: return Handshake.verdictLength - buffer.count
        case .established, .failed: return 0
        }
    }

    /// Begins the exchange: returns this side's hello to send.
    mutating func start() -> [Action] {
        stage = .awaitingHello
        return [.send(Handshake.magic + [Handshake.version, key == nil ? 0 : 1] + localNonce)]
    }

    /// Consumes bytes from the peer (at most ``bytesWanted``) and returns what to do.
    mutating func receive<Bytes: Collection>(_ bytes: Bytes) -> [Action] where Bytes.Element == UInt8 {
        guard stage != .established, stage != .failed else { return [] }
        if stage == .idle { stage = .awaitingHello }
        buffer.append(contentsOf: bytes)
        var actions: [Action] = []
        // A hello is checked as its first bytes arrive, so a wrong program fails fast.
        if stage == .awaitingHello, let problem = Handshake.helloProblem(buffer) {
            return fail(problem)
        }
        guard bytesWanted <= 0 else { return actions }
        let message = buffer
        buffer.removeAll()
        switch stage {
        case .awaitingHello:
            peerNonce = Array(message[6..<Handshake.helloLength])
            let peerUsesKey = message[5] & 1 == 1
            switch (key, peerUsesKey) {
            case (nil, true): return fail(.peerRequiresKey)
            case (.some, false): return fail(.peerHasNoKey)
            case (nil, false):
                stage = .established
                actions.append(.established)
            case (.some(let key), true):
                if role == .connector {
                    actions.append(.send(proof(label: Handshake.connectorLabel, key: key)))
                    stage = .awaitingVerdict
                } else {
                    stage = .awaitingProof
                }
            }
        case .awaitingProof:
            guard let key else { return fail(.peerRequiresKey) }
            let expected = proof(label: Handshake.connectorLabel, key: key)
            guard constantTimeEquals(message, expected) else {
                actions.append(.send([1] + [UInt8](repeating: 0, count: Handshake.proofLength)))
                return actions + fail(.peerProofInvalid)
            }
            actions.append(.send([0] + proof(label: Handshake.acceptorLabel, key: key)))
            stage = .established
            actions.append(.established)
        case .awaitingVerdict:
            guard let key else { return fail(.peerRequiresKey) }
            guard message[0] == 0 else { return fail(.rejectedByPeer) }
            let expected = proof(label: Handshake.acceptorLabel, key: key)
            guard constantTimeEquals(message[1...], expected) else { return fail(.peerProofInvalid) }
            stage = .established
            actions.append(.established)
        case .idle, .established, .failed:
            break
        }
        return actions
    }

    private mutating func fail(_ error: HandshakeError) -> [Action] {
        stage = .failed
        buffer.removeAll()
        return [.fail(error)]
    }

    /// The MAC this side or the peer must show: over the label, then the connector's nonce, then the acceptor's.
    private func proof(label: [UInt8], key: SymmetricKey) -> [UInt8] {
        let (connectorNonce, acceptorNonce) = role == .connector ? (localNonce, peerNonce) : (peerNonce, localNonce)
        return Array(HMAC<SHA256>.authenticationCode(for: label + connectorNonce + acceptorNonce, using: key))
    }

    /// Checks what has arrived of a hello so far; `nil` while it still looks right.
    private static func helloProblem(_ bytes: [UInt8]) -> HandshakeError? {
        let magicCount = min(bytes.count, magic.count)
        if Array(bytes[0..<magicCount]) != Array(magic[0..<magicCount]) {
            return .notAMeshPeer(firstBytes: bytes)
        }
        if bytes.count > 4, bytes[4] != version {
            return .versionMismatch(peer: bytes[4], local: version)
        }
        return nil
    }

    static func freshNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<nonceLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }
}

/// Why a handshake failed. Each case reads as a sentence about the peer.
enum HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer's first bytes are not a mesh hello (another program on the port).
    case notAMeshPeer(firstBytes: [UInt8])
    /// The peer speaks another protocol version.
    case versionMismatch(peer: UInt8, local: UInt8)
    /// The peer uses an authkey; this side has none.
    case peerRequiresKey
    /// This side has an authkey; the peer uses none.
    case peerHasNoKey
    /// The peer's proof did not match: it holds a different key (or none).
    case peerProofInvalid
    /// The peer checked our proof and rejected it: our key differs from its key.
    case rejectedByPeer
    /// The peer closed the connection during the handshake.
    case closedDuringHandshake
    /// The handshake did not finish within its deadline.
    case timedOut(seconds: Int)
    /// Closed to make room: more connections than the limit were mid-handshake, and this one had waited longest.
    case evicted(limit: Int)

    /// True for failures caused by the key, as opposed to the protocol.
    var isAuthenticationFailure: Bool {
        switch self {
        case .peerRequiresKey, .peerHasNoKey, .peerProofInvalid, .rejectedByPeer: return true
        default: return false
        }
    }

    var description: String {
        switch self {
        case .notAMeshPeer(let bytes):
            let printable = String(decoding: bytes.prefix(16), as: UTF8.self)
                .map { $0.isASCII && !$0.isNewline && $0 != "\0" ? String($0) : "." }.joined()
            return "peer is not a mesh peer (its first bytes were \"\(printable)\"); is another program on this port?"
        case .versionMismatch(let peer, let local):
            return "protocol mismatch: peer speaks mesh protocol version \(peer), this build speaks version \(local)"
        case .peerRequiresKey:
            return "peer requires an authkey but none is configured here (set MESH_AUTHKEY or pass --authkey)"
        case .peerHasNoKey:
            return "an authkey is configured here but the peer does not use one"
        case .peerProofInvalid:
            return "peer failed to prove it knows the authkey (wrong key)"
        case .rejectedByPeer:
            return "peer rejected our authkey (wrong key)"
        case .closedDuringHandshake:
            return "peer closed the connection during the handshake (wrong key, or a different protocol?)"
        case .timedOut(let seconds):
            return "no handshake from peer within \(seconds) s"
        case .evicted(let limit):
            return "closed mid-handshake to make room: over \(limit) connections were waiting to authenticate"
        }
    }
}
