import Foundation

/// The frames a ``Connection`` has queued to send and not yet handed to the kernel, as a state
/// machine with no socket, lock, thread or clock in it.
///
/// The connection keeps it under its lock and performs what it answers: any thread appends
/// frames; the first append since the loop last found the queue empty answers "schedule a flush",
/// so a burst costs one job on the loop however many frames it holds; the loop thread takes
/// frames out and reports the bytes the kernel accepted; an acceptance that brings the unsent
/// bytes down to half the limit answers "wake the waiters".
///
/// Frames are held as ``FramePieces``: small frames back to back in contiguous bytes (one append
/// each), and a message payload of ``FramePieces/retainedPayloadMinimum`` bytes or more as the
/// caller's `Data`, retained rather than copied, so it goes from the caller's buffer to the kernel
/// (or to the record sealer) with no copy in between.
///
/// Invariants, checked by `OutboundQueueTests`:
/// - `pending` holds whole frames only: ``take(into:)`` cuts at frame boundaries, so no frame is
///   ever partly taken and partly queued, and a retained payload moves with its frame's head.
/// - ``unsent`` counts every byte appended and not yet reported written: those still queued and
///   those the loop took and has not finished writing (or sealing into a record).
/// - Dropping a queued frame (``appendDroppingOldest(_:)``) drops its retained payload with it;
///   frames already taken are never dropped.
/// - ``flushScheduled`` is true from the append that asks for a flush until a ``take(into:)`` finds
///   nothing queued: meanwhile a flush is queued on the loop, running, or waiting for the socket to
///   become writable, and appends ask for nothing more.
struct OutboundQueue: Sendable {
    /// Where the connection is, as far as sending goes.
    enum Phase: Sendable, Equatable {
        /// Connecting or handshaking: frames queue and wait.
        case opening
        /// Frames flow; an append may ask for a flush.
        case open
        /// Nothing more is taken.
        case closed
    }

    /// What an append did with its frame, and what the connection must do about it.
    struct Appended: Sendable, Equatable {
        var result: Connection.SendResult
        /// Queue one flush job on the loop (the first frame since the loop last emptied the queue).
        var scheduleFlush = false
        /// Frames dropped to make room (``appendDroppingOldest(_:)`` only).
        var dropped = Connection.Unsent()
    }

    /// The most unsent bytes; past it an append answers ``Connection/SendResult/full``, except into
    /// an empty queue, which takes a frame of any size (one large message cannot wedge a peer).
    let limit: Int
    /// When set, ``take(into:)`` takes about this many bytes at a time (at least one frame), so the
    /// frames not yet taken can still be dropped by ``appendDroppingOldest(_:)``. `nil` takes all.
    let chunk: Int?
    private(set) var phase = Phase.opening
    /// Whole frames, back to back, in the order appended.
    private var pending = FramePieces()
    /// Bytes appended and not yet reported written.
    private(set) var unsent = 0
    /// A flush is on its way (see the invariants above).
    private(set) var flushScheduled = false

    init(limit: Int, chunk: Int? = nil) {
        self.limit = limit
        self.chunk = chunk
    }

    /// Bytes queued and not yet taken by the loop.
    var queuedByteCount: Int { pending.count }

    /// True when a waiter for space may go on: unsent bytes are at or under half the limit.
    var hasRoomForWaiters: Bool { unsent <= limit / 2 }

    // MARK: Any thread (under the connection's lock)

    /// Appends `byteCount` bytes of whole frames, which `write` appends to the buffer it is given,
    /// followed by `payload` (retained, not copied) when given: then `write` appends the head of
    /// the frame that `payload` ends, and `byteCount` counts `payload` too.
    ///
    /// - Returns: ``Connection/SendResult/closed`` once closed, ``Connection/SendResult/full`` when
    ///   the frames would take the unsent bytes past the limit (an empty queue takes them anyway),
    ///   else queued, asking for a flush when the connection is open and none is on its way.
    mutating func append(byteCount: Int, payload: Data? = nil, _ write: (inout [UInt8]) -> Void) -> Appended {
        if phase == .closed { return Appended(result: .closed) }
        if unsent > 0, unsent + byteCount > limit { return Appended(result: .full) }
        pending.append(payload: payload, write)
        unsent += byteCount
        return Appended(result: .queued, scheduleFlush: askForFlush())
    }

    /// Appends one whole frame, first dropping the oldest queued message frames when there is no room.
    ///
    /// Only message frames still queued go. Frames of another kind at the front (a peer hello
    /// waiting for the handshake) stay first, and dropping stops at one further in, so the order
    /// of what remains is kept. Frames the loop has taken are no longer queued and never dropped.
    /// - Returns: what happened to `frame`, and the frames dropped (they stay dropped even when
    ///   `frame` still finds no room).
    mutating func appendDroppingOldest(_ frame: UnsafeRawBufferPointer) -> Appended {
        if phase == .closed { return Appended(result: .closed) }
        var dropped = Connection.Unsent()
        var start = 0
        var cut = 0
        let (queuedBefore, limit) = (unsent, self.limit)
        pending.forEachFrame { queued in
            guard queuedBefore - dropped.bytes > 0, queuedBefore - dropped.bytes + frame.count > limit else { return false }
            if queued.kind != FrameKind.message.rawValue {
                guard cut == start else { return false }
                start += queued.length
                cut = start
                return true
            }
            cut += queued.length
            dropped.frames += 1
            dropped.bytes += queued.length
            return true
        }
        if cut > start {
            pending.removeFrames(start..<cut)  // their retained payloads go with them
            unsent -= cut - start
        }
        if unsent > 0, unsent + frame.count > limit { return Appended(result: .full, dropped: dropped) }
        pending.append(contentsOf: frame)
        unsent += frame.count
        return Appended(result: .queued, scheduleFlush: askForFlush(), dropped: dropped)
    }

    /// Appends one whole frame whatever the limit (a closing frame: a few bytes that must follow
    /// everything queued).
    mutating func appendIgnoringLimit(_ frame: UnsafeRawBufferPointer) -> Appended {
        if phase == .closed { return Appended(result: .closed) }
        pending.append(contentsOf: frame)
        unsent += frame.count
        return Appended(result: .queued, scheduleFlush: askForFlush())
    }

    private mutating func askForFlush() -> Bool {
        guard phase == .open, !flushScheduled else { return false }
        flushScheduled = true
        return true
    }

    // MARK: The loop thread (under the connection's lock)

    /// The handshake is done: frames may flow. The connection flushes at once, so a flush counts
    /// as on its way from here.
    mutating func open() {
        guard phase == .opening else { return }
        phase = .open
        flushScheduled = true
    }

    /// Moves queued frames to the end of `buffer`: all of them, or with a ``chunk`` whole frames
    /// up to about that many bytes (at least one). Their bytes stay counted in ``unsent`` until
    /// reported with ``written(_:)``. Retained payloads move without a copy.
    ///
    /// - Returns: `false` when nothing is queued; the flush on its way is then over, and the next
    ///   append asks for another.
    mutating func take(into buffer: inout FramePieces) -> Bool {
        if pending.isEmpty {
            flushScheduled = false
            return false
        }
        if let chunk, pending.count > chunk {
            buffer.append(pending.removeFirst(pending.frameBoundary(atMost: chunk)))
        } else if buffer.isEmpty {
            swap(&pending, &buffer)  // the buffer's capacity is reused for the next appends
        } else {
            buffer.append(pending)
            pending.removeAll()
        }
        return true
    }

    /// The kernel accepted `count` bytes of taken frames (or a record holding that many).
    ///
    /// - Returns: true when unsent bytes are now at or under half the limit: waiters for space may go.
    mutating func written(_ count: Int) -> Bool {
        precondition(count >= 0 && count <= unsent, "wrote \(count) bytes of \(unsent) unsent")
        unsent -= count
        return hasRoomForWaiters
    }

    /// Ends the queue: later appends answer ``Connection/SendResult/closed``.
    ///
    /// - Returns: the frames still queued, never taken (the connection adds those it took and did
    ///   not finish writing).
    mutating func close() -> Connection.Unsent {
        let left = pending.countFrames(after: 0)
        phase = .closed
        pending = FramePieces()
        unsent = 0
        flushScheduled = false
        return left
    }

    // MARK: Frames

    /// The length field of the frame at `index` of `bytes` (its length less the field's 4 bytes).
    static func frameLength(in bytes: [UInt8], at index: Int) -> Int {
        Int(bytes[index]) << 24 | Int(bytes[index + 1]) << 16 | Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
    }

    /// Counts the frames in `bytes` (whole frames, back to back) that end after `offset`.
    static func countFrames(in bytes: [UInt8], after offset: Int) -> Connection.Unsent {
        var unsent = Connection.Unsent()
        var index = 0
        while index + 4 <= bytes.count {
            let end = index + 4 + frameLength(in: bytes, at: index)
            if end > offset {
                unsent.frames += 1
                unsent.bytes += end - max(index, offset)
            }
            index = end
        }
        return unsent
    }
}
