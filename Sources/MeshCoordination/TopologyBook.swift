import Mesh

/// The coordinator's record of the mesh, as a value: events in, changes and deltas out.
///
/// Every accepted change bumps the version and is held until ``takeDelta()`` hands the batch to
/// the coordinator to broadcast once. No sockets and no clocks, so every rule here is tested
/// directly.
struct TopologyBook: Sendable {
    /// Why a node may not join.
    enum Rejection: Error, Sendable, Equatable, CustomStringConvertible {
        case duplicateID(String)
        case invalidName(String)
        case invalidTopic(String)
        case full(String)
        /// A declared message type disagrees with another node's on the same topic.
        case typeMismatch(String)

        var description: String {
            switch self {
            case .duplicateID(let id): return "a node with id \(id) is already registered"
            case .full(let reason): return reason
            case .invalidName(let reason): return reason
            case .invalidTopic(let reason): return reason
            case .typeMismatch(let reason): return reason
            }
        }
    }

    /// Every node's topics go to every node: this keeps one node from bloating them all.
    static let maximumTopicsPerNode = 10_000
    /// The most nodes the mesh holds.
    var maximumNodes = 10_000
    /// The most bytes of topic names, over every node's listens: every node holds them all.
    var maximumTopicBytes = 32 << 20
    /// Bytes of topic names over every node's listens now.
    private(set) var topicBytes = 0

    private(set) var topology = Topology()
    /// Who declared which message type on each topic: topic → node id → type.
    private var declared: [String: [String: TopicType]] = [:]
    private var publishedVersion: UInt64 = 0
    private var unpublished: [TopologyChange] = []

    /// Adds a node; returns the record as stored.
    ///
    /// - Throws: ``Rejection`` for a taken id or a bad name or topic.
    mutating func join(_ node: NodeRecord) throws(Rejection) -> NodeRecord {
        guard topology.nodes[node.id] == nil else { throw .duplicateID(node.id) }
        guard topology.nodes.count < maximumNodes else {
            throw .full("the mesh is full: it holds the most nodes allowed (\(maximumNodes))")
        }
        do {
            try validateName(node.name, kind: "node name")
        } catch {
            throw .invalidName(error.description)
        }
        var stored = node
        stored.topics = Array(Set(node.topics)).sorted()
        guard stored.topics.count <= TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may listen to at most \(TopologyBook.maximumTopicsPerNode) topics")
        }
        for topic in stored.topics {
            do {
                try validateName(topic, kind: "topic")
            } catch {
                throw .invalidTopic(error.description)
            }
        }
        stored.services = Array(Set(node.services)).sorted()
        guard stored.services.count <= TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may provide at most \(TopologyBook.maximumTopicsPerNode) services")
        }
        for service in stored.services {
            do {
                try validateName(service, kind: "service")
            } catch {
                throw .invalidTopic(error.description)
            }
        }
        stored.sends = Array(Set(node.sends)).sorted()
        guard stored.sends.count <= TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may send on at most \(TopologyBook.maximumTopicsPerNode) declared topics")
        }
        for topic in stored.sends {
            do {
                try validateName(topic, kind: "topic")
            } catch {
                throw .invalidTopic(error.description)
            }
        }
        // A type only for a topic the node listens to or sends on; at most one per topic.
        let typed = Set(stored.topics).union(stored.sends)
        stored.types = node.types.filter { typed.contains($0.key) }
        // A declaration that does not check out is left out, not a reason to refuse the node.
        stored.types = stored.types.filter { (try? $0.value.validate()) != nil }
        var bytes = stored.topics.reduce(0) { $0 + $1.utf8.count } + stored.sends.reduce(0) { $0 + $1.utf8.count }
            + stored.types.reduce(0) { $0 + $1.value.name.utf8.count + 16 }
        if topicBytes + bytes > maximumTopicBytes, !stored.sends.isEmpty {
            // Sends are for people (`mesh topic info`, the web view); routing never reads them.
            // A full mesh still takes the node, without them.
            let listened = Set(stored.topics)
            stored.sends = []
            stored.types = stored.types.filter { listened.contains($0.key) }
            bytes = stored.topics.reduce(0) { $0 + $1.utf8.count } + stored.types.reduce(0) { $0 + $1.value.name.utf8.count + 16 }
        }
        guard topicBytes + bytes <= maximumTopicBytes else { throw .full(Self.topicBytesFull(maximumTopicBytes)) }
        topicBytes += bytes
        // A record that disagrees with another (coordinators restarted and nodes re-registered in
        // another order) is kept as it is: each node is the authority on its own record.
        for (topic, type) in stored.types { declared[topic, default: [:]][stored.id] = type }
        record(.join(stored))
        return stored
    }

    /// Removes a node; returns it, or `nil` when it was not there.
    @discardableResult
    mutating func leave(_ id: String) -> NodeRecord? {
        guard let node = topology.nodes[id] else { return nil }
        topicBytes -= node.topics.reduce(0) { $0 + $1.utf8.count } + node.sends.reduce(0) { $0 + $1.utf8.count }
            + node.types.reduce(0) { $0 + $1.value.name.utf8.count + 16 }
        for topic in node.types.keys { undeclare(topic, by: id) }
        record(.leave(id))
        return node
    }

    /// Adds `topic` to a node's listens, with the message type it declares; `false` when the
    /// node is unknown or already listens with that type.
    ///
    /// - Throws: ``Rejection/typeMismatch(_:)`` when `type` disagrees with another node's
    ///   declaration on `topic`, or with this node's own earlier one; nothing is recorded then.
    @discardableResult
    mutating func listen(_ id: String, to topic: String, type: TopicType? = nil) throws(Rejection) -> Bool {
        try checkDeclaration(of: topic, type: type)
        guard let node = topology.nodes[id] else { return false }
        let declares = try declaration(type, on: topic, by: node)
        guard !node.topics.contains(topic) || declares else { return false }
        let bytes = (node.topics.contains(topic) ? 0 : topic.utf8.count) + (declares ? type!.name.utf8.count + 16 : 0)
        guard node.topics.count < TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may listen to at most \(TopologyBook.maximumTopicsPerNode) topics")
        }
        guard topicBytes + bytes <= maximumTopicBytes else { throw .full(Self.topicBytesFull(maximumTopicBytes)) }
        topicBytes += bytes
        if declares, let type { declared[topic, default: [:]][id] = type }
        record(.listen(id, topic, type: declares ? type : nil))
        return true
    }

    /// Records that a node sends on `topic`, with the message type it declares; `false` when the
    /// node is unknown or already declared that.
    ///
    /// - Throws: ``Rejection/typeMismatch(_:)`` as for ``listen(_:to:type:)``.
    @discardableResult
    mutating func publish(_ id: String, on topic: String, type: TopicType?) throws(Rejection) -> Bool {
        try checkDeclaration(of: topic, type: type)
        guard let node = topology.nodes[id] else { return false }
        let declares = try declaration(type, on: topic, by: node)
        guard !node.sends.contains(topic) || declares else { return false }
        guard node.sends.count < TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may send on at most \(TopologyBook.maximumTopicsPerNode) declared topics")
        }
        let bytes = (node.sends.contains(topic) ? 0 : topic.utf8.count) + (declares ? type!.name.utf8.count + 16 : 0)
        guard topicBytes + bytes <= maximumTopicBytes else { throw .full(Self.topicBytesFull(maximumTopicBytes)) }
        topicBytes += bytes
        if declares, let type { declared[topic, default: [:]][id] = type }
        record(.publish(id, topic, type: declares ? type : nil))
        return true
    }

    /// The type declared on `topic` by a node other than `id` that `type` disagrees with.
    func disagreement(on topic: String, with type: TopicType, besides id: String) -> (node: NodeRecord, type: TopicType)? {
        for (other, theirs) in declared[topic] ?? [:] where other != id && !theirs.agrees(with: type) {
            if let node = topology.nodes[other] { return (node, theirs) }
        }
        return nil
    }

    private func checkDeclaration(of topic: String, type: TopicType?) throws(Rejection) {
        do {
            try validateName(topic, kind: "topic")
        } catch {
            throw .invalidTopic(error.description)
        }
        do {
            try type?.validate()
        } catch {
            throw .typeMismatch("the type declared on \"\(topic)\" is not valid: \(error.description)")
        }
    }

    /// Whether `type` adds a declaration to `node`'s record on `topic`.
    ///
    /// - Throws: ``Rejection/typeMismatch(_:)`` naming both types and both nodes when it
    ///   disagrees with what this node or another declared.
    private func declaration(_ type: TopicType?, on topic: String, by node: NodeRecord) throws(Rejection) -> Bool {
        guard let type else { return false }
        if let own = node.types[topic] {
            guard own.agrees(with: type) else {
                throw .typeMismatch(
                    "\(node.name) (\(node.id)) declares \(type) on \"\(topic)\", but it declared \(own) there before")
            }
            return false
        }
        if let (other, theirs) = disagreement(on: topic, with: type, besides: node.id) {
            let does = other.sends.contains(topic) ? "sends" : "listens to"
            throw .typeMismatch(
                "\(node.name) (\(node.id)) declares \(type) on \"\(topic)\", but \(other.name) (\(other.id)) \(does)"
                    + " it as \(theirs)")
        }
        return true
    }

    private mutating func undeclare(_ topic: String, by id: String) {
        declared[topic]?[id] = nil
        if declared[topic]?.isEmpty == true { declared[topic] = nil }
    }

    /// Removes `topic` from a node's listens; `false` when there was nothing to remove.
    @discardableResult
    mutating func unlisten(_ id: String, from topic: String) -> Bool {
        guard let node = topology.nodes[id], node.topics.contains(topic) else { return false }
        topicBytes -= topic.utf8.count
        if !node.sends.contains(topic), let type = node.types[topic] {
            topicBytes -= type.name.utf8.count + 16
            undeclare(topic, by: id)
        }
        record(.unlisten(id, topic))
        return true
    }

    /// Adds `service` to what a node provides; `false` when the node is unknown or already provides it.
    @discardableResult
    mutating func serve(_ id: String, _ service: String) throws(Rejection) -> Bool {
        do {
            try validateName(service, kind: "service")
        } catch {
            throw .invalidTopic(error.description)
        }
        guard let node = topology.nodes[id], !node.services.contains(service) else { return false }
        guard node.services.count < TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may provide at most \(TopologyBook.maximumTopicsPerNode) services")
        }
        record(.serve(id, service))
        return true
    }

    /// Removes `service` from what a node provides; `false` when there was nothing to remove.
    @discardableResult
    mutating func unserve(_ id: String, _ service: String) -> Bool {
        guard let node = topology.nodes[id], node.services.contains(service) else { return false }
        record(.unserve(id, service))
        return true
    }

    /// Notes that a node's record is at `version` (its own count of changes; PROTOCOL.md,
    /// "Several coordinators"): the highest seen is kept. Nothing routes by it, so it is no
    /// topology change and no delta; `true` when the record's version moved.
    @discardableResult
    mutating func noteVersion(_ id: String, _ version: UInt64) -> Bool {
        guard let held = topology.nodes[id], (held.version ?? 0) < version else { return false }
        topology.nodes[id]?.version = version
        return true
    }

    /// True when something changed since the last ``takeDelta()``.
    var hasUnpublishedChanges: Bool { !unpublished.isEmpty }

    /// The changes since the last call, as one delta; `nil` when nothing changed.
    mutating func takeDelta() -> TopologyDelta? {
        guard !unpublished.isEmpty else { return nil }
        let delta = TopologyDelta(from: publishedVersion, to: topology.version, changes: unpublished)
        publishedVersion = topology.version
        unpublished.removeAll()
        return delta
    }

    private static func topicBytesFull(_ limit: Int) -> String {
        "the mesh is full: its topics' names would pass \(limit) bytes in all"
    }

    private mutating func record(_ change: TopologyChange) {
        topology.apply(change)
        topology.version += 1
        unpublished.append(change)
    }
}
