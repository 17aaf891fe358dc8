import Foundation

extension MeshNode {
    /// Calls `handler` with each message on `topic` decoded as `T`.
    ///
    /// Returns once the coordinator has recorded the listen (or at once while the coordinator is
    /// away; the listen is re-sent when it is back). A message that does not decode as `T` is
    /// logged with its topic and sender, counted, and skipped.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - type: the value type; `Data` or `[UInt8]` receive the raw payload. A `Data` payload
    ///     is the message's bytes in the buffer the node read them into (no copy), and holds that
    ///     buffer's memory while it lives: copy one you keep for long (`Data(Array(payload))`).
    ///     Writing to it or growing it touches nothing else.
    ///   - handler: called once per message, in arrival order, never concurrently with other listeners of this node.
    /// - Throws: ``MeshError/closed`` or ``MeshError/invalidName(_:reason:)``.
    public func listen<T: Decodable & Sendable>(
        _ topic: String, as type: T.Type = T.self, _ handler: nonisolated(nonsending) @escaping @Sendable (String, T) async -> Void
    ) async throws {
        try await listenValues(topic, declaring: nil, handler)
    }

    /// The body of both `listen` forms that hand over topic and value: `declaring` is the typed
    /// form's message type.
    func listenValues<T: Decodable & Sendable>(
        _ topic: String, declaring declared: TopicType?, _ handler: nonisolated(nonsending) @escaping @Sendable (String, T) async -> Void
    ) async throws {
        let codec = self.codec
        try await addListener(
            topic, type: T.self, declaring: declared, finish: {},
            handle: { message, _ in
                await handler(message.topic, try decodePayload(T.self, from: message.payload, codec: codec))
            },
            deliver: { message, _, value in await handler(message.topic, value as! T) })
    }

    /// Calls `handler` with each message on `topic`, with its sender.
    public func listen<T: Decodable & Sendable>(
        _ topic: String, as type: T.Type = T.self, handler: nonisolated(nonsending) @escaping @Sendable (MeshMessage<T>) async -> Void
    ) async throws {
        try await listenMessages(topic, declaring: nil, handler)
    }

    /// The body of both `listen` forms that hand over a ``MeshMessage``.
    func listenMessages<T: Decodable & Sendable>(
        _ topic: String, declaring declared: TopicType?, _ handler: nonisolated(nonsending) @escaping @Sendable (MeshMessage<T>) async -> Void
    ) async throws {
        let codec = self.codec
        try await addListener(
            topic, type: T.self, declaring: declared, finish: {},
            handle: { message, sender in
                let value = try decodePayload(T.self, from: message.payload, codec: codec)
                await handler(MeshMessage(topic: message.topic, value: value, sender: sender))
            },
            deliver: { message, sender, value in
                await handler(MeshMessage(topic: message.topic, value: value as! T, sender: sender))
            })
    }

    /// Calls `handler` once per read with the messages on `topic` it brought, decoded as `T`, in
    /// arrival order: for the most throughput, one call where ``listen(_:as:_:)`` makes many.
    ///
    /// A read is what the node took from one sender's connection at once: under load, up to
    /// hundreds of messages; when messages trickle in, often one. The values of one call are the
    /// messages on `topic` that came one after another in that read; a message on another topic
    /// in between ends the call, so deliveries across this node's topics keep their arrival order.
    /// Everything else is as with `listen`: calls come one at a time for the node, a slow call
    /// makes the senders wait rather than losing messages, and a message that does not decode as
    /// `T` is logged with its topic and sender, counted, and left out of its batch (a batch whose
    /// messages all fail to decode makes no call). Beside a `listen` on the same topic, the batch
    /// call comes before that listener's calls for the same messages.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - type: the value type; `Data` or `[UInt8]` receive the raw payloads.
    ///   - handler: called with the topic and the values of one read, never with none.
    /// - Throws: ``MeshError/closed`` or ``MeshError/invalidName(_:reason:)``.
    public func listenBatches<T: Decodable & Sendable>(
        _ topic: String, as type: T.Type = T.self, _ handler: nonisolated(nonsending) @escaping @Sendable (String, [T]) async -> Void
    ) async throws {
        let codec = self.codec
        try await addListener(topic) { entryID in
            ListenerTable.Entry(
                id: entryID, type: ObjectIdentifier(T.self),
                handle: { message, _ in
                    await handler(message.topic, [try decodePayload(T.self, from: message.payload, codec: codec)])
                },
                decode: { message in try decodePayload(T.self, from: message.payload, codec: codec) },
                deliver: { message, _, value in await handler(message.topic, [value as! T]) },
                finish: {},
                handleBatch: { messages, _, failed in
                    var values: [T] = []
                    values.reserveCapacity(messages.count)
                    for message in messages {
                        do {
                            values.append(try decodePayload(T.self, from: message.payload, codec: codec))
                        } catch {
                            failed(message, error)
                        }
                    }
                    guard let first = messages.first, !values.isEmpty else { return }
                    await handler(first.topic, values)
                })
        }
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
        try await messages(topic, declaring: nil)
    }

    /// The body of both `messages` forms.
    func messages<T: Decodable & Sendable>(_ topic: String, declaring declared: TopicType?) async throws -> MeshMessages<T> {
        let channel = MessageChannel<MeshMessage<T>>(capacity: configuration.streamBufferSize)
        let codec = self.codec
        try await addListener(
            topic, type: T.self, declaring: declared, finish: { channel.finish() },
            handle: { message, sender in
                let value = try decodePayload(T.self, from: message.payload, codec: codec)
                await channel.send(MeshMessage(topic: message.topic, value: value, sender: sender))
            },
            deliver: { message, sender, value in
                await channel.send(MeshMessage(topic: message.topic, value: value as! T, sender: sender))
            })
        return MeshMessages(channel: channel)
    }

    /// Stops every listener of `topic` on this node and tells the coordinator.
    public func stopListening(_ topic: String) async throws {
        try checkOpen()
        listeners.removeAll(topic: topic)
        guard listenedTopics.remove(topic) != nil else { return }
        if !declaredSends.contains(topic) { declaredTypes[topic] = nil }
        announce(.unlisten, topic: topic)
        guard isConnectedToCoordinator else { return }
        let me = id
        try await waitForTopology(.node(me), timeout: configuration.connectTimeout, describing: "the coordinator to record the unlisten") {
            !($0.nodes[me]?.topics.contains(topic) ?? false)
        }
    }

    /// Registers a listener and tells the coordinator.
    ///
    /// - Parameters:
    ///   - handle: decodes and delivers one message (built by the caller, so the delivery task
    ///     makes one call into user code per message, not a chain of wrappers).
    ///   - deliver: delivers a value already decoded for another listener of the same type.
    func addListener<T: Decodable & Sendable>(
        _ topic: String, type: T.Type, declaring declared: TopicType? = nil, finish: @escaping @Sendable () -> Void,
        handle: nonisolated(nonsending) @escaping @Sendable (InboundMessage, MeshPeer) async throws -> Void,
        deliver: nonisolated(nonsending) @escaping @Sendable (InboundMessage, MeshPeer, any Sendable) async -> Void
    ) async throws {
        let codec = self.codec
        try await addListener(topic, declaring: declared) { entryID in
            ListenerTable.Entry(
                id: entryID, type: ObjectIdentifier(T.self), handle: handle,
                decode: { message in try decodePayload(T.self, from: message.payload, codec: codec) },
                deliver: deliver, finish: finish)
        }
    }

    /// Registers the listener `makeEntry` builds (given its id) and tells the coordinator, with
    /// the message type it declares, if any.
    ///
    /// - Throws: ``MeshError/typeMismatch(topic:reason:)`` when `declared` disagrees with a type
    ///   declared on `topic` before, by this node or another.
    func addListener(
        _ topic: String, declaring declared: TopicType? = nil, makeEntry: (UInt64) -> ListenerTable.Entry
    ) async throws {
        try checkOpen()
        try validateName(topic, kind: "topic")
        let declares = try checkDeclaration(declared, on: topic)
        nextWaiterID += 1
        let entryID = nextWaiterID
        listeners.add(makeEntry(entryID), topic: topic)
        let newTopic = listenedTopics.insert(topic).inserted
        if declares, let declared { declaredTypes[topic] = declared }
        guard newTopic || declares else { return }
        announce(.listen, topic: topic, messageType: declares ? declared : nil)
        guard isConnectedToCoordinator else { return }
        let me = id
        do {
            try await waitForTopology(
                .node(me), timeout: configuration.connectTimeout, describing: "the coordinator to record the listen",
                refusable: topic
            ) {
                guard let record = $0.nodes[me] else { return false }
                return record.topics.contains(topic) && (!declares || record.types[topic] != nil)
            }
        } catch {
            // Leave nothing behind that the caller cannot reach: a stream nobody reads would
            // stall this node's delivery, and a retried listen would run its handler twice.
            listeners.remove(id: entryID, topic: topic)
            if declares, !declaredSends.contains(topic) { declaredTypes[topic] = nil }
            if listeners.snapshot[topic] == nil, listenedTopics.remove(topic) != nil { announce(.unlisten, topic: topic) }
            throw error
        }
    }

    // MARK: Topology

    /// Drops the cached routes `changes` touch, lets go of nodes that left, and wakes waiters
    /// whose condition now holds: in proportion to the changes, unless they are ``TopologyChanges/everything``.
    ///
    /// - Parameter joined: the records the delta let join; those gone again after it stay known
    ///   to the peer directory for a while (they may have sent something first).
    func topologyChanged(_ changes: TopologyChanges, joined: [NodeRecord] = []) {
        var departures: Router.Departures
        if changes.everything {
            departures = router.setTopology(session.routingTopology)
        } else {
            // Only the touched records: the router keeps its own copy, so the session's topology
            // is not shared with it and applying the next delta copies nothing.
            let records = changes.nodes.map { (id: $0, record: session.routingRecord($0)) }
            departures = router.apply(records, topics: changes.topics, services: changes.services, version: topology.version)
        }
        departures.records += joined.filter { session.routingRecord($0.id) == nil }
        peerDirectory.changed(departed: departures.records)
        for connection in departures.connections {
            // The receiver left: it confirms what it took (PROTOCOL §8.3), and what it did not
            // is counted as dropped when the connection ends (``peerClosed``).
            guard let last = calls.latestDeadline(on: connection.id) else {
                connection.closeConfirming(deadline: .now + .seconds(1))
                continue
            }
            // Calls wait on it: a provider that left is finishing its running handlers (for up
            // to its close bound) and answers on this connection, then closes it. Keep it until
            // then, at most until the last call's deadline.
            let latest = min(last, .now + MeshNode.closeBound * 3)
            loop.schedule(at: latest) { connection.closeConfirming(deadline: .now + .seconds(1)) }
        }
        deliverLatched(changes)
        guard !topologyWaiters.isEmpty else { return }
        let current = topology
        for waiterID in topologyWaiters.candidates(for: changes) {
            guard let waiter = topologyWaiters[waiterID], waiter.isSatisfied(current) else { continue }
            topologyWaiters.remove(waiterID)
            waiter.timer?.cancel()
            waiter.continuation.resume()
        }
    }

    // MARK: Delivery

    /// What the delivery task carries from one batch to the next.
    struct DeliveryState {
        var lastTopic = ""
        var lastEntries: [ListenerTable.Entry]?
        /// The batch listeners of ``lastTopic`` (``ListenerTable/Entry/handleBatch``); ``lastEntries`` holds the others.
        var lastBatchEntries: [ListenerTable.Entry] = []
        /// Per-topic counts, gathered per run of one topic and added to the counter once per batch.
        var perTopic: [String: TopicStatistics] = [:]
        var run = TopicStatistics()
        /// Until when this node's listeners run on the cooperative pool instead of the loop
        /// thread, because one of them was slow (see ``MeshNode/slowListener``).
        var offLoopUntil = ContinuousClock.now
        var penalty = MeshNode.offLoopPenalty
        var lastSlow: ContinuousClock.Instant?
        /// Calls over ``sluggishListener`` in the current ``sluggishWindow``, and when it began.
        var sluggish = 0
        var sluggishSince = ContinuousClock.now
    }

    /// Batches of more messages than this are delivered on the cooperative pool.
    static let loopBatchLimit = 16

    /// A listener call longer than this moves the node's delivery off the loop thread.
    ///
    /// Wall-clock time, so a thread preempted on a busy machine looks slow too: one call this
    /// long is a listener that blocked, awaited or computed for longer than a loop iteration
    /// should take; shorter calls count only when they repeat (``sluggishListener``).
    static let slowListener = Duration.milliseconds(10)
    /// ``sluggishCalls`` calls longer than this within ``sluggishWindow`` count as one slow call.
    static let sluggishListener = Duration.milliseconds(1)
    static let sluggishCalls = 5
    static let sluggishWindow = Duration.seconds(1)
    /// For how long, at first; doubled while listeners stay slow, up to ``maximumOffLoopPenalty``.
    static let offLoopPenalty = Duration.seconds(1)
    static let maximumOffLoopPenalty = Duration.seconds(30)
    /// Listeners on the loop give the thread back (a yield) after this much work in a row.
    static let loopSlice = Duration.milliseconds(2)

    /// The node's delivery task: takes batches from the inbox and hands each message to the
    /// topic's listeners, decoding once per listener type.
    ///
    /// It runs on the event loop (the task prefers it as executor), so listeners run on the
    /// thread that read the bytes and a reply they send is written in the same loop iteration.
    /// This is the one detector of listeners that hold the loop: every call on the loop is timed,
    /// and one that takes longer than ``slowListener`` (it blocked, spun, or did heavy work) sends
    /// the rest of its batch, and this node's deliveries for ``offLoopPenalty`` (doubling while
    /// it stays slow), to the cooperative pool, where they cannot hold up other connections. The
    /// loop itself has no watchdog: the call that is caught has held it for its whole length.
    static func deliver(inbox: Inbox, listeners: ListenerTable, logger: MeshLogger, counter: StatisticsCounter) async {
        var state = DeliveryState()
        var batches = await inbox.next()
        while !batches.isEmpty {
            // A long batch is a backlog: throughput matters more than latency, and on the pool
            // the listeners run beside the loop thread, which goes on reading. The task stays
            // on the pool while batches keep coming, and comes back to the loop to wait.
            if isBacklog(batches) || ContinuousClock.now < state.offLoopUntil {
                let more = await withTaskExecutorPreference(globalConcurrentExecutor) {
                    var batches = batches
                    while true {
                        _ = await deliver(
                            batches, state: &state, inbox: inbox, listeners: listeners, logger: logger, counter: counter, onLoop: false)
                        var next = inbox.poll()
                        if next == nil, ContinuousClock.now < state.offLoopUntil {
                            // Still off the loop: wait here, not on the loop and hop back each time.
                            next = await inbox.next()
                        }
                        guard let next else { return [InboundBatch]?.none }
                        if next.isEmpty { return next }  // closed
                        batches = next
                    }
                }
                if let more { batches = more } else { batches = await inbox.next() }
            } else {
                let rest = await deliver(
                    batches, state: &state, inbox: inbox, listeners: listeners, logger: logger, counter: counter, onLoop: true)
                // After a slow call, what was left of the batch goes to the pool (the branch above).
                batches = rest.isEmpty ? await inbox.next() : rest
            }
        }
    }

    private static func isBacklog(_ batches: [InboundBatch]) -> Bool {
        batches.count > 1 || batches[0].messages.count > MeshNode.loopBatchLimit
    }

    /// Delivers `batches` in order.
    ///
    /// - Returns: on the loop, after a call slower than ``slowListener``, the messages not
    ///   delivered yet, for the pool; else nothing.
    private nonisolated(nonsending) static func deliver(
        _ batches: [InboundBatch], state: inout DeliveryState, inbox: Inbox, listeners: ListenerTable,
        logger: MeshLogger, counter: StatisticsCounter, onLoop: Bool
    ) async -> [InboundBatch] {
        let table = listeners.snapshot
        state.lastEntries = nil
        var sliceStart = ContinuousClock.now
        var callStart = sliceStart
        var rest: [InboundBatch] = []
        delivering: for batchIndex in batches.indices {
            let batch = batches[batchIndex]
            let sender = batch.sender
            /// The end of the run of one topic the batch listeners last got from this read.
            var batchedThrough = 0
            for messageIndex in batch.messages.indices {
                // A node closing past its bound gave up on the rest (``Inbox/abandon()``).
                if inbox.isAbandoned { break delivering }
                let message = batch.messages[messageIndex]
                if state.lastEntries == nil || message.topic != state.lastTopic {
                    if state.run.messagesReceived > 0 { state.perTopic[state.lastTopic, default: TopicStatistics()].add(state.run) }
                    state.run = TopicStatistics()
                    state.lastTopic = message.topic
                    let all = table[message.topic] ?? []
                    if all.contains(where: { $0.handleBatch != nil }) {
                        state.lastEntries = all.filter { $0.handleBatch == nil }
                        state.lastBatchEntries = all.filter { $0.handleBatch != nil }
                    } else {
                        state.lastEntries = all
                        if !state.lastBatchEntries.isEmpty { state.lastBatchEntries = [] }
                    }
                }
                state.run.messagesReceived += 1
                state.run.bytesReceived += message.payload.count
                let entries = state.lastEntries!
                // Inside a run the batch listeners already have: not timed, never split (below).
                var insideRun = false
                if !state.lastBatchEntries.isEmpty {
                    if messageIndex >= batchedThrough {
                        var end = messageIndex + 1
                        while end < batch.messages.count, batch.messages[end].topic == message.topic { end += 1 }
                        batchedThrough = end
                        await deliverBatch(
                            batch.messages[messageIndex..<end], from: sender, to: state.lastBatchEntries, logger: logger,
                            counter: counter)
                    }
                    insideRun = messageIndex + 1 < batchedThrough
                }
                if entries.isEmpty {
                    if state.lastBatchEntries.isEmpty {
                        logger.debug("message on \"\(message.topic)\" from \(sender) arrived after its listener stopped; skipped")
                    }
                } else if entries.count == 1 {
                    do {
                        try await entries[0].handle(message, sender)
                    } catch {
                        decodeFailed(message, from: sender, error, logger: logger, counter: counter)
                    }
                } else {
                    await deliver(message, from: sender, to: entries, logger: logger, counter: counter)
                }
                inbox.countDelivered()
                // Timed on the loop only (batches there are short): on the pool a slow call
                // holds up nobody else, and a backlog's messages are not charged a clock read each.
                // A batch listener's run is timed as a whole at its last message, so what is left
                // for the pool after a slow call never holds messages a batch listener already had.
                guard onLoop, !insideRun else { continue }
                let now = ContinuousClock.now
                let took = now - callStart
                if took > sluggishListener, took > slowListener || isSluggish(&state, at: now) {
                    listenerWasSlow(&state, took: took, at: now, topic: message.topic, logger: logger)
                    let after = messageIndex + 1
                    if after < batch.messages.count {
                        rest.append(InboundBatch(sender: sender, messages: Array(batch.messages[after...])))
                    }
                    rest.append(contentsOf: batches[(batchIndex + 1)...])
                    break delivering
                }
                callStart = now
                if now - sliceStart > loopSlice {
                    await Task.yield()  // let the loop serve other connections, then go on
                    sliceStart = ContinuousClock.now
                    callStart = sliceStart
                }
            }
        }
        if state.run.messagesReceived > 0 { state.perTopic[state.lastTopic, default: TopicStatistics()].add(state.run) }
        state.run = TopicStatistics()
        let perTopic = state.perTopic
        counter.update { $0.addTopics(perTopic) }
        state.perTopic.removeAll(keepingCapacity: true)
        return rest
    }

    /// Counts a call over ``sluggishListener``; true on the ``sluggishCalls``th within the window.
    private static func isSluggish(_ state: inout DeliveryState, at now: ContinuousClock.Instant) -> Bool {
        if now - state.sluggishSince > sluggishWindow {
            state.sluggish = 0
            state.sluggishSince = now
        }
        state.sluggish += 1
        guard state.sluggish >= sluggishCalls else { return false }
        state.sluggish = 0
        return true
    }

    /// A listener call took longer than ``slowListener`` (or several over ``sluggishListener``):
    /// keep this node's listeners off the loop for a while.
    private static func listenerWasSlow(
        _ state: inout DeliveryState, took: Duration, at now: ContinuousClock.Instant, topic: String, logger: MeshLogger
    ) {
        if let last = state.lastSlow, now - last < state.penalty * 2 {
            state.penalty = min(state.penalty * 2, maximumOffLoopPenalty)
        } else {
            state.penalty = offLoopPenalty
        }
        state.lastSlow = now
        state.offLoopUntil = now + state.penalty
        logger.debug(
            "a listener of \"\(topic)\" took \(formatted(took)) on the event-loop thread; this node's listeners run on the cooperative pool for \(formatted(state.penalty))")
    }

    /// The batch listeners of one topic: each gets the run of messages in one call.
    private nonisolated(nonsending) static func deliverBatch(
        _ messages: ArraySlice<InboundMessage>, from sender: MeshPeer, to entries: [ListenerTable.Entry],
        logger: MeshLogger, counter: StatisticsCounter
    ) async {
        for entry in entries {
            await entry.handleBatch?(messages, sender) { message, error in
                decodeFailed(message, from: sender, error, logger: logger, counter: counter)
            }
        }
    }

    /// Several listeners on one topic: decode once per listener type, then deliver to each.
    private nonisolated(nonsending) static func deliver(
        _ message: InboundMessage, from sender: MeshPeer, to entries: [ListenerTable.Entry], logger: MeshLogger,
        counter: StatisticsCounter
    ) async {
        var decoded: [ObjectIdentifier: any Sendable] = [:]
        var failed: Set<ObjectIdentifier> = []
        for entry in entries where !failed.contains(entry.type) {
            let value: any Sendable
            if let cached = decoded[entry.type] {
                value = cached
            } else {
                do {
                    value = try entry.decode(message)
                    decoded[entry.type] = value
                } catch {
                    failed.insert(entry.type)
                    decodeFailed(message, from: sender, error, logger: logger, counter: counter)
                    continue
                }
            }
            await entry.deliver(message, sender, value)
        }
    }

    private static func decodeFailed(
        _ message: InboundMessage, from sender: MeshPeer, _ error: any Error, logger: MeshLogger,
        counter: StatisticsCounter
    ) {
        counter.update { $0.decodeFailures += 1 }
        logger.warning(
            "could not decode a message on \"\(message.topic)\" from \(sender) (\(message.payload.count) bytes): \(error); skipped"
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

        /// Waits on the caller's executor, so a loop on the main actor wakes once per message, not twice.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(any Error) -> MeshMessage<Value>? {
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
