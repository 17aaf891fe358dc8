import Foundation
import Mesh
import Synchronization

/// `_role fleet`: several nodes in one process, for the multi-coordinator tests in network
/// namespaces (a host's worth of nodes per process instead of one process per node).
///
/// Builds `--nodes` nodes named `--name` plus their index, with the full view, against
/// `--coordinator` (one address or a list; without it, what a node with nothing configured does) and `$MESH_AUTHKEY`, accepting peers on the interface
/// toward the first coordinator. With `--listen TOPIC` the first node counts the integers it gets
/// there (and whether they came in order, 0, 1, 2, ...); with `--send TOPIC` the first node waits
/// for a listener and sends `--messages` integers, one every 2 ms. Prints `READY`, then every
/// 200 ms `STATE {json}`: per node the coordinator it routes by ("" when none) and how many
/// records it holds; the counts sent and received; whether they arrived in order.
enum FleetRole {
    struct State: Codable {
        var routes: [String]
        var sizes: [Int]
        var sent: Int
        var received: Int
        var ordered: Bool
    }

    /// The integers the listening node got: how many, and whether each was the one expected.
    final class Sequence: Sendable {
        private let state = Mutex((next: 0, ordered: true))
        func add(_ n: Int) {
            state.withLock { state in
                if n != state.next { state.ordered = false }
                state.next += 1
            }
        }
        var snapshot: (count: Int, ordered: Bool) { state.withLock { ($0.next, $0.ordered) } }
    }

    static func run(_ arguments: RoleArguments) async throws {
        let count = try arguments.int("nodes")
        let name = try arguments.string("name")
        var configuration = MeshNode.Configuration(
            coordinator: (try? arguments.string("coordinator")) ?? MeshDefaults.nodeCoordinatorFromEnvironment, authkey: ProcessInfo.processInfo.environment["MESH_AUTHKEY"],
            logger: MeshLogger(label: name, level: .warning))
        configuration.topologyView = .full
        var nodes: [MeshNode] = []
        for index in 0..<count { nodes.append(try await buildMeshNode(name: "\(name)\(index)", configuration: configuration)) }
        let received = Sequence()
        if let topic = try? arguments.string("listen") {
            try await nodes[0].listen(topic) { (_: String, n: Int) in received.add(n) }
        }
        let sent = Mutex(0)
        if let topic = try? arguments.string("send") {
            let messages = try arguments.int("messages")
            let sender = nodes[0]
            Task {
                do {
                    try await sender.waitForListener(topic, timeout: .seconds(60))
                    for n in 0..<messages {
                        try await sender.send(topic, n)
                        sent.withLock { $0 = n + 1 }
                        try await Task.sleep(for: .milliseconds(2))
                    }
                } catch {
                    warn("fleet \(name): sending failed: \(error)")
                }
            }
        }
        emit("READY")
        let encoder = JSONEncoder()
        while true {
            var state = State(routes: [], sizes: [], sent: sent.withLock { $0 }, received: 0, ordered: true)
            (state.received, state.ordered) = received.snapshot
            for node in nodes {
                state.routes.append(await node.routingCoordinator ?? "")
                state.sizes.append(await node.currentTopology.nodes.count)
            }
            emit("STATE " + String(decoding: try encoder.encode(state), as: UTF8.self))
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
