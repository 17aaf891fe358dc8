import Foundation
import Synchronization

/// Asks whether anything accepts TCP connections at an address, by connecting and closing at once
/// without a byte written: how a node with nothing configured learns whether a coordinator runs
/// on its own host before it looks for one on the LAN.
///
/// The answer comes from the connect itself, never from a clock: refused means nobody listens;
/// connected means somebody does. On loopback the kernel settles a connect within the call, so the
/// socket is writable by the loop's next turn; elsewhere the wait is bounded by `timeout` (a
/// connect unanswered by then counts as "nobody").
package enum PortProbe {
    /// True when a connection to `address` is accepted.
    package static func isListening(at address: SocketAddress, timeout: Duration, loop: EventLoop) async -> Bool {
        let socket: Socket
        do {
            socket = try Socket.stream(for: address)
        } catch {
            return false
        }
        do {
            if try socket.connect(to: address) {
                socket.close()
                return true
            }
        } catch {
            socket.close()
            return false
        }
        return await withCheckedContinuation { continuation in
            let watch = Watch(socket: socket, loop: loop, continuation: continuation)
            loop.execute { watch.start(timeout: timeout) }
        }
    }

    /// One connect in progress, on the loop: the first of writability or the timer answers.
    private final class Watch: EventHandler {
        private let socket: Socket
        private let loop: EventLoop
        /// The continuation until answered, the epoll token and the timer: touched on the loop only,
        /// behind a mutex so the class is Sendable.
        private let state: Mutex<(continuation: CheckedContinuation<Bool, Never>?, token: UInt64?, timer: UInt64?)>

        init(socket: Socket, loop: EventLoop, continuation: CheckedContinuation<Bool, Never>) {
            self.socket = socket
            self.loop = loop
            self.state = Mutex((continuation, nil, nil))
        }

        func start(timeout: Duration) {
            let token = loop.register(socket, interest: .write, handler: self)
            let timer = loop.schedule(after: timeout) { [self] in answer(false) }
            state.withLock { $0.token = token; $0.timer = timer }
        }

        func handle(events: UInt32) {
            answer((try? socket.connectionResult()) != nil)
        }

        private func answer(_ listening: Bool) {
            let taken = state.withLock { state in
                defer { state = (nil, nil, nil) }
                return state
            }
            guard let continuation = taken.continuation else { return }
            if let token = taken.token { loop.deregister(socket, token: token) }
            if let timer = taken.timer { loop.cancelTimer(timer) }
            socket.close()
            continuation.resume(returning: listening)
        }
    }
}
