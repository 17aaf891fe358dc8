import Testing

@testable import Mesh

/// A session with one of several coordinators that the node does not route by (PROTOCOL.md
/// §7.2): registered as a standby, and turned into the routing one by `route` on failover.
@Suite("Coordinator session: standby and route (state machine, manual clock)")
struct StandbySessionTests {
    static func standbyWelcome() -> ControlMessage {
        ControlMessage(
            .welcome, topology: TopologySnapshot(version: 0, nodes: [record(SessionDriver.selfID, "me", topics: ["own"])]), standby: true)
    }

    @Test("a standby registers as one; its welcome registers the node without a topology; route asks for it and its welcome routes")
    func standbyThenRoute() {
        var driver = SessionDriver(partialView: true, keepsTrying: true, standby: true)
        driver.handle(.interestAdded(ViewInterest(topics: ["jobs"])))
        let started = driver.handle(.start)
        let first = driver.attempt
        #expect(started.contains(.register(first, view: nil, interest: nil, standby: true)), "\(started)")
        driver.handle(.connected(first))
        var actions = driver.handle(.received(first, Self.standbyWelcome()))
        #expect(driver.session.isRegistered && driver.session.isStandby && !driver.session.isRouting)
        #expect(actions.contains(.registered))
        #expect(!actions.contains { if case .topologyChanged = $0 { true } else { false } }, "a standby's welcome is routed by no one")
        #expect(!actions.contains { if case .send = $0 { true } else { false } })
        #expect(!driver.session.hasPartialView)
        // More interest is not sent to a standby; it is kept for the route.
        #expect(driver.handle(.interestAdded(ViewInterest(topics: ["more"]))).isEmpty)
        // Heartbeats still go out.
        #expect(driver.advance(by: 1).heartbeats == 1)

        // The node fails over to it.
        let wanted = ViewInterest(topics: ["jobs", "more"])
        actions = driver.handle(.route(true))
        #expect(actions == [.send(first, ControlMessage(.route, view: .partial, interest: wanted))])
        let peer = record("00000000000000bb", "peer", topics: ["jobs"])
        actions = driver.handle(.received(first, welcome(nodes: [peer], version: 4, view: .partial)))
        #expect(driver.session.isRouting)
        #expect(driver.session.hasPartialView)
        #expect(driver.session.topology.nodes[peer.id] == peer)
        #expect(actions.contains(.topologyChanged(joined: [], changes: .everything)))
        #expect(actions.contains(.acknowledge(wanted)))
        #expect(!actions.contains(.registered), "the build was over already")
        // A second welcome on a routing session is ignored.
        #expect(driver.handle(.received(first, welcome(nodes: [], version: 9))).isEmpty)
        #expect(driver.session.topology.version == 4)
    }

    @Test("asked to route while still connecting, a standby sends route as soon as its welcome comes")
    func routeWhileConnecting() {
        var driver = SessionDriver(keepsTrying: true, standby: true)
        driver.handle(.start)
        let first = driver.attempt
        #expect(driver.handle(.route(true)).isEmpty)
        let actions = driver.handle(.received(first, Self.standbyWelcome()))
        #expect(actions.contains(.send(first, ControlMessage(.route))))
        #expect(driver.session.isStandby)
        driver.handle(.received(first, welcome(nodes: [], version: 2)))
        #expect(driver.session.isRouting)
    }

    @Test("a coordinator that ignores standby (older) welcomes with its topology: the session routes as before")
    func olderCoordinator() {
        var driver = SessionDriver(keepsTrying: true, standby: true)
        driver.handle(.start)
        let actions = driver.handle(.received(driver.attempt, welcome(nodes: [], version: 3)))
        #expect(driver.session.isRouting)
        #expect(actions.contains(.topologyChanged(joined: [], changes: .everything)))
        #expect(driver.handle(.route(true)).isEmpty, "nothing to ask: it sends its topology already")
    }

    @Test("failover to a standby: the old view is routed while its route is answered; nodes the new view lacks stay for the grace")
    func failoverKeepsOldView() {
        var driver = SessionDriver(keepsTrying: true, standby: true)
        driver.handle(.start)
        let first = driver.attempt
        driver.handle(.received(first, Self.standbyWelcome()))
        let a = record("00000000000000bb", "a")
        let b = record("00000000000000cc", "b")
        let before = [a.id: a, b.id: b]
        _ = driver.session.takeOver(from: before, now: driver.now)
        driver.handle(.route(true))
        // Until the answer, the node routes with the old view (and its own record).
        #expect(Set(driver.session.routingTopology.nodes.keys) == [SessionDriver.selfID, a.id, b.id])
        driver.handle(.received(first, welcome(nodes: [a], version: 5)))
        #expect(driver.session.provisional.keys.sorted() == [b.id])
        #expect(driver.session.routingRecord(b.id) == b)
        let expired = driver.advance(by: 5)
        #expect(expired.lines(.info).contains { $0.hasSuffix("no longer routing to them: b") }, "\(expired)")
        #expect(driver.session.routingRecord(b.id) == nil)
        #expect(driver.session.routingRecord(a.id) == a)
    }

    @Test("a standby lost and back registers as a standby again; one no longer routed by registers as a standby next time")
    func reconnects() {
        var driver = SessionDriver(keepsTrying: true)
        driver.register()
        #expect(driver.session.isRouting)
        #expect(driver.handle(.route(false)).isEmpty)
        #expect(driver.session.isRouting, "the current session keeps what it has")
        driver.handle(.connectionClosed(driver.attempt, nil))
        let actions = driver.advance(by: 0.2)
        let again = driver.attempt
        #expect(actions.contains(.register(again, view: nil, interest: nil, standby: true)), "\(actions)")
        let back = driver.handle(.received(again, Self.standbyWelcome()))
        #expect(back.contains(.countReconnect))
        #expect(driver.session.isStandby)
    }
}
