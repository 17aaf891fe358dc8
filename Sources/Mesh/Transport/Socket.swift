import CMeshSystem
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking socket file descriptor.
///
/// This file is the only place in `Mesh` that makes socket system calls. Every call retries on
/// `EINTR`, reports "would block" as a value rather than an error, and maps the errno values that
/// mean the peer went away to ``SocketError/disconnected(_:)``.
package struct Socket: Sendable, Hashable {
    let fd: Int32

    /// Creates a non-blocking, close-on-exec stream socket for the address family of `address`.
    ///
    /// - Throws: ``SocketError`` when the kernel refuses (out of descriptors, say).
    package static func stream(for address: SocketAddress) throws(SocketError) -> Socket {
        let family: Int32
        switch address {
        case .ipv4: family = AF_INET
        case .ipv6: family = AF_INET6
        case .unix: family = AF_UNIX
        }
        let fd = cmesh_socket(family, Int32(SOCK_STREAM.rawValue))
        guard fd >= 0 else { throw .failed("socket", errno) }
        return Socket(fd: fd)
    }

    /// Creates a connected pair of non-blocking Unix stream sockets (for tests).
    static func pair() throws(SocketError) -> (Socket, Socket) {
        var fds: [Int32] = [0, 0]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw .failed("socketpair", errno) }
        return (Socket(fd: fds[0]), Socket(fd: fds[1]))
    }

    // MARK: Options

    /// Turns off Nagle's algorithm so small frames leave at once (TCP only; a no-op elsewhere).
    package func setNoDelay() {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sets the kernel's send and receive buffer sizes (a hint the kernel may round or cap).
    func setBufferSizes(_ bytes: Int32) {
        var size = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Tunes a new connection for its kind: no Nagle delay for TCP, and for Unix sockets, whose
    /// default buffers (about 200 KiB) cost many more system calls per large message, bigger buffers.
    func tuneForStreaming(_ address: SocketAddress) {
        if case .unix = address {
            setBufferSizes(4 << 20)
        } else {
            setNoDelay()
        }
    }

    /// Lets a restarted server bind its port again while old connections sit in TIME_WAIT.
    func setReuseAddress() {
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    // MARK: Server side

    /// Binds to `address` and starts listening.
    ///
    /// - Throws: ``SocketError/failed(_:_:)`` naming `bind` or `listen` and the errno.
    package func bindAndListen(_ address: SocketAddress, backlog: Int32 = 4096) throws(SocketError) {
        if case .unix(let path) = address {
            if !path.hasPrefix("@") { unlink(path) }
        } else {
            setReuseAddress()
        }
        let result = address.withSockAddr { bind(fd, $0, $1) }
        guard result == 0 else { throw .failed("bind \(address)", errno) }
        guard listen(fd, backlog) == 0 else { throw .failed("listen", errno) }
    }

    /// Accepts one pending connection, or returns `nil` when none is waiting.
    func accept() throws(SocketError) -> (Socket, SocketAddress)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let client = withUnsafeMutablePointer(to: &storage) { cmesh_accept(fd, $0, &length) }
            if client >= 0 {
                return (Socket(fd: client), SocketAddress(storage: storage) ?? .unix(path: ""))
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw .failed("accept", errno)
            }
        }
    }

    // MARK: Client side

    /// Starts connecting to `address`; returns `true` when it connected at once, `false` when the
    /// connection is in progress (wait for writability, then call ``connectionResult()``).
    func connect(to address: SocketAddress) throws(SocketError) -> Bool {
        while true {
            let result = address.withSockAddr { Glibc.connect(fd, $0, $1) }
            if result == 0 { return true }
            switch errno {
            case EINTR: continue
            case EINPROGRESS, EAGAIN: return false
            default: throw SocketError(operation: "connect to \(address)", errno: errno)
            }
        }
    }

    /// The outcome of a non-blocking connect once the socket turned writable.
    func connectionResult() throws(SocketError) {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0 else {
            throw .failed("getsockopt", errno)
        }
        if code != 0 { throw SocketError(operation: "connect", errno: code) }
    }

    // MARK: Data

    /// Reads into `buffer`; returns the byte count, or `nil` when nothing is available now.
    ///
    /// - Throws: ``SocketError/disconnected(_:)`` when the peer closed or reset the connection.
    package func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> Int? {
        while true {
            let count = recv(fd, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return count }
            if count == 0 { throw .disconnected("peer closed the connection") }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SocketError(operation: "recv", errno: errno)
            }
        }
    }

    /// Writes as much of `bytes` as the kernel takes now; returns the count (0 when it would block).
    package func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> Int {
        while true {
            let count = send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return 0
            default: throw SocketError(operation: "send", errno: errno)
            }
        }
    }

    /// Writes as much of `buffers`, in order, as the kernel takes now, in one system call (a
    /// gathering `sendmsg`); returns the count (0 when it would block). The count may end inside
    /// any buffer. At most ``maximumWriteBuffers`` buffers are passed; the rest wait for the next call.
    package func write(_ buffers: [UnsafeRawBufferPointer]) throws(SocketError) -> Int {
        var vectors = buffers.prefix(Socket.maximumWriteBuffers).map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
        }
        while true {
            let count = vectors.withUnsafeMutableBufferPointer { vectors -> Int in
                var message = msghdr()
                message.msg_iov = vectors.baseAddress
                message.msg_iovlen = numericCast(vectors.count)
                return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            }
            if count >= 0 { return count }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return 0
            default: throw SocketError(operation: "sendmsg", errno: errno)
            }
        }
    }

    /// The most buffers one ``write(_:)-([UnsafeRawBufferPointer])`` passes (Linux's `IOV_MAX` is 1024).
    package static let maximumWriteBuffers = 64

    // MARK: Addresses

    /// The address this socket is bound to (the real port after binding port 0).
    package func localAddress() -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? SocketAddress(storage: storage) : nil
    }

    /// The local address the kernel would send from to reach `destination` (the interface that
    /// leads there), found with a UDP socket's `connect`, which sends nothing.
    static func localAddress(toward destination: SocketAddress) -> SocketAddress? {
        let family: Int32
        switch destination {
        case .ipv4: family = AF_INET
        case .ipv6: family = AF_INET6
        case .unix: return nil
        }
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        let probe = Socket(fd: fd)
        defer { probe.close() }
        guard destination.withSockAddr({ Glibc.connect(fd, $0, $1) }) == 0 else { return nil }
        return probe.localAddress()
    }

    // MARK: Datagrams (LAN discovery beacons)

    /// A non-blocking IPv4 UDP socket bound to `address`, allowed to send broadcasts. With
    /// `shared`, other sockets of this host may bind the same port, and each gets every
    /// broadcast (several nodes and `mesh discover` listening at once).
    ///
    /// - Throws: ``SocketError/failed(_:_:)`` naming `socket` or `bind` and the errno.
    package static func datagram(binding address: SocketAddress, shared: Bool) throws(SocketError) -> Socket {
        guard case .ipv4 = address else { throw .failed("socket (beacons are IPv4 only) for \(address)", EAFNOSUPPORT) }
        let fd = cmesh_socket(AF_INET, Int32(SOCK_DGRAM.rawValue))
        guard fd >= 0 else { throw .failed("socket", errno) }
        let socket = Socket(fd: fd)
        var on: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, socklen_t(MemoryLayout<Int32>.size))
        if shared { socket.setReuseAddress() }
        guard address.withSockAddr({ bind(fd, $0, $1) }) == 0 else {
            let error = errno
            socket.close()
            throw .failed("bind \(address)", error)
        }
        return socket
    }

    /// Sends one datagram to `destination`; `false` when the kernel had no room for it now
    /// (it is not sent: a beacon is sent again soon anyway).
    package func sendDatagram(_ bytes: [UInt8], to destination: SocketAddress) throws(SocketError) -> Bool {
        while true {
            let count = bytes.withUnsafeBytes { raw in
                destination.withSockAddr { sendto(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL), $0, $1) }
            }
            if count >= 0 { return true }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return false
            default: throw SocketError(operation: "sendto \(destination)", errno: errno)
            }
        }
    }

    /// Reads one waiting datagram and who sent it; `nil` when none is waiting. A datagram longer
    /// than `capacity` comes back with its true length in `size` and only `capacity` bytes.
    package func receiveDatagram(capacity: Int) throws(SocketError) -> (bytes: [UInt8], size: Int, sender: SocketAddress)? {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let count = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, raw.baseAddress, raw.count, Int32(MSG_TRUNC), $0, &length)
                    }
                }
            }
            if count >= 0 {
                let sender = SocketAddress(storage: storage) ?? .ipv4(host: "?", port: 0)
                return (Array(buffer.prefix(min(count, capacity))), count, sender)
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            default: throw SocketError(operation: "recvfrom", errno: errno)
            }
        }
    }

    /// Closes the descriptor. Call once.
    package func close() {
        _ = Glibc.close(fd)
    }

    /// Shuts down the sending side so the peer reads end-of-stream after what was sent.
    package func shutdownWrite() {
        _ = shutdown(fd, Int32(SHUT_WR))
    }
}

/// Why a socket operation failed.
package enum SocketError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer went away: it closed, reset, or the connection is otherwise gone.
    case disconnected(String)
    /// A system call failed; carries the operation and `errno`.
    case failed(String, Int32)

    /// Classifies an errno from a data or connect call.
    init(operation: String, errno code: Int32) {
        switch code {
        case EPIPE, ECONNRESET, ENOTCONN, ECONNABORTED:
            self = .disconnected("\(operation): \(String(cString: strerror(code)))")
        default:
            self = .failed(operation, code)
        }
    }

    package var description: String {
        switch self {
        case .disconnected(let reason): return "disconnected (\(reason))"
        case .failed(let operation, let code): return "\(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
        }
    }

    /// The errno, when the failure carries one.
    var errno: Int32? {
        if case .failed(_, let code) = self { return code }
        return nil
    }
}

/// Reads the kernel's view of this process's open file descriptors (for leak checks and `mesh status`).
func openFileDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}
