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

    var dropped: Int { invalidTopics + topicsOverLimit }

    /// Checks `stats` as a heartbeat brought them.
    ///
    /// Per-topic keys must be valid topic names (the same rule as `listen`); at most
    /// ``TopicStatistics/maximumTopics`` are kept, the first in name order, so the same heartbeat
    /// always keeps the same ones. Negative counts are 0.
    init(_ stats: MeshStatistics) {
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
}
