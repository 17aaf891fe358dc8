extension SHA256 {
    /// The eight 32-bit state words H0...H7, kept inline so the hasher never allocates.
    typealias Words = (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32)

    /// One 64-byte input block as inline storage.
    typealias Block = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    /// H0...H7 before any input: the first 32 bits of the fractional parts of the square roots of
    /// the first eight primes (FIPS 180-4, 5.3.3).
    static let initialState: Words = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )

    /// The round constants K0...K63: the first 32 bits of the fractional parts of the cube roots of
    /// the first 64 primes (FIPS 180-4, 4.2.2).
    static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    /// Runs the compression function over consecutive 64-byte blocks.
    ///
    /// - Parameters:
    ///   - state: The state words, updated in place.
    ///   - blocks: The first byte of `count` blocks; no alignment needed.
    ///   - count: How many blocks to compress.
    ///   - accelerated: Whether to use the SHA-extension code; only true when the CPU has it.
    @inline(__always)
    static func compress(_ state: inout Words, _ blocks: UnsafeRawPointer, _ count: Int, accelerated: Bool) {
        if accelerated {
            compressAccelerated(&state, blocks, count)
        } else {
            compressPortable(&state, blocks, count)
        }
    }

    /// The compression function in portable Swift: FIPS 180-4, 6.2.2, eight rounds per loop pass.
    ///
    /// - Parameters:
    ///   - state: The state words, updated in place.
    ///   - blocks: The first byte of `count` blocks; no alignment needed.
    ///   - count: How many blocks to compress.
    static func compressPortable(_ state: inout Words, _ blocks: UnsafeRawPointer, _ count: Int) {
        roundConstants.withUnsafeBufferPointer { constants in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
                let k = constants.baseAddress!
                let w = schedule.baseAddress!
                var (h0, h1, h2, h3, h4, h5, h6, h7) = state
                var block = blocks
                for _ in 0..<count {
                    for t in 0..<16 {
                        w[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: 4 * t, as: UInt32.self))
                    }
                    for t in 16..<64 {
                        w[t] = smallSigma1(w[t - 2]) &+ w[t - 7] &+ smallSigma0(w[t - 15]) &+ w[t - 16]
                    }

                    var (a, b, c, d, e, f, g, h) = (h0, h1, h2, h3, h4, h5, h6, h7)
                    var t = 0
                    while t < 64 {
                        // Instead of shifting eight variables every round, each round writes its
                        // new `a` and `e` over the old `h` and `d`, and the names rotate.
                        round(a, b, c, &d, e, f, g, &h, k[t] &+ w[t])
                        round(h, a, b, &c, d, e, f, &g, k[t + 1] &+ w[t + 1])
                        round(g, h, a, &b, c, d, e, &f, k[t + 2] &+ w[t + 2])
                        round(f, g, h, &a, b, c, d, &e, k[t + 3] &+ w[t + 3])
                        round(e, f, g, &h, a, b, c, &d, k[t + 4] &+ w[t + 4])
                        round(d, e, f, &g, h, a, b, &c, k[t + 5] &+ w[t + 5])
                        round(c, d, e, &f, g, h, a, &b, k[t + 6] &+ w[t + 6])
                        round(b, c, d, &e, f, g, h, &a, k[t + 7] &+ w[t + 7])
                        t += 8
                    }

                    h0 &+= a
                    h1 &+= b
                    h2 &+= c
                    h3 &+= d
                    h4 &+= e
                    h5 &+= f
                    h6 &+= g
                    h7 &+= h
                    block += 64
                }
                state = (h0, h1, h2, h3, h4, h5, h6, h7)
            }
        }
    }

    /// One round: `d` becomes the next `e` and `h` the next `a`.
    @inline(__always)
    static func round(
        _ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
        _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32,
        _ constantPlusWord: UInt32
    ) {
        let t1 = h &+ bigSigma1(e) &+ choose(e, f, g) &+ constantPlusWord
        d &+= t1
        h = t1 &+ bigSigma0(a) &+ majority(a, b, c)
    }

    @inline(__always)
    static func rotateRight(_ x: UInt32, _ n: UInt32) -> UInt32 {
        (x &>> n) | (x &<< (32 &- n))
    }

    /// Ch(x, y, z): for each bit, y where x is 1 and z where x is 0.
    @inline(__always)
    static func choose(_ x: UInt32, _ y: UInt32, _ z: UInt32) -> UInt32 {
        z ^ (x & (y ^ z))
    }

    /// Maj(x, y, z): for each bit, the value held by at least two of the three.
    @inline(__always)
    static func majority(_ x: UInt32, _ y: UInt32, _ z: UInt32) -> UInt32 {
        (x & y) | (z & (x | y))
    }

    @inline(__always)
    static func bigSigma0(_ x: UInt32) -> UInt32 {
        rotateRight(x, 2) ^ rotateRight(x, 13) ^ rotateRight(x, 22)
    }

    @inline(__always)
    static func bigSigma1(_ x: UInt32) -> UInt32 {
        rotateRight(x, 6) ^ rotateRight(x, 11) ^ rotateRight(x, 25)
    }

    @inline(__always)
    static func smallSigma0(_ x: UInt32) -> UInt32 {
        rotateRight(x, 7) ^ rotateRight(x, 18) ^ (x &>> 3)
    }

    @inline(__always)
    static func smallSigma1(_ x: UInt32) -> UInt32 {
        rotateRight(x, 17) ^ rotateRight(x, 19) ^ (x &>> 10)
    }
}
