import Foundation
import Synchronization

/// The node's data plane: the routes, the load balancer's turns and the peer connections,
/// behind one lock so that `send` never has to hop onto the node's actor.
///
/// The actor owns the topology and hands the router a copy on every change; the router turns a
/// topic into receivers and receivers into open connections, dialling on first use.
///
/// The lock guards the router's own state and nothing else: no system call (a socket, a write),
/// log line or caller's code runs under it, and nothing called under it takes it again.
final class Router: Sendable {
    /// One group of same-named listeners of a topic, with its round-robin turn.
    private struct Group {
        var members: [RouteMember]
        var turn = 0
    }


    private struct State {
        var topology = Topology()
        var routes: [String: [Group]] = [:]
        /// Round-robin turns of routes dropped from the cache, so a rebuilt route goes on in turn.
        var turns: [String: Int] = [:]
        /// The providers of each service, grouped by name, like ``routes``.
        var serviceRoutes: [String: [Group]] = [:]
        /// Each service's turn among its groups (a call goes to one provider in one group).
        var serviceTurns: [String: Int] = [:]
        var strategy: LoadBalancing
        var random = SystemRandomNumberGenerator()
        var peers: [String: Connection] = [:]
        var failed: [String: ContinuousClock.Instant] = [:]
        var statistics = MeshStatistics()
        var drops = DropReport()
        /// Why the last message was dropped, for a summary after the fact.
        var lastDropReason: String?
        var closed = false
        /// Topics this node has sent on, told to the topology once each (up to a bound).
        var sentTopics: Set<String> = []
    }

    private let state: Mutex<State>
    private let nodeID: String
    private let hello: [UInt8]
    private let options: Connection.Options
    private let events: EventQueue<MeshNode.ControlEvent>
    private let logger: MeshLogger
    private let preferUnix: Bool
    private let calls: PendingCalls
    /// The loop the connections it dials run on (the node's).
    private let loop: EventLoop

    init(
        nodeID: String, nodeName: String, loadBalancing: LoadBalancing, options: Connection.Options,
        events: EventQueue<MeshNode.ControlEvent>, logger: MeshLogger, preferUnix: Bool, calls: PendingCalls,
        loop: EventLoop
    ) {
        self.loop = loop
        self.preferUnix = preferUnix
        self.calls = calls
        self.state = Mutex(State(strategy: loadBalancing))
        self.nodeID = nodeID
        self.hello = PeerHello(id: nodeID, name: nodeName).encodedFrame()
        self.options = options
        self.events = events
        self.logger = logger
    }

    /// One receiver chosen by ``route(_:frameBytes:_:)``, with its connection as cached then.
    private struct Receiver {
        let member: RouteMember
        /// `nil` for this node itself, and for a peer not dialled yet.
        let connection: Connection?
    }

    /// The receivers of one message, gathered under the lock and served after it. The first is
    /// held inline, so the common case (one receiver) allocates nothing.
    private struct Receivers {
        var first: Receiver?
        var rest: [Receiver] = []

        mutating func append(_ receiver: Receiver) {
            if first == nil { first = receiver } else { rest.append(receiver) }
        }

        var count: Int { first == nil ? 0 : 1 + rest.count }
    }

    /// Chooses the receivers of the next message on `topic`, then calls `deliver` for each with
    /// the router's lock released: with `nil` for this node itself, or with the peer's connection.
    ///
    /// Under the lock this only looks the route up and steps its round-robin turns; dialling a
    /// peer, `deliver` (a write, this node's inbox) and the drop accounting all run after it, so
    /// none of them can hold up other senders or take the lock again. Routes are cached per topic
    /// with their connections, so the common case is one dictionary lookup and one counter step.
    /// Counts the message as sent to each receiver; ``dropped(_:bytes:for:topic:stillCounted:reason:)``
    /// takes back what fails (a peer that cannot be dialled is counted that way here).
    /// - Returns: `false` when nobody listens to `topic` (counted as unrouted).
    /// - Throws: ``MeshError/closed`` after ``close()``; ``MeshError/invalidName(_:reason:)`` for a bad topic.
    func route(
        _ topic: String, frameBytes: Int, _ deliver: (Connection?, RouteMember) -> Void
    ) throws(MeshError) -> Bool {
        var firstSend = false
        let receivers = try state.withLock { state throws(MeshError) -> Receivers in
            if state.closed { throw .closed }
            let routeIndex: Dictionary<String, [Group]>.Index
            if let index = state.routes.index(forKey: topic) {
                routeIndex = index
            } else {
                // Only when the route is not cached: the common send never looks at this set.
                try validateName(topic, kind: "topic")
                if state.sentTopics.count < Router.maximumAnnouncedTopics {
                    firstSend = state.sentTopics.insert(topic).inserted
                }
                state.routes[topic] = makeRoute(topic, in: &state)
                routeIndex = state.routes.index(forKey: topic)!
            }
            let strategy = state.strategy
            var receivers = Receivers()
            // Step the route in place (one hash per message; its arrays are not copied).
            withRoute(at: routeIndex, in: &state) { groups, state in
                for groupIndex in groups.indices {
                    if strategy == .broadcast {
                        for member in groups[groupIndex].members { receivers.append(receiver(member, in: &state)) }
                        continue
                    }
                    let count = groups[groupIndex].members.count
                    var index = 0
                    if count > 1 {
                        let failed = state.failed
                        let now = failed.isEmpty ? nil : ContinuousClock.now
                        let members = groups[groupIndex].members
                        index = LoadBalancer.pick(
                            strategy, among: count, turn: &groups[groupIndex].turn,
                            isAvailable: { index in
                                guard let now, let since = failed[members[index].node.id] else { return true }
                                return now - since > .seconds(1)
                            }, using: &state.random)
                    }
                    receivers.append(receiver(groups[groupIndex].members[index], in: &state))
                }
            }
            let count = receivers.count
            if count == 0 {
                state.statistics.messagesUnrouted += 1
            } else {
                state.statistics.messagesSent += count
                state.statistics.bytesSent += count * frameBytes
            }
            return receivers
        }
        if firstSend { events.push(.firstSend(topic)) }
        guard let first = receivers.first else { return false }
        serve(first, topic: topic, frameBytes: frameBytes, deliver)
        for receiver in receivers.rest { serve(receiver, topic: topic, frameBytes: frameBytes, deliver) }
        return true
    }

    private func withRoute(
        at index: Dictionary<String, [Group]>.Index, in state: inout State,
        _ body: (inout [Group], inout State) -> Void
    ) {
        var groups: [Group] = []
        swap(&groups, &state.routes.values[index])
        body(&groups, &state)
        swap(&groups, &state.routes.values[index])
    }

    /// Under the lock: `member` with its cached connection, or one another route dialled meanwhile.
    private func receiver(_ member: RouteMember, in state: inout State) -> Receiver {
        if member.isSelf { return Receiver(member: member, connection: nil) }
        if member.connection == nil { member.connection = state.peers[member.node.id] }
        return Receiver(member: member, connection: member.connection)
    }

    /// With no lock held: hands one chosen receiver to `deliver`, dialling it first if need be.
    private func serve(
        _ receiver: Receiver, topic: String, frameBytes: Int, _ deliver: (Connection?, RouteMember) -> Void
    ) {
        if receiver.member.isSelf { return deliver(nil, receiver.member) }
        guard let connection = receiver.connection ?? dial(receiver.member.node, for: receiver.member) else {
            dropped(1, bytes: frameBytes, for: receiver.member.node, topic: topic, reason: "no connection could be opened")
            return
        }
        deliver(connection, receiver.member)
    }

    private func makeRoute(_ topic: String, in state: inout State) -> [Group] {
        LoadBalancer.groups(state.topology.listeners(of: topic)).map { nodes in
            Group(
                members: nodes.map { node in
                    RouteMember(node: node, isSelf: node.id == nodeID, connection: state.peers[node.id])
                },
                turn: state.turns[Router.turnKey(topic, nodes[0].name)] ?? 0)
        }
    }

    /// Empties the route cache, keeping each group's round-robin turn for the rebuilt route.
    private func dropRoutes(in state: inout State) {
        for (topic, groups) in state.routes { keepTurns(groups, topic: topic, in: &state) }
        state.routes.removeAll(keepingCapacity: true)
        for (service, groups) in state.serviceRoutes { keepTurns(groups, service: service, in: &state) }
        state.serviceRoutes.removeAll(keepingCapacity: true)
    }

    /// Drops the cached routes of `topics` and `services` only, keeping their turns; the others stay.
    private func dropRoutes(topics: Set<String>, services: Set<String>, in state: inout State) {
        if !state.routes.isEmpty {
            for topic in topics {
                guard let groups = state.routes.removeValue(forKey: topic) else { continue }
                keepTurns(groups, topic: topic, in: &state)
            }
        }
        if !state.serviceRoutes.isEmpty {
            for service in services {
                guard let groups = state.serviceRoutes.removeValue(forKey: service) else { continue }
                keepTurns(groups, service: service, in: &state)
            }
        }
    }

    private func keepTurns(_ groups: [Group], topic: String, in state: inout State) {
        for group in groups where !group.members.isEmpty {
            state.turns[Router.turnKey(topic, group.members[0].node.name)] = group.turn
        }
    }

    private func keepTurns(_ groups: [Group], service: String, in state: inout State) {
        for group in groups where !group.members.isEmpty {
            state.turns[Router.serviceTurnKey(service, group.members[0].node.name)] = group.turn
        }
    }

    private static func serviceTurnKey(_ service: String, _ group: String) -> String { "\u{1}" + service + "\u{0}" + group }

    /// Where one call goes.
    enum CallTarget {
        /// This node provides the service itself.
        case local(NodeRecord)
        case remote(Connection, NodeRecord)
        /// The chosen provider could not be dialled (no socket could be made).
        case unreachable(NodeRecord)
    }

    /// Chooses the provider of the next call to `service`: one provider, whatever the number of
    /// groups. The groups take turns, and so do the members within each group (``LoadBalancing/random``
    /// picks at random instead; ``LoadBalancing/broadcast`` means turns here). A member whose
    /// connection failed in the last second, and a group with only such members, is skipped.
    ///
    /// - Returns: `nil` when nobody provides `service`.
    /// - Throws: ``MeshError/closed`` after ``close()``; ``MeshError/invalidName(_:reason:)``.
    func provider(of service: String) throws(MeshError) -> CallTarget? {
        let chosen = try state.withLock { state throws(MeshError) -> Receiver? in
            if state.closed { throw .closed }
            if state.serviceRoutes[service] == nil {
                try validateName(service, kind: "service")
                state.serviceRoutes[service] = LoadBalancer.groups(state.topology.providers(of: service)).map { nodes in
                    Group(
                        members: nodes.map { node in
                            RouteMember(node: node, isSelf: node.id == nodeID, connection: state.peers[node.id])
                        },
                        turn: state.turns[Router.serviceTurnKey(service, nodes[0].name)] ?? 0)
                }
            }
            var groups: [Group] = []
            swap(&groups, &state.serviceRoutes[service]!)
            defer { swap(&groups, &state.serviceRoutes[service]!) }
            guard !groups.isEmpty else { return nil }
            if groups.count == 1, groups[0].members.count == 1 {
                // One provider: nothing to choose (the common case, and the hot path of W8).
                return receiver(groups[0].members[0], in: &state)
            }
            let strategy: LoadBalancing = state.strategy == .random ? .random : .roundRobin
            let failed = state.failed
            let now = failed.isEmpty ? nil : ContinuousClock.now
            let isAvailable = { (member: RouteMember) -> Bool in
                guard let now, let since = failed[member.node.id] else { return true }
                return now - since > .seconds(1)
            }
            var groupTurn = state.serviceTurns[service] ?? 0
            let groupIndex = LoadBalancer.pick(
                strategy, among: groups.count, turn: &groupTurn,
                isAvailable: { groups[$0].members.contains(where: isAvailable) }, using: &state.random)
            state.serviceTurns[service] = groupTurn
            let members = groups[groupIndex].members
            let memberIndex = LoadBalancer.pick(
                strategy, among: members.count, turn: &groups[groupIndex].turn,
                isAvailable: { isAvailable(members[$0]) }, using: &state.random)
            return receiver(members[memberIndex], in: &state)
        }
        // Dialled, if need be, with the lock released.
        guard let chosen else { return nil }
        let node = chosen.member.node
        if chosen.member.isSelf { return .local(node) }
        guard let connection = chosen.connection ?? dial(node, for: chosen.member) else { return .unreachable(node) }
        return .remote(connection, node)
    }

    private static func turnKey(_ topic: String, _ group: String) -> String { topic + "\u{0}" + group }

    /// The most topics a node tells the topology it sends on; past them it still sends, untold.
    static let maximumAnnouncedTopics = 1_024

    /// The connection to `node`, dialled if there is none yet; `nil` when none could be opened.
    func connection(to node: NodeRecord) -> Connection? {
        state.withLock { $0.peers[node.id] } ?? dial(node)
    }

    /// The connection to `node`, dialled again after a failure.
    func reconnect(to node: NodeRecord, replacing old: Connection) -> Connection? {
        let current = state.withLock { state -> Connection? in
            if let current = state.peers[node.id], current !== old { return current }
            state.peers[node.id] = nil
            dropRoutes(in: &state)
            return nil
        }
        return current ?? dial(node)
    }

    /// Opens a connection to `node`, with no lock held while the socket is made or the failure
    /// logged; `member`, when given, caches it.
    ///
    /// Two senders may dial the same peer at once: the first connection stored is the one kept,
    /// and the other is discarded before it dials. The peer hello is queued before the connection
    /// is stored, so it goes out ahead of any message.
    /// - Returns: `nil` when no socket could be made, or the router has closed.
    private func dial(_ node: NodeRecord, for member: RouteMember? = nil) -> Connection? {
        let made: Connection
        do {
            let address = node.address(from: MeshDefaults.localScope, preferUnix: preferUnix)
            var options = self.options
            options.handshake = options.handshake.expecting(NodeID.bytes(node.id), key: node.key.flatMap(NodeID.publicKeyBytes))
            made = try Connection.connect(
                to: address, options: options, delegate: PeerLink(nodeID: node.id, events: events, calls: calls),
                loop: loop, startNow: false)
        } catch {
            logger.error("cannot open a connection to \(node.name) (\(node.id)) at \(node.address): \(error)")
            return nil
        }
        made.send(hello)
        let kept = state.withLock { state -> Connection? in
            if state.closed { return nil }
            if let existing = state.peers[node.id] {
                member?.connection = existing
                return existing
            }
            state.peers[node.id] = made
            member?.connection = made
            if state.failed[node.id] != nil { state.statistics.reconnects += 1 }
            return made
        }
        if kept === made { made.start() } else { made.discard() }
        return kept
    }

    /// Counts messages that will not arrive and reports them, at most once a second per receiver.
    ///
    /// - Parameters:
    ///   - stillCounted: the messages were counted as sent (queued, then lost); they stay counted.
    ///   - reason: why, for the log line.
    func dropped(
        _ count: Int, bytes: Int, for node: NodeRecord?, topic: String?, stillCounted: Bool = false, reason: String
    ) {
        let who = node.map { "\($0.name) (\($0.id)) at \($0.address)" } ?? "a peer"
        let what = topic.map { " on \"\($0)\"" } ?? ""
        let now = ContinuousClock.now
        let line = state.withLock { state -> String? in
            state.statistics.messagesDropped += count
            state.lastDropReason = reason
            if !stillCounted {
                state.statistics.messagesSent -= count
                state.statistics.bytesSent -= bytes
            }
            return state.drops.add(count, bytes: bytes, key: who + what, reason: reason, now: now)
        }
        if let line { logger.warning(line) }
    }

    /// Logs drops held back by the once-a-second limit (the node calls this with each heartbeat).
    func reportHeldDrops() {
        let lines = state.withLock { $0.drops.flush(now: .now) }
        for line in lines { logger.warning(line) }
    }

    /// What a topology update let go of.
    struct Departures {
        /// Connections to nodes that left, for the caller to close.
        var connections: [Connection] = []
        /// The records of the nodes that left.
        var records: [NodeRecord] = []
    }

    /// Takes a new topology: forgets cached routes and returns what left.
    @discardableResult
    func setTopology(_ topology: Topology) -> Departures {
        state.withLock { state in
            var departures = Departures()
            for (id, record) in state.topology.nodes where topology.nodes[id] == nil { departures.records.append(record) }
            state.topology = topology
            dropRoutes(in: &state)
            for (peerID, connection) in state.peers where topology.nodes[peerID] == nil {
                departures.connections.append(connection)
                state.peers[peerID] = nil
            }
            state.failed = state.failed.filter { topology.nodes[$0.key] != nil }
            return departures
        }
    }

    /// The record of node `id` in the topology the router routes with.
    func node(_ id: String) -> NodeRecord? {
        state.withLock { $0.topology.nodes[id] }
    }

    /// Takes one update's records (`nil`: the node is gone) and drops only the cached routes of
    /// the topics and services it touched: work in proportion to the update, not to the mesh.
    /// Returns what left.
    @discardableResult
    func apply(
        _ records: [(id: String, record: NodeRecord?)], topics: Set<String>, services: Set<String>, version: UInt64
    ) -> Departures {
        state.withLock { state in
            state.topology.version = version
            var departures = Departures()
            for (id, record) in records {
                if let record {
                    state.topology.nodes[id] = record
                    continue
                }
                if let old = state.topology.nodes.removeValue(forKey: id) { departures.records.append(old) }
                if let connection = state.peers.removeValue(forKey: id) { departures.connections.append(connection) }
                state.failed[id] = nil
            }
            dropRoutes(topics: topics, services: services, in: &state)
            return departures
        }
    }

    /// The topics whose routes are cached (for tests).
    var cachedRoutes: Set<String> { state.withLock { Set($0.routes.keys) } }

    /// The services whose routes are cached (for tests).
    var cachedServiceRoutes: Set<String> { state.withLock { Set($0.serviceRoutes.keys) } }

    /// Notes that a peer connection closed; returns whether it was the current one.
    func peerClosed(id peerID: String, connection: Connection, failed: Bool) -> NodeRecord? {
        state.withLock { state in
            if state.peers[peerID] === connection {
                state.peers[peerID] = nil
                dropRoutes(in: &state)
            }
            if failed { state.failed[peerID] = .now }
            return state.topology.nodes[peerID]
        }
    }

    /// Stops routing; returns the open peer connections, with their nodes' ids, for the caller to close.
    func close() -> [(peerID: String, connection: Connection)] {
        state.withLock { state in
            state.closed = true
            // A closed node routes nothing: let go of its copy of the topology and its routes,
            // keeping the records of the peers being closed (their drops are logged by name).
            let peers = state.peers
            state.topology.nodes = state.topology.nodes.filter { peers[$0.key] != nil }
            state.routes = [:]
            state.serviceRoutes = [:]
            defer { state.peers.removeAll() }
            return state.peers.map { ($0.key, $0.value) }
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// The address this node dialled for a peer, once it has (for tests).
    func dialledAddress(for peerID: String) -> SocketAddress? {
        state.withLock { $0.peers[peerID] }?.remote
    }

    /// Bytes queued for one peer and not yet written (for tests and `mesh status`).
    func queuedBytes(for peerID: String) -> Int {
        (state.withLock { $0.peers[peerID] })?.unsentByteCount ?? 0
    }

    /// Send-side counters.
    var statistics: MeshStatistics { state.withLock { $0.statistics } }

    /// Why the last dropped message was dropped; `nil` while none was.
    var lastDropReason: String? { state.withLock { $0.lastDropReason } }

    func count(_ update: (inout MeshStatistics) -> Void) {
        state.withLock { update(&$0.statistics) }
    }
}

/// Drop counts per receiver and topic, so a flood of drops makes one log line a second, not one each.
struct DropReport: Sendable {
    private struct Held {
        var count = 0
        var bytes = 0
        var reason = ""
        var lastLogged: ContinuousClock.Instant
    }

    private var held: [String: Held] = [:]

    /// Records a drop; returns a line to log now, or `nil` when one went out for `key` within the second.
    mutating func add(_ count: Int, bytes: Int, key: String, reason: String, now: ContinuousClock.Instant) -> String? {
        var entry = held[key] ?? Held(lastLogged: now - .seconds(2))
        entry.count += count
        entry.bytes += bytes
        entry.reason = reason
        defer { held[key] = entry }
        guard now - entry.lastLogged >= .seconds(1) else { return nil }
        let line = "dropped \(entry.count) message(s) (\(entry.bytes) bytes) for \(key): \(reason)"
        entry.count = 0
        entry.bytes = 0
        entry.lastLogged = now
        return line
    }

    /// Lines for drops held back for over a second; forgets quiet receivers.
    mutating func flush(now: ContinuousClock.Instant) -> [String] {
        var lines: [String] = []
        for (key, entry) in held {
            if entry.count > 0, now - entry.lastLogged >= .seconds(1) {
                lines.append("dropped \(entry.count) message(s) (\(entry.bytes) bytes) for \(key): \(entry.reason)")
                held[key] = Held(lastLogged: now)
            } else if entry.count == 0, now - entry.lastLogged > .seconds(10) {
                held[key] = nil
            }
        }
        return lines
    }
}

/// One listener in a cached route, with its connection once dialled.
///
/// A class so that the send path passes one reference per receiver instead of copying the
/// record's strings. Its `connection` is read and written only under the router's lock.
final class RouteMember: @unchecked Sendable {
    let node: NodeRecord
    let isSelf: Bool
    var connection: Connection?

    init(node: NodeRecord, isSelf: Bool, connection: Connection?) {
        self.node = node
        self.isSelf = isSelf
        self.connection = connection
    }
}
