import Foundation
import Synchronization

/// The calls this node is waiting on, by call id: the caller's side of request and reply.
///
/// An entry exists while a call's request is out, holding the continuation to resume. Whatever
/// ends a call first (the reply or failure frame, read on the event loop's thread; the connection
/// closing; the deadline; the calling task's cancellation; the node closing) takes the entry, so
/// each call is resumed exactly once, and an answer that comes later finds nothing and is counted
/// as late, never handed to another call. Call ids are never reused for the life of the node.
///
/// Deadlines cost no timer per call: one loop timer is armed for the earliest deadline, and it
/// sweeps out what has expired and re-arms for the next. A call takes this lock twice (waiting,
/// answered), the answer once on the loop thread.
final class PendingCalls: Sendable {
    /// Who is being waited on, and by whom.
    struct Waiting {
        /// Unchecked (no allocation per call): every path that resumes it first takes the
        /// entry out of ``State/waiting`` under the lock, so it is resumed exactly once.
        let continuation: UnsafeContinuation<Data, any Error>
        /// The connection the request went out on; `nil` when this node serves the call itself.
        let connectionID: UInt64?
        let service: String
        let provider: MeshPeer
        let deadline: ContinuousClock.Instant
        let timeout: Duration
    }

    private struct State {
        var waiting: [UInt64: Waiting] = [:]
        var armed: (deadline: ContinuousClock.Instant, token: UInt64)?
        var nextToken: UInt64 = 1
        var closed = false
        var statistics = ServiceStatistics()
    }

    private let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)
    private let loop: EventLoop
    private let logger: MeshLogger

    /// - Parameter loop: the node's loop, where the deadline timer runs.
    init(logger: MeshLogger, loop: EventLoop) {
        self.logger = logger
        self.loop = loop
    }

    // MARK: The calling task

    /// A fresh call id.
    func makeID() -> UInt64 {
        nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Starts waiting for call `id`'s answer; the caller then sends the request, and checks for
    /// cancellation (a cancellation handler that ran before this found nothing to cancel).
    ///
    /// - Parameter retry: `true` when the same call waits again after its request could not be sent.
    /// - Returns: `false` when the node is closed; `waiting`'s continuation has then been resumed
    ///   with ``MeshError/closed``.
    func wait(_ id: UInt64, _ waiting: Waiting, retry: Bool = false) -> Bool {
        let (open, arm) = state.withLock { state -> (Bool, ContinuousClock.Instant?) in
            if state.closed { return (false, nil) }
            state.waiting[id] = waiting
            if !retry { state.statistics.callsStarted += 1 }
            if let armed = state.armed, armed.deadline <= waiting.deadline { return (true, nil) }
            return (true, waiting.deadline)
        }
        guard open else {
            waiting.continuation.resume(throwing: MeshError.closed)
            return false
        }
        if let arm { armTimer(at: arm) }
        return true
    }

    /// Takes back the continuation of a call whose request could not be sent (to retry).
    func withdraw(_ id: UInt64) -> Waiting? {
        state.withLock { $0.waiting.removeValue(forKey: id) }
    }

    /// Ends a call because its task was cancelled.
    func cancel(_ id: UInt64) {
        let waiting = state.withLock { state -> Waiting? in
            let waiting = state.waiting.removeValue(forKey: id)
            if waiting != nil { state.statistics.callsCancelled += 1 }
            return waiting
        }
        waiting?.continuation.resume(throwing: CancellationError())
    }

    // MARK: Answers (event loop thread, or a local handler)

    /// Resumes call `id` with the reply payload or the failure; counts an answer nobody waits for.
    ///
    /// - Parameter connectionID: the connection the answer came on (`nil` from this node's own
    ///   handler). An answer counts only on the connection its request went out on, so a peer
    ///   cannot answer a call it was never sent.
    func answer(_ id: UInt64, _ answer: ServiceFrame.Answer, on connectionID: UInt64?, from peer: String) {
        let waiting = state.withLock { state -> Waiting? in
            guard let waiting = state.waiting[id], waiting.connectionID == connectionID else {
                state.statistics.lateAnswers += 1
                return nil
            }
            state.waiting[id] = nil
            switch answer {
            case .reply: state.statistics.callsAnswered += 1
            case .failure: state.statistics.callsFailed += 1
            }
            return waiting
        }
        guard let waiting else {
            logger.debug("an answer to call \(id) from \(peer) matches no call waiting on that connection (it ended); dropped")
            return
        }
        switch answer {
        case .reply(_, let payload):
            waiting.continuation.resume(returning: payload)
        case .failure(let code, let description):
            waiting.continuation.resume(
                throwing: MeshError.service(
                    ServiceError(code: code, description: description, service: waiting.service, provider: waiting.provider)))
        }
    }

    /// Fails every call waiting on `connectionID`: the provider cannot answer any more.
    func connectionClosed(_ connectionID: UInt64, reason: String) {
        let failed = state.withLock { state -> [Waiting] in
            let failed = state.waiting.filter { $0.value.connectionID == connectionID }
            for id in failed.keys { state.waiting[id] = nil }
            state.statistics.callsFailed += failed.count
            return Array(failed.values)
        }
        for waiting in failed {
            waiting.continuation.resume(
                throwing: MeshError.service(
                    .providerLost(service: waiting.service, provider: waiting.provider, reason: reason)))
        }
    }

    /// The latest deadline of the calls waiting on `connectionID`; `nil` when none waits.
    func latestDeadline(on connectionID: UInt64) -> ContinuousClock.Instant? {
        state.withLock { state in state.waiting.values.filter { $0.connectionID == connectionID }.map(\.deadline).max() }
    }

    /// Ends every call with ``MeshError/closed`` and refuses new ones.
    func close() {
        let failed = state.withLock { state -> [Waiting] in
            state.closed = true
            defer { state.waiting = [:] }
            return Array(state.waiting.values)
        }
        for waiting in failed { waiting.continuation.resume(throwing: MeshError.closed) }
    }

    // MARK: Deadlines

    private func armTimer(at deadline: ContinuousClock.Instant) {
        let token = state.withLock { state -> UInt64? in
            if let armed = state.armed, armed.deadline <= deadline { return nil }  // another thread armed sooner
            state.nextToken += 1
            state.armed = (deadline, state.nextToken)
            return state.nextToken
        }
        if let token { loop.schedule(at: deadline) { [self] in sweep(token) } }
    }

    /// Expires the calls past their deadline and arms the timer for the next one.
    private func sweep(_ token: UInt64) {
        loop.preconditionInEventLoop()
        let now = ContinuousClock.now
        let (expired, next) = state.withLock { state -> ([Waiting], ContinuousClock.Instant?) in
            guard state.armed?.token == token else { return ([], nil) }  // superseded by an earlier deadline
            state.armed = nil
            var expired: [Waiting] = []
            var next: ContinuousClock.Instant?
            for (id, waiting) in state.waiting {
                if waiting.deadline <= now {
                    expired.append(waiting)
                    state.waiting[id] = nil
                } else if next.map({ waiting.deadline < $0 }) ?? true {
                    next = waiting.deadline
                }
            }
            state.statistics.callsTimedOut += expired.count
            return (expired, next)
        }
        for waiting in expired {
            waiting.continuation.resume(
                throwing: MeshError.timedOut(
                    waitingFor: "a reply from service \"\(waiting.service)\" at \(waiting.provider)",
                    seconds: seconds(waiting.timeout)))
        }
        if let next { armTimer(at: next) }
    }

    // MARK: Reading

    /// Calls waiting for an answer, for tests and ``MeshNode/serviceStatistics``.
    var count: Int { state.withLock { $0.waiting.count } }

    var statistics: ServiceStatistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.callsInProgress = state.waiting.count
            return statistics
        }
    }
}

/// Counters of a node's service calls, made and served. Read them with ``MeshNode/serviceStatistics``.
public struct ServiceStatistics: Sendable, Equatable {
    /// Calls this node made.
    public var callsStarted = 0
    /// Calls answered with a reply.
    public var callsAnswered = 0
    /// Calls that ended with a failure from the provider, or with its connection lost.
    public var callsFailed = 0
    /// Calls that reached their timeout.
    public var callsTimedOut = 0
    /// Calls whose task was cancelled while waiting.
    public var callsCancelled = 0
    /// Calls waiting for an answer (0 once every call has returned or thrown).
    public var callsInProgress = 0
    /// Replies or failures that matched no waiting call (it had timed out or been cancelled, or
    /// the answer came on another connection than the request): dropped.
    public var lateAnswers = 0
    /// Requests this node's handlers answered (replies and failures sent).
    public var requestsServed = 0
    /// Requests whose handler threw, or that failed to decode or encode.
    public var requestsFailed = 0
    /// Requests waiting for a free handler slot.
    public var requestsWaiting = 0
    /// Requests refused at once with a "busy" failure: their caller, or all callers together,
    /// were at a limit of ``MeshNode/Configuration/serviceLimits``.
    public var requestsRefused = 0
    /// Handlers running now.
    public var handlersRunning = 0
    /// Answers that could not be written back (the caller's connection closed or stayed full).
    public var answersDropped = 0

    public init() {}
}
