import Foundation
import Mesh
import MeshTooling

/// `mesh status`: the coordinator's view, with each node's counters from its last heartbeat.
enum StatusCommand {
    static func run(_ arguments: ParsedArguments, _ configured: MeshContext) async throws {
        let context = try await configured.located()
        let list = MeshDefaults.coordinatorList(context.coordinator)
        guard list.count > 1 else {
            let status = try await context.withInspector(admin: true) { try await $0.status(timeout: context.timeout) }
            return show(MeshReport.Status(coordinator: context.coordinator, status: status), json: arguments.has("--json"))
        }
        try await runForList(list, arguments, context)
    }

    /// Several coordinators: asks each at once, shows each with whether it agrees with the
    /// first that answered, then the nodes as that one sees them.
    private static func runForList(_ list: [String], _ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let answers = await withTaskGroup(of: (Int, Result<CoordinatorStatus, any Error>).self) { group in
            for (index, address) in list.enumerated() {
                var copy = context
                copy.coordinator = address
                let one = copy
                group.addTask {
                    do {
                        return (index, .success(try await one.withInspector(admin: true) { try await $0.status(timeout: one.timeout) }))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var answers: [(Int, Result<CoordinatorStatus, any Error>)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }.map { (address: list[$0.0], status: $0.1) }
        }
        let coordinators = MeshReport.Coordinators(answers)
        guard let (address, first) = answers.lazy.compactMap({ answer in (try? answer.status.get()).map { (answer.address, $0) } }).first
        else {
            throw MeshError.coordinatorUnreachable(
                address: context.coordinator,
                reason: "none of the \(list.count) coordinators answers ("
                    + coordinators.coordinators.map { "\($0.address): \($0.error ?? "?")" }.joined(separator: "; ") + ")")
        }
        let report = MeshReport.Status(coordinator: address, status: first)
        if arguments.has("--json") {
            struct Both: Encodable {
                var coordinators: MeshReport.Coordinators
                var status: MeshReport.Status
            }
            print(Format.json(Both(coordinators: coordinators, status: report)))
            return
        }
        let rows = coordinators.coordinators.map { entry -> [String] in
            guard entry.up else { return [entry.address, "DEAD", "-", "-", "-", entry.error ?? ""] }
            var differences: [String] = []
            if !entry.missing.isEmpty { differences.append("lacks \(entry.missing.count): \(names(entry.missing))") }
            if !entry.extra.isEmpty { differences.append("also holds \(entry.extra.count): \(names(entry.extra))") }
            if !entry.otherVersion.isEmpty { differences.append("older/newer \(entry.otherVersion.count): \(names(entry.otherVersion))") }
            return [
                entry.address, "up", String(entry.nodeCount ?? 0), String(entry.version ?? 0),
                entry.agrees == true ? "yes" : "NO", differences.joined(separator: "; "),
            ]
        }
        print(Format.table(["COORDINATOR", "STATE", "NODES", "VERSION", "AGREES", "NOTE"], rows, rightAligned: [2, 3]))
        let live = coordinators.coordinators.count - coordinators.dead.count
        if !coordinators.dead.isEmpty { print("dead: \(coordinators.dead.joined(separator: ", "))") }
        print(
            live < 2
                ? "agreement: only one coordinator answers"
                : coordinators.agree
                    ? "agreement: the \(live) live coordinators hold the same \(first.nodes.count) record(s)"
                    : "agreement: NO, the live coordinators hold different records (see NOTE; a moment later they may agree)")
        print("")
        show(report, json: false)
    }

    /// At most five ids, then how many more.
    private static func names(_ ids: [String]) -> String {
        ids.prefix(5).joined(separator: ",") + (ids.count > 5 ? ",+\(ids.count - 5)" : "")
    }

    private static func show(_ report: MeshReport.Status, json: Bool) {
        if json {
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
