import Foundation
import MeshCrypto
import Testing

@Suite("SymmetricKey")
struct SymmetricKeyTests {
    @Test("keeps its bytes, compares by them, and never prints them")
    func bytesAndPrinting() {
        let bytes: [UInt8] = [0xde, 0xad, 0xbe, 0xef]
        let key = SymmetricKey(data: bytes)
        #expect(key.bitCount == 32)
        #expect(key.withUnsafeBytes { Array($0) } == bytes)
        #expect(key == SymmetricKey(data: Data(bytes)))
        #expect(key != SymmetricKey(data: [0xde, 0xad, 0xbe, 0xee]))
        #expect(key.description == "SymmetricKey(32 bits)")
        #expect(!"\(key)".contains("222"))
        #expect(!String(reflecting: key).contains("173"))
    }

    @Test("random keys have the requested size and differ")
    func randomKeys() {
        let first = SymmetricKey(size: .bits256)
        let second = SymmetricKey(size: .bits256)
        #expect(first.bitCount == 256)
        #expect(SymmetricKey(size: .bits128).bitCount == 128)
        #expect(first != second)
    }
}
