@preconcurrency import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The topics every mesh workload uses, and the raw baseline's frames name too.
enum BenchTopic {
    static let data = "bench.data"
    static let end = "bench.end"
    static let ping = "bench.ping"
    static let pong = "bench.pong"
}

/// The small value W1's Codable row sends through the default JSON codec.
struct BenchRecord: Codable, Sendable {
    var seq: Int
    var stamp: Double
    var label: String

    /// A record as the sender makes it; its JSON size sets the raw baseline's payload size.
    static func sample(_ seq: Int) -> BenchRecord {
        BenchRecord(seq: seq, stamp: Double(seq) * 0.001, label: "bench")
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the machine, so a sender's
/// first-send time and a receiver's last-delivery time can be subtracted.
func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// What a child process reports on its final `RESULT {json}` line. Each role fills in its part.
struct ChildResult: Codable, Sendable {
    /// Messages (or frames) delivered to this receiver, and their payload bytes.
    var received: Int?
    var bytes: Int?
    /// When the first and the last message reached this receiver (``monotonicNanos()``).
    var firstNanos: UInt64?
    var lastNanos: UInt64?
    /// When the sender started its first send and returned from its last one.
    var sentFirstNanos: UInt64?
    var sentLastNanos: UInt64?
    /// Messages the sending node counted as dropped (full queue or failed connection).
    var dropped: Int?
    /// Round-trip percentiles in microseconds, from a pinger.
    var p50: Double?
    var p90: Double?
    var p99: Double?
    /// How long the whole join took, from a swarm.
    var elapsedNanos: UInt64?
    /// How many times a swarm's nodes registered again after losing the coordinator.
    var reconnects: Int?
}

/// Writes one line to standard output at once (unbuffered): the parent waits on these lines.
func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Writes one line to standard error.
func warn(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Prints `RESULT {json}` for the parent.
func emitResult(_ result: ChildResult) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    let json = (try? encoder.encode(result)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    emit("RESULT \(json)")
}

/// Ends this process after `seconds` whatever it is doing, so no child outlives a stuck run.
func armWatchdog(seconds: Double, role: String) {
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
        warn("mesh-bench \(role): deadline of \(Int(seconds)) s passed; exiting")
        exit(124)
    }
}

/// Raises the soft open-file limit to the hard limit (a 1,000-node swarm needs 2,000+ descriptors).
func raiseOpenFileLimit() {
    var limit = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    guard getrlimit(resource, &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    if setrlimit(resource, &limit) != 0 {
        warn("mesh-bench: could not raise the open-file limit: \(String(cString: strerror(errno)))")
    }
}

/// CPU time and bytes written by a process, from `/proc/<pid>/stat` and `/proc/<pid>/io`.
struct ProcessUsage: Sendable {
    /// User plus system CPU time, in seconds.
    var cpuSeconds: Double
    /// `wchar` from `/proc/<pid>/io`: bytes passed to write-like calls, sockets included.
    var bytesWritten: Int

    /// Reads the figures of process `pid`, or `nil` when it is gone or unreadable.
    static func read(pid: Int32) -> ProcessUsage? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8)
        else { return nil }
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis
        // start at field 3, so utime (field 14) and stime (field 15) are at offsets 11 and 12.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let wchar = io.split(separator: "\n").first { $0.hasPrefix("wchar:") }
            .flatMap { Int($0.dropFirst("wchar:".count).trimmingCharacters(in: .whitespaces)) }
        guard let wchar else { return nil }
        return ProcessUsage(cpuSeconds: (user + system) / ticks, bytesWritten: wchar)
    }
}

/// Bytes sent by the TCP sockets on local port `port`, summed from `ss -ti` (the kernel's
/// `tcp_info.bytes_sent` per socket), or `nil` when `ss` is missing. Sockets already closed are
/// not counted.
func socketBytesSent(localPort port: UInt16) async -> Int? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    guard
        let ss = path.split(separator: ":").map({ URL(fileURLWithPath: String($0)).appendingPathComponent("ss") })
            .first(where: { FileManager.default.isExecutableFile(atPath: $0.path) })
    else { return nil }
    do {
        let child = try BenchChild(
            label: "ss", executable: ss, arguments: ["-tinH", "state", "established", "( sport = :\(port) )"])
        let lines = try await child.output(within: 10)
        var total = 0
        for token in lines.joined(separator: " ").split(separator: " ") where token.hasPrefix("bytes_sent:") {
            total += Int(token.dropFirst("bytes_sent:".count)) ?? 0
        }
        return total
    } catch {
        warn("mesh-bench: ss failed: \(error)")
        return nil
    }
}

/// The `--key value` options of a child role, read once.
struct RoleArguments: Sendable {
    let role: String
    private let values: [String: String]

    init(_ arguments: [String]) throws {
        guard let role = arguments.first else { throw BenchFailure.usage("_role needs a role name") }
        self.role = role
        var values: [String: String] = [:]
        var rest = arguments.dropFirst()
        while let key = rest.popFirst() {
            guard key.hasPrefix("--"), let value = rest.popFirst() else {
                throw BenchFailure.usage("_role \(role): expected --key value pairs, got \"\(key)\"")
            }
            values[String(key.dropFirst(2))] = value
        }
        self.values = values
    }

    func string(_ key: String) throws -> String {
        guard let value = values[key] else { throw BenchFailure.usage("_role \(role) needs --\(key)") }
        return value
    }

    func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        guard let text = values[key] else {
            if let fallback { return fallback }
            throw BenchFailure.usage("_role \(role) needs --\(key)")
        }
        guard let value = Int(text) else { throw BenchFailure.usage("_role \(role): --\(key) \"\(text)\" is not a number") }
        return value
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        guard let text = values[key] else { return fallback }
        guard let value = Double(text) else { throw BenchFailure.usage("_role \(role): --\(key) \"\(text)\" is not a number") }
        return value
    }
}

/// Why a benchmark row, or the whole run, failed.
enum BenchFailure: Error, CustomStringConvertible {
    /// The command line was wrong.
    case usage(String)
    /// A child did not print what was awaited before its deadline; it was killed.
    case timedOut(role: String, waitingFor: String, seconds: Double, stderr: String)
    /// A child exited before printing what was awaited.
    case exited(role: String, status: Int32, waitingFor: String, stderr: String)
    /// A child printed a line the parent could not read.
    case unreadable(role: String, line: String)
    /// A run failed; the message says what else was seen.
    case run(String)

    var description: String {
        switch self {
        case .usage(let message):
            return message
        case .timedOut(let role, let what, let seconds, let stderr):
            return "\(role) did not print \(what) within \(Int(seconds)) s" + BenchFailure.tail(stderr)
        case .exited(let role, let status, let what, let stderr):
            return "\(role) exited with status \(status) before printing \(what)" + BenchFailure.tail(stderr)
        case .unreadable(let role, let line):
            return "\(role) printed an unreadable line: \(line.prefix(200))"
        case .run(let message):
            return message
        }
    }

    /// The last few distinct lines of a child's standard error, without their timestamps.
    static func tail(_ stderr: String) -> String {
        var lines: [Substring] = []
        for line in stderr.split(separator: "\n").reversed() {
            // Logger lines start with a 23-character timestamp and a space.
            let text = line.count > 24 && line.first?.isNumber == true ? line.dropFirst(24) : line
            if !lines.contains(text) { lines.append(text) }
            if lines.count == 2 { break }
        }
        return lines.isEmpty ? "" : "; its last stderr: " + lines.reversed().joined(separator: " | ")
    }
}
