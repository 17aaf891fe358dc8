import Foundation

/// One line of the report: our figure over the runs, the raw-socket baseline's, and the floor.
struct BenchRow: Sendable {
    /// The bar a row must clear, from the performance issue.
    enum Floor: Sendable {
        case none
        /// Ours at least this much.
        case atLeast(Double)
        /// Ours at most this much (latencies).
        case atMost(Double)
        /// Every run of ours strictly below this (a time; issue #21's W6 floor is "every run").
        case below(Double)
        /// Ours at least this fraction of the baseline.
        case ratioAtLeast(Double)
        /// Ours at most this multiple of the baseline (W7 against W2's round trip).
        case ratioAtMost(Double)
        /// Both of the above.
        case atLeastAndRatio(Double, Double)
        /// Every worker got the same number of messages, give or take one.
        case even
    }

    /// `w1` to `w6`: what `mesh-bench w1` selects.
    var workload: String
    var title: String
    var unit: String
    var floor: Floor
    /// Our figure, one per run.
    var ours: [Double] = []
    /// The baseline's figure, one per run; empty when the workload has none.
    var baseline: [Double] = []
    /// Messages sent but never delivered, worst over the runs; `nil` when it does not apply.
    var lost: Int?
    /// Per-worker counts of the last run (W5).
    var counts: [Int]?
    /// Whether every run shared the messages evenly (W5).
    var even: Bool?
    /// Extra figures for the JSON and the notes column (medians over the runs).
    var details: [(key: String, values: [Double])] = []
    /// Why the row failed, when it did.
    var failure: String?

    var oursSummary: Summary? { Summary(ours) }
    var baselineSummary: Summary? { Summary(baseline) }

    /// Ours over the baseline, by medians.
    var ratio: Double? {
        guard let ours = oursSummary, let baseline = baselineSummary, baseline.median > 0 else { return nil }
        return ours.median / baseline.median
    }

    /// Whether the row met its floor (a failed row, or one that lost messages, never does).
    var met: Bool {
        guard failure == nil, let ours = oursSummary else { return false }
        if let lost, lost != 0 { return false }
        switch floor {
        case .none: return true
        case .atLeast(let minimum): return ours.median >= minimum
        case .atMost(let maximum): return ours.median <= maximum
        case .below(let limit): return ours.maximum < limit
        case .ratioAtLeast(let fraction): return (ratio ?? 0) >= fraction
        case .ratioAtMost(let multiple): return (ratio ?? .infinity) <= multiple
        case .atLeastAndRatio(let minimum, let fraction): return ours.median >= minimum && (ratio ?? 0) >= fraction
        case .even: return even == true
        }
    }

    var floorText: String {
        switch floor {
        case .none: return "—"
        case .atLeast(let minimum): return "≥ \(Format.number(minimum))"
        case .atMost(let maximum): return "≤ \(Format.number(maximum))"
        case .below(let limit): return "every run < \(Format.number(limit))"
        case .ratioAtLeast(let fraction): return "≥ \(Format.number(fraction))× base"
        case .ratioAtMost(let multiple): return "≤ \(Format.number(multiple))× base"
        case .atLeastAndRatio(let minimum, let fraction):
            return "≥ \(Format.number(minimum)), ≥ \(Format.number(fraction))× base"
        case .even: return "even ±1"
        }
    }

    var status: String {
        if failure != nil { return "FAILED" }
        return met ? "met" : "missed"
    }

    mutating func addDetail(_ key: String, _ value: Double) {
        if let index = details.firstIndex(where: { $0.key == key }) {
            details[index].values.append(value)
        } else {
            details.append((key, [value]))
        }
    }

    /// The notes column: lost messages, worker counts and the extra figures.
    var notes: String {
        var parts: [String] = []
        if let lost { parts.append("lost \(lost)") }
        if let counts { parts.append("per worker " + counts.map(String.init).joined(separator: "/")) }
        for (key, values) in details {
            if let summary = Summary(values) { parts.append("\(key) \(Format.number(summary.median))") }
        }
        if let failure { parts.append(failure) }
        return parts.joined(separator: "; ")
    }

    var json: [String: Any] {
        var object: [String: Any] = [
            "workload": workload, "name": title, "unit": unit, "floor": floorText, "met": met, "status": status,
        ]
        if let ours = oursSummary { object["ours"] = ours.json }
        if !ours.isEmpty { object["oursRuns"] = ours }
        if let baseline = baselineSummary { object["baseline"] = baseline.json }
        if let ratio { object["ratio"] = ratio }
        if let lost { object["lost"] = lost }
        if let counts { object["counts"] = counts }
        if let even { object["even"] = even }
        if let failure { object["failure"] = failure }
        for (key, values) in details {
            if let summary = Summary(values) { object[key] = summary.json }
        }
        return object
    }
}

/// The median and range of one figure over the runs.
struct Summary: Sendable {
    var median: Double
    var minimum: Double
    var maximum: Double
    var runs: Int

    init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        minimum = sorted.first!
        maximum = sorted.last!
        runs = sorted.count
    }

    /// `1.23M`, or `1.23M (1.20M–1.30M)` over several runs.
    var text: String {
        let median = Format.number(self.median)
        guard runs > 1 else { return median }
        return "\(median) (\(Format.number(minimum))–\(Format.number(maximum)))"
    }

    var json: [String: Any] { ["median": median, "min": minimum, "max": maximum, "runs": runs] }
}

/// Number formatting for the table.
enum Format {
    /// Three significant digits, with k/M for thousands and millions.
    static func number(_ value: Double) -> String {
        let magnitude = abs(value)
        if magnitude >= 1e6 { return String(format: "%.3gM", value / 1e6) }
        if magnitude >= 1e4 { return String(format: "%.3gk", value / 1e3) }
        if magnitude >= 100 { return String(format: "%.0f", value) }
        if magnitude >= 10 { return String(format: "%.1f", value) }
        if magnitude == 0 { return "0" }
        return String(format: "%.3g", value)
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ rows: [[String]]) -> String {
        let widths = (0..<(rows.first?.count ?? 0)).map { column in
            rows.map { $0[column].count }.max() ?? 0
        }
        return rows.map { row in
            zip(row, widths).map { cell, width in cell.padding(toLength: width, withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }
}

/// The whole report: every row, and what the figures mean.
struct BenchReport: Sendable {
    var rows: [BenchRow]
    var settings: [String: String]

    static let definitions: [(String, String)] = [
        ("msgs/s (W1)", "messages delivered to the receiver's listener / time from its first to its last delivery"),
        ("MB/s (W3)", "payload bytes (10^6) delivered / time from the receiver's first to its last delivery"),
        ("deliveries/s (W4, W5)", "sum of every receiver's deliveries / time from the sender's first send to the last delivery at any receiver (one CLOCK_MONOTONIC across processes)"),
        ("µs (W2)", "round trip of one 64-byte message and its reply, nearest-rank percentile of the measured round trips"),
        ("µs (W7)", "one service call with a 64-byte request and reply, awaited before the next, nearest-rank percentile; its baseline is the mesh's own W2 ping-pong measured in the same run (W2's mesh figure, not raw sockets)"),
        ("calls/s (W8)", "calls answered / time from the first call to the last reply, with 64 calls in flight at all times (64 tasks calling in a loop), 64-byte requests and replies"),
        ("s (W6)", "from starting N nodes at once (one process; the nodes' default configuration, so partial topology views, unless MESH_TOPOLOGY_VIEW chooses one: the row names the view) until every node has joined, listened on its own topic, waited for a listener on node (i+1) mod N's topic and sent it one message, and all N messages were delivered; re-registrations = coordinator connections the nodes had to open again (0: none evicted, none gave up); coordinator CPU (user+system, /proc/PID/stat) over that span, and with several coordinators each other one's (coordinator 2 CPU s, ...); swarm CPU = the swarm process's CPU from its start to its result; bytes sent = the kernel's tcp_info bytes_sent summed over the coordinator's open sockets (`ss -ti`; a fresh coordinator, so it is everything sent so far), else /proc/PID/io wchar"),
        ("values/s (codec)", "BenchRecord values encoded or decoded per second by JSONCodec in one process; its baseline is Foundation's JSONEncoder or JSONDecoder with the same settings, measured alternately in the same run"),
        ("lost", "expected − delivered, after the end marker plus a grace period, or the receiver's deadline"),
        ("baseline", "the same frames over plain blocking TCP between two processes (sender writes ~64 KiB chunks; W2: blocking ping-pong with TCP_NODELAY)"),
        ("ratio", "ours / baseline, medians"),
    ]

    func table() -> String {
        var cells: [[String]] = [["workload", "ours", "baseline", "ratio", "unit", "floor", "status", "notes"]]
        for row in rows {
            cells.append([
                row.title, row.oursSummary?.text ?? "—", row.baselineSummary?.text ?? "—",
                row.ratio.map { String(format: "%.2f×", $0) } ?? "—", row.unit, row.floorText, row.status, row.notes,
            ])
        }
        var text = Format.table(cells)
        text += "\n\n" + settings.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        text += "\n" + BenchReport.definitions.map { "  \($0.0): \($0.1)" }.joined(separator: "\n")
        return text
    }

    var json: [String: Any] {
        [
            "rows": rows.map(\.json), "settings": settings,
            "definitions": Dictionary(uniqueKeysWithValues: BenchReport.definitions),
        ]
    }
}
