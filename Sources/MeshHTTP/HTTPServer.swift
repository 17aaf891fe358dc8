import CMeshSystem
import Mesh
import Synchronization

/// A small HTTP/1.1 server on non-blocking sockets, for the coordinator's web view and metrics.
///
/// It runs on an event loop of its own (``HTTPServer/loop``), so a flood of HTTP clients never
/// queues ahead of the coordinator's node connections on the mesh's I/O thread. It takes GET-style
/// requests with no body and trusts nothing the client says about sizes:
///
/// - a request head is read up to ``HTTPRequestDecoder/Limits`` (request line 8 KiB, header
///   section 16 KiB, 64 fields); past that the client gets 414 or 431 and the connection closes;
/// - a request head must arrive whole within ``Configuration/requestTimeout`` of the server
///   starting to wait for it (a slowloris client gets 408); a connection idle that long closes;
/// - a response the client does not read within ``Configuration/writeTimeout`` closes the connection;
/// - a request the handler has not answered within ``Configuration/requestTimeout`` gets 503;
/// - at most ``Configuration/maximumConnections`` connections are open: past that, one is closed
///   to make room, first the one answered longest ago among those already answered and closing
///   (an error such as 400 ends a connection: its client has had all it will get, so holding the
///   socket open keeps nobody out), then the one that has waited longest for its next request
///   (idle sockets cannot lock real clients out); only when every connection is busy does the
///   newcomer get 503.
///
/// The handler is called on the loop thread and must return at once; it answers through the
/// ``HTTPResponder`` it is given, from any thread, now or later.
package final class HTTPServer: Sendable {
    /// The loop every HTTP connection in the process runs on: its own thread, started on first use.
    static let loop = EventLoop(name: "mesh-http")

    /// Limits and timeouts.
    package struct Configuration: Sendable {
        package var maximumConnections = 256
        package var requestTimeout: Duration = .seconds(10)
        var writeTimeout: Duration = .seconds(10)
        var limits = HTTPRequestDecoder.Limits()

        package init() {}
    }

    /// Answers a request: called on the loop thread, must not block.
    package typealias Handler = @Sendable (HTTPRequest, HTTPResponder) -> Void

    /// What the server has done, for `/metrics`.
    package struct Counters: Sendable, Equatable {
        /// Responses sent, by status code (errors included).
        package var responses: [Int: Int] = [:]
        /// Connections accepted.
        package var connections = 0
        /// Connections closed to make room for a newcomer at the connection limit (answered
        /// ones that were only closing, or idle ones).
        package var evicted = 0
    }

    private struct Registry {
        var connections: [ObjectIdentifier: HTTPConnection] = [:]
        var closed = false
    }

    /// The bound address, with the real port.
    package let address: SocketAddress
    let configuration: Configuration
    private let listener: Listener
    private let registry: Mutex<Registry>
    private let counters = Mutex(Counters())
    private let logger: MeshLogger
    /// When a refusal was last logged, and how many went unlogged since: one line a second at most.
    private let refusalLog = Mutex<(last: ContinuousClock.Instant?, suppressed: Int)>((nil, 0))

    /// Binds and starts serving.
    ///
    /// - Throws: ``SocketError`` when the address cannot be bound.
    package init(
        binding address: SocketAddress, configuration: Configuration = Configuration(), logger: MeshLogger,
        handler: @escaping Handler
    ) throws(SocketError) {
        let registry = Mutex(Registry())
        let box = ServerBox()
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        self.listener = try Listener(
            binding: address, loop: HTTPServer.loop,
            onError: { error in logger.error("http: accepting a connection failed: \(error)") },
            onAccept: { socket, peer in
                guard let server = box.server else { return socket.close() }  // not started, or gone
                server.accepted(socket, from: peer, handler: handler)
            })
        self.address = listener.address
        box.server = self
    }

    /// Holds the server for the accept closure, which is made before `self` exists.
    private final class ServerBox: Sendable {
        private struct Weak {
            weak var server: HTTPServer?
        }

        private let value = Mutex(Weak())

        var server: HTTPServer? {
            get { value.withLock { $0.server } }
            set { value.withLock { $0.server = newValue } }
        }
    }

    /// What has been served so far.
    package var statistics: Counters { counters.withLock { $0 } }

    /// Connections open now.
    var connectionCount: Int { registry.withLock { $0.connections.count } }

    /// Stops accepting and closes every connection.
    package func close() {
        listener.close()
        let open = registry.withLock { registry -> [HTTPConnection] in
            registry.closed = true
            defer { registry.connections.removeAll() }
            return Array(registry.connections.values)
        }
        for connection in open { HTTPServer.loop.execute { connection.close() } }
    }

    // MARK: Loop thread

    private func accepted(_ socket: Socket, from peer: SocketAddress, handler: @escaping Handler) {
        socket.setNoDelay()
        let connection = HTTPConnection(socket: socket, peer: peer, server: self, handler: handler)
        let (admitted, evict) = registry.withLock { registry -> (Bool, HTTPConnection?) in
            if registry.closed { return (false, nil) }
            var evict: HTTPConnection? = nil
            if registry.connections.count >= configuration.maximumConnections {
                // One that was answered and is only closing, the longest ago; else the one that has
                // waited longest for a request. Busy connections are not taken.
                let open = registry.connections.values
                evict =
                    open.filter { $0.answeredAt != nil }.min { $0.answeredAt! < $1.answeredAt! }
                    ?? open.filter { $0.waitingSince != nil }.min { $0.waitingSince! < $1.waitingSince! }
                guard let victim = evict else { return (false, nil) }
                registry.connections[ObjectIdentifier(victim)] = nil
            }
            registry.connections[ObjectIdentifier(connection)] = connection
            return (true, evict)
        }
        if let evict {
            counters.withLock { $0.evicted += 1 }
            logger.debug(
                "http: closed \(evict.answeredAt == nil ? "idle" : "answered") connection from \(evict.peer) to make room for \(peer)")
            evict.close()
        }
        guard admitted else {
            // Every connection is busy: say so in one write and close, holding nothing.
            counted(.serviceUnavailable)
            let busy = HTTPResponse.error(.serviceUnavailable, "too many connections; try again shortly")
            _ = busy.serialized(keepAlive: false).withUnsafeBytes { try? socket.write($0) }
            socket.close()
            return
        }
        counters.withLock { $0.connections += 1 }
        connection.start()
    }

    func connectionClosed(_ connection: HTTPConnection) {
        registry.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    func counted(_ status: HTTPStatus) {
        counters.withLock { $0.responses[status.code, default: 0] += 1 }
    }

    func log(_ text: @autoclosure () -> String) {
        logger.debug(text())
    }

    /// Logs a refused request as a warning, at most one line a second (a flood of bad requests
    /// must not become a flood of log lines); the next line says how many were not logged.
    func logRefusal(_ text: @autoclosure () -> String) {
        let now = ContinuousClock.now
        let suppressed = refusalLog.withLock { state -> Int? in
            if let last = state.last, now - last < .seconds(1) {
                state.suppressed += 1
                return nil
            }
            defer { state = (now, 0) }
            return state.suppressed
        }
        guard let suppressed else { return }
        logger.warning(text() + (suppressed > 0 ? " (and \(suppressed) more refused requests not logged)" : ""))
    }
}

/// Answers one request, from any thread, once; later calls are ignored.
package struct HTTPResponder: Sendable {
    fileprivate let connection: HTTPConnection
    fileprivate let generation: UInt64

    package func respond(_ response: HTTPResponse) {
        let connection = self.connection
        let generation = self.generation
        HTTPServer.loop.execute { connection.respond(response, generation: generation) }
    }
}

/// One client connection: read a request head, hand it to the handler, write the response, and
/// again while the client keeps the connection alive.
final class HTTPConnection: EventHandler {
    private enum Phase {
        /// Waiting for a request head since the instant given.
        case reading
        /// The handler has the request.
        case handling(head: Bool, keepAlive: Bool)
        /// Writing a response; then read the next request, or drain and close.
        case writing(keepAlive: Bool)
        /// Response sent and write side shut: reading until the client closes (or a deadline),
        /// so the kernel does not reset the connection before the client read the response.
        case draining
        case closed
    }

    let peer: SocketAddress
    private let socket: Socket
    // Strong: the server keeps its open connections and a connection the server; closing the
    // connection (which every path reaches, by timeout at the latest) breaks the cycle.
    private let server: HTTPServer
    private let handler: HTTPServer.Handler
    private var loop: EventLoop { HTTPServer.loop }

    // Safe: everything below is touched only on `HTTPServer.loop`'s thread; `waitingSince` and
    // `answeredAt` are also read by the server under its registry lock, which runs on that same
    // thread (accept).
    private nonisolated(unsafe) var phase = Phase.reading
    nonisolated(unsafe) private(set) var waitingSince: ContinuousClock.Instant?
    /// When the last response went out on a connection that is now only draining before it
    /// closes: the first to go when room is needed.
    nonisolated(unsafe) private(set) var answeredAt: ContinuousClock.Instant?
    private nonisolated(unsafe) var decoder: HTTPRequestDecoder
    private nonisolated(unsafe) var outgoing: [UInt8] = []
    private nonisolated(unsafe) var outgoingOffset = 0
    private nonisolated(unsafe) var token: UInt64?
    private nonisolated(unsafe) var timer: UInt64?
    private nonisolated(unsafe) var generation: UInt64 = 0

    init(socket: Socket, peer: SocketAddress, server: HTTPServer, handler: @escaping HTTPServer.Handler) {
        self.socket = socket
        self.peer = peer
        self.server = server
        self.handler = handler
        self.decoder = HTTPRequestDecoder(limits: server.configuration.limits)
    }

    func start() {
        token = loop.register(socket, interest: .read, handler: self)
        waitForRequest()
    }

    func handle(events: UInt32) {
        loop.preconditionInEventLoop()
        switch phase {
        case .reading:
            readRequests()
        case .writing:
            if events & Interest.write.rawValue != 0 { flush() }
            if events & (cmesh_epollerr | cmesh_epollhup) != 0 { close() }
        case .handling:
            // Not reading now, but epoll reports these whatever the interest.
            if events & (cmesh_epollerr | cmesh_epollhup) != 0 { close() }
        case .draining:
            drain()
        case .closed:
            break
        }
    }

    private func waitForRequest() {
        phase = .reading
        waitingSince = .now
        setInterest(.read)
        setTimer(server.configuration.requestTimeout) { [self] in
            guard case .reading = phase else { return }
            if decoder.bufferedByteCount > 0 {
                server.logRefusal("http: \(peer) did not send a whole request head within \(formatted(server.configuration.requestTimeout))")
                fail(.requestTimeout, "the request head did not arrive within \(formatted(server.configuration.requestTimeout))")
            } else {
                close()  // an idle keep-alive connection
            }
        }
        // A pipelined request may already be buffered.
        if decoder.bufferedByteCount > 0 { parseRequest() }
    }

    private func readRequests() {
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        for _ in 0..<4 {
            guard case .reading = phase else { return }
            do {
                let count = try scratch.withUnsafeMutableBytes { raw in try socket.read(into: raw) }
                guard let count else { return }
                scratch.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            } catch {
                server.log("http: \(peer) closed: \(error)")
                close()
                return
            }
            parseRequest()
        }
    }

    private func parseRequest() {
        let request: HTTPRequest
        do {
            guard let next = try decoder.next() else { return }
            request = next
        } catch {
            server.logRefusal("http: refused a request from \(peer): \(error.status.code) \(error)")
            fail(error.status, error.description)
            return
        }
        waitingSince = nil
        setInterest([])
        generation += 1
        phase = .handling(head: request.method == "HEAD", keepAlive: request.keepAlive)
        // A handler that never answers (a coordinator that does not respond) must not hold the
        // connection forever.
        let handling = generation
        setTimer(server.configuration.requestTimeout) { [self] in
            guard handling == generation, case .handling = phase else { return }
            fail(.serviceUnavailable, "no answer within \(formatted(server.configuration.requestTimeout))")
        }
        handler(request, HTTPResponder(connection: self, generation: generation))
    }

    /// Sends the handler's answer, if it is for the request in hand.
    fileprivate func respond(_ response: HTTPResponse, generation: UInt64) {
        guard generation == self.generation, case .handling(let head, let keepAlive) = phase else { return }
        server.counted(response.status)
        send(response.serialized(keepAlive: keepAlive, includeBody: !head), keepAlive: keepAlive)
    }

    /// Answers with an error status and closes: after a malformed request the stream's framing
    /// cannot be trusted.
    private func fail(_ status: HTTPStatus, _ message: String) {
        waitingSince = nil
        server.counted(status)
        send(HTTPResponse.error(status, message).serialized(keepAlive: false), keepAlive: false)
    }

    private func send(_ bytes: [UInt8], keepAlive: Bool) {
        cancelTimer()
        phase = .writing(keepAlive: keepAlive)
        outgoing = bytes
        outgoingOffset = 0
        setTimer(server.configuration.writeTimeout) { [self] in
            guard case .writing = phase else { return }
            server.log("http: \(peer) did not read its response within \(formatted(server.configuration.writeTimeout))")
            close()
        }
        flush()
    }

    private func flush() {
        guard case .writing(let keepAlive) = phase else { return }
        do {
            while outgoingOffset < outgoing.count {
                let offset = outgoingOffset
                let written = try outgoing.withUnsafeBytes { raw in
                    try socket.write(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                }
                if written == 0 {
                    setInterest(.write)
                    return
                }
                outgoingOffset += written
            }
        } catch {
            server.log("http: writing to \(peer) failed: \(error)")
            close()
            return
        }
        outgoing = []
        outgoingOffset = 0
        cancelTimer()
        if keepAlive {
            waitForRequest()
        } else {
            // Wait up to 2 s for the client to close, so the kernel does not reset the connection
            // before it read the response; but the connection is done, and is closed at once when
            // room is needed.
            socket.shutdownWrite()
            phase = .draining
            answeredAt = .now
            setInterest(.read)
            setTimer(.seconds(2)) { [self] in close() }
        }
    }

    private func drain() {
        var scratch = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<16 {
            do {
                guard try scratch.withUnsafeMutableBytes({ raw in try socket.read(into: raw) }) != nil else { return }
            } catch {
                close()
                return
            }
        }
    }

    private func setInterest(_ interest: Interest) {
        guard let token else { return }
        loop.update(socket, token: token, interest: interest)
    }

    private func setTimer(_ delay: Duration, _ job: @escaping @Sendable () -> Void) {
        cancelTimer()
        timer = loop.schedule(after: delay, job)
    }

    private func cancelTimer() {
        if let timer { loop.cancelTimer(timer) }
        timer = nil
    }

    /// Closes the socket at once (loop thread).
    func close() {
        loop.preconditionInEventLoop()
        if case .closed = phase { return }
        phase = .closed
        waitingSince = nil
        answeredAt = nil
        cancelTimer()
        if let token { loop.deregister(socket, token: token) }
        token = nil
        socket.close()
        outgoing = []
        decoder = HTTPRequestDecoder(limits: server.configuration.limits)
        server.connectionClosed(self)
    }
}
