import Testing

@testable import Mesh

/// Drives a ``CoordinatorSession`` the way the node does, with a clock moved by hand: timers
/// fire when the test moves time past their deadline (or late, as a stalled loop would run them).
struct SessionDriver {
    typealias Instant = ContinuousClock.Instant
    var session: CoordinatorSession
    let start: Instant
    private(set) var now: Instant
    /// Every action so far, in order.
    private(set) var history: [CoordinatorSession.Action] = []

    init(
        partialView: Bool = false, heartbeatInterval: Duration = .seconds(1), connectTimeout: Duration = .seconds(5),
        keepsTrying: Bool = false, standby: Bool = false
    ) {
        var configuration = CoordinatorSession.Configuration(
            coordinator: "127.0.0.1:6374", nodeID: SessionDriver.selfID, connectTimeout: connectTimeout,
            heartbeatInterval: heartbeatInterval, partialView: partialView)
        configuration.keepsTrying = keepsTrying
        configuration.standby = standby
        session = CoordinatorSession(configuration: configuration)
        start = .now
        now = start
    }

    static let selfID = "00000000000000aa"

    /// The instant `seconds` after the driver's start.
    func at(_ seconds: Double) -> Instant { start + .milliseconds(Int(seconds * 1000)) }

    /// Seconds since the driver's start.
    var elapsed: Double { seconds(start.duration(to: now)) }

    /// Feeds one event at the current time.
    @discardableResult
    mutating func handle(_ event: CoordinatorSession.Event) -> [CoordinatorSession.Action] {
        let actions = session.handle(event, now: now)
        history += actions
        return actions
    }

    /// Moves time to `instant`, firing every timer due on the way, on time and in deadline order.
    @discardableResult
    mutating func advance(to instant: Instant) -> [CoordinatorSession.Action] {
        var actions: [CoordinatorSession.Action] = []
        while let (timer, due) = session.armed.filter({ $0.value <= instant }).min(by: { $0.value < $1.value }) {
            now = max(now, due)
            actions += handle(.timerFired(timer, due: due))
        }
        now = max(now, instant)
        return actions
    }

    /// Moves time forward by `seconds`, firing timers on the way.
    @discardableResult
    mutating func advance(by seconds: Double) -> [CoordinatorSession.Action] {
        advance(to: now + .milliseconds(Int(seconds * 1000)))
    }

    /// A stalled loop: nothing runs for `seconds`; then every timer that fell due fires at once, late.
    @discardableResult
    mutating func stall(for seconds: Double) -> [CoordinatorSession.Action] {
        now = now + .milliseconds(Int(seconds * 1000))
        var actions: [CoordinatorSession.Action] = []
        while let (timer, due) = session.armed.filter({ $0.value <= now }).min(by: { $0.value < $1.value }) {
            actions += handle(.timerFired(timer, due: due))
        }
        return actions
    }

    /// The current attempt (fails the test when there is none).
    var attempt: CoordinatorSession.Attempt {
        session.phase.attempt ?? CoordinatorSession.Attempt(number: 0)
    }

    /// Starts, and has the first attempt welcomed with `nodes` at `version`.
    mutating func register(nodes: [NodeRecord] = [], version: UInt64 = 1, view: TopologyView? = nil) {
        handle(.start)
        handle(.connected(attempt))
        handle(.received(attempt, welcome(nodes: nodes, version: version, view: view)))
    }
}

func record(_ id: String, _ name: String, topics: [String] = []) -> NodeRecord {
    NodeRecord(id: id, name: name, host: "127.0.0.1", port: 4000, topics: topics)
}

func welcome(nodes: [NodeRecord], version: UInt64, view: TopologyView? = nil) -> ControlMessage {
    let own = record(SessionDriver.selfID, "me", topics: ["own"])
    return ControlMessage(.welcome, topology: TopologySnapshot(version: version, nodes: [own] + nodes), view: view)
}

func delta(_ from: UInt64, _ to: UInt64, _ changes: [TopologyChange], interest: ViewInterest? = nil) -> ControlMessage {
    ControlMessage(.delta, delta: TopologyDelta(from: from, to: to, changes: changes), interest: interest)
}

extension [CoordinatorSession.Action] {
    /// The log lines among the actions, at `level`.
    func lines(_ level: MeshLogger.Level) -> [String] {
        compactMap { if case .log(level, let line) = $0 { return line } else { return nil } }
    }

    /// The timers the actions arm, with their deadlines.
    var scheduled: [(CoordinatorSession.Timer, ContinuousClock.Instant)] {
        compactMap { if case .schedule(let timer, let due) = $0 { return (timer, due) } else { return nil } }
    }

    var heartbeats: Int { count { if case .sendHeartbeat = $0 { return true } else { return false } } }
    var dials: [CoordinatorSession.Attempt] { compactMap { if case .dial(let attempt) = $0 { return attempt } else { return nil } } }
}

@Suite("Coordinator session (state machine, manual clock)")
struct CoordinatorSessionTests {
    typealias Action = CoordinatorSession.Action

    // MARK: Registration

    @Test("start dials and registers; the welcome takes the topology, resumes the build, arms liveness and the pump")
    func registrationSucceeds() {
        var driver = SessionDriver()
        let started = driver.handle(.start)
        let first = CoordinatorSession.Attempt(number: 1)
        #expect(started.contains(.dial(first)))
        #expect(started.contains(.register(first, view: nil, interest: nil, standby: false)))
        // A welcome handled seconds late (a busy process) must not leave the coordinator without beats.
        #expect(
            started.firstIndex(of: .pumpHeartbeats(first)).map { $0 > started.firstIndex(of: .register(first, view: nil, interest: nil, standby: false))! } == true,
            "the heartbeat pump does not cover the connection from the register on")
        #expect(started.contains(.schedule(.registration, at: driver.at(5))))
        #expect(started.contains(.schedule(.heartbeat, at: driver.at(1))))
        #expect(driver.session.armed[.welcome] == nil, "the build's own deadline covers the first welcome")
        #expect(!driver.session.isRegistered)

        driver.advance(by: 0.2)
        driver.handle(.connected(first))
        #expect(driver.session.phase == .connecting(first, handshakeDone: true))
        let peer = record("00000000000000bb", "peer", topics: ["t"])
        let actions = driver.handle(.received(first, welcome(nodes: [peer], version: 7)))
        #expect(driver.session.isRegistered)
        #expect(driver.session.topology.version == 7)
        #expect(driver.session.topology.nodes[peer.id] == peer)
        #expect(actions.contains(.registered))
        #expect(actions.contains(.pumpHeartbeats(first)))
        #expect(actions.contains(.topologyChanged(joined: [], changes: .everything)))
        #expect(actions.contains(.cancel(.registration)))
        #expect(actions.contains(.schedule(.liveness, at: driver.at(0.2 + 5))))
        #expect(actions.lines(.debug) == ["registered as \(SessionDriver.selfID) with the coordinator at 127.0.0.1:6374"])
        #expect(!actions.contains(.countReconnect))
        // The build's deadline passing later changes nothing.
        for second in 1...5 {
            let later = driver.advance(to: driver.at(Double(second) + 0.1))
            #expect(later.allSatisfy { if case .registrationFailed = $0 { false } else { true } })
            driver.handle(.received(first, ControlMessage(.heartbeat)))
        }
        #expect(driver.session.isRegistered)
    }

    @Test("a rejected registration fails the build with the coordinator's reason and ends the session")
    func registrationRejected() {
        var driver = SessionDriver()
        driver.handle(.start)
        let attempt = driver.attempt
        let actions = driver.handle(.received(attempt, ControlMessage(.rejected, reason: "duplicate node id")))
        #expect(actions.contains(.registrationFailed(.registrationRejected(reason: "duplicate node id"))))
        #expect(actions.contains(.close(attempt)))
        #expect(driver.session.phase == .closed)
        #expect(driver.session.armed.isEmpty, "timers left armed: \(driver.session.armed)")
        #expect(driver.advance(by: 10).isEmpty)
    }

    @Test("no welcome within the connect timeout fails the build as unreachable")
    func registrationTimesOut() {
        var driver = SessionDriver()
        driver.handle(.start)
        let attempt = driver.attempt
        let actions = driver.advance(to: driver.at(5))
        #expect(actions.contains(.close(attempt)))
        #expect(actions.contains(.registrationFailed(.coordinatorUnreachable(address: "127.0.0.1:6374", reason: "no registration within 5.0 s"))))
        #expect(driver.session.phase == .closed)
        #expect(driver.session.armed.isEmpty)
    }

    @Test("a handshake the coordinator closes mid-way is retried with backoff within the build's deadline; other failures fail at once")
    func registrationRetriesClosedHandshake() {
        var driver = SessionDriver()
        driver.handle(.start)
        let busy = ConnectionError.handshake(.closedDuringHandshake)
        var actions = driver.handle(.connectionClosed(driver.attempt, busy))
        #expect(driver.session.phase == .waiting)
        #expect(actions.contains(.schedule(.reconnect, at: driver.at(0.1))))
        #expect(!actions.contains { if case .registrationFailed = $0 { true } else { false } })
        #expect(actions.lines(.debug).isEmpty && actions.lines(.warning).isEmpty, "a retry during the build is quiet")
        actions = driver.advance(to: driver.at(0.1))
        #expect(actions.dials == [CoordinatorSession.Attempt(number: 2)])
        driver.handle(.connectionClosed(driver.attempt, busy))
        #expect(driver.session.armed[.reconnect] == driver.at(0.3), "the second wait is 200 ms")
        // Still nothing by the deadline: the error names the last attempt's failure.
        actions = driver.advance(to: driver.at(5))
        let reason = "no registration within 5.0 s (the last attempt: \(busy))"
        #expect(actions.contains(.registrationFailed(.coordinatorUnreachable(address: "127.0.0.1:6374", reason: reason))))

        // Unanswered or evicted handshakes are a busy coordinator too (a join storm): retried.
        for failure in [ConnectionError.handshake(.timedOut(seconds: 5)), .handshake(.evicted(limit: 1024))] {
            var storm = SessionDriver()
            storm.handle(.start)
            actions = storm.handle(.connectionClosed(storm.attempt, failure))
            #expect(storm.session.phase == .waiting, "\(failure)")
            #expect(actions.contains(.schedule(.reconnect, at: storm.at(0.1))), "\(failure)")
            #expect(!actions.contains { if case .registrationFailed = $0 { true } else { false } }, "\(failure)")
            #expect(
                MeshError(connectingTo: "127.0.0.1:6374", failure: failure)
                    == .coordinatorUnreachable(address: "127.0.0.1:6374", reason: failure.description))
        }

        // A wrong key is not retried.
        var other = SessionDriver()
        other.handle(.start)
        actions = other.handle(.connectionClosed(other.attempt, .handshake(.rejectedByPeer)))
        #expect(actions.contains(.registrationFailed(MeshError(connectingTo: "127.0.0.1:6374", failure: .handshake(.rejectedByPeer)))))
        #expect(other.session.phase == .closed)
        #expect(other.session.armed.isEmpty)
    }

    @Test("one of several coordinators: failures during the build are retried, the deadline reports but does not end the session, and a later welcome registers")
    func severalCoordinatorsKeepTrying() {
        var driver = SessionDriver(keepsTrying: true)
        driver.handle(.start)
        // Refused at once (that coordinator is down): retried, not a failed build.
        var actions = driver.handle(.connectionClosed(driver.attempt, .socket(.failed("connect", 111))))
        #expect(!actions.contains { if case .registrationFailed = $0 { true } else { false } })
        #expect(driver.session.phase == .waiting)
        // The deadline: reported (the node decides whether every coordinator failed), and dialling goes on.
        actions = driver.advance(to: driver.at(5))
        #expect(actions.contains { if case .registrationFailed(.coordinatorUnreachable) = $0 { true } else { false } })
        #expect(driver.session.phase != .closed, "the session ended at the build's deadline")
        #expect(!driver.session.armed.isEmpty)
        actions = driver.advance(by: 10)
        #expect(!actions.dials.isEmpty, "no more dialling after the build's deadline")
        // An attempt with no welcome is given up by its own deadline, then dialled again.
        if case .connecting = driver.session.phase {
            #expect(driver.session.armed[.welcome] != nil, "an attempt after the deadline has no welcome deadline")
        }
        // It comes back: registered, and no second `registered` or `registrationFailed`.
        while driver.session.phase == .waiting { driver.advance(by: 0.5) }
        let attempt = driver.attempt
        driver.handle(.connected(attempt))
        actions = driver.handle(.received(attempt, welcome(nodes: [record("00000000000000bb", "peer")], version: 3)))
        #expect(driver.session.isRegistered)
        #expect(driver.session.topology.nodes["00000000000000bb"] != nil)
        #expect(!actions.contains(CoordinatorSession.Action.registered), "the build was already over")
    }

    @Test("taking over from another coordinator's session keeps the nodes it lacks as provisional for the grace, until they appear or the grace ends")
    func takeOverKeepsMissingNodes() {
        var driver = SessionDriver(keepsTrying: true)
        let a = record("00000000000000a1", "a")
        let b = record("00000000000000b1", "b")
        driver.register(nodes: [a], version: 1)
        let before = [a.id: a, b.id: b, SessionDriver.selfID: record(SessionDriver.selfID, "self")]
        let actions = driver.session.takeOver(from: before, now: driver.now)
        #expect(actions == [.schedule(.grace, at: driver.now + CoordinatorSession.reregistrationGrace)])
        #expect(driver.session.routingRecord(b.id) != nil, "a node the other view held is dropped at once")
        #expect(driver.session.provisional[SessionDriver.selfID] == nil, "its own record is never provisional")
        // Nothing missing: nothing to keep.
        #expect(driver.session.takeOver(from: [a.id: a], now: driver.now).isEmpty)
        // When the grace ends without it appearing, it is gone.
        driver.advance(by: 6)
        #expect(driver.session.routingRecord(b.id) == nil)
    }

    @Test("closing during the build fails it as closed instead of leaving it waiting")
    func closeDuringRegistration() {
        var driver = SessionDriver()
        driver.handle(.start)
        let attempt = driver.attempt
        let actions = driver.handle(.close)
        #expect(actions.contains(.leave(attempt)))
        #expect(actions.contains(.registrationFailed(.closed)))
        #expect(driver.session.armed.isEmpty)
    }

    // MARK: Deltas

    @Test("a delta that follows on is applied; one already known changes nothing; a gap asks for a full copy")
    func deltas() {
        var driver = SessionDriver()
        driver.register(version: 3)
        let attempt = driver.attempt
        let peer = record("00000000000000bb", "peer")

        var actions = driver.handle(.received(attempt, delta(3, 4, [.join(peer)])))
        var joined = TopologyChanges()
        joined.add(peer)
        #expect(actions == [.topologyChanged(joined: [peer], changes: joined)])
        #expect(driver.session.topology.version == 4)
        #expect(driver.session.topology.nodes[peer.id] == peer)

        actions = driver.handle(.received(attempt, delta(3, 4, [.join(peer)])))
        #expect(actions.isEmpty, "an old delta did something: \(actions)")

        actions = driver.handle(.received(attempt, delta(6, 7, [.leave(peer.id)])))
        #expect(actions.contains(.send(attempt, ControlMessage(.sync))))
        #expect(actions.lines(.debug) == ["missed a topology version (have 4, got 6→7); asking for a full copy"])
        #expect(driver.session.topology.version == 4, "a delta past a gap was applied")
        #expect(driver.session.topology.nodes[peer.id] != nil)

        // The full copy answers the sync.
        let copy = ControlMessage(.topology, topology: TopologySnapshot(version: 7, nodes: []))
        actions = driver.handle(.received(attempt, copy))
        #expect(actions == [.topologyChanged(joined: [], changes: .everything)])
        #expect(driver.session.topology.version == 7 && driver.session.topology.nodes.isEmpty)

        // A delta answering an interest acknowledges it, applied or not.
        let wanted = ViewInterest(topics: ["t"])
        actions = driver.handle(.received(attempt, delta(7, 7, [], interest: wanted)))
        #expect(actions == [.acknowledge(wanted)])
    }

    @Test("a delta before the welcome, or from a connection given up, is ignored")
    func staleDeltas() {
        var driver = SessionDriver()
        driver.handle(.start)
        let first = driver.attempt
        #expect(driver.handle(.received(first, delta(0, 1, [.join(record("00000000000000bb", "b"))]))).isEmpty)
        driver.handle(.received(first, welcome(nodes: [], version: 1)))
        driver.handle(.connectionClosed(first, nil))
        driver.advance(by: 0.1)
        #expect(driver.attempt != first)
        #expect(driver.handle(.received(first, delta(1, 2, [.leave(SessionDriver.selfID)]))).isEmpty)
        #expect(driver.handle(.connectionClosed(first, nil)).isEmpty, "a second close of the old attempt counted")
    }

    // MARK: Heartbeats

    @Test("heartbeats go out once an interval while registered; the tick keeps running, silent, while disconnected")
    func heartbeatSchedule() {
        var driver = SessionDriver()
        driver.handle(.start)
        #expect(driver.advance(to: driver.at(0.9)).heartbeats == 0)
        driver.handle(.received(driver.attempt, welcome(nodes: [], version: 1)))
        var beatTimes: [Double] = []
        for second in 1...4 {
            let actions = driver.advance(to: driver.at(Double(second)))
            beatTimes += Array(repeating: driver.elapsed, count: actions.heartbeats)
            driver.handle(.received(driver.attempt, ControlMessage(.heartbeat)))
        }
        #expect(beatTimes == [1.0, 2.0, 3.0, 4.0], "beats at \(beatTimes)")
        #expect(driver.history.contains(.sendHeartbeat(driver.attempt)))

        driver.handle(.connectionClosed(driver.attempt, nil))
        // While it retries, the tick is still armed but sends nothing.
        for _ in 0..<3 {
            let actions = driver.advance(by: 1)
            #expect(actions.heartbeats == 0)
            #expect(driver.session.armed[.heartbeat] != nil)
            for attempt in actions.dials { driver.handle(.connectionClosed(attempt, .socket(.failed("connect", 111)))) }
        }
    }

    // MARK: Losing the coordinator

    @Test("coordinator lost: warning, backoff 100, 200, 400, 800 ms then 1 s, reconnect, register again, interests re-declared")
    func lossBackoffAndReregistration() {
        var driver = SessionDriver(partialView: true)
        driver.handle(.interestAdded(ViewInterest(topics: ["before"])))
        driver.handle(.start)
        #expect(driver.history.contains(.register(driver.attempt, view: .partial, interest: ViewInterest(topics: ["before"]), standby: false)))
        let peer = record("00000000000000bb", "peer", topics: ["before"])
        driver.handle(.received(driver.attempt, welcome(nodes: [peer], version: 1, view: .partial)))
        #expect(driver.history.contains(.acknowledge(ViewInterest(topics: ["before"]))))
        #expect(driver.session.hasPartialView)
        // Declared while registered: sent at once.
        var actions = driver.handle(.interestAdded(ViewInterest(services: ["svc"])))
        #expect(actions == [.send(driver.attempt, ControlMessage(.interest, interest: ViewInterest(services: ["svc"])))])

        driver.advance(by: 2)
        let lostAt = driver.elapsed
        actions = driver.handle(.connectionClosed(driver.attempt, .socket(.disconnected("recv: Connection reset by peer"))))
        #expect(!driver.session.isRegistered)
        #expect(actions.contains(.pumpHeartbeats(nil)))
        #expect(actions.contains(.releaseInterestWaiters))
        #expect(actions.contains(.cancel(.liveness)))
        let warnings = actions.lines(.warning)
        #expect(warnings.count == 1)
        #expect(warnings.first?.hasPrefix("lost the coordinator at 127.0.0.1:6374 (") == true)
        #expect(warnings.first?.hasSuffix("); keeping the last topology (2 node(s)) and retrying") == true)
        #expect(driver.session.topology.nodes.count == 2, "the last topology was dropped")

        // Declared while away: not sent now, carried by the next register.
        #expect(driver.handle(.interestAdded(ViewInterest(topics: ["away"]))).isEmpty)

        // Every attempt fails for a while: the waits double from 100 ms up to 1 s.
        var waits: [Int] = []
        var failedAt = driver.now
        for _ in 0..<7 {
            let due = driver.session.armed[.reconnect]!
            waits.append(Int(seconds(failedAt.duration(to: due)) * 1000 + 0.5))
            let dialled = driver.advance(to: due).dials
            #expect(dialled.count == 1)
            let lines = driver.handle(.connectionClosed(dialled[0], .socket(.failed("connect", 111))))
            #expect(lines.lines(.warning).isEmpty, "a retry logged a warning")
            #expect(lines.lines(.debug).count == 1)
            failedAt = driver.now
        }
        #expect(waits == [100, 200, 400, 800, 1000, 1000, 1000])

        // The coordinator is back: the next attempt registers with everything the node follows.
        let due = driver.session.armed[.reconnect]!
        actions = driver.advance(to: due)
        let attempt = driver.attempt
        let everything = ViewInterest(topics: ["before", "away"], services: ["svc"])
        #expect(actions.contains(.register(attempt, view: .partial, interest: everything, standby: false)))
        #expect(actions.contains(.schedule(.welcome, at: due + .seconds(5))))
        // Declared between the register and the welcome: asked for right after the welcome.
        driver.handle(.interestAdded(ViewInterest(names: ["late"])))
        driver.advance(by: 0.05)
        actions = driver.handle(.received(attempt, welcome(nodes: [], version: 1, view: .partial)))
        #expect(actions.contains(.send(attempt, ControlMessage(.interest, interest: ViewInterest(names: ["late"])))))
        #expect(actions.contains(.acknowledge(everything)))
        #expect(actions.contains(.countReconnect))
        #expect(!actions.contains(.registered), "the build was resumed twice")
        let back = actions.lines(.info)
        #expect(back.count == 1)
        let outage = String(format: "%.3f s", driver.elapsed - lostAt)
        #expect(back.first == "coordinator at 127.0.0.1:6374 is back after \(outage); registered again with 1 topic(s)")

        // A later loss and return counts again, and the waits start over at 100 ms.
        actions = driver.handle(.connectionClosed(attempt, nil))
        #expect(actions.contains(.schedule(.reconnect, at: driver.now + .milliseconds(100))))
    }

    @Test("after a loss, a welcome that does not come within the connect timeout is given up as a timeout and retried")
    func welcomeTimeoutAfterLoss() {
        var driver = SessionDriver()
        driver.register()
        driver.handle(.connectionClosed(driver.attempt, nil))
        driver.advance(by: 0.1)
        let attempt = driver.attempt
        let actions = driver.advance(by: 5)
        #expect(actions.contains(.close(attempt)))
        let lines = actions.lines(.debug)
        #expect(lines == ["coordinator still unreachable: timeout: no welcome from the coordinator within 5.000 s (the handshake did not finish)"])
        #expect(driver.session.phase == .waiting)
    }

    @Test("a rejected register after a loss (the old session not yet evicted) is logged and retried")
    func rejectedAfterLoss() {
        var driver = SessionDriver()
        driver.register()
        driver.handle(.connectionClosed(driver.attempt, nil))
        driver.advance(by: 0.1)
        let attempt = driver.attempt
        let actions = driver.handle(.received(attempt, ControlMessage(.rejected, reason: "duplicate node id")))
        #expect(actions.lines(.error) == ["the coordinator rejected this node: duplicate node id"])
        #expect(actions.contains(.close(attempt)))
        #expect(driver.session.phase == .waiting)
        #expect(driver.advance(by: 0.2).dials.count == 1)
    }

    // MARK: A coordinator out of room for partial views

    /// The coordinator's rejection when all partial views together are at `maximumInterests` (PROTOCOL.md §6.7).
    static func sharedLimit(_ message: String) -> String {
        "\(message): the coordinator's partial views already follow the most topics, services, names and ids it keeps"
            + " for all nodes together (100000, maximumInterests); register with the full view, or follow less"
    }

    @Test("a partial view refused at register for the coordinator's shared limit: the build goes on with the full view, with a warning")
    func sharedLimitAtRegister() {
        var driver = SessionDriver(partialView: true)
        driver.handle(.interestAdded(ViewInterest(topics: ["jobs"])))
        driver.handle(.start)
        let first = driver.attempt
        #expect(driver.history.contains(.register(first, view: .partial, interest: ViewInterest(topics: ["jobs"]), standby: false)))
        let actions = driver.handle(.received(first, ControlMessage(.rejected, reason: Self.sharedLimit("register"))))
        #expect(!actions.contains { if case .registrationFailed = $0 { true } else { false } }, "the build failed: \(actions)")
        #expect(actions.contains(.close(first)))
        #expect(actions.lines(.warning).count == 1)
        #expect(actions.lines(.warning).first?.contains("keeps no more partial views") == true)
        #expect(actions.lines(.warning).first?.contains("registering again with the full view") == true)
        // The retry asks for the full view, without interests, and its welcome resumes the build.
        let retry = driver.advance(by: 0.5)
        #expect(retry.dials.count == 1)
        let second = driver.attempt
        #expect(retry.contains(.register(second, view: nil, interest: nil, standby: false)))
        driver.handle(.connected(second))
        let welcomed = driver.handle(.received(second, welcome(nodes: [record("00000000000000bb", "other")], version: 4)))
        #expect(welcomed.contains(.registered))
        #expect(!driver.session.hasPartialView)
        // New interests are kept but never sent: a full-view session must not send `interest`.
        #expect(driver.handle(.interestAdded(ViewInterest(topics: ["more"]))).isEmpty)
    }

    @Test("a registered partial view whose interest is refused for the shared limit registers again with the full view; other rejections do not switch")
    func sharedLimitAtInterest() {
        var driver = SessionDriver(partialView: true)
        driver.register(view: .partial)
        #expect(driver.session.hasPartialView)
        let first = driver.attempt
        let sent = driver.handle(.interestAdded(ViewInterest(topics: ["jobs"])))
        #expect(sent == [.send(first, ControlMessage(.interest, interest: ViewInterest(topics: ["jobs"])))])
        let actions = driver.handle(.received(first, ControlMessage(.rejected, reason: Self.sharedLimit("interest"))))
        #expect(actions.contains(.close(first)))
        #expect(!driver.session.hasPartialView && driver.session.fellBackToFullView)
        #expect(driver.advance(by: 0.5).contains(.register(driver.attempt, view: nil, interest: nil, standby: false)))

        // Any other rejection (a duplicate id) leaves the view as it was.
        var other = SessionDriver(partialView: true)
        other.register(view: .partial)
        other.handle(.received(other.attempt, ControlMessage(.rejected, reason: "interest: a node with a partial view may follow at most 10000")))
        #expect(!other.session.fellBackToFullView)
        #expect(other.advance(by: 0.5).contains(.register(other.attempt, view: .partial, interest: nil, standby: false)))
    }

    @Test("nodes the fresh coordinator does not know are routed to for 5 s; one that registers again stays; the rest then go")
    func provisionalGrace() {
        var driver = SessionDriver()
        let back = record("00000000000000bb", "back")
        let gone = record("00000000000000cc", "gone")
        driver.register(nodes: [back, gone], version: 9)
        driver.handle(.connectionClosed(driver.attempt, nil))
        driver.advance(by: 0.1)
        var actions = driver.handle(.received(driver.attempt, welcome(nodes: [], version: 1)))
        #expect(actions.contains(.schedule(.grace, at: driver.now + .seconds(5))))
        #expect(Set(driver.session.provisional.keys) == [back.id, gone.id])
        #expect(driver.session.topology.nodes.count == 1)
        #expect(driver.session.routingTopology.nodes.count == 3)

        actions = driver.handle(.received(driver.attempt, delta(1, 2, [.join(back)])))
        var rejoined = TopologyChanges()
        rejoined.add(back)
        #expect(actions == [.topologyChanged(joined: [back], changes: rejoined)])
        #expect(driver.session.routingRecord(back.id) == back)
        #expect(Set(driver.session.provisional.keys) == [gone.id])
        for _ in 0..<5 {
            driver.handle(.received(driver.attempt, ControlMessage(.heartbeat)))
            driver.advance(by: 1.01)
        }
        #expect(driver.session.provisional.isEmpty)
        #expect(driver.session.routingRecord(gone.id) == nil, "an expired provisional node is still routed to")
        let expiry = driver.history.contains { action in
            guard case .topologyChanged(_, let changes) = action else { return false }
            return changes.nodes == [gone.id] && !changes.everything
        }
        #expect(expiry, "the expiry did not tell the node which record went")
        #expect(driver.session.routingTopology.nodes.count == 2)
        #expect(driver.history.lines(.info).contains(
            "1 node(s) did not re-register with the new coordinator within 5.000 s; no longer routing to them: gone"))
    }

    // MARK: Liveness

    @Test("a coordinator that goes silent is given up 5 intervals after its last message, logged as a timeout")
    func silentCoordinatorTimesOut() {
        var driver = SessionDriver()
        driver.register()
        // Answers for a while keep it.
        for _ in 0..<6 {
            driver.advance(by: 1)
            driver.handle(.received(driver.attempt, ControlMessage(.heartbeat)))
        }
        #expect(driver.session.isRegistered)
        let lastHeard = driver.now
        let attempt = driver.attempt
        var actions = driver.advance(to: lastHeard + .milliseconds(4990))
        #expect(driver.session.isRegistered, "given up before the timeout")
        actions = driver.advance(to: lastHeard + .seconds(5))
        #expect(!driver.session.isRegistered)
        #expect(actions.contains(.close(attempt)))
        let warnings = actions.lines(.warning)
        #expect(warnings == [
            "lost the coordinator at 127.0.0.1:6374 (timeout: nothing from the coordinator for 5.000 s); keeping the last topology (1 node(s)) and retrying"
        ])
        #expect(!warnings.joined().contains("protocol violation"))
        #expect(driver.session.armed[.reconnect] == lastHeard + .seconds(5) + .milliseconds(100))
    }

    @Test("a short heartbeat interval still gives the coordinator at least 1 s (it may leave a beat unanswered for 500 ms)")
    func timeoutFloor() {
        #expect(SessionDriver(heartbeatInterval: .milliseconds(100)).session.configuration.coordinatorTimeout == .seconds(1))
        #expect(SessionDriver(heartbeatInterval: .milliseconds(400)).session.configuration.coordinatorTimeout == .seconds(2))
        #expect(SessionDriver().session.configuration.coordinatorTimeout == .seconds(5))
    }

    @Test("a node loop stalled for 8 s (timers late, nothing read) does not count the stall as the coordinator's silence")
    func lateLoopIsNoLoss() {
        var driver = SessionDriver()
        driver.register()
        driver.advance(by: 1)
        driver.handle(.received(driver.attempt, ControlMessage(.heartbeat)))
        // The whole process stops for 8 s: every timer runs late, and the coordinator's answers
        // to heartbeats this node could not send have not come.
        let actions = driver.stall(for: 8)
        #expect(driver.session.isRegistered, "a stall of this process was taken for a dead coordinator: \(actions.lines(.warning))")
        #expect(actions.heartbeats >= 1, "no heartbeat after the stall")
        // Its answer comes: all is well.
        driver.advance(by: 0.05)
        driver.handle(.received(driver.attempt, ControlMessage(.heartbeat)))
        driver.advance(by: 10)
        #expect(!driver.session.isRegistered, "a coordinator silent after the stall must still be given up")
        let warning = driver.history.lines(.warning).last ?? ""
        #expect(warning.contains("(timeout: nothing from the coordinator for 5.000 s)"), "\(warning)")
    }

    @Test("a stall credits only its own length: a coordinator silent before and after it is given up at timeout + stall")
    func stallCreditIsBounded() {
        var driver = SessionDriver()
        driver.register()
        let lastHeard = driver.now
        driver.advance(by: 2)
        driver.stall(for: 3)  // loop stalled from 2 s to 5 s after the last message
        #expect(driver.session.isRegistered)
        let actions = driver.advance(to: lastHeard + .seconds(9))
        #expect(!driver.session.isRegistered)
        let lost = driver.history.lines(.warning).last ?? ""
        #expect(lost.contains("timeout: nothing from the coordinator for"), "\(lost)")
        #expect(lost.contains("of it while this process was stalled"), "\(lost)")
        #expect(actions.contains { if case .close = $0 { true } else { false } })
        // Given up no later than 5 s of silence plus the 3 s stall, with timers on time after it.
        let given = driver.history.compactMap { action -> ContinuousClock.Instant? in
            if case .schedule(.reconnect, let due) = action { return due } else { return nil }
        }.last
        #expect(given.map { lastHeard.duration(to: $0) <= .seconds(8) + .milliseconds(150) } == true)
    }

    @Test("an actor that handles a frame late, after a liveness check fell due on the loop, does not lose the coordinator")
    func lateActorIsNoLoss() throws {
        var driver = SessionDriver()
        driver.register()
        let attempt = driver.attempt
        let check = try #require(driver.session.armed[.liveness])
        #expect(check == driver.at(5))
        // The loop read a heartbeat at 4 s and ran the check at 5 s; the actor, 3 s behind, handles
        // both at 8 s, in that order (the queue keeps it): the frame first, stamped with the
        // actor's time, then the check with the loop's.
        var session = driver.session
        _ = session.handle(.received(attempt, ControlMessage(.heartbeat)), now: driver.at(8))
        let actions = session.handle(.timerFired(.liveness, due: check), now: check)
        #expect(session.isRegistered)
        #expect(actions.lines(.warning).isEmpty)
        #expect(actions == [.schedule(.liveness, at: driver.at(13))])
    }

    // MARK: Requests from the node and the coordinator

    @Test("listen and serve announcements go out while connected, and are dropped (not queued) while away")
    func sendRequested() {
        var driver = SessionDriver()
        driver.handle(.start)
        let listen = ControlMessage(.listen, topic: "t")
        #expect(driver.handle(.sendRequested(listen)) == [.send(driver.attempt, listen)], "a listen while connecting is sent after the register")
        driver.handle(.received(driver.attempt, welcome(nodes: [], version: 1)))
        #expect(driver.handle(.sendRequested(listen)) == [.send(driver.attempt, listen)])
        driver.handle(.connectionClosed(driver.attempt, nil))
        #expect(driver.handle(.sendRequested(listen)).isEmpty)
    }

    @Test("a shutdown request is logged and stops the node; close says bye and disarms every timer")
    func shutdownAndClose() {
        var driver = SessionDriver()
        driver.register()
        let attempt = driver.attempt
        let actions = driver.handle(.received(attempt, ControlMessage(.shutdown, reason: "mesh node kill from 127.0.0.1")))
        #expect(actions == [.log(.info, "stopping: mesh node kill from 127.0.0.1"), .stop])
        let closing = driver.handle(.close)
        #expect(closing.first == .leave(attempt))
        #expect(closing.contains(.releaseInterestWaiters))
        let cancelled = closing.compactMap { action -> CoordinatorSession.Timer? in
            if case .cancel(let timer) = action { return timer } else { return nil }
        }
        #expect(Set(cancelled) == [.heartbeat, .liveness])
        #expect(driver.session.armed.isEmpty)
        #expect(driver.handle(.close).isEmpty)
        #expect(driver.advance(by: 30).isEmpty)
    }

    @Test("an unexpected message is logged and ignored; a timer cancelled after it was queued is ignored")
    func unexpectedAndStale() {
        var driver = SessionDriver()
        driver.register()
        let actions = driver.handle(.received(driver.attempt, ControlMessage(.inspect)))
        #expect(actions == [.log(.warning, "unexpected inspect message from the coordinator; ignored")])
        let due = driver.session.armed[.heartbeat]!
        #expect(driver.handle(.timerFired(.heartbeat, due: due - .milliseconds(1))).isEmpty, "a stale timer was handled")
        #expect(driver.handle(.timerFired(.welcome, due: due)).isEmpty)
    }
}
