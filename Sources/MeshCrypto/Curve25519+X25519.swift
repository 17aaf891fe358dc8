extension Curve25519 {
    /// The X25519 function of RFC 7748 section 5: scalar multiplication on the Montgomery form of
    /// Curve25519, using only the u-coordinate.
    ///
    /// The scalar is clamped (low three bits cleared, bit 255 cleared, bit 254 set), and the
    /// Montgomery ladder walks its bits 254 down to 0 with the same field operations at every
    /// step; which of the two points each step doubles is chosen by a conditional swap with a
    /// mask, so neither a branch nor a memory address depends on a secret bit. The result is
    /// converted from projective (X : Z) to u = X / Z by a fixed exponentiation.
    enum X25519 {
        /// The u-coordinate of the base point, 9.
        static let basePoint: Bytes32 = {
            var point = Bytes32()
            point.withUnsafeMutableBytes { $0[0] = 9 }
            return point
        }()

        /// X25519(scalar, u): the u-coordinate of `scalar` times the point.
        ///
        /// - Parameters:
        ///   - scalar: 32 bytes, clamped here as RFC 7748 says.
        ///   - point: A u-coordinate, 32 bytes; the top bit is ignored and values at or above p are
        ///     taken modulo p.
        /// - Returns: The 32-byte u-coordinate of the product; all zeros when `point` has small order.
        static func multiply(scalar: Bytes32, point: Bytes32) -> Bytes32 {
            var clamped = scalar.storage
            clamped.0 = UInt64(littleEndian: clamped.0)
            clamped.1 = UInt64(littleEndian: clamped.1)
            clamped.2 = UInt64(littleEndian: clamped.2)
            clamped.3 = UInt64(littleEndian: clamped.3)
            clamped.0 &= ~7
            clamped.3 &= ~(1 << 63)
            clamped.3 |= 1 << 62

            let x1 = point.withUnsafeBytes { FieldElement(bytes: $0) }
            var x2 = FieldElement.one
            var z2 = FieldElement.zero
            var x3 = x1
            var z3 = FieldElement.one
            var swap: UInt64 = 0

            // The word index comes from the public loop counter only.
            for wordIndex in (0..<4).reversed() {
                let word = withUnsafeBytes(of: clamped) { $0.load(fromByteOffset: 8 * wordIndex, as: UInt64.self) }
                let topBit = wordIndex == 3 ? 62 : 63
                for bitIndex in (0...topBit).reversed() {
                    let bit = (word >> UInt64(bitIndex)) & 1
                    swap ^= bit
                    FieldElement.conditionalSwap(&x2, &x3, bit: swap)
                    FieldElement.conditionalSwap(&z2, &z3, bit: swap)
                    swap = bit
                    ladderStep(x1: x1, x2: &x2, z2: &z2, x3: &x3, z3: &z3)
                }
            }
            FieldElement.conditionalSwap(&x2, &x3, bit: swap)
            FieldElement.conditionalSwap(&z2, &z3, bit: swap)

            var result = Bytes32()
            result.withUnsafeMutableBytes { (x2 * z2.inverse()).write(to: $0) }
            return result
        }

        /// One step of RFC 7748's ladder: (x2 : z2) doubled, (x3 : z3) the differential sum.
        @inline(__always)
        static func ladderStep(
            x1: FieldElement, x2: inout FieldElement, z2: inout FieldElement, x3: inout FieldElement,
            z3: inout FieldElement
        ) {
            let a = x2 + z2
            let aa = a.squared()
            let b = x2 - z2
            let bb = b.squared()
            let e = aa - bb
            let c = x3 + z3
            let d = x3 - z3
            let da = d * a
            let cb = c * b
            x3 = (da + cb).squared()
            z3 = x1 * (da - cb).squared()
            x2 = aa * bb
            z2 = e * (aa + e.times121665())
        }
    }
}

extension Curve25519 {
    /// The bare X25519 function of RFC 7748 section 5, for its test vectors: no zero check, and
    /// no public key computed for the scalar as `PrivateKey` does.
    ///
    /// - Parameters:
    ///   - scalar: 32 bytes, clamped as the RFC says.
    ///   - point: A 32-byte u-coordinate.
    /// - Returns: The 32-byte result, all zeros for a point of small order.
    /// - Throws: ``CryptoKitError/incorrectKeySize`` unless both are 32 bytes.
    @_spi(Testing)
    public static func x25519(scalar: [UInt8], point: [UInt8]) throws -> [UInt8] {
        let result = X25519.multiply(scalar: try Bytes32(scalar), point: try Bytes32(point))
        return result.withUnsafeBytes { Array($0) }
    }
}
