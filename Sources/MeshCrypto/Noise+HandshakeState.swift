extension Noise {
    /// A handshake in progress: the symmetric state, both sides' keys and the pattern (section 5.3).
    ///
    /// A pure value: `writeMessage` and `readMessage` turn payloads into messages and back and
    /// say nothing about sockets. After the pattern's last message ``isFinished`` is `true` and
    /// ``split()`` gives the transport's cipher states.
    package struct HandshakeState: Sendable {
        /// This side's role.
        package let role: Role
        /// The pattern being run.
        package let pattern: HandshakePattern
        /// The symmetric state; its ``SymmetricState/handshakeHash`` is the channel binding.
        package private(set) var symmetricState: SymmetricState
        /// `s`: this side's static key pair.
        package let staticKey: Curve25519.KeyAgreement.PrivateKey?
        /// `e`: this side's ephemeral key pair, once made (or as injected).
        package private(set) var ephemeralKey: Curve25519.KeyAgreement.PrivateKey?
        /// `rs`: the peer's static public key, known beforehand or received.
        package private(set) var remoteStaticKey: Curve25519.KeyAgreement.PublicKey?
        /// `re`: the peer's ephemeral public key, once received.
        package private(set) var remoteEphemeralKey: Curve25519.KeyAgreement.PublicKey?
        /// The pre-shared keys not yet used, in the order the pattern's `psk` tokens take them.
        private var presharedKeys: ArraySlice<[UInt8]>
        /// The index of the next message in the pattern.
        package private(set) var messageIndex = 0
        /// Set when a `readMessage` failed on the peer's encrypted static key, before its payload:
        /// in `IK` that means the initiator encrypted to another responder key than this side's.
        package private(set) var staticKeyUnreadable = false

        /// `Initialize(...)`: starts a handshake.
        ///
        /// - Parameters:
        ///   - protocolName: `Noise_<pattern>_25519_ChaChaPoly_SHA256`, e.g.
        ///     `Noise_IKpsk2_25519_ChaChaPoly_SHA256`.
        ///   - role: Which side this is.
        ///   - prologue: Bytes both sides must agree on, mixed into the hash first.
        ///   - staticKey: `s`, when the pattern uses this side's static key.
        ///   - ephemeralKey: `e` to use instead of a fresh random one; for test vectors only.
        ///   - remoteStaticKey: `rs`, when the pattern's pre-messages give the peer's static key.
        ///   - remoteEphemeralKey: `re`, when the pre-messages give the peer's ephemeral key.
        ///   - presharedKeys: One 32-byte key per `psk` token, in order.
        /// - Throws: ``Noise/Error/unsupportedProtocol(_:)`` for another suite or an unknown
        ///   pattern; ``Noise/Error/missingKey(_:)`` when the pattern needs a key not given;
        ///   ``Noise/Error/badPresharedKeys`` when the pre-shared keys do not fit the pattern.
        package init(
            protocolName: String, role: Role, prologue: [UInt8] = [],
            staticKey: Curve25519.KeyAgreement.PrivateKey? = nil,
            ephemeralKey: Curve25519.KeyAgreement.PrivateKey? = nil,
            remoteStaticKey: Curve25519.KeyAgreement.PublicKey? = nil,
            remoteEphemeralKey: Curve25519.KeyAgreement.PublicKey? = nil,
            presharedKeys: [[UInt8]] = []
        ) throws {
            let parts = protocolName.split(separator: "_", omittingEmptySubsequences: false)
            guard parts.count == 5, parts[0] == "Noise", parts[2] == "25519", parts[3] == "ChaChaPoly",
                parts[4] == "SHA256"
            else { throw Error.unsupportedProtocol(protocolName) }
            let pattern: HandshakePattern
            do {
                pattern = try HandshakePattern(named: String(parts[1]))
            } catch {
                throw Error.unsupportedProtocol(protocolName)
            }

            let pskCount = pattern.messages.reduce(0) { $0 + $1.tokens.filter { $0 == .psk }.count }
            guard presharedKeys.count == pskCount, presharedKeys.allSatisfy({ $0.count == 32 }) else {
                throw Error.badPresharedKeys
            }

            // Which keys the pattern needs on this side.
            let isInitiator = role == .initiator
            let myPre = isInitiator ? pattern.initiatorPreMessage : pattern.responderPreMessage
            let theirPre = isInitiator ? pattern.responderPreMessage : pattern.initiatorPreMessage
            let iSendStatic = pattern.messages.contains { $0.fromInitiator == isInitiator && $0.tokens.contains(.s) }
            if (myPre.contains(.s) || iSendStatic) && staticKey == nil {
                throw Error.missingKey("this side's static key (s)")
            }
            if myPre.contains(.e) && ephemeralKey == nil {
                throw Error.missingKey("this side's ephemeral key (e) for the pre-message")
            }
            if theirPre.contains(.s) && remoteStaticKey == nil {
                throw Error.missingKey("the peer's static key (rs)")
            }
            if theirPre.contains(.e) && remoteEphemeralKey == nil {
                throw Error.missingKey("the peer's ephemeral key (re)")
            }

            self.role = role
            self.pattern = pattern
            self.staticKey = staticKey
            self.ephemeralKey = ephemeralKey
            self.remoteStaticKey = remoteStaticKey
            self.remoteEphemeralKey = remoteEphemeralKey
            self.presharedKeys = presharedKeys[...]
            symmetricState = SymmetricState(protocolName: Array(protocolName.utf8))
            symmetricState.mixHash(prologue)

            // Pre-messages: the initiator's keys first, then the responder's; in a PSK handshake
            // an `e` is also mixed into the key.
            for (tokens, initiatorSide) in [(pattern.initiatorPreMessage, true), (pattern.responderPreMessage, false)] {
                let mine = initiatorSide == isInitiator
                for token in tokens {
                    let key: Curve25519.KeyAgreement.PublicKey?
                    switch token {
                    case .e: key = mine ? ephemeralKey?.publicKey : remoteEphemeralKey
                    case .s: key = mine ? staticKey?.publicKey : remoteStaticKey
                    default: throw Error.unsupportedProtocol(protocolName)
                    }
                    guard let key else { throw Error.missingKey("a pre-message key") }
                    let bytes = Array(key.rawRepresentation)
                    symmetricState.mixHash(bytes)
                    if token == .e && pattern.isPresharedKeyHandshake {
                        symmetricState.mixKey(bytes)
                    }
                }
            }
        }

        /// Whether every handshake message has been written or read.
        package var isFinished: Bool { messageIndex == pattern.messages.count }

        /// `h`, which both sides share at the end: bind it into anything that must belong to
        /// this session.
        package var handshakeHash: [UInt8] { symmetricState.handshakeHash }

        /// Whether the next message is this side's to write.
        package var isMyTurn: Bool {
            !isFinished && pattern.messages[messageIndex].fromInitiator == (role == .initiator)
        }

        /// `WriteMessage(payload, message_buffer)`: the next handshake message.
        ///
        /// - Parameters:
        ///   - payload: Application bytes to send with it, encrypted once a key exists.
        /// - Returns: The message to send.
        /// - Throws: ``Noise/Error/notMyTurn``, ``Noise/Error/handshakeFinished``,
        ///   ``Noise/Error/messageTooLong(_:)``, or ``Noise/Error/invalidPublicKey`` when a DH
        ///   with the peer's key gives all zeros. After a throw past the turn checks, the
        ///   handshake cannot go on.
        package mutating func writeMessage(payload: [UInt8] = []) throws -> [UInt8] {
            guard !isFinished else { throw Error.handshakeFinished }
            guard isMyTurn else { throw Error.notMyTurn }
            var message: [UInt8] = []
            for token in pattern.messages[messageIndex].tokens {
                switch token {
                case .e:
                    let ephemeral = ephemeralKey ?? Curve25519.KeyAgreement.PrivateKey()
                    ephemeralKey = ephemeral
                    let bytes = Array(ephemeral.publicKey.rawRepresentation)
                    message += bytes
                    symmetricState.mixHash(bytes)
                    if pattern.isPresharedKeyHandshake { symmetricState.mixKey(bytes) }
                case .s:
                    guard let staticKey else { throw Error.missingKey("this side's static key (s)") }
                    message += try symmetricState.encryptAndHash(Array(staticKey.publicKey.rawRepresentation))
                case .psk:
                    symmetricState.mixKeyAndHash(presharedKeys.removeFirst())
                case .ee, .es, .se, .ss:
                    try mixDiffieHellman(token)
                }
            }
            message += try symmetricState.encryptAndHash(payload)
            guard message.count <= Noise.maximumMessageLength else { throw Error.messageTooLong(message.count) }
            messageIndex += 1
            return message
        }

        /// `ReadMessage(message, payload_buffer)`: takes the peer's next handshake message.
        ///
        /// - Parameters:
        ///   - message: The bytes received.
        /// - Returns: The payload it carried.
        /// - Throws: ``Noise/Error/notMyTurn``, ``Noise/Error/handshakeFinished``,
        ///   ``Noise/Error/messageTooShort``, ``Noise/Error/messageTooLong(_:)``,
        ///   ``Noise/Error/decryptionFailed`` for a forged or corrupted message, or
        ///   ``Noise/Error/invalidPublicKey``. After a throw the handshake cannot go on.
        package mutating func readMessage(_ message: [UInt8]) throws -> [UInt8] {
            guard !isFinished else { throw Error.handshakeFinished }
            guard !isMyTurn else { throw Error.notMyTurn }
            guard message.count <= Noise.maximumMessageLength else { throw Error.messageTooLong(message.count) }
            var rest = message[...]
            func take(_ count: Int) throws -> [UInt8] {
                guard rest.count >= count else { throw Error.messageTooShort }
                defer { rest = rest.dropFirst(count) }
                return Array(rest.prefix(count))
            }
            for token in pattern.messages[messageIndex].tokens {
                switch token {
                case .e:
                    let bytes = try take(Noise.dhLength)
                    remoteEphemeralKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
                    symmetricState.mixHash(bytes)
                    if pattern.isPresharedKeyHandshake { symmetricState.mixKey(bytes) }
                case .s:
                    let length = Noise.dhLength + (symmetricState.cipherState.hasKey ? ChaChaPoly.tagByteCount : 0)
                    let sealed = try take(length)
                    guard let bytes = try? symmetricState.decryptAndHash(sealed) else {
                        staticKeyUnreadable = true
                        throw Error.decryptionFailed
                    }
                    remoteStaticKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
                case .psk:
                    symmetricState.mixKeyAndHash(presharedKeys.removeFirst())
                case .ee, .es, .se, .ss:
                    try mixDiffieHellman(token)
                }
            }
            let payload = try symmetricState.decryptAndHash(Array(rest))
            messageIndex += 1
            return payload
        }

        /// `Split()`: the transport's cipher states, seen from this side.
        ///
        /// - Returns: The cipher state to encrypt what this side sends, and the one to decrypt what
        ///   it receives. In a one-way pattern the responder only receives and the initiator only sends.
        /// - Throws: ``Noise/Error/handshakeNotFinished`` before the last handshake message.
        package func split() throws -> (send: CipherState, receive: CipherState) {
            guard isFinished else { throw Error.handshakeNotFinished }
            let (initiatorToResponder, responderToInitiator) = symmetricState.split()
            return role == .initiator
                ? (initiatorToResponder, responderToInitiator) : (responderToInitiator, initiatorToResponder)
        }

        /// `MixKey(DH(...))` for `ee`, `es`, `se` or `ss`: the first letter is the initiator's key,
        /// the second the responder's.
        private mutating func mixDiffieHellman(_ token: Token) throws {
            let isInitiator = role == .initiator
            let local: Curve25519.KeyAgreement.PrivateKey?
            let remote: Curve25519.KeyAgreement.PublicKey?
            switch token {
            case .ee:
                (local, remote) = (ephemeralKey, remoteEphemeralKey)
            case .ss:
                (local, remote) = (staticKey, remoteStaticKey)
            case .es:
                (local, remote) = isInitiator ? (ephemeralKey, remoteStaticKey) : (staticKey, remoteEphemeralKey)
            case .se:
                (local, remote) = isInitiator ? (staticKey, remoteEphemeralKey) : (ephemeralKey, remoteStaticKey)
            case .e, .s, .psk:
                preconditionFailure("Noise: \(token) is not a DH token")
            }
            guard let local, let remote else { throw Error.missingKey("a key for \(token.rawValue)") }
            let secret: SharedSecret
            do {
                secret = try local.sharedSecretFromKeyAgreement(with: remote)
            } catch {
                throw Error.invalidPublicKey
            }
            symmetricState.mixKey(secret.withUnsafeBytes { Array($0) })
        }
    }
}
