import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// `mesh keygen`, key files that others can read, and `mesh topic send` owning up to drops:
/// run as a user runs them, with the real executables.
@Suite("mesh keys and send failures", .serialized)
struct CLISecurityTests {
    let cli = CLITests()

    @Test("mesh keygen prints 64 hex digits (44 base64 characters with --base64), new each time")
    func keygen() async throws {
        var keys = Set<String>()
        for _ in 0..<3 {
            let hex = try await cli.mesh(["keygen"])
            #expect(hex.code == 0 && hex.errors.isEmpty, "\(hex)")
            #expect(hex.output.hasSuffix("\n") && hex.lines.count == 1, "\(hex)")
            #expect(hex.trimmed.utf8.count == 64 && hex.trimmed.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(hex)")
            keys.insert(hex.trimmed)
        }
        #expect(keys.count == 3)
        let base64 = try await cli.mesh(["keygen", "--base64"])
        #expect(base64.code == 0, "\(base64)")
        #expect(Data(base64Encoded: base64.trimmed)?.count == 32, "\(base64)")
        let help = try await cli.mesh(["keygen", "--help"])
        #expect(help.output.hasPrefix("usage: mesh keygen"), "\(help)")
        #expect(try await cli.mesh(["--help"]).output.contains("keygen"))
        let bad = try await cli.mesh(["keygen", "--hex"])
        cli.expectFailure(bad, code: 2, mentioning: "unknown option \"--hex\"")
    }

    @Test("a keygen key in a file works for the coordinator and the tool; a file others can read warns on both, a 0600 one does not")
    func keyFilePermissions() async throws {
        let key = try await cli.mesh(["keygen"]).output
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-key-\(UUID())").path
        try Data(key.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }

        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let (openCoordinator, openAddress) = try await startCoordinatorProcess(
            ["--authkey-file", path], environment: ["MESH_AUTHKEY": ""])
        #expect(openCoordinator.output.contains("mesh-coordinator: warning: the authkey file \(path) can be read by others (mode 0644); restrict it with: chmod 600 \(path)"), "\(openCoordinator.output)")
        let warned = try await cli.mesh(["node", "list", "--coordinator", openAddress, "--authkey-file", path])
        #expect(warned.code == 0, "the key still works: \(warned)")
        #expect(warned.errors == "mesh: warning: the authkey file \(path) can be read by others (mode 0644); restrict it with: chmod 600 \(path)\n", "\(warned)")
        openCoordinator.terminate()

        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        let (coordinator, address) = try await startCoordinatorProcess(["--authkey-file", path], environment: ["MESH_AUTHKEY": ""])
        defer { coordinator.terminate() }
        let quiet = try await cli.mesh(["node", "list", "--coordinator", address, "--authkey-file", path])
        #expect(quiet.code == 0 && quiet.errors.isEmpty, "\(quiet)")
        #expect(!coordinator.output.contains("warning"), "\(coordinator.output)")
        // The key is the printed text: passing it directly works the same.
        let direct = try await cli.mesh(["node", "list", "--coordinator", address, "--authkey", key.trimmingCharacters(in: .newlines)])
        #expect(direct.code == 0, "\(direct)")
    }

    @Test("a guessable key: mesh, mesh-coordinator and mesh launch refuse it in one line naming mesh keygen; --allow-weak-key or MESH_ALLOW_WEAK_KEY=1 accepts it")
    func guessableKeys() async throws {
        let phrase = "correct horse battery staple"  // the protocol document's old example
        let strict = ["MESH_ALLOW_WEAK_KEY": "0", "MESH_AUTHKEY": ""]
        // The coordinator: exit 2 before listening.
        let refused = try ChildProcess("mesh-coordinator", ["--port", "0", "--authkey", phrase], environment: strict)
        #expect(try await refused.waitForExit(seconds: 10) == 2, "\(refused.output)")
        let lines = refused.output.split(separator: "\n")
        #expect(lines.count == 1, "\(refused.output)")
        #expect(lines.first?.hasPrefix("mesh-coordinator: the authkey is too easy to guess: about ") == true, "\(refused.output)")
        #expect(refused.output.contains("mesh keygen") && refused.output.contains("--allow-weak-key"), "\(refused.output)")
        // Allowed by the flag or by the variable, it runs.
        let (flagged, _) = try await startCoordinatorProcess(["--authkey", phrase, "--allow-weak-key"], environment: strict)
        flagged.terminate()
        let (coordinator, address) = try await startCoordinatorProcess(
            ["--authkey", phrase], environment: ["MESH_ALLOW_WEAK_KEY": "1", "MESH_AUTHKEY": ""])
        defer { coordinator.terminate() }

        // The tool checks the key before it touches the network: the coordinator here does not exist.
        for arguments in [["node", "list"], ["topic", "send", "t", "1"], ["status"], ["http-token"]] {
            let run = try await cli.mesh(arguments + ["--coordinator", "127.0.0.1:1", "--authkey", phrase], environment: strict)
            cli.expectFailure(run, code: 2, mentioning: "the authkey is too easy to guess")
            #expect(run.errors.contains("mesh keygen"), "\(run)")
        }
        let fromEnvironment = try await cli.mesh(
            ["node", "list", "--coordinator", "127.0.0.1:1"], environment: ["MESH_ALLOW_WEAK_KEY": "0", "MESH_AUTHKEY": phrase])
        cli.expectFailure(fromEnvironment, code: 2, mentioning: "too easy to guess")
        // Allowed on purpose, it talks to the coordinator that allows it too.
        let allowed = try await cli.mesh(["node", "list", "--coordinator", address, "--authkey", phrase, "--allow-weak-key"], environment: strict)
        #expect(allowed.code == 0, "\(allowed)")
        let allowedByVariable = try await cli.mesh(
            ["topic", "send", "t", "1", "--no-wait", "--coordinator", address, "--authkey", phrase],
            environment: ["MESH_ALLOW_WEAK_KEY": "1", "MESH_AUTHKEY": ""])
        #expect(allowedByVariable.code == 0, "\(allowedByVariable)")
        // Keygen's keys and keys that are merely not phrases need nothing.
        #expect(try await cli.mesh(["http-token", "--authkey", MeshKeyFile.newKey(.base64)], environment: strict).code == 0)

        // mesh launch reads the key file first and says which it was.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-weak-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyFile = directory.appendingPathComponent("mesh.key")
        try Data((phrase + "\n").utf8).write(to: keyFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyFile.path)
        let launchFile = directory.appendingPathComponent("system.yaml")
        try Data("authkey_file: \(keyFile.path)\nnodes:\n  receiver:\n    command: demo-receiver\n".utf8).write(to: launchFile)
        let launch = try await cli.mesh(["launch", "--dry-run", launchFile.path], environment: strict.merging(["MESH_COORDINATOR": "127.0.0.1:1"]) { $1 })
        cli.expectFailure(launch, code: 1, mentioning: "authkey_file \(keyFile.path): the authkey is too easy to guess")
        let launchAllowed = try await cli.mesh(
            ["launch", "--dry-run", "--allow-weak-key", launchFile.path], environment: strict.merging(["MESH_COORDINATOR": "127.0.0.1:1"]) { $1 })
        #expect(launchAllowed.code == 0, "\(launchAllowed)")
    }

    @Test("an empty key file is refused by the tool (exit 2) and the coordinator, each on one line")
    func emptyKeyFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-key-\(UUID())").path
        try Data("\n".utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try await cli.mesh(["status", "--authkey-file", path])
        cli.expectFailure(run, code: 2, mentioning: "the authkey file \(path) is empty")
        let coordinator = try ChildProcess("mesh-coordinator", ["--port", "0", "--authkey-file", path])
        let code = try await coordinator.waitForExit(seconds: 10)
        #expect(code != 0)
        #expect(coordinator.output == "mesh-coordinator: the authkey file \(path) is empty (make a key with: mesh keygen > \(path))\n", "\(coordinator.output)")
    }

    @Test("topic send exits 1 naming the drop when its listener's node is stopped (SIGSTOP) and never takes the message")
    func sendToAStoppedListener() async throws {
        // In this process, with a long heartbeat timeout: the stopped node stays in the topology.
        let coordinator = try await RunningCoordinator.start(heartbeatTimeout: .seconds(120))
        defer { Task { await coordinator.stop() } }
        let worker = try await cli.startWorker(coordinator.address)
        defer {
            worker.signal(SIGCONT)
            worker.terminate()
        }
        // Delivered while the worker runs: exit 0.
        let delivered = try await cli.mesh(["topic", "send", "jobs", #"{"job":1}"#, "--coordinator", coordinator.address])
        #expect(delivered.code == 0, "\(delivered)")
        #expect(delivered.trimmed == "sent 1 message(s) on jobs", "\(delivered)")
        try await worker.waitForOutput("got job 1")

        // Stopped: the worker's kernel still accepts the connection, but nothing answers the
        // handshake, so the message is still queued when the sender closes (2 s flush limit).
        worker.signal(SIGSTOP)
        let dropped = try await cli.mesh(
            ["topic", "send", "jobs", #"{"job":2}"#, "--coordinator", coordinator.address], seconds: 30)
        #expect(dropped.code == 1, "\(dropped)")
        let last = dropped.errors.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("mesh: 1 of 1 message(s) on jobs were dropped ("), "\(dropped)")
        #expect(last.contains("flush deadline passed"), "the reason: \(dropped)")
        #expect(!dropped.output.contains("sent 1 message"), "no success line: \(dropped)")
        #expect(dropped.seconds < 20, "took \(dropped.seconds) s")
    }

    @Test("status and node kill prove the admin key; the coordinator refuses weak keys and an open non-loopback bind in one line")
    func adminKeyAndCoordinatorDefaults() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-admin-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let adminFile = directory.appendingPathComponent("admin.key")
        try Data("the admin key, kept by the operator\n".utf8).write(to: adminFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: adminFile.path)
        let meshKey = "the mesh key, held by every node"
        let (coordinator, address) = try await startCoordinatorProcess(
            ["--admin-key-file", adminFile.path], environment: ["MESH_AUTHKEY": meshKey])
        defer { coordinator.terminate() }
        let member = ["MESH_AUTHKEY": meshKey]
        let list = try await cli.mesh(["node", "list", "--coordinator", address], environment: member)
        #expect(list.code == 0, "\(list)")
        let status = try await cli.mesh(["status", "--coordinator", address], environment: member)
        cli.expectFailure(status, code: 1, mentioning: "--admin-key-file")
        let kill = try await cli.mesh(["node", "kill", "--all", "--coordinator", address], environment: member)
        #expect(kill.code == 1, "\(kill)")
        let admin = try await cli.mesh(
            ["status", "--coordinator", address, "--admin-key-file", adminFile.path], environment: member)
        #expect(admin.code == 0, "\(admin)")

        for (arguments, environment, needle) in [
            (["--authkey", "abc"], [String: String](), "mesh keygen"),
            (["--host", "0.0.0.0"], ["MESH_AUTHKEY": ""], "--insecure"),
        ] {
            let refused = try ChildProcess("mesh-coordinator", ["--port", "0"] + arguments, environment: environment)
            #expect(try await refused.waitForExit(seconds: 10) != 0)
            let lines = refused.output.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("mesh-coordinator: ") && lines[0].contains(needle), "\(refused.output)")
        }
        let meant = try ChildProcess(
            "mesh-coordinator", ["--port", "0", "--host", "0.0.0.0", "--insecure"], environment: ["MESH_AUTHKEY": ""])
        defer { meant.terminate() }
        _ = try await meant.waitForOutput("mesh-coordinator listening on 0.0.0.0:")
    }
}
