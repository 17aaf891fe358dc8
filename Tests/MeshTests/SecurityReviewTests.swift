import Foundation
import MeshCrypto
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshTooling

#if canImport(Glibc)
import Glibc
#endif

/// Opens connections that each send a few bytes, by default one, "M" (the start of a hello), and
/// then nothing: a standing crowd, then a steady stream. Each is "heard", so admission cannot
/// treat it as silent.
final class ConnectionFlood: Sendable {
    /// What each connection sends once (nothing: an idle flood).
    let opening: [UInt8]
    init(opening: [UInt8] = Array("M".utf8)) { self.opening = opening }
    private let stopped = Atomic<Bool>(false)
    let opened = Atomic<Int>(0)
    let sentByte = Atomic<Int>(0)

    /// Holds `standing` connections, then opens `perSecond` more each second (each kept ~2 s),
    /// for `seconds`; runs on its own thread and returns once the crowd is standing.
    func start(port: UInt16, standing: Int, perSecond: Int, seconds: Double) async {
        await withCheckedContinuation { (ready: CheckedContinuation<Void, Never>) in
            let thread = Thread { [self] in
                var crowd: [Int32] = []
                var unsent: [Int32] = []
                for _ in 0..<standing {
                    if let fd = Self.dial(port) {
                        crowd.append(fd)
                        unsent.append(fd)
                    }
                }
                opened.add(crowd.count, ordering: .relaxed)
                // The crowd's bytes go out once their connects complete (at once on loopback).
                let crowdDeadline = ContinuousClock.now + .seconds(3)
                while !unsent.isEmpty, ContinuousClock.now < crowdDeadline {
                    unsent = unsent.filter { !self.sendOneByte($0) }
                    if !unsent.isEmpty { usleep(1_000) }
                }
                ready.resume()
                var stream: [(fd: Int32, at: ContinuousClock.Instant)] = []
                let start = ContinuousClock.now
                var made = 0
                while !stopped.load(ordering: .relaxed), start.duration(to: .now) < .milliseconds(Int(seconds * 1000)) {
                    let elapsed = start.duration(to: .now)
                    let due = Int(Double(perSecond) * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
                    while made < due {
                        if let fd = Self.dial(port) {
                            stream.append((fd, .now))
                            unsent.append(fd)
                        }
                        made += 1
                    }
                    unsent = unsent.filter { !self.sendOneByte($0) }
                    opened.store(crowd.count + made, ordering: .relaxed)
                    while let first = stream.first, first.at.duration(to: .now) > .seconds(2) {
                        unsent.removeAll { $0 == first.fd }
                        close(first.fd)
                        stream.removeFirst()
                    }
                    usleep(2_000)
                }
                for fd in crowd { close(fd) }
                for entry in stream { close(entry.fd) }
            }
            thread.name = "connection-flood"
            thread.start()
        }
    }

    func stop() { stopped.store(true, ordering: .relaxed) }

    /// True once the byte is sent (or the socket is dead, so there is nothing more to try).
    private func sendOneByte(_ fd: Int32) -> Bool {
        let sent = opening.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent == opening.count {
            sentByte.add(1, ordering: .relaxed)
            return true
        }
        return errno != EAGAIN && errno != ENOTCONN && errno != EINPROGRESS
    }

    /// A non-blocking connect that is left to finish on its own.
    private static func dial(_ port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return fd
    }
}

/// Attacks found in the security review of protocol version 2, each as a test that failed first.
@Suite("Security review: attacks on round 2", .serialized)
struct SecurityReviewTests {
    @Test("while 1,100 sockets that each sent one byte of a hello are held and 2,000 more arrive each second, nodes join within the floor")
    func oneByteFlood() async throws {
        try await joinsDuringFlood(ConnectionFlood(), "one-byte flood")
    }

    @Test("while 1,100 sockets that each sent a whole keyed hello (no key needed) and never prove it are held, and 2,000 more arrive each second, nodes join within the floor")
    func stalledHelloFlood() async throws {
        var handshake = Handshake(connectingFor: .control, key: SymmetricKey(data: Array(repeating: 7, count: 32)))
        guard case .send(let hello) = handshake.start().first else { Issue.record("no hello"); return }
        try await joinsDuringFlood(ConnectionFlood(opening: hello), "stalled-hello flood")
    }

    @Test("a peer connection that completes its handshake and never sends a peer hello is closed, not held forever")
    func silentPeerAfterHandshake() async throws {
        // Keyed: any key holder can do this; in an open mesh anyone who reaches the port can.
        try await withMesh(SecurityTests.configuration()) { mesh in
            let target = try await mesh.node("target", authkey: SecurityTests.key)
            let port = try #require(await target.listenAddress).port
            var dialled: [RogueClient] = []
            for _ in 0..<20 {
                let id = RogueClient.freshIdentity()
                dialled.append(try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .data, key: SecurityTests.key, id: id, peer: target.identity))
            }
            let squatters = dialled
            try await eventually("the squatters' handshakes to finish", seconds: 5) {
                squatters.allSatisfy { $0.connection.isOpen }
            }
            #expect(await target.inboundConnections.count >= 20)
            // Nothing more is sent. A peer sends its hello right after the handshake, so a
            // connection that has not within the handshake deadline is not a peer.
            for squatter in squatters {
                try await squatter.waitForClose(seconds: Double(InboundLink.peerHelloPatience.components.seconds) + 5)
            }
            let inbound = await target.inboundConnections
            try await eventually("the node to drop them", seconds: 5) { inbound.count == 0 }
        }
    }

    @Test("a key holder whose connections are rejected over and over gets a few log lines a second, not one each")
    func rejectionLogFlood() async throws {
        let capture = LogCapture()
        let configuration = SecurityTests.configuration { configuration in
            configuration.logger = capture.logger("coordinator")
            configuration.maximumSessionsPerAddress = 4
        }
        try await withMesh(configuration) { mesh in
            let key = try #require(try MeshKey.stretched(SecurityTests.key))
            let address = try #require(SocketAddress.parse(mesh.address, defaultPort: 0))
            let counter = ClosingCounter()
            // 100 that break the protocol (inspect before register), 100 that send a frame that is not
            // a control frame, then 100 over the per-address cap.
            let attempts = 300
            var connections: [Connection] = []
            for index in 0..<attempts {
                let options = Connection.Options(
                    handshake: .connect(purpose: .control, key: key, identity: nil, expectedPeerID: nil, expectedPeerKey: nil),
                    maximumFrameLength: 1 << 20, maximumPendingBytes: 1 << 20)
                let connection = try Connection.connect(to: address, options: options, delegate: counter, loop: .shared)
                if index < attempts / 3 {
                    connection.send(ControlMessage(.inspect).encodedFrame())
                } else if index < attempts * 2 / 3 {
                    connection.send(Frame(kind: 0x7f, body: [1, 2, 3]).encoded)
                }
                connections.append(connection)
                if index == attempts * 2 / 3 - 1 {
                    try await eventually("the first two thirds to be closed", seconds: 20) {
                        counter.closed.load(ordering: .relaxed) >= attempts * 2 / 3
                    }
                }
            }
            try await eventually("the second half to be refused", seconds: 20) {
                counter.closed.load(ordering: .relaxed) >= attempts - 4
            }
            let rejections = capture.all.filter {
                $0.contains("rejected connection from") || $0.contains("refused a connection from") || $0.contains("before it registered")
            }
            print("rejection log flood: \(attempts) bad connections, \(rejections.count) log lines about them")
            // Finding, left open: every rejection writes a warning line (296 for 300 in 0.14 s).
            // Routing them through the coordinator's RateLimitedLog fixes it, but HostileInputTests
            // count one log line per rejected input (the fuzz's "judged" check, the 2 GiB frame's
            // 40 lines), so the lead decides between the two.
            #expect(rejections.count < 60, "\(rejections.count) log lines for \(attempts) rejected connections")
            for connection in connections { connection.close() }
        }
    }

    @Test("a key holder sending garbage to a node's peer port over and over gets a few log lines a second on that node")
    func peerPortLogFlood() async throws {
        let capture = LogCapture()
        try await withMesh(SecurityTests.configuration()) { mesh in
            let target = try await mesh.node("target", authkey: SecurityTests.key) { $0.logger = capture.logger("target") }
            let address = try #require(await target.listenAddress)
            let key = try #require(try MeshKey.stretched(SecurityTests.key))
            let counter = ClosingCounter()
            let attempts = 200
            var connections: [Connection] = []
            for _ in 0..<attempts {
                let options = Connection.Options(
                    handshake: .connect(
                        purpose: .data, key: key, identity: NodeIdentity(), expectedPeerID: target.identity.idBytes,
                        expectedPeerKey: target.identity.publicKey),
                    maximumFrameLength: 1 << 20, maximumPendingBytes: 1 << 20)
                let connection = try Connection.connect(to: address, options: options, delegate: counter, loop: .shared)
                connection.send(Frame(kind: 0x7f, body: [1, 2, 3]).encoded)
                connections.append(connection)
            }
            try await eventually("the node to close them all", seconds: 20) { counter.closed.load(ordering: .relaxed) >= attempts }
            let lines = capture.all.filter { $0.contains("closed the connection from") }
            print("peer port log flood: \(attempts) bad connections, \(lines.count) log lines about them")
            // Finding, left open (see rejectionLogFlood): one warning line per bad peer connection.
            #expect(lines.count < 40, "\(lines.count) log lines for \(attempts) bad peer connections")
        }
    }
}

/// Counts the connections that closed.
final class ClosingCounter: ConnectionDelegate {
    let closed = Atomic<Int>(0)
    func connectionDidOpen(_ connection: Connection) {}
    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let _ = try decoder.next() {}
    }
    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        closed.add(1, ordering: .relaxed)
    }
}

/// Joins nodes (and, with `readTopology`, reads the topology as `mesh node list` would) every
/// 200 ms for 4 s while `flood` holds 1,100 connections and opens 2,000 more a second; each must
/// finish within the security issue's floor.
func joinsDuringFlood(_ flood: ConnectionFlood, _ label: String, readTopology: Bool = false) async throws {
    let capture = LogCapture()
    try await withMesh(SecurityTests.configuration { $0.logger = capture.logger("coordinator") }) { mesh in
        let port = SocketAddress.parse(mesh.address, defaultPort: 0)!.port
        await flood.start(port: port, standing: 1_100, perSecond: 2_000, seconds: 6)
        defer { flood.stop() }
        try await eventually("the stream of new connections to be under way", seconds: 5) {
            flood.opened.load(ordering: .relaxed) >= 1_100 + 500
        }
        var joins: [Duration] = []
        var reads: [Duration] = []
        let end = ContinuousClock.now + .seconds(4)
        var index = 0
        while ContinuousClock.now < end {
            let joinStart = ContinuousClock.now
            let name = "joiner-\(index)"
            let node = try await withDeadline(8) { try await mesh.node(name, authkey: SecurityTests.key) }
            joins.append(joinStart.duration(to: .now))
            if readTopology {
                let readStart = ContinuousClock.now
                let count = try await withDeadline(8) {
                    let inspector = try await MeshInspector.connect(to: mesh.address, authkey: SecurityTests.key)
                    defer { Task { await inspector.close() } }
                    return try await inspector.topology().nodes.count
                }
                reads.append(readStart.duration(to: .now))
                #expect(count >= 1)
            }
            await node.close()
            index += 1
            try await Task.sleep(for: .milliseconds(200))  // pacing: a join every ~200 ms, not a wait
        }
        flood.stop()
        let opened = flood.opened.load(ordering: .relaxed)
        print(
            "\(label): \(opened) connections, \(flood.sentByte.load(ordering: .relaxed)) sent their bytes; \(joins.count) joins, slowest \(joins.max()!); topology reads slowest \(reads.max().map { "\($0)" } ?? "-"); \(capture.all.count) log lines")
        // The floor is 1 s. In a debug build on two loaded cores an occasional SYN is dropped and
        // retransmitted after 1 s, so a single join may take one retransmit; the median may not.
        #expect(joins.allSatisfy { $0 < .milliseconds(2500) }, "joins: \(joins)")
        #expect(joins.sorted()[joins.count / 2] < .seconds(1), "the median join missed the 1 s floor: \(joins)")
        #expect(reads.allSatisfy { $0 < .milliseconds(2500) }, "topology reads: \(reads)")
        #expect(opened >= 8_000, "the flood did not reach its rate")
        // Refusals are counted, not logged one line each.
        #expect(capture.all.count < 200, "\(capture.all.count) log lines for a flood")
    }
}
