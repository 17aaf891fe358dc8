import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// `mesh topic list`, `info`, `echo` and `send` with typed topics, large values and scripts.
@Suite("mesh topic: types, large values, echo then send", .serialized)
struct TopicCLITests {
    struct Twist: Codable, Sendable, Equatable {
        var linear: Double
        var angular: Double
    }

    @Test("topic list and topic info show the declared type with its fingerprint, the senders and the listeners")
    func typesInListings() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let configuration = MeshNode.Configuration(coordinator: address, listenHost: "127.0.0.1", logger: testLogger("cli"))
        let talker = try await buildMeshNode(name: "talker", configuration: configuration)
        let base = try await buildMeshNode(name: "base", configuration: configuration)
        defer { Task { await talker.close(); await base.close() } }
        let cmd = Topic<Twist>("cmd")
        try await base.listen(cmd) { (_: String, _: Twist) in }
        try await talker.send(cmd, Twist(linear: 1, angular: 0))

        let list = try await MeshCLI.run(["topic", "list", "--coordinator", address])
        #expect(list.code == 0, "\(list)")
        let header = try #require(list.output.split(separator: "\n").first)
        #expect(header.contains("TYPE") && header.contains("SENDERS") && header.contains("LISTENERS"))
        let row = try #require(list.output.split(separator: "\n").first { $0.hasPrefix("cmd ") })
        #expect(row.contains("Twist (\(cmd.type.fingerprint!))"), "\(row)")

        let info = try await MeshCLI.run(["topic", "info", "cmd", "--coordinator", address, "--json"])
        #expect(info.code == 0, "\(info)")
        let object = try #require(try info.json() as? [String: Any])
        let senders = try #require(object["senders"] as? [[String: Any]])
        let listeners = try #require(object["listeners"] as? [[String: Any]])
        #expect(senders.map { $0["name"] as? String } == ["talker"])
        #expect(listeners.map { $0["name"] as? String } == ["base"])
        #expect((senders.first?["type"] as? [String: Any])?["fingerprint"] as? String == cmd.type.fingerprint)

        let text = try await MeshCLI.run(["topic", "info", "cmd", "--coordinator", address])
        #expect(text.output.contains("type:      Twist (\(cmd.type.fingerprint!))"), "\(text)")
        let missing = try await MeshCLI.run(["topic", "info", "nothing-here", "--coordinator", address])
        #expect(missing.failureProblem(code: 1, mentioning: "no node sends on or listens to nothing-here") == nil, "\(missing)")
    }

    @Test("topic send reads JSON from @FILE and from standard input: a 200 KB value arrives whole")
    func largeValues() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let big = "{\"blob\":\"" + String(repeating: "x", count: 200_000) + "\"}"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-send-\(UUID()).json")
        try Data(big.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let echo = try MeshCLI.start(["topic", "echo", "big", "--count", "2", "--coordinator", address])
        defer { echo.terminate() }
        try await echo.waitForOutput("listening on big")
        let fromFile = try await MeshCLI.run(["topic", "send", "big", "@" + file.path, "--coordinator", address])
        #expect(fromFile.code == 0, "\(fromFile)")
        let mesh = executablesDirectory.appendingPathComponent("mesh").path
        let piped = try ChildProcess(
            path: "/bin/sh", ["-c", "exec \"$0\" topic send big - --coordinator \"$1\" < \"$2\"", mesh, address, file.path],
            environment: MeshCLI.quiet)
        let fromStdin = try await piped.result()
        #expect(fromStdin.code == 0, "\(fromStdin)")
        let result = try await echo.result()
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.contains(String(repeating: "x", count: 200_000)) })

        let absent = try await MeshCLI.run(["topic", "send", "big", "@/nonexistent/file.json", "--coordinator", address])
        #expect(absent.failureProblem(code: 1, mentioning: "cannot read /nonexistent/file.json") == nil, "\(absent)")
    }

    @Test(
        "echo in the background, then send: waiting for echo's ready line, and (as the old README transcript did) not waiting; 20 of 20 each",
        arguments: [true, false])
    func echoThenSend(waitForReadyLine: Bool) async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        var delivered = 0
        for run in 0..<20 {
            let echo = try MeshCLI.start(["topic", "echo", "greetings", "--count", "1", "--coordinator", address])
            defer { echo.terminate() }
            // Without the line, send's own wait for a listener is what keeps the message.
            if waitForReadyLine { try await echo.waitForOutput("listening on greetings") }
            let send = try await MeshCLI.run(["topic", "send", "greetings", "{\"run\":\(run)}", "--coordinator", address])
            #expect(send.code == 0, "\(send)")
            let result = try await echo.result(seconds: 20)
            if result.code == 0, result.output.contains("\"data\":{\"run\":\(run)}") { delivered += 1 } else {
                Issue.record("run \(run): \(result)")
            }
        }
        print("echo then send (waiting for the ready line: \(waitForReadyLine)): \(delivered) of 20 delivered")
        #expect(delivered == 20)
    }
}
