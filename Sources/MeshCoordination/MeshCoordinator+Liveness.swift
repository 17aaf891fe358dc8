import Mesh

/// Which sessions are still alive: a node that has said nothing for the heartbeat timeout is
/// evicted. The check runs when the oldest heartbeat could run out, not on a tick, so an idle
/// coordinator sleeps until then.
extension MeshCoordinator {
    /// Removes the sessions silent for ``Configuration/heartbeatTimeout``, answers the kills that
    /// ran out of time, and arms the next check for the earliest moment either can happen again.
    ///
    /// There is no periodic tick: an idle mesh wakes the coordinator for its heartbeats and for
    /// one check every few seconds, when the oldest heartbeat could have run out.
    /// - Parameter due: when this check was meant to run.
    func evictSilentNodes(due: ContinuousClock.Instant) {
        let now = ContinuousClock.now
        // A check that comes late means this process was too busy to read (or stopped): what the
        // nodes sent meanwhile may be waiting unread, so the time lost since the check was due is
        // theirs. Never into the future: a credited time that ran ahead would arm the next check
        // after a real deadline, and the lateness measured then would be too short. A session also
        // gets, once until it is heard again, one heartbeat interval more: when the whole machine
        // stalled (node and coordinator frozen together), the node is otherwise left exactly a
        // timeout behind as both resume, before its first heartbeat can arrive.
        let lateBy = due.duration(to: now)
        if lateBy > min(configuration.heartbeatTimeout / 8, .milliseconds(250)) {
            for id in sessions.keys {
                guard var session = sessions[id] else { continue }
                var heard = session.lastHeard + lateBy
                if !session.stallGraced {
                    heard += configuration.heartbeatTimeout / 3  // a heartbeat interval, by default
                    session.stallGraced = true
                }
                session.lastHeard = min(heard, now)
                sessions[id] = session
            }
        }
        let timeout = configuration.heartbeatTimeout
        let cutoff = now - timeout
        var next: ContinuousClock.Instant?
        for (_, session) in sessions {
            guard session.lastHeard <= cutoff else {
                next = min(next ?? session.lastHeard + timeout, session.lastHeard + timeout)
                continue
            }
            let limit = String(format: "%.1f", seconds(timeout))
            if let node = session.node {
                remove(node, from: session.connection, reason: "no heartbeat for \(limit) s", evicted: true)
            } else {
                logger.warning("closed connection from \(session.connection.remote): silent for \(limit) s")
                if !session.inspector {
                    journal.refused(peer: session.connection.remote, .silent, reason: "silent for \(limit) s before registering")
                }
            }
            session.connection.close(error: .protocolViolation("no heartbeat"))
            forget(session.connection)
        }
        settleKills(now: now)
        for kill in kills { next = min(next ?? kill.deadline, kill.deadline) }
        if let next { checkBy(next) }
    }

    /// Makes sure a check (``evictSilentNodes(due:)``) runs at `due` at the latest: arms its
    /// timer, or moves it earlier, never later.
    ///
    /// The timer is the event loop's, which runs its timers after the handlers of the poll that
    /// found them due: a heartbeat that was waiting in a socket at the deadline is queued ahead
    /// of the check.
    func checkBy(_ due: ContinuousClock.Instant) {
        if let armed = nextCheck {
            if armed.due <= due { return }
            loop.cancelTimer(armed.timer)
        }
        let events = self.events
        nextCheck = (due, loop.schedule(at: due) { events.push(.check(due: due)) })
    }

    /// Refusal lines held back by the rate limit are summed up by a check once their second is
    /// over, so a flood that stops is still reported.
    func scheduleRefusalSummary() {
        guard refusals.heldBack(in: "refused connections") > 0 || refusals.heldBack(in: "rejected connections") > 0
        else { return }
        checkBy(.now + refusals.interval)
    }
}
