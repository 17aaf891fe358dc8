/// Which service requests a provider takes, and in which order they run: a pure value.
///
/// Every request is admitted or refused the moment it arrives. An admitted request counts, with
/// its bytes, against its caller (the connection it came on) and against the node from then until
/// it ends (its answer was written or dropped): running requests count exactly like waiting ones,
/// so a caller cannot grow a provider by sending large requests to a slow handler. Past any of
/// the ``Limits`` the request is refused at once; the provider answers it "busy" and forgets it.
///
/// Admitted requests run at most ``Limits/running`` at once, and at most
/// ``Limits/runningPerCaller`` for one caller; callers with runnable requests take turns for each
/// free handler slot, so one caller with many slow requests cannot keep the slots from another.
///
/// No clock and no locks: the dispatcher holds it under its lock and performs what it decides.
struct ServiceAdmission<Item> {
    /// The bounds, each for running plus waiting requests unless it says otherwise.
    struct Limits: Sendable, Equatable {
        /// Handlers running at once, all callers together.
        var running: Int
        /// Handlers running at once for one caller.
        var runningPerCaller: Int
        /// Requests admitted from all callers together.
        var requests: Int
        /// Requests admitted from one caller.
        var requestsPerCaller: Int
        /// Bytes of the admitted requests of all callers together.
        var bytes: Int
        /// Bytes of the admitted requests of one caller.
        var bytesPerCaller: Int

        /// Each limit at least 1 (a limit of 0 would refuse everything, silently by design).
        var sanitized: Limits {
            Limits(
                running: max(1, running), runningPerCaller: max(1, runningPerCaller), requests: max(1, requests),
                requestsPerCaller: max(1, requestsPerCaller), bytes: max(1, bytes), bytesPerCaller: max(1, bytesPerCaller))
        }
    }

    /// Why a request was refused; its description is the failure frame's text.
    enum Refusal: Sendable, Equatable, CustomStringConvertible {
        case callerRequests(limit: Int)
        case callerBytes(held: Int, request: Int, limit: Int)
        case requests(limit: Int)
        case bytes(held: Int, request: Int, limit: Int)

        var description: String {
            switch self {
            case .callerRequests(let limit):
                return "busy: this caller already has \(limit) requests running or waiting at this provider, its limit per caller; retry when some have been answered"
            case .callerBytes(let held, let request, let limit):
                return "busy: this caller's requests running or waiting at this provider hold \(held) bytes, and this one of \(request) bytes would pass the limit of \(limit) per caller; retry when some have been answered"
            case .requests(let limit):
                return "busy: \(limit) requests from all callers are running or waiting at this provider, its limit; retry later"
            case .bytes(let held, let request, let limit):
                return "busy: the requests running or waiting at this provider hold \(held) bytes, and this one of \(request) bytes would pass its limit of \(limit); retry later"
            }
        }
    }

    /// One admitted request, as ``next()`` hands it out; its caller and bytes go to ``finished(caller:bytes:)``.
    struct Ticket {
        var item: Item
        var caller: UInt64
        var bytes: Int
    }

    private struct Caller {
        var waiting: [(item: Item, bytes: Int)] = []
        var head = 0
        var running = 0
        var requests = 0
        var bytes = 0

        var hasWaiting: Bool { head < waiting.count }
    }

    let limits: Limits
    private var callers: [UInt64: Caller] = [:]
    /// Callers with waiting requests, in the order their turns come.
    private var turns: [UInt64] = []
    /// Handlers running, all callers.
    private(set) var running = 0
    /// Requests admitted and not finished (running or waiting), all callers.
    private(set) var requests = 0
    /// Bytes of those.
    private(set) var bytes = 0

    init(limits: Limits) {
        self.limits = limits.sanitized
    }

    /// Requests admitted that wait for a handler.
    var waiting: Int { requests - running }

    /// Admits `item` from `caller`, or says why not (the item is then not kept).
    ///
    /// A caller with nothing admitted always gets one request in, whatever its size (sizes are
    /// bounded by the frame limit already), so a limit below one large request cannot lock a
    /// caller out; the node-wide byte limit applies in the same way.
    mutating func admit(_ item: Item, bytes size: Int, from caller: UInt64) -> Refusal? {
        var entry = callers[caller] ?? Caller()
        if entry.requests >= limits.requestsPerCaller { return .callerRequests(limit: limits.requestsPerCaller) }
        if entry.bytes > 0, entry.bytes + size > limits.bytesPerCaller {
            return .callerBytes(held: entry.bytes, request: size, limit: limits.bytesPerCaller)
        }
        if requests >= limits.requests { return .requests(limit: limits.requests) }
        if bytes > 0, bytes + size > limits.bytes { return .bytes(held: bytes, request: size, limit: limits.bytes) }
        if !entry.hasWaiting { turns.append(caller) }
        entry.waiting.append((item, size))
        entry.requests += 1
        entry.bytes += size
        callers[caller] = entry
        requests += 1
        bytes += size
        return nil
    }

    /// True when ``next()`` would hand out a request.
    var hasRunnable: Bool {
        running < limits.running && turns.contains { (callers[$0]?.running ?? 0) < limits.runningPerCaller }
    }

    /// The next request to run: from the first caller in turn that is under its running limit,
    /// which then goes to the back of the turns. `nil` when every handler slot is taken or no
    /// waiting request may run yet.
    mutating func next() -> Ticket? {
        guard running < limits.running,
            let index = turns.firstIndex(where: { (callers[$0]?.running ?? 0) < limits.runningPerCaller }),
            var entry = callers[turns[index]]
        else { return nil }
        let caller = turns.remove(at: index)
        let (item, size) = entry.waiting[entry.head]
        entry.head += 1
        if entry.head == entry.waiting.count {
            entry.waiting.removeAll(keepingCapacity: true)
            entry.head = 0
        } else {
            if entry.head > 64, entry.head * 2 > entry.waiting.count {
                entry.waiting.removeFirst(entry.head)
                entry.head = 0
            }
            turns.append(caller)
        }
        entry.running += 1
        callers[caller] = entry
        running += 1
        return Ticket(item: item, caller: caller, bytes: size)
    }

    /// A request handed out by ``next()`` has ended: its slot and its bytes are free.
    mutating func finished(caller: UInt64, bytes size: Int) {
        guard var entry = callers[caller] else { return }
        entry.running -= 1
        entry.requests -= 1
        entry.bytes -= size
        running -= 1
        requests -= 1
        bytes -= size
        callers[caller] = entry.requests == 0 ? nil : entry
    }

    /// Forgets every waiting request (the node is closing); running ones still call ``finished(caller:bytes:)``.
    mutating func dropWaiting() {
        for (caller, var entry) in callers {
            let dropped = entry.waiting[entry.head...]
            entry.requests -= dropped.count
            let droppedBytes = dropped.reduce(0) { $0 + $1.bytes }
            entry.bytes -= droppedBytes
            requests -= dropped.count
            bytes -= droppedBytes
            entry.waiting.removeAll()
            entry.head = 0
            callers[caller] = entry.requests == 0 ? nil : entry
        }
        turns.removeAll()
    }

    /// Forgets the waiting requests of `caller` (its connection closed: their answers could not
    /// be delivered); its running ones still call ``finished(caller:bytes:)``.
    /// - Returns: how many were forgotten.
    mutating func dropWaiting(of caller: UInt64) -> Int {
        guard var entry = callers[caller], entry.hasWaiting else { return 0 }
        let dropped = entry.waiting[entry.head...]
        let droppedBytes = dropped.reduce(0) { $0 + $1.bytes }
        let count = dropped.count
        entry.requests -= count
        entry.bytes -= droppedBytes
        requests -= count
        bytes -= droppedBytes
        entry.waiting.removeAll()
        entry.head = 0
        callers[caller] = entry.requests == 0 ? nil : entry
        turns.removeAll { $0 == caller }
        return count
    }

    /// Admitted requests (running or waiting) and their bytes for one caller.
    func held(by caller: UInt64) -> (requests: Int, bytes: Int) {
        callers[caller].map { ($0.requests, $0.bytes) } ?? (0, 0)
    }
}
