import Foundation
import Mesh

/// What the coordinator answers to the tools (`mesh status`, `mesh node kill`, the inspector):
/// its status, and stopping nodes on an admin's request.
extension MeshCoordinator {
    func handleTool(_ message: ControlMessage, on connection: Connection) {
        switch message.type {
        case .inspect, .sync:
            requestCopy(.topology, on: connection)
        case .heartbeat:
            answerHeartbeat(on: connection)
        case .status, .kill:
            guard sessions[connection.id]?.purpose == .admin else {
                return reject(
                    connection,
                    "\(message.type) needs the admin credential: connect with the admin key (mesh --admin-key-file)")
            }
            if message.type == .status {
                requestCopy(.status, on: connection)
            } else {
                kill(message.target ?? "", requestedBy: connection)
            }
        default:
            reject(connection, "unexpected \(message.type) from an inspecting client")
        }
    }

    private static let heartbeatFrame = ControlMessage(.heartbeat).encodedFrame()

    /// Shows a node the coordinator is alive; skipped when something else went to it lately.
    func answerHeartbeat(on connection: Connection) {
        let now = ContinuousClock.now
        guard let lastSent = sessions[connection.id]?.lastSent, now - lastSent < .milliseconds(500) else {
            if connection.send(Self.heartbeatFrame) == .queued { budget.queued(Self.heartbeatFrame.count) }
            sessions[connection.id]?.lastSent = now
            return
        }
    }

    /// The coordinator's view for `mesh status`.
    var status: CoordinatorStatus {
        let now = ContinuousClock.now
        let nodes = sessions.values.compactMap { session -> NodeStatus? in
            guard let registered = session.node else { return nil }
            // The topology's record, not the session's copy from `register`: listens since then count.
            let node = book.topology.nodes[registered.id] ?? registered
            return NodeStatus(node: node, stats: session.stats, lastHeard: seconds(session.lastHeard.duration(to: now)))
        }
        return CoordinatorStatus(
            uptime: seconds(startedAt.duration(to: now)), version: book.topology.version,
            nodes: nodes.sorted { $0.node.id < $1.node.id })
    }

    /// Asks the nodes matching `target` (a name, an id, or "*") to stop; answers when they left.
    func kill(_ target: String, requestedBy requester: Connection) {
        let matching = sessions.values.compactMap(\.node).filter { target == "*" || $0.name == target || $0.id == target }
        guard !matching.isEmpty else {
            reply(
                ControlMessage(.killed, reason: "no node is named or has the id \"\(target)\"", stopped: [], remaining: [])
                    .encodedFrame(), on: requester)
            return
        }
        let frame = ControlMessage(.shutdown, reason: "requested by mesh node kill from \(requester.remote)").encodedFrame()
        for session in sessions.values where matching.contains(where: { $0.id == session.node?.id }) {
            reply(frame, on: session.connection)
        }
        logger.info("asked \(matching.count) node(s) to stop (\(target == "*" ? "all" : target)) for \(requester.remote)")
        let deadline = ContinuousClock.now + killTimeout
        kills.append(KillRequest(requester: requester, waitingFor: Set(matching.map(\.id)), stopped: [], deadline: deadline))
        checkBy(deadline)
    }

    /// Answers kill requests whose nodes have all left or whose time is up.
    func settleKills(now: ContinuousClock.Instant = .now) {
        kills.removeAll { request in
            guard request.waitingFor.isEmpty || now >= request.deadline else { return false }
            reply(
                ControlMessage(.killed, stopped: request.stopped.sorted(), remaining: request.waitingFor.sorted())
                    .encodedFrame(), on: request.requester)
            return true
        }
    }
}
