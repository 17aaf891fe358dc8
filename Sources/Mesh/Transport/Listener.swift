import Synchronization

/// A listening socket on the event loop that hands each accepted socket to a closure.
///
/// The closure runs on the loop thread; it wraps the socket in a ``Connection`` (which starts the
/// handshake) and returns at once.
final class Listener: EventHandler {
    /// The bound address, with the real port when port 0 was asked for.
    let address: SocketAddress
    private let socket: Socket
    private let loop: EventLoop
    private let onAccept: @Sendable (Socket, SocketAddress) -> Void
    private let onError: @Sendable (SocketError) -> Void
    private let token = Mutex<UInt64?>(nil)

    /// Binds `address`, listens, and starts accepting.
    ///
    /// - Throws: ``SocketError`` when the address is taken or cannot be bound.
    init(
        binding address: SocketAddress, loop: EventLoop = .shared,
        onError: @escaping @Sendable (SocketError) -> Void = { _ in },
        onAccept: @escaping @Sendable (Socket, SocketAddress) -> Void
    ) throws(SocketError) {
        let socket = try Socket.stream(for: address)
        do {
            try socket.bindAndListen(address)
        } catch {
            socket.close()
            throw error
        }
        self.socket = socket
        self.address = socket.localAddress() ?? address
        self.loop = loop
        self.onAccept = onAccept
        self.onError = onError
        let registered = loop.register(socket, interest: .read, handler: self)
        token.withLock { $0 = registered }
    }

    func handle(events: UInt32) {
        // A bounded batch per wake-up keeps a connection flood from starving established peers.
        for _ in 0..<64 {
            do {
                guard let (client, peer) = try socket.accept() else { return }
                onAccept(client, peer)
            } catch {
                // Out of descriptors (EMFILE) leaves the connection queued, and a level-triggered
                // wait would spin on it: report, pause accepting briefly, then try again.
                onError(error)
                guard let registered = token.withLock({ $0 }) else { return }
                loop.update(socket, token: registered, interest: [])
                loop.schedule(after: .milliseconds(100)) { [self] in
                    guard let current = token.withLock({ $0 }) else { return }
                    loop.update(socket, token: current, interest: .read)
                }
                return
            }
        }
    }

    /// Stops accepting and closes the listening socket. Safe to call twice.
    func close() {
        guard let registered = token.withLock({ value -> UInt64? in
            defer { value = nil }
            return value
        }) else { return }
        loop.execute { [socket, loop] in
            loop.deregister(socket, token: registered)
            socket.close()
        }
    }
}

/// Caps how many accepted connections may be in their handshake at once, so a flood of
/// connections that never authenticate cannot use up the process's descriptors or memory.
///
/// When every place is taken, the connection that has waited longest is closed to make room:
/// a real peer finishes its handshake in milliseconds, so it is the idle ones that go, and an
/// attacker cannot lock real peers out by keeping the places full.
final class HandshakeAdmission: Sendable {
    /// The most connections allowed mid-handshake.
    let limit: Int
    private let waiting = Mutex<[Connection]>([])

    init(limit: Int = 256) {
        self.limit = limit
    }

    /// Takes a place for `connection`; returns the connection evicted to make room, if any.
    func enter(_ connection: Connection) -> Connection? {
        waiting.withLock { waiting in
            waiting.append(connection)
            return waiting.count > limit ? waiting.removeFirst() : nil
        }
    }

    /// Gives the place back (the handshake ended, either way).
    func leave(_ connection: Connection) {
        waiting.withLock { waiting in
            if let index = waiting.firstIndex(where: { $0 === connection }) { waiting.remove(at: index) }
        }
    }
}
