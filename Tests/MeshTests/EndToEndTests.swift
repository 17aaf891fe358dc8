import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshTooling

/// A coordinator and several nodes in this process, over real sockets on 127.0.0.1.
@Suite("End to end, in one process")
struct EndToEndTests {
    /// Starts a pool of three nodes named "worker" listening on "jobs", each appending its id to
    /// `got` for every job, and returns a dispatcher that sees all three.
    static func workerPool(in mesh: RunningCoordinator, recordingInto got: Collector<String>) async throws -> MeshNode {
        for _ in 0..<3 {
            let worker = try await mesh.node("worker")
            let workerID = worker.id
            try await worker.listen("jobs") { (_: String, _: Int) in got.append(workerID) }
        }
        let dispatcher = try await mesh.node("dispatcher")
        try await dispatcher.waitForListener("jobs", count: 3, timeout: .seconds(5))
        return dispatcher
    }

    struct Pose: Codable, Sendable, Equatable {
        var x: Double
        var y: Double
        var label: String
    }

    @Test("a typed message reaches its listener, with its sender")
    func typedSendAndListen() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let got = Collector<MeshMessage<[String: String]>>()
            try await receiver.listen("greetings", as: [String: String].self) { got.append($0) }
            try await sender.waitForListener("greetings", timeout: .seconds(5))
            try await sender.send("greetings", ["hello": "world!"])
            let messages = try await got.wait(for: 1)
            #expect(messages[0].value == ["hello": "world!"])
            #expect(messages[0].topic == "greetings")
            #expect(messages[0].sender == MeshPeer(id: sender.id, name: "sender"))
        }
    }

    @Test("Codable structs, raw Data and [UInt8] arrive unchanged; raw bytes skip the codec")
    func payloadKinds() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let poses = Collector<Pose>()
            let blobs = Collector<Data>()
            let arrays = Collector<[UInt8]>()
            let jsonBytes = Collector<Data>()
            try await receiver.listen("pose") { (_: String, pose: Pose) in poses.append(pose) }
            try await receiver.listen("blob") { (_: String, data: Data) in blobs.append(data) }
            try await receiver.listen("array") { (_: String, bytes: [UInt8]) in arrays.append(bytes) }
            try await receiver.listen("json-as-data") { (_: String, data: Data) in jsonBytes.append(data) }
            for topic in ["pose", "blob", "array", "json-as-data"] {
                try await sender.waitForListener(topic, timeout: .seconds(5))
            }
            let everyByte = Data((0...255).map { UInt8($0) } + (0...255).reversed().map { UInt8($0) })
            try await sender.send("pose", Pose(x: 1.5, y: -2, label: "dock"))
            try await sender.send("blob", everyByte)
            try await sender.send("array", [UInt8](everyByte))
            try await sender.send("json-as-data", ["k": 1])
            #expect(try await poses.wait(for: 1) == [Pose(x: 1.5, y: -2, label: "dock")])
            // Raw bytes: byte for byte, not base64, not JSON.
            #expect(try await blobs.wait(for: 1) == [everyByte])
            #expect(try await arrays.wait(for: 1) == [[UInt8](everyByte)])
            // A Data listener sees a codec message as the codec's bytes.
            let json = try await jsonBytes.wait(for: 1)[0]
            #expect(String(decoding: json, as: UTF8.self) == #"{"k":1}"#)
        }
    }

    @Test("10,000 messages from one sender arrive complete and in order")
    func orderedStream() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let got = Collector<Int>()
            try await receiver.listen("count") { (_: String, n: Int) in got.append(n) }
            try await sender.waitForListener("count", timeout: .seconds(5))
            for n in 0..<10_000 { try await sender.send("count", n) }
            let values = try await got.wait(for: 10_000, seconds: 30)
            #expect(values == Array(0..<10_000))
            #expect(await sender.statistics.messagesSent == 10_000)
            #expect(await receiver.statistics.messagesReceived == 10_000)
        }
    }

    @Test("a worker pool of 3 shares 30 messages 10/10/10")
    func workerPoolRoundRobin() async throws {
        try await withMesh { mesh in
            let got = Collector<String>()
            let sender = try await Self.workerPool(in: mesh, recordingInto: got)
            for n in 0..<30 { try await sender.send("jobs", n) }
            let receivers = try await got.wait(for: 30)
            let counts = Dictionary(grouping: receivers, by: { $0 }).mapValues(\.count)
            #expect(counts.count == 3)
            #expect(counts.values.allSatisfy { $0 == 10 })
        }
    }

    @Test("a topology change elsewhere does not reset a pool's round-robin turn")
    func turnSurvivesTopologyChange() async throws {
        try await withMesh { mesh in
            let got = Collector<String>()
            let sender = try await Self.workerPool(in: mesh, recordingInto: got)
            for n in 0..<2 { try await sender.send("jobs", n) }
            _ = try await got.wait(for: 2)
            _ = try await mesh.node("bystander")  // a join: every node's routes are rebuilt
            try await sender.waitForNodes(named: "bystander", timeout: .seconds(5))
            try await sender.send("jobs", 2)
            let receivers = try await got.wait(for: 3)
            #expect(Set(receivers).count == 3, "the third job must go to the third worker, not back to the first")
        }
    }

    @Test("two groups listening to one topic each get every message")
    func twoGroups() async throws {
        try await withMesh { mesh in
            let loggers = Collector<Int>()
            let planners = Collector<Int>()
            let logger = try await mesh.node("logger")
            let plannerA = try await mesh.node("planner")
            let plannerB = try await mesh.node("planner")
            try await logger.listen("events") { (_: String, n: Int) in loggers.append(n) }
            try await plannerA.listen("events") { (_: String, n: Int) in planners.append(n) }
            try await plannerB.listen("events") { (_: String, n: Int) in planners.append(n) }
            let sender = try await mesh.node("source")
            try await sender.waitForListener("events", count: 3, timeout: .seconds(10))
            for n in 0..<20 { try await sender.send("events", n) }
            #expect(try await loggers.wait(for: 20) == Array(0..<20))
            #expect(try await planners.wait(for: 20).sorted() == Array(0..<20))
            try await Task.sleep(for: .milliseconds(100))
            #expect(planners.values.count == 20, "the planner group must get each message once")
            for node in [sender, logger, plannerA, plannerB] { await node.close() }
        }
    }

    @Test("broadcast gives every member of a group a copy")
    func broadcast() async throws {
        try await withMesh { mesh in
            let got = Collector<String>()
            var members: [MeshNode] = []
            for _ in 0..<3 {
                let member = try await mesh.node("display")
                let memberID = member.id
                try await member.listen("frame") { (_: String, _: Int) in got.append(memberID) }
                members.append(member)
            }
            let sender = try await mesh.node("camera", loadBalancing: .broadcast)
            try await sender.waitForListener("frame", count: 3, timeout: .seconds(10))
            for n in 0..<5 { try await sender.send("frame", n) }
            let receivers = try await got.wait(for: 15)
            #expect(Set(receivers) == Set(members.map(\.id)))
            await sender.close()
            for member in members { await member.close() }
        }
    }

    @Test("waitForListener times out with a clear error, and returns when a listener appears")
    func waitForListener() async throws {
        try await withMesh { mesh in
            let sender = try await mesh.node("sender")
            let start = ContinuousClock.now
            await #expect(throws: MeshError.timedOut(waitingFor: "a listener on \"nobody\"", seconds: 0.3)) {
                try await sender.waitForListener("nobody", timeout: .milliseconds(300))
            }
            #expect(ContinuousClock.now - start < .seconds(2))
            let waiting = Task { try await sender.waitForListener("later", timeout: .seconds(10)) }
            try await eventually("the wait to be registered") { await sender.pendingWaitCount == 1 }
            let receiver = try await mesh.node("receiver")
            try await receiver.listen("later") { (_: String, _: Int) in }
            try await withDeadline(5) { try await waiting.value }

            // Cancelling a wait ends it at once, not at its deadline.
            let cancelled = Task { try await sender.waitForListener("never", timeout: .seconds(60)) }
            try await eventually("the wait to be registered") { await sender.pendingWaitCount == 1 }
            cancelled.cancel()
            let cancelStart = ContinuousClock.now
            await #expect(throws: CancellationError.self) { try await withDeadline(5) { try await cancelled.value } }
            #expect(ContinuousClock.now - cancelStart < .seconds(2))
            #expect(await sender.pendingWaitCount == 0, "a cancelled wait leaves nothing behind")
        }
    }

    @Test("a node that leaves disappears from every other node's topology (full views: each holds every node)")
    func leaving() async throws {
        try await withMesh { mesh in
            let a = try await mesh.node("a") { $0.topologyView = .full }
            let b = try await mesh.node("b") { $0.topologyView = .full }
            let c = try await mesh.node("c")
            try await a.waitForNodes(named: "c", timeout: .seconds(5))
            #expect(await a.currentTopology.nodes[c.id]?.name == "c")
            await c.close()
            try await eventually("c to leave a's and b's topology") {
                let seenByA = await a.currentTopology.nodes[c.id]
                let seenByB = await b.currentTopology.nodes[c.id]
                return seenByA == nil && seenByB == nil
            }
            #expect(await mesh.coordinator.topology.nodes[c.id] == nil)
            #expect(await a.currentTopology.nodes.count == 2)
        }
    }

    @Test("the AsyncSequence form delivers in order and ends on stopListening")
    func messageSequence() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let stream = try await receiver.messages("pose", as: Pose.self)
            try await sender.waitForListener("pose", timeout: .seconds(5))
            for n in 0..<50 { try await sender.send("pose", Pose(x: Double(n), y: 0, label: "p\(n)")) }
            let labels = try await withDeadline(10) { () -> [String] in
                var labels: [String] = []
                for try await message in stream {
                    labels.append(message.value.label)
                    if labels.count == 50 { break }
                }
                return labels
            }
            #expect(labels == (0..<50).map { "p\($0)" })
            try await receiver.stopListening("pose")
            try await eventually("the coordinator to drop the listen") {
                await sender.currentTopology.listeners(of: "pose").isEmpty
            }
            try await sender.send("pose", Pose(x: 0, y: 0, label: "late"))
            #expect(await sender.statistics.messagesUnrouted == 1)
        }
    }

    @Test("a message that does not decode is counted and skipped; the next one still arrives")
    func undecodableMessage() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("receiver")
            let sender = try await mesh.node("sender")
            let got = Collector<Pose>()
            try await receiver.listen("pose") { (_: String, pose: Pose) in got.append(pose) }
            try await sender.waitForListener("pose", timeout: .seconds(5))
            try await sender.send("pose", ["not": "a pose"])
            try await sender.send("pose", Pose(x: 1, y: 2, label: "ok"))
            #expect(try await got.wait(for: 1) == [Pose(x: 1, y: 2, label: "ok")])
            #expect(await receiver.statistics.decodeFailures == 1)
        }
    }

    @Test("peers on the same host talk over a Unix socket, or TCP when configured so")
    func sameHostTransport() async throws {
        try await withMesh { mesh in
            for transport in [MeshNode.SameHostTransport.unixSocket, .tcp] {
                let receiver = try await mesh.node("receiver") { $0.sameHostTransport = transport }
                let sender = try await mesh.node("sender") { $0.sameHostTransport = transport }
                let got = Collector<String>()
                try await receiver.listen("local") { (_: String, text: String) in got.append(text) }
                try await sender.waitForListener("local", timeout: .seconds(5))
                try await sender.send("local", "hi")
                #expect(try await got.wait(for: 1) == ["hi"])
                let dialled = sender.router.dialledAddress(for: receiver.id)
                switch transport {
                case .unixSocket:
                    #expect(dialled == NodeRecord.unixAddress(for: receiver.id))
                    #expect(await receiver.currentTopology.nodes[receiver.id]?.local == MeshDefaults.localScope)
                case .tcp:
                    #expect(dialled.map(\.port) == (await receiver.listenAddress)?.port)
                    #expect(await receiver.currentTopology.nodes[receiver.id]?.local == nil)
                }
                await sender.close()
                await receiver.close()
            }
        }
    }

    @Test("an advertised host name is resolved before registering; peers get a numeric address")
    func advertisedHostName() async throws {
        try await withMesh { mesh in
            let node = try await mesh.node("named") { $0.advertisedHost = "localhost" }
            let stored = await mesh.coordinator.topology.nodes[node.id]
            #expect(stored?.host.hasPrefix("127.") == true, "stored host: \(stored?.host ?? "none")")
        }
    }

    @Test("a node may listen to what it sends")
    func selfDelivery() async throws {
        try await withMesh { mesh in
            let node = try await mesh.node("loopback")
            let got = Collector<String>()
            try await node.listen("echo") { (_: String, text: String) in got.append(text) }
            try await node.send("echo", "to myself")
            #expect(try await got.wait(for: 1) == ["to myself"])
        }
    }

    @Test("bad names and oversized messages are refused with a clear error")
    func refusals() async throws {
        try await withMesh { mesh in
            let node = try await mesh.node("n") { $0.maximumMessageSize = 1024 }
            await #expect(throws: MeshError.self) { try await node.listen("", as: Int.self) { _, _ in } }
            await #expect(throws: MeshError.self) {
                try await node.listen(String(repeating: "x", count: 256), as: Int.self) { _, _ in }
            }
            try await node.listen("big", as: Data.self) { _, _ in }
            await #expect(throws: MeshError.frameTooLarge(size: 2048, limit: 1024)) {
                try await node.send("big", Data(count: 2048))
            }
            await #expect(throws: MeshError.self) { _ = try await mesh.node("") }
            await node.close()
            await #expect(throws: MeshError.closed) { try await node.send("big", Data()) }
        }
    }
}

/// Keys, wrong programs and missing coordinators.
@Suite("Authentication and connection errors")
struct AuthenticationTests {
    @Test("with the right key, nodes register and exchange messages")
    func rightKey() async throws {
        try await withMesh(authkey: "correct horse battery staple") { mesh in
            let receiver = try await mesh.node("receiver", authkey: "correct horse battery staple")
            let sender = try await mesh.node("sender", authkey: "correct horse battery staple")
            let got = Collector<String>()
            try await receiver.listen("secret") { (_: String, text: String) in got.append(text) }
            try await sender.waitForListener("secret", timeout: .seconds(5))
            try await sender.send("secret", "psst")
            #expect(try await got.wait(for: 1) == ["psst"])
        }
    }

    @Test("a wrong key, a missing key, or a key the coordinator does not use, each fail fast")
    func wrongKeys() async throws {
        try await withMesh(authkey: "correct horse battery staple") { mesh in
            for key in ["battery staple correct horse", nil] {
                let start = ContinuousClock.now
                do {
                    _ = try await mesh.node("intruder", authkey: key)
                    Issue.record("a node with key \(key ?? "none") joined a keyed mesh")
                } catch let error as MeshError {
                    guard case .authenticationFailed(let peer, _) = error else {
                        Issue.record("expected authenticationFailed, got \(error)")
                        continue
                    }
                    #expect(peer.contains(mesh.address))
                }
                #expect(ContinuousClock.now - start < .seconds(3))
            }
            #expect(await mesh.coordinator.topology.nodes.isEmpty, "nothing of an unauthenticated node is recorded")
        }

        try await withMesh { open in
            await #expect(throws: MeshError.self) { _ = try await open.node("keyed", authkey: "a key the open coordinator lacks") }
            do {
                _ = try await open.node("keyed", authkey: "a key the open coordinator lacks")
            } catch let error as MeshError {
                guard case .authenticationFailed = error else {
                    Issue.record("expected authenticationFailed, got \(error)")
                    return
                }
            }
        }
    }

    @Test("no coordinator: a clear error within a few seconds")
    func coordinatorUnreachable() async throws {
        // Bind and close a socket to find a port nobody listens on.
        let probe = try Socket.stream(for: .ipv4(host: "127.0.0.1", port: 0))
        try probe.bindAndListen(.ipv4(host: "127.0.0.1", port: 0))
        let port = probe.localAddress()!.port
        probe.close()
        let start = ContinuousClock.now
        do {
            _ = try await buildMeshNode(
                name: "lonely",
                configuration: .init(coordinator: "127.0.0.1:\(port)", authkey: nil, logger: .silent))
            Issue.record("built a node with no coordinator")
        } catch let error as MeshError {
            guard case .coordinatorUnreachable(let address, _) = error else {
                Issue.record("expected coordinatorUnreachable, got \(error)")
                return
            }
            #expect(address == "127.0.0.1:\(port)")
            #expect(error.description.contains("mesh-coordinator"))
        }
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("another program on the coordinator's port: protocol mismatch, no hang")
    func notACoordinator() async throws {
        // A server that answers like an HTTP server.
        let listener = try Listener(binding: .ipv4(host: "127.0.0.1", port: 0), loop: .shared) { socket, _ in
            let reply = Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
            _ = reply.withUnsafeBytes { try? socket.write($0) }
            socket.shutdownWrite()
        }
        defer { listener.close() }
        let start = ContinuousClock.now
        do {
            _ = try await buildMeshNode(
                name: "confused",
                configuration: .init(coordinator: listener.address.description, authkey: nil, logger: .silent))
            Issue.record("built a node against an HTTP server")
        } catch let error as MeshError {
            guard case .protocolMismatch(_, let reason) = error else {
                Issue.record("expected protocolMismatch, got \(error)")
                return
            }
            #expect(reason.contains("HTTP"))
        }
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("status shows the topics a node listens to now, not those it registered with")
    func statusShowsCurrentTopics() async throws {
        try await withMesh { mesh in
            let node = try await mesh.node("late-listener")
            try await node.listen("first", as: Data.self) { _, _ in }
            try await node.listen("second", as: Data.self) { _, _ in }
            try await node.stopListening("first")
            // An open mesh: the admin purpose with an empty key.
            let admin = try await MeshInspector.connect(to: mesh.address, authkey: nil, adminKey: "")
            let status = try await admin.status()
            #expect(status.nodes.map(\.node.topics) == [["second"]])
            await admin.close()
        }
    }
}
