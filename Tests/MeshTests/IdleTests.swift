import Foundation
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Issue #20: an idle mesh costs nothing: the coordinator sleeps between heartbeats.
@Suite("Idle costs nothing", .serialized)
struct IdleTests {
    @Test("once a burst of changes is published, an idle mesh makes the coordinator publish nothing more")
    func noPublishWhileIdle() async throws {
        let mesh = try await RunningCoordinator.start()
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
        await watcher.close()
        await listener.close()
        await mesh.stop()
    }
}
