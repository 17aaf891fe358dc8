extension Noise {
    /// The chaining key `ck`, the handshake hash `h` and a ``CipherState`` (section 5.2).
    package struct SymmetricState: Sendable {
        /// `ck`.
        package private(set) var chainingKey: [UInt8]
        /// `h`: every key and ciphertext of the handshake so far, hashed in order.
        package private(set) var handshakeHash: [UInt8]
        /// The handshake's cipher state.
        package private(set) var cipherState = CipherState()

        /// `InitializeSymmetric(protocol_name)`: `h` is the name padded with zeros to 32 bytes, or
        /// its SHA-256 when longer; `ck = h`.
        ///
        /// - Parameters:
        ///   - protocolName: The full protocol name's bytes.
        package init(protocolName: [UInt8]) {
            if protocolName.count <= Noise.hashLength {
                handshakeHash = protocolName + [UInt8](repeating: 0, count: Noise.hashLength - protocolName.count)
            } else {
                handshakeHash = Array(SHA256.hash(data: protocolName))
            }
            chainingKey = handshakeHash
        }

        /// `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`; the cipher takes `temp_k`.
        package mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
            let outputs = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
            chainingKey = outputs[0]
            cipherState.initializeKey(outputs[1])
        }

        /// `MixHash(data)`: `h = SHA-256(h ‖ data)`.
        package mutating func mixHash(_ data: [UInt8]) {
            var hasher = SHA256()
            hasher.update(data: handshakeHash)
            hasher.update(data: data)
            handshakeHash = Array(hasher.finalize())
        }

        /// `MixKeyAndHash(input_key_material)`: `ck, temp_h, temp_k = HKDF(ck, ikm, 3)`, then
        /// `MixHash(temp_h)` and the cipher takes `temp_k`. Used for pre-shared keys.
        package mutating func mixKeyAndHash(_ inputKeyMaterial: [UInt8]) {
            let outputs = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 3)
            chainingKey = outputs[0]
            mixHash(outputs[1])
            cipherState.initializeKey(outputs[2])
        }

        /// `EncryptAndHash(plaintext)`: encrypts with `h` as associated data, then mixes the
        /// ciphertext into `h`.
        package mutating func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
            let ciphertext = try cipherState.encrypt(authenticating: handshakeHash, plaintext)
            mixHash(ciphertext)
            return ciphertext
        }

        /// `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data, then mixes the
        /// ciphertext into `h`.
        package mutating func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
            let plaintext = try cipherState.decrypt(authenticating: handshakeHash, ciphertext)
            mixHash(ciphertext)
            return plaintext
        }

        /// `Split()`: `temp_k1, temp_k2 = HKDF(ck, zerolen, 2)`, one cipher state for each direction.
        ///
        /// - Returns: The initiator-to-responder and responder-to-initiator cipher states.
        package func split() -> (initiatorToResponder: CipherState, responderToInitiator: CipherState) {
            let outputs = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
            return (CipherState(key: outputs[0]), CipherState(key: outputs[1]))
        }

        /// The specification's `HKDF(chaining_key, input_key_material, num_outputs)`:
        /// `temp_key = HMAC(ck, ikm)`, `output1 = HMAC(temp_key, 0x01)`,
        /// `output(i) = HMAC(temp_key, output(i-1) ‖ i)`. This is RFC 5869 with salt `ck` and no info.
        static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
            let pseudoRandomKey = HKDF<SHA256>.extract(
                inputKeyMaterial: SymmetricKey(data: inputKeyMaterial), salt: chainingKey)
            let expanded = HKDF<SHA256>.expand(
                pseudoRandomKey: pseudoRandomKey, info: [], outputByteCount: outputs * Noise.hashLength)
            return expanded.withUnsafeBytes { bytes in
                (0..<outputs).map { Array(bytes[($0 * Noise.hashLength)..<(($0 + 1) * Noise.hashLength)]) }
            }
        }
    }
}
