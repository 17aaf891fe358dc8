import Foundation
import MeshCrypto

/// The shape of a `Decodable` type as a canonical string, found by decoding it once from a
/// decoder that records what the type asks for.
///
/// The shape is what a receiver's decoding depends on: field names, which are optional, and what
/// each holds. It is written in a small grammar that docs/PROTOCOL.md ("Typed topics") defines, so
/// a client in another language can write the same string for its own schema:
///
/// - `bool`, `int` (every integer type), `float` (`Float`, `Double`), `string`;
/// - `[S]` for an array (or set) of `S`;
/// - `{a:S,b?:T}` for a keyed value (a struct, or a dictionary as `{*:S}`), keys sorted by their
///   UTF-8 bytes, `?` marking a field that may be absent;
/// - `?` for what could not be seen (a value whose own decoding refused the recorder's defaults
///   before asking for anything), and `…` past a nesting depth of ``maximumDepth`` (recursive types).
///
/// Type names are not part of the shape: two programs that name the same structure differently
/// read each other's messages, and the declared type name is compared separately.
package enum TypeShape {
    /// Deeper than this, a shape is cut off with `…` (a recursive type has no end).
    package static let maximumDepth = 12

    /// The shape of `type`, or `nil` when its decoding refused the recorder's defaults before it
    /// asked for everything (an enum that is not `CaseIterable`, a value that validates itself):
    /// a shape seen only in part would fingerprint two different types alike, so none is given.
    package static func of<T: Decodable>(_ type: T.Type) -> String? {
        let root = ShapeNode()
        do {
            _ = try T(from: ShapeDecoder(node: root, depth: 0))
        } catch is ShapeTooDeep {
            // A recursive type: the shape stops at the depth limit, the same every time.
        } catch {
            return nil
        }
        return root.shape
    }

    /// A fingerprint of `shape`: the first 16 hex digits (64 bits) of its SHA-256.
    package static func fingerprint(of shape: String) -> String {
        SHA256.hash(data: Array(shape.utf8)).description.prefix(16).description
    }
}

/// What the recorder learnt about one value.
private final class ShapeNode {
    enum Kind {
        case unseen
        case primitive(String)
        case keyed
        case unkeyed
        case truncated
    }

    var kind = Kind.unseen
    /// For `keyed`: each field's node and whether it may be absent.
    var fields: [String: (node: ShapeNode, optional: Bool)] = [:]
    /// For `unkeyed`: the element's node.
    var element: ShapeNode?

    func field(_ key: String, optional: Bool) -> ShapeNode {
        kind = .keyed
        if let existing = fields[key] {
            if !optional { fields[key] = (existing.node, false) }
            return existing.node
        }
        let node = ShapeNode()
        fields[key] = (node, optional)
        return node
    }

    var shape: String {
        switch kind {
        case .unseen: return "?"
        case .truncated: return "…"
        case .primitive(let name): return name
        case .unkeyed: return "[" + (element?.shape ?? "?") + "]"
        case .keyed:
            let keys = fields.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            return "{"
                + keys.map { key in
                    let (node, optional) = fields[key]!
                    return key + (optional ? "?:" : ":") + node.shape
                }.joined(separator: ",") + "}"
        }
    }
}

/// Stops a recursive type at ``TypeShape/maximumDepth``.
private struct ShapeTooDeep: Error {}

private struct ShapeKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Answers every question with a default (`0`, `""`, `false`, one element, every key present)
/// and writes down what was asked.
private struct ShapeDecoder: Decoder {
    let node: ShapeNode
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        node.kind = .keyed
        return KeyedDecodingContainer(ShapeKeyedContainer<Key>(node: node, depth: depth))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        node.kind = .unkeyed
        return ShapeUnkeyedContainer(node: node, depth: depth)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        ShapeSingleValueContainer(node: node, depth: depth)
    }
}

/// Decodes one value of `type` into `node`: primitives directly, anything else through its own
/// `init(from:)`; a `CaseIterable` type that refuses the defaults is given its first case.
private func decodeShape<T: Decodable>(_ type: T.Type, into node: ShapeNode, depth: Int) throws -> T {
    if let value = primitiveDefault(type, into: node) { return value }
    guard depth < TypeShape.maximumDepth else {
        node.kind = .truncated
        throw ShapeTooDeep()
    }
    do {
        return try T(from: ShapeDecoder(node: node, depth: depth + 1))
    } catch let error as ShapeTooDeep {
        throw error
    } catch {
        if let cases = T.self as? any CaseIterable.Type, let first = firstCase(of: cases) as? T { return first }
        throw error
    }
}

private func firstCase<C: CaseIterable>(of type: C.Type) -> Any? { type.allCases.first }

/// The default value for a primitive type, with its shape written into `node`; `nil` otherwise.
private func primitiveDefault<T>(_ type: T.Type, into node: ShapeNode) -> T? {
    let value: Any
    let name: String
    switch type {
    case is Bool.Type: (value, name) = (false, "bool")
    case is UUID.Type: (value, name) = (UUID(), "string")
    case is URL.Type: (value, name) = (URL(fileURLWithPath: "/"), "string")
    case is String.Type: (value, name) = ("", "string")
    case is Double.Type: (value, name) = (0.0 as Double, "float")
    case is Float.Type: (value, name) = (0.0 as Float, "float")
    case is Int.Type: (value, name) = (0 as Int, "int")
    case is Int8.Type: (value, name) = (0 as Int8, "int")
    case is Int16.Type: (value, name) = (0 as Int16, "int")
    case is Int32.Type: (value, name) = (0 as Int32, "int")
    case is Int64.Type: (value, name) = (0 as Int64, "int")
    case is UInt.Type: (value, name) = (0 as UInt, "int")
    case is UInt8.Type: (value, name) = (0 as UInt8, "int")
    case is UInt16.Type: (value, name) = (0 as UInt16, "int")
    case is UInt32.Type: (value, name) = (0 as UInt32, "int")
    case is UInt64.Type: (value, name) = (0 as UInt64, "int")
    default: return nil
    }
    node.kind = .primitive(name)
    return value as? T
}

private struct ShapeKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let node: ShapeNode
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    /// A dictionary asks which keys there are; a struct never does. `*` stands for them all (a
    /// struct's keys cannot be made from it, so its `allKeys` stays empty).
    var allKeys: [Key] { Key(stringValue: "*").map { [$0] } ?? [] }

    func contains(_ key: Key) -> Bool { true }
    func decodeNil(forKey key: Key) throws -> Bool { false }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeShape(type, into: node.field(key.stringValue, optional: false), depth: depth)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try decodeShape(type, into: node.field(key.stringValue, optional: true), depth: depth)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decode(type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decode(type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decode(type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decode(type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decode(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decode(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decode(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decode(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decode(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decode(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decode(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decode(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decode(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decode(type, key) }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try optional(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try optional(type, key) }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try optional(type, key) }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try optional(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try optional(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try optional(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try optional(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try optional(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try optional(type, key) }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try optional(type, key) }

    private func decode<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T {
        try decodeShape(type, into: node.field(key.stringValue, optional: false), depth: depth)
    }

    private func optional<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
        try decodeShape(type, into: node.field(key.stringValue, optional: true), depth: depth)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try ShapeDecoder(node: node.field(key.stringValue, optional: false), depth: depth + 1).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ShapeDecoder(node: node.field(key.stringValue, optional: false), depth: depth + 1).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { ShapeDecoder(node: node.field("super", optional: false), depth: depth + 1) }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ShapeDecoder(node: node.field(key.stringValue, optional: false), depth: depth + 1)
    }
}

/// An array of one element: enough to see the element's shape.
private struct ShapeUnkeyedContainer: UnkeyedDecodingContainer {
    let node: ShapeNode
    let depth: Int
    var codingPath: [any CodingKey] { [] }
    var count: Int? { nil }
    var currentIndex = 0
    var isAtEnd: Bool { currentIndex > 0 }

    private var element: ShapeNode {
        if let element = node.element { return element }
        let element = ShapeNode()
        node.element = element
        return element
    }

    mutating func decodeNil() throws -> Bool { false }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decode(type, generic: ())
    }

    private mutating func decode<T: Decodable>(_ type: T.Type, generic: Void) throws -> T {
        currentIndex += 1
        return try decodeShape(type, into: element, depth: depth)
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try decode(type as Bool.Type, generic: ()) }
    mutating func decode(_ type: String.Type) throws -> String { try decode(type as String.Type, generic: ()) }
    mutating func decode(_ type: Double.Type) throws -> Double { try decode(type as Double.Type, generic: ()) }
    mutating func decode(_ type: Float.Type) throws -> Float { try decode(type as Float.Type, generic: ()) }
    mutating func decode(_ type: Int.Type) throws -> Int { try decode(type as Int.Type, generic: ()) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try decode(type as Int8.Type, generic: ()) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try decode(type as Int16.Type, generic: ()) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try decode(type as Int32.Type, generic: ()) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try decode(type as Int64.Type, generic: ()) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try decode(type as UInt.Type, generic: ()) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try decode(type as UInt8.Type, generic: ()) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try decode(type as UInt16.Type, generic: ()) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try decode(type as UInt32.Type, generic: ()) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try decode(type as UInt64.Type, generic: ()) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        currentIndex += 1
        return try ShapeDecoder(node: element, depth: depth + 1).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        currentIndex += 1
        return try ShapeDecoder(node: element, depth: depth + 1).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        currentIndex += 1
        return ShapeDecoder(node: element, depth: depth + 1)
    }
}

private struct ShapeSingleValueContainer: SingleValueDecodingContainer {
    let node: ShapeNode
    let depth: Int
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool { false }

    func decode(_ type: Bool.Type) throws -> Bool { try decode(type as Bool.Type, generic: ()) }
    func decode(_ type: String.Type) throws -> String { try decode(type as String.Type, generic: ()) }
    func decode(_ type: Double.Type) throws -> Double { try decode(type as Double.Type, generic: ()) }
    func decode(_ type: Float.Type) throws -> Float { try decode(type as Float.Type, generic: ()) }
    func decode(_ type: Int.Type) throws -> Int { try decode(type as Int.Type, generic: ()) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decode(type as Int8.Type, generic: ()) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decode(type as Int16.Type, generic: ()) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decode(type as Int32.Type, generic: ()) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decode(type as Int64.Type, generic: ()) }
    func decode(_ type: UInt.Type) throws -> UInt { try decode(type as UInt.Type, generic: ()) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decode(type as UInt8.Type, generic: ()) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decode(type as UInt16.Type, generic: ()) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decode(type as UInt32.Type, generic: ()) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decode(type as UInt64.Type, generic: ()) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decode(type, generic: ()) }

    private func decode<T: Decodable>(_ type: T.Type, generic: Void) throws -> T {
        if let value = primitiveDefault(type, into: node) { return value }
        guard depth < TypeShape.maximumDepth else {
            node.kind = .truncated
            throw ShapeTooDeep()
        }
        // A wrapper decoding its wrapped value in place: the same node.
        return try T(from: ShapeDecoder(node: node, depth: depth + 1))
    }
}
