import Foundation
import MeshTesting

#if canImport(Glibc)
import Glibc
#endif

/// A strict reader of Prometheus's text exposition format (0.0.4), written from the format's
/// description: it refuses what Prometheus refuses, and a little more that our output must never
/// do (a family split in two, a negative counter, a missing final line feed).
struct PrometheusText {
    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var reason: String
        var description: String { "line \(line): \(reason)" }
    }

    struct Series: Hashable {
        var name: String
        var labels: [String: String]
    }

    /// Each sample's value by name and labels.
    var samples: [Series: Double] = [:]
    /// `# TYPE` by family name.
    var types: [String: String] = [:]
    /// `# HELP` by family name.
    var help: [String: String] = [:]

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples[Series(name: name, labels: labels)]
    }

    /// The samples of `name`, whatever their labels.
    func series(_ name: String) -> [(labels: [String: String], value: Double)] {
        samples.filter { $0.key.name == name }.map { ($0.key.labels, $0.value) }
    }

    static func parse(_ text: String) throws -> PrometheusText {
        var result = PrometheusText()
        guard text.isEmpty || text.hasSuffix("\n") else { throw ParseError(line: 0, reason: "no final line feed") }
        var finished: Set<String> = []
        var current: String? = nil
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        for (index, line) in lines.enumerated() {
            let number = index + 1
            func fail(_ reason: String) -> ParseError { ParseError(line: number, reason: "\(reason): \(line)") }
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3, parts[0] == "#", parts[1] == "HELP" || parts[1] == "TYPE" else { continue }
                let name = String(parts[2])
                guard isMetricName(name) else { throw fail("bad metric name") }
                let rest = parts.count > 3 ? String(parts[3]) : ""
                if parts[1] == "HELP" {
                    guard result.help[name] == nil else { throw fail("second HELP") }
                    result.help[name] = try unescape(rest, allowQuote: false, line: number)
                } else {
                    guard result.types[name] == nil else { throw fail("second TYPE") }
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(rest) else { throw fail("bad type") }
                    guard !result.samples.keys.contains(where: { $0.name == name }) else { throw fail("TYPE after samples") }
                    result.types[name] = rest
                }
                continue
            }
            // name{label="value",...} value [timestamp]
            var cursor = line.startIndex
            while cursor < line.endIndex, line[cursor] != "{", line[cursor] != " " { cursor = line.index(after: cursor) }
            let name = String(line[..<cursor])
            guard isMetricName(name) else { throw fail("bad metric name") }
            var labels: [String: String] = [:]
            if cursor < line.endIndex, line[cursor] == "{" {
                cursor = line.index(after: cursor)
                while true {
                    guard cursor < line.endIndex else { throw fail("unterminated labels") }
                    if line[cursor] == "}" {
                        cursor = line.index(after: cursor)
                        break
                    }
                    var nameEnd = cursor
                    while nameEnd < line.endIndex, line[nameEnd] != "=" { nameEnd = line.index(after: nameEnd) }
                    let label = String(line[cursor..<nameEnd])
                    guard isLabelName(label) else { throw fail("bad label name \"\(label)\"") }
                    guard nameEnd < line.endIndex, line.index(after: nameEnd) < line.endIndex,
                        line[line.index(after: nameEnd)] == "\""
                    else { throw fail("label value not quoted") }
                    var valueIndex = line.index(nameEnd, offsetBy: 2)
                    var raw = ""
                    while true {
                        guard valueIndex < line.endIndex else { throw fail("unterminated label value") }
                        let character = line[valueIndex]
                        if character == "\\" {
                            let next = line.index(after: valueIndex)
                            guard next < line.endIndex else { throw fail("dangling escape") }
                            raw.append("\\")
                            raw.append(line[next])
                            valueIndex = line.index(after: next)
                            continue
                        }
                        if character == "\"" { break }
                        raw.append(character)
                        valueIndex = line.index(after: valueIndex)
                    }
                    guard labels[label] == nil else { throw fail("label \(label) twice") }
                    labels[label] = try unescape(raw, allowQuote: true, line: number)
                    cursor = line.index(after: valueIndex)
                    if cursor < line.endIndex, line[cursor] == "," { cursor = line.index(after: cursor) }
                }
            }
            guard cursor < line.endIndex, line[cursor] == " " else { throw fail("no space before the value") }
            let fields = line[line.index(after: cursor)...].split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 1 || fields.count == 2 else { throw fail("expected a value and an optional timestamp") }
            guard let value = parseValue(String(fields[0])) else { throw fail("bad value") }
            if fields.count == 2, Int64(fields[1]) == nil { throw fail("bad timestamp") }
            let family = familyName(name, types: result.types)
            if family != current {
                if let current { finished.insert(current) }
                guard !finished.contains(family) else { throw fail("family \(family) split in two") }
                current = family
            }
            if result.types[family] == "counter" {
                guard value >= 0 else { throw fail("negative counter") }
            }
            let series = Series(name: name, labels: labels)
            guard result.samples[series] == nil else { throw fail("the same series twice") }
            result.samples[series] = value
        }
        return result
    }

    private static func familyName(_ name: String, types: [String: String]) -> String {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] != nil { return base }
        }
        return name
    }

    private static func unescape(_ text: String, allowQuote: Bool, line: Int) throws -> String {
        var result = ""
        var escaping = false
        for character in text {
            if escaping {
                switch character {
                case "\\": result.append("\\")
                case "n": result.append("\n")
                case "\"" where allowQuote: result.append("\"")
                default: throw ParseError(line: line, reason: "unknown escape \\\(character)")
                }
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else {
                result.append(character)
            }
        }
        if escaping { throw ParseError(line: line, reason: "dangling escape") }
        return result
    }

    private static func parseValue(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        default:
            guard !text.isEmpty, text.allSatisfy({ "0123456789.eE+-".contains($0) }) else { return nil }
            return Double(text)
        }
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" || first == ":" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == ":" }
    }

    static func isLabelName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" }
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { ("a"..."z").contains(self) || ("A"..."Z").contains(self) }
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// A blocking HTTP/1.1 client for tests; every call blocks, so run it with `onThread`.
enum HTTPTestClient {
    struct Response: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: body) as? [String: Any] ?? [:]
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Sends `raw` bytes on a new connection and reads one response (until its length, or the close).
    static func exchange(port: UInt16, _ raw: [UInt8], timeoutSeconds: Int = 10, head: Bool = false) throws -> Response {
        let (fd, code) = RawClient.connect(port: port, timeoutSeconds: timeoutSeconds)
        guard let fd else { throw Failure(description: "connect to \(port): errno \(code)") }
        defer { Glibc.close(fd) }
        RawClient.send(fd, raw)
        return try readResponse(fd, head: head)
    }

    /// `GET path` with optional extra header lines.
    static func get(port: UInt16, _ path: String, headers: [String] = [], method: String = "GET") throws -> Response {
        let head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
            + headers.map { $0 + "\r\n" }.joined() + "\r\n"
        return try exchange(port: port, Array(head.utf8), head: method == "HEAD")
    }

    /// Reads one response from a blocking socket whose receive timeout is set.
    ///
    /// - Parameter head: the response is to a HEAD request: it has a length but no body.
    static func readResponse(_ fd: Int32, head isHead: Bool = false) throws -> Response {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headEnd: Int? = nil
        var expected: Int? = nil
        while true {
            if let headEnd, isHead || (expected.map { buffer.count >= headEnd + $0 } ?? false) { break }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 {
                if headEnd != nil && expected == nil { break }  // read to the close
                throw Failure(description: "connection ended after \(buffer.count) bytes (errno \(errno)): \(String(decoding: buffer.prefix(400), as: UTF8.self).debugDescription)")
            }
            buffer.append(contentsOf: chunk[..<count])
            if headEnd == nil, let range = Data(buffer).range(of: Data("\r\n\r\n".utf8)) {
                headEnd = range.upperBound
                let head = String(decoding: buffer[..<range.lowerBound], as: UTF8.self)
                if let line = head.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }) {
                    expected = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))
                }
            }
        }
        let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw Failure(description: "bad status line in \(head)")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = isHead ? Data() : Data(buffer[headEnd!...].prefix(expected ?? Int.max))
        return Response(status: status, headers: headers, body: body)
    }
}

/// Runs a blocking HTTP call on its own thread.
func http<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await onThread("http-test") { Result { try body() } }.get()
}
