import Foundation
import MeshTesting
import Testing

@testable import mesh_bench

/// `mesh-bench peers`: reading a peers.py run and judging issue #21's floors on it.
///
/// The fixture `Fixtures/peers-2026-12-07.json` is the run of 2026-12-07 17:29-17:32 in
/// docs/PERFORMANCE.md, in peers.py's `--out` format: each figure's minimum, median and maximum
/// over the 3 reps as reps 0, 1 and 2 (so rep 0 is every system's best W2 rep).
@Suite("mesh-bench peers: the table beside the peers")
struct PeersComparisonTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peers-2026-12-07.json")

    static func recorded() throws -> PeersComparison {
        try PeersComparison(json: Data(contentsOf: fixture))
    }

    @Test("every system of the recorded run is read, in peers.py's order, with medians and our spread")
    func readsTheRecordedRun() throws {
        let run = try Self.recorded()
        #expect(run.systems == [.ours, .rawTCP, .rawBatched, .zeroMQ, .swiftNIO, .nats, .cycloneDDS])
        #expect(run.unknownRows.isEmpty)
        let w1 = try #require(run.figures[.ours]?[.w1])
        #expect(w1 == PeersComparison.Figure(value: 1_006_567, minimum: 905_387, maximum: 1_082_866, reps: 3, errors: 0))
        #expect(run.figures[.zeroMQ]?[.w4]?.value == 2_372_637)
        #expect(run.figures[.rawTCP]?[.w3]?.value == 3_208)
        #expect(run.figures[.rawBatched]?[.w3] == nil, "the batched raw row runs no W3")
        #expect(run.oursRanCleanly)
    }

    @Test("a run recorded by peers.py itself (2026-12-07 18:51, `bash scripts/peers --reps 3 --out`): its six floors")
    func recordedByPeersPy() throws {
        let url = Self.fixture.deletingLastPathComponent().appendingPathComponent("peers-2026-12-07-1851.json")
        let run = try PeersComparison(json: Data(contentsOf: url))
        #expect(run.systems == [.ours, .rawTCP, .rawBatched, .zeroMQ, .swiftNIO, .nats, .cycloneDDS])
        #expect(run.oursRanCleanly)
        let ratios = run.floors.map { floor in (floor.ratio ?? 0) }
        let expected = [
            209.59 / 23.8, 209.59 / 28.2, 319.586 / 99.0,
            1_105_042.980000257 / 1_161_663.3911534443, 0.6072108073732616, 1509.5441334383484 / 1736.6092643828715,
        ]
        for (ratio, want) in zip(ratios, expected) { #expect(abs(ratio - want) < 1e-9) }
        #expect(run.floors.map(\.outcome) == [.missed, .missed, .missed, .missed, .missed, .met])
        #expect(run.table().contains("0.95× ZeroMQ (≥ 1.00×) missed"))
    }

    @Test("W2 takes each system's best rep: its p50, and the p99 of that same rep")
    func roundTripsTakeTheBestRep() throws {
        let run = try Self.recorded()
        #expect(run.figures[.ours]?[.w2p50]?.value == 230.0)
        #expect(run.figures[.ours]?[.w2p99]?.value == 770.0)
        #expect(run.figures[.cycloneDDS]?[.w2p50]?.value == 118.3)

        // The rep with the lowest p50 is not the one with the lowest p99: the floor takes the former's.
        let run2 = try PeersComparison(json: Data(#"""
            {"mesh client: x": {"W2": [{"p50_us": 90, "p99_us": 400}, {"p50_us": 80, "p99_us": 500}, {"p50_us": 100, "p99_us": 300}]},
             "SwiftNIO 2.101 framed TCP (Swift)": {"W2": [{"p50_us": 40, "p99_us": 200}]}}
            """#.utf8))
        #expect(run2.figures[.ours]?[.w2p50]?.value == 80)
        #expect(run2.figures[.ours]?[.w2p99]?.value == 500)
        #expect(run2.figures[.ours]?[.w2p99]?.minimum == 300)
        let p99 = try #require(run2.floors.first { $0.metric == .w2p99 })
        #expect(p99.ratio == 2.5)
        #expect(p99.outcome == .missed)
    }

    @Test("the floors of issue #21, as ratios of figures from the same run")
    func judgesTheFloors() throws {
        let run = try Self.recorded()
        func floor(_ metric: PeersComparison.Metric, _ peer: PeersComparison.System) throws -> PeersComparison.Floor {
            try #require(run.floors.first { $0.metric == metric && $0.peer == peer })
        }
        #expect(run.floors.count == 6)
        let expected: [(PeersComparison.Metric, PeersComparison.System, Double, PeersComparison.Floor.Outcome)] = [
            (.w2p50, .cycloneDDS, 230.0 / 118.3, .missed),
            (.w2p50, .swiftNIO, 230.0 / 157.2, .missed),
            (.w2p99, .swiftNIO, 770.0 / 531.8, .met),
            (.w1, .zeroMQ, 1_006_567.0 / 2_710_799, .missed),
            (.w4, .zeroMQ, 1_321_270.0 / 2_372_637, .missed),
            (.w3, .rawTCP, 1_444.0 / 3_208, .missed),
        ]
        for (metric, peer, ratio, outcome) in expected {
            let judged = try floor(metric, peer)
            #expect(abs((judged.ratio ?? 0) - ratio) < 1e-9, "\(metric) / \(peer)")
            #expect(judged.outcome == outcome, "\(metric) / \(peer)")
        }
        let table = run.table()
        #expect(table.contains("floors met: 1 of 6"))
        #expect(table.contains("1.94× Cyclone DDS (≤ 1.00×) missed"))
        #expect(table.contains("1.45× SwiftNIO (≤ 1.50×) met"))
        #expect(table.contains("0.45× raw TCP (≥ 0.80×) missed"))
        #expect(table.contains("1.01M (905k–1.08M)"), "our median with its range:\n\(table)")
        for system in run.systems { #expect(table.contains(system.label)) }
    }

    @Test("a floor is met at its bound exactly, and missed just past it")
    func boundsAreInclusive() throws {
        func w3(_ ours: Double) throws -> PeersComparison.Floor.Outcome? {
            let run = try PeersComparison(json: Data(#"""
                {"mesh client: x": {"W3": [{"MBps": \#(ours), "lost": 0}]}, "raw TCP, write/msg (C)": {"W3": [{"MBps": 1000, "lost": 0}]}}
                """#.utf8))
            return run.floors.first { $0.metric == .w3 }?.outcome
        }
        #expect(try w3(800) == .met)
        #expect(try w3(799) == .missed)
    }

    @Test("lost messages miss the floor whatever the ratio; failed reps are counted; absent peers are not judged")
    func lossErrorsAndAbsentPeers() throws {
        let run = try PeersComparison(json: Data(#"""
            {"mesh client: mesh-bench": {"W1": [{"rate": 3000000, "lost": 0}, {"rate": 2900000, "lost": 12}, {"error": "no RESULT from sub (timeout?)"}]},
             "ZeroMQ 4.3 PUB/SUB, HWM=0 (C)": {"W1": [{"rate": 1000000, "lost": 0}]},
             "Some future peer (C)": {"W1": [{"rate": 5, "lost": 0}]}}
            """#.utf8))
        let w1 = try #require(run.floors.first { $0.metric == .w1 })
        #expect(w1.outcome == .missed)
        #expect(w1.lost == 12)
        #expect(run.figures[.ours]?[.w1]?.errors == 1)
        #expect(run.figures[.ours]?[.w1]?.reps == 2)
        #expect(run.ourErrors == ["W1: no RESULT from sub (timeout?)"])
        #expect(!run.oursRanCleanly)
        #expect(run.unknownRows == ["Some future peer (C)"])
        let others = run.floors.filter { $0.metric != .w1 }
        #expect(others.count == 5)
        #expect(others.allSatisfy { $0.outcome == .unmeasured && $0.ratio == nil })
        let table = run.table()
        #expect(table.contains("floors met: 0 of 1 (5 not measured"))
        #expect(table.contains("2.95× ZeroMQ (≥ 1.00×) missed, 12 lost"), "\(table)")
        #expect(run.floors.first { $0.metric == .w2p50 && $0.peer == .swiftNIO }?.text == "SwiftNIO (≤ 1.30×) not measured")
        #expect(table.contains("[1 failed]"))
        #expect(table.contains("rows not in this table: Some future peer (C)"))
    }

    @Test("a workload whose every rep failed shows so, and its floor is not judged")
    func everyRepFailed() throws {
        let run = try PeersComparison(json: Data(#"""
            {"mesh client: x": {"W4": [{"error": "sub not ready"}, {"error": "sub not ready"}]},
             "ZeroMQ 4.3 PUB/SUB, HWM=0 (C)": {"W4": [{"rate": 1000000, "lost": 0}]}}
            """#.utf8))
        #expect(run.floors.first { $0.metric == .w4 }?.outcome == .unmeasured)
        #expect(run.table().contains("every rep failed (2)"))
        #expect(run.ourErrors == ["W4: sub not ready"])
    }

    @Test("hostile content: figures that are not numbers are left out; errors and names print on one line, escaped")
    func hostileContent() throws {
        let run = try PeersComparison(json: Data(#"""
            {"mesh client: x": {"W1": [{"rate": "fast", "lost": "none"}, {"rate": 5, "lost": 0}, {"error": "boom\n| forged row\u001b[2J"}]},
             "evil\u001b]0;title\u0007 row": {"W1": []}}
            """#.utf8))
        #expect(run.figures[.ours]?[.w1] == PeersComparison.Figure(value: 5, minimum: 5, maximum: 5, reps: 1, errors: 1))
        let table = run.table()
        #expect(!table.contains("\u{1B}") && !table.contains("\u{7}"))
        #expect(!table.contains("\n| forged row"))
        #expect(table.contains(#"boom\u{A}| forged row\u{1B}[2J"#))
        #expect(table.contains(#"evil\u{1B}]0;title\u{7} row"#))
    }

    @Test("a file that is not peers.py's result is refused with the reason", arguments: [
        "not json", "[1, 2]", #"{"mesh client: x": [1]}"#, #"{"mesh client: x": {"W1": {"rate": 1}}}"#,
    ])
    func refusesOtherFiles(_ text: String) {
        #expect(throws: PeersComparison.Unreadable.self) { try PeersComparison(json: Data(text.utf8)) }
    }

    @Test("options: the peers' directory from --peers-dir, else PEERS_DIR, else the sibling checkout")
    func options() throws {
        #expect(try PeersCommand.Options([], environment: [:]).peersDirectory == "../shared/peers")
        #expect(try PeersCommand.Options([], environment: ["PEERS_DIR": "/p"]).peersDirectory == "/p")
        let options = try PeersCommand.Options(
            ["--peers-dir", "/q", "--reps", "3", "--only", "mesh,NIO", "--json"], environment: ["PEERS_DIR": "/p"])
        #expect(options.peersDirectory == "/q")
        #expect(options.passThrough == ["--reps", "3", "--only", "mesh,NIO"])
        #expect(options.json)
        for bad in [["--reps", "0"], ["--reps"], ["--peers-dir", "--json"], ["--frobnicate"]] {
            #expect(throws: BenchFailure.self, "\(bad)") { try PeersCommand.Options(bad, environment: [:]) }
        }
        #expect(PeersCommand.shellQuoted("/a/b/mesh-bench") == "/a/b/mesh-bench")
        #expect(PeersCommand.shellQuoted("/my dir/it's") == #"'/my dir/it'"'"'s'"#)
    }
}

/// The command as a user runs it: no peers needed (the tests never require them).
@Suite("mesh-bench peers, run as a process", .serialized)
struct PeersCommandProcessTests {
    @Test("without the peers: one line naming the directory and what to do, and a non-zero exit")
    func peersAbsent() async throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-peers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let bench = try ChildProcess("mesh-bench", ["peers", "--peers-dir", empty.path, "--reps", "1"])
        defer { bench.terminate() }
        let status = try await bench.waitForExit(seconds: 60)
        #expect(status == 1)
        let lines = bench.standardError.split(separator: "\n")
        #expect(lines.count == 1, "\(bench.standardError)")
        #expect(lines.first?.hasPrefix("mesh-bench peers: no peers.py in \(empty.path)") == true)
        #expect(lines.first?.contains("--peers-dir") == true)
        #expect(bench.standardOutput.isEmpty)
    }

    @Test("--from prints the table of a saved run, and --json the same as one object")
    func fromSavedRun() async throws {
        let table = try ChildProcess("mesh-bench", ["peers", "--from", PeersComparisonTests.fixture.path])
        defer { table.terminate() }
        #expect(try await table.waitForExit(seconds: 60) == 0, "\(table.output)")
        #expect(table.standardOutput.contains("floors met: 1 of 6"))

        let json = try ChildProcess("mesh-bench", ["peers", "--from", PeersComparisonTests.fixture.path, "--json"])
        defer { json.terminate() }
        #expect(try await json.waitForExit(seconds: 60) == 0, "\(json.output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let floors = try #require(object["floors"] as? [[String: Any]])
        #expect(floors.map { $0["outcome"] as? String } == ["missed", "missed", "met", "missed", "missed", "missed"])

        let broken = try ChildProcess("mesh-bench", ["peers", "--from", "/nonexistent/run.json"])
        defer { broken.terminate() }
        #expect(try await broken.waitForExit(seconds: 60) == 1)
        #expect(broken.standardError.split(separator: "\n").count == 1, "\(broken.standardError)")
    }
}
