import Foundation
import Synchronization

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
///
/// A frame's bytes can also leave as a `Data` over the storage itself (``lend(_:)``): a message
/// payload reaches its listeners without a copy. Each lent `Data` covers exactly its bytes (so
/// growing it copies it out, and writing into it touches nothing of anyone else's). While anything
/// lent is alive the decoder only writes past it: it never moves unread bytes over lent ones, and
/// when it runs out of room it reads into new storage instead, leaving the old to whoever still
/// holds what it lent. Once the last of those is gone the storage is reused as before. A decoder is owned by one reader (a
/// connection's loop thread); two copies of one decoder would share their storage.
package struct FrameDecoder: Sendable {
    /// The largest frame accepted (kind byte plus body).
    var maximumFrameLength: Int

    private var storage = ReadStorage(capacity: 0)
    private var readIndex = 0
    private var writeIndex = 0
    /// Bytes of storage that lending has newly pinned since ``takeNewlyPinned()`` was last asked.
    private var newlyPinned = 0
    /// The storage given up last because it was lent: taken back once its slices are gone,
    /// instead of allocating (and faulting in) new memory, when the reader and the listeners take
    /// turns with two storages. Kept only up to ``largestSpare`` bytes.
    private var spare: ReadStorage?
    /// Storages this decoder has allocated (tests: whether memory was reused).
    private(set) var storagesMade = 0

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

    /// How ``readInto(minimumSpace:largeFrames:_:)`` treats a frame over ``largeFrame`` bytes
    /// that has started to arrive.
    enum LargeFrames {
        /// No differently: storage grows with the bytes as they come.
        case asTheyCome
        /// Make room for the rest of it at once (at most ``largestPresize`` ahead of the bytes in),
        /// so it is not moved as it grows: for a writer that needs its whole `minimumSpace`
        /// (a record opened into the decoder).
        case makeRoom
        /// Make room, and offer `body` exactly the rest of it (a socket read, which may take less
        /// than it is offered): the read never runs past the frame, so the storage it was read into
        /// is lent whole with its payload and the next frame starts with nothing to copy.
        case makeRoomAndStopAtItsEnd
    }

    /// Lets `body` write straight into free storage of at least `minimumSpace` bytes.
    ///
    /// - Returns: what `body` returned; the decoder counts that many bytes as received.
    mutating func readInto(
        minimumSpace: Int, largeFrames: LargeFrames = .asTheyCome, _ body: (UnsafeMutableRawBufferPointer) throws -> Int?
    ) rethrows -> Int? {
        var wanted = minimumSpace
        var limit = Int.max
        if largeFrames != .asTheyCome, let length = nextLength, length > FrameDecoder.largeFrame, length <= maximumFrameLength {
            let end = readIndex + 4 + length
            if end > writeIndex {
                // Room for the rest in one piece, but never more than the bytes that arrived
                // (or ``largestPresize``) ahead of them on the peer's say-so.
                let arrived = writeIndex - readIndex
                wanted = max(minimumSpace, min(end, writeIndex + max(FrameDecoder.largestPresize, arrived)) - writeIndex)
                if largeFrames == .makeRoomAndStopAtItsEnd { limit = end - writeIndex }
            }
        }
        // A socket read may take less than it asked for: into lent storage, the free bytes at
        // its end do (see ``smallestRead``).
        let isSocketRead = largeFrames == .makeRoomAndStopAtItsEnd
        makeSpace(wanted, orTail: isSocketRead && limit == Int.max ? FrameDecoder.smallestRead : nil)
        let start = writeIndex
        let space = min(storage.capacity - start, limit)
        let count = try body(UnsafeMutableRawBufferPointer(start: storage.base + start, count: space))
        if let count { writeIndex += count }
        return count
    }

    /// Frames longer than this are read to their end and no further (see ``readInto(minimumSpace:largeFrames:_:)``).
    static let largeFrame = 64 * 1024
    /// A socket read into lent storage takes the free bytes left at its end down to this many,
    /// rather than new storage: so one lent storage holds the payloads of many small reads, and
    /// what listeners keep alive is about what they hold, not a storage per read.
    static let smallestRead = 4096
    /// The largest storage kept aside for reuse (see `spare`).
    static let largestSpare = 2 << 20
    /// The most room made for an arriving large frame beyond the bytes already in.
    static let largestPresize = 8 << 20

    /// Returns the next complete frame, or `nil` when more bytes are needed.
    ///
    /// - Throws: ``FrameError/tooLarge(size:limit:)`` or ``FrameError/empty`` for a bad header.
    package mutating func next() throws(FrameError) -> Header? {
        guard let unit = try nextLengthPrefixed() else { return nil }
        return Header(kind: storage.base.load(fromByteOffset: unit.lowerBound, as: UInt8.self), body: (unit.lowerBound + 1)..<unit.upperBound)
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
        guard let length = nextLength else { return nil }
        guard length > 0 else { throw .empty }
        guard length <= maximumFrameLength else { throw .tooLarge(size: length, limit: maximumFrameLength) }
        // Storage grows with the bytes that actually arrive, never ahead of them on a peer's say-so.
        guard writeIndex - readIndex >= 4 + length else { return nil }
        let start = readIndex + 4
        readIndex += 4 + length
        return start..<readIndex
    }

    /// Calls `body` with the bytes at `range` of the decoder's storage (a range it returned).
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= writeIndex, "range outside the received bytes")
        return try body(UnsafeRawBufferPointer(start: storage.base + range.lowerBound, count: range.count))
    }

    /// The bytes at `range` (part of a frame returned by ``next()``) as a `Data` over the
    /// decoder's storage: no copy, and valid for as long as the caller keeps it.
    ///
    /// The `Data` covers exactly `range` (indices from 0, its capacity its count): appending to it
    /// moves it to memory of its own, so a holder can never write over bytes lent to another or
    /// not read yet. It keeps the whole storage alive; the first lending from a storage nobody
    /// holds counts that storage's size in ``takeNewlyPinned()``.
    mutating func lend(_ range: Range<Int>) -> Data {
        precondition(range.lowerBound >= 0 && range.upperBound <= writeIndex, "range outside the received bytes")
        guard !range.isEmpty else { return Data() }
        let (data, pinned) = storage.lend(range)
        if pinned { newlyPinned += storage.capacity }
        return data
    }

    /// The bytes of storage that lending pinned since the last call (a storage nobody held before
    /// counts its whole size), so whoever queues lent payloads can count what they hold alive.
    mutating func takeNewlyPinned() -> Int {
        defer { newlyPinned = 0 }
        return newlyPinned
    }

    /// Identifies the storage in use (tests: whether it was reused or replaced).
    var storageIdentity: ObjectIdentifier { ObjectIdentifier(storage) }

    /// The next length prefix, once its 4 bytes are in (before the bytes it counts).
    var nextLength: Int? {
        guard writeIndex - readIndex >= 4 else { return nil }
        let bytes = storage.base + readIndex
        return Int(bytes.load(as: UInt8.self)) << 24 | Int(bytes.load(fromByteOffset: 1, as: UInt8.self)) << 16
            | Int(bytes.load(fromByteOffset: 2, as: UInt8.self)) << 8 | Int(bytes.load(fromByteOffset: 3, as: UInt8.self))
    }

    /// Calls `body` with the bytes of a frame returned by ``next()``.
    package func withBody<R>(_ header: Header, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withBytes(header.body, body)
    }

    /// Returns the next complete frame as a copy, or `nil` when more bytes are needed.
    mutating func decode() throws(FrameError) -> Frame? {
        guard let header = try next() else { return nil }
        return Frame(kind: header.kind, body: withBody(header) { Array($0) })
    }

    /// Ensures `minimum` free bytes after `writeIndex`: moving unread bytes to the front first,
    /// or, when that is not enough or the storage is lent, into new storage. With `tail`, a
    /// lent storage with at least that many free bytes at its end is used as it is.
    private mutating func makeSpace(_ minimum: Int, orTail tail: Int? = nil) {
        let lent = storage.isLent
        if readIndex == writeIndex, !lent {
            readIndex = 0
            writeIndex = 0
        }
        if storage.capacity - writeIndex >= minimum { return }
        if lent, let tail, storage.capacity - writeIndex >= tail { return }
        let unread = writeIndex - readIndex
        if !lent, readIndex > 0, storage.capacity - unread >= minimum {
            storage.base.copyMemory(from: storage.base + readIndex, byteCount: unread)
            readIndex = 0
            writeIndex = unread
            return
        }
        // A lent storage that would do once its slices are gone is replaced by one of the same
        // size; otherwise the storage doubles until it fits.
        var newCount = max(storage.capacity * (lent && storage.capacity >= unread + minimum ? 1 : 2), 4096)
        while newCount < unread + minimum { newCount *= 2 }
        let grown: ReadStorage
        if let spare, !spare.isLent, spare.capacity >= unread + minimum, spare.capacity <= newCount * 2 {
            grown = spare
        } else {
            grown = ReadStorage(capacity: newCount)
            storagesMade += 1
        }
        grown.base.copyMemory(from: storage.base + readIndex, byteCount: unread)
        spare = lent && storage.capacity <= FrameDecoder.largestSpare ? storage : nil
        storage = grown
        readIndex = 0
        writeIndex = unread
    }

    /// Gives back memory held for one large frame once the stream has moved past it.
    mutating func shrinkIfIdle(keeping capacity: Int) {
        guard readIndex == writeIndex, storage.capacity > capacity * 2 else { return }
        spare = nil
        storage = ReadStorage(capacity: 0)
        readIndex = 0
        writeIndex = 0
        makeSpace(capacity)
    }
}

/// The memory one ``FrameDecoder`` reads into, shared with the `Data` slices it lends.
///
/// `@unchecked Sendable`: the decoder's owner writes only bytes past everything lent (see
/// ``FrameDecoder``), and a lent `Data` covers only its own bytes (its capacity is its count, so
/// growing it copies it elsewhere), so a read through one on another thread never races a write
/// of the decoder's or another holder's. ``isLent`` is an acquiring load of a count each lent
/// `Data`'s deallocator lowers with a releasing decrement: once it reads zero, every access
/// through a lent `Data` happened before.
final class ReadStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    /// Lent `Data` still alive (or not yet moved to memory of their own).
    private let lendings = Atomic<Int>(0)

    /// Bytes of read storage alive in this process (tests: what lent slices keep alive).
    static let liveBytes = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = capacity
        self.base = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 16)
        ReadStorage.liveBytes.add(capacity, ordering: .relaxed)
    }

    deinit {
        ReadStorage.liveBytes.subtract(capacity, ordering: .relaxed)
        base.deallocate()
    }

    /// True while a slice of this storage may still be read.
    var isLent: Bool { lendings.load(ordering: .acquiring) > 0 }

    /// The bytes at `range` as a `Data` that keeps this storage alive and counts as lent until it
    /// is gone; and whether the storage was not lent before (it is pinned from now on).
    func lend(_ range: Range<Int>) -> (Data, pinned: Bool) {
        let before = lendings.wrappingAdd(1, ordering: .relaxed).oldValue
        let data = Data(bytesNoCopy: base + range.lowerBound, count: range.count, deallocator: .custom { [self] _, _ in
            lendings.subtract(1, ordering: .releasing)
        })
        return (data, before == 0)
    }
}
