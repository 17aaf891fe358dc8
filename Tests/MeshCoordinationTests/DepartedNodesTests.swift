import Foundation
import Testing

@testable import Mesh
@testable import MeshCoordination

/// The coordinator's memory of nodes that have just left, and the partial-view lookups it answers.
@Suite("Departed nodes")
struct DepartedNodesTests {
    static func record(_ id: String, _ name: String, topics: [String] = []) -> NodeRecord {
        NodeRecord(id: id, name: name, host: "127.0.0.1", port: 1, topics: topics)
    }

    static func id(_ n: Int) -> String { String(format: "%016x", n) }

    static let a = "000000000000000a"
    static let b = "000000000000000b"
    static let s = "00000000000000ee"

    @Test("a departed node is found until its memory has passed, by the injected clock, and forgotten when it joins again")
    func expiry() throws {
        let t0 = ContinuousClock.now
        var departed = DepartedNodes()
        departed.remember(Self.record(Self.s, "mesh-send", topics: ["a", "b"]), at: t0)
        let found = try #require(departed.record(Self.s, at: t0 + .seconds(5)))
        #expect(found.name == "mesh-send" && found.host == "127.0.0.1" && found.port == 1)
        #expect(found.topics.isEmpty, "a departed record is kept without its topics")
        #expect(departed.record(Self.s, at: t0 + DepartedNodes.memory - .milliseconds(1)) != nil)
        #expect(departed.record(Self.s, at: t0 + DepartedNodes.memory) == nil)
        #expect(DepartedNodes.memory >= .seconds(5), "at least the 5 s a receiver accepts a node that left")
        departed.expire(now: t0 + DepartedNodes.memory)
        #expect(departed.count == 0)

        departed.remember(Self.record(Self.a, "a"), at: t0)
        departed.forget(Self.a)
        #expect(departed.record(Self.a, at: t0) == nil, "a node in the mesh again is not a departed one")
    }

    @Test("past its capacity the oldest go first, counted; a join/leave flood keeps it bounded")
    func capacity() {
        let t0 = ContinuousClock.now
        var departed = DepartedNodes(capacity: 100)
        var dropped = 0
        for n in 0..<1_000 {
            dropped += departed.remember(Self.record(Self.id(n + 1), "n"), at: t0 + .milliseconds(n))
        }
        #expect(departed.count == 100)
        #expect(dropped == 900 && departed.forgottenEarly == 900)
        let now = t0 + .seconds(1)
        #expect(departed.record(Self.id(900), at: now) == nil, "an old one was kept")
        #expect(departed.record(Self.id(901), at: now) != nil && departed.record(Self.id(1_000), at: now) != nil)
        #expect(departed.orderEntries <= 2 * departed.count + 16)

        // One node joining and leaving over and over: one record, and the order stays short.
        var churn = DepartedNodes(capacity: 100)
        churn.remember(Self.record(Self.b, "b"), at: t0)
        for n in 0..<10_000 {
            churn.forget(Self.a)
            churn.remember(Self.record(Self.a, "a"), at: t0 + .microseconds(n))
        }
        #expect(churn.count == 2 && churn.forgottenEarly == 0)
        #expect(churn.orderEntries <= 2 * churn.count + 16, "\(churn.orderEntries) entries for 2 records")
        #expect(churn.record(Self.b, at: t0 + .seconds(1)) != nil, "the other node was pushed out")
    }

    /// Session 1 is node a with a partial view, welcomed; s is a sender in the mesh.
    static func book() -> ViewBook {
        var book = ViewBook()
        book.record(.join(record(s, "mesh-send")))
        book.open(1, own: a, interest: ViewInterest())
        book.record(.join(record(a, "a")))
        _ = book.snapshot(1)
        return book
    }

    @Test("a lookup of a node in the mesh is answered with its record, which the view then holds; the id is not followed")
    func lookupOfLiveNode() throws {
        var book = Self.book()
        try book.declare(1, ViewInterest(ids: [Self.s]))
        #expect(book.totalInterests == 1)
        let deltaTaken = book.takeDeltas().first
        let delta = try #require(deltaTaken)
        #expect(delta.delta.changes.map(\.op) == [.join] && delta.delta.changes.first?.node?.id == Self.s)
        #expect(delta.answers == ViewInterest(ids: [Self.s]))
        #expect(book.lookups(of: 1).isEmpty && book.totalInterests == 0, "an answered lookup still costs")
        // The record is held: its leave reaches the session.
        book.record(.leave(Self.s))
        #expect(book.takeDeltas().first?.delta.changes.map(\.op) == [.leave])
    }

    @Test("a lookup of a node that has just left is answered with its record and its leave")
    func lookupOfDepartedNode() throws {
        let t0 = ContinuousClock.now
        var departed = DepartedNodes()
        var book = Self.book()
        // The sender says bye before the receiver's lookup arrives.
        book.record(.leave(Self.s))
        departed.remember(Self.record(Self.s, "mesh-send", topics: ["once"]), at: t0)
        #expect(book.takeDeltas().isEmpty, "session 1 never held the sender")
        try book.declare(1, ViewInterest(ids: [Self.s]))
        let answerTaken = book.takeDeltas(departed: { departed.record($0, at: t0 + .seconds(1)) }).first
        let answer = try #require(answerTaken)
        #expect(answer.delta.changes.map(\.op) == [.join, .leave])
        #expect(answer.delta.changes.first?.node?.name == "mesh-send" && answer.delta.changes.last?.id == Self.s)
        #expect(answer.delta.to == answer.delta.from + 1)
        #expect(answer.answers == ViewInterest(ids: [Self.s]))
        // Applied as a node applies it: nothing left held, the record seen joining.
        var topology = Topology()
        topology.nodes[Self.a] = Self.record(Self.a, "a")
        topology.version = answer.delta.from
        #expect(topology.apply(answer.delta) == .applied)
        #expect(topology.nodes.keys.sorted() == [Self.a])
        #expect(book.totalInterests == 0)

        // Long gone: the answer is empty, and still an answer.
        try book.declare(1, ViewInterest(ids: [Self.s]))
        let lateTaken = book.takeDeltas(departed: { departed.record($0, at: t0 + DepartedNodes.memory) }).first
        let late = try #require(lateTaken)
        #expect(late.delta.changes.isEmpty && late.answers == ViewInterest(ids: [Self.s]))
    }

    @Test("a sender that joins and leaves in the lookup's own batch is told once")
    func joinAndLeaveInOneBatch() throws {
        let t0 = ContinuousClock.now
        var book = Self.book()
        let quick = "00000000000000ff"
        try book.declare(1, ViewInterest(ids: [quick]))
        book.record(.join(Self.record(quick, "quick")))
        book.record(.leave(quick))
        var departed = DepartedNodes()
        departed.remember(Self.record(quick, "quick"), at: t0)
        let answerTaken = book.takeDeltas(departed: { departed.record($0, at: t0) }).first
        let answer = try #require(answerTaken)
        #expect(answer.delta.changes.map(\.op) == [.join, .leave])
    }

    @Test("a flood of made-up ids is answered with nothing and leaves nothing behind")
    func madeUpIDs() throws {
        var book = Self.book()
        for round in 0..<20 {
            let ids = Set((0..<500).map { Self.id(0x1000 + round * 500 + $0) })
            try book.declare(1, ViewInterest(ids: ids))
            #expect(book.totalInterests == 500, "pending lookups are counted while they wait")
            let answerTaken = book.takeDeltas().first
            let answer = try #require(answerTaken)
            #expect(answer.delta.changes.isEmpty && answer.answers?.ids == ids)
        }
        #expect(book.totalInterests == 0 && book.lookups(of: 1).isEmpty)
        // 10,000 made-up ids over the session's life, more than one session may follow at once.
        try book.declare(1, ViewInterest(topics: ["still-room"]))
        #expect(book.totalInterests == 1)
    }

    @Test("a lookup in register is answered in the welcome when the node is there, else by the next delta")
    func lookupsAtRegister() throws {
        let t0 = ContinuousClock.now
        var book = ViewBook()
        let gone = "00000000000000dd"
        book.record(.join(Self.record(Self.s, "mesh-send")))
        book.open(1, own: Self.a, interest: ViewInterest(ids: [Self.s, gone]))
        book.record(.join(Self.record(Self.a, "a")))
        let welcomeTaken = book.snapshot(1)
        let welcome = try #require(welcomeTaken)
        #expect(welcome.nodes.map(\.id) == [Self.a, Self.s])
        #expect(book.lookups(of: 1) == [gone])
        var departed = DepartedNodes()
        departed.remember(Self.record(gone, "gone"), at: t0)
        let nextTaken = book.takeDeltas(departed: { departed.record($0, at: t0) }).first
        let next = try #require(nextTaken)
        #expect(next.delta.from == welcome.version && next.delta.changes.map(\.op) == [.join, .leave])
        #expect(book.totalInterests == 0)
    }
}
