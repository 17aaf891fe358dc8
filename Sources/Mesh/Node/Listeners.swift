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
        let handle: nonisolated(nonsending) @Sendable (InboundMessage, MeshPeer) async throws -> Void
        /// Decodes only, so several listeners of one type share one decode.
        let decode: @Sendable (InboundMessage) throws -> any Sendable
        /// Delivers a value from ``decode``.
        let deliver: nonisolated(nonsending) @Sendable (InboundMessage, MeshPeer, any Sendable) async -> Void
        let finish: @Sendable () -> Void
        /// A batch listener's call (``MeshNode/listenBatches(_:as:_:)``): the messages of one run on
        /// its topic in one read, and where to report each that does not decode. `nil` for a
        /// listener of single messages; when set, the delivery task calls this instead of ``handle``.
        var handleBatch: BatchHandler? = nil

        typealias BatchHandler = nonisolated(nonsending) @Sendable (
            _ messages: ArraySlice<InboundMessage>, _ sender: MeshPeer, _ failed: (InboundMessage, any Error) -> Void
        ) async -> Void
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

/// Lock-protected counters shared by the actor, the loop thread and the delivery task.
final class StatisticsCounter: Sendable {
    private let value = Mutex(MeshStatistics())

    func update(_ body: (inout MeshStatistics) -> Void) {
        value.withLock { body(&$0) }
    }

    var current: MeshStatistics { value.withLock { $0 } }
}
