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
package protocol EventHandler: AnyObject, Sendable {
    /// The socket is readable, writable, or failed; `events` is the epoll mask.
    func handle(events: UInt32)
}

/// Readiness flags a handler asks for.
package struct Interest: OptionSet, Sendable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }
    package static let read = Interest(rawValue: cmesh_epollin | cmesh_epollrdhup)
    package static let write = Interest(rawValue: cmesh_epollout)
}

/// One thread that waits for socket readiness with epoll and runs the handlers, timers, small
/// jobs and Swift tasks queued for it, for its whole life.
///
/// Blocking waits happen only here, never on Swift's cooperative pool. Other threads talk to the
/// loop through ``execute(_:)`` and ``schedule(at:_:)``, which append to its queue under its lock
/// and write its eventfd only when it sleeps in `epoll_wait` and no wake-up is pending yet (so at
/// most one wake-up per loop iteration, however many jobs are queued meanwhile), and through the
/// epoll set, which the kernel lets any thread change. Each iteration takes everything queued in
/// one swap under the lock (and again for what that work queues, up to ``drainRounds`` times), as
/// NIO's `SelectableEventLoop` takes its pending tasks.
///
/// The loop is also a `TaskExecutor`: a task started with it as executor preference (a node's
/// delivery task) runs its nonisolated code, listeners included, on the loop thread, so a reply
/// sent from a listener is queued and written in the same loop iteration that read the request.
/// Such a job runs inline, like any other, and holds the thread until it suspends: the loop has no
/// watchdog and never moves to another thread. A listener that blocks is caught by the node's
/// delivery (see `MeshNode.deliver`), which then runs that node's listeners on the pool.
///
/// It is not a `SerialExecutor`: as a task executor it also runs the jobs of default actors that
/// a task preferring it calls into, and those are isolated to their actor, not to the loop.
/// Claiming serial isolation for every job it runs would be wrong for them, and nothing here
/// needs an actor pinned to the loop.
///
/// Components get the loop they use as a parameter; ``shared`` is only the process's default,
/// chosen by the tops (a node's and a coordinator's initialisers).
package final class EventLoop: Sendable {
    /// The process's default loop, started on first use.
    package static let shared = EventLoop(name: "mesh-io")

    package typealias Job = @Sendable () -> Void

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

    /// One unit of queued work, run in order.
    private enum Work {
        case job(Job)
        case task(UnownedJob)
        case io(any EventHandler, UInt32)
    }

    private struct State {
        var handlers: [UInt64: any EventHandler] = [:]
        var nextToken: UInt64 = 1
        /// Queued work, oldest first.
        var work: [Work] = []
        /// A binary min-heap by deadline; cancelled ones stay until they surface (see `cancelled`).
        var timers = TimerHeap()
        /// The loop is in (or about to enter) `epoll_wait` with no work queued.
        var sleeping = false
        /// The eventfd has been written since the loop last woke: later pushes need not.
        var wakePending = false
    }

    /// At most this many swaps of the work queue per iteration before epoll is polled again, so
    /// work that keeps queueing work (a flush that yields, a task that reschedules) cannot starve
    /// the sockets.
    static let drainRounds = 64
    /// The most readiness events taken from one `epoll_wait`.
    static let eventCapacity = 256

    private let epollFD: Int32
    private let wakeFD: Int32
    private let name: String
    private let state = Mutex(State())
    /// `pthread_self()` of the loop's thread (0 until it starts; it never changes after).
    private let loopThread = Atomic<UInt>(0)
    private static let wakeToken: UInt64 = 0

    package init(name: String) {
        self.name = name
        epollFD = cmesh_epoll_create()
        wakeFD = cmesh_eventfd()
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll/eventfd unavailable: \(String(cString: strerror(errno)))")
        _ = cmesh_epoll_ctl(epollFD, 1, wakeFD, cmesh_epollin, Self.wakeToken)
        let thread = Thread { [self] in self.run() }
        thread.name = name
        // Listeners run here: give them the stack a pool thread would have.
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// True on the loop's thread.
    package var inLoopThread: Bool { loopThread.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Stops the process unless called on the loop's thread: state only the loop touches checks
    /// it at its entry points (a connection's flush, read and close, a listener's accept, timers),
    /// as NIO's `preconditionInEventLoop` does.
    package func preconditionInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inLoopThread, "called off the thread of event loop \(name)", file: file, line: line)
    }

    // MARK: Registration

    /// Adds `socket` to the epoll set; returns the token to update or remove it with.
    package func register(_ socket: Socket, interest: Interest, handler: any EventHandler) -> UInt64 {
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
    package func update(_ socket: Socket, token: UInt64, interest: Interest) {
        _ = cmesh_epoll_ctl(epollFD, 3, socket.fd, interest.rawValue, token)
    }

    /// Removes `socket` from the epoll set. Call before closing the descriptor.
    package func deregister(_ socket: Socket, token: UInt64) {
        _ = cmesh_epoll_ctl(epollFD, 2, socket.fd, 0, token)
        _ = state.withLock { $0.handlers.removeValue(forKey: token) }
    }

    // MARK: Jobs and timers

    /// Runs `job` on the loop thread soon (in this iteration when called from the loop thread).
    package func execute(_ job: @escaping Job) {
        push(.job(job))
    }

    /// Appends `work` under the lock; writes the eventfd, after the lock, only when the loop is in
    /// (or about to enter) `epoll_wait` and nobody has written it since the loop last woke: at
    /// most one wake-up per sleep, however many jobs arrive meanwhile.
    private func push(_ work: Work) {
        let wake = state.withLock { state -> Bool in
            state.work.append(work)
            guard state.sleeping, !state.wakePending else { return false }
            state.wakePending = true
            return true
        }
        if wake { wakeUp() }
    }

    /// Runs `job` on the loop thread at `deadline`; returns an id for ``cancelTimer(_:)``.
    @discardableResult
    package func schedule(at deadline: ContinuousClock.Instant, _ job: @escaping Job) -> UInt64 {
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
    package func schedule(after delay: Duration, _ job: @escaping Job) -> UInt64 {
        schedule(at: .now + delay, job)
    }

    /// Cancels a timer that has not fired yet (a no-op otherwise).
    package func cancelTimer(_ id: UInt64) {
        state.withLock { $0.timers.cancel(id) }
    }

    private func wakeUp() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: The loop

    /// The loop's body, on its own thread for the life of the process.
    private func run() {
        loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        let capacity = Self.eventCapacity
        var tokens = [UInt64](repeating: 0, count: capacity)
        var events = [UInt32](repeating: 0, count: capacity)
        let executor = asUnownedTaskExecutor()
        var batch: [Work] = []
        var sawWake = false
        while true {
            // Everything queued, including what the work itself queues, in batches taken under
            // one lock each, up to a bound so epoll is still polled under a flood of jobs.
            for _ in 0..<Self.drainRounds {
                state.withLock { swap(&$0.work, &batch) }
                if batch.isEmpty { break }
                for work in batch {
                    switch work {
                    case .job(let job):
                        job()
                    case .io(let handler, let mask):
                        handler.handle(events: mask)
                    case .task(let job):
                        job.runSynchronously(on: executor)
                    }
                }
                batch.removeAll(keepingCapacity: batch.count <= 4096)
            }
            if sawWake {
                // Emptied only now, after the work it announced ran (a flush a send is waiting
                // on goes first): while the loop is awake nobody writes it (see `push`).
                var value: UInt64 = 0
                _ = Glibc.read(wakeFD, &value, 8)
                sawWake = false
            }
            let timeout = state.withLock { state -> Int32 in
                if !state.work.isEmpty { return 0 }
                state.sleeping = true
                guard let first = state.timers.first() else { return -1 }
                let remaining = ContinuousClock.now.duration(to: first.deadline)
                if remaining <= .zero { return 0 }
                let (seconds, attoseconds) = remaining.components
                // Rounded up to the next millisecond: a timer never fires early.
                return Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            }
            let count = tokens.withUnsafeMutableBufferPointer { tokenBuffer in
                events.withUnsafeMutableBufferPointer { eventBuffer in
                    cmesh_epoll_wait(epollFD, tokenBuffer.baseAddress, eventBuffer.baseAddress, Int32(capacity), timeout)
                }
            }
            let now = ContinuousClock.now
            state.withLock { state in
                state.sleeping = false
                state.wakePending = false
                for index in 0..<max(0, Int(count)) {
                    if tokens[index] == Self.wakeToken {
                        sawWake = true
                    } else if let handler = state.handlers[tokens[index]] {
                        state.work.append(.io(handler, events[index]))
                    }
                }
                while let first = state.timers.first(), first.deadline <= now {
                    state.work.append(.job(first.job))
                    state.timers.removeFirst()
                }
            }
        }
    }
}

extension EventLoop: TaskExecutor {
    package func enqueue(_ job: consuming ExecutorJob) {
        push(.task(UnownedJob(job)))
    }
}
