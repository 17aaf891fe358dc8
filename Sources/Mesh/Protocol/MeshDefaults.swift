import Foundation
import MeshCrypto

/// Defaults shared by the coordinator, the nodes and the `mesh` tool.
public enum MeshDefaults {
    /// 6374 spells MESH on a phone keypad.
    public static let coordinatorPort: UInt16 = 6374
    /// Where nodes look for the coordinator when neither an argument nor `$MESH_COORDINATOR` says.
    public static let coordinatorAddress = "127.0.0.1:6374"
    /// This build's version, printed by `--version`.
    public static let version = "0.1.0"

    /// `$MESH_COORDINATOR`, else ``coordinatorAddress``: where the `mesh` tool looks.
    public static var coordinatorFromEnvironment: String {
        ProcessInfo.processInfo.environment["MESH_COORDINATOR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? coordinatorAddress
    }

    /// `$MESH_COORDINATOR`, else ``automatic``: where a node looks when nothing else is said.
    public static var nodeCoordinatorFromEnvironment: String {
        ProcessInfo.processInfo.environment["MESH_COORDINATOR"].flatMap { $0.isEmpty ? nil : $0 } ?? automatic
    }

    /// The coordinator address that means "find them on the LAN": `MESH_COORDINATOR=discover`.
    public static let discover = "discover"
    /// A node's coordinator when none is configured (`MESH_COORDINATOR` unset or `auto`): the one
    /// on this host if ``coordinatorAddress`` accepts connections, else every coordinator that
    /// announces the node's mesh on the LAN (as ``discover``), else this host's again (one
    /// started meanwhile).
    public static let automatic = "auto"
    /// How long a node with `discover` listens for beacons at most (less when its connect
    /// timeout is shorter).
    public static let discoveryWindow: Duration = .seconds(3)
    /// How long it listens at least, to hear every coordinator: three beacon intervals.
    public static let discoverySettle: Duration = .milliseconds(1500)

    /// `$MESH_NAME` when set and not empty, else `default`: the mesh name beacons carry.
    public static var meshNameFromEnvironment: String {
        ProcessInfo.processInfo.environment["MESH_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "default"
    }

    /// The coordinators in `text`: `HOST:PORT` addresses separated by commas (spaces around each
    /// are ignored, empty entries skipped), in order, each once. One address gives a list of one.
    public static func coordinatorList(_ text: String) -> [String] {
        var seen = Set<String>()
        return text.split(separator: ",").compactMap { part in
            let address = part.trimmingCharacters(in: .whitespaces)
            guard !address.isEmpty, seen.insert(address).inserted else { return nil }
            return address
        }
    }

    /// A short name for this host and network namespace: 12 hex digits of the SHA-256 of the
    /// machine id (or host name) and the namespace's inode. Nodes with the same value can reach
    /// each other's abstract Unix sockets.
    public static let localScope: String = {
        let machineID = (try? String(contentsOfFile: "/etc/machine-id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let host = machineID.flatMap { $0.isEmpty ? nil : $0 } ?? ProcessInfo.processInfo.hostName
        let namespace = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? ""
        return SHA256.hash(data: Array("\(host)/\(namespace)".utf8)).description.prefix(12).description
    }()

    /// `$MESH_AUTHKEY`, when set and not empty.
    /// `$MESH_IDENTITY_FILE`: a node key file from `mesh keygen --node`, or `nil`.
    public static var identityFileFromEnvironment: String? {
        ProcessInfo.processInfo.environment["MESH_IDENTITY_FILE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `$MESH_COORDINATOR_KEY`: the coordinator's public key (64 hex digits) to pin, or `nil`.
    public static var coordinatorKeyFromEnvironment: String? {
        ProcessInfo.processInfo.environment["MESH_COORDINATOR_KEY"].flatMap { $0.isEmpty ? nil : $0.lowercased() }
    }

    public static var authkeyFromEnvironment: String? {
        ProcessInfo.processInfo.environment["MESH_AUTHKEY"].flatMap { $0.isEmpty ? nil : $0 }
    }
}
