import Foundation
import MeshCrypto

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

/// Listens for beacons on UDP ``Beacon/port``: for a node with no coordinator configured, and for
/// `mesh discover`. Reading is non-blocking, polled every 20 ms from a task, so the listener never
/// holds a thread of the cooperative pool.
package enum BeaconListener {
    /// One datagram heard, and what ``Beacon/check(_:from:mesh:key:)`` made of it.
    package struct Heard: Sendable {
        package var sender: String
        package var verdict: Beacon.Verdict
    }

    /// Everything heard for `duration`, in order, each datagram once.
    ///
    /// - Parameters:
    ///   - mesh: the mesh name beacons are checked against.
    ///   - key: the stretched mesh key, `nil` for an open mesh.
    ///   - until: called with what was heard so far after each poll; `true` stops listening early.
    /// - Throws: ``SocketError`` when UDP `port` cannot be bound.
    package static func listen(
        for duration: Duration, mesh: String, key: SymmetricKey?, port: UInt16 = Beacon.port,
        until done: ([Heard], Duration) -> Bool = { _, _ in false }
    ) async throws(SocketError) -> [Heard] {
        let socket = try Socket.datagram(binding: .ipv4(host: "0.0.0.0", port: port), shared: true)
        defer { socket.close() }
        let start = ContinuousClock.now
        var heard: [Heard] = []
        while true {
            while let (bytes, size, sender) = try socket.receiveDatagram(capacity: Beacon.maximumSize) {
                let verdict: Beacon.Verdict =
                    size > Beacon.maximumSize
                    ? .ignored(nil, reason: "a datagram of \(size) bytes, larger than a beacon")
                    : Beacon.check(bytes, from: sender.host, mesh: mesh, key: key)
                heard.append(Heard(sender: sender.host, verdict: verdict))
            }
            let elapsed = start.duration(to: .now)
            if elapsed >= duration || done(heard, elapsed) || Task.isCancelled { return heard }
            try? await Task.sleep(for: .milliseconds(20))
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
            heard = try await listen(for: window, mesh: mesh, key: key, port: port) { heard, elapsed in
                elapsed >= settle && heard.contains { if case .trusted = $0.verdict { true } else { false } }
            }
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
