import Foundation

/// Why a provider could not answer a call, as the byte in a ``FrameKind/failure`` frame.
enum ServiceFailureCode: UInt8, Sendable {
    /// The service's handler threw; the description is the thrown error's.
    case handlerFailed = 1
    /// The request did not decode into the handler's request type.
    case requestUndecodable = 2
    /// This node does not (or no longer) provide the service.
    case notServed = 3
    /// The handler's response could not be encoded, or exceeds the provider's message size limit.
    case responseUnusable = 4
    /// The provider refused the request at once: its caller, or all callers together, had as
    /// many requests or bytes running and waiting there as its limits allow.
    case busy = 5
}

/// The bodies of the three service frames. docs/PROTOCOL.md §15 has them byte by byte.
///
/// - request (`0x04`): call id (8 bytes, big-endian), service length (2 bytes, big-endian),
///   service (UTF-8), encoding (1 byte), payload (the rest).
/// - reply (`0x05`): call id (8), encoding (1), payload (the rest).
/// - failure (`0x06`): call id (8), code (1), description (UTF-8, the rest).
enum ServiceFrame {
    /// The longest failure description sent; longer ones are cut at a character boundary.
    static let maximumDescriptionBytes = 4096

    /// The size of a request frame on the wire, header included.
    static func requestLength(serviceBytes: Int, payloadBytes: Int) -> Int {
        Frame.headerLength + 8 + 2 + serviceBytes + 1 + payloadBytes
    }

    /// Builds a whole request frame.
    static func request(
        id: UInt64, service: String, encoding: PayloadEncoding, payload: UnsafeRawBufferPointer
    ) -> [UInt8] {
        var service = service
        return service.withUTF8 { name in
            var frame: [UInt8] = []
            frame.reserveCapacity(requestLength(serviceBytes: name.count, payloadBytes: payload.count))
            Frame.appendHeader(kind: FrameKind.request.rawValue, bodyLength: 8 + 2 + name.count + 1 + payload.count, to: &frame)
            appendID(id, to: &frame)
            frame.append(UInt8(truncatingIfNeeded: name.count >> 8))
            frame.append(UInt8(truncatingIfNeeded: name.count))
            frame.append(contentsOf: UnsafeRawBufferPointer(name))
            frame.append(encoding.rawValue)
            frame.append(contentsOf: payload)
            return frame
        }
    }

    /// Builds a whole reply frame.
    static func reply(id: UInt64, encoding: PayloadEncoding, payload: Data) -> [UInt8] {
        var frame: [UInt8] = []
        frame.reserveCapacity(Frame.headerLength + 9 + payload.count)
        Frame.appendHeader(kind: FrameKind.reply.rawValue, bodyLength: 9 + payload.count, to: &frame)
        appendID(id, to: &frame)
        frame.append(encoding.rawValue)
        frame.append(contentsOf: payload)
        return frame
    }

    /// Builds a whole failure frame; the description is cut to ``maximumDescriptionBytes``.
    static func failure(id: UInt64, code: ServiceFailureCode, description: String) -> [UInt8] {
        var text = Array(description.utf8)
        if text.count > maximumDescriptionBytes {
            var cut = maximumDescriptionBytes
            while cut > 0, text[cut] & 0xC0 == 0x80 { cut -= 1 }  // not inside a UTF-8 sequence
            text = Array(text[..<cut])
        }
        var frame: [UInt8] = []
        Frame.appendHeader(kind: FrameKind.failure.rawValue, bodyLength: 9 + text.count, to: &frame)
        appendID(id, to: &frame)
        frame.append(code.rawValue)
        frame.append(contentsOf: text)
        return frame
    }

    private static func appendID(_ id: UInt64, to frame: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8(truncatingIfNeeded: id >> UInt64(shift))) }
    }

    static func readID(_ body: UnsafeRawBufferPointer) -> UInt64 {
        var id: UInt64 = 0
        for index in 0..<8 { id = id << 8 | UInt64(body[index]) }
        return id
    }

    /// A request body, parsed.
    struct Request: Sendable {
        var id: UInt64
        var service: String
        var encoding: PayloadEncoding
        var payload: Data
    }

    /// Reads a request body.
    ///
    /// - Throws: ``FrameError/malformed(_:)`` for a short body, a bad service name or an unknown encoding.
    static func parseRequest(_ body: UnsafeRawBufferPointer) throws(FrameError) -> Request {
        guard body.count >= 8 + 2 + 1 + 1 else { throw .malformed("request body of \(body.count) bytes is too short") }
        let length = Int(body[8]) << 8 | Int(body[9])
        guard length <= 255 else { throw .malformed("request service name of \(length) bytes exceeds 255") }
        guard length > 0, body.count >= 10 + length + 1 else {
            throw .malformed("request service length \(length) does not fit a body of \(body.count) bytes")
        }
        let nameBytes = UnsafeRawBufferPointer(rebasing: body[10..<(10 + length)])
        let service: String
        if nameBytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            service = String(decoding: nameBytes, as: UTF8.self)  // printable ASCII: valid, no control characters
        } else {
            guard let text = String(validating: nameBytes, as: UTF8.self) else {
                throw .malformed("request service name is not UTF-8")
            }
            if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw .malformed("request service name contains control characters")
            }
            service = text
        }
        guard let encoding = PayloadEncoding(rawValue: body[10 + length]) else {
            throw .malformed("unknown payload encoding \(body[10 + length])")
        }
        return Request(
            id: readID(body), service: service, encoding: encoding,
            payload: Data(UnsafeRawBufferPointer(rebasing: body[(11 + length)...])))
    }

    /// What came back for one call.
    enum Answer: Sendable {
        case reply(PayloadEncoding, Data)
        /// `code` is the raw byte: a newer provider may send codes this side does not know.
        case failure(code: UInt8, description: String)
    }

    /// Reads a reply or failure body.
    ///
    /// - Throws: ``FrameError/malformed(_:)`` for a short body or an unknown encoding.
    static func parseAnswer(kind: FrameKind, _ body: UnsafeRawBufferPointer) throws(FrameError) -> (UInt64, Answer) {
        guard body.count >= 9 else { throw .malformed("\(kind) body of \(body.count) bytes is too short") }
        let id = readID(body)
        let rest = UnsafeRawBufferPointer(rebasing: body[9...])
        if kind == .reply {
            guard let encoding = PayloadEncoding(rawValue: body[8]) else {
                throw .malformed("unknown payload encoding \(body[8])")
            }
            return (id, .reply(encoding, Data(rest)))
        }
        return (id, .failure(code: body[8], description: String(decoding: rest, as: UTF8.self)))
    }
}
