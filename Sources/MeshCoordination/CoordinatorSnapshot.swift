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
    /// What the coordinator's limits cut short without refusing a connection.
    public var limits: CoordinatorLimits
}

/// What the coordinator's limits have cut since it started, for the web view and `/metrics`.
public struct CoordinatorLimits: Sendable, Equatable {
    /// Per-topic counters dropped from nodes' heartbeats: names the mesh does not allow, or past
    /// the 1,024 topics a node may report.
    public var heartbeatTopicsDropped = 0
    /// Sessions closed because the replies queued to all sessions together would have passed
    /// ``MeshCoordinator/Configuration/maximumQueuedReplyBytes`` (the ones furthest behind go).
    public var sessionsShed = 0
    /// Bytes of replies queued to all sessions, as of the last count (at most a tick old).
    public var queuedReplyBytes = 0
    /// Topics, services, names and ids the partial views of all sessions follow together.
    public var interests = 0

    public init() {}
}
