import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// The topology view a node gets when it does not choose one (issue #21: the default
/// configuration joins 1,000 nodes): partial, with the full view on request.
@Suite("Default topology view", .serialized)
struct DefaultViewTests {
    /// True when this test process was started without `MESH_TOPOLOGY_VIEW`: only then is the
    /// configuration's default the library's own.
    static let environmentUnset = ProcessInfo.processInfo.environment[TopologyView.environmentVariable] == nil

    @Test("MESH_TOPOLOGY_VIEW: full and partial in any case and with spaces around; anything else names no view")
    func environmentValues() {
        #expect(TopologyView.named("full") == .full)
        #expect(TopologyView.named(" FULL ") == .full)
        #expect(TopologyView.named("Partial") == .partial)
        for text in [nil, "", " ", "fulll", "all", "full view", "partial\n", "\u{1b}[31mfull"] {
            #expect(TopologyView.named(text) == nil, "\(String(describing: text))")
        }
    }

    @Test(
        "a node that does not choose holds a partial view: its own record and what it routes to; .full holds everyone; both route alike",
        .enabled(if: DefaultViewTests.environmentUnset, "MESH_TOPOLOGY_VIEW is set for this run"))
    func defaultIsPartial() async throws {
        #expect(MeshNode.Configuration().topologyView == .partial)
        try await withMesh { mesh in
            var others: [MeshNode] = []
            for index in 0..<4 {
                let node = try await mesh.node("bystander-\(index)")
                try await node.listen("elsewhere-\(index)") { (_: String, _: Int) in }
                others.append(node)
            }
            let listener = try await mesh.node("listener")
            let got = Collector<Int>()
            try await listener.listen("wanted") { (_: String, value: Int) in got.append(value) }
            let sender = try await mesh.node("sender")
            #expect(await sender.hasPartialView, "the coordinator did not confirm a partial view")
            #expect(await sender.currentTopology.nodes.keys.sorted() == [sender.id])
            // The first send asks for the route: no waitForListener, nothing lost.
            try await sender.send("wanted", 1)
            #expect(try await got.wait(for: 1, seconds: 10) == [1])
            #expect(Set(await sender.currentTopology.nodes.keys) == [sender.id, listener.id])

            let watcher = try await mesh.node("watcher") { $0.topologyView = .full }
            #expect(await !watcher.hasPartialView)
            #expect(await watcher.currentTopology.nodes.count == 7, "a full view holds every node")
            try await watcher.send("wanted", 2)
            #expect(try await got.wait(for: 2, seconds: 10) == [1, 2])
            // The coordinator, and what the tools read from it, sees everyone whatever the views.
            #expect(await mesh.coordinator.topology.nodes.count == 7)
        }
    }

    @Test("a coordinator whose partial views together are at maximumInterests: a default node falls back to the full view, with a warning, and its wait and send go through")
    func fallsBackToFullView() async throws {
        let capture = LogCapture()
        var configuration = RunningCoordinator.testConfiguration(logger: capture.logger("coordinator", level: .warning))
        configuration.maximumInterests = 2
        try await withMesh(configuration) { mesh in
            // Another session's partial view takes all the coordinator keeps.
            let follower = try ControlClient.connect(to: mesh.address, lean: true)
            defer { follower.close() }
            try await follower.register(name: "follower", view: .partial, interest: ViewInterest(topics: ["a", "b"]))
            follower.keepAlive()
            // The listener holds the full view, so the sender's hello needs no lookup (one would
            // be refused the same way, and that node would fall back too).
            let listener = try await mesh.node("listener") { $0.topologyView = .full }
            let got = Collector<Int>()
            try await listener.listen("jobs") { (_: String, value: Int) in got.append(value) }
            let sender = try await mesh.node("sender") { $0.logger = capture.logger("sender", level: .warning) }
            // Its interest in "jobs" is refused: it registers again with the full view, whose
            // welcome holds the listener, and the wait ends.
            try await sender.waitForListener("jobs", timeout: .seconds(20))
            try await sender.send("jobs", 7)
            #expect(try await got.wait(for: 1, seconds: 10) == [7])
            #expect(await !sender.hasPartialView)
            #expect(await sender.currentTopology.nodes.count == 3, "a full view holds every node")
            let warnings = capture.lines(level: .warning, label: "sender").filter { $0.contains("keeps no more partial views") }
            #expect(warnings.count == 1, "\(capture.all)")
            #expect(await sender.statistics.messagesUnrouted == 0)
        }
    }

    @Test("a MESH_TOPOLOGY_VIEW that names no view: the node warns once, naming it escaped, and works with the default")
    func unknownEnvironmentValue() async throws {
        try await withMesh { mesh in
            let listener = try await mesh.node("listener") { $0.topologyView = .full }
            let got = Collector<Int>()
            try await listener.listen("ticks") { (_: String, value: Int) in got.append(value) }
            let run = try await MeshCLI.run(
                ["topic", "send", "ticks", "5"],
                environment: ["MESH_COORDINATOR": mesh.address, "MESH_TOPOLOGY_VIEW": "fulll\u{1b}[31m"], seconds: 30)
            #expect(run.code == 0, "\(run)")
            #expect(try await got.wait(for: 1, seconds: 10) == [5])
            let warnings = run.errors.split(separator: "\n").filter { $0.contains("MESH_TOPOLOGY_VIEW") }
            #expect(warnings.count == 1, "\(run)")
            #expect(warnings.first?.contains("names no topology view (full or partial); this node holds the partial view") == true, "\(run)")
            #expect(!run.errors.contains("\u{1b}"), "the value reached the log unescaped: \(run)")
        }
    }
}
