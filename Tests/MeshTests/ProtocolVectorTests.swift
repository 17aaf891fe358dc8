import MeshCrypto
import MeshTesting
import Testing

@testable import Mesh

/// The worked example of docs/PROTOCOL.md §3.8, byte for byte, from the Swift code itself.
///
/// The same bytes come out of `scripts/protocol_vectors.py`, written from the document with
/// Python's `cryptography` and `hashlib` and a Noise implementation of its own, so the document,
/// an independent implementation and this code cannot drift apart unnoticed.
@Suite struct ProtocolVectorTests {
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8.filter { $0 != 0x20 && $0 != 0x0a })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
    }

    static func hex(_ bytes: [UInt8]) -> String { lowercaseHexID(bytes) }

    static func key(_ range: ClosedRange<UInt8>) -> Curve25519.KeyAgreement.PrivateKey {
        try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(range))
    }

    static let stretchedKey = bytes("ab8ab73e6733a315dae573eac544a2d37cab0e3e596dbee5ebd83e08b896d0bd")
    /// The example's keys: static and ephemeral private keys are runs of consecutive bytes.
    static let nodeStatic = key(0x01...0x20)
    static let coordinatorStatic = key(0x21...0x40)
    static let nodeEphemeral = key(0x41...0x60)
    static let coordinatorEphemeral = key(0x61...0x80)
    static let peerStatic = key(0x81...0xa0)
    static let peerEphemeral = key(0xa1...0xc0)
    static let connectorNonce = Array(UInt8(0x00)...UInt8(0x1f))
    static let acceptorNonce = Array(UInt8(0xa0)...UInt8(0xbf))
    static let heartbeatFrame = bytes("00000015 01 7b2274797065223a22686561727462656174227d")

    static let expected = ProtocolVectors.values

    @Test func keyIsStretchedWithPBKDF2() throws {
        let text = "5ede06b6f51adaad884861af2520cd1c1be8e590afcb7c0a289860b2d53071f9"
        let key = try #require(try MeshKey.stretched(text))
        #expect(key == SymmetricKey(data: Self.stretchedKey))
        #expect(throws: Never.self) { try MeshKey.validate(text, allowWeak: false) }
    }

    /// Every value of the example, as this code computes it.
    static func computed() throws -> [String: String] {
        var values: [String: String] = [:]
        let node = NodeIdentity(privateKey: nodeStatic)
        let peer = NodeIdentity(privateKey: peerStatic)
        let coordinator = NodeIdentity(privateKey: coordinatorStatic)
        values["node public key"] = node.publicKeyHex
        values["node id"] = node.id
        values["peer public key"] = peer.publicKeyHex
        values["peer id"] = peer.id
        values["coordinator public key"] = coordinator.publicKeyHex
        let key = SymmetricKey(data: stretchedKey)

        // Control: the node dials the coordinator (XXpsk3).
        var connector = Handshake(
            connectingFor: .control, key: key, localID: node.idBytes, staticKey: nodeStatic, nonce: connectorNonce,
            ephemeral: nodeEphemeral)
        var acceptor = Handshake(
            accepting: [.control: .key(key), .inspect: .key(key), .admin: .key(key)], staticKey: coordinatorStatic,
            nonce: acceptorNonce, ephemeral: coordinatorEphemeral)
        var log: [(String, [UInt8])] = []
        func sent(_ actions: [Handshake.Action], _ name: String) {
            for case .send(let bytes) in actions { log.append((name, bytes)) }
        }
        sent(connector.start(), "control: node hello")
        _ = acceptor.start()
        sent(acceptor.receive(log[0].1), "control: coordinator hello")
        sent(connector.receive(log[1].1), "control: M1")
        sent(acceptor.receive(log[2].1.prefix(2)) + acceptor.receive(log[2].1.dropFirst(2)), "control: M2")
        sent(connector.receive(log[3].1.prefix(2)) + connector.receive(log[3].1.dropFirst(2)), "control: M3")
        sent(acceptor.receive(log[4].1.prefix(2)) + acceptor.receive(log[4].1.dropFirst(2)), "control: confirmation")
        _ = connector.receive(log[5].1.prefix(2)) + connector.receive(log[5].1.dropFirst(2))
        #expect(connector.isEstablished && acceptor.isEstablished)
        var sealer = RecordSealer(cipher: try #require(connector.transport).sending)
        var record: [UInt8] = []
        try heartbeatFrame.withUnsafeBytes { try sealer.seal($0, into: &record) }
        log.append(("control: first record from the node", record))

        // Data: the node dials its peer, whose record gave the peer's key (IKpsk1).
        var dialler = Handshake(
            connectingFor: .data, key: key, localID: node.idBytes, staticKey: nodeStatic, expectedPeerID: peer.idBytes,
            expectedPeerKey: peer.publicKey, nonce: connectorNonce, ephemeral: nodeEphemeral)
        var port = Handshake(
            accepting: [.data: .key(key)], localID: peer.idBytes, staticKey: peerStatic, nonce: acceptorNonce,
            ephemeral: peerEphemeral)
        _ = dialler.start()
        let base = log.count
        sent(port.start(), "data: peer hello")
        let answer = dialler.receive(log[base].1)
        for case .send(let bytes) in answer { log.append((log.count == base + 1 ? "data: node hello" : "data: M1", bytes)) }
        sent(port.receive(log[base + 1].1), "-")
        sent(port.receive(log[base + 2].1.prefix(2)) + port.receive(log[base + 2].1.dropFirst(2)), "data: M2")
        sent(dialler.receive(log.last!.1.prefix(2)) + dialler.receive(log.last!.1.dropFirst(2)), "data: confirmation")
        _ = port.receive(log.last!.1.prefix(2)) + port.receive(log.last!.1.dropFirst(2))
        #expect(dialler.isEstablished && port.isEstablished)
        var dataSealer = RecordSealer(cipher: try #require(dialler.transport).sending)
        var dataRecord: [UInt8] = []
        try heartbeatFrame.withUnsafeBytes { try dataSealer.seal($0, into: &dataRecord) }
        log.append(("data: first record from the node", dataRecord))
        for (name, bytes) in log where name != "-" { values[name] = hex(bytes) }
        return values
    }

    /// Drives both sides with the document's keys and nonces and checks every byte each one sends.
    @Test func theWorkedExampleByteForByte() throws {
        let values = try Self.computed()
        if Self.expected.isEmpty {
            for (name, value) in values.sorted(by: { $0.key < $1.key }) { print("VECTOR \(name) = \(value)") }
        }
        for (name, value) in Self.expected {
            #expect(values[name] == value, "\(name)")
        }
        #expect(!Self.expected.isEmpty, "the expected values are missing")
    }

    /// An acceptor that does not serve the purpose answers with purpose 0, then fails.
    @Test func unservedPurposeIsAnsweredWithZero() {
        var acceptor = Handshake(accepting: [.control: .open, .inspect: .open], localID: nil, nonce: Self.acceptorNonce)
        #expect(acceptor.start().isEmpty)
        let openHello = Array("MESH".utf8) + [3, 0, 4] + Self.connectorNonce + Handshake.noID
        let answer = acceptor.receive(openHello)
        #expect(answer == [.send(Array("MESH".utf8) + [3, 0, 0] + Self.acceptorNonce + Handshake.noID), .fail(.purposeNotServed(4))])
    }

    /// A data port sends its hello at accept; a control hello sent to it is refused with nothing more.
    @Test func aDataPortSpeaksFirst() {
        let id: [UInt8] = [0x0b, 0x7d, 0x2e, 0x55, 0xa1, 0xc3, 0x9f, 0x08]
        var acceptor = Handshake(accepting: [.data: .open], localID: id, nonce: Self.acceptorNonce)
        #expect(acceptor.start() == [.send(Array("MESH".utf8) + [3, 0, 4] + Self.acceptorNonce + id)])
        let controlHello = Array("MESH".utf8) + [3, 0, 1] + Self.connectorNonce + Handshake.noID
        #expect(acceptor.receive(controlHello) == [.fail(.purposeNotServed(1))])
    }
}

/// The expected values of the worked example (docs/PROTOCOL.md §3.8).
enum ProtocolVectors {
    static let values: [String: String] = [
        "control: M1":
            "003064b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466885b133912b2adb5048935c930f00448",
        "control: M2":
            "0060244fe3b963e899dd295baffce248d3530f3a9a7479ba063002680ebfe7adad496c5bdcd01747441d6a050256b84242dea49cd03f971900a7b1764d1fa7110c16f584339db5dd828c49a83ca42ab879825fe49f5283a6685f897eec0a3f47a779",
        "control: M3":
            "0040a7cdbf198657d3206cb5cd0be29929ab49b112c602065a18428b32e784a0dfcc36d29d9bf9b4a0df354d7ea769029110e8d5425e4b8d5d5c7b2d621367a89efd",
        "control: confirmation":
            "001064c6c04ca963414ad0a3b8e9bb7b2935",
        "control: coordinator hello":
            "4d455348030101a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf0000000000000000",
        "control: first record from the node":
            "000000296ef979d32fab0e42b5da99910e039ffbb0185dacf4b97ab056b0a6c41294ca2522e1a30277c3c764b6",
        "control: node hello":
            "4d455348030101000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6d7ed78321a0c5f2",
        "coordinator public key":
            "5869aff450549732cbaaed5e5df9b30a6da31cb0e5742bad5ad4a1a768f1a67b",
        "data: first record from the node":
            "000000295794d969ee80aa08d6aaf00e441134910916d506dd2b2b3c0236c19bc9a36e33ba5dc220ec54a36355",
        "data: M1":
            "006064b101b1d0be5a8704bd078f9895001fc03e8e9f9522f188dd128d9846d48466a3ef36bbac23690c8a322884b0dd3ac64949ef316f8e9bb77a01e522b60e11faa59309427ac1ef56b6240edad319b726c35a20496a90be1ccc2092f8549a2655",
        "data: M2":
            "0030ad438bfae31f6c093d61d4339255ea798092c9fadd07b97827f4b0ae9dee7c1c52e3b7ec0fb083f69f3243245418bb71",
        "data: confirmation":
            "001038c0c7b9c07be6db414e047f1fa3b385",
        "data: node hello":
            "4d455348030104000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f6d7ed78321a0c5f2",
        "data: peer hello":
            "4d455348030104a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebff16dbeac7e65d12c",
        "node id":
            "6d7ed78321a0c5f2",
        "node public key":
            "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c",
        "peer id":
            "f16dbeac7e65d12c",
        "peer public key":
            "883186b800b41d5cf0429695da9b3cc4f328ebcd184a6e482fa578c103f06c77",
    ]
}
