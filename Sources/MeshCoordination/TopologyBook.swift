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

        var description: String {
            switch self {
            case .duplicateID(let id): return "a node with id \(id) is already registered"
            case .full(let reason): return reason
            case .invalidName(let reason): return reason
            case .invalidTopic(let reason): return reason
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
        let bytes = stored.topics.reduce(0) { $0 + $1.utf8.count }
        guard topicBytes + bytes <= maximumTopicBytes else { throw .full(Self.topicBytesFull(maximumTopicBytes)) }
        topicBytes += bytes
        record(.join(stored))
        return stored
    }

    /// Removes a node; returns it, or `nil` when it was not there.
    @discardableResult
    mutating func leave(_ id: String) -> NodeRecord? {
        guard let node = topology.nodes[id] else { return nil }
        topicBytes -= node.topics.reduce(0) { $0 + $1.utf8.count }
        record(.leave(id))
        return node
    }

    /// Adds `topic` to a node's listens; `false` when the node is unknown or already listens.
    @discardableResult
    mutating func listen(_ id: String, to topic: String) throws(Rejection) -> Bool {
        do {
            try validateName(topic, kind: "topic")
        } catch {
            throw .invalidTopic(error.description)
        }
        guard let node = topology.nodes[id], !node.topics.contains(topic) else { return false }
        guard node.topics.count < TopologyBook.maximumTopicsPerNode else {
            throw .invalidTopic("a node may listen to at most \(TopologyBook.maximumTopicsPerNode) topics")
        }
        guard topicBytes + topic.utf8.count <= maximumTopicBytes else { throw .full(Self.topicBytesFull(maximumTopicBytes)) }
        topicBytes += topic.utf8.count
        record(.listen(id, topic))
        return true
    }

    /// Removes `topic` from a node's listens; `false` when there was nothing to remove.
    @discardableResult
    mutating func unlisten(_ id: String, from topic: String) -> Bool {
        guard let node = topology.nodes[id], node.topics.contains(topic) else { return false }
        topicBytes -= topic.utf8.count
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
