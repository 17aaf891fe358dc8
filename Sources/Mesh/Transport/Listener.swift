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
