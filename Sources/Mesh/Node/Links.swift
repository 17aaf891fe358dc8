import Foundation

/// Forwards the coordinator connection's events to the node's control queue.
final class CoordinatorLink: ConnectionDelegate {
    let events: EventQueue<MeshNode.ControlEvent>

    init(events: EventQueue<MeshNode.ControlEvent>) {
        self.events = events
    }

    func connectionDidOpen(_ connection: Connection) {
        events.push(.opened(connection))
    }

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            guard header.kind == FrameKind.control.rawValue else { throw FrameError.unexpectedKind(header.kind) }
            let message = try decoder.withBody(header) { body throws(FrameError) in try ControlMessage.decode(body) }
            events.push(.message(connection, message))
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
        // Calls waiting on this connection fail now, not at their timeout.
        calls.connectionClosed(connection.id, reason: error?.description ?? "connection closed")
        events.push(.peerClosed(nodeID, connection, error, unsent))
    }
}

/// Reads the messages a peer sends to this node and passes them to the inbox in batches.
final class InboundLink: ConnectionDelegate {
    /// What this side knows about one inbound connection.
    private struct Peer {
        var sender: MeshPeer
        /// The last topic seen, as bytes and as a string: senders repeat topics, and reusing the
        /// string saves a validation and an allocation per message.
        var topicBytes: [UInt8] = []
        var topic = ""
    }

    let inbox: Inbox
    let counter: StatisticsCounter
    let logger: MeshLogger
    let connections: ConnectionSet
    let services: ServiceDispatcher
    // Loop-thread only, keyed by connection id.
    private nonisolated(unsafe) var peers: [UInt64: Peer] = [:]

    init(
        inbox: Inbox, counter: StatisticsCounter, logger: MeshLogger, connections: ConnectionSet,
        services: ServiceDispatcher
    ) {
        self.inbox = inbox
        self.counter = counter
        self.logger = logger
        self.connections = connections
        self.services = services
    }

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        var messages: [InboundMessage] = []
        var bytes = 0
        var peer = peers.removeValue(forKey: connection.id)
        defer {
            if let peer {
                peers[connection.id] = peer
                if !messages.isEmpty {
                    let count = messages.count
                    counter.update {
                        $0.messagesReceived += count
                        $0.bytesReceived += bytes
                    }
                    inbox.push(InboundBatch(sender: peer.sender, messages: messages), bytes: bytes, from: connection)
                }
            }
        }
        while let header = try decoder.next() {
            switch FrameKind(rawValue: header.kind) {
            case .message:
                guard peer != nil else { throw ConnectionError.protocolViolation("message before peer hello") }
                let message = try decoder.withBody(header) { body in try Self.parse(body, peer: &peer!) }
                messages.append(message)
                bytes += header.body.count + Frame.headerLength
            case .request:
                guard let caller = peer?.sender else { throw ConnectionError.protocolViolation("request before peer hello") }
                let request = try decoder.withBody(header) { body throws(FrameError) in try ServiceFrame.parseRequest(body) }
                services.submit(
                    InboundRequest(
                        request: request, caller: caller, replyPath: .connection(connection),
                        bytes: header.body.count + Frame.headerLength),
                    from: connection)
            case .peerHello where peer == nil:
                let hello = try decoder.withBody(header) { try PeerHello.decode($0) }
                peer = Peer(sender: MeshPeer(id: hello.id, name: hello.name))
            default:
                throw FrameError.unexpectedKind(header.kind)
            }
        }
    }

    private static func parse(_ body: UnsafeRawBufferPointer, peer: inout Peer) throws -> InboundMessage {
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
        return InboundMessage(
            topic: topic, encoding: encoding,
            payload: Data(UnsafeRawBufferPointer(rebasing: body[(encodingIndex + 1)...])))
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        let peer = peers.removeValue(forKey: connection.id)
        connections.remove(connection)
        guard let error else { return }
        let who = peer.map { "\($0.sender) at \(connection.remote)" } ?? "\(connection.remote)"
        switch error {
        case .socket(.disconnected):
            logger.debug("connection from \(who) closed")
        default:
            logger.warning("closed the connection from \(who): \(error)")
        }
    }
}
