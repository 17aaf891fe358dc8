import Foundation
import Mesh

/// Something that happened at the coordinator, for the web view's list of recent events.
public struct CoordinatorEvent: Codable, Sendable, Equatable {
    /// What happened.
    public enum Kind: String, Codable, Sendable {
        /// A node registered.
        case joined
        /// A node said goodbye, disconnected, or was rejected after joining.
        case left
        /// A node missed its heartbeats and was removed.
        case evicted
        /// A connection was turned away: failed handshake, rejected registration, silence.
        case refused
    }

    /// Counts events since the coordinator started; the web page uses it to see what is new.
    public var sequence: UInt64
    /// Seconds since 1970, the coordinator's clock.
    public var time: Double
    public var kind: Kind
    /// The node's name and id, for joined, left and evicted.
    public var node: String?
    public var id: String?
    /// The peer's address.
    public var peer: String
    /// Why, in words (for left, evicted and refused); at most 200 characters.
    public var reason: String?
    /// For refused: the ``RefusalReason`` label.
    public var category: String?
}

/// Why a connection was refused, as a short label for metrics (`reason="authentication"`).
public enum RefusalReason: String, Codable, Sendable, CaseIterable {
    /// The handshake failed on the key: wrong key, or a key on one side only.
    case authentication
    /// The peer's first bytes were not a mesh hello.
    case notAMeshPeer = "not_a_mesh_peer"
    /// The peer speaks another protocol version.
    case versionMismatch = "version_mismatch"
    /// The handshake did not finish in time.
    case handshakeTimeout = "handshake_timeout"
    /// Closed mid-handshake to make room for newer connections.
    case handshakeEvicted = "handshake_evicted"
    /// The peer closed during the handshake.
    case closedDuringHandshake = "closed_during_handshake"
    /// The peer asked for a purpose this port does not serve (a node's handshake at the wrong port).
    case wrongPurpose = "wrong_purpose"
    /// The registration or a later request broke a rule (bad name, duplicate id, bad topic...).
    case rejected
    /// Connected but went silent before registering.
    case silent
    /// Anything else.
    case other

    init(_ error: HandshakeError) {
        switch error {
        case .notAMeshPeer: self = .notAMeshPeer
        case .versionMismatch: self = .versionMismatch
        case .timedOut, .silentAcceptor: self = .handshakeTimeout
        case .evicted: self = .handshakeEvicted
        case .closedDuringHandshake, .closedSilently: self = .closedDuringHandshake
        case .peerRequiresKey, .peerHasNoKey, .peerProofInvalid, .rejectedByPeer, .staticKeyNotProven, .impostor,
            .wrongCoordinatorKey, .peerKeyUnknown:
            self = .authentication
        case .purposeNotServed, .purposeRefused: self = .wrongPurpose
        case .wrongPeer, .peerProtocolError: self = .other
        }
    }
}

/// The coordinator's memory of recent events and its refusal counters, as a value with a bounded
/// size: the last ``capacity`` events in a ring, and one counter per ``RefusalReason``.
struct CoordinatorJournal: Sendable, Equatable {
    /// How many events are kept.
    let capacity: Int
    private var ring: [CoordinatorEvent] = []
    private var next = 0
    private(set) var sequence: UInt64 = 0
    /// Connections refused since the coordinator started, by reason.
    private(set) var refused: [RefusalReason: Int] = [:]

    init(capacity: Int = 200) {
        self.capacity = max(1, capacity)
    }

    /// The kept events, oldest first.
    var events: [CoordinatorEvent] {
        ring.count < capacity ? ring : Array(ring[next...] + ring[..<next])
    }

    mutating func joined(_ node: NodeRecord, peer: SocketAddress, now: Date = Date()) {
        append(.joined, node: node, peer: peer.description, reason: nil, category: nil, now: now)
    }

    mutating func left(_ node: NodeRecord, peer: SocketAddress, reason: String, evicted: Bool, now: Date = Date()) {
        append(evicted ? .evicted : .left, node: node, peer: peer.description, reason: reason, category: nil, now: now)
    }

    mutating func refused(peer: SocketAddress, _ category: RefusalReason, reason: String, now: Date = Date()) {
        refused[category, default: 0] += 1
        append(.refused, node: nil, peer: peer.description, reason: reason, category: category.rawValue, now: now)
    }

    private mutating func append(
        _ kind: CoordinatorEvent.Kind, node: NodeRecord?, peer: String, reason: String?, category: String?, now: Date
    ) {
        sequence += 1
        let event = CoordinatorEvent(
            sequence: sequence, time: now.timeIntervalSince1970, kind: kind, node: node?.name, id: node?.id,
            peer: peer, reason: reason.map { String($0.prefix(200)) }, category: category)
        if ring.count < capacity {
            ring.append(event)
        } else {
            ring[next] = event
        }
        next = (next + 1) % capacity
    }
}
