import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("X25519 (RFC 7748)")
struct X25519Tests {
    typealias PrivateKey = Curve25519.KeyAgreement.PrivateKey
    typealias PublicKey = Curve25519.KeyAgreement.PublicKey

    /// X25519(k, u) through the public API; `nil` when it refuses (an all-zero result).
    static func x25519(_ scalar: [UInt8], _ point: [UInt8]) throws -> [UInt8]? {
        let key = try PrivateKey(rawRepresentation: scalar)
        let peer = try PublicKey(rawRepresentation: point)
        guard let secret = try? key.sharedSecretFromKeyAgreement(with: peer) else { return nil }
        return secret.withUnsafeBytes { Array($0) }
    }

    @Test("section 5.2: the two scalar multiplication vectors")
    func section5_2() throws {
        #expect(
            try Self.x25519(
                hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
                hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"))
                == hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"))
        #expect(
            try Self.x25519(
                hex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
                hex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"))
                == hex("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"))
    }

    /// Runs RFC 7748's iteration: k = X25519(k, u), u = old k, starting from k = u = 9. It calls
    /// the bare function: one scalar multiplication per step, where `PrivateKey` would add one
    /// for its public key, which keeps the 1,000 steps quick even in an unoptimized build.
    static func iterate(_ count: Int) throws -> [UInt8] {
        var k = [UInt8](repeating: 0, count: 32)
        k[0] = 9
        var u = k
        for _ in 0..<count {
            let next = try Curve25519.x25519(scalar: k, point: u)
            u = k
            k = next
        }
        return k
    }

    @Test("section 5.2: the iterated vector after 1 and 1,000 iterations")
    func section5_2Iterations() throws {
        #expect(try Self.iterate(1) == hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"))
        // The bare function and the public API agree.
        let scalar = hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
        let point = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
        #expect(try Curve25519.x25519(scalar: scalar, point: point) == Self.x25519(scalar, point))
        #expect(try Self.iterate(1_000) == hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"))
    }

    @Test(
        "section 5.2: the iterated vector after 1,000,000 iterations",
        .enabled(if: ProcessInfo.processInfo.environment["MESH_CRYPTO_LONG"] == "1", "set MESH_CRYPTO_LONG=1"))
    func section5_2Million() throws {
        #expect(try Self.iterate(1_000_000) == hex("7c3911e0ab2586fd864497297e575e6f3bc601c0883c30df5f4dd2d24f665424"))
    }

    @Test("section 6.1: Alice's and Bob's keys and their shared secret")
    func section6_1() throws {
        let alice = try PrivateKey(
            rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try PrivateKey(
            rawRepresentation: hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(
            Array(alice.publicKey.rawRepresentation)
                == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        #expect(
            Array(bob.publicKey.rawRepresentation)
                == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
        let aliceSide = try alice.sharedSecretFromKeyAgreement(with: bob.publicKey)
        let bobSide = try bob.sharedSecretFromKeyAgreement(with: alice.publicKey)
        #expect(aliceSide == shared)
        #expect(aliceSide == bobSide)
    }

    @Test("every Wycheproof x25519_test.json case")
    func wycheproof() throws {
        let file = try JSONVectors.load(
            JSONVectors.Wycheproof<JSONVectors.X25519Test>.self, from: JSONVectors.x25519File)
        let tests = file.tests
        #expect(tests.count == file.numberOfTests)
        #expect(tests.count == 518)
        var computed = 0
        var refused = 0
        for test in tests {
            let result = try Self.x25519(hex(test.private), hex(test.public))
            let expected = hex(test.shared)
            let zero = expected.allSatisfy { $0 == 0 }
            switch test.result {
            case "valid":
                #expect(result == expected, "tcId \(test.tcId) \(test.comment)")
            case "acceptable" where zero:
                // RFC 7748 6.1: an all-zero shared secret is refused.
                #expect(result == nil, "tcId \(test.tcId) \(test.comment): all-zero secret accepted")
            case "acceptable":
                // Twist points, non-canonical and special public keys: computed as the RFC says.
                #expect(result == expected, "tcId \(test.tcId) \(test.comment)")
            default:
                #expect(result == nil, "tcId \(test.tcId) \(test.comment): invalid case accepted")
            }
            if result == nil { refused += 1 } else { computed += 1 }
            if test.flags.contains("ZeroSharedSecret") {
                #expect(result == nil, "tcId \(test.tcId): ZeroSharedSecret must throw")
            }
        }
        // Every all-zero shared secret in the file, and nothing else, is refused.
        let zeroCount = tests.filter { hex($0.shared).allSatisfy { $0 == 0 } }.count
        #expect(refused == zeroCount)
        #expect(computed + refused == 518)
    }

    @Test("sizes: 32-byte keys only, wrong sizes throw incorrectKeySize")
    func sizes() throws {
        for count in [0, 31, 33, 64] {
            #expect(throws: CryptoKitError.incorrectKeySize) {
                try PrivateKey(rawRepresentation: [UInt8](repeating: 1, count: count))
            }
            #expect(throws: CryptoKitError.incorrectKeySize) {
                try PublicKey(rawRepresentation: Data(repeating: 1, count: count))
            }
        }
    }

    @Test("low-order public keys throw invalidParameter")
    func lowOrder() throws {
        let key = PrivateKey()
        var zero = [UInt8](repeating: 0, count: 32)
        #expect(throws: CryptoKitError.invalidParameter) {
            try key.sharedSecretFromKeyAgreement(with: PublicKey(rawRepresentation: zero))
        }
        zero[0] = 1
        #expect(throws: CryptoKitError.invalidParameter) {
            try key.sharedSecretFromKeyAgreement(with: PublicKey(rawRepresentation: zero))
        }
    }

    @Test("random key pairs agree, keys round-trip, descriptions hide secrets")
    func randomAgreement() throws {
        for _ in 0..<20 {
            let a = PrivateKey()
            let b = PrivateKey()
            let ab = try a.sharedSecretFromKeyAgreement(with: b.publicKey)
            let ba = try b.sharedSecretFromKeyAgreement(with: a.publicKey)
            #expect(ab == ba)
            let again = try PrivateKey(rawRepresentation: a.rawRepresentation)
            #expect(again.rawRepresentation == a.rawRepresentation)
            #expect(again.publicKey.rawRepresentation == a.publicKey.rawRepresentation)
            let salt = Array("salt".utf8)
            let info = Array("info".utf8)
            #expect(
                ab.hkdfDerivedSymmetricKey(using: SHA256.self, salt: salt, sharedInfo: info, outputByteCount: 32)
                    == ba.hkdfDerivedSymmetricKey(using: SHA256.self, salt: salt, sharedInfo: info, outputByteCount: 32))
            #expect(!"\(ab)".contains(VectorFiles.hex(ab.withUnsafeBytes { Array($0) }.prefix(4))))
            #expect("\(a)" == "Curve25519.KeyAgreement.PrivateKey")
        }
    }

    @Test("hkdfDerivedSymmetricKey is HKDF over the secret bytes")
    func hkdfDerivation() throws {
        let alice = try PrivateKey(
            rawRepresentation: hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try PublicKey(
            rawRepresentation: hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        let secret = try alice.sharedSecretFromKeyAgreement(with: bob)
        let derived = secret.hkdfDerivedSymmetricKey(
            using: SHA256.self, salt: Data([1, 2, 3]), sharedInfo: Array("x".utf8), outputByteCount: 42)
        let direct = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")),
            salt: [1, 2, 3], info: Array("x".utf8), outputByteCount: 42)
        #expect(derived == direct)
        #expect(derived.bitCount == 42 * 8)
    }
}

extension X25519Tests {
    @Test("SymmetricKey(data:) takes a shared secret, as swift-crypto's does")
    func symmetricKeyFromSecret() throws {
        let a = PrivateKey()
        let b = PrivateKey()
        let secret = try a.sharedSecretFromKeyAgreement(with: b.publicKey)
        let key = SymmetricKey(data: secret)
        #expect(key.bitCount == 256)
        #expect(key.withUnsafeBytes { Array($0) } == secret.withUnsafeBytes { Array($0) })
    }
}
