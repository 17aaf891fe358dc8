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
    /// The frame's size, counted against the caller's and the node's byte limits until it ends.
    var bytes: Int
}

/// What a service handler produced, ready for the wire.
enum ServiceOutcome: Sendable {
    case reply(PayloadEncoding, Data)
    case failure(ServiceFailureCode, String)
}

/// Runs this node's service handlers within the limits of a ``ServiceAdmission``.
///
/// Requests come from the event loop's thread (or from a local call) and never wait there: each
/// is admitted (it then waits for a handler slot, callers taking turns) or refused at once with a
/// "busy" failure (code 5), so a caller always hears back. An admitted request's bytes count until
/// its answer has been written. Workers are plain tasks, at most ``limit`` of them, each taking
/// the next request when it finishes one, so a burst costs no task per request.
final class ServiceDispatcher: Sendable {
    typealias Handler = @Sendable (ServiceFrame.Request, MeshPeer) async -> ServiceOutcome
    typealias Limits = ServiceAdmission<InboundRequest>.Limits

    /// The caller key of this node's calls to itself (connection ids count up from 1).
    static let localCaller = UInt64.max

    private struct State {
        var handlers: [String: Handler] = [:]
        var admission: ServiceAdmission<InboundRequest>
        /// Workers started and not yet ended.
        var running = 0
        /// Workers inside a handler (the others are about to take the next request).
        var busy = 0
        var closed = false
        /// Closing: no new requests; the admitted ones and the running handlers finish.
        var draining = false
        var drainWaiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextDrainWaiter: UInt64 = 0
        var served = 0
        var failed = 0
        var dropped = 0
        var refused = 0
        var refusalLog = RateLimitedLog()
    }

    let limit: Int
    let limits: Limits
    let maximumMessageSize: Int
    private let logger: MeshLogger
    private let state: Mutex<State>

    init(limits: Limits, maximumMessageSize: Int, logger: MeshLogger) {
        let admission = ServiceAdmission<InboundRequest>(limits: limits)
        self.limits = admission.limits
        self.limit = admission.limits.running
        self.maximumMessageSize = maximumMessageSize
        self.logger = logger
        self.state = Mutex(State(admission: admission))
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

    /// Admits `request` and makes sure a worker will take it, or answers it "busy" at once.
    ///
    /// A new worker starts only when every worker is inside a handler (and fewer than ``limit``
    /// run): a burst of quick requests is then served by the one or two workers already going,
    /// with no task started per request, while slow handlers still run ``limit`` at a time.
    /// - Parameter connection: the connection it came on (its caller), `nil` for a local call.
    func submit(_ request: InboundRequest, from connection: Connection?) {
        let caller = connection?.id ?? Self.localCaller
        let (refusal, closing, start) = state.withLock { state -> (ServiceAdmission<InboundRequest>.Refusal?, Bool, Bool) in
            if state.closed || state.draining {
                state.refused += 1
                return (nil, true, false)
            }
            if let refusal = state.admission.admit(request, bytes: request.bytes, from: caller) {
                state.refused += 1
                return (refusal, false, false)
            }
            return (nil, false, Self.needsWorker(&state, limit: limit))
        }
        if let refusal { refuse(request, reason: refusal.description) }
        // A provider that is closing answers at once, so its callers need not wait for the close.
        if closing { refuse(request, reason: "busy: this provider is closing; call another or retry") }
        if start { Task { await self.work() } }
    }

    /// Answers a refused request with a "busy" failure, at once and without waiting for room.
    private func refuse(_ inbound: InboundRequest, reason: String) {
        let request = inbound.request
        // One caller can send refusable requests as fast as it can write: a few lines a second.
        let line = "refused call \(request.id) to \"\(request.service)\" from \(inbound.caller): \(reason)"
        let lines = state.withLock { $0.refusalLog.record("refused service requests", line, now: .now) }
        for text in lines { logger.warning(text) }
        switch inbound.replyPath {
        case .local(let calls):
            calls.answer(request.id, .failure(code: ServiceFailureCode.busy.rawValue, description: reason), on: nil, from: "this node")
        case .connection(let connection):
            let frame = ServiceFrame.failure(id: request.id, code: .busy, description: reason)
            if connection.send(frame) != .queued { state.withLock { $0.dropped += 1 } }
        }
    }

    /// Whether to start one more worker (counted as running when it returns `true`): some request
    /// may run, every running worker is busy in a handler, and the limit allows one more.
    private static func needsWorker(_ state: inout State, limit: Int) -> Bool {
        guard state.running == state.busy, state.running < limit, state.admission.hasRunnable else { return false }
        state.running += 1
        return true
    }

    /// One worker: takes admitted requests one at a time until none may run, then ends. A request
    /// that could not run yet (its caller at its running limit) is taken by the worker that
    /// finishes one of that caller's requests.
    private func work() async {
        while true {
            let (next, spawn, drained) = state.withLock {
                state -> (ServiceAdmission<InboundRequest>.Ticket?, Bool, [CheckedContinuation<Bool, Never>]) in
                guard !state.closed, let ticket = state.admission.next() else {
                    state.running -= 1
                    guard state.running == 0, !state.drainWaiters.isEmpty else { return (nil, false, []) }
                    defer { state.drainWaiters = [:] }
                    return (nil, false, Array(state.drainWaiters.values))
                }
                state.busy += 1
                return (ticket, Self.needsWorker(&state, limit: limit), [])
            }
            guard let next else {
                for waiter in drained { waiter.resume(returning: true) }
                return
            }
            if spawn { Task { await self.work() } }
            let (caller, bytes) = (next.caller, next.bytes)
            await serve(next.item)
            state.withLock { state in
                state.admission.finished(caller: caller, bytes: bytes)
                state.busy -= 1
            }
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

    /// Forgets the requests still waiting from a caller whose connection closed: their answers
    /// could not be written, so their handlers need not run (they count as dropped answers).
    func callerLeft(_ connection: Connection) {
        state.withLock { state in
            state.dropped += state.admission.dropWaiting(of: connection.id)
        }
    }

    /// Stops taking requests and waits until the admitted ones are served and every running
    /// handler has returned (their answers queued on the callers' connections), or `deadline`.
    ///
    /// - Returns: the requests not finished by then: in a handler, or still waiting.
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
        return state.withLock { $0.busy + $0.admission.waiting }
    }

    /// Stops taking requests and forgets the waiting ones (their callers' connections are closing).
    func close() {
        state.withLock { state in
            state.closed = true
            state.handlers.removeAll()
            state.admission.dropWaiting()
        }
    }

    /// Adds the serving side's counters to `statistics`.
    func report(into statistics: inout ServiceStatistics) {
        state.withLock { state in
            statistics.requestsServed = state.served
            statistics.requestsFailed = state.failed
            statistics.answersDropped = state.dropped
            statistics.requestsWaiting = state.admission.waiting
            statistics.handlersRunning = state.busy
            statistics.requestsRefused = state.refused
        }
    }
}
