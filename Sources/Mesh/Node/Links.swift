import Foundation
import Synchronization

/// Forwards the coordinator connection's events to the node's control queue.
final class CoordinatorLink: ConnectionDelegate {
    let events: EventQueue<MeshNode.ControlEvent>

    init(events: EventQueue<MeshNode.ControlEvent>) {
        self.events = events
    }

    func connectionDidOpen(_ connection: Connection) {
        events.push(.opened(connection))
    }

    /// Loop thread: hands each control frame's bytes on undecoded. The node's actor decodes them,
    /// so a process whose nodes receive large topologies (a full-view join storm) does not spend
    /// its one I/O thread on JSON while heartbeats and peer traffic wait behind it.
    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
            let body = decoder.withBody(header) { Array($0) }
            events.push(.frame(connection, body))
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        events.push(.closed(connection, error))
    }
}

/// Watches a connection this node dialled to send to a peer. The peer sends only the answers
/// to this node's service calls on it: replies and failures, handed to the waiting calls.
final class PeerLink: ConnectionDelegate {
    let nodeID: String
    let events: EventQueue<MeshNode.ControlEvent>
    let calls: PendingCalls
    // Loop-thread only: set in connectionDidOpen, read in connectionDidClose, both on the loop.
    private nonisolated(unsafe) var opened = false

    init(nodeID: String, events: EventQueue<MeshNode.ControlEvent>, calls: PendingCalls) {
        self.nodeID = nodeID
        self.events = events
        self.calls = calls
    }

    func connectionDidOpen(_ connection: Connection) {
        opened = true
    }

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            if header.kind == FrameKind.confirmed.rawValue {
                try connection.peerConfirmed(try decoder.withBody(header) { body throws(FrameError) in try ClosingFrame.count(body) })
                return
            }
            guard let kind = FrameKind(rawValue: header.kind), kind == .reply || kind == .failure else {
                throw FrameError.unexpectedKind(header.kind)
            }
            let (id, answer) = try decoder.withBody(header) { try ServiceFrame.parseAnswer(kind: kind, $0) }
            calls.answer(id, answer, on: connection.id, from: nodeID)
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        var unsent = unsent
        if !opened, unsent.frames > 0 { unsent.frames -= 1 }  // the peer hello is not a message
        if connection.confirmation != nil, unsent.frames > 0 { unsent.frames -= 1 }  // nor the closing frame
        // Calls waiting on this connection fail now, not at their timeout.
        calls.connectionClosed(connection.id, reason: error?.description ?? "connection closed")
        events.push(.peerClosed(nodeID, connection, error, unsent))
    }
}

/// The nodes a node may accept messages from: its topology (and the nodes it still routes to
/// while they re-register), shared with the loop thread that checks each peer's hello.
///
/// It holds no copy of the topology: it asks the router, which holds the records the node
/// routes with (one copy fewer per node, and no O(nodes) work per delta). What it keeps is the
/// nodes that left, or that joined and left within one delta: they stay known for ``memory``,
/// so a sender that joins, sends and leaves at once (`mesh topic send`) has its messages read
/// even when the receiver never saw it in its topology.
final class PeerDirectory: Sendable {
    private struct State {
        var departed: [String: (record: NodeRecord, at: ContinuousClock.Instant)] = [:]
        /// When ``departed`` was last pruned: at most once a second, so a storm of leaves costs
        /// O(changes) per delta too.
        var prunedAt: ContinuousClock.Instant?
    }

    static let memory = Duration.seconds(5)
    private let state = Mutex(State())
    /// The closures live in boxes: a closure stored in a `Mutex` and read back with
    /// `withLock { $0 }` was re-wrapped in a conversion thunk on every read here (Swift 6.3 on
    /// Linux), so after a few thousand lookups one call ran through thousands of thunks and
    /// overflowed the stack. A class reference is read back as it is.
    private final class Box<Function: Sendable>: Sendable {
        let function: Function
        init(_ function: Function) { self.function = function }
    }

    private let onChange = Mutex<Box<@Sendable () -> Void>?>(nil)
    private let current = Mutex<Box<@Sendable (String) -> NodeRecord?>?>(nil)

    /// Where the records of the nodes in the topology are found (the router's).
    func resolve(with lookup: @escaping @Sendable (String) -> NodeRecord?) {
        let box = Box(lookup)
        current.withLock { $0 = box }
    }

    /// Notes that the topology changed: `departed` are the records of the nodes that left.
    func changed(departed: [NodeRecord], now: ContinuousClock.Instant = .now) {
        state.withLock { state in
            for record in departed { state.departed[record.id] = (record, now) }
            if !state.departed.isEmpty, state.prunedAt.map({ now - $0 >= .seconds(1) }) ?? true {
                state.departed = state.departed.filter { now - $0.value.at < PeerDirectory.memory }
                state.prunedAt = now
            }
        }
        onChange.withLock { $0 }?.function()
    }

    /// Forgets every node (the node closed).
    func clear() {
        state.withLock { $0 = State() }
        current.withLock { $0 = nil }
    }

    func node(_ id: String, now: ContinuousClock.Instant = .now) -> NodeRecord? {
        // The lookup runs with no lock of this directory held: it takes the router's.
        if let lookup = current.withLock({ $0 }), let node = lookup.function(id) { return node }
        return state.withLock { state in
            guard let departed = state.departed[id], now - departed.at < PeerDirectory.memory else { return nil }
            return departed.record
        }
    }

    func whenChanged(_ body: @escaping @Sendable () -> Void) {
        let box = Box(body)
        onChange.withLock { $0 = box }
    }

    private let onUnknown = Mutex<Box<@Sendable (String) -> Void>?>(nil)

    /// What to do when a hello names a node not held here (a partial view asks the coordinator).
    func whenUnknown(_ body: (@Sendable (String) -> Void)?) {
        let box = body.map { Box($0) }
        onUnknown.withLock { $0 = box }
    }

    /// Reports a hello from a node not held here.
    func lookUp(_ id: String) { onUnknown.withLock { $0 }?.function(id) }
}

/// Reads the messages a peer sends to this node and passes them to the inbox in batches.
///
/// A peer's hello must name the node its handshake was for, and that node must be in the
/// topology with the same name and at the address the connection comes from. A hello from a
/// node not known yet (it joined a moment ago and its record is still on the way) holds the
/// connection, reading paused, until the topology has it, for up to ``unknownPeerPatience``.
final class InboundLink: ConnectionDelegate {
    /// What this side knows about one inbound connection.
    private struct Peer {
        var sender: MeshPeer
        /// Messages from this connection the inbox took: what a confirmation answers (§8.3).
        var accepted = 0
        /// The last topic seen, as bytes and as a string: senders repeat topics, and reusing the
        /// string saves a validation and an allocation per message.
        var topicBytes: [UInt8] = []
        var topic = ""
    }

    let inbox: Inbox
    let counter: StatisticsCounter
    let logger: MeshLogger
    let connections: ConnectionSet
    let directory: PeerDirectory
    static let unknownPeerPatience = Duration.seconds(5)
    /// How long an open connection may go without its peer hello. A node sends it right after
    /// the handshake, so one that has not is a socket held open to use up descriptors.
    static let peerHelloPatience = Duration.seconds(5)
    let services: ServiceDispatcher
    /// The node's loop: its connections' loop, where this link's callbacks and timers run.
    let loop: EventLoop
    // Loop-thread only, keyed by connection id.
    private nonisolated(unsafe) var peers: [UInt64: Peer] = [:]
    /// Hellos from nodes not in the topology yet, with their connections, waiting for it.
    private nonisolated(unsafe) var unknown: [UInt64: (hello: PeerHello, connection: Connection)] = [:] {
        didSet { waitingHellos.store(unknown.count, ordering: .sequentiallyConsistent) }
    }
    /// How many hellos ``unknown`` holds, read off the loop: a topology change wakes the loop
    /// to check them again only when there are some (a join storm makes thousands of changes).
    private let waitingHellos = Atomic<Int>(0)
    /// Open connections that have not sent their peer hello yet, and since when.
    private nonisolated(unsafe) var awaitingHello: [UInt64: (connection: Connection, since: ContinuousClock.Instant)] = [:]
    private nonisolated(unsafe) var sweepScheduled = false
    /// Keeps a flood of refused connections to a few log lines a second.
    private nonisolated(unsafe) var refusals = RateLimitedLog()
    private nonisolated(unsafe) var refusalFlushScheduled = false

    init(
        inbox: Inbox, counter: StatisticsCounter, logger: MeshLogger, connections: ConnectionSet,
        directory: PeerDirectory, services: ServiceDispatcher, loop: EventLoop
    ) {
        self.loop = loop
        self.inbox = inbox
        self.counter = counter
        self.logger = logger
        self.connections = connections
        self.services = services
        self.directory = directory
        directory.whenChanged { [weak self] in
            guard let link = self, link.waitingHellos.load(ordering: .sequentiallyConsistent) > 0 else { return }
            loop.execute { link.recheckUnknownPeers() }
        }
    }

    /// Whether `hello` may speak on `connection`: `nil` to wait for the topology, else the verdict.
    private func check(_ hello: PeerHello, on connection: Connection) -> Result<Void, ConnectionError>? {
        guard hello.id == connection.peerID else {
            return .failure(.protocolViolation("peer hello names node \(hello.id), the handshake was for \(connection.peerID)"))
        }
        guard let node = directory.node(hello.id) else { return nil }
        guard node.name == hello.name else {
            return .failure(.protocolViolation("peer hello says node \(hello.id) is named \"\(hello.name)\"; the mesh says \"\(node.name)\""))
        }
        let reachable: Bool
        if connection.remote.isUnix {
            reachable = node.local == MeshDefaults.localScope
        } else {
            reachable = connection.remote.isSameHost(as: node.host)
        }
        guard reachable else {
            return .failure(.protocolViolation("node \(hello.id) is at \(node.host) in the mesh, but this connection comes from \(connection.remote.host)"))
        }
        return .success(())
    }

    /// Loop thread: settles the hellos that were waiting for the topology.
    private func recheckUnknownPeers() {
        loop.preconditionInEventLoop()
        for (id, waiting) in unknown {
            guard let verdict = check(waiting.hello, on: waiting.connection) else { continue }
            unknown[id] = nil
            switch verdict {
            case .success:
                peers[id] = Peer(sender: MeshPeer(id: waiting.hello.id, name: waiting.hello.name))
                waiting.connection.setReadingPaused(false)
            case .failure(let error):
                waiting.connection.close(error: error)
            }
        }
    }

    func connectionDidOpen(_ connection: Connection) {
        awaitingHello[connection.id] = (connection, .now)
        if !sweepScheduled {
            sweepScheduled = true
            _ = loop.schedule(after: InboundLink.sweepInterval) { [self] in sweepSilentPeers() }
        }
    }

    /// How often the connections still waiting for their peer hello are looked at.
    static let sweepInterval = Duration.seconds(1)

    /// Loop thread: closes the connections that went ``peerHelloPatience`` without a peer hello.
    /// One timer for all of them, running only while some wait: a flood of connections costs an
    /// entry each, gone when they close, and no timer each.
    private func sweepSilentPeers() {
        loop.preconditionInEventLoop()
        sweepScheduled = false
        let now = ContinuousClock.now
        let patience = InboundLink.peerHelloPatience
        for (id, waiting) in awaitingHello where now - waiting.since >= patience {
            awaitingHello[id] = nil
            waiting.connection.close(error: .protocolViolation("no peer hello within \(formatted(patience)) of the handshake"))
        }
        if !awaitingHello.isEmpty {
            sweepScheduled = true
            _ = loop.schedule(after: InboundLink.sweepInterval) { [self] in sweepSilentPeers() }
        }
    }

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        var messages: [InboundMessage] = []
        var bytes = 0
        /// Read-buffer bytes the batch's payloads newly pin (counted by the inbox, not as received).
        var pinned = 0
        if unknown[connection.id] != nil {
            connection.setReadingPaused(true)  // resumed by someone else; still waiting for the topology
            return
        }
        var peer = peers.removeValue(forKey: connection.id)
        defer {
            if peer != nil {
                if !messages.isEmpty { hand(&messages, bytes: bytes, pinned: pinned, from: &peer!, on: connection) }
                peers[connection.id] = peer
            }
        }
        while let header = try decoder.next() {
            switch FrameKind(rawValue: header.kind) {
            case .message:
                guard peer != nil else { throw ConnectionError.protocolViolation("message before peer hello") }
                let (topic, encoding, payloadStart) = try decoder.withBody(header) { body in try Self.parse(body, peer: &peer!) }
                // The payload stays in the read buffer, shared with the listeners (no copy).
                let payload = decoder.lend((header.body.lowerBound + payloadStart)..<header.body.upperBound)
                messages.append(InboundMessage(topic: topic, encoding: encoding, payload: payload))
                // The read buffer a payload pins counts against the inbox's limit too: a peer that
                // mixes small messages with other frames cannot pin a buffer per small message.
                pinned += decoder.takeNewlyPinned()
                bytes += header.body.count + Frame.headerLength
            case .request:
                guard let caller = peer?.sender else { throw ConnectionError.protocolViolation("request before peer hello") }
                let request = try decoder.withBody(header) { body throws(FrameError) in try ServiceFrame.parseRequest(body) }
                services.submit(
                    InboundRequest(
                        request: request, caller: caller, replyPath: .connection(connection),
                        bytes: header.body.count + Frame.headerLength),
                    from: connection)
            case .closing:
                // The sender is closing: confirm what it sent, once what arrived before is in the inbox.
                guard peer != nil else { throw ConnectionError.protocolViolation("closing before peer hello") }
                let announced = try decoder.withBody(header) { body throws(FrameError) in try ClosingFrame.count(body) }
                if !messages.isEmpty {
                    hand(&messages, bytes: bytes, pinned: pinned, from: &peer!, on: connection)
                    bytes = 0
                    pinned = 0
                }
                connection.send(ClosingFrame.confirmed(messages: peer!.accepted))
                if announced != peer!.accepted {
                    logger.debug("\(peer!.sender) closed its connection announcing \(announced) message(s); \(peer!.accepted) were taken")
                }
            case .peerHello where peer == nil:
                awaitingHello[connection.id] = nil
                let hello = try decoder.withBody(header) { try PeerHello.decode($0) }
                switch check(hello, on: connection) {
                case .success:
                    peer = Peer(sender: MeshPeer(id: hello.id, name: hello.name))
                case .failure(let error):
                    throw error
                case nil:
                    // Not in the topology yet: hold the rest of the stream until it is, or give up.
                    unknown[connection.id] = (hello, connection)
                    connection.setReadingPaused(true)
                    // The record may have arrived between the check and the count going up,
                    // when a change did not look: look again once.
                    loop.execute { [self] in recheckUnknownPeers() }
                    directory.lookUp(hello.id)
                    let patience = InboundLink.unknownPeerPatience
                    _ = loop.schedule(after: patience) { [self] in
                        loop.preconditionInEventLoop()
                        guard unknown.removeValue(forKey: connection.id) != nil else { return }
                        connection.close(
                            error: .protocolViolation(
                                "peer hello from node \(hello.id) (\"\(hello.name)\"), which is not in the mesh (waited \(formatted(patience)))"))
                    }
                    return
                }
            default:
                throw FrameError.unexpectedKind(header.kind)
            }
        }
    }

    /// Loop thread: counts `messages` and hands them to the inbox; those it takes count for the
    /// peer's confirmation. Empties `messages`.
    /// `pinned`: read-buffer bytes the payloads newly hold alive, which the inbox counts against
    /// its limit beside the frames' own bytes.
    private func hand(
        _ messages: inout [InboundMessage], bytes: Int, pinned: Int, from peer: inout Peer, on connection: Connection
    ) {
        let count = messages.count
        counter.update {
            $0.messagesReceived += count
            $0.bytesReceived += bytes
        }
        if inbox.push(InboundBatch(sender: peer.sender, messages: messages), bytes: bytes + pinned, from: connection) {
            peer.accepted += count
        }
        messages = []
    }

    /// Loop thread: writes the count of held-back refusal lines once their second is over, so a
    /// flood that stops is still summed up.
    private func scheduleRefusalSummary() {
        guard !refusalFlushScheduled, refusals.heldBack(in: "refused peer connections") > 0 else { return }
        refusalFlushScheduled = true
        _ = loop.schedule(after: refusals.interval) { [self] in
            loop.preconditionInEventLoop()
            refusalFlushScheduled = false
            for line in refusals.flush(now: .now) { logger.warning(line) }
        }
    }

    /// The topic and encoding of a message frame's body, and where in the body its payload starts.
    private static func parse(_ body: UnsafeRawBufferPointer, peer: inout Peer) throws -> (String, PayloadEncoding, Int) {
        guard body.count >= 3 else { throw FrameError.malformed("message body of \(body.count) bytes is too short") }
        let topicLength = Int(body[0]) << 8 | Int(body[1])
        let topicBytes = UnsafeRawBufferPointer(rebasing: body[2..<min(body.count, 2 + topicLength)])
        let topic: String
        if topicLength > 0, topicBytes.count == topicLength, topicBytes.elementsEqual(peer.topicBytes) {
            topic = peer.topic
        } else {
            let (parsed, _, _) = try MessageFrame.parse(body)
            peer.topicBytes = Array(topicBytes)
            peer.topic = parsed
            topic = parsed
        }
        let encodingIndex = 2 + topicLength
        guard encodingIndex < body.count, let encoding = PayloadEncoding(rawValue: body[encodingIndex]) else {
            _ = try MessageFrame.parse(body)  // throws the precise reason
            throw FrameError.malformed("message")
        }
        return (topic, encoding, encodingIndex + 1)
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        services.callerLeft(connection)
        let peer = peers.removeValue(forKey: connection.id)
        unknown[connection.id] = nil
        awaitingHello[connection.id] = nil
        connections.remove(connection)
        guard let error else { return }
        let who = peer.map { "\($0.sender) at \(connection.remote)" } ?? "\(connection.remote)"
        switch error {
        case .socket(.disconnected), .handshake(.closedSilently):
            logger.debug("connection from \(who) closed: \(error)")
        case .handshake:
            refusals.log("refused peer connections", level: .warning, to: logger, "closed the connection from \(who): \(error)")
            scheduleRefusalSummary()
        case _ where peer == nil:
            // Not a peer yet: whoever it is can repeat this as fast as it can connect.
            refusals.log("refused peer connections", level: .warning, to: logger, "closed the connection from \(who): \(error)")
            scheduleRefusalSummary()
        default:
            logger.warning("closed the connection from \(who): \(error)")
        }
    }
}
