import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// The outbound queue on its own: no socket, no loop, no clock. Each test feeds it the events a
/// connection would (appends from senders, the handshake ending, the loop taking and writing,
/// the close) and checks what it answers.
@Suite("Outbound queue")
struct OutboundQueueTests {
    /// A frame of `kind` whose whole length on the wire is `size` bytes (at least 5).
    static func frame(_ kind: FrameKind = .message, size: Int, fill: UInt8 = 0) -> [UInt8] {
        Frame(kind: kind.rawValue, body: [UInt8](repeating: fill, count: size - Frame.headerLength)).encoded
    }

    static func append(_ queue: inout OutboundQueue, _ bytes: [UInt8]) -> OutboundQueue.Appended {
        queue.append(byteCount: bytes.count) { $0.append(contentsOf: bytes) }
    }

    /// Appends `frame` as a connection appends a large message: its first `head` bytes copied,
    /// the rest retained as a payload.
    static func appendRetained(_ queue: inout OutboundQueue, _ frame: [UInt8], head: Int) -> OutboundQueue.Appended {
        queue.append(byteCount: frame.count, payload: Data(frame[head...])) { $0.append(contentsOf: frame[..<head]) }
    }

    static func appendDroppingOldest(_ queue: inout OutboundQueue, _ bytes: [UInt8]) -> OutboundQueue.Appended {
        bytes.withUnsafeBytes { queue.appendDroppingOldest($0) }
    }

    // `#expect` cannot make mutating calls itself.
    static func take(_ queue: inout OutboundQueue, into buffer: inout [UInt8]) -> Bool { queue.take(into: &buffer) }
    static func take(_ queue: inout OutboundQueue, into pieces: inout FramePieces) -> Bool { queue.take(into: &pieces) }
    static func written(_ queue: inout OutboundQueue, _ count: Int) -> Bool { queue.written(count) }
    static func close(_ queue: inout OutboundQueue) -> Connection.Unsent { queue.close() }

    /// Everything queued, taken at once (as a connection without a chunk does).
    static func takeAll(_ queue: inout OutboundQueue) -> [UInt8] {
        var buffer: [UInt8] = []
        while queue.take(into: &buffer) {}
        return buffer
    }

    // MARK: Flushes

    @Test("frames wait for the handshake; then the first frame of each burst asks for one flush")
    func oneFlushPerBurst() {
        var queue = OutboundQueue(limit: 1000)
        let a = Self.frame(size: 10, fill: 1)
        let b = Self.frame(size: 10, fill: 2)
        #expect(Self.append(&queue, a) == .init(result: .queued, scheduleFlush: false), "not open yet: nothing to flush")
        #expect(queue.phase == .opening && !queue.flushScheduled)
        queue.open()
        #expect(queue.phase == .open)
        #expect(queue.flushScheduled, "the connection flushes as it opens")
        #expect(Self.append(&queue, b) == .init(result: .queued, scheduleFlush: false), "that flush takes this frame too")
        var taken: [UInt8] = []
        #expect(Self.take(&queue, into: &taken))
        #expect(taken == a + b, "in the order appended")
        #expect(queue.flushScheduled, "still on its way until a take finds nothing")
        #expect(Self.append(&queue, a) == .init(result: .queued, scheduleFlush: false), "the flush under way takes it")
        taken.removeAll()
        #expect(Self.take(&queue, into: &taken))
        #expect(taken == a)
        taken.removeAll()
        #expect(!Self.take(&queue, into: &taken))
        #expect(!queue.flushScheduled)
        // A new burst: its first frame asks, the rest do not.
        #expect(Self.append(&queue, a).scheduleFlush)
        for _ in 0..<10 { #expect(!Self.append(&queue, b).scheduleFlush) }
        #expect(Self.takeAll(&queue).count == 110)
        #expect(!queue.flushScheduled)
    }

    @Test("opening twice, or after the close, changes nothing")
    func openIsOnce() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        _ = Self.takeAll(&queue)
        #expect(!queue.flushScheduled)
        queue.open()
        #expect(!queue.flushScheduled, "a second open asks for no flush")
        _ = queue.close()
        queue.open()
        #expect(queue.phase == .closed)
    }

    // MARK: Space

    @Test("unsent bytes count what the loop took until the kernel has it; waiters go at half the limit")
    func unsentAndWaiters() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        _ = Self.append(&queue, Self.frame(size: 60))
        #expect(queue.unsent == 60 && queue.queuedByteCount == 60)
        let taken = Self.takeAll(&queue)
        #expect(taken.count == 60)
        #expect(queue.unsent == 60, "taken is not written")
        #expect(queue.queuedByteCount == 0)
        #expect(!queue.hasRoomForWaiters)
        #expect(Self.append(&queue, Self.frame(size: 41)).result == .full, "60 taken + 41 is past 100")
        #expect(Self.append(&queue, Self.frame(size: 40)).result == .queued, "exactly the limit fits")
        #expect(Self.takeAll(&queue).count == 40)
        #expect(!Self.written(&queue, 45), "55 left: over half")
        #expect(Self.written(&queue, 5), "50 left: half the limit")
        #expect(queue.hasRoomForWaiters)
        #expect(Self.written(&queue, 10))
        #expect(queue.unsent == 40)
    }

    @Test("an empty queue takes one frame of any size; nothing more until it is written")
    func oversizedFrame() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        #expect(Self.append(&queue, Self.frame(size: 500)) == .init(result: .queued, scheduleFlush: false))
        #expect(Self.append(&queue, Self.frame(size: 5)).result == .full)
        #expect(Self.takeAll(&queue).count == 500)
        #expect(Self.append(&queue, Self.frame(size: 5)).result == .full, "taken, not written")
        #expect(!Self.written(&queue, 400), "100 left: over half")
        #expect(Self.written(&queue, 100))
        #expect(Self.append(&queue, Self.frame(size: 5)) == .init(result: .queued, scheduleFlush: true))
    }

    @Test("closed: appends answer closed; the close reports the frames never taken")
    func close() {
        var queue = OutboundQueue(limit: 1000)
        queue.open()
        for size in [10, 20] { _ = Self.append(&queue, Self.frame(size: size)) }
        _ = Self.takeAll(&queue)
        for size in [30, 40, 50] { _ = Self.append(&queue, Self.frame(size: size)) }
        #expect(Self.close(&queue) == .init(frames: 3, bytes: 120), "the taken ones are the connection's to count")
        #expect(queue.phase == .closed)
        #expect(queue.unsent == 0 && queue.queuedByteCount == 0 && !queue.flushScheduled)
        #expect(Self.append(&queue, Self.frame(size: 10)) == .init(result: .closed))
        #expect(Self.appendDroppingOldest(&queue, Self.frame(size: 10)) == .init(result: .closed))
        var buffer: [UInt8] = []
        #expect(!Self.take(&queue, into: &buffer))
        #expect(Self.close(&queue) == .init(frames: 0, bytes: 0))
    }

    // MARK: Chunks

    @Test("with a chunk, takes cut at frame boundaries, at least one frame each")
    func chunkedTaking() {
        var queue = OutboundQueue(limit: 1000, chunk: 20)
        queue.open()
        let frames = [Self.frame(size: 8, fill: 1), Self.frame(size: 8, fill: 2), Self.frame(size: 8, fill: 3), Self.frame(size: 30, fill: 4)]
        for frame in frames { _ = Self.append(&queue, frame) }
        var takes: [[UInt8]] = []
        while true {
            var buffer: [UInt8] = []
            guard queue.take(into: &buffer) else { break }
            takes.append(buffer)
        }
        #expect(takes == [frames[0] + frames[1], frames[2], frames[3]], "two frames fit 20 bytes; a 30-byte one goes alone")
        #expect(queue.unsent == 54 && !queue.flushScheduled)
        // Under the chunk, everything queued goes at once.
        _ = Self.append(&queue, frames[0])
        _ = Self.append(&queue, frames[1])
        var buffer: [UInt8] = []
        #expect(Self.take(&queue, into: &buffer))
        #expect(buffer == frames[0] + frames[1])
    }

    @Test("a take appends to what the buffer holds")
    func takeAppends() {
        var queue = OutboundQueue(limit: 1000)
        queue.open()
        let a = Self.frame(size: 6, fill: 7)
        _ = Self.append(&queue, a)
        var buffer: [UInt8] = [9, 9]
        #expect(Self.take(&queue, into: &buffer))
        #expect(buffer == [9, 9] + a)
    }

    // MARK: Dropping the oldest

    @Test("drop oldest: the oldest queued messages go, just enough of them, in order")
    func dropOldest() {
        var queue = OutboundQueue(limit: 100)
        let messages = (1...4).map { Self.frame(size: 25, fill: UInt8($0)) }
        for message in messages { _ = Self.append(&queue, message) }
        let newest = Self.frame(size: 30, fill: 9)
        let appended = Self.appendDroppingOldest(&queue, newest)
        #expect(appended == .init(result: .queued, scheduleFlush: false, dropped: .init(frames: 2, bytes: 50)))
        #expect(queue.unsent == 80)
        queue.open()
        #expect(Self.takeAll(&queue) == messages[2] + messages[3] + newest)
    }

    @Test("drop oldest: a peer hello at the front stays first")
    func helloStays() {
        var queue = OutboundQueue(limit: 100)
        let hello = Self.frame(.peerHello, size: 25, fill: 0xEE)
        _ = Self.append(&queue, hello)
        let messages = (1...3).map { Self.frame(size: 25, fill: UInt8($0)) }
        for message in messages { _ = Self.append(&queue, message) }
        let newest = Self.frame(size: 25, fill: 9)
        #expect(Self.appendDroppingOldest(&queue, newest).dropped == .init(frames: 1, bytes: 25))
        queue.open()
        #expect(Self.takeAll(&queue) == hello + messages[1] + messages[2] + newest)
    }

    @Test("drop oldest: dropping stops at a frame of another kind further in, and then the frame is full")
    func dropStopsAtOtherKinds() {
        var queue = OutboundQueue(limit: 100)
        let first = Self.frame(size: 25, fill: 1)
        let control = Self.frame(.control, size: 25, fill: 0xCC)
        let rest = [Self.frame(size: 25, fill: 2), Self.frame(size: 25, fill: 3)]
        for frame in [first, control] + rest { _ = Self.append(&queue, frame) }
        let appended = Self.appendDroppingOldest(&queue, Self.frame(size: 30))
        #expect(appended == .init(result: .full, dropped: .init(frames: 1, bytes: 25)), "what was dropped stays dropped")
        #expect(queue.unsent == 75)
        queue.open()
        #expect(Self.takeAll(&queue) == control + rest[0] + rest[1], "order kept")
    }

    @Test("drop oldest: frames the loop took are never dropped, only counted")
    func takenFramesStay() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        let taken = [Self.frame(size: 25, fill: 1), Self.frame(size: 25, fill: 2)]
        for frame in taken { _ = Self.append(&queue, frame) }
        #expect(Self.takeAll(&queue) == taken[0] + taken[1])
        let queued = [Self.frame(size: 25, fill: 3), Self.frame(size: 25, fill: 4)]
        for frame in queued { _ = Self.append(&queue, frame) }
        let newest = Self.frame(size: 40, fill: 9)
        let appended = Self.appendDroppingOldest(&queue, newest)
        #expect(appended == .init(result: .queued, scheduleFlush: false, dropped: .init(frames: 2, bytes: 50)), "the first of the two queued asked")
        #expect(queue.unsent == 90)
        #expect(Self.takeAll(&queue) == newest)
        #expect(Self.written(&queue, 90))
        #expect(queue.unsent == 0)
        // When the taken bytes alone fill the limit there is nothing to drop.
        for frame in taken + taken { _ = Self.append(&queue, frame) }
        _ = Self.takeAll(&queue)
        #expect(Self.appendDroppingOldest(&queue, Self.frame(size: 10)) == .init(result: .full))
    }

    @Test("drop oldest: an empty queue takes a frame of any size and asks for a flush when open")
    func dropOldestIntoEmpty() {
        var queue = OutboundQueue(limit: 100)
        queue.open()
        _ = Self.takeAll(&queue)
        #expect(Self.appendDroppingOldest(&queue, Self.frame(size: 300)) == .init(result: .queued, scheduleFlush: true))
    }

    // MARK: Against a model

    /// The queue's rules restated over a list of frames, the plainest way.
    struct Model {
        let limit: Int
        let chunk: Int?
        var phase = OutboundQueue.Phase.opening
        var queued: [[UInt8]] = []
        var inFlight = 0
        var flushScheduled = false

        var unsent: Int { queued.reduce(0) { $0 + $1.count } + inFlight }

        mutating func ask() -> Bool {
            guard phase == .open, !flushScheduled else { return false }
            flushScheduled = true
            return true
        }

        mutating func append(_ frame: [UInt8]) -> OutboundQueue.Appended {
            if phase == .closed { return .init(result: .closed) }
            if unsent > 0, unsent + frame.count > limit { return .init(result: .full) }
            queued.append(frame)
            return .init(result: .queued, scheduleFlush: ask())
        }

        mutating func appendDroppingOldest(_ frame: [UInt8]) -> OutboundQueue.Appended {
            if phase == .closed { return .init(result: .closed) }
            var dropped = Connection.Unsent()
            // Frames of other kinds at the very front are stepped over; one further in stops it.
            let index = queued.firstIndex { $0[4] == FrameKind.message.rawValue } ?? queued.count
            while index < queued.count, unsent > 0, unsent + frame.count > limit,
                queued[index][4] == FrameKind.message.rawValue
            {
                dropped.frames += 1
                dropped.bytes += queued.remove(at: index).count
            }
            if unsent > 0, unsent + frame.count > limit { return .init(result: .full, dropped: dropped) }
            queued.append(frame)
            return .init(result: .queued, scheduleFlush: ask(), dropped: dropped)
        }

        mutating func take() -> [UInt8]? {
            guard !queued.isEmpty else {
                flushScheduled = false
                return nil
            }
            var taken: [UInt8] = []
            while let next = queued.first, taken.isEmpty || chunk.map({ taken.count + next.count <= $0 }) ?? true {
                taken += queued.removeFirst()
            }
            inFlight += taken.count
            return taken
        }
    }

    @Test("random sequences of appends, drops, takes, writes and closes do what the model says", arguments: 0..<24)
    func matchesTheModel(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let limit = Int.random(in: 40...400, using: &random)
        let chunk: Int? = Bool.random(using: &random) ? Int.random(in: 10...120, using: &random) : nil
        var queue = OutboundQueue(limit: limit, chunk: chunk)
        var model = Model(limit: limit, chunk: chunk)
        var fill: UInt8 = 0
        for step in 0..<400 {
            let roll = Int.random(in: 0..<100, using: &random)
            fill &+= 1
            let kind: FrameKind = Int.random(in: 0..<10, using: &random) == 0 ? .peerHello : (Int.random(in: 0..<10, using: &random) == 0 ? .control : .message)
            let frame = Self.frame(kind, size: Int.random(in: 5...(limit / 2), using: &random), fill: fill)
            let context = "seed \(seed), step \(step)"
            switch roll {
            case 25..<40 where frame.count > Frame.headerLength:
                // A frame whose tail is retained, as a large message's payload is: the same rules.
                let head = Int.random(in: 5..<frame.count, using: &random)
                #expect(Self.appendRetained(&queue, frame, head: head) == model.append(frame), "\(context): append retained")
            case 0..<40:
                #expect(Self.append(&queue, frame) == model.append(frame), "\(context): append")
            case 40..<55:
                #expect(Self.appendDroppingOldest(&queue, frame) == model.appendDroppingOldest(frame), "\(context): drop oldest")
            case 55..<75:
                var buffer: [UInt8] = []
                let took = queue.take(into: &buffer)
                let expected = model.take()
                #expect(took == (expected != nil), "\(context): take")
                #expect(buffer == (expected ?? []), "\(context): taken bytes")
                #expect(OutboundQueue.countFrames(in: buffer, after: 0).bytes == buffer.count, "\(context): whole frames only")
            case 75..<93:
                let count = Int.random(in: 0...model.inFlight, using: &random)
                model.inFlight -= count
                #expect(Self.written(&queue, count) == (model.unsent <= limit / 2), "\(context): written")
            case 93..<97:
                if model.phase == .opening {
                    model.phase = .open
                    model.flushScheduled = true
                }
                queue.open()
            default:
                // Late in the run: a closed queue has little left to check.
                if step >= 300, Int.random(in: 0..<4, using: &random) == 0 {
                    let left = model.queued.reduce(into: Connection.Unsent()) { $0.frames += 1; $0.bytes += $1.count }
                    #expect(Self.close(&queue) == left, "\(context): close")
                    model.phase = .closed
                    model.queued = []
                    model.inFlight = 0
                    model.flushScheduled = false
                }
            }
            #expect(queue.phase == model.phase, "\(context)")
            #expect(queue.unsent == model.unsent, "\(context): unsent")
            #expect(queue.queuedByteCount == model.queued.reduce(0) { $0 + $1.count }, "\(context): queued")
            #expect(queue.flushScheduled == model.flushScheduled, "\(context): flush scheduled")
            #expect(queue.hasRoomForWaiters == (model.unsent <= limit / 2), "\(context): room")
        }
    }
}

/// The tests' way of taking: the pieces taken, joined (copying payloads) onto `buffer`.
extension OutboundQueue {
    mutating func take(into buffer: inout [UInt8]) -> Bool {
        var pieces = FramePieces()
        let took = take(into: &pieces)
        buffer.append(contentsOf: pieces.joined)
        return took
    }
}
