/// What a frame carries, from its kind byte. See docs/PROTOCOL.md.
package enum FrameKind: UInt8, Sendable {
    /// A JSON ``ControlMessage`` between a node (or the CLI) and the coordinator.
    case control = 0x01
    /// The first frame a node sends to a peer it dialled: JSON ``PeerHello``.
    case peerHello = 0x02
    /// A published message: topic, payload encoding and payload bytes.
    case message = 0x03
    /// A service call, dialling node → provider: call id, service, payload encoding and payload.
    case request = 0x04
    /// A service's answer, provider → caller on the caller's connection: call id, encoding, payload.
    case reply = 0x05
    /// A call that failed at the provider: call id, a reason code and a UTF-8 description.
    case failure = 0x06
    /// A sender that is closing, dialling node → receiver: how many message frames it sent on
    /// the connection (8 bytes, big-endian), asking the receiver to confirm them.
    case closing = 0x07
    /// The receiver's answer to ``closing``: how many message frames from this connection it
    /// handed to its listeners' inbox (8 bytes, big-endian).
    case confirmed = 0x08
}

/// The bodies of the two frames that end a data connection with a confirmation
/// (docs/PROTOCOL.md §8.3): one 8-byte big-endian count each.
enum ClosingFrame {
    static func closing(messages: Int) -> [UInt8] { frame(.closing, messages) }
    static func confirmed(messages: Int) -> [UInt8] { frame(.confirmed, messages) }

    private static func frame(_ kind: FrameKind, _ count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Frame.headerLength + 8)
        Frame.appendHeader(kind: kind.rawValue, bodyLength: 8, to: &bytes)
        let value = UInt64(max(0, count))
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        return bytes
    }

    /// The count in a closing or confirmed frame's body.
    ///
    /// - Throws: ``FrameError/malformed(_:)`` unless the body is exactly 8 bytes holding at most `Int.max`.
    static func count(_ body: UnsafeRawBufferPointer) throws(FrameError) -> Int {
        guard body.count == 8 else { throw .malformed("closing count of \(body.count) bytes, 8 expected") }
        var value: UInt64 = 0
        for byte in body { value = value << 8 | UInt64(byte) }
        guard value <= UInt64(Int.max) else { throw .malformed("closing count \(value) is out of range") }
        return Int(value)
    }
}

/// A whole frame, copied out of the stream (tests and the control plane use this form).
package struct Frame: Sendable, Equatable {
    var kind: UInt8
    var body: [UInt8]

    /// Bytes before the body: a 4-byte big-endian length (of kind plus body), then the kind.
    static let headerLength = 5

    /// The frame as it goes on the wire.
    package var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerLength + body.count)
        Frame.appendHeader(kind: kind, bodyLength: body.count, to: &bytes)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// Appends a frame header for a body of `bodyLength` bytes.
    static func appendHeader(kind: UInt8, bodyLength: Int, to bytes: inout [UInt8]) {
        let length = UInt32(bodyLength + 1)
        bytes.append(UInt8(truncatingIfNeeded: length >> 24))
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(kind)
    }

    package init(kind: UInt8, body: [UInt8]) {
        self.kind = kind
        self.body = body
    }
}

/// Why a byte stream could not be split into frames. The connection is closed on any of these.
package enum FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A header declared a frame longer than the limit; nothing was allocated for it.
    case tooLarge(size: Int, limit: Int)
    /// A header declared a zero length (every frame has at least its kind byte).
    case empty
    /// The body of a known frame kind did not parse.
    case malformed(String)
    /// A kind byte this side does not know, or one not allowed on this connection.
    case unexpectedKind(UInt8)

    package var description: String {
        switch self {
        case .tooLarge(let size, let limit): return "frame of \(size) bytes exceeds the limit of \(limit) bytes"
        case .empty: return "frame with zero length"
        case .malformed(let reason): return "malformed frame: \(reason)"
        case .unexpectedKind(let kind): return "unexpected frame kind 0x\(String(kind, radix: 16))"
        }
    }
}

/// Splits a byte stream into frames, holding partial frames until the rest arrives.
///
/// Bytes go in through ``append(_:)`` or, without a copy, ``readInto(minimumSpace:_:)``; frames
/// come out of ``next()`` as positions in the decoder's own storage, valid until the next call
/// that adds bytes. A declared length over ``maximumFrameLength`` throws before any allocation.
package struct FrameDecoder: Sendable {
    /// The largest frame accepted (kind byte plus body).
    var maximumFrameLength: Int

    private var storage: [UInt8] = []
    private var readIndex = 0
    private var writeIndex = 0

    init(maximumFrameLength: Int) {
        self.maximumFrameLength = maximumFrameLength
    }

    /// Where one decoded frame sits in the decoder's storage.
    package struct Header: Sendable, Equatable {
        package var kind: UInt8
        var body: Range<Int>
    }

    /// Bytes received but not yet returned as frames.
    var bufferedByteCount: Int { writeIndex - readIndex }

    /// Copies bytes in (tests, and callers that already hold the bytes).
    mutating func append<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        _ = readInto(minimumSpace: bytes.count) { space in
            space.copyBytes(from: bytes)
            return bytes.count
        }
    }

    /// Lets `body` write straight into free storage of at least `minimumSpace` bytes.
    ///
    /// - Returns: what `body` returned; the decoder counts that many bytes as received.
    mutating func readInto(
        minimumSpace: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> Int?
    ) rethrows -> Int? {
        makeSpace(minimumSpace)
        let start = writeIndex
        let count = try storage.withUnsafeMutableBytes { raw -> Int? in
            try body(UnsafeMutableRawBufferPointer(rebasing: raw[start...]))
        }
        if let count { writeIndex += count }
        return count
    }

    /// Returns the next complete frame, or `nil` when more bytes are needed.
    ///
    /// - Throws: ``FrameError/tooLarge(size:limit:)`` or ``FrameError/empty`` for a bad header.
    package mutating func next() throws(FrameError) -> Header? {
        guard let unit = try nextLengthPrefixed() else { return nil }
        return Header(kind: storage[unit.lowerBound], body: (unit.lowerBound + 1)..<unit.upperBound)
    }

    /// Returns the bytes after the next complete length prefix (a whole record, for
    /// ``RecordOpener``), or `nil` when more bytes are needed.
    ///
    /// - Throws: ``FrameError/tooLarge(size:limit:)`` or ``FrameError/empty`` for a bad length.
    mutating func nextRecord() throws(FrameError) -> Range<Int>? {
        try nextLengthPrefixed()
    }

    /// Consumes the next 4-byte big-endian length and the bytes it counts, once all have arrived.
    private mutating func nextLengthPrefixed() throws(FrameError) -> Range<Int>? {
        let available = writeIndex - readIndex
        guard available >= 4 else { return nil }
        let length = storage.withUnsafeBytes { raw -> Int in
            Int(raw[readIndex]) << 24 | Int(raw[readIndex + 1]) << 16 | Int(raw[readIndex + 2]) << 8
                | Int(raw[readIndex + 3])
        }
        guard length > 0 else { throw .empty }
        guard length <= maximumFrameLength else { throw .tooLarge(size: length, limit: maximumFrameLength) }
        // Storage grows with the bytes that actually arrive, never ahead of them on a peer's say-so.
        guard available >= 4 + length else { return nil }
        let start = readIndex + 4
        readIndex += 4 + length
        return start..<readIndex
    }

    /// Calls `body` with the bytes at `range` of the decoder's storage (a range it returned).
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { raw -> R in
            try body(UnsafeRawBufferPointer(rebasing: raw[range]))
        }
    }

    /// The next length prefix, once its 4 bytes are in (before the bytes it counts).
    var nextLength: Int? {
        guard writeIndex - readIndex >= 4 else { return nil }
        return storage.withUnsafeBytes { raw -> Int in
            Int(raw[readIndex]) << 24 | Int(raw[readIndex + 1]) << 16 | Int(raw[readIndex + 2]) << 8
                | Int(raw[readIndex + 3])
        }
    }

    /// Calls `body` with the bytes of a frame returned by ``next()``.
    package func withBody<R>(_ header: Header, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withBytes(header.body, body)
    }

    /// Returns the next complete frame as a copy, or `nil` when more bytes are needed.
    mutating func decode() throws(FrameError) -> Frame? {
        guard let header = try next() else { return nil }
        return Frame(kind: header.kind, body: Array(storage[header.body]))
    }

    /// Ensures `minimum` free bytes after `writeIndex`, moving unread bytes to the front first.
    ///
    private mutating func makeSpace(_ minimum: Int) {
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
        if storage.count - writeIndex >= minimum { return }
        let unread = writeIndex - readIndex
        if readIndex > 0, storage.count - unread >= minimum {
            storage.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + readIndex, byteCount: unread)
            }
            readIndex = 0
            writeIndex = unread
            return
        }
        var newCount = max(storage.count * 2, 4096)
        while newCount < unread + minimum { newCount *= 2 }
        var grown = [UInt8](repeating: 0, count: newCount)  // a memset, not a per-byte loop
        let start = readIndex
        grown.withUnsafeMutableBytes { target in
            storage.withUnsafeBytes { source in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + unread)]))
            }
        }
        storage = grown
        readIndex = 0
        writeIndex = unread
    }

    /// Gives back memory held for one large frame once the stream has moved past it.
    mutating func shrinkIfIdle(keeping capacity: Int) {
        guard readIndex == writeIndex, storage.count > capacity * 2 else { return }
        storage = []
        readIndex = 0
        writeIndex = 0
        makeSpace(capacity)
    }
}
