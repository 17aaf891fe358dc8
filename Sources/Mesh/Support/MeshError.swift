import Foundation

/// Everything the public `Mesh` API throws. Each case says what happened, where, and what to do.
public enum MeshError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No coordinator answered at `address`.
    case coordinatorUnreachable(address: String, reason: String)
    /// The key check failed with `peer` (wrong key, or a key on one side only).
    case authenticationFailed(peer: String, reason: String)
    /// `peer` speaks another protocol or is not a mesh program at all.
    case protocolMismatch(peer: String, reason: String)
    /// The coordinator refused to register this node.
    case registrationRejected(reason: String)
    /// An address could not be read or resolved.
    case invalidAddress(String, reason: String)
    /// A topic or node name is empty, too long, or has control characters.
    case invalidName(String, reason: String)
    /// A message was larger than the frame limit.
    case frameTooLarge(size: Int, limit: Int)
    /// A value could not be encoded for `topic`.
    case encodingFailed(topic: String, reason: String)
    /// Waiting for `what` took longer than allowed.
    case timedOut(waitingFor: String, seconds: Double)
    /// The node was closed; make a new one.
    case closed
    /// A key shorter than the minimum was given.
    case weakKey(length: Int, minimum: Int)
    /// A key that is easy to guess (a passphrase of a few words, say) was given, and weak keys
    /// were not allowed: ``MeshKey/estimatedStrength(_:)`` puts it under `minimumBits`.
    case guessableKey(estimatedBits: Int, minimumBits: Int)
    /// The coordinator refused a request from the `mesh` tool (an admin request without the admin key, say).
    case requestRefused(reason: String)
    /// A service call failed; the ``ServiceError`` says which side and why.
    case service(ServiceError)
    /// The message type declared for `topic` disagrees with another declaration there; `reason`
    /// names both types and both nodes.
    case typeMismatch(topic: String, reason: String)
    /// A node or coordinator key file (`mesh keygen --node`) could not be used.
    case invalidIdentity(path: String, reason: String)
    /// The coordinator's names file (which keys may use which node names) could not be used.
    case invalidNamesFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .coordinatorUnreachable(let address, let reason):
            return "coordinator unreachable at \(address): \(reason). Is mesh-coordinator running there?"
        case .authenticationFailed(let peer, let reason):
            return "authentication failed with \(peer): \(reason)"
        case .protocolMismatch(let peer, let reason):
            return "protocol mismatch with \(peer): \(reason)"
        case .registrationRejected(let reason):
            return "the coordinator rejected this node: \(reason)"
        case .invalidAddress(let text, let reason):
            return "invalid address \"\(text)\": \(reason)"
        case .invalidName(let name, let reason):
            return "invalid name \"\(name.prefix(80))\": \(reason)"
        case .frameTooLarge(let size, let limit):
            return "message of \(size) bytes exceeds the frame limit of \(limit) bytes (raise MeshNode.Configuration.maximumMessageSize on every node)"
        case .encodingFailed(let topic, let reason):
            return "could not encode the message for topic \"\(topic)\": \(reason)"
        case .timedOut(let what, let seconds):
            return "timed out after \(seconds) s waiting for \(what)"
        case .closed:
            return "the node is closed"
        case .requestRefused(let reason):
            return "the coordinator refused the request: \(reason)"
        case .weakKey(let length, let minimum):
            return "the authkey is \(length) byte(s); at least \(minimum) are required (generate one with `mesh keygen`)"
        case .guessableKey(let bits, let minimum):
            return "the authkey is too easy to guess: about \(bits) bits by a conservative estimate, at least \(minimum)"
                + " are required. Use a key from `mesh keygen` (mesh keygen > mesh.key), or accept this one on purpose"
                + " with --allow-weak-key, MESH_ALLOW_WEAK_KEY=1 or allowWeakKey in the configuration"
        case .service(let error):
            return error.description
        case .invalidIdentity(let path, let reason):
            return "cannot use the key file \(path): \(reason)"
        case .invalidNamesFile(let path, let reason):
            return "cannot use the names file \(path): \(reason)"
        case .typeMismatch(_, let reason):
            return "message types disagree: \(reason)"
        }
    }
}

extension MeshError {
    /// Explains why a connection to the coordinator at `address` ended before it was usable.
    package init(connectingTo address: String, failure: ConnectionError?) {
        let peer = "coordinator at \(address)"
        switch failure {
        case .handshake(let error) where error.isAuthenticationFailure:
            self = .authenticationFailed(peer: peer, reason: error.description)
        case .handshake(.timedOut), .handshake(.evicted):
            // A coordinator too busy to answer in time (or a program that says nothing), not a wrong protocol.
            self = .coordinatorUnreachable(address: address, reason: failure?.description ?? "no handshake")
        case .handshake(let error):
            self = .protocolMismatch(peer: peer, reason: error.description)
        case .socket(.failed(_, let code)) where code == ECONNREFUSED:
            self = .coordinatorUnreachable(address: address, reason: "connection refused")
        case .some(let error):
            self = .coordinatorUnreachable(address: address, reason: error.description)
        case nil:
            self = .coordinatorUnreachable(address: address, reason: "connection closed")
        }
    }
}

/// Checks a topic or node name: 1 to 255 bytes of UTF-8, no control characters.
package func validateName(_ name: String, kind: String) throws(MeshError) {
    if name.isEmpty { throw .invalidName(name, reason: "\(kind) must not be empty") }
    if name.utf8.count > 255 { throw .invalidName(name, reason: "\(kind) is \(name.utf8.count) bytes; the limit is 255") }
    if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
        throw .invalidName(name, reason: "\(kind) contains control characters")
    }
}
