import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshTooling

extension ResilienceTests {
    /// Issue #22: when a node registered again, the coordinator's counters for it restarted at 0
    /// (`mesh_node_messages_received_total` went 92 -> 0 -> 92: a counter reset to Prometheus, and
    /// a phantom rate in the web view). A node's totals are now one process's totals wherever the
    /// coordinator sees them: they never go backwards.
    @Suite("Counter continuity", .serialized)
    struct CounterContinuityTests {
        private static func counts(_ received: Int, topic: Int) -> MeshStatistics {
            var stats = MeshStatistics()
            stats.messagesReceived = received
            stats.bytesReceived = received * 10
            stats.topics = ["jobs": TopicStatistics(messagesReceived: topic, bytesReceived: topic * 5)]
            return stats
        }

        private static func received(_ id: String, in coordinator: MeshCoordinator) async -> (Int, Int)? {
            guard let entry = await coordinator.status.nodes.first(where: { $0.node.id == id }) else { return nil }
            return (entry.stats.messagesReceived, entry.stats.topics?["jobs"]?.messagesReceived ?? 0)
        }

        @Test("a session that drops and comes back (the same process) continues its totals; a count that goes back is held")
        func sameCoordinatorNewSession() async throws {
            try await withMesh { mesh in
                let first = try ControlClient.connect(to: mesh.address)
                try await first.register(name: "counted", topics: ["jobs"])
                first.send(ControlMessage(.heartbeat, stats: Self.counts(92, topic: 90)))
                try await eventually("the coordinator to hold 92", seconds: 10) {
                    await Self.received(first.id, in: mesh.coordinator).map { $0 == (92, 90) } ?? false
                }
                first.close()
                try await eventually("the first session to end", seconds: 10) {
                    await Self.received(first.id, in: mesh.coordinator) == nil
                }
                // The same process registers again, saying nothing of its counters (as an older
                // client would): the coordinator continues from 92, not from 0.
                let again = try ControlClient.connect(to: mesh.address, identity: first.identity)
                defer { again.close() }
                try await again.register(name: "counted", topics: ["jobs"])
                let resumed = await Self.received(first.id, in: mesh.coordinator)
                #expect(resumed.map { $0 == (92, 90) } ?? false, "after re-registering: \(String(describing: resumed))")
                // A count lower than before (a reset, or a lie) is held at the earlier value.
                again.send(ControlMessage(.heartbeat, stats: Self.counts(5, topic: 5)))
                again.send(ControlMessage(.heartbeat, stats: Self.counts(100, topic: 95)))
                try await eventually("the coordinator to take 100", seconds: 10) {
                    await Self.received(first.id, in: mesh.coordinator).map { $0 == (100, 95) } ?? false
                }
                // Nodes that register with their counters (every Swift node) bring them along.
                let fresh = try ControlClient.connect(to: mesh.address)
                defer { fresh.close() }
                try await fresh.register(name: "fresh", topics: ["jobs"], stats: Self.counts(7, topic: 7))
                #expect(await Self.received(fresh.id, in: mesh.coordinator).map { $0 == (7, 7) } ?? false)
            }
        }

        @Test("after a coordinator restart, a node's first status entry already has its totals, never 0")
        func coordinatorRestart() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let receiver = try await buildMeshNode(name: "receiver", configuration: coordinator.configuration("receiver"))
            let got = Collector<Int>()
            try await receiver.listen("jobs") { (_: String, value: Int) in got.append(value) }
            let sender = try await buildMeshNode(name: "sender", configuration: coordinator.configuration("sender"))
            try await sender.waitForListener("jobs", timeout: .seconds(10))
            for index in 0..<20 { try await sender.send("jobs", index) }
            _ = try await got.wait(for: 20, seconds: 10)
            let receiverID = receiver.id
            // Asked at most 10 times a second: status is an expensive request, limited to 20 a second.
            @Sendable func entry(_ inspector: MeshInspector) async -> MeshStatistics? {
                try? await Task.sleep(for: .milliseconds(100))
                return try? await inspector.status().nodes.first { $0.node.id == receiverID }?.stats
            }
            let before = try await MeshInspector.connect(to: coordinator.address, authkey: nil, adminKey: "")
            try await eventually("the coordinator to show 20 received", seconds: 10) {
                await entry(before)?.messagesReceived == 20
            }
            await before.close()

            try await coordinator.kill()
            try await eventually("the receiver to notice the coordinator is gone", seconds: 10) {
                await !receiver.isConnectedToCoordinator
            }
            try await coordinator.start()
            let after = try await withDeadline(10) { try await eventuallyConnected(to: coordinator.address, adminKey: "") }
            let seen = Collector<MeshStatistics>()
            try await eventually("the fresh coordinator to list the receiver", seconds: 15) {
                guard let stats = await entry(after) else { return false }
                seen.append(stats)
                return true
            }
            let first = seen.values.first
            print("coordinator restart: the receiver's first status entry: \(first?.messagesReceived ?? -1) received, jobs \(first?.topics?["jobs"]?.messagesReceived ?? -1)")
            #expect(first?.messagesReceived == 20, "the totals restarted: \(String(describing: first))")
            #expect(first?.topics?["jobs"]?.messagesReceived == 20)
            await after.close()
            await sender.close()
            await receiver.close()
        }
    }
}
