import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Listeners run on the event loop's thread, which runs on one thread for its whole life: a
/// listener that blocks holds up everyone else in the process (other nodes, the coordinator link,
/// timers) for that one call, and then the node's delivery leaves the loop.
@Suite("Listeners on the loop thread", .serialized)
struct LoopThreadTests {
    @Test("a task that blocks the loop holds it for that call only, and the loop stays on its one thread")
    func blockingTaskHoldsTheLoopForItsCall() async throws {
        let loop = EventLoop(name: "test-loop")
        let before = await Task(executorPreference: loop) { (thread: UInt(pthread_self()), onLoop: loop.inLoopThread) }.value
        #expect(before.onLoop, "a task preferring the loop runs on its thread")
        let blocking = Collector<Void>()
        let ended = Collector<ContinuousClock.Instant>()
        let blocker = Task(executorPreference: loop) {
            blocking.append(())
            usleep(200_000)  // the behaviour under test: a task that blocks, as a user might write by mistake
            ended.append(.now)
        }
        _ = try await blocking.wait(for: 1, seconds: 5)
        // A timer due now, set while the task blocks: only the loop's one thread can fire it.
        let due = ContinuousClock.now
        let fired = Collector<ContinuousClock.Instant>()
        loop.schedule(at: due) { fired.append(.now) }
        await blocker.value
        let blockEnded = try await ended.wait(for: 1, seconds: 5)[0]
        let firedAt = try await fired.wait(for: 1, seconds: 5)[0]
        #expect(firedAt >= blockEnded, "the timer fired while the task held the loop: another thread ran it")
        // Late by the rest of the call and no more; the slack is for a loaded machine.
        #expect(firedAt - blockEnded < .milliseconds(100), "the timer fired \(firedAt - blockEnded) after the call returned")
        let after = await Task(executorPreference: loop) { (thread: UInt(pthread_self()), onLoop: loop.inLoopThread) }.value
        #expect(after.onLoop)
        #expect(after.thread == before.thread, "the loop moved to another thread")
    }

    @Test("listeners run on the loop thread until one is slow, then on the pool for a while")
    func slowListenerLeavesTheLoop() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let loop = receiver.loop
            let seen = Collector<(index: Int, onLoop: Bool)>()
            try await receiver.listen("work", as: Int.self) { _, index in
                seen.append((index, loop.inLoopThread))
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

    /// One listener call of this length.
    struct Call: Sendable {
        var index: Int
        var onLoop: Bool
        var start: ContinuousClock.Instant
        var end: ContinuousClock.Instant
    }

    @Test("a listener that blocks 200 ms: another node's message and a timer wait for that call only, and its next calls run off the loop")
    func blockingListenerHoldsOthersForOneCall() async throws {
        // Nodes beat every 1 s and are given up after 1.5 s of silence: the one blocked call
        // must not cost anyone its registration.
        try await withMesh(heartbeatTimeout: .milliseconds(1500)) { mesh in
            let slow = try await mesh.node("slow")
            let quick = try await mesh.node("quick")
            let sender = try await mesh.node("sender")
            let loop = slow.loop
            #expect(quick.loop === loop && sender.loop === loop, "one loop per process")
            let blocking = Collector<Void>()
            let calls = Collector<Call>()
            try await slow.listen("slow", as: Int.self) { _, index in
                let start = ContinuousClock.now
                let onLoop = loop.inLoopThread
                if index == 0 {
                    blocking.append(())
                    usleep(200_000)  // the behaviour under test: blocks its thread, which starts out as the loop's
                }
                calls.append(Call(index: index, onLoop: onLoop, start: start, end: .now))
            }
            let arrivals = Collector<ContinuousClock.Instant>()
            try await quick.listen("quick", as: Int.self) { _, _ in arrivals.append(.now) }
            try await sender.waitForListener("slow", timeout: .seconds(5))
            try await sender.waitForListener("quick", timeout: .seconds(5))

            try await sender.send("slow", 0)
            _ = try await blocking.wait(for: 1, seconds: 10)
            // While the listener blocks the loop: a message to another node, and a timer due now.
            let sentAt = ContinuousClock.now
            try await sender.send("quick", 1)
            let fired = Collector<ContinuousClock.Instant>()
            loop.schedule(at: sentAt) { fired.append(.now) }

            let blocked = try await calls.wait(for: 1, seconds: 10)[0]
            let arrivedAt = try await arrivals.wait(for: 1, seconds: 10)[0]
            let firedAt = try await fired.wait(for: 1, seconds: 10)[0]
            let call = blocked.end - blocked.start
            #expect(blocked.onLoop, "a listener runs on the loop until it is caught being slow")
            // One thread runs the loop: neither could be served before the call returned...
            #expect(firedAt >= blocked.end, "a timer fired while the listener held the loop")
            #expect(arrivedAt >= blocked.end, "a message was delivered while the listener held the loop")
            // ...and both were served right after it: late by at most that call (plus slack for a
            // loaded machine), not by every call the slow listener makes.
            #expect(firedAt - sentAt < call + .milliseconds(100), "the timer was \(firedAt - sentAt) late; the call took \(call)")
            #expect(arrivedAt - sentAt < call + .milliseconds(100), "the message took \(arrivedAt - sentAt); the call took \(call)")

            // The slow listener's next calls run on the cooperative pool, off the loop's thread.
            for index in 1...3 { try await sender.send("slow", index) }
            let all = try await calls.wait(for: 4, seconds: 10)
            #expect(all.map(\.index) == [0, 1, 2, 3])
            #expect(all.dropFirst().allSatisfy { !$0.onLoop }, "after the slow call its node's listeners left the loop")
            for node in [slow, quick, sender] {
                #expect(await node.isConnectedToCoordinator)
                #expect(await node.statistics.coordinatorReconnects == 0)
            }
        }
    }
}
