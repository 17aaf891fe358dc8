import Foundation
import Mesh
import MeshTooling

/// `mesh node list` and `mesh node kill`.
enum NodeCommands {
    static func list(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topology = try await context.withInspector { try await $0.topology(timeout: context.timeout) }
        let now = Date().timeIntervalSince1970
        let entries = sorted(Array(topology.nodes.values)).map { MeshReport.Node($0, now: now) }
        if arguments.has("--json") {
            print(Format.json(entries))
            return
        }
        let rows = entries.map { entry in
            [
                entry.name, entry.id, entry.address, entry.pid.map(String.init) ?? "-",
                entry.uptime.map(Format.duration) ?? "-", entry.topics.isEmpty ? "-" : entry.topics.joined(separator: ","),
            ]
        }
        print(Format.table(["NAME", "ID", "ADDRESS", "PID", "UPTIME", "TOPICS"], rows))
    }

    /// One node in `mesh node kill --json`.
    struct KilledNode: Encodable {
        var name: String
        var id: String
    }

    struct KillReport: Encodable {
        var stopped: [KilledNode]
        var running: [KilledNode]
    }

    static func kill(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let target = arguments.has("--all") ? "*" : arguments.positionals[0]
        let (topology, result) = try await context.withInspector(admin: true) { inspector in
            let topology = try await inspector.topology(timeout: context.timeout)
            do {
                // The coordinator waits up to 5 s for the nodes to leave; allow for that and more.
                return (topology, try await inspector.kill(target, timeout: context.timeout * 2 + .seconds(2)))
            } catch MeshError.invalidName(_, let reason) {
                throw CommandLineError.failed(target == "*" ? "there are no nodes to stop" : reason)
            }
        }
        // The reply names ids only; the topology read just before names them.
        let name = { (id: String) in topology.nodes[id]?.name ?? "?" }
        let report = KillReport(
            stopped: result.stopped.map { KilledNode(name: name($0), id: $0) },
            running: result.remaining.map { KilledNode(name: name($0), id: $0) })
        if arguments.has("--json") {
            print(Format.json(report))
        } else {
            let rows =
                report.stopped.map { ["stopped", $0.name, $0.id] } + report.running.map { ["running", $0.name, $0.id] }
            if !rows.isEmpty { print(Format.columns(rows)) }
        }
        if !report.running.isEmpty {
            throw CommandLineError.failed(
                "\(report.running.count) of \(report.stopped.count + report.running.count) node(s) did not stop in time")
        }
    }

    /// By name, then id.
    static func sorted(_ nodes: [NodeRecord]) -> [NodeRecord] {
        nodes.sorted { ($0.name, $0.id) < ($1.name, $1.id) }
    }
}
