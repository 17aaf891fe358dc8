import Foundation
import Mesh
import MeshCrypto

/// A client that looks at the mesh through the coordinator without joining it: the `mesh`
/// tool's `node list`, `node kill`, `topic list` and `status` are built on it.
///
/// ```swift
/// let inspector = try await MeshInspector.connect(to: "127.0.0.1:6374", authkey: nil)
/// let topology = try await inspector.topology()
/// await inspector.close()
/// ```
package actor MeshInspector {
    private let connection: Connection
    private let events: EventQueue<Event>
    private let address: String
    private var backlog: [ControlMessage] = []
    private var heartbeat: Task<Void, Never>?

    private enum Event: Sendable {
        case opened
        case message(ControlMessage)
        case closed(ConnectionError?)
    }

    private final class Link: ConnectionDelegate {
        let events: EventQueue<Event>
        init(events: EventQueue<Event>) { self.events = events }

        func connectionDidOpen(_ connection: Connection) { events.push(.opened) }

        func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
            while let header = try decoder.next() {
                guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
                events.push(.message(try decoder.withBody(header) { try ControlMessage.decode($0) }))
            }
        }

        func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
            events.push(.closed(error))
        }
    }

    private init(connection: Connection, events: EventQueue<Event>, address: String) {
        self.connection = connection
        self.events = events
        self.address = address
    }

    /// Connects, authenticates and reads the topology once, within `timeout`.
    ///
    /// - Parameters:
    ///   - coordinator: `HOST:PORT`.
    ///   - authkey: the mesh key, or `nil` for an open mesh: enough to read the topology.
    ///   - adminKey: when given, connects with the admin credential instead (needed for
    ///     ``status(timeout:)`` and ``kill(_:timeout:)``): the coordinator's admin key, which is
    ///     the mesh key unless the coordinator was given another. Pass the mesh key itself when
    ///     the coordinator has no separate admin key.
    ///   - timeout: for connecting and for the first reply.
    ///   - loop: the event loop the connection runs on; the process's default unless told.
    /// - Throws: ``MeshError`` saying why: coordinator unreachable, authentication failed, protocol mismatch.
    ///
    /// `coordinator` may list several, separated by commas: they are tried in order and the first
    /// that answers is used (each within `timeout`); when none does, the error names each one's failure.
    package static func connect(
        to coordinator: String, authkey: String?, adminKey: String? = nil, timeout: Duration = .seconds(5),
        loop: EventLoop = .shared
    ) async throws -> MeshInspector {
        let list = MeshDefaults.coordinatorList(coordinator)
        guard list.count > 1 else {
            return try await connectOne(to: coordinator, authkey: authkey, adminKey: adminKey, timeout: timeout, loop: loop)
        }
        var failures: [String] = []
        for address in list {
            do {
                return try await connectOne(to: address, authkey: authkey, adminKey: adminKey, timeout: timeout, loop: loop)
            } catch MeshError.coordinatorUnreachable(let address, let reason) {
                failures.append("\(address): \(reason)")
            } catch MeshError.timedOut(let what, _) {
                failures.append("\(address): no answer (\(what))")
            }
        }
        throw MeshError.coordinatorUnreachable(
            address: coordinator, reason: "none of the \(list.count) coordinators answers (\(failures.joined(separator: "; ")))")
    }

    /// ``connect(to:authkey:adminKey:timeout:loop:)`` for one coordinator.
    private static func connectOne(
        to coordinator: String, authkey: String?, adminKey: String?, timeout: Duration, loop: EventLoop
    ) async throws -> MeshInspector {
        let address = try await SocketAddress.resolve(coordinator, defaultPort: MeshDefaults.coordinatorPort)
        let events = EventQueue<Event>()
        let purpose: Handshake.Purpose = adminKey == nil ? .inspect : .admin
        let key = try MeshKey.stretched(adminKey ?? authkey)
        let options = Connection.Options(
            // The tool has no identity of its own: a fresh static key for each connection.
            handshake: .connect(
                purpose: purpose, key: key, identity: nil, expectedPeerID: nil,
                expectedPeerKey: MeshDefaults.coordinatorKeyFromEnvironment.flatMap(NodeID.publicKeyBytes)),
            maximumFrameLength: 64 << 20, maximumPendingBytes: 1 << 20, handshakeTimeout: timeout,
            connectTimeout: timeout)
        let connection = try Connection.connect(
            to: address, options: options, delegate: Link(events: events), loop: loop)
        connection.send(ControlMessage(.inspect).encodedFrame())
        let inspector = MeshInspector(connection: connection, events: events, address: coordinator)
        do {
            _ = try await inspector.reply(.topology, timeout: timeout)
        } catch {
            await inspector.close()
            throw error
        }
        await inspector.startHeartbeat()
        return inspector
    }

    /// The current topology.
    package func topology(timeout: Duration = .seconds(5)) async throws -> Topology {
        connection.send(ControlMessage(.sync).encodedFrame())
        let reply = try await reply(.topology, timeout: timeout)
        return reply.topology.map(Topology.init) ?? Topology()
    }

    /// The coordinator's status: uptime, version, and each node's counters from its last heartbeat.
    package func status(timeout: Duration = .seconds(5)) async throws -> CoordinatorStatus {
        connection.send(ControlMessage(.status).encodedFrame())
        guard let status = try await reply(.status, timeout: timeout).status else {
            throw MeshError.protocolMismatch(peer: "coordinator at \(address)", reason: "status reply without a status")
        }
        return status
    }

    /// Asks the nodes named `target`, with the id `target`, or all nodes for "*", to stop cleanly.
    ///
    /// - Returns: the ids of the nodes that stopped, and of those still running when the coordinator
    ///   stopped waiting (5 s).
    /// - Throws: ``MeshError/invalidName(_:reason:)`` when no node matches.
    package func kill(_ target: String, timeout: Duration = .seconds(10)) async throws -> (
        stopped: [String], remaining: [String]
    ) {
        connection.send(ControlMessage(.kill, target: target).encodedFrame())
        let reply = try await reply(.killed, timeout: timeout)
        if let reason = reply.reason, (reply.stopped ?? []).isEmpty, (reply.remaining ?? []).isEmpty {
            throw MeshError.invalidName(target, reason: reason)
        }
        return (reply.stopped ?? [], reply.remaining ?? [])
    }

    /// Closes the connection.
    package func close() {
        heartbeat?.cancel()
        connection.close()
        events.finish()
    }

    /// Keeps the coordinator from dropping this connection as silent while a command waits.
    private func startHeartbeat() {
        let connection = self.connection
        let frame = ControlMessage(.heartbeat).encodedFrame()
        heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                connection.send(frame)
            }
        }
    }

    /// Waits for the next message of `type`, skipping topology deltas and heartbeats.
    private func reply(_ type: ControlMessage.Kind, timeout: Duration) async throws -> ControlMessage {
        let deadline = ContinuousClock.now + timeout
        let events = self.events
        while true {
            if let index = backlog.firstIndex(where: { $0.type == type }) { return backlog.remove(at: index) }
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else {
                throw MeshError.timedOut(waitingFor: "the coordinator's \(type) reply", seconds: seconds(timeout))
            }
            let batch = try await withThrowingTaskGroup(of: [Event]?.self) { group in
                group.addTask { await events.next() }
                group.addTask {
                    try await Task.sleep(for: remaining)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let batch else { continue }
            if batch.isEmpty { throw MeshError.closed }
            for event in batch {
                switch event {
                case .opened:
                    break
                case .message(let message) where message.type == .rejected:
                    throw MeshError.requestRefused(reason: message.reason ?? "no reason given")
                case .message(let message):
                    if message.type != .delta && message.type != .heartbeat { backlog.append(message) }
                case .closed(let error):
                    throw MeshError(connectingTo: address, failure: error)
                }
            }
        }
    }
}
