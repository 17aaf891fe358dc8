import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("HMAC-SHA256 known answers and verification")
struct HMACVectorTests {
    @Test("every RFC 4231 case", arguments: availableBackends)
    func rfc4231(backend: SHA256.Backend) throws {
        let vectors = try VectorFiles.rfc4231()
        let recordLines = try VectorFiles.count(linesStartingWith: "Case =", in: VectorFiles.rfc4231File)
        #expect(vectors.count == recordLines)
        #expect(vectors.count == 7)
        for vector in vectors {
            let mac = hmacSHA256(key: vector.key, message: vector.message, backend: backend)
            #expect(mac.description == vector.mac, "\(vector.source)")
        }
    }

    @Test("every HMAC record of the pseudo-random file", arguments: availableBackends)
    func randomPairs(backend: SHA256.Backend) throws {
        let vectors = try VectorFiles.randomVectors().macs
        let recordLines = try VectorFiles.count(linesStartingWith: "HMAC ", in: VectorFiles.randomFile)
        #expect(vectors.count == recordLines)
        #expect(vectors.count == 312)
        #expect(vectors.contains { $0.key.count > SHA256.blockByteCount }, "no key longer than a block")
        for vector in vectors {
            let mac = hmacSHA256(key: vector.key, message: vector.message, backend: backend)
            #expect(mac.description == vector.mac, "\(vector.source)")
        }
    }

    @Test("the SymmetricKey, prepared-key and streaming APIs agree")
    func apisAgree() throws {
        for vector in try VectorFiles.rfc4231() {
            let key = SymmetricKey(data: vector.key)
            let oneShot = HMAC<SHA256>.authenticationCode(for: vector.message, using: key)
            let prepared = HMAC<SHA256>.authenticationCode(for: Data(vector.message), using: HMAC<SHA256>.Key(key))
            var streaming = HMAC<SHA256>(key: key)
            streaming.update(data: vector.message.prefix(7))
            streaming.update(data: vector.message.dropFirst(7))
            #expect(oneShot.description == vector.mac, "\(vector.source)")
            #expect(prepared == oneShot, "\(vector.source)")
            #expect(streaming.finalize() == oneShot, "\(vector.source)")
        }
    }

    @Test("a MAC is a Hashable sequence of 32 bytes with hex description")
    func macShape() throws {
        let vector = try #require(try VectorFiles.rfc4231().first)
        let mac = HMAC<SHA256>.authenticationCode(for: vector.message, using: SymmetricKey(data: vector.key))
        let expected = try VectorFiles.hexBytes(vector.mac)
        #expect(mac.byteCount == 32)
        #expect(Array(mac) == expected)
        #expect(mac.withUnsafeBytes { Array($0) } == expected)
        #expect(VectorFiles.hex(mac) == vector.mac)
        let other = HMAC<SHA256>.authenticationCode(for: vector.message, using: SymmetricKey(data: [1, 2, 3]))
        #expect(Set([mac, other, mac]).count == 2)
    }

    @Test("verification accepts the right MAC and rejects every kind of wrong one", arguments: availableBackends)
    func verification(backend: SHA256.Backend) {
        let keyBytes = Array("handshake key".utf8)
        let key = SymmetricKey(data: keyBytes)
        let prepared = hmacKey(keyBytes, backend: backend)
        let message = Array("hello, mesh".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: prepared)
        let bytes = Array(mac)

        #expect(HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: key))
        #expect(HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: prepared))
        #expect(HMAC<SHA256>.isValidAuthenticationCode(bytes, authenticating: message, using: key))
        #expect(HMAC<SHA256>.isValidAuthenticationCode(Data(bytes), authenticating: message, using: prepared))

        #expect(!HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message + [0], using: key))
        #expect(
            !HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: SymmetricKey(data: [0])))
        var firstFlipped = bytes
        firstFlipped[0] ^= 0x01
        var lastFlipped = bytes
        lastFlipped[31] ^= 0x80
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(firstFlipped, authenticating: message, using: prepared))
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(lastFlipped, authenticating: message, using: prepared))
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(Array(bytes.prefix(16)), authenticating: message, using: key))
        #expect(!HMAC<SHA256>.isValidAuthenticationCode(bytes + [0], authenticating: message, using: key))
        #expect(!HMAC<SHA256>.isValidAuthenticationCode([UInt8](), authenticating: message, using: key))
    }

    @Test("a key longer than the block is hashed first; shorter keys are zero-padded", arguments: availableBackends)
    func keyLengths(backend: SHA256.Backend) {
        let message = Array("message".utf8)
        let long = [UInt8](repeating: 0xab, count: 100)
        let hashedKey = Array(sha256(long, backend: backend))
        #expect(
            hmacSHA256(key: long, message: message, backend: backend)
                == hmacSHA256(key: hashedKey, message: message, backend: backend))
        let short: [UInt8] = [1, 2, 3]
        #expect(
            hmacSHA256(key: short, message: message, backend: backend)
                == hmacSHA256(key: short + [0, 0, 0], message: message, backend: backend))
        #expect(
            hmacSHA256(key: short, message: message, backend: backend)
                != hmacSHA256(key: short + [1], message: message, backend: backend))
    }
}
