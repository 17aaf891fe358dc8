/// A node's session with the coordinator, as a pure state machine: registering, the welcome,
/// following the topology's deltas (and asking for a full copy after a gap), heartbeats, noticing a
/// lost coordinator, reconnecting with backoff, the grace for nodes not yet registered again with a
/// fresh coordinator, and re-declaring a partial view's interests.
///
/// Feed it ``Event``s with ``handle(_:now:)`` and perform the ``Action``s it returns, in order. It
/// owns no socket, task or clock: connections are named by ``Attempt``, and its timers are
/// deadlines that the node schedules on its event loop and feeds back as ``Event/timerFired(_:due:)``.
/// So every rule here is tested with a manual clock (CoordinatorSessionTests).
///
/// **Liveness.** The node gives the coordinator up when nothing arrived from it for
/// ``Configuration/coordinatorTimeout``, checked by the ``Timer/liveness`` timer. The node runs that
/// timer on its event loop and queues its firing behind the frames the loop read before it, so an
/// actor that runs late never takes a busy coordinator for a dead one. Time this node's own loop
/// lost (a timer that fired late: the process or the machine was stalled) does not count as the
/// coordinator's silence: the coordinator could not answer heartbeats that were never sent, and a
/// machine-wide stall froze it too. That mirrors the coordinator's own credit for a late eviction check.
struct CoordinatorSession: Sendable {
    /// What the session needs to know of the node's configuration.
    struct Configuration: Sendable, Equatable {
        /// The coordinator's `HOST:PORT`, as configured (for log lines and errors).
        var coordinator: String
        /// This node's id (the session leaves its own record out of the provisional nodes).
        var nodeID: String
        /// How long the build's registration, and each attempt's welcome, may take.
        var connectTimeout: Duration
        /// How often the node sends a heartbeat.
        var heartbeatInterval: Duration
        /// True for ``TopologyView/partial``.
        var partialView: Bool
        /// True when this is one of several coordinators: the build's registration deadline does
        /// not end the session (another coordinator may have registered the node), and an
        /// attempt that fails during the build is retried like any later one. The node reports
        /// the build failed only when every coordinator missed the deadline.
        var keepsTrying = false
        /// True when the node starts out routing by another coordinator: this session registers
        /// as a standby (PROTOCOL.md §7.2) until ``Event/route(_:)`` says otherwise.
        var standby = false

        /// Silence after which the coordinator counts as lost: five heartbeat intervals, at least
        /// 1 s (the coordinator leaves a heartbeat unanswered when it sent that node something in
        /// the last 500 ms). PROTOCOL.md §7 says why five.
        var coordinatorTimeout: Duration { max(heartbeatInterval * 5, .seconds(1)) }

        /// A timer that fires later than this after its deadline means this process was stalled.
        var stallThreshold: Duration { min(heartbeatInterval / 4, .milliseconds(250)) }
    }

    /// One connection to the coordinator, from dialling to its end; the node maps it to its socket.
    struct Attempt: Hashable, Sendable, CustomStringConvertible {
        let number: UInt64
        var description: String { "attempt \(number)" }
    }

    /// The session's timers: at most one of each is armed.
    enum Timer: Hashable, Sendable, CaseIterable {
        /// The build's whole registration must finish by then.
        case registration
        /// The current attempt must have its welcome by then.
        case welcome
        /// Dial again.
        case reconnect
        /// Send a heartbeat (and, in the node, report held-back drop counts). Armed from start to close.
        case heartbeat
        /// Check whether the coordinator has been silent too long.
        case liveness
        /// Stop routing to the nodes that did not register again with a fresh coordinator.
        case grace
    }

    enum Event: Sendable, Equatable {
        /// The node is built: register (the build waits for ``Action/registered`` or ``Action/registrationFailed(_:)``).
        case start
        /// The attempt's connection is open: TCP connected and the handshake done.
        case connected(Attempt)
        /// A whole control message arrived on the attempt's connection.
        case received(Attempt, ControlMessage)
        /// The attempt's connection could not be made, failed, or closed (`nil`: closed cleanly).
        case connectionClosed(Attempt, ConnectionError?)
        /// A timer the session armed fired; `now` is when the loop ran it.
        case timerFired(Timer, due: ContinuousClock.Instant)
        /// The node follows more (partial view): declared at once while registered, else with the next register.
        case interestAdded(ViewInterest)
        /// A listen, unlisten, serve or unserve to tell the coordinator, if there is a connection
        /// (not queued otherwise: the next register carries the node's current record).
        case sendRequested(ControlMessage)
        /// The node routes by this coordinator from now on (`true`: a standby session asks it
        /// for the topology with `route`), or no longer (`false`: the next `register` is a
        /// standby's; the current session keeps what it has).
        case route(Bool)
        /// The node closes.
        case close
    }

    enum Action: Sendable, Equatable {
        /// Open a control connection to the coordinator, known as this attempt from now on.
        case dial(Attempt)
        /// Send `register` with the node's current record (and its public key); `standby` marks a
        /// coordinator the node does not route by (several coordinators only).
        case register(Attempt, view: TopologyView?, interest: ViewInterest?, standby: Bool)
        /// Send this message on the attempt's connection.
        case send(Attempt, ControlMessage)
        /// Send a heartbeat (with the node's counters when they changed) and tell the loop-thread pump.
        case sendHeartbeat(Attempt)
        /// Close the attempt's connection: the session has already given it up.
        case close(Attempt)
        /// Send `bye`, then close the attempt's connection once what is queued is written.
        case leave(Attempt)
        /// Arm the timer (replacing it if armed) to fire at the instant.
        case schedule(Timer, at: ContinuousClock.Instant)
        /// Disarm the timer.
        case cancel(Timer)
        /// ``CoordinatorSession/topology`` or the provisional nodes changed: route with
        /// ``CoordinatorSession/routingTopology`` (the records of `changes`' nodes, unless it is
        /// ``TopologyChanges/everything``), wake waits; `joined` are the records a delta added.
        case topologyChanged(joined: [NodeRecord], changes: TopologyChanges)
        /// The coordinator has answered for this interest (partial view).
        case acknowledge(ViewInterest)
        /// No coordinator for now: interest waits route with what the node holds.
        case releaseInterestWaiters
        /// The loop-thread heartbeat pump should cover this attempt's connection (`nil`: none).
        case pumpHeartbeats(Attempt?)
        /// The build's registration succeeded.
        case registered
        /// The build's registration failed; the session is over.
        case registrationFailed(MeshError)
        /// Count one more coordinator reconnect in the node's statistics.
        case countReconnect
        /// The coordinator relayed a `mesh node kill`: close the node the configured way.
        case stop
        /// Log a line.
        case log(MeshLogger.Level, String)
        /// The coordinator did not record a `listen` or `publish` of `topic`.
        case refused(topic: String, reason: String)
    }

    enum Phase: Sendable, Equatable {
        /// Not started.
        case idle
        /// Dialled; waiting for the welcome.
        case connecting(Attempt, handshakeDone: Bool)
        /// Welcomed: following the topology and sending heartbeats.
        case registered(Attempt)
        /// No connection; the reconnect timer is armed.
        case waiting
        /// Closed, or the build's registration failed.
        case closed

        var attempt: Attempt? {
            switch self {
            case .connecting(let attempt, _), .registered(let attempt): return attempt
            case .idle, .waiting, .closed: return nil
            }
        }
    }

    /// How long a node that registered again keeps routing to nodes the new coordinator does not know yet.
    static let reregistrationGrace = Duration.seconds(5)

    let configuration: Configuration
    private(set) var phase = Phase.idle
    /// The node's copy of the topology (full, or the partial view).
    private(set) var topology = Topology()
    /// Nodes known before the coordinator was lost that the new one has not heard from yet;
    /// still routed to until they register again or ``reregistrationGrace`` passes.
    private(set) var provisional: [String: NodeRecord] = [:]
    /// What this node follows with a partial view.
    private(set) var interest = ViewInterest()
    /// What the last `register` declared (its welcome answers that much).
    private(set) var registeredInterest = ViewInterest()
    /// True while registered with a partial view the coordinator confirmed in its welcome.
    private(set) var hasPartialView = false
    /// True once the coordinator turned a partial view away because all its partial views
    /// together follow the most it keeps: from then on this session registers for the full view.
    private(set) var fellBackToFullView = false
    /// True while this session asks for a partial view at `register`.
    var asksForPartialView: Bool { configuration.partialView && !fellBackToFullView }
    /// The deadline of each armed timer.
    private(set) var armed: [Timer: ContinuousClock.Instant] = [:]
    /// True while the node routes by this coordinator (wants its topology).
    private(set) var routes: Bool
    /// True while registered as a standby: the coordinator sends no topology (only its own
    /// record in the welcome), no deltas and no interest answers until the node sends `route`.
    private(set) var isStandby = false

    private var nextAttempt: UInt64 = 0
    /// True while the build waits for its registration.
    private var registering = false
    /// Why the last registration attempt of the build was retried, for the error if none succeeds.
    private var registrationRetryReason: String?
    /// Failed attempts since the last welcome: the backoff's exponent.
    private var failures = 0
    /// When the coordinator was lost, until a welcome finds it again.
    private var lostAt: ContinuousClock.Instant?
    /// When the last whole message arrived from the coordinator.
    private var lastHeard: ContinuousClock.Instant?
    /// Stalls of this process since ``lastHeard`` (late timers), not counted as the coordinator's silence.
    private var stalled = Duration.zero
    private var stalledThrough: ContinuousClock.Instant?

    init(configuration: Configuration) {
        self.configuration = configuration
        self.routes = !configuration.standby
    }

    /// True while welcomed by a coordinator it still hears from.
    var isRegistered: Bool {
        if case .registered = phase { return true }
        return false
    }

    /// True while registered and holding the coordinator's topology (not a standby).
    var isRouting: Bool { isRegistered && !isStandby }

    /// True while a standby has been asked for its topology (`route`) and has not answered yet.
    var awaitsRoute: Bool { isRegistered && isStandby && routes }

    /// True while the build's first attempt is still under way within the build's deadline:
    /// neither welcomed nor failed yet.
    var isAwaitingFirstWelcome: Bool {
        guard registering, nextAttempt == 1, case .connecting = phase else { return false }
        return true
    }

    /// What the node routes with: the topology plus the provisional nodes.
    var routingTopology: Topology {
        guard !provisional.isEmpty else { return topology }
        var routing = topology
        for (nodeID, node) in provisional { routing.nodes[nodeID] = node }
        return routing
    }

    /// One node's record as the node routes with it: in the topology, else provisional; `nil` when gone.
    func routingRecord(_ nodeID: String) -> NodeRecord? {
        topology.nodes[nodeID] ?? provisional[nodeID]
    }

    /// Whether a handshake with the coordinator ended the way a busy one ends it: closed past its
    /// admission limit, evicted to make room, or not answered within the handshake's timeout (a
    /// join storm of thousands). Retried within the build's deadline instead of failing the build.
    static func isBusyCoordinator(_ error: ConnectionError?) -> Bool {
        switch error {
        case .handshake(.closedDuringHandshake), .handshake(.closedSilently), .handshake(.timedOut), .handshake(.evicted): return true
        default: return false
        }
    }

    /// The backoff before dialling again after `failures` failed attempts: 100 ms, doubling, at most 1 s.
    static func backoff(afterFailures failures: Int) -> Duration {
        .milliseconds(min(1000, 50 << min(failures, 5)))
    }

    // MARK: Events

    /// Takes one event that happened at `now` and returns what the node should do, in order.
    ///
    /// - Parameters:
    ///   - event: what happened.
    ///   - now: when: for a timer, the instant the loop ran it; otherwise the moment it is handled.
    /// - Returns: the actions to perform, in order.
    mutating func handle(_ event: Event, now: ContinuousClock.Instant) -> [Action] {
        switch event {
        case .start:
            guard phase == .idle else { return [] }
            registering = true
            let deadline = schedule(.registration, at: now + configuration.connectTimeout)
            let tick = schedule(.heartbeat, at: now + configuration.heartbeatInterval)
            return [deadline, tick] + dial(now: now)
        case .connected(let attempt):
            if case .connecting(attempt, _) = phase { phase = .connecting(attempt, handshakeDone: true) }
            return []
        case .received(let attempt, let message):
            guard let current = phase.attempt, current == attempt else { return [] }  // from a connection given up
            heard(at: now)
            return receive(message, on: attempt, now: now)
        case .connectionClosed(let attempt, let error):
            guard let current = phase.attempt, current == attempt else { return [] }
            return attemptEnded(
                reason: error?.description ?? "closed", failure: MeshError(connectingTo: configuration.coordinator, failure: error),
                retryDuringBuild: Self.isBusyCoordinator(error), now: now)
        case .timerFired(let timer, let due):
            guard armed[timer] == due else { return [] }  // cancelled or moved since it was queued
            armed[timer] = nil
            noteStall(due: due, now: now)
            return fired(timer, now: now)
        case .interestAdded(let added):
            interest.formUnion(added)
            guard hasPartialView, case .registered(let attempt) = phase else { return [] }
            return [.send(attempt, ControlMessage(.interest, interest: added))]
        case .sendRequested(let message):
            guard let attempt = phase.attempt else { return [] }
            return [.send(attempt, message)]
        case .route(let routes):
            guard routes != self.routes else { return [] }
            self.routes = routes
            // Connecting: the welcome says which it became, and a standby's asks at once.
            guard routes, isStandby, case .registered(let attempt) = phase else { return [] }
            return [route(on: attempt)]
        case .close:
            guard phase != .closed else { return [] }
            var actions: [Action] = phase.attempt.map { [.leave($0)] } ?? []
            actions += finish()
            actions.append(.releaseInterestWaiters)
            if registering {
                registering = false
                actions.append(.registrationFailed(.closed))
            }
            return actions
        }
    }

    private mutating func receive(_ message: ControlMessage, on attempt: Attempt, now: ContinuousClock.Instant) -> [Action] {
        switch message.type {
        case .welcome:
            guard let snapshot = message.topology else { return [] }
            if case .connecting = phase {
                isStandby = message.standby == true
                if isStandby { return standbyWelcome(snapshot, on: attempt, now: now) }
                return welcome(snapshot, view: message.view, on: attempt, now: now)
            }
            // A standby's answer to `route`: the coordinator's topology, as if just registered.
            guard isStandby, routes else { return [] }
            isStandby = false
            return welcome(snapshot, view: message.view, on: attempt, now: now)
        case .rejected:
            let reason = message.reason ?? "no reason given"
            if asksForPartialView, Self.isSharedInterestLimit(reason) {
                // Every partial view at this coordinator together follows the most it keeps
                // (PROTOCOL.md §6.7). A full view costs it no more interests, so the node holds
                // every record from now on rather than stay out of the mesh: slower, never fatal.
                fellBackToFullView = true
                hasPartialView = false
                return [
                    .log(
                        .warning,
                        "the coordinator at \(configuration.coordinator) keeps no more partial views (\(reason)); registering"
                            + " again with the full view: this node now holds every node's record"),
                    .close(attempt),
                ] + attemptEnded(reason: "rejected", failure: .registrationRejected(reason: reason), retryDuringBuild: true, now: now)
            }
            if registering {
                registering = false
                return [.close(attempt)] + finish() + [.registrationFailed(.registrationRejected(reason: reason))]
            }
            // A duplicate id, say, while the coordinator still holds this node's old session: retry.
            return [.log(.error, "the coordinator rejected this node: \(reason)"), .close(attempt)]
                + attemptEnded(reason: "closed", failure: .registrationRejected(reason: reason), retryDuringBuild: false, now: now)
        case .delta:
            guard isRegistered, let delta = message.delta else { return [] }
            var actions: [Action] = []
            // Read before applying: a leaving node's record says what it listened to.
            let changes = TopologyChanges(delta.changes, before: topology)
            switch topology.apply(delta) {
            case .applied:
                actions += topologyChanged(joined: delta.changes.compactMap { $0.op == .join ? $0.node : nil }, changes)
            case .alreadyKnown:
                break
            case .gap:
                actions.append(.log(.debug, "missed a topology version (have \(topology.version), got \(delta.from)→\(delta.to)); asking for a full copy"))
                actions.append(.send(attempt, ControlMessage(.sync)))
            }
            if let answered = message.interest { actions.append(.acknowledge(answered)) }
            return actions
        case .topology:
            guard let snapshot = message.topology else { return [] }
            topology = Topology(snapshot)
            return topologyChanged(joined: [], .everything)
        case .heartbeat:
            return []
        case .shutdown:
            return [.log(.info, "stopping: \(message.reason ?? "the coordinator asked")"), .stop]
        case .refused:
            guard let topic = message.topic else { return [] }
            return [.refused(topic: topic, reason: message.reason ?? "no reason given")]
        default:
            return [.log(.warning, "unexpected \(message.type) message from the coordinator; ignored")]
        }
    }

    /// Registered as a standby: heartbeats and liveness as for any session, no topology. When
    /// the node has come to route by this coordinator meanwhile, it asks for the topology now.
    private mutating func standbyWelcome(
        _ snapshot: TopologySnapshot, on attempt: Attempt, now: ContinuousClock.Instant
    ) -> [Action] {
        var actions = enterRegistered(attempt, now: now)
        hasPartialView = false
        // Its own record only; what an earlier session here held is stale by now.
        topology = Topology(snapshot)
        provisional = [:]
        actions += announceRegistered(now: now, again: "(standby)", standby: true)
        if routes { actions.append(route(on: attempt)) }
        return actions + endRegistering()
    }

    /// What every welcome starts with: registered on `attempt`, its timers settled, liveness
    /// watched, heartbeats pumped.
    private mutating func enterRegistered(_ attempt: Attempt, now: ContinuousClock.Instant) -> [Action] {
        phase = .registered(attempt)
        failures = 0
        return cancel(.welcome) + cancel(.registration)
            + [schedule(.liveness, at: now + configuration.coordinatorTimeout), .pumpHeartbeats(attempt)]
    }

    /// The log line of a welcome (info after a loss, counted as a reconnect; debug otherwise).
    private mutating func announceRegistered(now: ContinuousClock.Instant, again: String, standby: Bool) -> [Action] {
        guard let lostAt else {
            return [
                .log(.debug, "registered as \(configuration.nodeID) with the coordinator at \(configuration.coordinator)" + (standby ? " (standby)" : ""))
            ]
        }
        self.lostAt = nil
        return [
            .countReconnect,
            .log(.info, "coordinator at \(configuration.coordinator) is back after \(formatted(lostAt.duration(to: now))); registered again \(again)"),
        ]
    }

    /// Ends the build's wait, if it was waiting.
    private mutating func endRegistering() -> [Action] {
        guard registering else { return [] }
        registering = false
        return [.registered]
    }

    /// The `route` that turns this standby session into the one the node routes by.
    private mutating func route(on attempt: Attempt) -> Action {
        registeredInterest = interest
        let partial = asksForPartialView
        return .send(
            attempt,
            ControlMessage(.route, view: partial ? .partial : nil, interest: partial && !interest.isEmpty ? interest : nil))
    }

    private mutating func welcome(
        _ snapshot: TopologySnapshot, view: TopologyView?, on attempt: Attempt, now: ContinuousClock.Instant
    ) -> [Action] {
        var actions = enterRegistered(attempt, now: now)
        let fresh = Topology(snapshot)
        if lostAt != nil {
            // A fresh coordinator knows only the nodes that registered again so far. Keep routing
            // to the others for a grace period: they are most likely alive and registering again.
            provisional = topology.nodes.filter { $0.key != configuration.nodeID && fresh.nodes[$0.key] == nil }
            if !provisional.isEmpty { actions.append(schedule(.grace, at: now + Self.reregistrationGrace)) }
        }
        topology = fresh
        actions += topologyChanged(joined: [], .everything)
        // A coordinator that predates partial views sends the full topology and says nothing.
        hasPartialView = asksForPartialView && view == .partial
        // Interest waits made while a `route` was on its way, or before a fall back to the full
        // view, wait for nothing a full view answers.
        if configuration.partialView && !hasPartialView { actions.append(.releaseInterestWaiters) }
        if hasPartialView {
            // What was declared since the register went out is asked for now.
            let missing = interest.subtracting(registeredInterest)
            if !missing.isEmpty { actions.append(.send(attempt, ControlMessage(.interest, interest: missing))) }
            actions.append(.acknowledge(registeredInterest))
        }
        let topics = topology.nodes[configuration.nodeID]?.topics.count ?? 0
        actions += announceRegistered(now: now, again: "with \(topics) topic(s)", standby: false)
        return actions + endRegistering()
    }

    private mutating func fired(_ timer: Timer, now: ContinuousClock.Instant) -> [Action] {
        switch timer {
        case .registration:
            guard registering else { return [] }
            registering = false
            let seconds = Double(configuration.connectTimeout.components.seconds)
            let last = registrationRetryReason.map { " (the last attempt: \($0))" } ?? ""
            let failure = MeshError.coordinatorUnreachable(address: configuration.coordinator, reason: "no registration within \(seconds) s\(last)")
            if configuration.keepsTrying {
                // One of several: the node may be registered elsewhere. Keep dialling; the attempt
                // in progress now has a welcome deadline of its own.
                guard case .connecting = phase else { return [.registrationFailed(failure)] }
                return [.registrationFailed(failure), schedule(.welcome, at: now + configuration.connectTimeout)]
            }
            let actions: [Action] = phase.attempt.map { [.close($0)] } ?? []
            return actions + finish() + [.registrationFailed(failure)]
        case .welcome:
            // Registered neither way (a partition right after the handshake, say): start over.
            guard case .connecting(let attempt, let handshakeDone) = phase else { return [] }
            let reason = "timeout: no welcome from the coordinator within \(formatted(configuration.connectTimeout))"
                + (handshakeDone ? "" : " (the handshake did not finish)")
            return [.close(attempt)]
                + attemptEnded(
                    reason: reason, failure: .coordinatorUnreachable(address: configuration.coordinator, reason: reason),
                    retryDuringBuild: false, now: now)
        case .reconnect:
            guard phase == .waiting else { return [] }
            return dial(now: now)
        case .heartbeat:
            var actions = [schedule(.heartbeat, at: now + configuration.heartbeatInterval)]
            if case .registered(let attempt) = phase { actions.append(.sendHeartbeat(attempt)) }
            return actions
        case .liveness:
            return checkLiveness(now: now)
        case .grace:
            return expireProvisional()
        }
    }

    // MARK: Liveness

    /// Notes that the coordinator spoke.
    private mutating func heard(at now: ContinuousClock.Instant) {
        lastHeard = max(lastHeard ?? now, now)
        stalled = .zero
    }

    /// A timer that fired late means this process (or the whole machine) was stalled from its
    /// deadline until `now`: that stretch, where not yet counted and after the last message, is
    /// not the coordinator's silence.
    private mutating func noteStall(due: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        guard due.duration(to: now) > configuration.stallThreshold else { return }
        let from = max(due, lastHeard ?? due, stalledThrough ?? due)
        if from < now { stalled += from.duration(to: now) }
        stalledThrough = max(stalledThrough ?? now, now)
    }

    private mutating func checkLiveness(now: ContinuousClock.Instant) -> [Action] {
        guard case .registered(let attempt) = phase, let lastHeard else { return [] }
        let silence = lastHeard.duration(to: now)
        let timeout = configuration.coordinatorTimeout
        guard silence - stalled >= timeout else {
            return [schedule(.liveness, at: lastHeard + stalled + timeout)]
        }
        var reason = "timeout: nothing from the coordinator for \(formatted(silence))"
        if stalled > .zero { reason += ", \(formatted(stalled)) of it while this process was stalled" }
        return [.close(attempt)]
            + attemptEnded(
                reason: reason, failure: .coordinatorUnreachable(address: configuration.coordinator, reason: reason),
                retryDuringBuild: false, now: now)
    }

    /// True for the coordinator's rejection of a `register` or `interest` that would take all
    /// partial views together past its `maximumInterests` (the text PROTOCOL.md §6.7 gives).
    static func isSharedInterestLimit(_ reason: String) -> Bool {
        reason.contains("partial views already follow the most") && reason.contains("maximumInterests")
    }

    // MARK: Attempts

    private mutating func dial(now: ContinuousClock.Instant) -> [Action] {
        nextAttempt += 1
        let attempt = Attempt(number: nextAttempt)
        phase = .connecting(attempt, handshakeDone: false)
        registeredInterest = interest
        let partial = asksForPartialView && routes
        var actions: [Action] = [
            .dial(attempt),
            .register(
                attempt, view: partial ? .partial : nil, interest: partial && !interest.isEmpty ? interest : nil, standby: !routes),
            // The coordinator counts this node's silence from the register on. In a process too
            // busy to handle the welcome for seconds (a join storm), the loop-thread pump keeps
            // the heartbeats going meanwhile, so the coordinator does not evict a node that is
            // only slow (the register counts as the first beat).
            .pumpHeartbeats(attempt),
        ]
        // The build's registration has a deadline of its own, which also covers this attempt's welcome.
        if !registering { actions.append(schedule(.welcome, at: now + configuration.connectTimeout)) }
        return actions
    }

    /// The current attempt is over (`reason` says why): during the build, retry a handshake the
    /// coordinator closed (it is busy, not wrong) or fail with `failure`; later, retry with backoff.
    private mutating func attemptEnded(
        reason: String, failure: MeshError, retryDuringBuild: Bool, now: ContinuousClock.Instant
    ) -> [Action] {
        let wasRegistered = isRegistered
        phase = .waiting
        isStandby = false
        var actions = cancel(.welcome) + cancel(.liveness) + [.pumpHeartbeats(nil), .releaseInterestWaiters]
        if registering {
            guard retryDuringBuild || configuration.keepsTrying else {
                registering = false
                return actions + finish() + [.registrationFailed(failure)]
            }
            // A coordinator closes handshakes past its admission limit (a join storm of
            // thousands at once): a busy coordinator, not a wrong one. Try again, within the
            // connect timeout, instead of failing the whole build.
            registrationRetryReason = reason
        } else if wasRegistered {
            lostAt = now
            actions.append(
                .log(.warning, "lost the coordinator at \(configuration.coordinator) (\(reason)); keeping the last topology (\(topology.nodes.count) node(s)) and retrying"))
        } else {
            actions.append(.log(.debug, "coordinator still unreachable: \(reason)"))
        }
        failures += 1
        actions.append(schedule(.reconnect, at: now + Self.backoff(afterFailures: failures)))
        return actions
    }

    // MARK: Topology

    private mutating func topologyChanged(joined: [NodeRecord], _ changes: TopologyChanges) -> [Action] {
        if !provisional.isEmpty { provisional = provisional.filter { topology.nodes[$0.key] == nil } }
        return [.topologyChanged(joined: joined, changes: changes)]
    }

    private mutating func expireProvisional() -> [Action] {
        guard !provisional.isEmpty else { return [] }
        let gone = provisional.filter { topology.nodes[$0.key] == nil }
        provisional = [:]
        var actions: [Action] = []
        if !gone.isEmpty {
            let names = gone.values.map(\.name).sorted().joined(separator: ", ")
            actions.append(
                .log(.info, "\(gone.count) node(s) did not re-register with the new coordinator within \(formatted(Self.reregistrationGrace)); no longer routing to them: \(names)"))
        }
        // The provisional nodes the topology lacks are gone; the others are routed as they were.
        var changes = TopologyChanges()
        for node in gone.values { changes.add(node) }
        return actions + [.topologyChanged(joined: [], changes: changes)]
    }

    /// The node now routes by this session, taking over from another coordinator's (PROTOCOL.md
    /// §7.2): the nodes `before` held that this topology lacks are kept as provisional for the
    /// re-registration grace. This coordinator may not have them yet (a join storm, a restart),
    /// and a departure this session did not see is no reason to stop routing to them at once.
    mutating func takeOver(from before: [String: NodeRecord], now: ContinuousClock.Instant) -> [Action] {
        let missing = before.filter { $0.key != configuration.nodeID && topology.nodes[$0.key] == nil && provisional[$0.key] == nil }
        guard !missing.isEmpty else { return [] }
        provisional.merge(missing) { held, _ in held }
        return [schedule(.grace, at: now + Self.reregistrationGrace)]
    }

    // MARK: Timers

    private mutating func schedule(_ timer: Timer, at deadline: ContinuousClock.Instant) -> Action {
        armed[timer] = deadline
        return .schedule(timer, at: deadline)
    }

    private mutating func cancel(_ timer: Timer) -> [Action] {
        armed.removeValue(forKey: timer) == nil ? [] : [.cancel(timer)]
    }

    /// Ends the session: no timer stays armed.
    private mutating func finish() -> [Action] {
        phase = .closed
        return Timer.allCases.flatMap { cancel($0) }
    }
}
