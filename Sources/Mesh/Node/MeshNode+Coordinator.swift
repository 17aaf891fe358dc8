import Foundation
import MeshCrypto

/// The node's session with the coordinator, as the shell around ``CoordinatorSession``: the
/// session decides (registering, deltas, heartbeats, liveness, reconnecting); the node feeds it
/// what happened and performs what it returns, with the sockets, the timers and the waiters.
extension MeshNode {
    // MARK: Feeding the sessions

    /// Gives `event` to every coordinator's session (the node is built, a listen to announce,
    /// more interest, the close) and performs the actions each returns.
    func apply(_ event: CoordinatorSession.Event, now: ContinuousClock.Instant = .now) {
        for slot in slots.indices { apply(event, to: slot, now: now) }
    }

    /// Gives `event` to the session of the coordinator at `slot` and performs the actions it
    /// returns, then those of the events the actions themselves caused (a dial that fails at
    /// once), in order. With several coordinators, then checks which one the node routes by.
    ///
    /// - Parameters:
    ///   - event: what happened.
    ///   - slot: the coordinator's place in the node's list.
    ///   - now: when; for a timer, the instant the loop ran it.
    func apply(_ event: CoordinatorSession.Event, to slot: Int, now: ContinuousClock.Instant = .now) {
        var pending = [(event, now)]
        var index = 0
        while index < pending.count {
            let (next, at) = pending[index]
            index += 1
            for action in slots[slot].session.handle(next, now: at) {
                if let followUp = perform(action, slot: slot) { pending.append((followUp, .now)) }
            }
        }
        if slots.count > 1 {
            if slots[slot].session.isRegistered { slots[slot].wasRegistered = true }
            let welcomedInBuild = slots[slot].welcomedInBuild
            slots[slot].welcomedInBuild = false
            choosePrimary(welcomedInBuild: welcomedInBuild ? slot : nil)
        }
        // The build is done once the node holds the topology of the coordinator it routes by
        // (a standby's welcome carries none).
        if let registration, slots[primary].session.isRouting {
            self.registration = nil
            registration.resume()
        }
    }

    /// Fails over: once the coordinator the node routes by is lost, the first registered one in
    /// the list takes over, and its topology (kept current all along by its own registration)
    /// replaces the lost one's. While the current one is registered, the node moves only to a
    /// coordinator earlier in its list whose first welcome came within the build's deadline (the
    /// build's welcomes race); never to one that comes later or back after being lost: that one
    /// holds only the nodes that registered with it so far. While the first coordinator of the
    /// list is still answering the build's first registration, the node waits for it: the others
    /// registered it as a standby.
    ///
    /// The coordinator taken over from registers this node as a standby from its next session
    /// on; one that is a standby is asked for its topology with `route` (PROTOCOL.md §7.2).
    private func choosePrimary(welcomedInBuild: Int?) {
        let next: Int
        let failover = !slots[primary].session.isRegistered
        if failover {
            guard !slots[primary].session.isAwaitingFirstWelcome else { return }
            guard let registered = slots.indices.first(where: { slots[$0].session.isRegistered }) else { return }
            next = registered
        } else {
            guard let earlier = welcomedInBuild, earlier < primary else { return }
            next = earlier
        }
        let previous = slots[primary].session.configuration.coordinator
        // A real failover is worth an info line; the build's race of welcomes is not.
        let lost = failover && slots[primary].wasRegistered
        let routed = slots[primary].session.routingTopology.nodes
        let left = primary
        primary = next
        for action in slots[left].session.handle(.route(false), now: .now) { _ = perform(action, slot: left) }
        for action in slots[next].session.takeOver(from: routed, now: .now) { _ = perform(action, slot: next) }
        for action in slots[next].session.handle(.route(true), now: .now) { _ = perform(action, slot: next) }
        logger.log(
            lost ? .info : .debug,
            "routing by the coordinator at \(slots[next].session.configuration.coordinator) now ("
                + (failover ? "\(previous) is unreachable" : "earlier in the list") + "); \(topology.nodes.count) node(s) in its view")
        topologyChanged(.everything)
        releaseInterestWaiters()
        if hasPartialView { acknowledge(slots[next].session.interest) }
    }

    /// The coordinator this node routes by (`HOST:PORT` as configured), `nil` while none of its
    /// list has it registered: with several coordinators, where failover has taken it.
    package var routingCoordinator: String? {
        slots[primary].session.isRegistered ? slots[primary].session.configuration.coordinator : nil
    }

    /// Handles what the coordinator links, the peer links and the sessions' timers queued.
    func handle(_ batch: [ControlEvent]) {
        for event in batch {
            switch event {
            case .opened(let connection):
                if let proven = connection.peerKey, loggedCoordinatorKey != proven {
                    // Learned from the handshake; a pinned key was already checked there.
                    loggedCoordinatorKey = proven
                    logger.info(
                        "the coordinator proved static key \(lowercaseHexID(proven))"
                            + (configuration.coordinatorKey == nil ? " (pin it with MESH_COORDINATOR_KEY)" : ""))
                }
                if let (slot, attempt) = attempt(of: connection) { apply(.connected(attempt), to: slot) }
            case .frame(let connection, let body):
                guard let (slot, attempt) = attempt(of: connection) else { continue }  // from a connection given up
                let message: ControlMessage
                do throws(FrameError) {
                    message = try SharedControlDecoding.decode(body)
                } catch {
                    connection.close(error: .frame(error))
                    continue
                }
                apply(.received(attempt, message), to: slot)
            case .closed(let connection, let error):
                guard let (slot, attempt) = attempt(of: connection) else { continue }
                slots[slot].link = nil
                apply(.connectionClosed(attempt, error), to: slot)
            case .timer(let slot, let timer, let due, let firedAt):
                // Drops held back by the once-a-second limit are reported with each heartbeat tick,
                // registered or not (once per tick, whatever the number of coordinators).
                if timer == .heartbeat, slot == 0 { router.reportHeldDrops() }
                apply(.timerFired(timer, due: due), to: slot, now: firedAt)
            case .peerClosed(let id, let connection, let error, let unsent):
                peerClosed(id: id, connection: connection, error: error, unsent: unsent)
            case .buildDeadline:
                buildDeadlinePassed()
            case .firstSend(let topic):
                // Untyped sends are declared without waiting: the send went out already.
                if declaredSends.count < Router.maximumAnnouncedTopics, declaredSends.insert(topic).inserted {
                    announce(.publish, topic: topic)
                }
            }
        }
    }

    /// Tells the coordinator about a listen, unlisten, serve or unserve, when connected (a
    /// reconnect re-sends all).
    ///
    /// Each one is a change of this node's record: its version goes up by one. With several
    /// coordinators the version rides along (and with the register), so they can tell whose view
    /// of this node is the newer (PROTOCOL.md, "Several coordinators").
    func announce(_ type: ControlMessage.Kind, topic: String? = nil, service: String? = nil, messageType: TopicType? = nil) {
        recordVersion += 1
        let version = slots.count > 1 ? recordVersion : nil
        apply(.sendRequested(ControlMessage(type, topic: topic, service: service, messageType: messageType, version: version)))
    }

    /// Ends the session as the node closes: says `bye` on the coordinator connection (returned, to
    /// wait for once it is flushed by `deadline`), disarms the timers, wakes interest waits.
    func closeSession(flushingUntil deadline: ContinuousClock.Instant) -> [Connection] {
        var closing: [Connection] = []
        for slot in slots.indices {
            for action in slots[slot].session.handle(.close, now: .now) {
                guard case .leave(let attempt) = action, let connection = connection(for: attempt, slot: slot) else {
                    _ = perform(action, slot: slot)
                    continue
                }
                slots[slot].link = nil
                connection.send(ControlMessage(.bye).encodedFrame())
                connection.closeAfterFlushing(deadline: deadline)
                closing.append(connection)
            }
        }
        return closing
    }

    /// Stops every coordinator's heartbeat pump (the node closes).
    func stopHeartbeatPumps() {
        for slot in slots { slot.pump.stop() }
    }

    // MARK: Performing its actions

    /// Does what the session of the coordinator at `slot` asked; returns an event when doing it
    /// failed at once.
    private func perform(_ action: CoordinatorSession.Action, slot: Int) -> CoordinatorSession.Event? {
        switch action {
        case .dial(let attempt):
            return dial(attempt, slot: slot)
        case .register(let attempt, let view, let interest, let standby):
            guard let connection = connection(for: attempt, slot: slot) else { return nil }
            // The counters since this process started ride along, so a coordinator that sees this
            // node again (a new session, or a restarted coordinator) continues them, never from 0.
            let current = statistics
            slots[slot].lastReportedStatistics = current
            var record = self.record
            if slots.count > 1 { record.version = recordVersion }
            connection.send(
                ControlMessage(.register, node: record, stats: current, view: view, interest: interest, standby: standby ? true : nil)
                    .encodedFrame())
        case .send(let attempt, let message):
            connection(for: attempt, slot: slot)?.send(message.encodedFrame())
        case .sendHeartbeat(let attempt):
            guard let connection = connection(for: attempt, slot: slot) else { return nil }
            // Counters ride along only when they changed: an idle node's beat stays a few bytes.
            let current = statistics
            let changed = current != slots[slot].lastReportedStatistics
            slots[slot].lastReportedStatistics = current
            connection.send(ControlMessage(.heartbeat, stats: changed ? current : nil).encodedFrame())
            slots[slot].pump.beat(on: connection)
        case .close(let attempt):
            guard let connection = connection(for: attempt, slot: slot) else { return nil }
            slots[slot].link = nil
            connection.close()
        case .leave(let attempt):
            guard let connection = connection(for: attempt, slot: slot) else { return nil }
            slots[slot].link = nil
            connection.send(ControlMessage(.bye).encodedFrame())
            connection.closeAfterFlushing(deadline: .now + .seconds(2))
        case .schedule(let timer, let due):
            if let old = slots[slot].timers.removeValue(forKey: timer) { loop.cancelTimer(old) }
            let events = controlEvents
            slots[slot].timers[timer] = loop.schedule(at: due) {
                events.push(.timer(slot, timer, due: due, firedAt: .now))
            }
        case .cancel(let timer):
            if let old = slots[slot].timers.removeValue(forKey: timer) { loop.cancelTimer(old) }
        case .topologyChanged(let joined, let changes):
            // Every coordinator's session keeps its own topology; the node routes by one of them.
            if slot == primary { topologyChanged(changes, joined: joined) }
        case .acknowledge(let answered):
            if slot == primary { acknowledge(answered) }
        case .releaseInterestWaiters:
            if slot == primary { releaseInterestWaiters() }
        case .pumpHeartbeats(let attempt):
            slots[slot].pump.beat(on: attempt.flatMap { connection(for: $0, slot: slot) })
        case .registered:
            // The build resumes once the coordinator routed by has welcomed it (``apply(_:to:now:)``).
            slots[slot].welcomedInBuild = true
        case .registrationFailed(let error):
            registrationFailed(error, slot: slot)
        case .refused(let topic, let reason):
            // Every coordinator refuses alike: the one the node routes by speaks for them.
            if slot == primary { refused(topic: topic, reason: reason) }
        case .countReconnect:
            router.count { $0.coordinatorReconnects += 1 }
        case .stop:
            guard !wasAskedToStop else { return nil }  // asked by several coordinators: once
            wasAskedToStop = true
            let action = configuration.onShutdownRequest
            Task {
                await self.close()
                // kill, not raise: raise targets this thread only, where a Dispatch signal source
                // (which ignores the signal's default action) never sees it.
                if action == .terminateProcess { kill(getpid(), SIGTERM) }
            }
        case .log(let level, let line):
            logger.log(level, line)
        }
        return nil
    }

    /// The build's registration failed with one coordinator: with one, the build fails; with
    /// several, only once every one of them failed (a rejection says more than a timeout).
    private func registrationFailed(_ error: MeshError, slot: Int) {
        guard slots.count > 1 else {
            registration?.resume(throwing: error)
            registration = nil
            return
        }
        slots[slot].missedRegistration = error
        let failures = slots.compactMap(\.missedRegistration)
        guard failures.count == slots.count, let registration else { return }
        self.registration = nil
        if let rejected = failures.first(where: { if case .registrationRejected = $0 { true } else { false } }) {
            registration.resume(throwing: rejected)
            return
        }
        let reasons = failures.map(\.description).joined(separator: "; ")
        registration.resume(
            throwing: MeshError.coordinatorUnreachable(
                address: configuration.coordinator, reason: "none of the \(slots.count) coordinators registered this node: \(reasons)"))
    }

    /// Several coordinators, the build still waiting at twice the connect timeout: it fails,
    /// naming what each coordinator did.
    private func buildDeadlinePassed() {
        guard let registration else { return }
        self.registration = nil
        let seconds = Double(configuration.connectTimeout.components.seconds) * 2
        let reasons = slots.map { slot in
            let coordinator = slot.session.configuration.coordinator
            if let missed = slot.missedRegistration { return "\(coordinator): \(missed)" }
            return "\(coordinator): " + (slot.session.isRegistered ? "registered, but never answered with its topology" : "no registration")
        }
        registration.resume(
            throwing: MeshError.coordinatorUnreachable(
                address: configuration.coordinator,
                reason: "no coordinator of the \(slots.count) routed this node within \(seconds) s: \(reasons.joined(separator: "; "))"))
    }

    private func dial(_ attempt: CoordinatorSession.Attempt, slot: Int) -> CoordinatorSession.Event? {
        guard !isClosed, let address = slots[slot].address else { return .connectionClosed(attempt, nil) }
        var options = MeshNode.connectionOptions(configuration, key: key, identity: identity, purpose: .control)
        if let pin = slots[slot].pinnedKey { options.handshake = options.handshake.expecting(nil, key: pin) }
        options.maximumFrameLength = max(options.maximumFrameLength, 64 << 20)
        options.maximumPendingBytes = 64 << 20
        do {
            let connection = try Connection.connect(
                to: address, options: options, delegate: CoordinatorLink(events: controlEvents), loop: loop)
            slots[slot].link = (attempt, connection)
            return nil
        } catch {
            return .connectionClosed(attempt, .socket(error))
        }
    }

    /// The connection of `attempt` of the coordinator at `slot`, while it is the current one.
    private func connection(for attempt: CoordinatorSession.Attempt, slot: Int) -> Connection? {
        guard let link = slots[slot].link, link.attempt == attempt else { return nil }
        return link.connection
    }

    /// The coordinator and attempt `connection` belongs to, while it is the current one.
    private func attempt(of connection: Connection) -> (Int, CoordinatorSession.Attempt)? {
        for slot in slots.indices {
            if let link = slots[slot].link, link.connection === connection { return (slot, link.attempt) }
        }
        return nil
    }
}

extension MeshNode {
    /// Settles which coordinators the node registers with, before anything is dialled: the list
    /// as configured; for `discover`, those announcing the mesh on the LAN; for `auto` (nothing
    /// configured), the one on this host if it accepts a connection now, else the LAN's, else this
    /// host's again (one that started meanwhile), within what is left of the connect timeout.
    ///
    /// - Throws: ``MeshError/coordinatorUnreachable(address:reason:)`` when `discover` hears none.
    func findCoordinators() async throws {
        guard slots.count == 1 else { return }
        let wanted = slots[0].session.configuration.coordinator
        guard wanted == MeshDefaults.discover || wanted == MeshDefaults.automatic else { return }
        let started = ContinuousClock.now
        if wanted == MeshDefaults.automatic {
            let local = SocketAddress.ipv4(host: "127.0.0.1", port: MeshDefaults.coordinatorPort)
            if await PortProbe.isListening(at: local, timeout: configuration.connectTimeout, loop: loop) {
                slots = MeshNode.slots(for: [MeshDefaults.coordinatorAddress], configuration: configuration, nodeID: id, loop: loop)
                return
            }
            logger.info(
                "no coordinator configured, and none at \(MeshDefaults.coordinatorAddress) on this host: listening for one of mesh"
                    + " \"\(MeshText.escaped(configuration.meshName))\" on the LAN")
        }
        let window = min(configuration.connectTimeout, MeshDefaults.discoveryWindow)
        let found: [(address: String, key: String)]
        do {
            found = try await BeaconListener.discover(
                mesh: configuration.meshName, key: key,
                pinned: key == nil ? nil : configuration.coordinatorKey.map { $0.lowercased() }, window: window,
                settle: MeshDefaults.discoverySettle, logger: logger)
        } catch let error as MeshError where wanted == MeshDefaults.automatic {
            // Nothing on the LAN either: this host's coordinator may have started meanwhile.
            var rest = configuration
            rest.connectTimeout = max(configuration.connectTimeout - started.duration(to: .now), .seconds(1))
            slots = MeshNode.slots(for: [MeshDefaults.coordinatorAddress], configuration: rest, nodeID: id, loop: loop)
            var reason = error.description
            if case .coordinatorUnreachable(_, let text) = error { reason = text }
            automaticSearch = reason
            logger.info("\(reason); trying \(MeshDefaults.coordinatorAddress) again")
            return
        }
        slots = MeshNode.slots(for: found.map(\.address), configuration: configuration, nodeID: id, loop: loop)
        if key != nil {
            // An authenticated beacon names the coordinator's static key: the handshake must
            // prove exactly that key. A key pinned in the configuration still rules: a beacon
            // naming another key was left out by discover.
            for (slot, beacon) in zip(slots.indices, found) { slots[slot].pinnedKey = NodeID.publicKeyBytes(beacon.key.lowercased()) }
        }
    }
}

extension MeshNode {
    /// A slot per coordinator of `coordinators`, each with its session and heartbeat pump.
    static func slots(
        for coordinators: [String], configuration: Configuration, nodeID: String, loop: EventLoop
    ) -> [CoordinatorSlot] {
        coordinators.enumerated().map { index, coordinator in
            var session = CoordinatorSession.Configuration(
                coordinator: coordinator, nodeID: nodeID, connectTimeout: configuration.connectTimeout,
                heartbeatInterval: configuration.heartbeatInterval, partialView: configuration.topologyView == .partial)
            session.keepsTrying = coordinators.count > 1
            // The node routes by the first; the others hold its record, ready to take over.
            session.standby = index > 0
            return CoordinatorSlot(
                session: CoordinatorSession(configuration: session),
                pump: HeartbeatPump(interval: configuration.heartbeatInterval, loop: loop))
        }
    }
}

/// One coordinator in a node's list, as the node holds it: the session with it (with its own
/// topology), its address, its current attempt and connection, its timers and its heartbeat pump.
struct CoordinatorSlot {
    var session: CoordinatorSession
    var address: SocketAddress?
    /// The static key this coordinator must prove, from its authenticated beacon (discovery in
    /// a keyed mesh); `nil` leaves the configured pin, if any.
    var pinnedKey: [UInt8]?
    /// The session's current attempt and its connection to the coordinator.
    var link: (attempt: CoordinatorSession.Attempt, connection: Connection)?
    /// The event-loop timer of each armed session timer.
    var timers: [CoordinatorSession.Timer: UInt64] = [:]
    /// Sends a bare heartbeat from the loop thread when the actor sends none in time.
    let pump: HeartbeatPump
    /// The counters the last heartbeat to this coordinator carried.
    var lastReportedStatistics: MeshStatistics?
    /// Why the build's registration failed with this coordinator (several coordinators only).
    var missedRegistration: MeshError?
    /// True once this coordinator has welcomed the node (several coordinators only).
    var wasRegistered = false
    /// Its first welcome came within the build's deadline, and the node has not yet weighed it.
    var welcomedInBuild = false
}
