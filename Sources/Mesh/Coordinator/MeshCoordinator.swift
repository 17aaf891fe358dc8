import Foundation
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
        /// The address to bind; `0.0.0.0` is every IPv4 interface.
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

        public init(
            host: String = "0.0.0.0", port: UInt16 = MeshDefaults.coordinatorPort, authkey: String? = nil,
            logger: MeshLogger = MeshLogger(label: "coordinator"), heartbeatTimeout: Duration = .seconds(3),
            maximumFrameLength: Int = 1 << 20
        ) {
            self.host = host
            self.port = port
            self.authkey = authkey
            self.logger = logger
            self.heartbeatTimeout = heartbeatTimeout
            self.maximumFrameLength = maximumFrameLength
        }
    }

    private enum Event: Sendable {
        case opened(Connection)
        case control(Connection, ControlMessage)
        case closed(Connection, ConnectionError?)
        case acceptFailed(SocketError)
        case tick
        case publish
    }

    private struct Session {
        let connection: Connection
        var node: NodeRecord?
        var inspector = false
        var lastHeard: ContinuousClock.Instant
        var leaving = false
        var stats = MeshStatistics()
        /// When a delta or welcome last went to this session (a heartbeat answer is then not needed).
        var lastSent: ContinuousClock.Instant?
        /// Registered in this batch; gets the batch's snapshot in its welcome.
        var awaitingWelcome = false
    }

    /// A `mesh node kill` waiting for its nodes to leave.
    private struct KillRequest {
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
            paused.withLock { paused in
                for connection in paused { connection.setReadingPaused(false) }
                paused.removeAll()
            }
        }

        func connectionDidOpen(_ connection: Connection) { events.push(.opened(connection)) }

        func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
            while let header = try decoder.next() {
                guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
                let message = try decoder.withBody(header) { body throws(FrameError) in try ControlMessage.decode(body) }
                events.push(.control(connection, message))
            }
            if events.count > Link.backlogLimit {
                paused.withLock { paused in
                    paused.append(connection)
                    connection.setReadingPaused(true)  // under the lock, so no resume overtakes it
                }
            }
        }

        func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
            events.push(.closed(connection, error))
        }
    }

    public let configuration: Configuration
    private let logger: MeshLogger
    private let events = EventQueue<Event>()
    private let link: Link
    private var book = TopologyBook()
    private var sessions: [UInt64: Session] = [:]
    private var listener: Listener?
    private let startedAt = ContinuousClock.now
    private var kills: [KillRequest] = []
    private var lastPublish = ContinuousClock.now - .seconds(1)
    private var publishPending = false
    /// The shortest time between two topology broadcasts.
    private let publishInterval = Duration.milliseconds(10)
    /// How long a `kill` waits for its nodes to leave before answering.
    private let killTimeout = Duration.seconds(5)

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.logger = configuration.logger
        self.link = Link(events: events)
    }

    /// The current topology (for tests and the `mesh` tool).
    public var topology: Topology { book.topology }

    /// The address bound by ``start()``, once started.
    public var boundAddress: SocketAddress? { listener?.address }

    /// Binds and starts accepting; returns the address with the real port.
    ///
    /// - Throws: ``MeshError/invalidAddress(_:reason:)`` when the host or port cannot be bound.
    @discardableResult
    public func start() async throws -> SocketAddress {
        if let listener { return listener.address }
        let bindAddress = try await SocketAddress.resolve(configuration.host, defaultPort: configuration.port)
        let options = connectionOptions
        let link = self.link
        let events = self.events
        let admission = HandshakeAdmission()
        do {
            listener = try Listener(
                binding: bindAddress, admission: admission, onError: { events.push(.acceptFailed($0)) },
                onAccept: { socket, peer in
                    _ = Connection.accept(socket, from: peer, options: options, delegate: link, admission: admission)
                })
        } catch {
            throw MeshError.invalidAddress(bindAddress.description, reason: error.description)
        }
        if !bindAddress.isLoopback, configuration.authkey == nil {
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
        let events = self.events
        let tickInterval = min(configuration.heartbeatTimeout / 8, .milliseconds(250))
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: tickInterval)
                events.push(.tick)
            }
        }
        defer { ticker.cancel() }
        while !Task.isCancelled {
            let batch = await events.next()
            for event in batch { handle(event) }
            publishSoon()
            link.resumePaused()
        }
        shutdown()
    }

    private var connectionOptions: Connection.Options {
        Connection.Options(
            key: configuration.authkey.flatMap { $0.isEmpty ? nil : SymmetricKey(data: Array($0.utf8)) },
            maximumFrameLength: configuration.maximumFrameLength,
            maximumPendingBytes: 64 << 20)
    }

    // MARK: Events

    private func handle(_ event: Event) {
        switch event {
        case .opened(let connection):
            sessions[connection.id] = Session(connection: connection, lastHeard: .now)
            logger.debug("connection from \(connection.remote) authenticated")
        case .control(let connection, let message):
            guard sessions[connection.id] != nil else { return }
            sessions[connection.id]?.lastHeard = .now
            handle(message, from: connection)
        case .closed(let connection, let error):
            closed(connection, error: error)
        case .acceptFailed(let error):
            logger.error("accepting a connection failed: \(error)")
        case .tick:
            evictSilentNodes()
        case .publish:
            publishPending = false
            publish()
        }
    }

    private func handle(_ message: ControlMessage, from connection: Connection) {
        guard let session = sessions[connection.id] else { return }
        if let node = session.node {
            handle(message, from: node, on: connection)
        } else if session.inspector {
            handleTool(message, on: connection)
        } else {
            switch message.type {
            case .register:
                register(message.node, on: connection)
            case .inspect:
                sessions[connection.id]?.inspector = true
                connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
            default:
                reject(connection, "expected register or inspect first, got \(message.type)")
            }
        }
    }

    /// A registered node's request.
    private func handle(_ message: ControlMessage, from node: NodeRecord, on connection: Connection) {
        switch message.type {
        case .listen, .unlisten:
            guard let topic = message.topic else { return reject(connection, "\(message.type) without a topic") }
            do {
                if message.type == .listen {
                    try book.listen(node.id, to: topic)
                } else {
                    book.unlisten(node.id, from: topic)
                }
                logger.debug("\(node.name) (\(node.id)) \(message.type)s \"\(topic)\"")
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
            connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
        case .heartbeat:
            if let stats = message.stats { sessions[connection.id]?.stats = stats }
            answerHeartbeat(on: connection)
        case .bye:
            sessions[connection.id]?.leaving = true
            remove(node, from: connection, reason: "left")
            connection.closeAfterFlushing(deadline: .now + .seconds(1))
        default:
            reject(connection, "unexpected \(message.type) from a registered node")
        }
    }

    /// A request from the `mesh` tool (an inspecting connection).
    private func handleTool(_ message: ControlMessage, on connection: Connection) {
        switch message.type {
        case .inspect, .sync:
            connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
        case .heartbeat:
            answerHeartbeat(on: connection)
        case .status:
            connection.send(ControlMessage(.status, status: status).encodedFrame())
        case .kill:
            kill(message.target ?? "", requestedBy: connection)
        default:
            reject(connection, "unexpected \(message.type) from an inspecting client")
        }
    }

    private static let heartbeatFrame = ControlMessage(.heartbeat).encodedFrame()

    /// Shows a node the coordinator is alive; skipped when something else went to it lately.
    private func answerHeartbeat(on connection: Connection) {
        let now = ContinuousClock.now
        guard let lastSent = sessions[connection.id]?.lastSent, now - lastSent < .milliseconds(500) else {
            connection.send(Self.heartbeatFrame)
            sessions[connection.id]?.lastSent = now
            return
        }
    }

    private func register(_ record: NodeRecord?, on connection: Connection) {
        guard var node = record else { return reject(connection, "register without a node record") }
        if node.host.isEmpty { node.host = connection.remote.host }
        guard SocketAddress.parse(node.host, defaultPort: node.port).map({ $0.port == node.port }) == true,
            !node.host.hasPrefix("unix:")
        else {
            return reject(connection, "host \"\(node.host.prefix(80))\" is not a numeric IP address (resolve names before registering)")
        }
        node.joined = Date().timeIntervalSince1970
        do {
            let stored = try book.join(node)
            sessions[connection.id]?.node = stored
            sessions[connection.id]?.awaitingWelcome = true
            logger.info("node joined: \(stored.name) (\(stored.id)) at \(stored.host):\(stored.port)")
        } catch {
            reject(connection, error.description)
        }
    }

    /// The coordinator's view for `mesh status`.
    private var status: CoordinatorStatus {
        let now = ContinuousClock.now
        let nodes = sessions.values.compactMap { session -> NodeStatus? in
            guard let node = session.node else { return nil }
            return NodeStatus(node: node, stats: session.stats, lastHeard: seconds(session.lastHeard.duration(to: now)))
        }
        return CoordinatorStatus(
            uptime: seconds(startedAt.duration(to: now)), version: book.topology.version,
            nodes: nodes.sorted { $0.node.id < $1.node.id })
    }

    /// Asks the nodes matching `target` (a name, an id, or "*") to stop; answers when they left.
    private func kill(_ target: String, requestedBy requester: Connection) {
        let matching = sessions.values.compactMap(\.node).filter { target == "*" || $0.name == target || $0.id == target }
        guard !matching.isEmpty else {
            requester.send(ControlMessage(.killed, reason: "no node is named or has the id \"\(target)\"", stopped: [], remaining: []).encodedFrame())
            return
        }
        let frame = ControlMessage(.shutdown, reason: "requested by mesh node kill from \(requester.remote)").encodedFrame()
        for session in sessions.values where matching.contains(where: { $0.id == session.node?.id }) {
            session.connection.send(frame)
        }
        logger.info("asked \(matching.count) node(s) to stop (\(target == "*" ? "all" : target)) for \(requester.remote)")
        kills.append(
            KillRequest(requester: requester, waitingFor: Set(matching.map(\.id)), stopped: [], deadline: .now + killTimeout))
    }

    /// Answers kill requests whose nodes have all left or whose time is up.
    private func settleKills(now: ContinuousClock.Instant = .now) {
        kills.removeAll { request in
            guard request.waitingFor.isEmpty || now >= request.deadline else { return false }
            request.requester.send(
                ControlMessage(
                    .killed, stopped: request.stopped.sorted(), remaining: request.waitingFor.sorted()
                ).encodedFrame())
            return true
        }
    }

    private func reject(_ connection: Connection, _ reason: String) {
        logger.warning("rejected connection from \(connection.remote): \(reason)")
        connection.send(ControlMessage(.rejected, reason: reason).encodedFrame())
        connection.closeAfterFlushing(deadline: .now + .seconds(1))
        if let node = sessions[connection.id]?.node { remove(node, from: connection, reason: "rejected: \(reason)") }
    }

    private func closed(_ connection: Connection, error: ConnectionError?) {
        guard let session = sessions.removeValue(forKey: connection.id) else {
            // Never got past the handshake, or already evicted (and logged) for silence.
            if case .handshake(let failure) = error {
                logger.warning("rejected connection from \(connection.remote): \(failure)")
            } else if let error {
                logger.debug("closed connection from \(connection.remote): \(error)")
            }
            return
        }
        if let node = session.node, !session.leaving {
            let reason = error.map { "connection lost: \($0)" } ?? "disconnected"
            remove(node, from: connection, reason: reason)
        } else if !session.inspector, session.node == nil, !session.leaving, let error {
            logger.warning("closed connection from \(connection.remote) before it registered: \(error)")
        }
    }

    private func remove(_ node: NodeRecord, from connection: Connection, reason: String) {
        guard book.leave(node.id) != nil else { return }
        sessions[connection.id]?.node = nil
        for index in kills.indices where kills[index].waitingFor.remove(node.id) != nil {
            kills[index].stopped.append(node.id)
        }
        logger.info("node left: \(node.name) (\(node.id)) at \(node.host):\(node.port): \(reason)")
    }

    private func evictSilentNodes() {
        let now = ContinuousClock.now
        let cutoff = now - configuration.heartbeatTimeout
        let limit = String(format: "%.1f", seconds(configuration.heartbeatTimeout))
        for (_, session) in sessions where session.lastHeard < cutoff {
            if let node = session.node {
                remove(node, from: session.connection, reason: "no heartbeat for \(limit) s")
            } else {
                logger.warning("closed connection from \(session.connection.remote): silent for \(limit) s")
            }
            session.connection.close(error: .protocolViolation("no heartbeat"))
            sessions[session.connection.id] = nil
        }
        settleKills(now: now)
    }

    /// Publishes now, or, when the last publish was under ``publishInterval`` ago, once that
    /// much time has passed: a storm of joins then costs one delta per interval to every node,
    /// not one per join (1,000 nodes joining at once would otherwise mean a million deltas).
    private func publishSoon() {
        guard !publishPending else { return }
        let wait = publishInterval - lastPublish.duration(to: .now)
        guard wait > .zero else { return publish() }
        publishPending = true
        let events = self.events
        Task {
            try? await Task.sleep(for: wait)
            events.push(.publish)
        }
    }

    /// Sends what this batch of events changed: one snapshot for every node that registered in
    /// it, and one delta for everyone else, each encoded once.
    private func publish() {
        lastPublish = .now
        let delta = book.takeDelta()
        let welcomed = sessions.values.filter(\.awaitingWelcome)
        let welcomedIDs = Set(welcomed.map(\.connection.id))
        if !welcomed.isEmpty {
            let snapshot = book.topology.snapshot
            for session in welcomed {
                sessions[session.connection.id]?.awaitingWelcome = false
                session.connection.send(ControlMessage(.welcome, node: session.node, topology: snapshot).encodedFrame())
            }
        }
        settleKills()
        guard let delta else { return }
        let frame = ControlMessage(.delta, delta: delta).encodedFrame()
        let now = ContinuousClock.now
        for session in sessions.values where (session.node != nil && !session.awaitingWelcome) || session.inspector {
            if welcomedIDs.contains(session.connection.id) { continue }
            sessions[session.connection.id]?.lastSent = now
            if session.connection.send(frame) == .full {
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
        events.finish()
        logger.info("coordinator stopped")
    }
}

/// Defaults shared by the coordinator, the nodes and the `mesh` tool.
public enum MeshDefaults {
    /// 6374 spells MESH on a phone keypad.
    public static let coordinatorPort: UInt16 = 6374
    /// Where nodes look for the coordinator when neither an argument nor `$MESH_COORDINATOR` says.
    public static let coordinatorAddress = "127.0.0.1:6374"
    /// This build's version, printed by `--version`.
    public static let version = "0.1.0"

    /// `$MESH_COORDINATOR`, else ``coordinatorAddress``.
    public static var coordinatorFromEnvironment: String {
        ProcessInfo.processInfo.environment["MESH_COORDINATOR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? coordinatorAddress
    }

    /// A short name for this host and network namespace: 12 hex digits of the SHA-256 of the
    /// machine id (or host name) and the namespace's inode. Nodes with the same value can reach
    /// each other's abstract Unix sockets.
    public static let localScope: String = {
        let machineID = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let host = machineID.flatMap { $0.isEmpty ? nil : $0 } ?? ProcessInfo.processInfo.hostName
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? ""
        return SHA256.hash(data: Array("\(host)/\(namespace)".utf8)).description.prefix(12).description
    }()

    /// `$MESH_AUTHKEY`, when set and not empty.
    public static var authkeyFromEnvironment: String? {
        ProcessInfo.processInfo.environment["MESH_AUTHKEY"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// A duration in seconds, as a `Double`.
func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}
