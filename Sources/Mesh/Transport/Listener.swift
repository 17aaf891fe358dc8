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
    private let admission: HandshakeAdmission?
    private let token = Mutex<UInt64?>(nil)

    /// Binds `address`, listens, and starts accepting.
    ///
    /// - Throws: ``SocketError`` when the address is taken or cannot be bound.
    ///
    /// - Parameter admission: when given, accepting pauses while it has no room.
    init(
        binding address: SocketAddress, loop: EventLoop = .shared, admission: HandshakeAdmission? = nil,
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

    func handle(events: UInt32) {
        guard token.withLock({ $0 }) != nil else { return }  // closed; the fd may be reused
        // A bounded batch per wake-up keeps a connection flood from starving established peers.
        for _ in 0..<64 {
            // The resume goes through the loop, so it always lands after this pause.
            if let admission, !admission.makeRoom(onRoom: { [self] in loop.execute { self.setAccepting(true) } }) {
                setAccepting(false)
                return
            }
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

    /// Pauses or resumes accepting (connections wait in the kernel's backlog meanwhile).
    private func setAccepting(_ accepting: Bool) {
        guard let registered = token.withLock({ $0 }) else { return }
        loop.update(socket, token: registered, interest: accepting ? .read : [])
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
/// At the cap, a connection that has been mid-handshake for over ``patience`` is closed to make
/// room (a real peer finishes in milliseconds: it is the idle ones that go, so idle sockets
/// cannot lock real peers out). When every waiting connection is younger than that, the listener
/// stops accepting until a place frees, and new connections wait in the kernel's backlog: a burst
/// of a thousand nodes joining at once is slowed, not turned away.
final class HandshakeAdmission: Sendable {
    private struct State {
        var waiting: [(connection: Connection, since: ContinuousClock.Instant)] = []
        var onRoom: (@Sendable () -> Void)?
    }

    /// The most connections allowed mid-handshake.
    let limit: Int
    /// How long a handshake may wait before a newcomer may take its place.
    let patience: Duration
    private let state = Mutex(State())

    init(limit: Int = 1024, patience: Duration = .seconds(1)) {
        self.limit = limit
        self.patience = patience
    }

    /// Whether another connection may be accepted now, closing a stale one to make room if needed;
    /// when not, `onRoom` is called (once) as soon as a place frees.
    func makeRoom(onRoom: @escaping @Sendable () -> Void) -> Bool {
        let (room, evicted) = state.withLock { state -> (Bool, Connection?) in
            if state.waiting.count < limit { return (true, nil) }
            if let oldest = state.waiting.first, ContinuousClock.now - oldest.since > patience {
                state.waiting.removeFirst()
                return (true, oldest.connection)
            }
            state.onRoom = onRoom
            return (false, nil)
        }
        evicted?.close(error: .handshake(.evicted(limit: limit)))
        return room
    }

    /// Takes a place for `connection`.
    func enter(_ connection: Connection) {
        state.withLock { $0.waiting.append((connection, .now)) }
    }

    /// Gives the place back (the handshake ended, either way).
    func leave(_ connection: Connection) {
        let onRoom = state.withLock { state -> (@Sendable () -> Void)? in
            if let index = state.waiting.firstIndex(where: { $0.connection === connection }) {
                state.waiting.remove(at: index)
            }
            guard state.waiting.count < limit, let onRoom = state.onRoom else { return nil }
            state.onRoom = nil
            return onRoom
        }
        onRoom?()
    }
}
