import Mesh

/// What the coordinator queues to its sessions, bounded: at most one unsent copy of the
/// topology or status per session, and a budget for all sessions together.
///
/// A copy of the topology is the largest thing the coordinator sends (megabytes in a large mesh),
/// and every reply is a copy in that session's queue. Four sessions asking 18 times a second
/// (under the 20 a second allowed) and reading nothing grew the coordinator by 300 MB. Now a
/// request that comes while a copy sent before may still be queued waits until that session's
/// queue has drained, and is answered then, once for however many came. And whatever is queued,
/// all sessions together stay within ``Configuration/maximumQueuedReplyBytes``: past it, the
/// sessions that have left their replies unread longest are closed (``ReplyBudget``).
extension MeshCoordinator {
    /// Answers a request for a copy now, or, when one sent before may still be in the session's
    /// queue, once the queue has drained.
    func requestCopy(_ request: CopyRequest, on connection: Connection) {
        guard let session = sessions[connection.id] else { return }
        if session.copyQueued {
            guard connection.queuedByteCount > 0 else {
                sessions[connection.id]?.copyQueued = false
                return sendCopy(request, on: connection)
            }
            sessions[connection.id]?.deferredCopies.insert(request)
            deferred.insert(connection.id)
            return
        }
        sendCopy(request, on: connection)
    }

    private func sendCopy(_ request: CopyRequest, on connection: Connection) {
        let frame: [UInt8]
        switch request {
        case .topology:
            // A partial view's copy is its own, at its next version; else the shared snapshot.
            frame = views.snapshot(connection.id).map { ControlMessage(.topology, topology: $0).encodedFrame() } ?? topologyFrame()
        case .status:
            frame = ControlMessage(.status, status: status).encodedFrame()
        }
        sessions[connection.id]?.copyQueued = true
        reply(frame, on: connection)
    }

    /// Sends the copies that were waiting, to each session whose queue has drained since.
    func sendDeferredCopies() {
        guard !deferred.isEmpty else { return }
        for id in deferred {
            guard let session = sessions[id] else {
                deferred.remove(id)
                continue
            }
            guard session.connection.queuedByteCount == 0 else { continue }
            deferred.remove(id)
            sessions[id]?.copyQueued = false
            sessions[id]?.deferredCopies = []
            // Topology first, as it was most likely asked first; each once.
            for request in [CopyRequest.topology, .status] where session.deferredCopies.contains(request) {
                sendCopy(request, on: session.connection)
            }
        }
    }

    /// Makes sure `bytes` more fit in ``Configuration/maximumQueuedReplyBytes``: recounts what is
    /// queued when the estimate says it may not (or when `recount` asks, at each tick), and closes
    /// the sessions furthest behind until it does. `sparing` is the session the bytes are for.
    func makeRoom(for bytes: Int, sparing: UInt64?, recount: Bool = false) {
        guard recount || !budget.fits(bytes) else { return }
        let now = ContinuousClock.now
        var backlogs: [ReplyBudget.Backlog] = []
        for (id, session) in sessions {
            let queued = session.connection.queuedByteCount
            if queued == 0 {
                if session.backlogSince != nil { sessions[id]?.backlogSince = nil }
                continue
            }
            let since = session.backlogSince ?? now
            if session.backlogSince == nil { sessions[id]?.backlogSince = now }
            backlogs.append(ReplyBudget.Backlog(session: id, bytes: queued, since: since))
        }
        for id in budget.recount(backlogs, incoming: bytes, sparing: sparing) {
            guard let session = sessions[id] else { continue }
            let queued = backlogs.first { $0.session == id }?.bytes ?? 0
            let who = session.node.map { "\($0.name) (\($0.id))" } ?? "a client"
            let behind = session.backlogSince.map { formatted($0.duration(to: now)) } ?? "0.000 s"
            refusals.log(
                "sessions closed for unread replies", level: .warning, to: logger,
                "\(who) at \(session.connection.remote) has left \(queued) bytes of replies unread for \(behind), and all"
                    + " sessions' queued replies would pass \(configuration.maximumQueuedReplyBytes) bytes; disconnecting it")
            limits.sessionsShed += 1
            deferred.remove(id)
            session.connection.close(error: .protocolViolation("reply backlog: the coordinator's queues for all sessions are full"))
        }
    }

    /// ``limits`` with what is counted on demand.
    var currentLimits: CoordinatorLimits {
        var current = limits
        current.queuedReplyBytes = budget.estimate
        current.interests = views.totalInterests
        return current
    }
}
