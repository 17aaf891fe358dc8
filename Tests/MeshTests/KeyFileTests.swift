import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// `MeshKeyFile`: reading key files (with the permission warning) and making new keys.
@Suite("key files and new keys")
struct KeyFileTests {
    /// A fresh file holding `contents` with permissions `mode`; removed by the caller.
    func keyFile(_ contents: String, mode: Int) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-key-\(UUID())").path
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    /// Reads `path`, returning the key and the warnings given.
    func read(_ path: String) throws -> (key: String, warnings: [String]) {
        var warnings: [String] = []
        let key = try MeshKeyFile.read(path: path) { warnings.append($0) }
        return (key, warnings)
    }

    @Test("a 0600 file reads without a warning; its trailing newline (LF or CRLF) is trimmed, inner text kept")
    func privateFileReadsQuietly() throws {
        for (contents, expected) in [("k3y with spaces\n", "k3y with spaces"), ("abc\r\n", "abc"), ("abc", "abc"), ("a\nb\n\n", "a\nb")] {
            let path = try keyFile(contents, mode: 0o600)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let (key, warnings) = try read(path)
            #expect(key == expected)
            #expect(warnings.isEmpty, "\(warnings)")
        }
    }

    @Test("a file its group or others may read or write gives one warning naming the file and chmod 600")
    func openPermissionsWarn() throws {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602, 0o777] {
            let path = try keyFile("secret-key-material\n", mode: mode)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let (key, warnings) = try read(path)
            #expect(key == "secret-key-material", "the key is still used")
            #expect(warnings.count == 1, "mode \(String(mode, radix: 8)): \(warnings)")
            let warning = warnings.first ?? ""
            #expect(warning.contains(path) && warning.contains("chmod 600"), "\(warning)")
            #expect(warning.contains(String(format: "%04o", mode)), "\(warning)")
            #expect(!warning.contains("\n"))
        }
        for mode in [0o400, 0o600, 0o700] {
            let path = try keyFile("secret-key-material\n", mode: mode)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(try read(path).warnings.isEmpty, "mode \(String(mode, radix: 8))")
        }
    }

    @Test("an empty file, or one of only line ends, is refused with a clear error")
    func emptyRefused() throws {
        for contents in ["", "\n", "\r\n\n"] {
            let path = try keyFile(contents, mode: 0o600)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: MeshKeyFile.Error.empty(path: path)) { try read(path) }
            #expect(MeshKeyFile.Error.empty(path: path).description.contains("is empty"))
        }
    }

    @Test("a missing file, a directory, a huge file and bytes that are not UTF-8 are refused")
    func badFilesRefused() throws {
        let missing = "/nonexistent/mesh-key-\(UUID())"
        #expect(throws: MeshKeyFile.Error.unreadable(path: missing, reason: "No such file or directory")) { try read(missing) }
        #expect(throws: MeshKeyFile.Error.self) { try read(FileManager.default.temporaryDirectory.path) }
        let huge = try keyFile(String(repeating: "k", count: 1 << 20), mode: 0o600)
        defer { try? FileManager.default.removeItem(atPath: huge) }
        #expect(throws: MeshKeyFile.Error.tooLarge(path: huge)) { try read(huge) }
        let binary = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-key-\(UUID())")
        try Data([0xFF, 0xFE, 0x41]).write(to: binary)
        defer { try? FileManager.default.removeItem(at: binary) }
        #expect(throws: MeshKeyFile.Error.notText(path: binary.path)) { try read(binary.path) }
    }

    @Test("new keys: 64 lowercase hex digits or 44 base64 characters of 32 random bytes, never the same twice")
    func newKeys() throws {
        var seen = Set<String>()
        for _ in 0..<200 {
            let hex = MeshKeyFile.newKey()
            #expect(hex.utf8.count == 64)
            #expect(hex.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(hex)")
            seen.insert(hex)
            let base64 = MeshKeyFile.newKey(.base64)
            #expect(base64.utf8.count == 44)
            #expect(Data(base64Encoded: base64)?.count == 32, "\(base64)")
            seen.insert(base64)
        }
        #expect(seen.count == 400)
        // Every hex digit shows up in every position now and then: the bytes are not stuck.
        let keys = (0..<400).map { _ in Array(MeshKeyFile.newKey().utf8) }
        for position in 0..<64 {
            #expect(Set(keys.map { $0[position] }).count >= 12, "position \(position)")
        }
    }
}
