import Mesh

/// One HTTP/1.x request, as read by ``HTTPRequestDecoder``: the head only (this server takes no
/// request bodies).
package struct HTTPRequest: Sendable, Equatable {
    /// The method token as sent (`GET`, `HEAD`, ...); methods are case-sensitive.
    package var method: String
    /// The request target as sent (`/api/status?x=1`).
    var target: String
    /// The target's path, percent-decoded and checked: it starts with `/` and has no `.` or `..`
    /// segment, no backslash and no control character.
    package var path: String
    /// The query string after `?`, undecoded, or `nil`.
    var query: String?
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    /// The header fields in order, names as sent.
    var headers: [(name: String, value: String)]

    package static func == (lhs: HTTPRequest, rhs: HTTPRequest) -> Bool {
        lhs.method == rhs.method && lhs.target == rhs.target && lhs.minorVersion == rhs.minorVersion
            && lhs.headers.map(\.name) == rhs.headers.map(\.name) && lhs.headers.map(\.value) == rhs.headers.map(\.value)
    }

    /// The first field named `name` (compared without regard to case).
    package func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }

    /// Whether the client wants the connection kept open after the response.
    var keepAlive: Bool {
        let tokens = (header("Connection") ?? "").lowercased().split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        if tokens.contains("close") { return false }
        return minorVersion >= 1 || tokens.contains("keep-alive")
    }
}

/// Why a request could not be read; each case maps to the 4xx/5xx status the client gets.
enum HTTPRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Malformed syntax: the reason says what.
    case badRequest(String)
    /// The request line is longer than the limit.
    case requestLineTooLong(limit: Int)
    /// The header section is larger than the limit, or has too many fields.
    case headersTooLarge(String)
    /// The request declares a body; this server takes none.
    case bodyNotAccepted(String)
    /// A protocol version other than HTTP/1.0 and HTTP/1.1.
    case versionNotSupported(String)

    var status: HTTPStatus {
        switch self {
        case .badRequest: return .badRequest
        case .requestLineTooLong: return .uriTooLong
        case .headersTooLarge: return .headerFieldsTooLarge
        case .bodyNotAccepted: return .contentTooLarge
        case .versionNotSupported: return .versionNotSupported
        }
    }

    var description: String {
        switch self {
        case .badRequest(let reason): return reason
        case .requestLineTooLong(let limit): return "request line longer than \(limit) bytes"
        case .headersTooLarge(let reason): return reason
        case .bodyNotAccepted(let reason): return reason
        case .versionNotSupported(let version): return "HTTP version \"\(version)\" is not supported (use HTTP/1.1)"
        }
    }
}

/// Reads HTTP/1.x request heads from a byte stream, never trusting the client's sizes.
///
/// Feed bytes with ``append(_:)`` and take requests with ``next()``: `nil` means "need more
/// bytes". Every limit is checked as bytes arrive, so a client cannot make it buffer more than
/// ``Limits/requestLine`` + ``Limits/headerSection`` bytes, whatever it sends.
struct HTTPRequestDecoder: Sendable {
    /// The most a request head may take.
    struct Limits: Sendable {
        /// Bytes in the request line, without its line ending.
        var requestLine = 8 * 1024
        /// Bytes in the header fields together, line endings included.
        var headerSection = 16 * 1024
        /// Header fields.
        var headerCount = 64
    }

    let limits: Limits
    private var buffer: [UInt8] = []

    init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Bytes received and not yet taken as a request.
    var bufferedByteCount: Int { buffer.count }

    /// Adds bytes read from the connection.
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete request head, or `nil` until more bytes arrive.
    ///
    /// - Throws: ``HTTPRequestError`` for a malformed or oversized head; the connection should
    ///   answer with its status and close, since the stream's framing can no longer be trusted.
    mutating func next() throws(HTTPRequestError) -> HTTPRequest? {
        // RFC 9112 2.2: a server should ignore at least one empty line before the request line.
        while buffer.first == UInt8(ascii: "\r") || buffer.first == UInt8(ascii: "\n") {
            guard buffer.count >= 2 || buffer.first == UInt8(ascii: "\n") else { return nil }
            if buffer[0] == UInt8(ascii: "\r") {
                guard buffer[1] == UInt8(ascii: "\n") else { throw .badRequest("stray carriage return before the request line") }
                buffer.removeFirst(2)
            } else {
                buffer.removeFirst(1)
            }
        }
        guard let lineEnd = buffer.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.count > limits.requestLine + 1 { throw .requestLineTooLong(limit: limits.requestLine) }
            return nil
        }
        let requestLineLength = lineEnd > 0 && buffer[lineEnd - 1] == UInt8(ascii: "\r") ? lineEnd - 1 : lineEnd
        if requestLineLength > limits.requestLine { throw .requestLineTooLong(limit: limits.requestLine) }
        guard let headEnd = endOfHead(after: lineEnd + 1) else {
            if buffer.count - (lineEnd + 1) > limits.headerSection {
                throw .headersTooLarge("header section larger than \(limits.headerSection) bytes")
            }
            return nil
        }
        if headEnd - (lineEnd + 1) > limits.headerSection {
            throw .headersTooLarge("header section larger than \(limits.headerSection) bytes")
        }
        let head = Array(buffer[..<headEnd])
        buffer.removeFirst(headEnd)
        return try Self.parse(head, requestLineEnd: lineEnd, limits: limits)
    }

    /// The index just past the empty line that ends the head, searching from `start`.
    private func endOfHead(after start: Int) -> Int? {
        var index = start
        // The empty line may come right after the request line (a request with no fields).
        while index < buffer.count {
            if buffer[index] == UInt8(ascii: "\n") { return index + 1 }
            if buffer[index] == UInt8(ascii: "\r") {
                guard index + 1 < buffer.count else { return nil }
                if buffer[index + 1] == UInt8(ascii: "\n") { return index + 2 }
            }
            guard let lineEnd = buffer[index...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            index = lineEnd + 1
        }
        return nil
    }

    private static func parse(_ head: [UInt8], requestLineEnd: Int, limits: Limits) throws(HTTPRequestError)
        -> HTTPRequest
    {
        var lines = splitLines(head)
        guard !lines.isEmpty else { throw .badRequest("empty request") }
        let requestLine = lines.removeFirst()
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard requestLine.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else {
            throw .badRequest("request line has control or non-ASCII bytes")
        }
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            throw .badRequest("request line is not \"METHOD TARGET HTTP/1.1\"")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard !method.isEmpty, parts[0].allSatisfy(isTokenCharacter) else {
            throw .badRequest("method \"\(escapedPrefix(method))\" is not a token")
        }
        let minorVersion: Int
        switch version {
        case "HTTP/1.1": minorVersion = 1
        case "HTTP/1.0": minorVersion = 0
        default:
            if version.hasPrefix("HTTP/"), version.count == 8 {
                throw .versionNotSupported(escapedPrefix(version))
            }
            throw .badRequest("\"\(escapedPrefix(version))\" is not an HTTP version")
        }
        let (path, query) = try parseTarget(target)

        guard lines.count <= limits.headerCount else {
            throw .headersTooLarge("more than \(limits.headerCount) header fields")
        }
        var headers: [(name: String, value: String)] = []
        for line in lines {
            if line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") {
                throw .badRequest("obsolete line folding in the header section")
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else {
                throw .badRequest("header line without a field name and colon")
            }
            let name = line[..<colon]
            guard name.allSatisfy(isTokenCharacter) else {
                throw .badRequest("header field name \"\(escapedPrefix(String(decoding: name, as: UTF8.self)))\" is not a token")
            }
            let value = line[(colon + 1)...]
            guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else {
                throw .badRequest("header field \"\(String(decoding: name, as: UTF8.self))\" has control characters")
            }
            let trimmed = String(decoding: value, as: UTF8.self).trimmingCharacters(in: [" ", "\t"])
            headers.append((String(decoding: name, as: UTF8.self), trimmed))
        }
        let request = HTTPRequest(
            method: method, target: target, path: path, query: query, minorVersion: minorVersion, headers: headers)
        if minorVersion == 1 {
            let hosts = headers.filter { $0.name.lowercased() == "host" }
            guard hosts.count == 1 else { throw .badRequest("an HTTP/1.1 request needs exactly one Host field") }
        }
        if request.header("Transfer-Encoding") != nil {
            throw .bodyNotAccepted("request bodies are not accepted (Transfer-Encoding)")
        }
        let lengths = headers.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }), !first.isEmpty, first.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
            else { throw .badRequest("invalid Content-Length") }
            if first.utf8.contains(where: { $0 != UInt8(ascii: "0") }) {
                throw .bodyNotAccepted("request bodies are not accepted (Content-Length \(escapedPrefix(first)))")
            }
        }
        return request
    }

    /// Splits the head at line feeds, dropping a carriage return before each.
    private static func splitLines(_ head: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        for index in head.indices where head[index] == UInt8(ascii: "\n") {
            var end = index
            if end > start, head[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            lines.append(head[start..<end])
            start = index + 1
        }
        if start < head.count { lines.append(head[start...]) }
        return lines
    }

    /// The decoded path and the raw query of an origin-form (`/path?query`) or absolute-form
    /// (`http://host/path`) target.
    ///
    /// - Throws: ``HTTPRequestError/badRequest(_:)`` for another form, a bad escape, or a path that
    ///   tries to climb (`..`), names `.`, or holds a backslash or control character once decoded.
    static func parseTarget(_ target: String) throws(HTTPRequestError) -> (path: String, query: String?) {
        var rest = Substring(target)
        for scheme in ["http://", "https://"] where rest.lowercased().hasPrefix(scheme) {
            rest = rest.dropFirst(scheme.count)
            rest = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
        }
        guard rest.first == "/" else { throw .badRequest("request target must start with \"/\"") }
        var query: String? = nil
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        guard let decoded = percentDecode(rest) else { throw .badRequest("bad percent-escape in the path") }
        guard decoded.allSatisfy({ $0 >= 0x20 && $0 != 0x7f }), !decoded.contains(UInt8(ascii: "\\")) else {
            throw .badRequest("path traversal refused: control character or backslash in the path")
        }
        let path = String(decoding: decoded, as: UTF8.self)
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        if segments.contains(where: { $0 == ".." || $0 == "." }) {
            throw .badRequest("path traversal refused: \"..\" or \".\" segment in the path")
        }
        return (path, query)
    }

    private static func percentDecode(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// RFC 9110 `tchar`.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// The first 40 characters, with anything unprintable replaced, for error messages.
    private static func escapedPrefix(_ text: String) -> String {
        String(text.prefix(40).map { $0.isASCII && !$0.isNewline && ($0.asciiValue ?? 0) >= 0x20 ? $0 : "?" })
    }
}
