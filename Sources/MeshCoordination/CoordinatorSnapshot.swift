import Mesh

/// The coordinator's state at one instant: what a dashboard, the web view and `/metrics` are built from.
public struct CoordinatorSnapshot: Sendable {
    /// The address nodes connect to.
    public var address: String
    /// Uptime, topology version, and every node with its last heartbeat's counters.
    public var status: CoordinatorStatus
    public var topology: Topology
    /// The recent events, oldest first.
    public var events: [CoordinatorEvent]
    /// Connections refused since the start, by reason.
    public var refused: [RefusalReason: Int]
}
