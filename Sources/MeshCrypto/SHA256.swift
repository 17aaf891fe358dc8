import Foundation

/// SHA-256 (FIPS 180-4), one-shot or streaming.
///
/// ```swift
/// let digest = SHA256.hash(data: bytes)
/// var hasher = SHA256()
/// hasher.update(data: first)
/// hasher.update(data: second)
/// let same = hasher.finalize()
/// ```
///
/// How it works: the hasher is a plain value (the eight state words, one pending partial block and
/// the total length), so copying it forks the computation; ``HMAC`` relies on that to reuse its
/// padded-key states. Whole 64-byte blocks go straight from the caller's buffer to the compression
/// function; only a trailing partial block is copied into the pending buffer. The compression
/// function runs on the CPU's SHA extensions when it has them (our C code in `CMeshSHA`, checked
/// once with `cpuid`) and otherwise on a portable Swift implementation. Nothing is allocated on
/// the heap while hashing.
public struct SHA256: HashFunction {
    /// The digest type SHA-256 produces.
    public typealias Digest = SHA256Digest

    /// SHA-256 consumes 64-byte blocks.
    public static let blockByteCount = 64

    /// The running state words H0...H7.
    var state: Words

    /// Input not yet compressed: the first `pendingCount` bytes of a 64-byte block.
    var pending: Block

    /// How many bytes of `pending` hold input (0..<64).
    var pendingCount: Int

    /// Every byte fed so far; SHA-256 appends the bit length modulo 2^64.
    var totalByteCount: UInt64

    /// Whether blocks go to the SHA-extension compression function instead of the portable one.
    let accelerated: Bool

    /// Creates a hasher in the initial SHA-256 state.
    public init() {
        self.init(accelerated: Self.acceleratorAvailable)
    }

    init(accelerated: Bool) {
        state = Self.initialState
        pending = (0, 0, 0, 0, 0, 0, 0, 0)
        pendingCount = 0
        totalByteCount = 0
        self.accelerated = accelerated
    }

    /// Feeds bytes into the hash.
    ///
    /// - Parameters:
    ///   - bufferPointer: The bytes to absorb; they are not retained.
    public mutating func update(bufferPointer: UnsafeRawBufferPointer) {
        guard var input = bufferPointer.baseAddress, !bufferPointer.isEmpty else { return }
        var remaining = bufferPointer.count
        totalByteCount &+= UInt64(truncatingIfNeeded: remaining)

        if pendingCount > 0 {
            let offset = pendingCount
            let taken = Swift.min(Self.blockByteCount - offset, remaining)
            withUnsafeMutableBytes(of: &pending) { block in
                (block.baseAddress! + offset).copyMemory(from: input, byteCount: taken)
            }
            pendingCount += taken
            input += taken
            remaining -= taken
            guard pendingCount == Self.blockByteCount else { return }
            var block = pending
            withUnsafeBytes(of: &block) { Self.compress(&state, $0.baseAddress!, 1, accelerated: accelerated) }
            pendingCount = 0
        }

        let wholeBlocks = remaining / Self.blockByteCount
        if wholeBlocks > 0 {
            Self.compress(&state, input, wholeBlocks, accelerated: accelerated)
            input += wholeBlocks * Self.blockByteCount
            remaining -= wholeBlocks * Self.blockByteCount
        }

        if remaining > 0 {
            let tail = remaining
            withUnsafeMutableBytes(of: &pending) { block in
                block.baseAddress!.copyMemory(from: input, byteCount: tail)
            }
            pendingCount = tail
        }
    }

    /// Computes the digest of everything fed so far, leaving the hasher usable.
    ///
    /// - Returns: The 32-byte digest.
    public func finalize() -> SHA256Digest {
        var state = self.state
        var block = pending
        let used = pendingCount
        let bitCount = totalByteCount &* 8
        let accelerated = self.accelerated
        withUnsafeMutableBytes(of: &block) { bytes in
            let base = bytes.baseAddress!
            // A single 1 bit, zeros, then the 64-bit big-endian message length in bits; when the
            // length no longer fits after the 1 bit, it goes in an extra all-padding block.
            bytes[used] = 0x80
            if used + 1 > 56 {
                (base + used + 1).initializeMemory(as: UInt8.self, repeating: 0, count: 63 - used)
                Self.compress(&state, UnsafeRawPointer(base), 1, accelerated: accelerated)
                base.initializeMemory(as: UInt8.self, repeating: 0, count: 56)
            } else {
                (base + used + 1).initializeMemory(as: UInt8.self, repeating: 0, count: 55 - used)
            }
            bytes.storeBytes(of: bitCount.bigEndian, toByteOffset: 56, as: UInt64.self)
            Self.compress(&state, UnsafeRawPointer(base), 1, accelerated: accelerated)
        }
        return SHA256Digest(state: state)
    }
}
