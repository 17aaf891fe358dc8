import Foundation
import MeshJSON
import MeshTesting
import Testing

@testable import Mesh

/// The default codec's own JSON encoder and decoder, checked against Foundation's: what one
/// writes the other reads to the same value, and hostile text ends in a `DecodingError`.
@Suite("JSON codec")
struct JSONCodecTests {
    enum Mode: String, Codable, Equatable { case idle, busy }

    struct Inner: Codable, Equatable {
        var name: String
        var weights: [Float]
        var tags: Set<String>
    }

    /// Every kind of value the synthesized conformances produce.
    struct Everything: Codable, Equatable {
        var flag: Bool
        var int: Int
        var int8: Int8
        var int16: Int16
        var int32: Int32
        var int64: Int64
        var uint: UInt
        var uint8: UInt8
        var uint16: UInt16
        var uint32: UInt32
        var uint64: UInt64
        var double: Double
        var float: Float
        var text: String
        var optional: String?
        var missing: Int?
        var array: [Int]
        var nested: [[Double]]
        var dictionary: [String: Inner]
        var intKeys: [Int: String]
        var inner: Inner
        var mode: Mode
        var date: Date
        var data: Data
        var url: URL
        var decimal: Decimal
        var tuple: [Inner?]
    }

    static let everything = Everything(
        flag: true, int: -42, int8: .min, int16: .max, int32: -7, int64: .min, uint: 7, uint8: .max, uint16: 65_535,
        uint32: .max, uint64: .max, double: 3.141592653589793, float: 0.1, text: "quote \" slash / back \\ tab \t nl \n nul \u{0} é 😀 \u{2028}",
        optional: "here", missing: nil, array: [1, -2, 3], nested: [[], [1.5, -2.25e-10, 1e300]],
        dictionary: ["a": Inner(name: "x", weights: [1, 2.5], tags: ["t"]), "b/c": Inner(name: "", weights: [], tags: [])],
        intKeys: [1: "one", -2: "minus two"], inner: Inner(name: "inner", weights: [-0.5], tags: ["p", "q"]), mode: .busy,
        date: Date(timeIntervalSince1970: 1_764_000_000), data: Data([0, 1, 2, 254, 255]),
        url: URL(string: "https://example.com/a?b=c")!, decimal: Decimal(string: "12345678901234567890.125")!,
        tuple: [nil, Inner(name: "n", weights: [3], tags: [])])

    private static func foundationEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .withoutEscapingSlashes
        return encoder
    }

    private static func foundationDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    @Test("what ours writes, Foundation reads to the same value, and the other way round")
    func interoperatesWithFoundation() throws {
        let ours = try MeshJSONEncoder().encode(Self.everything)
        #expect(try Self.foundationDecoder().decode(Everything.self, from: ours) == Self.everything)
        let theirs = try Self.foundationEncoder().encode(Self.everything)
        #expect(try MeshJSONDecoder().decode(Everything.self, from: theirs) == Self.everything)
        #expect(try MeshJSONDecoder().decode(Everything.self, from: ours) == Self.everything)
        // Both parse to the same tree, whatever the member order.
        let oursObject = try JSONSerialization.jsonObject(with: ours) as? NSDictionary
        let theirsObject = try JSONSerialization.jsonObject(with: theirs) as? NSDictionary
        #expect(oursObject == theirsObject)
    }

    @Test("top-level scalars, arrays and optionals, and numbers as Foundation writes them")
    func scalars() throws {
        func text<T: Encodable>(_ value: T) throws -> String { String(decoding: try MeshJSONEncoder().encode(value), as: UTF8.self) }
        #expect(try text(2.0) == "2")
        #expect(try text(-0.0) == "-0")
        #expect(try text(0.1) == "0.1")
        #expect(try text(1e20) == "1e+20")
        #expect(try text(Float(2)) == "2")
        #expect(try text(Int64.min) == "-9223372036854775808")
        #expect(try text(UInt64.max) == "18446744073709551615")
        #expect(try text("a/b") == "\"a/b\"")
        #expect(try text("\u{1}\u{1F}\u{8}\u{C}") == #""\u0001\u001f\b\f""#)
        #expect(try text([Int?.none, 1]) == "[null,1]")
        #expect(try text(["k": [true, false]]) == #"{"k":[true,false]}"#)
        #expect(try MeshJSONDecoder().decode(Int.self, from: Data(" 12 ".utf8)) == 12)
        #expect(try MeshJSONDecoder().decode([Int].self, from: Data("[1.0, 1e2, -0]".utf8)) == [1, 100, 0])
        #expect(try MeshJSONDecoder().decode(Double.self, from: Data("-1.5E-3".utf8)) == -0.0015)
        #expect(try MeshJSONDecoder().decode(String.self, from: Data(#""\ud83d\ude00 \u00e9 \/ \"""#.utf8)) == "😀 é / \"")
        #expect(try MeshJSONDecoder().decode([String: Int].self, from: Data(#"{"a":1,"a":2}"#.utf8)) == ["a": 1])
        #expect(try MeshJSONDecoder().decode(Int64.self, from: Data("9223372036854775807".utf8)) == .max)
    }

    @Test("a large object is read and written in linear time, keys intact")
    func largeDictionary() throws {
        let big = Dictionary(uniqueKeysWithValues: (0..<50_000).map { ("key-\($0)", $0) })
        let started = ContinuousClock.now
        let encoded = try MeshJSONEncoder().encode(big)
        let decoded = try MeshJSONDecoder().decode([String: Int].self, from: encoded)
        #expect(decoded == big)
        #expect(try Self.foundationDecoder().decode([String: Int].self, from: encoded) == big)
        // Quadratic lookups would take minutes here; linear ones well under a second.
        #expect(started.duration(to: .now) < .seconds(10))
    }

    @Test("wrong types, missing keys and nulls are DecodingErrors with the coding path")
    func decodingErrors() throws {
        let decoder = MeshJSONDecoder()
        let wrongType = #"{"name": 5, "weights": [], "tags": []}"#
        #expect {
            try decoder.decode(Inner.self, from: Data(wrongType.utf8))
        } throws: { error in
            guard case DecodingError.typeMismatch(_, let context) = error else { return false }
            return context.codingPath.map(\.stringValue) == ["name"]
        }
        #expect {
            try decoder.decode(Inner.self, from: Data(#"{"name": "x", "tags": []}"#.utf8))
        } throws: { error in
            guard case DecodingError.keyNotFound(let key, _) = error else { return false }
            return key.stringValue == "weights"
        }
        #expect {
            try decoder.decode(Inner.self, from: Data(#"{"name": "x", "weights": [1, null], "tags": []}"#.utf8))
        } throws: { error in
            guard case DecodingError.valueNotFound(_, let context) = error else { return false }
            return context.codingPath.map(\.stringValue) == ["weights", "Index 1"]
        }
        #expect(throws: DecodingError.self) { try decoder.decode(Int8.self, from: Data("300".utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Int.self, from: Data("1.5".utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(UInt.self, from: Data("-1".utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Double.self, from: Data("1e400".utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Mode.self, from: Data(#""asleep""#.utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Date.self, from: Data(#""yesterday""#.utf8)) }
        #expect(throws: DecodingError.self) { try decoder.decode(Data.self, from: Data(#""not base64!""#.utf8)) }
    }

    @Test("non-finite numbers and values that encode nothing are EncodingErrors")
    func encodingErrors() {
        struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }
        #expect(throws: EncodingError.self) { try MeshJSONEncoder().encode(Double.nan) }
        #expect(throws: EncodingError.self) { try MeshJSONEncoder().encode(["x": Float.infinity]) }
        #expect(throws: EncodingError.self) { try MeshJSONEncoder().encode(Nothing()) }
        #expect((try? MeshJSONEncoder().encode([Nothing()])).map { String(decoding: $0, as: UTF8.self) } == "[{}]")
    }

    @Test("hostile text: every malformed document is refused with a DecodingError, never a crash")
    func hostileText() throws {
        let bad: [String] = [
            "", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "'x'", "\"open",
            "\"bad \\q escape\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"",
            "01", "-", "1.", ".5", "1e", "+1", "0x10", "NaN", "Infinity", "tru", "nul", "[1] [2]", "1 2", "[1}", "{\"a\":1]",
        ]
        for text in bad {
            #expect(throws: DecodingError.self, "\(text.debugDescription)") {
                try MeshJSONDecoder().decode([String: Int].self, from: Data(text.utf8))
            }
        }
        // Invalid UTF-8 inside a string.
        #expect(throws: DecodingError.self) { try MeshJSONDecoder().decode(String.self, from: Data([0x22, 0xFF, 0xFE, 0x22])) }
        // Deep nesting is refused before it exhausts the stack.
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: DecodingError.self) { try MeshJSONDecoder().decode([Int].self, from: Data(deep.utf8)) }
        let fine = String(repeating: "[", count: 400) + String(repeating: "]", count: 400)
        #expect(throws: Never.self) { _ = try JSONReader.parse(Data(fine.utf8)) }
    }

    @Test("random documents: ours reads what Foundation reads, to the same value, and refuses what it refuses")
    func randomDocumentsAgreeWithFoundation() throws {
        var generator = SplitMix64(seed: 0x6A73_6F6E)
        let alphabet = Array(#"{}[]",:0123456789.-+eE truefalsenull\u"ab"#.utf8)
        let valid = Array(try MeshJSONEncoder().encode(Self.everything))
        var bothRead = 0
        for round in 0..<3_000 {
            var bytes = valid
            // A valid document with one or two bytes changed, dropped or duplicated.
            for _ in 0...(round % 2) {
                let at = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[at] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: at)
                default: bytes.insert(bytes[at], at: at)
                }
            }
            let data = Data(bytes)
            let theirs = try? Self.foundationDecoder().decode(Everything.self, from: data)
            let ours = try? MeshJSONDecoder().decode(Everything.self, from: data)
            let text = String(decoding: bytes, as: UTF8.self)
            switch (theirs, ours) {
            case (nil, nil): break
            case (let theirs?, let ours?):
                #expect(theirs == ours, "different values from \(text.debugDescription)")
                bothRead += 1
            case (_?, nil):
                // Foundation lets a trailing comma pass; RFC 8259 does not, and neither do we.
                if !(text.contains(",]") || text.contains(",}")) {
                    Issue.record("ours refused what Foundation read: \(text.debugDescription)")
                }
            case (nil, _?):
                Issue.record("ours read what Foundation refused: \(text.debugDescription)")
            }
        }
        #expect(bothRead > 100)
        // Short random text: never a crash, and never accepted when Foundation refuses it.
        for _ in 0..<3_000 {
            let bytes = (0..<Int(generator.next() % 16)).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let data = Data(bytes)
            if (try? JSONReader.parse(data)) != nil {
                #expect((try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil)
            }
        }
    }

    @Test("the codec round-trips through a node-style payload: raw types skip it")
    func codecEntryPoints() throws {
        let codec = JSONCodec()
        let payload = try codec.encode(Self.everything)
        #expect(try codec.decode(Everything.self, from: payload) == Self.everything)
        let (encoding, raw) = try encodePayload(Data([1, 2, 3]), codec: codec)
        #expect(encoding == .raw && raw == Data([1, 2, 3]))
    }
}
