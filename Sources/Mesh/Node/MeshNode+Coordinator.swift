import Foundation
import MeshCrypto

/// The node's session with the coordinator, as the shell around ``CoordinatorSession``: the
/// session decides (registering, deltas, heartbeats, liveness, reconnecting); the node feeds it
/// what happened and performs what it returns, with the sockets, the timers and the waiters.
extension MeshNode {
    // MARK: Feeding the session

    /// Gives `event` to the session and performs the actions it returns, then those of the events
    /// the actions themselves caused (a dial that fails at once), in order.
    ///
    /// - Parameters:
    ///   - event: what happened.
    ///   - now: when; for a timer, the instant the loop ran it.
    func apply(_ event: CoordinatorSession.Event, now: ContinuousClock.Instant = .now) {
        var pending = [(event, now)]
        var index = 0
        while index < pending.count {
            let (next, at) = pending[index]
            index += 1
            for action in session.handle(next, now: at) {
                if let followUp = perform(action) { pending.append((followUp, .now)) }
            }
        }
    }

    /// Handles what the coordinator link, the peer links and the session's timers queued.
    func handle(_ batch: [ControlEvent]) {
        for event in batch {
            switch event {
            case .opened(let connection):
                if let proven = connection.peerKey, loggedCoordinatorKey != proven {
                    // Learned from the handshake; a pinned key was already checked there.
                    loggedCoordinatorKey = proven
                    logger.info(
                        "the coordinator proved static key \(lowercaseHex(proven))"
                            + (configuration.coordinatorKey == nil ? " (pin it with MESH_COORDINATOR_KEY)" : ""))
                }
                if let attempt = attempt(of: connection) { apply(.connected(attempt)) }
            case .frame(let connection, let body):
                guard let attempt = attempt(of: connection) else { continue }  // from a connection given up
                let message: ControlMessage
                do throws(FrameError) {
                    message = try SharedControlDecoding.decode(body)
                } catch {
                    connection.close(error: .frame(error))
                    continue
                }
                apply(.received(attempt, message))
            case .closed(let connection, let error):
                guard let attempt = attempt(of: connection) else { continue }
                controlLink = nil
                apply(.connectionClosed(attempt, error))
            case .timer(let timer, let due, let firedAt):
                // Drops held back by the once-a-second limit are reported with each heartbeat tick,
                // registered or not.
                if timer == .heartbeat { router.reportHeldDrops() }
                apply(.timerFired(timer, due: due), now: firedAt)
            case .peerClosed(let id, let connection, let error, let unsent):
                peerClosed(id: id, connection: connection, error: error, unsent: unsent)
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
    func announce(_ type: ControlMessage.Kind, topic: String? = nil, service: String? = nil, messageType: TopicType? = nil) {
        apply(.sendRequested(ControlMessage(type, topic: topic, service: service, messageType: messageType)))
    }

    /// Ends the session as the node closes: says `bye` on the coordinator connection (returned, to
    /// wait for once it is flushed by `deadline`), disarms the timers, wakes interest waits.
    func closeSession(flushingUntil deadline: ContinuousClock.Instant) -> [Connection] {
        var closing: [Connection] = []
        for action in session.handle(.close, now: .now) {
            guard case .leave(let attempt) = action, let connection = connection(for: attempt) else {
                _ = perform(action)
                continue
            }
            controlLink = nil
            connection.send(ControlMessage(.bye).encodedFrame())
            connection.closeAfterFlushing(deadline: deadline)
            closing.append(connection)
        }
        return closing
    }

    // MARK: Performing its actions

    /// Does what the session asked; returns an event when doing it failed at once.
    private func perform(_ action: CoordinatorSession.Action) -> CoordinatorSession.Event? {
        switch action {
        case .dial(let attempt):
            return dial(attempt)
        case .register(let attempt, let view, let interest):
            guard let connection = connection(for: attempt) else { return nil }
            // The counters since this process started ride along, so a coordinator that sees this
            // node again (a new session, or a restarted coordinator) continues them, never from 0.
            let current = statistics
            lastReportedStatistics = current
            connection.send(
                ControlMessage(.register, node: record, stats: current, view: view, interest: interest)
                    .encodedFrame())
        case .send(let attempt, let message):
            connection(for: attempt)?.send(message.encodedFrame())
        case .sendHeartbeat(let attempt):
            guard let connection = connection(for: attempt) else { return nil }
            // Counters ride along only when they changed: an idle node's beat stays a few bytes.
            let current = statistics
            let changed = current != lastReportedStatistics
            lastReportedStatistics = current
            connection.send(ControlMessage(.heartbeat, stats: changed ? current : nil).encodedFrame())
            heartbeatPump.beat(on: connection)
        case .close(let attempt):
            guard let connection = connection(for: attempt) else { return nil }
            controlLink = nil
            connection.close()
        case .leave(let attempt):
            guard let connection = connection(for: attempt) else { return nil }
            controlLink = nil
            connection.send(ControlMessage(.bye).encodedFrame())
            connection.closeAfterFlushing(deadline: .now + .seconds(2))
        case .schedule(let timer, let due):
            if let old = sessionTimers.removeValue(forKey: timer) { loop.cancelTimer(old) }
            let events = controlEvents
            sessionTimers[timer] = loop.schedule(at: due) {
                events.push(.timer(timer, due: due, firedAt: .now))
            }
        case .cancel(let timer):
            if let old = sessionTimers.removeValue(forKey: timer) { loop.cancelTimer(old) }
        case .topologyChanged(let joined, let changes):
            topologyChanged(changes, joined: joined)
        case .acknowledge(let answered):
            acknowledge(answered)
        case .releaseInterestWaiters:
            releaseInterestWaiters()
        case .pumpHeartbeats(let attempt):
            heartbeatPump.beat(on: attempt.flatMap { connection(for: $0) })
        case .registered:
            registration?.resume()
            registration = nil
        case .registrationFailed(let error):
            registration?.resume(throwing: error)
            registration = nil
        case .refused(let topic, let reason):
            refused(topic: topic, reason: reason)
        case .countReconnect:
            router.count { $0.coordinatorReconnects += 1 }
        case .stop:
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

    private func dial(_ attempt: CoordinatorSession.Attempt) -> CoordinatorSession.Event? {
        guard !isClosed, let address = coordinatorAddress else { return .connectionClosed(attempt, nil) }
        var options = MeshNode.connectionOptions(configuration, key: key, identity: identity, purpose: .control)
        options.maximumFrameLength = max(options.maximumFrameLength, 64 << 20)
        options.maximumPendingBytes = 64 << 20
        do {
            let connection = try Connection.connect(
                to: address, options: options, delegate: CoordinatorLink(events: controlEvents), loop: loop)
            controlLink = (attempt, connection)
            return nil
        } catch {
            return .connectionClosed(attempt, .socket(error))
        }
    }

    /// The connection of `attempt`, while it is the current one.
    private func connection(for attempt: CoordinatorSession.Attempt) -> Connection? {
        guard let link = controlLink, link.attempt == attempt else { return nil }
        return link.connection
    }

    /// The attempt `connection` belongs to, while it is the current one.
    private func attempt(of connection: Connection) -> CoordinatorSession.Attempt? {
        guard let link = controlLink, link.connection === connection else { return nil }
        return link.attempt
    }
}
