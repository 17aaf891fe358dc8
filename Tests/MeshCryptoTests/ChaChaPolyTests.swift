import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("ChaCha20-Poly1305 (RFC 8439)")
struct ChaChaPolyTests {
    /// Seals with a prepared key on one backend; returns ciphertext ‖ tag.
    static func seal(key: [UInt8], nonce: [UInt8], aad: [UInt8], plaintext: [UInt8], backend: ChaChaPoly.Backend)
        throws -> [UInt8]
    {
        let prepared = try ChaChaPoly.Key(bytes: key, backend: backend)
        var output = [UInt8](repeating: 0xee, count: plaintext.count + 16)
        nonce.withUnsafeBytes { nonce in
            aad.withUnsafeBytes { aad in
                plaintext.withUnsafeBytes { plaintext in
                    output.withUnsafeMutableBytes { output in
                        prepared.seal(nonce: nonce, authenticating: aad, plaintext: plaintext, into: output)
                    }
                }
            }
        }
        return output
    }

    /// Opens ciphertext ‖ tag with a prepared key on one backend; `nil` when it does not authenticate.
    static func open(key: [UInt8], nonce: [UInt8], aad: [UInt8], sealed: [UInt8], backend: ChaChaPoly.Backend)
        throws -> [UInt8]?
    {
        let prepared = try ChaChaPoly.Key(bytes: key, backend: backend)
        var output = [UInt8](repeating: 0xee, count: max(sealed.count - 16, 0))
        do {
            _ = try nonce.withUnsafeBytes { nonce in
                try aad.withUnsafeBytes { aad in
                    try sealed.withUnsafeBytes { sealed in
                        try output.withUnsafeMutableBytes { output in
                            try prepared.open(nonce: nonce, authenticating: aad, ciphertext: sealed, into: output)
                        }
                    }
                }
            }
        } catch CryptoKitError.authenticationFailure {
            #expect(output.allSatisfy { $0 == 0 }, "a failed open must leave only zeros")
            return nil
        }
        return output
    }

    @Test("every RFC 8439 vector: sections 2.3.2 to 2.8.2 and Appendix A", arguments: availableChaChaBackends)
    func rfc8439(backend: ChaChaPoly.Backend) throws {
        let records = try JSONVectors.rfc8439()
        let recordLines = try VectorFiles.lines(of: JSONVectors.rfc8439File).filter { !$0.isEmpty && !$0.hasPrefix("#") }
        #expect(records.count == recordLines.count)
        #expect(records.count == 28)
        var kinds: [String: Int] = [:]
        for record in records {
            kinds[record.kind, default: 0] += 1
            switch record.kind {
            case "block":
                let keystream = ChaChaPoly.chaCha20(
                    key: try record["key"], counter: record.counter, nonce: try record["nonce"],
                    [UInt8](repeating: 0, count: 64), backend: backend)
                #expect(keystream == (try record["keystream"]), "\(record.section)")
            case "encrypt":
                let ciphertext = ChaChaPoly.chaCha20(
                    key: try record["key"], counter: record.counter, nonce: try record["nonce"],
                    try record["plaintext"], backend: backend)
                #expect(ciphertext == (try record["ciphertext"]), "\(record.section)")
            case "poly1305":
                #expect(
                    ChaChaPoly.poly1305(key: try record["key"], message: try record["message"]) == (try record["tag"]),
                    "\(record.section)")
            case "keygen":
                let block = ChaChaPoly.chaCha20(
                    key: try record["key"], counter: 0, nonce: try record["nonce"], [UInt8](repeating: 0, count: 32),
                    backend: backend)
                #expect(block == (try record["onetimekey"]), "\(record.section)")
            case "aead":
                let sealed = try Self.seal(
                    key: try record["key"], nonce: try record["nonce"], aad: try record["aad"],
                    plaintext: try record["plaintext"], backend: backend)
                #expect(sealed == (try record["ciphertext"]) + (try record["tag"]), "\(record.section)")
                let opened = try Self.open(
                    key: try record["key"], nonce: try record["nonce"], aad: try record["aad"],
                    sealed: try record["ciphertext"] + (try record["tag"]), backend: backend)
                #expect(opened == (try record["plaintext"]), "\(record.section)")
            default:
                Issue.record("unknown record kind \(record.kind)")
            }
        }
        #expect(kinds == ["block": 6, "encrypt": 4, "poly1305": 12, "keygen": 4, "aead": 2])
    }

    @Test("every Wycheproof chacha20_poly1305_test.json case", arguments: availableChaChaBackends)
    func wycheproof(backend: ChaChaPoly.Backend) throws {
        let file = try JSONVectors.load(
            JSONVectors.Wycheproof<JSONVectors.AEADTest>.self, from: JSONVectors.aeadFile)
        let tests = file.tests
        #expect(tests.count == file.numberOfTests)
        #expect(tests.count == 325)
        var valid = 0
        var rejected = 0
        for test in tests {
            let (key, iv, aad, msg, ct, tag) = (hex(test.key), hex(test.iv), hex(test.aad), hex(test.msg), hex(test.ct), hex(test.tag))
            // The public API: a nonce that is not 12 bytes is refused before anything else.
            let nonce = try? ChaChaPoly.Nonce(data: iv)
            if test.result == "valid" {
                let nonce = try #require(nonce, "tcId \(test.tcId)")
                #expect(try Self.seal(key: key, nonce: iv, aad: aad, plaintext: msg, backend: backend) == ct + tag, "tcId \(test.tcId)")
                #expect(try Self.open(key: key, nonce: iv, aad: aad, sealed: ct + tag, backend: backend) == msg, "tcId \(test.tcId)")
                let box = try ChaChaPoly.seal(msg, using: SymmetricKey(data: key), nonce: nonce, authenticating: aad)
                #expect(Array(box.ciphertext) == ct && Array(box.tag) == tag, "tcId \(test.tcId)")
                let opened = try ChaChaPoly.open(
                    ChaChaPoly.SealedBox(nonce: nonce, ciphertext: ct, tag: tag), using: SymmetricKey(data: key),
                    authenticating: aad)
                #expect(Array(opened) == msg, "tcId \(test.tcId)")
                valid += 1
            } else {
                #expect(test.result == "invalid")
                if let nonce {
                    // A modified tag: every way of opening refuses.
                    #expect(try Self.open(key: key, nonce: iv, aad: aad, sealed: ct + tag, backend: backend) == nil, "tcId \(test.tcId)")
                    #expect(throws: CryptoKitError.authenticationFailure, "tcId \(test.tcId)") {
                        try ChaChaPoly.open(
                            ChaChaPoly.SealedBox(nonce: nonce, ciphertext: ct, tag: tag), using: SymmetricKey(data: key),
                            authenticating: aad)
                    }
                } else {
                    #expect(test.flags.contains("InvalidNonceSize"), "tcId \(test.tcId)")
                    #expect(throws: CryptoKitError.incorrectParameterSize) { try ChaChaPoly.Nonce(data: iv) }
                }
                rejected += 1
            }
        }
        #expect(valid == 256)
        #expect(rejected == 69)
    }

    @Test("sealed boxes: combined layout, parts, random nonces, wrong key or data refused")
    func sealedBoxes() throws {
        let key = SymmetricKey(size: .bits256)
        let message = Data("attack at dawn".utf8)
        let header = Array("header".utf8)
        let box = try ChaChaPoly.seal(message, using: key, authenticating: header)
        #expect(box.combined.count == 12 + message.count + 16)
        #expect(box.combined == Data(box.nonce) + box.ciphertext + box.tag)
        #expect(box.ciphertext.startIndex == 0)
        let again = try ChaChaPoly.SealedBox(combined: box.combined)
        #expect(try ChaChaPoly.open(again, using: key, authenticating: header) == message)
        #expect(throws: CryptoKitError.authenticationFailure) {
            try ChaChaPoly.open(again, using: key, authenticating: Array("other".utf8))
        }
        #expect(throws: CryptoKitError.authenticationFailure) {
            try ChaChaPoly.open(again, using: SymmetricKey(size: .bits256), authenticating: header)
        }
        #expect(throws: CryptoKitError.authenticationFailure) { try ChaChaPoly.open(again, using: key) }
        // Two seals of one message draw different nonces.
        #expect(try ChaChaPoly.seal(message, using: key).nonce.withUnsafeBytes { Array($0) }
            != ChaChaPoly.seal(message, using: key).nonce.withUnsafeBytes { Array($0) })
        // No associated data, empty message.
        let empty = try ChaChaPoly.seal(Data(), using: key)
        #expect(empty.combined.count == 28)
        #expect(try ChaChaPoly.open(empty, using: key).isEmpty)
        // Sizes.
        #expect(throws: CryptoKitError.incorrectKeySize) { try ChaChaPoly.seal(message, using: SymmetricKey(size: .bits128)) }
        #expect(throws: CryptoKitError.incorrectParameterSize) { try ChaChaPoly.SealedBox(combined: [UInt8](repeating: 0, count: 27)) }
        #expect(throws: CryptoKitError.incorrectParameterSize) {
            try ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(), ciphertext: [1, 2], tag: [UInt8](repeating: 0, count: 15))
        }
        #expect(Array(try ChaChaPoly.Nonce(data: [UInt8](0..<12))) == Array(0..<12))
    }

    @Test("the fast path: in place, counter nonces, every length up to 2 KiB on every backend", arguments: availableChaChaBackends)
    func fastPath(backend: ChaChaPoly.Backend) throws {
        var generator = SeededGenerator(seed: 23)
        let keyBytes = generator.bytes(32)
        let key = try ChaChaPoly.Key(bytes: keyBytes, backend: backend)
        let aad = generator.bytes(13)
        for length in Array(0...600) + [1023, 1024, 1025, 2047, 2048, 4095, 4096, 4097, 9000] {
            let plaintext = generator.bytes(length)
            let counter = UInt64.random(in: 0 ... .max, using: &generator)
            // The counter nonce is 4 zero bytes then the counter little-endian.
            let nonce = [0, 0, 0, 0] + withUnsafeBytes(of: counter.littleEndian) { Array($0) }
            let reference = try ChaChaPoly.seal(
                plaintext, using: SymmetricKey(data: keyBytes), nonce: ChaChaPoly.Nonce(data: nonce), authenticating: aad)

            var buffer = plaintext + [UInt8](repeating: 0, count: 16)
            buffer.withUnsafeMutableBytes { buffer in
                aad.withUnsafeBytes { aad in
                    key.seal(
                        counter: counter, authenticating: aad,
                        plaintext: UnsafeRawBufferPointer(rebasing: buffer[..<length]), into: buffer)
                }
            }
            #expect(buffer == Array(reference.ciphertext + reference.tag), "length \(length)")

            let opened = try buffer.withUnsafeMutableBytes { buffer in
                try aad.withUnsafeBytes { aad in
                    try key.open(counter: counter, authenticating: aad, ciphertext: UnsafeRawBufferPointer(buffer), into: buffer)
                }
            }
            #expect(opened == length)
            #expect(Array(buffer.prefix(length)) == plaintext, "length \(length)")

            if length > 0 && length % 50 == 0 {
                var forged = Array(reference.ciphertext + reference.tag)
                forged[Int.random(in: 0..<forged.count, using: &generator)] ^= 0x20
                #expect(throws: CryptoKitError.authenticationFailure) {
                    try forged.withUnsafeMutableBytes { forged in
                        try aad.withUnsafeBytes { aad in
                            try key.open(counter: counter, authenticating: aad, ciphertext: UnsafeRawBufferPointer(forged), into: forged)
                        }
                    }
                }
                #expect(forged.prefix(length).allSatisfy { $0 == 0 }, "length \(length): forged plaintext left behind")
            }
        }
    }

    @Test("both backends agree on random messages")
    func backendsAgree() throws {
        guard availableChaChaBackends.count > 1 else { return }
        var generator = SeededGenerator(seed: 8439)
        for _ in 0..<200 {
            let key = generator.bytes(32)
            let nonce = generator.bytes(12)
            let aad = generator.bytes(Int.random(in: 0...40, using: &generator))
            let message = generator.bytes(Int.random(in: 0...5000, using: &generator))
            let portable = try Self.seal(key: key, nonce: nonce, aad: aad, plaintext: message, backend: .portable)
            let avx2 = try Self.seal(key: key, nonce: nonce, aad: aad, plaintext: message, backend: .avx2)
            #expect(portable == avx2, "length \(message.count)")
        }
    }

    /// Seals `plaintext` cut at `cuts` into pieces, out of place, with a prepared key.
    static func sealPieces(key: ChaChaPoly.Key, nonce: [UInt8], aad: [UInt8], plaintext: [UInt8], cuts: [Int]) -> [UInt8] {
        let bounds = [0] + cuts.sorted() + [plaintext.count]
        var output = [UInt8](repeating: 0xee, count: plaintext.count + 16)
        plaintext.withUnsafeBytes { whole in
            let pieces = zip(bounds, bounds.dropFirst()).map { UnsafeRawBufferPointer(rebasing: whole[$0..<$1]) }
            nonce.withUnsafeBytes { nonce in
                aad.withUnsafeBytes { aad in
                    output.withUnsafeMutableBytes { output in
                        key.seal(nonce: nonce, authenticating: aad, pieces: pieces, into: output)
                    }
                }
            }
        }
        return output
    }

    @Test("sealing from pieces, out of place, writes the vectors' bytes wherever the pieces are cut", arguments: availableChaChaBackends)
    func piecesMatchTheVectors(backend: ChaChaPoly.Backend) throws {
        let file = try JSONVectors.load(JSONVectors.Wycheproof<JSONVectors.AEADTest>.self, from: JSONVectors.aeadFile)
        var generator = SeededGenerator(seed: 2126)
        var checked = 0
        for test in file.tests where test.result == "valid" {
            let (key, iv, aad, msg, ct, tag) = (hex(test.key), hex(test.iv), hex(test.aad), hex(test.msg), hex(test.ct), hex(test.tag))
            let prepared = try ChaChaPoly.Key(bytes: key, backend: backend)
            for _ in 0..<4 {
                let cuts = (0..<Int.random(in: 0...5, using: &generator)).map { _ in Int.random(in: 0...msg.count, using: &generator) }
                #expect(Self.sealPieces(key: prepared, nonce: iv, aad: aad, plaintext: msg, cuts: cuts) == ct + tag, "tcId \(test.tcId), cuts \(cuts)")
            }
            checked += 1
        }
        #expect(checked == 256)
    }

    @Test("out of place from pieces and in place give the same bytes, any length and any cuts", arguments: availableChaChaBackends)
    func piecesMatchInPlace(backend: ChaChaPoly.Backend) throws {
        var generator = SeededGenerator(seed: 64)
        let key = try ChaChaPoly.Key(bytes: generator.bytes(32), backend: backend)
        let aad = generator.bytes(4)
        for length in Array(0...300) + [511, 512, 513, 4095, 4096, 4097, 65_536, 70_001] {
            let plaintext = generator.bytes(length)
            let nonce = generator.bytes(12)
            var inPlace = plaintext + [UInt8](repeating: 0, count: 16)
            inPlace.withUnsafeMutableBytes { buffer in
                nonce.withUnsafeBytes { nonce in
                    aad.withUnsafeBytes { aad in
                        key.seal(nonce: nonce, authenticating: aad, plaintext: UnsafeRawBufferPointer(rebasing: buffer[..<length]), into: buffer)
                    }
                }
            }
            // Cuts at block edges, one byte off them, and anywhere.
            let edges = [63, 64, 65, 4095, 4096, 4097].filter { $0 <= length }
            let random = (0..<3).map { _ in Int.random(in: 0...length, using: &generator) }
            for cuts in [[], edges, random, edges + random, [0, 0, length, length]] {
                #expect(Self.sealPieces(key: key, nonce: nonce, aad: aad, plaintext: plaintext, cuts: cuts) == inPlace, "length \(length), cuts \(cuts)")
            }
        }
    }
}
