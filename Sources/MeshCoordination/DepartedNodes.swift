import Mesh

/// The nodes that left the mesh a moment ago, so a partial view that looks one of them up
/// (a peer's hello came after the node had gone) is answered with its record and its leaving.
///
/// A sender that joins, sends and leaves within milliseconds (`mesh topic send`) is gone before a
/// partial-view receiver asks about its hello; the receiver accepts such a node under the "left
/// less than 5 s ago" rule of PROTOCOL.md §8.2, but only if it learns the record. This keeps each
/// record for ``memory`` (twice the receiver's 5 s patience, so a lookup held up by a busy
/// receiver still finds it), and at most ``capacity`` records: past it, the oldest go first, and
/// ``forgottenEarly`` counts them. A record is kept without its topics and services (a node
/// that has left listens to nothing and the hello check does not read them), so each costs a few
/// hundred bytes whatever the node listened to, and a join/leave flood costs at most
/// ``capacity`` of them.
///
/// A value with time injected: no clocks, no sockets.
struct DepartedNodes: Sendable {
    /// How long a departed node is remembered.
    static let memory = Duration.seconds(10)
    /// The most departed nodes remembered at once.
    let capacity: Int
    /// Records dropped before ``memory`` had passed, to make room (a join/leave flood).
    private(set) var forgottenEarly = 0

    private var records: [String: (record: NodeRecord, at: ContinuousClock.Instant)] = [:]
    /// Ids in the order they left, oldest first, from ``head`` on; an entry whose time no longer
    /// matches ``records`` is stale (the node joined again, or left again later).
    private var order: [(id: String, at: ContinuousClock.Instant)] = []
    private var head = 0

    /// - Parameter capacity: the most records kept at once.
    init(capacity: Int = 4_096) {
        self.capacity = max(1, capacity)
    }

    /// How many departed nodes are remembered now.
    var count: Int { records.count }
    /// Entries in the departure order, stale ones included (bounded by about twice ``count``).
    var orderEntries: Int { order.count - head }

    /// Remembers that `node` left at `now`.
    ///
    /// - Returns: how many records were dropped to make room (0 unless at ``capacity``).
    @discardableResult
    mutating func remember(_ node: NodeRecord, at now: ContinuousClock.Instant) -> Int {
        expire(now: now)
        var kept = node
        kept.topics = []
        kept.services = []
        kept.sends = []
        kept.types = [:]
        records[node.id] = (kept, now)
        order.append((node.id, now))
        var dropped = 0
        while records.count > capacity, let oldest = popOldest() {
            records[oldest] = nil
            dropped += 1
        }
        forgottenEarly += dropped
        compact()
        return dropped
    }

    /// Forgets `id`: the node is in the mesh again (a re-registration keeps its id).
    mutating func forget(_ id: String) {
        records[id] = nil
    }

    /// The record of `id` if it left less than ``memory`` before `now`.
    func record(_ id: String, at now: ContinuousClock.Instant) -> NodeRecord? {
        guard let entry = records[id], now - entry.at < Self.memory else { return nil }
        return entry.record
    }

    /// Drops every record older than ``memory``.
    mutating func expire(now: ContinuousClock.Instant) {
        while head < order.count {
            let entry = order[head]
            if let current = records[entry.id], current.at == entry.at {
                guard now - entry.at >= Self.memory else { break }
                records[entry.id] = nil
            }
            head += 1
        }
        compact()
    }

    /// The id of the oldest live entry, taken off the order.
    private mutating func popOldest() -> String? {
        while head < order.count {
            let entry = order[head]
            head += 1
            if let current = records[entry.id], current.at == entry.at { return entry.id }
        }
        return nil
    }

    /// Reclaims the consumed front and stale entries, so the order stays within about twice the
    /// records (a node joining and leaving again and again leaves stale entries behind).
    private mutating func compact() {
        guard (head > 0 && head * 2 >= order.count) || order.count - head > 2 * records.count + 16 else { return }
        order = order[head...].filter { entry in records[entry.id].map { $0.at == entry.at } ?? false }
        head = 0
    }
}

extension MeshCoordinator {
    /// Remembers a node that has just left, for partial views that look it up; says so when a
    /// join/leave flood pushes out records younger than ``DepartedNodes/memory``.
    func rememberDeparted(_ node: NodeRecord) {
        let dropped = departed.remember(node, at: .now)
        guard dropped > 0 else { return }
        refusals.log(
            "departed nodes forgotten early", level: .warning, to: logger,
            "more than \(departed.capacity) nodes left within \(DepartedNodes.memory.components.seconds) s; forgot the oldest"
                + " (\(departed.forgottenEarly) so far): a partial-view node that hears from one of them now refuses its hello")
    }
}
