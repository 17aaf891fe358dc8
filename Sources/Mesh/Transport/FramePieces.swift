import Foundation

/// Whole frames, back to back, held as pieces so that a large payload is never copied: small
/// frames are appended into contiguous bytes, and a message whose payload is at or over
/// ``retainedPayloadMinimum`` has its head (header, topic, encoding) appended there and its payload
/// kept as the caller's `Data`, retained, which ends the piece.
///
/// Offsets are in the frame stream: the pieces' bytes in order, as they go on the wire.
///
/// Invariants:
/// - Every piece but the last has a payload, and a payload always ends a frame; so every frame
///   boundary falls inside some piece's bytes or at a piece's end, and a frame's header is always
///   in bytes (only a frame's tail can be a payload).
/// - ``count`` is the sum of the pieces' lengths.
struct FramePieces: Sendable {
    /// The least payload kept by reference rather than copied: from here, one more piece (an
    /// `iovec` to the kernel, a piece boundary in a record's seal) costs less than copying it.
    /// Measured with W3 at 16, 32 and 64 KiB messages (docs/PERFORMANCE.md): without a key,
    /// keeping won at all three; with one, 16 KiB payloads lost to the copy (a record then holds
    /// many pieces, each with a partial ChaCha20 block at both ends), 32 and 64 KiB were even.
    static let retainedPayloadMinimum = 32 * 1024

    struct Piece: Sendable {
        /// Whole frames, then (when ``payload`` is set) the head of one more that it ends.
        var bytes: [UInt8] = []
        /// A caller's payload, retained and never copied; `Data` cannot change under us.
        var payload: Data?

        var count: Int { bytes.count + (payload?.count ?? 0) }
    }

    /// Never empty: appends go into the last piece while it has no payload.
    private(set) var pieces = [Piece()]
    /// The bytes of the frame stream held.
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// True when it holds one run of bytes and no payload (see ``contiguousBytes``).
    var isContiguous: Bool { pieces.count == 1 && pieces[0].payload == nil }

    /// The bytes of the only piece, when ``isContiguous``.
    var contiguousBytes: [UInt8] { pieces[0].bytes }

    /// How many payloads are retained (not copied).
    var retainedPayloads: Int { pieces.count { $0.payload != nil } }

    // MARK: Adding

    /// Appends whole frames written by `write` into the contiguous bytes, then `payload` (which
    /// ends the last of them) when given.
    mutating func append(payload: Data? = nil, _ write: (inout [UInt8]) -> Void) {
        if pieces[pieces.count - 1].payload != nil { pieces.append(Piece()) }
        let last = pieces.count - 1
        let before = pieces[last].bytes.count
        write(&pieces[last].bytes)
        count += pieces[last].bytes.count - before
        if let payload, !payload.isEmpty {
            pieces[last].payload = payload
            count += payload.count
        }
    }

    /// Appends whole frames, copied.
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        append { $0.append(contentsOf: bytes) }
    }

    /// Appends `other`'s frames: its payloads are retained, not copied.
    mutating func append(_ other: FramePieces) {
        for piece in other.pieces where piece.count > 0 { append(piece) }
    }

    /// Appends one piece: it replaces an empty last piece whole (no copy); else its bytes join the
    /// last piece's when that has no payload.
    private mutating func append(_ piece: Piece) {
        let last = pieces.count - 1
        if pieces[last].count == 0, pieces[last].bytes.capacity < piece.bytes.count || piece.payload != nil {
            pieces[last] = piece
        } else if pieces[last].payload != nil {
            pieces.append(piece)
        } else {
            pieces[last].bytes.append(contentsOf: piece.bytes)
            pieces[last].payload = piece.payload
        }
        count += piece.count
    }

    // MARK: Taking

    /// Empties it, keeping the first piece's capacity for the next appends.
    mutating func removeAll() {
        if pieces.count > 1 { pieces.removeSubrange(1...) }
        pieces[0].bytes.removeAll(keepingCapacity: true)
        pieces[0].payload = nil
        count = 0
    }

    /// Removes and returns the first `length` bytes of the stream, which must end at a frame
    /// boundary. Payloads move without a copy; only bytes of a piece cut in two are copied.
    mutating func removeFirst(_ length: Int) -> FramePieces {
        precondition(length >= 0 && length <= count, "removeFirst(\(length)) of \(count) bytes")
        var taken = FramePieces()
        var left = length
        var whole = 0
        while left > 0, whole < pieces.count {
            let piece = pieces[whole]
            if piece.count <= left {
                taken.append(piece)
                left -= piece.count
                whole += 1
            } else {
                precondition(left < piece.bytes.count, "a cut inside a retained payload")
                taken.append { $0.append(contentsOf: piece.bytes[..<left]) }
                pieces[whole].bytes.removeFirst(left)
                left = 0
            }
        }
        pieces.removeFirst(whole)
        if pieces.isEmpty { pieces = [Piece()] }
        count -= length
        return taken
    }

    /// Removes the frames in `range` of the stream (both ends at frame boundaries).
    mutating func removeFrames(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        var rest = self
        var kept = rest.removeFirst(range.lowerBound)
        _ = rest.removeFirst(range.count)
        kept.append(rest)
        self = kept
    }

    // MARK: Frames

    /// A frame held: where it starts in the stream, its whole length and its kind.
    struct FrameSpan: Equatable {
        var start: Int
        var length: Int
        var kind: UInt8
        var end: Int { start + length }
    }

    /// Calls `body` with each frame in order until it answers `false`.
    func forEachFrame(_ body: (FrameSpan) -> Bool) {
        var pieceStart = 0
        for piece in pieces {
            let bytes = piece.bytes
            var index = 0
            while index + 4 <= bytes.count {
                let length = 4 + OutboundQueue.frameLength(in: bytes, at: index)
                let kind = index + 4 < bytes.count ? bytes[index + 4] : 0
                guard body(FrameSpan(start: pieceStart + index, length: length, kind: kind)) else { return }
                index += length
            }
            pieceStart += piece.count
        }
    }

    /// The end of the last whole frame within the first `limit` bytes (at least one frame).
    func frameBoundary(atMost limit: Int) -> Int {
        var boundary = 0
        forEachFrame { frame in
            if frame.end > limit, boundary > 0 { return false }
            boundary = frame.end
            return true
        }
        return min(boundary, count)
    }

    /// The frames that end after `offset` of the stream, and their bytes from there.
    func countFrames(after offset: Int) -> Connection.Unsent {
        var unsent = Connection.Unsent()
        forEachFrame { frame in
            if frame.end > offset {
                unsent.frames += 1
                unsent.bytes += frame.end - max(frame.start, offset)
            }
            return true
        }
        return unsent
    }

    // MARK: Reading

    /// Calls `body` with the stream's bytes from `start` to `end` as buffers in order, at most
    /// `maximumBuffers` of them (then fewer bytes than asked): the pieces' own memory, nothing
    /// copied. The buffers are valid only inside `body`.
    func withBuffers<R>(
        from start: Int, to end: Int, maximumBuffers: Int = .max, _ body: ([UnsafeRawBufferPointer]) throws -> R
    ) rethrows -> R {
        var segments: [Segment] = []
        var pieceStart = 0
        for (index, piece) in pieces.enumerated() {
            if pieceStart >= end || segments.count >= maximumBuffers { break }
            let bytesEnd = pieceStart + piece.bytes.count
            let from = max(start, pieceStart)
            let to = min(end, bytesEnd)
            if from < to { segments.append(Segment(piece: index, payload: false, range: (from - pieceStart)..<(to - pieceStart))) }
            if let payload = piece.payload, segments.count < maximumBuffers {
                let payloadFrom = max(start, bytesEnd)
                let payloadTo = min(end, bytesEnd + payload.count)
                if payloadFrom < payloadTo {
                    segments.append(Segment(piece: index, payload: true, range: (payloadFrom - bytesEnd)..<(payloadTo - bytesEnd)))
                }
            }
            pieceStart += piece.count
        }
        var buffers: [UnsafeRawBufferPointer] = []
        buffers.reserveCapacity(segments.count)
        return try nest(segments[...], &buffers, body)
    }

    private struct Segment {
        var piece: Int
        var payload: Bool
        var range: Range<Int>
    }

    /// Opens each segment's memory in turn (a `Data`'s or an array's bytes are valid only inside
    /// their closure), then calls `body` with them all.
    private func nest<R>(
        _ segments: ArraySlice<Segment>, _ buffers: inout [UnsafeRawBufferPointer],
        _ body: ([UnsafeRawBufferPointer]) throws -> R
    ) rethrows -> R {
        guard let segment = segments.first else { return try body(buffers) }
        let piece = pieces[segment.piece]
        if segment.payload, let payload = piece.payload {
            return try payload.withUnsafeBytes { raw in
                buffers.append(UnsafeRawBufferPointer(rebasing: raw[segment.range]))
                return try nest(segments.dropFirst(), &buffers, body)
            }
        }
        return try piece.bytes.withUnsafeBytes { raw in
            buffers.append(UnsafeRawBufferPointer(rebasing: raw[segment.range]))
            return try nest(segments.dropFirst(), &buffers, body)
        }
    }

    /// The stream's bytes joined (for tests and rare paths: it copies every payload).
    var joined: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        withBuffers(from: 0, to: count) { buffers in
            for buffer in buffers { bytes.append(contentsOf: buffer) }
        }
        return bytes
    }
}
