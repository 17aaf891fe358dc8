import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Listeners run on the event loop's thread; a listener that blocks must not stall the loop
/// for everyone else in the process (other nodes, the coordinator link, timers).
@Suite("Listeners on the loop thread", .serialized)
struct LoopThreadTests {
    @Test("a task that blocks the loop thread 200 ms: the watchdog moves the loop on; timers keep firing")
    func watchdogHandsOff() async throws {
        let loop = EventLoop(name: "test-loop")
        let blockedOn = Mutex<(thread: UInt, wasLoop: Bool, stillLoopAfter: Bool)?>(nil)
        let blocking = Collector<Void>()
        let start = ContinuousClock.now
        let blocker = Task(executorPreference: loop) {
            let wasLoop = loop.inLoopThread
            blocking.append(())
            usleep(200_000)  // the behaviour under test: a listener that blocks, as a user might write by mistake
            blockedOn.withLock { $0 = (UInt(pthread_self()), wasLoop, loop.inLoopThread) }
        }
        // Timers scheduled while the task blocks: each fires late by at most about two ticks.
        _ = try await blocking.wait(for: 1, seconds: 5)
        let lateness = Collector<Duration>()
        for step in 1...8 {
            let due = ContinuousClock.now + .milliseconds(15 * step)
            loop.schedule(at: due) { lateness.append(ContinuousClock.now - due) }
        }
        await blocker.value
        let worst = try await lateness.wait(for: 8, seconds: 5).max()!
        let blocked = try #require(blockedOn.withLock { $0 })
        #expect(blocked.wasLoop, "a task preferring the loop runs on its thread")
        #expect(!blocked.stillLoopAfter, "the blocked thread is no longer the loop's once handed off")
        #expect(loop.handoffCount == 1)
        // The bound: two watchdog ticks (20 ms) plus scheduling; 100 ms leaves room for a loaded machine.
        #expect(worst < .milliseconds(100), "a timer fired \(worst) late while a task blocked the loop")
        #expect(ContinuousClock.now - start >= .milliseconds(190))
        // The loop still runs tasks afterwards, on its new thread.
        let after = await Task(executorPreference: loop) { loop.inLoopThread }.value
        #expect(after)
    }

    @Test("listeners run on the loop thread until one is slow, then on the pool for a while")
    func slowListenerLeavesTheLoop() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let seen = Collector<(index: Int, onLoop: Bool)>()
            try await receiver.listen("work", as: Int.self) { _, index in
                seen.append((index, EventLoop.shared.inLoopThread))
                if index == 1 { usleep(20_000) }  // the behaviour under test: slower than MeshNode.slowListener
            }
            try await sender.waitForListener("work", timeout: .seconds(5))
            for index in 0..<3 {
                try await sender.send("work", index)
                _ = try await seen.wait(for: index + 1)
            }
            let values = seen.values
            #expect(values.map(\.index) == [0, 1, 2])
            #expect(values[0].onLoop, "a listener runs where the bytes arrive")
            #expect(values[1].onLoop)
            #expect(!values[2].onLoop, "after a slow call the node's listeners run on the cooperative pool")
        }
    }

    @Test("a listener that blocks 200 ms at a time delays neither another node's messages nor the heartbeats")
    func blockingListenerDoesNotStallOthers() async throws {
        // Nodes beat every 1 s and are given up after 1.5 s of silence: a loop held by the
        // blocking listener for its 4 × 200 ms would come close; the watchdog keeps it far off.
        try await withMesh(heartbeatTimeout: .milliseconds(1500)) { mesh in
            let slow = try await mesh.node("slow")
            let quick = try await mesh.node("quick")
            let sender = try await mesh.node("sender")
            let slowDone = Collector<Int>()
            try await slow.listen("slow", as: Int.self) { _, index in
                usleep(200_000)  // the behaviour under test: blocks its thread, which starts out as the loop's
                slowDone.append(index)
            }
            let delays = Collector<Duration>()
            try await quick.listen("quick", as: Data.self) { _, stamp in
                let sent = stamp.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                delays.append(.nanoseconds(Int64(monotonicNanoseconds() &- sent)))
            }
            try await sender.waitForListener("slow", timeout: .seconds(5))
            try await sender.waitForListener("quick", timeout: .seconds(5))
            for index in 0..<4 { try await sender.send("slow", index) }
            // 80 messages to the other node, one every 10 ms, while the slow listener blocks.
            for _ in 0..<80 {
                var stamp = monotonicNanoseconds()
                try await sender.send("quick", Data(bytes: &stamp, count: 8))
                try await Task.sleep(for: .milliseconds(10))  // pacing: spreads the 80 over the slow listener's blocks
            }
            let got = try await delays.wait(for: 80, seconds: 10)
            _ = try await slowDone.wait(for: 4, seconds: 10)
            let worst = got.max()!
            // The bound: a blocked loop thread is replaced within two watchdog ticks (20 ms); the
            // slow node's later messages go to the pool. 150 ms leaves room for a loaded machine and
            // is still well under one 200 ms block.
            #expect(worst < .milliseconds(150), "a message to another node waited \(worst)")
            for node in [slow, quick, sender] {
                #expect(await node.isConnectedToCoordinator)
                #expect(await node.statistics.coordinatorReconnects == 0)
            }
            #expect(slowDone.values.sorted() == [0, 1, 2, 3])
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, comparable across threads (the send stamps in the test above).
private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
