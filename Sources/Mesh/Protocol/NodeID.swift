import MeshCrypto

/// Node ids: 16 lowercase hex digits, derived from a secret only the node holds.
///
/// A node picks 16 random bytes (its id secret) and its id is the first 8 bytes of
/// `SHA-256("swift-mesh/2 node id" ‖ secret)`, in hex. It shows the secret to the coordinator when
/// it registers, and the coordinator checks the id against it: another key holder can make up
/// new ids, but cannot claim one that belongs to a running node (say, right after a coordinator
/// restart, before the real node re-registers) without that node's secret.
package enum NodeID {
    static let secretLength = 16
    private static let label = Array("swift-mesh/2 node id".utf8)

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

    /// A fresh secret and the id it gives.
    package static func make() -> (id: String, secret: String) {
        var generator = SystemRandomNumberGenerator()
        let secret = (0..<secretLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return (id(forSecret: secret), lowercaseHexID(secret))
    }

    /// The id a secret gives.
    static func id(forSecret secret: [UInt8]) -> String {
        lowercaseHexID(Array(SHA256.hash(data: label + secret).prefix(8)))
    }

    /// True when `secretHex` (32 lowercase hex digits) is the secret behind `id`.
    package static func matches(id: String, secretHex: String) -> Bool {
        let utf8 = Array(secretHex.utf8)
        guard utf8.count == secretLength * 2, isValid(String(secretHex.prefix(16))), isValid(String(secretHex.suffix(16)))
        else { return false }
        let secret = (bytes(String(secretHex.prefix(16))) ?? []) + (bytes(String(secretHex.suffix(16))) ?? [])
        return constantTimeEquals(Array(id.utf8), Array(self.id(forSecret: secret).utf8))
    }
}
