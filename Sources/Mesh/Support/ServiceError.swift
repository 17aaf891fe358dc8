/// Why a service call failed, thrown as ``MeshError/service(_:)``.
///
/// Each case names the service and, once a provider was chosen, the provider, so the message
/// says which side failed. A call past its timeout throws ``MeshError/timedOut(waitingFor:seconds:)``
/// instead, and a cancelled one `CancellationError`.
public enum ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No node in this node's topology provides the service (the call fails at once).
    case noProvider(service: String)
    /// The request value could not be encoded with this node's codec (nothing was sent).
    case requestUnencodable(service: String, reason: String)
    /// The provider's handler threw; `reason` is the thrown error's description.
    case handlerFailed(service: String, provider: MeshPeer, reason: String)
    /// The provider could not decode the request into its handler's request type.
    case requestUndecodable(service: String, provider: MeshPeer, reason: String)
    /// The provider's response could not be encoded, or was larger than its message size limit.
    case responseUnusable(service: String, provider: MeshPeer, reason: String)
    /// This node could not decode the reply into the type asked for.
    case responseUndecodable(service: String, provider: MeshPeer, reason: String)
    /// The provider no longer provides the service (it stopped between routing and arrival).
    case notServed(service: String, provider: MeshPeer)
    /// The connection to the provider closed or could not be opened before the reply came.
    case providerLost(service: String, provider: MeshPeer, reason: String)
    /// The provider refused the call at once, without running it: this caller, or all callers
    /// together, had as many requests or bytes running and waiting there as its limits allow.
    /// Safe to retry later; `reason` names the limit.
    case busy(service: String, provider: MeshPeer, reason: String)
    /// The provider answered with a failure code this node does not know.
    case remoteFailure(service: String, provider: MeshPeer, code: UInt8, reason: String)

    /// The service the call was for.
    public var service: String {
        switch self {
        case .noProvider(let service), .requestUnencodable(let service, _), .handlerFailed(let service, _, _), .requestUndecodable(let service, _, _),
            .responseUnusable(let service, _, _), .responseUndecodable(let service, _, _), .notServed(let service, _),
            .providerLost(let service, _, _), .busy(let service, _, _), .remoteFailure(let service, _, _, _):
            return service
        }
    }

    public var description: String {
        switch self {
        case .noProvider(let service):
            return "no node provides the service \"\(service)\""
        case .requestUnencodable(let service, let reason):
            return "could not encode the request for service \"\(service)\": \(reason)"
        case .handlerFailed(let service, let provider, let reason):
            return "service \"\(service)\" failed at \(provider): \(reason)"
        case .requestUndecodable(let service, let provider, let reason):
            return "service \"\(service)\" at \(provider) could not decode the request: \(reason)"
        case .responseUnusable(let service, let provider, let reason):
            return "service \"\(service)\" at \(provider) could not send its response: \(reason)"
        case .responseUndecodable(let service, let provider, let reason):
            return "could not decode the reply of service \"\(service)\" from \(provider): \(reason)"
        case .notServed(let service, let provider):
            return "\(provider) does not provide the service \"\(service)\" (any more)"
        case .providerLost(let service, let provider, let reason):
            return "lost the connection to \(provider) during a call to service \"\(service)\": \(reason)"
        case .busy(let service, let provider, let reason):
            return "service \"\(service)\" at \(provider) refused the call: \(reason)"
        case .remoteFailure(let service, let provider, let code, let reason):
            return "service \"\(service)\" failed at \(provider) (code \(code)): \(reason)"
        }
    }

    /// Maps a failure frame's code to a case.
    init(code: UInt8, description: String, service: String, provider: MeshPeer) {
        switch ServiceFailureCode(rawValue: code) {
        case .handlerFailed: self = .handlerFailed(service: service, provider: provider, reason: description)
        case .requestUndecodable: self = .requestUndecodable(service: service, provider: provider, reason: description)
        case .notServed: self = .notServed(service: service, provider: provider)
        case .responseUnusable: self = .responseUnusable(service: service, provider: provider, reason: description)
        case .busy: self = .busy(service: service, provider: provider, reason: description)
        case nil: self = .remoteFailure(service: service, provider: provider, code: code, reason: description)
        }
    }
}
