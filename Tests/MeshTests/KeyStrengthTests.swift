import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// `MeshKey.estimatedStrength`: what people type is estimated low, random text high, and what
/// `mesh keygen` prints always passes.
@Suite("Key strength")
struct KeyStrengthTests {
    /// Keys a person might pick: every one must fall under the 128 bits a key needs.
    static let guessable = [
        "correct horse battery staple",  // the protocol document's example, until it was replaced
        "correct-horse-battery-staple",
        "Correct Horse Battery Staple",
        "correcthorsebatterystaple",
        "CORRECT HORSE BATTERY STAPLE 2024",
        "correct horse battery staple correct horse battery staple",
        "the mesh key for security tests",
        "the right key for services",
        "open sesame, a long enough key",
        "python-client-test-key-0123456789",
        "Tr0ub4dor&3-Tr0ub4dor&3",
        "passwordpasswordpassword",
        String(repeating: "a", count: 64),
        String(repeating: "0", count: 64),  // hex of 32 zero bytes
        String(repeating: "12", count: 32),
        String(repeating: "deadbeef", count: 8),
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=",
    ]

    @Test("passphrases of a few words, repeated text and hex of a pattern are estimated under 128 bits")
    func guessableKeys() {
        for key in Self.guessable {
            let bits = MeshKey.estimatedStrength(key)
            #expect(bits < MeshKey.minimumStrength, "\"\(key)\" estimated at \(bits) bits")
            #expect(throws: MeshError.guessableKey(estimatedBits: bits, minimumBits: 128)) {
                try MeshKey.validate(key, allowWeak: false)
            }
            // Allowed on purpose, it is taken (it is long enough).
            #expect(throws: Never.self) { try MeshKey.validate(key, allowWeak: true) }
        }
        // The example's four words score about what a 2,048-word list gives them, not more.
        #expect(MeshKey.estimatedStrength("correct horse battery staple") <= 60)
        // Too short stays refused whatever is allowed.
        #expect(throws: MeshError.weakKey(length: 3, minimum: 16)) { try MeshKey.validate("abc", allowWeak: true) }
    }

    @Test("every key mesh keygen prints passes, hex or base64; so do long random texts of mixed classes")
    func strongKeys() {
        for _ in 0..<500 {
            for key in [MeshKeyFile.newKey(), MeshKeyFile.newKey(.base64)] {
                #expect(MeshKey.estimatedStrength(key) >= MeshKey.minimumStrength, "\(key)")
                #expect(throws: Never.self) { try MeshKey.validate(key, allowWeak: false) }
            }
        }
        var generator = SplitMix64(seed: 22)
        let alphanumerics = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        let printable = (33...126).map { Character(Unicode.Scalar(UInt8($0))) }
        for _ in 0..<300 {
            let mixed = String((0..<32).map { _ in alphanumerics.randomElement(using: &generator)! })
            #expect(MeshKey.estimatedStrength(mixed) >= 128, "\(mixed): \(MeshKey.estimatedStrength(mixed))")
            let symbols = String((0..<30).map { _ in printable.randomElement(using: &generator)! })
            #expect(MeshKey.estimatedStrength(symbols) >= 128, "\(symbols): \(MeshKey.estimatedStrength(symbols))")
            let hex = String((0..<32).map { _ in Array("0123456789abcdef").randomElement(using: &generator)! })
            #expect(MeshKey.estimatedStrength(hex) == 128, "\(hex)")  // openssl rand -hex 16
        }
        // Ten words from a long list, with separators: a passphrase done right.
        let words = "ample crumb veteran sandal glider orbit tundra fossil quench lantern"
        #expect(MeshKey.estimatedStrength(words) >= 128, "\(MeshKey.estimatedStrength(words))")
    }

    @Test("the estimate never traps: empty, huge, non-ASCII and control-character text")
    func anyText() {
        #expect(MeshKey.estimatedStrength("") == 0)
        _ = MeshKey.estimatedStrength(String(repeating: "x9#", count: 100_000))
        #expect(MeshKey.estimatedStrength("正确的马电池订书钉正确的马") < 128)
        _ = MeshKey.estimatedStrength("\u{1B}[2J\u{07}\u{0}\u{7F}\u{202E}")
    }
}
