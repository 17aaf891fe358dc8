import Foundation
import MeshTesting
import Testing

/// Runs the `mesh-bench` executable in its tiniest configuration, so the benchmark cannot rot
/// unnoticed. It checks that every workload ran and delivered everything; speed is the
/// benchmark's business, not the test's.
@Suite("Benchmark smoke test", .serialized)
struct BenchmarkSmokeTests {
    @Test("mesh-bench --quick runs every workload with no loss and an even worker share")
    func quickRun() async throws {
        let bench = try ChildProcess("mesh-bench", ["--quick", "--runs", "1", "--json", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"])
        defer { bench.terminate() }
        // The JSON report is printed last, as one line; wait for its end before the exit, since the
        // exit can be seen before the last output is read.
        let output = try await bench.waitForOutput("}\n", seconds: 120)
        let status = try await bench.waitForExit(seconds: 10)
        #expect(status == 0, "mesh-bench exited with \(status):\n\(output)")

        // The JSON object is the one line that starts with "{"; progress lines go to stderr.
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix("{") }, "no JSON in:\n\(output)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let rows = try #require(object["rows"] as? [[String: Any]])

        for workload in ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"] {
            #expect(rows.contains { $0["workload"] as? String == workload }, "no row for \(workload)")
        }
        for row in rows {
            let name = row["name"] as? String ?? "?"
            #expect(row["failure"] == nil, "\(name) failed: \(row["failure"] ?? "")")
            let ours = (row["ours"] as? [String: Any])?["median"] as? Double ?? 0
            #expect(ours > 0, "\(name) has no positive figure")
            if let lost = row["lost"] as? Int { #expect(lost == 0, "\(name) lost \(lost) messages") }
            if row["workload"] as? String == "w5" { #expect(row["even"] as? Bool == true, "\(name): \(row["counts"] ?? "")") }
        }
    }
}
