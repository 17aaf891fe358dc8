import Foundation
import MeshCrypto
import Testing

/// Known answers for HKDF-SHA256 (RFC 5869, appendix A.1-A.3) and PBKDF2-HMAC-SHA256 (RFC 7914
/// section 11, and the RFC 6070 inputs computed for SHA-256), with the values copied from those
/// documents; Python's hashlib agrees with each.
@Suite("HKDF and PBKDF2 known answers")
struct KeyDerivationTests {
    private func hex(_ key: SymmetricKey) -> String {
        key.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }

    struct HKDFCase: Sendable, CustomTestStringConvertible {
        var name: String
        var ikm: [UInt8]
        var salt: [UInt8]
        var info: [UInt8]
        var length: Int
        var prk: String
        var okm: String
        var testDescription: String { name }
    }

    static let hkdfCases: [HKDFCase] = [
        HKDFCase(
            name: "A.1 basic", ikm: [UInt8](repeating: 0x0b, count: 22), salt: Array(0x00...0x0c),
            info: Array(0xf0...0xf9), length: 42,
            prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
        HKDFCase(
            name: "A.2 longer inputs", ikm: Array(0x00...0x4f), salt: Array(0x60...0xaf), info: Array(0xb0...0xff),
            length: 82,
            prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
                + "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
        HKDFCase(
            name: "A.3 no salt, no info", ikm: [UInt8](repeating: 0x0b, count: 22), salt: [], info: [], length: 42,
            prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
    ]

    @Test("RFC 5869 test cases", arguments: hkdfCases)
    func hkdf(vector: HKDFCase) {
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: SymmetricKey(data: vector.ikm), salt: vector.salt)
        #expect(hex(prk) == vector.prk)
        let okm = HKDF<SHA256>.expand(pseudoRandomKey: prk, info: vector.info, outputByteCount: vector.length)
        #expect(hex(okm) == vector.okm)
        let oneStep = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: vector.ikm), salt: vector.salt, info: vector.info,
            outputByteCount: vector.length)
        #expect(hex(oneStep) == vector.okm)
    }

    @Test("HKDF output is a prefix of any longer output; a different info gives a different key")
    func hkdfPrefixAndInfo() {
        let ikm = SymmetricKey(data: Array("input".utf8))
        let short = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, info: [1], outputByteCount: 20)
        let long = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, info: [1], outputByteCount: 100)
        #expect(hex(long).hasPrefix(hex(short)))
        #expect(hex(HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, info: [2], outputByteCount: 20)) != hex(short))
    }

    struct PBKDF2Case: Sendable, CustomTestStringConvertible {
        var password: String
        var salt: String
        var rounds: Int
        var derived: String
        var testDescription: String { "\(password.debugDescription) \(salt.debugDescription) x\(rounds)" }
    }

    static let pbkdf2Cases: [PBKDF2Case] = [
        // RFC 7914, section 11.
        PBKDF2Case(
            password: "passwd", salt: "salt", rounds: 1,
            derived: "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
                + "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"),
        PBKDF2Case(
            password: "Password", salt: "NaCl", rounds: 80_000,
            derived: "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
                + "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"),
        // The RFC 6070 inputs, with HMAC-SHA256 in place of HMAC-SHA1.
        PBKDF2Case(
            password: "password", salt: "salt", rounds: 1,
            derived: "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
        PBKDF2Case(
            password: "password", salt: "salt", rounds: 2,
            derived: "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
        PBKDF2Case(
            password: "password", salt: "salt", rounds: 4096,
            derived: "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        PBKDF2Case(
            password: "passwordPASSWORDpassword", salt: "saltSALTsaltSALTsaltSALTsaltSALTsalt", rounds: 4096,
            derived: "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9"),
        PBKDF2Case(password: "pass\0word", salt: "sa\0lt", rounds: 4096, derived: "89b69d0516f829893c696226650a8687"),
    ]

    @Test("RFC 7914 and RFC 6070-style vectors", arguments: pbkdf2Cases)
    func pbkdf2(vector: PBKDF2Case) {
        let derived = PBKDF2<SHA256>.deriveKey(
            password: Array(vector.password.utf8), salt: Array(vector.salt.utf8), rounds: vector.rounds,
            outputByteCount: vector.derived.count / 2)
        #expect(hex(derived) == vector.derived)
    }
}
