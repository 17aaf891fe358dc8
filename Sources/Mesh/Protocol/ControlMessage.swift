import Foundation
import MeshJSON

/// A message on the control plane: between a node (or the `mesh` tool) and the coordinator.
///
/// It travels as JSON in a ``FrameKind/control`` frame, one flat object whose `type` says which
/// of the optional fields are present. docs/PROTOCOL.md lists each type with its fields.
package struct ControlMessage: Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable {
        /// node → coordinator, first: `node` (host may be empty: the coordinator fills it in).
        case register
        /// coordinator → node: `node` as stored, and `topology` (a full copy).
        case welcome
        /// coordinator → node or tool: `reason`; the coordinator then closes.
        case rejected
        /// node → coordinator: `topic`, and `messageType` when the listener declares one.
        case listen
        /// node → coordinator: `topic`.
        case unlisten
        /// coordinator → node: `delta`.
        case delta
        /// node → coordinator: asks for a full copy after a missed version.
        case sync
        /// coordinator → node or tool: `topology`.
        case topology
        /// node → coordinator, every second.
        case heartbeat
        /// node → coordinator: leaving on purpose.
        case bye
        /// tool → coordinator, first: asks for `topology` without joining.
        case inspect
        /// tool → coordinator: asks for `status`; coordinator → tool: the answer in `status`.
        case status
        /// tool → coordinator: asks the nodes named or with the id in `target` ("*" for all) to stop.
        case kill
        /// coordinator → tool: which nodes stopped (`stopped`) and which did not (`remaining`).
        case killed
        /// coordinator → node: stop cleanly now (`reason` says who asked).
        case shutdown
        /// node → coordinator: `service` (start providing it).
        case serve
        /// node → coordinator: `service` (stop providing it).
        case unserve
        /// node with a partial view → coordinator: `interest` (more records to hold); answered
        /// with a `delta` that carries the same `interest`.
        case interest
        /// node → coordinator: `topic` and, for a typed send, `messageType` (this node sends on it).
        case publish
        /// coordinator → node: the `listen` or `publish` of `topic` was not recorded, and `reason`
        /// says why (a message type that disagrees with another node's); the session stays.
        case refused
        /// node → coordinator, on a session registered as a standby: the node routes by this
        /// coordinator now (it failed over to it). `view` and `interest` as with `register`;
        /// answered with a `welcome` that carries the topology, as a routing `register` is.
        case route
    }

    package var type: Kind
    package var node: NodeRecord?
    package var topic: String?
    package var topology: TopologySnapshot?
    var delta: TopologyDelta?
    package var reason: String?
    /// With `heartbeat`: the node's counters.
    package var stats: MeshStatistics?
    /// With `kill`: a node name, a node id, or "*".
    package var target: String?
    /// With `status` from the coordinator.
    package var status: CoordinatorStatus?
    /// With `killed`: ids of the nodes that stopped, and of those that did not in time.
    package var stopped: [String]?
    package var remaining: [String]?
    /// With `serve` and `unserve`: the service's name.
    package var service: String?
    /// With `register`: `partial` asks for a partial view (absent: the full view); with
    /// `welcome`: `partial` confirms one.
    package var view: TopologyView?
    /// With `register` and `interest` from a node with a partial view, and with the `delta` answering an `interest`.
    package var interest: ViewInterest?
    /// With `listen` and `publish`: the message type declared for `topic`.
    package var messageType: TopicType?
    /// With `listen`, `unlisten`, `publish`, `serve` and `unserve` from a node with several
    /// coordinators: its record's version after this change.
    package var version: UInt64?
    /// With `register` from a node with several coordinators: `true` registers a standby, a
    /// session the node does not route by (no topology, deltas or interest answers until it
    /// sends `route`). With `welcome`: `true` says the coordinator took it as one.
    package var standby: Bool?

    package init(
        _ type: Kind, node: NodeRecord? = nil, topic: String? = nil, topology: TopologySnapshot? = nil,
        delta: TopologyDelta? = nil, reason: String? = nil, stats: MeshStatistics? = nil, target: String? = nil,
        status: CoordinatorStatus? = nil, stopped: [String]? = nil, remaining: [String]? = nil,
        service: String? = nil, view: TopologyView? = nil, interest: ViewInterest? = nil, messageType: TopicType? = nil,
        version: UInt64? = nil, standby: Bool? = nil
    ) {
        self.type = type
        self.node = node
        self.topic = topic
        self.topology = topology
        self.delta = delta
        self.reason = reason
        self.stats = stats
        self.target = target
        self.status = status
        self.stopped = stopped
        self.remaining = remaining
        self.service = service
        self.view = view
        self.interest = interest
        self.messageType = messageType
        self.version = version
        self.standby = standby
    }

    /// The whole frame: header plus JSON body.
    ///
    /// Every field is a plain string, number or array, so encoding cannot fail short of a
    /// non-finite number; that is a programming error and stops the process with its reason.
    package func encodedFrame() -> [UInt8] {
        do {
            return Frame(kind: FrameKind.control.rawValue, body: Array(try ControlMessage.encoder.encode(self))).encoded
        } catch {
            preconditionFailure("control message \(type) did not encode: \(error)")
        }
    }

    /// Reads a control frame's body.
    ///
    /// - Throws: ``FrameError/malformed(_:)`` naming what was wrong with the JSON.
    package static func decode(_ body: UnsafeRawBufferPointer) throws(FrameError) -> ControlMessage {
        try decode(Data(body))
    }

    /// Reads a control frame's body handed on as bytes.
    static func decode(_ body: [UInt8]) throws(FrameError) -> ControlMessage {
        try decode(Data(body))
    }

    private static func decode(_ body: Data) throws(FrameError) -> ControlMessage {
        do {
            return try decoder.decode(ControlMessage.self, from: body)
        } catch {
            throw .malformed("control message: \(error)")
        }
    }

    package static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
    /// Our own JSON decoder (MeshJSON): about 3x Foundation's, and a node in a large full-view
    /// mesh decodes a record per node per join.
    private static let decoder = MeshJSONDecoder()
}

/// The coordinator's view of the mesh, for `mesh status`.
public struct CoordinatorStatus: Codable, Sendable, Equatable {
    /// Seconds since the coordinator started.
    public var uptime: Double
    /// The topology's version.
    public var version: UInt64
    /// Every node, with the counters from its last heartbeat.
    public var nodes: [NodeStatus]

    public init(uptime: Double, version: UInt64, nodes: [NodeStatus]) {
        self.uptime = uptime
        self.version = version
        self.nodes = nodes
    }
}

/// One node in ``CoordinatorStatus``.
public struct NodeStatus: Codable, Sendable, Equatable {
    public var node: NodeRecord
    /// The counters from the node's last heartbeat (all zero before the first).
    public var stats: MeshStatistics
    /// Seconds since the coordinator last heard from the node.
    public var lastHeard: Double

    public init(node: NodeRecord, stats: MeshStatistics, lastHeard: Double) {
        self.node = node
        self.stats = stats
        self.lastHeard = lastHeard
    }
}

/// The first frame on a node-to-node connection: who is sending.
struct PeerHello: Codable, Sendable, Equatable {
    var id: String
    var name: String

    func encodedFrame() -> [UInt8] {
        do {
            return Frame(kind: FrameKind.peerHello.rawValue, body: Array(try JSONEncoder().encode(self))).encoded
        } catch {
            preconditionFailure("peer hello did not encode: \(error)")
        }
    }

    static func decode(_ body: UnsafeRawBufferPointer) throws(FrameError) -> PeerHello {
        do {
            return try MeshJSONDecoder().decode(PeerHello.self, from: Data(body))
        } catch {
            throw .malformed("peer hello: \(error)")
        }
    }
}

/// How a message's payload bytes are to be read.
public enum PayloadEncoding: UInt8, Sendable {
    /// Raw bytes, from a `Data` or `[UInt8]` value.
    case raw = 0
    /// Bytes from the node's ``MeshCodec`` (JSON by default).
    case codec = 1
}

/// The body of a ``FrameKind/message`` frame: topic length (2 bytes, big-endian), topic (UTF-8),
/// encoding (1 byte), payload (the rest).
enum MessageFrame {
    /// Builds the whole frame (header included) around `payload`.
    static func encode(topic: String, encoding: PayloadEncoding, payload: UnsafeRawBufferPointer) -> [UInt8] {
        var topic = topic
        return topic.withUTF8 { topicUTF8 in
            var frame: [UInt8] = []
            frame.reserveCapacity(frameLength(topicBytes: topicUTF8.count, payloadBytes: payload.count))
            append(topic: UnsafeRawBufferPointer(topicUTF8), encoding: encoding, payload: payload, to: &frame)
            return frame
        }
    }

    /// The size of a message frame on the wire, header included.
    static func frameLength(topicBytes: Int, payloadBytes: Int) -> Int {
        Frame.headerLength + 2 + topicBytes + 1 + payloadBytes
    }

    /// Appends a whole message frame to `bytes`.
    static func append(
        topic: UnsafeRawBufferPointer, encoding: PayloadEncoding, payload: UnsafeRawBufferPointer, to bytes: inout [UInt8]
    ) {
        appendHead(topic: topic, encoding: encoding, payloadCount: payload.count, to: &bytes)
        bytes.append(contentsOf: payload)
    }

    /// Appends a message frame's head (header, topic and encoding): the `payloadCount` bytes of
    /// payload that follow it on the wire are the caller's to send.
    static func appendHead(
        topic: UnsafeRawBufferPointer, encoding: PayloadEncoding, payloadCount: Int, to bytes: inout [UInt8]
    ) {
        Frame.appendHeader(kind: FrameKind.message.rawValue, bodyLength: 2 + topic.count + 1 + payloadCount, to: &bytes)
        bytes.append(UInt8(truncatingIfNeeded: topic.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: topic.count))
        bytes.append(contentsOf: topic)
        bytes.append(encoding.rawValue)
    }

    /// Splits a message body into topic, encoding and the payload's position in `body`.
    ///
    /// - Throws: ``FrameError/malformed(_:)`` for a short body, bad UTF-8 or an unknown encoding.
    package static func parse(_ body: UnsafeRawBufferPointer) throws(FrameError) -> (
        topic: String, encoding: PayloadEncoding, payload: Range<Int>
    ) {
        guard body.count >= 3 else { throw .malformed("message body of \(body.count) bytes is too short") }
        let topicLength = Int(body[0]) << 8 | Int(body[1])
        guard topicLength <= 255 else { throw .malformed("message topic of \(topicLength) bytes exceeds 255") }
        guard topicLength > 0, body.count >= 2 + topicLength + 1 else {
            throw .malformed("message topic length \(topicLength) does not fit a body of \(body.count) bytes")
        }
        guard let topic = String(validating: UnsafeRawBufferPointer(rebasing: body[2..<(2 + topicLength)]), as: UTF8.self)
        else { throw .malformed("message topic is not UTF-8") }
        if topic.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw .malformed("message topic contains control characters")
        }
        guard let encoding = PayloadEncoding(rawValue: body[2 + topicLength]) else {
            throw .malformed("unknown payload encoding \(body[2 + topicLength])")
        }
        return (topic, encoding, (2 + topicLength + 1)..<body.count)
    }
}
