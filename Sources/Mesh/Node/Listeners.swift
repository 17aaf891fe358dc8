import Foundation
import Synchronization

/// A received message, decoded: for ``MeshNode/messages(_:as:)`` and typed handlers.
public struct MeshMessage<Value: Sendable>: Sendable {
    /// The topic it was sent on.
    public var topic: String
    /// The decoded value.
    public var value: Value
    /// The node that sent it.
    public var sender: MeshPeer
}

/// The listeners of one node, by topic, readable from the delivery task without an actor hop.
///
/// The delivery task takes one snapshot of the table per batch (a copy-on-write dictionary, so
/// the snapshot is free) and decodes each message at most once per listener type.
final class ListenerTable: Sendable {
    /// One listener: an id (to remove it) and the closures that decode and deliver.
    struct Entry: Sendable {
        let id: UInt64
        let type: ObjectIdentifier
        /// Decodes and delivers one message (the common case: the topic's only listener).
        let handle: @Sendable (InboundMessage, MeshPeer) async throws -> Void
        /// Decodes only, so several listeners of one type share one decode.
        let decode: @Sendable (InboundMessage) throws -> any Sendable
        /// Delivers a value from ``decode``.
        let deliver: @Sendable (InboundMessage, MeshPeer, any Sendable) async -> Void
        let finish: @Sendable () -> Void
    }

    private let table = Mutex<[String: [Entry]]>([:])

    var snapshot: [String: [Entry]] { table.withLock { $0 } }

    func add(_ entry: Entry, topic: String) {
        table.withLock { $0[topic, default: []].append(entry) }
    }

    /// Removes one listener and ends its stream.
    func remove(id: UInt64, topic: String) {
        let removed = table.withLock { table -> Entry? in
            guard let index = table[topic]?.firstIndex(where: { $0.id == id }) else { return nil }
            let entry = table[topic]!.remove(at: index)
            if table[topic]!.isEmpty { table[topic] = nil }
            return entry
        }
        removed?.finish()
    }

    /// Removes every listener of `topic` and ends their streams.
    func removeAll(topic: String) {
        let removed = table.withLock { $0.removeValue(forKey: topic) } ?? []
        for entry in removed { entry.finish() }
    }

    /// Removes everything and ends all streams (on close).
    func removeAll() {
        let removed = table.withLock { table -> [Entry] in
            defer { table.removeAll() }
            return table.values.flatMap { $0 }
        }
        for entry in removed { entry.finish() }
    }

    var topics: [String] { table.withLock { Array($0.keys) } }
}

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

/// Lock-protected counters shared by the actor, the loop thread and the delivery task.
final class StatisticsCounter: Sendable {
    private let value = Mutex(MeshStatistics())

    func update(_ body: (inout MeshStatistics) -> Void) {
        value.withLock { body(&$0) }
    }

    var current: MeshStatistics { value.withLock { $0 } }
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
