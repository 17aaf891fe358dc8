import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// The coordinator's partial-view bookkeeping, as a value: changes in, per-session deltas out.
@Suite("ViewBook")
struct ViewBookTests {
    static func record(_ id: String, _ name: String, topics: [String] = [], services: [String] = []) -> NodeRecord {
        NodeRecord(id: id, name: name, host: "127.0.0.1", port: 1, topics: topics, services: services)
    }

    static let a = "000000000000000a"
    static let b = "000000000000000b"
    static let c = "000000000000000c"
    static let d = "000000000000000d"

    /// A book where session 1 is node a (following topic "t"), welcomed; b listens to "t", c to "u".
    static func started() -> ViewBook {
        var book = ViewBook()
        book.record(.join(record(b, "b", topics: ["t"])))
        book.record(.join(record(c, "c", topics: ["u"])))
        book.open(1, own: a, interest: ViewInterest(topics: ["t"]))
        book.record(.join(record(a, "a")))
        return book
    }

    @Test("a welcome holds the node's own record and what matches its interest, nothing else")
    func welcome() throws {
        var book = Self.started()
        let taken = book.snapshot(1)
        let snapshot = try #require(taken)
        #expect(snapshot.version == 1)
        #expect(snapshot.nodes.map(\.id) == [Self.a, Self.b])
        #expect(book.takeDeltas().isEmpty, "nothing pending after the welcome")
    }

    @Test("changes go only to the sessions they concern, each delta one version on")
    func filtering() throws {
        var book = Self.started()
        _ = book.snapshot(1)
        // An unrelated node joins and listens elsewhere: nothing for session 1.
        book.record(.join(Self.record(Self.d, "d", topics: ["v"])))
        book.record(.listen(Self.d, "w"))
        #expect(book.takeDeltas().isEmpty)
        // d starts listening to "t": it joins session 1's view whole.
        book.record(.listen(Self.d, "t"))
        var deltas = book.takeDeltas()
        #expect(deltas.count == 1)
        let first = try #require(deltas.first)
        #expect(first.session == 1 && first.delta.from == 1 && first.delta.to == 2 && first.answers == nil)
        #expect(first.delta.changes.map(\.op) == [.join])
        #expect(first.delta.changes.first?.node?.topics == ["t", "v", "w"])
        // A held node's unlisten and its own node's listen are sent; c's listen is not.
        book.record(.unlisten(Self.d, "w"))
        book.record(.listen(Self.a, "mine"))
        book.record(.listen(Self.c, "x"))
        deltas = book.takeDeltas()
        #expect(deltas.map(\.delta.from) == [2])
        #expect(deltas.first?.delta.changes == [.unlisten(Self.d, "w"), .listen(Self.a, "mine")])
        // Leaving: sent to the holders, and the record is no longer held.
        book.record(.leave(Self.b))
        book.record(.leave(Self.c))
        deltas = book.takeDeltas()
        #expect(deltas.first?.delta.changes == [.leave(Self.b)])
        #expect(book.views[1]?.held == [Self.a, Self.d])
    }

    @Test("an interest is answered after the batch with the matching records and an echo of what it asked")
    func declaring() throws {
        var book = Self.started()
        _ = book.snapshot(1)
        let asked = ViewInterest(services: ["add"], names: ["c"])
        try book.declare(1, asked)
        book.record(.join(Self.record(Self.d, "d", services: ["add"])))
        let deltas = book.takeDeltas()
        let answer = try #require(deltas.first)
        #expect(answer.answers == asked)
        #expect(answer.delta.from == 1 && answer.delta.to == 2)
        #expect(Set(answer.delta.changes.compactMap(\.node?.id)) == [Self.c, Self.d])
        #expect(answer.delta.changes.count == 2, "each record once: \(answer.delta.changes)")
        // Asking again for what it follows is answered with no changes, still one version on.
        try book.declare(1, ViewInterest(names: ["c"]))
        let next = book.takeDeltas().first
        let again = try #require(next)
        #expect(again.delta.changes.isEmpty && again.delta.from == 2 && again.delta.to == 3)
    }

    @Test("a sync snapshot takes the pending changes in and the numbering goes on from it")
    func syncSnapshot() throws {
        var book = Self.started()
        _ = book.snapshot(1)
        book.record(.listen(Self.b, "more"))
        let taken = book.snapshot(1)
        let snapshot = try #require(taken)
        #expect(snapshot.version == 2)
        #expect(snapshot.nodes.first { $0.id == Self.b }?.topics == ["more", "t"])
        #expect(book.takeDeltas().isEmpty)
        book.record(.unlisten(Self.b, "more"))
        #expect(book.takeDeltas().first?.delta.from == 2)
    }

    @Test("interests past the limit or with bad names are refused and change nothing")
    func limits() throws {
        var book = Self.started()
        _ = book.snapshot(1)
        let many = ViewInterest(topics: Set((0...ViewInterest.maximumCount).map { "topic-\($0)" }))
        #expect(throws: ViewBook.Rejection.tooManyInterests(limit: ViewInterest.maximumCount)) {
            try book.declare(1, many)
        }
        #expect(throws: ViewBook.Rejection.self) { try book.declare(1, ViewInterest(ids: ["not-an-id"])) }
        #expect(throws: ViewBook.Rejection.self) { try book.declare(1, ViewInterest(topics: [""])) }
        #expect(book.views[1]?.interest == ViewInterest(topics: ["t"]))
        // Exactly at the limit is fine.
        let atLimit = ViewInterest(topics: Set((1..<ViewInterest.maximumCount).map { "topic-\($0)" }))
        try book.declare(1, atLimit)
        #expect(book.views[1]?.interest.count == ViewInterest.maximumCount)
    }

    @Test("a closed session gets nothing more and is out of every index")
    func closing() {
        var book = Self.started()
        _ = book.snapshot(1)
        book.open(2, own: Self.d, interest: ViewInterest(topics: ["t"]))
        book.record(.join(Self.record(Self.d, "d")))
        _ = book.snapshot(2)
        book.close(1)
        book.record(.listen(Self.b, "again"))
        #expect(book.takeDeltas().map(\.session) == [2])
        #expect(book.views[1] == nil)
    }

    @Test("a join storm costs each session only its own records")
    func storm() {
        var book = ViewBook()
        let count = 300
        let ids = (0..<count).map { String(format: "%016x", $0 + 1) }
        for index in 0..<count {
            book.open(UInt64(index), own: ids[index], interest: ViewInterest(topics: ["t\((index + 1) % count)"]))
            book.record(.join(Self.record(ids[index], "swarm", topics: ["t\(index)"])))
            _ = book.snapshot(UInt64(index))
        }
        let total = (0..<count).reduce(0) { $0 + (book.views[UInt64($1)]?.held.count ?? 0) }
        #expect(total == 2 * count, "every session holds itself and the next node, nothing more")
    }
}

/// The partial view on the wire: the JSON docs/PROTOCOL.md §6.7 shows, byte for byte.
