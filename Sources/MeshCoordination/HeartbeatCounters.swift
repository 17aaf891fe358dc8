import Mesh

/// The counters a node's heartbeat brings, checked before the coordinator keeps them: what the
/// web view, `/metrics` and `mesh status` show comes from here, so nothing a node says may
/// reach them unchecked.
///
/// A pure value: a heartbeat's `stats` in, the part worth keeping and what was dropped out.
struct HeartbeatCounters: Sendable {
    /// The counters as kept.
    var statistics: MeshStatistics
    /// Per-topic keys dropped because the mesh would refuse them as topic names: how many, and
    /// the first one (cut to 80 characters) with the reason.
    var invalidTopics = 0
    var firstInvalid: (topic: String, reason: String)?
    /// Valid per-topic keys dropped past ``TopicStatistics/maximumTopics``.
    var topicsOverLimit = 0
    /// Counters that were negative (a node counts from 0 up), set to 0.
    var negativeCounters = 0
    /// Counters below what the same node (the same process: a node id is new per process)
    /// reported before, kept at that earlier value so no total ever goes backwards.
    var backwardCounters = 0

    var dropped: Int { invalidTopics + topicsOverLimit }

    /// Checks `stats` as a heartbeat brought them.
    ///
    /// Per-topic keys must be valid topic names (the same rule as `listen`); at most
    /// ``TopicStatistics/maximumTopics`` are kept, the first in name order, so the same heartbeat
    /// always keeps the same ones. Negative counts are 0.
    /// - Parameters:
    ///   - stats: the counters as the heartbeat (or `register`) brought them.
    ///   - previous: what the coordinator holds for the same node id, from this session or an
    ///     earlier one; each kept counter is at least its value there.
    init(_ stats: MeshStatistics, previous: MeshStatistics? = nil) {
        statistics = stats
        let totals: [WritableKeyPath<MeshStatistics, Int>] = [
            \.messagesSent, \.bytesSent, \.messagesReceived, \.bytesReceived, \.messagesDropped, \.decodeFailures,
            \.messagesUnrouted, \.reconnects, \.coordinatorReconnects,
        ]
        for path in totals {
            if statistics[keyPath: path] < 0 {
                statistics[keyPath: path] = 0
                negativeCounters += 1
            }
        }
        defer { if let previous { keepMonotonic(over: previous) } }
        guard let topics = stats.topics else { return }
        var kept: [String: TopicStatistics] = [:]
        var valid: [(String, TopicStatistics)] = []
        valid.reserveCapacity(min(topics.count, TopicStatistics.maximumTopics + 1))
        for (topic, counts) in topics {
            do {
                try validateName(topic, kind: "topic")
            } catch {
                invalidTopics += 1
                if firstInvalid == nil || topic < firstInvalid!.topic {
                    let reason: String
                    if case .invalidName(_, let why) = error { reason = why } else { reason = error.description }
                    firstInvalid = (String(topic.prefix(80)), reason)
                }
                continue
            }
            valid.append((topic, counts))
        }
        if valid.count > TopicStatistics.maximumTopics {
            valid.sort { $0.0 < $1.0 }
            topicsOverLimit = valid.count - TopicStatistics.maximumTopics
            valid.removeLast(topicsOverLimit)
        }
        for (topic, var counts) in valid {
            if counts.messagesReceived < 0 || counts.bytesReceived < 0 {
                negativeCounters += 1
                counts.messagesReceived = max(0, counts.messagesReceived)
                counts.bytesReceived = max(0, counts.bytesReceived)
            }
            kept[topic] = counts
        }
        statistics.topics = kept
    }

    /// Raises every counter below its value in `previous` back to it (per topic too; a topic
    /// `previous` has and these counters lack is kept, within the topic limit).
    private mutating func keepMonotonic(over previous: MeshStatistics) {
        let totals: [WritableKeyPath<MeshStatistics, Int>] = [
            \.messagesSent, \.bytesSent, \.messagesReceived, \.bytesReceived, \.messagesDropped, \.decodeFailures,
            \.messagesUnrouted, \.reconnects, \.coordinatorReconnects,
        ]
        for path in totals where statistics[keyPath: path] < previous[keyPath: path] {
            statistics[keyPath: path] = previous[keyPath: path]
            backwardCounters += 1
        }
        guard let before = previous.topics, !before.isEmpty else { return }
        var topics = statistics.topics ?? [:]
        for (topic, old) in before {
            if var now = topics[topic] {
                if now.messagesReceived < old.messagesReceived || now.bytesReceived < old.bytesReceived {
                    backwardCounters += 1
                    now.messagesReceived = max(now.messagesReceived, old.messagesReceived)
                    now.bytesReceived = max(now.bytesReceived, old.bytesReceived)
                    topics[topic] = now
                }
            } else if topics.count < TopicStatistics.maximumTopics {
                topics[topic] = old
            }
        }
        statistics.topics = topics
    }
}

/// The last counters of nodes whose sessions ended, by node id, so a node that registers again
/// (the same process after a lost connection: node ids are new per process) continues its
/// totals instead of starting from 0, which Prometheus would read as a counter reset.
///
/// Bounded: at most ``capacity`` nodes and ``topicCapacity`` per-topic entries in all; the
/// oldest go first. A pure value.
struct CounterMemory: Sendable {
    let capacity: Int
    let topicCapacity: Int
    private var entries: [String: MeshStatistics] = [:]
    private var order: [String] = []
    private var topicEntries = 0

    init(capacity: Int = 1024, topicCapacity: Int = 65_536) {
        self.capacity = capacity
        self.topicCapacity = topicCapacity
    }

    var count: Int { entries.count }

    /// Keeps `stats` as the last counters of node `id` (replacing older ones of it).
    mutating func remember(_ stats: MeshStatistics, for id: String) {
        _ = take(id)
        let topics = stats.topics?.count ?? 0
        guard capacity > 0, topics <= topicCapacity else { return }
        while !order.isEmpty, order.count >= capacity || topicEntries + topics > topicCapacity {
            let oldest = order.removeFirst()
            topicEntries -= entries.removeValue(forKey: oldest)?.topics?.count ?? 0
        }
        entries[id] = stats
        order.append(id)
        topicEntries += topics
    }

    /// The counters kept for node `id`, forgotten here once taken.
    mutating func take(_ id: String) -> MeshStatistics? {
        guard let stats = entries.removeValue(forKey: id) else { return nil }
        if let index = order.firstIndex(of: id) { order.remove(at: index) }
        topicEntries -= stats.topics?.count ?? 0
        return stats
    }
}
