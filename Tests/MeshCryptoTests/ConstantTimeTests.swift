import Foundation
import MeshCrypto
import Testing

@Suite("Constant-time comparison")
struct ConstantTimeTests {
    @Test("equal, differing first byte, differing last byte, different lengths")
    func results() {
        let bytes: [UInt8] = Array(0..<32)
        var firstDiffers = bytes
        firstDiffers[0] ^= 0xff
        var lastDiffers = bytes
        lastDiffers[31] ^= 0x01

        #expect(constantTimeEquals(bytes, bytes))
        #expect(constantTimeEquals(bytes, Data(bytes)))
        #expect(constantTimeEquals(bytes[4...], Array(4..<32) as [UInt8]))
        #expect(constantTimeEquals([UInt8](), Data()))
        #expect(!constantTimeEquals(bytes, firstDiffers))
        #expect(!constantTimeEquals(bytes, lastDiffers))
        #expect(!constantTimeEquals(bytes, bytes.dropLast()))
        #expect(!constantTimeEquals(bytes, bytes + [0]))
        #expect(!constantTimeEquals([UInt8](), [0]))
    }

    @Test("digest and MAC equality see every byte")
    func digestEquality() {
        let key = SymmetricKey(data: Array("key".utf8))
        let a = HMAC<SHA256>.authenticationCode(for: [1, 2, 3], using: key)
        let b = HMAC<SHA256>.authenticationCode(for: [1, 2, 3], using: key)
        let c = HMAC<SHA256>.authenticationCode(for: [1, 2, 4], using: key)
        #expect(a == b)
        #expect(a != c)
        #expect(SHA256.hash(data: [1, 2, 3]) == SHA256.hash(data: Data([1, 2, 3])))
        #expect(SHA256.hash(data: [1, 2, 3]) != SHA256.hash(data: [1, 2, 4]))
    }
}
