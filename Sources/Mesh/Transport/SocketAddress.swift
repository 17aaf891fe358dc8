@preconcurrency import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where a socket lives: an IPv4 or IPv6 literal with a port, or a Unix socket path.
///
/// Hostnames are resolved once, off the cooperative pool, by ``resolve(_:defaultPort:)``; every
/// other place works with numeric addresses only.
public enum SocketAddress: Sendable, Hashable, CustomStringConvertible {
    case ipv4(host: String, port: UInt16)
    case ipv6(host: String, port: UInt16)
    case unix(path: String)

    /// The address part without the port (`127.0.0.1`, `::1`, or the socket path).
    public var host: String {
        switch self {
        case .ipv4(let host, _), .ipv6(let host, _): return host
        case .unix(let path): return path
        }
    }

    /// The TCP port, or 0 for a Unix socket.
    public var port: UInt16 {
        switch self {
        case .ipv4(_, let port), .ipv6(_, let port): return port
        case .unix: return 0
        }
    }

    /// True for 127.0.0.0/8, ::1 and Unix sockets.
    public var isLoopback: Bool {
        switch self {
        case .ipv4(let host, _): return host.hasPrefix("127.")
        case .ipv6(let host, _): return host == "::1"
        case .unix: return true
        }
    }

    /// True for a Unix socket.
    var isUnix: Bool {
        if case .unix = self { return true }
        return false
    }

    /// `host:port`, `[v6]:port`, or `unix:PATH`, the same form ``parse(_:defaultPort:)`` reads.
    public var description: String {
        switch self {
        case .ipv4(let host, let port): return "\(host):\(port)"
        case .ipv6(let host, let port): return "[\(host)]:\(port)"
        case .unix(let path): return "unix:\(path)"
        }
    }

    /// Reads a numeric address: `1.2.3.4:5`, `[::1]:5`, `unix:/path`, or a bare literal with `defaultPort`.
    ///
    /// - Returns: `nil` when `text` is not a numeric literal (a hostname needs ``resolve(_:defaultPort:)``).
    public static func parse(_ text: String, defaultPort: UInt16) -> SocketAddress? {
        guard let (host, port) = split(text, defaultPort: defaultPort) else { return nil }
        if host.hasPrefix("unix:") { return .unix(path: String(host.dropFirst(5))) }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return .ipv4(host: host, port: port) }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return .ipv6(host: host, port: port) }
        return nil
    }

    /// Resolves `host:port` (a literal or a hostname) to one address.
    ///
    /// The lookup (`getaddrinfo`, which may block on DNS) runs on a Dispatch queue, never on the
    /// cooperative pool.
    /// - Throws: ``MeshError/invalidAddress(_:reason:)`` when the text is malformed or the name does not resolve.
    public static func resolve(_ text: String, defaultPort: UInt16) async throws -> SocketAddress {
        if let literal = parse(text, defaultPort: defaultPort) { return literal }
        guard let (host, port) = split(text, defaultPort: defaultPort), !host.isEmpty else {
            throw MeshError.invalidAddress(text, reason: "expected HOST:PORT")
        }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                hints.ai_family = AF_UNSPEC
                var list: UnsafeMutablePointer<addrinfo>?
                let status = getaddrinfo(host, nil, &hints, &list)
                defer { if let list { freeaddrinfo(list) } }
                var candidates: [SocketAddress] = []
                var cursor = list
                while let entry = cursor?.pointee {
                    if let address = entry.ai_addr.flatMap({ SocketAddress(sockaddr: $0, port: port) }) {
                        candidates.append(address)
                    }
                    cursor = entry.ai_next
                }
                // Prefer IPv4: "localhost" resolves to both, and servers listen on IPv4 by default.
                let ipv4 = candidates.first { if case .ipv4 = $0 { true } else { false } }
                if let chosen = ipv4 ?? candidates.first {
                    return continuation.resume(returning: chosen)
                }
                let reason = status == 0 ? "no usable address" : String(cString: gai_strerror(status))
                continuation.resume(throwing: MeshError.invalidAddress(text, reason: reason))
            }
        }
    }

    private static func split(_ text: String, defaultPort: UInt16) -> (String, UInt16)? {
        if text.hasPrefix("unix:") { return (text, 0) }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (host, defaultPort) }
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
            return (host, port)
        }
        let colons = text.filter { $0 == ":" }.count
        if colons == 1, let colon = text.lastIndex(of: ":") {
            guard let port = UInt16(text[text.index(after: colon)...]) else { return nil }
            return (String(text[..<colon]), port)
        }
        return (text, defaultPort)  // a bare host, or a bare IPv6 literal
    }

    // MARK: sockaddr conversion

    init?(storage: sockaddr_storage) {
        var storage = storage
        let address = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress(sockaddr: $0, port: nil) }
        }
        guard let address else { return nil }
        self = address
    }

    /// Converts a kernel address; `port` overrides the one inside (for `getaddrinfo` results).
    init?(sockaddr pointer: UnsafePointer<sockaddr>, port: UInt16?) {
        switch Int32(pointer.pointee.sa_family) {
        case AF_INET:
            let v4 = pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
            var addr = v4.sin_addr
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &addr, &text, socklen_t(text.count))
            self = .ipv4(host: cText(text), port: port ?? UInt16(bigEndian: v4.sin_port))
        case AF_INET6:
            let v6 = pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
            var addr = v6.sin6_addr
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &addr, &text, socklen_t(text.count))
            self = .ipv6(host: cText(text), port: port ?? UInt16(bigEndian: v6.sin6_port))
        case AF_UNIX:
            let path = pointer.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { un -> String in
                withUnsafeBytes(of: un.pointee.sun_path) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
            }
            self = .unix(path: path)
        default:
            return nil
        }
    }

    /// Calls `body` with this address as a kernel `sockaddr` and its length.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch self {
        case .ipv4(let host, let port):
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, host, &address.sin_addr)
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6(let host, let port):
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, host, &address.sin6_addr)
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        case .unix(let path):
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            // "@name" is Linux's abstract namespace: a leading NUL, no file.
            let name = path.hasPrefix("@") ? [0] + Array(path.utf8.dropFirst()) : Array(path.utf8)
            let bytes = Array(name.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
    }
}

/// A NUL-terminated C character buffer as a Swift string.
private func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension SocketAddress {
    /// True when a node that advertises `host` may be connecting from this address: the same
    /// host, or both on loopback (any loopback address counts as loopback).
    package func isSameHost(as host: String) -> Bool {
        if host == self.host { return true }
        guard let advertised = SocketAddress.parse(host, defaultPort: 0) else { return false }
        return advertised.isLoopback && isLoopback
    }
}
