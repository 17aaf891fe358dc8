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
        /// Messages taken in, and messages offered after ``close()`` and refused.
        var pushedMessages = 0
        var refusedMessages = 0
        /// The delivery task has ended (``deliveryEnded()``), and who waits for that.
        var deliveryEnded = false
        var drainWaiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextDrainWaiter: UInt64 = 0
    }

    let highWater: Int
    private let state = Mutex(State())
    /// Messages whose listeners have returned (or that had none): counted by the delivery task.
    private let delivered = Atomic<Int>(0)
    /// Set by ``abandon()``: the delivery task stops before its next message.
    private let abandoned = Atomic<Bool>(false)

    init(highWater: Int) {
        self.highWater = highWater
    }

    /// Adds a batch; pauses `connection` when the backlog is over the limit.
    ///
    /// - Parameter connection: the connection the batch was read from, or `nil` for this node's
    ///   own messages. Called on the loop thread (by the connection's delegate), where the pause
    ///   takes effect before this returns: a resume asked for after it, from any thread, is queued
    ///   to the loop and so cannot overtake it.
    /// - Returns: `false` when the inbox is closed and refused the batch (counted).
    @discardableResult
    func push(_ batch: InboundBatch, bytes: Int, from connection: Connection?) -> Bool {
        let (accepted, wake, pause) = state.withLock {
            state -> (Bool, (CheckedContinuation<[InboundBatch], Never>, [InboundBatch])?, Connection?) in
            guard !state.closed else {
                state.refusedMessages += batch.messages.count
                return (false, nil, nil)
            }
            state.pushedMessages += batch.messages.count
            state.queue.append(batch)
            state.queuedBytes += bytes
            var pause: Connection?
            if let connection, state.queuedBytes + state.inProgressBytes > highWater {
                state.paused.append(connection)
                pause = connection
            }
            guard let waiter = state.waiter else { return (true, nil, pause) }
            state.waiter = nil
            return (true, (waiter, take(&state)), pause)
        }
        pause?.setReadingPaused(true)
        if let (waiter, items) = wake { waiter.resume(returning: items) }
        return accepted
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

    /// Refuses later pushes (counting them); the delivery task goes on with what is queued and
    /// gets `[]` once it is all delivered. Connections paused by the backlog resume: what they
    /// bring now is refused, and a closing sender's confirmation (PROTOCOL §8.3) is answered.
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

    // MARK: Draining (closing the node)

    /// True once ``abandon()`` was called: the delivery task checks it before each message.
    var isAbandoned: Bool { abandoned.load(ordering: .relaxed) }

    /// The delivery task handled one more message (its listeners returned, or it had none).
    func countDelivered() { delivered.add(1, ordering: .relaxed) }

    /// The delivery task has ended: wakes ``waitUntilDelivered(deadline:loop:)``.
    func deliveryEnded() {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            state.deliveryEnded = true
            defer { state.drainWaiters = [:] }
            return Array(state.drainWaiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// After ``close()``: waits until the delivery task has handed every queued message to its
    /// listeners and ended, or `deadline` passes.
    ///
    /// - Returns: `true` when delivery ended in time.
    func waitUntilDelivered(deadline: ContinuousClock.Instant, loop: EventLoop) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let waiter = state.withLock { state -> UInt64? in
                if state.deliveryEnded { return nil }
                state.nextDrainWaiter += 1
                state.drainWaiters[state.nextDrainWaiter] = continuation
                return state.nextDrainWaiter
            }
            guard let waiter else { return continuation.resume(returning: true) }
            loop.schedule(at: deadline) { [self] in
                state.withLock { $0.drainWaiters.removeValue(forKey: waiter) }?.resume(returning: false)
            }
        }
    }

    /// Gives up on what is not delivered yet: drops the queue and stops the delivery task before
    /// its next message.
    ///
    /// - Returns: the messages taken in that no listener has finished with: still queued, or in
    ///   a listener that has not returned.
    func abandon() -> Int {
        abandoned.store(true, ordering: .relaxed)
        return state.withLock { state in
            state.queue.removeAll()
            state.queuedBytes = 0
            return state.pushedMessages - delivered.load(ordering: .relaxed)
        }
    }

    /// Messages offered after ``close()`` and refused.
    var refusedCount: Int { state.withLock { $0.refusedMessages } }

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
