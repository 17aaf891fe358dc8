import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("Differential against OpenSSL through Python")
struct DifferentialTests {
    /// Reads `key-hex message-hex` lines (`-` for empty) and writes `sha256-hex hmac-hex` lines.
    private static let script = """
        import hashlib, hmac, sys
        def decode(field):
            return b"" if field == "-" else bytes.fromhex(field)
        with open(sys.argv[1]) as source, open(sys.argv[2], "w") as out:
            for line in source:
                key_hex, message_hex = line.split()
                key, message = decode(key_hex), decode(message_hex)
                out.write(hashlib.sha256(message).hexdigest() + " " +
                          hmac.new(key, message, hashlib.sha256).hexdigest() + "\\n")
        """

    @Test(
        "2,000 random messages and keys match hashlib and hmac",
        .enabled(if: Python.executable != nil, "python3 is not on PATH, so OpenSSL cannot be asked"),
        .timeLimit(.minutes(2)))
    func matchesOpenSSL() async throws {
        let seed = SeededGenerator.seed(named: "DifferentialTests")
        var generator = SeededGenerator(seed: seed)
        let cases = (0..<2_000).map { _ in
            (
                key: generator.bytes(Int.random(in: 0...300, using: &generator)),
                message: generator.bytes(Int.random(in: 0...10_000, using: &generator))
            )
        }

        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("meshcrypto-differential-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("input.txt")
        let output = directory.appendingPathComponent("output.txt")
        let lines = cases.map { field($0.key) + " " + field($0.message) }
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)

        try await Python.run(Self.script, arguments: [input.path, output.path])

        let answers = try String(contentsOf: output, encoding: .utf8).split(separator: "\n")
        try #require(answers.count == cases.count, "python3 answered \(answers.count) of \(cases.count) (seed \(seed))")
        for backend in availableBackends {
            var mismatches = 0
            for (index, (testCase, answer)) in zip(cases, answers).enumerated() {
                let expected = answer.split(separator: " ")
                try #require(expected.count == 2, "malformed answer line \(index + 1)")
                let digest = sha256(testCase.message, backend: backend).description
                let mac = hmacSHA256(key: testCase.key, message: testCase.message, backend: backend).description
                if digest != expected[0] || mac != expected[1] {
                    mismatches += 1
                    Issue.record(
                        "\(backend): case \(index) (seed \(seed), key \(testCase.key.count) bytes, message \(testCase.message.count) bytes) differs from OpenSSL"
                    )
                    if mismatches >= 5 { break }
                }
            }
        }
    }

    /// A hex field, `-` when empty.
    private func field(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "-" : VectorFiles.hex(bytes)
    }
}
