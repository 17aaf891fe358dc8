import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// The `mesh` tool, run as a user runs it, against a `mesh-coordinator` process; each test
/// asserts the output format docs/CLI.md documents.
@Suite("mesh command-line tool", .serialized)
struct CLITests {
    typealias Run = CommandRun

    static let quiet = MeshCLI.quiet

    /// Starts `mesh` with `arguments`.
    func start(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try MeshCLI.start(arguments, environment: environment)
    }

    /// Runs `mesh` with `arguments` to the end (failing the test after `seconds`).
    func mesh(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 20) async throws -> Run {
        try await MeshCLI.run(arguments, environment: environment, seconds: seconds)
    }

    /// Starts a `demo-worker` (a node named "worker" listening to "jobs") and waits until it is ready.
    func startWorker(_ address: String) async throws -> ChildProcess {
        let worker = try ChildProcess(
            "demo-worker", environment: CLITests.quiet.merging(["MESH_COORDINATOR": address]) { $1 })
        try await worker.waitForOutput("ready")
        return worker
    }

    /// Checks a failure: the exit code, and one line on standard error saying why.
    func expectFailure(_ run: Run, code: Int32, mentioning needle: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problem = run.failureProblem(code: code, mentioning: needle)
        #expect(problem == nil, "\(problem ?? "")", sourceLocation: sourceLocation)
    }

    /// Checks that a child stopped by `mesh node kill` exits 0 within `seconds`.
    func expectCleanExit(_ child: ChildProcess, seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) async {
        do {
            let code = try await child.waitForExit(seconds: seconds)
            #expect(code == 0, "\(child.name) exited \(code): \(child.output)", sourceLocation: sourceLocation)
        } catch {
            Issue.record(
                "\(child.name) (pid \(child.pid)) still runs \(seconds) s after mesh node kill (the node closed; did its SIGTERM to itself arrive?); output:\n\(child.output)",
                sourceLocation: sourceLocation)
        }
    }

    /// Where `needle` starts in `line`, in characters.
    func column(of needle: String, in line: String) -> Int? {
        line.range(of: needle).map { line.distance(from: line.startIndex, to: $0.lowerBound) }
    }

    // MARK: Arguments and help

    @Test("--help answers on every level of the command tree, and --version prints the version")
    func helpOnEveryLevel() async throws {
        let levels: [[String]] = [
            [], ["node"], ["topic"], ["node", "list"], ["node", "kill"], ["topic", "list"], ["topic", "info"], ["topic", "echo"],
            ["topic", "send"], ["topic", "hz"], ["topic", "bw"], ["status"], ["speedtest"],
        ]
        for words in levels {
            let usage = (["usage: mesh"] + (words.isEmpty ? ["<command>"] : words)).joined(separator: " ")
            for flag in ["--help", "-h"] {
                let run = try await mesh(words + [flag])
                #expect(run.code == 0, "mesh \(words) \(flag): \(run)")
                #expect(run.output.hasPrefix(usage), "mesh \(words) \(flag) printed: \(run)")
            }
        }
        let bare = try await mesh([])
        #expect(bare.code == 0)
        #expect(bare.output.hasPrefix("usage: mesh <command>"))
        let version = try await mesh(["--version"])
        #expect(version.code == 0)
        #expect(version.trimmed == "mesh \(MeshDefaults.version)")
    }

    @Test("bad arguments exit 2 with a one-line reason, before touching the network")
    func badArguments() async throws {
        let cases: [([String], String)] = [
            (["bogus"], "unknown command \"bogus\""),
            (["node"], "mesh node needs a subcommand"),
            (["topic", "publish", "T"], "unknown command \"mesh topic publish\""),
            (["node", "list", "--bogus"], "unknown option \"--bogus\""),
            (["node", "list", "extra"], "unexpected argument \"extra\""),
            (["node", "kill"], "needs NAME|ID or --all"),
            (["node", "kill", "worker", "--all"], "either a NAME|ID or --all"),
            (["topic", "echo"], "needs TOPIC"),
            (["topic", "echo", "T", "--count", "zero"], "--count: \"zero\" is not a whole number"),
            (["topic", "send", "T"], "needs JSON"),
            (["topic", "send", "T", "{\"a\":"], "invalid JSON"),
            (["topic", "send", "T", "1", "--rate", "-3"], "--rate: \"-3\" is not a positive number"),
            (["topic", "hz", "T", "--window"], "--window needs a value"),
            (["status", "--log-level", "loud"], "unknown level \"loud\""),
            (["status", "--authkey-file", "/nonexistent/key"], "cannot read the authkey file"),
        ]
        for (arguments, reason) in cases {
            // A coordinator address nobody answers on: reaching the network would exit 1, not 2.
            let run = try await mesh(arguments + ["--coordinator", "127.0.0.1:1"])
            expectFailure(run, code: 2, mentioning: reason)
        }
    }

    // MARK: Failures to reach the coordinator

    @Test("no coordinator: exit 1 within a few seconds, saying it is unreachable")
    func noCoordinator() async throws {
        // A port that just had a coordinator on it and now has nothing.
        let (coordinator, address) = try await startCoordinatorProcess()
        // Killed outright: SIGTERM this early could land before its handler is installed.
        coordinator.signal(SIGKILL)
        _ = try await coordinator.waitForExit()
        for arguments in [["node", "list"], ["topic", "list"], ["status"], ["topic", "echo", "T"], ["speedtest"]] {
            let run = try await mesh(arguments + ["--coordinator", address])
            expectFailure(run, code: 1, mentioning: "unreachable")
            #expect(run.seconds < 5, "mesh \(arguments) took \(run.seconds) s")
        }
        // The address can also come from the environment.
        let fromEnvironment = try await mesh(["node", "list"], environment: ["MESH_COORDINATOR": address])
        expectFailure(fromEnvironment, code: 1, mentioning: "unreachable at \(address)")
    }

    @Test("a wrong key fails within a few seconds, saying authentication failed; the right one works")
    func wrongKey() async throws {
        let (coordinator, address) = try await startCoordinatorProcess(environment: ["MESH_AUTHKEY": "key a, long enough"])
        defer { coordinator.terminate() }
        let wrong = try await mesh(["node", "list", "--coordinator", address, "--authkey", "key b, long enough"])
        expectFailure(wrong, code: 1, mentioning: "authentication failed")
        #expect(wrong.seconds < 5, "took \(wrong.seconds) s")
        let none = try await mesh(["node", "list", "--coordinator", address])
        expectFailure(none, code: 1, mentioning: "authentication failed")

        let right = try await mesh(["node", "list", "--coordinator", address, "--authkey", "key a, long enough"])
        #expect(right.code == 0, "\(right)")
        let fromEnvironment = try await mesh(["node", "list", "--coordinator", address], environment: ["MESH_AUTHKEY": "key a, long enough"])
        #expect(fromEnvironment.code == 0, "\(fromEnvironment)")
        let keyFile = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-cli-key-\(UUID())")
        try Data("key a, long enough\n".utf8).write(to: keyFile)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        let fromFile = try await mesh(["node", "list", "--coordinator", address, "--authkey-file", keyFile.path])
        #expect(fromFile.code == 0, "\(fromFile)")
    }

    // MARK: Listing

    @Test("node list shows each node with its id, address, pid, uptime and topics; --json has the fields")
    func nodeList() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let empty = try await mesh(["node", "list", "--coordinator", address])
        #expect(empty.code == 0)
        #expect(empty.lines == ["NAME  ID  ADDRESS  PID  UPTIME  TOPICS"], "\(empty)")

        let worker = try await startWorker(address)
        defer { worker.terminate() }
        let table = try await mesh(["node", "list", "--coordinator", address])
        #expect(table.code == 0, "\(table)")
        #expect(table.lines.count == 2, "\(table)")
        let header = table.lines[0].split(separator: " ").map(String.init)
        #expect(header == ["NAME", "ID", "ADDRESS", "PID", "UPTIME", "TOPICS"])
        let cells = table.lines[1].split(separator: " ").map(String.init)
        #expect(cells.count == 6, "\(table)")
        if cells.count == 6 {
            #expect(cells[0] == "worker")
            #expect(cells[1].count == 16 && cells[1].allSatisfy(\.isHexDigit))
            #expect(cells[2].hasPrefix("127.0.0.1:"))
            #expect(cells[3] == String(worker.pid))
            #expect(cells[4].hasSuffix("s"))
            #expect(cells[5] == "jobs")
        }
        // Columns line up: each header starts where its cells start.
        for (title, cell) in zip(header, cells) {
            #expect(column(of: title, in: table.lines[0]) == column(of: cell, in: table.lines[1]), "\(table)")
        }

        let json = try await mesh(["node", "list", "--json", "--coordinator", address])
        #expect(json.code == 0, "\(json)")
        let nodes = try #require(try json.json() as? [[String: Any]], "\(json)")
        #expect(nodes.count == 1)
        let node = try #require(nodes.first)
        #expect(node["name"] as? String == "worker")
        #expect((node["id"] as? String)?.count == 16)
        #expect(node["host"] as? String == "127.0.0.1")
        #expect((node["port"] as? Int ?? 0) > 0)
        #expect(node["address"] as? String == "127.0.0.1:\(node["port"] as? Int ?? 0)")
        #expect(node["pid"] as? Int == Int(worker.pid))
        #expect(node["topics"] as? [String] == ["jobs"])
        #expect((node["joined"] as? Double ?? 0) > 1_700_000_000)
        let uptime = try #require(node["uptime"] as? Double)
        #expect(uptime >= 0 && uptime < 60)
    }

    @Test("topic list shows each topic's listener count and groups; --json has the fields")
    func topicList() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let workers = [try await startWorker(address), try await startWorker(address)]
        defer { for worker in workers { worker.terminate() } }
        let echo = try start(["topic", "echo", "jobs", "--coordinator", address])
        defer { echo.terminate() }
        let echoName = "mesh-echo-\(echo.pid)"
        try await eventually("the echo node to listen to jobs") {
            let run = try? await mesh(["topic", "list", "--coordinator", address])
            return run?.output.contains(echoName) ?? false
        }

        let table = try await mesh(["topic", "list", "--coordinator", address])
        #expect(table.code == 0)
        #expect(table.lines.count == 2, "\(table)")
        #expect(table.lines.first?.split(separator: " ") == ["TOPIC", "TYPE", "SENDERS", "LISTENERS", "GROUPS"])
        #expect(table.lines.last == "jobs   -     0        3          \(echoName) (1), worker (2)", "\(table)")

        let json = try await mesh(["topic", "list", "--json", "--coordinator", address])
        let topics = try #require(try json.json() as? [[String: Any]], "\(json)")
        #expect(topics.count == 1)
        #expect(topics.first?["topic"] as? String == "jobs")
        #expect(topics.first?["listeners"] as? Int == 3)
        #expect(topics.first?["senders"] as? Int == 0)
        #expect((topics.first?["types"] as? [Any])?.isEmpty == true)
        let groups = try #require(topics.first?["groups"] as? [[String: Any]])
        #expect(groups.map { $0["name"] as? String } == [echoName, "worker"])
        #expect(groups.map { $0["members"] as? Int } == [1, 2])
    }

    // MARK: Messages

    @Test("echo prints JSON payloads as data and other bytes as base64, one JSON line each, then exits 0")
    func echoAndSend() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let echo = try start(["topic", "echo", "T", "--count", "3", "--coordinator", address])
        defer { echo.terminate() }

        let send = try await mesh(["topic", "send", "T", #"{"a":1}"#, "--count", "2", "--rate", "20", "--coordinator", address])
        #expect(send.code == 0, "\(send)")
        #expect(send.trimmed == "sent 2 message(s) on T")

        // Bytes that are not JSON, from a node in this process.
        let node = try await buildMeshNode(
            name: "raw-sender",
            configuration: .init(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: testLogger("raw")))
        try await node.waitForListener("T", timeout: .seconds(5))
        try await node.send("T", Data([0xff, 0x00, 0x01]))
        await node.close()

        let echoed = try await echo.result()
        #expect(echoed.code == 0, "\(echoed)")
        #expect(echoed.errors == "listening on T\n", "only the ready line on stderr: \(echoed)")
        let lines = echoed.lines
        #expect(lines.count == 3, "\(echoed)")
        #expect(lines.first?.hasPrefix(#"{"topic":"T","sender":"mesh-send","senderId":""#) == true, "\(echoed)")
        #expect(lines.first?.hasSuffix(#"","data":{"a":1}}"#) == true, "\(echoed)")
        let parsed = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(parsed.count == 3)
        for message in parsed.prefix(2) {
            #expect(message["topic"] as? String == "T")
            #expect(message["sender"] as? String == "mesh-send")
            #expect((message["senderId"] as? String)?.count == 16)
            #expect(message["data"] as? [String: Int] == ["a": 1])
        }
        let raw = try #require(parsed.last)
        #expect(raw["sender"] as? String == "raw-sender")
        #expect(raw["bytes"] as? Int == 3)
        #expect(raw["base64"] as? String == "/wAB")
        #expect(raw["data"] == nil)
    }

    @Test("send delivers any JSON value to a Swift listener's own Decodable type")
    func sendDecodesOnTheListener() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        struct Job: Decodable, Sendable, Equatable {
            var id: Int
            var name: String
            var tags: [String]
            var weight: Double
            var urgent: Bool
            var note: String?
        }
        let node = try await buildMeshNode(
            name: "decoder",
            configuration: .init(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: testLogger("decoder")))
        let jobs = Collector<Job>()
        try await node.listen("jobs") { (_: String, job: Job) in jobs.append(job) }
        let numbers = Collector<Int>()
        try await node.listen("numbers") { (_: String, number: Int) in numbers.append(number) }

        let json = #"{"id":7,"name":"résumé/ünïcode \"quoted\"","tags":["a","b"],"weight":2.5,"urgent":true,"note":null}"#
        #expect(try await mesh(["topic", "send", "jobs", json, "--coordinator", address]).code == 0)
        #expect(try await mesh(["topic", "send", "numbers", "-42", "--coordinator", address]).code == 0)
        let received = try await jobs.wait(for: 1)
        #expect(received == [Job(id: 7, name: "résumé/ünïcode \"quoted\"", tags: ["a", "b"], weight: 2.5, urgent: true, note: nil)])
        #expect(try await numbers.wait(for: 1) == [-42])
        await node.close()
    }

    @Test("send with nobody listening exits 1 within about 5 s with a one-line reason")
    func sendWithoutListener() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let run = try await mesh(["topic", "send", "nobody-listens", "{}", "--coordinator", address])
        expectFailure(run, code: 1, mentioning: "no listener on nobody-listens within 5 s")
        #expect(run.seconds < 7.5, "took \(run.seconds) s")

        let short = try await mesh(["topic", "send", "nobody-listens", "{}", "--timeout", "0.5", "--coordinator", address])
        expectFailure(short, code: 1, mentioning: "within 0.5 s")

        let noWait = try await mesh(["topic", "send", "nobody-listens", "{}", "--no-wait", "--coordinator", address])
        #expect(noWait.code == 0, "\(noWait)")
        #expect(noWait.trimmed == "sent 1 message(s) on nobody-listens; 1 found no listener and were dropped")
    }

    @Test("hz and bw print a line a second for --count lines, then exit 0")
    func rateAndBandwidth() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        // The sender first: it waits for the first listener, then sends for 6 s, so both
        // meters see messages during every second they measure.
        let send = try start(
            ["topic", "send", "H", #"{"n":1}"#, "--rate", "20", "--count", "120", "--timeout", "10", "--coordinator", address])
        defer { send.terminate() }
        let hz = try start(["topic", "hz", "H", "--count", "3", "--coordinator", address])
        defer { hz.terminate() }
        let bw = try start(["topic", "bw", "H", "--count", "2", "--json", "--window", "2", "--coordinator", address])
        defer { bw.terminate() }

        let hzRun = try await hz.result()
        #expect(hzRun.code == 0, "\(hzRun)")
        let rates = hzRun.lines
        #expect(rates.count == 3, "\(hzRun)")
        let pattern = #/^(\d+\.\d) msgs/s  (\d+) msgs in (\d+\.\d) s  total (\d+) msgs$/#
        for line in rates { #expect(line.wholeMatch(of: pattern) != nil, "\(line)") }
        let total = rates.last.flatMap { $0.wholeMatch(of: pattern) }.flatMap { Int($0.output.4) } ?? 0
        #expect(total > 0, "\(hzRun)")

        let bwRun = try await bw.result()
        #expect(bwRun.code == 0, "\(bwRun)")
        let readings = bwRun.lines.compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(readings.count == 2, "\(bwRun)")
        for key in ["window", "messages", "bytes", "messagesPerSecond", "bytesPerSecond", "totalMessages", "totalBytes"] {
            #expect(readings.allSatisfy { $0[key] is NSNumber }, "\(key) missing in \(bwRun)")
        }
        #expect((readings.last?["totalBytes"] as? Int ?? 0) > 0, "\(bwRun)")
        #expect((readings.last?["window"] as? Double ?? 9) <= 2)

        // The meters leave before the sender is done: what it sends after that finds no
        // listener, and send says so (exit 1, issue 10).
        let sent = try await send.result()
        #expect(sent.code == 1, "\(sent)")
        #expect(sent.errors.contains(" of 120 message(s) on H were dropped ("), "\(sent)")
    }

    // MARK: Stopping nodes

    @Test("node kill NAME stops every node of that name, lists them, and the processes exit 0")
    func killByName() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let workers = [try await startWorker(address), try await startWorker(address)]
        defer { for worker in workers { worker.terminate() } }
        let list = try await mesh(["node", "list", "--json", "--coordinator", address])
        let ids = try #require(try list.json() as? [[String: Any]]).compactMap { $0["id"] as? String }.sorted()
        #expect(ids.count == 2)

        let run = try await mesh(["node", "kill", "worker", "--coordinator", address])
        #expect(run.code == 0, "\(run)")
        #expect(run.lines == ids.map { "stopped  worker  \($0)" }, "\(run)")
        for worker in workers { await expectCleanExit(worker) }
        let after = try await mesh(["node", "list", "--coordinator", address])
        #expect(after.lines.count == 1, "\(after)")

        let unknown = try await mesh(["node", "kill", "nobody", "--coordinator", address])
        expectFailure(unknown, code: 1, mentioning: "no node is named or has the id \"nobody\"")
    }

    @Test("node kill --all stops every node, by id too, and reports them as JSON")
    func killAll() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let worker = try await startWorker(address)
        defer { worker.terminate() }
        let echo = try start(["topic", "echo", "E", "--coordinator", address])
        defer { echo.terminate() }
        try await eventually("two nodes") {
            let run = try? await mesh(["node", "list", "--coordinator", address])
            return run?.lines.count == 3
        }

        let run = try await mesh(["node", "kill", "--all", "--json", "--coordinator", address])
        #expect(run.code == 0, "\(run)")
        let report = try #require(try run.json() as? [String: Any], "\(run)")
        let stopped = try #require(report["stopped"] as? [[String: String]])
        #expect(Set(stopped.compactMap { $0["name"] }) == ["worker", "mesh-echo-\(echo.pid)"])
        #expect(stopped.allSatisfy { $0["id"]?.count == 16 })
        #expect((report["running"] as? [Any])?.isEmpty == true)
        let echoed = try await echo.result(seconds: 10)
        #expect(echoed.code == 0, "\(echoed)")
        await expectCleanExit(worker)

        let nothing = try await mesh(["node", "kill", "--all", "--coordinator", address])
        expectFailure(nothing, code: 1, mentioning: "there are no nodes to stop")

        // By id: a node started in this process, told to only close.
        let node = try await buildMeshNode(
            name: "by-id",
            configuration: .init(
                coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: testLogger("by-id"),
                onShutdownRequest: .closeNode))
        let byID = try await mesh(["node", "kill", node.id, "--coordinator", address])
        #expect(byID.code == 0, "\(byID)")
        #expect(byID.trimmed == "stopped  by-id  \(node.id)")
        await node.close()
    }

    // MARK: Status and speed

    @Test("status shows the coordinator and each node's counters from its heartbeats; --json has the fields")
    func status() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let worker = try await startWorker(address)
        defer { worker.terminate() }
        let send = try await mesh(["topic", "send", "jobs", #"{"job":1}"#, "--count", "3", "--coordinator", address])
        #expect(send.code == 0, "\(send)")
        try await worker.waitForOutput("got job 1")

        // Counters arrive with the next heartbeat (every second).
        try await eventually("the worker's heartbeat to carry its counters") {
            guard let run = try? await mesh(["status", "--json", "--coordinator", address]),
                let json = try? run.json() as? [String: Any],
                let nodes = json["nodes"] as? [[String: Any]], let stats = nodes.first?["stats"] as? [String: Any]
            else { return false }
            return stats["messagesReceived"] as? Int == 3
        }
        let json = try await mesh(["status", "--json", "--coordinator", address])
        let report = try #require(try json.json() as? [String: Any], "\(json)")
        #expect(report["coordinator"] as? String == address)
        #expect((report["uptime"] as? Double ?? -1) > 0)
        #expect((report["version"] as? Int ?? 0) > 0)
        #expect(report["nodeCount"] as? Int == 1)
        let node = try #require((report["nodes"] as? [[String: Any]])?.first)
        #expect(node["name"] as? String == "worker")
        #expect((node["id"] as? String)?.count == 16)
        #expect((node["address"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect((node["lastHeard"] as? Double ?? 9) < 3)
        let stats = try #require(node["stats"] as? [String: Any])
        #expect(stats["messagesReceived"] as? Int == 3)
        #expect((stats["bytesReceived"] as? Int ?? 0) > 0)
        #expect(stats["messagesSent"] as? Int == 0)
        #expect(stats["messagesDropped"] as? Int == 0)

        let table = try await mesh(["status", "--coordinator", address])
        #expect(table.code == 0, "\(table)")
        let lines = table.lines
        #expect(lines.count == 7, "\(table)")
        guard lines.count == 7 else { return }
        #expect(lines[0] == "coordinator  \(address)")
        #expect(lines[1].wholeMatch(of: #/uptime       \d+s/#) != nil, "\(lines[1])")
        #expect(lines[2].hasPrefix("version      "))
        #expect(lines[3] == "nodes        1")
        #expect(lines[5].split(separator: " ") == ["NAME", "ID", "SENT", "SENT-BYTES", "RECEIVED", "RECEIVED-BYTES", "DROPPED", "HEARD"])
        let cells = lines[6].split(separator: " ").map(String.init)
        #expect(cells.count == 10, "\(lines[6])")  // sizes are "N B": two words each
        #expect(cells.first == "worker")
        #expect(cells.count > 5 && cells[5] == "3", "\(lines[6])")
    }

    @Test("speedtest runs two nodes through the mesh and reports the rate and losses")
    func speedtest() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let json = try await mesh(["speedtest", "--messages", "2000", "--size", "100", "--json", "--coordinator", address])
        #expect(json.code == 0, "\(json)")
        let result = try #require(try json.json() as? [String: Any], "\(json)")
        #expect(result["messages"] as? Int == 2000)
        #expect(result["size"] as? Int == 100)
        #expect(result["received"] as? Int == 2000)
        #expect(result["lost"] as? Int == 0)
        #expect((result["messagesPerSecond"] as? Double ?? 0) > 0)
        #expect((result["megabytesPerSecond"] as? Double ?? 0) > 0)
        #expect((result["topic"] as? String)?.hasPrefix("mesh-speedtest-") == true)

        let text = try await mesh(["speedtest", "--messages", "500", "--coordinator", address])
        #expect(text.code == 0, "\(text)")
        #expect(text.lines.map { String($0.prefix(12)) } == ["messages:   ", "received:   ", "time:       ", "rate:       ", "throughput: "])
        #expect(text.lines.count == 5 && text.lines[1] == "received:    500 (0 lost)", "\(text)")
        // Both nodes left.
        let list = try await mesh(["node", "list", "--coordinator", address])
        #expect(list.lines.count == 1, "\(list)")
    }
}
