import Foundation
import MeshCrypto
import Synchronization

/// Sends a coordinator's ``Beacon`` on the LAN every ``Beacon/interval`` until stopped:
/// `mesh-coordinator --announce`. One broadcast datagram each time, to 255.255.255.255 on
/// UDP ``Beacon/port``, from the coordinator's own address, so it leaves by the interface that
/// address is on (PROTOCOL.md §7.3 says why broadcast). Sends never block: a datagram the kernel
/// has no room for is skipped; the next one follows half a second later.
package final class BeaconAnnouncer: Sendable {
    private let task: Task<Void, Never>

    /// - Parameters:
    ///   - beacon: what to announce.
    ///   - host: the coordinator's numeric IPv4 address: beacons leave from it.
    ///   - port: where listeners are (``Beacon/port`` but in tests).
    /// - Throws: ``SocketError`` when the socket cannot be made or bound.
    package init(_ beacon: Beacon, from host: String, port: UInt16 = Beacon.port, logger: MeshLogger) throws(SocketError) {
        let socket = try Socket.datagram(binding: .ipv4(host: host, port: 0), shared: false)
        let bytes = beacon.encoded
        let destination = SocketAddress.ipv4(host: "255.255.255.255", port: port)
        task = Task {
            var failing = false
            while !Task.isCancelled {
                do {
                    _ = try socket.sendDatagram(bytes, to: destination)
                    if failing { logger.info("announcing on the LAN again") }
                    failing = false
                } catch {
                    // Once per stretch of failures: a link that is down fails every beat.
                    if !failing { logger.warning("cannot send the LAN beacon (\(error)); retrying every \(formatted(Beacon.interval))") }
                    failing = true
                }
                try? await Task.sleep(for: Beacon.interval)
            }
            socket.close()
        }
    }

    /// Stops announcing (the socket closes once the current wait ends).
    package func stop() { task.cancel() }
}

/// Listens for beacons on UDP ``Beacon/port``: for a node looking for its coordinators, and for
/// `mesh discover`. The socket waits on the event loop, so listening holds no thread of the
/// cooperative pool and wakes only when a datagram arrives or a deadline passes.
package enum BeaconListener {
    /// One datagram heard, and what ``Beacon/check(_:from:mesh:key:)`` made of it.
    package struct Heard: Sendable, Equatable {
        package var sender: String
        package var verdict: Beacon.Verdict

        var isTrusted: Bool { if case .trusted = verdict { true } else { false } }
    }

    /// At most this many distinct trusted beacons, and as many ignored senders, are kept: a flood
    /// of datagrams costs reading them, never memory.
    static let maximumKept = 512

    /// Everything heard for `window`, in order, each distinct datagram once, and of the ignored
    /// ones only the first of each sender (what the log names).
    ///
    /// - Parameters:
    ///   - mesh: the mesh name beacons are checked against.
    ///   - key: the stretched mesh key, `nil` for an open mesh.
    ///   - settle: when given, listening stops as soon as this much has passed and a trusted
    ///     beacon was heard.
    /// - Throws: ``SocketError`` when UDP `port` cannot be bound or read.
    package static func listen(
        for window: Duration, mesh: String, key: SymmetricKey?, port: UInt16 = Beacon.port, settle: Duration? = nil,
        loop: EventLoop = .shared
    ) async throws(SocketError) -> [Heard] {
        let socket = try Socket.datagram(binding: .ipv4(host: "0.0.0.0", port: port), shared: true)
        let (signals, continuation) = AsyncStream<Reader.Signal>.makeStream()
        let reader = Reader(socket: socket, mesh: mesh, key: key, loop: loop, signals: continuation)
        loop.execute { reader.start(window: window, settle: settle) }
        var heard: [Heard] = []
        var settled = false
        var failure: SocketError?
        await withTaskCancellationHandler {
            for await signal in signals {
                switch signal {
                case .heard(let items):
                    heard += items
                case .settled:
                    settled = true
                case .failed(let error):
                    failure = error
                }
                if failure != nil || (settled && heard.contains(where: \.isTrusted)) { break }
            }
        } onCancel: {
            loop.execute { reader.stop() }
        }
        loop.execute { reader.stop() }
        if let failure { throw failure }
        return heard
    }

    /// Whether `item` adds to `heard`: a trusted beacon not yet held, or the first ignored datagram
    /// of its sender; each kind up to ``maximumKept``.
    static func keeps(_ item: Heard, in heard: [Heard]) -> Bool {
        if item.isTrusted {
            return !heard.contains(item) && heard.count(where: \.isTrusted) < maximumKept
        }
        return !heard.contains { !$0.isTrusted && $0.sender == item.sender } && heard.count(where: { !$0.isTrusted }) < maximumKept
    }

    /// The socket on the loop: reads every waiting datagram when it turns readable, checks each,
    /// and passes them on; a timer ends the window, another marks the settle time.
    private final class Reader: EventHandler {
        enum Signal: Sendable {
            case heard([Heard])
            case settled
            case failed(SocketError)
        }
        private let socket: Socket
        private let mesh: String
        private let key: SymmetricKey?
        private let loop: EventLoop
        private let signals: AsyncStream<Signal>.Continuation
        /// The epoll token and timers while listening; `nil` once stopped. Loop thread only,
        /// behind a mutex so the class is Sendable.
        private let state = Mutex<(token: UInt64, timers: [UInt64])?>(nil)
        /// What was kept so far (``BeaconListener/keeps(_:in:)``): only new items go to the
        /// listening task, so a flood never queues up between the loop and it. Loop thread only.
        private let kept = Mutex<[Heard]>([])
        /// Datagrams read per wake-up: the socket is level-triggered, so the rest wake the loop
        /// again after the other connections and timers had their turn.
        static let readsPerWakeUp = 64

        init(socket: Socket, mesh: String, key: SymmetricKey?, loop: EventLoop, signals: AsyncStream<Signal>.Continuation) {
            self.socket = socket
            self.mesh = mesh
            self.key = key
            self.loop = loop
            self.signals = signals
        }

        func start(window: Duration, settle: Duration?) {
            let token = loop.register(socket, interest: .read, handler: self)
            var timers = [loop.schedule(after: window) { [self] in stop() }]
            if let settle { timers.append(loop.schedule(after: settle) { [self] in signals.yield(.settled) }) }
            state.withLock { $0 = (token, timers) }
            handle(events: 0)  // anything that arrived between binding and registering
        }

        func handle(events: UInt32) {
            var items: [Heard] = []
            do {
                for _ in 0..<Self.readsPerWakeUp {
                    guard let (bytes, size, sender) = try socket.receiveDatagram(capacity: Beacon.maximumSize) else { break }
                    let verdict: Beacon.Verdict =
                        size > Beacon.maximumSize
                        ? .ignored(nil, reason: "a datagram of \(size) bytes, larger than a beacon")
                        : Beacon.check(bytes, from: sender.host, mesh: mesh, key: key)
                    let item = Heard(sender: sender.host, verdict: verdict)
                    kept.withLock { kept in
                        guard BeaconListener.keeps(item, in: kept) else { return }
                        kept.append(item)
                        items.append(item)
                    }
                }
            } catch {
                signals.yield(.failed(error))
                stop()
                return
            }
            if !items.isEmpty { signals.yield(.heard(items)) }
        }

        /// Ends listening once: out of epoll, timers cancelled, socket closed, stream finished.
        func stop() {
            guard let (token, timers) = state.withLock({ state in defer { state = nil }; return state }) else { return }
            loop.deregister(socket, token: token)
            for timer in timers { loop.cancelTimer(timer) }
            socket.close()
            signals.finish()
        }
    }

    /// The coordinators a node with nothing configured registers with: every one heard for
    /// `mesh` with a trusted beacon, sorted (so every node of the LAN prefers the same one), each
    /// with the static public key its beacon names (empty in an open mesh).
    /// Listens for at least `settle` (a few beacon intervals, to hear every coordinator), then
    /// stops as soon as it has a trusted beacon; at most `window`. Each sender whose beacons are ignored is logged once, with the reason.
    ///
    /// - Throws: ``MeshError/coordinatorUnreachable(address:reason:)`` when none was heard.
    package static func discover(
        mesh: String, key: SymmetricKey?, pinned: String? = nil, window: Duration, settle: Duration,
        port: UInt16 = Beacon.port, logger: MeshLogger
    ) async throws -> [(address: String, key: String)] {
        let heard: [Heard]
        do {
            heard = try await listen(for: window, mesh: mesh, key: key, port: port, settle: settle)
        } catch {
            throw MeshError.coordinatorUnreachable(address: "discover", reason: "cannot listen for beacons on UDP port \(port): \(error)")
        }
        let (found, warnings) = choose(from: heard, pinned: pinned)
        for warning in warnings { logger.warning(warning) }
        guard !found.isEmpty else {
            throw MeshError.coordinatorUnreachable(
                address: "discover",
                reason: "no coordinator of mesh \"\(MeshText.escaped(mesh))\" announced itself within \(formatted(window))"
                    + " (start one with mesh-coordinator --announce --mesh-name \(MeshText.escaped(mesh)), on the same LAN)")
        }
        logger.info(
            "found \(found.count) coordinator(s) of mesh \"\(MeshText.escaped(mesh))\" on the LAN: \(found.map(\.address).joined(separator: ", "))")
        return found
    }

    /// Which coordinators the beacons heard point to, sorted by address, each with the static key
    /// its beacons name; and the warnings to log (each ignoring sender once).
    ///
    /// A beacon naming a key other than `pinned` (the configured coordinator key) is ignored: a
    /// pin rules over beacons. Two trusted beacons that name different keys for one address are
    /// both ignored: one of them comes from another member, and nothing says which.
    package static func choose(from heard: [Heard], pinned: String?) -> (
        found: [(address: String, key: String)], warnings: [String]
    ) {
        var warnings: [String] = []
        var logged = Set<String>()
        var found: [String: String] = [:]
        var conflicting = Set<String>()
        for item in heard {
            switch item.verdict {
            case .trusted(let beacon):
                if let pinned, beacon.key != pinned {
                    if logged.insert(item.sender).inserted {
                        warnings.append(
                            "ignored a coordinator beacon from \(MeshText.escaped(item.sender)): it names a static key other than"
                                + " the pinned coordinator key")
                    }
                } else if let earlier = found[beacon.address], earlier != beacon.key {
                    conflicting.insert(beacon.address)
                } else if !conflicting.contains(beacon.address) {
                    found[beacon.address] = beacon.key
                }
            case .ignored(_, let reason):
                if logged.insert(item.sender).inserted {
                    warnings.append("ignored a coordinator beacon from \(MeshText.escaped(item.sender)): \(MeshText.escaped(reason))")
                }
            }
        }
        for address in conflicting.sorted() {
            found[address] = nil
            warnings.append("ignored the beacons for \(MeshText.escaped(address)): they name different static keys")
        }
        return (found.sorted { $0.key < $1.key }.map { (address: $0.key, key: $0.value) }, warnings)
    }
}
