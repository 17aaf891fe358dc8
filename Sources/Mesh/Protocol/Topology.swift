/// One node as the mesh knows it: who it is, where peers reach it, what it listens to.
public struct NodeRecord: Codable, Sendable, Hashable, Identifiable {
    /// 16 hex digits derived from the node's static public key (see `key`): unique to the key.
    public var id: String
    /// The node's name; nodes sharing a name form a worker pool.
    public var name: String
    /// The address peers dial. The coordinator fills in the address it saw the node connect
    /// from, unless the node advertised one.
    public var host: String
    public var port: UInt16
    /// Topics this node listens to, sorted.
    public var topics: [String]
    /// Services this node provides, sorted (absent on the wire when empty).
    public var services: [String]
    /// The node's process id, for `mesh node list`.
    public var pid: Int32?
    /// When the node joined, in seconds since 1970 (the coordinator's clock).
    public var joined: Double?
    /// Topics this node sends on, sorted (absent on the wire when empty): declared at its first
    /// send on each (at most 1,024), and before a typed or latched send.
    public var sends: [String]
    /// The message type this node declared for a topic it listens to or sends on, by topic
    /// (absent on the wire when empty). A topic missing here is untyped for this node.
    public var types: [String: TopicType]
    /// Set when the node also accepts peers on the abstract Unix socket `@swift-mesh-ID`: a short
    /// name for its host and network namespace. A peer with the same value can dial that socket.
    public var local: String?
    /// The node's static X25519 public key, 64 lowercase hex digits; the id derives from it, and in a
    /// keyed mesh a peer dialling this node completes the handshake only with the holder of its
    /// private key (protocol version 3).
    public var key: String?
    /// The node's own count of changes to its record, sent by a node with several coordinators
    /// (absent otherwise): of two views of one node, the one with the higher version is newer.
    public var version: UInt64?

    public init(
        id: String, name: String, host: String, port: UInt16, topics: [String] = [], pid: Int32? = nil,
        joined: Double? = nil, local: String? = nil, services: [String] = [], sends: [String] = [],
        types: [String: TopicType] = [:], key: String? = nil, version: UInt64? = nil
    ) {
        self.id = id
        self.key = key
        self.name = name
        self.host = host
        self.port = port
        self.topics = topics
        self.services = services
        self.pid = pid
        self.joined = joined
        self.local = local
        self.sends = sends
        self.types = types
        self.version = version
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, host, port, topics, services, pid, joined, local, sends, types, key, version
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        host = try container.decode(String.self, forKey: .host)
        port = try container.decode(UInt16.self, forKey: .port)
        topics = try container.decode([String].self, forKey: .topics)
        services = try container.decodeIfPresent([String].self, forKey: .services) ?? []
        pid = try container.decodeIfPresent(Int32.self, forKey: .pid)
        joined = try container.decodeIfPresent(Double.self, forKey: .joined)
        local = try container.decodeIfPresent(String.self, forKey: .local)
        sends = try container.decodeIfPresent([String].self, forKey: .sends) ?? []
        types = try container.decodeIfPresent([String: TopicType].self, forKey: .types) ?? [:]
        key = try container.decodeIfPresent(String.self, forKey: .key)
        version = try container.decodeIfPresent(UInt64.self, forKey: .version)
    }

    /// Writes `services` only when there are some, so records of nodes without services (most
    /// of them) stay as they were: every record goes to every node.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(host, forKey: .host)
        try container.encode(port, forKey: .port)
        try container.encode(topics, forKey: .topics)
        if !services.isEmpty { try container.encode(services, forKey: .services) }
        try container.encodeIfPresent(pid, forKey: .pid)
        try container.encodeIfPresent(joined, forKey: .joined)
        try container.encodeIfPresent(local, forKey: .local)
        if !sends.isEmpty { try container.encode(sends, forKey: .sends) }
        if !types.isEmpty { try container.encode(types, forKey: .types) }
        try container.encodeIfPresent(key, forKey: .key)
        try container.encodeIfPresent(version, forKey: .version)
    }

    /// The type this node declared for `topic` that `type` does not agree with, if any.
    public func disagreement(on topic: String, with type: TopicType) -> TopicType? {
        guard let declared = types[topic], !declared.agrees(with: type) else { return nil }
        return declared
    }

    /// Where peers on other hosts dial this node.
    public var address: SocketAddress {
        SocketAddress.parse(host, defaultPort: port) ?? .ipv4(host: host, port: port)
    }

    /// Where a peer dials this node: its Unix socket when both run in the same host and network
    /// namespace (`scope`) and `preferUnix` is set, its TCP address otherwise.
    func address(from scope: String, preferUnix: Bool) -> SocketAddress {
        if preferUnix, local == scope { return NodeRecord.unixAddress(for: id) }
        return address
    }

    /// The abstract Unix socket a node with this id accepts local peers on. Abstract sockets
    /// belong to a network namespace, not to the file system: nothing to clean up after a crash.
    static func unixAddress(for id: String) -> SocketAddress { .unix(path: "@swift-mesh-\(id)") }
}

/// The mesh as one node (or the coordinator) sees it at one version.
public struct Topology: Sendable, Equatable {
    /// Bumped by the coordinator on every change; deltas name the version they apply to.
    public package(set) var version: UInt64 = 0
    /// Every node, by id.
    public package(set) var nodes: [String: NodeRecord] = [:]

    public init() {}

    package init(_ snapshot: TopologySnapshot) {
        version = snapshot.version
        nodes = Dictionary(snapshot.nodes.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
    }

    /// The nodes listening to `topic`, ordered by id.
    public func listeners(of topic: String) -> [NodeRecord] {
        nodes.values.filter { $0.topics.contains(topic) }.sorted { $0.id < $1.id }
    }

    /// The nodes named `name`, ordered by id.
    public func nodes(named name: String) -> [NodeRecord] {
        nodes.values.filter { $0.name == name }.sorted { $0.id < $1.id }
    }

    /// The nodes providing `service`, ordered by id.
    public func providers(of service: String) -> [NodeRecord] {
        nodes.values.filter { $0.services.contains(service) }.sorted { $0.id < $1.id }
    }

    /// Every service someone provides, with its providers ordered by id.
    public var services: [String: [NodeRecord]] {
        var result: [String: [NodeRecord]] = [:]
        for node in nodes.values.sorted(by: { $0.id < $1.id }) {
            for service in node.services { result[service, default: []].append(node) }
        }
        return result
    }

    /// The nodes that declared a send on `topic`, ordered by id.
    public func senders(of topic: String) -> [NodeRecord] {
        nodes.values.filter { $0.sends.contains(topic) }.sorted { $0.id < $1.id }
    }

    /// Every topic some node declared a send on, with those nodes ordered by id.
    public var senders: [String: [NodeRecord]] {
        var result: [String: [NodeRecord]] = [:]
        for node in nodes.values.sorted(by: { $0.id < $1.id }) {
            for topic in node.sends { result[topic, default: []].append(node) }
        }
        return result
    }

    /// Every topic someone listens to, with its listeners ordered by id.
    public var topics: [String: [NodeRecord]] {
        var result: [String: [NodeRecord]] = [:]
        for node in nodes.values.sorted(by: { $0.id < $1.id }) {
            for topic in node.topics { result[topic, default: []].append(node) }
        }
        return result
    }

    package var snapshot: TopologySnapshot {
        TopologySnapshot(version: version, nodes: nodes.values.sorted { $0.id < $1.id })
    }

    /// Applies one change; returns `false` when it changed nothing (a duplicate or unknown id).
    @discardableResult
    package mutating func apply(_ change: TopologyChange) -> Bool {
        switch change.op {
        case .join:
            guard let node = change.node else { return false }
            nodes[node.id] = node
            return true
        case .leave:
            guard let id = change.id else { return false }
            return nodes.removeValue(forKey: id) != nil
        case .listen:
            let added = add(change.topic, to: \.topics, of: change.id)
            return declare(change.type, for: change.topic, of: change.id) || added
        case .unlisten:
            let removed = remove(change.topic, from: \.topics, of: change.id)
            if let id = change.id, let topic = change.topic, var node = nodes[id], !node.sends.contains(topic),
                node.types.removeValue(forKey: topic) != nil
            {
                nodes[id] = node
            }
            return removed
        case .publish:
            let added = add(change.topic, to: \.sends, of: change.id)
            return declare(change.type, for: change.topic, of: change.id) || added
        case .serve: return add(change.service, to: \.services, of: change.id)
        case .unserve: return remove(change.service, from: \.services, of: change.id)
        }
    }

    /// Adds `name` to a node's sorted topics or services; `false` when unknown or already there.
    ///
    /// In place: a copy of the record taken out of the dictionary would share its list, and
    /// appending would copy the list (every node applies every change of a full view).
    private mutating func add(_ name: String?, to list: WritableKeyPath<NodeRecord, [String]>, of id: String?) -> Bool {
        guard let id, let name, let index = nodes.index(forKey: id) else { return false }
        let at: Int?
        do {
            let names = nodes.values[index][keyPath: list]
            guard !names.contains(name) else { return false }
            // Where it goes in a sorted list; `nil` for a list that came unsorted: sort it all.
            at = zip(names, names.dropFirst()).allSatisfy { $0 <= $1 } ? (names.firstIndex { $0 > name } ?? names.endIndex) : nil
        }
        if let at {
            nodes.values[index][keyPath: list].insert(name, at: at)
        } else {
            nodes.values[index][keyPath: list].append(name)
            nodes.values[index][keyPath: list].sort()
        }
        return true
    }

    /// Sets the type a node declared for `topic`; `false` when nothing changed.
    private mutating func declare(_ type: TopicType?, for topic: String?, of id: String?) -> Bool {
        guard let type, let topic, let id, var node = nodes[id], node.types[topic] != type else { return false }
        node.types[topic] = type
        nodes[id] = node
        return true
    }

    /// Removes `name` from a node's topics or services; `false` when there was nothing to remove.
    private mutating func remove(_ name: String?, from list: WritableKeyPath<NodeRecord, [String]>, of id: String?) -> Bool {
        guard let id, let name, var node = nodes[id], let index = node[keyPath: list].firstIndex(of: name) else {
            return false
        }
        node[keyPath: list].remove(at: index)
        nodes[id] = node
        return true
    }

    /// What applying a delta did.
    enum DeltaOutcome: Sendable, Equatable {
        /// The delta followed on from this version and is now applied.
        case applied
        /// Everything in it was already known; nothing changed.
        case alreadyKnown
        /// A version is missing in between: ask the coordinator for a full copy.
        case gap
    }

    /// Applies `delta` when it starts at this version.
    mutating func apply(_ delta: TopologyDelta) -> DeltaOutcome {
        if delta.to <= version { return .alreadyKnown }
        guard delta.from == version else { return .gap }
        for change in delta.changes { apply(change) }
        version = delta.to
        return .applied
    }
}

/// A full copy of the topology, as sent on the wire.
package struct TopologySnapshot: Codable, Sendable, Equatable {
    var version: UInt64
    var nodes: [NodeRecord]

    package init(version: UInt64, nodes: [NodeRecord]) {
        self.version = version
        self.nodes = nodes
    }
}

/// One change to the topology.
package struct TopologyChange: Codable, Sendable, Equatable {
    package enum Operation: String, Codable, Sendable {
        case join, leave, listen, unlisten, serve, unserve, publish
    }

    package var op: Operation
    /// The whole record, for `join`.
    package var node: NodeRecord?
    /// The node's id, for `leave`, `listen`, `unlisten`, `serve` and `unserve`.
    package var id: String?
    /// The topic, for `listen`, `unlisten` and `publish`.
    package var topic: String?
    /// The message type declared with a `listen` or `publish`, when there is one.
    package var type: TopicType?
    /// The service, for `serve` and `unserve`.
    package var service: String?

    package static func join(_ node: NodeRecord) -> TopologyChange { TopologyChange(op: .join, node: node) }
    package static func leave(_ id: String) -> TopologyChange { TopologyChange(op: .leave, id: id) }
    package static func listen(_ id: String, _ topic: String, type: TopicType? = nil) -> TopologyChange {
        TopologyChange(op: .listen, id: id, topic: topic, type: type)
    }
    package static func publish(_ id: String, _ topic: String, type: TopicType?) -> TopologyChange {
        TopologyChange(op: .publish, id: id, topic: topic, type: type)
    }
    package static func unlisten(_ id: String, _ topic: String) -> TopologyChange {
        TopologyChange(op: .unlisten, id: id, topic: topic)
    }
    package static func serve(_ id: String, _ service: String) -> TopologyChange {
        TopologyChange(op: .serve, id: id, service: service)
    }
    package static func unserve(_ id: String, _ service: String) -> TopologyChange {
        TopologyChange(op: .unserve, id: id, service: service)
    }
}

/// The changes that take a topology from version `from` to version `to`.
package struct TopologyDelta: Codable, Sendable, Equatable {
    var from: UInt64
    var to: UInt64
    package var changes: [TopologyChange]

    package init(from: UInt64, to: UInt64, changes: [TopologyChange]) {
        self.from = from
        self.to = to
        self.changes = changes
    }
}
