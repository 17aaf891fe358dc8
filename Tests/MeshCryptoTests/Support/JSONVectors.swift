import Foundation

/// The JSON and line-record vector files of X25519, ChaCha20-Poly1305 and Noise in `Vectors`.
enum JSONVectors {
    /// A Wycheproof file: test groups of tests (C2SP/wycheproof, `testvectors_v1`).
    struct Wycheproof<Test: Decodable & Sendable>: Decodable, Sendable {
        struct Group: Decodable, Sendable {
            var tests: [Test]
            var ivSize: Int?
        }
        var numberOfTests: Int
        var testGroups: [Group]

        /// Every test of every group, in file order.
        var tests: [Test] { testGroups.flatMap(\.tests) }
    }

    /// One `XdhComp` test of `x25519_test.json`.
    struct X25519Test: Decodable, Sendable {
        var tcId: Int
        var comment: String
        var flags: [String]
        var `public`: String
        var `private`: String
        var shared: String
        var result: String
    }

    /// One `AeadTest` of `chacha20_poly1305_test.json`.
    struct AEADTest: Decodable, Sendable {
        var tcId: Int
        var comment: String
        var flags: [String]
        var key: String
        var iv: String
        var aad: String
        var msg: String
        var ct: String
        var tag: String
        var result: String
    }

    /// One protocol of the cacophony Noise vectors.
    struct NoiseVector: Decodable, Sendable {
        struct Message: Decodable, Sendable {
            var payload: String
            var ciphertext: String
        }
        var protocol_name: String
        var init_prologue: String
        var init_static: String?
        var init_ephemeral: String
        var init_remote_static: String?
        var init_psks: [String]?
        var resp_prologue: String
        var resp_static: String?
        var resp_ephemeral: String?
        var resp_remote_static: String?
        var resp_psks: [String]?
        var handshake_hash: String
        var messages: [Message]
    }

    /// The cacophony file: where it came from and the vectors.
    struct NoiseFile: Decodable, Sendable {
        var source: String
        var vectors: [NoiseVector]
    }

    static let x25519File = "wycheproof/x25519_test.json"
    static let aeadFile = "wycheproof/chacha20_poly1305_test.json"
    static let noiseFile = "noise/cacophony-25519-chachapoly-sha256.json"
    static let rfc8439File = "RFC8439.txt"

    /// Decodes one JSON vector file.
    static func load<T: Decodable>(_ type: T.Type, from name: String) throws -> T {
        let data = try Data(contentsOf: VectorFiles.directory.appendingPathComponent(name))
        return try JSONDecoder().decode(type, from: data)
    }

    /// One line of `RFC8439.txt`: a kind, the RFC section, and named hex fields.
    struct RFCRecord: Sendable {
        var kind: String
        var section: String
        var fields: [String: [UInt8]]
        var counter: UInt32

        subscript(_ name: String) -> [UInt8] {
            get throws {
                guard let value = fields[name] else {
                    throw VectorFiles.ParseError(file: rfc8439File, line: 0, reason: "\(section) has no \(name)")
                }
                return value
            }
        }
    }

    /// Every record of `RFC8439.txt`.
    static func rfc8439() throws -> [RFCRecord] {
        var records: [RFCRecord] = []
        for (index, line) in try VectorFiles.lines(of: rfc8439File).enumerated() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            let words = line.split(separator: " ")
            guard words.count >= 3 else {
                throw VectorFiles.ParseError(file: rfc8439File, line: index + 1, reason: "too few fields")
            }
            var record = RFCRecord(kind: String(words[0]), section: String(words[1]), fields: [:], counter: 0)
            for word in words.dropFirst(2) {
                let pair = word.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else {
                    throw VectorFiles.ParseError(file: rfc8439File, line: index + 1, reason: "expected name=value")
                }
                if pair[0] == "counter" {
                    guard let counter = UInt32(pair[1]) else {
                        throw VectorFiles.ParseError(file: rfc8439File, line: index + 1, reason: "bad counter")
                    }
                    record.counter = counter
                } else {
                    record.fields[String(pair[0])] =
                        pair[1] == "-" ? [] : try VectorFiles.hexBytes(pair[1], file: rfc8439File, line: index + 1)
                }
            }
            records.append(record)
        }
        return records
    }
}

/// Bytes from hex that a test file already checked; traps on malformed hex.
func hex(_ text: String) -> [UInt8] {
    do {
        return try VectorFiles.hexBytes(text)
    } catch {
        preconditionFailure("bad hex in a test: \(text)")
    }
}
