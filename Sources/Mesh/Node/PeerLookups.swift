/// The node ids a partial-view node asks the coordinator about because a peer it does not hold
/// said hello: one batch in flight at a time, the rest queued, all of it bounded.
///
/// A lookup is answered once (PROTOCOL.md §6.7): with the node's record when it is in the mesh,
/// with its record and its `leave` when it has just left, with nothing for an id no node has. It
/// is not added to the node's interest, so a made-up id costs nothing once answered, and no
/// number of them can use up what the node's own sends and calls need. What a flood of hellos
/// can cost at any moment is bounded here: at most ``maximumBatch`` ids in flight (one `interest`
/// message, answered at the coordinator's next publish) and ``maximumQueued`` waiting; an id
/// queued longer than ``patience`` is dropped unasked (its hello has been refused by then). Past
/// the queue's bound a lookup is refused and counted, and its hello waits out its 5 s as before.
///
/// A value with time injected: the node's actor feeds it and sends what it returns.
struct PeerLookups: Sendable {
    /// The most ids asked in one `interest` message, and so in flight at once.
    static let maximumBatch = 256
    /// The most ids waiting for the batch in flight to be answered.
    static let maximumQueued = 4_096
    /// How long a lookup is worth making: a hello waits this long for its node's record.
    static let patience = Duration.seconds(5)

    /// Ids in the `interest` message sent and not yet answered.
    private(set) var inFlight: Set<String> = []
    private var sentAt: ContinuousClock.Instant?
    /// Ids waiting for their turn, oldest first, with when they were asked for.
    private var queue: [(id: String, at: ContinuousClock.Instant)] = []
    private var queued: Set<String> = []
    /// Lookups refused because the queue was full.
    private(set) var refused = 0
    /// Ids sent to the coordinator so far.
    private(set) var asked = 0
    /// Ids dropped unasked after waiting ``patience``.
    private(set) var expired = 0

    /// Ids waiting or in flight.
    var pending: Int { inFlight.count + queued.count }

    /// What to do with one lookup.
    enum Outcome: Equatable, Sendable {
        /// Send these ids now, in one `interest` message.
        case send(Set<String>)
        /// Asked already, or queued behind the batch in flight.
        case waiting
        /// The queue is full: not looked up.
        case refused
    }

    /// A hello came from `id`, which the node does not hold.
    ///
    /// - Parameters:
    ///   - id: the node id to look up.
    ///   - now: the current time.
    ///   - canSend: true while registered with a partial view the coordinator confirmed.
    ///   - room: how many more ids the node may ask for now (its interest's limit).
    mutating func request(_ id: String, now: ContinuousClock.Instant, canSend: Bool, room: Int) -> Outcome {
        guard !inFlight.contains(id), !queued.contains(id) else { return .waiting }
        expire(now: now)
        guard queue.count < Self.maximumQueued else {
            refused += 1
            return .refused
        }
        queue.append((id, now))
        queued.insert(id)
        return next(now: now, canSend: canSend, room: room).map(Outcome.send) ?? .waiting
    }

    /// The coordinator answered for `ids` (its delta's `interest`): the next batch, if any, goes.
    mutating func answered(_ ids: Set<String>, now: ContinuousClock.Instant, canSend: Bool, room: Int) -> Set<String>? {
        inFlight.subtract(ids)
        if inFlight.isEmpty { sentAt = nil }
        return next(now: now, canSend: canSend, room: room)
    }

    /// The coordinator connection is gone: what was in flight is asked again once registered.
    mutating func connectionLost(now: ContinuousClock.Instant) {
        let unanswered = inFlight.sorted()
        inFlight = []
        sentAt = nil
        queue = unanswered.map { ($0, now) } + queue
        queued.formUnion(unanswered)
    }

    /// The next batch to send, when none is in flight (or the one in flight went unanswered for
    /// ``patience``: it is given up) and there is something to ask.
    mutating func next(now: ContinuousClock.Instant, canSend: Bool, room: Int) -> Set<String>? {
        if let sentAt, now - sentAt >= Self.patience {
            inFlight = []
            self.sentAt = nil
        }
        guard canSend, inFlight.isEmpty else { return nil }
        expire(now: now)
        let count = min(Self.maximumBatch, room, queue.count)
        guard count > 0 else { return nil }
        let batch = queue.prefix(count).map(\.id)
        queue.removeFirst(count)
        queued.subtract(batch)
        inFlight = Set(batch)
        sentAt = now
        asked += inFlight.count
        return inFlight
    }

    /// Drops queued ids older than ``patience``: their hellos have been refused.
    private mutating func expire(now: ContinuousClock.Instant) {
        let stale = queue.prefix { now - $0.at >= Self.patience }.count
        guard stale > 0 else { return }
        queued.subtract(queue.prefix(stale).map(\.id))
        queue.removeFirst(stale)
        expired += stale
    }
}
