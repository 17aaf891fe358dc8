import Synchronization

/// A listening socket on the event loop that hands each accepted socket to a closure.
///
/// The closure runs on the loop thread; it wraps the socket in a ``Connection`` (which starts the
/// handshake) on the same loop and returns at once.
package final class Listener: EventHandler {
    /// The bound address, with the real port when port 0 was asked for.
    package let address: SocketAddress
    private let socket: Socket
    private let loop: EventLoop
    private let onAccept: @Sendable (Socket, SocketAddress) -> Void
    private let onError: @Sendable (SocketError) -> Void
    private let admission: HandshakeAdmission?
    private let token = Mutex<UInt64?>(nil)

    /// Binds `address`, listens, and starts accepting.
    ///
    /// - Throws: ``SocketError`` when the address is taken or cannot be bound.
    ///
    /// - Parameter admission: when given, accepting pauses while it has no room.
    package init(
        binding address: SocketAddress, loop: EventLoop, admission: HandshakeAdmission? = nil,
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
        self.admission = admission
        let registered = loop.register(socket, interest: .read, handler: self)
        token.withLock { $0 = registered }
    }

    /// Loop thread: accepts what is waiting.
    package func handle(events: UInt32) {
        loop.preconditionInEventLoop()
        guard token.withLock({ $0 }) != nil else { return }  // closed; the fd may be reused
        // A bounded batch per wake-up keeps a connection flood from starving established peers.
        for _ in 0..<64 {
            admission?.makeRoom()
            do {
                guard let (client, peer) = try socket.accept() else { return }
                onAccept(client, peer)
            } catch {
                // Out of descriptors (EMFILE) leaves the connection queued, and a level-triggered
                // wait would spin on it: report, pause accepting briefly, then try again.
                onError(error)
                guard let registered = token.withLock({ $0 }) else { return }
                loop.update(socket, token: registered, interest: [])
                loop.schedule(after: Listener.acceptRetryDelay) { [self] in
                    loop.preconditionInEventLoop()
                    guard let current = token.withLock({ $0 }) else { return }
                    loop.update(socket, token: current, interest: .read)
                }
                return
            }
        }
    }

    /// How long accepting pauses after `accept` failed (out of descriptors, say) before it tries again.
    static let acceptRetryDelay = Duration.milliseconds(100)

    /// Pauses or resumes accepting (connections wait in the kernel's backlog meanwhile).

    /// Stops accepting and closes the listening socket. Safe to call twice.
    package func close() {
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
/// connections that never authenticate cannot use up the process's descriptors or memory, nor
/// keep real peers out.
///
/// Waiting connections are kept in order of how long they have been quiet: one moves to the back
/// when it is accepted and whenever it sends something. At the cap, the one at the front (the
/// quietest) is closed to make room, whatever the clock says. A real peer sends its hello the
/// moment it connects and the rest within a round trip, so it stays near the back; the flood's
/// sockets, silent or stalled, drift to the front and go first. A real peer is closed only if a
/// thousand newer or busier connections arrive within its round trip. Accepting never pauses.
/// Evictions are counted (``evictions``) rather than logged one by one; the handshake's own 5 s
/// deadline still ends any connection that never finishes.
package final class HandshakeAdmission: Sendable {
    private struct State {
        /// Quietest first.
        var waiting: [Connection] = []
        var evictions = 0
    }

    /// The most connections allowed mid-handshake.
    let limit: Int
    private let state = Mutex(State())

    package init(limit: Int = 1024) {
        self.limit = limit
    }

    /// Connections closed to make room so far.
    var evictions: Int { state.withLock { $0.evictions } }

    /// Makes room for one more connection: at the cap, closes the quietest one waiting.
    func makeRoom() {
        let evicted = state.withLock { state -> Connection? in
            guard state.waiting.count >= limit else { return nil }
            state.evictions += 1
            return state.waiting.removeFirst()
        }
        // Closed outside the lock: closing runs the connection's own bookkeeping.
        evicted?.close(error: .handshake(.evicted(limit: limit)))
    }

    /// Takes a place for `connection`, at the back.
    func enter(_ connection: Connection) {
        state.withLock { $0.waiting.append(connection) }
    }

    /// Notes that `connection` has sent something (again): it moves to the back.
    func heard(_ connection: Connection) {
        state.withLock { state in
            if let index = state.waiting.lastIndex(where: { $0 === connection }), index != state.waiting.count - 1 {
                state.waiting.append(state.waiting.remove(at: index))
            }
        }
    }

    /// Gives the place back (the handshake ended, either way).
    func leave(_ connection: Connection) {
        state.withLock { state in
            if let index = state.waiting.lastIndex(where: { $0 === connection }) { state.waiting.remove(at: index) }
        }
    }
}
