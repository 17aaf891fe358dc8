import Dispatch
import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("Streaming equals one-shot")
struct StreamingTests {
    /// Hashes `message` in the pieces that `cuts` (sorted offsets) mark.
    private func streamed(_ message: [UInt8], cuts: [Int], backend: SHA256.Backend) -> SHA256Digest {
        var hasher = SHA256(backend: backend)
        var start = 0
        for cut in cuts + [message.count] {
            hasher.update(data: message[start..<cut])
            start = cut
        }
        return hasher.finalize()
    }

    @Test("one byte at a time, every length through three blocks", arguments: availableBackends)
    func byteAtATime(backend: SHA256.Backend) {
        var generator = SeededGenerator(seed: 1)
        let message = generator.bytes(200)
        for length in 0...message.count {
            let prefix = Array(message.prefix(length))
            var hasher = SHA256(backend: backend)
            for byte in prefix { hasher.update(data: [byte]) }
            #expect(hasher.finalize() == sha256(prefix, backend: backend), "length \(length)")
        }
    }

    @Test("every two-piece split of a 200-byte message", arguments: availableBackends)
    func everySplit(backend: SHA256.Backend) {
        var generator = SeededGenerator(seed: 2)
        let message = generator.bytes(200)
        let whole = sha256(message, backend: backend)
        for cut in 0...message.count {
            #expect(streamed(message, cuts: [cut], backend: backend) == whole, "cut at \(cut)")
        }
    }

    @Test("splits at the padding and block boundaries", arguments: availableBackends)
    func boundarySplits(backend: SHA256.Backend) {
        var generator = SeededGenerator(seed: 3)
        let boundaries = [55, 56, 63, 64, 65]
        for length in [55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 300] {
            let message = generator.bytes(length)
            let whole = sha256(message, backend: backend)
            for first in boundaries where first <= length {
                #expect(streamed(message, cuts: [first], backend: backend) == whole, "\(length) cut \(first)")
                for second in boundaries.map({ first + $0 }) where second <= length {
                    #expect(
                        streamed(message, cuts: [first, second], backend: backend) == whole,
                        "\(length) cuts \(first), \(second)")
                }
            }
        }
    }

    @Test("random splits of random messages", arguments: availableBackends)
    func randomSplits(backend: SHA256.Backend) {
        let seed = SeededGenerator.seed(named: "StreamingTests.randomSplits")
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<300 {
            let message = generator.bytes(Int.random(in: 0...2_000, using: &generator))
            let pieces = Int.random(in: 1...8, using: &generator)
            let cuts = (1..<pieces).map { _ in Int.random(in: 0...message.count, using: &generator) }.sorted()
            #expect(
                streamed(message, cuts: cuts, backend: backend) == sha256(message, backend: backend),
                "seed \(seed), length \(message.count), cuts \(cuts)")
        }
    }

    @Test("Data, slices, raw buffers and multi-region DispatchData all feed the same bytes")
    func inputKinds() {
        var generator = SeededGenerator(seed: 4)
        let message = generator.bytes(1_000)
        let expected = SHA256.hash(data: message)

        #expect(SHA256.hash(data: Data(message)) == expected)
        #expect(SHA256.hash(data: [0] + message + [0]).description != expected.description)
        #expect(SHA256.hash(data: ([9] + message + [9])[1...1_000]) == expected)

        var raw = SHA256()
        message.withUnsafeBytes { raw.update(bufferPointer: $0) }
        #expect(raw.finalize() == expected)

        var regions = DispatchData.empty
        for range in [0..<10, 10..<200, 200..<201, 201..<1_000] {
            message[range].withUnsafeBytes { regions.append($0) }
        }
        #expect(regions.regions.count > 1)
        #expect(SHA256.hash(data: regions) == expected)
    }

    @Test("finalize leaves the hasher usable and copies fork the computation", arguments: availableBackends)
    func finalizeIsNotDestructive(backend: SHA256.Backend) {
        let first = Array("first part, ".utf8)
        let second = Array("second part".utf8)
        var hasher = SHA256(backend: backend)
        hasher.update(data: first)
        let fork = hasher
        #expect(hasher.finalize() == sha256(first, backend: backend))
        #expect(hasher.finalize() == sha256(first, backend: backend))
        hasher.update(data: second)
        #expect(hasher.finalize() == sha256(first + second, backend: backend))
        #expect(fork.finalize() == sha256(first, backend: backend))
    }

    @Test("streaming HMAC equals one-shot HMAC in random pieces", arguments: availableBackends)
    func streamingHMAC(backend: SHA256.Backend) {
        let seed = SeededGenerator.seed(named: "StreamingTests.streamingHMAC")
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<200 {
            let key = hmacKey(generator.bytes(Int.random(in: 0...130, using: &generator)), backend: backend)
            let message = generator.bytes(Int.random(in: 0...500, using: &generator))
            var hmac = HMAC<SHA256>(key: key)
            var start = 0
            while start < message.count {
                let end = min(message.count, start + Int.random(in: 1...70, using: &generator))
                message[start..<end].withUnsafeBytes { hmac.update(bufferPointer: $0) }
                start = end
            }
            #expect(
                hmac.finalize() == HMAC<SHA256>.authenticationCode(for: message, using: key),
                "seed \(seed), message length \(message.count)")
        }
    }
}
