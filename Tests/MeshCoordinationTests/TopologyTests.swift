import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// The coordinator's ``TopologyBook`` and a node's ``Topology`` following it through deltas.
@Suite struct TopologyTests {
    private func node(_ id: String, name: String = "worker", topics: [String] = []) -> NodeRecord {
        NodeRecord(id: id, name: name, host: "127.0.0.1", port: 4000, topics: topics)
    }

    /// What `body` was rejected with, or `nil` when it succeeded.
    private func rejection(_ body: () throws -> Void) -> TopologyBook.Rejection? {
        do {
            try body()
            return nil
        } catch let rejection as TopologyBook.Rejection {
            return rejection
        } catch {
            Issue.record("expected a TopologyBook.Rejection, got \(error)")
            return nil
        }
    }

    // MARK: the book

    @Test func joinAssignsIncreasingVersions() throws {
        var book = TopologyBook()
        #expect(book.topology.version == 0)
        _ = try book.join(node("a"))
        #expect(book.topology.version == 1)
        _ = try book.join(node("b"))
        #expect(book.topology.version == 2)
        #expect(Set(book.topology.nodes.keys) == ["a", "b"])
    }

    @Test func joinStoresTopicsDeduplicatedAndSorted() throws {
        var book = TopologyBook()
        let stored = try book.join(node("a", topics: ["c", "a", "b", "a"]))
        #expect(stored.topics == ["a", "b", "c"])
        #expect(book.topology.nodes["a"] == stored)
    }

    @Test func duplicateIDIsRejected() throws {
        var book = TopologyBook()
        _ = try book.join(node("a", name: "first"))
        #expect(rejection { _ = try book.join(node("a", name: "second")) } == .duplicateID("a"))
        #expect(book.topology.nodes["a"]?.name == "first")
        #expect(book.topology.version == 1)
    }

    @Test(arguments: ["", String(repeating: "n", count: 256), "bad\nname", "tab\there", "nul\0"])
    func invalidNamesAreRejected(name: String) throws {
        var book = TopologyBook()
        let error = rejection { _ = try book.join(node("a", name: name)) }
        guard case .invalidName(let reason) = error else {
            Issue.record("expected .invalidName, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("node name"))
        #expect(book.topology.nodes.isEmpty && book.topology.version == 0)
        #expect(book.takeDelta() == nil)
    }

    @Test(arguments: ["", String(repeating: "t", count: 256), "bad\ntopic", "esc\u{1B}[0m"])
    func invalidTopicsAreRejected(topic: String) throws {
        var book = TopologyBook()
        let error = rejection { _ = try book.join(node("a", topics: ["fine", topic])) }
        guard case .invalidTopic(let reason) = error else {
            Issue.record("expected .invalidTopic on join, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("topic"))
        #expect(book.topology.nodes.isEmpty && book.topology.version == 0)

        _ = try book.join(node("b"))
        let listenError = rejection { _ = try book.listen("b", to: topic) }
        guard case .invalidTopic = listenError else {
            Issue.record("expected .invalidTopic on listen, got \(String(describing: listenError))")
            return
        }
        #expect(book.topology.nodes["b"]?.topics == [])
        #expect(book.topology.version == 1)
    }

    @Test func namesAtTheLimitAreAccepted() throws {
        var book = TopologyBook()
        let longest = String(repeating: "é", count: 127) + "x"  // 255 bytes of UTF-8
        #expect(longest.utf8.count == 255)
        _ = try book.join(node("a", name: longest, topics: [longest, "ünïcode ✓"]))
        #expect(try book.listen("a", to: "spaces are fine"))
    }

    @Test func listenAndUnlistenAreIdempotent() throws {
        var book = TopologyBook()
        _ = try book.join(node("a"))
        #expect(try book.listen("a", to: "t"))
        #expect(book.topology.version == 2)
        #expect(try !book.listen("a", to: "t"))
        #expect(book.topology.version == 2)
        #expect(book.topology.nodes["a"]?.topics == ["t"])

        let removed = book.unlisten("a", from: "t")
        #expect(removed)
        #expect(book.topology.version == 3)
        let removedAgain = book.unlisten("a", from: "t")
        #expect(!removedAgain)
        #expect(book.topology.version == 3)
        #expect(book.topology.nodes["a"]?.topics == [])
    }

    @Test func listenAndUnlistenOnAnUnknownNodeChangeNothing() throws {
        var book = TopologyBook()
        #expect(try !book.listen("ghost", to: "t"))
        let removed = book.unlisten("ghost", from: "t")
        #expect(!removed)
        #expect(book.leave("ghost") == nil)
        #expect(book.topology.version == 0)
        #expect(book.takeDelta() == nil)
    }

    @Test func leaveRemovesTheNode() throws {
        var book = TopologyBook()
        let stored = try book.join(node("a", topics: ["t"]))
        _ = try book.join(node("b", topics: ["t"]))
        #expect(book.leave("a") == stored)
        #expect(book.topology.nodes["a"] == nil)
        #expect(book.topology.listeners(of: "t").map(\.id) == ["b"])
        #expect(book.topology.version == 3)
        #expect(book.leave("a") == nil)
        #expect(book.topology.version == 3)
        // The id is free again.
        _ = try book.join(node("a"))
    }

    @Test func takeDeltaBatchesEverythingSinceTheLastTake() throws {
        var book = TopologyBook()
        #expect(book.takeDelta() == nil)
        let a = try book.join(node("a"))
        try book.listen("a", to: "t")
        let first = try book.takeRequiredDelta()
        #expect(first == TopologyDelta(from: 0, to: 2, changes: [.join(a), .listen("a", "t")]))
        #expect(book.takeDelta() == nil)

        book.unlisten("a", from: "t")
        let b = try book.join(node("b"))
        book.leave("a")
        let second = try book.takeRequiredDelta()
        #expect(second == TopologyDelta(from: 2, to: 5, changes: [.unlisten("a", "t"), .join(b), .leave("a")]))
        #expect(book.takeDelta() == nil)
    }

    // MARK: following deltas

    @Test func followerApplyingEachDeltaMatchesTheBook() throws {
        var book = TopologyBook()
        var follower = Topology()
        _ = try book.join(node("a", topics: ["x"]))
        _ = try book.join(node("b", name: "other"))
        #expect(follower.apply(try book.takeRequiredDelta()) == .applied)
        #expect(follower == book.topology)

        try book.listen("b", to: "x")
        book.unlisten("a", from: "x")
        try book.listen("a", to: "y")
        #expect(follower.apply(try book.takeRequiredDelta()) == .applied)
        #expect(follower == book.topology)

        book.leave("b")
        #expect(follower.apply(try book.takeRequiredDelta()) == .applied)
        #expect(follower == book.topology)
        #expect(follower.version == 6)
    }

    @Test func deltaAfterAGapChangesNothing() throws {
        var book = TopologyBook()
        var follower = Topology()
        _ = try book.join(node("a"))
        let first = try book.takeRequiredDelta()
        _ = try book.join(node("b"))
        let second = try book.takeRequiredDelta()

        #expect(follower.apply(second) == .gap)
        #expect(follower == Topology())
        #expect(follower.apply(first) == .applied)
        #expect(follower.apply(second) == .applied)
        #expect(follower == book.topology)
    }

    @Test func oldDeltaIsAlreadyKnown() throws {
        var book = TopologyBook()
        var follower = Topology()
        _ = try book.join(node("a"))
        let first = try book.takeRequiredDelta()
        #expect(follower.apply(first) == .applied)
        let before = follower
        #expect(follower.apply(first) == .alreadyKnown)
        #expect(follower == before)

        book.leave("a")
        #expect(follower.apply(try book.takeRequiredDelta()) == .applied)
        #expect(follower.apply(first) == .alreadyKnown)
        #expect(follower.nodes.isEmpty)
    }

    @Test func snapshotRoundTrips() throws {
        var book = TopologyBook()
        _ = try book.join(node("c", topics: ["t"]))
        _ = try book.join(node("a", name: "other", topics: ["t", "u"]))
        _ = try book.join(node("b"))
        let topology = book.topology
        let snapshot = topology.snapshot
        #expect(snapshot.version == 3)
        #expect(snapshot.nodes.map(\.id) == ["a", "b", "c"])
        #expect(Topology(snapshot) == topology)
        #expect(Topology(Topology().snapshot) == Topology())
    }

    @Test func listenersAndTopicsAreSortedByID() throws {
        var book = TopologyBook()
        for id in ["d", "b", "e", "a", "c"] {
            _ = try book.join(node(id, name: id < "c" ? "low" : "high", topics: id == "e" ? ["u"] : ["t"]))
        }
        try book.listen("e", to: "t")
        let topology = book.topology
        #expect(topology.listeners(of: "t").map(\.id) == ["a", "b", "c", "d", "e"])
        #expect(topology.listeners(of: "u").map(\.id) == ["e"])
        #expect(topology.listeners(of: "nobody").isEmpty)
        #expect(topology.topics.mapValues { $0.map(\.id) } == ["t": ["a", "b", "c", "d", "e"], "u": ["e"]])
        #expect(topology.nodes(named: "high").map(\.id) == ["c", "d", "e"])
    }

    // MARK: randomized

    @Test(arguments: [1, 2, 3] as [UInt64])
    func randomOperationsConverge(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var book = TopologyBook()
        var follower = Topology()
        let ids = (0..<8).map { "node\($0)" }
        let topics = ["a", "b", "c", "d"]
        var applied = 0

        for step in 0..<1_000 {
            let id = ids.randomElement(using: &random)!
            let topic = topics.randomElement(using: &random)!
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                let wasThere = book.topology.nodes[id] != nil
                let error = rejection {
                    _ = try book.join(node(id, name: "n\(id.last!)", topics: [topic, topics.randomElement(using: &random)!]))
                }
                #expect(error == (wasThere ? .duplicateID(id) : nil), "step \(step)")
            case 1:
                let wasThere = book.topology.nodes[id] != nil
                #expect((book.leave(id) != nil) == wasThere, "step \(step)")
            case 2:
                let expected = book.topology.nodes[id].map { !$0.topics.contains(topic) } ?? false
                #expect(try book.listen(id, to: topic) == expected, "step \(step)")
            default:
                let expected = book.topology.nodes[id]?.topics.contains(topic) ?? false
                let removed = book.unlisten(id, from: topic)
                #expect(removed == expected, "step \(step)")
            }
            if Int.random(in: 0..<10, using: &random) == 0, let delta = book.takeDelta() {
                #expect(delta.from == follower.version)
                #expect(follower.apply(delta) == .applied, "step \(step)")
                #expect(follower == book.topology, "step \(step)")
                applied += 1
            }
        }
        if let delta = book.takeDelta() { #expect(follower.apply(delta) == .applied) }
        #expect(follower == book.topology)
        #expect(applied > 10)
        for node in book.topology.nodes.values { #expect(node.topics == node.topics.sorted()) }
    }
}

extension TopologyBook {
    /// The pending delta; records an issue and throws when there is none.
    fileprivate mutating func takeRequiredDelta(
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> TopologyDelta {
        let delta = takeDelta()
        return try #require(delta, "expected a pending delta", sourceLocation: sourceLocation)
    }
}
