import Foundation
import Synchronization

/// The last few large control frames decoded in this process, so that nodes sharing a process
/// decode each topology update once, not once per node.
///
/// A full-view coordinator sends every node the same bytes for each delta (encoded once). A
/// process that hosts many nodes (a test, a benchmark's swarm, a pool of workers in one
/// program) would otherwise decode each delta once per node: in a join storm of N nodes, N²
/// records of JSON, which is what kept a 1,000-node process from answering its heartbeats.
/// A frame is reused only when its bytes equal a cached one's exactly; a decoded message is a
/// value, so sharing it shares nothing mutable. Small frames (heartbeats) are decoded as
/// before: comparing would cost as much as decoding. A process with one open node keeps nothing.
enum SharedControlDecoding {
    /// Nodes open in this process.
    private static let openNodes = Atomic<Int>(0)

    static func nodeOpened() { openNodes.add(1, ordering: .relaxed) }

    static func nodeClosed() {
        guard openNodes.subtract(1, ordering: .relaxed).newValue <= 1 else { return }
        recent.withLock { $0 = Recent() }
    }

    /// Frames shorter than this are always decoded.
    static let minimumBytes = 128
    /// How many decoded frames are kept: nodes busy with a backlog read the same delta up to
    /// seconds apart, while a join storm makes dozens of deltas a second.
    static let capacity = 256
    /// The most bytes of frames kept (the oldest go first).
    static let maximumBytes = 16 << 20

    private struct Entry: Sendable {
        let body: [UInt8]
        let message: ControlMessage
    }

    private struct Recent: Sendable {
        var entries: [Entry] = []
        var bytes = 0
    }

    private static let recent = Mutex(Recent())

    /// The message in `body`, decoded here or by another node of this process.
    ///
    /// - Throws: what ``ControlMessage/decode(_:)`` throws (a malformed frame is never cached).
    static func decode(_ body: [UInt8]) throws(FrameError) -> ControlMessage {
        guard body.count >= minimumBytes, openNodes.load(ordering: .relaxed) > 1 else { return try ControlMessage.decode(body) }
        // Compared with no lock held: the entries are values, copied out in one step.
        let entries = recent.withLock { $0.entries }
        // Newest first: the frame most likely to match is the one other nodes just read.
        for entry in entries.reversed() where entry.body.count == body.count && same(entry.body, body) {
            return entry.message
        }
        let message = try ControlMessage.decode(body)
        recent.withLock { recent in
            recent.entries.append(Entry(body: body, message: message))
            recent.bytes += body.count
            var drop = 0
            while recent.entries.count - drop > capacity || (recent.bytes > maximumBytes && drop < recent.entries.count - 1) {
                recent.bytes -= recent.entries[drop].body.count
                drop += 1
            }
            if drop > 0 { recent.entries.removeFirst(drop) }
        }
        return message
    }

    private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { a in b.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
