import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

#if canImport(Glibc)
import Glibc
#endif

/// Generates one malformed connection's worth of bytes, reproducibly from a seed and an index.
struct HostileInput {
    /// What is listening on the other end; decides which frames count as "valid" to mutate.
    enum Target: Sendable {
        case coordinator
        case node

        /// The purpose byte a hello to this port must carry.
        var purpose: UInt8 {
            switch self {
            case .coordinator: return 1
            case .node: return 4
            }
        }

        /// The receiver's frame limit (kind plus body): 1 MiB at the coordinator,
        /// 8 MiB + 64 KiB on a node's peer port.
        var frameLimit: Int {
            switch self {
            case .coordinator: return 1 << 20
            case .node: return (8 << 20) + 64 * 1024
            }
        }
    }

    static let categoryNames = [
        "random bytes", "MESH + garbage", "truncated hello", "hello with bad version or flags",
        "hello + random bytes", "hello + huge declared length", "hello + partial frame (<= 64 KiB declared)",
        "hello + nonsense JSON", "hello + unknown kind", "hello + 60 KB topic", "hello + zero-length frame",
        "mutated valid stream",
    ]

    let category: Int
    let bytes: [UInt8]
    /// True when a correct receiver must close the connection because of these bytes alone
    /// (the hello is wrong, or the first frame is impossible); false when it may wait for more.
    let mustBeClosed: Bool

    init(seed: UInt64, index: Int, target: Target) {
        var rng = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        category = Int.random(in: 0..<Self.categoryNames.count, using: &rng)
        var bytes = Self.make(category, target: target, using: &rng)
        Self.defuseLargeDeclaredLengths(&bytes, limit: target.frameLimit)
        self.bytes = bytes
        mustBeClosed = Self.mustBeClosed(bytes, category: category, target: target)
    }

    /// Raises any declared frame length between 64 KiB and the limit above the limit.
    ///
    /// Such a header makes today's receiver reserve and zero the whole declared length at once
    /// (see `stalledLargeFrames`); in a debug build that is about 2 s of event-loop time per
    /// 8 MiB, so a few hundred of them would stall the fuzz run for many minutes.
    static func defuseLargeDeclaredLengths(_ bytes: inout [UInt8], limit: Int) {
        var offset = Handshake.helloLength
        while offset + 4 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
                | Int(bytes[offset + 3])
            if length == 0 || length > limit { return }
            if length > 65_536 {
                bytes[offset] = 0xFF
                return
            }
            offset += 4 + length
        }
    }

    /// Whether the hello or the first frame alone obliges the receiver to close.
    static func mustBeClosed(_ bytes: [UInt8], category: Int, target: Target) -> Bool {
        let limit = target.frameLimit
        let magic = Array("MESH".utf8)
        for index in 0..<min(4, bytes.count) where bytes[index] != magic[index] { return true }
        if bytes.count > 4, bytes[4] != Handshake.version { return true }
        if bytes.count < Handshake.helloLength { return false }
        if bytes[5] & 1 == 1 { return true }
        if bytes[6] != target.purpose { return true }
        // A whole header: the decoder judges the length once all 5 header bytes are in (a
        // zero length followed by nothing more is only "need more bytes" to it).
        guard bytes.count >= Handshake.helloLength + Frame.headerLength else { return false }
        let offset = Handshake.helloLength
        let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8
            | Int(bytes[offset + 3])
        if length == 0 || length > limit { return true }
        // Whole first frames of a kind or content no receiver accepts.
        return [7, 8].contains(category)
    }

    private static func make(_ category: Int, target: Target, using rng: inout SplitMix64) -> [UInt8] {
        let hello = openMeshHello(purpose: target.purpose, using: &rng)
        switch category {
        case 0:
            return randomBytes(Int.random(in: 1...256, using: &rng), using: &rng)
        case 1:
            return Array("MESH".utf8) + randomBytes(Int.random(in: 1...64, using: &rng), using: &rng)
        case 2:
            return Array(hello.prefix(Int.random(in: 1...(Handshake.helloLength - 1), using: &rng)))
        case 3:
            var bad = hello
            if Bool.random(using: &rng) {
                bad[4] = ([0, 1] + Array(3...255)).randomElement(using: &rng)!
            } else {
                bad[5] = 1  // claims a key the open mesh does not have
            }
            return bad + randomBytes(Int.random(in: 0...32, using: &rng), using: &rng)
        case 4:
            return hello + randomBytes(Int.random(in: 1...512, using: &rng), using: &rng)
        case 5:
            let length = UInt32.random(in: UInt32(target.frameLimit + 1)...UInt32.max, using: &rng)
            return hello + header(length: length, kind: UInt8.random(in: 1...3, using: &rng))
                + randomBytes(Int.random(in: 0...64, using: &rng), using: &rng)
        case 6:
            // Lengths near the limit are left to `stalledLargeFrames`: each costs the receiver
            // seconds of zero-filling in a debug build, which would swamp the fuzz run.
            let length = UInt32.random(in: 2...65_536, using: &rng)
            return hello + header(length: length, kind: target == .coordinator ? 1 : 3)
                + randomBytes(Int.random(in: 0...min(256, Int(length) - 1), using: &rng), using: &rng)
        case 7:
            return hello + frame(kind: 1, body: nonsenseJSON(using: &rng))
        case 8:
            let kind = [0] + Array(4...255)
            return hello + frame(kind: UInt8(kind.randomElement(using: &rng)!), body: randomBytes(Int.random(in: 0...64, using: &rng), using: &rng))
        case 9:
            let topic = Self.longTopic
            switch target {
            case .coordinator:
                let register = controlJSON(type: "register", name: "fuzz", topics: [])
                let listen = Array(#"{"type":"listen","topic":"\#(topic)"}"#.utf8)
                return hello + frame(kind: 1, body: register) + frame(kind: 1, body: listen)
            case .node:
                return hello + frame(kind: 2, body: Array(#"{"id":"f","name":"fuzz"}"#.utf8))
                    + messageFrame(topic: topic, payload: randomBytes(16, using: &rng))
            }
        case 10:
            return hello + [0, 0, 0, 0] + randomBytes(Int.random(in: 0...16, using: &rng), using: &rng)
        default:
            var stream = validStream(target: target, using: &rng)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let position = Int.random(in: 0..<stream.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: stream[position] ^= UInt8.random(in: 1...255, using: &rng)
                case 1: stream.removeSubrange(position...)
                case 2: stream.insert(UInt8.random(in: 0...255, using: &rng), at: position)
                default: stream.remove(at: position)
                }
                if stream.isEmpty { stream = [0] }
            }
            return stream
        }
    }

    private static let longTopic = String(repeating: "t", count: 60_000)

    private static func validStream(target: Target, using rng: inout SplitMix64) -> [UInt8] {
        let hello = openMeshHello(purpose: target.purpose, using: &rng)
        switch target {
        case .coordinator:
            let name = "fuzz\(UInt16.random(in: 0...UInt16.max, using: &rng))"
            return hello + frame(kind: 1, body: controlJSON(type: "register", name: name, topics: ["fuzz"]))
                + frame(kind: 1, body: Array(#"{"topic":"fuzz-b","type":"listen"}"#.utf8))
                + frame(kind: 1, body: Array(#"{"type":"heartbeat"}"#.utf8))
        case .node:
            return hello + frame(kind: 2, body: Array(#"{"id":"0123456789abcdef","name":"fuzz"}"#.utf8))
                + messageFrame(topic: "fuzz", payload: randomBytes(Int.random(in: 0...64, using: &rng), using: &rng))
                + messageFrame(topic: "fuzz", payload: Array(#"{"a":1}"#.utf8))
        }
    }

    private static func nonsenseJSON(using rng: inout SplitMix64) -> [UInt8] {
        let depth = Int.random(in: 1_000...50_000, using: &rng)
        let choices: [[UInt8]] = [
            Array("{".utf8), Array("}".utf8), Array("[]".utf8), Array("null".utf8), Array("\"\"".utf8),
            Array(#"{"type":"banana"}"#.utf8),
            Array(#"{"type":"register"}"#.utf8),
            Array(#"{"type":"register","node":{}}"#.utf8),
            Array(#"{"type":"register","node":{"id":"","name":"","host":"","port":0}}"#.utf8),
            Array(#"{"type":"register","node":{"id":"a","name":"b","host":"","port":99999999999999999999}}"#.utf8),
            Array(#"{"type":"register","node":{"id":"a","name":"b\u0000c","host":"","port":1}}"#.utf8),
            Array(#"{"type":"listen","topic":"x"}"#.utf8),
            Array(#"{"type":"welcome"}"#.utf8),
            Array(#"{"type":"heartbeat","type":"bye"}"#.utf8),
            Array(#"{"type":"inspect"}"#.utf8) + Array(#"{"type":"sync"}"#.utf8),
            Array(#"{"type":"\#u{FF}"}"#.utf8),
            [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D],  // {"<invalid UTF-8>":1}
            Array(repeating: UInt8(ascii: "["), count: depth) + Array(repeating: UInt8(ascii: "]"), count: depth),
            Array(String(repeating: #"{"a":"#, count: depth).utf8),
            randomBytes(Int.random(in: 1...128, using: &rng), using: &rng),
        ]
        return choices.randomElement(using: &rng)!
    }

    static func controlJSON(type: String, name: String, topics: [String]) -> [UInt8] {
        let id = String(format: "%016llx", UInt64.random(in: 0...UInt64.max))
        let list = topics.map { "\"\($0)\"" }.joined(separator: ",")
        return Array(
            #"{"node":{"host":"","id":"\#(id)","name":"\#(name)","port":1,"topics":[\#(list)]},"type":"\#(type)"}"#.utf8)
    }

    static func header(length: UInt32, kind: UInt8) -> [UInt8] {
        [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), kind]
    }

    static func frame(kind: UInt8, body: [UInt8]) -> [UInt8] {
        header(length: UInt32(body.count + 1), kind: kind) + body
    }

    static func messageFrame(topic: String, payload: [UInt8]) -> [UInt8] {
        let topicBytes = Array(topic.utf8)
        let body = [UInt8(topicBytes.count >> 8), UInt8(topicBytes.count & 0xFF)] + topicBytes + [0] + payload
        return frame(kind: 3, body: body)
    }

    private static func randomBytes(_ count: Int, using rng: inout SplitMix64) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }
}

/// Counts log lines by the reason they name, without keeping them (a fuzz run logs 100,000).
final class LogTally: Sendable {
    static let reasons = [
        "not a mesh peer", "version", "key", "exceeds the limit", "zero length", "malformed", "unexpected frame kind",
        "protocol violation", "no handshake", "closed the connection during", "disconnected", "node joined", "node left",
    ]
    private let counts = Mutex<(counts: [String: Int], examples: [String: String])>(([:], [:]))

    func logger(_ label: String) -> MeshLogger {
        let echo = ProcessInfo.processInfo.environment["MESH_TEST_LOG"] != nil
        return MeshLogger(label: label, level: .info) { [self] line in
            if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
            // Refusals past ten a second come as one summary: "... and N more refused ...".
            if let range = line.range(of: "... and "), let count = Int(line[range.upperBound...].prefix { $0.isNumber }) {
                counts.withLock { $0.counts["summarized", default: 0] += count }
                return
            }
            let reason = LogTally.reasons.first { line.contains($0) } ?? "other"
            counts.withLock {
                $0.counts[reason, default: 0] += 1
                if $0.examples[reason] == nil { $0.examples[reason] = String(line.prefix(300)) }
            }
        }
    }

    var snapshot: [String: Int] { counts.withLock { $0.counts } }
    /// The first line seen for each reason.
    var examples: [String: String] { counts.withLock { $0.examples } }
    func reset() { counts.withLock { $0 = ([:], [:]) } }
}

/// What a batch of fuzzing threads did.
struct FuzzReport: Sendable {
    var inputs = 0
    var connectFailures = 0
    var firstConnectError: Int32 = 0
    var byCategory = [Int](repeating: 0, count: HostileInput.categoryNames.count)
    /// Inputs held open until the server ruled on them, in all and per category.
    var judged = 0
    var judgedByCategory = [Int](repeating: 0, count: HostileInput.categoryNames.count)
    /// Judged connections the server closed before the client gave up on them, per category.
    var closedByServer = [Int](repeating: 0, count: HostileInput.categoryNames.count)
    /// Judged inputs a correct receiver must close, and those that stayed open for 3 s.
    var mustClose = 0
    var notClosed: [Int] = []

    mutating func add(_ other: FuzzReport) {
        inputs += other.inputs
        connectFailures += other.connectFailures
        judged += other.judged
        if firstConnectError == 0 { firstConnectError = other.firstConnectError }
        for index in byCategory.indices {
            byCategory[index] += other.byCategory[index]
            judgedByCategory[index] += other.judgedByCategory[index]
            closedByServer[index] += other.closedByServer[index]
        }
        mustClose += other.mustClose
        notClosed += other.notClosed
    }
}

/// Throws inputs `range` at the two ports (even indices at the coordinator, odd at the node).
///
/// Every input is one connection: connect, write the input, close with a reset (SO_LINGER
/// {1, 0}, so no TIME_WAIT piles up). Most are reset at once: that is cheap, and the server
/// usually sees the reset before it gets to the bytes, so it exercises accept, handshake and
/// close racing each other. One input in `judgedEvery` is *judged* instead: the client keeps it
/// open (non-blocking, in a `poll` set of up to 32 per thread) until the server closes it, or
/// gives up (after 3 s for inputs a correct server must close, 20 ms for the rest, which may
/// legitimately wait for more bytes). Those make the server read and rule on the bytes.
/// (Judging every input is what the servers cannot afford in a debug build: each connection
/// that passes the handshake costs about 9 ms of the event loop; see the suite's notes.)
func fuzz(
    seed: UInt64, range: Range<Int>, coordinatorPort: UInt16, nodePort: UInt16, threads: Int = 4,
    judgedEvery: Int = 20
) async -> FuzzReport {
    await withTaskGroup(of: FuzzReport.self) { group in
        for thread in 0..<threads {
            group.addTask {
                await onThread("fuzz-\(thread)") {
                    fuzzThread(
                        seed: seed, indices: stride(from: range.lowerBound + thread, to: range.upperBound, by: threads),
                        coordinatorPort: coordinatorPort, nodePort: nodePort, judgedEvery: judgedEvery)
                }
            }
        }
        var total = FuzzReport()
        for await report in group { total.add(report) }
        return total
    }
}

private func fuzzThread(
    seed: UInt64, indices: StrideTo<Int>, coordinatorPort: UInt16, nodePort: UInt16, judgedEvery: Int
) -> FuzzReport {
    struct InFlight {
        let fd: Int32
        let index: Int
        let category: Int
        let mustBeClosed: Bool
        let deadline: ContinuousClock.Instant
    }
    var report = FuzzReport()
    var pending = indices.makeIterator()
    var next = pending.next()
    var flying: [InFlight] = []
    var scratch = [UInt8](repeating: 0, count: 4096)
    while next != nil || !flying.isEmpty {
        while flying.count < 32, let index = next {
            next = pending.next()
            let target: HostileInput.Target = index % 2 == 0 ? .coordinator : .node
            let input = HostileInput(seed: seed, index: index, target: target)
            let judged = (index / 2) % judgedEvery == 0
            report.inputs += 1
            report.byCategory[input.category] += 1
            if judged {
                report.judged += 1
                report.judgedByCategory[input.category] += 1
                if input.mustBeClosed { report.mustClose += 1 }
            }
            let (fd, code) = RawClient.connect(port: target == .coordinator ? coordinatorPort : nodePort)
            guard let fd else {
                report.connectFailures += 1
                if report.firstConnectError == 0 { report.firstConnectError = code }
                continue
            }
            RawClient.send(fd, input.bytes)
            guard judged else {
                RawClient.reset(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let patience: Duration = input.mustBeClosed ? .seconds(3) : .milliseconds(20)
            flying.append(InFlight(fd: fd, index: index, category: input.category, mustBeClosed: input.mustBeClosed, deadline: .now + patience))
        }
        var entries = flying.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        _ = poll(&entries, nfds_t(entries.count), 2)
        let now = ContinuousClock.now
        var still: [InFlight] = []
        for (entry, connection) in zip(entries, flying) {
            var closed = false
            if entry.revents != 0 {
                while true {
                    let count = scratch.withUnsafeMutableBytes { recv(entry.fd, $0.baseAddress, $0.count, 0) }
                    if count > 0 { continue }
                    if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
                    if count < 0 && errno == EINTR { continue }
                    closed = true  // end of stream or reset: the server closed it
                    break
                }
            }
            if closed {
                report.closedByServer[connection.category] += 1
                RawClient.reset(connection.fd)
            } else if now >= connection.deadline {
                if connection.mustBeClosed { report.notClosed.append(connection.index) }
                RawClient.reset(connection.fd)
            } else {
                still.append(connection)
            }
        }
        flying = still
    }
    return report
}
