import Foundation
import Synchronization

/// A request that arrived for one of this node's services.
struct InboundRequest: Sendable {
    /// Where the answer goes: back on the connection the request came in on, or, for a call this
    /// node made to itself, straight to its own pending call.
    enum ReplyPath: Sendable {
        case connection(Connection)
        case local(PendingCalls)
    }

    var request: ServiceFrame.Request
    var caller: MeshPeer
    var replyPath: ReplyPath
    /// The frame's size, counted against the waiting-requests limit.
    var bytes: Int
}

/// What a service handler produced, ready for the wire.
enum ServiceOutcome: Sendable {
    case reply(PayloadEncoding, Data)
    case failure(ServiceFailureCode, String)
}

/// Runs this node's service handlers: at most ``limit`` at once, the rest waiting in arrival order.
///
/// Requests come from the event loop's thread (or from a local call) and never wait there: a
/// request that finds every handler slot busy joins the queue. Workers are plain tasks, at most
/// ``limit`` of them, each taking the next request when it finishes one, so a burst costs no task
/// per request. The queue is bounded in bytes: past ``highWater`` the connection that pushed stops
/// being read, so TCP makes the callers wait in turn; reading resumes once it is down to half.
final class ServiceDispatcher: Sendable {
    typealias Handler = @Sendable (ServiceFrame.Request, MeshPeer) async -> ServiceOutcome

    private struct State {
        var handlers: [String: Handler] = [:]
        var queue: [InboundRequest] = []
        var head = 0
        var queuedBytes = 0
        /// Workers started and not yet ended.
        var running = 0
        /// Workers inside a handler (the others are about to take the next request).
        var busy = 0
        var paused: [Connection] = []
        var closed = false
        /// Closing: no new requests; the queued ones and the running handlers finish.
        var draining = false
        var drainWaiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextDrainWaiter: UInt64 = 0
        var served = 0
        var failed = 0
        var dropped = 0
    }

    let limit: Int
    let highWater: Int
    let maximumMessageSize: Int
    private let logger: MeshLogger
    private let state = Mutex(State())

    init(limit: Int, highWater: Int, maximumMessageSize: Int, logger: MeshLogger) {
        self.limit = max(1, limit)
        self.highWater = highWater
        self.maximumMessageSize = maximumMessageSize
        self.logger = logger
    }

    // MARK: Handlers

    /// Adds a handler; `false` when the service already has one.
    func add(_ service: String, _ handler: @escaping Handler) -> Bool {
        state.withLock { state in
            guard state.handlers[service] == nil else { return false }
            state.handlers[service] = handler
            return true
        }
    }

    /// Removes a handler; requests for the service that arrive later are answered "not served".
    @discardableResult
    func remove(_ service: String) -> Bool {
        state.withLock { $0.handlers.removeValue(forKey: service) != nil }
    }

    func provides(_ service: String) -> Bool { state.withLock { $0.handlers[service] != nil } }

    // MARK: Requests

    /// Queues `request` and makes sure a worker will take it.
    ///
    /// A new worker starts only when every worker is inside a handler (and fewer than ``limit``
    /// run): a burst of quick requests is then served by the one or two workers already going,
    /// with no task started per request, while slow handlers still run ``limit`` at a time.
    /// - Parameter connection: the connection it came on, paused when the queue is over its limit.
    func submit(_ request: InboundRequest, from connection: Connection?) {
        let (start, pause) = state.withLock { state -> (Bool, Connection?) in
            if state.closed || state.draining { return (false, nil) }
            state.queue.append(request)
            state.queuedBytes += request.bytes
            var pause: Connection?
            if let connection, state.queuedBytes > highWater, !state.paused.contains(where: { $0 === connection }) {
                state.paused.append(connection)
                pause = connection
            }
            return (Self.needsWorker(&state, limit: limit), pause)
        }
        // On the loop thread (the connection's delegate) the pause is in force before this
        // returns, so a resume a worker queues meanwhile cannot overtake it.
        pause?.setReadingPaused(true)
        if start { Task { await self.work() } }
    }

    /// Whether to start one more worker (counted as running when it returns `true`): some request
    /// waits, every running worker is busy in a handler, and the limit allows one more.
    private static func needsWorker(_ state: inout State, limit: Int) -> Bool {
        guard state.head < state.queue.count, state.running == state.busy, state.running < limit else { return false }
        state.running += 1
        return true
    }

    /// One worker: takes queued requests one at a time until none is left, then ends.
    private func work() async {
        while true {
            let (next, spawn, resume, drained) = state.withLock {
                state -> (InboundRequest?, Bool, [Connection], [CheckedContinuation<Bool, Never>]) in
                guard state.head < state.queue.count, !state.closed else {
                    state.running -= 1
                    guard state.running == 0, !state.drainWaiters.isEmpty else { return (nil, false, [], []) }
                    defer { state.drainWaiters = [:] }
                    return (nil, false, [], Array(state.drainWaiters.values))
                }
                let request = state.queue[state.head]
                state.head += 1
                state.queuedBytes -= request.bytes
                state.busy += 1
                if state.head == state.queue.count || state.head > 1024 {
                    state.queue.removeFirst(state.head)
                    state.head = 0
                }
                var resume: [Connection] = []
                if !state.paused.isEmpty, state.queuedBytes <= highWater / 2 {
                    swap(&resume, &state.paused)
                }
                return (request, Self.needsWorker(&state, limit: limit), resume, [])
            }
            for connection in resume { connection.setReadingPaused(false) }
            guard let next else {
                for waiter in drained { waiter.resume(returning: true) }
                return
            }
            if spawn { Task { await self.work() } }
            await serve(next)
            state.withLock { $0.busy -= 1 }
        }
    }

    private func serve(_ inbound: InboundRequest) async {
        let request = inbound.request
        let handler = state.withLock { $0.handlers[request.service] }
        var outcome: ServiceOutcome
        if let handler {
            outcome = await handler(request, inbound.caller)
        } else {
            outcome = .failure(.notServed, "this node does not provide \"\(request.service)\"")
        }
        if case .reply(_, let payload) = outcome, payload.count > maximumMessageSize {
            outcome = .failure(
                .responseUnusable,
                "the response of \(payload.count) bytes exceeds the message size limit of \(maximumMessageSize) bytes")
        }
        if case .failure(let code, let reason) = outcome, code != .notServed {
            logger.debug("call \(request.id) to \"\(request.service)\" from \(inbound.caller) failed: \(reason)")
        }
        state.withLock { state in
            state.served += 1
            if case .failure = outcome { state.failed += 1 }
        }
        switch inbound.replyPath {
        case .local(let calls):
            switch outcome {
            case .reply(let encoding, let payload):
                calls.answer(request.id, .reply(encoding, payload), on: nil, from: "this node")
            case .failure(let code, let reason):
                calls.answer(request.id, .failure(code: code.rawValue, description: reason), on: nil, from: "this node")
            }
        case .connection(let connection):
            let frame: [UInt8]
            switch outcome {
            case .reply(let encoding, let payload): frame = ServiceFrame.reply(id: request.id, encoding: encoding, payload: payload)
            case .failure(let code, let reason): frame = ServiceFrame.failure(id: request.id, code: code, description: reason)
            }
            await send(frame, on: connection, for: inbound)
        }
    }

    /// Writes an answer back; waits up to 5 s for room when the caller's queue is full.
    private func send(_ frame: [UInt8], on connection: Connection, for inbound: InboundRequest) async {
        var result = connection.send(frame)
        if result == .full, await connection.waitForSpace(until: .now + .seconds(5)) {
            result = connection.send(frame)
        }
        guard result != .queued else { return }
        state.withLock { $0.dropped += 1 }
        let what = "could not answer call \(inbound.request.id) to \"\(inbound.request.service)\" from \(inbound.caller)"
        if result == .closed {
            logger.debug("\(what): its connection closed")  // the caller left or gave up; it knows
        } else {
            logger.warning("\(what): its connection stayed full for 5 s")
        }
    }

    /// Stops taking requests and waits until the queued ones are served and every running
    /// handler has returned (their answers queued on the callers' connections), or `deadline`.
    ///
    /// - Returns: the requests not finished by then: in a handler, or still queued.
    func drain(until deadline: ContinuousClock.Instant, loop: EventLoop) async -> Int {
        let finished = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let waiter = state.withLock { state -> UInt64? in
                state.draining = true
                if state.running == 0 { return nil }
                state.nextDrainWaiter += 1
                state.drainWaiters[state.nextDrainWaiter] = continuation
                return state.nextDrainWaiter
            }
            guard let waiter else { return continuation.resume(returning: true) }
            loop.schedule(at: deadline) { [self] in
                state.withLock { $0.drainWaiters.removeValue(forKey: waiter) }?.resume(returning: false)
            }
        }
        if finished { return 0 }
        return state.withLock { $0.busy + $0.queue.count - $0.head }
    }

    /// Stops taking requests and forgets the queued ones (their callers' connections are closing).
    func close() {
        let paused = state.withLock { state -> [Connection] in
            state.closed = true
            state.handlers.removeAll()
            state.queue.removeAll()
            state.head = 0
            state.queuedBytes = 0
            defer { state.paused = [] }
            return state.paused
        }
        for connection in paused { connection.setReadingPaused(false) }
    }

    /// Adds the serving side's counters to `statistics`.
    func report(into statistics: inout ServiceStatistics) {
        state.withLock { state in
            statistics.requestsServed = state.served
            statistics.requestsFailed = state.failed
            statistics.answersDropped = state.dropped
            statistics.requestsWaiting = state.queue.count - state.head
            statistics.handlersRunning = state.busy
        }
    }
}
