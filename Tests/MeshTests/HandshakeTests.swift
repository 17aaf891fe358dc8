import MeshCrypto
import Testing

@testable import Mesh

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

    @Test func helloCarriesMagicVersionKeyFlagAndNonce() {
        var open = Handshake(role: .connector, key: nil, nonce: Self.connectorNonce)
        var keyed = Handshake(role: .acceptor, key: Self.key, nonce: Self.acceptorNonce)
        #expect(open.start() == [.send(Array("MESH".utf8) + [1, 0] + Self.connectorNonce)])
        #expect(keyed.start() == [.send(Array("MESH".utf8) + [1, 1] + Self.acceptorNonce)])
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
        let actions = connector.receive(Array("MESH".utf8) + [1, 1] + Self.connectorNonce)
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
        #expect(acceptor.receive(Array("MESH".utf8) + [1, 1] + Self.connectorNonce).isEmpty)
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
        #expect(acceptor.receive(hello).isEmpty)
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

    @Test func versionTwoIsAVersionMismatch() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let actions = acceptor.receive(Array("MESH".utf8) + [2])
        #expect(actions == [.fail(.versionMismatch(peer: 2, local: 1))])
        #expect(!acceptor.isEstablished)
    }

    @Test func truncatedHelloLeavesTheHandshakeWaiting() {
        var acceptor = Handshake(role: .acceptor, key: nil)
        _ = acceptor.start()
        let hello = Array("MESH".utf8) + [1, 0] + Self.connectorNonce
        #expect(acceptor.receive(hello.prefix(20)).isEmpty)
        #expect(!acceptor.isEstablished)
        #expect(acceptor.bytesWanted == Handshake.helloLength - 20)
        #expect(acceptor.receive(hello.dropFirst(20)) == [.established])
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
        #expect(Handshake.helloLength == 38)
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
        #expect(connectorWants == Array((1...38).reversed()) + Array((1...33).reversed()))
        #expect(acceptorWants == Array((1...38).reversed()) + Array((1...32).reversed()))
    }

    @Test func establishedHandshakeIgnoresFurtherBytes() {
        var connector = Handshake(role: .connector, key: nil, nonce: Self.connectorNonce)
        _ = connector.start()
        #expect(connector.receive(Array("MESH".utf8) + [1, 0] + Self.acceptorNonce) == [.established])
        #expect(connector.bytesWanted == 0)
        #expect(connector.receive([0, 0, 0, 1, 1]).isEmpty)
        #expect(connector.isEstablished)
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
            .closedDuringHandshake, .timedOut(seconds: 5),
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
