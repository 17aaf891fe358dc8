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
/// value, so sharing it shares nothing mutable. Small frames (heartbeats, acknowledgements)
/// are decoded as before: comparing would cost as much as decoding.
enum SharedControlDecoding {
    /// Frames shorter than this are always decoded.
    static let minimumBytes = 1_024
    /// How many decoded frames are kept (the nodes of one process receive the same delta at
    /// about the same time; a few are enough).
    static let capacity = 4

    private struct Entry: Sendable {
        let body: [UInt8]
        let message: ControlMessage
    }

    private static let recent = Mutex<[Entry]>([])

    /// The message in `body`, decoded here or by another node of this process.
    ///
    /// - Throws: what ``ControlMessage/decode(_:)`` throws (a malformed frame is never cached).
    static func decode(_ body: [UInt8]) throws(FrameError) -> ControlMessage {
        guard body.count >= minimumBytes else { return try ControlMessage.decode(body) }
        // Compared with no lock held: the entries are values, copied out in one step.
        let entries = recent.withLock { $0 }
        for entry in entries where entry.body.count == body.count && same(entry.body, body) {
            return entry.message
        }
        let message = try ControlMessage.decode(body)
        recent.withLock { recent in
            if recent.count >= capacity { recent.removeFirst() }
            recent.append(Entry(body: body, message: message))
        }
        return message
    }

    private static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { a in b.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
