import MeshCrypto
import MeshTesting
import Testing

@testable import Mesh

extension Handshake {
    /// A connector for node control, or an acceptor serving every purpose with one key.
    init(role: Role, key: SymmetricKey?, nonce: [UInt8]? = nil) {
        switch role {
        case .connector:
            self.init(connectingFor: .control, key: key, nonce: nonce)
        case .acceptor:
            let access: Access = key.map { .key($0) } ?? .open
            self.init(accepting: Dictionary(uniqueKeysWithValues: Purpose.allCases.map { ($0, access) }), nonce: nonce)
        }
    }
}

/// A version 2 hello: magic, version, key flag, purpose, nonce, id.
private func hello(keyed: Bool, purpose: UInt8 = 1, nonce: [UInt8], id: [UInt8] = Handshake.noID) -> [UInt8] {
    Array("MESH".utf8) + [2, keyed ? 1 : 0, purpose] + nonce + id
}

/// The handshake state machine, two instances talking to each other in memory.
@Suite struct HandshakeTests {
    private static let key = SymmetricKey(data: Array("correct horse battery staple".utf8))
    private static let otherKey = SymmetricKey(data: Array("correct horse battery stapler".utf8))
    private static let connectorNonce = [UInt8](repeating: 0xC1, count: Handshake.nonceLength)
    private static let acceptorNonce = [UInt8](repeating: 0xA2, count: Handshake.nonceLength)

    /// What one side ended with, and every message it sent.
    struct Outcome {
        var established = false
        var failure: HandshakeError?
        var sent: [[UInt8]] = []
    }

    /// Both sides start, then bytes move each way (never more than `bytesWanted` at a time) until
    /// neither side has anything left to deliver.
    private static func run(
        _ connector: inout Handshake, _ acceptor: inout Handshake
    ) -> (connector: Outcome, acceptor: Outcome) {
        var outcomes = (connector: Outcome(), acceptor: Outcome())
        var toAcceptor: [UInt8] = []
        var toConnector: [UInt8] = []

        func perform(_ actions: [Handshake.Action], into outcome: inout Outcome, outbox: inout [UInt8]) {
            for action in actions {
                switch action {
                case .send(let bytes):
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

        perform(connector.start(), into: &outcomes.connector, outbox: &toAcceptor)
        perform(acceptor.start(), into: &outcomes.acceptor, outbox: &toConnector)
        var rounds = 0
        while rounds < 100 {
            rounds += 1
            var progressed = false
            if !toAcceptor.isEmpty, acceptor.bytesWanted > 0 {
                let chunk = Array(toAcceptor.prefix(acceptor.bytesWanted))
                toAcceptor.removeFirst(chunk.count)
                perform(acceptor.receive(chunk), into: &outcomes.acceptor, outbox: &toConnector)
                progressed = true
            }
            if !toConnector.isEmpty, connector.bytesWanted > 0 {
                let chunk = Array(toConnector.prefix(connector.bytesWanted))
                toConnector.removeFirst(chunk.count)
                perform(connector.receive(chunk), into: &outcomes.connector, outbox: &toAcceptor)
                progressed = true
            }
            if !progressed { break }
        }
        #expect(rounds < 100, "the handshake did not settle")
        return outcomes
    }

    private static func pair(
        connectorKey: SymmetricKey?, acceptorKey: SymmetricKey?, fixedNonces: Bool = true
    ) -> (connector: Outcome, acceptor: Outcome) {
        var connector = Handshake(
            role: .connector, key: connectorKey, nonce: fixedNonces ? connectorNonce : nil)
        var acceptor = Handshake(role: .acceptor, key: acceptorKey, nonce: fixedNonces ? acceptorNonce : nil)
        let outcomes = run(&connector, &acceptor)
        #expect(connector.isEstablished == outcomes.connector.established)
        #expect(acceptor.isEstablished == outcomes.acceptor.established)
        return outcomes
    }

    /// The single action a call is expected to return, when it is a failure.
    private static func failure(of actions: [Handshake.Action]) -> HandshakeError? {
        for action in actions { if case .fail(let error) = action { return error } }
        return nil
    }

    // MARK: outcomes

    @Test func noKeyOnEitherSideEstablishes() {
        let outcome = Self.pair(connectorKey: nil, acceptorKey: nil)
        #expect(outcome.connector.established && outcome.acceptor.established)
        #expect(outcome.connector.failure == nil && outcome.acceptor.failure == nil)
        // Only the hellos travel.
        #expect(outcome.connector.sent.map(\.count) == [Handshake.helloLength])
        #expect(outcome.acceptor.sent.map(\.count) == [Handshake.helloLength])
    }

    @Test func helloCarriesMagicVersionKeyFlagPurposeNonceAndID() {
        let id: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        var open = Handshake(connectingFor: .data, key: nil, localID: id, nonce: Self.connectorNonce)
        #expect(open.start() == [.send(hello(keyed: false, purpose: 4, nonce: Self.connectorNonce, id: id))])
        // The acceptor answers the connector's hello, echoing the purpose it serves.
        var keyed = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        #expect(keyed.start().isEmpty)
        #expect(keyed.receive(hello(keyed: true, nonce: Self.connectorNonce)) == [.send(hello(keyed: true, nonce: Self.acceptorNonce))])
    }

    @Test func sameKeyEstablishes() {
        let outcome = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        #expect(outcome.connector.established && outcome.acceptor.established)
        #expect(outcome.connector.failure == nil && outcome.acceptor.failure == nil)
        // hello, then a proof; hello, then a verdict (0) with the acceptor's proof.
        #expect(outcome.connector.sent.map(\.count) == [Handshake.helloLength, Handshake.proofLength])
        #expect(outcome.acceptor.sent.map(\.count) == [Handshake.helloLength, Handshake.verdictLength])
        #expect(outcome.acceptor.sent.last?.first == 0)
        // The two proofs use different labels.
        #expect(outcome.connector.sent[1] != Array(outcome.acceptor.sent[1].dropFirst()))
    }

    @Test func sameKeyProofsDifferPerConnection() {
        let first = Self.pair(connectorKey: Self.key, acceptorKey: Self.key, fixedNonces: false)
        let second = Self.pair(connectorKey: Self.key, acceptorKey: Self.key, fixedNonces: false)
        #expect(first.connector.established && second.connector.established)
        #expect(first.acceptor.established && second.acceptor.established)
        #expect(first.connector.sent[0] != second.connector.sent[0], "fresh nonce per hello")
        #expect(first.connector.sent[1] != second.connector.sent[1], "connector proof reused")
        #expect(first.acceptor.sent[1] != second.acceptor.sent[1], "acceptor proof reused")
    }

    @Test func fixedNoncesGiveTheSameProofs() {
        let first = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        let second = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        #expect(first.connector.sent == second.connector.sent)
        #expect(first.acceptor.sent == second.acceptor.sent)
    }

    @Test func wrongKeyFailsOnBothSides() {
        let outcome = Self.pair(connectorKey: Self.key, acceptorKey: Self.otherKey)
        #expect(!outcome.connector.established && !outcome.acceptor.established)
        #expect(outcome.acceptor.failure == .peerProofInvalid)
        #expect(outcome.connector.failure == .rejectedByPeer)
        // The rejecting verdict carries no proof of the acceptor's key.
        #expect(outcome.acceptor.sent.last == [1] + [UInt8](repeating: 0, count: Handshake.proofLength))
    }

    @Test func keyOnlyOnTheAcceptor() {
        let outcome = Self.pair(connectorKey: nil, acceptorKey: Self.key)
        #expect(outcome.connector.failure == .peerRequiresKey)
        #expect(outcome.acceptor.failure == .peerHasNoKey)
        #expect(!outcome.connector.established && !outcome.acceptor.established)
    }

    @Test func keyOnlyOnTheConnector() {
        let outcome = Self.pair(connectorKey: Self.key, acceptorKey: nil)
        #expect(outcome.connector.failure == .peerHasNoKey)
        #expect(outcome.acceptor.failure == .peerRequiresKey)
        #expect(!outcome.connector.established && !outcome.acceptor.established)
        // Neither side sent a proof.
        #expect(outcome.connector.sent.count == 1 && outcome.acceptor.sent.count == 1)
    }

    // MARK: attacks

    /// The connector's proof, handed back to it as the acceptor's, must not pass.
    @Test func reflectedProofIsRejected() throws {
        var connector = Handshake(role: .connector, key: Self.key, nonce: Self.connectorNonce)
        _ = connector.start()
        // The attacker answers with a hello that echoes the connector's own nonce.
        let actions = connector.receive(hello(keyed: true, nonce: Self.connectorNonce))
        guard case .send(let proof) = try #require(actions.first) else {
            Issue.record("expected the connector's proof, got \(actions)")
            return
        }
        #expect(proof.count == Handshake.proofLength)
        let verdict = connector.receive([0] + proof)
        #expect(verdict == [.fail(.peerProofInvalid)])
        #expect(!connector.isEstablished)
        #expect(connector.bytesWanted == 0)
    }

    /// The acceptor's proof, handed to an acceptor as if from a connector, must not pass either.
    @Test func acceptorProofCannotPassAsAConnectorProof() throws {
        let outcome = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        let acceptorProof = Array(try #require(outcome.acceptor.sent.last).dropFirst())
        var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        _ = acceptor.start()
        #expect(acceptor.receive(hello(keyed: true, nonce: Self.connectorNonce)).count == 1)
        #expect(Self.failure(of: acceptor.receive(acceptorProof)) == .peerProofInvalid)
    }

    /// A proof recorded from one connection is useless against an acceptor with a new nonce.
    @Test func replayedProofIsRejected() throws {
        let recorded = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        let hello = recorded.connector.sent[0]
        let proof = recorded.connector.sent[1]

        var acceptor = Handshake(
            role: .acceptor, key: Self.key, nonce: [UInt8](repeating: 0xA3, count: Handshake.nonceLength))
        _ = acceptor.start()
        #expect(Self.failure(of: acceptor.receive(hello)) == nil)
        #expect(acceptor.bytesWanted == Handshake.proofLength)
        let actions = acceptor.receive(proof)
        #expect(Self.failure(of: actions) == .peerProofInvalid)
        #expect(!acceptor.isEstablished)

        // The same replay against the original nonce is accepted: the nonce is what stopped it.
        var original = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        _ = original.start()
        _ = original.receive(hello)
        #expect(original.receive(proof).contains(.established))
    }

    // MARK: wrong programs and versions

    @Test func httpRequestIsNotAMeshPeer() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let request = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let actions = acceptor.receive(request.prefix(4))
        #expect(actions == [.fail(.notAMeshPeer(firstBytes: Array("GET ".utf8)))])
        #expect(!acceptor.isEstablished)
        #expect(acceptor.bytesWanted == 0)
        // A failed handshake ignores anything after.
        #expect(acceptor.receive(request.dropFirst(4)).isEmpty)
    }

    @Test func wrongMagicIsCaughtAtTheFirstWrongByte() {
        var connector = Handshake(role: .connector, key: nil)
        _ = connector.start()
        #expect(connector.receive(Array("ME".utf8)).isEmpty)
        #expect(connector.receive(Array("T".utf8)) == [.fail(.notAMeshPeer(firstBytes: Array("MET".utf8)))])
    }

    @Test func versionOneIsAVersionMismatch() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let actions = acceptor.receive(Array("MESH".utf8) + [1])
        #expect(actions == [.fail(.versionMismatch(peer: 1, local: 2))])
        #expect(!acceptor.isEstablished)
    }

    @Test func truncatedHelloLeavesTheHandshakeWaiting() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let bytes = hello(keyed: false, nonce: Self.connectorNonce)
        #expect(acceptor.receive(bytes.prefix(20)).isEmpty)
        #expect(!acceptor.isEstablished)
        #expect(acceptor.bytesWanted == Handshake.helloLength - 20)
        #expect(acceptor.receive(bytes.dropFirst(20)).last == .established)
        #expect(acceptor.bytesWanted == 0)
    }

    @Test func truncatedProofLeavesTheHandshakeWaiting() {
        let recorded = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)
        var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        _ = acceptor.start()
        _ = acceptor.receive(recorded.connector.sent[0])
        #expect(acceptor.receive(recorded.connector.sent[1].prefix(31)).isEmpty)
        #expect(!acceptor.isEstablished)
        #expect(acceptor.bytesWanted == 1)
    }

    @Test func bytesWantedStaysWithinEachStage() {
        #expect(Handshake.helloLength == 47)
        #expect(Handshake.proofLength == 32)
        #expect(Handshake.verdictLength == 33)
        let recorded = Self.pair(connectorKey: Self.key, acceptorKey: Self.key)

        // Feed each side the other's bytes one at a time, noting what it asks for before each byte.
        func wants(_ handshake: inout Handshake, fed stream: [UInt8]) -> [Int] {
            #expect(handshake.bytesWanted == Handshake.helloLength, "before start")
            _ = handshake.start()
            var wanted: [Int] = []
            for byte in stream {
                wanted.append(handshake.bytesWanted)
                _ = handshake.receive([byte])
            }
            #expect(handshake.isEstablished)
            #expect(handshake.bytesWanted == 0)
            return wanted
        }
        var connector = Handshake(role: .connector, key: Self.key, nonce: Self.connectorNonce)
        var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        let connectorWants = wants(&connector, fed: Array(recorded.acceptor.sent.joined()))
        let acceptorWants = wants(&acceptor, fed: Array(recorded.connector.sent.joined()))
        #expect(connectorWants == Array((1...47).reversed()) + Array((1...33).reversed()))
        #expect(acceptorWants == Array((1...47).reversed()) + Array((1...32).reversed()))
    }

    @Test func establishedHandshakeIgnoresFurtherBytes() {
        var connector = Handshake(role: .connector, key: nil, nonce: Self.connectorNonce)
        _ = connector.start()
        #expect(connector.receive(hello(keyed: false, nonce: Self.acceptorNonce)) == [.established])
        #expect(connector.bytesWanted == 0)
        #expect(connector.receive([0, 0, 0, 1, 1]).isEmpty)
        #expect(connector.isEstablished)
    }

    // MARK: version 2: purposes, ids, session keys

    /// Runs a connector and an acceptor built by the caller.
    private static func exchange(_ connector: Handshake, _ acceptor: Handshake) -> (
        Handshake, Handshake, (connector: Outcome, acceptor: Outcome)
    ) {
        var connector = connector
        var acceptor = acceptor
        let outcome = run(&connector, &acceptor)
        return (connector, acceptor, outcome)
    }

    @Test func aPurposeThePortDoesNotServeIsRefusedOnBothSides() {
        // A node's coordinator handshake offered to a peer port (which serves only data).
        let (_, _, outcome) = Self.exchange(
            Handshake(connectingFor: .control, key: Self.key),
            Handshake(accepting: [.data: .key(Self.key)]))
        #expect(outcome.acceptor.failure == .purposeNotServed(Handshake.Purpose.control.rawValue))
        #expect(outcome.connector.failure == .purposeRefused(Handshake.Purpose.control.rawValue))
        #expect(outcome.connector.sent.count == 1, "no proof is sent to a port that refused the purpose")
    }

    @Test func eachPurposeUsesItsOwnKey() {
        let served: [Handshake.Purpose: Handshake.Access] = [.inspect: .key(Self.key), .admin: .key(Self.otherKey)]
        let admin = Self.exchange(Handshake(connectingFor: .admin, key: Self.otherKey), Handshake(accepting: served))
        #expect(admin.2.connector.established && admin.2.acceptor.established)
        #expect(admin.1.purpose == .admin)
        // The mesh key does not open an admin connection.
        let meshKeyAsAdmin = Self.exchange(Handshake(connectingFor: .admin, key: Self.key), Handshake(accepting: served))
        #expect(meshKeyAsAdmin.2.acceptor.failure == .peerProofInvalid)
        #expect(meshKeyAsAdmin.2.connector.failure == .rejectedByPeer)
    }

    @Test func aPurposeChangedOnTheWayBreaksTheProof() throws {
        // A relay rewrites the purpose byte of a control hello to "admin".
        var connector = Handshake(connectingFor: .inspect, key: Self.key, nonce: Self.connectorNonce)
        var acceptor = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        guard case .send(var connectorHello) = try #require(connector.start().first) else { return }
        connectorHello[6] = Handshake.Purpose.admin.rawValue
        guard case .send(var acceptorHello) = try #require(acceptor.receive(connectorHello).first) else { return }
        acceptorHello[6] = Handshake.Purpose.inspect.rawValue  // and back, so the connector goes on
        guard case .send(let proof) = try #require(connector.receive(acceptorHello).first) else { return }
        #expect(Self.failure(of: acceptor.receive(proof)) == .peerProofInvalid)
    }

    @Test func aConnectorExpectingAnotherNodeGivesUpBeforeProving() {
        let expected: [UInt8] = [1, 1, 1, 1, 1, 1, 1, 1]
        let found: [UInt8] = [2, 2, 2, 2, 2, 2, 2, 2]
        let (connector, _, outcome) = Self.exchange(
            Handshake(connectingFor: .data, key: Self.key, expectedPeerID: expected),
            Handshake(accepting: [.data: .key(Self.key)], localID: found))
        #expect(outcome.connector.failure == .wrongPeer(expected: expected, found: found))
        #expect(outcome.connector.sent.isEmpty, "a connector dialling a known node writes nothing to the wrong one")
        #expect(connector.peerID == found)
        // The right node passes.
        let right = Self.exchange(
            Handshake(connectingFor: .data, key: Self.key, expectedPeerID: expected),
            Handshake(accepting: [.data: .key(Self.key)], localID: expected))
        #expect(right.2.connector.established && right.2.acceptor.established)
    }

    @Test func aDataPortSpeaksFirstAndAConnectorToAKnownNodeWaitsForIt() {
        let id: [UInt8] = [9, 9, 9, 9, 9, 9, 9, 9]
        var acceptor = Handshake(accepting: [.data: .key(Self.key)], localID: id, nonce: Self.acceptorNonce)
        #expect(acceptor.start() == [.send(hello(keyed: true, purpose: 4, nonce: Self.acceptorNonce, id: id))])
        var connector = Handshake(connectingFor: .data, key: Self.key, expectedPeerID: id, nonce: Self.connectorNonce)
        #expect(connector.start().isEmpty)
        #expect(connector.isAwaitingAcceptor)
        // Its hello and proof go out together, once the acceptor's hello named the expected node.
        let answer = connector.receive(hello(keyed: true, purpose: 4, nonce: Self.acceptorNonce, id: id))
        #expect(answer.count == 2)
        #expect(answer.first == .send(hello(keyed: true, purpose: 4, nonce: Self.connectorNonce)))
        #expect(!connector.isAwaitingAcceptor)
        // The coordinator (several purposes) still waits for the connector's hello.
        var coordinator = Handshake(accepting: [.control: .open, .inspect: .open])
        #expect(coordinator.start().isEmpty)
    }

    @Test func whatAnotherProgramSaysFirstEndsTheHandshakeWithNothingWritten() {
        for banner in ["SSH-2.0-OpenSSH_9.6\r\n", "HTTP/1.1 400 Bad Request\r\n", "MESH\u{1}"] {
            var connector = Handshake(connectingFor: .data, key: nil, expectedPeerID: [1, 2, 3, 4, 5, 6, 7, 8])
            #expect(connector.start().isEmpty)
            var actions: [Handshake.Action] = []
            for byte in Array(banner.utf8) where actions.isEmpty { actions = connector.receive([byte]) }
            #expect(actions.count == 1, "\(banner): \(actions)")
            #expect(Self.failure(of: actions) != nil, "\(banner)")
        }
        // Keys that do not match: the connector gives up before it writes anything.
        var keyless = Handshake(connectingFor: .data, key: nil, expectedPeerID: [1, 2, 3, 4, 5, 6, 7, 8])
        _ = keyless.start()
        #expect(keyless.receive(hello(keyed: true, purpose: 4, nonce: Self.acceptorNonce, id: [1, 2, 3, 4, 5, 6, 7, 8])) == [.fail(.peerRequiresKey)])
    }

    @Test func bothSidesDeriveTheSameSessionKeysOnePerDirection() throws {
        let (connector, acceptor, outcome) = Self.exchange(
            Handshake(role: .connector, key: Self.key), Handshake(role: .acceptor, key: Self.key))
        #expect(outcome.connector.established && outcome.acceptor.established)
        let mine = try #require(connector.sessionKeys)
        let theirs = try #require(acceptor.sessionKeys)
        func tag(_ key: HMAC<SHA256>.Key) -> String { HMAC<SHA256>.authenticationCode(for: [1, 2, 3], using: key).description }
        #expect(tag(mine.sending) == tag(theirs.receiving))
        #expect(tag(mine.receiving) == tag(theirs.sending))
        #expect(tag(mine.sending) != tag(mine.receiving))
        // An open handshake has none.
        let open = Self.exchange(Handshake(role: .connector, key: nil), Handshake(role: .acceptor, key: nil))
        #expect(open.0.sessionKeys == nil && open.1.sessionKeys == nil)
        // A second connection gets other keys.
        let again = Self.exchange(Handshake(role: .connector, key: Self.key), Handshake(role: .acceptor, key: Self.key))
        #expect(tag(try #require(again.0.sessionKeys).sending) != tag(mine.sending))
    }

    // MARK: errors

    @Test func errorDescriptionsSayWhatWentWrong() {
        let keyErrors: [HandshakeError] = [.peerRequiresKey, .peerHasNoKey, .peerProofInvalid, .rejectedByPeer]
        for error in keyErrors {
            #expect(error.isAuthenticationFailure)
            #expect(error.description.contains("key"), "\(error)")
        }
        let protocolErrors: [HandshakeError] = [
            .notAMeshPeer(firstBytes: Array("GET / HTTP/1.1\r\n\0".utf8)), .versionMismatch(peer: 2, local: 1),
            .closedDuringHandshake, .timedOut(seconds: 5), .purposeNotServed(4), .purposeRefused(1),
            .wrongPeer(expected: [1, 2, 3, 4, 5, 6, 7, 8], found: Handshake.noID),
        ]
        for error in protocolErrors {
            #expect(!error.isAuthenticationFailure)
            #expect(!error.description.isEmpty)
        }
        let versionText = HandshakeError.versionMismatch(peer: 2, local: 1).description
        #expect(versionText.contains("protocol") && versionText.contains("2") && versionText.contains("1"))
        let notMesh = HandshakeError.notAMeshPeer(firstBytes: Array("GET / HTTP/1.1\r\n\0".utf8)).description
        #expect(notMesh.contains("not a mesh peer"))
        #expect(notMesh.contains("GET / HTTP/1.1"))
        #expect(!notMesh.contains("\r") && !notMesh.contains("\n") && !notMesh.contains("\0"))
        #expect(HandshakeError.timedOut(seconds: 5).description.contains("5"))
    }
}
