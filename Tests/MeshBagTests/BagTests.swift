import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshBag

/// `mesh bag record`, `info` and `play` as a user runs them, against a coordinator in this
/// process, with the `mcap` Python library (PyPI) as the outside reader.
@Suite("mesh bag", .serialized)
struct BagTests {
    struct Pose: Codable, Sendable, Equatable {
        var x: Double
        var y: Double
        var label: String
    }

    struct Job: Codable, Sendable {
        var id: Int
    }

    /// What the fixture script writes on its JSON channel.
    struct FixtureValue: Codable, Sendable, Equatable {
        var n: Int
        var text: String
    }

    /// One message as a receiver saw it.
    struct Seen: Sendable, Equatable {
        var topic: String
        var senderID: String
        var payload: Data
        var at: ContinuousClock.Instant
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let readScript = repositoryRoot.appendingPathComponent("scripts/mcap/read_mcap.py").path
    static let fixtureScript = repositoryRoot.appendingPathComponent("scripts/mcap/make_fixture.py").path

    /// Checks a failure: the exit code, and one line on standard error saying why.
    func expectFailure(_ run: CommandRun, code: Int32, mentioning needle: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problem = run.failureProblem(code: code, mentioning: needle)
        #expect(problem == nil, "\(problem ?? "")", sourceLocation: sourceLocation)
    }

    /// A fresh directory for one test's files.
    func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-bag-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func environment(_ coordinator: RunningCoordinator) -> [String: String] {
        MeshCLI.quiet.merging(["MESH_COORDINATOR": coordinator.address]) { $1 }
    }

    /// Starts `mesh bag record ARGUMENTS`.
    func startRecorder(_ arguments: [String], _ coordinator: RunningCoordinator) throws -> ChildProcess {
        try ChildProcess("mesh", ["bag", "record"] + arguments, environment: environment(coordinator))
    }

    /// Waits until a node named `mesh-bag-…` listens to every one of `topics`.
    func waitForRecorder(on topics: [String], via node: MeshNode) async throws {
        // With a partial view (the default) the node holds the listeners of the topics it follows.
        try await node.need(ViewInterest(topics: Set(topics)))
        try await eventually("the recorder to listen to \(topics)", seconds: 20) {
            await node.currentTopology.nodes.values.contains { record in
                record.name.hasPrefix("mesh-bag-") && !record.name.hasPrefix("mesh-bag-play")
                    && topics.allSatisfy(record.topics.contains)
            }
        }
    }

    /// Messages readable in the file now (a recording in progress, or cut short).
    static func readableCount(_ path: String) -> Int {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)), var reader = try? MCAPReader(data: data) else {
            return 0
        }
        return (try? reader.readToEnd()) ?? 0
    }

    /// Every message in the file, in file order, with its channel.
    static func readMessages(_ path: String) throws -> ([(MCAP.Message, MCAP.Channel)], MCAPReader) {
        var reader = try MCAPReader(path: path)
        var messages: [(MCAP.Message, MCAP.Channel)] = []
        while let message = try reader.next() {
            messages.append((message, reader.channels[message.channelID]!))
        }
        return (messages, reader)
    }

    /// Runs a Python script; returns its exit status and output (stdout and stderr together).
    func python(_ script: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await ChildProcess.run(path: "/usr/bin/env", ["python3", script] + arguments, seconds: 60)
    }

    /// What `read_mcap.py` says about `path`.
    func readWithPython(_ path: String) async throws -> [String: Any] {
        let out = path + ".python.json"
        let (status, output) = try await python(BagTests.readScript, [path, out])
        try #require(status == 0, "read_mcap.py failed (is the mcap package installed? .ci/run installs it): \(output)")
        let json = try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: out)))
        return try #require(json as? [String: Any])
    }

    /// Listens to `topics` as raw bytes on `node`, collecting what arrives.
    func collect(_ topics: [String], on node: MeshNode) async throws -> Collector<Seen> {
        let seen = Collector<Seen>()
        for topic in topics {
            try await node.listen(topic, as: Data.self) { (message: MeshMessage<Data>) in
                seen.append(Seen(topic: message.topic, senderID: message.sender.id, payload: message.value, at: .now))
            }
        }
        return seen
    }

    static func wallClock() -> UInt64 {
        UInt64(Date().timeIntervalSince1970 * 1e9)
    }

    // MARK: Round trip

    @Test("typed, raw and JSON topics from several senders: the file holds each message exactly, info and Python agree, a pool keeps its share")
    func recordRoundTrip() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/round.mcap"
            let topics = ["pose", "blob", "note", "jobs"]
            let witness = try await coordinator.node("witness")
            let seen = try await collect(topics, on: witness)
            let workerCounts = Mutex([0, 0])
            var workers: [MeshNode] = []
            for index in 0..<2 {
                let worker = try await coordinator.node("worker")
                try await worker.listen("jobs", as: Job.self) { (_: String, _: Job) in workerCounts.withLock { $0[index] += 1 } }
                workers.append(worker)
            }
            let recorder = try startRecorder(["-o", path] + topics, coordinator)
            defer { recorder.terminate() }
            let senderA = try await coordinator.node("sender-a")
            let senderB = try await coordinator.node("sender-b")
            try await waitForRecorder(on: topics, via: senderA)
            try await senderA.waitForListener("jobs", count: 4, timeout: .seconds(10))

            let before = BagTests.wallClock()
            var generator = SplitMix64(seed: 13)
            for index in 0..<10 {
                // A typed topic: its channel's schema is named after the type.
                try await senderA.send(Topic<Pose>("pose"), Pose(x: Double(index), y: -1.5, label: "p\(index) ✓"))
                try await senderA.send("blob", Data((0..<(index * 37)).map { _ in UInt8.random(in: 0...255, using: &generator) }))
                try await senderB.send("note", ["index": "\(index)", "text": "hello \"mesh\""])
                try await senderB.send("jobs", Job(id: index))
                try await senderB.send("jobs", Job(id: 100 + index))
            }
            try await senderA.send("blob", Data(repeating: 0xA5, count: 1 << 20))
            let total = 10 + 11 + 10 + 20
            let witnessed = try await seen.wait(for: total, seconds: 20)
            try await eventually("the recorder to write \(total) messages", seconds: 20) { BagTests.readableCount(path) >= total }
            recorder.signal(SIGINT)
            #expect(try await recorder.waitForExit(seconds: 20) == 0, "\(recorder.output)")
            let after = BagTests.wallClock()
            #expect(recorder.output.contains("recorded \(total) message(s)"), "\(recorder.output)")

            // The pool still got every job, shared between its members; the recorder got its own copy.
            let counts = workerCounts.withLock { $0 }
            #expect(counts[0] + counts[1] == 20 && counts[0] > 0 && counts[1] > 0, "\(counts)")

            // Our reader: every message, byte for byte, in each sender's order, with sender and encoding.
            let (messages, reader) = try BagTests.readMessages(path)
            #expect(reader.endedCleanly)
            #expect(messages.count == total)
            for sender in [senderA, senderB] {
                let expected = witnessed.filter { $0.senderID == sender.id }.map { "\($0.topic) \($0.payload.base64EncodedString())" }
                let recorded = messages.filter { $0.1.metadata["sender_id"] == sender.id }.map {
                    "\($0.1.topic) \($0.0.data.base64EncodedString())"
                }
                #expect(recorded == expected, "messages from \(sender.name) differ")
            }
            for (message, channel) in messages {
                #expect(message.logTime >= before && message.logTime <= after && message.publishTime == message.logTime)
                let raw = channel.topic == "blob"
                #expect(channel.messageEncoding == (raw ? "application/octet-stream" : "json"))
                #expect(channel.metadata["mesh_encoding"] == (raw ? "raw" : "codec"))
                #expect(channel.metadata["sender"] == (["pose", "blob"].contains(channel.topic) ? "sender-a" : "sender-b"))
            }
            let poses = try messages.filter { $0.1.topic == "pose" }.map { try JSONDecoder().decode(Pose.self, from: $0.0.data) }
            #expect(poses == (0..<10).map { Pose(x: Double($0), y: -1.5, label: "p\($0) ✓") })

            // mesh bag info --json counts per topic.
            let info = try await MeshCLI.run(["bag", "info", path, "--json"])
            #expect(info.code == 0, "\(info)")
            let object = try #require(try info.json() as? [String: Any])
            #expect(object["messages"] as? Int == total && object["endedCleanly"] as? Bool == true)
            let perTopic = (object["topics"] as? [[String: Any]] ?? []).reduce(into: [String: Int]()) {
                $0[$1["topic"] as? String ?? ""] = $1["messages"] as? Int
            }
            #expect(perTopic == ["pose": 10, "blob": 11, "note": 10, "jobs": 20])
            let text = try await MeshCLI.run(["bag", "info", path])
            #expect(text.code == 0 && text.output.contains("ended:       cleanly") && text.output.contains("messages:    \(total)"), "\(text)")

            // The outside reader: every message, topic, time and payload, and the summary, agree.
            let python = try await readWithPython(path)
            let pythonMessages = try #require(python["messages"] as? [[String: Any]])
            #expect(pythonMessages.count == total)
            for (theirs, (ours, channel)) in zip(pythonMessages, messages) {
                #expect(theirs["topic"] as? String == channel.topic)
                #expect(theirs["data"] as? String == ours.data.base64EncodedString())
                #expect((theirs["log_time"] as? NSNumber)?.uint64Value == ours.logTime)
                #expect((theirs["publish_time"] as? NSNumber)?.uint64Value == ours.publishTime)
                #expect(theirs["sequence"] as? Int == Int(ours.sequence))
                #expect(theirs["encoding"] as? String == channel.messageEncoding)
                #expect((theirs["metadata"] as? [String: String]) == channel.metadata)
                let schema = channel.topic == "pose" ? "Pose" : channel.messageEncoding == "json" ? "json" : nil
                #expect(theirs["schema"] as? String == schema)
            }
            let statistics = try #require(python["statistics"] as? [String: Any])
            #expect(statistics["message_count"] as? Int == total)
            #expect(statistics["channel_count"] as? Int == reader.channels.count)
            #expect((statistics["channel_message_counts"] as? [String: Int])?.values.reduce(0, +) == total)
            #expect((statistics["message_start_time"] as? NSNumber)?.uint64Value == messages.map(\.0.logTime).min())
            #expect((statistics["message_end_time"] as? NSNumber)?.uint64Value == messages.map(\.0.logTime).max())
            #expect(python["indexed_message_count"] as? Int == total)
            #expect((python["chunk_indexes"] as? Int ?? 0) >= 1)
            #expect((python["library"] as? String ?? "").hasPrefix("swift-mesh"))

            for node in [witness, senderA, senderB] + workers { await node.close() }
        }
    }

    // MARK: Play

    @Test("play reproduces topic, payload and order, with the recorded spacing within 10% at --rate 1")
    func playBack() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/play.mcap"
            let recorder = try startRecorder(["-o", path, "tick", "blob", "other"], coordinator)
            defer { recorder.terminate() }
            let sender = try await coordinator.node("ticker")
            try await waitForRecorder(on: ["tick", "blob", "other"], via: sender)
            for index in 0..<8 {
                try await sender.send("tick", Pose(x: Double(index), y: 0, label: "t"))
                try await sender.send("blob", Data([UInt8(index), 1, 2, 3]))
                try await sender.send("other", ["skip": "me"])
                try await Task.sleep(for: .milliseconds(index % 2 == 0 ? 100 : 200))
            }
            try await eventually("the recorder to write 24 messages", seconds: 20) { BagTests.readableCount(path) >= 24 }
            recorder.signal(SIGTERM)
            #expect(try await recorder.waitForExit(seconds: 20) == 0, "\(recorder.output)")
            let (recorded, _) = try BagTests.readMessages(path)
            let wanted = recorded.filter { ["tick", "blob"].contains($0.1.topic) }

            // A listener that decodes the typed topic (so the JSON went out as JSON) and one for raw bytes.
            let sink = try await coordinator.node("sink")
            let seen = try await collect(["blob"], on: sink)
            let ticks = Collector<(Pose, ContinuousClock.Instant)>()
            try await sink.listen("tick", as: Pose.self) { (_: String, pose: Pose) in ticks.append((pose, .now)) }
            let play = try await MeshCLI.run(
                ["bag", "play", path, "--topics", "tick,blob", "--rate", "1"], environment: environment(coordinator),
                seconds: 30)
            #expect(play.code == 0, "\(play)")
            #expect(play.output.hasPrefix("sent 16 message(s) on 2 topic(s)"), "\(play)")
            let poses = try await ticks.wait(for: 8, seconds: 10)
            let blobs = try await seen.wait(for: 8, seconds: 10)
            #expect(poses.map(\.0) == (0..<8).map { Pose(x: Double($0), y: 0, label: "t") })
            #expect(blobs.map(\.payload) == wanted.filter { $0.1.topic == "blob" }.map(\.0.data))
            #expect(wanted.count == 16)

            // Spacing: each gap between ticks as played, against the gap as recorded.
            let recordedTimes = wanted.filter { $0.1.topic == "tick" }.map { Double($0.0.logTime) / 1e9 }
            let playedTimes = poses.map { $0.1 }
            let recordedSpan = recordedTimes.last! - recordedTimes.first!
            let playedSpan = seconds(playedTimes.first!.duration(to: playedTimes.last!))
            #expect(abs(playedSpan - recordedSpan) <= 0.1 * recordedSpan, "played over \(playedSpan) s, recorded over \(recordedSpan) s")
            // Each gap: the typical one within 10%; none off by more than a scheduling hiccup on a loaded machine.
            var errors: [Double] = []
            for index in 1..<8 {
                let recordedGap = recordedTimes[index] - recordedTimes[index - 1]
                let playedGap = seconds(playedTimes[index - 1].duration(to: playedTimes[index]))
                errors.append(abs(playedGap - recordedGap) / recordedGap)
                #expect(abs(playedGap - recordedGap) <= max(0.1 * recordedGap, 0.05), "gap \(index): played \(playedGap) s, recorded \(recordedGap) s")
            }
            #expect(errors.sorted()[errors.count / 2] <= 0.1, "median gap error \(errors.sorted()[errors.count / 2])")

            // Twice the rate: half the time.
            let fast = try await MeshCLI.run(["bag", "play", path, "--topics", "tick", "--rate", "2"], environment: environment(coordinator), seconds: 30)
            #expect(fast.code == 0, "\(fast)")
            let fastTicks = try await ticks.wait(for: 16, seconds: 10).suffix(8).map(\.1)
            let fastSpan = seconds(fastTicks.first!.duration(to: fastTicks.last!))
            #expect(abs(fastSpan - recordedSpan / 2) <= 0.1 * recordedSpan / 2 + 0.02, "at --rate 2: \(fastSpan) s for \(recordedSpan) s")

            // --start skips the beginning.
            let late = try await MeshCLI.run(["bag", "play", path, "--topics", "tick", "--rate", "4", "--start", "0.5"], environment: environment(coordinator), seconds: 30)
            #expect(late.code == 0, "\(late)")
            let skipped = recordedTimes.filter { $0 - recordedTimes[0] >= 0.5 }.count
            #expect(late.output.hasPrefix("sent \(skipped) message(s)"), "\(late)")

        }
    }

    func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    // MARK: --all

    @Test("--all records a topic that appears while it runs; SIGTERM ends the file properly")
    func allTopics() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/all.mcap"
            let early = try await coordinator.node("early-listener")
            _ = try await collect(["early"], on: early)
            let recorder = try startRecorder(["-o", path, "--all"], coordinator)
            defer { recorder.terminate() }
            let sender = try await coordinator.node("sender")
            try await waitForRecorder(on: ["early"], via: sender)
            // A topic nobody listened to when the recorder started.
            let late = try await coordinator.node("late-listener")
            _ = try await collect(["late"], on: late)
            try await waitForRecorder(on: ["early", "late"], via: sender)
            try await sender.send("early", ["n": 1])
            try await sender.send("late", Data("later".utf8))
            try await eventually("both messages in the file", seconds: 20) { BagTests.readableCount(path) >= 2 }
            recorder.signal(SIGTERM)
            #expect(try await recorder.waitForExit(seconds: 20) == 0, "\(recorder.output)")
            let (messages, reader) = try BagTests.readMessages(path)
            #expect(reader.endedCleanly)
            #expect(messages.map(\.1.topic) == ["early", "late"])
            #expect(messages.last?.0.data == Data("later".utf8))
            for node in [early, late, sender] { await node.close() }
        }
    }

    @Test("recording every topic with a partial-view node: a clear error, no file left, nothing listened to")
    func allTopicsNeedsFullView() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/partial.mcap"
            let recorder = try BagRecorder(path: path, options: .init(topics: ["kept"], allTopics: true))
            let node = try await coordinator.node("mesh-bag-partial") { $0.topologyView = .partial }
            do {
                _ = try await recorder.run(node: node)
                Issue.record("run returned with a partial view")
            } catch let error as MeshBagError {
                #expect(error.description.contains("needs a node that holds the whole topology (MeshNode.Configuration.topologyView = .full)"))
            }
            #expect(!FileManager.default.fileExists(atPath: path))
            #expect(await node.currentTopology.nodes[node.id]?.topics == [])
            await node.close()
        }
    }

    // MARK: Crashes and bad files

    @Test("a recorder killed with SIGKILL leaves a file that info and play read up to the last flush")
    func killedRecorder() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/killed.mcap"
            let recorder = try startRecorder(["-o", path, "tick"], coordinator)
            defer { recorder.terminate() }
            let sender = try await coordinator.node("ticker")
            try await waitForRecorder(on: ["tick"], via: sender)
            var sentAt: [ContinuousClock.Instant] = []
            let start = ContinuousClock.now
            while start.duration(to: .now) < .milliseconds(2500) {
                try await sender.send("tick", ["i": sentAt.count])
                sentAt.append(.now)
                try await Task.sleep(for: .milliseconds(10))
            }
            let killedAt = ContinuousClock.now
            recorder.signal(SIGKILL)
            _ = try await recorder.waitForExit(seconds: 20)
            // Everything sent more than a second (the flush interval, plus a margin for a loaded
            // machine) before the kill is in the file.
            let mustHave = sentAt.filter { $0.duration(to: killedAt) > .milliseconds(1300) }.count
            let info = try await MeshCLI.run(["bag", "info", path, "--json"])
            #expect(info.code == 0, "\(info)")
            let object = try #require(try info.json() as? [String: Any])
            #expect(object["endedCleanly"] as? Bool == false)
            #expect(object["cutShortAt"] as? Int != nil)
            let count = object["messages"] as? Int ?? 0
            #expect(count >= mustHave && count <= sentAt.count, "\(count) messages readable; \(mustHave) sent over 1.3 s before the kill")
            let text = try await MeshCLI.run(["bag", "info", path])
            #expect(text.output.contains("cut short at offset"), "\(text)")

            // play sends what is there and says the file was cut short.
            let sink = try await coordinator.node("sink")
            let seen = try await collect(["tick"], on: sink)
            let play = try await MeshCLI.run(["bag", "play", path, "--rate", "50"], environment: environment(coordinator), seconds: 30)
            #expect(play.code == 0, "\(play)")
            #expect(play.errors.contains("cut short at offset"), "\(play)")
            #expect(play.output.hasPrefix("sent \(count) message(s)"), "\(play)")
            let played = try await seen.wait(for: count, seconds: 10)
            #expect(played.count == count)
        }
    }

    @Test("truncated, corrupted and non-MCAP files: one line with the offset, exit 1, nothing sent")
    func badFiles() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (good, _) = MCAPTests.sampleFile(count: 30, chunkEvery: 10)
        func write(_ name: String, _ bytes: [UInt8]) throws -> String {
            let path = directory + "/" + name
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return path
        }
        // Not MCAP at all, and empty.
        for (name, bytes) in [("zip.mcap", Array("PK\u{3}\u{4}not a bag at all".utf8)), ("empty.mcap", [])] {
            let run = try await MeshCLI.run(["bag", "info", try write(name, bytes)])
            expectFailure(run, code: 1, mentioning: "not an MCAP file (at offset 0)")
        }
        // A flipped byte inside the second chunk's messages: the chunk CRC catches it.
        var corrupt = good
        let secondChunk = try #require(MCAPTests.chunkOffsets(good).dropFirst().first)
        corrupt[secondChunk + 9 + 60] ^= 0xFF
        let damaged = try await MeshCLI.run(["bag", "info", try write("corrupt.mcap", corrupt)])
        expectFailure(damaged, code: 1, mentioning: "corrupt MCAP file at offset \(secondChunk): chunk CRC mismatch")
        // play refuses it before sending anything (no mesh needed to find out).
        let play = try await MeshCLI.run(["bag", "play", directory + "/corrupt.mcap", "--coordinator", "127.0.0.1:1"])
        expectFailure(play, code: 1, mentioning: "offset \(secondChunk)")
        // Cut inside the header: an error; cut inside the third chunk: the first two chunks, and a note.
        let header = try await MeshCLI.run(["bag", "info", try write("header.mcap", Array(good.prefix(12)))])
        expectFailure(header, code: 1, mentioning: "offset 8")
        let thirdChunk = MCAPTests.chunkOffsets(good)[2]
        let cut = try await MeshCLI.run(["bag", "info", "--json", try write("cut.mcap", Array(good.prefix(thirdChunk + 50)))])
        #expect(cut.code == 0, "\(cut)")
        let object = try #require(try cut.json() as? [String: Any])
        #expect(object["messages"] as? Int == 20 && object["cutShortAt"] as? Int == thirdChunk && object["endedCleanly"] as? Bool == false)
        // Missing files and directories.
        expectFailure(try await MeshCLI.run(["bag", "info", directory + "/nope.mcap"]), code: 1, mentioning: "no such file")
        expectFailure(try await MeshCLI.run(["bag", "info", directory]), code: 1, mentioning: "is a directory")
    }

    @Test("--help on every bag command; bad arguments exit 2 with one line, before touching anything")
    func arguments() async throws {
        for words in [["bag"], ["bag", "record"], ["bag", "info"], ["bag", "play"]] {
            let run = try await MeshCLI.run(words + ["--help"])
            #expect(run.code == 0 && run.output.hasPrefix("usage: mesh " + words.joined(separator: " ")), "\(run)")
        }
        let cases: [([String], String)] = [
            (["bag"], "mesh bag needs a subcommand"),
            (["bag", "rewind"], "unknown command \"mesh bag rewind\""),
            (["bag", "record", "t"], "needs -o FILE.mcap"),
            (["bag", "record", "-o"], "-o needs a value"),
            (["bag", "record", "-o", "/tmp/never.mcap", "t", "--max-size", "12Q"], "--max-size: \"12Q\" is not a positive number of bytes"),
            (["bag", "record", "-o", "/tmp/never.mcap", "t", "--duration", "-1"], "--duration"),
            (["bag", "info"], "needs FILE"),
            (["bag", "info", "a.mcap", "b.mcap"], "unexpected argument \"b.mcap\""),
            (["bag", "play", "a.mcap", "--rate", "0"], "--rate: \"0\" is not a positive number"),
            (["bag", "play", "a.mcap", "--start", "soon"], "--start: \"soon\" is not a number of seconds"),
            (["bag", "play", "a.mcap", "--no-wait", "--wait-for-listeners"], "either --wait-for-listeners or --no-wait"),
        ]
        for (arguments, needle) in cases {
            expectFailure(try await MeshCLI.run(arguments), code: 2, mentioning: needle)
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/never.mcap"))
    }

    @Test("an unwritable path fails at once with a clear error, before joining any mesh")
    func unwritablePath() async throws {
        let run = try await MeshCLI.run(["bag", "record", "-o", "/nonexistent-dir/x.mcap", "--all", "--coordinator", "127.0.0.1:1"])
        expectFailure(run, code: 1, mentioning: "cannot create /nonexistent-dir/x.mcap: No such file or directory")
        let usage = try await MeshCLI.run(["bag", "record", "-o", "/tmp/x.mcap"])
        expectFailure(usage, code: 2, mentioning: "needs a TOPIC or --all")
    }

    @Test(
        "a full disk: exit 1 with a clear error, and what was written before stays readable",
        .enabled(if: geteuid() == 0, "mounting a small tmpfs needs root"))
    func diskFull() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            // A 512 KiB file system of its own, so the disk fills without touching anyone else's.
            try #require(mount("tmpfs", directory, "tmpfs", 0, "size=512k") == 0, "mount: \(String(cString: strerror(errno)))")
            defer { umount2(directory, Int32(MNT_DETACH)) }
            let path = directory + "/full.mcap"
            let recorder = try startRecorder(["-o", path, "fill"], coordinator)
            defer { recorder.terminate() }
            let sender = try await coordinator.node("filler")
            try await waitForRecorder(on: ["fill"], via: sender)
            // 10 kB every 25 ms: a flush (every 0.5 s) writes about 200 kB, so the second or third fills the disk.
            for index in 0..<100 {
                try await sender.send("fill", Data(repeating: UInt8(index), count: 10_000))
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(try await recorder.waitForExit(seconds: 20) == 1, "\(recorder.output)")
            let failure = recorder.output.split(separator: "\n").filter { $0.hasPrefix("mesh: ") }
            #expect(failure.count == 1 && failure[0].contains("writing \(path) failed: No space left on device"), "\(recorder.output)")
            let info = try await MeshCLI.run(["bag", "info", path, "--json"])
            #expect(info.code == 0, "\(info)")
            let object = try #require(try info.json() as? [String: Any])
            let count = object["messages"] as? Int ?? 0
            #expect(object["endedCleanly"] as? Bool == false && count > 0 && count < 52, "\(count) messages readable")
        }
    }

    @Test("--duration and --max-size stop the recording and leave a complete file")
    func limits() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let timed = try await MeshCLI.run(
                ["bag", "record", "-o", directory + "/timed.mcap", "--all", "--duration", "1"], environment: environment(coordinator))
            #expect(timed.code == 0 && timed.output.contains("--duration reached"), "\(timed)")
            #expect(timed.seconds < 10)
            let (_, timedReader) = try BagTests.readMessages(directory + "/timed.mcap")
            #expect(timedReader.endedCleanly)

            let path = directory + "/sized.mcap"
            let recorder = try startRecorder(["-o", path, "big", "--max-size", "200K"], coordinator)
            defer { recorder.terminate() }
            let sender = try await coordinator.node("sender")
            try await waitForRecorder(on: ["big"], via: sender)
            for _ in 0..<100 { try await sender.send("big", Data(repeating: 7, count: 10_000)) }
            #expect(try await recorder.waitForExit(seconds: 20) == 0, "\(recorder.output)")
            #expect(recorder.output.contains("--max-size reached"), "\(recorder.output)")
            let (messages, reader) = try BagTests.readMessages(path)
            #expect(reader.endedCleanly)
            #expect(messages.count >= 19 && messages.count <= 21, "\(messages.count)")

            // Recording again to the same name makes a new file: a reader of the old one (mapped, as
            // info and play read) still reads it whole (a truncated mapping would fault, SIGBUS).
            var old = try MCAPReader(data: try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped))
            let again = try await MeshCLI.run(["bag", "record", "-o", path, "--all", "--duration", "0.3"], environment: environment(coordinator))
            #expect(again.code == 0, "\(again)")
            #expect(try old.readToEnd() == messages.count && old.endedCleanly)
            #expect(try BagTests.readMessages(path).0.isEmpty)

            // A topic the mesh refuses: exit 2, and no file left behind.
            let refused = try await MeshCLI.run(["bag", "record", "-o", directory + "/refused.mcap", ""], environment: environment(coordinator))
            expectFailure(refused, code: 2, mentioning: "topic must not be empty")
            #expect(!FileManager.default.fileExists(atPath: directory + "/refused.mcap"))
        }
    }

    // MARK: Files from another writer

    @Test("a file the mcap Python library wrote: info describes it, play sends it")
    func pythonFixture() async throws {
        try await withMesh { coordinator in
            let directory = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = directory + "/fixture.mcap"
            let (status, output) = try await python(BagTests.fixtureScript, [path, "10"])
            try #require(status == 0, "make_fixture.py failed (is the mcap package installed?): \(output)")

            let info = try await MeshCLI.run(["bag", "info", path, "--json"])
            #expect(info.code == 0, "\(info)")
            let object = try #require(try info.json() as? [String: Any])
            #expect(object["messages"] as? Int == 20 && object["endedCleanly"] as? Bool == true)
            #expect(object["library"] as? String == "mcap python fixture")
            #expect(object["startTime"] as? Int == 1_700_000_000_000_000_000)
            #expect(object["durationSeconds"] as? Double == 0.38)
            let topics = (object["topics"] as? [[String: Any]] ?? []).map { "\($0["topic"] ?? "") \($0["messages"] ?? "")" }
            #expect(topics == ["fixture/bytes 10", "fixture/json 10"])

            let sink = try await coordinator.node("sink")
            let values = Collector<FixtureValue>()
            try await sink.listen("fixture/json", as: FixtureValue.self) { (_: String, value: FixtureValue) in values.append(value) }
            let bytes = try await collect(["fixture/bytes"], on: sink)
            let play = try await MeshCLI.run(["bag", "play", path], environment: environment(coordinator), seconds: 30)
            #expect(play.code == 0, "\(play)")
            #expect(play.output.hasPrefix("sent 20 message(s) on 2 topic(s)"), "\(play)")
            #expect(try await values.wait(for: 10) == (0..<10).map { FixtureValue(n: $0, text: "message \($0)") })
            #expect(try await bytes.wait(for: 10).map(\.payload) == (0..<10).map { Data(repeating: UInt8($0), count: 8) })

            // --loop starts over until Ctrl-C, then says what it sent (25 JSON values are 49 messages in).
            let looping = try ChildProcess("mesh", ["bag", "play", path, "--loop", "--rate", "4"], environment: environment(coordinator))
            defer { looping.terminate() }
            _ = try await values.wait(for: 10 + 25, seconds: 20)
            looping.signal(SIGINT)
            #expect(try await looping.waitForExit(seconds: 20) == 0, "\(looping.output)")
            let loopSent = looping.output.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            #expect(looping.output.hasPrefix("sent ") && loopSent >= 49, "\(looping.output)")

            // A file truncated while play reads it (another program rewrote it): one line and exit 1,
            // not a crash. It spans many pages, so the vanished ones fault (SIGBUS).
            let victim = directory + "/victim.mcap"
            let (made, madeOutput) = try await python(BagTests.fixtureScript, [victim, "2000"])
            try #require(made == 0, "\(madeOutput)")
            let before = values.values.count
            let doomed = try ChildProcess("mesh", ["bag", "play", victim, "--rate", "4"], environment: environment(coordinator))
            defer { doomed.terminate() }
            _ = try await values.wait(for: before + 5, seconds: 20)
            #expect(truncate(victim, 100) == 0)
            #expect(try await doomed.waitForExit(seconds: 20) == 1, "\(doomed.output)")
            #expect(doomed.output == "mesh: \(victim) shrank while it was being read (another program truncated or rewrote it)\n", "\(doomed.output)")
        }
    }
}

extension MCAPTests {
    /// The offsets of the Chunk records in a file from ``sampleFile(count:chunkEvery:seed:)``.
    static func chunkOffsets(_ bytes: [UInt8]) -> [Int] {
        var offsets: [Int] = []
        var at = 8
        while at + 9 <= bytes.count {
            let length = bytes[(at + 1)..<(at + 9)].reversed().reduce(0) { $0 << 8 | Int($1) }
            if bytes[at] == MCAP.Opcode.chunk.rawValue { offsets.append(at) }
            if bytes[at] == MCAP.Opcode.dataEnd.rawValue { break }
            at += 9 + length
        }
        return offsets
    }
}
