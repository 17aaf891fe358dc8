/// Text from the network made safe to print.
///
/// Names, ids, topics, hosts and reasons come from peers. Printed raw, an escape sequence in one
/// can clear the operator's terminal or retitle it, a newline can forge a log line or a table
/// row, and a bidi override can make a name read as another. ``escaped(_:)`` turns every such
/// character into a visible `\u{1B}`-style escape; everything else, non-ASCII letters included,
/// passes unchanged. The logger applies it to every line, and the `mesh` tool to every
/// peer-controlled string it prints outside JSON (its JSON output uses JSON's `\uXXXX` instead).
public enum MeshText {
    /// `text` with each character that could move the cursor, end a line or reorder the
    /// display written as `\u{HEX}` (uppercase hex, no padding).
    ///
    /// Escaped: the C0 and C1 controls and DEL (Unicode general category Cc, which includes tab,
    /// newline, carriage return and ESC), the line and paragraph separators U+2028 and U+2029,
    /// and the bidi embeddings, overrides and isolates U+202A-U+202E and U+2066-U+2069.
    /// A backslash is left as it is, so the result is for reading, not for decoding back.
    ///
    /// Text with none of these (the usual case) is returned as it is, without allocating.
    /// - Parameter text: a string that may hold anything.
    /// - Returns: one line of text that prints as it reads.
    public static func escaped(_ text: String) -> String {
        guard mayNeedEscaping(text) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            if needsEscaping(scalar) {
                result += "\\u{"
                result += String(scalar.value, radix: 16, uppercase: true)
                result += "}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Whether `scalar` is one that ``escaped(_:)`` rewrites.
    public static func needsEscaping(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true  // Cc: C0 controls, DEL, C1 controls
        case 0x2028, 0x2029: return true  // line and paragraph separators
        case 0x202A...0x202E, 0x2066...0x2069: return true  // bidi embeddings, overrides, isolates
        default: return false
        }
    }

    /// A pass over the UTF-8 bytes that says whether ``escaped(_:)`` has anything to do.
    ///
    /// Each escaped scalar has a short, fixed UTF-8 form: a byte below 0x20 or DEL; `C2 80` to
    /// `C2 9F` (the C1 controls); `E2 80 A8` to `E2 80 AE` (U+2028 to U+202E) or `E2 81 A6` to
    /// `E2 81 A9` (U+2066 to U+2069). Other lead bytes are skipped without a closer look.
    private static func mayNeedEscaping(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var index = 0
            let count = bytes.count
            while index < count {
                let byte = bytes[index]
                if byte < 0x20 || byte == 0x7F { return true }
                if byte == 0xC2, index + 1 < count, bytes[index + 1] <= 0x9F { return true }
                if byte == 0xE2, index + 2 < count {
                    let second = bytes[index + 1]
                    let third = bytes[index + 2]
                    if second == 0x80, (0xA8...0xAE).contains(third) { return true }
                    if second == 0x81, (0xA6...0xA9).contains(third) { return true }
                }
                index += 1
            }
            return false
        }
    }
}
