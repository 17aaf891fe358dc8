import Mesh

/// The partial views the coordinator keeps, one per node session that asked for one: which
/// records each holds, what it is interested in, and the changes it has not been sent yet.
///
/// A value fed the topology's changes (the batches ``TopologyBook`` hands out, applied here to a
/// copy of the topology) and returning each session's own delta, numbered in that session's own
/// versions so that gap detection and `sync` work as with the full view. Indexes from topic, service, name and id to the sessions that
/// care make the work per change proportional to the sessions it concerns, never to all of them.
/// No sockets and no clocks.
struct ViewBook: Sendable {
    /// Why an interest is refused.
    enum Rejection: Error, Sendable, Equatable, CustomStringConvertible {
        case tooManyInterests(limit: Int)
        /// All sessions' partial views together would follow more than `limit`.
        case coordinatorFull(limit: Int)
        case invalid(String)

        var description: String {
            switch self {
            case .tooManyInterests(let limit):
                return "a node with a partial view may follow at most \(limit) topics, services, names and ids in all"
                    + " (register with the full view for more)"
            case .coordinatorFull(let limit):
                return "the coordinator's partial views already follow the most topics, services, names and ids it keeps"
                    + " for all nodes together (\(limit), maximumInterests); register with the full view, or follow less"
            case .invalid(let reason): return reason
            }
        }
    }

    /// The most entries all sessions' interests may hold together.
    let maximumInterests: Int
    /// The entries all sessions' interests hold together.
    private(set) var totalInterests = 0

    /// - Parameter maximumInterests: what all sessions together may follow.
    init(maximumInterests: Int = 100_000) {
        self.maximumInterests = maximumInterests
    }

    struct View: Sendable, Equatable {
        /// This session's own version: bumped once per snapshot or delta sent to it.
        var version: UInt64 = 0
        /// Ids of the records it holds (its own among them).
        var held: Set<String> = []
        var interest = ViewInterest()
        /// Changes not sent yet, already filtered for this session.
        var pending: [TopologyChange] = []
        /// False until its welcome went out: changes before then are covered by the welcome.
        var welcomed = false
        /// ViewInterest declared since the last delta, whose records are looked up at the next one.
        var unmatched = ViewInterest()
        /// The interests declared since the last delta, echoed in it to say they are answered.
        var owed: ViewInterest?
    }

    private(set) var views: [UInt64: View] = [:]
    /// The topology as of the last change recorded here.
    private(set) var topology = Topology()
    /// Topic, service and name → ids of the nodes with it, so an interest finds its records
    /// without a pass over every node.
    private var listeners: [String: Set<String>] = [:]
    private var providers: [String: Set<String>] = [:]
    private var named: [String: Set<String>] = [:]
    private var byTopic: [String: Set<UInt64>] = [:]
    private var byService: [String: Set<UInt64>] = [:]
    private var byName: [String: Set<UInt64>] = [:]
    private var byID: [String: Set<UInt64>] = [:]
    /// Node id → the sessions holding its record.
    private var holders: [String: Set<UInt64>] = [:]
    /// Sessions with pending changes.
    private var dirty: Set<UInt64> = []

    /// Starts a view for `session`, whose node is `own`, with its first interest.
    ///
    /// Check the interest with ``check(_:adding:)`` first.
    mutating func open(_ session: UInt64, own: String, interest: ViewInterest) {
        close(session)
        views[session] = View(interest: interest)
        totalInterests += interest.count
        hold(own, in: session)
        follow(interest, in: session)
    }

    /// Forgets a session's view (it closed, or it left).
    mutating func close(_ session: UInt64) {
        guard let view = views.removeValue(forKey: session) else { return }
        totalInterests -= view.interest.count
        for id in view.held { Self.drop(session, from: id, in: &holders) }
        for topic in view.interest.topics { Self.drop(session, from: topic, in: &byTopic) }
        for service in view.interest.services { Self.drop(session, from: service, in: &byService) }
        for name in view.interest.names { Self.drop(session, from: name, in: &byName) }
        for id in view.interest.ids { Self.drop(session, from: id, in: &byID) }
        dirty.remove(session)
    }

    /// The session's whole view, for a `welcome` or a `sync` answer: its held records as they are
    /// in `topology` now, at a new version of its own. Pending changes are in it, so they go.
    ///
    /// Ids it looked up whose nodes are in the mesh are in it, and answered; the others stay to
    /// be answered by its next delta (with the record and its leaving, for a node that has just
    /// left), which a snapshot cannot say.
    mutating func snapshot(_ session: UInt64) -> TopologySnapshot? {
        guard var view = views[session] else { return nil }
        for id in view.held where topology.nodes[id] == nil { Self.drop(session, from: id, in: &holders) }
        view.held = view.held.filter { topology.nodes[$0] != nil }
        // Everything it is interested in, which includes what joined before its interest was known.
        for node in matching(view.interest) where view.held.insert(node.id).inserted {
            holders[node.id, default: []].insert(session)
        }
        let found = view.interest.ids.filter { topology.nodes[$0] != nil }
        view.interest.ids.subtract(found)
        totalInterests -= found.count
        for id in found { Self.drop(session, from: id, in: &byID) }
        view.version += 1
        view.pending.removeAll()
        view.unmatched = ViewInterest(ids: view.interest.ids)
        view.welcomed = true
        views[session] = view
        // An interest declared before the welcome is in it, but still owed its answer.
        if view.owed == nil && view.unmatched.ids.isEmpty { dirty.remove(session) } else { dirty.insert(session) }
        return TopologySnapshot(version: view.version, nodes: view.held.compactMap { topology.nodes[$0] }.sorted { $0.id < $1.id })
    }

    /// Adds to what `session` follows. Its next delta (from ``takeDeltas()``, after the changes
    /// of the same batch are recorded) answers: the changes pending for it, then the records it
    /// now matches and did not hold, with `interest` echoed.
    ///
    /// - Throws: ``Rejection`` past the limit or for an invalid name; nothing is changed then.
    mutating func declare(_ session: UInt64, _ interest: ViewInterest) throws(Rejection) {
        guard var view = views[session] else { return }
        try check(interest, adding: view.interest)
        let added = interest.subtracting(view.interest)
        view.interest.formUnion(added)
        totalInterests += added.count
        view.unmatched.formUnion(added)
        var owed = view.owed ?? ViewInterest()
        owed.formUnion(interest)
        view.owed = owed
        views[session] = view
        follow(added, in: session)
        if view.welcomed { dirty.insert(session) }
    }

    /// Applies one change and routes it to the sessions it concerns.
    mutating func record(_ change: TopologyChange) {
        index(change)
        switch change.op {
        case .join:
            guard let node = change.node else { return }
            var sessions = byID[node.id] ?? []
            sessions.formUnion(byName[node.name] ?? [])
            for topic in node.topics { sessions.formUnion(byTopic[topic] ?? []) }
            for service in node.services { sessions.formUnion(byService[service] ?? []) }
            for session in sessions {
                hold(node.id, in: session)
                append(change, to: session)
            }
        case .leave:
            guard let id = change.id else { return }
            for session in holders.removeValue(forKey: id) ?? [] {
                views[session]?.held.remove(id)
                append(change, to: session)
            }
        case .listen, .unlisten, .serve, .unserve, .publish:
            guard let id = change.id else { return }
            let holding = holders[id] ?? []
            for session in holding { append(change, to: session) }
            // A record that now listens to (or serves) what a session follows joins its view whole.
            let newcomers: Set<UInt64>
            switch change.op {
            case .listen: newcomers = change.topic.flatMap { byTopic[$0] } ?? []
            case .serve: newcomers = change.service.flatMap { byService[$0] } ?? []
            default: newcomers = []
            }
            guard let node = topology.nodes[id] else { return }
            for session in newcomers where !holding.contains(session) {
                hold(id, in: session)
                append(.join(node), to: session)
            }
        }
    }

    /// Every welcomed session's pending changes, as one delta each in its own versions, with the
    /// interests it answers.
    ///
    /// An id a session looked up is answered once and then no longer followed (the record, once
    /// held, is kept current until it leaves, like any other): with a `join` of the node's record
    /// when it is in the mesh; with a `join` of the record `departed` returns followed by its
    /// `leave` when it has just left; with nothing when no such node is known. So a lookup costs
    /// the session nothing once answered, whatever it named.
    ///
    /// - Parameter departed: the record of a node that left a moment ago, or `nil`
    ///   (``DepartedNodes/record(_:at:)``).
    mutating func takeDeltas(
        departed: (String) -> NodeRecord? = { _ in nil }
    ) -> [(session: UInt64, delta: TopologyDelta, answers: ViewInterest?)] {
        let sessions = dirty
        dirty.removeAll()
        return sessions.compactMap { session in take(session, departed: departed) }
    }

    /// Ids `session` has looked up and not yet been answered about.
    func lookups(of session: UInt64) -> Set<String> { views[session]?.interest.ids ?? [] }

    /// Whether `session` holds a partial view.
    func isPartial(_ session: UInt64) -> Bool { views[session] != nil }

    /// True while some session has changes or answers that ``takeDeltas()`` has not taken yet.
    var hasPendingDeltas: Bool { !dirty.isEmpty }

    private mutating func take(
        _ session: UInt64, departed: (String) -> NodeRecord?
    ) -> (session: UInt64, delta: TopologyDelta, answers: ViewInterest?)? {
        guard var view = views[session], view.welcomed else { return nil }
        for node in matching(view.unmatched) where view.held.insert(node.id).inserted {
            holders[node.id, default: []].insert(session)
            view.pending.append(.join(node))
        }
        // Ids looked up are answered now, then no longer followed.
        let lookups = view.interest.ids
        // A node whose join and leave are in this very delta has told the session already.
        let told = lookups.isEmpty ? [] : Set(view.pending.compactMap { $0.op == .leave ? $0.id : nil })
        for id in lookups.sorted() where topology.nodes[id] == nil && !told.contains(id) {
            guard let record = departed(id) else { continue }
            view.pending.append(.join(record))
            view.pending.append(.leave(id))
        }
        view.interest.ids.removeAll()
        totalInterests -= lookups.count
        for id in lookups { Self.drop(session, from: id, in: &byID) }
        let delta = TopologyDelta(from: view.version, to: view.version + 1, changes: view.pending)
        let answers = view.owed
        view.version += 1
        view.pending.removeAll()
        view.unmatched = ViewInterest()
        view.owed = nil
        views[session] = view
        return (session, delta, answers)
    }

    private mutating func append(_ change: TopologyChange, to session: UInt64) {
        guard views[session]?.welcomed == true else { return }  // its welcome will hold it
        views[session]?.pending.append(change)
        dirty.insert(session)
    }

    private mutating func hold(_ id: String, in session: UInt64) {
        views[session]?.held.insert(id)
        holders[id, default: []].insert(session)
    }

    private mutating func follow(_ interest: ViewInterest, in session: UInt64) {
        for topic in interest.topics { byTopic[topic, default: []].insert(session) }
        for service in interest.services { byService[service, default: []].insert(session) }
        for name in interest.names { byName[name, default: []].insert(session) }
        for id in interest.ids { byID[id, default: []].insert(session) }
    }

    /// The records `interest` asks for, found through the indexes.
    private func matching(_ interest: ViewInterest) -> [NodeRecord] {
        var ids = interest.ids
        for topic in interest.topics { ids.formUnion(listeners[topic] ?? []) }
        for service in interest.services { ids.formUnion(providers[service] ?? []) }
        for name in interest.names { ids.formUnion(named[name] ?? []) }
        return ids.compactMap { topology.nodes[$0] }
    }

    /// Applies `change` to ``topology`` and keeps the indexes in step.
    private mutating func index(_ change: TopologyChange) {
        switch change.op {
        case .join:
            guard let node = change.node else { return }
            if topology.nodes[node.id] != nil { unindex(node.id) }
            named[node.name, default: []].insert(node.id)
            for topic in node.topics { listeners[topic, default: []].insert(node.id) }
            for service in node.services { providers[service, default: []].insert(node.id) }
        case .leave:
            if let id = change.id { unindex(id) }
        case .listen:
            if let id = change.id, let topic = change.topic, topology.nodes[id] != nil { listeners[topic, default: []].insert(id) }
        case .unlisten:
            if let id = change.id, let topic = change.topic { Self.remove(id, from: topic, in: &listeners) }
        case .serve:
            if let id = change.id, let service = change.service, topology.nodes[id] != nil { providers[service, default: []].insert(id) }
        case .unserve:
            if let id = change.id, let service = change.service { Self.remove(id, from: service, in: &providers) }
        case .publish:
            break
        }
        topology.apply(change)
    }

    private mutating func unindex(_ id: String) {
        guard let node = topology.nodes[id] else { return }
        Self.remove(id, from: node.name, in: &named)
        for topic in node.topics { Self.remove(id, from: topic, in: &listeners) }
        for service in node.services { Self.remove(id, from: service, in: &providers) }
    }

    private static func drop(_ session: UInt64, from key: String, in index: inout [String: Set<UInt64>]) {
        index[key]?.remove(session)
        if index[key]?.isEmpty == true { index[key] = nil }
    }

    private static func remove(_ id: String, from key: String, in index: inout [String: Set<String>]) {
        index[key]?.remove(id)
        if index[key]?.isEmpty == true { index[key] = nil }
    }

    /// Checks that `interest` is valid, added to `to` within ``ViewInterest/maximumCount``, and
    /// within what all sessions may follow together (``maximumInterests``).
    ///
    /// - Throws: ``Rejection``.
    func check(_ interest: ViewInterest, adding to: ViewInterest = ViewInterest()) throws(Rejection) {
        try Self.check(interest, adding: to)
        guard totalInterests + interest.subtracting(to).count <= maximumInterests else {
            throw .coordinatorFull(limit: maximumInterests)
        }
    }

    /// Checks that `interest` is valid and, added to `to`, within ``ViewInterest/maximumCount``.
    ///
    /// - Throws: ``Rejection``.
    static func check(_ interest: ViewInterest, adding to: ViewInterest = ViewInterest()) throws(Rejection) {
        do {
            try interest.validate()
        } catch {
            throw .invalid(error.description)
        }
        let total = to.count + interest.subtracting(to).count
        guard total <= ViewInterest.maximumCount else { throw .tooManyInterests(limit: ViewInterest.maximumCount) }
    }
}
