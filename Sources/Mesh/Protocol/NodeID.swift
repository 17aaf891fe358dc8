import MeshCrypto

/// Node ids: 16 lowercase hex digits, derived from the node's static public key.
///
/// Every node holds an X25519 key pair (made at start, or loaded from a key file for a stable
/// identity), and its id is the first 8 bytes of `SHA-256("swift-mesh/3 node id" ‖ public key)`,
/// in hex. In a keyed mesh the Noise handshake proves that the peer holds the private half of the
/// key its id comes from, so an id cannot be claimed by anyone but the node that holds its key.
package enum NodeID {
    private static let label = Array("swift-mesh/3 node id".utf8)

    /// True for exactly 16 lowercase hex digits.
    package static func isValid(_ id: String) -> Bool {
        let utf8 = id.utf8
        return utf8.count == 16 && utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The 8 bytes of a valid id, or `nil`.
    package static func bytes(_ id: String) -> [UInt8]? {
        guard isValid(id) else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(8)
        var high: UInt8 = 0
        for (index, digit) in id.utf8.enumerated() {
            let value = digit <= 0x39 ? digit - 0x30 : digit - 0x61 + 10
            if index % 2 == 0 { high = value << 4 } else { result.append(high | value) }
        }
        return result
    }

    /// The id a static public key gives.
    ///
    /// - Parameters:
    ///   - publicKey: The 32 bytes of an X25519 public key.
    /// - Returns: 16 lowercase hex digits.
    package static func id<Bytes: Sequence>(forPublicKey publicKey: Bytes) -> String where Bytes.Element == UInt8 {
        lowercaseHexID(Array(SHA256.hash(data: label + Array(publicKey)).prefix(8)))
    }

    /// The 8 id bytes a static public key gives.
    package static func idBytes<Bytes: Sequence>(forPublicKey publicKey: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        Array(SHA256.hash(data: label + Array(publicKey)).prefix(8))
    }

    /// The 32 bytes of a public key written as 64 lowercase hex digits, or `nil`.
    package static func publicKeyBytes(_ hex: String) -> [UInt8]? {
        // Lowercase only, as records carry keys: one spelling per key.
        guard hex.utf8.count == 64, !hex.utf8.contains(where: { (0x41...0x46).contains($0) }) else { return nil }
        return NodeIdentity.hexBytes(hex)
    }

    /// True when `keyHex` is a public key (64 lowercase hex digits) whose id is `id`.
    package static func matches(id: String, keyHex: String) -> Bool {
        guard let key = publicKeyBytes(keyHex) else { return false }
        return self.id(forPublicKey: key) == id
    }
}
