import Foundation
import MeshTesting
import Testing

@testable import Mesh

extension ResilienceTests {
    /// Joining and leaving must give back every descriptor and nearly all memory.
    @Suite("Leaks", .serialized)
    struct LeakTests {
        /// Builds `count` nodes at once, each listening on a topic, then closes them all.
        private static func churn(_ mesh: RunningCoordinator, batch: Int, count: Int) async throws {
            let nodes = try await withThrowingTaskGroup(of: MeshNode.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let node = try await mesh.node("churn-\(batch)-\(index % 7)")
                        try await node.listen("churn/\(index % 5)") { (_: String, _: Int) in }
                        return node
                    }
                }
                var nodes: [MeshNode] = []
                for try await node in group { nodes.append(node) }
                return nodes
            }
            // One message per batch, so peer connections are opened and closed too.
            try await nodes[0].send("churn/1", 1)
            await withTaskGroup(of: Void.self) { group in
                for node in nodes { group.addTask { await node.close() } }
            }
        }

        @Test("1,000 nodes joining and leaving one coordinator leave its fd count within +10 and RSS within +50 MiB")
        func thousandNodesJoinAndLeave() async throws {
            try await withMesh { mesh in
                let coordinator = mesh.coordinator
                let batchSize = 50
                // Warm-up batch: the event loop, the pools and the caches reach their working size.
                try await withDeadline(60) { try await Self.churn(mesh, batch: 0, count: batchSize) }
                try await eventually("the warm-up batch to leave", seconds: 10) { await coordinator.topology.nodes.isEmpty }
                try await Task.sleep(for: .milliseconds(200))
                let baselineFDs = openFileDescriptorCount()
                let baselineRSS = residentMemoryBytes()

                let started = ContinuousClock.now
                try await withDeadline(240) {
                    for batch in 1...(1000 / batchSize) {
                        try await Self.churn(mesh, batch: batch, count: batchSize)
                    }
                }
                let elapsed = started.duration(to: .now)
                try await eventually("every node to have left the coordinator's topology", seconds: 10) {
                    await coordinator.topology.nodes.isEmpty
                }
                let settle = try await timeUntil("the fd count to return near \(baselineFDs)", seconds: 10) {
                    openFileDescriptorCount() <= baselineFDs + 10
                }
                let finalFDs = openFileDescriptorCount()
                let finalRSS = residentMemoryBytes()
                let port = UInt16(mesh.address.split(separator: ":").last!)!
                print("leaks: 1,000 nodes in \(secondsText(elapsed)); fds \(baselineFDs) -> \(finalFDs) (settled in \(secondsText(settle))); RSS \(mebibytes(baselineRSS)) -> \(mebibytes(finalRSS)) (bound +50 MiB); coordinator sockets left: \(establishedSocketCount(localPort: port))")
                #expect(finalFDs <= baselineFDs + 10)
                #expect(finalRSS - baselineRSS < 50 << 20, "RSS grew by \(mebibytes(finalRSS - baselineRSS))")
                #expect(await coordinator.topology.nodes.isEmpty)
                #expect(establishedSocketCount(localPort: port) == 0, "the coordinator still holds connections")
            }
        }
    }
}
