import Foundation
import MeshCrypto
import Synchronization

/// Turns the text of a mesh key into the key the handshake uses, and judges whether the text is
/// hard enough to guess.
///
/// A key is text (what `mesh keygen` prints, a file's contents, `$MESH_AUTHKEY`): at least
/// ``minimumLength`` bytes of UTF-8. It is stretched with PBKDF2-HMAC-SHA256 (100,000 rounds,
/// a fixed salt) before use, so that a recorded handshake costs an offline guesser that many
/// MACs per guess. Every process stretches each key once (about 50 ms) and keeps the result.
///
/// Stretching does not save a guessable key: a passphrase of four common words falls to a
/// dictionary in seconds, whatever the rounds. So a key must also reach ``minimumStrength`` by
/// ``estimatedStrength(_:)``, unless the program was told to accept a weak one on purpose
/// (`allowWeakKey` in the node's or coordinator's configuration, `--allow-weak-key`, or
/// `MESH_ALLOW_WEAK_KEY=1`).
public enum MeshKey {
    /// The shortest key accepted, in bytes of UTF-8.
    public static let minimumLength = 16
    /// The estimated strength, in bits, a key must reach unless weak keys are allowed.
    public static let minimumStrength = 128
    /// PBKDF2 iterations; part of the protocol (every side must use the same).
    static let rounds = 100_000
    static let salt = Array("swift-mesh/2 authkey".utf8)

    private static let cache = Mutex<[String: SymmetricKey]>([:])

    /// `$MESH_ALLOW_WEAK_KEY` is `1`: the default of the configurations' `allowWeakKey`.
    public static var allowWeakFromEnvironment: Bool {
        ProcessInfo.processInfo.environment["MESH_ALLOW_WEAK_KEY"] == "1"
    }

    /// Checks that `text` is long enough to be a key and, unless `allowWeak`, hard enough to guess.
    ///
    /// - Parameters:
    ///   - text: the key's text.
    ///   - allowWeak: accept a key under ``minimumStrength`` (one under ``minimumLength`` is
    ///     refused all the same).
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` or
    ///   ``MeshError/guessableKey(estimatedBits:minimumBits:)``, both naming `mesh keygen`.
    public static func validate(_ text: String, allowWeak: Bool = allowWeakFromEnvironment) throws(MeshError) {
        let length = text.utf8.count
        if length < minimumLength { throw .weakKey(length: length, minimum: minimumLength) }
        guard !allowWeak else { return }
        let bits = estimatedStrength(text)
        if bits < minimumStrength { throw .guessableKey(estimatedBits: bits, minimumBits: minimumStrength) }
    }

    /// The stretched key for `text`, or `nil` for none (an open mesh): `nil` and "" mean no key.
    ///
    /// Only the length is checked here; the strength is the configuration's business (see
    /// ``validate(_:allowWeak:)``), checked once when a node or coordinator starts.
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` for a key under ``minimumLength`` bytes.
    package static func stretched(_ text: String?) throws(MeshError) -> SymmetricKey? {
        guard let text, !text.isEmpty else { return nil }
        try validate(text, allowWeak: true)
        if let known = cache.withLock({ $0[text] }) { return known }
        let key = PBKDF2<SHA256>.deriveKey(password: Array(text.utf8), salt: salt, rounds: rounds, outputByteCount: 32)
        cache.withLock { cache in
            if cache.count > 64 { cache.removeAll() }  // bounded: a process uses one or two keys
            cache[text] = key
        }
        return key
    }
}

// MARK: Strength

extension MeshKey {
    /// A conservative estimate of how many bits of guessing `text` costs: low for what people
    /// type, full for random text.
    ///
    /// - 64 hex digits or 44 base64 characters of 32 bytes (what `mesh keygen` and
    ///   `openssl rand -hex 32` print) count as 256 bits; any other text of hex digits only (some
    ///   of them letters), 4 bits a digit.
    /// - Other text is cut into runs of letters, runs of digits, and single other characters.
    ///   Each character is worth log2 of the character classes the text uses (lowercase 26,
    ///   uppercase 26, digits 10, other ASCII 33, anything else 256: 5.9 bits for lowercase
    ///   and spaces), except that a run of three or more letters in one case (or capitalized)
    ///   may be a dictionary word, or words run together: at most 13 bits (a word of an
    ///   8,192-word list) per eight letters begun. A run, or a character other than a letter or
    ///   digit, seen before in the text, and a character repeating the one before it, count 1 bit.
    /// - Whatever the above gives, text of length L that uses only d distinct characters counts
    ///   at most L·log2(d) bits plus what choosing those d characters costs; text that repeats a
    ///   piece of at most half its length counts the piece, and a few bits for the copies.
    ///
    /// So "correct horse battery staple" is about 59 bits; ten random words, or 32 random
    /// letters and digits of both cases, pass 128.
    /// - Parameter text: a key's text.
    /// - Returns: bits, rounded down.
    public static func estimatedStrength(_ text: String) -> Int {
        Int(strength(Array(text.unicodeScalars)).rounded(.down))
    }

    private static func strength(_ scalars: [Unicode.Scalar]) -> Double {
        guard !scalars.isEmpty else { return 0 }
        // Text that repeats a shorter piece costs the piece and the count of copies.
        let period = smallestPeriod(scalars)
        if period <= scalars.count / 2 {
            let copies = (Double(scalars.count) / Double(period)).rounded(.up)
            return strength(Array(scalars[..<period])) + log2(copies)
        }
        let distinct = Set(scalars)
        var pool = 0.0
        if distinct.contains(where: { ("a"..."z").contains($0) }) { pool += 26 }
        if distinct.contains(where: { ("A"..."Z").contains($0) }) { pool += 26 }
        if distinct.contains(where: { ("0"..."9").contains($0) }) { pool += 10 }
        if distinct.contains(where: { $0.isASCII && !$0.isASCIIAlphanumeric }) { pool += 33 }
        if distinct.contains(where: { !$0.isASCII }) { pool += 256 }
        let estimate: Double
        if scalars.allSatisfy(\.isHexDigit), !scalars.allSatisfy({ ("0"..."9").contains($0) }) {
            estimate = scalars.count == 2 * MeshKeyFile.newKeyBytes ? 256 : 4 * Double(scalars.count)
        } else if isBase64OfNewKey(scalars) {
            estimate = 256
        } else {
            estimate = pieceEstimate(scalars, pool: pool)
        }
        // Few distinct characters make a small alphabet, whatever the structure.
        let alphabet = Double(scalars.count) * log2(Double(max(distinct.count, 2))) + Double(distinct.count) * log2(pool)
        return min(estimate, alphabet)
    }

    /// The shortest p such that each character equals the one p before it (the text's length
    /// when there is none shorter), by the prefix function: linear in the length.
    private static func smallestPeriod(_ scalars: [Unicode.Scalar]) -> Int {
        var border = [Int](repeating: 0, count: scalars.count)
        var length = 0
        for index in scalars.indices.dropFirst() {
            while length > 0, scalars[index] != scalars[length] { length = border[length - 1] }
            if scalars[index] == scalars[length] { length += 1 }
            border[index] = length
        }
        return scalars.count - (border.last ?? 0)
    }

    /// 44 characters of standard base64 (one `=`) that decode to 32 bytes.
    private static func isBase64OfNewKey(_ scalars: [Unicode.Scalar]) -> Bool {
        guard scalars.count == 44, scalars[43] == "=", scalars[42] != "=" else { return false }
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        return Data(base64Encoded: text)?.count == MeshKeyFile.newKeyBytes
    }

    /// The runs-and-characters estimate of ``estimatedStrength(_:)``; `pool` is the size of the
    /// character classes the text uses.
    private static func pieceEstimate(_ scalars: [Unicode.Scalar], pool: Double) -> Double {
        enum Kind { case letters, digits, other }
        func kind(_ scalar: Unicode.Scalar) -> Kind {
            scalar.isASCIILetter ? .letters : ("0"..."9").contains(scalar) ? .digits : .other
        }
        let perCharacter = log2(pool)
        var bits = 0.0
        var seenPieces: Set<[Unicode.Scalar]> = []
        var index = 0
        while index < scalars.count {
            let first = kind(scalars[index])
            var end = index + 1
            if first != .other {
                while end < scalars.count, kind(scalars[end]) == first { end += 1 }
            }
            let piece = Array(scalars[index..<end])
            index = end
            // A word, a number or a separator used again adds a bit, not its worth again.
            let isNew = seenPieces.insert(piece).inserted
            if !isNew, piece.count > 1 || first == .other {
                bits += 1
                continue
            }
            // Each character repeating the one before it adds a bit, not a character's worth.
            var changes = 1
            for position in piece.indices.dropFirst() where piece[position] != piece[position - 1] { changes += 1 }
            let plain = Double(changes) * perCharacter + Double(piece.count - changes)
            let upper = piece.filter { ("A"..."Z").contains($0) }.count
            let oneCase = upper == 0 || upper == piece.count || (upper == 1 && ("A"..."Z").contains(piece[0]))
            if first == .letters, piece.count >= 3, oneCase {
                // Maybe a dictionary word, or words run together.
                let words = 13 * (Double(piece.count) / 8).rounded(.up) + (upper > 0 ? 1 : 0)
                bits += min(plain, words)
            } else {
                bits += plain
            }
        }
        return bits
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    fileprivate var isASCIIAlphanumeric: Bool { isASCIILetter || ("0"..."9").contains(self) }
    fileprivate var isHexDigit: Bool { ("0"..."9").contains(self) || ("a"..."f").contains(self) || ("A"..."F").contains(self) }
}
