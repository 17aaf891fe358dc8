import Foundation
import Mesh

/// `mesh discover`: the coordinators that announce themselves on the LAN, each sender once, with
/// whether a node of this mesh and key would use it.
enum DiscoverCommand {
    struct Row: Encodable {
        var from: String
        var address: String
        var mesh: String
        var trusted: Bool
        var reason: String?
    }

    static func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let seconds = try arguments.seconds("--seconds") ?? 3
        let mesh = arguments.values["--mesh-name"] ?? MeshDefaults.meshNameFromEnvironment
        try context.checkKeys()
        let key = try MeshKey.stretched(context.authkey)
        let heard: [BeaconListener.Heard]
        do {
            heard = try await BeaconListener.listen(
                for: .milliseconds(Int(min(seconds, 3600) * 1000)), mesh: mesh, key: key)
        } catch {
            throw CommandLineError.failed("cannot listen for beacons on UDP port \(Beacon.port): \(error)")
        }
        var rows: [String: Row] = [:]
        var order: [String] = []
        for item in heard {
            let row: Row
            switch item.verdict {
            case .trusted(let beacon):
                row = Row(from: item.sender, address: beacon.address, mesh: beacon.mesh, trusted: true)
            case .ignored(let beacon, let reason):
                row = Row(
                    from: item.sender, address: beacon?.address ?? "", mesh: beacon?.mesh ?? "", trusted: false, reason: reason)
            }
            // One row per sender and address; a trusted beacon wins over an ignored one.
            let id = "\(row.from) \(row.address)"
            if rows[id] == nil { order.append(id) }
            if rows[id]?.trusted != true { rows[id] = row }
        }
        let listed = order.compactMap { rows[$0] }
        if arguments.has("--json") {
            print(Format.json(listed))
        } else if !listed.isEmpty {
            print(
                Format.table(
                    ["ADDRESS", "MESH", "FROM", "USE"],
                    listed.map {
                        [
                            MeshText.escaped($0.address), MeshText.escaped($0.mesh), $0.from,
                            $0.trusted ? "yes" : "no: " + MeshText.escaped($0.reason ?? ""),
                        ]
                    }))
        }
        guard listed.contains(where: \.trusted) else {
            throw CommandLineError.failed(
                "no coordinator of mesh \"\(MeshText.escaped(mesh))\" was heard within \(Format.fixed(seconds, decimals: 1)) s"
                    + (listed.isEmpty ? " (no beacon at all: is one started with --announce on this LAN?)" : ""))
        }
    }
}
