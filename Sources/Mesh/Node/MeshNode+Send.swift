import Foundation

extension MeshNode {
    /// Sends `value` on `topic` to every group that listens: one member per group, or every
    /// member with ``LoadBalancing/broadcast``.
    ///
    /// The value is encoded once, however many nodes receive it; `Data` and `[UInt8]` travel as
    /// raw bytes. `send` returns once the message is queued for each receiver, not when it is
    /// read. A topic nobody listens to drops the message (counted in
    /// ``MeshStatistics/messagesUnrouted``); use ``waitForListener(_:timeout:)`` first when that matters.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - value: any `Encodable` value.
    /// - Throws: ``MeshError/closed``, ``MeshError/invalidName(_:reason:)``,
    ///   ``MeshError/encodingFailed(topic:reason:)`` or ``MeshError/frameTooLarge(size:limit:)``.
    public func send<T: Encodable & Sendable>(_ topic: String, _ value: T) async throws {
        try checkOpen()
        let receivers = receivers(of: topic)
        guard !receivers.isEmpty else {
            if routes[topic] == nil { try validateName(topic, kind: "topic") }
            sendStatistics.messagesUnrouted += 1
            logger.trace("no listener for \"\(topic)\"; message not sent")
            return
        }
        let encoding: PayloadEncoding
        let payload: Data
        do {
            (encoding, payload) = try encodePayload(value, codec: codec)
        } catch {
            throw MeshError.encodingFailed(topic: topic, reason: "\(error)")
        }
        guard payload.count <= configuration.maximumMessageSize else {
            throw MeshError.frameTooLarge(size: payload.count, limit: configuration.maximumMessageSize)
        }
        let frame = payload.withUnsafeBytes { MessageFrame.encode(topic: topic, encoding: encoding, payload: $0) }
        for node in receivers {
            if node.id == id {
                let message = InboundMessage(
                    topic: topic, encoding: encoding, payload: payload, sender: MeshPeer(id: id, name: name))
                receivedCounter.update {
                    $0.messagesReceived += 1
                    $0.bytesReceived += frame.count
                }
                inbox.push([message], bytes: frame.count, from: nil)
                sendStatistics.messagesSent += 1
                sendStatistics.bytesSent += frame.count
            } else {
                await deliver(frame, to: node, topic: topic)
            }
        }
    }

    /// Waits until some node listens to `topic` (this one included).
    ///
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``.
    public func waitForListener(_ topic: String, timeout: Duration = .seconds(10)) async throws {
        try await waitForTopology(timeout: timeout, describing: "a listener on \"\(topic)\"") { topology in
            topology.nodes.values.contains { $0.topics.contains(topic) }
        }
    }

    /// Waits until at least `count` nodes named `name` are in the topology.
    ///
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``.
    public func waitForNodes(named name: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        try await waitForTopology(timeout: timeout, describing: "\(count) node(s) named \"\(name)\"") { topology in
            topology.nodes.values.count { $0.name == name } >= count
        }
    }

    /// Suspends until `condition` holds for the topology, or `timeout` passes.
    func waitForTopology(
        timeout: Duration, describing what: String, _ condition: @escaping @Sendable (Topology) -> Bool
    ) async throws {
        try checkOpen()
        if condition(topology) { return }
        nextWaiterID += 1
        let waiterID = nextWaiterID
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            topologyWaiters[waiterID] = TopologyWaiter(isSatisfied: condition, continuation: continuation)
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expireWaiter(waiterID, what: what, timeout: timeout)
            }
        }
    }

    private func expireWaiter(_ waiterID: UInt64, what: String, timeout: Duration) {
        guard let waiter = topologyWaiters.removeValue(forKey: waiterID) else { return }
        let (seconds, attoseconds) = timeout.components
        waiter.continuation.resume(
            throwing: MeshError.timedOut(waitingFor: what, seconds: Double(seconds) + Double(attoseconds) / 1e18))
    }

    // MARK: Routing

    /// The nodes that get the next message on `topic`, after load balancing.
    private func receivers(of topic: String) -> [NodeRecord] {
        let groups: [[NodeRecord]]
        if let cached = routes[topic] {
            groups = cached
        } else {
            groups = LoadBalancer.groups(topology.listeners(of: topic))
            routes[topic] = groups
        }
        if groups.isEmpty { return [] }
        let now = ContinuousClock.now
        let failed = failedPeers
        return balancer.receivers(
            topic: topic, groups: groups,
            isAvailable: { node in failed[node.id].map { now - $0 > .seconds(1) } ?? true }, using: &random)
    }

    /// Queues `frame` for `node`, applying the full-queue policy.
    private func deliver(_ frame: [UInt8], to node: NodeRecord, topic: String) async {
        var connection = connection(to: node)
        var result = connection?.send(frame) ?? .closed
        if result == .closed, connection != nil {
            // The connection died since it was last used: dial again, once.
            peers[node.id] = nil
            connection = self.connection(to: node)
            result = connection?.send(frame) ?? .closed
        }
        if result == .full, case .wait(let patience) = configuration.whenPeerQueueFull, let waiting = connection {
            if await waiting.waitForSpace(until: .now + patience) { result = waiting.send(frame) }
        }
        switch result {
        case .queued:
            sendStatistics.messagesSent += 1
            sendStatistics.bytesSent += frame.count
        case .full:
            dropped(1, bytes: frame.count, for: node, topic: topic, reason: "its queue stayed full (\(configuration.maximumQueuedBytesPerPeer) bytes)")
        case .closed:
            dropped(1, bytes: frame.count, for: node, topic: topic, reason: "no connection could be opened")
        }
    }

    /// The open connection to `node`, dialling one when there is none.
    private func connection(to node: NodeRecord) -> Connection? {
        if let existing = peers[node.id] { return existing }
        do {
            let connection = try Connection.connect(
                to: node.address, options: connectionOptions,
                delegate: PeerLink(nodeID: node.id, events: controlEvents))
            connection.send(PeerHello(id: id, name: name).encodedFrame())
            peers[node.id] = connection
            if failedPeers[node.id] != nil { sendStatistics.reconnects += 1 }
            return connection
        } catch {
            logger.error("cannot open a connection to \(node.name) (\(node.id)) at \(node.address): \(error)")
            return nil
        }
    }

    /// Counts and logs messages that will not arrive.
    func dropped(_ count: Int, bytes: Int, for node: NodeRecord?, topic: String?, reason: String) {
        sendStatistics.messagesDropped += count
        let who = node.map { "\($0.name) (\($0.id)) at \($0.address)" } ?? "a peer"
        let what = topic.map { " on \"\($0)\"" } ?? ""
        logger.warning("dropped \(count) message(s) (\(bytes) bytes)\(what) for \(who): \(reason)")
    }

    func peerClosed(id peerID: String, connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        if peers[peerID] === connection { peers[peerID] = nil }
        let node = topology.nodes[peerID]
        if let error {
            failedPeers[peerID] = .now
            if node != nil { logger.warning("connection to \(node!.name) (\(peerID)) at \(connection.remote) failed: \(error)") }
        }
        if unsent.frames > 0 {
            dropped(unsent.frames, bytes: unsent.bytes, for: node, topic: nil, reason: error?.description ?? "connection closed")
        }
    }
}
