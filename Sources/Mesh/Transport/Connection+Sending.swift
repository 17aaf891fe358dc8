import CMeshSystem
import Foundation
import MeshCrypto
import Synchronization

/// Sending: what any thread may call to queue bytes on a connection, and the few writes made
/// straight from the caller's thread.
extension Connection {
    // MARK: Sending (any thread)

    /// Queues bytes that hold one or more whole frames.
    ///
    /// Frames queued before the handshake finishes are sent right after it. A connection with
    /// nothing queued always takes the frame, however large, so one oversized message cannot
    /// wedge a peer forever.
    @discardableResult
    package func send(_ bytes: UnsafeRawBufferPointer) -> SendResult {
        enqueue(byteCount: bytes.count) { $0.append(contentsOf: bytes) }
    }

    /// Queues one message frame, written straight into the send buffer (no intermediate copy).
    func sendMessage(topic: UnsafeRawBufferPointer, encoding: PayloadEncoding, payload: UnsafeRawBufferPointer)
        -> SendResult
    {
        enqueue(byteCount: MessageFrame.frameLength(topicBytes: topic.count, payloadBytes: payload.count)) {
            MessageFrame.append(topic: topic, encoding: encoding, payload: payload, to: &$0)
        }
    }

    /// Appends `byteCount` bytes of whole frames with `write`, under the lock, unless full or closed.
    ///
    /// A send from a thread other than the loop's onto an idle connection (nothing queued, nothing
    /// being written), when it is the first send in the process since the loop went to sleep in
    /// `epoll_wait`, is written at once by the caller,
    /// outside the lock (senders meanwhile queue behind it): a lone message (a request, a ping) does not wait for the loop to wake. Any
    /// other send queues its frames and leaves the writing to the loop thread: by the time it runs,
    /// a burst has usually gathered, and one `send` carries all of it. (Writing every message
    /// from the caller's thread cost 1→8 fan-out 5×, because every small write hands the core to
    /// the woken receiver; the first-send test keeps bursts on the loop: a second send before the
    /// loop wakes is queued, so at most one direct write happens per loop sleep, without a clock.) A send from the loop thread
    /// itself (a listener's reply) is queued and flushed later in the same loop iteration.
    func enqueue(byteCount: Int, _ write: (inout [UInt8]) -> Void) -> SendResult {
        // The first send since the loop went to sleep in epoll_wait, from another thread: a busy
        // loop flushes soon without a wake-up, and a second send before it wakes is a burst.
        let lone = loop.isFirstSendWhileIdle()
        enum Step { case done(SendResult, schedule: Bool), direct }
        let step = shared.withLock { shared -> Step in
            if shared.closed { return .done(.closed, schedule: false) }
            if shared.unsent > 0, shared.unsent + byteCount > options.maximumPendingBytes { return .done(.full, schedule: false) }
            if lone, shared.directWrites, !shared.flushScheduled, shared.pending.isEmpty {
                // Idle: nothing queued or in flight. Marked in flight, so later sends queue behind
                // this frame and the loop leaves the socket alone until it is written.
                shared.flushScheduled = true
                shared.directWriting = true
                return .direct
            }
            write(&shared.pending)
            shared.unsent += byteCount
            guard shared.open, !shared.flushScheduled else { return .done(.queued, schedule: false) }
            shared.flushScheduled = true
            return .done(.queued, schedule: true)
        }
        let result: SendResult
        let schedule: Bool
        switch step {
        case .done(let outcome, let flush):
            (result, schedule) = (outcome, flush)
        case .direct:
            (result, schedule) = writeDirectly(byteCount: byteCount, write)
        }
        if schedule { loop.execute { self.flush() } }
        return result
    }

    /// Writes one frame from the caller's thread, outside the lock (other senders queue behind it
    /// meanwhile). What the kernel does not take goes to the front of the queue for the loop.
    func writeDirectly(byteCount: Int, _ write: (inout [UInt8]) -> Void) -> (SendResult, Bool) {
        var frame: [UInt8] = []
        frame.reserveCapacity(byteCount)
        write(&frame)
        // A socket error is left for the loop's flush to meet and report.
        let written = (try? frame.withUnsafeBytes { raw in try socket.write(raw) }) ?? 0
        let (result, schedule, closeSocket) = shared.withLock { shared -> (SendResult, Bool, Bool) in
            shared.directWriting = false
            if shared.closed {
                // Closed meanwhile: the loop left the descriptor to this thread.
                return (written == byteCount ? .queued : .closed, false, true)
            }
            if written < byteCount {
                shared.pending.insert(contentsOf: frame, at: 0)
                shared.pendingSkip = written
                shared.unsent += byteCount - written
            }
            // A close asked for meanwhile (direct writes off) needs the loop's flush to finish it.
            if shared.pending.isEmpty, shared.directWrites {
                shared.flushScheduled = false
                return (.queued, false, false)
            }
            return (.queued, true, false)
        }
        if closeSocket { socket.close() }
        return (result, schedule)
    }

    /// Queues one whole frame, first dropping the oldest queued frames when there is no room.
    ///
    /// Only frames not yet handed to the kernel can be dropped; a frame partly written stays.
    /// - Returns: what happened to `frame`, and the frames and bytes dropped to make room.
    func sendDroppingOldest(_ frame: [UInt8]) -> (SendResult, dropped: Unsent) {
        let (result, dropped, schedule) = shared.withLock { shared -> (SendResult, Unsent, Bool) in
            if shared.closed { return (.closed, Unsent(), false) }
            var dropped = Unsent()
            let limit = options.maximumPendingBytes
            // Only message frames go: a peer hello still waiting at the front must stay first.
            var start = 0
            if shared.pendingSkip > 0, shared.pending.count >= Frame.headerLength {
                // The front frame is partly written already: it stays, like a hello.
                start = shared.pending.withUnsafeBytes { raw in
                    4 + (Int(raw[0]) << 24 | Int(raw[1]) << 16 | Int(raw[2]) << 8 | Int(raw[3]))
                }
            }
            var cut = start
            while shared.unsent - dropped.bytes > 0, shared.unsent - dropped.bytes + frame.count > limit,
                cut + Frame.headerLength <= shared.pending.count
            {
                let (length, kind) = shared.pending.withUnsafeBytes { raw in
                    (Int(raw[cut]) << 24 | Int(raw[cut + 1]) << 16 | Int(raw[cut + 2]) << 8 | Int(raw[cut + 3]), raw[cut + 4])
                }
                if kind != FrameKind.message.rawValue {
                    guard cut == start else { break }
                    start += 4 + length
                    cut = start
                    continue
                }
                cut += 4 + length
                dropped.frames += 1
                dropped.bytes += 4 + length
            }
            if cut > start {
                shared.pending.removeSubrange(start..<cut)
                shared.unsent -= cut - start
            }
            if shared.unsent > 0, shared.unsent + frame.count > limit { return (.full, dropped, false) }
            shared.pending.append(contentsOf: frame)
            shared.unsent += frame.count
            guard shared.open, !shared.flushScheduled else { return (.queued, dropped, false) }
            shared.flushScheduled = true
            return (.queued, dropped, true)
        }
        if schedule { loop.execute { self.flush() } }
        return (result, dropped)
    }

    /// Queues bytes that hold one or more whole frames.
    @discardableResult
    package func send(_ bytes: [UInt8]) -> SendResult {
        bytes.withUnsafeBytes { send($0) }
    }

    /// Bytes queued and not yet written.
    var unsentByteCount: Int { shared.withLock { $0.unsent } }

    /// True until the connection has closed.
    var isClosed: Bool { shared.withLock { $0.closed } }

    /// True once the handshake succeeded and until the connection closes.
    var isOpen: Bool { shared.withLock { $0.open } }

    /// Suspends until queued bytes drop to half the limit, the connection closes, or `deadline` passes.
    ///
    /// - Returns: `true` when there is room again; `false` on close or deadline.
    /// A cancelled task stops waiting at once (with `false`).
    func waitForSpace(until deadline: ContinuousClock.Instant) async -> Bool {
        let waiter = shared.withLock { shared -> UInt64 in
            shared.nextWaiter += 1
            return shared.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let immediate = shared.withLock { shared -> Bool? in
                    if shared.closed || Task.isCancelled { return false }
                    if shared.unsent <= options.maximumPendingBytes / 2 { return true }
                    shared.waiters[waiter] = continuation
                    return nil
                }
                if let immediate {
                    continuation.resume(returning: immediate)
                    return
                }
                loop.schedule(at: deadline) { [self] in
                    shared.withLock { $0.waiters.removeValue(forKey: waiter) }?.resume(returning: false)
                }
            }
        } onCancel: {
            shared.withLock { $0.waiters.removeValue(forKey: waiter) }?.resume(returning: false)
        }
    }
}
