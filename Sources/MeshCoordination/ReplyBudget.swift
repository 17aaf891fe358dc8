/// What the coordinator has queued to all its sessions together, and which sessions to close
/// when that would pass the limit.
///
/// Each session's queue has a limit of its own (64 MiB), but sessions are many: thousands of
/// clients that each ask for a copy of the topology and never read it would each hold one. The
/// coordinator counts what it queues, recounts from the connections' queues (what was written
/// since is gone), and when a reply would still not fit, closes the sessions furthest behind:
/// those whose queue has not been empty for longest, the fullest first among equals. A client
/// that reads keeps its queue near empty and is never chosen before one that does not.
///
/// A value with the counts and times passed in: no sockets, no clocks.
struct ReplyBudget: Sendable {
    /// The most bytes queued to all sessions together.
    let limit: Int
    /// Bytes queued as of the last count, plus everything queued since (an upper bound).
    private(set) var estimate = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// One session's queue at a count.
    struct Backlog: Sendable, Equatable {
        var session: UInt64
        /// Bytes queued and not yet written.
        var bytes: Int
        /// Since when its queue has not been seen empty.
        var since: ContinuousClock.Instant
    }

    /// Whether `bytes` more fit without a count.
    func fits(_ bytes: Int) -> Bool { estimate + bytes <= limit }

    /// Records `bytes` queued to some session.
    mutating func queued(_ bytes: Int) { estimate += bytes }

    /// Takes a fresh count and says which sessions to close for `incoming` more bytes to fit.
    ///
    /// - Parameters:
    ///   - backlogs: every session with bytes queued.
    ///   - incoming: what is about to be queued.
    ///   - sparing: a session never to choose (the one the reply is for).
    /// - Returns: the sessions to close, furthest behind first; empty when it fits. When closing
    ///   every other session is not enough, all of them are returned and the reply goes anyway
    ///   (one reply never waits for itself).
    mutating func recount(_ backlogs: [Backlog], incoming: Int, sparing: UInt64? = nil) -> [UInt64] {
        estimate = backlogs.reduce(0) { $0 + $1.bytes }
        guard estimate + incoming > limit else { return [] }
        let order = backlogs.filter { $0.session != sparing && $0.bytes > 0 }
            .sorted { ($0.since, -$0.bytes, $0.session) < ($1.since, -$1.bytes, $1.session) }
        var closing: [UInt64] = []
        for backlog in order where estimate + incoming > limit {
            closing.append(backlog.session)
            estimate -= backlog.bytes
        }
        return closing
    }
}
