import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("SHA-256 known answers")
struct SHA256VectorTests {
    @Test("every NIST CAVP short-message vector", arguments: availableBackends)
    func nistShortMessages(backend: SHA256.Backend) throws {
        let vectors = try VectorFiles.nistShortMessages()
        let recordLines = try VectorFiles.count(linesStartingWith: "Len =", in: VectorFiles.nistFile)
        #expect(vectors.count == recordLines)
        #expect(vectors.count == 65)
        for vector in vectors {
            #expect(sha256(vector.message, backend: backend).description == vector.digest, "\(vector.source)")
        }
    }

    @Test("every SHA256 record of the pseudo-random file", arguments: availableBackends)
    func randomMessages(backend: SHA256.Backend) throws {
        let vectors = try VectorFiles.randomVectors().hashes
        let recordLines = try VectorFiles.count(linesStartingWith: "SHA256 ", in: VectorFiles.randomFile)
        #expect(vectors.count == recordLines)
        #expect(vectors.count == 214)
        for vector in vectors {
            #expect(sha256(vector.message, backend: backend).description == vector.digest, "\(vector.source)")
        }
    }

    @Test("classic answers: empty, abc, one million a", arguments: availableBackends)
    func classicAnswers(backend: SHA256.Backend) {
        #expect(
            sha256([], backend: backend).description
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            sha256(Array("abc".utf8), backend: backend).description
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            sha256([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000), backend: backend).description
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("SHA256() picks the preferred backend and agrees with the one-shot API")
    func defaultHasher() {
        #expect(SHA256().backend == SHA256.Backend.preferred)
        let message = Array("The quick brown fox jumps over the lazy dog".utf8)
        var hasher = SHA256()
        hasher.update(data: message)
        #expect(hasher.finalize() == SHA256.hash(data: message))
        #expect(
            SHA256.hash(data: Data(message)).description
                == "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592")
    }

    @Test("a digest is a Hashable sequence of 32 bytes with hex description")
    func digestShape() throws {
        let digest = SHA256.hash(data: Array("abc".utf8))
        let expected = try VectorFiles.hexBytes("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.byteCount == 32)
        #expect(SHA256Digest.byteCount == 32)
        #expect(SHA256.blockByteCount == 64)
        #expect(Array(digest) == expected)
        #expect(digest.withUnsafeBytes { Array($0) } == expected)
        #expect(VectorFiles.hex(digest) == digest.description)
        #expect(digest.description == digest.description.lowercased())

        let other = SHA256.hash(data: Array("abd".utf8))
        #expect(digest == SHA256.hash(data: Array("abc".utf8)))
        #expect(digest != other)
        #expect(Set([digest, other, SHA256.hash(data: Array("abc".utf8))]).count == 2)
    }
}
