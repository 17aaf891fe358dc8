import Foundation

/// The default codec's encoder: any `Encodable` to JSON that Foundation's `JSONDecoder` (and any
/// JSON reader) reads, several times faster than Foundation's `JSONEncoder` for small messages.
///
/// It writes what Foundation's encoder writes with the settings ``JSONCodec`` uses: dates as ISO
/// 8601 strings, `Data` as base64, `URL` as its absolute string, slashes unescaped, whole
/// doubles without a fraction (`2`, as Foundation does), members in the order they were encoded.
/// A non-finite number is an `EncodingError`, as is a top-level value that encodes nothing.
package struct MeshJSONEncoder {
    package init() {}

    package func encode<T: Encodable>(_ value: T) throws -> Data {
        guard let encoded = try JSONValueEncoder.box(value, path: [], topLevel: true) else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "Top-level \(T.self) did not encode any values."))
        }
        var writer = JSONWriter()
        writer.write(encoded)
        return Data(writer.bytes)
    }
}

/// A value being encoded. Containers are classes, so a nested container handed out before its
/// parent is finished still writes into the tree.
enum JSONEncoded {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    /// Already JSON text: a `Float` or a `Decimal`.
    case number(String)
    case string(String)
    case array(JSONArrayBuilder)
    case object(JSONObjectBuilder)
    /// A `superEncoder()` whose value is read when the tree is written.
    case pending(JSONValueEncoder)
}

final class JSONArrayBuilder {
    var elements: [JSONEncoded] = []
}

final class JSONObjectBuilder {
    private(set) var members: [(name: String, value: JSONEncoded)] = []
    /// Built once the object grows past a few members, so encoding a large dictionary stays linear.
    private var index: [String: Int]?

    init() {
        members.reserveCapacity(8)
    }

    /// Sets a member; encoding one name twice keeps the position of the first and the last value.
    func set(_ name: String, _ value: JSONEncoded) {
        if let position = position(of: name) {
            members[position].value = value
            return
        }
        members.append((name, value))
        if index != nil {
            index![name] = members.count - 1
        } else if members.count > 12 {
            index = Dictionary(members.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
        }
    }

    private func position(of name: String) -> Int? {
        if let index { return index[name] }
        for position in members.indices where members[position].name == name { return position }
        return nil
    }
}

/// The `Encoder` an `Encodable`'s `encode(to:)` is handed; holds what it encoded.
final class JSONValueEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    fileprivate(set) var result: JSONEncoded?

    init(path: [any CodingKey]) {
        self.codingPath = path
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: JSONObjectBuilder
        if case .object(let existing) = result {
            object = existing
        } else {
            object = JSONObjectBuilder()
            result = .object(object)
        }
        return KeyedEncodingContainer(JSONKeyedEncodingContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: JSONArrayBuilder
        if case .array(let existing) = result {
            array = existing
        } else {
            array = JSONArrayBuilder()
            result = .array(array)
        }
        return JSONUnkeyedEncodingContainer(array: array, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        JSONSingleValueEncodingContainer(encoder: self)
    }

    fileprivate func set(_ value: JSONEncoded) { result = value }

    /// Encodes `value`: the types Foundation's encoder treats specially first, then its own
    /// `encode(to:)`. A nested value that encodes nothing becomes `{}`, as with Foundation; at the
    /// top level that is `nil` (an error for the caller).
    static func box<T: Encodable>(_ value: T, path: [any CodingKey], topLevel: Bool = false) throws -> JSONEncoded? {
        if T.self == Date.self { return .string((value as! Date).formatted(.iso8601)) }
        if T.self == Data.self { return .string((value as! Data).base64EncodedString()) }
        if T.self == URL.self { return .string((value as! URL).absoluteString) }
        if T.self == Decimal.self { return .number((value as! Decimal).description) }
        let encoder = JSONValueEncoder(path: path)
        try value.encode(to: encoder)
        if let result = encoder.result { return result }
        return topLevel ? nil : .object(JSONObjectBuilder())
    }

    static func double(_ value: Double, path: @autoclosure () -> [any CodingKey]) throws -> JSONEncoded {
        guard value.isFinite else { throw nonFinite(value, path: path()) }
        return .double(value)
    }

    static func float(_ value: Float, path: @autoclosure () -> [any CodingKey]) throws -> JSONEncoded {
        guard value.isFinite else { throw nonFinite(value, path: path()) }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return .number(text)
    }

    private static func nonFinite(_ value: Any, path: [any CodingKey]) -> EncodingError {
        .invalidValue(value, .init(codingPath: path, debugDescription: "Unable to encode \(value) directly in JSON."))
    }
}

struct JSONKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: JSONObjectBuilder
    let codingPath: [any CodingKey]

    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    mutating func encodeNil(forKey key: Key) { object.set(key.stringValue, .null) }
    mutating func encode(_ value: Bool, forKey key: Key) { object.set(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) { object.set(key.stringValue, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        object.set(key.stringValue, try JSONValueEncoder.double(value, path: path(key)))
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        object.set(key.stringValue, try JSONValueEncoder.float(value, path: path(key)))
    }
    mutating func encode(_ value: Int, forKey key: Key) { object.set(key.stringValue, .integer(Int64(value))) }
    mutating func encode(_ value: Int8, forKey key: Key) { object.set(key.stringValue, .integer(Int64(value))) }
    mutating func encode(_ value: Int16, forKey key: Key) { object.set(key.stringValue, .integer(Int64(value))) }
    mutating func encode(_ value: Int32, forKey key: Key) { object.set(key.stringValue, .integer(Int64(value))) }
    mutating func encode(_ value: Int64, forKey key: Key) { object.set(key.stringValue, .integer(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8, forKey key: Key) { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16, forKey key: Key) { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32, forKey key: Key) { object.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64, forKey key: Key) { object.set(key.stringValue, .unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        object.set(key.stringValue, try JSONValueEncoder.box(value, path: path(key)) ?? .null)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = JSONObjectBuilder()
        object.set(key.stringValue, .object(nested))
        return KeyedEncodingContainer(JSONKeyedEncodingContainer<NestedKey>(object: nested, codingPath: path(key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = JSONArrayBuilder()
        object.set(key.stringValue, .array(nested))
        return JSONUnkeyedEncodingContainer(array: nested, codingPath: path(key))
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = JSONValueEncoder(path: codingPath + [JSONSuperKey()])
        object.set("super", .pending(encoder))
        return encoder
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let encoder = JSONValueEncoder(path: path(key))
        object.set(key.stringValue, .pending(encoder))
        return encoder
    }
}

struct JSONUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let array: JSONArrayBuilder
    let codingPath: [any CodingKey]

    var count: Int { array.elements.count }
    private var nextPath: [any CodingKey] { codingPath + [JSONIndexKey(array.elements.count)] }

    mutating func encodeNil() { array.elements.append(.null) }
    mutating func encode(_ value: Bool) { array.elements.append(.bool(value)) }
    mutating func encode(_ value: String) { array.elements.append(.string(value)) }
    mutating func encode(_ value: Double) throws { array.elements.append(try JSONValueEncoder.double(value, path: nextPath)) }
    mutating func encode(_ value: Float) throws { array.elements.append(try JSONValueEncoder.float(value, path: nextPath)) }
    mutating func encode(_ value: Int) { array.elements.append(.integer(Int64(value))) }
    mutating func encode(_ value: Int8) { array.elements.append(.integer(Int64(value))) }
    mutating func encode(_ value: Int16) { array.elements.append(.integer(Int64(value))) }
    mutating func encode(_ value: Int32) { array.elements.append(.integer(Int64(value))) }
    mutating func encode(_ value: Int64) { array.elements.append(.integer(value)) }
    mutating func encode(_ value: UInt) { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) { array.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) { array.elements.append(.unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        array.elements.append(try JSONValueEncoder.box(value, path: nextPath) ?? .null)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = JSONObjectBuilder()
        let path = nextPath
        array.elements.append(.object(nested))
        return KeyedEncodingContainer(JSONKeyedEncodingContainer<NestedKey>(object: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = JSONArrayBuilder()
        let path = nextPath
        array.elements.append(.array(nested))
        return JSONUnkeyedEncodingContainer(array: nested, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = JSONValueEncoder(path: nextPath)
        array.elements.append(.pending(encoder))
        return encoder
    }
}

struct JSONSingleValueEncodingContainer: SingleValueEncodingContainer {
    let encoder: JSONValueEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() { encoder.set(.null) }
    mutating func encode(_ value: Bool) { encoder.set(.bool(value)) }
    mutating func encode(_ value: String) { encoder.set(.string(value)) }
    mutating func encode(_ value: Double) throws { encoder.set(try JSONValueEncoder.double(value, path: codingPath)) }
    mutating func encode(_ value: Float) throws { encoder.set(try JSONValueEncoder.float(value, path: codingPath)) }
    mutating func encode(_ value: Int) { encoder.set(.integer(Int64(value))) }
    mutating func encode(_ value: Int8) { encoder.set(.integer(Int64(value))) }
    mutating func encode(_ value: Int16) { encoder.set(.integer(Int64(value))) }
    mutating func encode(_ value: Int32) { encoder.set(.integer(Int64(value))) }
    mutating func encode(_ value: Int64) { encoder.set(.integer(value)) }
    mutating func encode(_ value: UInt) { encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) { encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) { encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) { encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) { encoder.set(.unsigned(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.set(try JSONValueEncoder.box(value, path: codingPath) ?? .null)
    }
}

/// Writes an encoded tree as compact JSON text.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(64)
    }

    mutating func write(_ value: JSONEncoded) {
        switch value {
        case .null: append("null")
        case .bool(let flag): append(flag ? "true" : "false")
        case .integer(let number):
            if number < 0 {
                bytes.append(UInt8(ascii: "-"))
                writeDigits(number.magnitude)
            } else {
                writeDigits(UInt64(number))
            }
        case .unsigned(let number): writeDigits(number)
        case .double(let number):
            if number == number.rounded(.towardZero), number.magnitude < 1e15 {
                // Whole and small: the integer's digits, as Foundation writes them (2.0 is `2`, -0.0 is `-0`).
                if number.sign == .minus { bytes.append(UInt8(ascii: "-")) }
                writeDigits(UInt64(number.magnitude))
            } else {
                bytes.append(contentsOf: number.description.utf8)
            }
        case .number(let text): bytes.append(contentsOf: text.utf8)
        case .string(let text): writeString(text)
        case .array(let array):
            bytes.append(UInt8(ascii: "["))
            for (position, element) in array.elements.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            bytes.append(UInt8(ascii: "{"))
            for (position, member) in object.members.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                writeString(member.name)
                bytes.append(UInt8(ascii: ":"))
                write(member.value)
            }
            bytes.append(UInt8(ascii: "}"))
        case .pending(let encoder):
            write(encoder.result ?? .object(JSONObjectBuilder()))
        }
    }

    private mutating func append(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    private mutating func writeDigits(_ value: UInt64) {
        var value = value
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64.max's 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - count] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
                count += 1
            } while value > 0
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A string with `"`, `\` and control characters escaped; everything else as UTF-8.
    private mutating func writeString(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for (position, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<position]))
                runStart = position + 1
                bytes.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                default:
                    bytes.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                    bytes.append(Self.hexDigits[Int(byte >> 4)])
                    bytes.append(Self.hexDigits[Int(byte & 0xF)])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
