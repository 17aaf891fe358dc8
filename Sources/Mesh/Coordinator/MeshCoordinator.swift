import Foundation
import MeshCrypto

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
    }

    private struct Session {
        let connection: Connection
        var node: NodeRecord?
        var inspector = false
        var lastHeard: ContinuousClock.Instant
        var leaving = false
    }

    /// Forwards connection callbacks from the loop thread into the coordinator's queue.
    private final class Link: ConnectionDelegate {
        let events: EventQueue<Event>
        init(events: EventQueue<Event>) { self.events = events }

        func connectionDidOpen(_ connection: Connection) { events.push(.opened(connection)) }

        func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
            while let header = try decoder.next() {
                guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
                let message = try decoder.withBody(header) { body throws(FrameError) in try ControlMessage.decode(body) }
                events.push(.control(connection, message))
            }
        }

        func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
            events.push(.closed(connection, error))
        }
    }

    public let configuration: Configuration
    private let logger: MeshLogger
    private let events = EventQueue<Event>()
    private var book = TopologyBook()
    private var sessions: [UInt64: Session] = [:]
    private var listener: Listener?
    private let startedAt = Date()

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.logger = configuration.logger
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
        let link = Link(events: events)
        let events = self.events
        do {
            listener = try Listener(
                binding: bindAddress, onError: { events.push(.acceptFailed($0)) },
                onAccept: { socket, peer in
                    _ = Connection.accept(socket, from: peer, options: options, delegate: link)
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
        let tickInterval = min(configuration.heartbeatTimeout / 4, .milliseconds(500))
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
            publish()
        }
        shutdown()
    }

    private var connectionOptions: Connection.Options {
        Connection.Options(
            key: configuration.authkey.map { SymmetricKey(data: Array($0.utf8)) },
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
        }
    }

    private func handle(_ message: ControlMessage, from connection: Connection) {
        guard let session = sessions[connection.id] else { return }
        if let node = session.node {
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
                    logger.warning("\(node.name) (\(node.id)) at \(connection.remote): \(error)")
                }
            case .sync:
                connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
            case .heartbeat:
                break
            case .bye:
                sessions[connection.id]?.leaving = true
                remove(node, from: connection, reason: "left")
                connection.closeAfterFlushing(deadline: .now + .seconds(1))
            default:
                reject(connection, "unexpected \(message.type) from a registered node")
            }
            return
        }
        if session.inspector {
            if message.type == .inspect || message.type == .sync {
                connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
            }
            return
        }
        switch message.type {
        case .register:
            guard var node = message.node else { return reject(connection, "register without a node record") }
            if node.host.isEmpty { node.host = connection.remote.host }
            node.joined = Date().timeIntervalSince1970
            do {
                let stored = try book.join(node)
                sessions[connection.id]?.node = stored
                connection.send(
                    ControlMessage(.welcome, node: stored, topology: book.topology.snapshot).encodedFrame())
                logger.info("node joined: \(stored.name) (\(stored.id)) at \(stored.host):\(stored.port)")
            } catch {
                reject(connection, error.description)
            }
        case .inspect:
            sessions[connection.id]?.inspector = true
            connection.send(ControlMessage(.topology, topology: book.topology.snapshot).encodedFrame())
        default:
            reject(connection, "expected register or inspect first, got \(message.type)")
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
            // Never got past the handshake.
            if let error { logger.warning("rejected connection from \(connection.remote): \(error)") }
            return
        }
        if let node = session.node, !session.leaving {
            let reason = error.map { "connection lost: \($0)" } ?? "disconnected"
            remove(node, from: connection, reason: reason)
        }
    }

    private func remove(_ node: NodeRecord, from connection: Connection, reason: String) {
        guard book.leave(node.id) != nil else { return }
        sessions[connection.id]?.node = nil
        logger.info("node left: \(node.name) (\(node.id)) at \(node.host):\(node.port): \(reason)")
    }

    private func evictSilentNodes() {
        let cutoff = ContinuousClock.now - configuration.heartbeatTimeout
        for (_, session) in sessions where session.lastHeard < cutoff {
            let seconds = Double(configuration.heartbeatTimeout.components.seconds)
            if let node = session.node {
                remove(node, from: session.connection, reason: "no heartbeat for \(seconds) s")
            }
            session.connection.close(error: .protocolViolation("no heartbeat"))
            sessions[session.connection.id] = nil
        }
    }

    /// Sends the changes gathered in this batch to every registered node, encoded once.
    private func publish() {
        guard let delta = book.takeDelta() else { return }
        let frame = ControlMessage(.delta, delta: delta).encodedFrame()
        for session in sessions.values where session.node != nil || session.inspector {
            if session.connection.send(frame) == .full {
                logger.warning("\(session.node?.name ?? "inspector") at \(session.connection.remote) is not reading topology updates; disconnecting it")
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

    /// `$MESH_AUTHKEY`, when set and not empty.
    public static var authkeyFromEnvironment: String? {
        ProcessInfo.processInfo.environment["MESH_AUTHKEY"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
