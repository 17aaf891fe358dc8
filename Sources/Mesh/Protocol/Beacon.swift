import Foundation
import MeshCrypto
import MeshJSON

/// A coordinator's announcement on the LAN (PROTOCOL.md §7.3): one UDP datagram, broadcast every
/// ``interval`` by `mesh-coordinator --announce`, that says where the coordinator listens and
/// for which mesh. In a keyed mesh it carries an HMAC-SHA256 under a key derived from the mesh
/// key, so only a holder of the key can announce a coordinator a keyed node will trust.
///
/// This type is pure: it encodes, reads and checks beacons; the sockets are in ``BeaconSocket``.
package struct Beacon: Codable, Sendable, Equatable {
    /// The format: `swift-mesh/1`.
    package var beacon: String
    /// The mesh's name (`--mesh-name`, `$MESH_NAME`; `default`).
    package var mesh: String
    /// Where the coordinator accepts nodes: `HOST:PORT`, numeric.
    package var address: String
    /// The coordinator's static public key (64 hex digits) in a keyed mesh, covered by the HMAC:
    /// a node that discovers the coordinator insists on exactly this key in the handshake. Empty
    /// in an open mesh.
    package var key: String
    /// HMAC-SHA256 in hex over ``signedBytes``, empty for an open mesh.
    package var mac: String

    package static let format = "swift-mesh/1"
    /// The UDP port beacons are sent to (the coordinator's TCP port number, on UDP).
    package static let port: UInt16 = 6374
    /// How often a coordinator announces itself.
    package static let interval: Duration = .milliseconds(500)
    /// The largest datagram read as a beacon; anything longer is ignored.
    package static let maximumSize = 1024

    /// A beacon for the coordinator at `address`, authenticated when `key` (the stretched mesh
    /// key) is given.
    package init(mesh: String, address: String, key meshKey: SymmetricKey?, fingerprint: String = "") {
        beacon = Self.format
        self.mesh = mesh
        self.address = address
        key = fingerprint
        mac = ""
        if let meshKey {
            mac = HMAC<SHA256>.authenticationCode(for: signedBytes, using: Self.beaconKey(meshKey)).description
        }
    }

    /// What the HMAC covers: the format, the mesh name, the address and the key field, each
    /// followed by a line feed (none of them may contain one).
    var signedBytes: [UInt8] { Array("\(beacon)\n\(mesh)\n\(address)\n\(key)\n".utf8) }

    /// The key beacons are authenticated with: HKDF-SHA256 of the stretched mesh key, with its
    /// own label, so it is worth nothing for the handshake's keys.
    static func beaconKey(_ meshKey: SymmetricKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: meshKey, info: Array("swift-mesh/2 beacon".utf8), outputByteCount: 32)
    }

    /// The datagram.
    package var encoded: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map(Array.init) ?? []
    }

    /// What a listener makes of a datagram.
    package enum Verdict: Sendable, Equatable {
        /// A beacon of this mesh, authenticated when the mesh is keyed.
        case trusted(Beacon)
        /// Not to be used, and why (for the log line).
        case ignored(Beacon?, reason: String)
    }

    /// Reads and checks a datagram from `sender` for a node of mesh `mesh` holding `meshKey`.
    ///
    /// Trusted only when it is a well-formed beacon of this format and mesh, with a numeric
    /// address; in a keyed mesh with a valid HMAC (compared in constant time); in an open mesh
    /// with no HMAC and an address on the host it came from (no one points nodes elsewhere).
    package static func check(_ datagram: [UInt8], from sender: String, mesh: String, key meshKey: SymmetricKey?) -> Verdict {
        guard datagram.count <= maximumSize else { return .ignored(nil, reason: "a datagram of \(datagram.count) bytes, larger than a beacon") }
        let beacon: Beacon
        do {
            beacon = try MeshJSONDecoder().decode(Beacon.self, from: Data(datagram))
        } catch {
            return .ignored(nil, reason: "not a beacon")
        }
        guard beacon.beacon == format else { return .ignored(beacon, reason: "unknown beacon format \"\(beacon.beacon.prefix(40))\"") }
        let fields = [beacon.mesh, beacon.address, beacon.key]
        guard fields.allSatisfy({ !$0.contains("\n") && $0.utf8.count <= 255 }) else {
            return .ignored(beacon, reason: "a field too long or with a line break")
        }
        guard beacon.mesh == mesh else { return .ignored(beacon, reason: "another mesh (\"\(beacon.mesh.prefix(80))\")") }
        guard let address = SocketAddress.parse(beacon.address, defaultPort: 0), address.port != 0,
            !beacon.address.hasPrefix("unix:")
        else {
            return .ignored(beacon, reason: "address \"\(beacon.address.prefix(80))\" is not a numeric HOST:PORT")
        }
        if let meshKey {
            let expected = Array(HMAC<SHA256>.authenticationCode(for: beacon.signedBytes, using: beaconKey(meshKey)))
            guard let mac = NodeIdentity.hexBytes(beacon.mac), mac.count == 32, constantTimeEquals(mac, expected) else {
                return .ignored(beacon, reason: beacon.mac.isEmpty ? "no HMAC, and this mesh is keyed" : "bad HMAC (another key)")
            }
        } else {
            guard beacon.mac.isEmpty else { return .ignored(beacon, reason: "a keyed mesh's beacon, and this node has no key") }
            guard address.host == sender else {
                return .ignored(beacon, reason: "an open mesh's beacon names \(address.host), not the host it came from")
            }
        }
        // A key a node would pin must be one: 64 hex digits, or none at all.
        guard beacon.key.isEmpty || NodeID.publicKeyBytes(beacon.key.lowercased()) != nil else {
            return .ignored(beacon, reason: "its key field is not a public key (64 hex digits)")
        }
        return .trusted(beacon)
    }
}
