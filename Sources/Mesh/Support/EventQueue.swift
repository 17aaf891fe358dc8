import Synchronization

/// A queue many threads push into and one task drains, a batch at a time.
///
/// The event loop's handlers push (they must never wait); the owning actor's task takes whatever
/// has gathered with ``next()``, so a burst of events costs one wake-up, not one each.
package final class EventQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiter: CheckedContinuation<[Element], Never>?
        var finished = false
    }

    private let state = Mutex(State())

    package init() {}

    /// Adds an element; a no-op after ``finish()``.
    package func push(_ element: Element) {
        let wake = state.withLock { state -> (CheckedContinuation<[Element], Never>, [Element])? in
            guard !state.finished else { return nil }
            state.items.append(element)
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            defer { state.items.removeAll(keepingCapacity: true) }
            return (waiter, state.items)
        }
        if let (waiter, items) = wake { waiter.resume(returning: items) }
    }

    /// Waits for elements and returns all that have gathered; `[]` once finished or cancelled.
    package func next() async -> [Element] {
        if let ready = takeReady() { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[Element], Never>) in
                let ready = state.withLock { state -> [Element]? in
                    if !state.items.isEmpty || state.finished || Task.isCancelled {
                        defer { state.items.removeAll(keepingCapacity: true) }
                        return state.items
                    }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            finishWaiter()
        }
    }

    /// True while a task is suspended in ``next()`` (for tests).
    var hasWaiter: Bool { state.withLock { $0.waiter != nil } }

    /// Elements pushed and not yet taken.
    package var count: Int { state.withLock { $0.items.count } }

    /// Ends the queue: the waiting task gets `[]`, later pushes are ignored.
    package func finish() {
        state.withLock { $0.finished = true }
        finishWaiter()
    }

    private func takeReady() -> [Element]? {
        state.withLock { state -> [Element]? in
            if state.items.isEmpty { return state.finished ? [] : nil }
            defer { state.items.removeAll(keepingCapacity: true) }
            return state.items
        }
    }

    private func finishWaiter() {
        let waiter = state.withLock { state -> CheckedContinuation<[Element], Never>? in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: [])
    }
}
