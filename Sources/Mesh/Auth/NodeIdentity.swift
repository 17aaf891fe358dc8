import Foundation
import MeshCrypto

/// A node's static X25519 key pair and the id that derives from it (protocol version 3).
///
/// Made fresh at start, or loaded from a key file (`mesh keygen --node` writes one) for an id that
/// survives restarts. The private key never leaves the process: the Noise handshake proves it.
public struct NodeIdentity: Sendable {
    /// The private key.
    package let privateKey: Curve25519.KeyAgreement.PrivateKey
    /// The public key, 32 bytes.
    public let publicKey: [UInt8]
    /// 16 lowercase hex digits: the first 8 bytes of SHA-256("swift-mesh/3 node id" ‖ public key).
    public let id: String
    /// The id as 8 bytes.
    package let idBytes: [UInt8]

    /// A fresh identity from the system's secure generator.
    public init() {
        self.init(privateKey: Curve25519.KeyAgreement.PrivateKey())
    }

    package init(privateKey: Curve25519.KeyAgreement.PrivateKey) {
        self.privateKey = privateKey
        self.publicKey = Array(privateKey.publicKey.rawRepresentation)
        self.idBytes = NodeID.idBytes(forPublicKey: publicKey)
        self.id = lowercaseHexID(idBytes)
    }

    /// A fresh key pair that claims `id` in its hellos without holding the key `id` derives from:
    /// what an impostor sends, for attack tests. A keyed peer refuses it.
    package init(claiming id: String) {
        self.privateKey = Curve25519.KeyAgreement.PrivateKey()
        self.publicKey = Array(privateKey.publicKey.rawRepresentation)
        self.idBytes = NodeID.bytes(id) ?? Handshake.noID
        self.id = id
    }

    /// The public key as 64 lowercase hex digits, as node records carry it.
    public var publicKeyHex: String { lowercaseHexID(publicKey) }

    /// The identity in a key file: the 32-byte private key as 64 hex digits, then optional
    /// whitespace and line ends.
    ///
    /// - Parameters:
    ///   - path: The file.
    /// - Throws: ``MeshError/invalidIdentity(path:reason:)`` saying what is wrong with the file.
    public init(contentsOfFile path: String) throws(MeshError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .invalidIdentity(path: path, reason: "cannot read it (\(error.localizedDescription))")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = NodeIdentity.hexBytes(text), bytes.count == 32,
            let key = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: bytes)
        else {
            throw .invalidIdentity(
                path: path, reason: "it does not hold a private key (64 hex digits, as `mesh keygen --node` writes)")
        }
        self.init(privateKey: key)
    }

    /// What `mesh keygen --node` writes: a fresh private key as 64 lowercase hex digits.
    public static func generateKeyFileText() -> String {
        lowercaseHexID(Array(Curve25519.KeyAgreement.PrivateKey().rawRepresentation)) + "\n"
    }

    /// Hex text (either case) as bytes, or `nil`.
    package static func hexBytes(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(utf8.count / 2)
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case 0x30...0x39: return digit - 0x30
            case 0x61...0x66: return digit - 0x61 + 10
            case 0x41...0x46: return digit - 0x41 + 10
            default: return nil
            }
        }
        var index = 0
        while index < utf8.count {
            guard let high = value(utf8[index]), let low = value(utf8[index + 1]) else { return nil }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }
}
