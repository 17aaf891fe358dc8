import MeshCrypto

/// The opening exchange of every mesh connection (protocol version 2), as a pure state machine.
///
/// A hello is magic bytes, protocol version, whether the side uses a key, the connection's
/// ``Purpose``, a fresh 32-byte nonce and the side's node id (zeros for the `mesh` tool). For
/// control, inspect and admin connections the connecting side sends its hello at once; the
/// accepting side reads it, decides whether it serves that purpose and with which key, and answers
/// with a hello of its own (the purpose echoed, or 0 for "not served here"). For **data**
/// connections the order is reversed: a port that serves data (and nothing else) sends its hello
/// as soon as it accepts, and a connector that dials a known node (at an address the topology
/// gave it) writes nothing at all until that hello has arrived with the node id it expected. So a
/// node that advertises someone else's port makes its senders dial that port, but they write not
/// one byte to it. With a key, the connector then proves it with
/// `HMAC(key, "swift-mesh/2 connector" ‖ connectorHello ‖ acceptorHello)`; the acceptor checks
/// that in constant time and answers with a verdict byte and its own proof under the label
/// `"swift-mesh/2 acceptor"`. Both hellos are in both proofs, so the purpose, the nonces and the
/// ids cannot be changed on the way; the labels stop a proof being reflected; the nonces stop one
/// being replayed; the key never crosses the wire.
///
/// A keyed handshake ends with two session keys, one per direction, derived with HKDF-SHA256 from
/// the key and the transcript (see ``SessionKeys``): every frame after it is authenticated.
///
/// Feed received bytes to ``receive(_:)`` (never more than ``bytesWanted``) and perform the
/// returned actions. No sockets, no clocks: the connection owns those.
package struct Handshake: Sendable {
    enum Role: Sendable, Equatable {
        /// The side that dialled.
        case connector
        /// The side that accepted.
        case acceptor
    }

    /// What a connection is for. A port serves some purposes and refuses the others, and the
    /// purpose is inside both proofs, so a handshake made for one cannot be used for another.
    package enum Purpose: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
        /// A node's control connection to the coordinator.
        case control = 1
        /// The `mesh` tool reading the topology.
        case inspect = 2
        /// The `mesh` tool with the admin credential (`status`, `kill`).
        case admin = 3
        /// A node sending messages to a peer node.
        case data = 4

        package var description: String {
            switch self {
            case .control: return "node control"
            case .inspect: return "inspector"
            case .admin: return "admin"
            case .data: return "peer data"
            }
        }
    }

    /// Whether and how an accepting side serves one purpose.
    package enum Access: Sendable, Equatable {
        /// Served with no key.
        case open
        /// Served to peers that prove this key.
        case key(SymmetricKey)
    }

    /// What the connection should do next.
    enum Action: Sendable, Equatable {
        case send([UInt8])
        case established
        case fail(HandshakeError)
    }

    static let magic: [UInt8] = Array("MESH".utf8)
    static let version: UInt8 = 2
    static let nonceLength = 32
    static let idLength = 8
    /// magic, version, flags, purpose, nonce, id.
    static let helloLength = 4 + 1 + 1 + 1 + nonceLength + idLength
    static let proofLength = 32
    static let verdictLength = 1 + proofLength
    private static let connectorLabel = Array("swift-mesh/2 connector".utf8)
    private static let acceptorLabel = Array("swift-mesh/2 acceptor".utf8)

    private enum Stage: Sendable, Equatable {
        case idle, awaitingHello, awaitingProof, awaitingVerdict, established, failed
    }

    let role: Role
    /// The connector's purpose, or for an acceptor the one the peer asked for (once known).
    private(set) var purpose: Purpose?
    /// The connector's key; for an acceptor, the key chosen for the peer's purpose.
    private var key: SymmetricKey?
    /// What an acceptor serves.
    private let served: [Purpose: Access]
    /// The id the connector expects the acceptor to have (a node dialling a peer).
    private let expectedPeerID: [UInt8]?
    /// Drawn when this side's hello is made: an accepted socket that never sends costs none.
    private var localNonce: [UInt8]
    private let localID: [UInt8]
    private var localHello: [UInt8] = []
    private var peerHello: [UInt8] = []
    private var stage = Stage.idle
    private var buffer: [UInt8] = []

    /// The peer's id from its hello (zeros when it has none), once its hello arrived.
    private(set) var peerID: [UInt8] = []
    /// The per-direction keys, once a keyed handshake is established; `nil` for an open mesh.
    private(set) var sessionKeys: SessionKeys?

    /// A connecting side.
    ///
    /// - Parameters:
    ///   - purpose: what the connection is for.
    ///   - key: the stretched authkey, or `nil` for an open mesh.
    ///   - localID: this node's id (8 bytes), or `nil` for none (zeros on the wire).
    ///   - expectedPeerID: the id the acceptor must have, when dialling a known node.
    ///   - nonce: 32 bytes; defaults to fresh bytes from the system's secure generator.
    init(
        connectingFor purpose: Purpose, key: SymmetricKey?, localID: [UInt8]? = nil, expectedPeerID: [UInt8]? = nil,
        nonce: [UInt8]? = nil
    ) {
        self.role = .connector
        self.purpose = purpose
        self.key = key
        self.served = [:]
        self.expectedPeerID = expectedPeerID
        self.localID = localID ?? Handshake.noID
        self.localNonce = nonce ?? Handshake.freshNonce()
    }

    /// An accepting side.
    ///
    /// - Parameters:
    ///   - served: the purposes this port serves, each open or with its key; others are refused.
    ///   - localID: this node's id (8 bytes), or `nil` for none (the coordinator).
    ///   - nonce: 32 bytes; defaults to fresh bytes from the system's secure generator.
    init(accepting served: [Purpose: Access], localID: [UInt8]? = nil, nonce: [UInt8]? = nil) {
        self.role = .acceptor
        self.purpose = nil
        self.key = nil
        self.served = served
        self.expectedPeerID = nil
        self.localID = localID ?? Handshake.noID
        self.localNonce = nonce ?? []
    }

    static let noID = [UInt8](repeating: 0, count: idLength)

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

    /// Whether this side speaks first: a connector that does not dial a known node (one that does
    /// waits for that node's hello), and an acceptor that serves data (which it serves alone).
    var speaksFirst: Bool {
        switch role {
        case .connector: return expectedPeerID == nil
        case .acceptor: return acceptorSpeaksFirst != nil
        }
    }

    /// For an acceptor that serves only data: that purpose and its access; it speaks first.
    private var acceptorSpeaksFirst: (Purpose, Access)? {
        guard served.count == 1, let access = served[.data] else { return nil }
        return (.data, access)
    }

    /// True while a connector dialling a known node waits for its hello, having sent nothing.
    var isAwaitingAcceptor: Bool { role == .connector && stage == .awaitingHello && localHello.isEmpty }

    /// Begins the exchange: this side's hello to send when it speaks first (see ``speaksFirst``),
    /// else nothing.
    mutating func start() -> [Action] {
        stage = .awaitingHello
        switch role {
        case .connector:
            guard let purpose, speaksFirst else { return [] }
            localHello = hello(purpose: purpose.rawValue, keyed: key != nil)
            return [.send(localHello)]
        case .acceptor:
            guard let (purpose, access) = acceptorSpeaksFirst else { return [] }
            if case .key(let chosen) = access { key = chosen }
            localHello = hello(purpose: purpose.rawValue, keyed: key != nil)
            return [.send(localHello)]
        }
    }

    private mutating func hello(purpose: UInt8, keyed: Bool) -> [UInt8] {
        if localNonce.isEmpty { localNonce = Handshake.freshNonce() }
        return Handshake.magic + [Handshake.version, keyed ? 1 : 0, purpose] + localNonce + localID
    }

    /// Consumes bytes from the peer (at most ``bytesWanted``) and returns what to do.
    mutating func receive<Bytes: Collection>(_ bytes: Bytes) -> [Action] where Bytes.Element == UInt8 {
        guard stage != .established, stage != .failed else { return [] }
        if stage == .idle { stage = .awaitingHello }
        buffer.append(contentsOf: bytes)
        // A hello is checked as its first bytes arrive, so a wrong program fails fast.
        if stage == .awaitingHello, let problem = Handshake.helloProblem(buffer) {
            return fail(problem)
        }
        guard bytesWanted <= 0 else { return [] }
        let message = buffer
        buffer.removeAll()
        switch stage {
        case .awaitingHello:
            return role == .connector ? connectorReceivedHello(message) : acceptorReceivedHello(message)
        case .awaitingProof:
            guard let key else { return fail(.peerRequiresKey) }
            let expected = proof(label: Handshake.connectorLabel, key: key)
            guard constantTimeEquals(message, expected) else {
                return [.send([1] + [UInt8](repeating: 0, count: Handshake.proofLength))] + fail(.peerProofInvalid)
            }
            return [.send([0] + proof(label: Handshake.acceptorLabel, key: key))] + establish()
        case .awaitingVerdict:
            guard let key else { return fail(.peerRequiresKey) }
            guard message[0] == 0 else { return fail(.rejectedByPeer) }
            let expected = proof(label: Handshake.acceptorLabel, key: key)
            guard constantTimeEquals(message[1...], expected) else { return fail(.peerProofInvalid) }
            return establish()
        case .idle, .established, .failed:
            return []
        }
    }

    private mutating func acceptorReceivedHello(_ message: [UInt8]) -> [Action] {
        peerHello = message
        peerID = Array(message[(Handshake.helloLength - Handshake.idLength)...])
        let peerUsesKey = message[5] & 1 == 1
        if !localHello.isEmpty {
            // This side spoke first (a data port): its hello is out, with its key choice made.
            guard message[6] == Purpose.data.rawValue else { return fail(.purposeNotServed(message[6])) }
            purpose = .data
            switch (key, peerUsesKey) {
            case (nil, true): return fail(.peerRequiresKey)
            case (.some, false): return fail(.peerHasNoKey)
            case (nil, false): return establish()
            case (.some, true):
                stage = .awaitingProof
                return []
            }
        }
        guard let asked = Purpose(rawValue: message[6]), let access = served[asked] else {
            // Answer with purpose 0, so the connector can say why, then give up.
            localHello = hello(purpose: 0, keyed: peerUsesKey)
            return [.send(localHello)] + fail(.purposeNotServed(message[6]))
        }
        purpose = asked
        if case .key(let chosen) = access { key = chosen }
        localHello = hello(purpose: asked.rawValue, keyed: key != nil)
        switch (key, peerUsesKey) {
        case (nil, true): return [.send(localHello)] + fail(.peerRequiresKey)
        case (.some, false): return [.send(localHello)] + fail(.peerHasNoKey)
        case (nil, false): return [.send(localHello)] + establish()
        case (.some, true):
            stage = .awaitingProof
            return [.send(localHello)]
        }
    }

    private mutating func connectorReceivedHello(_ message: [UInt8]) -> [Action] {
        peerHello = message
        peerID = Array(message[(Handshake.helloLength - Handshake.idLength)...])
        guard message[6] == purpose?.rawValue else {
            // A port that speaks first serves data only: another purpose there is a wrong port too.
            let refused = message[6] == 0 || (localHello.isEmpty == false && message[6] == Purpose.data.rawValue)
            return fail(refused ? .purposeRefused(purpose?.rawValue ?? 0) : .peerProtocolError("echoed purpose \(message[6])"))
        }
        if let expectedPeerID, expectedPeerID != peerID {
            return fail(.wrongPeer(expected: expectedPeerID, found: peerID))
        }
        let peerUsesKey = message[5] & 1 == 1
        // A connector that dialled a known node speaks only now, once the acceptor showed its id.
        var actions: [Action] = []
        if localHello.isEmpty, let purpose {
            switch (key, peerUsesKey) {
            case (nil, false), (.some, true):
                localHello = hello(purpose: purpose.rawValue, keyed: key != nil)
                actions.append(.send(localHello))
            case (nil, true), (.some, false):
                break  // fails below, having written nothing
            }
        }
        switch (key, peerUsesKey) {
        case (nil, true): return fail(.peerRequiresKey)
        case (.some, false): return fail(.peerHasNoKey)
        case (nil, false): return actions + establish()
        case (.some(let key), true):
            stage = .awaitingVerdict
            return actions + [.send(proof(label: Handshake.connectorLabel, key: key))]
        }
    }

    private mutating func establish() -> [Action] {
        stage = .established
        if let key {
            let (connectorHello, acceptorHello) = role == .connector ? (localHello, peerHello) : (peerHello, localHello)
            sessionKeys = SessionKeys(key: key, connectorHello: connectorHello, acceptorHello: acceptorHello, role: role)
        }
        return [.established]
    }

    private mutating func fail(_ error: HandshakeError) -> [Action] {
        stage = .failed
        buffer.removeAll()
        return [.fail(error)]
    }

    /// The MAC this side or the peer must show: over the label, then both hellos, connector's first.
    private func proof(label: [UInt8], key: SymmetricKey) -> [UInt8] {
        let (connectorHello, acceptorHello) = role == .connector ? (localHello, peerHello) : (peerHello, localHello)
        return Array(HMAC<SHA256>.authenticationCode(for: label + connectorHello + acceptorHello, using: key))
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

    /// 32 bytes from the system's secure generator, in four draws (not one per byte).
    static func freshNonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var nonce: [UInt8] = []
        nonce.reserveCapacity(nonceLength)
        for _ in 0..<(nonceLength / 8) {
            withUnsafeBytes(of: generator.next() as UInt64) { nonce.append(contentsOf: $0) }
        }
        return nonce
    }
}

/// The two keys of an authenticated session, one per direction, and the MAC every record carries.
///
/// Derived with HKDF-SHA256: the input keying material is the (stretched) mesh key, the salt is
/// SHA-256 of both hellos (connector's first), and the info is `"swift-mesh/2 connector to acceptor"`
/// or `"swift-mesh/2 acceptor to connector"`. A relay that forwards the handshake learns neither key.
struct SessionKeys: Sendable {
    /// Authenticates what this side sends.
    let sending: HMAC<SHA256>.Key
    /// Checks what this side receives.
    let receiving: HMAC<SHA256>.Key

    static let connectorToAcceptor = Array("swift-mesh/2 connector to acceptor".utf8)
    static let acceptorToConnector = Array("swift-mesh/2 acceptor to connector".utf8)

    init(key: SymmetricKey, connectorHello: [UInt8], acceptorHello: [UInt8], role: Handshake.Role) {
        let salt = Array(SHA256.hash(data: connectorHello + acceptorHello))
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: key, salt: salt)
        let toAcceptor = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: Self.connectorToAcceptor, outputByteCount: 32)
        let toConnector = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: Self.acceptorToConnector, outputByteCount: 32)
        switch role {
        case .connector:
            sending = HMAC<SHA256>.Key(toAcceptor)
            receiving = HMAC<SHA256>.Key(toConnector)
        case .acceptor:
            sending = HMAC<SHA256>.Key(toConnector)
            receiving = HMAC<SHA256>.Key(toAcceptor)
        }
    }
}

/// Why a handshake failed. Each case reads as a sentence about the peer.
package enum HandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
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
    /// A connector dialling a known node heard no hello from its address within the deadline; it
    /// wrote nothing there (a node's data port speaks first).
    case silentAcceptor(seconds: Int)
    /// Closed to make room: more connections than the limit were mid-handshake.
    case evicted(limit: Int)
    /// This port does not serve the purpose the peer asked for (raw purpose byte).
    case purposeNotServed(UInt8)
    /// The peer does not serve the purpose this side asked for.
    case purposeRefused(UInt8)
    /// The peer dialled is not the node expected at that address.
    case wrongPeer(expected: [UInt8], found: [UInt8])
    /// The peer's hello broke the protocol.
    case peerProtocolError(String)

    /// True for failures caused by the key, as opposed to the protocol.
    var isAuthenticationFailure: Bool {
        switch self {
        case .peerRequiresKey, .peerHasNoKey, .peerProofInvalid, .rejectedByPeer: return true
        default: return false
        }
    }

    private static func purposeName(_ raw: UInt8) -> String {
        Handshake.Purpose(rawValue: raw)?.description ?? "unknown purpose \(raw)"
    }

    package var description: String {
        switch self {
        case .notAMeshPeer(let bytes):
            let printable = String(decoding: bytes.prefix(16), as: UTF8.self)
                .map { $0.isASCII && !$0.isNewline && $0 != "\0" && ($0.asciiValue ?? 0) >= 0x20 && $0 != "\u{7f}" ? String($0) : "." }
                .joined()
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
        case .silentAcceptor(let seconds):
            return "no mesh hello from the address within \(seconds) s: a node's data port speaks first, so another program"
                + " may be listening there (the node may advertise a port that is not its own); nothing was written to it"
        case .evicted(let limit):
            return "closed mid-handshake to make room: over \(limit) connections were waiting to authenticate"
        case .purposeNotServed(let raw):
            return "peer asked for a \(Self.purposeName(raw)) connection, which this port does not serve"
        case .purposeRefused(let raw):
            return "peer does not serve \(Self.purposeName(raw)) connections on this port (wrong port?)"
        case .wrongPeer(let expected, let found):
            return "peer is node \(lowercaseHexID(found)), not the node \(lowercaseHexID(expected)) expected at this address"
        case .peerProtocolError(let reason):
            return "peer broke the handshake protocol: \(reason)"
        }
    }
}

/// 8 id bytes as 16 lowercase hex digits.
func lowercaseHexID(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
}
