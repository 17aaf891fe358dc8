import Foundation
@_spi(Testing) import MeshCrypto
import Testing

@Suite("X25519 and ChaCha20-Poly1305 differential against OpenSSL through Python")
struct AgreementDifferentialTests {
    /// Reads `x25519 scalar point` and `aead key nonce aad message` lines (`-` for empty) and
    /// writes one hex answer per line, or `absent` when Python's `cryptography` is not installed.
    private static let script = """
        import sys
        try:
            from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        except ImportError:
            open(sys.argv[2], "w").write("absent\\n")
            sys.exit(0)
        def decode(field):
            return b"" if field == "-" else bytes.fromhex(field)
        with open(sys.argv[1]) as source, open(sys.argv[2], "w") as out:
            for line in source:
                kind, *fields = line.split()
                f = [decode(x) for x in fields]
                if kind == "x25519":
                    secret = X25519PrivateKey.from_private_bytes(f[0]).exchange(X25519PublicKey.from_public_bytes(f[1]))
                    out.write(secret.hex() + "\\n")
                else:
                    out.write(ChaCha20Poly1305(f[0]).encrypt(f[1], f[3], f[2]).hex() + "\\n")
        """

    @Test(
        "500 random X25519 agreements and 1,000 random seals match the cryptography package",
        .enabled(if: Python.executable != nil, "python3 is not on PATH, so OpenSSL cannot be asked"),
        .timeLimit(.minutes(2)))
    func matchesOpenSSL() async throws {
        let seed = SeededGenerator.seed(named: "AgreementDifferentialTests")
        var generator = SeededGenerator(seed: seed)
        var lines: [String] = []
        var expectations: [(String, [UInt8])] = []  // what MeshCrypto says, to compare
        for index in 0..<500 {
            let scalar = generator.bytes(32)
            // Random u-coordinates, a few with the top bit set (ignored, RFC 7748 section 5).
            var point = generator.bytes(32)
            if index % 5 != 0 { point[31] &= 0x7f }
            lines.append("x25519 \(VectorFiles.hex(scalar)) \(VectorFiles.hex(point))")
            expectations.append(("x25519 #\(index)", try Curve25519.x25519(scalar: scalar, point: point)))
        }
        for index in 0..<1_000 {
            let key = generator.bytes(32)
            let nonce = generator.bytes(12)
            let aad = generator.bytes(Int.random(in: 0...64, using: &generator))
            let message = generator.bytes(Int.random(in: 0...(index < 900 ? 1_500 : 20_000), using: &generator))
            lines.append("aead \(field(key)) \(field(nonce)) \(field(aad)) \(field(message))")
            let box = try ChaChaPoly.seal(message, using: SymmetricKey(data: key), nonce: ChaChaPoly.Nonce(data: nonce), authenticating: aad)
            expectations.append(("aead #\(index), \(message.count) bytes", Array(box.ciphertext + box.tag)))
        }

        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("meshcrypto-agreement-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let input = directory.appendingPathComponent("input.txt")
        let output = directory.appendingPathComponent("output.txt")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        try await Python.run(Self.script, arguments: [input.path, output.path])

        let answers = try String(contentsOf: output, encoding: .utf8).split(separator: "\n")
        if answers == ["absent"] {
            print("AgreementDifferentialTests: Python's cryptography package is not installed; nothing compared")
            return
        }
        try #require(answers.count == expectations.count, "python3 answered \(answers.count) of \(expectations.count)")
        var mismatches = 0
        for ((label, ours), answer) in zip(expectations, answers) where VectorFiles.hex(ours) != answer {
            mismatches += 1
            Issue.record("\(label) (seed \(seed)) differs from OpenSSL")
            if mismatches >= 5 { break }
        }
    }

    private func field(_ bytes: [UInt8]) -> String {
        bytes.isEmpty ? "-" : VectorFiles.hex(bytes)
    }
}
