import Mesh

extension MeshCoordinator {
    /// Keeps a heartbeat's (or a `register`'s) counters once checked (``HeartbeatCounters``): topic
    /// keys the mesh would refuse as names, or past 1,024, are dropped, and a count below what
    /// the coordinator held for the node is held; each is counted and logged with the node.
    func keep(_ stats: MeshStatistics, from node: NodeRecord, on connection: Connection) {
        let checked = HeartbeatCounters(stats, previous: sessions[connection.id]?.stats)
        sessions[connection.id]?.stats = checked.statistics
        guard checked.dropped > 0 || checked.negativeCounters > 0 || checked.backwardCounters > 0 else { return }
        limits.heartbeatTopicsDropped += checked.dropped
        var what: [String] = []
        if let first = checked.firstInvalid {
            what.append(
                "dropped \(checked.invalidTopics) topic counter(s) whose names the mesh does not allow"
                    + " (first \"\(first.topic)\": \(first.reason))")
        }
        if checked.topicsOverLimit > 0 {
            what.append("dropped \(checked.topicsOverLimit) topic counter(s) past the \(TopicStatistics.maximumTopics) a node may report")
        }
        if checked.negativeCounters > 0 { what.append("took \(checked.negativeCounters) negative counter(s) as 0") }
        if checked.backwardCounters > 0 {
            what.append("kept \(checked.backwardCounters) counter(s) that went backwards at their earlier value")
        }
        // A node can send heartbeats as fast as it likes: a few lines a second, then a count.
        refusals.log(
            "heartbeats with dropped counters", level: .warning, to: logger,
            "heartbeat from \(node.name) (\(node.id)) at \(connection.remote): \(what.joined(separator: "; "))")
    }
}
