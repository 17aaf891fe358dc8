import Foundation

/// A cryptographic hash function that can be fed incrementally.
///
/// The shape follows Apple's CryptoKit (`HashFunction`, `Digest`, `HMAC`), so code written against
/// MeshCrypto moves to CryptoKit or swift-crypto by changing its import. ``SHA256`` is the one
/// conformer; ``HMAC`` is generic over this protocol.
public protocol HashFunction: Sendable {
    /// The digest type the function produces.
    associatedtype Digest: MeshCrypto.Digest

    /// The size in bytes of the blocks the function consumes (64 for SHA-256).
    static var blockByteCount: Int { get }

    /// Creates a hasher in its initial state.
    init()

    /// Feeds bytes into the hash.
    ///
    /// - Parameters:
    ///   - bufferPointer: The bytes to absorb; they are not retained.
    mutating func update(bufferPointer: UnsafeRawBufferPointer)

    /// Computes the digest of everything fed so far, leaving the hasher usable.
    ///
    /// - Returns: The digest.
    func finalize() -> Digest
}

extension HashFunction {
    /// The size in bytes of the function's digest (32 for SHA-256).
    @inlinable
    public static var byteCount: Int { Digest.byteCount }

    /// Feeds bytes into the hash.
    ///
    /// - Parameters:
    ///   - data: The bytes to absorb: `Data`, `[UInt8]`, a slice, or any other `DataProtocol`.
    @inlinable
    public mutating func update<D: DataProtocol>(data: D) {
        for region in data.regions {
            region.withUnsafeBytes { update(bufferPointer: $0) }
        }
    }

    /// Hashes a whole message at once.
    ///
    /// - Parameters:
    ///   - data: The message.
    /// - Returns: The message's digest.
    @inlinable
    public static func hash<D: DataProtocol>(data: D) -> Digest {
        var hasher = Self()
        hasher.update(data: data)
        return hasher.finalize()
    }
}
