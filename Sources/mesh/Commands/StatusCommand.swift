import Foundation
import Mesh

/// `mesh status`: the coordinator's view, with each node's counters from its last heartbeat.
enum StatusCommand {
    /// The `--json` form.
    struct Report: Encodable {
        struct Node: Encodable {
            var name: String
            var id: String
            var address: String
            /// Seconds since the coordinator last heard from the node.
            var lastHeard: Double
            var stats: MeshStatistics
        }

        var coordinator: String
        /// Seconds since the coordinator started.
        var uptime: Double
        var version: UInt64
        var nodeCount: Int
        var nodes: [Node]
    }

    static func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let status = try await context.withInspector(admin: true) { try await $0.status(timeout: context.timeout) }
        let nodes = status.nodes.sorted { ($0.node.name, $0.node.id) < ($1.node.name, $1.node.id) }
        let report = Report(
            coordinator: context.coordinator, uptime: status.uptime, version: status.version, nodeCount: nodes.count,
            nodes: nodes.map {
                Report.Node(
                    name: $0.node.name, id: $0.node.id, address: $0.node.address.description, lastHeard: $0.lastHeard,
                    stats: $0.stats)
            })
        if arguments.has("--json") {
            print(Format.json(report))
            return
        }
        print(
            Format.columns([
                ["coordinator", report.coordinator],
                ["uptime", Format.duration(report.uptime)],
                ["version", String(report.version)],
                ["nodes", String(report.nodeCount)],
            ]))
        guard !report.nodes.isEmpty else { return }
        print("")
        let rows = report.nodes.map { node in
            [
                node.name, node.id, String(node.stats.messagesSent), Format.bytes(Double(node.stats.bytesSent)),
                String(node.stats.messagesReceived), Format.bytes(Double(node.stats.bytesReceived)),
                String(node.stats.messagesDropped), Format.fixed(node.lastHeard, decimals: 1) + "s",
            ]
        }
        print(
            Format.table(
                ["NAME", "ID", "SENT", "SENT-BYTES", "RECEIVED", "RECEIVED-BYTES", "DROPPED", "HEARD"], rows,
                rightAligned: [2, 3, 4, 5, 6, 7]))
    }
}
