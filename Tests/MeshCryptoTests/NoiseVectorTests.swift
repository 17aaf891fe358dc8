import Foundation
import MeshCrypto
import Testing

@Suite("Noise Protocol Framework (revision 34)")
struct NoiseVectorTests {
    typealias PrivateKey = Curve25519.KeyAgreement.PrivateKey
    typealias PublicKey = Curve25519.KeyAgreement.PublicKey

    static let vectors: [JSONVectors.NoiseVector] = {
        do {
            return try JSONVectors.load(JSONVectors.NoiseFile.self, from: JSONVectors.noiseFile).vectors
        } catch {
            Issue.record("cannot read \(JSONVectors.noiseFile): \(error)")
            return []
        }
    }()

    @Test("the file holds the 59 protocols of the suite, each once")
    func count() {
        #expect(Self.vectors.count == 59)
        #expect(Set(Self.vectors.map(\.protocol_name)).count == 59)
        #expect(Self.vectors.allSatisfy { $0.protocol_name.hasSuffix("_25519_ChaChaPoly_SHA256") })
    }

    @Test("every cacophony vector: handshake, handshake hash and transport messages", arguments: vectors)
    func vector(_ vector: JSONVectors.NoiseVector) throws {
        let name = vector.protocol_name
        func privateKey(_ text: String?) throws -> PrivateKey? {
            try text.map { try PrivateKey(rawRepresentation: hex($0)) }
        }
        func publicKey(_ text: String?) throws -> PublicKey? {
            try text.map { try PublicKey(rawRepresentation: hex($0)) }
        }
        var initiator = try Noise.HandshakeState(
            protocolName: name, role: .initiator, prologue: hex(vector.init_prologue),
            staticKey: privateKey(vector.init_static), ephemeralKey: privateKey(vector.init_ephemeral),
            remoteStaticKey: publicKey(vector.init_remote_static), presharedKeys: (vector.init_psks ?? []).map(hex))
        var responder = try Noise.HandshakeState(
            protocolName: name, role: .responder, prologue: hex(vector.resp_prologue),
            staticKey: privateKey(vector.resp_static), ephemeralKey: privateKey(vector.resp_ephemeral),
            remoteStaticKey: publicKey(vector.resp_remote_static), presharedKeys: (vector.resp_psks ?? []).map(hex))

        let handshakeCount = initiator.pattern.messages.count
        #expect(vector.messages.count > handshakeCount, "\(name): no transport messages")
        for (index, message) in vector.messages.prefix(handshakeCount).enumerated() {
            let initiatorSends = index % 2 == 0
            #expect(initiatorSends ? initiator.isMyTurn : responder.isMyTurn)
            let ciphertext =
                initiatorSends
                ? try initiator.writeMessage(payload: hex(message.payload))
                : try responder.writeMessage(payload: hex(message.payload))
            #expect(ciphertext == hex(message.ciphertext), "\(name): handshake message \(index)")
            let payload =
                initiatorSends ? try responder.readMessage(ciphertext) : try initiator.readMessage(ciphertext)
            #expect(payload == hex(message.payload), "\(name): handshake message \(index) payload")
        }
        #expect(initiator.isFinished && responder.isFinished)
        #expect(initiator.handshakeHash == hex(vector.handshake_hash), "\(name): initiator's handshake hash")
        #expect(responder.handshakeHash == hex(vector.handshake_hash), "\(name): responder's handshake hash")
        // What each side learned of the other's static key is the other's real key.
        if let key = try privateKey(vector.init_static) {
            #expect(responder.remoteStaticKey?.rawRepresentation == key.publicKey.rawRepresentation)
        }
        if let key = try privateKey(vector.resp_static) {
            #expect(initiator.remoteStaticKey?.rawRepresentation == key.publicKey.rawRepresentation)
        }

        var (initiatorSend, initiatorReceive) = try initiator.split()
        var (responderSend, responderReceive) = try responder.split()
        for (index, message) in vector.messages.enumerated().dropFirst(handshakeCount) {
            // After the handshake the sides keep alternating; in one-way patterns only the initiator sends.
            let initiatorSends = initiator.pattern.isOneWay || index % 2 == 0
            let ciphertext =
                initiatorSends
                ? try initiatorSend.encrypt(hex(message.payload)) : try responderSend.encrypt(hex(message.payload))
            #expect(ciphertext == hex(message.ciphertext), "\(name): transport message \(index)")
            let payload =
                initiatorSends ? try responderReceive.decrypt(ciphertext) : try initiatorReceive.decrypt(ciphertext)
            #expect(payload == hex(message.payload), "\(name): transport message \(index) payload")
        }
    }

    /// An XX handshake between fresh keys, run to the end.
    static func handshake(_ protocolName: String = "Noise_XX_25519_ChaChaPoly_SHA256", psks: [[UInt8]] = []) throws
        -> (initiator: Noise.HandshakeState, responder: Noise.HandshakeState)
    {
        var initiator = try Noise.HandshakeState(
            protocolName: protocolName, role: .initiator, staticKey: PrivateKey(), presharedKeys: psks)
        var responder = try Noise.HandshakeState(
            protocolName: protocolName, role: .responder, staticKey: PrivateKey(), presharedKeys: psks)
        while !initiator.isFinished {
            if initiator.isMyTurn {
                _ = try responder.readMessage(initiator.writeMessage())
            } else {
                _ = try initiator.readMessage(responder.writeMessage())
            }
        }
        return (initiator, responder)
    }

    @Test("a tampered handshake message, a wrong PSK and a wrong prologue all fail")
    func tampering() throws {
        var initiator = try Noise.HandshakeState(
            protocolName: "Noise_XX_25519_ChaChaPoly_SHA256", role: .initiator, staticKey: PrivateKey())
        var responder = try Noise.HandshakeState(
            protocolName: "Noise_XX_25519_ChaChaPoly_SHA256", role: .responder, staticKey: PrivateKey())
        _ = try responder.readMessage(initiator.writeMessage())
        var second = try responder.writeMessage(payload: Array("hi".utf8))
        second[40] ^= 1
        #expect(throws: Noise.Error.decryptionFailed) { try initiator.readMessage(second) }

        let psk = [UInt8](repeating: 7, count: 32)
        var a = try Noise.HandshakeState(
            protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256", role: .initiator, presharedKeys: [psk])
        var b = try Noise.HandshakeState(
            protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256", role: .responder,
            presharedKeys: [[UInt8](repeating: 8, count: 32)])
        #expect(throws: Noise.Error.decryptionFailed) { try b.readMessage(a.writeMessage()) }

        let responderKey = PrivateKey()
        var c = try Noise.HandshakeState(
            protocolName: "Noise_NK_25519_ChaChaPoly_SHA256", role: .initiator, prologue: [1],
            remoteStaticKey: responderKey.publicKey)
        var d = try Noise.HandshakeState(
            protocolName: "Noise_NK_25519_ChaChaPoly_SHA256", role: .responder, prologue: [2], staticKey: responderKey)
        #expect(throws: Noise.Error.decryptionFailed) { try d.readMessage(c.writeMessage()) }
    }

    @Test("misuse: out of turn, missing keys, unknown names, wrong PSK counts")
    func misuse() throws {
        var initiator = try Noise.HandshakeState(protocolName: "Noise_NN_25519_ChaChaPoly_SHA256", role: .initiator)
        #expect(throws: Noise.Error.notMyTurn) { try initiator.readMessage([]) }
        #expect(throws: Noise.Error.handshakeNotFinished) { try initiator.split() }
        #expect(throws: Noise.Error.missingKey("the peer's static key (rs)")) {
            try Noise.HandshakeState(protocolName: "Noise_IK_25519_ChaChaPoly_SHA256", role: .initiator, staticKey: PrivateKey())
        }
        #expect(throws: Noise.Error.missingKey("this side's static key (s)")) {
            try Noise.HandshakeState(protocolName: "Noise_XX_25519_ChaChaPoly_SHA256", role: .responder)
        }
        for name in [
            "Noise_XX_448_ChaChaPoly_SHA256", "Noise_XX_25519_AESGCM_SHA256", "Noise_QQ_25519_ChaChaPoly_SHA256",
            "Noise_XXfallback_25519_ChaChaPoly_SHA256", "Noise_XXpsk9_25519_ChaChaPoly_SHA256", "XX",
        ] {
            #expect(throws: Noise.Error.unsupportedProtocol(name)) {
                try Noise.HandshakeState(protocolName: name, role: .initiator, staticKey: PrivateKey())
            }
        }
        #expect(throws: Noise.Error.badPresharedKeys) {
            try Noise.HandshakeState(protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256", role: .initiator)
        }
        #expect(throws: Noise.Error.badPresharedKeys) {
            try Noise.HandshakeState(
                protocolName: "Noise_NNpsk0_25519_ChaChaPoly_SHA256", role: .initiator, presharedKeys: [[1, 2, 3]])
        }
        // Two modifiers join with "+".
        let pattern = try Noise.HandshakePattern(named: "NNpsk0+psk2")
        #expect(pattern.messages.map(\.tokens) == [[.psk, .e], [.e, .ee, .psk]])
        let (finished, _) = try Self.handshake()
        var done = finished
        #expect(throws: Noise.Error.handshakeFinished) { try done.writeMessage() }
    }

    @Test("transport: both directions, replays fail, rekey keeps the sides in step, IKpsk2 and XXpsk3 complete")
    func transport() throws {
        for (name, psks) in [
            ("Noise_XX_25519_ChaChaPoly_SHA256", [[UInt8]]()),
            ("Noise_XXpsk3_25519_ChaChaPoly_SHA256", [[UInt8](repeating: 3, count: 32)]),
        ] {
            let (initiator, responder) = try Self.handshake(name, psks: psks)
            #expect(initiator.handshakeHash == responder.handshakeHash)
            var (aSend, aReceive) = try initiator.split()
            var (bSend, bReceive) = try responder.split()
            for round in 0..<5 {
                let message = Array("message \(round)".utf8)
                let sealed = try aSend.encrypt(message)
                #expect(try bReceive.decrypt(sealed) == message)
                #expect(throws: Noise.Error.decryptionFailed) { try bReceive.decrypt(sealed) }  // replay
                #expect(try aReceive.decrypt(bSend.encrypt(message)) == message)
                if round == 2 {
                    aSend.rekey()
                    bReceive.rekey()
                }
            }
            #expect(aSend.nonce == 5 && bReceive.nonce == 5)
        }

        let responderKey = PrivateKey()
        let psk = [UInt8](repeating: 9, count: 32)
        var initiator = try Noise.HandshakeState(
            protocolName: "Noise_IKpsk2_25519_ChaChaPoly_SHA256", role: .initiator, staticKey: PrivateKey(),
            remoteStaticKey: responderKey.publicKey, presharedKeys: [psk])
        var responder = try Noise.HandshakeState(
            protocolName: "Noise_IKpsk2_25519_ChaChaPoly_SHA256", role: .responder, staticKey: responderKey,
            presharedKeys: [psk])
        #expect(try responder.readMessage(initiator.writeMessage(payload: [1])) == [1])
        #expect(try initiator.readMessage(responder.writeMessage(payload: [2])) == [2])
        #expect(initiator.isFinished && responder.isFinished)
        #expect(responder.remoteStaticKey?.rawRepresentation == initiator.staticKey?.publicKey.rawRepresentation)
    }

    @Test("a cipher state refuses the last nonce")
    func nonceExhaustion() throws {
        var cipher = Noise.CipherState(key: [UInt8](repeating: 1, count: 32))
        cipher.setNonce(.max - 1)
        _ = try cipher.encrypt([1])
        #expect(throws: Noise.Error.nonceExhausted) { try cipher.encrypt([1]) }
        var empty = Noise.CipherState()
        #expect(try empty.encrypt([1, 2]) == [1, 2])
    }
}

extension JSONVectors.NoiseVector: CustomTestStringConvertible {
    var testDescription: String { protocol_name }
}
