import Foundation
import MeshCrypto

/// The node's session with the coordinator: registering, following the topology's deltas,
/// heartbeats, and finding the coordinator again after losing it.
extension MeshNode {
    // MARK: The coordinator

    func connectToCoordinator() {
        guard !isClosed, let address = coordinatorAddress else { return }
        var options = MeshNode.connectionOptions(configuration, key: key, id: id, purpose: .control)
        options.maximumFrameLength = max(options.maximumFrameLength, 64 << 20)
        options.maximumPendingBytes = 64 << 20
        do {
            let connection = try Connection.connect(
                to: address, options: options, delegate: CoordinatorLink(events: controlEvents))
            let partial = configuration.topologyView == .partial
            registeredInterest = interest
            connection.send(
                ControlMessage(
                    .register, node: record, secret: idSecret, view: partial ? .partial : nil,
                    interest: partial && !interest.isEmpty ? interest : nil
                ).encodedFrame())
            coordinatorState = .connecting(connection)
            connectingSince = .now
        } catch {
            coordinatorFailed(nil, error: .socket(error))
        }
    }

    func registrationTimedOut(after timeout: Duration) {
        guard let registration else { return }
        self.registration = nil
        let seconds = Double(timeout.components.seconds)
        if case .connecting(let connection) = coordinatorState { connection.close() }
        let last = registrationRetryReason.map { " (the last attempt: \($0))" } ?? ""
        registration.resume(
            throwing: MeshError.coordinatorUnreachable(
                address: configuration.coordinator, reason: "no registration within \(seconds) s\(last)"))
    }

    func handle(_ batch: [ControlEvent]) {
        for event in batch {
            switch event {
            case .opened:
                break
            case .frame(let connection, let body):
                let message: ControlMessage
                do throws(FrameError) {
                    message = try ControlMessage.decode(body)
                } catch {
                    connection.close(error: .frame(error))
                    continue
                }
                handle(message, from: connection)
            case .closed(let connection, let error):
                coordinatorFailed(connection, error: error)
            case .peerClosed(let id, let connection, let error, let unsent):
                peerClosed(id: id, connection: connection, error: error, unsent: unsent)
            }
        }
    }

    func handle(_ message: ControlMessage, from connection: Connection) {
        switch coordinatorState {
        case .connecting(let current), .registered(let current):
            guard current === connection else { return }  // from a connection already given up
        case .disconnected:
            return
        }
        lastHeardFromCoordinator = .now
        switch message.type {
        case .welcome:
            guard case .connecting(let current) = coordinatorState, current === connection,
                let snapshot = message.topology
            else { return }
            coordinatorState = .registered(connection)
            reconnectAttempt = 0
            heartbeatPump.beat(on: connection)
            if coordinatorLostAt != nil {
                // A fresh coordinator knows only the nodes that re-registered so far. Keep routing
                // to the others for a grace period: they are most likely alive and re-registering.
                let fresh = Topology(snapshot)
                provisional = topology.nodes.filter { $0.key != id && fresh.nodes[$0.key] == nil }
                if !provisional.isEmpty {
                    let grace = MeshNode.reregistrationGrace
                    Task {
                        try? await Task.sleep(for: grace)
                        self.expireProvisional()
                    }
                }
            }
            replaceTopology(Topology(snapshot))
            // A coordinator that predates partial views sends the full topology and says nothing.
            hasPartialView = configuration.topologyView == .partial && message.view == .partial
            if hasPartialView {
                // What was declared since the register went out is asked for now.
                let missing = interest.subtracting(registeredInterest)
                if !missing.isEmpty { connection.send(ControlMessage(.interest, interest: missing).encodedFrame()) }
                acknowledge(registeredInterest)
            }
            if let lostAt = coordinatorLostAt {
                router.count { $0.coordinatorReconnects += 1 }
                logger.info(
                    "coordinator at \(configuration.coordinator) is back after \(formatted(lostAt.duration(to: .now))); registered again with \(listenedTopics.count) topic(s)"
                )
                coordinatorLostAt = nil
            } else {
                logger.debug("registered as \(id) with the coordinator at \(configuration.coordinator)")
            }
            registration?.resume()
            registration = nil
        case .rejected:
            let reason = message.reason ?? "no reason given"
            if let registration {
                self.registration = nil
                registration.resume(throwing: MeshError.registrationRejected(reason: reason))
            } else {
                logger.error("the coordinator rejected this node: \(reason)")
            }
            connection.close()
        case .delta:
            guard case .registered(let current) = coordinatorState, current === connection,
                let delta = message.delta
            else { return }
            switch topology.apply(delta) {
            case .applied:
                peerDirectory.remember(delta.changes.compactMap { $0.op == .join ? $0.node : nil })
                topologyChanged()
            case .alreadyKnown: break
            case .gap:
                logger.debug("missed a topology version (have \(topology.version), got \(delta.from)→\(delta.to)); asking for a full copy")
                connection.send(ControlMessage(.sync).encodedFrame())
            }
            if let answered = message.interest { acknowledge(answered) }
        case .topology:
            guard let snapshot = message.topology else { return }
            replaceTopology(Topology(snapshot))
        case .heartbeat:
            break
        case .shutdown:
            logger.info("stopping: \(message.reason ?? "the coordinator asked")")
            wasAskedToStop = true
            let action = configuration.onShutdownRequest
            Task {
                await self.close()
                // kill, not raise: raise targets this thread only, where a Dispatch signal source
                // (which ignores the signal's default action) never sees it.
                if action == .terminateProcess { kill(getpid(), SIGTERM) }
            }
        default:
            logger.warning("unexpected \(message.type) message from the coordinator; ignored")
        }
    }

    func coordinatorFailed(_ connection: Connection?, error: ConnectionError?) {
        switch coordinatorState {
        case .connecting(let current), .registered(let current):
            if let connection, current !== connection { return }
        case .disconnected:
            if connection != nil { return }
        }
        let wasRegistered: Bool
        if case .registered = coordinatorState { wasRegistered = true } else { wasRegistered = false }
        coordinatorState = .disconnected
        heartbeatPump.beat(on: nil)
        releaseInterestWaiters()
        if let registration {
            if case .handshake(.closedDuringHandshake)? = error, !isClosed {
                // A coordinator closes handshakes past its admission limit (a join storm of
                // thousands at once): a busy coordinator, not a wrong one. Try again, within
                // the connect timeout, instead of failing the whole build.
                registrationRetryReason = error?.description
                reconnectAttempt += 1
                let delay = Duration.milliseconds(min(1000, 50 << min(reconnectAttempt, 5)))
                Task {
                    try? await Task.sleep(for: delay)
                    self.retryCoordinator()
                }
                return
            }
            self.registration = nil
            registration.resume(throwing: MeshError(connectingTo: configuration.coordinator, failure: error))
            return
        }
        guard !isClosed else { return }
        if wasRegistered {
            coordinatorLostAt = .now
            logger.warning(
                "lost the coordinator at \(configuration.coordinator) (\(error?.description ?? "closed")); keeping the last topology (\(topology.nodes.count) node(s)) and retrying"
            )
        } else {
            logger.debug("coordinator still unreachable: \(error?.description ?? "closed")")
        }
        reconnectAttempt += 1
        let delay = Duration.milliseconds(min(1000, 50 << min(reconnectAttempt, 5)))
        Task {
            try? await Task.sleep(for: delay)
            self.retryCoordinator()
        }
    }

    func expireProvisional() {
        guard !provisional.isEmpty else { return }
        let gone = provisional.filter { topology.nodes[$0.key] == nil }
        provisional = [:]
        if !gone.isEmpty {
            logger.info(
                "\(gone.count) node(s) did not re-register with the new coordinator within \(formatted(MeshNode.reregistrationGrace)); no longer routing to them: \(gone.values.map(\.name).sorted().joined(separator: ", "))"
            )
        }
        topologyChanged()
    }

    func retryCoordinator() {
        guard !isClosed, case .disconnected = coordinatorState else { return }
        connectToCoordinator()
    }

    /// Tells the coordinator this node is alive (with its counters), and gives the coordinator
    /// up when it has been silent for three heartbeats: a half-open connection never closes by itself.
    func beat() {
        router.reportHeldDrops()
        if case .connecting(let connection) = coordinatorState,
            let since = connectingSince, since.duration(to: .now) > configuration.connectTimeout
        {
            // Registered neither way (a partition right after the handshake, say): start over.
            connection.close(error: .protocolViolation("no welcome from the coordinator within \(formatted(configuration.connectTimeout))"))
            return
        }
        let now = ContinuousClock.now
        let starved = lastBeat.duration(to: now) > configuration.heartbeatInterval * 2
        lastBeat = now
        guard case .registered(let connection) = coordinatorState else { return }
        let silence = lastHeardFromCoordinator.duration(to: now)
        if starved {
            // This process could not run the beat on time: what arrived meanwhile may still be
            // queued unread. Judge the coordinator on the next beat, with one interval of grace.
            lastHeardFromCoordinator = max(lastHeardFromCoordinator, now - configuration.heartbeatInterval)
        } else if silence > configuration.heartbeatInterval * 3 {
            connection.close(error: .protocolViolation("no heartbeat from the coordinator for \(formatted(silence))"))
            return
        }
        // Counters ride along only when they changed: an idle node's beat stays a few bytes.
        let current = statistics
        let changed = current != lastReportedStatistics
        lastReportedStatistics = current
        connection.send(ControlMessage(.heartbeat, stats: changed ? current : nil).encodedFrame())
        heartbeatPump.beat(on: connection)
    }

    /// Tells the coordinator about a listen, unlisten, serve or unserve, when connected (a
    /// reconnect re-sends all).
    func announce(_ type: ControlMessage.Kind, topic: String? = nil, service: String? = nil) {
        switch coordinatorState {
        case .registered(let connection), .connecting(let connection):
            connection.send(ControlMessage(type, topic: topic, service: service).encodedFrame())
        case .disconnected:
            break
        }
    }
}
