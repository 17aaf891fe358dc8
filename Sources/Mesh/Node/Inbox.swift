import Foundation
import Synchronization

/// A message as it arrived at this node, before any listener decodes it.
struct InboundMessage: Sendable {
    var topic: String
    var encoding: PayloadEncoding
    var payload: Data
}

/// Messages read together from one sender.
struct InboundBatch: Sendable {
    var sender: MeshPeer
    var messages: [InboundMessage]
}

/// Who sent a message: the sending node's id and name.
public struct MeshPeer: Sendable, Hashable, CustomStringConvertible {
    public var id: String
    public var name: String

    public init(id: String, name: String) {
        self.id = id
        self.name = name
    }

    public var description: String { "\(name) (\(id))" }
}

/// Arrived messages waiting for the node's delivery task, bounded in bytes.
///
/// Connections push whole read batches from the loop thread. Past ``highWater`` bytes (counting
/// the batch the delivery task is still working on) the pushing connection stops reading, so
/// TCP pushes back on its sender; once the backlog falls to half, reading resumes. Nothing is
/// dropped here. The lock guards the queue only: pausing and resuming connections and waking
/// the delivery task happen after it is released.
final class Inbox: Sendable {
    private struct State {
        var queue: [InboundBatch] = []
        var queuedBytes = 0
        var inProgressBytes = 0
        var waiter: CheckedContinuation<[InboundBatch], Never>?
        var paused: [Connection] = []
        var closed = false
    }

    let highWater: Int
    private let state = Mutex(State())

    init(highWater: Int) {
        self.highWater = highWater
    }

    /// Adds a batch; pauses `connection` when the backlog is over the limit.
    ///
    /// - Parameter connection: the connection the batch was read from, or `nil` for this node's
    ///   own messages. Called on the loop thread (by the connection's delegate), where the pause
    ///   takes effect before this returns: a resume asked for after it, from any thread, is queued
    ///   to the loop and so cannot overtake it.
    func push(_ batch: InboundBatch, bytes: Int, from connection: Connection?) {
        let (wake, pause) = state.withLock {
            state -> ((CheckedContinuation<[InboundBatch], Never>, [InboundBatch])?, Connection?) in
            guard !state.closed else { return (nil, nil) }
            state.queue.append(batch)
            state.queuedBytes += bytes
            var pause: Connection?
            if let connection, state.queuedBytes + state.inProgressBytes > highWater {
                state.paused.append(connection)
                pause = connection
            }
            guard let waiter = state.waiter else { return (nil, pause) }
            state.waiter = nil
            return ((waiter, take(&state)), pause)
        }
        pause?.setReadingPaused(true)
        if let (waiter, items) = wake { waiter.resume(returning: items) }
    }

    /// Waits for messages and returns all that have gathered; `[]` once closed.
    ///
    /// Calling it again tells the inbox the previous batch is done.
    func next() async -> [InboundBatch] {
        if let ready = poll() { return ready }
        return await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [InboundBatch]? in
                if !state.queue.isEmpty { return take(&state) }
                if state.closed { return [] }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Like ``next()`` without waiting: the messages that have gathered, `[]` once closed, or
    /// `nil` when there are none yet.
    func poll() -> [InboundBatch]? {
        let (ready, resume) = state.withLock { state -> ([InboundBatch]?, [Connection]) in
            state.inProgressBytes = 0
            let resume = releasePaused(&state)
            if !state.queue.isEmpty { return (take(&state), resume) }
            return (state.closed ? [] : nil, resume)
        }
        for connection in resume { connection.setReadingPaused(false) }
        return ready
    }

    /// Wakes the delivery task with `[]` and ignores later pushes.
    func close() {
        let (waiter, paused) = state.withLock {
            state -> (CheckedContinuation<[InboundBatch], Never>?, [Connection]) in
            state.closed = true
            defer {
                state.waiter = nil
                state.paused = []
            }
            return (state.waiter, state.paused)
        }
        for connection in paused { connection.setReadingPaused(false) }
        waiter?.resume(returning: [])
    }

    /// True when the backlog is over the limit (a node's own messages to itself then drop).
    var isFull: Bool { state.withLock { $0.queuedBytes + $0.inProgressBytes > highWater } }

    private func take(_ state: inout State) -> [InboundBatch] {
        let items = state.queue
        state.queue.removeAll(keepingCapacity: true)
        state.inProgressBytes = state.queuedBytes
        state.queuedBytes = 0
        return items
    }

    private func releasePaused(_ state: inout State) -> [Connection] {
        guard !state.paused.isEmpty, state.queuedBytes <= highWater / 2 else { return [] }
        defer { state.paused = [] }
        return state.paused
    }
}
