import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// `listenBatches`: one call per read with the messages of one topic it brought, in order.
@Suite("Batch listeners")
struct BatchListenerTests {
    // MARK: The delivery task, fed reads directly (no sockets, no timing)

    static let sender = MeshPeer(id: "s", name: "sender")

    static func message(_ topic: String, _ value: Int) -> InboundMessage {
        InboundMessage(topic: topic, encoding: .raw, payload: Data(String(value).utf8))
    }

    /// Pushes `reads` into an inbox, closes it, and runs the delivery task until it has delivered them all.
    static func deliver(_ reads: [[InboundMessage]], to listeners: ListenerTable, logger: MeshLogger = .silent) async throws
        -> StatisticsCounter
    {
        let inbox = Inbox(highWater: 64 << 20)
        for read in reads {
            inbox.push(InboundBatch(sender: sender, messages: read), bytes: read.count * 8, from: nil)
        }
        inbox.close()
        let counter = StatisticsCounter()
        try await withDeadline(30) {
            await MeshNode.deliver(inbox: inbox, listeners: listeners, logger: logger, counter: counter)
        }
        return counter
    }

    /// An entry as `listenBatches` builds it, recording each call's values (or `listen`'s, one each).
    static func entry(
        _ id: UInt64, batch: Bool, into log: Collector<String>, label: String
    ) -> ListenerTable.Entry {
        let decode: @Sendable (InboundMessage) throws -> Int = { message in
            guard let value = Int(String(decoding: message.payload, as: UTF8.self)) else { throw CocoaError(.coderReadCorrupt) }
            return value
        }
        let handleBatch: ListenerTable.Entry.BatchHandler = { messages, _, failed in
            var values: [Int] = []
            for message in messages {
                do { values.append(try decode(message)) } catch { failed(message, error) }
            }
            if !values.isEmpty { log.append("\(label) " + values.map(String.init).joined(separator: ",")) }
        }
        return ListenerTable.Entry(
            id: id, type: ObjectIdentifier(Int.self),
            handle: { message, _ in log.append("\(label) \(try decode(message))") },
            decode: { try decode($0) },
            deliver: { _, _, value in log.append("\(label) \(value as! Int)") },
            finish: {},
            handleBatch: batch ? handleBatch : nil)
    }

    @Test("one call per run of the topic in one read; a message of another topic in between splits it; reads never merge")
    func runsWithinReads() async throws {
        let log = Collector<String>()
        let listeners = ListenerTable()
        listeners.add(Self.entry(1, batch: true, into: log, label: "A"), topic: "a")
        listeners.add(Self.entry(2, batch: false, into: log, label: "b"), topic: "b")
        let reads = [
            [Self.message("a", 1), Self.message("a", 2), Self.message("b", 3), Self.message("a", 4), Self.message("a", 5)],
            [Self.message("a", 6)],
            [Self.message("a", 7), Self.message("a", 8), Self.message("a", 9)],
            [Self.message("b", 10)],
        ]
        _ = try await Self.deliver(reads, to: listeners)
        #expect(log.values == ["A 1,2", "b 3", "A 4,5", "A 6", "A 7,8,9", "b 10"])
    }

    @Test("a read delivered on the loop, alone: the same runs")
    func oneReadOnTheLoop() async throws {
        let log = Collector<String>()
        let listeners = ListenerTable()
        listeners.add(Self.entry(1, batch: true, into: log, label: "A"), topic: "a")
        listeners.add(Self.entry(2, batch: false, into: log, label: "b"), topic: "b")
        let read = [Self.message("a", 1), Self.message("a", 2), Self.message("b", 3), Self.message("a", 4)]
        _ = try await Self.deliver([read], to: listeners)
        #expect(log.values == ["A 1,2", "b 3", "A 4"])
    }

    @Test("a slow batch call sends the rest of the read to the pool without handing its run over twice")
    func slowBatchCallIsNotRepeated() async throws {
        let log = Collector<String>()
        let listeners = ListenerTable()
        // Slower than ``MeshNode/slowListener``: the delivery task moves what is left of the read off the loop.
        let slow: ListenerTable.Entry.BatchHandler = { messages, _, _ in
            try? await Task.sleep(for: MeshNode.slowListener * 2)
            log.append("A " + messages.map { String(decoding: $0.payload, as: UTF8.self) }.joined(separator: ","))
        }
        listeners.add(
            ListenerTable.Entry(
                id: 1, type: ObjectIdentifier(Int.self), handle: { _, _ in }, decode: { $0 }, deliver: { _, _, _ in },
                finish: {}, handleBatch: slow),
            topic: "a")
        listeners.add(Self.entry(2, batch: false, into: log, label: "b"), topic: "b")
        let read = [Self.message("a", 1), Self.message("a", 2), Self.message("a", 3), Self.message("b", 4), Self.message("a", 5)]
        _ = try await Self.deliver([read], to: listeners)
        #expect(log.values == ["A 1,2,3", "b 4", "A 5"])
    }

    @Test("beside a listen on the same topic: the batch call first, then that listener's calls, each in order")
    func besideSingleListeners() async throws {
        let log = Collector<String>()
        let listeners = ListenerTable()
        listeners.add(Self.entry(1, batch: false, into: log, label: "one"), topic: "a")
        listeners.add(Self.entry(2, batch: true, into: log, label: "all"), topic: "a")
        listeners.add(Self.entry(3, batch: true, into: log, label: "all2"), topic: "a")
        _ = try await Self.deliver([[Self.message("a", 1), Self.message("a", 2)], [Self.message("a", 3)]], to: listeners)
        #expect(log.values == ["all 1,2", "all2 1,2", "one 1", "one 2", "all 3", "all2 3", "one 3"])
    }

    @Test("a message that does not decode is counted, logged with topic and sender, and left out of its batch")
    func undecodable() async throws {
        let log = Collector<String>()
        let listeners = ListenerTable()
        listeners.add(Self.entry(1, batch: true, into: log, label: "A"), topic: "a")
        let bad = InboundMessage(topic: "a", encoding: .raw, payload: Data("x\n\u{1B}[31m".utf8))
        let capture = LogCapture()
        let counter = try await Self.deliver(
            [[Self.message("a", 1), bad, Self.message("a", 2)], [bad], [Self.message("a", 3)]], to: listeners,
            logger: capture.logger("receiver", level: .warning))
        #expect(log.values == ["A 1,2", "A 3"], "an all-bad read makes no call")
        #expect(counter.current.decodeFailures == 2)
        let warnings = capture.lines(level: .warning, label: "receiver")
        #expect(warnings.count == 2)
        #expect(warnings.allSatisfy { $0.contains("on \"a\" from sender (s)") && !$0.contains("\u{1B}") })
    }

    // MARK: Through the mesh

    @Test("a burst arrives whole and in order, in fewer calls than messages")
    func burstInOrder() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let calls = Mutex<[[Int]]>([])
            let count = 20_000
            let got = Collector<Int>()
            try await receiver.listenBatches("seq", as: Int.self) { topic, values in
                #expect(topic == "seq")
                #expect(!values.isEmpty)
                calls.withLock { $0.append(values) }
                got.append(values.count)
            }
            try await sender.waitForListener("seq", timeout: .seconds(10))
            for value in 0..<count { try await sender.send("seq", value) }
            try await eventually("every message delivered", seconds: 60) { got.values.reduce(0, +) >= count }
            let all = calls.withLock { $0 }
            #expect(all.flatMap { $0 } == Array(0..<count))
            #expect(all.count < count, "a burst of \(count) came in \(all.count) calls")
            #expect(await receiver.statistics.decodeFailures == 0)
        }
    }

    @Test("across topics from one sender, deliveries keep their arrival order; a bad message is skipped and counted")
    func interleavedTopicsAndBadMessages() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let order = Collector<Int>()
            try await receiver.listenBatches("a", as: Int.self) { _, values in
                for value in values { order.append(value) }
            }
            try await receiver.listen("b") { (_: String, value: Int) in order.append(value) }
            try await sender.waitForListener("a", timeout: .seconds(10))
            try await sender.waitForListener("b", timeout: .seconds(10))
            let count = 3_000
            for value in 0..<count {
                if value == 100 { try await sender.send("a", "not a number") }
                try await sender.send(value % 3 == 2 ? "b" : "a", value)
            }
            #expect(try await order.wait(for: count, seconds: 60) == Array(0..<count))
            try await eventually("the bad message counted") { await receiver.statistics.decodeFailures == 1 }
        }
    }

    @Test("after stopListening, no more calls")
    func stops() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let got = Collector<Int>()
            try await receiver.listenBatches("a", as: Int.self) { _, values in for value in values { got.append(value) } }
            try await receiver.listen("marker") { (_: String, value: Int) in got.append(value) }
            try await sender.waitForListener("a", timeout: .seconds(10))
            try await sender.send("a", 1)
            #expect(try await got.wait(for: 1) == [1])
            try await receiver.stopListening("a")
            try await eventually("the coordinator to drop the listen") {
                await sender.currentTopology.listeners(of: "a").isEmpty
            }
            try await sender.waitForListener("marker", timeout: .seconds(10))
            try await sender.send("a", 2)
            try await sender.send("marker", 3)
            #expect(try await got.wait(for: 2) == [1, 3])
        }
    }
}
