import Foundation
import Synchronization

/// Sending: what any thread may call to queue frames on a connection. None of it makes a system
/// call; the writing is the loop thread's (``Connection/flush()``).
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

    /// Queues one message frame. A payload under ``FramePieces/retainedPayloadMinimum`` bytes is
    /// copied straight into the send buffer; a larger one is retained, not copied, and goes from
    /// `payload`'s memory to the kernel (or the record sealer) when the frame is written.
    func sendMessage(topic: UnsafeRawBufferPointer, encoding: PayloadEncoding, payload: Data) -> SendResult {
        let length = MessageFrame.frameLength(topicBytes: topic.count, payloadBytes: payload.count)
        if payload.count >= FramePieces.retainedPayloadMinimum {
            return enqueue(byteCount: length, messages: 1, payload: payload) {
                MessageFrame.appendHead(topic: topic, encoding: encoding, payloadCount: payload.count, to: &$0)
            }
        }
        return payload.withUnsafeBytes { payload in
            enqueue(byteCount: length, messages: 1) {
                MessageFrame.append(topic: topic, encoding: encoding, payload: payload, to: &$0)
            }
        }
    }

    /// Appends `byteCount` bytes of whole frames with `write`, under the lock, unless full or closed.
    ///
    /// The first frame since the loop last found the queue empty schedules one flush job on the
    /// loop, after the lock; the frames that follow before it runs only append, and it writes
    /// them all. From another thread the job costs at most one eventfd wake-up, and none when the
    /// loop is awake; from the loop thread (a listener's reply) it runs in the same iteration.
    ///
    /// - Parameters:
    ///   - messages: how many message frames the bytes hold, counted for the closing frame
    ///     (docs/PROTOCOL.md §8.3) when they are queued.
    ///   - payload: a payload retained after what `write` appends (see ``OutboundQueue/append(byteCount:payload:_:)``).
    func enqueue(byteCount: Int, messages: Int = 0, payload: Data? = nil, _ write: (inout [UInt8]) -> Void) -> SendResult {
        let appended = shared.withLock { shared -> OutboundQueue.Appended in
            // After the closing frame a message would not be counted in it: refused, so the
            // sender counts it as dropped instead of as confirmed (PROTOCOL §8.3).
            if messages > 0, shared.closingSent != nil { return OutboundQueue.Appended(result: .closed) }
            let appended = shared.queue.append(byteCount: byteCount, payload: payload, write)
            if appended.result == .queued { shared.messagesQueued += messages }
            return appended
        }
        if appended.scheduleFlush { loop.execute { self.flush() } }
        return appended.result
    }

    /// Queues one whole frame, first dropping the oldest queued message frames when there is no
    /// room (see ``OutboundQueue/appendDroppingOldest(_:)``).
    ///
    /// - Returns: what happened to `frame`, and the frames and bytes dropped to make room.
    func sendDroppingOldest(_ frame: [UInt8]) -> (SendResult, dropped: Unsent) {
        let appended = frame.withUnsafeBytes { raw in
            shared.withLock { shared in
                if shared.closingSent != nil { return OutboundQueue.Appended(result: .closed) }
                let appended = shared.queue.appendDroppingOldest(raw)
                shared.messagesQueued += (appended.result == .queued ? 1 : 0) - appended.dropped.frames
                return appended
            }
        }
        if appended.scheduleFlush { loop.execute { self.flush() } }
        return (appended.result, appended.dropped)
    }

    /// Queues bytes that hold one or more whole frames.
    @discardableResult
    package func send(_ bytes: [UInt8]) -> SendResult {
        bytes.withUnsafeBytes { send($0) }
    }

    /// Queues one whole message frame (the slow path of a send), counted for the closing frame.
    func sendMessageFrame(_ frame: [UInt8]) -> SendResult {
        frame.withUnsafeBytes { raw in enqueue(byteCount: raw.count, messages: 1) { $0.append(contentsOf: raw) } }
    }

    /// Bytes queued and not yet written.
    var unsentByteCount: Int { shared.withLock { $0.queue.unsent } }

    /// True until the connection has closed.
    var isClosed: Bool { shared.withLock { $0.queue.phase == .closed } }

    /// True once the handshake succeeded and until the connection closes.
    var isOpen: Bool { shared.withLock { $0.queue.phase == .open } }

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
                    if shared.queue.phase == .closed || Task.isCancelled { return false }
                    if shared.queue.hasRoomForWaiters { return true }
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

    // MARK: Confirming at close (PROTOCOL §8.3)

    /// Loop thread, from the delegate: the peer confirmed `count` messages; the connection closes cleanly.
    ///
    /// - Throws: ``ConnectionError/protocolViolation(_:)`` when no closing frame was sent (the
    ///   delegate's throw closes the connection).
    func peerConfirmed(_ count: Int) throws(ConnectionError) {
        let expected = shared.withLock { shared -> Bool in
            guard shared.closingSent != nil else { return false }
            shared.confirmed = count
            return true
        }
        guard expected else { throw .protocolViolation("a confirmation without a closing frame") }
        close()
    }

    /// What ``closeConfirming(deadline:)`` announced and what the peer confirmed (`nil` when it did not answer).
    var confirmation: (announced: Int, confirmed: Int?)? {
        shared.withLock { shared in shared.closingSent.map { ($0, shared.confirmed) } }
    }
}
