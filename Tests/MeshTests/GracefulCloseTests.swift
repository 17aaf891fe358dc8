import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

#if canImport(Glibc)
import Glibc
#endif

/// `close()` as a graceful stop (issue #22): what arrived is handled within a bound, running
/// handlers finish, and a sender learns whether its receivers took what it sent (PROTOCOL §8.3).
@Suite("Graceful close", .serialized)
struct GracefulCloseTests {
    // MARK: Receiving side

    @Test("a slow listener with messages in its inbox gets every one of them on close, counted")
    func slowListenerDrains() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let gate = Gate()
            let handled = Collector<Int>()
            try await receiver.listen("slow") { (_: String, value: Int) in
                await gate.wait()
                try? await Task.sleep(for: .milliseconds(20))
                handled.append(value)
            }
            try await sender.waitForListener("slow")
            for value in 1...10 { try await sender.send("slow", value) }
            // All ten are in the receiver's inbox, the first one held in the listener.
            try await eventually("10 messages received", seconds: 10) { await receiver.statistics.messagesReceived == 10 }
            gate.open()
            let report = await receiver.close()
            // close returned: every message was handed to the listener, none later.
            #expect(handled.values == Array(1...10))
            #expect(report.isComplete, "\(report)")
            #expect(report.messagesUnhandled == 0)
        }
    }

    @Test("past the bound, what the listener did not finish is counted and logged, not dropped silently")
    func slowListenerPastTheBound() async throws {
        let log = LogCapture()
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver") { $0.logger = log.logger("receiver", level: .warning) }
            let sender = try await mesh.node("sender")
            let gate = Gate()
            let handled = Collector<Int>()
            try await receiver.listen("stuck") { (_: String, value: Int) in
                if value == 3 { await gate.wait() }  // the third never returns within the bound
                handled.append(value)
            }
            try await sender.waitForListener("stuck")
            for value in 1...7 { try await sender.send("stuck", value) }
            try await eventually("7 messages received", seconds: 10) { await receiver.statistics.messagesReceived == 7 }
            let report = await receiver.close(within: .milliseconds(300))
            // 1 and 2 were handled; 3 is still in its listener; 4 to 7 never got there.
            #expect(report.messagesUnhandled == 5, "\(report)")
            #expect(!report.isComplete)
            #expect(handled.values == [1, 2])
            let lines = log.lines(level: .warning, label: "receiver")
            #expect(lines.contains { $0.contains("5 received message(s) were not handled by a listener") }, "\(lines)")
            gate.open()
            // Given up on: the listener's call returns, and nothing after it is delivered.
            try await eventually("the third listener call to return", seconds: 10) { handled.values.count == 3 }
            try await Task.sleep(for: .milliseconds(100))  // room for a wrong fourth delivery to show
            #expect(handled.values == [1, 2, 3])
        }
    }

    @Test("a running service handler finishes and its reply reaches the caller when the provider closes")
    func runningHandlerFinishes() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("provider")
            let caller = try await mesh.node("caller")
            let started = Gate()
            let release = Gate()
            try await provider.serve("double") { (value: Int) -> Int in
                started.open()
                await release.wait()
                return value * 2
            }
            try await caller.waitForService("double")
            let call = Task { try await caller.call("double", 21, as: Int.self, timeout: .seconds(20)) }
            try await withDeadline(10) { await started.wait() }
            let closing = Task { await provider.close() }
            // The provider is closing while its handler runs; let the handler finish now.
            try await eventually("the provider to start closing", seconds: 10) { await provider.isClosed }
            release.open()
            let answer = try await call.value
            #expect(answer == 42)
            let report = await closing.value
            #expect(report.requestsUnfinished == 0, "\(report)")
            #expect(report.isComplete, "\(report)")
        }
    }

    // MARK: Sending side

    @Test("a sender that sends N and closes at once: the receiver has all N when close returns, all confirmed")
    func senderClosesAtOnce() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let got = Collector<Int>()
            try await receiver.listen("burst") { (_: String, value: Int) in got.append(value) }
            let sender = try await mesh.node("sender")
            try await sender.waitForListener("burst")
            let count = 500
            for value in 0..<count { try await sender.send("burst", value) }
            let report = await sender.close()
            #expect(report.isComplete, "\(report)")
            #expect(report.messagesConfirmed == count)
            #expect(report.messagesUnconfirmed == 0)
            // Confirmed means in the receiver's inbox: counted there before the answer left.
            #expect(await receiver.statistics.messagesReceived == count)
            let values = try await got.wait(for: count, seconds: 20)
            #expect(values == Array(0..<count))
        }
    }

    @Test("a receiver that takes messages but never confirms: the sender's close says so, within the bound")
    func silentReceiver() async throws {
        let log = LogCapture()
        try await withMesh { mesh in
            let silent = try await SilentReceiver.start(mesh, topic: "void")
            defer { silent.stop() }
            let sender = try await mesh.node("sender") { $0.logger = log.logger("sender", level: .info) }
            try await sender.waitForListener("void")
            for value in 1...3 { try await sender.send("void", value) }
            let report = await sender.close(within: .milliseconds(500))
            #expect(report.messagesUnconfirmed == 3, "\(report)")
            #expect(report.messagesConfirmed == 0)
            #expect(report.unconfirmedReceivers == ["silent (\(silent.id)) did not confirm 3"], "\(report)")
            #expect(!report.isComplete)
            #expect(!report.description.contains("\n"))
            // It did take them: written is not confirmed.
            try await eventually("the silent receiver to read 3 messages", seconds: 10) { silent.messages == 3 }
            let lines = log.lines(level: .info, label: "sender")
            #expect(lines.contains { $0.contains("3 of 3 message(s) sent were not confirmed") }, "\(lines)")
            #expect(log.lines(level: .warning, label: "sender") == [], "the report says it once, as info")
            do {
                try await sender.closeConfirmed()  // the second close returns the first one's report
                Issue.record("closeConfirmed did not throw")
            } catch let report as MeshNode.CloseReport {
                #expect(report.messagesUnconfirmed == 3)
            }
        }
    }

    @Test("mesh topic send exits 1 with one line when its receiver does not confirm, 0 when it does")
    func topicSendConfirmation() async throws {
        try await withMesh { mesh in
            let silent = try await SilentReceiver.start(mesh, topic: "void")
            defer { silent.stop() }
            let environment = ["MESH_AUTHKEY": "", "MESH_COORDINATOR": mesh.address]
            let refused = try await MeshCLI.run(["topic", "send", "void", "{\"n\":1}"], environment: environment, seconds: 30)
            #expect(refused.failureProblem(code: 1, mentioning: "1 of 1 message(s) on void were not confirmed") == nil, "\(refused)")
            #expect(refused.errors.contains("silent (\(silent.id)) did not confirm 1"), "\(refused)")

            let receiver = try await mesh.node("receiver")
            let got = Collector<[String: Int]>()
            try await receiver.listen("real") { (_: String, value: [String: Int]) in got.append(value) }
            let sent = try await MeshCLI.run(["topic", "send", "real", "{\"n\":2}", "--count", "3"], environment: environment, seconds: 30)
            #expect(sent.code == 0, "\(sent)")
            #expect(sent.trimmed == "sent 3 message(s) on real", "\(sent)")
            #expect(try await got.wait(for: 3).count == 3)
        }
    }

    @Test("a sender still sending when its receiver stops: every message is handled or counted dropped")
    func receiverStopsUnderASender() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let handled = Mutex(0)
            try await receiver.listen("stream") { (_: String, _: Int) in handled.withLock { $0 += 1 } }
            let sender = try await mesh.node("sender")
            try await sender.waitForListener("stream")
            let sending = Task {
                var value = 0
                while !Task.isCancelled, (try? await sender.send("stream", value)) != nil {
                    value += 1
                    if value.isMultiple(of: 64) { await Task.yield() }
                }
            }
            try await eventually("1,000 messages handled", seconds: 20) { handled.withLock { $0 } >= 1000 }
            let report = await receiver.close()
            let receiverID = receiver.id
            try await eventually("the sender to see the receiver leave", seconds: 10) {
                await sender.currentTopology.nodes[receiverID] == nil
            }
            sending.cancel()
            await sending.value
            // The receiver confirms what it took when the sender closes its connection to it;
            // the rest (refused while it was closing, or never read) is counted as dropped.
            do {
                try await eventually("every message sent to be handled or counted dropped", seconds: 10) {
                    let statistics = await sender.statistics
                    return handled.withLock { $0 } + statistics.messagesDropped == statistics.messagesSent
                }
            } catch {
                Issue.record("\(await sender.statistics); handled \(handled.withLock { $0 }); \(report)")
                throw error
            }
            let statistics = await sender.statistics
            #expect(statistics.messagesDropped >= report.messagesUnhandled, "\(statistics) \(report)")
            print("receiver stopped under a sender: \(statistics.messagesSent) sent, \(handled.withLock { $0 }) handled, \(statistics.messagesDropped) counted dropped; the receiver refused \(report.messagesUnhandled)")
        }
    }

    @Test("SIGTERM: a worker process hands every job it was confirmed to hold to its listener before it exits")
    func sigtermDrainsAWorker() async throws {
        try await withMesh { mesh in
            let worker = try ChildProcess(
                "demo-worker", environment: ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": "", "MESH_LOG_LEVEL": "warning"])
            defer { worker.terminate() }
            try await worker.waitForOutput("ready")
            let dispatcher = try await mesh.node("dispatcher")
            try await dispatcher.waitForListener("jobs")
            let count = 3000
            for job in 1...count { try await dispatcher.send("jobs", ["job": job]) }
            let report = await dispatcher.close()
            #expect(report.messagesConfirmed == count, "\(report)")
            // Confirmed: all are in the worker's inbox, most not printed yet. Stop it now.
            worker.signal(SIGTERM)
            #expect(try await worker.waitForExit(seconds: 30) == 0, "\(worker.output)")
            #expect(occurrences(of: " got job ", in: worker.output) == count)
        }
    }

    // MARK: Attacks on the closing frames

    @Test("closing frames that are malformed, early or unasked-for close that one connection; the node goes on")
    func hostileClosingFrames() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let got = Collector<Int>()
            try await receiver.listen("t") { (_: String, value: Int) in got.append(value) }
            let port = try #require(await receiver.listenAddress?.port)
            let prober = try ControlClient.connect(to: mesh.address)
            defer { prober.close() }
            try await prober.register(name: "prober")
            prober.keepAlive()
            try await receiver.waitForNodes(named: "prober", timeout: .seconds(10))  // partial view: fetches it
            try await eventually("the receiver to know the prober", seconds: 10) {
                await receiver.peerDirectory.node(prober.id) != nil
            }
            let hello = HostileInput.frame(kind: 2, body: Array(#"{"id":"\#(prober.id)","name":"prober"}"#.utf8))
            let one = HostileInput.messageFrame(topic: "t", payload: Array("1".utf8))

            let cases: [(String, [UInt8])] = [
                ("closing before the peer hello", ClosingFrame.closing(messages: 0)),
                ("a 3-byte count", hello + HostileInput.frame(kind: 7, body: [0, 0, 1])),
                ("a 9-byte count", hello + HostileInput.frame(kind: 7, body: [UInt8](repeating: 0, count: 9))),
                ("a count above Int.max", hello + HostileInput.frame(kind: 7, body: [UInt8](repeating: 0xFF, count: 8))),
                ("a confirmation sent to the receiver", hello + ClosingFrame.confirmed(messages: 1)),
            ]
            for (what, bytes) in cases {
                let probe = try FrameProbe.dial(port: port, as: prober.id)
                probe.connection.send(bytes)
                try await eventually("the receiver to close the connection with \(what)", seconds: 10) { probe.isClosed }
                #expect(probe.frames.values.isEmpty, "\(what): \(probe.frames.values)")
            }

            // The honest way, on a fresh connection: two messages, then closing; confirmed with 2,
            // and the messages arrive. A closing frame that announces more than was sent is
            // answered with what was taken.
            let probe = try FrameProbe.dial(port: port, as: prober.id)
            probe.connection.send(hello + one + one + ClosingFrame.closing(messages: 5))
            let answers = try await probe.frames.wait(for: 1)
            #expect(answers == [Frame(kind: FrameKind.confirmed.rawValue, body: [0, 0, 0, 0, 0, 0, 0, 2])])
            #expect(try await got.wait(for: 2) == [1, 1])
            probe.connection.close()
        }
    }

    // MARK: The pure parts

    @Test("a closing frame goes into a full queue, after everything; nothing into a closed one")
    func closingFrameIgnoresTheLimit() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        let message = OutboundQueueTests.frame(size: 90)
        #expect(OutboundQueueTests.append(&queue, message).result == .queued)
        #expect(OutboundQueueTests.append(&queue, message).result == .full)
        let closing = ClosingFrame.closing(messages: 1)
        #expect(closing.withUnsafeBytes { queue.appendIgnoringLimit($0) }.result == .queued)
        #expect(OutboundQueueTests.takeAll(&queue) == message + closing)
        _ = queue.close()
        #expect(closing.withUnsafeBytes { queue.appendIgnoringLimit($0) }.result == .closed)
    }

    @Test("the inbox after close: refuses and counts pushes, delivers what it holds, and counts what it gives up")
    func inboxDrainAndAbandon() async {
        let inbox = Inbox(highWater: 1 << 20)
        let sender = MeshPeer(id: "0000000000000001", name: "s")
        let message = InboundMessage(topic: "t", encoding: .raw, payload: Data([1]))
        #expect(inbox.push(InboundBatch(sender: sender, messages: [message, message, message]), bytes: 3, from: nil))
        inbox.close()
        #expect(!inbox.push(InboundBatch(sender: sender, messages: [message, message]), bytes: 2, from: nil))
        #expect(inbox.refusedCount == 2)
        // The delivery task still gets what was queued before the close, then the end.
        let batches = await inbox.next()
        #expect(batches.map(\.messages.count) == [3])
        inbox.countDelivered()
        #expect(!inbox.isAbandoned)
        // Two were not handled when the bound passed.
        #expect(inbox.abandon() == 2)
        #expect(inbox.isAbandoned)
        #expect(await inbox.next().isEmpty)
        // The drain wait ends when the delivery task says so, or at its deadline.
        #expect(!(await inbox.waitUntilDelivered(deadline: .now + .milliseconds(20), loop: .shared)))
        inbox.deliveryEnded()
        #expect(await inbox.waitUntilDelivered(deadline: .now + .seconds(30), loop: .shared))
    }

    @Test("the closing frames' bodies: 8 bytes, big-endian, both ways")
    func closingFrameBodies() throws {
        let frame = ClosingFrame.closing(messages: 0x0102_0304_0506)
        #expect(frame == [0, 0, 0, 9, 7, 0, 0, 1, 2, 3, 4, 5, 6])
        #expect(ClosingFrame.confirmed(messages: 3) == [0, 0, 0, 9, 8, 0, 0, 0, 0, 0, 0, 0, 3])
        let body = Array(frame[5...])
        #expect(try body.withUnsafeBytes { try ClosingFrame.count($0) } == 0x0102_0304_0506)
        #expect(throws: FrameError.self) { try [UInt8](repeating: 0, count: 7).withUnsafeBytes { try ClosingFrame.count($0) } }
        #expect(throws: FrameError.self) { try [UInt8](repeating: 0x80, count: 8).withUnsafeBytes { try ClosingFrame.count($0) } }
    }
}

/// A node's peer port that reads messages and never answers a closing frame: an older node, or
/// one that hangs. It registers with the coordinator by hand (a `ControlClient`), so senders
/// route to it.
final class SilentReceiver: ConnectionDelegate {
    private let count = Mutex(0)
    private let accepted = Mutex<[Connection]>([])
    private let parts = Mutex<(listener: Listener?, client: ControlClient?)>((nil, nil))

    var messages: Int { count.withLock { $0 } }
    var id: String { parts.withLock { $0.client!.id } }

    static func start(_ mesh: RunningCoordinator, topic: String) async throws -> SilentReceiver {
        let silent = SilentReceiver()
        let client = try ControlClient.connect(to: mesh.address)
        let options = Connection.Options(
            handshake: .accept(served: [.data: .open], identity: client.identity, staticKey: nil), maximumFrameLength: 1 << 20,
            maximumPendingBytes: 1 << 20)
        let listener = try Listener(binding: .ipv4(host: "127.0.0.1", port: 0), loop: .shared) { socket, peer in
            let connection = Connection.accept(socket, from: peer, options: options, delegate: silent, loop: .shared)
            silent.accepted.withLock { $0.append(connection) }
        }
        silent.parts.withLock { $0 = (listener, client) }
        try await client.register(name: "silent", topics: [topic], port: listener.address.port)
        client.keepAlive()
        return silent
    }

    func stop() {
        let (listener, client) = parts.withLock { $0 }
        listener?.close()
        client?.close()
        for connection in accepted.withLock({ $0 }) { connection.close() }
    }

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            if header.kind == FrameKind.message.rawValue { count.withLock { $0 += 1 } }
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {}
}

/// A data connection dialled by hand to a node's peer port, keeping every frame it gets back.
final class FrameProbe: ConnectionDelegate {
    let frames = Collector<Frame>()
    private let closed = Mutex(false)
    private let holder = Mutex<Connection?>(nil)

    var connection: Connection { holder.withLock { $0! } }
    var isClosed: Bool { closed.withLock { $0 } }

    /// Dials 127.0.0.1:`port` as the node `id` (which must be registered for a peer hello to pass).
    static func dial(port: UInt16, as id: String) throws -> FrameProbe {
        let probe = FrameProbe()
        let options = Connection.Options(
            handshake: .connect(purpose: .data, key: nil, identity: NodeIdentity(claiming: id), expectedPeerID: nil, expectedPeerKey: nil),
            maximumFrameLength: 1 << 20, maximumPendingBytes: 1 << 20)
        let connection = try Connection.connect(
            to: .ipv4(host: "127.0.0.1", port: port), options: options, delegate: probe, loop: .shared)
        probe.holder.withLock { $0 = connection }
        return probe
    }

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            frames.append(Frame(kind: header.kind, body: decoder.withBody(header) { Array($0) }))
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        closed.withLock { $0 = true }
    }
}
