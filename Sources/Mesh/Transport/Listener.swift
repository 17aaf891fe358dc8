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
            // The resume goes through the loop, so it always lands after this pause.
            if let admission, !admission.makeRoom(on: loop, onRoom: { [self] in loop.execute { self.setAccepting(true) } }) {
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
    private func setAccepting(_ accepting: Bool) {
        guard let registered = token.withLock({ $0 }) else { return }
        loop.update(socket, token: registered, interest: accepting ? .read : [])
    }

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
/// At the cap, room is made at once by closing the oldest connection that has not sent a byte
/// (a real peer sends its hello the moment it connects, so the silent ones are the flood); when
/// every waiting connection has sent something, the one that has been quiet longest goes once it
/// has been quiet for ``stallGrace`` (a real peer answers within a round trip; one that sent a
/// byte or a hello and stopped is the flood, and would otherwise hold its place for
/// ``patience``), and failing that the oldest one waiting over ``patience``. Only when none of
/// them qualifies does accepting pause, and a timer resumes it when the first would: new
/// connections wait in the kernel's backlog meanwhile, so a burst of a thousand real joins is
/// slowed, not refused. Evictions are counted (``evictions``) rather than logged one by one.
package final class HandshakeAdmission: Sendable {
    private struct Waiting {
        let connection: Connection
        let since: ContinuousClock.Instant
        /// When the peer last sent something; `nil` while it has sent nothing.
        var lastHeard: ContinuousClock.Instant?
        var heard: Bool { lastHeard != nil }
        var quietSince: ContinuousClock.Instant { lastHeard ?? since }
    }

    private struct State {
        var waiting: [Waiting] = []
        var onRoom: (@Sendable () -> Void)?
        var evictions = 0
        var recheckScheduled = false
    }

    /// The most connections allowed mid-handshake.
    let limit: Int
    /// How long a handshake that has started may wait before a newcomer may take its place.
    let patience: Duration
    /// How long a connection that has sent nothing is left alone at the cap (one loop turn, so
    /// its hello already in the socket gets read).
    let silentGrace: Duration
    /// How long a connection that has sent something may then stay quiet at the cap before the
    /// quietest such one may make room (well over a round trip).
    let stallGrace: Duration
    private let state = Mutex(State())

    package init(
        limit: Int = 1024, patience: Duration = .seconds(1), silentGrace: Duration = .milliseconds(20),
        stallGrace: Duration = .milliseconds(100)
    ) {
        self.limit = limit
        self.patience = patience
        self.silentGrace = silentGrace
        self.stallGrace = stallGrace
    }

    /// Connections closed to make room so far.
    var evictions: Int { state.withLock { $0.evictions } }

    /// Whether another connection may be accepted now, closing a stale one to make room if needed;
    /// when not, `onRoom` is called (once) as soon as a place frees or the oldest passes its
    /// patience.
    ///
    /// - Parameter loop: the listener's loop, where the recheck timer runs.
    func makeRoom(on loop: EventLoop, onRoom: @escaping @Sendable () -> Void) -> Bool {
        let now = ContinuousClock.now
        let (room, evicted, recheckAt) = state.withLock { state -> (Bool, Connection?, ContinuousClock.Instant?) in
            if state.waiting.count < limit { return (true, nil, nil) }
            // The quietest first: `waiting` is kept in order of quiet time (a connection moves to
            // the end when heard), so a newcomer whose hello is still unread comes after the
            // flood's sockets, silent or stalled. Only the front is looked at: it is the quietest.
            let silentCutoff = now - silentGrace
            let stallCutoff = now - stallGrace
            let patienceCutoff = now - patience
            if let index = state.waiting.prefix(64).firstIndex(where: { $0.quietSince <= ($0.heard ? stallCutoff : silentCutoff) })
                ?? state.waiting.firstIndex(where: { $0.since < patienceCutoff })
            {
                state.evictions += 1
                return (true, state.waiting.remove(at: index).connection, nil)
            }
            state.onRoom = onRoom
            guard !state.recheckScheduled, let oldest = state.waiting.map(\.since).min() else { return (false, nil, nil) }
            state.recheckScheduled = true
            let eligible = state.waiting.prefix(64).map { $0.quietSince + ($0.heard ? stallGrace : silentGrace) }.min()
            return (false, nil, min(oldest + patience, eligible ?? oldest + patience))
        }
        evicted?.close(error: .handshake(.evicted(limit: limit)))
        if let recheckAt {
            // Nothing may leave before then: look again at that moment rather than waiting for a
            // handshake to end (idle sockets end only at their deadline).
            _ = loop.schedule(at: recheckAt + .milliseconds(1)) { [self] in
                let wake = state.withLock { state -> (@Sendable () -> Void)? in
                    state.recheckScheduled = false
                    defer { state.onRoom = nil }
                    return state.onRoom
                }
                wake?()
            }
        }
        return room
    }

    /// Takes a place for `connection`.
    func enter(_ connection: Connection) {
        state.withLock { $0.waiting.append(Waiting(connection: connection, since: .now)) }
    }

    /// Notes that `connection` has sent something (again): it is not an idle socket, and it
    /// counts as quiet from now.
    func heard(_ connection: Connection) {
        state.withLock { state in
            if let index = state.waiting.firstIndex(where: { $0.connection === connection }) {
                var waiting = state.waiting.remove(at: index)
                waiting.lastHeard = .now
                state.waiting.append(waiting)
            }
        }
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
