import CMeshSystem
import MeshCrypto
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the owner of a ``Connection`` hears from it. Every call comes on the event loop's thread
/// and must return quickly without blocking.
package protocol ConnectionDelegate: AnyObject, Sendable {
    /// The handshake succeeded; frames can flow both ways.
    func connectionDidOpen(_ connection: Connection)
    /// Bytes arrived: take the complete frames with `decoder.next()`. Throwing closes the connection.
    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws
    /// The connection is gone. `error` is `nil` after a clean local close.
    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent)
}

/// Why a connection ended.
package enum ConnectionError: Error, Sendable, Equatable, CustomStringConvertible {
    case socket(SocketError)
    case handshake(HandshakeError)
    case frame(FrameError)
    case connectTimedOut(seconds: Int)
    case flushTimedOut
    /// Closing with a confirmation (``Connection/closeConfirming(deadline:)``): the peer did not
    /// answer by the deadline.
    case closeUnconfirmed
    case protocolViolation(String)

    package var description: String {
        switch self {
        case .socket(let error): return error.description
        case .handshake(let error): return error.description
        case .frame(let error): return error.description
        case .connectTimedOut(let seconds): return "connect timed out after \(seconds) s"
        case .flushTimedOut: return "closed before queued data was sent (flush deadline passed)"
        case .closeUnconfirmed: return "the peer did not confirm what it received before the close deadline"
        case .protocolViolation(let reason): return "protocol violation: \(reason)"
        }
    }
}

/// A framed stream connection driven by the ``EventLoop``: connect, handshake, then frames.
///
/// Every system call on the socket is made by the loop's thread. Any thread may queue frames with
/// ``send(_:)``: they are appended to the ``OutboundQueue`` under the connection's lock, and the
/// first frame since the loop last emptied the queue schedules one flush job, which writes
/// whatever has gathered by then in as few `send` calls as the kernel allows. So a burst of small
/// frames costs one job and one system call rather than one each, and a send from the loop thread
/// itself (a listener's reply) is written in the same loop iteration. Queued bytes are bounded by
/// ``Options/maximumPendingBytes``: past it ``send(_:)`` answers ``SendResult/full`` and the caller
/// applies its policy (``waitForSpace(until:)``, or drop and count).
package final class Connection: EventHandler, CustomStringConvertible {
    /// What ``send(_:)`` did with the frame.
    package enum SendResult: Sendable, Equatable {
        case queued
        case full
        case closed
    }

    /// Frames and bytes that were queued but never written when the connection ended.
    package struct Unsent: Sendable, Equatable {
        var frames = 0
        var bytes = 0
    }

    enum Phase {
        case idle, connecting, handshaking, open, closed
    }

    /// State only the loop thread touches.
    final class LoopState {
        var phase = Phase.idle
        var handshake: Handshake
        var decoder: FrameDecoder
        /// Handshake bytes, or with session keys the record being written, and how much of it is.
        var outgoing: [UInt8] = []
        var outgoingOffset = 0
        /// Without session keys: frames taken from the queue (retained payloads included, not
        /// copied), written with gathering writes, and how much of them is written.
        var taken = FramePieces()
        var takenOffset = 0
        /// With session keys: frames taken from the queue and not yet sealed into a record, and
        /// how far into them the sealing has gone.
        var plain = FramePieces()
        var plainOffset = 0
        /// The frames inside the record in `outgoing`, for the unsent count and the queue space.
        var sealedFrames: Range<Int> = 0..<0
        /// Seals what this side sends and opens what it receives, once a keyed handshake is done.
        var sealer: RecordSealer?
        var opener: RecordOpener?
        var timer: UInt64?
        var writeArmed = false
        var readPaused = false
        /// Holds a place in the listener's handshake admission until the handshake ends.
        var admission: HandshakeAdmission?
        /// Bytes read (the handshake's too), and the count when the stall timer was last armed.
        var bytesRead = 0
        var stallBaseline = 0
        var stallTimer: UInt64?

        init(handshake: Handshake, maximumFrameLength: Int) {
            self.handshake = handshake
            self.decoder = FrameDecoder(maximumFrameLength: maximumFrameLength)
        }
    }

    /// State any thread may touch, under the lock. No system call is made while it is held.
    struct Shared {
        var delegate: (any ConnectionDelegate)?
        /// The frames queued and not yet written, whether the connection is open or closed for
        /// sending, and whether a flush is on its way.
        var queue: OutboundQueue
        var token: UInt64 = 0
        /// Sends waiting for the queue to fall to half its limit (``Connection/waitForSpace(until:)``).
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// Message frames queued on this connection and not dropped from its queue: what a
        /// closing frame announces (counted under the lock the send takes anyway).
        var messagesQueued = 0
        /// What the closing frame announced, once sent, and what the peer confirmed, once answered.
        var closingSent: Int?
        var confirmed: Int?
    }

    private static let nextID = Atomic<UInt64>(1)

    /// Unique within the process; used in logs and as a dictionary key.
    package let id: UInt64
    let socket: Socket
    /// The peer's address: the one dialled, or the one accepted from.
    package let remote: SocketAddress
    let role: Handshake.Role
    let options: Options
    let loop: EventLoop
    let shared: Mutex<Shared>
    // Safe: `LoopState` is created here and from then on read and written only on `loop`'s
    // thread (every entry point below and in Connection+Writing.swift either runs there or hops
    // there with `loop.execute`; the flush methods check it with `preconditionInEventLoop`).
    nonisolated(unsafe) let local: LoopState

    private init(
        socket: Socket, remote: SocketAddress, role: Handshake.Role, options: Options,
        delegate: any ConnectionDelegate, loop: EventLoop
    ) {
        self.id = Connection.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.socket = socket
        self.remote = remote
        self.role = role
        self.options = options
        self.loop = loop
        self.shared = Mutex(
            Shared(
                delegate: delegate,
                queue: OutboundQueue(limit: options.maximumPendingBytes, chunk: options.flushChunk)))
        self.local = LoopState(handshake: options.handshake.makeHandshake(), maximumFrameLength: options.maximumFrameLength)
    }

    /// The peer's id from its handshake hello (16 hex digits; zeros for the `mesh` tool), once open.
    package var peerID: String { peerIdentity.withLock { $0 } }
    /// The purpose the handshake settled, once open.
    package var purpose: Handshake.Purpose? { settledPurpose.withLock { $0 } }
    private let peerIdentity = Mutex("")
    private let peerStaticKey = Mutex<[UInt8]?>(nil)

    /// The peer's static public key (32 bytes), once a keyed handshake proved it; `nil` in an open mesh.
    package var peerKey: [UInt8]? { peerStaticKey.withLock { $0 } }
    private let settledPurpose = Mutex<Handshake.Purpose?>(nil)

    package var description: String { "\(remote)" }

    /// Dials `address` and runs the handshake; the delegate hears the outcome.
    ///
    /// - Parameter startNow: `false` makes the connection without dialling yet: frames sent to it
    ///   wait, and ``start()`` dials, or ``discard()`` lets the socket go with the delegate told
    ///   nothing (for a caller that may find another connection to the same peer was made first).
    /// - Throws: ``SocketError`` only when no socket could be created; connect failures arrive
    ///   through ``ConnectionDelegate/connectionDidClose(_:error:unsent:)``.
    package static func connect(
        to address: SocketAddress, options: Options, delegate: any ConnectionDelegate, loop: EventLoop,
        startNow: Bool = true
    ) throws(SocketError) -> Connection {
        let socket = try Socket.stream(for: address)
        socket.tuneForStreaming(address)
        let connection = Connection(
            socket: socket, remote: address, role: .connector, options: options, delegate: delegate, loop: loop)
        if startNow { connection.start() }
        return connection
    }

    /// Dials a connection made with `startNow: false`.
    func start() {
        loop.execute { self.beginConnecting() }
    }

    /// Closes the socket of a connection made with `startNow: false` and never started; what was
    /// queued is dropped and the delegate hears nothing.
    func discard() {
        shared.withLock { shared in
            _ = shared.queue.close()
            shared.delegate = nil
        }
        socket.close()
    }

    /// Takes over a socket returned by `accept` and runs the accepting side of the handshake.
    ///
    /// - Parameter admission: when given, the connection holds a place in it for the length of
    ///   its handshake (the listener asked it for room before accepting).
    package static func accept(
        _ socket: Socket, from peer: SocketAddress, options: Options, delegate: any ConnectionDelegate,
        admission: HandshakeAdmission? = nil, loop: EventLoop
    ) -> Connection {
        socket.tuneForStreaming(peer)
        let connection = Connection(
            socket: socket, remote: peer, role: .acceptor, options: options, delegate: delegate, loop: loop)
        connection.local.admission = admission
        admission?.enter(connection)
        loop.execute { connection.beginHandshake(register: true) }
        return connection
    }

    // MARK: Closing and flow control (any thread)

    /// Returns once the connection has closed (at once if it already has).
    func waitUntilClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = shared.withLock { shared -> Bool in
                if shared.queue.phase == .closed { return true }
                shared.closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Closes at once; queued bytes are dropped and reported to the delegate as unsent.
    package func close(error: ConnectionError? = nil) {
        loop.execute { self.finishClose(error) }
    }

    /// Writes what is queued, then closes; closes anyway with ``ConnectionError/flushTimedOut`` at `deadline`.
    package func closeAfterFlushing(deadline: ContinuousClock.Instant) {
        loop.execute { [self] in
            guard local.phase != .closed else { return }
            let idle = shared.withLock { $0.queue.unsent == 0 }
            if idle && local.outgoingOffset == local.outgoing.count {
                finishClose(nil)
                return
            }
            closeWhenFlushed = true
            loop.schedule(at: deadline) { [self] in finishClose(.flushTimedOut) }
            if local.phase == .open { flush() }
        }
    }

    // Loop-thread only, like `local`.
    nonisolated(unsafe) var closeWhenFlushed = false

    /// Ends a connection this side dialled with a confirmation: queues a closing frame with the
    /// number of message frames queued on it (docs/PROTOCOL.md §8.3), writes everything, and
    /// waits for the peer's answer, which the delegate hands to ``peerConfirmed(_:)``. At
    /// `deadline` it closes anyway, with ``ConnectionError/flushTimedOut`` when bytes were left
    /// unwritten, else ``ConnectionError/closeUnconfirmed``.
    ///
    /// - Returns: the messages announced, or `nil` when the connection had already closed.
    @discardableResult
    func closeConfirming(deadline: ContinuousClock.Instant) -> Int? {
        let announced = shared.withLock { shared -> Int? in
            guard shared.queue.phase != .closed else { return nil }
            let count = shared.messagesQueued
            let frame = ClosingFrame.closing(messages: count)
            _ = frame.withUnsafeBytes { raw in shared.queue.appendIgnoringLimit(raw) }
            shared.closingSent = count
            return count
        }
        guard announced != nil else { return nil }
        loop.execute { [self] in
            guard local.phase != .closed else { return }
            loop.schedule(at: deadline) { [self] in
                let unwritten = shared.withLock { $0.queue.unsent > 0 } || local.outgoingOffset < local.outgoing.count
                finishClose(unwritten ? .flushTimedOut : .closeUnconfirmed)
            }
            if local.phase == .open { flush() }
        }
        return announced
    }

    /// Leaves the closing to the peer (a sender that learns this node left closes its connection
    /// after a confirmation, PROTOCOL §8.3), writing what is queued meanwhile; closes anyway at `deadline`.
    func closeWhenPeerCloses(deadline: ContinuousClock.Instant) {
        loop.execute { [self] in
            guard local.phase != .closed else { return }
            loop.schedule(at: deadline) { [self] in
                let unwritten = shared.withLock { $0.queue.unsent > 0 } || local.outgoingOffset < local.outgoing.count
                finishClose(unwritten ? .flushTimedOut : nil)
            }
        }
    }

    /// Stops or resumes reading, which pushes back on the peer through TCP when a consumer lags.
    ///
    /// A pause asked for on the loop thread (by a delegate, while it reads) takes effect at once;
    /// everything else is queued to the loop. So a resume asked for after a pause, from any thread,
    /// never overtakes it, and a caller need not hold its own lock across this call to keep the
    /// two in order.
    package func setReadingPaused(_ paused: Bool) {
        if paused, loop.inLoopThread {
            applyReadingPaused(true)
            return
        }
        loop.execute { [self] in applyReadingPaused(paused) }
    }

    /// Loop thread.
    private func applyReadingPaused(_ paused: Bool) {
        guard local.phase != .closed, local.readPaused != paused else { return }
        local.readPaused = paused
        updateInterest()
        if !paused, local.phase == .open { readAvailable() }
    }

    // MARK: Loop thread

    package func handle(events: UInt32) {
        loop.preconditionInEventLoop()
        switch local.phase {
        case .connecting:
            do {
                try socket.connectionResult()
                beginHandshake(register: false)
            } catch {
                finishClose(.socket(error))
            }
        case .handshaking, .open:
            if events & Interest.write.rawValue != 0 { flush() }
            if local.readPaused, events & (cmesh_epollerr | cmesh_epollhup) != 0 {
                // epoll reports these whatever the interest: waiting would spin this thread.
                finishClose(.socket(.disconnected("peer hung up while reading was paused")))
                return
            }
            if events & ~Interest.write.rawValue != 0, local.phase != .closed { readAvailable() }
        case .idle, .closed:
            break
        }
    }

    private func beginConnecting() {
        let token = loop.register(socket, interest: .write, handler: self)
        shared.withLock { $0.token = token }
        local.phase = .connecting
        do {
            if try socket.connect(to: remote) {
                beginHandshake(register: false)
                return
            }
        } catch {
            finishClose(.socket(error))
            return
        }
        let seconds = Int(options.connectTimeout.components.seconds)
        local.timer = loop.schedule(after: options.connectTimeout) { [self] in
            if local.phase == .connecting { finishClose(.connectTimedOut(seconds: seconds)) }
        }
    }

    private func beginHandshake(register: Bool) {
        if register {
            let token = loop.register(socket, interest: .read, handler: self)
            shared.withLock { $0.token = token }
        }
        if let timer = local.timer { loop.cancelTimer(timer) }
        local.phase = .handshaking
        updateInterest()
        let seconds = Int(options.handshakeTimeout.components.seconds)
        local.timer = loop.schedule(after: options.handshakeTimeout) { [self] in
            guard local.phase == .handshaking else { return }
            finishClose(.handshake(local.handshake.isAwaitingAcceptor ? .silentAcceptor(seconds: seconds) : .timedOut(seconds: seconds)))
        }
        perform(local.handshake.start())
    }

    private func perform(_ actions: [Handshake.Action]) {
        for case .fail(let error) in actions {
            // A refusal or an answer that goes with a failure is written once, best effort, by
            // finishClose; the failure, not a write error, is what the connection ends with.
            for case .send(let bytes) in actions { local.outgoing.append(contentsOf: bytes) }
            finishClose(.handshake(error))
            return
        }
        for action in actions {
            // A write that failed has closed the connection: nothing after it may reopen it.
            guard local.phase != .closed else { return }
            switch action {
            case .send(let bytes):
                local.outgoing.append(contentsOf: bytes)
                flush()
            case .established:
                peerIdentity.withLock { $0 = lowercaseHexID(local.handshake.peerID) }
                peerStaticKey.withLock { $0 = local.handshake.peerStaticKey }
                settledPurpose.withLock { $0 = local.handshake.purpose }
                if let transport = local.handshake.transport {
                    local.sealer = RecordSealer(cipher: transport.sending, rekeyInterval: options.rekeyInterval)
                    local.opener = RecordOpener(
                        cipher: transport.receiving,
                        maximumRecordLength: RecordSealer.maximumRecordLength(maximumFrameLength: options.maximumFrameLength),
                        rekeyInterval: options.rekeyInterval)
                }
                local.admission?.leave(self)
                local.admission = nil
                if let timer = local.timer { loop.cancelTimer(timer) }
                local.timer = nil
                local.phase = .open
                // Frames flow from here; the flush below is the one on its way.
                let delegate = shared.withLock { shared -> (any ConnectionDelegate)? in
                    shared.queue.open()
                    return shared.delegate
                }
                delegate?.connectionDidOpen(self)
                flush()
            case .fail(let error):
                finishClose(.handshake(error))
                return
            }
        }
    }

    private func readAvailable() {
        loop.preconditionInEventLoop()
        do {
            if local.phase == .handshaking {
                var scratch = [UInt8](repeating: 0, count: max(1, local.handshake.bytesWanted))
                let count = try scratch.withUnsafeMutableBytes { raw in try socket.read(into: raw) }
                guard let count else { return }
                local.bytesRead += count
                local.admission?.heard(self)
                perform(local.handshake.receive(scratch[..<count]))
                return
            }
            // Frames held back while reading was paused go first.
            if local.decoder.bufferedByteCount > 0, !local.readPaused, let delegate = shared.withLock({ $0.delegate }) {
                try delegate.connection(self, didReceive: &local.decoder)
            }
            // Bounded rounds per wake-up, so one busy peer cannot starve the others.
            for _ in 0..<8 where local.phase == .open && !local.readPaused {
                let space = 64 * 1024
                let count: Int?
                if local.opener != nil {
                    count = try local.opener!.decoder.readInto(minimumSpace: space, largeFrames: .makeRoomAndStopAtItsEnd) { raw in
                        try socket.read(into: raw)
                    }
                    if count != nil { try local.opener!.open(into: &local.decoder) }
                } else {
                    count = try local.decoder.readInto(minimumSpace: space, largeFrames: .makeRoomAndStopAtItsEnd) { raw in
                        try socket.read(into: raw)
                    }
                }
                guard let count else { return }
                local.bytesRead += count
                guard let delegate = shared.withLock({ $0.delegate }) else { return }
                try delegate.connection(self, didReceive: &local.decoder)
                if local.decoder.bufferedByteCount > 0 || (local.opener?.decoder.bufferedByteCount ?? 0) > 0 {
                    if local.stallTimer == nil { armStallTimer() }
                } else {
                    local.decoder.shrinkIfIdle(keeping: 1 << 20)  // after an outsized message
                }
                if count < space { return }
            }
        } catch let error as SocketError {
            guard local.phase == .handshaking, isDisconnect(error) else { return finishClose(.socket(error)) }
            finishClose(.handshake(local.bytesRead == 0 ? .closedSilently : .closedDuringHandshake))
        } catch let error as FrameError {
            finishClose(.frame(error))
        } catch let error as ConnectionError {
            finishClose(error)
        } catch {
            finishClose(.protocolViolation("\(error)"))
        }
    }

    /// A frame that has started must keep coming: fewer than ``stallMinimumBytes`` in
    /// ``stallWindow`` while one is incomplete closes the connection (a slowloris holds nothing).
    private func armStallTimer() {
        local.stallBaseline = local.bytesRead
        local.stallTimer = loop.schedule(after: Connection.stallWindow) { [self] in
            local.stallTimer = nil
            guard local.phase == .open,
                local.decoder.bufferedByteCount > 0 || (local.opener?.decoder.bufferedByteCount ?? 0) > 0
            else { return }
            // Paused by this side's own backpressure: the peer is not to blame.
            if local.readPaused {
                armStallTimer()
                return
            }
            if local.bytesRead - local.stallBaseline < Connection.stallMinimumBytes {
                let seconds = Int(Connection.stallWindow.components.seconds)
                finishClose(
                    .protocolViolation(
                        "stalled mid-frame: fewer than \(Connection.stallMinimumBytes) bytes in \(seconds) s"))
            } else {
                armStallTimer()
            }
        }
    }

    static let stallWindow = Duration.seconds(5)
    static let stallMinimumBytes = 1024

    private func isDisconnect(_ error: SocketError) -> Bool {
        if case .disconnected = error { return true }
        return false
    }

    func updateInterest() {
        guard local.phase != .closed, local.phase != .connecting else { return }
        var interest: Interest = []
        if !local.readPaused { interest.insert(.read) }
        if local.writeArmed { interest.insert(.write) }
        let token = shared.withLock { $0.token }
        loop.update(socket, token: token, interest: interest)
    }

    func finishClose(_ error: ConnectionError?) {
        loop.preconditionInEventLoop()
        guard local.phase != .closed else { return }
        let wasHandshaking = local.phase == .handshaking
        local.phase = .closed
        local.admission?.leave(self)
        local.admission = nil
        if let stallTimer = local.stallTimer { loop.cancelTimer(stallTimer) }
        if let timer = local.timer { loop.cancelTimer(timer) }
        if wasHandshaking, !local.outgoing.isEmpty {
            // Best effort: let a rejected peer read the verdict before the close.
            let offset = local.outgoingOffset
            _ = try? local.outgoing.withUnsafeBytes { raw in
                try socket.write(UnsafeRawBufferPointer(rebasing: raw[offset...]))
            }
        }
        let (delegate, waiters, queued, token, closeWaiters) = shared.withLock {
            shared -> (
                (any ConnectionDelegate)?, [CheckedContinuation<Bool, Never>], Unsent, UInt64,
                [CheckedContinuation<Void, Never>]
            ) in
            let result = (
                shared.delegate, Array(shared.waiters.values), shared.queue.close(), shared.token, shared.closeWaiters
            )
            shared.delegate = nil
            shared.waiters.removeAll()
            shared.closeWaiters.removeAll()
            return result
        }
        if token != 0 { loop.deregister(socket, token: token) }
        socket.close()
        var unsent = queued
        if local.takenOffset < local.taken.count {
            let partial = local.taken.countFrames(after: local.takenOffset)
            unsent.frames += partial.frames
            unsent.bytes += partial.bytes
        }
        // A record not wholly written is useless to the peer, and a frame is delivered only once
        // every record it lies in is: each frame that ends past what whole records carried is unsent.
        let carried = !local.sealedFrames.isEmpty && local.outgoingOffset < local.outgoing.count
            ? local.sealedFrames.lowerBound : local.plainOffset
        if carried < local.plain.count {
            let rest = local.plain.countFrames(after: carried)
            unsent.frames += rest.frames
            unsent.bytes += rest.bytes
        }
        local.plain = FramePieces()  // retained payloads go back to their owners
        local.taken = FramePieces()
        local.takenOffset = 0
        local.sealedFrames = 0..<0
        local.outgoing = []
        local.decoder = FrameDecoder(maximumFrameLength: 0)
        for waiter in waiters { waiter.resume(returning: false) }
        delegate?.connectionDidClose(self, error: error, unsent: unsent)
        for waiter in closeWaiters { waiter.resume() }
    }
}
