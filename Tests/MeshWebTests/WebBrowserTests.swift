import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshWeb

/// The web page in a real browser: headless Chromium, driven over the DevTools protocol, loads
/// `/` from a `mesh-coordinator --http` with a receiver, a sender and a pool of three workers,
/// and the test reads the rendered DOM.
@Suite("Web view in a browser", .serialized)
struct WebBrowserTests {
    /// Where the screenshot goes for a person to look at: `.build/test-artifacts/` in the package.
    static let artifacts: URL = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts")
    }()

    static func chromium() -> String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    @Test func thePageDrawsEveryNodeAndTopicAndDropsAKilledNode() async throws {
        guard let chromium = Self.chromium() else {
            Issue.record("chromium is not installed (.ci/run installs it: apt-get install chromium)")
            return
        }
        let (coordinator, address) = try await startCoordinatorProcess(["--http", "127.0.0.1:0"])
        defer { coordinator.terminate() }
        let webLine = try #require(
            coordinator.output.split(separator: "\n").first { $0.hasPrefix("mesh-coordinator web view on http://") })
        let url = String(webLine.dropFirst("mesh-coordinator web view on ".count))
        let webPort = try #require(UInt16(url.split(separator: ":").last?.trimmingCharacters(in: CharacterSet(charactersIn: "/")) ?? ""))

        let environment = ["MESH_COORDINATOR": address]
        let receiver = try ChildProcess("demo-receiver", environment: environment)
        defer { receiver.terminate() }
        try await receiver.waitForOutput("receiver listening on some-topic")
        let processes = ProcessBag()
        defer { processes.terminateAll() }
        let workers = try await processes.startAll("demo-worker", count: 3, environment: environment, waitingFor: "ready")
        // The sender runs here and keeps sending, so the page has rates to show.
        let sender = try await buildMeshNode(
            name: "sender", configuration: .init(coordinator: address, listenHost: "127.0.0.1", logger: testLogger("sender")))
        try await sender.waitForListener("jobs", count: 3, timeout: .seconds(10))
        let sending = Task {
            var index = 0
            while !Task.isCancelled {
                try? await sender.send("some-topic", ["hello": "world"])
                if index % 2 == 0 { try? await sender.send("jobs", ["job": index]) }
                index += 1
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { sending.cancel() }

        // Something that is not a mesh peer knocks on the coordinator's port: a refused event.
        let coordinatorPort = try #require(SocketAddress.parse(address, defaultPort: 0)?.port)
        let knocked = await onThread("knock") { () -> Bool in
            guard let fd = RawClient.connect(port: coordinatorPort).fd else { return false }
            RawClient.send(fd, Array("GET / HTTP/1.1\r\nHost: mesh\r\n\r\n".utf8) + [UInt8](repeating: 0x20, count: 64))
            return RawClient.readUntilClosed(fd, timeoutMilliseconds: 5000)
        }
        #expect(knocked, "the coordinator closes on a non-mesh peer")

        // Who is who, from the coordinator's own JSON.
        let topology = try await http { try HTTPTestClient.get(port: webPort, "/api/topology") }.json()
        let nodes = try #require(topology["nodes"] as? [[String: Any]])
        #expect(nodes.count == 5)
        let ids = nodes.compactMap { $0["id"] as? String }
        let victim = workers[1]
        let victimID = try #require(nodes.first { ($0["pid"] as? Int).map(Int32.init) == victim.pid }?["id"] as? String)

        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let screenshot = Self.artifacts.appendingPathComponent("web-view.png")
        let configuration: [String: Any] = [
            "chromium": chromium, "url": url, "nodes": ids, "topics": ["some-topic", "jobs"], "pool": "worker",
            "killPid": Int(victim.pid), "killId": victimID, "screenshot": screenshot.path, "settle": 2.5,
        ]
        let result = try await Self.drive(configuration)

        let drawn = try #require(result["drawn"] as? [String: Any])
        #expect(Set(drawn["nodes"] as? [String] ?? []) == Set(ids), "every node drawn once: \(drawn)")
        #expect(Set(drawn["topics"] as? [String] ?? []) == ["some-topic", "jobs"])
        #expect(drawn["pools"] as? [String] == ["worker"], "the three workers framed as one pool")
        #expect(Set(drawn["rows"] as? [String] ?? []) == Set(ids), "a table row per node")
        #expect(drawn["live"] as? String == "live")
        #expect((drawn["edges"] as? Int) == 4, "one edge per listener: receiver and three workers")
        #expect((drawn["sendEdges"] as? Int) == 2, "the sender's two topics, as dashed arrows: \(drawn)")
        #expect((drawn["events"] as? [String] ?? []).contains { $0.contains("refused") && $0.contains("not_a_mesh_peer") })
        let gone = try #require(result["goneAfter"] as? Double, "the killed node never left the page: \(result)")
        print("web view: drawn \(result["drawnAfter"] ?? "?") s after load; killed node gone from the page after \(String(format: "%.2f", gone)) s; screenshot \(screenshot.path)")
        #expect(gone < 3, "the killed node left the page \(gone) s after SIGKILL")
        let after = try #require(result["after"] as? [String: Any])
        #expect(Set(after["nodes"] as? [String] ?? []) == Set(ids).subtracting([victimID]))
        #expect((after["events"] as? [String] ?? []).contains { $0.contains("left") && $0.contains(String(victimID.prefix(8))) })
        let png = try Data(contentsOf: screenshot)
        #expect(png.starts(with: [0x89, 0x50, 0x4e, 0x47]) && png.count > 10_000, "a PNG screenshot at \(screenshot.path)")
        sending.cancel()
        await sender.close()
    }

    @Test func aKeyedMeshsPageOpensWithTheToken() async throws {
        guard let chromium = Self.chromium() else {
            Issue.record("chromium is not installed (.ci/run installs it: apt-get install chromium)")
            return
        }
        let key = "the browser test key, long enough"
        let view = try await RunningWebView.start(authkey: key)
        let node = try await view.mesh.node("keyed", authkey: key)
        try await node.listen("secret-topic") { (_: String, _: Data) in }
        let screenshot = Self.artifacts.appendingPathComponent("web-view-keyed.png")
        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let result = try await Self.drive([
            "chromium": chromium, "url": "http://127.0.0.1:\(view.port)/", "nodes": [node.id], "topics": ["secret-topic"],
            "screenshot": screenshot.path, "settle": 0.5,
            "authorization": "Bearer \(try MeshWebServer.token(forAuthkey: key))",
        ])
        let drawn = try #require(result["drawn"] as? [String: Any])
        #expect(drawn["nodes"] as? [String] == [node.id])
        #expect(drawn["live"] as? String == "live")
        await node.close()
        await view.stop()
    }

    struct Map: Codable, Sendable {
        var cells: [Int]
    }

    @Test func servicesSendersToolNodesAndATokenInTheURL() async throws {
        guard let chromium = Self.chromium() else {
            Issue.record("chromium is not installed (.ci/run installs it: apt-get install chromium)")
            return
        }
        let key = "the browser test key, long enough"
        let view = try await RunningWebView.start(authkey: key)
        let provider = try await view.mesh.node("calculator", authkey: key)
        try await provider.serve("add") { (numbers: [Int]) async throws -> Int in numbers.reduce(0, +) }
        let viewer = try await view.mesh.node("viewer", authkey: key)
        try await viewer.listen("map") { (_: String, _: Data) in }
        let mapper = try await view.mesh.node("mapper", authkey: key)
        try await mapper.send(Topic<Map>("map"), Map(cells: [1, 2]))
        // Two of the mesh tool's nodes at once share a name, and are still no pool.
        let tools = [try await view.mesh.node("mesh-send", authkey: key), try await view.mesh.node("mesh-send", authkey: key)]
        let ids = [provider.id, viewer.id, mapper.id] + tools.map(\.id)
        let screenshot = Self.artifacts.appendingPathComponent("web-view-services.png")
        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let token = try MeshWebServer.token(forAuthkey: key)
        // The token in the URL, as a bookmark or a kiosk holds it, and no header.
        let result = try await Self.drive([
            "chromium": chromium, "url": "http://mesh:\(token)@127.0.0.1:\(view.port)/", "nodes": ids, "topics": ["map"],
            "screenshot": screenshot.path, "settle": 1.5,
        ])
        let drawn = try #require(result["drawn"] as? [String: Any])
        #expect(drawn["live"] as? String == "live", "\(drawn)")
        #expect(drawn["services"] as? [String] == ["add"], "\(drawn)")
        #expect(drawn["senders"] as? [String] == [mapper.id], "\(drawn)")
        #expect(Set(drawn["tools"] as? [String] ?? []) == Set(tools.map(\.id)), "\(drawn)")
        #expect(!(drawn["pools"] as? [String] ?? []).contains("mesh-send"), "\(drawn)")
        #expect((drawn["titles"] as? [String] ?? []).contains("map : Map (\(Topic<Map>("map").type.fingerprint!))"), "\(drawn)")
        for node in [provider, viewer, mapper] + tools { await node.close() }
        await view.stop()
    }

    /// Runs the driver script with `configuration`; returns its RESULT object.
    static func drive(_ configuration: [String: Any]) async throws -> [String: Any] {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-web-view-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).py")
        try driver.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let argument = String(decoding: try JSONSerialization.data(withJSONObject: configuration), as: UTF8.self)
        let driver = try ChildProcess(path: "/usr/bin/python3", [script.path, argument])
        defer { driver.terminate() }
        _ = try await driver.waitForExit(seconds: 120)
        let line = try #require(
            driver.output.split(separator: "\n").first { $0.hasPrefix("RESULT ") }, "driver output:\n\(driver.output)")
        let result = try #require(
            try JSONSerialization.jsonObject(with: Data(line.dropFirst("RESULT ".count).utf8)) as? [String: Any])
        try #require(result["error"] == nil, "\(result["error"] ?? "")\n\(driver.output)")
        return result
    }

    /// Drives Chromium over `--remote-debugging-pipe` (the DevTools protocol as NUL-separated
    /// JSON on descriptors 3 and 4): load the page, wait for every node and topic, screenshot,
    /// SIGKILL one node's process, and time how long the page takes to drop it.
    static let driver = #"""
        import json, os, select, shutil, signal, subprocess, sys, tempfile, time

        cfg = json.loads(sys.argv[1])
        PROBE = """JSON.stringify({
          nodes: [...document.querySelectorAll('#graph g.node')].map(g => g.getAttribute('data-node-id')),
          topics: [...document.querySelectorAll('#graph g.topic')].map(g => g.getAttribute('data-topic')),
          pools: [...document.querySelectorAll('#graph g.pool')].map(g => g.getAttribute('data-pool')),
          rows: [...document.querySelectorAll('#node-rows tr')].map(r => r.getAttribute('data-node-id')),
          edges: document.querySelectorAll('#graph path.edge:not(.send)').length,
          sendEdges: document.querySelectorAll('#graph path.edge.send').length,
          events: [...document.querySelectorAll('#events li')].map(li => li.textContent),
          services: [...document.querySelectorAll('#graph g.service')].map(g => g.getAttribute('data-service')),
          senders: [...document.querySelectorAll('#graph path.edge.send')].map(p => p.getAttribute('data-sender')),
          tools: [...document.querySelectorAll('#graph g.node.tool')].map(g => g.getAttribute('data-node-id')),
          titles: [...document.querySelectorAll('#graph g.topic text.title')].map(t => t.textContent),
          live: (document.getElementById('live') || {}).textContent,
          height: Math.ceil(document.querySelector('main').getBoundingClientRect().bottom) })"""

        def main():
            profile = tempfile.mkdtemp(prefix="mesh-web-view-")
            to_r, to_w = os.pipe()
            from_r, from_w = os.pipe()
            def setup():
                a, b = os.dup(to_r), os.dup(from_w)
                os.dup2(a, 3)
                os.dup2(b, 4)
            proc = subprocess.Popen(
                [cfg["chromium"], "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--remote-debugging-pipe", "--user-data-dir=" + profile, "--no-first-run", "--no-default-browser-check",
                 "--hide-scrollbars", "--window-size=1400,1000", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=setup, close_fds=False)
            os.close(to_r)
            os.close(from_w)
            state = {"id": 0, "buffer": b""}

            def call(method, params=None, session=None, timeout=30):
                state["id"] += 1
                message = {"id": state["id"], "method": method, "params": params or {}}
                if session:
                    message["sessionId"] = session
                os.write(to_w, json.dumps(message).encode() + b"\0")
                deadline = time.time() + timeout
                while time.time() < deadline:
                    while b"\0" in state["buffer"]:
                        raw, state["buffer"] = state["buffer"].split(b"\0", 1)
                        reply = json.loads(raw)
                        if reply.get("id") == state["id"]:
                            if "error" in reply:
                                raise RuntimeError(method + ": " + json.dumps(reply["error"]))
                            return reply.get("result", {})
                    ready, _, _ = select.select([from_r], [], [], max(0.0, deadline - time.time()))
                    if ready:
                        chunk = os.read(from_r, 1 << 20)
                        if not chunk:
                            raise RuntimeError("chromium closed the DevTools pipe")
                        state["buffer"] += chunk
                raise TimeoutError(method + " timed out")

            try:
                target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
                session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
                call("Page.enable", session=session)
                call("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session)
                if cfg.get("authorization"):
                    call("Network.enable", session=session)
                    call("Network.setExtraHTTPHeaders", {"headers": {"Authorization": cfg["authorization"]}}, session)
                call("Page.navigate", {"url": cfg["url"]}, session)

                def probe():
                    result = call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session)
                    value = result.get("result", {}).get("value")
                    return json.loads(value) if value else {"nodes": [], "topics": [], "rows": []}

                start = time.time()
                while True:
                    seen = probe()
                    if set(cfg["nodes"]) <= set(seen["nodes"]) and set(cfg["topics"]) <= set(seen["topics"]):
                        break
                    if time.time() - start > 30:
                        raise RuntimeError("not every node and topic was drawn within 30 s: " + json.dumps(seen))
                    time.sleep(0.1)
                drawn_after = time.time() - start
                # A few refreshes later the rates are there too; then the picture.
                time.sleep(cfg.get("settle", 2.5))
                drawn = probe()
                height = min(max(400, int(drawn.get("height", 1000))), 4000)
                call("Emulation.setDeviceMetricsOverride",
                     {"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
                time.sleep(0.3)
                import base64
                shot = call("Page.captureScreenshot", {"format": "png"}, session)
                with open(cfg["screenshot"], "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                if "killPid" not in cfg:
                    print("RESULT " + json.dumps({"drawn": drawn, "drawnAfter": round(drawn_after, 2)}), flush=True)
                    return

                os.kill(cfg["killPid"], signal.SIGKILL)
                killed = time.time()
                gone_after = None
                while time.time() - killed < 10:
                    after = probe()
                    others = set(cfg["nodes"]) - {cfg["killId"]}
                    if cfg["killId"] not in after["nodes"] and cfg["killId"] not in after["rows"] \
                            and others <= set(after["nodes"]):
                        gone_after = time.time() - killed
                        break
                    time.sleep(0.05)
                time.sleep(1.2)  # one more refresh: the departure shows in the events
                after = probe()
                print("RESULT " + json.dumps({"drawn": drawn, "drawnAfter": round(drawn_after, 2),
                                              "goneAfter": gone_after, "after": after}), flush=True)
            except Exception as error:
                print("RESULT " + json.dumps({"error": repr(error)}), flush=True)
            finally:
                proc.kill()
                proc.wait()
                shutil.rmtree(profile, ignore_errors=True)

        main()
        """#
}
