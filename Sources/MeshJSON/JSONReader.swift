import Foundation

/// A parsed JSON value, as ``MeshJSONDecoder`` reads it.
///
/// Numbers keep the text they were written as and are converted when a `Decodable` asks for a
/// type, so an `Int64` beyond a `Double`'s 53 bits, or a `Decimal`, loses nothing.
package enum JSONValue {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// What the value is, for error messages.
    var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number(let text): return "the number \(text)"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// A JSON object's members in the order written. The first of two members with one name wins,
/// as with Foundation's decoder.
package final class JSONObject {
    package let members: [(name: String, value: JSONValue)]
    /// Built on the first lookup in a large object (a decoded dictionary, say), so finding each
    /// of n keys costs O(1), not O(n).
    private var index: [String: Int]?

    package init(_ members: [(name: String, value: JSONValue)]) {
        self.members = members
    }

    package subscript(name: String) -> JSONValue? {
        if members.count <= 12 {
            for member in members where member.name == name { return member.value }
            return nil
        }
        if index == nil {
            var built: [String: Int] = [:]
            built.reserveCapacity(members.count)
            for (position, member) in members.enumerated() where built[member.name] == nil {
                built[member.name] = position
            }
            index = built
        }
        return index![name].map { members[$0].value }
    }
}

/// Reads JSON text (RFC 8259) into a ``JSONValue``: strict grammar, UTF-8 checked, nesting
/// bounded, so hostile input ends in a `DecodingError`, never a crash or a deep recursion.
package struct JSONReader {
    /// Deeper than this is refused: each level is a stack frame.
    package static let maximumDepth = 512

    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private var depth = 0

    private init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Parses one whole document; only whitespace may follow the value.
    package static func parse(_ data: Data) throws -> JSONValue {
        try data.withUnsafeBytes { bytes in
            var reader = JSONReader(bytes)
            reader.skipWhitespace()
            let value = try reader.value()
            reader.skipWhitespace()
            guard reader.position == bytes.count else { throw reader.failure("unexpected text after the value") }
            return value
        }
    }

    private func failure(_ reason: String) -> DecodingError {
        DecodingError.dataCorrupted(
            .init(codingPath: [], debugDescription: "The given data was not valid JSON: \(reason) at byte \(position)."))
    }

    private var current: UInt8? { position < bytes.count ? bytes[position] : nil }

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x0A, 0x0D, 0x09: position += 1
            default: return
            }
        }
    }

    private mutating func value() throws -> JSONValue {
        guard let byte = current else { throw failure("unexpected end of data") }
        switch byte {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw failure("unexpected byte 0x\(String(byte, radix: 16))")
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let count = word.utf8CodeUnitCount
        guard position + count <= bytes.count else { throw failure("unexpected end of data") }
        for offset in 0..<count where bytes[position + offset] != word.utf8Start[offset] {
            throw failure("invalid literal")
        }
        position += count
    }

    private mutating func nest() throws {
        depth += 1
        guard depth <= Self.maximumDepth else { throw failure("nested deeper than \(Self.maximumDepth) levels") }
        position += 1
        skipWhitespace()
    }

    private mutating func object() throws -> JSONValue {
        try nest()
        var members: [(name: String, value: JSONValue)] = []
        if current == UInt8(ascii: "}") {
            position += 1
            depth -= 1
            return .object(JSONObject(members))
        }
        while true {
            guard current == UInt8(ascii: "\"") else { throw failure("expected a member name") }
            let name = try string()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw failure("expected ':' after a member name") }
            position += 1
            skipWhitespace()
            members.append((name, try value()))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                position += 1
                depth -= 1
                return .object(JSONObject(members))
            default:
                throw failure("expected ',' or '}' in an object")
            }
        }
    }

    private mutating func array() throws -> JSONValue {
        try nest()
        var elements: [JSONValue] = []
        if current == UInt8(ascii: "]") {
            position += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            elements.append(try value())
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","):
                position += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                position += 1
                depth -= 1
                return .array(elements)
            default:
                throw failure("expected ',' or ']' in an array")
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, returned as written.
    private mutating func number() throws -> String {
        let start = position
        if current == UInt8(ascii: "-") { position += 1 }
        guard let first = current, isDigit(first) else { throw failure("expected a digit") }
        position += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if current == UInt8(ascii: ".") {
            position += 1
            guard let digit = current, isDigit(digit) else { throw failure("expected a digit after '.'") }
            skipDigits()
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            position += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { position += 1 }
            guard let digit = current, isDigit(digit) else { throw failure("expected a digit in an exponent") }
            skipDigits()
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while let byte = current, isDigit(byte) { position += 1 }
    }

    /// A string, its quotes consumed; escapes resolved, UTF-8 checked.
    private mutating func string() throws -> String {
        position += 1
        let start = position
        // The common case: no escapes, so the bytes are the string (and ASCII needs no check).
        var ascii = true
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                defer { position += 1 }
                let utf8 = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
                return ascii ? String(decoding: utf8, as: UTF8.self) : try validated(utf8)
            }
            if byte >= 0x80 { ascii = false }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
            position += 1
        }
        var unescaped = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<position]))
        while true {
            guard let byte = current else { throw failure("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try unescaped.withUnsafeBytes { try validated($0) }
            case UInt8(ascii: "\\"):
                try escape(into: &unescaped)
            case 0..<0x20:
                throw failure("unescaped control character in a string")
            default:
                unescaped.append(byte)
            }
        }
    }

    private func validated(_ utf8: UnsafeRawBufferPointer) throws -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw failure("a string is not valid UTF-8") }
        return text
    }

    private mutating func escape(into output: inout [UInt8]) throws {
        guard let byte = current else { throw failure("unterminated escape") }
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(byte)
        case UInt8(ascii: "b"): output.append(0x08)
        case UInt8(ascii: "f"): output.append(0x0C)
        case UInt8(ascii: "n"): output.append(0x0A)
        case UInt8(ascii: "r"): output.append(0x0D)
        case UInt8(ascii: "t"): output.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = UInt32(try hex4())
            if (0xD800...0xDBFF).contains(scalar) {
                guard current == UInt8(ascii: "\\"), position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u")
                else { throw failure("unpaired surrogate in a \\u escape") }
                position += 2
                let low = UInt32(try hex4())
                guard (0xDC00...0xDFFF).contains(low) else { throw failure("unpaired surrogate in a \\u escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw failure("unpaired surrogate in a \\u escape")
            }
            guard let unicode = Unicode.Scalar(scalar) else { throw failure("invalid \\u escape") }
            output.append(contentsOf: UTF8.encode(unicode)!)
        default:
            throw failure("invalid escape")
        }
    }

    private mutating func hex4() throws -> UInt16 {
        guard position + 4 <= bytes.count else { throw failure("unterminated \\u escape") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw failure("invalid hex digit in a \\u escape")
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }
}
