import MeshCrypto
import MeshTesting
import Testing

@testable import Mesh

extension Handshake {
    /// A connector for node control, or an acceptor serving every purpose but data with one key
    /// (a coordinator), each with a fresh static key unless given one.
    init(role: Role, key: SymmetricKey?, nonce: [UInt8]? = nil, identity: NodeIdentity = NodeIdentity()) {
        switch role {
        case .connector:
            self.init(
                connectingFor: .control, key: key, localID: identity.idBytes, staticKey: identity.privateKey, nonce: nonce)
        case .acceptor:
            let access: Access = key.map { .key($0) } ?? .open
            self.init(
                accepting: [.control: access, .inspect: access, .admin: access], staticKey: identity.privateKey,
                nonce: nonce)
        }
    }
}

/// A version 3 hello: magic, version, key flag, purpose, nonce, id.
private func hello(keyed: Bool, purpose: UInt8 = 1, nonce: [UInt8], id: [UInt8] = Handshake.noID) -> [UInt8] {
    Array("MESH".utf8) + [3, keyed ? 1 : 0, purpose] + nonce + id
}

/// The handshake state machine, two instances talking to each other in memory.
@Suite struct HandshakeTests {
    static let key = SymmetricKey(data: Array("correct horse battery staple, 32".utf8))
    static let otherKey = SymmetricKey(data: Array("correct horse battery stapler, 3".utf8))
    static let connectorNonce = [UInt8](repeating: 0xC1, count: Handshake.nonceLength)
    static let acceptorNonce = [UInt8](repeating: 0xA2, count: Handshake.nonceLength)

    /// What one side ended with, and every message it sent.
    struct Outcome {
        var established = false
        var failure: HandshakeError?
        var sent: [[UInt8]] = []
    }

    /// Both sides start, then bytes move each way (never more than `bytesWanted` at a time) until
    /// neither side has anything left to deliver. `tamper` may change the bytes on the way.
    static func run(
        _ connector: inout Handshake, _ acceptor: inout Handshake,
        tamper: (_ toAcceptor: Bool, _ bytes: inout [UInt8]) -> Void = { _, _ in }
    ) -> (connector: Outcome, acceptor: Outcome) {
        var outcomes = (connector: Outcome(), acceptor: Outcome())
        var toAcceptor: [UInt8] = []
        var toConnector: [UInt8] = []

        func perform(_ actions: [Handshake.Action], into outcome: inout Outcome, outbox: inout [UInt8], toAcceptor: Bool) {
            for action in actions {
                switch action {
                case .send(var bytes):
                    tamper(toAcceptor, &bytes)
                    outcome.sent.append(bytes)
                    outbox += bytes
                case .established:
                    #expect(!outcome.established, "established twice")
                    outcome.established = true
                case .fail(let error):
                    #expect(outcome.failure == nil, "failed twice")
                    outcome.failure = error
                }
            }
        }

        perform(connector.start(), into: &outcomes.connector, outbox: &toAcceptor, toAcceptor: true)
        perform(acceptor.start(), into: &outcomes.acceptor, outbox: &toConnector, toAcceptor: false)
        var rounds = 0
        while rounds < 1000 {
            rounds += 1
            var progressed = false
            if !toAcceptor.isEmpty, acceptor.bytesWanted > 0 {
                let chunk = Array(toAcceptor.prefix(acceptor.bytesWanted))
                toAcceptor.removeFirst(chunk.count)
                perform(acceptor.receive(chunk), into: &outcomes.acceptor, outbox: &toConnector, toAcceptor: false)
                progressed = true
            }
            if !toConnector.isEmpty, connector.bytesWanted > 0 {
                let chunk = Array(toConnector.prefix(connector.bytesWanted))
                toConnector.removeFirst(chunk.count)
                perform(connector.receive(chunk), into: &outcomes.connector, outbox: &toAcceptor, toAcceptor: true)
                progressed = true
            }
            if !progressed { break }
        }
        #expect(rounds < 1000, "the handshake did not settle")
        return outcomes
    }

    static func pair(connectorKey: SymmetricKey?, acceptorKey: SymmetricKey?) -> (connector: Outcome, acceptor: Outcome) {
        var connector = Handshake(role: .connector, key: connectorKey, nonce: connectorNonce)
        var acceptor = Handshake(role: .acceptor, key: acceptorKey, nonce: acceptorNonce)
        let outcomes = run(&connector, &acceptor)
        #expect(connector.isEstablished == outcomes.connector.established)
        #expect(acceptor.isEstablished == outcomes.acceptor.established)
        return outcomes
    }

    /// A data connection: `dialler` dials the node `target` knowing its record's key; the port is
    /// served by `holder`'s static key while its hello says `target`'s id.
    static func data(
        dialler: NodeIdentity, target: NodeIdentity, holder: NodeIdentity? = nil, connectorKey: SymmetricKey? = key,
        acceptorKey: SymmetricKey? = key, tamper: (_ toAcceptor: Bool, _ bytes: inout [UInt8]) -> Void = { _, _ in }
    ) -> (Handshake, Handshake, (connector: Outcome, acceptor: Outcome)) {
        let holder = holder ?? target
        var connector = Handshake(
            connectingFor: .data, key: connectorKey, localID: dialler.idBytes, staticKey: dialler.privateKey,
            expectedPeerID: target.idBytes, expectedPeerKey: target.publicKey)
        var acceptor = Handshake(
            accepting: [.data: acceptorKey.map { .key($0) } ?? .open], localID: target.idBytes,
            staticKey: holder.privateKey)
        let outcome = run(&connector, &acceptor, tamper: tamper)
        return (connector, acceptor, outcome)
    }

    /// Seals `plaintext` with one side's sending state and opens it with the other's receiving one.
    static func carries(_ from: Handshake, to: Handshake, _ plaintext: [UInt8] = Array("hello".utf8)) -> Bool {
        guard var sending = from.transport?.sending, var receiving = to.transport?.receiving,
            let sealed = try? sending.encrypt(plaintext), let opened = try? receiving.decrypt(sealed)
        else { return false }
        return opened == plaintext
    }

    // MARK: open mesh

    @Test func noKeyOnEitherSideEstablishesWithTheHellosAlone() {
        let outcome = Self.pair(connectorKey: nil, acceptorKey: nil)
        #expect(outcome.connector.established && outcome.acceptor.established)
        #expect(outcome.connector.sent.count == 1 && outcome.acceptor.sent.count == 1)
    }

    @Test func helloCarriesMagicVersionThreeKeyFlagPurposeNonceAndID() {
        let identity = NodeIdentity()
        let outcome = {
            var connector = Handshake(role: .connector, key: Self.key, nonce: Self.connectorNonce, identity: identity)
            var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
            return Self.run(&connector, &acceptor)
        }()
        #expect(outcome.connector.sent[0] == hello(keyed: true, nonce: Self.connectorNonce, id: identity.idBytes))
        #expect(outcome.acceptor.sent[0] == hello(keyed: true, nonce: Self.acceptorNonce))
        #expect(Handshake.helloLength == 47)
    }

    // MARK: keyed: coordinator connections (XXpsk3)

    @Test func sameKeyEstablishesAControlConnectionWithTwoWorkingDirections() throws {
        let node = NodeIdentity()
        let coordinator = NodeIdentity()
        var connector = Handshake(role: .connector, key: Self.key, identity: node)
        var acceptor = Handshake(role: .acceptor, key: Self.key, identity: coordinator)
        let outcome = Self.run(&connector, &acceptor)
        #expect(outcome.connector.established && outcome.acceptor.established)
        // Hello, M1, M3 from the node; hello, M2, confirmation from the coordinator.
        #expect(outcome.connector.sent.map(\.count) == [47, 2 + 48, 2 + 64])
        #expect(outcome.acceptor.sent.map(\.count) == [47, 2 + 96, 2 + 16])
        #expect(acceptor.peerStaticKey == node.publicKey)
        #expect(connector.peerStaticKey == coordinator.publicKey)
        #expect(Self.carries(connector, to: acceptor) && Self.carries(acceptor, to: connector))
    }

    @Test func everyConnectionHasFreshEphemeralsSoNothingRepeats() {
        let first = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        let second = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        #expect(first.connector.sent[1] != second.connector.sent[1])
        #expect(first.acceptor.sent[1] != second.acceptor.sent[1])
    }

    @Test func wrongKeyOnAControlConnectionFailsOnBothSides() {
        let outcome = Self.pair(connectorKey: Self.key, acceptorKey: Self.otherKey)
        #expect(outcome.acceptor.failure == .peerProofInvalid)
        #expect(outcome.connector.failure == .rejectedByPeer)
        #expect(!outcome.connector.established && !outcome.acceptor.established)
        // The refusal is a zero length where the confirmation would have been.
        #expect(outcome.acceptor.sent.last == Handshake.refusal)
    }

    @Test func keyOnOneSideOnlyFailsOnTheFlags() {
        let acceptorOnly = Self.pair(connectorKey: nil, acceptorKey: Self.key)
        #expect(acceptorOnly.acceptor.failure == .peerHasNoKey)
        #expect(acceptorOnly.connector.failure == .peerRequiresKey)
        let connectorOnly = Self.pair(connectorKey: Self.key, acceptorKey: nil)
        #expect(connectorOnly.acceptor.failure == .peerRequiresKey)
        #expect(connectorOnly.connector.failure == .peerHasNoKey)
    }

    @Test func aNodeClaimingAnotherNodesIDOnControlIsAnImpostor() {
        let victim = NodeIdentity()
        var connector = Handshake(role: .connector, key: Self.key, identity: NodeIdentity(claiming: victim.id))
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        let outcome = Self.run(&connector, &acceptor)
        guard case .impostor(let claimed, _) = outcome.acceptor.failure else {
            Issue.record("expected impostor, got \(String(describing: outcome.acceptor.failure))")
            return
        }
        #expect(claimed == victim.idBytes)
        #expect(outcome.connector.failure == .rejectedByPeer)
    }

    @Test func aPinnedCoordinatorKeyRefusesAnyOtherCoordinator() {
        let pinned = NodeIdentity()
        let node = NodeIdentity()
        var connector = Handshake(
            connectingFor: .control, key: Self.key, localID: node.idBytes, staticKey: node.privateKey,
            expectedPeerKey: pinned.publicKey)
        var stranger = Handshake(role: .acceptor, key: Self.key)
        let outcome = Self.run(&connector, &stranger)
        #expect(outcome.connector.failure == .wrongCoordinatorKey(pinned: pinned.publicKey, found: stranger.peerStaticKey ?? []) || {
            if case .wrongCoordinatorKey = outcome.connector.failure { return true }
            return false
        }())
        #expect(outcome.acceptor.failure == .rejectedByPeer)
        // The node never sent its static key to the stranger: its last message is the refusal.
        #expect(outcome.connector.sent.last == Handshake.refusal)

        var again = Handshake(
            connectingFor: .control, key: Self.key, localID: node.idBytes, staticKey: node.privateKey,
            expectedPeerKey: pinned.publicKey)
        var real = Handshake(role: .acceptor, key: Self.key, identity: pinned)
        let good = Self.run(&again, &real)
        #expect(good.connector.established && good.acceptor.established)
    }

    @Test func aPurposeChangedOnTheWayBreaksTheHandshake() {
        var connector = Handshake(role: .connector, key: Self.key)
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        // The connector asks for control; the relay turns it into inspect. The coordinator serves
        // both, but the prologues differ, so the third message fails.
        var first = true
        let outcome = Self.run(&connector, &acceptor) { toAcceptor, bytes in
            if toAcceptor, first, bytes.count == 47 {
                bytes[6] = Handshake.Purpose.inspect.rawValue
                first = false
            }
        }
        #expect(!outcome.acceptor.established && !outcome.connector.established)
    }

    @Test func aPurposeThePortDoesNotServeIsRefusedOnBothSides() {
        var connector = Handshake(connectingFor: .data, key: Self.key)
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        let outcome = Self.run(&connector, &acceptor)
        #expect(outcome.acceptor.failure == .purposeNotServed(4))
        #expect(outcome.connector.failure == .purposeRefused(4))
    }

    // MARK: keyed: data connections (IKpsk1)

    @Test func aDataConnectionToAKnownNodeEstablishesInOneRoundTrip() {
        let dialler = NodeIdentity()
        let target = NodeIdentity()
        let (connector, acceptor, outcome) = Self.data(dialler: dialler, target: target)
        #expect(outcome.connector.established && outcome.acceptor.established)
        // The acceptor's hello first; then hello + M1; M2; the connector's confirmation.
        #expect(outcome.acceptor.sent.map(\.count) == [47, 2 + 48])
        #expect(outcome.connector.sent.map(\.count) == [47, 2 + 96, 2 + 16])
        #expect(acceptor.peerStaticKey == dialler.publicKey)
        #expect(Self.carries(connector, to: acceptor) && Self.carries(acceptor, to: connector))
    }

    @Test func aDataPortWithTheWrongMeshKeyRefusesAtTheFirstMessage() {
        let (_, _, outcome) = Self.data(dialler: NodeIdentity(), target: NodeIdentity(), acceptorKey: Self.otherKey)
        #expect(outcome.acceptor.failure == .peerProofInvalid)
        #expect(outcome.connector.failure == .rejectedByPeer)
        // The acceptor answered nothing but its hello and the refusal.
        #expect(outcome.acceptor.sent.map(\.count) == [47, 2])
    }

    @Test func posingAsAnotherNodeOnDataIsRefused() {
        // A key holder dials with the victim's id in its hello, but its own static key.
        let victim = NodeIdentity()
        let (_, _, outcome) = Self.data(dialler: NodeIdentity(claiming: victim.id), target: NodeIdentity())
        guard case .impostor(let claimed, let keyID) = outcome.acceptor.failure else {
            Issue.record("expected impostor, got \(String(describing: outcome.acceptor.failure))")
            return
        }
        #expect(claimed == victim.idBytes && keyID != victim.idBytes)
        #expect(outcome.connector.failure == .rejectedByPeer)
    }

    @Test func aPortHeldByAnotherKeyCannotAnswerForTheNode() {
        // The hello says the target's id, but the process on the port holds another key: it cannot
        // read the first message, so it cannot answer, and the connector never establishes.
        let target = NodeIdentity()
        let (_, _, outcome) = Self.data(dialler: NodeIdentity(), target: target, holder: NodeIdentity())
        #expect(!outcome.connector.established && !outcome.acceptor.established)
        #expect(outcome.connector.failure == .rejectedByPeer)
    }

    @Test func aRecordWhoseKeyIsNotTheIDsIsNotDialled() {
        let target = NodeIdentity()
        var connector = Handshake(
            connectingFor: .data, key: Self.key, localID: NodeIdentity().idBytes, expectedPeerID: target.idBytes,
            expectedPeerKey: NodeIdentity().publicKey)
        var acceptor = Handshake(accepting: [.data: .key(Self.key)], localID: target.idBytes, staticKey: target.privateKey)
        let outcome = Self.run(&connector, &acceptor)
        guard case .peerKeyUnknown = outcome.connector.failure else {
            Issue.record("expected peerKeyUnknown, got \(String(describing: outcome.connector.failure))")
            return
        }
        // Nothing was written: the check comes before the connector's hello.
        #expect(outcome.connector.sent.isEmpty)
    }

    @Test func aReplayedFirstMessageGetsNoSession() {
        let dialler = NodeIdentity()
        let target = NodeIdentity()
        let (_, _, recorded) = Self.data(dialler: dialler, target: target)
        // Replay the dialler's recorded bytes to a fresh acceptor: its hello has a new nonce, so
        // the prologue differs and the recorded first message no longer authenticates.
        var acceptor = Handshake(accepting: [.data: .key(Self.key)], localID: target.idBytes, staticKey: target.privateKey)
        _ = acceptor.start()
        var actions: [Handshake.Action] = []
        for byte in recorded.connector.sent.joined() where acceptor.bytesWanted > 0 {
            actions += acceptor.receive([byte])
        }
        #expect(!acceptor.isEstablished)
        // The static key inside it was sealed under the old prologue, so it no longer opens.
        #expect(actions.contains(.send(Handshake.refusal)))
        #expect(actions.contains { if case .fail = $0 { true } else { false } })
    }

    @Test func anyAlteredHandshakeByteFailsTheHandshake() {
        // Flip each byte of the Noise messages in turn; no flip may still establish both sides.
        let dialler = NodeIdentity()
        let target = NodeIdentity()
        for index in [49, 60, 100, 140] {
            var count = 0
            let (_, _, outcome) = Self.data(dialler: dialler, target: target) { toAcceptor, bytes in
                guard toAcceptor else { return }
                if count <= index, index < count + bytes.count { bytes[index - count] ^= 0x01 }
                count += bytes.count
            }
            #expect(!(outcome.connector.established && outcome.acceptor.established), "flip at \(index)")
        }
    }

    // MARK: framing and limits

    @Test func aZeroLengthIsARefusalAndAnOverlongMessageIsAProtocolError() {
        var connector = Handshake(role: .connector, key: Self.key)
        _ = connector.start()
        _ = connector.receive(hello(keyed: true, nonce: Self.acceptorNonce))
        #expect(connector.bytesWanted == 2)
        #expect(connector.receive([0, 0]) == [.fail(.rejectedByPeer)])

        var other = Handshake(role: .connector, key: Self.key)
        _ = other.start()
        _ = other.receive(hello(keyed: true, nonce: Self.acceptorNonce))
        let actions = other.receive([0x04, 0x01])
        guard case .fail(.peerProtocolError(let reason))? = actions.last else {
            Issue.record("expected a protocol error, got \(actions)")
            return
        }
        #expect(reason.contains("1025"))
    }

    @Test func aHandshakeMessageOfAnyOtherSizeIsRefusedBeforeItIsRead() {
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        _ = acceptor.start()
        let identity = NodeIdentity()
        _ = acceptor.receive(hello(keyed: true, nonce: Self.connectorNonce, id: identity.idBytes))
        // XXpsk3's first message is 48 bytes; 96 is refused on its length alone.
        let actions = acceptor.receive([0x00, 0x60])
        #expect(actions.first == .send(Handshake.refusal))
        guard case .fail(.peerProtocolError(let reason))? = actions.last else {
            Issue.record("expected a protocol error, got \(actions)")
            return
        }
        #expect(reason == "handshake message of 96 bytes; 48 expected")
        #expect(acceptor.bytesWanted == 0)
    }

    @Test func anInspectOrAdminHelloNamingANodeIsRefused() {
        for purpose in [Handshake.Purpose.inspect, .admin] {
            var acceptor = Handshake(role: .acceptor, key: nil)
            _ = acceptor.start()
            let actions = acceptor.receive(hello(keyed: false, purpose: purpose.rawValue, nonce: Self.connectorNonce, id: [1, 2, 3, 4, 5, 6, 7, 8]))
            #expect(actions.last == .fail(.peerProtocolError("the hello of an inspect or admin connection names a node")))
        }
    }

    @Test func aSmallOrderEphemeralKeyInTheFirstMessageIsRefusedWithItsReason() throws {
        // Anyone can make a valid XXpsk3 first message (no key is mixed in yet): here its `e` is
        // the point 0, which the coordinator only meets in a Diffie-Hellman when it answers.
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        _ = acceptor.start()
        let identity = NodeIdentity()
        let connectorHello = hello(keyed: true, nonce: Self.connectorNonce, id: identity.idBytes)
        guard case .send(let acceptorHello)? = acceptor.receive(connectorHello).first else {
            Issue.record("no answer to the hello")
            return
        }
        var symmetric = Noise.SymmetricState(protocolName: Array(Handshake.coordinatorProtocol.utf8))
        symmetric.mixHash(Handshake.prologueLabel + connectorHello + acceptorHello)
        let zero = [UInt8](repeating: 0, count: 32)
        symmetric.mixHash(zero)
        symmetric.mixKey(zero)
        let first = zero + (try symmetric.encryptAndHash([]))
        _ = acceptor.receive(Array(Handshake.framed(first).prefix(2)))
        let actions = acceptor.receive(first)
        #expect(actions == [.send(Handshake.refusal), .fail(.peerProtocolError("the peer's key in handshake message 1 has small order"))])
    }

    @Test func aDiallerWithAnotherKeyForTheNodeIsToldSo() {
        // The dialler encrypts its static key to a key the port does not hold.
        let target = NodeIdentity()
        let (_, _, outcome) = Self.data(dialler: NodeIdentity(), target: target, holder: NodeIdentity())
        #expect(outcome.acceptor.failure == .peerProtocolError("handshake message failed authentication: the peer does not have this node's public key"))
    }

    @Test func bytesWantedNeverReachesPastTheCurrentStep() {
        let recorded = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        _ = acceptor.start()
        var wanted: [Int] = []
        for byte in recorded.connector.sent.joined() {
            wanted.append(acceptor.bytesWanted)
            _ = acceptor.receive([byte])
        }
        // Hello, then for M1 and M3: 2 length bytes, then exactly the message.
        let expected = Array((1...47).reversed()) + [2, 1] + Array((1...48).reversed()) + [2, 1] + Array((1...64).reversed())
        #expect(wanted == expected)
    }

    @Test func httpRequestIsNotAMeshPeer() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        #expect(acceptor.receive(request.prefix(4)) == [.fail(.notAMeshPeer(firstBytes: Array("GET ".utf8)))])
        #expect(acceptor.receive(request.dropFirst(4)).isEmpty)
    }

    @Test func versionTwoIsAVersionMismatchNamingBoth() {
        var acceptor = Handshake(role: .acceptor, key: Self.key)
        _ = acceptor.start()
        let actions = acceptor.receive(Array("MESH".utf8) + [2])
        #expect(actions == [.fail(.versionMismatch(peer: 2, local: 3))])
        let text = HandshakeError.versionMismatch(peer: 2, local: 3).description
        #expect(text.contains("version 2") && text.contains("version 3"))
    }

    @Test func errorDescriptionsSayWhatWentWrong() {
        let keyErrors: [HandshakeError] = [.peerRequiresKey, .peerHasNoKey, .peerProofInvalid]
        for error in keyErrors {
            #expect(error.isAuthenticationFailure)
            #expect(error.description.contains("key"), "\(error)")
        }
        let impostor = HandshakeError.impostor(claimed: [1, 2, 3, 4, 5, 6, 7, 8], keyID: [9, 9, 9, 9, 9, 9, 9, 9])
        #expect(impostor.description.contains("0102030405060708") && impostor.description.contains("0909090909090909"))
        #expect(HandshakeError.timedOut(seconds: 5).description.contains("5"))
    }
}

/// Records under the transport keys: ChaCha20-Poly1305, counters, rekeying.
@Suite struct RecordTests {
    static func ciphers() -> (Noise.CipherState, Noise.CipherState) {
        let key = [UInt8](repeating: 7, count: 32)
        return (Noise.CipherState(key: key), Noise.CipherState(key: key))
    }

    static func sealed(_ sealer: inout RecordSealer, _ frames: [[UInt8]]) throws -> [UInt8] {
        var output: [UInt8] = []
        for frame in frames {
            try frame.withUnsafeBytes { try sealer.seal($0, into: &output) }
        }
        return output
    }

    @Test func recordsOpenInOrderAndHideTheirFrames() throws {
        let (send, receive) = Self.ciphers()
        var sealer = RecordSealer(cipher: send)
        let frame = Frame(kind: 1, body: Array(#"{"type":"heartbeat","topic":"secret-topic"}"#.utf8)).encoded
        let wire = try Self.sealed(&sealer, [frame, frame])
        #expect(wire.count == 2 * (4 + frame.count + 16))
        #expect(!String(decoding: wire, as: UTF8.self).contains("secret-topic"))
        // The same frame twice seals to different bytes (the nonce counts).
        #expect(wire[4..<(4 + frame.count)] != wire[(8 + frame.count + 16)..<(8 + 2 * frame.count + 16)])
        var opener = RecordOpener(cipher: receive, maximumRecordLength: 1 << 20)
        opener.decoder.append(wire)
        var frames = FrameDecoder(maximumFrameLength: 1 << 20)
        try opener.open(into: &frames)
        #expect(try frames.decode()?.encoded == frame)
        #expect(try frames.decode()?.encoded == frame)
    }

    @Test func aFlippedBitADroppedOrAReplayedRecordClosesTheConnection() throws {
        let frame = Frame(kind: 1, body: Array("x".utf8)).encoded
        for attack in ["flip", "drop", "replay"] {
            let (send, receive) = Self.ciphers()
            var sealer = RecordSealer(cipher: send)
            let first = try Self.sealed(&sealer, [frame])
            let second = try Self.sealed(&sealer, [frame])
            var wire: [UInt8]
            switch attack {
            case "flip": wire = first + second; wire[6] ^= 1
            case "drop": wire = second
            default: wire = first + first
            }
            var opener = RecordOpener(cipher: receive, maximumRecordLength: 1 << 20)
            opener.decoder.append(wire)
            var frames = FrameDecoder(maximumFrameLength: 1 << 20)
            #expect(throws: ConnectionError.self, "\(attack)") { try opener.open(into: &frames) }
        }
    }

    @Test func aRecordTooShortForAFrameIsRefusedAsSoonAsItsLengthArrives() {
        let (_, receive) = Self.ciphers()
        var opener = RecordOpener(cipher: receive, maximumRecordLength: 1 << 20)
        opener.decoder.append([0, 0, 0, 16])
        var frames = FrameDecoder(maximumFrameLength: 1 << 20)
        #expect(throws: ConnectionError.protocolViolation("record of 16 bytes holds no frame")) {
            try opener.open(into: &frames)
        }
    }

    @Test func bothSidesRekeyAtTheIntervalAndKeepTalking() throws {
        let frame = Frame(kind: 1, body: Array("tick".utf8)).encoded
        let (send, receive) = Self.ciphers()
        var sealer = RecordSealer(cipher: send, rekeyInterval: 4)
        var plain = RecordSealer(cipher: send)
        var opener = RecordOpener(cipher: receive, maximumRecordLength: 1 << 20, rekeyInterval: 4)
        var frames = FrameDecoder(maximumFrameLength: 1 << 20)
        var withRekey: [UInt8] = []
        var without: [UInt8] = []
        for _ in 0..<10 {
            withRekey += try Self.sealed(&sealer, [frame])
            without += try Self.sealed(&plain, [frame])
        }
        // The first four records match an unrekeyed sealer; the fifth is under the new key.
        let size = 4 + frame.count + 16
        #expect(withRekey[0..<(4 * size)] == without[0..<(4 * size)])
        #expect(withRekey[(4 * size)..<(5 * size)] != without[(4 * size)..<(5 * size)])
        opener.decoder.append(withRekey)
        try opener.open(into: &frames)
        var count = 0
        while try frames.decode() != nil { count += 1 }
        #expect(count == 10)
        #expect(opener.sequence == 10)
    }
}
