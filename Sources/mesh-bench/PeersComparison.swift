import Foundation
import Mesh

/// One run of `../shared/peers/peers.py` read back from its `--out` JSON, put side by side:
/// each workload, our figure with its spread, each peer's figure from the same run, and the
/// ratios issue #21's floors name, each marked met or missed.
///
/// Pure: built from the file's bytes, no clock, no processes (``PeersCommand`` runs peers.py).
/// The file is an object of systems, each an object of workloads (`W1` ... `W4`), each an array
/// of reps; a rep holds the figures (`rate`, `MBps`, `p50_us`, `p99_us`, `lost`, ...) or an
/// `error`. Figures are medians over the reps, except W2: the floors take each system's best rep
/// (the one with the lowest p50), and its p99 comes from that same rep.
struct PeersComparison: Sendable {
    /// The systems peers.py knows, in the order of its table; matched by a piece of their row name.
    enum System: String, CaseIterable, Sendable {
        case ours, rawTCP, rawBatched, zeroMQ, swiftNIO, nats, cycloneDDS

        var label: String {
            switch self {
            case .ours: return "swift-mesh"
            case .rawTCP: return "raw TCP"
            case .rawBatched: return "raw TCP 64 KiB"
            case .zeroMQ: return "ZeroMQ"
            case .swiftNIO: return "SwiftNIO"
            case .nats: return "NATS"
            case .cycloneDDS: return "Cyclone DDS"
            }
        }

        /// The system a row of peers.py's JSON belongs to, or `nil` for one this table does not know.
        init?(rowName: String) {
            let name = rowName.lowercased()
            if name.hasPrefix("mesh client") {
                self = .ours
            } else if name.hasPrefix("raw tcp") {
                self = name.contains("batched") ? .rawBatched : .rawTCP
            } else if name.hasPrefix("zeromq") {
                self = .zeroMQ
            } else if name.hasPrefix("swiftnio") {
                self = .swiftNIO
            } else if name.hasPrefix("nats") {
                self = .nats
            } else if name.hasPrefix("cyclone dds") {
                self = .cycloneDDS
            } else {
                return nil
            }
        }
    }

    /// A row of the table: one figure of one workload.
    enum Metric: String, CaseIterable, Sendable {
        case w1, w2p50, w2p99, w3, w4

        var workload: String {
            switch self {
            case .w1: return "W1"
            case .w2p50, .w2p99: return "W2"
            case .w3: return "W3"
            case .w4: return "W4"
            }
        }

        var title: String {
            switch self {
            case .w1: return "W1 1→1 64 B, msgs/s"
            case .w2p50: return "W2 round trip p50 µs (best rep)"
            case .w2p99: return "W2 round trip p99 µs (that rep)"
            case .w3: return "W3 1→1 1 MiB, MB/s"
            case .w4: return "W4 1→8 64 B, deliveries/s"
            }
        }

        /// The key of the figure in a rep.
        var key: String {
            switch self {
            case .w1, .w4: return "rate"
            case .w2p50: return "p50_us"
            case .w2p99: return "p99_us"
            case .w3: return "MBps"
            }
        }
    }

    /// One system's figure for one metric.
    struct Figure: Sendable, Equatable {
        /// The median over the reps; for W2, the best rep's.
        var value: Double
        /// The range over the reps that did not fail.
        var minimum: Double
        var maximum: Double
        var reps: Int
        /// Reps that failed (peers.py recorded an `error`).
        var errors: Int
    }

    /// A floor of the issue: ours over a peer's figure, at most or at least `limit`.
    struct Floor: Sendable {
        enum Outcome: String, Sendable {
            case met, missed
            /// Our figure or the peer's is not in the run.
            case unmeasured = "not measured"
        }

        var metric: Metric
        var peer: System
        var limit: Double
        /// `true`: ours / peer must be at most `limit` (latencies); else at least.
        var atMost: Bool
        var ratio: Double?
        var outcome: Outcome
        /// Why it missed besides the ratio: our messages lost in the workload.
        var lost: Int

        var text: String {
            let bound = "\(atMost ? "≤" : "≥") \(PeersComparison.ratioText(limit))"
            guard let ratio else { return "\(peer.label) (\(bound)) \(outcome.rawValue)" }
            let lostText = lost > 0 ? ", \(lost) lost" : ""
            return "\(PeersComparison.ratioText(ratio)) \(peer.label) (\(bound)) \(outcome.rawValue)\(lostText)"
        }
    }

    /// The floors of issue #21 that one peers run can judge.
    static let floorDefinitions: [(metric: Metric, peer: System, limit: Double, atMost: Bool)] = [
        (.w2p50, .cycloneDDS, 1.0, true),
        (.w2p50, .swiftNIO, 1.3, true),
        (.w2p99, .swiftNIO, 1.5, true),
        (.w1, .zeroMQ, 1.0, false),
        (.w4, .zeroMQ, 1.0, false),
        (.w3, .rawTCP, 0.8, false),
    ]

    /// The systems present in the run, in table order.
    var systems: [System]
    /// Figures by system and metric; a missing entry is a workload the system did not run.
    var figures: [System: [Metric: Figure]]
    /// Messages lost per system and workload, summed over the reps.
    var lost: [System: [String: Int]]
    var floors: [Floor]
    /// The first error of each failed workload of ours, for the report.
    var ourErrors: [String]
    /// Rows of the file this table does not know, by name (left out of the table, not hidden).
    var unknownRows: [String]

    /// Why a file could not be read as a peers run.
    struct Unreadable: Error, CustomStringConvertible {
        var reason: String
        var description: String { "not a peers.py result file: \(reason)" }
    }

    /// Reads peers.py's `--out` JSON.
    ///
    /// - Throws: ``Unreadable`` when the bytes are not that JSON's shape.
    init(json data: Data) throws {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw Unreadable(reason: "not JSON (\(error.localizedDescription))")
        }
        guard let rows = object as? [String: Any] else { throw Unreadable(reason: "the top level is not an object of systems") }
        var runs: [System: [String: [[String: Any]]]] = [:]
        var unknown: [String] = []
        for (name, value) in rows {
            guard let workloads = value as? [String: Any] else { throw Unreadable(reason: "\"\(name)\" is not an object of workloads") }
            guard let system = System(rowName: name) else {
                unknown.append(name)
                continue
            }
            var reps: [String: [[String: Any]]] = [:]
            for (workload, list) in workloads {
                guard let list = list as? [[String: Any]] else {
                    throw Unreadable(reason: "\"\(name)\" \(workload) is not an array of reps")
                }
                reps[workload] = list
            }
            runs[system] = reps
        }
        self.init(runs: runs, unknownRows: unknown.sorted())
    }

    private init(runs: [System: [String: [[String: Any]]]], unknownRows: [String]) {
        self.unknownRows = unknownRows
        systems = System.allCases.filter { runs[$0] != nil }
        figures = [:]
        lost = [:]
        ourErrors = []
        for system in systems {
            let workloads = runs[system] ?? [:]
            var byMetric: [Metric: Figure] = [:]
            for metric in Metric.allCases {
                guard let reps = workloads[metric.workload], !reps.isEmpty else { continue }
                if let figure = PeersComparison.figure(metric, reps) { byMetric[metric] = figure }
            }
            figures[system] = byMetric
            var lostHere: [String: Int] = [:]
            for (workload, reps) in workloads {
                let sum = reps.compactMap { PeersComparison.number($0["lost"]) }.reduce(0, +)
                if sum > 0 { lostHere[workload] = Int(sum) }
                if system == .ours, let error = reps.lazy.compactMap({ $0["error"] as? String }).first {
                    ourErrors.append("\(workload): \(error)")
                }
            }
            lost[system] = lostHere
        }
        ourErrors.sort()
        floors = []
        for definition in PeersComparison.floorDefinitions {
            let ours = figures[.ours]?[definition.metric]
            let peer = figures[definition.peer]?[definition.metric]
            let lostHere = lost[.ours]?[definition.metric.workload] ?? 0
            var floor = Floor(
                metric: definition.metric, peer: definition.peer, limit: definition.limit, atMost: definition.atMost,
                ratio: nil, outcome: .unmeasured, lost: lostHere)
            if let ours, let peer, ours.reps > 0, peer.reps > 0, peer.value > 0 {
                let ratio = ours.value / peer.value
                floor.ratio = ratio
                let within = definition.atMost ? ratio <= definition.limit : ratio >= definition.limit
                floor.outcome = within && lostHere == 0 ? .met : .missed
            }
            floors.append(floor)
        }
    }

    /// A number from JSON (peers.py writes counts as floats).
    private static func number(_ value: Any?) -> Double? {
        if let value = value as? Double { return value }
        if let value = value as? Int { return Double(value) }
        if let value = value as? NSNumber { return value.doubleValue }
        return nil
    }

    /// One system's figure over its reps: the median, or for W2 the best rep's (lowest p50).
    private static func figure(_ metric: Metric, _ reps: [[String: Any]]) -> Figure? {
        let good = reps.filter { $0["error"] == nil }
        let errors = reps.count - good.count
        let values = good.compactMap { number($0[metric.key]) }
        guard let summary = Summary(values) else {
            return errors > 0 ? Figure(value: .nan, minimum: .nan, maximum: .nan, reps: 0, errors: errors) : nil
        }
        var value = summary.median
        if metric.workload == "W2" {
            let best = good.min { (number($0["p50_us"]) ?? .infinity) < (number($1["p50_us"]) ?? .infinity) }
            value = best.flatMap { number($0[metric.key]) } ?? summary.median
        }
        return Figure(value: value, minimum: summary.minimum, maximum: summary.maximum, reps: values.count, errors: errors)
    }

    static func ratioText(_ ratio: Double) -> String { String(format: "%.2f×", ratio) }

    /// Whether our client ran every workload without a failed rep or a lost message.
    var oursRanCleanly: Bool {
        systems.contains(.ours) && ourErrors.isEmpty && (lost[.ours] ?? [:]).isEmpty
    }

    // MARK: Rendering

    /// The one table: a row per figure, a column per system, then the floors that row names.
    func table() -> String {
        var header = ["workload"] + systems.map(\.label) + ["floors (ours / peer, from this run)"]
        if systems.first == .ours { header[1] = "swift-mesh (min–max over reps)" }
        var cells = [header]
        for metric in Metric.allCases where systems.contains(where: { figures[$0]?[metric] != nil }) {
            var row = [metric.title]
            for system in systems {
                row.append(cell(figures[system]?[metric], showRange: system == .ours))
            }
            let named = floors.filter { $0.metric == metric }.map(\.text)
            row.append(named.isEmpty ? "—" : named.joined(separator: "; "))
            cells.append(row)
        }
        var lostRow = ["lost (all workloads and reps)"]
        for system in systems {
            lostRow.append(String((lost[system] ?? [:]).values.reduce(0, +)))
        }
        lostRow.append("")
        cells.append(lostRow)
        var text = Format.table(cells)
        let met = floors.filter { $0.outcome == .met }.count
        let judged = floors.filter { $0.outcome != .unmeasured }.count
        text += "\n\nfloors met: \(met) of \(judged)"
        if judged < floors.count { text += " (\(floors.count - judged) not measured: a system or workload missing from the run)" }
        text += "\n  figures: medians over the reps; W2: each system's best rep (lowest p50), and the p99 of that rep"
        text += "\n  ratios: ours / the peer's figure in the same run; a floor with our messages lost is missed"
        // peers.py's errors carry the tail of a program's stderr: newlines and escapes are shown, not obeyed.
        for error in ourErrors { text += "\n  our client failed a rep of \(MeshText.escaped(error))" }
        if !unknownRows.isEmpty {
            text += "\n  rows not in this table: " + unknownRows.map(MeshText.escaped).joined(separator: ", ")
        }
        return text
    }

    private func cell(_ figure: Figure?, showRange: Bool) -> String {
        guard let figure else { return "—" }
        let errors = figure.errors > 0 ? " [\(figure.errors) failed]" : ""
        guard figure.reps > 0 else { return "every rep failed (\(figure.errors))" }
        var text = Format.number(figure.value)
        if showRange, figure.reps > 1 {
            text += " (\(Format.number(figure.minimum))–\(Format.number(figure.maximum)))"
        }
        return text + errors
    }

    var json: [String: Any] {
        var systemsObject: [String: Any] = [:]
        for system in systems {
            var metrics: [String: Any] = [:]
            for (metric, figure) in figures[system] ?? [:] {
                func number(_ value: Double) -> Any { value.isNaN ? NSNull() : value }
                metrics[metric.rawValue] = [
                    "value": number(figure.value), "min": number(figure.minimum), "max": number(figure.maximum),
                    "reps": figure.reps, "errors": figure.errors,
                ]
            }
            systemsObject[system.rawValue] = ["label": system.label, "figures": metrics, "lost": lost[system] ?? [:]]
        }
        let floorObjects: [[String: Any]] = floors.map { floor in
            var object: [String: Any] = [
                "metric": floor.metric.rawValue, "peer": floor.peer.rawValue, "limit": floor.limit,
                "bound": floor.atMost ? "at most" : "at least", "outcome": floor.outcome.rawValue, "lost": floor.lost,
            ]
            if let ratio = floor.ratio { object["ratio"] = ratio }
            return object
        }
        return ["systems": systemsObject, "floors": floorObjects, "ourErrors": ourErrors, "unknownRows": unknownRows]
    }
}
