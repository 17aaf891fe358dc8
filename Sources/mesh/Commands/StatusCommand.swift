import Foundation
import Mesh
import MeshTooling

/// `mesh status`: the coordinator's view, with each node's counters from its last heartbeat.
enum StatusCommand {
    static func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let status = try await context.withInspector(admin: true) { try await $0.status(timeout: context.timeout) }
        let report = MeshReport.Status(coordinator: context.coordinator, status: status)
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
