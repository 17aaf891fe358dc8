import Foundation

/// A topic that knows the type of its messages, and whether it keeps its last value.
///
/// ```swift
/// let pose = Topic<Pose>("pose")
/// try await node.listen(pose) { (topic: String, value: Pose) in ... }
/// try await node.send(pose, Pose(x: 1, y: 2))
///
/// let map = Topic<OccupancyMap>("map", latched: true)   // late listeners get the last map
/// ```
///
/// Every send and listen through a `Topic` declares the type's name and the fingerprint of its
/// shape (``TopicType``), and the mesh refuses a declaration that disagrees with another on the
/// same topic: the `listen` or the first `send` throws ``MeshError/typeMismatch(topic:reason:)``
/// naming both types and both nodes. The string-topic API stays as it was and declares nothing: it
/// is how a dynamic consumer (the CLI's `echo`, the bag recorder) listens to any type.
public struct Topic<Message: Codable & Sendable>: Sendable, Hashable {
    /// The topic's name: 1 to 255 bytes of UTF-8.
    public let name: String
    /// Whether each sender keeps its last value on this topic for listeners that come later.
    public let latched: Bool
    /// The message type this topic declares.
    public let type: TopicType

    /// A topic carrying `Message`, declared under the type's own name.
    public init(_ name: String, latched: Bool = false) {
        self.name = name
        self.latched = latched
        self.type = TopicType(of: Message.self)
    }

    /// A topic carrying `Message`, declared under `typeName` (to match a name another program
    /// uses, for example a Python node's).
    public init(_ name: String, latched: Bool = false, typeName: String) {
        self.name = name
        self.latched = latched
        self.type = TopicType(name: typeName, fingerprint: TopicType(of: Message.self).fingerprint)
    }
}

/// What a node keeps of a latched topic: the last value it sent there, and which listeners
/// have had a value from it.
struct LatchedValue: Sendable {
    var encoding: PayloadEncoding
    var payload: Data
    /// The listening nodes that got this topic's latest value (or a newer send) already.
    var served: Set<String>
}

extension MeshNode {
    /// The most topics one node keeps a latched value for.
    public static let maximumLatchedTopics = 1_024
    /// The most bytes of latched values one node keeps, over all its latched topics.
    public static let maximumLatchedBytes = 64 << 20

    // MARK: Typed topics

    /// Sends `value` on `topic`, declaring its type on the first send (one round trip to the
    /// coordinator, then none); on a latched topic the value is also kept for later listeners.
    ///
    /// - Throws: ``MeshError/typeMismatch(topic:reason:)`` when the topic is declared with
    ///   another type; otherwise what the string-topic `send` throws.
    public nonisolated(nonsending) func send<Message>(_ topic: Topic<Message>, _ value: Message) async throws {
        if topic.latched {
            let (encoding, payload) = try encoded(value, topic: topic.name)
            return try await sendLatched(topic.name, declaring: topic.type, encoding: encoding, payload: payload)
        }
        // The fast path only when this very type was recorded for this topic: another type (or
        // an untyped send before) takes the slow path, which checks and declares it.
        let recorded = confirmedSends.withLock { confirmed -> Bool in
            guard case .some(.some(let type)) = confirmed[topic.name] else { return false }
            return type == topic.type
        }
        if !recorded { try await declareSend(topic.name, type: topic.type) }
        try await send(topic.name, value)
    }

    /// Calls `handler` with each message on `topic`, after declaring the listener's type.
    ///
    /// - Throws: ``MeshError/typeMismatch(topic:reason:)`` when a sender or listener declared
    ///   another type on the topic; otherwise what ``listen(_:as:_:)`` throws.
    public func listen<Message>(
        _ topic: Topic<Message>, _ handler: nonisolated(nonsending) @escaping @Sendable (String, Message) async -> Void
    ) async throws {
        try await listenValues(topic.name, declaring: topic.type, handler)
    }

    /// Calls `handler` with each message on `topic`, with its sender, after declaring the
    /// listener's type.
    public func listen<Message>(
        _ topic: Topic<Message>, handler: nonisolated(nonsending) @escaping @Sendable (MeshMessage<Message>) async -> Void
    ) async throws {
        try await listenMessages(topic.name, declaring: topic.type, handler)
    }

    /// The messages on `topic` as an asynchronous sequence, after declaring the listener's type.
    public func messages<Message>(_ topic: Topic<Message>) async throws -> MeshMessages<Message> {
        try await messages(topic.name, declaring: topic.type)
    }

    /// Whether `declared` adds a declaration on `topic` for this node.
    ///
    /// - Throws: ``MeshError/typeMismatch(topic:reason:)`` when it disagrees with this node's own
    ///   earlier declaration, or with one in the topology this node holds (the coordinator
    ///   checks again, against every node).
    func checkDeclaration(_ declared: TopicType?, on topic: String) throws -> Bool {
        guard let declared else { return false }
        try declared.validate()
        if let own = declaredTypes[topic] {
            guard own.agrees(with: declared) else {
                throw MeshError.typeMismatch(
                    topic: topic,
                    reason: "\(name) (\(id)) declares \(declared) on \"\(topic)\", but it declared \(own) there before")
            }
            return false
        }
        for other in topology.nodes.values.sorted(by: { $0.id < $1.id }) where other.id != id {
            guard let theirs = other.disagreement(on: topic, with: declared) else { continue }
            let does = other.sends.contains(topic) ? "sends" : "listens to"
            throw MeshError.typeMismatch(
                topic: topic,
                reason: "\(name) (\(id)) declares \(declared) on \"\(topic)\", but \(other.name) (\(other.id)) \(does) it as \(theirs)")
        }
        return true
    }

    /// Declares that this node sends on `topic` (with `type`, if any) and, while registered,
    /// waits for the coordinator to record it.
    ///
    /// - Throws: ``MeshError/typeMismatch(topic:reason:)`` when the declaration is refused.
    func declareSend(_ topic: String, type: TopicType?) async throws {
        try checkOpen()
        try validateName(topic, kind: "topic")
        let declares = try checkDeclaration(type, on: topic)
        let newTopic = declaredSends.insert(topic).inserted
        if declares, let type { declaredTypes[topic] = type }
        if newTopic || declares {
            announce(.publish, topic: topic, messageType: declares ? type : nil)
            if isConnectedToCoordinator {
                let me = id
                do {
                    try await waitForTopology(
                        .node(me), timeout: configuration.connectTimeout, describing: "the coordinator to record the send",
                        refusable: topic
                    ) {
                        guard let record = $0.nodes[me] else { return false }
                        return record.sends.contains(topic) && (!declares || record.types[topic] != nil)
                    }
                } catch {
                    if newTopic { declaredSends.remove(topic) }
                    if declares, !listenedTopics.contains(topic) { declaredTypes[topic] = nil }
                    // A concurrent declaration that skipped the wait took this one's for granted.
                    confirmedSends.withLock { _ = $0.removeValue(forKey: topic) }
                    throw error
                }
            }
        }
        let recorded = declaredTypes[topic]
        confirmedSends.withLock { $0[topic] = .some(recorded) }
    }

    private nonisolated func encoded<T: Encodable>(_ value: T, topic: String) throws -> (PayloadEncoding, Data) {
        do {
            return try encodePayload(value, codec: codec)
        } catch {
            throw MeshError.encodingFailed(topic: topic, reason: "\(error)")
        }
    }

    // MARK: Latched topics

    /// Sends `value` on `topic` and, with `latched`, keeps it as this node's last value there:
    /// a node that starts listening later gets it first, before anything newer from this node.
    ///
    /// Latched sends run on the node (one hop each), so a value and the listeners that join
    /// are taken in one order. The node keeps at most ``maximumLatchedTopics`` topics and
    /// ``maximumLatchedBytes`` bytes of latched values.
    /// - Throws: ``MeshError/requestRefused(reason:)`` past those bounds; otherwise what
    ///   the string-topic `send` throws.
    public nonisolated(nonsending) func send<T: Encodable & Sendable>(_ topic: String, _ value: T, latched: Bool) async throws {
        guard latched else { return try await send(topic, value) }
        let (encoding, payload) = try encoded(value, topic: topic)
        try await sendLatched(topic, declaring: nil, encoding: encoding, payload: payload)
    }

    /// Whether a latched value of `payloadBytes` on `topic` fits ``maximumLatchedTopics`` and
    /// ``maximumLatchedBytes``, counting the value it replaces as freed.
    private func checkLatchedBounds(_ topic: String, payloadBytes: Int) throws {
        let previous = latched[topic]
        if previous == nil, latched.count >= Self.maximumLatchedTopics {
            throw MeshError.requestRefused(
                reason: "this node keeps latched values on \(Self.maximumLatchedTopics) topics already, the most it may")
        }
        let bytes = latchedBytes - (previous?.payload.count ?? 0) + payloadBytes
        guard bytes <= Self.maximumLatchedBytes else {
            throw MeshError.requestRefused(
                reason: "latched values would take \(bytes) bytes on this node; the most is \(Self.maximumLatchedBytes)")
        }
    }

    /// Keeps the value, routes it like any send, and marks every current listener as served.
    func sendLatched(_ topic: String, declaring type: TopicType?, encoding: PayloadEncoding, payload: Data) async throws {
        guard payload.count <= configuration.maximumMessageSize else {
            throw MeshError.frameTooLarge(size: payload.count, limit: configuration.maximumMessageSize)
        }
        try checkLatchedBounds(topic, payloadBytes: payload.count)
        if confirmedSends.withLock({ $0[topic] == nil }) || (type != nil && declaredTypes[topic] != type) {
            try await declareSend(topic, type: type)
        }
        try await prepareRoute(topic: topic)
        // Other latched sends may have run during the awaits above: the bounds again, now.
        try checkOpen()
        try checkLatchedBounds(topic, payloadBytes: payload.count)
        latchedBytes += payload.count - (latched[topic]?.payload.count ?? 0)
        // A latched value is state (a map, a configuration), not a job: every listening node gets
        // it, a member of a worker pool included.
        let listeners = topology.listeners(of: topic)
        latched[topic] = LatchedValue(encoding: encoding, payload: payload, served: Set(listeners.map(\.id)).subtracting([id]))
        if listeners.isEmpty { router.count { $0.messagesUnrouted += 1 } }
        for node in listeners {
            if node.id == id {
                var topicText = topic
                let frameBytes = topicText.withUTF8 { MessageFrame.frameLength(topicBytes: $0.count, payloadBytes: payload.count) }
                deliverLocally(topic: topic, encoding: encoding, payload: payload, frameBytes: frameBytes)
            } else {
                sendDirectly(topic: topic, encoding: encoding, payload: payload, to: node)
            }
        }
    }

    /// Hands each latched value to the listening nodes that have not had one, after the
    /// router took the new topology: it runs on this node, as latched sends do, so a newer
    /// latched send cannot overtake it.
    func deliverLatched(_ changes: TopologyChanges = .everything) {
        guard !latched.isEmpty else { return }
        // Only a topic whose listeners may have changed can have newcomers (or lose some).
        for (topic, value) in latched where changes.everything || changes.topics.contains(topic) {
            let listening = Set(topology.listeners(of: topic).map(\.id)).subtracting([id])
            let newcomers = listening.subtracting(value.served)
            latched[topic]?.served = listening
            for nodeID in newcomers.sorted() {
                guard let node = topology.nodes[nodeID] else { continue }
                sendDirectly(topic: topic, encoding: value.encoding, payload: value.payload, to: node)
            }
        }
    }

    /// Queues one message for one node, outside the topic's routing.
    private func sendDirectly(topic: String, encoding: PayloadEncoding, payload: Data, to node: NodeRecord) {
        var topicText = topic
        let frameBytes = topicText.withUTF8 {
            MessageFrame.frameLength(topicBytes: $0.count, payloadBytes: payload.count)
        }
        guard let connection = router.connection(to: node) else {
            router.dropped(1, bytes: frameBytes, for: node, topic: topic, reason: "no connection could be opened for its latched value")
            return
        }
        router.count {
            $0.messagesSent += 1
            $0.bytesSent += frameBytes
        }
        let result = topicText.withUTF8 { topicUTF8 in
            connection.sendMessage(topic: UnsafeRawBufferPointer(topicUTF8), encoding: encoding, payload: payload)
        }
        if result != .queued {
            router.dropped(
                1, bytes: frameBytes, for: node, topic: topic, stillCounted: true,
                reason: "the connection was full or closed when its latched value was due")
        }
    }
}
