import Foundation
import Mesh
import Synchronization

/// A client that speaks the coordinator's control protocol by hand, for attack tests: it sends
/// whatever a test tells it to (heartbeats with made-up counters, `sync` without end, more
/// interests than anyone needs), can stop reading, and keeps what comes back.
package final class ControlClient: ConnectionDelegate {
    package let messages = Collector<ControlMessage>()
    private let ended = Mutex<(closed: Bool, error: ConnectionError?)>((false, nil))
    private let holder = Mutex<Connection?>(nil)
    /// The id this client registers with (its hello carries it).
    package let id: String
    /// The static key pair behind ``id``: another client made with it registers as the same process.
    package let identity: NodeIdentity
    /// Keeps messages without their topology, delta and status: a client that only fills a
    /// topology for a test need not hold every copy of it.
    private let lean: Bool

    private init(lean: Bool, identity: NodeIdentity?) {
        self.identity = identity ?? NodeIdentity()
        self.id = self.identity.id
        self.lean = lean
    }

    package var connection: Connection { holder.withLock { $0! } }

    /// Dials `address` for `purpose` (control by default) with `key`, as a node would.
    ///
    /// - Parameters:
    ///   - lean: keep what arrives without its topologies, deltas and status.
    ///   - identity: the key pair to use (an earlier client's, to come back as the same
    ///     process); a fresh one when `nil`.
    package static func connect(
        to address: String, purpose: Handshake.Purpose = .control, key: String? = nil, lean: Bool = false,
        identity: NodeIdentity? = nil
    ) throws -> ControlClient {
        let client = ControlClient(lean: lean, identity: identity)
        let options = Connection.Options(
            handshake: .connect(
                purpose: purpose, key: try MeshKey.stretched(key), identity: purpose == .control ? client.identity : nil,
                expectedPeerID: nil, expectedPeerKey: nil),
            maximumFrameLength: 64 << 20, maximumPendingBytes: 64 << 20)
        guard let target = SocketAddress.parse(address, defaultPort: 0) else {
            throw MeshError.invalidAddress(address, reason: "not HOST:PORT")
        }
        let connection = try Connection.connect(to: target, options: options, delegate: client, loop: .shared)
        client.holder.withLock { $0 = connection }
        return client
    }

    /// Registers as a node named `name` and waits for the welcome.
    ///
    /// - Throws: ``TimedOut`` when no welcome comes within `seconds`.
    /// - Parameters:
    ///   - port: the peer port it advertises (nothing listens there unless the test put it there).
    ///   - stats: counters to bring along, as a node does.
    ///   - standby: register as a standby (PROTOCOL.md §7.2).
    package func register(
        name: String, topics: [String] = [], port: UInt16 = 1, stats: MeshStatistics? = nil, view: TopologyView? = nil,
        interest: ViewInterest? = nil, standby: Bool = false, seconds: Double = 10
    ) async throws {
        send(
            ControlMessage(
                .register, node: NodeRecord(id: id, name: name, host: "", port: port, topics: topics, key: identity.publicKeyHex),
                stats: stats, view: view, interest: interest, standby: standby ? true : nil))
        _ = try await waitFor(.welcome, seconds: seconds)
    }

    /// Says `inspect` (an inspector's first message) and waits for the topology.
    package func inspect(seconds: Double = 10) async throws {
        send(ControlMessage(.inspect))
        _ = try await waitFor(.topology, seconds: seconds)
    }

    package func send(_ message: ControlMessage) { connection.send(message.encodedFrame()) }

    /// Stops (or resumes) reading: the coordinator's replies then pile up in its queue.
    package func pauseReading(_ paused: Bool = true) { connection.setReadingPaused(paused) }

    /// Sends a bare heartbeat every `interval` until the connection closes, so the coordinator
    /// does not evict a client that has nothing else to say.
    package func keepAlive(every interval: Duration = .seconds(1)) {
        Task { [self] in
            while !isClosed {
                send(ControlMessage(.heartbeat))
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// The first message of `type` received (now or later).
    package func waitFor(_ type: ControlMessage.Kind, seconds: Double = 10) async throws -> ControlMessage {
        try await eventually("a \(type) from the coordinator", seconds: seconds) {
            self.messages.values.contains { $0.type == type } || self.isClosed
        }
        guard let message = messages.values.first(where: { $0.type == type }) else {
            let reason = messages.values.first { $0.type == .rejected }?.reason ?? "\(closeError.map { "\($0)" } ?? "closed")"
            throw TimedOut(what: "a \(type) (the connection ended: \(reason))", seconds: seconds)
        }
        return message
    }

    /// Why the coordinator turned this client away, once it did.
    package var rejection: String? { messages.values.first { $0.type == .rejected }?.reason }

    package var isClosed: Bool { ended.withLock { $0.closed } }
    package var closeError: ConnectionError? { ended.withLock { $0.error } }

    package func close() { connection.close() }

    // MARK: ConnectionDelegate

    package func connectionDidOpen(_ connection: Connection) {}

    package func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            guard header.kind == FrameKind.control.rawValue else { continue }
            let message = try decoder.withBody(header) { body throws(FrameError) in try ControlMessage.decode(body) }
            messages.append(lean ? ControlMessage(message.type, node: message.node, reason: message.reason, interest: message.interest) : message)
        }
    }

    package func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        ended.withLock { $0 = (true, error) }
    }
}
