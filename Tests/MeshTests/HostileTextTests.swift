import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// Terminal and log injection, tried as an attacker would: names, ids and topics with escape
/// codes, newlines and bidi overrides sent to a real `mesh-coordinator`, then read back with the
/// `mesh` tool as an operator would. Nothing may reach the terminal raw, and no row may be forged.
@Suite("hostile text in mesh output and logs", .serialized)
struct HostileTextTests {
    /// What must never appear raw in anything printed.
    static let forbidden: [Unicode.Scalar] = ["\u{1B}", "\u{7}", "\u{0}", "\u{202E}", "\u{2066}", "\u{2028}", "\u{2029}"]

    /// Fails when `text` holds a raw control or bidi character.
    func expectClean(_ text: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let raw = text.unicodeScalars.filter { $0 != "\n" && MeshText.needsEscaping($0) }
        #expect(raw.isEmpty, "\(what) has raw \(raw.map { "U+" + String($0.value, radix: 16) }): \(text.debugDescription)", sourceLocation: sourceLocation)
    }

    @Test("escape codes, newlines and bidi overrides in names, ids and topics: escaped in node list, topic list, status and the coordinator's log; no fake rows")
    func hostileNamesAndIdsAreEscaped() async throws {
        let (coordinator, address) = try await startCoordinatorProcess(
            ["--log-level", "info"], environment: ["MESH_AUTHKEY": "", "MESH_LOG_LEVEL": "info"])
        defer { coordinator.terminate() }
        let port = UInt16(address.split(separator: ":").last ?? "") ?? 0

        // 1. A name with an escape code and a newline: refused, and the refusal is logged escaped.
        let hostileName = "\u{1B}[2J\nFAKE-NAME-ROW"
        let refused = try await RawNode.register(
            port: port, id: "00000000000000aa", name: hostileName, topics: ["hostile"], keepOpen: false)
        #expect(refused.verdict == .rejected, "a name with control characters must not join: \(refused.reply.debugDescription)")
        try await coordinator.waitForOutput(#"\u{1B}[2J\u{A}FAKE-NAME-ROW"#, seconds: 10)

        // 2. An id with an escape code and a newline (ids come from the node). Either the
        //    coordinator refuses it, or it joins and must print escaped.
        let hostileID = "\u{1B}[2J\nFAKE-ID-ROW"
        let idNode = try await RawNode.register(
            port: port, id: hostileID, name: "hostile-id-node", topics: ["hostile-topic"], keepOpen: true)
        defer { idNode.stop() }
        let idJoined = idNode.verdict == .welcomed

        // 3. A real node whose name and topic carry bidi overrides and line separators: these
        //    are not control characters (Cc), so they pass validation and must print escaped.
        let bidiName = "bidi\u{202E}eman\u{2028}FAKE-BIDI-ROW"
        let bidiTopic = "topic\u{2066}x\u{2029}FAKE-TOPIC-ROW"
        let node = try await buildMeshNode(
            name: bidiName,
            configuration: MeshNode.Configuration(
                coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: testLogger("bidi"),
                onShutdownRequest: .closeNode))
        defer { Task { await node.close() } }
        try await node.listen(bidiTopic) { (_: String, _: Data) in }
        try await node.waitForListener(bidiTopic, timeout: .seconds(10))

        let nodeList = try await MeshCLI.run(["node", "list", "--coordinator", address])
        #expect(nodeList.code == 0, "\(nodeList)")
        expectClean(nodeList.output, "mesh node list")
        #expect(nodeList.lines.count == 1 + (idJoined ? 2 : 1), "one row per node, no more:\n\(nodeList.output)")
        #expect(!nodeList.lines.contains { $0.hasPrefix("FAKE") }, "\(nodeList.output)")
        #expect(nodeList.output.contains(#"bidi\u{202E}eman\u{2028}FAKE-BIDI-ROW"#), "\(nodeList.output)")
        #expect(nodeList.output.contains(#"topic\u{2066}x\u{2029}FAKE-TOPIC-ROW"#), "\(nodeList.output)")
        if idJoined {
            #expect(nodeList.output.contains(#"\u{1B}[2J\u{A}FAKE-ID-ROW"#), "\(nodeList.output)")
        }

        let topicList = try await MeshCLI.run(["topic", "list", "--coordinator", address])
        #expect(topicList.code == 0, "\(topicList)")
        expectClean(topicList.output, "mesh topic list")
        #expect(topicList.lines.count == 1 + (idJoined ? 2 : 1), "one row per topic, no more:\n\(topicList.output)")
        #expect(!topicList.lines.contains { $0.hasPrefix("FAKE") }, "\(topicList.output)")
        #expect(topicList.output.contains(#"topic\u{2066}x\u{2029}FAKE-TOPIC-ROW"#), "\(topicList.output)")
        #expect(topicList.output.contains(#"bidi\u{202E}eman\u{2028}FAKE-BIDI-ROW (1)"#), "\(topicList.output)")

        let status = try await MeshCLI.run(["status", "--coordinator", address])
        #expect(status.code == 0, "\(status)")
        expectClean(status.output, "mesh status")
        #expect(!status.lines.contains { $0.hasPrefix("FAKE") }, "\(status.output)")
        #expect(status.output.contains(#"bidi\u{202E}eman\u{2028}FAKE-BIDI-ROW"#), "\(status.output)")
        if idJoined {
            #expect(status.output.contains(#"\u{1B}[2J\u{A}FAKE-ID-ROW"#), "\(status.output)")
        }

        // JSON output keeps the real strings (JSON escapes them itself).
        let json = try await MeshCLI.run(["node", "list", "--json", "--coordinator", address])
        let nodes = try #require(try json.json() as? [[String: Any]])
        #expect(nodes.contains { $0["name"] as? String == bidiName }, "\(json.output)")
        expectClean(json.output, "mesh node list --json")

        // Killing by the hostile name: the reply names it, escaped.
        let kill = try await MeshCLI.run(["node", "kill", bidiName, "--coordinator", address])
        expectClean(kill.output + kill.errors, "mesh node kill")
        #expect(!(kill.output + kill.errors).split(separator: "\n").contains { $0.hasPrefix("FAKE") }, "\(kill)")

        // Everything the coordinator printed (its log) is escaped, line by line.
        expectClean(coordinator.output, "the coordinator's log")
        #expect(!coordinator.output.split(separator: "\n").contains { $0.hasPrefix("FAKE") }, "\(coordinator.output)")
        if idJoined {
            #expect(coordinator.output.contains(#"\u{1B}[2J\u{A}FAKE-ID-ROW"#), "\(coordinator.output)")
        }
    }

    @Test("an error reason from the network prints on one escaped line")
    func hostileReasonInAnError() async throws {
        let (coordinator, address) = try await startCoordinatorProcess(environment: ["MESH_AUTHKEY": ""])
        defer { coordinator.terminate() }
        // The coordinator's "no such node" reason repeats the name asked for.
        let run = try await MeshCLI.run(["node", "kill", "nobody\u{1B}[2J\u{202E}", "--coordinator", address])
        #expect(run.code == 1, "\(run)")
        #expect(run.errors.hasPrefix("mesh: ") && run.errors.dropLast().firstIndex(of: "\n") == nil, "\(run)")
        expectClean(run.errors, "the error line")
        #expect(run.errors.contains(#"nobody\u{1B}[2J\u{202E}"#), "\(run)")
    }
}

/// A node that speaks the coordinator protocol by hand, so it can say what a real node never
/// would. It blocks, so it runs on its own thread; with `keepOpen` it heartbeats until stopped.
final class RawNode: Sendable {
    enum Verdict: Sendable { case welcomed, rejected, noAnswer }

    let verdict: Verdict
    /// What the coordinator answered to the registration (the start of it).
    let reply: String
    private let stopped = Mutex(false)

    private init(verdict: Verdict, reply: String) {
        self.verdict = verdict
        self.reply = reply
    }

    /// Connects to 127.0.0.1:`port`, registers a node with these fields, and waits up to 5 s for
    /// the verdict. With `keepOpen` and a welcome, the connection stays open (heartbeating every
    /// 500 ms) until ``stop()``.
    static func register(port: UInt16, id: String, name: String, topics: [String], keepOpen: Bool) async throws
        -> RawNode
    {
        // A well-formed id is replaced by one with its own key pair and goes in the handshake, as a
        // node's would; a malformed one is sent as it is (and must be refused).
        let identity = NodeID.isValid(id) ? NodeIdentity() : NodeIdentity(claiming: id)
        let record = NodeRecord(id: identity.id, name: name, host: "", port: 1, topics: topics, key: identity.publicKeyHex)
        let registration = ControlMessage(.register, node: record).encodedFrame()
        let helloID = NodeID.bytes(identity.id) ?? Handshake.noID
        let heartbeat = ControlMessage(.heartbeat).encodedFrame()
        let ready = Mutex<CheckedContinuation<RawNode, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<RawNode, any Error>) in
            ready.withLock { $0 = continuation }
            let thread = Thread {
                func answer(_ result: Result<RawNode, any Error>) {
                    ready.withLock { $0.take() }?.resume(with: result)
                }
                let (connected, code) = RawClient.connect(port: port)
                guard let fd = connected else {
                    return answer(.failure(SocketError.failed("connect", code)))
                }
                defer { RawClient.reset(fd) }
                var generator = SystemRandomNumberGenerator()
                RawClient.send(fd, Array(openMeshHello(using: &generator).dropLast(Handshake.idLength)) + helloID + registration)
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65_536)
                var verdict = Verdict.noAnswer
                let deadline = ContinuousClock.now + .seconds(5)
                while ContinuousClock.now < deadline {
                    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&entry, 1, 100) > 0 else { continue }
                    let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if count <= 0 { break }
                    received += buffer[..<count]
                    let text = String(decoding: received, as: UTF8.self)
                    if text.contains(#""type":"welcome""#) {
                        verdict = .welcomed
                        break
                    }
                    if text.contains(#""type":"rejected""#) {
                        verdict = .rejected
                        break
                    }
                }
                let node = RawNode(verdict: verdict, reply: String(decoding: received.prefix(512), as: UTF8.self))
                answer(.success(node))
                guard keepOpen, verdict == .welcomed else { return }
                while !node.stopped.withLock({ $0 }) {
                    RawClient.send(fd, heartbeat)
                    // Read and forget the topology changes the coordinator sends.
                    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&entry, 1, 500) > 0 {
                        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                        if count <= 0 { break }
                    }
                }
            }
            thread.name = "raw-node"
            thread.start()
        }
    }

    /// Closes the connection (within about half a second).
    func stop() {
        stopped.withLock { $0 = true }
    }
}
