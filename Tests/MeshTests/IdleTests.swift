import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Issue #20: an idle mesh costs nothing. The coordinator wakes for heartbeats and for the
/// moment the oldest of them could run out, and otherwise sleeps: no periodic publish, no tick.
@Suite("Idle costs nothing", .serialized)
struct IdleTests {
    @Test("once a burst of changes is published, an idle mesh makes the coordinator publish nothing more")
    func noPublishWhileIdle() async throws {
        try await withMesh() { mesh in
            let listener = try await mesh.node("listener")
            let watcher = try await mesh.node("watcher")
            // Several changes within one publish interval: the second and later wait for a deferred
            // publish, which used to schedule the next one for ever (100 wake-ups a second).
            for index in 0..<5 {
                try await listener.listen("idle-\(index)") { (_: String, _: Data) in }
            }
            try await watcher.waitForListener("idle-4", timeout: .seconds(5))
            let settled = await mesh.coordinator.publishCount
            // Asserting that nothing happens takes a window of time; heartbeats (every second) and
            // the silent-session check fall inside it and must not publish either.
            try await Task.sleep(for: .milliseconds(1500))
            #expect(await mesh.coordinator.publishCount == settled, "the coordinator published with nothing to say")
            // And a change after the quiet spell is still published.
            try await listener.listen("idle-late") { (_: String, _: Data) in }
            try await watcher.waitForListener("idle-late", timeout: .seconds(5))
            #expect(await mesh.coordinator.publishCount > settled)
        }
    }

    @Test("with no periodic tick, a node that stops beating is still evicted at the heartbeat timeout, and one that beats is not")
    func silentNodeEvictedOnTime() async throws {
        try await withMesh(heartbeatTimeout: .milliseconds(1200)) { mesh in
            // Beats every 400 ms: must stay through several checks.
            let steady = try await mesh.node("steady") { $0.heartbeatInterval = .milliseconds(400) }
            // Registers, then says nothing for a minute (its loop-thread pump waits 1.5 intervals too).
            let quiet = try await mesh.node("quiet") { $0.heartbeatInterval = .seconds(60) }
            let joined = ContinuousClock.now
            let quietID = quiet.id
            try await eventually("the quiet node to be evicted", seconds: 6) {
                await mesh.coordinator.snapshot().events.contains { $0.kind == .evicted && $0.id == quietID }
            }
            let took = joined.duration(to: .now)
            #expect(took >= .milliseconds(1000), "evicted before its heartbeat timeout: \(took)")
            #expect(took < .milliseconds(3500), "evicted \(took) after it last spoke; the timeout is 1.2 s")
            #expect(!(await mesh.coordinator.snapshot().events.contains { $0.kind == .evicted && $0.id == steady.id }))
            #expect(await steady.isConnectedToCoordinator)
            #expect(await steady.statistics.coordinatorReconnects == 0)
        }
    }
}
