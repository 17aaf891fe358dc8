/// What one topology update touched: the nodes whose records changed and the topics, services
/// and names whose members may have changed with them.
///
/// Every node gets every delta of a full view, so in a join storm of N nodes each node applies
/// O(N) deltas. Work of O(N) per delta (copying the whole topology into the router and the peer
/// directory, rebuilding every cached route, checking every wait) made a storm O(N²) per node
/// and a 1,000-node process miss its own heartbeats. With this, a node's bookkeeping costs
/// O(changes) per delta: the router and the peer directory take only the touched records, only
/// the touched topics' and services' routes are dropped, and a wait is checked only when a
/// change could satisfy it. A full copy of the topology (a welcome, an answer to `sync`) touches
/// ``everything``.
struct TopologyChanges: Sendable, Equatable {
    /// Anything may have changed: a full copy replaced the topology, or the provisional nodes changed.
    var everything = false
    /// The ids of nodes that joined, left, or whose record changed.
    var nodes: Set<String> = []
    /// Topics whose listeners may have changed.
    var topics: Set<String> = []
    /// Services whose providers may have changed.
    var services: Set<String> = []
    /// Names whose nodes may have changed (a node joined or left).
    var names: Set<String> = []

    static let everything = TopologyChanges(everything: true)

    init(everything: Bool = false) {
        self.everything = everything
    }

    /// What `changes` touch when applied, in order, to `topology` (read before they are: a
    /// leaving node's record says what it listened to and provided).
    init(_ changes: [TopologyChange], before topology: Topology) {
        for change in changes {
            switch change.op {
            case .join:
                guard let node = change.node else { continue }
                add(node)
                if let old = topology.nodes[node.id] { add(old) }
            case .leave:
                guard let id = change.id else { continue }
                nodes.insert(id)
                if let old = topology.nodes[id] { add(old) }
            case .listen, .unlisten:
                if let id = change.id { nodes.insert(id) }
                if let topic = change.topic { topics.insert(topic) }
            case .publish:
                // Sends and declared types are read from the node's record; no route lists senders.
                if let id = change.id { nodes.insert(id) }
            case .serve, .unserve:
                if let id = change.id { nodes.insert(id) }
                if let service = change.service { services.insert(service) }
            }
        }
    }

    /// Notes that `node`'s record, and whatever it lists, changed.
    mutating func add(_ node: NodeRecord) {
        nodes.insert(node.id)
        names.insert(node.name)
        topics.formUnion(node.topics)
        services.formUnion(node.services)
    }

    /// True when these changes could change whether a wait for `key` is satisfied.
    func touches(_ key: TopologyWaitKey) -> Bool {
        if everything { return true }
        switch key {
        case .anyChange: return true
        case .node(let id): return nodes.contains(id)
        case .topic(let topic): return topics.contains(topic)
        case .service(let service): return services.contains(service)
        case .name(let name): return names.contains(name)
        }
    }
}

/// What a topology wait depends on: it is checked again only after a change touching that.
enum TopologyWaitKey: Hashable, Sendable {
    /// One node's record (this node's own listen, serve or send being recorded).
    case node(String)
    /// The listeners of a topic.
    case topic(String)
    /// The providers of a service.
    case service(String)
    /// The nodes with a name.
    case name(String)
    /// Any change at all (``MeshNode/waitForTopologyChange(from:timeout:)``).
    case anyChange
}

/// A node's topology waits, indexed by what each waits for, so a delta checks only the waits it
/// could satisfy.
struct TopologyWaiters<Waiter> {
    private var waiters: [UInt64: (key: TopologyWaitKey, waiter: Waiter)] = [:]
    private var byKey: [TopologyWaitKey: Set<UInt64>] = [:]

    var count: Int { waiters.count }
    var isEmpty: Bool { waiters.isEmpty }

    /// Every wait, by id.
    var all: [(id: UInt64, waiter: Waiter)] { waiters.map { ($0.key, $0.value.waiter) } }

    subscript(id: UInt64) -> Waiter? { waiters[id]?.waiter }

    mutating func add(_ id: UInt64, key: TopologyWaitKey, _ waiter: Waiter) {
        waiters[id] = (key, waiter)
        byKey[key, default: []].insert(id)
    }

    @discardableResult
    mutating func remove(_ id: UInt64) -> Waiter? {
        guard let (key, waiter) = waiters.removeValue(forKey: id) else { return nil }
        byKey[key]?.remove(id)
        if byKey[key]?.isEmpty == true { byKey[key] = nil }
        return waiter
    }

    mutating func removeAll() {
        waiters.removeAll()
        byKey.removeAll()
    }

    /// The waits that `changes` could satisfy, oldest first: every wait for ``TopologyChanges/everything``.
    func candidates(for changes: TopologyChanges) -> [UInt64] {
        if changes.everything { return waiters.keys.sorted() }
        var ids: [UInt64] = []
        func collect(_ key: TopologyWaitKey) {
            if let found = byKey[key] { ids.append(contentsOf: found) }
        }
        collect(.anyChange)
        // Whichever side is smaller: the changes or the keys waited on.
        if changes.nodes.count + changes.topics.count + changes.services.count + changes.names.count < byKey.count {
            for id in changes.nodes { collect(.node(id)) }
            for topic in changes.topics { collect(.topic(topic)) }
            for service in changes.services { collect(.service(service)) }
            for name in changes.names { collect(.name(name)) }
        } else {
            for (key, found) in byKey where key != .anyChange && changes.touches(key) { ids.append(contentsOf: found) }
        }
        return ids.sorted()
    }
}
