import Foundation
import MeshCrypto
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshTooling

#if canImport(Glibc)
import Glibc
#endif

/// A client that speaks the protocol for itself, with whatever key, purpose and frames a test
/// gives it: an insider holding the mesh key, or an outsider guessing.
final class RogueClient: ConnectionDelegate {
    let messages = Collector<ControlMessage>()
    let frames = Collector<Frame>()
    private let ended = Mutex<(closed: Bool, error: ConnectionError?)>((false, nil))
    private let holder = Mutex<Connection?>(nil)
    var connection: Connection { holder.withLock { $0! } }

    /// Dials `address` for `purpose` with `key` (plain text, stretched as a node would).
    static func connect(
        to address: String, purpose: Handshake.Purpose, key: String?, id: String? = nil, expecting peerID: String? = nil,
        peer: NodeIdentity? = nil
    ) async throws -> RogueClient {
        let client = RogueClient()
        // An id made by validRegister comes with its key pair; any other id is claimed without one.
        let identity = id.map { id in RogueClient.identities.withLock { $0[id] } ?? NodeIdentity(claiming: id) }
        let options = Connection.Options(
            handshake: .connect(
                purpose: purpose, key: try MeshKey.stretched(key), identity: identity,
                expectedPeerID: peer?.idBytes ?? peerID.flatMap(NodeID.bytes), expectedPeerKey: peer?.publicKey),
            maximumFrameLength: 64 << 20, maximumPendingBytes: 64 << 20)
        let connection = try Connection.connect(
            to: SocketAddress.parse(address, defaultPort: 0)!, options: options, delegate: client, loop: .shared)
        client.holder.withLock { $0 = connection }
        return client
    }

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            let body = decoder.withBody(header) { Array($0) }
            frames.append(Frame(kind: header.kind, body: body))
            if header.kind == FrameKind.control.rawValue {
                messages.append(try body.withUnsafeBytes { try ControlMessage.decode($0) })
            }
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        ended.withLock { $0 = (true, error) }
    }

    var isClosed: Bool { ended.withLock { $0.closed } }
    var closeError: ConnectionError? { ended.withLock { $0.error } }

    func send(_ message: ControlMessage) { connection.send(message.encodedFrame()) }

    /// Waits for the connection to end; fails the test after `seconds`.
    func waitForClose(seconds: Double = 5) async throws {
        try await eventually("the rogue connection to be closed", seconds: seconds) { self.isClosed }
    }

    /// A new key pair that ``connect`` will use for its id: a node of its own, not an impostor.
    static func freshIdentity() -> String {
        let identity = NodeIdentity()
        identities.withLock { $0[identity.id] = identity }
        return identity.id
    }

    /// The key pairs of the ids ``validRegister(name:host:port:topics:)`` made, for ``connect``.
    static let identities = Mutex<[String: NodeIdentity]>([:])

    /// A register for a fresh, valid identity (its own key pair, which ``connect`` then uses).
    static func validRegister(name: String, host: String = "", port: UInt16 = 1, topics: [String] = []) -> (
        id: String, message: ControlMessage
    ) {
        let identity = NodeIdentity()
        identities.withLock { $0[identity.id] = identity }
        let record = NodeRecord(id: identity.id, name: name, host: host, port: port, topics: topics, key: identity.publicKeyHex)
        return (identity.id, ControlMessage(.register, node: record))
    }
}

/// A TCP relay between a node and its coordinator that forwards the handshake untouched, then
/// attacks the records that follow: the "relay on the path" of the security issue.
final class Relay: Sendable {
    enum Attack: Sendable {
        /// Sends the node a forged `shutdown` control frame (in a record with a made-up tag).
        case injectShutdownToNode
        /// Sends the coordinator the node's first record twice.
        case replayFirstRecordToCoordinator
        /// Drops the node's second record to the coordinator.
        case dropSecondRecordToCoordinator
    }

    let port: UInt16
    private let listenFD: Int32
    private let stopped = Atomic<Bool>(false)
    /// Records the relay saw go each way after the handshake, and what it did.
    let log = Mutex<[String]>([])

    init(to target: UInt16, attack: Attack) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw SocketError.failed("relay bind", errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        listenFD = fd
        let thread = Thread { [self] in serve(target: target, attack: attack) }
        thread.name = "relay"
        thread.start()
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listenFD, Int32(SHUT_RDWR))
    }

    private func note(_ line: String) { log.withLock { $0.append(line) } }

    /// Accepts connections one at a time; the first is attacked, later ones pass untouched.
    private func serve(target: UInt16, attack: Attack) {
        var first = true
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { return }
            guard let upstream = RawClient.connect(port: target).fd else {
                close(client)
                continue
            }
            pump(client: client, upstream: upstream, attack: first ? attack : nil)
            first = false
        }
        close(listenFD)
    }

    /// Moves bytes both ways until either side closes. Handshake bytes (the first hello + proof
    /// each way) go through as they are; after them, bytes are split into records.
    private func pump(client: Int32, upstream: Int32, attack: Attack?) {
        defer {
            close(client)
            close(upstream)
        }
        // Bytes of handshake still to pass untouched, each way, and the record streams after.
        // Version 3 control: node hello, M1 and M3; coordinator hello, M2 and the confirmation.
        var handshakeLeft = [Handshake.helloLength + 2 + 48 + 2 + 64, Handshake.helloLength + 2 + 96 + 2 + 16]
        var pending: [[UInt8]] = [[], []]
        var recordsSeen = [0, 0]
        var injected = false
        let fds = [client, upstream]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopped.load(ordering: .relaxed) {
            var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&entries, 2, 100)
            if ready < 0, errno != EINTR { return }
            for side in 0..<2 where entries[side].revents != 0 {
                let count = buffer.withUnsafeMutableBytes { recv(fds[side], $0.baseAddress, $0.count, 0) }
                if count <= 0 { return }
                var bytes = Array(buffer[0..<count])
                let other = fds[1 - side]
                if handshakeLeft[side] > 0 {
                    let pass = min(handshakeLeft[side], bytes.count)
                    RawClient.send(other, Array(bytes[0..<pass]))
                    handshakeLeft[side] -= pass
                    bytes.removeFirst(pass)
                }
                pending[side] += bytes
                // Whole records: a 4-byte length, then that many bytes.
                while pending[side].count >= 4 {
                    let length = Int(pending[side][0]) << 24 | Int(pending[side][1]) << 16 | Int(pending[side][2]) << 8
                        | Int(pending[side][3])
                    guard pending[side].count >= 4 + length else { break }
                    let record = Array(pending[side][0..<(4 + length)])
                    pending[side].removeFirst(4 + length)
                    recordsSeen[side] += 1
                    let direction = side == 0 ? "node->coordinator" : "coordinator->node"
                    switch attack {
                    case .replayFirstRecordToCoordinator where side == 0 && recordsSeen[0] == 1:
                        RawClient.send(other, record + record)
                        note("\(direction): record 1 sent twice")
                    case .dropSecondRecordToCoordinator where side == 0 && recordsSeen[0] == 2:
                        note("\(direction): record 2 dropped")
                    default:
                        RawClient.send(other, record)
                    }
                    if case .injectShutdownToNode = attack, side == 1, !injected {
                        injected = true
                        let forged = ControlMessage(.shutdown, reason: "relay says stop").encodedFrame()
                        let length = UInt32(forged.count + RecordSealer.tagLength)
                        RawClient.send(
                            client, RecordSealer.bigEndian(length) + forged + [UInt8](repeating: 0xAB, count: RecordSealer.tagLength))
                        note("coordinator->node: forged shutdown injected after record \(recordsSeen[1])")
                    }
                }
            }
        }
    }
}

/// The attacks of the security issue, each run as an attacker would, on 127.0.0.1.
@Suite("Security: attacks after the handshake", .serialized)
struct SecurityTests {
    static let key = "the mesh key for security tests"
    static let adminKey = "a separate admin key for tests"

    static func configuration(
        authkey: String? = key, adminKey: String? = nil, configure: (inout MeshCoordinator.Configuration) -> Void = { _ in }
    ) -> MeshCoordinator.Configuration {
        var configuration = MeshCoordinator.Configuration(
            host: "127.0.0.1", port: 0, authkey: authkey, logger: testLogger("coordinator"), adminKey: adminKey)
        configuration.allowWeakKey = true  // the keys above are readable phrases
        configure(&configuration)
        return configuration
    }

    // MARK: A relay on the path

    @Test("a relay that injects a forged shutdown after the handshake: the node closes that connection, does not stop, and comes back")
    func relayInjects() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let relay = try Relay(to: SocketAddress.parse(mesh.address, defaultPort: 0)!.port, attack: .injectShutdownToNode)
            defer { relay.stop() }
            let capture = LogCapture()
            var configuration = MeshNode.Configuration(
                coordinator: "127.0.0.1:\(relay.port)", authkey: Self.key, listenHost: "127.0.0.1",
                logger: capture.logger("victim"), onShutdownRequest: .closeNode)
            configuration.allowWeakKey = true
            configuration.heartbeatInterval = .milliseconds(200)
            let victim = try await buildMeshNode(name: "victim", configuration: configuration)
            try await eventually("the relay to inject", seconds: 5) { relay.log.withLock { !$0.isEmpty } }
            try await eventually("the victim to log the failed record", seconds: 5) {
                capture.all.contains { $0.contains("failed authentication") }
            }
            #expect(await victim.wasAskedToStop == false, "the forged shutdown was acted on")
            // It reconnects (through the relay, now passing bytes untouched) and works.
            try await eventually("the victim to be registered again", seconds: 5) { await victim.isConnectedToCoordinator }
            let peer = try await mesh.node("peer", authkey: Self.key)
            try await victim.listen("after") { (_: String, _: String) in }
            try await peer.waitForListener("after", timeout: .seconds(5))
            await peer.close()
            await victim.close()
        }
    }

    @Test("a relay that replays or drops a record to the coordinator: the coordinator closes at the next record")
    func relayReplaysAndDrops() async throws {
        for attack in [Relay.Attack.replayFirstRecordToCoordinator, .dropSecondRecordToCoordinator] {
            let capture = LogCapture()
            try await withMesh(Self.configuration { $0.logger = capture.logger("coordinator") }) { mesh in
                let relay = try Relay(to: SocketAddress.parse(mesh.address, defaultPort: 0)!.port, attack: attack)
                var configuration = MeshNode.Configuration(
                    coordinator: "127.0.0.1:\(relay.port)", authkey: Self.key, listenHost: "127.0.0.1", logger: testLogger("victim"))
                configuration.allowWeakKey = true
                configuration.heartbeatInterval = .milliseconds(100)
                let victim = try? await buildMeshNode(name: "victim", configuration: configuration)
                try await eventually("the coordinator to refuse the altered stream (\(attack))", seconds: 5) {
                    capture.all.contains { $0.contains("failed authentication") }
                }
                #expect(relay.log.withLock { $0.count } == 1, "\(relay.log.withLock { $0 })")
                // A replayed register never made a second node, and nothing stays behind.
                try await eventually("the topology to hold at most the one victim", seconds: 5) {
                    await mesh.coordinator.topology.nodes.count <= 1
                }
                await victim?.close()
                relay.stop()
            }
        }
    }

    @Test("a node's control handshake offered to a peer port is refused before any proof")
    func controlHandshakeToPeerPort() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let node = try await mesh.node("target", authkey: Self.key)
            let port = try #require(await node.listenAddress).port
            let rogue = try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .control, key: Self.key)
            try await rogue.waitForClose()
            #expect(rogue.closeError == .handshake(.purposeRefused(Handshake.Purpose.control.rawValue)), "\(String(describing: rogue.closeError))")
            // And a peer-data handshake to the coordinator's port likewise.
            let wrongWay = try await RogueClient.connect(to: mesh.address, purpose: .data, key: Self.key)
            try await wrongWay.waitForClose()
            #expect(wrongWay.closeError == .handshake(.purposeRefused(Handshake.Purpose.data.rawValue)))
        }
    }

    // MARK: Admin separated from membership

    @Test("status and kill need the admin key; the mesh key alone reads the topology but cannot use them")
    func adminCredential() async throws {
        try await withMesh(Self.configuration(adminKey: Self.adminKey)) { mesh in
            _ = try await mesh.node("worker", authkey: Self.key)
            // A member: may read the topology, not the status, not kill.
            let member = try await MeshInspector.connect(to: mesh.address, authkey: Self.key)
            #expect(try await member.topology().nodes.count == 1)
            await #expect(throws: MeshError.self) { _ = try await member.status() }
            await member.close()
            let killer = try await MeshInspector.connect(to: mesh.address, authkey: Self.key)
            await #expect(throws: MeshError.self) { _ = try await killer.kill("*") }
            await killer.close()
            // The mesh key does not pass as the admin key.
            await #expect(throws: MeshError.self) {
                _ = try await MeshInspector.connect(to: mesh.address, authkey: Self.key, adminKey: Self.key)
            }
            #expect(await mesh.coordinator.topology.nodes.count == 1, "a member stopped a node")
            // The admin may.
            let admin = try await MeshInspector.connect(to: mesh.address, authkey: Self.key, adminKey: Self.adminKey)
            #expect(try await admin.status().nodes.count == 1)
            await admin.close()
        }
    }

    // MARK: Identity

    @Test("a peer hello naming another node, or one not in the mesh, is closed and nothing it sends is delivered")
    func forgedPeerHello() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let target = try await mesh.node("target", authkey: Self.key)
            let victim = try await mesh.node("victim", authkey: Self.key)
            let received = Collector<String>()
            try await target.listen("orders") { (_: String, order: String) in received.append(order) }
            let port = try #require(await target.listenAddress).port
            let payload = Array(#""sell everything""#.utf8)
            let order = payload.withUnsafeBytes { MessageFrame.encode(topic: "orders", encoding: .codec, payload: $0) }

            // 1. Claims the victim's id and name, with a handshake made as another id (its own key).
            let ownID = RogueClient.freshIdentity()
            let impostor = try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .data, key: Self.key, id: ownID, peer: target.identity)
            impostor.connection.send(PeerHello(id: victim.id, name: victim.name).encodedFrame())
            impostor.connection.send(order)
            try await impostor.waitForClose()

            // 2. Its own id, which is not in the mesh: held, then closed when the topology never has it.
            let stranger = try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .data, key: Self.key, id: ownID, peer: target.identity)
            stranger.connection.send(PeerHello(id: ownID, name: "stranger").encodedFrame())
            stranger.connection.send(order)
            try await stranger.waitForClose(seconds: Double(InboundLink.unknownPeerPatience.components.seconds) + 3)

            // 3. The victim's real id and a wrong name.
            let renamed = try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .data, key: Self.key, id: victim.id, peer: target.identity)
            renamed.connection.send(PeerHello(id: victim.id, name: "not-victim").encodedFrame())
            renamed.connection.send(order)
            try await renamed.waitForClose()

            #expect(received.values.isEmpty, "a forged message was delivered: \(received.values)")
            // The real victim still gets through.
            try await victim.waitForListener("orders", timeout: .seconds(5))
            try await victim.send("orders", "hold")
            #expect(try await received.wait(for: 1) == ["hold"])
        }
    }

    @Test("registering a host other than the connection's, someone else's id, or an id without its secret is refused")
    func foreignRegistrations() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let real = try await mesh.node("real", authkey: Self.key)

            // Another host.
            let (id, foreign) = RogueClient.validRegister(name: "foreign", host: "10.1.2.3", port: 4000)
            let rogue = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: id)
            rogue.send(foreign)
            let answer = try #require(try await rogue.messages.wait(for: 1).first)
            #expect(answer.type == .rejected && (answer.reason ?? "").contains("not the address this node connects from"))

            // The real node's id, from another connection without its private key: since version 3
            // the handshake itself refuses it (the id derives from the key it proves), before any
            // register is read.
            let squatter = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: real.id)
            squatter.send(ControlMessage(.register, node: NodeRecord(id: real.id, name: "real", host: "", port: 1, key: real.identity.publicKeyHex)))
            try await squatter.waitForClose()
            #expect(squatter.messages.values.isEmpty)
            #expect(squatter.closeError == .handshake(.rejectedByPeer), "\(String(describing: squatter.closeError))")

            // An id that does not match the handshake's.
            let (other, register) = RogueClient.validRegister(name: "mismatch")
            let mismatch = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: RogueClient.freshIdentity())
            mismatch.send(register)
            #expect(try await mismatch.messages.wait(for: 1).first?.type == .rejected)
            _ = other

            // Ids must be 16 lowercase hex digits.
            let shouting = try await RogueClient.connect(
                to: mesh.address, purpose: .control, key: Self.key, id: RogueClient.freshIdentity())
            shouting.send(ControlMessage(.register, node: NodeRecord(id: "ABCDEF0123456789", name: "x", host: "", port: 1)))
            #expect(try await shouting.messages.wait(for: 1).first?.type == .rejected)

            #expect(await mesh.coordinator.topology.nodes.keys.sorted() == [real.id])
        }
    }

    @Test("a node that registers another node's port: senders dialling it find the wrong node and deliver nothing there")
    func registeredSomeoneElsesPort() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let bystander = try await mesh.node("bystander", authkey: Self.key)
            let bystanderGot = Collector<String>()
            try await bystander.listen("bait") { (_: String, text: String) in bystanderGot.append(text) }
            let sender = try await mesh.node("sender", authkey: Self.key)
            // The liar registers with the bystander's port and listens to a topic of its own.
            let bystanderPort = try #require(await bystander.listenAddress).port
            let (id, register) = RogueClient.validRegister(name: "liar", port: bystanderPort, topics: ["lure"])
            let liar = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: id)
            liar.send(register)
            #expect(try await liar.messages.wait(for: 1).first?.type == .welcome)
            try await sender.waitForListener("lure", timeout: .seconds(5))
            try await sender.send("lure", "for the liar")
            try await eventually("the sender to count the message as dropped", seconds: 5) {
                await sender.statistics.messagesDropped >= 1
            }
            #expect(bystanderGot.values.isEmpty)
        }
    }

    // MARK: Bounded coordinator work

    @Test("a member flooding sync is closed after the limit; the coordinator's memory stays bounded and joins stay fast")
    func syncFlood() async throws {
        try await withMesh(Self.configuration()) { mesh in
            // A topology worth copying: 40 nodes with long topics.
            var nodes: [MeshNode] = []
            for index in 0..<40 {
                let node = try await mesh.node("n\(index)", authkey: Self.key)
                for topic in 0..<20 { try await node.listen(String(repeating: "t", count: 200) + "\(index)-\(topic)") { (_: String, _: Data) in } }
                nodes.append(node)
            }
            let before = residentMemoryBytes()
            var rogues: [RogueClient] = []
            var flooders: [String] = []
            for _ in 0..<4 {
                let (id, register) = RogueClient.validRegister(name: "flooder")
                flooders.append(id)
                let rogue = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: id)
                rogue.send(register)
                _ = try await rogue.messages.wait(for: 1)
                // Never reads: 2,000 syncs each, as fast as the socket takes them.
                rogue.connection.setReadingPaused(true)
                for _ in 0..<2_000 { rogue.send(ControlMessage(.sync)) }
                rogues.append(rogue)
            }
            // The coordinator drops each flooder (a rogue that reads nothing may not notice the close).
            let dropped = flooders
            try await eventually("the coordinator to drop all four flooders", seconds: 10) {
                let nodes = await mesh.coordinator.topology.nodes
                return dropped.allSatisfy { nodes[$0] == nil }
            }
            for rogue in rogues { rogue.connection.close() }
            let start = ContinuousClock.now
            let late = try await mesh.node("latecomer", authkey: Self.key)
            let joinTime = start.duration(to: .now)
            let after = residentMemoryBytes()
            print("sync flood: 4 flooders closed; RSS \(after >> 20) MiB after, \(before >> 20) MiB before; a join took \(joinTime)")
            #expect(joinTime < .seconds(1))
            #expect(after - before < 64 << 20)
            await late.close()
            for node in nodes { await node.close() }
        }
    }

    @Test("register, bye, register on one connection leaves no ghost record")
    func noGhostRecord() async throws {
        try await withMesh(Self.configuration()) { mesh in
            let (id, register) = RogueClient.validRegister(name: "ghost")
            let rogue = try await RogueClient.connect(to: mesh.address, purpose: .control, key: Self.key, id: id)
            rogue.send(register)
            #expect(try await rogue.messages.wait(for: 1).first?.type == .welcome)
            rogue.send(ControlMessage(.bye))
            rogue.send(register)
            try await rogue.waitForClose()
            try await eventually("the topology to be empty", seconds: 3) { await mesh.coordinator.topology.nodes.isEmpty }
            // And it stays empty.
            try await Task.sleep(for: .milliseconds(300))
            #expect(await mesh.coordinator.topology.nodes.isEmpty)
        }
    }

    // MARK: Keys and defaults

    @Test("keys under 16 bytes are refused everywhere, pointing to mesh keygen")
    func weakKeys() async throws {
        let coordinator = MeshCoordinator(configuration: .init(port: 0, authkey: "abc", logger: .silent))
        await #expect(throws: MeshError.weakKey(length: 3, minimum: 16)) { try await coordinator.start() }
        try await withMesh(Self.configuration()) { mesh in
            do {
                _ = try await mesh.node("weak", authkey: "abc")
                Issue.record("a node with a 3-byte key was built")
            } catch let error as MeshError {
                #expect(error == .weakKey(length: 3, minimum: 16))
                #expect(error.description.contains("mesh keygen"))
            }
            await #expect(throws: MeshError.self) { _ = try await MeshInspector.connect(to: mesh.address, authkey: "abc") }
        }
    }

    @Test("a passphrase of a few words is refused by the coordinator and by a node, naming mesh keygen, unless allowed on purpose")
    func guessableKeys() async throws {
        let phrase = "correct horse battery staple"  // the protocol document's old example
        var strict = MeshCoordinator.Configuration(host: "127.0.0.1", port: 0, authkey: phrase, logger: .silent)
        strict.allowWeakKey = false
        do {
            try await MeshCoordinator(configuration: strict).start()
            Issue.record("a coordinator started with \"\(phrase)\"")
        } catch let error as MeshError {
            guard case .guessableKey(let bits, 128) = error else { throw error }
            #expect(bits < 128)
            #expect(error.description.contains("mesh keygen") && error.description.contains("--allow-weak-key"), "\(error)")
        }
        // A strong mesh key with a guessable admin key is refused too.
        var weakAdmin = MeshCoordinator.Configuration(
            host: "127.0.0.1", port: 0, authkey: MeshKeyFile.newKey(), logger: .silent, adminKey: "the admin password, please")
        weakAdmin.allowWeakKey = false
        await #expect(throws: MeshError.self) { try await MeshCoordinator(configuration: weakAdmin).start() }

        // Allowed on purpose, the same key runs a mesh; a node must allow it as well.
        try await withMesh(authkey: phrase) { mesh in
            do {
                _ = try await mesh.node("strict", authkey: phrase) { $0.allowWeakKey = false }
                Issue.record("a node joined with \"\(phrase)\" without allowing weak keys")
            } catch MeshError.guessableKey {
            }
            #expect(await mesh.coordinator.topology.nodes.isEmpty)
            let allowed = try await mesh.node("allowed", authkey: phrase)
            #expect(await allowed.isConnectedToCoordinator)
        }
        // A key from mesh keygen needs no permission.
        var generated = MeshCoordinator.Configuration(host: "127.0.0.1", port: 0, authkey: MeshKeyFile.newKey(.base64), logger: .silent)
        generated.allowWeakKey = false
        let coordinator = MeshCoordinator(configuration: generated)
        #expect(try await coordinator.start().port > 0)
    }

    @Test("an open mesh stays on loopback unless --insecure says otherwise; nodes listen where they reach the coordinator")
    func openMeshDefaults() async throws {
        #expect(MeshCoordinator.Configuration(port: 0).host == "127.0.0.1")
        #expect(MeshCoordinator.Configuration(port: 0, authkey: Self.key).host == "0.0.0.0")
        let open = MeshCoordinator(configuration: .init(host: "0.0.0.0", port: 0, logger: .silent))
        do {
            try await open.start()
            Issue.record("an open coordinator listened on every interface")
        } catch let error as MeshError {
            #expect(error.description.contains("--insecure"))
        }
        let meant = MeshCoordinator(configuration: .init(host: "0.0.0.0", port: 0, logger: .silent, insecure: true))
        #expect(try await meant.start().port > 0)

        try await withMesh { mesh in
            let node = try await buildMeshNode(
                name: "local", configuration: .init(coordinator: mesh.address, authkey: nil, logger: testLogger("local")))
            #expect(await node.listenAddress?.host == "127.0.0.1")
            await node.close()
        }
    }
}

@Suite("Security: admission under an idle-connection flood", .serialized)
struct AdmissionFloodTests {
    @Test("while 1,100 idle sockets are held and 2,000 more arrive each second, nodes join and the topology answers at once")
    func idleFlood() async throws {
        try await joinsDuringFlood(ConnectionFlood(opening: []), "idle flood", readTopology: true)
    }
}

@Suite("Peer directory")
struct PeerDirectoryTests {
    @Test("a node that joined and left within one delta, or left since, is still known for a while")
    func departedNodesAreRemembered() {
        let router = TopologyChangesTests.router()
        let directory = PeerDirectory()
        directory.resolve { router.node($0) }
        let a = NodeRecord(id: "aaaaaaaaaaaaaaaa", name: "a", host: "127.0.0.1", port: 1)
        let b = NodeRecord(id: "bbbbbbbbbbbbbbbb", name: "b", host: "127.0.0.1", port: 2)
        router.setTopology(Topology(TopologySnapshot(version: 1, nodes: [a])))
        #expect(directory.node(a.id) == a)
        #expect(directory.node(b.id) == nil)
        // A delta where b joins and leaves: the topology after it never holds b; the node
        // passes b's record as departed.
        directory.changed(departed: [b])
        #expect(directory.node(b.id) == b)
        // a leaves: still known, as departed.
        let departures = router.apply([(id: a.id, record: nil)], topics: [], services: [], version: 2)
        directory.changed(departed: departures.records)
        #expect(router.node(a.id) == nil)
        #expect(directory.node(a.id) == a)
        #expect(directory.node("cccccccccccccccc") == nil)
    }
}
