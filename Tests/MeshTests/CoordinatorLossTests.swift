import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Lets a streaming task and the test share a count and a stop flag.
final class StreamControl: Sendable {
    private let state = Mutex((sent: 0, stopped: false))

    var sent: Int { state.withLock { $0.sent } }
    var isStopped: Bool { state.withLock { $0.stopped } }
    func didSend(_ count: Int) { state.withLock { $0.sent = count } }
    func stop() { state.withLock { $0.stopped = true } }
}

/// `[3, 4, 5, 9]` as "3...5, 9", for failure messages.
func describeRuns(_ sorted: [Int]) -> String {
    var runs: [String] = []
    var index = 0
    while index < sorted.count {
        var end = index
        while end + 1 < sorted.count, sorted[end + 1] == sorted[end] + 1 { end += 1 }
        runs.append(end == index ? "\(sorted[index])" : "\(sorted[index])...\(sorted[end])")
        index = end + 1
    }
    return runs.joined(separator: ", ")
}

extension ResilienceTests {
    /// The coordinator is only a directory: losing it must not stop traffic, and a fresh one
    /// must learn the whole mesh again from the nodes.
    @Suite("Coordinator loss", .serialized)
    struct CoordinatorLossTests {
        @Test("a stream keeps flowing while the coordinator is killed, and a fresh coordinator has the whole topology within 2 s")
        func streamSurvivesCoordinatorRestart() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let first = try #require(coordinator.process)

            let logs = LogCapture()
            func configuration(_ name: String) -> MeshNode.Configuration {
                coordinator.configuration(name, logger: logs.logger(name))
            }
            let receiver = try await buildMeshNode(name: "receiver", configuration: configuration("receiver"))
            let got = Collector<Int>()
            try await receiver.listen("stream") { (_: String, n: Int) in got.append(n) }
            let sender = try await buildMeshNode(name: "sender", configuration: configuration("sender"))
            try await sender.waitForListener("stream", timeout: .seconds(5))

            let control = StreamControl()
            let streamer = Task {
                var n = 0
                while !control.isStopped {
                    try await sender.send("stream", n)
                    n += 1
                    control.didSend(n)
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            defer { streamer.cancel() }
            _ = try await got.wait(for: 100, seconds: 10)

            // Kill the coordinator mid-stream.
            first.signal(SIGKILL)
            _ = try await first.waitForExit(seconds: 5)
            let atKill = got.values.count
            try await eventually("both nodes to notice the coordinator is gone", seconds: 5) {
                let senderConnected = await sender.isConnectedToCoordinator
                let receiverConnected = await receiver.isConnectedToCoordinator
                return !senderConnected && !receiverConnected
            }
            try await Task.sleep(for: .milliseconds(1500))
            let duringOutage = got.values
            print("coordinator down: \(duringOutage.count - atKill) messages arrived during 1.5 s without a coordinator")
            #expect(duringOutage.count >= atKill + 100, "the stream stalled while the coordinator was down")
            #expect(duringOutage.elementsEqual(0..<duringOutage.count), "messages missing, duplicated or reordered while the coordinator was down")
            #expect(await sender.currentTopology.nodes.count == 2, "the sender forgot its last topology")
            #expect(await receiver.currentTopology.nodes.count == 2, "the receiver forgot its last topology")

            // A fresh coordinator on the same address.
            let second = try await coordinator.start()
            let restartedAt = ContinuousClock.now
            // The observer holds every record (the full view), so it sees what the new coordinator holds.
            var observing = configuration("observer")
            observing.topologyView = .full
            let observer = try await buildMeshNode(name: "observer", configuration: observing)
            let senderID = sender.id
            let receiverID = receiver.id
            try await eventually("the new coordinator to hold both nodes with their listens", seconds: 5) {
                let nodes = await observer.currentTopology.nodes
                return nodes[receiverID]?.topics == ["stream"] && nodes[senderID] != nil
            }
            let recovery = restartedAt.duration(to: .now)
            print("coordinator restart: topology whole again \(secondsText(recovery)) after the new coordinator listened")
            #expect(recovery < .seconds(2), "topology took \(secondsText(recovery)) to recover (limit 2 s)")
            let restored = await observer.currentTopology.nodes
            #expect(restored[receiverID]?.port == (await receiver.listenAddress)?.port)
            #expect(restored[senderID]?.port == (await sender.listenAddress)?.port)

            // Let the stream run on with the new coordinator, then stop and count.
            try await Task.sleep(for: .milliseconds(500))
            control.stop()
            _ = await streamer.result
            let sent = control.sent
            _ = try? await got.wait(for: sent, seconds: 5)
            let all = got.values
            let missing = Set(0..<sent).subtracting(all).sorted()
            #expect(all.count == sent, "received \(all.count) of \(sent); missing \(missing.count): \(describeRuns(missing))")
            #expect(all.elementsEqual(0..<sent), "messages missing, duplicated or reordered across the coordinator restart")
            let senderStats = await sender.statistics
            print("stream: sent \(sent), received \(all.count), unrouted \(senderStats.messagesUnrouted), dropped \(senderStats.messagesDropped)")
            #expect(senderStats.messagesUnrouted == 0, "messages sent while the sender had re-registered but the receiver had not were unrouted")
            #expect(senderStats.messagesDropped == 0)
            #expect(senderStats.coordinatorReconnects == 1)
            #expect(await receiver.statistics.coordinatorReconnects == 1)

            // Each node said once, at warning level, that the coordinator was lost; the retries
            // in between stay quiet.
            for name in ["sender", "receiver"] {
                let warnings = logs.lines(level: .warning, label: name).filter { $0.contains("coordinator") }
                #expect(warnings.count == 1, "\(name) logged the coordinator loss \(warnings.count) times: \(warnings)")
            }
            #expect(logs.lines(level: .error, label: "sender").isEmpty, "\(logs.lines(level: .error, label: "sender"))")

            await observer.close()
            await sender.close()
            await receiver.close()
            second.signal(SIGTERM)
            #expect(try await second.waitForExit(seconds: 5) == 0)
        }

        @Test("a receiver that re-registers after the sender still gets every message (no unrouted gap while the fresh coordinator fills up)")
        func lateReregistrationLosesNothing() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let address = coordinator.address
            let first = try #require(coordinator.process)
            let processes = ProcessBag()
            defer { processes.terminateAll() }
            let environment = ["MESH_COORDINATOR": address, "MESH_AUTHKEY": ""]
            let receiver = try processes.start("demo-receiver", environment: environment)
            defer { receiver.signal(SIGCONT) }
            try await receiver.waitForOutput("receiver listening on some-topic")
            let sender = try await buildMeshNode(
                name: "sender",
                configuration: MeshNode.Configuration(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: .silent))
            try await sender.waitForListener("some-topic", timeout: .seconds(5))
            @Sendable func received() -> [Int] {
                receiver.output.split(separator: "\n").compactMap { line -> Int? in
                    guard let range = line.range(of: #"data=["n": ""#) else { return nil }
                    return Int(line[range.upperBound...].prefix { $0.isNumber })
                }
            }
            let control = StreamControl()
            let streamer = Task {
                var n = 0
                while !control.isStopped {
                    try await sender.send("some-topic", ["n": "\(n)"])
                    n += 1
                    control.didSend(n)
                    try await Task.sleep(for: .milliseconds(5))
                }
            }
            defer { streamer.cancel() }
            try await eventually("the first 50 messages", seconds: 10) { received().count >= 50 }

            // The receiver is late to re-register: frozen while the coordinator is replaced, so
            // the sender registers with the fresh coordinator first. Its messages meanwhile wait
            // in the receiver's socket buffer.
            receiver.signal(SIGSTOP)
            first.signal(SIGKILL)
            _ = try await first.waitForExit(seconds: 5)
            let second = try await coordinator.start()
            try await eventually("the sender to register with the fresh coordinator", seconds: 3) {
                await sender.isConnectedToCoordinator
            }
            try await Task.sleep(for: .milliseconds(300))
            receiver.signal(SIGCONT)
            try await second.waitForOutput("node joined: receiver", seconds: 5)
            try await Task.sleep(for: .milliseconds(300))
            control.stop()
            _ = await streamer.result
            let sent = control.sent
            try? await eventually("all \(sent) messages", seconds: 5) { received().count >= sent }
            let got = received()
            let missing = Set(0..<sent).subtracting(got).sorted()
            let unrouted = await sender.statistics.messagesUnrouted
            print("late re-registration: sent \(sent), received \(got.count), unrouted \(unrouted), missing \(describeRuns(missing))")
            #expect(missing.isEmpty, "\(missing.count) messages lost while the receiver had not yet re-registered: \(describeRuns(missing))")
            #expect(unrouted == 0)
            await sender.close()
        }

        @Test("nodes started while the coordinator is down for longer keep retrying about once a second and register when it returns")
        func longOutageRetriesWithCappedBackoff() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let address = coordinator.address
            let first = try #require(coordinator.process)
            let logs = LogCapture()
            let node = try await buildMeshNode(
                name: "patient",
                configuration: MeshNode.Configuration(
                    coordinator: address, listenHost: "127.0.0.1", logger: logs.logger("patient", level: .debug)))
            try await node.listen("t") { (_: String, _: Int) in }
            first.signal(SIGKILL)
            _ = try await first.waitForExit(seconds: 5)
            // Long enough for the backoff to reach its 1 s cap.
            try await Task.sleep(for: .seconds(4))
            let second = try await coordinator.start()
            let back = try await timeUntil("the node to register again", seconds: 5) {
                await node.isConnectedToCoordinator
            }
            print("long outage: re-registered \(secondsText(back)) after the coordinator returned")
            #expect(back < .milliseconds(1500), "backoff is not capped at 1 s: took \(secondsText(back))")
            try await second.waitForOutput("node joined: patient (\(node.id))")
            let retries = logs.lines(level: .debug, label: "patient").filter { $0.contains("unreachable") }.count
            // 100, 200, 400, 800 ms, then 1 s: about 7 attempts in 4 s; far more means no backoff.
            #expect(retries >= 3 && retries <= 12, "\(retries) retries in a 4 s outage")
            let warnings = logs.lines(level: .warning, label: "patient").filter { $0.contains("coordinator") }
            #expect(warnings.count == 1, "\(warnings)")
            await node.close()
        }

        @Test("a node whose actor is starved for 4 s keeps its registration; a frozen (SIGSTOPped) coordinator is given up within 5 s, as a timeout")
        func starvedNodeStaysFrozenCoordinatorNoticed() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let process = try #require(coordinator.process)
            defer { process.signal(SIGCONT) }
            let logs = LogCapture()
            let node = try await buildMeshNode(
                name: "starved", configuration: coordinator.configuration("starved", logger: logs.logger("starved")))

            // Every thread of the cooperative pool blocked for 4 s: the node's actor cannot run. Its
            // event loop, a thread of its own, goes on reading and keeps its heartbeats going.
            let width = max(ProcessInfo.processInfo.activeProcessorCount, 1)
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<width { group.addTask { usleep(4_000_000) } }
            }
            try await Task.sleep(for: .milliseconds(1500))
            #expect(await node.isConnectedToCoordinator)
            #expect(await node.statistics.coordinatorReconnects == 0)
            #expect(logs.lines(level: .warning, label: "starved").isEmpty, "\(logs.lines(level: .warning, label: "starved"))")
            #expect(!process.output.contains("node left"), "the coordinator dropped the starved node: \(process.output)")

            // A frozen coordinator keeps its sockets open (the kernel still acknowledges): only its
            // silence gives it away. The node last heard it at most about 2 s before the freeze.
            process.signal(SIGSTOP)
            let noticed = try await timeUntil("the node to give up the frozen coordinator", seconds: 10) {
                await !node.isConnectedToCoordinator
            }
            print("frozen coordinator: given up \(secondsText(noticed)) after SIGSTOP (bound: 5 s)")
            #expect(noticed <= .milliseconds(5500), "took \(secondsText(noticed)); the bound is 5 s of silence")
            #expect(noticed >= .milliseconds(2500), "given up after only \(secondsText(noticed))")
            let warnings = logs.lines(level: .warning, label: "starved")
            #expect(warnings.count == 1, "\(warnings)")
            #expect(warnings.first?.contains("(timeout: nothing from the coordinator for ") == true, "\(warnings)")
            #expect(warnings.allSatisfy { !$0.contains("protocol violation") })

            process.signal(SIGCONT)
            try await eventually("the node to register again with the resumed coordinator", seconds: 10) {
                await node.isConnectedToCoordinator
            }
            await node.close()
        }

        @Test("pauses shorter than the timeout cost no re-registration: the coordinator frozen 4 s; coordinator and node frozen together 6 s (a stalled machine)")
        func pausesCostNothing() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let process = try #require(coordinator.process)
            let processes = ProcessBag()
            defer {
                process.signal(SIGCONT)
                processes.terminateAll()
            }
            let receiver = try processes.start("demo-receiver", environment: ["MESH_COORDINATOR": coordinator.address, "MESH_AUTHKEY": ""])
            defer { receiver.signal(SIGCONT) }
            try await receiver.waitForOutput("receiver listening on some-topic")
            let logs = LogCapture()
            let node = try await buildMeshNode(
                name: "patient", configuration: coordinator.configuration("patient", logger: logs.logger("patient")))

            // The coordinator alone stops for 4 s, right after its welcome: inside the node's 5 s
            // (past the 3 s the node used to allow).
            process.signal(SIGSTOP)
            try await Task.sleep(for: .seconds(4))
            process.signal(SIGCONT)
            try await Task.sleep(for: .milliseconds(1500))
            #expect(await node.isConnectedToCoordinator)
            #expect(await node.statistics.coordinatorReconnects == 0)
            #expect(logs.lines(level: .warning, label: "patient").isEmpty, "\(logs.lines(level: .warning, label: "patient"))")
            await node.close()

            // The receiver's process and the coordinator stop together for 6 s, as when the whole
            // machine stalls: each side's timers then run late, and neither counts that time
            // against the other.
            receiver.signal(SIGSTOP)
            process.signal(SIGSTOP)
            try await Task.sleep(for: .seconds(6))
            process.signal(SIGCONT)
            receiver.signal(SIGCONT)
            try await Task.sleep(for: .seconds(2))
            #expect(!receiver.output.contains("lost the coordinator"), "\(receiver.output)")
            #expect(occurrences(of: "node joined: receiver", in: process.output) == 1, "\(process.output)")
            #expect(!process.output.contains("node left: receiver"), "\(process.output)")
        }
    }
}
