import MeshCrypto

/// The opening exchange of every mesh connection (protocol version 3), as a pure state machine.
///
/// A hello is magic bytes, protocol version, whether the side uses a key, the connection's
/// ``Purpose``, a fresh 32-byte nonce and the side's node id (zeros for the coordinator and the
/// `mesh` tool). For control, inspect and admin connections the connecting side sends its hello at
/// once; the accepting side reads it, decides whether it serves that purpose and with which key,
/// and answers with a hello of its own (the purpose echoed, or 0 for "not served here"). For
/// **data** connections the order is reversed: a port that serves data (and nothing else) sends its
/// hello as soon as it accepts, and a connector that dials a known node writes nothing at all until
/// that hello has arrived with the node id it expected.
///
/// In an open mesh the hellos are the whole handshake. With a key, a Noise handshake follows
/// (revision 34, suite `25519_ChaChaPoly_SHA256`, the stretched mesh key as PSK, both hellos in the
/// prologue), the connector as initiator:
///
/// - **data**: `Noise_IKpsk1`. The connector knows the acceptor's static key from the topology; the
///   acceptor learns the connector's from the first message and checks that the id the connector
///   claimed derives from it. One round trip; only the holder of the node's private key can answer.
/// - **control, inspect, admin**: `Noise_XXpsk3`. A node need not know the coordinator's key (it
///   may pin it); the coordinator learns the node's key in the third message.
///
/// Each handshake message travels behind a 2-byte length; a length of 0 is a refusal. After the
/// pattern's last message, the side that received it answers with a **confirmation**: an empty
/// transport message under its sending key. The connection then carries ChaCha20-Poly1305 records
/// (see ``RecordSealer``) under the keys of Noise's `Split()`. Every connection draws fresh
/// ephemeral keys, so a recorded session cannot be opened later with the mesh key or a static key.
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
    package enum Action: Sendable, Equatable {
        case send([UInt8])
        case established
        case fail(HandshakeError)
    }

    static let magic: [UInt8] = Array("MESH".utf8)
    static let version: UInt8 = 3
    static let nonceLength = 32
    static let idLength = 8
    /// magic, version, flags, purpose, nonce, id.
    static let helloLength = 4 + 1 + 1 + 1 + nonceLength + idLength
    /// The longest handshake message a side reads; the patterns' messages are at most 96 bytes.
    static let maximumMessageLength = 1024
    /// What the prologue starts with, before both hellos.
    static let prologueLabel = Array("swift-mesh/3".utf8)
    /// Both sides' hellos and this label go into the Noise prologue, so neither can be changed.
    static let dataProtocol = "Noise_IKpsk1_25519_ChaChaPoly_SHA256"
    static let coordinatorProtocol = "Noise_XXpsk3_25519_ChaChaPoly_SHA256"
    /// A Poly1305 tag: what an empty payload or the confirmation costs.
    static let tagLength = 16
    /// A refusal in place of a handshake message: a length of zero.
    static let refusal: [UInt8] = [0, 0]

    private enum Stage: Sendable, Equatable {
        case idle, awaitingHello, awaitingLength, awaitingMessage, established, failed
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
    /// The static public key the connector expects the acceptor to prove: a peer's key from its
    /// record (data), or a pinned coordinator key (control, inspect, admin).
    private let expectedPeerKey: [UInt8]?
    /// This side's static key pair, for a keyed handshake; a side without one (the `mesh` tool)
    /// makes a fresh one when it needs it.
    private var staticKey: Curve25519.KeyAgreement.PrivateKey?
    /// An ephemeral key to use instead of a fresh one: for test vectors only.
    private let fixedEphemeral: Curve25519.KeyAgreement.PrivateKey?
    /// Drawn when this side's hello is made: an accepted socket that never sends costs none.
    private var localNonce: [UInt8]
    private let localID: [UInt8]
    private var localHello: [UInt8] = []
    private var peerHello: [UInt8] = []
    private var stage = Stage.idle
    private var buffer: [UInt8] = []
    private var messageLength = 0
    private var noise: Noise.HandshakeState?
    /// True once this side sent the pattern's last message and waits for the peer's confirmation.
    private var awaitingConfirmation = false

    /// The peer's id from its hello (zeros when it has none), once its hello arrived.
    private(set) var peerID: [UInt8] = []
    /// The peer's static public key, once a keyed handshake has proven it.
    private(set) var peerStaticKey: [UInt8]?
    /// The transport's cipher states, once a keyed handshake is established; `nil` for an open mesh.
    private(set) var transport: Transport?

    /// The two directions of a keyed connection after the handshake: Noise's `Split()`.
    struct Transport: Sendable {
        var sending: Noise.CipherState
        var receiving: Noise.CipherState
    }

    /// A connecting side.
    ///
    /// - Parameters:
    ///   - purpose: what the connection is for.
    ///   - key: the stretched authkey (the Noise PSK), or `nil` for an open mesh.
    ///   - localID: this node's id (8 bytes), or `nil` for none (zeros on the wire).
    ///   - staticKey: this side's static key pair; `nil` makes a fresh one if a keyed handshake needs it.
    ///   - expectedPeerID: the id the acceptor must have, when dialling a known node.
    ///   - expectedPeerKey: the static public key the acceptor must prove (32 bytes): the peer's
    ///     record's key for data, a pinned coordinator key otherwise.
    ///   - nonce: 32 bytes; defaults to fresh bytes from the system's secure generator.
    ///   - ephemeral: for test vectors only.
    package init(
        connectingFor purpose: Purpose, key: SymmetricKey?, localID: [UInt8]? = nil,
        staticKey: Curve25519.KeyAgreement.PrivateKey? = nil, expectedPeerID: [UInt8]? = nil,
        expectedPeerKey: [UInt8]? = nil, nonce: [UInt8]? = nil, ephemeral: Curve25519.KeyAgreement.PrivateKey? = nil
    ) {
        self.role = .connector
        self.purpose = purpose
        self.key = key
        self.served = [:]
        self.expectedPeerID = expectedPeerID
        self.expectedPeerKey = expectedPeerKey
        self.staticKey = staticKey
        self.fixedEphemeral = ephemeral
        self.localID = localID ?? Handshake.noID
        self.localNonce = nonce ?? Handshake.freshNonce()
    }

    /// An accepting side.
    ///
    /// - Parameters:
    ///   - served: the purposes this port serves, each open or with its key; others are refused.
    ///   - localID: this node's id (8 bytes), or `nil` for none (the coordinator).
    ///   - staticKey: this side's static key pair (a node's, or the coordinator's).
    ///   - nonce: 32 bytes; defaults to fresh bytes from the system's secure generator.
    ///   - ephemeral: for test vectors only.
    package init(
        accepting served: [Purpose: Access], localID: [UInt8]? = nil,
        staticKey: Curve25519.KeyAgreement.PrivateKey? = nil, nonce: [UInt8]? = nil,
        ephemeral: Curve25519.KeyAgreement.PrivateKey? = nil
    ) {
        self.role = .acceptor
        self.purpose = nil
        self.key = nil
        self.served = served
        self.expectedPeerID = nil
        self.expectedPeerKey = nil
        self.staticKey = staticKey
        self.fixedEphemeral = ephemeral
        self.localID = localID ?? Handshake.noID
        self.localNonce = nonce ?? []
    }

    static let noID = [UInt8](repeating: 0, count: idLength)

    /// True once the handshake succeeded.
    package var isEstablished: Bool { stage == .established }

    /// How many more bytes the current stage needs; the connection reads no more than this.
    package var bytesWanted: Int {
        switch stage {
        case .idle, .awaitingHello: return Handshake.helloLength - buffer.count
        case .awaitingLength: return 2 - buffer.count
        case .awaitingMessage: return messageLength - buffer.count
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
    package mutating func start() -> [Action] {
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
    package mutating func receive<Bytes: Collection>(_ bytes: Bytes) -> [Action] where Bytes.Element == UInt8 {
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
        case .awaitingLength:
            let length = Int(message[0]) << 8 | Int(message[1])
            if length == 0 { return fail(.rejectedByPeer) }
            // Both checks come before any of the message is read. A side reading a handshake
            // message owes the next one (or the confirmation), so it refuses; a side reading the
            // confirmation owes nothing.
            let owesNext = !awaitingConfirmation
            guard length <= Handshake.maximumMessageLength else {
                let error = HandshakeError.peerProtocolError(
                    "handshake message of \(length) bytes; at most \(Handshake.maximumMessageLength) are allowed")
                return owesNext ? refuse(error) : fail(error)
            }
            let expected = awaitingConfirmation
                ? Handshake.tagLength : noise.map { Handshake.messageLength($0.pattern.messages[$0.messageIndex].tokens) } ?? 0
            guard length == expected else {
                let error = HandshakeError.peerProtocolError("handshake message of \(length) bytes; \(expected) expected")
                return owesNext ? refuse(error) : fail(error)
            }
            messageLength = length
            stage = .awaitingMessage
            return []
        case .awaitingMessage:
            stage = .awaitingLength
            return awaitingConfirmation ? receivedConfirmation(message) : receivedNoiseMessage(message)
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
            case (.some, true): return startNoise()
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
        if asked == .inspect || asked == .admin, peerID != Handshake.noID {
            return [.send(localHello)] + fail(.peerProtocolError("the hello of an inspect or admin connection names a node"))
        }
        switch (key, peerUsesKey) {
        case (nil, true): return [.send(localHello)] + fail(.peerRequiresKey)
        case (.some, false): return [.send(localHello)] + fail(.peerHasNoKey)
        case (nil, false): return [.send(localHello)] + establish()
        case (.some, true): return [.send(localHello)] + startNoise()
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
        if key != nil, peerUsesKey, purpose == .data, let problem = dataKeyProblem {
            return fail(.peerKeyUnknown(problem))  // before this side writes a byte
        }
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
        case (.some, true): return actions + startNoise()
        }
    }

    /// Both hellos are in and both sides use a key: set up the Noise handshake, and as the
    /// initiator send its first message.
    private mutating func startNoise() -> [Action] {
        guard let key, let purpose else { return fail(.peerProtocolError("keyed handshake without a purpose")) }
        let (connectorHello, acceptorHello) = role == .connector ? (localHello, peerHello) : (peerHello, localHello)
        let prologue = Handshake.prologueLabel + connectorHello + acceptorHello
        let psk = key.withUnsafeBytes { Array($0) }
        let isData = purpose == .data
        var remoteStatic: Curve25519.KeyAgreement.PublicKey?
        if role == .connector, isData {
            // Checked usable (dataKeyProblem) before this side wrote its hello.
            remoteStatic = expectedPeerKey.flatMap { try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: $0) }
        }
        let localStatic = staticKey ?? Curve25519.KeyAgreement.PrivateKey()
        staticKey = localStatic
        do {
            noise = try Noise.HandshakeState(
                protocolName: isData ? Handshake.dataProtocol : Handshake.coordinatorProtocol,
                role: role == .connector ? .initiator : .responder, prologue: prologue, staticKey: localStatic,
                ephemeralKey: fixedEphemeral, remoteStaticKey: remoteStatic, presharedKeys: [psk])
        } catch {
            return fail(.peerProtocolError("cannot start the Noise handshake: \(error)"))
        }
        stage = .awaitingLength
        return role == .connector ? writeNext() : []
    }

    /// Why a data connector cannot start IKpsk1 with the acceptor's key from its record, or `nil`.
    private var dataKeyProblem: String? {
        guard let expectedPeerKey, (try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: expectedPeerKey)) != nil else {
            return "its topology record carries no public key (a node of an older version?)"
        }
        guard NodeID.idBytes(forPublicKey: expectedPeerKey) == peerID else {
            return "the public key in its topology record is not the key its id derives from"
        }
        return nil
    }

    /// Writes the next handshake message when it is this side's turn; after the pattern's last
    /// message, splits and waits for the peer's confirmation.
    private mutating func writeNext() -> [Action] {
        guard var state = noise, state.isMyTurn, !state.isFinished else { return [] }
        let message: [UInt8]
        do {
            message = try state.writeMessage()
        } catch Noise.Error.invalidPublicKey {
            // XX's responder meets the peer's ephemeral key in a DH only when it writes M2.
            return refuse(.peerProtocolError("the peer's key in handshake message \(state.messageIndex) has small order"))
        } catch {
            return fail(.peerProtocolError("cannot write the handshake message: \(error)"))
        }
        noise = state
        if state.isFinished {
            guard let split = try? state.split() else { return fail(.peerProtocolError("split before the handshake ended")) }
            transport = Transport(sending: split.send, receiving: split.receive)
            awaitingConfirmation = true
        }
        return [.send(Handshake.framed(message))]
    }

    /// A whole handshake message from the peer.
    private mutating func receivedNoiseMessage(_ message: [UInt8]) -> [Action] {
        guard var state = noise else { return fail(.peerProtocolError("handshake message before the hellos")) }
        let index = state.messageIndex
        let carriesPSK = state.pattern.messages[index].tokens.contains(.psk)
        let payload: [UInt8]
        do {
            payload = try state.readMessage(message)
        } catch Noise.Error.invalidPublicKey {
            return refuse(.peerProtocolError("the peer's key in handshake message \(index + 1) has small order"))
        } catch Noise.Error.decryptionFailed {
            if state.staticKeyUnreadable, role == .acceptor, purpose == .data {
                return refuse(.peerProtocolError("handshake message failed authentication: the peer does not have this node's public key"))
            }
            // A message that mixed in the PSK fails for a wrong key. The data connector's second
            // message fails when the acceptor does not hold the node's private key.
            if carriesPSK { return refuse(.peerProofInvalid) }
            if role == .connector, purpose == .data { return refuse(.staticKeyNotProven) }
            return refuse(.peerProtocolError("handshake message \(index + 1) failed authentication"))
        } catch {
            return refuse(.peerProtocolError("handshake message \(index + 1): \(error)"))
        }
        guard payload.isEmpty else {
            return refuse(.peerProtocolError("handshake message \(index + 1) carries \(payload.count) payload bytes; none are allowed"))
        }
        noise = state
        if let remote = state.remoteStaticKey, peerStaticKey == nil {
            let remoteBytes = Array(remote.rawRepresentation)
            peerStaticKey = remoteBytes
            if role == .acceptor, purpose == .data || purpose == .control {
                // The id the peer claimed in its hello must be the one its proven key gives.
                let derived = NodeID.idBytes(forPublicKey: remoteBytes)
                guard derived == peerID else { return refuse(.impostor(claimed: peerID, keyID: derived)) }
            }
            if role == .connector, purpose != .data, let expectedPeerKey, expectedPeerKey != remoteBytes {
                return refuse(.wrongCoordinatorKey(pinned: expectedPeerKey, found: remoteBytes))
            }
        }
        if state.isFinished {
            // This side read the last message: split, confirm, and the handshake is done.
            guard let split = try? state.split() else { return fail(.peerProtocolError("split before the handshake ended")) }
            var sending = split.send
            guard let confirmation = try? sending.encrypt([]) else { return fail(.peerProtocolError("cannot confirm")) }
            transport = Transport(sending: sending, receiving: split.receive)
            return [.send(Handshake.framed(confirmation))] + establish()
        }
        return writeNext()
    }

    /// The size of a handshake message with an empty payload, in the patterns used here (where
    /// every static key and payload is encrypted): 32 per `e`, 48 per `s`, 16 for the payload's tag.
    static func messageLength(_ tokens: [Noise.Token]) -> Int {
        tokens.reduce(Handshake.tagLength) { total, token in
            switch token {
            case .e: return total + 32
            case .s: return total + 32 + Handshake.tagLength
            default: return total
            }
        }
    }

    /// The peer's confirmation: an empty transport message under its sending key.
    private mutating func receivedConfirmation(_ message: [UInt8]) -> [Action] {
        guard var current = transport else { return fail(.peerProtocolError("confirmation before the handshake ended")) }
        do {
            let plaintext = try current.receiving.decrypt(message)
            guard plaintext.isEmpty else { return fail(.peerProtocolError("the confirmation carries \(plaintext.count) bytes")) }
        } catch {
            return fail(.peerProofInvalid)
        }
        transport = current
        return establish()
    }

    private mutating func establish() -> [Action] {
        stage = .established
        noise = nil
        return [.established]
    }

    /// Fails, first writing a refusal where this side's next handshake message would have gone.
    private mutating func refuse(_ error: HandshakeError) -> [Action] {
        [.send(Handshake.refusal)] + fail(error)
    }

    private mutating func fail(_ error: HandshakeError) -> [Action] {
        stage = .failed
        buffer.removeAll()
        noise = nil
        transport = nil
        return [.fail(error)]
    }

    /// A handshake message behind its 2-byte big-endian length.
    static func framed(_ message: [UInt8]) -> [UInt8] {
        [UInt8(message.count >> 8), UInt8(truncatingIfNeeded: message.count)] + message
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
    /// The peer's handshake message that mixed in the key did not authenticate: it holds a
    /// different key (or none).
    case peerProofInvalid
    /// The peer refused our handshake (a zero-length message): it found our key wrong, or our
    /// identity not the one we claimed.
    case rejectedByPeer
    /// The acceptor dialled did not prove it holds the private key of the node at that address.
    case staticKeyNotProven
    /// The peer claimed one node id in its hello, but its proven static key gives another.
    case impostor(claimed: [UInt8], keyID: [UInt8])
    /// The coordinator proved a static key other than the one pinned in the configuration.
    case wrongCoordinatorKey(pinned: [UInt8], found: [UInt8])
    /// A connector dialling a node has no usable public key for it.
    case peerKeyUnknown(String)
    /// The peer closed the connection during the handshake.
    case closedDuringHandshake
    /// The peer closed the connection before sending a byte: a port check (a node looking for a
    /// coordinator on its own host, a health check), not a failed handshake.
    case closedSilently
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
        case .peerRequiresKey, .peerHasNoKey, .peerProofInvalid, .rejectedByPeer, .wrongCoordinatorKey: return true
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
            return "peer rejected our handshake (wrong key, or an identity it does not accept)"
        case .staticKeyNotProven:
            return "peer did not prove it holds the private key of the node expected at this address"
        case .impostor(let claimed, let keyID):
            return "peer claims to be node \(lowercaseHexID(claimed)), but its static key belongs to node \(lowercaseHexID(keyID))"
        case .wrongCoordinatorKey(let pinned, let found):
            return "coordinator's static key \(lowercaseHexID(found)) is not the pinned key \(lowercaseHexID(pinned))"
        case .peerKeyUnknown(let reason):
            return "cannot authenticate the peer: \(reason)"
        case .closedDuringHandshake:
            return "peer closed the connection during the handshake (wrong key, or a different protocol?)"
        case .closedSilently:
            return "peer closed the connection before sending anything (a port check?)"
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
