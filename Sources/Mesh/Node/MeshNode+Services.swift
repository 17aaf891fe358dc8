import Foundation

extension MeshNode {
    /// Provides `service`: each call's request is decoded as `Request`, `handler` runs, and its
    /// response (or the error it throws) goes back to the caller.
    ///
    /// Returns once the coordinator has recorded this node as a provider (at once while the
    /// coordinator is away; the registration is re-sent when it is back), so every node can route
    /// calls here. Nodes that share a name and provide the same service form a pool; calls are
    /// shared among them in turn. Handlers run concurrently, at most
    /// ``Configuration/maximumConcurrentRequests`` at once for the node and fewer for one caller;
    /// later requests wait, callers taking turns. A request past ``Configuration/serviceLimits``
    /// (per caller or in total) is refused at once, and its caller gets
    /// ``ServiceError/busy(service:provider:reason:)``.
    /// `Data` and `[UInt8]` requests and responses travel as raw bytes.
    /// - Parameters:
    ///   - service: the service's name; 1 to 255 bytes of UTF-8, no control characters.
    ///   - handler: turns a request into a response; a thrown error reaches the caller as
    ///     ``ServiceError/handlerFailed(service:provider:reason:)`` with its description.
    /// - Throws: ``MeshError/closed``, ``MeshError/invalidName(_:reason:)`` (also when this node
    ///   already provides `service`), or a timeout waiting for the coordinator.
    public func serve<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ service: String, _ handler: @escaping @Sendable (Request) async throws -> Response
    ) async throws {
        try await addService(service, Request.self) { request, _ in try await handler(request) }
    }

    /// Provides `service`, like ``serve(_:_:)``, with the caller's identity for each request.
    public func serve<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ service: String, as type: Request.Type = Request.self,
        handler: @escaping @Sendable (ServiceCall<Request>) async throws -> Response
    ) async throws {
        try await addService(service, Request.self) { request, caller in
            try await handler(ServiceCall(service: service, request: request, caller: caller))
        }
    }

    /// Registers a handler and tells the coordinator.
    private func addService<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ service: String, _ type: Request.Type,
        _ handler: @escaping @Sendable (Request, MeshPeer) async throws -> Response
    ) async throws {
        try checkOpen()
        try validateName(service, kind: "service")
        let codec = self.codec
        let logger = self.logger
        let added = services.add(service) { request, caller in
            let value: Request
            do {
                value = try decodePayload(Request.self, from: request.payload, codec: codec)
            } catch {
                return .failure(.requestUndecodable, "not a \(Request.self): \(describeDecodingError(error))")
            }
            let response: Response
            do {
                response = try await handler(value, caller)
            } catch {
                // The caller gets the description; the provider's operator sees it too.
                logger.warning(
                    "service \"\(service)\" failed for \(caller.name) (\(caller.id)): \(Swift.type(of: error)): \(error)")
                return .failure(.handlerFailed, String(describing: error))
            }
            do {
                let (encoding, payload) = try encodePayload(response, codec: codec)
                return .reply(encoding, payload)
            } catch {
                return .failure(.responseUnusable, "could not encode the \(Response.self) response: \(error)")
            }
        }
        guard added else {
            throw MeshError.invalidName(service, reason: "this node already provides the service; call stopServing first")
        }
        guard servedServices.insert(service).inserted else { return }
        announce(.serve, service: service)
        guard isConnectedToCoordinator else { return }
        let me = id
        do {
            try await waitForTopology(.node(me), timeout: configuration.connectTimeout, describing: "the coordinator to record the service") {
                $0.nodes[me]?.services.contains(service) ?? false
            }
        } catch {
            services.remove(service)
            if servedServices.remove(service) != nil { announce(.unserve, service: service) }
            throw error
        }
    }

    /// Stops providing `service` and tells the coordinator. Calls already running finish; calls
    /// that arrive later are answered with ``ServiceError/notServed(service:provider:)``.
    ///
    /// - Throws: ``MeshError/closed``, or a timeout waiting for the coordinator.
    public func stopServing(_ service: String) async throws {
        try checkOpen()
        services.remove(service)
        guard servedServices.remove(service) != nil else { return }
        announce(.unserve, service: service)
        guard isConnectedToCoordinator else { return }
        let me = id
        try await waitForTopology(
            .node(me), timeout: configuration.connectTimeout, describing: "the coordinator to record the end of the service") {
            !($0.nodes[me]?.services.contains(service) ?? false)
        }
    }

    /// Waits until at least `count` nodes provide `service` (this one included).
    ///
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``.
    public func waitForService(_ service: String, count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        let what = count == 1 ? "a provider of \"\(service)\"" : "\(count) providers of \"\(service)\""
        try await need(ViewInterest(services: [service]))
        try await waitForTopology(.service(service), timeout: timeout, describing: what) { topology in
            topology.nodes.values.count { $0.services.contains(service) } >= count
        }
    }

    /// Calls `service` with `request` and waits for the response.
    ///
    /// One provider answers each call: the node picks it from its topology with its load balancing
    /// (groups in turn, and members of each group in turn), skipping members whose connection
    /// failed in the last second. Runs on the caller's executor, without an actor hop.
    /// - Parameters:
    ///   - service: the service's name.
    ///   - request: any `Encodable` value; `Data` and `[UInt8]` travel as raw bytes.
    ///   - type: the response type; `Data` or `[UInt8]` receive the reply's bytes unchanged.
    ///   - timeout: how long to wait for the reply. Past it the call throws and leaves nothing
    ///     behind; a reply that comes later is dropped (counted in
    ///     ``ServiceStatistics/lateAnswers``).
    /// - Throws: ``MeshError/service(_:)``: no provider (at once), the provider's handler threw,
    ///   the provider was busy (refused at once; retry later),
    ///   a request or response did not decode, the provider's connection was lost (at once, not at
    ///   the timeout); ``MeshError/timedOut(waitingFor:seconds:)``; `CancellationError` when the
    ///   calling task is cancelled; ``MeshError/frameTooLarge(size:limit:)``; ``MeshError/closed``.
    public nonisolated(nonsending) func call<Request: Encodable & Sendable, Response: Decodable & Sendable>(
        _ service: String, _ request: Request, as type: Response.Type = Response.self,
        timeout: Duration = .seconds(10)
    ) async throws -> Response {
        let encoding: PayloadEncoding
        let payload: Data
        do {
            (encoding, payload) = try encodePayload(request, codec: codec)
        } catch {
            throw MeshError.service(.requestUnencodable(service: service, reason: "\(error)"))
        }
        let (reply, provider) = try await exchange(service, encoding: encoding, payload: payload, timeout: timeout)
        do {
            return try decodePayload(Response.self, from: reply, codec: codec)
        } catch {
            throw MeshError.service(
                .responseUndecodable(
                    service: service, provider: provider, reason: "not a \(Response.self): \(describeDecodingError(error))"))
        }
    }

    /// Counters of the calls this node made and served.
    public nonisolated var serviceStatistics: ServiceStatistics {
        var statistics = calls.statistics
        services.report(into: &statistics)
        return statistics
    }

    /// Sends one request and waits for its answer: the one path of every call.
    private nonisolated(nonsending) func exchange(
        _ service: String, encoding: PayloadEncoding, payload: Data, timeout: Duration
    ) async throws -> (Data, MeshPeer) {
        guard payload.count <= configuration.maximumMessageSize else {
            if router.isClosed { throw MeshError.closed }
            throw MeshError.frameTooLarge(size: payload.count, limit: configuration.maximumMessageSize)
        }
        try await prepareRoute(service: service)
        guard var target = try router.provider(of: service) else {
            throw MeshError.service(.noProvider(service: service))
        }
        let calls = self.calls
        let id = calls.makeID()
        let deadline = ContinuousClock.now + timeout
        return try await withTaskCancellationHandler {
            var redialled = false
            var retry = false
            var frame: [UInt8]?
            while true {
                switch target {
                case .unreachable(let node):
                    throw MeshError.service(
                        .providerLost(
                            service: service, provider: MeshPeer(id: node.id, name: node.name),
                            reason: "no connection to \(node.address) could be opened"))
                case .local(let node):
                    let provider = MeshPeer(id: node.id, name: node.name)
                    let services = self.services
                    let caller = MeshPeer(id: self.id, name: name)
                    let request = ServiceFrame.Request(id: id, service: service, encoding: encoding, payload: payload)
                    let reply = try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Data, any Error>) in
                        let waiting = PendingCalls.Waiting(
                            continuation: continuation, connectionID: nil, service: service, provider: provider,
                            deadline: deadline, timeout: timeout)
                        guard calls.wait(id, waiting) else { return }
                        if Task.isCancelled { return calls.cancel(id) }
                        services.submit(
                            InboundRequest(request: request, caller: caller, replyPath: .local(calls), bytes: payload.count),
                            from: nil)
                    }
                    return (reply, provider)
                case .remote(let connection, let node):
                    let provider = MeshPeer(id: node.id, name: node.name)
                    let bytes = frame ?? payload.withUnsafeBytes {
                        ServiceFrame.request(id: id, service: service, encoding: encoding, payload: $0)
                    }
                    frame = bytes
                    let result: Connection.SendResult
                    do {
                        let reply = try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Data, any Error>) in
                            let waiting = PendingCalls.Waiting(
                                continuation: continuation, connectionID: connection.id, service: service,
                                provider: provider, deadline: deadline, timeout: timeout)
                            guard calls.wait(id, waiting, retry: retry) else { return }
                            if Task.isCancelled { return calls.cancel(id) }
                            let result = connection.send(bytes)
                            if result != .queued, let waiting = calls.withdraw(id) {
                                waiting.continuation.resume(throwing: RequestNotQueued(result: result))
                            }
                        }
                        return (reply, provider)
                    } catch let notQueued as RequestNotQueued {
                        result = notQueued.result
                        retry = true
                    }
                    if result == .closed {
                        // The connection died since it was last used: dial again, once.
                        guard !redialled, let fresh = router.reconnect(to: node, replacing: connection) else {
                            throw MeshError.service(
                                .providerLost(service: service, provider: provider, reason: "no connection could be opened"))
                        }
                        redialled = true
                        target = .remote(fresh, node)
                    } else if await !connection.waitForSpace(until: deadline) {
                        try Task.checkCancellation()
                        if ContinuousClock.now >= deadline {
                            throw MeshError.timedOut(
                                waitingFor: "room to send a request to service \"\(service)\" at \(provider)",
                                seconds: seconds(timeout))
                        }
                    }
                }
            }
        } onCancel: {
            calls.cancel(id)
        }
    }
}

/// One request to a service, as a handler registered with ``MeshNode/serve(_:as:handler:)`` sees it.
public struct ServiceCall<Request: Sendable>: Sendable {
    /// The service called.
    public var service: String
    /// The decoded request.
    public var request: Request
    /// The node that called.
    public var caller: MeshPeer
}

/// A request that found its connection closed or full, before anything was sent.
private struct RequestNotQueued: Error {
    var result: Connection.SendResult
}

/// A decoding error in one line: the reason and where in the value it was found.
func describeDecodingError(_ error: any Error) -> String {
    guard let decoding = error as? DecodingError else { return "\(error)" }
    func path(_ context: DecodingError.Context) -> String {
        let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return keys.isEmpty ? "" : " at \(keys)"
    }
    switch decoding {
    case .typeMismatch(let type, let context):
        return "expected \(type)\(path(context)): \(context.debugDescription)"
    case .valueNotFound(let type, let context):
        return "no \(type) value\(path(context)): \(context.debugDescription)"
    case .keyNotFound(let key, let context):
        return "missing key \"\(key.stringValue)\"\(path(context))"
    case .dataCorrupted(let context):
        let underlying = context.underlyingError.map { " (\($0))" } ?? ""
        return "\(context.debugDescription)\(path(context))\(underlying)"
    @unknown default:
        return "\(error)"
    }
}
