import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// The built executables, run as separate processes the way a user runs them.
@Suite("Separate processes", .serialized)
struct ProcessTests {
    @Test("demo-sender's message reaches demo-receiver through mesh-coordinator")
    func demoPair() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let environment = ["MESH_COORDINATOR": address]
        let receiver = try ChildProcess("demo-receiver", environment: environment)
        defer { receiver.terminate() }
        try await receiver.waitForOutput("receiver listening on some-topic")
        let sender = try ChildProcess("demo-sender", environment: environment)
        defer { sender.terminate() }
        #expect(try await sender.waitForExit() == 0)
        try await receiver.waitForOutput(#"receiver got: topic=some-topic; data=["hello": "world!"]"#)
        try await coordinator.waitForOutput("node joined: receiver")
        try await coordinator.waitForOutput("node left: sender")

        receiver.signal(SIGTERM)
        #expect(try await receiver.waitForExit() == 0)
        try await coordinator.waitForOutput("node left: receiver")
        coordinator.signal(SIGINT)
        #expect(try await coordinator.waitForExit() == 0)
    }

    @Test("three worker processes share twelve jobs four each")
    func workerPoolProcesses() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let environment = ["MESH_COORDINATOR": address]
        let processes = ProcessBag()
        defer { processes.terminateAll() }
        let workers = try await processes.startAll("demo-worker", count: 3, environment: environment, waitingFor: "ready")
        let dispatcher = try ChildProcess("demo-worker", ["--dispatch", "12"], environment: environment)
        defer { dispatcher.terminate() }
        #expect(try await dispatcher.waitForExit() == 0)
        let started = workers
        try await eventually("all twelve jobs to be printed") {
            started.map { $0.output.components(separatedBy: "got job").count - 1 }.reduce(0, +) == 12
        }
        for worker in workers {
            #expect(worker.output.components(separatedBy: "got job").count - 1 == 4, "\(worker.output)")
        }
    }

    @Test("a coordinator with a key turns away a node with the wrong one, and says so on both sides")
    func wrongKeyAcrossProcesses() async throws {
        let (coordinator, address) = try await startCoordinatorProcess(environment: ["MESH_AUTHKEY": "the right key, long enough"])
        defer { coordinator.terminate() }
        let sender = try ChildProcess(
            "demo-sender", environment: ["MESH_COORDINATOR": address, "MESH_AUTHKEY": "the wrong key, long enough"])
        defer { sender.terminate() }
        #expect(try await sender.waitForExit(seconds: 10) != 0)
        #expect(sender.output.contains("authentication failed"), "\(sender.output)")
        try await coordinator.waitForOutput("rejected connection from 127.0.0.1")
    }

    @Test("the coordinator and the mesh tool answer --help and --version")
    func helpAndVersion() async throws {
        for executable in ["mesh", "mesh-coordinator"] {
            let help = try ChildProcess(executable, ["--help"])
            #expect(try await help.waitForExit() == 0)
            #expect(help.output.contains("usage: \(executable)"))
            let version = try ChildProcess(executable, ["--version"])
            #expect(try await version.waitForExit() == 0)
            #expect(version.output.contains(MeshDefaults.version))
        }
        let bad = try ChildProcess("mesh-coordinator", ["--port", "banana"])
        #expect(try await bad.waitForExit() == 2)
        #expect(bad.output.contains("not a port number"))
    }
}
