/// The counters a node reports in its heartbeats: what `mesh status`, the web view and
/// `/metrics` show. They are part of the control protocol (PROTOCOL.md, `heartbeat`).

/// Counters a node keeps about its traffic. Read them with ``MeshNode/statistics``.
public struct MeshStatistics: Sendable, Codable, Equatable {
    /// Messages handed to a connection (one per receiver).
    public var messagesSent = 0
    /// Payload-carrying frame bytes handed to connections.
    public var bytesSent = 0
    /// Messages received from peers (and from this node itself).
    public var messagesReceived = 0
    /// Frame bytes received.
    public var bytesReceived = 0
    /// Messages not delivered: a receiver's queue stayed full past the deadline, or the
    /// receiver's connection failed with them still queued.
    public var messagesDropped = 0
    /// Messages no listener could decode into its type.
    public var decodeFailures = 0
    /// Messages sent on a topic nobody listens to.
    public var messagesUnrouted = 0
    /// Connections to peers opened again after a failure.
    public var reconnects = 0
    /// Times the coordinator was lost and found again.
    public var coordinatorReconnects = 0
    /// Messages and bytes handed to this node's listeners, by topic (`nil` before the first). At
    /// most ``TopicStatistics/maximumTopics`` topics are counted; the totals above count all.
    public var topics: [String: TopicStatistics]?

    public init() {}
}

/// A node's counters for one topic it listens to.
public struct TopicStatistics: Sendable, Codable, Equatable {
    /// Messages on this topic taken from the inbox for this node's listeners.
    public var messagesReceived = 0
    /// Their payload bytes.
    public var bytesReceived = 0

    public init(messagesReceived: Int = 0, bytesReceived: Int = 0) {
        self.messagesReceived = messagesReceived
        self.bytesReceived = bytesReceived
    }

    /// Past this many topics a node counts no new ones (they still count in the totals), so a
    /// node's heartbeat stays small.
    public static let maximumTopics = 1024
}

extension TopicStatistics {
    mutating func add(_ other: TopicStatistics) {
        messagesReceived += other.messagesReceived
        bytesReceived += other.bytesReceived
    }
}

extension MeshStatistics {
    /// Adds per-topic counts, starting no new topic past ``TopicStatistics/maximumTopics``.
    mutating func addTopics(_ counts: [String: TopicStatistics]) {
        guard !counts.isEmpty else { return }
        var table = topics ?? [:]
        topics = nil  // keeps `table` uniquely referenced: no copy
        for (topic, count) in counts where table[topic] != nil || table.count < TopicStatistics.maximumTopics {
            table[topic, default: TopicStatistics()].add(count)
        }
        topics = table
    }
}
