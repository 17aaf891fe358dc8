import Foundation

/// The default codec's decoder: reads what Foundation's `JSONEncoder` (or any JSON writer)
/// produced into any `Decodable`, several times faster than Foundation's `JSONDecoder` for the
/// small messages a mesh carries.
///
/// It reads what Foundation's decoder reads, with the settings ``JSONCodec`` uses: dates as ISO
/// 8601 strings, `Data` as base64, `URL` as a string, `Decimal` and every integer type from the
/// number as written (so no precision is lost), `1.0` and `1e2` accepted for integers when exact.
/// The first of two members with one name wins. Errors are `DecodingError`s with the coding path.
package struct MeshJSONDecoder {
    package init() {}

    package func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONValueDecoder.unbox(JSONReader.parse(data), as: type, path: [])
    }
}

/// Decodes one ``JSONValue`` (the `Decoder` a `Decodable`'s `init(from:)` is handed).
final class JSONValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, path: [any CodingKey]) {
        self.value = value
        self.codingPath = path
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw Self.mismatch([String: Any].self, value, path: codingPath)
        }
        return KeyedDecodingContainer(JSONKeyedDecodingContainer<Key>(object: object, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let elements) = value else { throw Self.mismatch([Any].self, value, path: codingPath) }
        return JSONUnkeyedDecodingContainer(elements: elements, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        JSONSingleValueDecodingContainer(value: value, codingPath: codingPath)
    }

    // MARK: Values

    static func mismatch(_ type: Any.Type, _ value: JSONValue, path: @autoclosure () -> [any CodingKey]) -> DecodingError {
        if case .null = value {
            return .valueNotFound(type, .init(codingPath: path(), debugDescription: "Expected \(type) value but found null instead."))
        }
        return .typeMismatch(type, .init(codingPath: path(), debugDescription: "Expected to decode \(type) but found \(value.kind) instead."))
    }

    private static func corrupted(_ reason: String, path: [any CodingKey]) -> DecodingError {
        .dataCorrupted(.init(codingPath: path, debugDescription: reason))
    }

    private static func corrupted(_ reason: String, path: () -> [any CodingKey]) -> DecodingError {
        .dataCorrupted(.init(codingPath: path(), debugDescription: reason))
    }

    /// Decodes `value` as `T`: the types Foundation's decoder treats specially first, then `T`'s own `init(from:)`.
    static func unbox<T: Decodable>(_ value: JSONValue, as type: T.Type, path: [any CodingKey]) throws -> T {
        if T.self == Date.self {
            let text = try string(value, path: path)
            guard let date = try? Date(text, strategy: .iso8601) else {
                throw corrupted("Expected date string to be ISO8601-formatted.", path: path)
            }
            return date as! T
        }
        if T.self == Data.self {
            guard let data = Data(base64Encoded: try string(value, path: path)) else {
                throw corrupted("Encountered Data is not valid Base64.", path: path)
            }
            return data as! T
        }
        if T.self == URL.self {
            guard let url = URL(string: try string(value, path: path)) else {
                throw corrupted("Invalid URL string.", path: path)
            }
            return url as! T
        }
        if T.self == Decimal.self {
            guard case .number(let text) = value, let decimal = Decimal(string: text) else {
                throw mismatch(Decimal.self, value, path: path)
            }
            return decimal as! T
        }
        return try T(from: JSONValueDecoder(value, path: path))
    }

    static func string(_ value: JSONValue, path: @autoclosure () -> [any CodingKey]) throws -> String {
        guard case .string(let text) = value else { throw mismatch(String.self, value, path: path()) }
        return text
    }

    static func bool(_ value: JSONValue, path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        guard case .bool(let flag) = value else { throw mismatch(Bool.self, value, path: path()) }
        return flag
    }

    static func integer<I: FixedWidthInteger>(
        _ value: JSONValue, as type: I.Type, path: @autoclosure () -> [any CodingKey]
    ) throws -> I {
        guard case .number(let text) = value else { throw mismatch(I.self, value, path: path()) }
        if let exact = I(text, radix: 10) { return exact }
        // `1.0` or `1e2`: accepted when the value is a whole number that fits.
        if let double = Double(text), double.isFinite, double.rounded(.towardZero) == double, let exact = I(exactly: double) {
            return exact
        }
        throw corrupted("Number \(text) is not representable as \(I.self).", path: path)
    }

    static func floatingPoint<F: BinaryFloatingPoint & LosslessStringConvertible>(
        _ value: JSONValue, as type: F.Type, path: @autoclosure () -> [any CodingKey]
    ) throws -> F {
        guard case .number(let text) = value else { throw mismatch(F.self, value, path: path()) }
        guard let number = F(text), number.isFinite else {
            throw corrupted("Number \(text) is not representable as \(F.self).", path: path)
        }
        return number
    }
}

/// An index in an array, for coding paths.
struct JSONIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

struct JSONKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let codingPath: [any CodingKey]

    var allKeys: [Key] { object.members.compactMap { Key(stringValue: $0.name) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func member(_ key: Key) throws -> JSONValue {
        guard let value = object[key.stringValue] else {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "No value associated with key \(key.stringValue)."))
        }
        return value
    }

    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try member(key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        try JSONValueDecoder.bool(member(key), path: path(key))
    }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try JSONValueDecoder.string(member(key), path: path(key))
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try JSONValueDecoder.floatingPoint(member(key), as: type, path: path(key))
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        try JSONValueDecoder.floatingPoint(member(key), as: type, path: path(key))
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try JSONValueDecoder.integer(member(key), as: type, path: path(key))
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try JSONValueDecoder.unbox(member(key), as: type, path: path(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try JSONValueDecoder(member(key), path: path(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try JSONValueDecoder(member(key), path: path(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        JSONValueDecoder(object["super"] ?? .null, path: codingPath + [JSONSuperKey()])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        JSONValueDecoder(object[key.stringValue] ?? .null, path: path(key))
    }
}

/// The `super` key of `superEncoder()` and `superDecoder()`.
struct JSONSuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(stringValue: String) { guard stringValue == "super" else { return nil } }
    init?(intValue: Int) { nil }
}

struct JSONUnkeyedDecodingContainer: UnkeyedDecodingContainer {
    let elements: [JSONValue]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(elements: [JSONValue], codingPath: [any CodingKey]) {
        self.elements = elements
        self.codingPath = codingPath
    }

    var count: Int? { elements.count }
    var isAtEnd: Bool { currentIndex >= elements.count }

    /// Converts the next element; advances only when that succeeds. The path is built only for an error.
    private mutating func take<T>(_ type: T.Type, _ convert: (JSONValue, () -> [any CodingKey]) throws -> T) throws -> T {
        let index = currentIndex
        let path = { [codingPath] in codingPath + [JSONIndexKey(index)] }
        guard index < elements.count else {
            throw DecodingError.valueNotFound(type, .init(codingPath: path(), debugDescription: "Unkeyed container is at end."))
        }
        let result = try convert(elements[index], path)
        currentIndex += 1
        return result
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Any?.self,
                .init(codingPath: codingPath + [JSONIndexKey(currentIndex)], debugDescription: "Unkeyed container is at end."))
        }
        guard case .null = elements[currentIndex] else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try take(type) { try JSONValueDecoder.bool($0, path: $1()) } }
    mutating func decode(_ type: String.Type) throws -> String { try take(type) { try JSONValueDecoder.string($0, path: $1()) } }
    mutating func decode(_ type: Double.Type) throws -> Double {
        try take(type) { try JSONValueDecoder.floatingPoint($0, as: type, path: $1()) }
    }
    mutating func decode(_ type: Float.Type) throws -> Float {
        try take(type) { try JSONValueDecoder.floatingPoint($0, as: type, path: $1()) }
    }
    mutating func decode(_ type: Int.Type) throws -> Int { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try take(type) { try JSONValueDecoder.integer($0, as: type, path: $1()) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try take(type) { try JSONValueDecoder.unbox($0, as: type, path: $1()) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try take(KeyedDecodingContainer<NestedKey>.self) { try JSONValueDecoder($0, path: $1()).container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try take((any UnkeyedDecodingContainer).self) { try JSONValueDecoder($0, path: $1()).unkeyedContainer() }
    }

    mutating func superDecoder() throws -> any Decoder {
        try take((any Decoder).self) { JSONValueDecoder($0, path: $1()) }
    }
}

struct JSONSingleValueDecodingContainer: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode(_ type: Bool.Type) throws -> Bool { try JSONValueDecoder.bool(value, path: codingPath) }
    func decode(_ type: String.Type) throws -> String { try JSONValueDecoder.string(value, path: codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try JSONValueDecoder.floatingPoint(value, as: type, path: codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try JSONValueDecoder.floatingPoint(value, as: type, path: codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try JSONValueDecoder.integer(value, as: type, path: codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try JSONValueDecoder.unbox(value, as: type, path: codingPath) }
}
