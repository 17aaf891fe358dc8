import Foundation

/// Any JSON value, so JSON text from the command line can be sent as an `Encodable` value whose
/// encoding reproduces it, and a received JSON payload can be printed back.
///
/// Whole numbers that fit an `Int64` stay integers (`1` encodes as `1`, not `1.0`); other numbers
/// are `Double`s. Object keys come back sorted when encoded with `.sortedKeys`.
enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Reads JSON text; any value is accepted at the top level, not only objects and arrays.
    ///
    /// - Throws: a `DecodingError` (or the `JSONSerialization` error) saying what is wrong.
    init(parsing data: Data) throws {
        // JSONSerialization is the validity check (its errors name the offending position); the
        // decoder then builds the value with integers told apart from other numbers.
        _ = try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
        self = try JSONDecoder().decode(JSONValue.self, from: data)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension JSONValue {
    /// A short reason for a parse failure, fit for one line of output.
    static func describe(_ error: any Error) -> String {
        let text: String
        if let decoding = error as? DecodingError {
            switch decoding {
            case .dataCorrupted(let context): text = context.underlyingError.map { "\($0)" } ?? context.debugDescription
            default: text = "\(decoding)"
            }
        } else {
            let nsError = error as NSError
            text = (nsError.userInfo[NSDebugDescriptionErrorKey] as? String) ?? nsError.localizedDescription
        }
        return text.replacingOccurrences(of: "\n", with: " ")
    }
}
