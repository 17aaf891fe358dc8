import Foundation
import Testing

@testable import Mesh

/// The node side of peer lookups, as a value: one batch in flight, a bounded queue, nothing lasting.
@Suite("Peer lookups")
struct PeerLookupsTests {
    static func id(_ n: Int) -> String { String(format: "%016x", n) }

    @Test("one batch in flight; the rest go when it is answered, at most a batch at a time")
    func batching() throws {
        let t0 = ContinuousClock.now
        var lookups = PeerLookups()
        #expect(lookups.request(Self.id(1), now: t0, canSend: true, room: 10_000) == .send([Self.id(1)]))
        #expect(lookups.request(Self.id(1), now: t0, canSend: true, room: 10_000) == .waiting, "asked twice")
        for n in 2...600 { #expect(lookups.request(Self.id(n), now: t0, canSend: true, room: 10_000) == .waiting) }
        #expect(lookups.pending == 600)
        let secondTaken = lookups.answered([Self.id(1)], now: t0, canSend: true, room: 10_000)
        let second = try #require(secondTaken)
        #expect(second.count == PeerLookups.maximumBatch && second.contains(Self.id(2)))
        let thirdTaken = lookups.answered(second, now: t0, canSend: true, room: 10_000)
        let third = try #require(thirdTaken)
        #expect(third.count == PeerLookups.maximumBatch)
        let fourthTaken = lookups.answered(third, now: t0, canSend: true, room: 50)
        let fourth = try #require(fourthTaken)
        #expect(fourth.count == 50, "a batch stays within the room the interest limit leaves")
        #expect(lookups.asked == 1 + 2 * PeerLookups.maximumBatch + 50)
    }

    @Test("a full queue refuses, and counts; lookups a hello no longer waits for are dropped unasked")
    func bounds() throws {
        let t0 = ContinuousClock.now
        var lookups = PeerLookups()
        _ = lookups.request(Self.id(0), now: t0, canSend: true, room: 10_000)
        for n in 1...PeerLookups.maximumQueued {
            #expect(lookups.request(Self.id(n), now: t0, canSend: true, room: 10_000) == .waiting)
        }
        #expect(lookups.request(Self.id(99_999), now: t0, canSend: true, room: 10_000) == .refused)
        #expect(lookups.refused == 1 && lookups.pending == 1 + PeerLookups.maximumQueued)
        // Five seconds on, the queued ones are stale; a new one is taken and, once the unanswered
        // batch is given up, sent.
        let later = t0 + PeerLookups.patience
        #expect(lookups.request(Self.id(123_456), now: later, canSend: true, room: 10_000) == .send([Self.id(123_456)]))
        #expect(lookups.pending == 1 && lookups.expired == PeerLookups.maximumQueued)
    }

    @Test("lookups wait while the coordinator is away and go, unanswered ones again, once it is back")
    func reconnect() throws {
        let t0 = ContinuousClock.now
        var lookups = PeerLookups()
        #expect(lookups.request(Self.id(1), now: t0, canSend: true, room: 10_000) == .send([Self.id(1)]))
        lookups.connectionLost(now: t0)
        #expect(lookups.request(Self.id(2), now: t0, canSend: false, room: 10_000) == .waiting)
        #expect(lookups.next(now: t0, canSend: false, room: 10_000) == nil)
        #expect(lookups.next(now: t0, canSend: true, room: 10_000) == [Self.id(1), Self.id(2)])
    }
}
