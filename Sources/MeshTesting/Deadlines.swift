import Synchronization

/// Thrown by ``withDeadline(_:_:)`` when the work did not finish in time.
package struct DeadlineExceeded: Error, CustomStringConvertible {
    package var seconds: Double
    package init(seconds: Double) { self.seconds = seconds }
    package var description: String { "did not finish within the test deadline of \(seconds) s" }
}

/// Runs `body`, failing with ``DeadlineExceeded`` if it has not finished after `seconds`.
///
/// The body runs in its own task, which is cancelled on timeout but not awaited: a body stuck in
/// a wait that ignores cancellation makes the test fail instead of hanging it.
/// - Returns: what `body` returned.
/// - Throws: what `body` threw, or ``DeadlineExceeded``.
package func withDeadline<T: Sendable>(
    _ seconds: Double, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withCheckedThrowingContinuation { continuation in
        race.arm(continuation)
        let work = Task {
            do {
                race.settle(.success(try await body()))
            } catch {
                race.settle(.failure(error))
            }
        }
        let timer = Task {
            try? await Task.sleep(for: .seconds(seconds))
            if !Task.isCancelled, race.settle(.failure(DeadlineExceeded(seconds: seconds))) {
                work.cancel()
            }
        }
        race.onSettle { timer.cancel() }
    }
}

/// Resumes one continuation exactly once, with whichever outcome arrives first.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var settled = false
        var cleanup: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func arm(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Runs `cleanup` once settled (now, if that already happened).
    func onSettle(_ cleanup: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.settled { return true }
            state.cleanup = cleanup
            return false
        }
        if runNow { cleanup() }
    }

    /// - Returns: `true` when this call was the one that settled the race.
    @discardableResult
    func settle(_ result: Result<T, any Error>) -> Bool {
        let taken = state.withLock { state -> (CheckedContinuation<T, any Error>, (@Sendable () -> Void)?)? in
            guard !state.settled, let continuation = state.continuation else { return nil }
            state.settled = true
            state.continuation = nil
            defer { state.cleanup = nil }
            return (continuation, state.cleanup)
        }
        guard let (continuation, cleanup) = taken else { return false }
        continuation.resume(with: result)
        cleanup?()
        return true
    }
}

/// Polls `condition` every few milliseconds until it holds; throws ``TimedOut`` after `seconds`.
package func eventually(
    _ what: String, seconds: Double = 10, _ condition: @escaping @Sendable () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TimedOut(what: what, seconds: seconds)
}

/// Thrown by ``eventually(_:seconds:_:)`` when the condition never held.
package struct TimedOut: Error, CustomStringConvertible {
    package var what: String
    package var seconds: Double
    package var description: String { "timed out after \(seconds) s waiting for \(what)" }
}

/// Polls `condition` until it holds, like ``eventually(_:seconds:_:)``, and returns how long that took.
@discardableResult
package func timeUntil(
    _ what: String, seconds: Double, _ condition: @escaping @Sendable () async -> Bool
) async throws -> Duration {
    let start = ContinuousClock.now
    try await eventually(what, seconds: seconds, condition)
    return start.duration(to: .now)
}
