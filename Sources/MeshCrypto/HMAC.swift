import Foundation

/// HMAC (RFC 2104) over any ``HashFunction``, one-shot or streaming.
///
/// ```swift
/// let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
/// let ok = HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: message, using: key)
/// ```
///
/// HMAC hashes `(key ⊕ opad) ‖ H((key ⊕ ipad) ‖ message)`. The two padded-key blocks do not depend
/// on the message, so ``Key`` hashes them once and every MAC starts from copies of those states:
/// a 64-byte message then costs three compressions instead of five. Pass a ``Key`` when one key
/// authenticates many messages, as a connection's handshake does; a ``SymmetricKey`` works too and
/// prepares a ``Key`` on each call.
public struct HMAC<H: HashFunction>: Sendable {
    /// The inner hash: the key XOR ipad block already absorbed, then the message.
    @usableFromInline
    var inner: H

    /// The outer hash with the key XOR opad block already absorbed.
    @usableFromInline
    let outer: H

    /// Starts a streaming MAC.
    ///
    /// - Parameters:
    ///   - key: The secret key.
    @inlinable
    public init(key: SymmetricKey) {
        self.init(key: Key(key))
    }

    /// Starts a streaming MAC from a prepared key, without hashing the key again.
    ///
    /// - Parameters:
    ///   - key: The prepared key.
    @inlinable
    public init(key: Key) {
        inner = key.inner
        outer = key.outer
    }

    /// Feeds message bytes into the MAC.
    ///
    /// - Parameters:
    ///   - data: The bytes to absorb: `Data`, `[UInt8]`, a slice, or any other `DataProtocol`.
    @inlinable
    public mutating func update<D: DataProtocol>(data: D) {
        inner.update(data: data)
    }

    /// Feeds message bytes into the MAC.
    ///
    /// - Parameters:
    ///   - bufferPointer: The bytes to absorb; they are not retained.
    @inlinable
    public mutating func update(bufferPointer: UnsafeRawBufferPointer) {
        inner.update(bufferPointer: bufferPointer)
    }

    /// Computes the MAC of everything fed so far, leaving this value usable.
    ///
    /// - Returns: The authentication code.
    @inlinable
    public func finalize() -> HashedAuthenticationCode<H> {
        let innerDigest = inner.finalize()
        var outer = self.outer
        innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
        return HashedAuthenticationCode(digest: outer.finalize())
    }

    /// Computes the MAC of a whole message.
    ///
    /// - Parameters:
    ///   - data: The message.
    ///   - key: The secret key.
    /// - Returns: The authentication code.
    @inlinable
    public static func authenticationCode<D: DataProtocol>(for data: D, using key: SymmetricKey)
        -> HashedAuthenticationCode<H>
    {
        authenticationCode(for: data, using: Key(key))
    }

    /// Computes the MAC of a whole message with a prepared key.
    ///
    /// - Parameters:
    ///   - data: The message.
    ///   - key: The prepared key.
    /// - Returns: The authentication code.
    @inlinable
    public static func authenticationCode<D: DataProtocol>(for data: D, using key: Key)
        -> HashedAuthenticationCode<H>
    {
        var hmac = HMAC(key: key)
        hmac.update(data: data)
        return hmac.finalize()
    }

    /// Checks a MAC against a message, comparing in constant time.
    ///
    /// - Parameters:
    ///   - authenticationCode: The MAC to check.
    ///   - data: The message it claims to authenticate.
    ///   - key: The secret key.
    /// - Returns: `true` when the MAC is the message's MAC under `key`.
    @inlinable
    public static func isValidAuthenticationCode<D: DataProtocol>(
        _ authenticationCode: HashedAuthenticationCode<H>, authenticating data: D, using key: SymmetricKey
    ) -> Bool {
        isValidAuthenticationCode(authenticationCode, authenticating: data, using: Key(key))
    }

    /// Checks a MAC against a message with a prepared key, comparing in constant time.
    ///
    /// - Parameters:
    ///   - authenticationCode: The MAC to check.
    ///   - data: The message it claims to authenticate.
    ///   - key: The prepared key.
    /// - Returns: `true` when the MAC is the message's MAC under `key`.
    @inlinable
    public static func isValidAuthenticationCode<D: DataProtocol>(
        _ authenticationCode: HashedAuthenticationCode<H>, authenticating data: D, using key: Key
    ) -> Bool {
        self.authenticationCode(for: data, using: key) == authenticationCode
    }

    /// Checks MAC bytes received from a peer against a message, comparing in constant time.
    ///
    /// - Parameters:
    ///   - authenticationCode: The received MAC bytes; a wrong length is simply invalid.
    ///   - data: The message they claim to authenticate.
    ///   - key: The secret key.
    /// - Returns: `true` when the bytes are the message's MAC under `key`.
    @inlinable
    public static func isValidAuthenticationCode<C: ContiguousBytes, D: DataProtocol>(
        _ authenticationCode: C, authenticating data: D, using key: SymmetricKey
    ) -> Bool {
        isValidAuthenticationCode(authenticationCode, authenticating: data, using: Key(key))
    }

    /// Checks MAC bytes received from a peer against a message with a prepared key, comparing in
    /// constant time.
    ///
    /// - Parameters:
    ///   - authenticationCode: The received MAC bytes; a wrong length is simply invalid.
    ///   - data: The message they claim to authenticate.
    ///   - key: The prepared key.
    /// - Returns: `true` when the bytes are the message's MAC under `key`.
    @inlinable
    public static func isValidAuthenticationCode<C: ContiguousBytes, D: DataProtocol>(
        _ authenticationCode: C, authenticating data: D, using key: Key
    ) -> Bool {
        let expected = self.authenticationCode(for: data, using: key)
        return expected.withUnsafeBytes { computed in
            authenticationCode.withUnsafeBytes { received in constantTimeEquals(received, computed) }
        }
    }
}
