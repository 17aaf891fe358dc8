import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// Queued frames held as pieces (contiguous bytes and retained payloads): what the outbound
/// queue and the connection's writes and seals read them through.
@Suite("Frame pieces")
struct FramePiecesTests {
    /// A message frame of `size` bytes on the wire.
    static func frame(_ kind: FrameKind = .message, size: Int, fill: UInt8) -> [UInt8] {
        OutboundQueueTests.frame(kind, size: size, fill: fill)
    }

    /// Small frames and retained payloads, mixed: returns the pieces and the stream they hold.
    static func mixed(seed: UInt64) -> (FramePieces, [UInt8]) {
        var random = SplitMix64(seed: seed)
        var pieces = FramePieces()
        var stream: [UInt8] = []
        for index in 0..<Int.random(in: 1...12, using: &random) {
            let frame = Self.frame(size: Int.random(in: 5...300, using: &random), fill: UInt8(truncatingIfNeeded: index))
            if frame.count > 6, Bool.random(using: &random) {
                let head = Int.random(in: 5..<frame.count, using: &random)
                pieces.append(payload: Data(frame[head...])) { $0.append(contentsOf: frame[..<head]) }
            } else {
                frame.withUnsafeBytes { pieces.append(contentsOf: $0) }
            }
            stream += frame
        }
        return (pieces, stream)
    }

    @Test("a retained payload is the caller's memory: taken and read without a copy")
    func payloadsAreNotCopied() throws {
        let payload = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0) })
        var head: [UInt8] = []
        Frame.appendHeader(kind: FrameKind.message.rawValue, bodyLength: 3 + payload.count, to: &head)
        head += [7, 7, 7]
        var queue = OutboundQueue(limit: 1 << 20)
        queue.open()
        _ = queue.append(byteCount: 8 + payload.count, payload: payload) { $0.append(contentsOf: head) }
        var taken = FramePieces()
        #expect(OutboundQueueTests.take(&queue, into: &taken))
        #expect(taken.count == 8 + payload.count && taken.retainedPayloads == 1)
        let original = payload.withUnsafeBytes { $0.baseAddress }
        taken.withBuffers(from: 0, to: taken.count) { buffers in
            #expect(buffers.count == 2)
            #expect(buffers[1].baseAddress == original, "the kernel is handed the caller's bytes")
        }
        taken.withBuffers(from: 100, to: 5000) { buffers in
            #expect(buffers.count == 1 && buffers[0].baseAddress == original.map { $0 + 92 } && buffers[0].count == 4900)
        }
        #expect(taken.countFrames(after: 0) == .init(frames: 1, bytes: taken.count))
        #expect(taken.countFrames(after: 5000) == .init(frames: 1, bytes: taken.count - 5000), "a write that ended inside the payload")
    }

    @Test("any stretch of the stream reads back as its bytes, in at most the buffers asked", arguments: 0..<16)
    func buffersCoverTheStream(seed: UInt64) {
        let (pieces, stream) = Self.mixed(seed: seed)
        #expect(pieces.count == stream.count)
        #expect(pieces.joined == stream)
        var random = SplitMix64(seed: seed &+ 100)
        for _ in 0..<50 {
            let start = Int.random(in: 0...stream.count, using: &random)
            let end = Int.random(in: start...stream.count, using: &random)
            let most = Int.random(in: 1...4, using: &random)
            let read = pieces.withBuffers(from: start, to: end, maximumBuffers: most) { buffers -> [UInt8] in
                #expect(buffers.count <= most && buffers.allSatisfy { !$0.isEmpty })
                return buffers.flatMap { Array($0) }
            }
            #expect(read == Array(stream[start..<start + read.count]), "seed \(seed): \(start)..<\(end)")
            let all = pieces.withBuffers(from: start, to: end) { $0.flatMap { Array($0) } }
            #expect(all == Array(stream[start..<end]), "seed \(seed): \(start)..<\(end) unbounded")
        }
    }

    @Test("cutting at frame boundaries and dropping frames keeps the rest, payloads and order", arguments: 0..<16)
    func cutsAndDrops(seed: UInt64) {
        let (pieces, stream) = Self.mixed(seed: seed)
        var ends: [Int] = [0]
        pieces.forEachFrame { ends.append($0.end); return true }
        #expect(ends.last == stream.count, "frames cover the stream")
        var random = SplitMix64(seed: seed &+ 200)
        let cut = ends.randomElement(using: &random)!
        var rest = pieces
        let first = rest.removeFirst(cut)
        #expect(first.joined == Array(stream[..<cut]) && rest.joined == Array(stream[cut...]))
        #expect(first.retainedPayloads + rest.retainedPayloads == pieces.retainedPayloads, "no payload copied or lost")
        let a = ends.randomElement(using: &random)!
        let b = ends.randomElement(using: &random)!
        var dropped = pieces
        dropped.removeFrames(min(a, b)..<max(a, b))
        #expect(dropped.joined == Array(stream[..<min(a, b)] + stream[max(a, b)...]))
        #expect(dropped.count == stream.count - (max(a, b) - min(a, b)))
        var joined = first
        joined.append(rest)
        #expect(joined.joined == stream)
        #expect(pieces.frameBoundary(atMost: 1) == ends[1], "at least one frame")
    }

    @Test("drop oldest drops a queued frame's retained payload with it, never a taken one")
    func dropOldestTakesPayloads() {
        var queue = OutboundQueue(limit: 1000)
        queue.open()
        let big = Self.frame(size: 400, fill: 1)
        let small = Self.frame(size: 20, fill: 2)
        _ = OutboundQueueTests.appendRetained(&queue, big, head: 10)
        var taken = FramePieces()
        #expect(OutboundQueueTests.take(&queue, into: &taken))
        #expect(taken.retainedPayloads == 1)
        _ = OutboundQueueTests.appendRetained(&queue, big, head: 12)
        _ = OutboundQueueTests.append(&queue, small)
        let newest = Self.frame(size: 300, fill: 3)
        let appended = OutboundQueueTests.appendDroppingOldest(&queue, newest)
        #expect(appended.result == .queued && appended.dropped == .init(frames: 1, bytes: 400), "the queued large one goes")
        #expect(queue.unsent == 400 + 20 + 300)
        var rest = FramePieces()
        #expect(OutboundQueueTests.take(&queue, into: &rest))
        #expect(rest.retainedPayloads == 0, "its payload went with its head")
        #expect(rest.joined == small + newest)
        #expect(taken.joined == big, "what was taken is untouched")
        #expect(OutboundQueueTests.close(&queue) == .init(frames: 0, bytes: 0))
    }

    @Test("a take with a chunk moves a large frame whole, its payload with it")
    func chunkMovesPayloadWhole() {
        var queue = OutboundQueue(limit: 10_000, chunk: 100)
        queue.open()
        let frames = [Self.frame(size: 30, fill: 1), Self.frame(size: 3000, fill: 2), Self.frame(size: 30, fill: 3)]
        _ = OutboundQueueTests.append(&queue, frames[0])
        _ = OutboundQueueTests.appendRetained(&queue, frames[1], head: 40)
        _ = OutboundQueueTests.append(&queue, frames[2])
        var takes: [[UInt8]] = []
        var retained: [Int] = []
        while true {
            var pieces = FramePieces()
            guard queue.take(into: &pieces) else { break }
            takes.append(pieces.joined)
            retained.append(pieces.retainedPayloads)
        }
        #expect(takes == frames, "30 + 3000 is past the chunk: each frame alone")
        #expect(retained == [0, 1, 0])
        #expect(OutboundQueueTests.close(&queue) == .init(frames: 0, bytes: 0))
    }

    @Test("the close counts queued frames with retained payloads whole")
    func closeCountsPayloads() {
        var queue = OutboundQueue(limit: 10_000)
        queue.open()
        _ = OutboundQueueTests.appendRetained(&queue, Self.frame(size: 3000, fill: 2), head: 9)
        _ = OutboundQueueTests.append(&queue, Self.frame(size: 30, fill: 1))
        #expect(OutboundQueueTests.close(&queue) == .init(frames: 2, bytes: 3030))
    }
}
