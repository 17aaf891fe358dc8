import Dispatch
import Foundation
import Mesh
import Synchronization

/// A file written in order on a queue of its own, so the blocking `write` calls never run on
/// the cooperative thread pool. The only place the bag code makes file system calls.
///
/// Callers hand over bytes with ``enqueue(_:)`` (never blocks) and wait with ``waitForRoom()``
/// while more than ``backlogLimit`` bytes are still unwritten. The first write error (disk full,
/// I/O error) is kept in ``failure``; the bytes after it are dropped, so the file ends where the
/// last successful write did.
final class BagFile: Sendable {
    private struct State {
        var queued: [[UInt8]] = []
        var backlog = 0
        var written: UInt64 = 0
        var failure: String?
        var draining = false
        /// Set by ``close()``: later bytes are dropped, never written to a descriptor that may be reused.
        var closed = false
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let path: String
    let backlogLimit: Int
    private let descriptor: Int32
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "mesh-bag-file")

    /// Creates the file at `path`, replacing one that is there.
    ///
    /// An existing file is removed first rather than truncated in place: a reader that has the
    /// old file mapped (`mesh bag play` of the previous recording) keeps reading it intact instead
    /// of faulting on pages that vanished. Where it cannot be removed, it is truncated.
    /// - Throws: ``MeshBagError/cannotCreate(path:reason:)``.
    init(creating path: String, backlogLimit: Int = 64 << 20) throws(MeshBagError) {
        self.path = path
        self.backlogLimit = backlogLimit
        var status = stat()
        if lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG { unlink(path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .cannotCreate(path: path, reason: String(cString: strerror(errno))) }
        descriptor = fd
    }

    /// Bytes written to the file so far.
    var written: UInt64 { state.withLock { $0.written } }

    /// Why writing stopped, once it has.
    var failure: String? { state.withLock { $0.failure } }

    /// True while more than ``backlogLimit`` bytes wait to be written.
    var isBacklogged: Bool { state.withLock { $0.backlog > backlogLimit } }

    /// Queues `segments` to be written after everything queued before.
    func enqueue(_ segments: [[UInt8]]) {
        let start = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            for segment in segments where !segment.isEmpty {
                state.queued.append(segment)
                state.backlog += segment.count
            }
            guard !state.draining, !state.queued.isEmpty else { return false }
            state.draining = true
            return true
        }
        if start { queue.async { self.drain() } }
    }

    /// Suspends while the backlog is over the limit.
    func waitForRoom() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let wait = state.withLock { state -> Bool in
                guard state.backlog > backlogLimit, state.failure == nil else { return false }
                state.roomWaiters.append(continuation)
                return true
            }
            if !wait { continuation.resume() }
        }
    }

    /// Writes what is queued, flushes it to the disk and closes the file.
    ///
    /// - Returns: the first write error, if any.
    func close() async -> String? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // The queue is serial: this runs after every drain already queued.
            queue.async {
                // Closed first, so nothing can be queued behind the last drain.
                let wasClosed = self.state.withLock { state -> Bool in
                    defer { state.closed = true }
                    return state.closed
                }
                if !wasClosed {
                    self.drain()
                    _ = fsync(self.descriptor)
                    Glibc.close(self.descriptor)
                }
                continuation.resume()
            }
        }
        return failure
    }

    /// Runs on ``queue``: writes segments until none are left.
    private func drain() {
        while true {
            let batch = state.withLock { state -> [[UInt8]] in
                defer { state.queued.removeAll() }
                if state.queued.isEmpty { state.draining = false }
                return state.queued
            }
            if batch.isEmpty { return }
            for segment in batch {
                let error = state.withLock { $0.failure } == nil ? writeAll(segment) : nil
                let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                    state.backlog -= segment.count
                    if let error, state.failure == nil {
                        state.failure = error
                    } else if error == nil, state.failure == nil {
                        state.written += UInt64(segment.count)
                    }
                    guard state.backlog <= backlogLimit || state.failure != nil else { return [] }
                    defer { state.roomWaiters = [] }
                    return state.roomWaiters
                }
                for waiter in waiters { waiter.resume() }
            }
        }
    }

    /// Writes all of `bytes`; returns the error text when a write fails.
    private func writeAll(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { raw -> String? in
            var done = 0
            while done < raw.count {
                let result = write(descriptor, raw.baseAddress! + done, raw.count - done)
                if result < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                done += result
            }
            return nil
        }
    }
}

/// Why recording or reading a bag failed.
package enum MeshBagError: Error, Sendable, CustomStringConvertible {
    /// The output file could not be created.
    case cannotCreate(path: String, reason: String)
    /// Writing the file failed part way (disk full, I/O error); what was written before is kept.
    case writeFailed(path: String, reason: String, messages: Int)
    /// Recording every topic was asked of a node with a partial topology view, which holds only
    /// the records it routes to and so would find no topic to record.
    case needsFullView

    package var description: String {
        switch self {
        case .cannotCreate(let path, let reason): return "cannot create \(path): \(reason)"
        case .writeFailed(let path, let reason, let messages):
            return "writing \(path) failed: \(reason); the file keeps what was written before (up to \(messages) message(s))"
        case .needsFullView:
            return "recording every topic needs a node that holds the whole topology"
                + " (MeshNode.Configuration.topologyView = .full); this node holds a partial view, which lists no other node's topics"
        }
    }
}
