import Foundation

/// The elliptic curve of X25519 key agreement (RFC 7748), with swift-crypto's API.
///
/// ```swift
/// let mine = Curve25519.KeyAgreement.PrivateKey()
/// send(mine.publicKey.rawRepresentation)                        // 32 bytes
/// let theirs = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: received)
/// let secret = try mine.sharedSecretFromKeyAgreement(with: theirs)
/// let key = secret.hkdfDerivedSymmetricKey(
///     using: SHA256.self, salt: salt, sharedInfo: Array("purpose".utf8), outputByteCount: 32)
/// ```
///
/// How it works: field elements are five 51-bit limbs with 128-bit products, and the scalar
/// multiplication is the Montgomery ladder with a masked conditional swap, so its time and memory
/// accesses do not depend on the private key. A public key from a peer is taken as RFC 7748
/// says (the top bit ignored, values at or above p reduced); one of small order, which would
/// make the shared secret all zeros whatever the private key, is refused with
/// ``CryptoKitError/invalidParameter``.
public enum Curve25519 {
    /// X25519 Diffie-Hellman key agreement.
    public enum KeyAgreement {
        /// Every X25519 key is 32 bytes.
        static let keyByteCount = 32

        /// An X25519 public key: the u-coordinate of a point, 32 bytes little-endian.
        public struct PublicKey: Sendable {
            /// The key bytes as given.
            let bytes: Bytes32

            /// A public key from its 32 bytes, e.g. as received from a peer.
            ///
            /// - Parameters:
            ///   - rawRepresentation: 32 bytes.
            /// - Throws: ``CryptoKitError/incorrectKeySize`` when not 32 bytes.
            public init<D: ContiguousBytes>(rawRepresentation: D) throws {
                bytes = try Bytes32(rawRepresentation)
            }

            init(bytes: Bytes32) {
                self.bytes = bytes
            }

            /// The key's 32 bytes.
            public var rawRepresentation: Data { bytes.data }
        }

        /// An X25519 private key, which knows its public key.
        ///
        /// Printing one shows no key bytes.
        public struct PrivateKey: DiffieHellmanKeyAgreement, Sendable, CustomStringConvertible {
            /// The scalar bytes as given (clamped only when used).
            let bytes: Bytes32

            /// The matching public key, computed once.
            public let publicKey: Curve25519.KeyAgreement.PublicKey

            /// A random private key from the system's secure random number generator.
            public init() {
                var generator = SystemRandomNumberGenerator()
                var bytes = Bytes32()
                bytes.storage = (generator.next(), generator.next(), generator.next(), generator.next())
                self.init(bytes: bytes)
            }

            /// A private key from its 32 bytes.
            ///
            /// - Parameters:
            ///   - rawRepresentation: 32 bytes; any value is a valid key (it is clamped when used).
            /// - Throws: ``CryptoKitError/incorrectKeySize`` when not 32 bytes.
            public init<D: ContiguousBytes>(rawRepresentation: D) throws {
                self.init(bytes: try Bytes32(rawRepresentation))
            }

            private init(bytes: Bytes32) {
                self.bytes = bytes
                publicKey = PublicKey(bytes: X25519.multiply(scalar: bytes, point: X25519.basePoint))
            }

            /// The key's 32 bytes, as given to ``init(rawRepresentation:)`` or drawn by ``init()``.
            public var rawRepresentation: Data { bytes.data }

            /// Computes the secret this key shares with a peer's public key.
            ///
            /// - Parameters:
            ///   - publicKeyShare: The peer's public key.
            /// - Returns: X25519 of this key and the peer's; derive keys from it with
            ///   ``SharedSecret/hkdfDerivedSymmetricKey(using:salt:sharedInfo:outputByteCount:)``
            ///   rather than using it directly.
            /// - Throws: ``CryptoKitError/invalidParameter`` when the result is all zeros, which
            ///   happens exactly when the peer's key is a point of small order (RFC 7748 section 6.1).
            public func sharedSecretFromKeyAgreement(with publicKeyShare: Curve25519.KeyAgreement.PublicKey) throws
                -> SharedSecret
            {
                let secret = X25519.multiply(scalar: bytes, point: publicKeyShare.bytes)
                guard !secret.isZero else { throw CryptoKitError.invalidParameter }
                return SharedSecret(bytes: secret)
            }

            /// Says what the key is, never its bytes.
            public var description: String { "Curve25519.KeyAgreement.PrivateKey" }
        }
    }
}

/// A private key that agrees on a shared secret with a peer's public key; swift-crypto's protocol.
public protocol DiffieHellmanKeyAgreement {
    /// The type of the peer's key.
    associatedtype PublicKey

    /// This key's public half.
    var publicKey: PublicKey { get }

    /// Computes the secret this key shares with a peer's public key.
    ///
    /// - Parameters:
    ///   - publicKeyShare: The peer's public key.
    /// - Returns: The shared secret.
    /// - Throws: When the peer's key is unusable.
    func sharedSecretFromKeyAgreement(with publicKeyShare: PublicKey) throws -> SharedSecret
}
