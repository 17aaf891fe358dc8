import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Typed topics: a type's shape and fingerprint, the coordinator's check, and what a node sees.
@Suite("Typed topics")
struct TypedTopicTests {
    struct Pose: Codable, Sendable, Equatable {
        var x: Double
        var y: Double
        var theta: Double
        var frame: String?
    }

    struct Twist: Codable, Sendable, Equatable {
        var linear: Double
        var angular: Double
    }

    enum Mode: String, Codable, Sendable, CaseIterable { case idle, driving }

    struct Plan: Codable, Sendable {
        var steps: [Pose]
        var mode: Mode
        var tags: [String: Int]
        var ids: Set<UInt8>?
        var count: Int32
        var done: Bool
    }

    final class Tree: Codable, Sendable {
        let value: Int
        let children: [Tree]
        init(value: Int, children: [Tree]) {
            self.value = value
            self.children = children
        }
    }

    // MARK: Shapes

    @Test("a struct's shape: fields sorted by name, optional fields marked, every number kind named")
    func shapes() {
        #expect(TypeShape.of(Pose.self) == "{frame?:string,theta:float,x:float,y:float}")
        #expect(TypeShape.of(Twist.self) == "{angular:float,linear:float}")
        #expect(
            TypeShape.of(Plan.self)
                == "{count:int,done:bool,ids?:[int],mode:string,steps:[{frame?:string,theta:float,x:float,y:float}],tags:{*:int}}")
        #expect(TypeShape.of([String].self) == "[string]")
        #expect(TypeShape.of(Int.self) == "int")
    }

    @Test("a recursive type is cut off at the depth limit, and the same every time")
    func recursive() throws {
        let shape = try #require(TypeShape.of(Tree.self))
        #expect(shape.hasPrefix("{children:[{children:[{"))
        #expect(shape.contains("…"))
        #expect(TypeShape.of(Tree.self) == shape)
    }

    enum Gear: String, Codable, Sendable { case low, high }  // not CaseIterable: "" is no Gear

    struct Shift: Codable, Sendable {
        var gear: Gear
        var speed: Double
    }

    struct Tagged: Codable, Sendable {
        var id: UUID
        var link: URL
        var at: Date
    }

    @Test("a type whose decoding refuses the defaults part-way declares its name only, never a partial shape; UUID and URL are strings")
    func partialShapes() {
        #expect(TypeShape.of(Shift.self) == nil)
        #expect(TopicType(of: Shift.self) == TopicType(name: "Shift", fingerprint: nil))
        #expect(TypeShape.of(Tagged.self) == "{at:float,id:string,link:string}")
    }

    @Test("the fingerprint is the first 16 hex digits of the shape's SHA-256 (computed independently with Python's hashlib)")
    func fingerprints() {
        // python3 -c "import hashlib; print(hashlib.sha256(b'{frame?:string,theta:float,x:float,y:float}').hexdigest()[:16])"
        #expect(TopicType(of: Pose.self) == TopicType(name: "Pose", fingerprint: "7343ed982d6d6e7f"))
        #expect(TopicType(of: Twist.self) == TopicType(name: "Twist", fingerprint: "8a6b962494ec90d0"))
        #expect(!TopicType(of: Pose.self).agrees(with: TopicType(of: Twist.self)))
        // A name without a fingerprint (a Python node that gave no schema) agrees by name.
        #expect(TopicType(of: Pose.self).agrees(with: TopicType(name: "Pose")))
        #expect(!TopicType(of: Pose.self).agrees(with: TopicType(name: "Pose", fingerprint: "0000000000000000")))
        #expect(Topic<Pose>("pose", typeName: "geometry/Pose").type.name == "geometry/Pose")
    }

    @Test("declarations from the network are checked: names like topics, fingerprints 16 lowercase hex digits")
    func validation() {
        #expect(throws: MeshError.self) { try TopicType(name: "").validate() }
        #expect(throws: MeshError.self) { try TopicType(name: "bad\u{1b}[0m").validate() }
        #expect(throws: MeshError.self) { try TopicType(name: "Pose", fingerprint: "ABCDEF0123456789").validate() }
        #expect(throws: MeshError.self) { try TopicType(name: "Pose", fingerprint: "abc").validate() }
        #expect(throws: Never.self) { try TopicType(name: "Pose", fingerprint: "0123456789abcdef").validate() }
    }

    // MARK: The coordinator's book

    @Test("the book refuses a listen or send whose type disagrees, naming both types and both nodes, and records nothing")
    func bookRefuses() throws {
        var book = TopologyBook()
        _ = try book.join(NodeRecord(id: "a000000000000001", name: "talker", host: "127.0.0.1", port: 1))
        _ = try book.join(NodeRecord(id: "a000000000000002", name: "mapper", host: "127.0.0.1", port: 2))
        try book.publish("a000000000000001", on: "cmd", type: TopicType(of: Twist.self))
        let version = book.topology.version
        do {
            try book.listen("a000000000000002", to: "cmd", type: TopicType(of: Pose.self))
            Issue.record("a Pose listener on a Twist topic was recorded")
        } catch {
            guard case .typeMismatch(let reason) = error else { throw error }
            for word in ["Pose", "Twist", "talker", "mapper", "\"cmd\""] { #expect(reason.contains(word), "\(reason)") }
        }
        #expect(book.topology.version == version)
        #expect(book.topology.nodes["a000000000000002"]?.topics == [])
        // An untyped listener (a dynamic consumer) is fine, and so is the same type.
        #expect(try book.listen("a000000000000002", to: "cmd"))
        #expect(try book.listen("a000000000000002", to: "cmd", type: TopicType(of: Twist.self)))
        #expect(book.topology.nodes["a000000000000002"]?.types["cmd"] == TopicType(of: Twist.self))
        // Once nobody declares a type there, any type may.
        book.unlisten("a000000000000002", from: "cmd")
        book.leave("a000000000000001")
        #expect(try book.listen("a000000000000002", to: "cmd", type: TopicType(of: Pose.self)))
    }

    @Test("records with types and sends survive the wire; records without them are unchanged on it")
    func recordsOnTheWire() throws {
        var record = NodeRecord(id: "a000000000000001", name: "n", host: "h", port: 1, topics: ["a"])
        let plain = try JSONEncoder().encode(record)
        #expect(!String(decoding: plain, as: UTF8.self).contains("types"))
        record.sends = ["b"]
        record.types = ["b": TopicType(of: Pose.self)]
        let typed = try JSONEncoder().encode(record)
        #expect(try MeshJSONDecoderForTests.decode(NodeRecord.self, from: typed) == record)
    }

    // MARK: Nodes

    @Test("a Pose listener on a topic with a Twist sender is refused at listen, within 1 s, naming both types and nodes")
    func listenerRefused() async throws {
        try await withMesh { mesh in
            let talker = try await mesh.node("talker")
            let mapper = try await mesh.node("mapper")
            let twist = Topic<Twist>("cmd")
            try await talker.send(twist, Twist(linear: 1, angular: 0))
            let start = ContinuousClock.now
            await #expect {
                try await mapper.listen(Topic<Pose>("cmd")) { (_: String, _: Pose) in }
            } throws: { error in
                guard case MeshError.typeMismatch(let topic, let reason) = error else { return false }
                return topic == "cmd" && ["Pose", "Twist", "talker", "mapper"].allSatisfy { reason.contains($0) }
            }
            #expect(ContinuousClock.now - start < .seconds(1))
            // Nothing was left behind: the node does not listen there, and the same type works.
            #expect(await !(mapper.currentTopology.nodes[mapper.id]?.topics.contains("cmd") ?? true))
            let got = Collector<Twist>()
            try await mapper.listen(twist) { (_: String, value: Twist) in got.append(value) }
            try await talker.waitForListener("cmd", timeout: .seconds(5))
            try await talker.send(twist, Twist(linear: 2, angular: 1))
            #expect(try await got.wait(for: 1) == [Twist(linear: 2, angular: 1)])
        }
    }

    @Test("a sender whose type disagrees with the listeners' is refused at its first send; the coordinator checks the race too")
    func senderRefused() async throws {
        try await withMesh { mesh in
            let listener = try await mesh.node("mapper")
            let sender = try await mesh.node("talker")
            let got = Collector<Pose>()
            try await listener.listen(Topic<Pose>("pose")) { (_: String, value: Pose) in got.append(value) }
            try await sender.waitForListener("pose", timeout: .seconds(5))
            await #expect(throws: MeshError.self) {
                try await sender.send(Topic<Twist>("pose"), Twist(linear: 1, angular: 1))
            }
            // The coordinator's own check, with the node's local one out of the way: a declaration
            // it has not seen yet is refused there.
            let impostor = try ControlClient.connect(to: mesh.address)
            try await impostor.register(name: "impostor", topics: [], seconds: 10)
            impostor.send(ControlMessage(.publish, topic: "pose", messageType: TopicType(of: Twist.self)))
            let refusal = try await impostor.waitFor(.refused)
            #expect(refusal.topic == "pose")
            #expect(refusal.reason?.contains("Pose") == true && refusal.reason?.contains("mapper") == true)
            #expect(!impostor.isClosed, "a refused declaration does not end the session")
            impostor.close()
            // The listener never saw a Twist.
            let pose = Pose(x: 1, y: 2, theta: 0, frame: nil)
            let agreeing = try await mesh.node("planner")
            try await agreeing.send(Topic<Pose>("pose"), pose)
            #expect(try await got.wait(for: 1) == [pose])
        }
    }

    @Test("one node sending two types on one topic: the second is refused at its first send, not sent")
    func oneNodeTwoTypes() async throws {
        try await withMesh { mesh in
            let listener = try await mesh.node("mapper")
            let got = Collector<Data>()
            try await listener.listen("pose") { (_: String, data: Data) in got.append(data) }
            let sender = try await mesh.node("talker")
            try await sender.waitForListener("pose", timeout: .seconds(5))
            try await sender.send(Topic<Pose>("pose"), Pose(x: 1, y: 2, theta: 0, frame: nil))
            await #expect(throws: MeshError.self) { try await sender.send(Topic<Twist>("pose"), Twist(linear: 1, angular: 1)) }
            // An invalid declared name is refused at once, and the node stays in the mesh.
            await #expect(throws: MeshError.self) { try await sender.send(Topic<Pose>("other", typeName: ""), Pose(x: 0, y: 0, theta: 0)) }
            #expect(await sender.isConnectedToCoordinator)
            try await sender.send(Topic<Pose>("pose"), Pose(x: 3, y: 4, theta: 0, frame: nil))
            #expect(try await got.wait(for: 2).count == 2)
        }
    }

    @Test("untyped listeners (the CLI's echo, a bag recorder) take any type; the topology shows senders and types")
    func dynamicConsumers() async throws {
        try await withMesh { mesh in
            let echo = try await mesh.node("echo")
            let got = Collector<Data>()
            try await echo.listen("cmd") { (_: String, data: Data) in got.append(data) }
            let talker = try await mesh.node("talker")
            try await talker.send(Topic<Twist>("cmd"), Twist(linear: 1, angular: 2))
            _ = try await got.wait(for: 1)
            let talkerID = talker.id
            try await eventually("the talker's send declared in the echo's topology") {
                await echo.currentTopology.nodes[talkerID]?.sends == ["cmd"]
            }
            #expect(await echo.currentTopology.nodes[talkerID]?.types["cmd"] == TopicType(of: Twist.self))
        }
    }
}

/// The node's own JSON decoder, as the control plane uses it.
enum MeshJSONDecoderForTests {
    static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}
