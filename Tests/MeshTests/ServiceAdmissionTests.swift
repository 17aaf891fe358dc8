import Testing

@testable import Mesh

/// The provider's admission of service requests as a pure value: per-caller and total limits,
/// bytes counted until a request ends, and callers taking turns for the handler slots.
@Suite("Service admission")
struct ServiceAdmissionTests {
    typealias Admission = ServiceAdmission<String>

    static let limits = Admission.Limits(
        running: 4, runningPerCaller: 2, requests: 10, requestsPerCaller: 6, bytes: 100, bytesPerCaller: 40)

    @Test("one caller's slow requests take at most its share of the slots; another caller's request runs next")
    func aFloodingCallerLeavesSlotsForOthers() throws {
        var admission = Admission(limits: Self.limits)
        for index in 0..<6 { #expect(admission.admit("flood\(index)", bytes: 1, from: 1) == nil) }
        #expect(admission.admit("flood6", bytes: 1, from: 1) == .callerRequests(limit: 6))
        // The flooder gets its two slots and no more.
        #expect(admission.next()?.item == "flood0")
        #expect(admission.next()?.item == "flood1")
        #expect(admission.next() == nil)
        #expect(!admission.hasRunnable)
        // An honest caller arriving now runs at once.
        #expect(admission.admit("honest", bytes: 5, from: 2) == nil)
        let next = admission.next()
        let honest = try #require(next)
        #expect(honest.item == "honest" && honest.caller == 2)
        admission.finished(caller: honest.caller, bytes: honest.bytes)
        #expect(admission.held(by: 2) == (0, 0))
        // When a flood request ends, its slot goes to the flooder's next one.
        admission.finished(caller: 1, bytes: 1)
        #expect(admission.next()?.item == "flood2")
        #expect(admission.running == 2 && admission.requests == 5 && admission.waiting == 3)
    }

    @Test("bytes count while a request runs, not only while it waits; one request always fits an empty caller")
    func bytesCountUntilTheEnd() throws {
        var admission = Admission(limits: Self.limits)
        #expect(admission.admit("big", bytes: 30, from: 1) == nil)
        let first = admission.next()
        let big = try #require(first)
        #expect(admission.admit("second", bytes: 30, from: 1) == .callerBytes(held: 30, request: 30, limit: 40))
        admission.finished(caller: big.caller, bytes: big.bytes)
        #expect(admission.bytes == 0)
        // Larger than the per-caller limit, but the caller holds nothing: admitted.
        #expect(admission.admit("huge", bytes: 90, from: 1) == nil)
        #expect(admission.admit("tiny", bytes: 1, from: 1) == .callerBytes(held: 90, request: 1, limit: 40))
        // The node-wide byte limit holds for every caller.
        #expect(admission.admit("other", bytes: 20, from: 2) == .bytes(held: 90, request: 20, limit: 100))
        #expect(admission.admit("small", bytes: 10, from: 2) == nil)
    }

    @Test("the total request limit refuses a new caller once everyone together is at it")
    func totalRequests() {
        var admission = Admission(limits: Self.limits)
        for caller in UInt64(1)...5 {
            for _ in 0..<2 { #expect(admission.admit("r", bytes: 1, from: caller) == nil) }
        }
        #expect(admission.admit("late", bytes: 1, from: 6) == .requests(limit: 10))
        #expect(Admission.Refusal.requests(limit: 10).description.hasPrefix("busy: "))
    }

    @Test("callers take turns for free slots, in the order they became waiting")
    func turns() {
        var admission = Admission(limits: .init(running: 1, runningPerCaller: 1, requests: 100, requestsPerCaller: 100, bytes: 1000, bytesPerCaller: 1000))
        for index in 0..<3 { _ = admission.admit("a\(index)", bytes: 1, from: 1) }
        for index in 0..<3 { _ = admission.admit("b\(index)", bytes: 1, from: 2) }
        var order: [String] = []
        while let ticket = admission.next() {
            order.append(ticket.item)
            admission.finished(caller: ticket.caller, bytes: ticket.bytes)
        }
        #expect(order == ["a0", "b0", "a1", "b1", "a2", "b2"])
        #expect(admission.requests == 0 && admission.bytes == 0)
    }

    @Test("closing drops what waits and keeps the running requests' accounts until they end")
    func dropWaiting() throws {
        var admission = Admission(limits: Self.limits)
        for _ in 0..<3 { _ = admission.admit("r", bytes: 2, from: 1) }
        let next = admission.next()
        let running = try #require(next)
        admission.dropWaiting()
        #expect(admission.requests == 1 && admission.bytes == 2 && admission.next() == nil)
        admission.finished(caller: running.caller, bytes: running.bytes)
        #expect(admission.requests == 0 && admission.bytes == 0 && admission.running == 0)
    }

    @Test("a caller that left loses its waiting requests, keeps its running ones' accounts, and gives up its turn")
    func callerLeft() throws {
        var admission = Admission(limits: Self.limits)
        for _ in 0..<4 { _ = admission.admit("gone", bytes: 3, from: 1) }
        _ = admission.admit("stays", bytes: 1, from: 2)
        let next = admission.next()
        let running = try #require(next)
        #expect(running.caller == 1)
        #expect(admission.dropWaiting(of: 1) == 3)
        #expect(admission.held(by: 1) == (1, 3))
        #expect(admission.next()?.item == "stays")
        #expect(admission.next() == nil)
        admission.finished(caller: running.caller, bytes: running.bytes)
        #expect(admission.held(by: 1) == (0, 0) && admission.dropWaiting(of: 1) == 0)
    }

    @Test("limits of 0 are taken as 1, so a misconfiguration does not refuse everything")
    func sanitized() {
        let admission = Admission(limits: .init(running: 0, runningPerCaller: 0, requests: 0, requestsPerCaller: -3, bytes: 0, bytesPerCaller: 0))
        #expect(admission.limits == .init(running: 1, runningPerCaller: 1, requests: 1, requestsPerCaller: 1, bytes: 1, bytesPerCaller: 1))
    }
}
