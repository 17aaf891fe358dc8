import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Issue #20: no lock is held across a system call or user code on the send path, and none is
/// taken twice. A node whose own listener falls behind used to crash its process ("Recursive
/// call to lock Mutex"): the router delivered to the node's inbox under its lock, and the drop
/// accounting took that lock again.
@Suite("Lock discipline on the hot path", .serialized)
struct HotPathLockTests {
    static let messageCount = 2_000
    static let payload = Data(repeating: 0x5A, count: 512)

    /// A listener that takes about a millisecond per message and counts what it got.
    static func slowListener(_ got: Collector<Int>) -> @Sendable (String, Data) async -> Void {
        { _, data in
            try? await Task.sleep(for: .milliseconds(1))  // the slow work itself, not a wait for an event
            got.append(data.count)
        }
    }

    @Test("the router calls its deliver closure with its lock released")
    func deliverRunsUnlocked() throws {
        let selfID = "00000000000000aa"
        let router = Router(
            nodeID: selfID, nodeName: "solo", loadBalancing: .roundRobin,
            options: Connection.Options(
                handshake: .connect(purpose: .data, key: nil, identity: nil, expectedPeerID: nil, expectedPeerKey: nil),
                maximumFrameLength: 1 << 20, maximumPendingBytes: 1 << 20),
            events: EventQueue(), logger: .silent, preferUnix: false, calls: PendingCalls(logger: .silent, loop: .shared),
            loop: .shared)
        let record = NodeRecord(id: selfID, name: "solo", host: "127.0.0.1", port: 1, topics: ["t"])
        _ = router.setTopology(Topology(TopologySnapshot(version: 1, nodes: [record])))
        var calls = 0
        let routed = try router.route("t", frameBytes: 100) { connection, member in
            calls += 1
            #expect(connection == nil && member.isSelf)
            // Both take the router's lock: under it they would trap ("Recursive call to lock Mutex").
            _ = router.statistics
            router.dropped(1, bytes: 100, for: nil, topic: "t", stillCounted: true, reason: "test")
        }
        #expect(routed)
        #expect(calls == 1)
        let statistics = router.statistics
        #expect(statistics.messagesSent == 1)
        #expect(statistics.messagesDropped == 1)
    }

    @Test("a node listening to its own topic outlives its slow listener and counts the overflow as drops")
    func selfListenerOverflow() async throws {
        try await withMesh() { mesh in
            let node = try await mesh.node("loner") { $0.maximumInboxBytes = 4 * 1024 }
            let got = Collector<Int>()
            try await node.listen("self-topic", Self.slowListener(got))
            try await node.waitForListener("self-topic", timeout: .seconds(5))
            for _ in 0..<Self.messageCount {
                try await node.send("self-topic", Self.payload)
            }
            let statistics = await node.statistics
            // Every message was routed (to this node) and counted as sent; each one either went into
            // the inbox (counted received) or found it full (counted dropped), never both.
            #expect(statistics.messagesSent == Self.messageCount)
            #expect(statistics.messagesDropped > 0, "a 4 KiB inbox behind a 1 ms listener must overflow")
            #expect(statistics.messagesReceived + statistics.messagesDropped == Self.messageCount)
            #expect(node.lastDropReason?.contains("own listeners") == true)
            // Whatever was taken in reaches the listener.
            let received = try await got.wait(for: statistics.messagesReceived, seconds: 30)
            #expect(received.count == statistics.messagesReceived)
            #expect(await node.statistics.messagesDropped == statistics.messagesDropped)
        }
    }

    @Test("a dispatcher that is a member of its own worker pool outlives its slow listener")
    func dispatcherInItsOwnPool() async throws {
        try await withMesh() { mesh in
            let dispatcher = try await mesh.node("pool") { $0.maximumInboxBytes = 4 * 1024 }
            let worker = try await mesh.node("pool")
            let mine = Collector<Int>()
            let theirs = Collector<Int>()
            try await dispatcher.listen("jobs", Self.slowListener(mine))
            try await worker.listen("jobs") { (_: String, data: Data) in theirs.append(data.count) }
            try await dispatcher.waitForListener("jobs", count: 2, timeout: .seconds(5))
            for _ in 0..<Self.messageCount {
                try await dispatcher.send("jobs", Self.payload)
            }
            let statistics = await dispatcher.statistics
            // One pool, so each message goes to exactly one member, the dispatcher every other time.
            #expect(statistics.messagesSent == Self.messageCount)
            #expect(statistics.messagesDropped > 0, "the dispatcher's 4 KiB inbox behind a 1 ms listener must overflow")
            #expect(statistics.messagesDropped <= Self.messageCount / 2, "only the dispatcher's own share can drop")
            let toWorker = Self.messageCount - statistics.messagesReceived - statistics.messagesDropped
            #expect(toWorker == Self.messageCount / 2, "round robin over two members")
            _ = try await mine.wait(for: statistics.messagesReceived, seconds: 30)
            _ = try await theirs.wait(for: toWorker, seconds: 30)
            #expect(mine.values.count + theirs.values.count + statistics.messagesDropped == Self.messageCount)
            #expect(await worker.statistics.messagesReceived == toWorker)
        }
    }
}
