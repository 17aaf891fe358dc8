import Foundation
import Mesh

/// Turns numbers and rows into the text the commands print. docs/CLI.md shows each format.
enum Format {
    /// Columns separated by two spaces, each as wide as its widest cell; the last column is not
    /// padded, and the columns in `rightAligned` are padded on the left.
    /// Prints `entries` as JSON with `--json`, else as a table with `header` and one row an entry.
    static func printListing<Entry: Encodable>(
        _ entries: [Entry], _ arguments: ParsedArguments, header: [String], row: (Entry) -> [String]
    ) {
        if arguments.has("--json") {
            print(json(entries))
        } else {
            print(table(header, entries.map(row)))
        }
    }

    static func table(_ header: [String], _ rows: [[String]], rightAligned: Set<Int> = []) -> String {
        columns([header] + rows, rightAligned: rightAligned)
    }

    /// Rows aligned in columns as ``table(_:_:rightAligned:)`` does, without a header.
    ///
    /// Every cell is escaped first (``text(_:)``): names, ids, topics and addresses come from
    /// the network, and a newline or an escape code in one must not forge a row or reach the
    /// terminal.
    static func columns(_ cells: [[String]], rightAligned: Set<Int> = []) -> String {
        let all = cells.map { $0.map(text) }
        var widths = Array(repeating: 0, count: all.map(\.count).max() ?? 0)
        for row in all {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        return all.map { row in
            row.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                if rightAligned.contains(column) { return padding + cell }
                return column == row.count - 1 ? cell : cell + padding
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A string from the network (a name, id, topic, host or reason) as it may be printed:
    /// control characters, line separators and bidi overrides written as `\u{1B}`-style escapes.
    static func text(_ string: String) -> String {
        MeshText.escaped(string)
    }

    /// `42s`, `3m07s`, `2h05m`, `4d03h`.
    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.isNaN ? 0 : min(max(0, seconds), 1e15).rounded(.down))
        if total < 60 { return "\(total)s" }
        if total < 3600 { return String(format: "%dm%02ds", total / 60, total % 60) }
        if total < 86400 { return String(format: "%dh%02dm", total / 3600, total % 3600 / 60) }
        return String(format: "%dd%02dh", total / 86400, total % 86400 / 3600)
    }

    /// `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB` (powers of two).
    static func bytes(_ count: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = max(0, count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(Int(value)) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    /// `5`, or `2.5` when there is a fraction (`1e+20` past what a whole number prints as).
    static func seconds(_ value: Double) -> String {
        guard abs(value) < 1e15 else { return String(format: "%g", value) }
        return value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }

    /// A number as given on a command line: `2`, `0.5`, `1e-06`.
    static func number(_ value: Double) -> String {
        abs(value) < 1e15 && value == value.rounded() ? String(Int(value)) : String(format: "%g", value)
    }

    /// A long stretch of time for a person: `42.5 s`, `3.2 hours`, `12.0 days`, `584.6 years`.
    static func span(_ seconds: Double) -> String {
        switch seconds {
        case ..<3600: return String(format: "%.1f s", seconds)
        case ..<(3 * 86_400): return String(format: "%.1f hours", seconds / 3600)
        case ..<(365.25 * 86_400): return String(format: "%.1f days", seconds / 86_400)
        default: return String(format: "%.1f years", seconds / (365.25 * 86_400))
        }
    }

    /// A number with a fixed count of decimals.
    static func fixed(_ value: Double, decimals: Int) -> String {
        String(format: "%.\(decimals)f", value)
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    private static let compactEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Pretty-printed JSON with sorted keys, for `--json` output.
    static func json<T: Encodable>(_ value: T) -> String {
        encode(value, with: encoder)
    }

    /// JSON on one line with sorted keys, for line-per-event output.
    static func compactJSON<T: Encodable>(_ value: T) -> String {
        encode(value, with: compactEncoder)
    }

    private static func encode<T: Encodable>(_ value: T, with encoder: JSONEncoder) -> String {
        do {
            return jsonEscapingTheRest(String(decoding: try encoder.encode(value), as: UTF8.self))
        } catch {
            // The values here are plain strings, integers and finite numbers.
            preconditionFailure("could not encode \(T.self) as JSON: \(error)")
        }
    }

    /// `json` with the characters JSONEncoder leaves raw but a terminal acts on (DEL, the C1
    /// controls, U+2028/2029, bidi overrides) written as `\uXXXX` escapes.
    ///
    /// They can only stand inside strings, where `\uXXXX` means the same character, so the JSON
    /// reads back identical. Text without them is returned as it is.
    static func jsonEscapingTheRest(_ json: String) -> String {
        // DEL, or the lead byte of U+0080...U+00BF or U+2000...U+2FFF: otherwise nothing to do.
        guard json.utf8.contains(where: { $0 == 0x7F || $0 == 0xC2 || $0 == 0xE2 }) else { return json }
        var result = ""
        result.reserveCapacity(json.utf8.count + 16)
        for scalar in json.unicodeScalars {
            if scalar.value >= 0x7F, MeshText.needsEscaping(scalar) {
                result += String(format: "\\u%04x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
