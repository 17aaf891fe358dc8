import Foundation
import Mesh
import Synchronization

#if canImport(Glibc)
import Glibc
#endif


// MARK: Ports, descriptors, memory

/// Reads a /proc file to its end (they report a size of 0, so read until `read` returns 0).
package func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The resident set size in bytes of this process, or of the process `pid`, from `VmRSS` in
/// /proc/PID/status; -1 when it cannot be read.
package func residentMemoryBytes(pid: Int32? = nil) -> Int {
    guard let status = readProcFile(pid.map { "/proc/\($0)/status" } ?? "/proc/self/status"),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first ?? -1
    return kilobytes * 1024
}

/// Bytes as MiB with one decimal, for printed measurements.
package func mebibytes(_ bytes: Int) -> String {
    String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}

/// Seconds with milliseconds, for printed measurements.
package func secondsText(_ duration: Duration) -> String {
    formatted(duration)
}

extension Duration {
    /// The duration as a `Double` number of seconds.
    package var inSeconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}

/// The lines of `output` that mention `needle`.
package func occurrences(of needle: String, in output: String) -> Int {
    output.components(separatedBy: needle).count - 1
}

// MARK: Raw TCP clients (blocking; only ever used on plain threads)

/// Blocking client sockets for hostile-input tests. Every function here blocks, so they run on
/// dedicated `Thread`s, never on Swift's cooperative pool.
package enum RawClient {
    /// Connects a blocking TCP socket to 127.0.0.1:`port`; `nil` on failure (with errno).
    package static func connect(port: UInt16, timeoutSeconds: Int = 5) -> (fd: Int32?, errno: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (nil, errno) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            return (nil, code)
        }
        return (fd, 0)
    }

    /// Writes as much of `bytes` as the peer takes; returns the count written before an error.
    @discardableResult
    package static func send(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if count > 0 {
                offset += count
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        return offset
    }

    /// Reads until the peer closes or resets; `true` when it did, `false` on timeout.
    package static func readUntilClosed(_ fd: Int32, timeoutMilliseconds: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutMilliseconds))
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(max(1, left.inSeconds * 1000)))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { return false }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return true }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return true  // ECONNRESET and friends: closed by the peer
            }
        }
    }

    /// Closes with SO_LINGER {1, 0}: the kernel sends a reset and keeps no TIME_WAIT entry.
    package static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
    }
}

/// A mesh hello with no key: "MESH", version 3, flags 0, the purpose, a 32-byte nonce and a zero id.
///
/// - Parameter purpose: 1 for a node's control connection (the coordinator's port), 4 for peer
///   data (a node's port).
package func openMeshHello<G: RandomNumberGenerator>(purpose: UInt8 = 1, using generator: inout G) -> [UInt8] {
    Array("MESH".utf8) + [3, 0, purpose] + (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        + [UInt8](repeating: 0, count: 8)
}

/// Runs `body` on a new plain thread (not the cooperative pool) and returns its result.
package func onThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}

/// Counts sockets in /proc/net/tcp (this network namespace) whose local port is `port`, leaving
/// out the listening socket and TIME_WAIT entries: what one server still holds open.
package func establishedSocketCount(localPort port: UInt16) -> Int {
    guard let table = readProcFile("/proc/net/tcp") else { return -1 }
    let portHex = String(format: ":%04X", port)
    return table.split(separator: "\n").dropFirst().filter { line in
        let fields = line.split(separator: " ")
        guard fields.count > 3 else { return false }
        let state = fields[3]
        return fields[1].hasSuffix(portHex) && state != "0A" && state != "06"
    }.count
}
