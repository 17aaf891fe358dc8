import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshHTTP
@testable import MeshWeb

/// A coordinator in this process with its web view on 127.0.0.1, port 0.
struct RunningWebView {
    let mesh: RunningCoordinator
    let web: MeshWebServer
    let port: UInt16

    static func start(
        authkey: String? = nil, configure: (inout MeshWebServer.Configuration) -> Void = { _ in }
    ) async throws -> RunningWebView {
        let mesh = try await RunningCoordinator.start(authkey: authkey)
        var configuration = MeshWebServer.Configuration(
            host: "127.0.0.1", port: 0, authkey: authkey, logger: testLogger("web"))
        configure(&configuration)
        let web = MeshWebServer(coordinator: mesh.coordinator, configuration: configuration)
        let address = try await web.start()
        return RunningWebView(mesh: mesh, web: web, port: address.port)
    }

    func stop() async {
        web.close()
        await mesh.stop()
    }

    func get(_ path: String, headers: [String] = [], method: String = "GET") async throws -> HTTPTestClient.Response {
        let port = self.port
        return try await http { try HTTPTestClient.get(port: port, path, headers: headers, method: method) }
    }

    func json(_ path: String, headers: [String] = []) async throws -> [String: Any] {
        let response = try await get(path, headers: headers)
        try #require(response.status == 200, "\(path): \(response.status) \(response.text)")
        return try response.json()
    }

    func metrics(headers: [String] = []) async throws -> PrometheusText {
        let response = try await get("/metrics", headers: headers)
        try #require(response.status == 200, "/metrics: \(response.status) \(response.text)")
        #expect(response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        return try PrometheusText.parse(response.text)
    }
}

/// The web view's HTTP side against a live coordinator: documents, metrics, authentication.
@Suite("Web view server", .serialized)
struct WebServerTests {
    @Test func servesTheMeshAsJSONAndThePage() async throws {
        let view = try await RunningWebView.start()
        let receiver = try await view.mesh.node("receiver")
        try await receiver.listen("some-topic") { (_: String, _: [String: String]) in }
        var workers: [MeshNode] = []
        for _ in 0..<3 {
            let worker = try await view.mesh.node("worker")
            try await worker.listen("jobs") { (_: String, _: [String: Int]) in }
            workers.append(worker)
        }
        let sender = try await view.mesh.node("sender")
        let all = [receiver, sender] + workers
        var ids: Set<String> = []
        for node in all { ids.insert(node.id) }

        let document = try await view.json("/api/view")
        let nodes = try #require(document["nodes"] as? [[String: Any]])
        #expect(Set(nodes.compactMap { $0["id"] as? String }) == ids)
        let topics = try #require(document["topics"] as? [[String: Any]])
        #expect(topics.compactMap { $0["topic"] as? String } == ["jobs", "some-topic"])
        let jobs = try #require(topics.first)
        #expect(jobs["listeners"] as? Int == 3)
        #expect((jobs["groups"] as? [[String: Any]])?.first?["members"] as? Int == 3)
        let coordinator = try #require(document["coordinator"] as? [String: Any])
        #expect(coordinator["nodeCount"] as? Int == 5)
        #expect(coordinator["version"] as? Int == Int(await view.mesh.coordinator.topology.version))

        let topology = try await view.json("/api/topology")
        #expect((topology["nodes"] as? [[String: Any]])?.count == 5)
        #expect(((topology["nodes"] as? [[String: Any]])?.first?.keys).map(Set.init) == [
            "name", "id", "host", "port", "address", "pid", "topics", "services", "joined", "uptime",
        ])
        #expect((topology["topics"] as? [[String: Any]])?.count == 2)
        let status = try await view.json("/api/status")
        #expect(status["nodeCount"] as? Int == 5)
        #expect(((status["nodes"] as? [[String: Any]])?.first?["stats"] as? [String: Any])?["messagesSent"] != nil)
        let events = try await view.json("/api/events")
        let joined = (events["events"] as? [[String: Any]] ?? []).filter { $0["kind"] as? String == "joined" }
        #expect(Set(joined.compactMap { $0["id"] as? String }) == ids)

        let page = try await view.get("/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        // Self-contained: no script, style, image or font from anywhere else.
        #expect(!page.text.contains("src="))
        #expect(!page.text.contains("<link"))
        #expect(!page.text.contains("@import"))
        let urls = page.text.components(separatedBy: "://").dropFirst().map { $0.prefix(20) }
        #expect(urls.allSatisfy { $0 == "www.w3.org/2000/svg\"" }, "\(urls)")
        // A DNS name rebound to 127.0.0.1 does not get in.
        let rebound = try await http { [port = view.port] in
            try HTTPTestClient.exchange(
                port: port, Array("GET /api/view HTTP/1.1\r\nHost: evil.example:\(port)\r\nConnection: close\r\n\r\n".utf8))
        }
        #expect(rebound.status == 403)
        let head = try await view.get("/", method: "HEAD")
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == String(page.body.count))

        // A node that leaves is gone from the next document, and its departure is an event.
        let leaving = workers[0].id
        await workers[0].close()
        try await eventually("the node gone from /api/view", seconds: 5) {
            let nodes = (try? await view.json("/api/view"))?["nodes"] as? [[String: Any]] ?? []
            return nodes.count == 4 && !nodes.contains { $0["id"] as? String == leaving }
        }
        let after = try await view.json("/api/events")
        #expect((after["events"] as? [[String: Any]] ?? []).contains { $0["kind"] as? String == "left" && $0["id"] as? String == leaving })

        for node in all { await node.close() }
        await view.stop()
    }

    @Test func metricsParseStrictlyAndMatchNodeStatistics() async throws {
        let view = try await RunningWebView.start()
        let received = Collector<Int>()
        let receiver = try await view.mesh.node("receiver")
        try await receiver.listen("some-topic") { (_: String, value: [String: String]) in received.append(1) }
        // Listens as Int to a topic that carries strings: every message is a decode failure.
        try await receiver.listen("numbers") { (_: String, _: Int) in }
        var workers: [MeshNode] = []
        for _ in 0..<3 {
            let worker = try await view.mesh.node("worker")
            try await worker.listen("jobs") { (_: String, _: [String: Int]) in received.append(2) }
            workers.append(worker)
        }
        let sender = try await view.mesh.node("sender")
        try await sender.waitForListener("jobs", count: 3, timeout: .seconds(10))
        for index in 0..<200 { try await sender.send("some-topic", ["n": "\(index)"]) }
        for index in 0..<30 { try await sender.send("jobs", ["job": index]) }
        for _ in 0..<5 { try await sender.send("numbers", "not a number") }
        _ = try await received.wait(for: 230)
        let all = [receiver, sender] + workers
        try await eventually("decode failures counted", seconds: 10) { await receiver.statistics.decodeFailures == 5 }

        // Heartbeats carry the counters once a second: wait until /metrics shows every node's.
        var collected: [String: MeshStatistics] = [:]
        for node in all { collected[node.id] = await node.statistics }
        let expected = collected
        let snapshot = Mutex<PrometheusText?>(nil)
        try await eventually("every node's counters in /metrics", seconds: 15) {
            guard let metrics = try? await view.metrics() else { return false }
            snapshot.withLock { $0 = metrics }
            return expected.allSatisfy { id, stats in
                metrics.series("mesh_node_messages_received_total").first { $0.labels["id"] == id }?.value
                    == Double(stats.messagesReceived)
                    && metrics.series("mesh_node_messages_sent_total").first { $0.labels["id"] == id }?.value
                        == Double(stats.messagesSent)
                    && metrics.series("mesh_node_decode_failures_total").first { $0.labels["id"] == id }?.value
                        == Double(stats.decodeFailures)
            }
        }
        let metrics = try #require(snapshot.withLock { $0 })
        for node in all {
            let id = node.id
            let name = node.name
            let stats = await node.statistics
            let labels = ["node": name, "id": id]
            #expect(metrics.value("mesh_node_messages_sent_total", labels) == Double(stats.messagesSent))
            #expect(metrics.value("mesh_node_bytes_sent_total", labels) == Double(stats.bytesSent))
            #expect(metrics.value("mesh_node_messages_received_total", labels) == Double(stats.messagesReceived))
            #expect(metrics.value("mesh_node_bytes_received_total", labels) == Double(stats.bytesReceived))
            #expect(metrics.value("mesh_node_messages_dropped_total", labels) == Double(stats.messagesDropped))
            #expect(metrics.value("mesh_node_decode_failures_total", labels) == Double(stats.decodeFailures))
            #expect(metrics.value("mesh_node_reconnects_total", labels) == Double(stats.reconnects))
            #expect(metrics.value("mesh_node_messages_unrouted_total", labels) == Double(stats.messagesUnrouted))
            for (topic, counts) in stats.topics ?? [:] {
                #expect(
                    metrics.value("mesh_node_topic_messages_received_total", labels.merging(["topic": topic]) { $1 })
                        == Double(counts.messagesReceived))
            }
        }
        #expect(await sender.statistics.messagesSent == 235)
        #expect(await receiver.statistics.topics?["some-topic"]?.messagesReceived == 200)
        #expect(await receiver.statistics.topics?["numbers"]?.messagesReceived == 5)
        #expect(metrics.value("mesh_nodes") == 5)
        #expect(metrics.value("mesh_topics") == 3)
        #expect(metrics.value("mesh_topic_listeners", ["topic": "jobs"]) == 3)
        #expect(metrics.value("mesh_topic_groups", ["topic": "jobs"]) == 1)
        #expect(metrics.value("mesh_topology_version") == Double(await view.mesh.coordinator.topology.version))
        #expect((metrics.value("mesh_coordinator_uptime_seconds") ?? 0) > 0)
        #expect(metrics.value("mesh_connections_refused_total", ["reason": "authentication"]) == 0)
        #expect(metrics.types["mesh_node_messages_sent_total"] == "counter")
        #expect(metrics.types["mesh_nodes"] == "gauge")
        // Every family has HELP and TYPE; every counter's name ends in _total.
        for (name, type) in metrics.types {
            #expect(metrics.help[name]?.isEmpty == false, "\(name) has no HELP")
            if type == "counter" { #expect(name.hasSuffix("_total"), "\(name)") }
        }
        // The rate of a topic on the page adds up its listeners' per-topic counts.
        let page = try await view.json("/api/view")
        let jobs = (page["topics"] as? [[String: Any]])?.first { $0["topic"] as? String == "jobs" }
        #expect(jobs?["messagesReceived"] as? Int == 30)

        for node in all { await node.close() }
        await view.stop()
    }

    @Test func anAuthkeyGuardsEveryPath() async throws {
        let key = "the web-view test key"
        let view = try await RunningWebView.start(authkey: key)
        let token = try MeshWebServer.token(forAuthkey: key)
        for path in ["/", "/metrics", "/api/view", "/api/status", "/nope", "/../x"] {
            let response = try await view.get(path)
            // A traversal attempt is refused before authentication even looks at it (400).
            #expect(response.status == (path == "/../x" ? 400 : 401), "\(path)")
            if path != "/../x" { #expect(response.headers["www-authenticate"]?.hasPrefix("Basic") == true) }
        }
        #expect(try await view.get("/", method: "DELETE").status == 401)
        #expect(try await view.get("/metrics", headers: ["Authorization: Bearer \(token)x"]).status == 401)
        #expect(try await view.get("/metrics", headers: ["Authorization: Bearer \(key)"]).status == 401, "the key is not the token")
        #expect(try await view.get("/metrics", headers: ["Authorization: Bearer \(token)"]).status == 200)
        #expect(try await view.get("/", headers: ["Authorization: Bearer \(token)"]).status == 200)
        let basic = Data("prometheus:\(token)".utf8).base64EncodedString()
        #expect(try await view.get("/api/view", headers: ["Authorization: Basic \(basic)"]).status == 200)
        #expect(try await view.get("/", headers: ["Authorization: Bearer \(token)"], method: "POST").status == 405)

        // A node with the wrong key is refused, and the refusal shows in the events and metrics.
        do {
            _ = try await view.mesh.node("intruder", authkey: "the wrong key for the web test")
            Issue.record("a node with the wrong key joined")
        } catch {}
        try await eventually("the refusal counted", seconds: 10) {
            let metrics = try? await view.metrics(headers: ["Authorization: Bearer \(token)"])
            return (metrics?.value("mesh_connections_refused_total", ["reason": "authentication"]) ?? 0) >= 1
        }
        let events = try await view.json("/api/events", headers: ["Authorization: Bearer \(token)"])
        let refusal = (events["events"] as? [[String: Any]] ?? []).first { $0["kind"] as? String == "refused" }
        #expect(refusal?["category"] as? String == "authentication")
        #expect((refusal?["peer"] as? String)?.hasPrefix("127.0.0.1:") == true)
        await view.stop()
    }

    @Test func meshPrintsTheToken() async throws {
        let key = MeshKeyFile.newKey()
        let printed = try await ChildProcess.run(
            path: executablesDirectory.appendingPathComponent("mesh").path, ["http-token", "--authkey", key])
        #expect(printed.status == 0)
        #expect(try printed.output == MeshWebServer.token(forAuthkey: key) + "\n")
        let missing = try await ChildProcess.run(
            path: "/usr/bin/env", ["-u", "MESH_AUTHKEY", executablesDirectory.appendingPathComponent("mesh").path, "http-token"])
        #expect(missing.status == 1)
        #expect(missing.output.hasPrefix("mesh: no authkey given"))
        #expect(missing.output.split(separator: "\n").count == 1)
    }

    @Test func coordinatorRefusesABadHTTPAddressInOneLine() async throws {
        let coordinator = executablesDirectory.appendingPathComponent("mesh-coordinator").path
        for (address, reason) in [("nonsense:99999", "expected HOST:PORT"), ("127.0.0.1:99999", "expected HOST:PORT")] {
            let run = try await ChildProcess.run(path: coordinator, ["--host", "127.0.0.1", "--port", "0", "--http", address])
            #expect(run.status == 2)
            #expect(run.output.split(separator: "\n").count == 1, "\(run.output)")
            #expect(run.output.hasPrefix("mesh-coordinator: --http: ") && run.output.contains(reason), "\(run.output)")
        }
        // A port already taken.
        let view = try await RunningWebView.start()
        let taken = try await ChildProcess.run(
            path: coordinator, ["--host", "127.0.0.1", "--port", "0", "--http", "127.0.0.1:\(view.port)"])
        #expect(taken.status == 2)
        #expect(taken.output.contains("Address already in use"), "\(taken.output)")
        await view.stop()
    }

    @Test func warnsWhenServingBeyondLoopbackWithoutAKey() async throws {
        let capture = LogCapture()
        try await withMesh { mesh in
            let web = MeshWebServer(
                coordinator: mesh.coordinator,
                configuration: .init(host: "0.0.0.0", port: 0, logger: capture.logger("web", level: .warning)))
            try await web.start()
            #expect(capture.lines(level: .warning, label: "web").contains { $0.contains("with no authkey") })
            web.close()
            let keyed = MeshWebServer(
                coordinator: mesh.coordinator,
                configuration: .init(host: "0.0.0.0", port: 0, authkey: "a key for the keyed web view", logger: capture.logger("keyed", level: .warning)))
            try await keyed.start()
            #expect(capture.lines(level: .warning, label: "keyed").isEmpty)
            keyed.close()
        }
    }
}
