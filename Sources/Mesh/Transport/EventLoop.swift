import CMeshSystem
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Something the event loop calls when its socket is ready.
///
/// Calls arrive on the loop's own thread, one at a time. A handler must not block: it reads and
/// writes non-blocking sockets and hands finished work to tasks.
protocol EventHandler: AnyObject, Sendable {
    /// The socket is readable, writable, or failed; `events` is the epoll mask.
    func handle(events: UInt32)
}

/// Readiness flags a handler asks for.
struct Interest: OptionSet, Sendable {
    let rawValue: UInt32
    static let read = Interest(rawValue: cmesh_epollin | cmesh_epollrdhup)
    static let write = Interest(rawValue: cmesh_epollout)
}

/// One thread that waits for socket readiness with epoll and runs the handlers, timers and
/// small jobs queued for it.
///
/// Blocking waits happen only here, never on Swift's cooperative pool. Other threads talk to the
/// loop through ``execute(_:)`` (which wakes it with an eventfd) and through the epoll set, which
/// the kernel lets any thread change.
final class EventLoop: Sendable {
    /// The process-wide loop, started on first use.
    static let shared = EventLoop(name: "mesh-io")

    typealias Job = @Sendable () -> Void

    /// Timers by deadline: O(log n) to add, O(1) to cancel (marked, dropped when it surfaces),
    /// so thousands of connections each holding a handshake timer cost little to accept and close.
    private struct TimerHeap {
        /// Deadlines only; the jobs live in `jobs`, so a cancelled timer lets go of its closure
        /// (and whatever it captured, a closed connection say) at once, and only its small heap
        /// entry waits until it surfaces.
        private var heap: [(id: UInt64, deadline: ContinuousClock.Instant)] = []
        private var jobs: [UInt64: Job] = [:]

        /// Adds a timer; returns true when it is now the soonest.
        mutating func push(_ timer: Timer) -> Bool {
            jobs[timer.id] = timer.job
            heap.append((timer.id, timer.deadline))
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].deadline < heap[parent].deadline else { break }
                heap.swapAt(child, parent)
                child = parent
            }
            return child == 0
        }

        mutating func cancel(_ id: UInt64) {
            jobs[id] = nil
        }

        /// The soonest timer not cancelled.
        mutating func first() -> Timer? {
            while let top = heap.first {
                if let job = jobs[top.id] { return Timer(id: top.id, deadline: top.deadline, job: job) }
                pop()
            }
            return nil
        }

        /// Removes the soonest timer (it fires).
        mutating func removeFirst() {
            guard let top = heap.first else { return }
            jobs[top.id] = nil
            pop()
        }

        private mutating func pop() {
            guard !heap.isEmpty else { return }
            heap.swapAt(0, heap.count - 1)
            heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
                if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
                if smallest == parent { return }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
    }

    private struct Timer {
        let id: UInt64
        let deadline: ContinuousClock.Instant
        let job: Job
    }

    private struct State {
        var handlers: [UInt64: any EventHandler] = [:]
        var nextToken: UInt64 = 1
        var jobs: [Job] = []
        /// A binary min-heap by deadline; cancelled ones stay until they surface (see `cancelled`).
        var timers = TimerHeap()
        var sleeping = false
        var wakePending = false
    }

    private let epollFD: Int32
    private let wakeFD: Int32
    private let state = Mutex(State())
    private static let wakeToken: UInt64 = 0

    init(name: String) {
        epollFD = cmesh_epoll_create()
        wakeFD = cmesh_eventfd()
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll/eventfd unavailable: \(String(cString: strerror(errno)))")
        _ = cmesh_epoll_ctl(epollFD, 1, wakeFD, cmesh_epollin, Self.wakeToken)
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    // MARK: Registration

    /// Adds `socket` to the epoll set; returns the token to update or remove it with.
    func register(_ socket: Socket, interest: Interest, handler: any EventHandler) -> UInt64 {
        let token = state.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            state.handlers[token] = handler
            return token
        }
        _ = cmesh_epoll_ctl(epollFD, 1, socket.fd, interest.rawValue, token)
        return token
    }

    /// Changes what `socket` waits for.
    func update(_ socket: Socket, token: UInt64, interest: Interest) {
        _ = cmesh_epoll_ctl(epollFD, 3, socket.fd, interest.rawValue, token)
    }

    /// Removes `socket` from the epoll set. Call before closing the descriptor.
    func deregister(_ socket: Socket, token: UInt64) {
        _ = cmesh_epoll_ctl(epollFD, 2, socket.fd, 0, token)
        _ = state.withLock { $0.handlers.removeValue(forKey: token) }
    }

    // MARK: Jobs and timers

    /// Runs `job` on the loop thread soon.
    func execute(_ job: @escaping Job) {
        let wake = state.withLock { state -> Bool in
            state.jobs.append(job)
            guard state.sleeping, !state.wakePending else { return false }
            state.wakePending = true
            return true
        }
        if wake { wakeUp() }
    }

    /// Runs `job` on the loop thread at `deadline`; returns an id for ``cancelTimer(_:)``.
    @discardableResult
    func schedule(at deadline: ContinuousClock.Instant, _ job: @escaping Job) -> UInt64 {
        let wake = state.withLock { state -> (UInt64, Bool) in
            let id = state.nextToken
            state.nextToken += 1
            let soonest = state.timers.push(Timer(id: id, deadline: deadline, job: job))
            let wake = soonest && state.sleeping && !state.wakePending
            if wake { state.wakePending = true }
            return (id, wake)
        }
        if wake.1 { wakeUp() }
        return wake.0
    }

    /// Runs `job` on the loop thread after `delay`.
    @discardableResult
    func schedule(after delay: Duration, _ job: @escaping Job) -> UInt64 {
        schedule(at: .now + delay, job)
    }

    /// Cancels a timer that has not fired yet (a no-op otherwise).
    func cancelTimer(_ id: UInt64) {
        state.withLock { $0.timers.cancel(id) }
    }

    private func wakeUp() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: The loop

    private func run() {
        let capacity = 256
        var tokens = [UInt64](repeating: 0, count: capacity)
        var events = [UInt32](repeating: 0, count: capacity)
        var ready: [(any EventHandler, UInt32)] = []
        ready.reserveCapacity(capacity)
        while true {
            let timeout = state.withLock { state -> Int32 in
                if !state.jobs.isEmpty { return 0 }
                state.sleeping = true
                guard let first = state.timers.first() else { return -1 }
                let remaining = ContinuousClock.now.duration(to: first.deadline)
                if remaining <= .zero { return 0 }
                let (seconds, attoseconds) = remaining.components
                return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            }
            let count = tokens.withUnsafeMutableBufferPointer { tokenBuffer in
                events.withUnsafeMutableBufferPointer { eventBuffer in
                    cmesh_epoll_wait(epollFD, tokenBuffer.baseAddress, eventBuffer.baseAddress, Int32(capacity), timeout)
                }
            }
            let now = ContinuousClock.now
            var sawWake = false
            let (jobs, dueTimers) = state.withLock { state -> ([Job], [Job]) in
                state.sleeping = false
                state.wakePending = false
                ready.removeAll(keepingCapacity: true)
                for index in 0..<max(0, Int(count)) {
                    if tokens[index] == Self.wakeToken {
                        sawWake = true
                    } else if let handler = state.handlers[tokens[index]] {
                        ready.append((handler, events[index]))
                    }
                }
                let jobs = state.jobs
                state.jobs.removeAll(keepingCapacity: true)
                var due: [Job] = []
                while let first = state.timers.first(), first.deadline <= now {
                    due.append(first.job)
                    state.timers.removeFirst()
                }
                return (jobs, due)
            }
            if sawWake {
                var value: UInt64 = 0
                _ = Glibc.read(wakeFD, &value, 8)
            }
            for job in jobs { job() }
            for (handler, mask) in ready { handler.handle(events: mask) }
            for job in dueTimers { job() }
        }
    }
}
