import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshHTTP
@testable import MeshWeb

#if canImport(Glibc)
import Glibc
#endif

/// What a node's heartbeat and a flood of connections can do to the web view: nothing raw
/// reaches `/metrics`, nothing overflows, and the token holder is always served.
@Suite("Web view limits", .serialized)
struct WebLimitsTests {
    /// True when `text` holds a character that could move a terminal's cursor or reorder text
    /// (line feeds, which end the format's lines, aside).
    static func hasRawControl(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0 != "\n" && MeshText.needsEscaping($0) }
    }

    @Test("label values with ESC, BEL, CR and bidi overrides: visible escapes on the page, the format's own for \\, \" and line feed")
    func exposition() throws {
        var out = MetricsExposition()
        let hostile = "evil\u{1B}]0;owned\u{07}\r\u{202E}tx\"t\\\nend"
        out.family("mesh_test_total", .counter, help: "help with \u{1B}[2J inside", samples: [([("topic", hostile)], 1)])
        #expect(!Self.hasRawControl(out.text), "\(out.text.debugDescription)")
        #expect(out.text.contains(#"mesh_test_total{topic="evil\\u{1B}]0;owned\\u{7}\\u{D}\\u{202E}tx\"t\\\nend"} 1"#), "\(out.text)")
        let parsed = try PrometheusText.parse(out.text)
        #expect(parsed.value("mesh_test_total", ["topic": "evil\\u{1B}]0;owned\\u{7}\\u{D}\\u{202E}tx\"t\\\nend"]) == 1)
        #expect(parsed.help["mesh_test_total"] == "help with \\u{1B}[2J inside")
    }

    @Test("a rogue heartbeat: its invalid topic keys are dropped, counted and logged escaped; 1,024 kept; huge counts do not overflow the view")
    func rogueHeartbeat() async throws {
        let capture = LogCapture()
        let mesh = try await RunningCoordinator.start(
            RunningCoordinator.testConfiguration(logger: capture.logger("coordinator", level: .warning)))
        let web = MeshWebServer(
            coordinator: mesh.coordinator, configuration: .init(host: "127.0.0.1", port: 0, logger: testLogger("web")))
        let port = try await web.start().port
        defer { web.close() }

        let rogue = try ControlClient.connect(to: mesh.address)
        defer { rogue.close() }
        try await rogue.register(name: "rogue", topics: ["t0000"])
        let other = try ControlClient.connect(to: mesh.address)
        defer { other.close() }
        try await other.register(name: "other", topics: ["t0000"])

        var stats = MeshStatistics()
        stats.messagesSent = -5
        stats.messagesReceived = .max
        var topics: [String: TopicStatistics] = [
            "evil\u{1B}]0;owned\u{07}": TopicStatistics(messagesReceived: 1), "bell\u{07}": TopicStatistics(),
            "new\nline": TopicStatistics(), String(repeating: "x", count: 300): TopicStatistics(),
            "bidi\u{202E}": TopicStatistics(),
        ]
        for index in 0..<3000 { topics[String(format: "t%04d", index)] = TopicStatistics(messagesReceived: 1, bytesReceived: 1) }
        topics["t0000"] = TopicStatistics(messagesReceived: .max, bytesReceived: .max)
        stats.topics = topics
        rogue.send(ControlMessage(.heartbeat, stats: stats))
        var honest = MeshStatistics()
        honest.topics = ["t0000": TopicStatistics(messagesReceived: .max, bytesReceived: 1)]
        other.send(ControlMessage(.heartbeat, stats: honest))

        // 4 invalid names, and 3,001 valid ones of which 1,024 are kept.
        let droppedByOne = 4 + 3001 - 1024
        try await eventually("both heartbeats kept", seconds: 10) {
            let snapshot = await mesh.coordinator.snapshot()
            return snapshot.limits.heartbeatTopicsDropped == droppedByOne && snapshot.status.nodes.count == 2
                && snapshot.status.nodes.allSatisfy { $0.stats.topics?["t0000"] != nil }
        }
        let snapshot = await mesh.coordinator.snapshot()
        let kept = try #require(snapshot.status.nodes.first { $0.node.name == "rogue" }?.stats)
        #expect(kept.topics?.count == TopicStatistics.maximumTopics)
        // Valid names only (a bidi override is allowed in a topic, as in `listen`; it is escaped when shown).
        #expect(kept.topics?.keys.allSatisfy { (try? validateName($0, kind: "topic")) != nil } == true)
        #expect(kept.topics?["bidi\u{202E}"] != nil && kept.topics?["t1022"] != nil && kept.topics?["t1023"] == nil)
        #expect(kept.messagesSent == 0 && kept.messagesReceived == .max)

        // The pages: 200, nothing raw, the strict parser takes /metrics, sums saturate.
        let metrics = try await http { try HTTPTestClient.get(port: port, "/metrics") }
        #expect(metrics.status == 200)
        #expect(!Self.hasRawControl(metrics.text))
        let parsed = try PrometheusText.parse(metrics.text)
        #expect(parsed.value("mesh_heartbeat_topics_dropped_total") == Double(droppedByOne))
        #expect(parsed.series("mesh_node_topic_messages_received_total").count == TopicStatistics.maximumTopics + 1)
        #expect(parsed.value("mesh_node_messages_sent_total", ["node": "rogue", "id": rogue.id]) == 0)
        #expect(parsed.value("mesh_node_topic_bytes_received_total", ["node": "rogue", "id": rogue.id, "topic": "bidi\\u{202E}"]) == 0)
        let view = try await http { try HTTPTestClient.get(port: port, "/api/view") }
        #expect(view.status == 200, "\(view.status) \(view.text.prefix(200))")
        let topic = try #require((try view.json()["topics"] as? [[String: Any]])?.first { $0["topic"] as? String == "t0000" })
        #expect(topic["messagesReceived"] as? Int == .max, "two nodes' Int.max add up to Int.max, not a trap")
        let page = try await http { try HTTPTestClient.get(port: port, "/api/status") }
        #expect(page.status == 200 && !page.text.unicodeScalars.contains { $0.properties.generalCategory == .control && $0 != "\n" })

        // Then a flood of small ones: the log says so a few times a second, not once each.
        let flood = 500
        var small = MeshStatistics()
        small.topics = ["t0000": TopicStatistics(), "a\u{1B}": TopicStatistics(), "b\u{7}": TopicStatistics()]
        let floodStart = ContinuousClock.now
        for _ in 0..<flood { rogue.send(ControlMessage(.heartbeat, stats: small)) }
        try await eventually("every heartbeat of the flood checked", seconds: 20) {
            await mesh.coordinator.snapshot().limits.heartbeatTopicsDropped == droppedByOne + 2 * flood
        }
        let floodSeconds = Int(seconds(floodStart.duration(to: .now)).rounded(.up))

        // The log: the peer and the reason, escaped; a few lines a second, not one a heartbeat.
        let lines = capture.all.filter { $0.contains("heartbeat from rogue (\(rogue.id)) at 127.0.0.1:") }
        // RateLimitedLog's 10 a second, for as many seconds as the flood took, and the first heartbeat's.
        #expect(!lines.isEmpty && lines.count <= 10 * (floodSeconds + 1) + 1, "\(lines.count) lines for \(flood + 1) heartbeats in \(floodSeconds) s")
        #expect(lines.count < flood / 5, "\(lines.count) lines for \(flood + 1) heartbeats")
        #expect(
            lines.first?.contains(
                "dropped 4 topic counter(s) whose names the mesh does not allow (first \"bell\\u{7}\": topic contains control characters);"
                    + " dropped 1977 topic counter(s) past the 1024 a node may report; took 1 negative counter(s) as 0") == true,
            "\(lines.first ?? "")")
        #expect(!capture.all.contains { Self.hasRawControl($0) })
        await mesh.closeNodes()
        await mesh.stop()
    }

    @Test("malformed requests holding their connections open, 600 a second past the connection limit: the token holder's /metrics is 200 every time")
    func answeredConnectionsMakeRoom() async throws {
        let key = MeshKeyFile.newKey()
        let view = try await RunningWebView.start(authkey: key) { $0.maximumConnections = 64 }
        let token = try MeshWebServer.token(forAuthkey: key)
        let port = view.port
        let flood = MalformedFlood(port: port, perSecond: 600)
        flood.start()
        defer { flood.stop() }
        // Several times the limit, each answered 400 and held open by its client.
        try await eventually("the flood to pass the limit several times", seconds: 20) { flood.opened >= 4 * 64 }
        var statuses: [Int] = []
        for _ in 0..<12 {
            let before = flood.opened
            let response = try await http {
                try HTTPTestClient.get(port: port, "/metrics", headers: ["Authorization: Bearer \(token)"])
            }
            statuses.append(response.status)
            // The next try after the flood has put another 30 connections in.
            try await eventually("30 more hostile connections", seconds: 10) { flood.opened >= before + 30 }
        }
        let (opened, refusedToConnect) = flood.stop()
        #expect(statuses == Array(repeating: 200, count: 12), "statuses \(statuses) while \(opened) hostile connections came in")
        #expect(refusedToConnect == 0, "the server stopped accepting: \(refusedToConnect) connects failed")
        let metrics = try await view.metrics(headers: ["Authorization: Bearer \(token)"])
        // Most were answered 400 (a few were evicted still waiting for their request's bytes).
        #expect((metrics.value("mesh_http_responses_total", ["code": "400"]) ?? 0) >= Double(opened / 2))
        #expect((metrics.value("mesh_http_responses_total", ["code": "503"]) ?? 0) == 0)
        // Answered connections made room (the others closed when their clients let go at the end).
        #expect((metrics.value("mesh_http_connections_evicted_total") ?? 0) >= Double(opened / 2))
        await view.stop()
    }
}

/// Opens connections at a steady rate, each sending one malformed request and then holding the
/// connection open, never reading and never closing (until ``stop()``).
final class MalformedFlood: Sendable {
    let port: UInt16
    let perSecond: Double
    private let running = Atomic<Bool>(true)
    private let counts = Mutex((opened: 0, failed: 0))
    private let held = IdleConnections()

    init(port: UInt16, perSecond: Double) {
        self.port = port
        self.perSecond = perSecond
    }

    var opened: Int { counts.withLock { $0.opened } }

    func start() {
        let thread = Thread { [self] in
            let start = ContinuousClock.now
            var sent = 0
            while running.load(ordering: .relaxed) {
                let due = start + .seconds(Double(sent) / perSecond)
                let wait = ContinuousClock.now.duration(to: due)
                if wait > .zero { usleep(UInt32(max(0, seconds(wait)) * 1_000_000)) }
                sent += 1
                guard let fd = RawClient.connect(port: port, timeoutSeconds: 2).fd else {
                    counts.withLock { $0.failed += 1 }
                    continue
                }
                _ = Glibc.send(fd, "GARBAGE\r\n\r\n", 11, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                held.adopt(fd)
                counts.withLock { $0.opened += 1 }
            }
            held.closeAll()  // those adopted after stop() closed the rest
        }
        thread.name = "malformed-flood"
        thread.start()
    }

    /// Stops, closes every held connection; returns what was opened and how many connects failed.
    @discardableResult
    func stop() -> (opened: Int, failed: Int) {
        running.store(false, ordering: .relaxed)
        held.closeAll()
        return counts.withLock { ($0.opened, $0.failed) }
    }
}
