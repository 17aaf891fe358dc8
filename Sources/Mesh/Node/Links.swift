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

/// Watches a connection this node dialled to send to a peer. Peers never send on it.
final class PeerLink: ConnectionDelegate {
    let nodeID: String
    let events: EventQueue<MeshNode.ControlEvent>
    // Loop-thread only: set in connectionDidOpen, read in connectionDidClose, both on the loop.
    private nonisolated(unsafe) var opened = false

    init(nodeID: String, events: EventQueue<MeshNode.ControlEvent>) {
        self.nodeID = nodeID
        self.events = events
    }

    func connectionDidOpen(_ connection: Connection) {
        opened = true
    }

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        if let header = try decoder.next() { throw FrameError.unexpectedKind(header.kind) }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        var unsent = unsent
        if !opened, unsent.frames > 0 { unsent.frames -= 1 }  // the peer hello is not a message
        events.push(.peerClosed(nodeID, connection, error, unsent))
    }
}

/// Reads the messages a peer sends to this node and passes them to the inbox in batches.
final class InboundLink: ConnectionDelegate {
    let inbox: Inbox
    let counter: StatisticsCounter
    let logger: MeshLogger
    let connections: ConnectionSet
    // Loop-thread only, keyed by connection: who is on the other end of each inbound connection.
    private nonisolated(unsafe) var peers: [UInt64: MeshPeer] = [:]

    init(inbox: Inbox, counter: StatisticsCounter, logger: MeshLogger, connections: ConnectionSet) {
        self.inbox = inbox
        self.counter = counter
        self.logger = logger
        self.connections = connections
    }

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        var batch: [InboundMessage] = []
        var bytes = 0
        defer {
            if !batch.isEmpty {
                let count = batch.count
                counter.update {
                    $0.messagesReceived += count
                    $0.bytesReceived += bytes
                }
                inbox.push(batch, bytes: bytes, from: connection)
            }
        }
        while let header = try decoder.next() {
            switch FrameKind(rawValue: header.kind) {
            case .message:
                guard let sender = peers[connection.id] else {
                    throw ConnectionError.protocolViolation("message before peer hello")
                }
                let message = try decoder.withBody(header) { body throws(FrameError) -> InboundMessage in
                    let (topic, encoding, payload) = try MessageFrame.parse(body)
                    return InboundMessage(
                        topic: topic, encoding: encoding, payload: Data(UnsafeRawBufferPointer(rebasing: body[payload])),
                        sender: sender)
                }
                batch.append(message)
                bytes += header.body.count + Frame.headerLength
            case .peerHello where peers[connection.id] == nil:
                let hello = try decoder.withBody(header) { body throws(FrameError) in try PeerHello.decode(body) }
                peers[connection.id] = MeshPeer(id: hello.id, name: hello.name)
            default:
                throw FrameError.unexpectedKind(header.kind)
            }
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        let peer = peers.removeValue(forKey: connection.id)
        connections.remove(connection)
        guard let error else { return }
        let who = peer.map { "\($0) at \(connection.remote)" } ?? "\(connection.remote)"
        switch error {
        case .socket(.disconnected):
            logger.debug("connection from \(who) closed")
        default:
            logger.warning("closed the connection from \(who): \(error)")
        }
    }
}
