import Foundation

/// A small deterministic random number generator (SplitMix64), so a failing run can be replayed.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator whose whole output is determined by `seed`.
    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    /// `count` random bytes.
    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &self) }
    }

    /// A seed from the `MESH_CRYPTO_SEED` environment variable, or a fresh random one.
    static func seed(named name: String) -> UInt64 {
        if let text = ProcessInfo.processInfo.environment["MESH_CRYPTO_SEED"], let seed = UInt64(text) {
            print("\(name): seed \(seed) (from MESH_CRYPTO_SEED)")
            return seed
        }
        let seed = UInt64.random(in: .min ... .max)
        print("\(name): seed \(seed) (replay with MESH_CRYPTO_SEED=\(seed))")
        return seed
    }
}
