import Synchronization

/// Writing: the loop thread's side of sending. It takes what ``Connection/enqueue(byteCount:messages:_:)``
/// queued under the connection's lock and writes it with no lock held, sealing records first in a
/// keyed session, and gives the queue's space back as the kernel accepts bytes.
extension Connection {
    /// Writes handshake bytes, then queued frames, until done or the kernel's buffer is full.
    ///
    /// With session keys, queued frames are sealed into records of at most ``RecordSealer/targetRecordLength``
    /// bytes of the frame stream (a large frame spans several) as they are written; a record's
    /// queue space is given back once the whole record is with the kernel.
    func flush() {
        loop.preconditionInEventLoop()
        var rounds = 0
        do {
            while local.phase != .closed {
                if local.outgoingOffset < local.outgoing.count {
                    // Handshake bytes, or a sealed record.
                    let offset = local.outgoingOffset
                    let written = try local.outgoing.withUnsafeBytes { raw in
                        try socket.write(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                    }
                    if written == 0 { return waitUntilWritable() }
                    local.outgoingOffset += written
                    continue
                }
                if !local.sealedFrames.isEmpty {
                    releaseSpace(local.sealedFrames.count)
                    local.sealedFrames = 0..<0
                }
                local.outgoing.removeAll(keepingCapacity: true)
                local.outgoingOffset = 0
                guard local.phase == .open else { break }
                if local.sealer != nil {
                    rounds += 1
                    if rounds > 8 {
                        loop.execute { self.flush() }  // let other connections have the thread
                        return
                    }
                    if local.plainOffset == local.plain.count {
                        local.plain.removeAll()
                        local.plainOffset = 0
                        if !takeQueued(into: &local.plain) { return finishedFlushing() }
                    }
                    // Records are cut every 64 KiB of the frame stream, through a frame if need
                    // be, so a large message is sealed, sent and opened in pieces as it goes;
                    // each is sealed from the queued pieces straight into `outgoing`.
                    let cut = min(local.plain.count, local.plainOffset + RecordSealer.targetRecordLength)
                    local.sealedFrames = local.plainOffset..<cut
                    try local.plain.withBuffers(from: local.plainOffset, to: cut) { pieces in
                        try local.sealer!.seal(pieces, into: &local.outgoing)
                    }
                    local.plainOffset = cut
                    continue
                }
                if local.takenOffset == local.taken.count {
                    rounds += 1
                    if rounds > 8 {
                        loop.execute { self.flush() }  // let other connections have the thread
                        return
                    }
                    local.taken.removeAll()
                    local.takenOffset = 0
                    guard takeQueued(into: &local.taken) else { return finishedFlushing() }
                }
                let written = try writeTaken()
                if written == 0 { return waitUntilWritable() }
                local.takenOffset += written
                releaseSpace(written)
            }
        } catch {
            finishClose((error as? SocketError).map(ConnectionError.socket) ?? .protocolViolation("\(error)"))
        }
    }

    /// Writes taken frames from where the last write ended: small frames in one `send`, pieces
    /// (retained payloads among them) in one gathering write of up to ``Socket/maximumWriteBuffers``.
    /// A write may end inside any piece; the next one starts there.
    private func writeTaken() throws -> Int {
        let offset = local.takenOffset
        if local.taken.isContiguous {
            return try local.taken.contiguousBytes.withUnsafeBytes { raw in
                try socket.write(UnsafeRawBufferPointer(rebasing: raw[offset...]))
            }
        }
        return try local.taken.withBuffers(from: offset, to: local.taken.count, maximumBuffers: Socket.maximumWriteBuffers) {
            buffers in try socket.write(buffers)
        }
    }

    /// True while a flush waits for the socket to become writable (the kernel's buffer filled);
    /// asked on the loop thread, for tests that need a write to have stopped part way.
    func isWaitingForWritable() async -> Bool {
        await withCheckedContinuation { continuation in
            loop.execute { [self] in continuation.resume(returning: local.phase != .closed && local.writeArmed) }
        }
    }

    /// The kernel's buffer is full: go on when the socket becomes writable.
    private func waitUntilWritable() {
        if !local.writeArmed {
            local.writeArmed = true
            updateInterest()
        }
    }

    /// Moves queued frames into `buffer` (empty on entry); `false` when nothing was queued.
    private func takeQueued(into buffer: inout FramePieces) -> Bool {
        shared.withLock { $0.queue.take(into: &buffer) }
    }

    /// Everything queued is written: stop watching for writability, and close if asked to.
    private func finishedFlushing() {
        if local.writeArmed {
            local.writeArmed = false
            updateInterest()
        }
        if closeWhenFlushed { finishClose(nil) }
    }

    /// The kernel took `written` bytes of queued frames: the queue accounts for them, and the
    /// waiters for space go on once it says there is room.
    private func releaseSpace(_ written: Int) {
        let ready = shared.withLock { shared -> [CheckedContinuation<Bool, Never>] in
            guard shared.queue.written(written), !shared.waiters.isEmpty else { return [] }
            let ready = Array(shared.waiters.values)
            shared.waiters.removeAll()
            return ready
        }
        for waiter in ready { waiter.resume(returning: true) }
    }
}
