import Mesh
import MeshTooling

/// Decides what happens when one copy of an entry exits: restart it (after how long), leave it
/// down, or give up. A pure value, fed each exit; `mesh launch` performs what it returns.
///
/// Restarts back off: 0.5 s, then doubling up to 10 s. A copy that ran for 30 s or more before
/// exiting starts over at 0.5 s with a clean count. More than `limit` restarts in a row (none
/// of them running 30 s) and it gives up.
struct RestartTracker: Sendable, Equatable {
    enum Decision: Sendable, Equatable {
        case restart(after: Duration)
        /// The policy says it stays down (it succeeded under on-failure, or restart: never).
        case stayDown
        /// It failed `limit` times in a row; it stays down.
        case giveUp
    }

    static let initialDelay: Duration = .milliseconds(500)
    static let maximumDelay: Duration = .seconds(10)
    static let resetAfter: Duration = .seconds(30)

    let policy: LaunchPlan.RestartPolicy
    let limit: Int
    /// Restarts since the last run of 30 s or more.
    private(set) var restartsInARow = 0
    private(set) var nextDelay = RestartTracker.initialDelay

    init(policy: LaunchPlan.RestartPolicy, limit: Int) {
        self.policy = policy
        self.limit = limit
    }

    /// - Parameters:
    ///   - status: how the copy ended.
    ///   - ranFor: how long it ran.
    mutating func exited(_ status: ExitStatus, ranFor: Duration) -> Decision {
        if ranFor >= RestartTracker.resetAfter {
            restartsInARow = 0
            nextDelay = RestartTracker.initialDelay
        }
        let wanted: Bool
        switch policy {
        case .always: wanted = true
        case .onFailure: wanted = !status.isSuccess
        case .never: wanted = false
        }
        guard wanted else { return .stayDown }
        guard restartsInARow < limit else { return .giveUp }
        restartsInARow += 1
        let delay = nextDelay
        nextDelay = min(nextDelay * 2, RestartTracker.maximumDelay)
        return .restart(after: delay)
    }
}
