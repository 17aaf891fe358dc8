import MeshCrypto
import MeshTesting
import Testing

@testable import Mesh

/// The worked example of docs/PROTOCOL.md §3.8, byte for byte, from the Swift code itself.
///
/// The same values come out of `scripts/protocol_vectors.py` (Python's hashlib and hmac), so
/// the document, an independent implementation and this code cannot drift apart unnoticed.
@Suite struct ProtocolVectorTests {
    private static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.utf8.filter { $0 != 0x20 && $0 != 0x0a })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
    }

    static let stretchedKey = bytes("ab8ab73e6733a315dae573eac544a2d37cab0e3e596dbee5ebd83e08b896d0bd")
    static let nodeSecret = Array(UInt8(0xf0)...UInt8(0xff))
    static let nodeID = "1b99f5ab762afc6f"
    static let connectorNonce = Array(UInt8(0x00)...UInt8(0x1f))
    static let acceptorNonce = Array(UInt8(0xa0)...UInt8(0xbf))
    static let connectorHello = bytes(
        "4d455348020101 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f 1b99f5ab762afc6f")
    static let acceptorHello = bytes(
        "4d455348020101 a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf 0000000000000000")
    static let connectorProof = bytes("e20813a15d413bfded9accb554eb82b2f44f0882043261a7020fb6ec8e5aa78f")
    static let verdict = bytes("00 5a3047b44e0d11add4456f0c7e763919baab1eec25ae3fc90e21caa749aa25d1")
    static let heartbeatFrame = bytes("00000015 01 7b2274797065223a22686561727462656174227d")
    static let firstRecord = bytes(
        "00000039 00000015017b2274797065223a22686561727462656174227d"
            + "6fe7d9617553908a28b96425f0391a597dbb542fc1138648b44513e5c288b738")
    static let secondTag = bytes("5bbc9d4760f79d1482229f422550cba46ef475fc6a5594c090d69fe06cec61ea")

    @Test func keyIsStretchedWithPBKDF2() throws {
        let text = "5ede06b6f51adaad884861af2520cd1c1be8e590afcb7c0a289860b2d53071f9"
        let key = try #require(try MeshKey.stretched(text))
        #expect(key == SymmetricKey(data: Self.stretchedKey))
        // The example is a key as mesh keygen makes them, which every program accepts as it is.
        #expect(throws: Never.self) { try MeshKey.validate(text, allowWeak: false) }
    }

    @Test func nodeIDComesFromItsSecret() {
        #expect(NodeID.id(forSecret: Self.nodeSecret) == Self.nodeID)
        #expect(NodeID.matches(id: Self.nodeID, secretHex: "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"))
        #expect(!NodeID.matches(id: Self.nodeID, secretHex: "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefe"))
    }

    /// Drives both sides with the document's nonces and checks every byte each one sends.
    @Test func keyedHandshakeAndFirstRecord() throws {
        let key = SymmetricKey(data: Self.stretchedKey)
        var connector = Handshake(
            connectingFor: .control, key: key, localID: NodeID.bytes(Self.nodeID), nonce: Self.connectorNonce)
        var acceptor = Handshake(
            accepting: [.control: .key(key), .inspect: .key(key), .admin: .open], localID: nil, nonce: Self.acceptorNonce)

        #expect(connector.start() == [.send(Self.connectorHello)])
        #expect(acceptor.start() == [])
        #expect(acceptor.receive(Self.connectorHello) == [.send(Self.acceptorHello)])
        #expect(connector.receive(Self.acceptorHello) == [.send(Self.connectorProof)])
        #expect(acceptor.receive(Self.connectorProof) == [.send(Self.verdict), .established])
        #expect(connector.receive(Self.verdict) == [.established])

        let connectorKeys = try #require(connector.sessionKeys)
        let acceptorKeys = try #require(acceptor.sessionKeys)
        var sealer = RecordSealer(key: connectorKeys.sending)
        var record: [UInt8] = []
        Self.heartbeatFrame.withUnsafeBytes { sealer.seal($0, into: &record) }
        #expect(record == Self.firstRecord)
        var second: [UInt8] = []
        Self.heartbeatFrame.withUnsafeBytes { sealer.seal($0, into: &second) }
        #expect(Array(second.suffix(32)) == Self.secondTag)

        // The acceptor opens both records with its receiving key, in order.
        var opener = RecordOpener(key: acceptorKeys.receiving, maximumRecordLength: 1 << 20)
        var frames = FrameDecoder(maximumFrameLength: 1 << 20)
        opener.decoder.append(record + second)
        try opener.open(into: &frames)
        #expect(try frames.decode() == Frame(kind: 1, body: Array(#"{"type":"heartbeat"}"#.utf8)))
        #expect(try frames.decode() == Frame(kind: 1, body: Array(#"{"type":"heartbeat"}"#.utf8)))

        // Replaying record 0 as the third record fails its tag.
        opener.decoder.append(record)
        #expect(throws: ConnectionError.self) { try opener.open(into: &frames) }
    }

    /// An acceptor that does not serve the purpose answers with purpose 0, then fails.
    @Test func unservedPurposeIsAnsweredWithZero() {
        var acceptor = Handshake(accepting: [.control: .open, .inspect: .open], localID: nil, nonce: Self.acceptorNonce)
        #expect(acceptor.start().isEmpty)
        let openHello = Array("MESH".utf8) + [2, 0, 4] + Self.connectorNonce + Handshake.noID
        let answer = acceptor.receive(openHello)
        #expect(answer == [.send(Array("MESH".utf8) + [2, 0, 0] + Self.acceptorNonce + Handshake.noID), .fail(.purposeNotServed(4))])
    }

    /// A data port sends its hello at accept; a control hello sent to it is refused with nothing more.
    @Test func aDataPortSpeaksFirst() {
        let id: [UInt8] = [0x0b, 0x7d, 0x2e, 0x55, 0xa1, 0xc3, 0x9f, 0x08]
        var acceptor = Handshake(accepting: [.data: .open], localID: id, nonce: Self.acceptorNonce)
        #expect(acceptor.start() == [.send(Array("MESH".utf8) + [2, 0, 4] + Self.acceptorNonce + id)])
        let controlHello = Array("MESH".utf8) + [2, 0, 1] + Self.connectorNonce + Handshake.noID
        #expect(acceptor.receive(controlHello) == [.fail(.purposeNotServed(1))])
    }
}
