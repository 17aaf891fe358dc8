import Foundation
import Mesh
import MeshCoordination
import MeshCrypto
import MeshHTTP
import MeshTooling
import Synchronization

/// The coordinator's web view and Prometheus metrics, over HTTP/1.1.
///
/// Serves `GET /` (a self-contained page drawing the mesh live), `/api/view`, `/api/topology`,
/// `/api/status`, `/api/events` (JSON) and `/metrics` (Prometheus text format); docs/HTTP.md
/// describes each. With an authkey, every request must carry
/// `Authorization: Bearer TOKEN` or HTTP basic credentials with TOKEN as the password, where TOKEN
/// is ``token(forAuthkey:)``; anything else gets 401.
///
/// The coordinator is asked for a snapshot at most once per ``Configuration/refreshInterval``
/// however many clients poll, and the HTTP connections run on their own event-loop thread: web
/// clients, hostile or not, cost the coordinator's node traffic a bounded amount of work.
///
/// ```swift
/// let web = MeshWebServer(coordinator: coordinator, configuration: .init(host: "127.0.0.1", port: 6375))
/// let address = try await web.start()
/// // ...
/// web.close()
/// ```
package final class MeshWebServer: Sendable {
    /// Where to listen and whom to let in.
    package struct Configuration: Sendable {
        package var host: String
        package var port: UInt16
        /// The mesh's key; `nil` serves anyone who can reach the port.
        package var authkey: String?
        package var logger: MeshLogger
        /// How old a snapshot may be before a request fetches a new one.
        package var refreshInterval: Duration
        /// Connection limits and timeouts.
        var http = HTTPServer.Configuration()

        package init(
            host: String = "127.0.0.1", port: UInt16 = MeshWebServer.defaultPort, authkey: String? = nil,
            logger: MeshLogger = MeshLogger(label: "coordinator"), refreshInterval: Duration = .milliseconds(250)
        ) {
            self.host = host
            self.port = port
            self.authkey = authkey
            self.logger = logger
            self.refreshInterval = refreshInterval
        }

        /// At most this many HTTP connections at once.
        package var maximumConnections: Int {
            get { http.maximumConnections }
            set { http.maximumConnections = newValue }
        }

        /// How long a client has to send a whole request head (and how long an idle connection stays).
        package var requestTimeout: Duration {
            get { http.requestTimeout }
            set { http.requestTimeout = newValue }
        }
    }

    /// 6375: the coordinator's port plus one.
    package static let defaultPort: UInt16 = 6375

    /// The bearer token that opens the web view of a mesh with this key: lowercase hex of
    /// HMAC-SHA256(stretched key, "swift-mesh http token"), where the stretched key is the one the
    /// handshake uses (PBKDF2, see ``MeshKey``). It is derived, so the key itself never goes into a
    /// browser or a Prometheus configuration, knowing the token does not let anyone join, and a
    /// token seen on the network costs a guesser the key stretching per guess.
    ///
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` for a key under 16 bytes.
    package static func token(forAuthkey authkey: String) throws -> String {
        guard let key = try MeshKey.stretched(authkey) else { throw MeshError.weakKey(length: 0, minimum: MeshKey.minimumLength) }
        return HMAC<SHA256>.authenticationCode(for: Array("swift-mesh http token".utf8), using: key).description
    }

    package let configuration: Configuration
    private let coordinator: MeshCoordinator
    private let cache: WebCache
    private let server = Mutex<HTTPServer?>(nil)

    package init(coordinator: MeshCoordinator, configuration: Configuration = Configuration()) {
        self.coordinator = coordinator
        self.configuration = configuration
        self.cache = WebCache(coordinator: coordinator, refreshInterval: configuration.refreshInterval)
    }

    /// Binds and starts serving; returns the bound address (with the real port for port 0).
    ///
    /// Bound to a non-loopback address without a key, it logs a warning: anyone who can reach the
    /// port then sees the mesh's nodes and topics.
    /// - Throws: ``MeshError/invalidAddress(_:reason:)`` when the address cannot be bound.
    @discardableResult
    package func start() async throws -> SocketAddress {
        if let running = server.withLock({ $0 }) { return running.address }
        let address = try await SocketAddress.resolve(configuration.host, defaultPort: configuration.port)
        let token = try configuration.authkey.flatMap { $0.isEmpty ? nil : Array(try MeshWebServer.token(forAuthkey: $0).utf8) }
        let router = WebRouter(token: token, cache: cache, checksHost: address.isLoopback)
        let http: HTTPServer
        do {
            http = try HTTPServer(binding: address, configuration: configuration.http, logger: configuration.logger) {
                request, responder in router.handle(request, responder)
            }
        } catch {
            throw MeshError.invalidAddress(address.description, reason: error.description)
        }
        cache.attach(http)
        server.withLock { $0 = http }
        if !address.isLoopback, token == nil {
            configuration.logger.warning(
                "serving the web view on \(address) with no authkey: anyone who can reach this port can see the mesh's"
                    + " nodes and topics (use --authkey-file or MESH_AUTHKEY)")
        }
        return http.address
    }

    deinit {
        close()
    }

    /// The bound address, once started.
    package var address: SocketAddress? { server.withLock { $0?.address } }

    /// Stops serving and closes every HTTP connection.
    package func close() {
        server.withLock { server in
            server?.close()
            server = nil
        }
    }
}

/// The routes: authentication first (an unauthenticated client learns nothing, not even which
/// paths exist), then the method, then the path.
struct WebRouter: Sendable {
    enum Route: String, Sendable, CaseIterable {
        case view = "/api/view"
        case topology = "/api/topology"
        case status = "/api/status"
        case events = "/api/events"
        case metrics = "/metrics"
    }

    let token: [UInt8]?
    let cache: WebCache
    /// Served on loopback only: then the `Host` must be `localhost` or an IP address, so a web
    /// page elsewhere cannot read the view through a DNS name rebound to 127.0.0.1.
    let checksHost: Bool

    static let commonHeaders: [(name: String, value: String)] = [
        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
    ]

    func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        if checksHost, let host = request.header("Host"), !WebRouter.isLocalHost(host) {
            responder.respond(
                .error(.forbidden, "this server answers to localhost and IP addresses only (Host \"\(host.prefix(80))\")"))
            return
        }
        if let token, !WebRouter.authorized(request.header("Authorization"), token: token) {
            responder.respond(
                .error(
                    .unauthorized, "this mesh has an authkey: send Authorization: Bearer TOKEN (mesh http-token prints it)",
                    headers: [("WWW-Authenticate", "Basic realm=\"swift-mesh\", charset=\"UTF-8\"")]))
            return
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            responder.respond(
                .error(.methodNotAllowed, "only GET and HEAD are served", headers: [("Allow", "GET, HEAD")]))
            return
        }
        switch request.path {
        case "/", "/index.html":
            responder.respond(
                HTTPResponse(
                    contentType: "text/html; charset=utf-8", body: WebPage.bytes,
                    headers: WebRouter.commonHeaders + [
                        (
                            "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
                        )
                    ]))
        default:
            guard let route = Route(rawValue: request.path) else {
                responder.respond(.error(.notFound, "no such page; try /, /metrics or /api/view"))
                return
            }
            cache.respond(route, responder)
        }
    }

    /// Whether a `Host` field names `localhost` or an IP literal (with or without a port).
    static func isLocalHost(_ host: String) -> Bool {
        var name = Substring(host.lowercased())
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            name = name[name.index(after: name.startIndex)..<close]
            return SocketAddress.parse(String(name), defaultPort: 0) != nil
        }
        if let colon = name.lastIndex(of: ":"), name.filter({ $0 == ":" }).count == 1 { name = name[..<colon] }
        return name == "localhost" || SocketAddress.parse(String(name), defaultPort: 0) != nil
    }

    /// Whether `header` carries the token, as `Bearer TOKEN` or as the password of HTTP basic
    /// credentials (any user name); compared in constant time.
    static func authorized(_ header: String?, token: [UInt8]) -> Bool {
        guard let header else { return false }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2 else { return false }
        let scheme = parts[0].lowercased()
        let credentials = parts[1].trimmingCharacters(in: .whitespaces)
        switch scheme {
        case "bearer":
            return constantTimeEquals(Array(credentials.utf8), token)
        case "basic":
            guard credentials.utf8.count <= 1024, let decoded = Data(base64Encoded: credentials),
                let colon = decoded.firstIndex(of: UInt8(ascii: ":"))
            else { return false }
            return constantTimeEquals(Array(decoded[decoded.index(after: colon)...]), token)
        default:
            return false
        }
    }
}

/// The rendered documents, refreshed from the coordinator at most once per interval.
///
/// A request whose document is fresh is answered on the spot, on the HTTP loop thread. Otherwise
/// it waits while one task (never more) takes a snapshot from the coordinator and renders what the
/// waiting requests asked for; rendering happens on that task, off the coordinator's actor.
final class WebCache: Sendable {
    private struct State {
        var snapshot: CoordinatorSnapshot?
        var view: WebView?
        var takenAt = ContinuousClock.Instant.now
        var bodies: [WebRouter.Route: [UInt8]] = [:]
        var refreshing = false
        var waiters: [(route: WebRouter.Route, responder: HTTPResponder)] = []
        var rates = RateTracker()
        var http: HTTPServer?
    }

    private let coordinator: MeshCoordinator
    private let refreshInterval: Duration
    private let state = Mutex(State())

    init(coordinator: MeshCoordinator, refreshInterval: Duration) {
        self.coordinator = coordinator
        self.refreshInterval = refreshInterval
    }

    func attach(_ http: HTTPServer) {
        state.withLock { $0.http = http }
    }

    func respond(_ route: WebRouter.Route, _ responder: HTTPResponder) {
        let (body, start) = state.withLock { state -> ([UInt8]?, Bool) in
            if state.view != nil, ContinuousClock.now - state.takenAt < refreshInterval, let body = state.bodies[route] {
                return (body, false)
            }
            state.waiters.append((route, responder))
            if state.refreshing { return (nil, false) }
            state.refreshing = true
            return (nil, true)
        }
        if let body {
            responder.respond(WebCache.response(route, body))
        } else if start {
            Task { await refresh() }
        }
    }

    /// Answers every waiter, taking a new snapshot first when the last one is stale; loops until
    /// no waiter is left, then lets the next request start another round.
    private func refresh() async {
        while true {
            let stale = state.withLock { state in state.view == nil || ContinuousClock.now - state.takenAt >= refreshInterval }
            if stale {
                let snapshot = await coordinator.snapshot()
                let now = ContinuousClock.now
                state.withLock { state in
                    state.rates.update(snapshot.status.nodes, now: now)
                    state.snapshot = snapshot
                    state.view = WebView(snapshot, rates: state.rates)
                    state.takenAt = now
                    state.bodies = [:]
                }
            }
            let (waiters, view, snapshot, http) = state.withLock { state in
                let waiters = state.waiters
                state.waiters = []
                if waiters.isEmpty { state.refreshing = false }
                return (waiters, state.view, state.snapshot, state.http)
            }
            guard !waiters.isEmpty, let view, let snapshot else { return }
            var rendered: [WebRouter.Route: [UInt8]] = [:]
            for route in Set(waiters.map(\.route)) {
                rendered[route] = WebCache.render(route, view, snapshot, http: http?.statistics)
            }
            state.withLock { state in
                for (route, body) in rendered { state.bodies[route] = body }
            }
            for waiter in waiters { waiter.responder.respond(WebCache.response(waiter.route, rendered[waiter.route] ?? [])) }
        }
    }

    static func render(_ route: WebRouter.Route, _ view: WebView, _ snapshot: CoordinatorSnapshot, http: HTTPServer.Counters?)
        -> [UInt8]
    {
        switch route {
        case .view: return WebDocuments.encode(view)
        case .topology: return WebDocuments.encode(WebDocuments.topology(snapshot))
        case .status: return WebDocuments.encode(WebDocuments.status(snapshot))
        case .events: return WebDocuments.encode(WebDocuments.events(view))
        case .metrics: return Array(MetricsExposition.render(view, limits: snapshot.limits, http: http).utf8)
        }
    }

    static func response(_ route: WebRouter.Route, _ body: [UInt8]) -> HTTPResponse {
        let type = route == .metrics ? "text/plain; version=0.0.4; charset=utf-8" : "application/json"
        return HTTPResponse(contentType: type, body: body, headers: WebRouter.commonHeaders)
    }
}
