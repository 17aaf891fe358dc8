import Foundation
import MeshJSON

/// Turns message values into payload bytes and back.
///
/// Every node in a mesh must use the same codec. `Data` and `[UInt8]` values skip the codec
/// and travel as raw bytes.
public protocol MeshCodec: Sendable {
    /// Encodes `value` to the payload bytes.
    func encode<T: Encodable>(_ value: T) throws -> Data
    /// Decodes a payload into `type`.
    func decode<T: Decodable>(_ type: T.Type, from payload: Data) throws -> T
}

/// The default codec: JSON, dates as ISO 8601 strings, `Data` as base64.
///
/// It writes and reads the same JSON as Foundation's `JSONEncoder` and `JSONDecoder` with those
/// settings (so a node using them, or any other JSON library, interoperates), through our own
/// encoder and decoder, which are several times faster for the small values a mesh carries.
public struct JSONCodec: MeshCodec {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> Data {
        try MeshJSONEncoder().encode(value)
    }

    public func decode<T: Decodable>(_ type: T.Type, from payload: Data) throws -> T {
        try MeshJSONDecoder().decode(type, from: payload)
    }
}

/// Converts a value to payload bytes: raw for `Data` and `[UInt8]`, through `codec` otherwise.
func encodePayload<T: Encodable>(_ value: T, codec: any MeshCodec) throws -> (PayloadEncoding, Data) {
    if let data = value as? Data { return (.raw, data) }
    if let bytes = value as? [UInt8] { return (.raw, Data(bytes)) }
    return (.codec, try codec.encode(value))
}

/// Converts payload bytes to `T`: as they are for `Data` and `[UInt8]`, through `codec` otherwise.
func decodePayload<T: Decodable>(_ type: T.Type, from payload: Data, codec: any MeshCodec) throws -> T {
    if T.self == Data.self { return payload as! T }
    if T.self == [UInt8].self { return Array(payload) as! T }
    return try codec.decode(type, from: payload)
}
