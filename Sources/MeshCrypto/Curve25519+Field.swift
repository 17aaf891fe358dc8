/// An element of the field GF(2^255 - 19), in five 51-bit limbs: l0 + l1 2^51 + ... + l4 2^204.
///
/// Limbs may run a few bits over 51 between operations; products are 128 bits
/// (`multipliedFullWidth`) and the part above 2^255 folds back times 19, since
/// 2^255 = 19 mod p. Every operation is the same sequence of multiplications, additions, shifts
/// and masks whatever the values: nothing branches or indexes memory on them.
///
/// Bounds kept throughout: inputs to `*` and `squared()` have limbs below 2^54, so each 128-bit
/// column sum stays below 2^115 and every carry fits in 64 bits; outputs of `*`, `squared()` and
/// `times121665()` have limbs below 2^51 + 2^13; `+` of two such values is below 2^53, and `-`
/// adds 2p before subtracting so that it never goes negative and stays below 2^53.
struct FieldElement: Sendable {
    var l0, l1, l2, l3, l4: UInt64

    static let mask: UInt64 = (1 << 51) - 1
    static let zero = FieldElement(l0: 0, l1: 0, l2: 0, l3: 0, l4: 0)
    static let one = FieldElement(l0: 1, l1: 0, l2: 0, l3: 0, l4: 0)

    @inline(__always)
    init(l0: UInt64, l1: UInt64, l2: UInt64, l3: UInt64, l4: UInt64) {
        self.l0 = l0
        self.l1 = l1
        self.l2 = l2
        self.l3 = l3
        self.l4 = l4
    }

    /// Reads 32 little-endian bytes, ignoring the top bit (RFC 7748 section 5); values from p to
    /// 2^255 - 1 are taken as they are, i.e. modulo p.
    @inline(__always)
    init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 32, "FieldElement: 32 bytes")
        func word(_ offset: Int) -> UInt64 {
            UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        }
        l0 = word(0) & Self.mask
        l1 = (word(6) >> 3) & Self.mask
        l2 = (word(12) >> 6) & Self.mask
        l3 = (word(19) >> 1) & Self.mask
        l4 = (word(24) >> 12) & Self.mask
    }

    /// Writes the canonical 32-byte little-endian encoding, fully reduced below p.
    @inline(__always)
    func write(to bytes: UnsafeMutableRawBufferPointer) {
        precondition(bytes.count == 32, "FieldElement: 32 bytes")
        var t = self
        t.carry()
        t.carry()
        // Now 0 <= t < 2^255 + a little. Adding 19 and carrying (with the top carry folded back
        // times 19) gives (t mod p) + 19; adding 2^255 - 19 limb by limb and dropping the bit
        // at 2^255 leaves t mod p.
        t.l0 &+= 19
        t.carry()
        t.l0 &+= Self.mask &- 18
        t.l1 &+= Self.mask
        t.l2 &+= Self.mask
        t.l3 &+= Self.mask
        t.l4 &+= Self.mask
        t.l1 &+= t.l0 >> 51
        t.l0 &= Self.mask
        t.l2 &+= t.l1 >> 51
        t.l1 &= Self.mask
        t.l3 &+= t.l2 >> 51
        t.l2 &= Self.mask
        t.l4 &+= t.l3 >> 51
        t.l3 &= Self.mask
        t.l4 &= Self.mask
        let words: (UInt64, UInt64, UInt64, UInt64) = (
            (t.l0 | t.l1 << 51).littleEndian,
            (t.l1 >> 13 | t.l2 << 38).littleEndian,
            (t.l2 >> 26 | t.l3 << 25).littleEndian,
            (t.l3 >> 39 | t.l4 << 12).littleEndian
        )
        withUnsafeBytes(of: words) { bytes.copyMemory(from: $0) }
    }

    /// One carry pass: every limb below 2^51 except l0, which takes 19 times the carry out of l4.
    @inline(__always)
    mutating func carry() {
        l1 &+= l0 >> 51
        l0 &= Self.mask
        l2 &+= l1 >> 51
        l1 &= Self.mask
        l3 &+= l2 >> 51
        l2 &= Self.mask
        l4 &+= l3 >> 51
        l3 &= Self.mask
        l0 &+= (l4 >> 51) &* 19
        l4 &= Self.mask
    }

    @inline(__always)
    static func + (a: FieldElement, b: FieldElement) -> FieldElement {
        FieldElement(l0: a.l0 &+ b.l0, l1: a.l1 &+ b.l1, l2: a.l2 &+ b.l2, l3: a.l3 &+ b.l3, l4: a.l4 &+ b.l4)
    }

    /// a - b as a + 2p - b; needs b's limbs below 2^52.
    @inline(__always)
    static func - (a: FieldElement, b: FieldElement) -> FieldElement {
        // 2p in limbs: 2^52 - 38, then 2^52 - 2 four times.
        FieldElement(
            l0: (a.l0 &+ 0xF_FFFF_FFFF_FFDA) &- b.l0, l1: (a.l1 &+ 0xF_FFFF_FFFF_FFFE) &- b.l1,
            l2: (a.l2 &+ 0xF_FFFF_FFFF_FFFE) &- b.l2, l3: (a.l3 &+ 0xF_FFFF_FFFF_FFFE) &- b.l3,
            l4: (a.l4 &+ 0xF_FFFF_FFFF_FFFE) &- b.l4)
    }

    @inline(__always)
    static func * (a: FieldElement, b: FieldElement) -> FieldElement {
        let b1 = b.l1 &* 19, b2 = b.l2 &* 19, b3 = b.l3 &* 19, b4 = b.l4 &* 19
        let r0 = Wide(a.l0, b.l0) + Wide(a.l1, b4) + Wide(a.l2, b3) + Wide(a.l3, b2) + Wide(a.l4, b1)
        let r1 = Wide(a.l0, b.l1) + Wide(a.l1, b.l0) + Wide(a.l2, b4) + Wide(a.l3, b3) + Wide(a.l4, b2)
        let r2 = Wide(a.l0, b.l2) + Wide(a.l1, b.l1) + Wide(a.l2, b.l0) + Wide(a.l3, b4) + Wide(a.l4, b3)
        let r3 = Wide(a.l0, b.l3) + Wide(a.l1, b.l2) + Wide(a.l2, b.l1) + Wide(a.l3, b.l0) + Wide(a.l4, b4)
        let r4 = Wide(a.l0, b.l4) + Wide(a.l1, b.l3) + Wide(a.l2, b.l2) + Wide(a.l3, b.l1) + Wide(a.l4, b.l0)
        return reduce(r0, r1, r2, r3, r4)
    }

    /// self * self, with the symmetric products computed once.
    @inline(__always)
    func squared() -> FieldElement {
        let d0 = l0 &* 2, d1 = l1 &* 2, d2 = l2 &* 2, d3 = l3 &* 2
        let l3x19 = l3 &* 19, l4x19 = l4 &* 19
        let r0 = Wide(l0, l0) + Wide(d1, l4x19) + Wide(d2, l3x19)
        let r1 = Wide(d0, l1) + Wide(d2, l4x19) + Wide(l3, l3x19)
        let r2 = Wide(d0, l2) + Wide(l1, l1) + Wide(d3, l4x19)
        let r3 = Wide(d0, l3) + Wide(d1, l2) + Wide(l4, l4x19)
        let r4 = Wide(d0, l4) + Wide(d1, l3) + Wide(l2, l2)
        return Self.reduce(r0, r1, r2, r3, r4)
    }

    /// self squared `count` times.
    @inline(__always)
    func squared(times count: Int) -> FieldElement {
        var result = self
        for _ in 0..<count { result = result.squared() }
        return result
    }

    /// self * 121665, the curve constant (A - 2) / 4 of RFC 7748's ladder.
    @inline(__always)
    func times121665() -> FieldElement {
        let factor: UInt64 = 121_665
        return Self.reduce(Wide(l0, factor), Wide(l1, factor), Wide(l2, factor), Wide(l3, factor), Wide(l4, factor))
    }

    /// self^(p - 2) = 1 / self (0 for 0), by the usual chain of 254 squarings and 11 multiplications.
    func inverse() -> FieldElement {
        let z2 = squared()  // 2
        let z9 = z2.squared(times: 2) * self  // 9
        let z11 = z9 * z2  // 11
        let z2_5_0 = z11.squared() * z9  // 2^5 - 2^0
        let z2_10_0 = z2_5_0.squared(times: 5) * z2_5_0
        let z2_20_0 = z2_10_0.squared(times: 10) * z2_10_0
        let z2_40_0 = z2_20_0.squared(times: 20) * z2_20_0
        let z2_50_0 = z2_40_0.squared(times: 10) * z2_10_0
        let z2_100_0 = z2_50_0.squared(times: 50) * z2_50_0
        let z2_200_0 = z2_100_0.squared(times: 100) * z2_100_0
        let z2_250_0 = z2_200_0.squared(times: 50) * z2_50_0
        return z2_250_0.squared(times: 5) * z11  // 2^255 - 2^5 + 11 = p - 2
    }

    /// Swaps `a` and `b` when `bit` is 1 and leaves them when it is 0, touching both either way.
    @inline(__always)
    static func conditionalSwap(_ a: inout FieldElement, _ b: inout FieldElement, bit: UInt64) {
        let mask = 0 &- bit
        var t = mask & (a.l0 ^ b.l0)
        a.l0 ^= t
        b.l0 ^= t
        t = mask & (a.l1 ^ b.l1)
        a.l1 ^= t
        b.l1 ^= t
        t = mask & (a.l2 ^ b.l2)
        a.l2 ^= t
        b.l2 ^= t
        t = mask & (a.l3 ^ b.l3)
        a.l3 ^= t
        b.l3 ^= t
        t = mask & (a.l4 ^ b.l4)
        a.l4 ^= t
        b.l4 ^= t
    }

    /// Carries five 128-bit column sums down to limbs below 2^51 + 2^13.
    @inline(__always)
    static func reduce(_ r0: Wide, _ r1: Wide, _ r2: Wide, _ r3: Wide, _ r4: Wide) -> FieldElement {
        var l0 = r0.low & mask
        let s1 = r1 + r0.shiftedDown51
        let l1 = s1.low & mask
        let s2 = r2 + s1.shiftedDown51
        let l2 = s2.low & mask
        let s3 = r3 + s2.shiftedDown51
        let l3 = s3.low & mask
        let s4 = r4 + s3.shiftedDown51
        let l4 = s4.low & mask
        l0 &+= s4.shiftedDown51 &* 19
        let carry = l0 >> 51
        l0 &= mask
        return FieldElement(l0: l0, l1: l1 &+ carry, l2: l2, l3: l3, l4: l4)
    }
}

/// A 128-bit unsigned number as two 64-bit halves: a product of two limbs, or a sum of them.
struct Wide: Sendable {
    var low: UInt64
    var high: UInt64

    /// The full 128-bit product a * b.
    @inline(__always)
    init(_ a: UInt64, _ b: UInt64) {
        let product = a.multipliedFullWidth(by: b)
        low = product.low
        high = product.high
    }

    @inline(__always)
    init(low: UInt64, high: UInt64) {
        self.low = low
        self.high = high
    }

    /// The sum, modulo 2^128 (the bounds above keep it far below).
    @inline(__always)
    static func + (x: Wide, y: Wide) -> Wide {
        let (low, overflow) = x.low.addingReportingOverflow(y.low)
        return Wide(low: low, high: x.high &+ y.high &+ (overflow ? 1 : 0))
    }

    @inline(__always)
    static func + (x: Wide, y: UInt64) -> Wide {
        let (low, overflow) = x.low.addingReportingOverflow(y)
        return Wide(low: low, high: x.high &+ (overflow ? 1 : 0))
    }

    /// self >> 51, which the bounds keep below 2^64.
    @inline(__always)
    var shiftedDown51: UInt64 {
        low >> 51 | high << 13
    }
}
