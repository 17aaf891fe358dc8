import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Nodes with a partial topology view, end to end against an in-process coordinator.
@Suite("Partial views", .serialized)
struct PartialViewTests {
    static func partial(_ configuration: inout MeshNode.Configuration) { configuration.topologyView = .partial }

    @Test("a partial node holds only its own record and what it routes to, not unrelated nodes")
    func holdsOnlyWhatItNeeds() async throws {
        try await withMesh { mesh in
            var others: [MeshNode] = []
            for index in 0..<6 {
                let node = try await mesh.node("other-\(index)")
                try await node.listen("elsewhere-\(index)") { (_: String, _: Int) in }
                others.append(node)
            }
            let listener = try await mesh.node("listener") { $0.topologyView = .full }
            try await listener.listen("wanted") { (_: String, _: Int) in }
            let watcher = try await mesh.node("watcher", configure: Self.partial)
            #expect(await watcher.currentTopology.nodes.keys.sorted() == [watcher.id], "the welcome held more than the node itself")
            try await watcher.send("wanted", 1)
            let held = await watcher.currentTopology.nodes
            #expect(Set(held.keys) == [watcher.id, listener.id])
            // More unrelated nodes join: nothing reaches the watcher.
            let late = try await mesh.node("late")
            try await late.listen("elsewhere-late") { (_: String, _: Int) in }
            // A barrier on the watcher's own coordinator connection: the answer to a new interest
            // comes in a publish after the late node's, so anything that publish sent the watcher
            // has arrived once it returns.
            try await watcher.need(ViewInterest(topics: ["barrier"]))
            #expect(Set(await watcher.currentTopology.nodes.keys) == [watcher.id, listener.id])
            // The coordinator and a full-view node still see everyone.
            #expect(await mesh.coordinator.topology.nodes.count == 9)
            #expect(await listener.currentTopology.nodes.count == 9)
            for node in others + [listener, watcher, late] { await node.close() }
        }
    }

    @Test("the first send reaches a listener that joined earlier; one that joins later gets the next ones; one that leaves is dropped")
    func firstSendAndLaterListeners() async throws {
        try await withMesh { mesh in
            let early = try await mesh.node("early", configure: Self.partial)
            let earlyGot = Collector<Int>()
            try await early.listen("news") { (_: String, value: Int) in earlyGot.append(value) }
            let sender = try await mesh.node("sender", configure: Self.partial)
            try await sender.send("news", 1)  // no waitForListener: the first send asks for the route
            #expect(try await earlyGot.wait(for: 1, seconds: 5) == [1])

            let late = try await mesh.node("late", configure: Self.partial)
            let lateGot = Collector<Int>()
            try await late.listen("news") { (_: String, value: Int) in lateGot.append(value) }
            let lateID = late.id
            try await eventually("the sender to hold the late listener", seconds: 5) {
                await sender.currentTopology.listeners(of: "news").contains { $0.id == lateID }
            }
            try await sender.send("news", 2)
            #expect(try await lateGot.wait(for: 1, seconds: 5) == [2])
            #expect(try await earlyGot.wait(for: 2, seconds: 5) == [1, 2])

            await late.close()
            try await eventually("the sender to drop the listener that left", seconds: 5) {
                await sender.currentTopology.nodes[lateID] == nil
            }
            try await sender.send("news", 3)
            #expect(try await earlyGot.wait(for: 3, seconds: 5) == [1, 2, 3])
            #expect(lateGot.values == [2])
            #expect(await sender.statistics.messagesDropped == 0)
        }
    }

    @Test("round robin over a worker pool stays even, and services route, from a partial node")
    func poolsAndServices() async throws {
        try await withMesh { mesh in
            let counts = Collector<String>()
            var workers: [MeshNode] = []
            for index in 0..<3 {
                let worker = try await mesh.node("worker", configure: Self.partial)
                try await worker.listen("jobs") { (_: String, _: Int) in counts.append("w\(index)") }
                workers.append(worker)
            }
            let provider = try await mesh.node("adder", configure: Self.partial)
            try await provider.serve("add") { (pair: [Int]) async throws -> Int in pair.reduce(0, +) }
            let sender = try await mesh.node("dispatcher", configure: Self.partial)
            #expect(try await sender.call("add", [2, 3], as: Int.self) == 5)  // first call: no waitForService
            try await sender.waitForListener("jobs", count: 3, timeout: .seconds(5))
            for job in 0..<30 { try await sender.send("jobs", job) }
            let values = try await counts.wait(for: 30, seconds: 10)
            #expect(Dictionary(grouping: values, by: { $0 }).mapValues(\.count) == ["w0": 10, "w1": 10, "w2": 10])
            try await sender.waitForService("add", timeout: .seconds(5))
            #expect(try await sender.call("add", [4, 5], as: Int.self) == 9)
            for node in workers + [provider, sender] { await node.close() }
        }
    }

    @Test("a peer the receiver does not hold is looked up and accepted; a forged hello is still refused")
    func unknownPeers() async throws {
        let key = "partial view test key, long enough"
        try await withMesh(authkey: key) { mesh in
            let receiver = try await mesh.node("receiver", authkey: key, configure: Self.partial)
            let got = Collector<String>()
            try await receiver.listen("inbox") { (_: String, value: String) in got.append(value) }
            let sender = try await mesh.node("sender", authkey: key, configure: Self.partial)
            try await sender.send("inbox", "hello")
            #expect(try await got.wait(for: 1, seconds: 5) == ["hello"])
            #expect(await receiver.currentTopology.nodes[sender.id]?.name == "sender", "the receiver looked the sender up")

            // A real id with the wrong name, and a hello naming another id than the handshake's.
            let port = try #require(await receiver.listenAddress).port
            let bystander = try await mesh.node("bystander", authkey: key)
            let renamed = try await RogueClient.connect(
                to: "127.0.0.1:\(port)", purpose: .data, key: key, id: bystander.id, peer: receiver.identity)
            renamed.connection.send(PeerHello(id: bystander.id, name: "not-bystander").encodedFrame())
            let payload = Array(#""forged""#.utf8)
            let forged = payload.withUnsafeBytes { MessageFrame.encode(topic: "inbox", encoding: .codec, payload: $0) }
            renamed.connection.send(forged)
            try await renamed.waitForClose()
            let ownID = RogueClient.freshIdentity()
            let impostor = try await RogueClient.connect(
                to: "127.0.0.1:\(port)", purpose: .data, key: key, id: ownID, peer: receiver.identity)
            impostor.connection.send(PeerHello(id: sender.id, name: "sender").encodedFrame())
            impostor.connection.send(forged)
            try await impostor.waitForClose()
            #expect(got.values == ["hello"], "a forged message was delivered")
            for node in [receiver, sender, bystander] { await node.close() }
        }
    }

    @Test("after a coordinator restart a partial node declares its interests again and routes to new listeners")
    func coordinatorRestart() async throws {
        let first = try await RunningCoordinator.start()
        let port = try #require(await first.coordinator.boundAddress).port
        let receiver = try await first.node("receiver", configure: Self.partial)
        let got = Collector<Int>()
        try await receiver.listen("feed") { (_: String, value: Int) in got.append(value) }
        let sender = try await first.node("sender", configure: Self.partial)
        try await sender.send("feed", 1)
        #expect(try await got.wait(for: 1, seconds: 5) == [1])
        await first.stop()
        try await eventually("the sender to notice the coordinator is gone", seconds: 5) {
            await !sender.isConnectedToCoordinator
        }
        try await sender.send("feed", 2)  // provisional routing: the receiver is still held
        #expect(try await got.wait(for: 2, seconds: 5) == [1, 2])

        let second = MeshCoordinator(
            configuration: .init(host: "127.0.0.1", port: port, logger: testLogger("coordinator")))
        try await second.start()
        let task = Task { try await second.run() }
        defer { task.cancel() }
        try await eventually("both nodes to register again", seconds: 8) {
            let senderBack = await sender.isConnectedToCoordinator
            let receiverBack = await receiver.isConnectedToCoordinator
            return senderBack && receiverBack
        }
        let newcomer = try await buildMeshNode(
            name: "newcomer",
            configuration: MeshNode.Configuration(
                coordinator: "127.0.0.1:\(port)", listenHost: "127.0.0.1", logger: testLogger("newcomer"),
                topologyView: .partial))
        let newcomerGot = Collector<Int>()
        try await newcomer.listen("feed") { (_: String, value: Int) in newcomerGot.append(value) }
        let newcomerID = newcomer.id
        let receiverID = receiver.id
        try await eventually("the sender to hold both listeners from the new coordinator", seconds: 5) {
            let listeners = await sender.currentTopology.listeners(of: "feed").map(\.id)
            return Set(listeners) == [newcomerID, receiverID]
        }
        try await sender.send("feed", 3)
        #expect(try await got.wait(for: 3, seconds: 5) == [1, 2, 3])
        #expect(try await newcomerGot.wait(for: 1, seconds: 5) == [3])
        for node in [receiver, sender, newcomer] { await node.close() }
        task.cancel()
        _ = await task.result
    }

    @Test("a join storm of 250 nodes in one process: each joins once, and every node's message is delivered")
    func joinStorm() async throws {
        try await withMesh { mesh in
            let count = 250
            let delivered = Collector<Int>()
            let address = mesh.address
            let nodes = try await withDeadline(60) {
                try await withThrowingTaskGroup(of: MeshNode.self) { group in
                    for index in 0..<count {
                        group.addTask {
                            let configuration = MeshNode.Configuration(
                                coordinator: address, listenHost: "127.0.0.1", connectTimeout: .seconds(30),
                                logger: testLogger("swarm"), topologyView: .partial)
                            let node = try await buildMeshNode(name: "swarm", configuration: configuration)
                            try await node.listen("swarm/\(index)") { (_: String, value: Int) in delivered.append(value) }
                            try await node.waitForListener("swarm/\((index + 1) % count)", timeout: .seconds(30))
                            try await node.send("swarm/\((index + 1) % count)", index)
                            return node
                        }
                    }
                    var nodes: [MeshNode] = []
                    for try await node in group { nodes.append(node) }
                    return nodes
                }
            }
            let values = try await delivered.wait(for: count, seconds: 20)
            #expect(Set(values) == Set(0..<count))
            var reconnects = 0
            var held = 0
            for node in nodes {
                reconnects += await node.statistics.coordinatorReconnects
                held += await node.currentTopology.nodes.count
            }
            #expect(reconnects == 0, "nodes had to register again")
            #expect(held <= 3 * count, "nodes hold more than they route to: \(held) records in all")
            let journal = await mesh.coordinator.snapshot().events
            #expect(journal.last?.sequence == UInt64(count), "the coordinator logged more than one join per node")
            #expect(!journal.contains { $0.kind != .joined }, "evictions, departures or refusals during the storm")
            for node in nodes { await node.close() }
        }
    }
}

/// Hostile or oversized interests, from a raw client and from the node API.
@Suite("Partial views: limits", .serialized)
struct PartialViewLimitTests {
    @Test("a register or interest past the limit, or with a bad entry, is rejected with its reason; the node API refuses before sending")
    func oversizedAndMalformed() async throws {
        try await withMesh { mesh in
            // 10,001 topics at register.
            let (id, register) = RogueClient.validRegister(name: "greedy")
            var greedy = register
            greedy.view = .partial
            greedy.interest = ViewInterest(topics: Set((0...ViewInterest.maximumCount).map { "t\($0)" }))
            let first = try await RogueClient.connect(to: mesh.address, purpose: .control, key: nil, id: id)
            first.send(greedy)
            let refusal = try #require(try await first.messages.wait(for: 1, seconds: 5).first)
            #expect(refusal.type == .rejected)
            #expect(refusal.reason?.contains("at most \(ViewInterest.maximumCount)") == true, "\(refusal.reason ?? "")")
            try await first.waitForClose()

            // A registered partial client that then asks for a malformed id.
            let (otherID, otherRegister) = RogueClient.validRegister(name: "sloppy")
            var sloppy = otherRegister
            sloppy.view = .partial
            let second = try await RogueClient.connect(to: mesh.address, purpose: .control, key: nil, id: otherID)
            second.send(sloppy)
            #expect(try await second.messages.wait(for: 1, seconds: 5).first?.type == .welcome)
            second.send(ControlMessage(.interest, interest: ViewInterest(ids: ["NOT-AN-ID"])))
            let messages = try await second.messages.wait(for: 2, seconds: 5)
            #expect(messages.last?.type == .rejected)
            try await second.waitForClose()
            try await eventually("the rejected nodes to be gone", seconds: 5) {
                await mesh.coordinator.topology.nodes.isEmpty
            }

            // A full-view session may not send interest at all.
            let (fullID, fullRegister) = RogueClient.validRegister(name: "full")
            let third = try await RogueClient.connect(to: mesh.address, purpose: .control, key: nil, id: fullID)
            third.send(fullRegister)
            #expect(try await third.messages.wait(for: 1, seconds: 5).first?.type == .welcome)
            third.send(ControlMessage(.interest, interest: ViewInterest(topics: ["x"])))
            #expect(try await third.messages.wait(for: 2, seconds: 5).last?.type == .rejected)

            // The node API says no before anything goes out, and the node stays registered.
            let node = try await mesh.node("careful") { $0.topologyView = .partial }
            let tooMany = ViewInterest(topics: Set((0...ViewInterest.maximumCount).map { "t\($0)" }))
            await #expect(throws: MeshError.self) { try await node.need(tooMany) }
            #expect(await node.isConnectedToCoordinator)
            try await node.send("still-fine", 1)
        }
    }
}
