import MeshCrypto

extension Connection {
    /// Limits and credentials for one connection.
    package struct Options: Sendable {
        /// Which side of the handshake this is, for what, and with which key.
        var handshake: HandshakeSetup
        var maximumFrameLength: Int
        var maximumPendingBytes: Int
        var handshakeTimeout: Duration = .seconds(5)
        var connectTimeout: Duration = .seconds(5)
        /// Records per transport key in each direction before Noise's `Rekey()` (keyed mesh).
        var rekeyInterval: UInt64 = RecordSealer.defaultRekeyInterval
        /// When set, the loop thread takes at most about this many queued bytes at a time, so
        /// frames not yet taken can still be dropped by ``Connection/sendDroppingOldest(_:)``.
        /// `nil` takes everything queued in one step (cheapest).
        var flushChunk: Int? = nil

        package init(
            handshake: HandshakeSetup, maximumFrameLength: Int, maximumPendingBytes: Int,
            handshakeTimeout: Duration = .seconds(5), connectTimeout: Duration = .seconds(5), flushChunk: Int? = nil
        ) {
            self.handshake = handshake
            self.maximumFrameLength = maximumFrameLength
            self.maximumPendingBytes = maximumPendingBytes
            self.handshakeTimeout = handshakeTimeout
            self.connectTimeout = connectTimeout
            self.flushChunk = flushChunk
        }
    }

    /// How a connection opens: the handshake's parameters (see ``Handshake``).
    package enum HandshakeSetup: Sendable {
        /// Dial for `purpose`, proving `key` (nil: open mesh) with the static key of `identity`
        /// (nil: a fresh one when a keyed handshake needs it). `expectedPeerID` is checked against
        /// the acceptor's hello when set, and `expectedPeerKey` is the static key the acceptor must
        /// prove: a peer's key from its record, or a pinned coordinator key.
        case connect(
            purpose: Handshake.Purpose, key: SymmetricKey?, identity: NodeIdentity?, expectedPeerID: [UInt8]?,
            expectedPeerKey: [UInt8]?)
        /// Accept the purposes in `served`, as `identity` (a node), or with the static key `staticKey`
        /// and no id (the coordinator).
        case accept(served: [Handshake.Purpose: Handshake.Access], identity: NodeIdentity?, staticKey: Curve25519.KeyAgreement.PrivateKey?)

        /// The same setup expecting node `peerID` with static key `peerKey` at the other end (a
        /// connector only).
        func expecting(_ peerID: [UInt8]?, key peerKey: [UInt8]? = nil) -> HandshakeSetup {
            guard case .connect(let purpose, let key, let identity, _, _) = self else { return self }
            return .connect(purpose: purpose, key: key, identity: identity, expectedPeerID: peerID, expectedPeerKey: peerKey)
        }

        func makeHandshake() -> Handshake {
            switch self {
            case .connect(let purpose, let key, let identity, let expectedPeerID, let expectedPeerKey):
                return Handshake(
                    connectingFor: purpose, key: key, localID: identity?.idBytes, staticKey: identity?.privateKey,
                    expectedPeerID: expectedPeerID, expectedPeerKey: expectedPeerKey)
            case .accept(let served, let identity, let staticKey):
                return Handshake(accepting: served, localID: identity?.idBytes, staticKey: identity?.privateKey ?? staticKey)
            }
        }
    }
}
