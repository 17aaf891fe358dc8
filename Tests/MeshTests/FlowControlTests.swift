import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// A receiver that stops reading must not make its sender's memory grow, and what the sender
/// drops must be counted, following the configured policy.
@Suite("Slow consumers and full queues", .serialized)
struct FlowControlTests {
    static let queueLimit = 256 * 1024

    struct Padded: Codable, Sendable {
        var n: Int
        var pad: String
    }

    /// Sends `count` 1 KiB messages to a receiver whose listener is stuck; returns what it saw.
    func flood(policy: MeshNode.FullQueuePolicy, count: Int) async throws -> (
        statistics: MeshStatistics, peak: Int, received: [Int]
    ) {
        try await withMesh { mesh in
            let gate = Gate()
            let got = Collector<Int>()
            let receiver = try await mesh.node("slow") { $0.maximumInboxBytes = 64 * 1024 }
            try await receiver.listen("flood") { (_: String, message: Padded) in
                await gate.wait()
                got.append(message.n)
            }
            let sender = try await mesh.node("fast") {
                $0.maximumQueuedBytesPerPeer = Self.queueLimit
                $0.whenPeerQueueFull = policy
            }
            try await sender.waitForListener("flood", timeout: .seconds(5))
            let padding = String(repeating: "x", count: 1000)
            var peak = 0
            for n in 0..<count {
                try await sender.send("flood", Padded(n: n, pad: padding))
                if n % 256 == 0 { peak = max(peak, sender.router.queuedBytes(for: receiver.id)) }
            }
            peak = max(peak, sender.router.queuedBytes(for: receiver.id))
            let statistics = await sender.statistics
            gate.open()
            let delivered = count - statistics.messagesDropped
            let received: [Int]
            do {
                received = try await got.wait(for: delivered, seconds: 30)
            } catch {
                Issue.record("expected \(delivered) deliveries (\(count) sent, \(statistics.messagesDropped) dropped), got \(got.values.count); receiver: \(await receiver.statistics)")
                throw error
            }
            return (statistics, peak, received)
        }
    }

    @Test("drop newest: sends never wait, queued bytes stay under the limit, every drop is counted")
    func dropNewest() async throws {
        let count = 60_000
        let start = ContinuousClock.now
        let (statistics, peak, received) = try await flood(policy: .dropNewest, count: count)
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(statistics.messagesDropped > 0, "the flood must overflow the receiver's buffers")
        #expect(peak <= Self.queueLimit + 2048, "queued \(peak) bytes with a limit of \(Self.queueLimit)")
        #expect(received.count + statistics.messagesDropped == count)
        #expect(received == received.sorted(), "what arrives arrives in order")
        #expect(received.first == 0, "the oldest messages are the ones kept")
    }

    @Test("drop oldest: the receiver ends up with the newest messages")
    func dropOldest() async throws {
        let count = 60_000
        let (statistics, peak, received) = try await flood(policy: .dropOldest, count: count)
        #expect(statistics.messagesDropped > 0)
        #expect(peak <= Self.queueLimit + 2048, "queued \(peak) bytes with a limit of \(Self.queueLimit)")
        #expect(received.count + statistics.messagesDropped == count)
        #expect(received.last == count - 1, "the newest message must arrive")
        #expect(received == received.sorted())
    }

    @Test("wait: a send to a stuck receiver waits the deadline, then drops and counts the message")
    func waitThenDrop() async throws {
        try await withMesh { mesh in
            let gate = Gate()
            let receiver = try await mesh.node("slow") { $0.maximumInboxBytes = 64 * 1024 }
            try await receiver.listen("flood") { (_: String, _: Padded) in await gate.wait() }
            let patience = Duration.milliseconds(100)
            let sender = try await mesh.node("fast") {
                $0.maximumQueuedBytesPerPeer = Self.queueLimit
                $0.whenPeerQueueFull = .wait(patience)
            }
            try await sender.waitForListener("flood", timeout: .seconds(5))
            let padding = String(repeating: "x", count: 1000)
            // Fill every buffer on the way (the receiver's inbox, both kernels', the sender's queue).
            var sent = 0
            while await sender.statistics.messagesDropped == 0, sent < 200_000 {
                try await sender.send("flood", Padded(n: sent, pad: padding))
                sent += 1
            }
            #expect(await sender.statistics.messagesDropped == 1, "the first drop ends the filling loop")
            // Three more drops: each is a send that waited its full deadline first. (Sends in between
            // may find room the kernel freed; they queue without waiting.)
            let start = ContinuousClock.now
            var more = 0
            while await sender.statistics.messagesDropped < 4, more < 10_000 {
                try await sender.send("flood", Padded(n: sent + more, pad: padding))
                more += 1
            }
            let elapsed = ContinuousClock.now - start
            #expect(await sender.statistics.messagesDropped == 4)
            #expect(elapsed >= patience * 3, "each dropped send waited its deadline")
            #expect(elapsed < patience * 3 + .seconds(3))
            #expect(sender.router.queuedBytes(for: receiver.id) <= Self.queueLimit + 2048)
            gate.open()
        }
    }

    @Test("drop reports: one line a second per receiver, with the counts in between")
    func dropReportsAreRateLimited() {
        var report = DropReport()
        let start = ContinuousClock.now
        #expect(report.add(1, bytes: 10, key: "peer", reason: "full", now: start) != nil)
        #expect(report.add(1, bytes: 10, key: "peer", reason: "full", now: start + .milliseconds(10)) == nil)
        #expect(report.add(2, bytes: 20, key: "peer", reason: "full", now: start + .milliseconds(20)) == nil)
        #expect(report.add(1, bytes: 10, key: "other", reason: "full", now: start + .milliseconds(30)) != nil)
        #expect(report.flush(now: start + .milliseconds(500)).isEmpty)
        let lines = report.flush(now: start + .milliseconds(1100))
        #expect(lines == ["dropped 3 message(s) (30 bytes) for peer: full"])
        #expect(report.flush(now: start + .milliseconds(2500)).isEmpty)
    }
}
