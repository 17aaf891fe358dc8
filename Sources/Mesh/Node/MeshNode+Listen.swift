import Foundation

extension MeshNode {
    /// Calls `handler` with each message on `topic` decoded as `T`.
    ///
    /// Returns once the coordinator has recorded the listen (or at once while the coordinator is
    /// away; the listen is re-sent when it is back). A message that does not decode as `T` is
    /// logged with its topic and sender, counted, and skipped.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - type: the value type; `Data` or `[UInt8]` receive the raw payload.
    ///   - handler: called once per message, in arrival order, never concurrently with other listeners of this node.
    /// - Throws: ``MeshError/closed`` or ``MeshError/invalidName(_:reason:)``.
    public func listen<T: Decodable & Sendable>(
        _ topic: String, as type: T.Type = T.self, _ handler: @escaping @Sendable (String, T) async -> Void
    ) async throws {
        try await addListener(topic, type: type, finish: {}) { message in
            await handler(message.topic, message.value)
        }
    }

    /// Calls `handler` with each message on `topic`, with its sender.
    public func listen<T: Decodable & Sendable>(
        _ topic: String, as type: T.Type = T.self, handler: @escaping @Sendable (MeshMessage<T>) async -> Void
    ) async throws {
        try await addListener(topic, type: type, finish: {}, deliver: handler)
    }

    /// The messages on `topic` as an asynchronous sequence.
    ///
    /// The sequence buffers ``Configuration/streamBufferSize`` messages; when the loop reading it
    /// falls behind, delivery waits for it (and, past the inbox limit, the senders wait too):
    /// nothing is dropped. The sequence ends on ``stopListening(_:)`` or ``close()``.
    /// - Throws: ``MeshError/closed`` or ``MeshError/invalidName(_:reason:)``.
    public func messages<T: Decodable & Sendable>(_ topic: String, as type: T.Type = T.self) async throws
        -> MeshMessages<T>
    {
        let channel = MessageChannel<MeshMessage<T>>(capacity: configuration.streamBufferSize)
        try await addListener(topic, type: type, finish: { channel.finish() }) { message in
            await channel.send(message)
        }
        return MeshMessages(channel: channel)
    }

    /// Stops every listener of `topic` on this node and tells the coordinator.
    public func stopListening(_ topic: String) async throws {
        try checkOpen()
        listeners.removeAll(topic: topic)
        guard listenedTopics.remove(topic) != nil else { return }
        announce(.unlisten, topic: topic)
        guard isConnectedToCoordinator else { return }
        let me = id
        try await waitForTopology(timeout: configuration.connectTimeout, describing: "the coordinator to record the unlisten") {
            !($0.nodes[me]?.topics.contains(topic) ?? false)
        }
    }

    private func addListener<T: Decodable & Sendable>(
        _ topic: String, type: T.Type, finish: @escaping @Sendable () -> Void,
        deliver: @escaping @Sendable (MeshMessage<T>) async -> Void
    ) async throws {
        try checkOpen()
        try validateName(topic, kind: "topic")
        let codec = self.codec
        nextWaiterID += 1
        listeners.add(
            ListenerTable.Entry(
                id: nextWaiterID, type: ObjectIdentifier(T.self),
                decode: { message in try decodePayload(T.self, from: message.payload, codec: codec) },
                deliver: { message, value in
                    await deliver(MeshMessage(topic: message.topic, value: value as! T, sender: message.sender))
                },
                finish: finish),
            topic: topic)
        guard listenedTopics.insert(topic).inserted else { return }
        announce(.listen, topic: topic)
        guard isConnectedToCoordinator else { return }
        let me = id
        try await waitForTopology(timeout: configuration.connectTimeout, describing: "the coordinator to record the listen") {
            $0.nodes[me]?.topics.contains(topic) ?? false
        }
    }

    // MARK: Topology

    func replaceTopology(_ new: Topology) {
        topology = new
        topologyChanged()
    }

    /// Drops cached routes, lets go of nodes that left, and wakes waiters whose condition now holds.
    func topologyChanged() {
        for connection in router.setTopology(topology) {
            connection.closeAfterFlushing(deadline: .now + .seconds(1))
        }
        let ready = topologyWaiters.filter { $0.value.isSatisfied(topology) }
        for (waiterID, waiter) in ready {
            topologyWaiters[waiterID] = nil
            waiter.timer?.cancel()
            waiter.continuation.resume()
        }
    }

    // MARK: Delivery

    /// The node's delivery task: takes batches from the inbox and hands each message to the
    /// topic's listeners, decoding once per listener type.
    static func deliver(inbox: Inbox, listeners: ListenerTable, logger: MeshLogger, counter: StatisticsCounter) async {
        while true {
            let batch = await inbox.next()
            if batch.isEmpty { return }
            let table = listeners.snapshot
            for message in batch {
                guard let entries = table[message.topic] else {
                    logger.debug("message on \"\(message.topic)\" from \(message.sender) arrived after its listener stopped; skipped")
                    continue
                }
                if entries.count == 1 {
                    // The common case: one listener, no decode cache needed.
                    let entry = entries[0]
                    let value: any Sendable
                    do {
                        value = try entry.decode(message)
                    } catch {
                        decodeFailed(message, error, logger: logger, counter: counter)
                        continue
                    }
                    await entry.deliver(message, value)
                    continue
                }
                var decoded: [ObjectIdentifier: any Sendable] = [:]
                var failed: Set<ObjectIdentifier> = []
                for entry in entries {
                    if failed.contains(entry.type) { continue }
                    let value: any Sendable
                    if let cached = decoded[entry.type] {
                        value = cached
                    } else {
                        do {
                            value = try entry.decode(message)
                            decoded[entry.type] = value
                        } catch {
                            failed.insert(entry.type)
                            decodeFailed(message, error, logger: logger, counter: counter)
                            continue
                        }
                    }
                    await entry.deliver(message, value)
                }
            }
        }
    }

    private static func decodeFailed(
        _ message: InboundMessage, _ error: any Error, logger: MeshLogger, counter: StatisticsCounter
    ) {
        counter.update { $0.decodeFailures += 1 }
        logger.warning(
            "could not decode a message on \"\(message.topic)\" from \(message.sender) (\(message.payload.count) bytes): \(error); skipped"
        )
    }
}

/// The messages of one topic, as returned by ``MeshNode/messages(_:as:)``.
public struct MeshMessages<Value: Sendable>: AsyncSequence, Sendable {
    public typealias Element = MeshMessage<Value>

    let channel: MessageChannel<MeshMessage<Value>>
    private let lifetime: Lifetime

    init(channel: MessageChannel<MeshMessage<Value>>) {
        self.channel = channel
        self.lifetime = Lifetime { channel.finish() }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let channel: MessageChannel<MeshMessage<Value>>
        let lifetime: Lifetime

        public mutating func next() async throws -> MeshMessage<Value>? {
            try Task.checkCancellation()
            return await channel.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(channel: channel, lifetime: lifetime)
    }

    /// Ends the channel when the last copy of the sequence and its iterators is gone, so an
    /// abandoned sequence never holds up delivery.
    final class Lifetime: Sendable {
        let end: @Sendable () -> Void
        init(_ end: @escaping @Sendable () -> Void) { self.end = end }
        deinit { end() }
    }
}
