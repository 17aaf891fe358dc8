import Foundation
import Mesh
import MeshCrypto
import Synchronization

/// The mesh's directory: which nodes exist, where they are, what they listen to.
///
/// Nodes register over one control connection each; the coordinator answers with the whole
/// topology, then sends every node the changes as versioned deltas, one batch per burst of
/// events. Messages never pass through it. A node that disconnects, says goodbye, or misses
/// heartbeats for ``Configuration/heartbeatTimeout`` is removed at once.
///
/// ```swift
/// let coordinator = MeshCoordinator(configuration: .init(port: 0))
/// let address = try await coordinator.start()
/// try await coordinator.run()   // until the task is cancelled
/// ```
public actor MeshCoordinator {
    /// How the coordinator listens and whom it lets in.
    public struct Configuration: Sendable {
        /// The address to bind; `0.0.0.0` is every IPv4 interface. Defaults to `127.0.0.1` without
        /// a key (and any other address is then refused unless ``insecure``), `0.0.0.0` with one.
        public var host: String
        /// The TCP port; 0 picks a free one (read it back from ``MeshCoordinator/start()``).
        public var port: UInt16
        /// The shared key every connection must prove, or `nil` for an open mesh.
        public var authkey: String?
        /// Where log lines go.
        public var logger: MeshLogger
        /// A node silent this long (no heartbeat, no traffic) is removed.
        public var heartbeatTimeout: Duration
        /// The largest control frame accepted from a node.
        public var maximumFrameLength: Int
        /// The key `mesh status` and `mesh node kill` must prove; `nil` means ``authkey``.
        public var adminKey: String?
        /// Accepts keys that `MeshKey.estimatedStrength(_:)` finds easy to guess. Off by default
        /// (unless `$MESH_ALLOW_WEAK_KEY` is `1`): ``MeshCoordinator/start()`` then refuses them
        /// with `MeshError.guessableKey(estimatedBits:minimumBits:)`.
        public var allowWeakKey: Bool = MeshKey.allowWeakFromEnvironment
        /// Allows listening on a non-loopback address with no key: an open mesh, on purpose.
        public var insecure: Bool
        /// Lets nodes advertise a host other than the address they connect from (NAT, several
        /// interfaces). Off, a node's host must be the address its connection comes from.
        public var allowForeignHosts: Bool
        /// The most connections kept open from one source address.
        public var maximumSessionsPerAddress: Int
        /// The most nodes in the mesh.
        public var maximumNodes: Int
        /// Requests that cost the coordinator a full copy of the topology or the status
        /// (`sync`, `inspect`, `status`) allowed per session per second; a session past it is closed.
        public var maximumExpensiveRequestsPerSecond: Int
        /// The most bytes of replies (welcomes, topology copies, deltas, status) queued to all
        /// sessions together. Past it, the sessions that have left theirs unread longest are
        /// closed. Each session also holds at most one unsent copy of the topology or status.
        public var maximumQueuedReplyBytes: Int
        /// The most topics, services, names and ids the partial views of all sessions follow
        /// together; a `register` or `interest` past it is rejected.
        public var maximumInterests: Int
        /// The coordinator's static key pair (protocol version 3); `nil` makes a fresh one at start.
        /// Load one with `NodeIdentity(contentsOfFile:)` so nodes can pin it across restarts.
        public var identity: NodeIdentity? = nil
        /// Which keys may register which node names; `nil` lets every member use any name.
        /// Needs a key: ``MeshCoordinator/start()`` refuses it for an open mesh.
        public var names: NameBindings? = nil

        public init(
            host: String? = nil, port: UInt16 = MeshDefaults.coordinatorPort, authkey: String? = nil,
            logger: MeshLogger = MeshLogger(label: "coordinator"), heartbeatTimeout: Duration = .seconds(3),
            maximumFrameLength: Int = 1 << 20, adminKey: String? = nil, insecure: Bool = false,
            allowForeignHosts: Bool = false, maximumSessionsPerAddress: Int = 4096, maximumNodes: Int = 10_000,
            maximumExpensiveRequestsPerSecond: Int = 20, maximumQueuedReplyBytes: Int = 256 << 20,
            maximumInterests: Int = 100_000
        ) {
            let keyed = !(authkey ?? "").isEmpty
            self.host = host ?? (keyed ? "0.0.0.0" : "127.0.0.1")
            self.port = port
            self.authkey = authkey
            self.logger = logger
            self.heartbeatTimeout = heartbeatTimeout
            self.maximumFrameLength = maximumFrameLength
            self.adminKey = adminKey
            self.insecure = insecure
            self.allowForeignHosts = allowForeignHosts
            self.maximumSessionsPerAddress = maximumSessionsPerAddress
            self.maximumNodes = maximumNodes
            self.maximumExpensiveRequestsPerSecond = maximumExpensiveRequestsPerSecond
            self.maximumQueuedReplyBytes = maximumQueuedReplyBytes
            self.maximumInterests = maximumInterests
        }
    }

    enum Event: Sendable {
        case opened(Connection)
        case control(Connection, ControlMessage)
        case closed(Connection, ConnectionError?)
        case acceptFailed(SocketError)
        /// The check for silent sessions that was due at `due` (see ``checkBy(_:)``).
        case check(due: ContinuousClock.Instant)
        case publish
    }

    struct Session {
        package let connection: Connection
        /// What the handshake was for: node control, inspector or admin.
        package let purpose: Handshake.Purpose
        package var node: NodeRecord?
        var inspector = false
        /// Expensive requests (`sync`, `inspect`, `status`) in the current one-second window.
        var expensiveRequests = 0
        var windowStart = ContinuousClock.now
        var lastHeard: ContinuousClock.Instant
        /// Given the one-interval grace of a stall of the coordinator's own since it last heard
        /// from this session (see ``MeshCoordinator/evictSilentNodes(due:)``).
        var stallGraced = false
        var leaving = false
        var stats = MeshStatistics()
        /// When a delta or welcome last went to this session (a heartbeat answer is then not needed).
        package var lastSent: ContinuousClock.Instant?
        /// Registered in this batch; gets the batch's snapshot in its welcome.
        var awaitingWelcome = false
        /// Registered as a standby (a node with several coordinators that routes by another):
        /// its record is kept, but it gets no topology, deltas or interest answers until `route`.
        var standby = false
        /// A copy of the topology or the status (or a welcome) went to it and may still be in its
        /// queue: the next request for one waits until the queue has drained.
        var copyQueued = false
        /// Copies asked for while one was queued: each sent once, when the queue has drained.
        var deferredCopies: Set<CopyRequest> = []
        /// Since when its queue has not been seen empty (at the last count), for ``ReplyBudget``.
        var backlogSince: ContinuousClock.Instant?
    }

    /// A reply that is a full copy of something large.
    enum CopyRequest: Hashable, Sendable {
        /// The topology (the session's own view, for a partial view): `sync` or `inspect`.
        case topology
        /// The status: `status`.
        case status
    }

    /// A `mesh node kill` waiting for its nodes to leave.
    struct KillRequest {
        let requester: Connection
        var waitingFor: Set<String>
        var stopped: [String]
        let deadline: ContinuousClock.Instant
    }

    /// Forwards connection callbacks from the loop thread into the coordinator's queue.
    ///
    /// Past ``backlogLimit`` unprocessed events it stops reading the connection that pushed,
    /// so a client flooding requests cannot grow the queue without bound.
    private final class Link: ConnectionDelegate {
        let events: EventQueue<Event>
        private let paused = Mutex<[Connection]>([])
        static let backlogLimit = 10_000
        init(events: EventQueue<Event>) { self.events = events }

        /// Resumes the connections paused for backlog (the coordinator calls it after each batch).
        func resumePaused() {
            let resume = paused.withLock { paused -> [Connection] in
                defer { paused.removeAll() }
                return paused
            }
            for connection in resume { connection.setReadingPaused(false) }
        }

        func connectionDidOpen(_ connection: Connection) { events.push(.opened(connection)) }

        func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
            while let header = try decoder.next() {
                guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
                let message = try decoder.withBody(header) { body throws(FrameError) in try ControlMessage.decode(body) }
                events.push(.control(connection, message))
            }
            if events.count > Link.backlogLimit {
                paused.withLock { $0.append(connection) }
                // On the loop thread: in force before this returns, so no resume overtakes it.
                connection.setReadingPaused(true)
            }
        }

        func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
            events.push(.closed(connection, error))
        }
    }

    public let configuration: Configuration
    let logger: MeshLogger
    /// The event loop the coordinator's connections and timers run on: the process's default
    /// loop, chosen here and passed to its listener and connections.
    let loop: EventLoop
    let events = EventQueue<Event>()
    private let link: Link
    var book = TopologyBook()
    /// The partial views of the nodes that asked for one at `register`.
    var views: ViewBook
    /// Nodes that left a moment ago, for partial views that look them up (``DepartedNodes``).
    var departed = DepartedNodes()
    /// What is queued to all sessions together (``Configuration/maximumQueuedReplyBytes``).
    var budget: ReplyBudget
    /// Sessions with copies waiting for their queue to drain.
    var deferred: Set<UInt64> = []
    var sessions: [UInt64: Session] = [:]
    /// Open sessions by source address, for ``Configuration/maximumSessionsPerAddress``.
    private var sessionsPerHost: [String: Int] = [:]
    /// The next check for silent sessions: when it is due, and its timer on the event loop.
    var nextCheck: (due: ContinuousClock.Instant, timer: UInt64)?
    private var listener: Listener?
    let startedAt = ContinuousClock.now
    var kills: [KillRequest] = []
    private var lastPublish = ContinuousClock.now - .seconds(1)
    /// Keeps a flood of refused connections to a few log lines a second.
    var refusals = RateLimitedLog()
    /// The topology's snapshot as JSON, encoded once per version and shared by every reply.
    private var snapshotCache: (version: UInt64, json: [UInt8])?
    /// The whole `topology` reply, built once per version.
    private var topologyFrameCache: (version: UInt64, frame: [UInt8])?
    private var publishPending = false
    /// A node registered since the last publish and waits for its welcome.
    var welcomesDue = false
    /// Publishes so far (for tests: an idle mesh makes none).
    private(set) var publishCount = 0
    /// The shortest time between two topology broadcasts.
    private let publishInterval = Duration.milliseconds(10)
    /// How long a `kill` waits for its nodes to leave before answering.
    let killTimeout = Duration.seconds(5)
    /// Recent joins, departures and refusals, and refusal counters, for the web view and metrics.
    var journal = CoordinatorJournal()
    /// What the limits cut short, for the web view and metrics.
    var limits = CoordinatorLimits()
    /// The last counters of nodes that left, for when the same process registers again.
    var departedCounters = CounterMemory()

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.identity = configuration.identity ?? NodeIdentity()
        self.logger = configuration.logger
        self.loop = EventLoop.shared
        self.link = Link(events: events)
        self.views = ViewBook(maximumInterests: configuration.maximumInterests)
        self.budget = ReplyBudget(limit: configuration.maximumQueuedReplyBytes)
    }

    /// The coordinator's static key pair: nodes learn its public key in the handshake, or pin it.
    public nonisolated let identity: NodeIdentity

    /// The current topology (for tests and the `mesh` tool).
    public var topology: Topology { book.topology }

    /// The address bound by ``start()``, once started.
    public var boundAddress: SocketAddress? { listener?.address }

    /// Everything the web view and `/metrics` show, taken at one instant.
    public func snapshot() -> CoordinatorSnapshot {
        CoordinatorSnapshot(
            address: listener?.address.description ?? "\(configuration.host):\(configuration.port)", status: status,
            topology: book.topology, events: journal.events, refused: journal.refused, limits: currentLimits)
    }

    /// Binds and starts accepting; returns the address with the real port.
    ///
    /// - Throws: `MeshError.invalidAddress(_:reason:)` when the host or port cannot be bound;
    ///   `MeshError.weakKey(length:minimum:)` or `MeshError.guessableKey(estimatedBits:minimumBits:)`
    ///   for a key too short or too easy to guess.
    @discardableResult
    public func start() async throws -> SocketAddress {
        if let listener { return listener.address }
        for key in [configuration.authkey, configuration.adminKey] {
            if let key, !key.isEmpty { try MeshKey.validate(key, allowWeak: configuration.allowWeakKey) }
        }
        let bindAddress = try await SocketAddress.resolve(configuration.host, defaultPort: configuration.port)
        let keyed = !(configuration.authkey ?? "").isEmpty
        if configuration.names != nil, !keyed {
            throw MeshError.invalidNamesFile(
                path: "the configuration",
                reason: "a names file needs a keyed mesh: in an open mesh nothing proves a node's key (set an authkey)")
        }
        if !bindAddress.isLoopback, !keyed, !configuration.insecure {
            throw MeshError.invalidAddress(
                bindAddress.description,
                reason: "refusing to listen beyond loopback with no authkey: anyone who can reach the port could join,"
                    + " read and stop the mesh. Set a key (mesh keygen > mesh.key; --authkey-file mesh.key), or pass"
                    + " --insecure (MESH_INSECURE=1) if an open mesh is meant")
        }
        book.maximumNodes = configuration.maximumNodes
        let options = try connectionOptions()
        let link = self.link
        let events = self.events
        let admission = HandshakeAdmission()
        let loop = self.loop
        do {
            listener = try Listener(
                binding: bindAddress, loop: loop, admission: admission, onError: { events.push(.acceptFailed($0)) },
                onAccept: { socket, peer in
                    _ = Connection.accept(
                        socket, from: peer, options: options, delegate: link, admission: admission, loop: loop)
                })
        } catch {
            throw MeshError.invalidAddress(bindAddress.description, reason: error.description)
        }
        if !bindAddress.isLoopback, !keyed {
            logger.warning(
                "listening on \(bindAddress) with no authkey: anyone who can reach this port can join the mesh"
                    + " and read its topology (use --authkey-file or MESH_AUTHKEY)")
        }
        return listener!.address
    }

    /// Serves until the calling task is cancelled, then closes every connection.
    ///
    /// - Throws: what ``start()`` throws, when not started yet.
    public func run() async throws {
        try await start()
        defer {
            if let armed = nextCheck { loop.cancelTimer(armed.timer) }
            nextCheck = nil
        }
        while !Task.isCancelled {
            let batch = await events.next()
            for event in batch { handle(event) }
            publishSoon()
            scheduleRefusalSummary()
            sendDeferredCopies()
            link.resumePaused()
        }
        shutdown()
    }

    /// Node control and inspectors prove the mesh key; admin connections the admin key.
    private func connectionOptions() throws -> Connection.Options {
        let meshKey = try MeshKey.stretched(configuration.authkey)
        let adminKey = try configuration.adminKey.flatMap { $0.isEmpty ? nil : $0 }.map { try MeshKey.stretched($0) } ?? meshKey
        let mesh: Handshake.Access = meshKey.map { .key($0) } ?? .open
        let admin: Handshake.Access = adminKey.map { .key($0) } ?? .open
        return Connection.Options(
            handshake: .accept(
                served: [.control: mesh, .inspect: mesh, .admin: admin], identity: nil, staticKey: identity.privateKey),
            maximumFrameLength: configuration.maximumFrameLength,
            maximumPendingBytes: 64 << 20)
    }

    // MARK: Events

    private func handle(_ event: Event) {
        switch event {
        case .opened(let connection):
            let host = connection.remote.host
            let fromThere = sessionsPerHost[host] ?? 0
            guard fromThere < configuration.maximumSessionsPerAddress else {
                refusals.log(
                    "refused connections", level: .warning, to: logger,
                    "refused a connection from \(connection.remote): \(fromThere) connections from that address already (limit \(configuration.maximumSessionsPerAddress))")
                connection.send(ControlMessage(.rejected, reason: "too many connections from \(host)").encodedFrame())
                connection.closeAfterFlushing(deadline: .now + .seconds(1))
                return
            }
            let now = ContinuousClock.now
            sessions[connection.id] = Session(connection: connection, purpose: connection.purpose ?? .inspect, lastHeard: now)
            sessionsPerHost[host, default: 0] += 1
            checkBy(now + configuration.heartbeatTimeout)
            logger.debug("connection from \(connection.remote) authenticated for \(connection.purpose?.description ?? "?")")
        case .control(let connection, let message):
            guard sessions[connection.id] != nil else { return }
            sessions[connection.id]?.lastHeard = .now
            sessions[connection.id]?.stallGraced = false
            handle(message, from: connection)
        case .closed(let connection, let error):
            closed(connection, error: error)
        case .acceptFailed(let error):
            logger.error("accepting a connection failed: \(error)")
        case .check(let due):
            if nextCheck?.due == due { nextCheck = nil }
            evictSilentNodes(due: due)
            makeRoom(for: 0, sparing: nil, recount: true)
            for line in refusals.flush(now: .now) { logger.warning(line) }
        case .publish:
            publishPending = false
            publish()
        }
    }

    private func handle(_ message: ControlMessage, from connection: Connection) {
        guard let session = sessions[connection.id] else { return }
        // A session that said goodbye is over: nothing it sends after counts (no ghost records).
        if session.leaving { return }
        if [.sync, .inspect, .status].contains(message.type), !allowExpensiveRequest(on: connection) { return }
        if let node = session.node {
            handle(message, from: node, on: connection)
        } else if session.inspector {
            handleTool(message, on: connection)
        } else if session.purpose == .control {
            guard message.type == .register else {
                return reject(connection, "expected register first, got \(message.type)")
            }
            register(
                message.node, view: message.view, interest: message.interest, stats: message.stats,
                standby: message.standby == true, on: connection)
        } else {
            guard message.type == .inspect else {
                return reject(connection, "expected inspect first, got \(message.type)")
            }
            sessions[connection.id]?.inspector = true
            requestCopy(.topology, on: connection)
        }
    }

    /// Counts a request that costs a full copy of the topology or the status; past the limit the
    /// session is closed (a node asks for one only after a missed delta).
    private func allowExpensiveRequest(on connection: Connection) -> Bool {
        guard var session = sessions[connection.id] else { return false }
        let now = ContinuousClock.now
        if now - session.windowStart >= .seconds(1) {
            session.windowStart = now
            session.expensiveRequests = 0
        }
        session.expensiveRequests += 1
        sessions[connection.id] = session
        guard session.expensiveRequests <= configuration.maximumExpensiveRequestsPerSecond else {
            reject(
                connection,
                "more than \(configuration.maximumExpensiveRequestsPerSecond) sync/inspect/status requests in one second")
            return false
        }
        return true
    }

    /// Sends a reply within the budget of what all sessions may have queued; a client whose own
    /// queue is full is not reading and is closed.
    func reply(_ frame: [UInt8], on connection: Connection) {
        makeRoom(for: frame.count, sparing: connection.id)
        let result = connection.send(frame)
        if result == .queued { budget.queued(frame.count) }
        guard result == .full else { return }
        let who = sessions[connection.id]?.node.map { "\($0.name) (\($0.id))" } ?? "a client"
        logger.warning("\(who) at \(connection.remote) is not reading its replies; disconnecting it")
        connection.close(error: .protocolViolation("control backlog full"))
    }

    /// The current topology as a `topology` reply, encoded once per version.
    func topologyFrame() -> [UInt8] {
        let version = book.topology.version
        if let cache = topologyFrameCache, cache.version == version { return cache.frame }
        let frame = Frame(
            kind: FrameKind.control.rawValue,
            body: Array("{\"topology\":".utf8) + snapshotJSON() + Array(",\"type\":\"topology\"}".utf8)
        ).encoded
        topologyFrameCache = (version, frame)
        return frame
    }

    /// A `welcome` for `node` with `snapshot` (JSON), by default the whole topology's, shared. A
    /// partial view's welcome (with its own snapshot) says `"view":"partial"`.
    private func welcomeFrame(for node: NodeRecord?, snapshot: [UInt8]? = nil) -> [UInt8] {
        let nodeJSON = (try? ControlMessage.encoder.encode(node)).map(Array.init) ?? Array("null".utf8)
        return Frame(
            kind: FrameKind.control.rawValue,
            body: Array("{\"node\":".utf8) + nodeJSON + Array(",\"topology\":".utf8) + (snapshot ?? snapshotJSON())
                + Array((snapshot == nil ? ",\"type\":\"welcome\"}" : ",\"type\":\"welcome\",\"view\":\"partial\"}").utf8)
        ).encoded
    }

    /// A standby's `welcome`: its own record as stored, and a topology of that record alone
    /// (the record encoded once, for both).
    private func standbyWelcomeFrame(for node: NodeRecord?) -> [UInt8] {
        let stored = node.flatMap { book.topology.nodes[$0.id] } ?? node
        let nodeJSON = (try? ControlMessage.encoder.encode(stored)).map(Array.init) ?? Array("null".utf8)
        return Frame(
            kind: FrameKind.control.rawValue,
            body: Array("{\"node\":".utf8) + nodeJSON + Array(",\"standby\":true,\"topology\":{\"nodes\":[".utf8)
                + (stored == nil ? [] : nodeJSON) + Array("],\"version\":0},\"type\":\"welcome\"}".utf8)
        ).encoded
    }

    private func snapshotJSON() -> [UInt8] {
        let version = book.topology.version
        if let cache = snapshotCache, cache.version == version { return cache.json }
        let json = (try? ControlMessage.encoder.encode(book.topology.snapshot)).map(Array.init) ?? Array("null".utf8)
        snapshotCache = (version, json)
        return json
    }

    /// A registered node's request.
    private func handle(_ message: ControlMessage, from node: NodeRecord, on connection: Connection) {
        // A node with several coordinators numbers the changes of its record; the number is
        // compared between coordinators (`mesh status`), never routed by.
        if let version = message.version, book.noteVersion(node.id, version) { snapshotCache = nil }
        switch message.type {
        case .listen, .unlisten, .publish:
            guard let topic = message.topic else { return reject(connection, "\(message.type) without a topic") }
            do throws(TopologyBook.Rejection) {
                switch message.type {
                case .listen: try book.listen(node.id, to: topic, type: message.messageType)
                case .publish: try book.publish(node.id, on: topic, type: message.messageType)
                default: book.unlisten(node.id, from: topic)
                }
                logger.debug("\(node.name) (\(node.id)) \(message.type)s \"\(topic)\"")
            } catch .typeMismatch(let reason) {
                // The node asked for something the mesh cannot give; its session is fine.
                logger.info("refused \(message.type) of \"\(topic)\": \(reason)")
                connection.send(ControlMessage(.refused, topic: topic, reason: reason).encodedFrame())
            } catch let error where message.type == .publish {
                // A send's declaration is for people, never for routing: a full mesh (or a bad
                // topic) refuses it, and the node sends on undeclared.
                logger.info("refused publish of \"\(topic.prefix(80))\": \(error)")
                connection.send(ControlMessage(.refused, topic: topic, reason: error.description).encodedFrame())
            } catch {
                reject(connection, "\(message.type) \"\(topic.prefix(80))\": \(error)")
            }
        case .serve, .unserve:
            guard let service = message.service else { return reject(connection, "\(message.type) without a service") }
            do {
                if message.type == .serve {
                    try book.serve(node.id, service)
                } else {
                    book.unserve(node.id, service)
                }
                logger.debug("\(node.name) (\(node.id)) \(message.type)s \"\(service)\"")
            } catch {
                reject(connection, "\(message.type) \"\(service.prefix(80))\": \(error)")
            }
        case .sync:
            requestCopy(.topology, on: connection)
        case .route:
            route(message, from: node, on: connection)
        case .interest:
            // A standby is asked nothing (PROTOCOL.md §7.2); one asked anyway leaves it unanswered.
            if sessions[connection.id]?.standby == true { return }
            guard views.isPartial(connection.id) else {
                return reject(connection, "interest from a node that registered for the full view")
            }
            let interest = message.interest ?? ViewInterest()
            do {
                try views.declare(connection.id, interest)  // answered by the next publish
            } catch {
                reject(connection, "interest: \(error)")
            }
        case .heartbeat:
            if let stats = message.stats { keep(stats, from: node, on: connection) }
            answerHeartbeat(on: connection)
        case .bye:
            sessions[connection.id]?.leaving = true
            remove(node, from: connection, reason: "left")
            connection.closeAfterFlushing(deadline: .now + .seconds(1))
        default:
            reject(connection, "unexpected \(message.type) from a registered node")
        }
    }

    func reject(_ connection: Connection, _ reason: String) {
        // A client can be rejected as fast as it can reconnect: a few lines a second, then a count.
        refusals.log("rejected connections", level: .warning, to: logger, "rejected connection from \(connection.remote): \(reason)")
        sessions[connection.id]?.leaving = true  // nothing more from it counts
        journal.refused(peer: connection.remote, .rejected, reason: reason)
        connection.send(ControlMessage(.rejected, reason: reason).encodedFrame())
        connection.closeAfterFlushing(deadline: .now + .seconds(1))
        if let node = sessions[connection.id]?.node { remove(node, from: connection, reason: "rejected: \(reason)") }
    }

    private func closed(_ connection: Connection, error: ConnectionError?) {
        guard let session = forget(connection) else {
            // Never got past the handshake, or already evicted (and logged) for silence.
            if case .handshake(.closedSilently) = error {
                // A port check (a node with nothing configured looks for a coordinator on its host).
                logger.debug("connection from \(connection.remote) closed before sending anything (a port check)")
            } else if case .handshake(let failure) = error {
                refusals.log(
                    "refused connections", level: .warning, to: logger,
                    "rejected connection from \(connection.remote): \(failure)")
                journal.refused(peer: connection.remote, RefusalReason(failure), reason: failure.description)
            } else if let error {
                logger.debug("closed connection from \(connection.remote): \(error)")
            }
            return
        }
        if let node = session.node, !session.leaving {
            let reason = error.map { "connection lost: \($0)" } ?? "disconnected"
            remove(node, from: connection, reason: reason)
        } else if !session.inspector, session.node == nil, !session.leaving, let error {
            refusals.log(
                "rejected connections", level: .warning, to: logger,
                "closed connection from \(connection.remote) before it registered: \(error)")
        }
    }

    func remove(_ node: NodeRecord, from connection: Connection, reason: String, evicted: Bool = false) {
        views.close(connection.id)
        guard book.leave(node.id) != nil else { return }
        rememberDeparted(node)
        journal.left(node, peer: connection.remote, reason: reason, evicted: evicted)
        if let stats = sessions[connection.id]?.stats, stats != MeshStatistics() { departedCounters.remember(stats, for: node.id) }
        sessions[connection.id]?.node = nil
        for index in kills.indices where kills[index].waitingFor.remove(node.id) != nil {
            kills[index].stopped.append(node.id)
        }
        logger.info("node left: \(node.name) (\(node.id)) at \(node.host):\(node.port): \(reason)")
    }

    /// Removes a session and its view, keeping the count per address in step.
    @discardableResult
    func forget(_ connection: Connection) -> Session? {
        views.close(connection.id)
        guard let session = sessions.removeValue(forKey: connection.id) else { return nil }
        if let node = session.node, session.stats != MeshStatistics() { departedCounters.remember(session.stats, for: node.id) }
        let host = session.connection.remote.host
        sessionsPerHost[host, default: 1] -= 1
        if sessionsPerHost[host] == 0 { sessionsPerHost[host] = nil }
        return session
    }

    /// Publishes now, or, when the last publish was under ``publishInterval`` ago, once that
    /// much time has passed: a storm of joins then costs one delta per interval to every node,
    /// not one per join (1,000 nodes joining at once would otherwise mean a million deltas).
    ///
    /// Only when there is something to send: a batch that changed nothing (heartbeats, a tick, the
    /// deferred publish itself) schedules nothing, so an idle mesh leaves the coordinator asleep.
    private func publishSoon() {
        guard !publishPending, welcomesDue || book.hasUnpublishedChanges || views.hasPendingDeltas else { return }
        let wait = publishInterval - lastPublish.duration(to: .now)
        guard wait > .zero else { return publish() }
        publishPending = true
        let events = self.events
        loop.schedule(after: wait) { events.push(.publish) }
    }

    /// Sends what this batch of events changed: one snapshot for every node that registered in
    /// it, one delta (encoded once) for every other full-view session, and to each partial-view
    /// session the changes that concern it.
    private func publish() {
        lastPublish = .now
        welcomesDue = false
        publishCount += 1
        let delta = book.takeDelta()
        for change in delta?.changes ?? [] { views.record(change) }
        let welcomed = sessions.values.filter(\.awaitingWelcome)
        let welcomedIDs = Set(welcomed.map(\.connection.id))
        let now = ContinuousClock.now
        for session in welcomed {
            sessions[session.connection.id]?.awaitingWelcome = false
            sessions[session.connection.id]?.lastSent = now
            sessions[session.connection.id]?.copyQueued = true
            if session.standby {
                reply(standbyWelcomeFrame(for: session.node), on: session.connection)
            } else if let view = views.snapshot(session.connection.id) {
                reply(welcomeFrame(for: session.node, snapshot: (try? ControlMessage.encoder.encode(view)).map(Array.init)), on: session.connection)
            } else {
                reply(welcomeFrame(for: session.node), on: session.connection)
            }
        }
        let recent = departed
        for (id, partial, answers) in views.takeDeltas(departed: { recent.record($0, at: now) }) {
            guard let session = sessions[id] else { continue }
            sessions[id]?.lastSent = now
            reply(ControlMessage(.delta, delta: partial, interest: answers).encodedFrame(), on: session.connection)
        }
        settleKills()
        guard let delta else { return }
        let recipients = sessions.values.filter { session in
            ((session.node != nil && !session.awaitingWelcome && !session.standby) || session.inspector)
                && !welcomedIDs.contains(session.connection.id) && !views.isPartial(session.connection.id)
        }
        // Partial views and standbys only (a join storm of them): no one to encode it for.
        guard !recipients.isEmpty else { return }
        let frame = ControlMessage(.delta, delta: delta).encodedFrame()
        makeRoom(for: frame.count * recipients.count, sparing: nil)
        for session in recipients {
            sessions[session.connection.id]?.lastSent = now
            let result = session.connection.send(frame)
            if result == .queued { budget.queued(frame.count) }
            if result == .full {
                logger.warning(
                    "\(session.node?.name ?? "inspector") at \(session.connection.remote) is not reading topology updates; disconnecting it"
                )
                session.connection.close(error: .protocolViolation("control backlog full"))
            }
        }
    }

    private func shutdown() {
        listener?.close()
        listener = nil
        for session in sessions.values {
            session.connection.closeAfterFlushing(deadline: .now + .milliseconds(500))
        }
        sessions.removeAll()
        sessionsPerHost.removeAll()
        events.finish()
        logger.info("coordinator stopped")
    }
}
