import Foundation
import Mesh

#if canImport(CMeshCRC)
internal import CMeshCRC
#endif

/// CRC-32 as MCAP (and zlib, PNG, Ethernet) define it: polynomial 0xEDB88320 (reflected), initial
/// value and final XOR 0xFFFFFFFF.
///
/// On x86 CPUs with the carry-less multiply, runs of 64 bytes and more go through our C folding
/// code (`Sources/CMeshCRC`, several GB/s); everything else is table-driven, eight bytes a step
/// ("slicing by 8").
package struct CRC32: Sendable {
    /// The running register, before the final XOR.
    private var register: UInt32 = 0xFFFF_FFFF

    package init() {}

    /// The checksum of everything passed to ``update(_:)`` so far.
    package var value: UInt32 { register ^ 0xFFFF_FFFF }

    /// The checksum of `bytes` in one call.
    package static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes)
        return crc.value
    }

    /// The checksum of `bytes` in one call.
    package static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// Adds `bytes` to the checksum.
    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        var done = 0
        #if canImport(CMeshCRC)
        if bytes.count >= 64, CRC32.acceleratorAvailable {
            done = bytes.count & ~15
            register = cmesh_crc32_clmul(register, base, done)
        }
        #endif
        updatePortable(UnsafeRawBufferPointer(rebasing: bytes[done...]))
    }

    /// Adds `bytes` with the table-driven code only.
    mutating func updatePortable(_ bytes: UnsafeRawBufferPointer) {
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        var crc = register
        CRC32.tables.withUnsafeBufferPointer { table in
            while remaining >= 8 {
                let low = crc ^ UInt32(littleEndian: pointer.loadUnaligned(as: UInt32.self))
                let high = UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                crc =
                    table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                pointer += 8
                remaining -= 8
            }
            while remaining > 0 {
                crc = table[Int((crc ^ UInt32(pointer.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                pointer += 1
                remaining -= 1
            }
        }
        register = crc
    }

    /// Adds `bytes` to the checksum.
    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Whether this CPU has what the C folding code needs, asked once; `MESH_CRC32_PORTABLE=1`
    /// turns it off (the tests run both paths).
    static let acceleratorAvailable: Bool = {
        #if canImport(CMeshCRC)
        ProcessInfo.processInfo.environment["MESH_CRC32_PORTABLE"] == nil && cmesh_crc32_clmul_available() != 0
        #else
        false
        #endif
    }()

    /// The checksum of `bytes` without the C folding code (for tests comparing both paths).
    static func portableChecksum(_ bytes: [UInt8]) -> UInt32 {
        var crc = CRC32()
        bytes.withUnsafeBytes { crc.updatePortable($0) }
        return crc.value
    }

    /// The checksum of `a` followed by `b`, from the checksum of each and `b`'s length, without
    /// the bytes: the writer hashes each chunk once and extends the data section's CRC with it.
    ///
    /// Appending `n` bytes multiplies the message polynomial by x^(8n); so the combined register
    /// is `a`'s times x^(8n) mod P, plus `b`'s (the pre- and post-conditioning cancel out).
    package static func combine(_ a: UInt32, _ b: UInt32, length: Int) -> UInt32 {
        guard length > 0 else { return a }
        return multiplyModP(powerOfX(eightTimes: UInt64(length)), a) ^ b
    }

    /// Extends `self` as if `length` bytes with checksum `crc` had been passed to ``update(_:)``.
    package mutating func append(checksum crc: UInt32, length: Int) {
        register = CRC32.combine(value, crc, length: length) ^ 0xFFFF_FFFF
    }

    /// a·b mod P, in the reflected bit order the register uses (bit 31 is x^0).
    private static func multiplyModP(_ a: UInt32, _ b: UInt32) -> UInt32 {
        var mask: UInt32 = 1 << 31
        var product: UInt32 = 0
        var b = b
        while mask != 0 {
            if a & mask != 0 { product ^= b }
            if a & (mask &- 1) == 0 { break }  // no higher powers of x left in a
            mask >>= 1
            b = b & 1 != 0 ? (b >> 1) ^ 0xEDB8_8320 : b >> 1
        }
        return product
    }

    /// x^(8n) mod P, by squaring: powers[k] is x^(2^k) mod P.
    private static func powerOfX(eightTimes n: UInt64) -> UInt32 {
        var result: UInt32 = 1 << 31  // x^0
        var n = n
        var k = 3  // x^(8n) = x^(2^3 · n)
        while n != 0 {
            if n & 1 != 0 { result = multiplyModP(powers[k % 32], result) }
            n >>= 1
            k += 1
        }
        return result
    }

    /// x^(2^k) mod P for k in 0..<32. The order of x modulo P divides 2^32 − 1, so x^(2^32) = x
    /// and the powers repeat with period 32: `powers[k % 32]` serves every k.
    private static let powers: [UInt32] = {
        var powers = [UInt32](repeating: 0, count: 32)
        powers[0] = 1 << 30  // x^1
        for k in 1..<32 { powers[k] = multiplyModP(powers[k - 1], powers[k - 1]) }
        return powers
    }()

    /// Eight 256-entry tables: table 0 is the classic byte-at-a-time table, table k advances a
    /// byte k more positions through the register.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            tables[byte] = crc
        }
        for byte in 0..<256 {
            for k in 1..<8 {
                let previous = tables[(k - 1) * 256 + byte]
                tables[k * 256 + byte] = tables[Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return tables
    }()
}
