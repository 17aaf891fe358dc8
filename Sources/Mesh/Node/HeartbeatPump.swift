import Foundation
import Synchronization

/// Keeps a node's heartbeats going from the event-loop thread when its actor is late.
///
/// The node's actor sends each heartbeat (with its counters) and judges the coordinator's
/// silence. In a process too busy to run the actor on time (a thousand nodes starting at once,
/// say), that beat can come seconds late and the coordinator would evict a healthy node. The
/// pump, a timer on the loop thread, sends a bare heartbeat whenever the actor has not sent one
/// for one and a half intervals; it never judges anything.
final class HeartbeatPump: Sendable {
    private struct State {
        var connection: Connection?
        var lastSent = ContinuousClock.now
        var timerRunning = false
        var stopped = false
    }

    private let state = Mutex(State())
    private let interval: Duration
    private static let frame = ControlMessage(.heartbeat).encodedFrame()

    init(interval: Duration) { self.interval = interval }

    /// The actor just sent a heartbeat (or a register) on `connection`; `nil` while there is no
    /// registered coordinator connection.
    func beat(on connection: Connection?) {
        let start = state.withLock { state -> Bool in
            state.connection = connection
            state.lastSent = .now
            guard !state.stopped, connection != nil, !state.timerRunning else { return false }
            state.timerRunning = true
            return true
        }
        if start { schedule() }
    }

    /// Stops for good (the node closes).
    func stop() {
        state.withLock { state in
            state.stopped = true
            state.connection = nil
        }
    }

    private func schedule() {
        EventLoop.shared.schedule(after: interval / 2) { [self] in tick() }
    }

    /// Loop thread: sends a bare heartbeat when the actor is overdue.
    private func tick() {
        let now = ContinuousClock.now
        let (due, goOn) = state.withLock { state -> (Connection?, Bool) in
            guard !state.stopped, let connection = state.connection else {
                state.timerRunning = false
                return (nil, false)
            }
            guard now - state.lastSent >= interval * 3 / 2 else { return (nil, true) }
            state.lastSent = now
            return (connection, true)
        }
        due?.send(Self.frame)
        if goOn { schedule() }
    }
}
