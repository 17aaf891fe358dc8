import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshTooling

#if canImport(Glibc)
import Glibc
#endif

/// `mesh launch` run as a user runs it, with real processes: every child is found by the pid
/// launch prints, and checked gone at the end.
@Suite("mesh launch", .serialized)
struct LaunchTests {
    static let quiet = ["MESH_AUTHKEY": "", "MESH_LOG_LEVEL": "warning", "NO_COLOR": "1"]

    /// Writes `text` to a fresh file and returns its path.
    func write(_ text: String, name: String = "system.launch.yaml") throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-launch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Starts `mesh launch` on a file holding `text`.
    func launch(_ text: String, _ options: [String] = []) throws -> ChildProcess {
        try ChildProcess("mesh", ["launch"] + options + [try write(text)], environment: LaunchTests.quiet)
    }

    /// The pids launch printed for `label` (`worker#2`), in start order.
    func pids(of label: String, in output: String) -> [Int32] {
        let marker = "[launch] started \(label) (pid "
        return output.components(separatedBy: "\n").compactMap { line in
            guard line.hasPrefix(marker) else { return nil }
            return Int32(line.dropFirst(marker.count).prefix { $0.isNumber })
        }
    }

    /// Every pid launch printed.
    func allPIDs(in output: String) -> [Int32] {
        output.components(separatedBy: "\n").compactMap { line in
            guard line.hasPrefix("[launch] started "), let open = line.range(of: "(pid ") else { return nil }
            return Int32(line[open.upperBound...].prefix { $0.isNumber })
        }
    }

    func coordinatorAddress(in output: String) -> String? {
        let marker = "[launch] coordinator listening on "
        return output.components(separatedBy: "\n").first { $0.hasPrefix(marker) }.map { String($0.dropFirst(marker.count)) }
    }

    /// Running, not a zombie waiting for its parent.
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = readProcFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// The processes in process group `group`, from /proc.
    static func processes(inGroup group: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let stat = readProcFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[2]) == group && isRunning(pid)
        }
    }

    /// Fails unless every pid in `pids` has ended within `seconds`.
    func expectAllGone(_ pids: [Int32], seconds: Double = 10, sourceLocation: SourceLocation = #_sourceLocation) async {
        #expect(!pids.isEmpty, sourceLocation: sourceLocation)
        do {
            try await eventually("processes \(pids) to end", seconds: seconds) {
                pids.allSatisfy { !LaunchTests.isRunning($0) }
            }
        } catch {
            let left = pids.filter(LaunchTests.isRunning)
            Issue.record("still running: \(left)", sourceLocation: sourceLocation)
            for pid in left { kill(pid, SIGKILL) }
        }
    }

    /// The index of the first line containing `needle`, for order checks.
    func line(_ needle: String, in output: String) -> Int? {
        output.components(separatedBy: "\n").firstIndex { $0.contains(needle) }
    }

    // MARK: End to end

    @Test("a coordinator, three workers and a dispatcher: jobs spread 3/3/3, whole prefixed lines, exit 0 when done")
    func endToEnd() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            until_done: dispatcher
            nodes:
              worker:
                command: demo-worker
                count: 3
              dispatcher:
                command: demo-worker --dispatch 9 --workers 3
                after: [worker]
                restart: never
            """)
        defer { launch.terminate() }
        let code = try await launch.waitForExit(seconds: 60)
        let output = launch.output
        #expect(code == 0, "\(output)")
        #expect(coordinatorAddress(in: output)?.hasPrefix("127.0.0.1:") == true, "\(output)")
        for copy in 1...3 {
            let pid = try #require(pids(of: "worker#\(copy)", in: output).first, "\(output)")
            #expect(occurrences(of: "[worker#\(copy)] worker \(pid) got job", in: output) == 3, "\(output)")
        }
        #expect(output.contains("[dispatcher#1] dispatcher sent 9 jobs"))
        #expect(output.contains("[launch] dispatcher finished; stopping everything"), "\(output)")
        let allowed = ["[launch] ", "[coordinator] ", "[worker#1] ", "[worker#2] ", "[worker#3] ", "[dispatcher#1] "]
        for line in output.split(separator: "\n") {
            #expect(allowed.contains { line.hasPrefix($0) }, "unprefixed line: \(line)")
        }
        await expectAllGone(allPIDs(in: output))
    }

    /// The launch file of ``endToEnd()``: three workers, a dispatcher of nine jobs, until it is done.
    static let jobsFile = """
        coordinator: start 127.0.0.1:0
        until_done: dispatcher
        nodes:
          worker:
            command: demo-worker
            count: 3
          dispatcher:
            command: demo-worker --dispatch 9 --workers 3
            after: [worker]
            restart: never
        """

    @Test("until_done beside 3 CPU-burning loops: 9 of 9 jobs handled before the workers stop, 10 runs in a row")
    func untilDoneUnderLoad() async throws {
        // The issue's failure: the dispatcher exited, the workers were stopped 4 ms later, and
        // one worker's 3 jobs were never handled. Load makes the window wide; with partial views
        // (every other run) it is wide open, since a worker looks the dispatcher up when its
        // hello arrives: before the confirmation, 0 of 20 such runs handled their 9 jobs.
        let burners = try (0..<3).map { _ in try ChildProcess(path: "/bin/sh", ["-c", "exec yes > /dev/null"]) }
        defer { for burner in burners { burner.terminate() } }
        for run in 1...10 {
            let view = run.isMultiple(of: 2) ? "partial" : "full"
            var environment = LaunchTests.quiet
            environment["MESH_TOPOLOGY_VIEW"] = view
            let launch = try ChildProcess("mesh", ["launch", try write(LaunchTests.jobsFile)], environment: environment)
            defer { launch.terminate() }
            let code = try await launch.waitForExit(seconds: 120)
            let output = launch.output
            let handled = occurrences(of: " got job ", in: output)
            #expect(code == 0 && handled == 9, "run \(run) (\(view) view): exit \(code), \(handled) of 9 jobs handled\n\(output)")
            #expect(!output.contains("SIGKILL"), "run \(run): a worker had to be killed\n\(output)")
            await expectAllGone(allPIDs(in: output))
            if code != 0 || handled != 9 { break }
        }
    }

    // MARK: Restarts

    @Test("a SIGKILLed worker is back in the topology within seconds and served again; restart: never stays down")
    func restarts() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            nodes:
              worker:
                command: demo-worker
                count: 3
              loner:
                command: demo-receiver
                restart: never
            """)
        defer { launch.terminate() }
        for copy in 1...3 { try await launch.waitForOutput("[worker#\(copy)] worker ") }
        try await launch.waitForOutput("[loner#1] receiver listening")
        let address = try #require(coordinatorAddress(in: launch.output))
        let victim = try #require(pids(of: "worker#2", in: launch.output).first)
        let inspector = try await MeshInspector.connect(to: address, authkey: nil)

        let killed = ContinuousClock.now
        kill(victim, SIGKILL)
        try await launch.waitForOutput("[launch] worker#2 exited (killed by SIGKILL)")
        let output = try await launch.waitForOutput("restarting in 500 ms")
        #expect(output.contains("[launch] worker#2 exited (killed by SIGKILL)"))
        try await eventually("worker#2 to start again", seconds: 10) { self.pids(of: "worker#2", in: launch.output).count == 2 }
        let replacement = pids(of: "worker#2", in: launch.output)[1]
        let back = try await timeUntil("the new worker#2 (pid \(replacement)) in the topology", seconds: 10) {
            guard let topology = try? await inspector.topology() else { return false }
            let workers = topology.nodes(named: "worker")
            return workers.count == 3 && workers.contains { $0.pid == replacement } && !workers.contains { $0.pid == victim }
        }
        let total = killed.duration(to: .now)
        print("worker back in the topology \(secondsText(back)) after its new copy started; \(secondsText(total)) after SIGKILL")
        #expect(total < .seconds(6), "the issue asks for 2 s; allowing for a loaded machine")
        await inspector.close()

        // The pool serves the new member: three jobs, one each, round-robin.
        let node = try await buildMeshNode(
            name: "launch-test-dispatcher", configuration: .init(coordinator: address, logger: .silent))
        try await node.waitForListener("jobs", count: 3, timeout: .seconds(10))
        for job in 101...103 { try await node.send("jobs", ["job": job]) }
        try await launch.waitForOutput("[worker#2] worker \(replacement) got job")
        await node.close()

        // restart: never stays down.
        let loner = try #require(pids(of: "loner#1", in: launch.output).first)
        kill(loner, SIGKILL)
        try await launch.waitForOutput("[launch] loner#1 exited (killed by SIGKILL)")
        try await launch.waitForOutput("not restarting (restart: never)")
        try await Task.sleep(for: .seconds(1.5))  // longer than the first backoff (0.5 s)
        #expect(pids(of: "loner#1", in: launch.output).count == 1, "\(launch.output)")

        launch.signal(SIGINT)
        #expect(try await launch.waitForExit(seconds: 30) == 0)
        await expectAllGone(allPIDs(in: launch.output))
    }

    @Test("restarts back off 0.5 s, 1 s, ... and give up after max_restarts with a clear line; all down ends the launch")
    func givesUp() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            nodes:
              failing:
                command: [sh, -c, "echo trying; exit 3"]
                max_restarts: 2
            """)
        defer { launch.terminate() }
        #expect(try await launch.waitForExit(seconds: 30) == 1, "\(launch.output)")
        let output = launch.output
        #expect(pids(of: "failing#1", in: output).count == 3, "\(output)")
        #expect(occurrences(of: "[failing#1] trying", in: output) == 3)
        let first = line("restarting in 500 ms", in: output) ?? -1
        let second = line("restarting in 1.0 s", in: output) ?? -1
        let gaveUp = line("[launch] failing#1 exited (exit 3)", in: output).flatMap { _ in
            line("giving up after 2 restarts in a row (max_restarts)", in: output)
        } ?? -1
        #expect(first >= 0 && first < second && second < gaveUp, "\(output)")
        #expect(output.contains("mesh: failing#1 failed (exit 3)"), "\(output)")
        await expectAllGone(allPIDs(in: output))
    }

    // MARK: Stopping

    @Test("SIGINT stops everything in reverse start order, SIGKILLs what ignores SIGTERM after stop_timeout, leaves nothing")
    func stopInReverseOrder() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            nodes:
              first:
                command: demo-receiver
              second:
                command: demo-worker
                count: 2
                after: first
              stubborn:
                shell: true
                command: trap '' TERM; echo stubborn up; while true; do sleep 0.1; done
                after: second
                stop_timeout: 1
            """)
        defer { launch.terminate() }
        try await launch.waitForOutput("[stubborn#1] stubborn up")
        try await launch.waitForOutput("[second#2] worker ")
        let stubborn = try #require(pids(of: "stubborn#1", in: launch.output).first)
        let group = LaunchTests.processes(inGroup: stubborn)
        #expect(group.count >= 1)
        let pids = allPIDs(in: launch.output) + group
        let started = ContinuousClock.now
        launch.signal(SIGINT)
        #expect(try await launch.waitForExit(seconds: 30) == 0, "\(launch.output)")
        let took = started.duration(to: .now)
        let output = launch.output
        #expect(output.contains("stubborn#1 did not stop within 1.0 s; sending SIGKILL"), "\(output)")
        #expect(output.contains("[launch] stopped stubborn#1 (killed by SIGKILL)"), "\(output)")
        let order = ["stopped stubborn#1", "stopped second#1", "stopped first#1", "stopped coordinator"].map {
            line($0, in: output) ?? -1
        }
        #expect(order.allSatisfy { $0 >= 0 } && order == order.sorted(), "stop order \(order):\n\(output)")
        #expect(line("stopped second#2", in: output).map { $0 < order[2] } == true, "\(output)")
        #expect(took < .seconds(15), "took \(took)")
        await expectAllGone(pids)
    }

    @Test("a second SIGINT kills at once instead of waiting out stop_timeout, and still exits 0")
    func secondSignalKills() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            nodes:
              stubborn:
                shell: true
                command: trap '' TERM INT; echo stubborn up; while true; do sleep 0.1; done
                stop_timeout: 60
            """)
        defer { launch.terminate() }
        try await launch.waitForOutput("[stubborn#1] stubborn up")
        let pids = allPIDs(in: launch.output)
        launch.signal(SIGINT)
        try await launch.waitForOutput("[launch] stopping stubborn#1")
        let second = ContinuousClock.now
        launch.signal(SIGINT)
        #expect(try await launch.waitForExit(seconds: 20) == 0, "\(launch.output)")
        #expect(second.duration(to: .now) < .seconds(10), "waited out the 60 s stop_timeout?")
        #expect(launch.output.contains("[launch] SIGINT again: killing everything now"), "\(launch.output)")
        #expect(launch.output.contains("[launch] stopped stubborn#1 (killed by SIGKILL)"), "\(launch.output)")
        await expectAllGone(pids)
    }

    @Test("a running coordinator is used (and left running), a missing one is started where the file says, with the key")
    func coordinatorAndKey() async throws {
        let (external, address) = try await startCoordinatorProcess(environment: ["MESH_AUTHKEY": "open sesame, a long enough key"])
        defer { external.terminate() }
        let keyFile = try write("open sesame, a long enough key\n", name: "mesh.key")
        let text = """
            authkey_file: \(keyFile)
            until_done: sender
            nodes:
              receiver:
                command: demo-receiver
              sender:
                command: demo-sender
                after: receiver
                restart: never
            """
        let path = try write(text)
        let using = try ChildProcess(
            "mesh", ["launch", path], environment: LaunchTests.quiet.merging(["MESH_COORDINATOR": address]) { $1 })
        defer { using.terminate() }
        #expect(try await using.waitForExit(seconds: 60) == 0, "\(using.output)")
        #expect(using.output.contains("[launch] coordinator \(address) is already running; using it"), "\(using.output)")
        #expect(using.output.contains("[receiver#1] receiver got: topic=some-topic"), "\(using.output)")
        #expect(!using.output.contains("started coordinator"))
        #expect(LaunchTests.isRunning(external.pid), "launch stopped a coordinator it did not start")

        // Nothing answers on this port: launch starts a coordinator there, with the file's key.
        let port = try freeLoopbackPort()
        let starting = try ChildProcess(
            "mesh", ["launch", path], environment: LaunchTests.quiet.merging(["MESH_COORDINATOR": "127.0.0.1:\(port)"]) { $1 })
        defer { starting.terminate() }
        #expect(try await starting.waitForExit(seconds: 60) == 0, "\(starting.output)")
        #expect(starting.output.contains("no coordinator answers at 127.0.0.1:\(port)"), "\(starting.output)")
        #expect(starting.output.contains("[launch] coordinator listening on 127.0.0.1:\(port)"), "\(starting.output)")
        #expect(starting.output.contains("[receiver#1] receiver got: topic=some-topic"), "\(starting.output)")
        await expectAllGone(allPIDs(in: starting.output))
    }

    @Test("SIGKILL of mesh launch takes every child with it")
    func sigkillOfLaunch() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            nodes:
              receiver:
                command: demo-receiver
              worker:
                command: demo-worker
                count: 3
            """)
        defer { launch.terminate() }
        try await launch.waitForOutput("[receiver#1] receiver listening")
        for copy in 1...3 { try await launch.waitForOutput("[worker#\(copy)] worker ") }
        let pids = allPIDs(in: launch.output)
        #expect(pids.count == 5, "\(launch.output)")  // the coordinator, the receiver, three workers
        #expect(pids.allSatisfy(LaunchTests.isRunning))
        launch.signal(SIGKILL)
        _ = try await launch.waitForExit(seconds: 10)
        await expectAllGone(pids)
    }

    // MARK: after and output

    @Test("after waits for the topology, not a time: a late entry goes first, one after a non-node never starts")
    func afterOrdering() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            until_done: [sender, dispatcher]
            nodes:
              late:
                command: demo-receiver
                delay: 1.5
              sender:
                command: demo-sender
                after: late
                restart: never
              pool:
                command: demo-worker
                count: 2
                delay: 1
              dispatcher:
                command: demo-worker --dispatch 2 --workers 2
                after: [pool]
                restart: never
              idle:
                command: sleep 60
              blocked:
                command: demo-sender
                after: idle
            """)
        defer { launch.terminate() }
        #expect(try await launch.waitForExit(seconds: 60) == 0, "\(launch.output)")
        let output = launch.output
        let late = try #require(line("started late#1", in: output))
        let sender = try #require(line("started sender#1", in: output))
        #expect(late < sender, "\(output)")
        for copy in 1...2 {
            let pool = try #require(line("started pool#\(copy)", in: output))
            #expect(pool < (line("started dispatcher#1", in: output) ?? -1), "\(output)")
        }
        #expect(output.contains("[late#1] receiver got: topic=some-topic"), "\(output)")
        #expect(!output.contains("started blocked#1"), "\(output)")
        await expectAllGone(allPIDs(in: output))
    }

    @Test("coordinator_args reach the coordinator launch starts: --http serves the web view; --port is refused")
    func coordinatorArguments() async throws {
        let text = """
            coordinator: start 127.0.0.1:0
            coordinator_args: --http 127.0.0.1:0
            until_done: [done]
            nodes:
              done:
                command: /bin/sh -c "exit 0"
            """
        let run = try launch(text)
        let output = try await run.waitForOutput("web view on http://127.0.0.1:")
        #expect(output.contains("[coordinator] mesh-coordinator web view on http://127.0.0.1:"), "\(output)")
        #expect(try await run.waitForExit(seconds: 30) == 0, "\(run.output)")

        let refused = try launch(text.replacingOccurrences(of: "--http 127.0.0.1:0", with: "--port 7000"), ["--check"])
        #expect(try await refused.waitForExit(seconds: 20) == 2, "a bad file is a usage error")
        #expect(refused.output.contains("coordinator_args may not set --port"), "\(refused.output)")
    }

    @Test("lines from copies printing at once come out whole and prefixed; long and unterminated lines too")
    func wholeLines() async throws {
        let launch = try launch(
            """
            coordinator: start 127.0.0.1:0
            until_done: [spam, long]
            nodes:
              spam:
                shell: true
                command: i=0; while [ $i -lt 3000 ]; do echo "line $i abcdefghijklmnopqrstuvwxyz0123456789"; i=$((i+1)); done
                count: 3
                restart: never
              long:
                shell: true
                command: head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline at the end'
                restart: never
            """)
        defer { launch.terminate() }
        #expect(try await launch.waitForExit(seconds: 60) == 0)
        let lines = launch.output.components(separatedBy: "\n")
        for copy in 1...3 {
            let prefix = "[spam#\(copy)] "
            let mine = lines.filter { $0.hasPrefix(prefix) }
            #expect(mine.count == 3000)
            let expected = (0..<3000).map { "\(prefix)line \($0) abcdefghijklmnopqrstuvwxyz0123456789" }
            #expect(mine == expected, "lines of spam#\(copy) mixed or out of order")
        }
        let long = lines.filter { $0.hasPrefix("[long#1] ") }.map { $0.dropFirst("[long#1] ".count) }
        #expect(long.map(\.count) == [16384, 16384, 7232, 21], "\(long.map(\.count))")
        #expect(long.last == "no newline at the end")
        for line in lines where !line.isEmpty {
            #expect(["[launch] ", "[coordinator] ", "[spam#", "[long#1] "].contains { line.hasPrefix($0) }, "\(line.prefix(80))")
        }
    }

    // MARK: The command line and the demos

    @Test("--check prints the plan; bad files and missing programs fail in one line with file, line and column")
    func checkAndErrors() async throws {
        let help = try await ChildProcess.run(path: executablesDirectory.appendingPathComponent("mesh").path, ["launch", "--help"])
        #expect(help.status == 0 && help.output.hasPrefix("usage: mesh launch FILE"), "\(help.output)")
        let good = try write(
            "nodes:\n  worker:\n    command: demo-worker\n    count: 3\n  dispatcher:\n    command: demo-worker --dispatch 12\n    after: [worker]\n")
        let check = try await ChildProcess.run(
            path: executablesDirectory.appendingPathComponent("mesh").path, ["launch", "--check", good])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("ENTRY       COPIES  RESTART     AFTER   DELAY  COMMAND"), "\(check.output)")
        #expect(check.output.contains("worker      3       on-failure  -       -      demo-worker"), "\(check.output)")
        let dry = try await ChildProcess.run(
            path: executablesDirectory.appendingPathComponent("mesh").path, ["launch", "--dry-run", good])
        #expect(dry.status == 0, "\(dry.output)")
        #expect(dry.output.contains(executablesDirectory.appendingPathComponent("demo-worker").path), "\(dry.output)")

        let cases: [(String, Int32, String)] = [
            ("nodes:\n  worker:\n    comand: x\n", 2, ":3:5: unknown key \"comand\""),
            ("nodes:\n\tworker:\n", 2, ":2:1: a tab in the indentation"),
            ("nodes:\n  w:\n    command: no-such-program-here\n", 1, "program \"no-such-program-here\" not found"),
        ]
        for (text, code, needle) in cases {
            let path = try write(text)
            let run = try await ChildProcess.run(
                path: executablesDirectory.appendingPathComponent("mesh").path, ["launch", path], seconds: 20)
            #expect(run.status == code, "\(run.output)")
            #expect(run.output.hasPrefix("mesh: \(path)"), "\(run.output)")
            #expect(run.output.contains(needle), "\(run.output)")
            #expect(run.output.dropLast().firstIndex(of: "\n") == nil, "not one line: \(run.output)")
        }
        let missing = try await ChildProcess.run(
            path: executablesDirectory.appendingPathComponent("mesh").path, ["launch", "/nonexistent/x.yaml"])
        #expect(missing.status == 2 && missing.output == "mesh: /nonexistent/x.yaml: no such file\n", "\(missing.output)")
    }

    @Test("the demos answer --help, and fail with one line and exit 1, no backtrace")
    func demosHelpAndFailures() async throws {
        for demo in ["demo-receiver", "demo-sender", "demo-worker", "demo-service"] {
            let help = try await ChildProcess.run(path: executablesDirectory.appendingPathComponent(demo).path, ["--help"])
            #expect(help.status == 0)
            #expect(help.output.hasPrefix("usage: \(demo)"), "\(help.output)")
            #expect(help.output.contains("$MESH_COORDINATOR"))
        }
        // The Python demos too (no mesh needed: --help must not start a node).
        let client = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("clients/python").path
        for demo in ["receiver", "sender"] {
            let help = try await ChildProcess.run(
                path: "/usr/bin/env", ["PYTHONPATH=\(client)", "python3", "-m", "swiftmesh.demo.\(demo)", "--help"])
            #expect(help.status == 0, "\(help.output)")
            #expect(help.output.hasPrefix("usage: python -m swiftmesh.demo.\(demo)"), "\(help.output)")
        }
        let serviceArgument = try await ChildProcess.run(
            path: executablesDirectory.appendingPathComponent("demo-service").path, ["--bogus"])
        #expect(serviceArgument.status == 2, "\(serviceArgument.output)")
        let port = try freeLoopbackPort()
        let unreachable = try ChildProcess(
            "demo-sender", environment: LaunchTests.quiet.merging(["MESH_COORDINATOR": "127.0.0.1:\(port)"]) { $1 })
        #expect(try await unreachable.waitForExit(seconds: 20) == 1)
        #expect(unreachable.output.hasPrefix("demo-sender: coordinator unreachable at 127.0.0.1:\(port)"), "\(unreachable.output)")
        #expect(unreachable.output.dropLast().firstIndex(of: "\n") == nil, "not one line: \(unreachable.output)")

        let (coordinator, address) = try await startCoordinatorProcess(environment: ["MESH_AUTHKEY": "the right key for the demo"])
        defer { coordinator.terminate() }
        let wrongKey = try ChildProcess(
            "demo-receiver", environment: ["MESH_COORDINATOR": address, "MESH_AUTHKEY": "the wrong key for the demo", "MESH_LOG_LEVEL": "error"])
        #expect(try await wrongKey.waitForExit(seconds: 20) == 1)
        #expect(wrongKey.output.hasPrefix("demo-receiver: authentication failed"), "\(wrongKey.output)")
        #expect(wrongKey.output.dropLast().firstIndex(of: "\n") == nil, "not one line: \(wrongKey.output)")

        let bad = try await ChildProcess.run(path: executablesDirectory.appendingPathComponent("demo-worker").path, ["--bogus"])
        #expect(bad.status == 2)
        #expect(bad.output == "demo-worker: unknown argument \"--bogus\"; see demo-worker --help\n", "\(bad.output)")

        // The coordinator too: a port in use is one line and exit 1.
        let busy = try ChildProcess("mesh-coordinator", ["--host", "127.0.0.1", "--port", String(address.split(separator: ":").last!)])
        #expect(try await busy.waitForExit(seconds: 20) == 1)
        #expect(busy.output.hasPrefix("mesh-coordinator: "), "\(busy.output)")
        #expect(busy.output.dropLast().firstIndex(of: "\n") == nil, "not one line: \(busy.output)")
    }
}
