import Foundation

extension MeshNode {
    /// Sends `value` on `topic` to every group that listens: one member per group, or every
    /// member with ``LoadBalancing/broadcast``.
    ///
    /// The value is encoded once, however many nodes receive it; `Data` and `[UInt8]` travel as
    /// raw bytes. `send` returns once the message is queued for each receiver, not when it is
    /// read. A topic nobody listens to drops the message (counted in
    /// ``MeshStatistics/messagesUnrouted``); use ``waitForListener(_:count:timeout:)`` first when that matters.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - value: any `Encodable` value.
    /// - Throws: ``MeshError/closed``, ``MeshError/invalidName(_:reason:)``,
    ///   ``MeshError/encodingFailed(topic:reason:)`` or ``MeshError/frameTooLarge(size:limit:)``.
    public nonisolated(nonsending) func send<T: Encodable & Sendable>(_ topic: String, _ value: T) async throws {
        let encoding: PayloadEncoding
        let payload: Data
        do {
            (encoding, payload) = try encodePayload(value, codec: codec)
        } catch {
            throw MeshError.encodingFailed(topic: topic, reason: "\(error)")
        }
        try await send(topic, encoding: encoding, payload: payload)
    }

    /// Sends raw bytes on `topic`; listeners of `Data` or `[UInt8]` get them unchanged.
    ///
    /// A payload of 32 KiB or more is not copied: each receiver's queue keeps a reference to
    /// `data` until it is written (or the connection closes). `Data` cannot change under it:
    /// changing your variable meanwhile copies it first (copy-on-write), so a fresh or unchanged
    /// `Data` per send avoids that copy. A `Data` made with `bytesNoCopy` and no deallocator must
    /// keep its memory valid until then.
    public nonisolated(nonsending) func send(_ topic: String, _ data: Data) async throws {
        try await prepareRoute(topic: topic)
        let stalled = try queue(topic, encoding: .raw, payload: data)
        if !stalled.isEmpty { await deliverSlowly(topic: topic, encoding: .raw, payload: data, to: stalled) }
    }

    /// Sends raw bytes on `topic`; listeners of `Data` or `[UInt8]` get them unchanged.
    public nonisolated(nonsending) func send(_ topic: String, _ bytes: [UInt8]) async throws {
        try await send(topic, encoding: .raw, payload: Data(bytes))
    }

    /// The one send path: route, then queue the frame for each receiver.
    ///
    /// It runs on the caller's executor and takes only the router's and each connection's locks,
    /// so a burst of sends costs no actor hop or task switch per message.
    nonisolated(nonsending) func send(_ topic: String, encoding: PayloadEncoding, payload: Data) async throws {
        try await prepareRoute(topic: topic)
        let stalled = try queue(topic, encoding: encoding, payload: payload)
        if !stalled.isEmpty { await deliverSlowly(topic: topic, encoding: encoding, payload: payload, to: stalled) }
    }

    private nonisolated(nonsending) func deliverSlowly(
        topic: String, encoding: PayloadEncoding, payload: Data, to stalled: [(Connection, NodeRecord)]
    ) async {
        for (connection, node) in stalled {
            await deliverSlowly(topic: topic, encoding: encoding, payload: payload, to: node, after: connection)
        }
    }

    /// Queues the message for every receiver without suspending; returns the receivers whose
    /// connection was full or closed.
    private nonisolated func queue(_ topic: String, encoding: PayloadEncoding, payload: Data) throws
        -> [(Connection, NodeRecord)]
    {
        guard payload.count <= configuration.maximumMessageSize else {
            if router.isClosed { throw MeshError.closed }
            throw MeshError.frameTooLarge(size: payload.count, limit: configuration.maximumMessageSize)
        }
        var topicText = topic
        return try topicText.withUTF8 { topicUTF8 in
            let frameBytes = MessageFrame.frameLength(topicBytes: topicUTF8.count, payloadBytes: payload.count)
            var stalled: [(Connection, NodeRecord)] = []
            _ = try router.route(topic, frameBytes: frameBytes) { connection, member in
                guard let connection else {
                    deliverLocally(topic: topic, encoding: encoding, payload: payload, frameBytes: frameBytes)
                    return
                }
                // A large payload is retained by each connection's queue, not copied.
                let result = connection.sendMessage(
                    topic: UnsafeRawBufferPointer(topicUTF8), encoding: encoding, payload: payload)
                if result != .queued { stalled.append((connection, member.node)) }
            }
            return stalled
        }
    }

    nonisolated func deliverLocally(topic: String, encoding: PayloadEncoding, payload: Data, frameBytes: Int) {
        guard !inbox.isFull else {
            router.dropped(
                1, bytes: frameBytes, for: nil, topic: topic, stillCounted: true,
                reason: "this node's own listeners are \(configuration.maximumInboxBytes) bytes behind")
            return
        }
        let message = InboundMessage(topic: topic, encoding: encoding, payload: payload)
        receivedCounter.update {
            $0.messagesReceived += 1
            $0.bytesReceived += frameBytes
        }
        inbox.push(InboundBatch(sender: MeshPeer(id: id, name: name), messages: [message]), bytes: frameBytes, from: nil)
    }

    /// The rare path: the connection had closed or its queue was full.
    private nonisolated(nonsending) func deliverSlowly(
        topic: String, encoding: PayloadEncoding, payload: Data, to node: NodeRecord, after failed: Connection
    ) async {
        let frame = payload.withUnsafeBytes { MessageFrame.encode(topic: topic, encoding: encoding, payload: $0) }
        var connection: Connection? = failed
        var result = failed.sendMessageFrame(frame)
        if result == .closed {
            // The connection died since it was last used: dial again, once.
            connection = router.reconnect(to: node, replacing: failed)
            result = connection?.sendMessageFrame(frame) ?? .closed
        }
        if result == .full, let full = connection {
            switch configuration.whenPeerQueueFull {
            case .wait(let patience):
                if await full.waitForSpace(until: .now + patience) { result = full.sendMessageFrame(frame) }
            case .dropOldest:
                let (outcome, dropped) = full.sendDroppingOldest(frame)
                result = outcome
                if dropped.frames > 0 {
                    router.dropped(
                        dropped.frames, bytes: dropped.bytes, for: node, topic: nil, stillCounted: true,
                        reason: "oldest queued messages dropped to make room (queue limit \(configuration.maximumQueuedBytesPerPeer) bytes)")
                }
            case .dropNewest:
                break
            }
        }
        switch result {
        case .queued:
            break
        case .full:
            router.dropped(
                1, bytes: frame.count, for: node, topic: topic,
                reason: "its queue stayed full (\(configuration.maximumQueuedBytesPerPeer) bytes)")
        case .closed:
            router.dropped(1, bytes: frame.count, for: node, topic: topic, reason: "no connection could be opened")
        }
    }

    /// Waits until at least `count` nodes listen to `topic` (this one included).
    ///
    /// - Parameters:
    ///   - topic: The topic to wait for.
    ///   - count: how many listening nodes to wait for; more than one is useful before sending
    ///     to a worker pool, so the first messages do not all go to its first member.
    ///   - timeout: How long to wait.
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``.
    public func waitForListener(_ topic: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        let what = count == 1 ? "a listener on \"\(topic)\"" : "\(count) listeners on \"\(topic)\""
        try await need(ViewInterest(topics: [topic]))
        try await waitForTopology(.topic(topic), timeout: timeout, describing: what) { topology in
            topology.nodes.values.count { $0.topics.contains(topic) } >= count
        }
    }

    /// Waits until at least `count` nodes named `name` are in the topology.
    ///
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``.
    public func waitForNodes(named name: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        try await need(ViewInterest(names: [name]))
        try await waitForTopology(.name(name), timeout: timeout, describing: "\(count) node(s) named \"\(name)\"") { topology in
            topology.nodes.values.count { $0.name == name } >= count
        }
    }

    /// Suspends until `condition` holds for the topology, or `timeout` passes, or (with
    /// `refusable`) the coordinator refuses a declaration on that topic.
    ///
    /// - Parameter key: what `condition` reads: it is checked again only after a change touching
    ///   that (or a full copy of the topology), so a delta costs in proportion to its changes.
    func waitForTopology(
        _ key: TopologyWaitKey, timeout: Duration, describing what: String, refusable: String? = nil,
        _ condition: @escaping @Sendable (Topology) -> Bool
    ) async throws {
        try checkOpen()
        if condition(topology) { return }
        nextWaiterID += 1
        let waiterID = nextWaiterID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled { self.expireWaiter(waiterID, what: what, timeout: timeout) }
                }
                topologyWaiters.add(
                    waiterID, key: key,
                    TopologyWaiter(isSatisfied: condition, refusable: refusable, continuation: continuation, timer: timer))
            }
        } onCancel: {
            // Runs after the waiter is stored: the hop needs the actor, which the body holds until then.
            Task { await self.cancelWaiter(waiterID) }
        }
    }

    /// The coordinator did not record a `listen` or `publish` of `topic`: the waits for it end
    /// with the reason.
    func refused(topic: String, reason: String) {
        logger.warning("the coordinator refused a declaration on \"\(topic)\": \(reason)")
        for (waiterID, waiter) in topologyWaiters.all.sorted(by: { $0.id < $1.id }) where waiter.refusable == topic {
            topologyWaiters.remove(waiterID)
            waiter.timer?.cancel()
            waiter.continuation.resume(throwing: MeshError.typeMismatch(topic: topic, reason: reason))
        }
    }

    private func cancelWaiter(_ waiterID: UInt64) {
        guard let waiter = topologyWaiters.remove(waiterID) else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(throwing: CancellationError())
    }

    private func expireWaiter(_ waiterID: UInt64, what: String, timeout: Duration) {
        guard let waiter = topologyWaiters.remove(waiterID) else { return }
        let (seconds, attoseconds) = timeout.components
        waiter.continuation.resume(
            throwing: MeshError.timedOut(waitingFor: what, seconds: Double(seconds) + Double(attoseconds) / 1e18))
    }

    /// Why the last message counted in ``MeshStatistics/messagesDropped`` was dropped (a full
    /// queue, a connection that closed first, ...); `nil` while none was.
    public nonisolated var lastDropReason: String? { router.lastDropReason }

    func peerClosed(id peerID: String, connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        let known = router.peerClosed(id: peerID, connection: connection, failed: error != nil)
        if let error, let node = known {
            if connection.confirmation != nil {
                // Closing with a confirmation: the close report counts what was not confirmed.
                logger.debug("connection to \(node.name) (\(peerID)) at \(connection.remote) ended while closing: \(error)")
            } else {
                logger.warning("connection to \(node.name) (\(peerID)) at \(connection.remote) failed: \(error)")
            }
        }
        if let (announced, confirmed) = connection.confirmation, !router.isClosed {
            // Closed because the receiver left: what it did not confirm (unsent frames included) is lost.
            let lost = announced - min(confirmed ?? 0, announced)
            if lost > 0 {
                router.dropped(
                    lost, bytes: unsent.bytes, for: known ?? peerDirectory.node(peerID), topic: nil, stillCounted: true,
                    reason: "the receiver left without confirming them (\(error?.description ?? "it confirmed fewer"))")
            }
        } else if unsent.frames > 0 {
            router.dropped(
                unsent.frames, bytes: unsent.bytes, for: known, topic: nil, stillCounted: true,
                reason: error?.description ?? "connection closed")
        }
    }
}
