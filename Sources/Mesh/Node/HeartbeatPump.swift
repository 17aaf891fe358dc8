import Foundation
import Synchronization

/// Keeps a node's heartbeats going from the event-loop thread when its actor is late.
///
/// The node's actor sends each heartbeat (with its counters) and judges the coordinator's
/// silence. In a process too busy to run the actor on time (a thousand nodes starting at once,
/// say), that beat can come seconds late and the coordinator would evict a healthy node. The
/// pump, a timer on the loop thread, sends a bare heartbeat whenever the actor has not sent one
/// for one and a half intervals; it never judges anything. Its timer is set for the moment the
/// next beat would be overdue, so while the actor keeps time it wakes once per beat, not twice.
final class HeartbeatPump: Sendable {
    private struct State {
        var connection: Connection?
        var lastSent = ContinuousClock.now
        var timerRunning = false
        var stopped = false
    }

    private let state = Mutex(State())
    private let interval: Duration
    /// The node's loop, which runs the timer (the coordinator connection's loop too).
    private let loop: EventLoop
    private static let frame = ControlMessage(.heartbeat).encodedFrame()

    init(interval: Duration, loop: EventLoop) {
        self.interval = interval
        self.loop = loop
    }

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

    private func schedule(at deadline: ContinuousClock.Instant? = nil) {
        loop.schedule(at: deadline ?? .now + interval * 3 / 2) { [self] in tick() }
    }

    /// Loop thread: sends a bare heartbeat when the actor is overdue, then sleeps until the next
    /// beat would be.
    private func tick() {
        loop.preconditionInEventLoop()
        let now = ContinuousClock.now
        let (due, next) = state.withLock { state -> (Connection?, ContinuousClock.Instant?) in
            guard !state.stopped, let connection = state.connection else {
                state.timerRunning = false
                return (nil, nil)
            }
            let overdue = state.lastSent + interval * 3 / 2
            guard now >= overdue else { return (nil, overdue) }
            state.lastSent = now
            return (connection, now + interval * 3 / 2)
        }
        due?.send(Self.frame)
        if let next { schedule(at: next) }
    }
}
