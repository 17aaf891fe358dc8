import Foundation
import Mesh
import MeshBag
import Synchronization

/// `mesh bag record`, `mesh bag info` and `mesh bag play`: recordings as MCAP files.
enum BagCommands {
    // MARK: record

    static func record(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        guard let path = arguments.values["-o"] ?? arguments.values["--output"] else {
            throw CommandLineError.usage("mesh bag record needs -o FILE.mcap; see mesh bag record --help")
        }
        let topics = arguments.positionals
        let all = arguments.has("--all")
        guard all || !topics.isEmpty else {
            throw CommandLineError.usage("mesh bag record needs a TOPIC or --all; see mesh bag record --help")
        }
        let duration = try arguments.seconds("--duration")
        let maximumSize = try arguments.values["--max-size"].map { text throws(CommandLineError) in try byteCount(text, option: "--max-size") }
        let options = BagRecorder.Options(
            topics: topics, allTopics: all, duration: duration.map { Duration.seconds($0) },
            maximumSize: maximumSize)
        // The file first: an unwritable path fails before anything joins the mesh.
        let recorder: BagRecorder
        do {
            recorder = try BagRecorder(path: path, options: options)
        } catch {
            throw CommandLineError.failed(error.description)
        }
        let node: MeshNode
        do {
            // --all discovers topics in the topology: it needs every node's record.
            node = try await context.node(named: "mesh-bag-\(ProcessInfo.processInfo.processIdentifier)", view: all ? .full : nil)
        } catch {
            await recorder.discard()
            throw error
        }
        let what = all ? "all topics" : topics.count == 1 ? topics[0] : "\(topics.count) topics"
        let progressLine = ProgressLine()
        let previous = Mutex(BagRecorder.Progress())
        let report: BagRecorder.Report?
        do {
            report = try await runUntilSignal {
                try await recorder.run(node: node) { progress in
                    let before = previous.withLock { last in
                        defer { last = progress }
                        return last
                    }
                    progressLine.show("recording \(what) to \(path): \(progressText(progress, since: before))")
                }
            }
        } catch let error as MeshBagError {
            progressLine.end()
            await node.close()
            throw CommandLineError.failed(error.description)
        } catch {
            progressLine.end()
            await node.close()
            if case MeshError.closed = error, await node.wasAskedToStop { return }
            throw error
        }
        progressLine.end()
        await node.close()
        guard let report else { return }
        let progress = report.progress
        var line =
            "recorded \(progress.messages) message(s), \(Format.bytes(Double(progress.payloadBytes))) of payload, on \(progress.topics) topic(s) to \(path) (\(Format.bytes(Double(fileSize(path) ?? progress.fileBytes)))) in \(Format.seconds(progress.seconds)) s"
        switch report.reason {
        case .duration: line += "; --duration reached"
        case .maximumSize: line += "; --max-size reached"
        case .cancelled: break
        }
        if report.arrivedAfterStop > 0 { line += "; \(report.arrivedAfterStop) arrived after the end and were not written" }
        print(line)
    }

    /// `1234 msgs, 56.7 KiB, 1000 msgs/s, file 80.1 KiB`: totals, and the rate since `before`.
    static func progressText(_ progress: BagRecorder.Progress, since before: BagRecorder.Progress) -> String {
        let span = progress.seconds - before.seconds
        let rate = span > 0 ? Double(progress.messages - before.messages) / span : 0
        return "\(progress.messages) msgs, \(Format.bytes(Double(progress.payloadBytes))), \(Format.fixed(rate, decimals: 0)) msgs/s, file \(Format.bytes(Double(progress.fileBytes)))"
    }

    /// A whole number of bytes, with an optional K, M or G suffix (KiB, MiB, GiB).
    static func byteCount(_ text: String, option: String) throws(CommandLineError) -> UInt64 {
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var multiplier: UInt64 = 1
        switch digits.last {
        case "K": multiplier = 1 << 10
        case "M": multiplier = 1 << 20
        case "G": multiplier = 1 << 30
        default: break
        }
        if multiplier > 1 { digits.removeLast() }
        guard let number = UInt64(digits), number > 0, number <= UInt64.max / multiplier else {
            throw .usage("\(option): \"\(text)\" is not a positive number of bytes (suffixes K, M, G)")
        }
        return number * multiplier
    }

    // MARK: info

    /// One topic in `mesh bag info`.
    struct TopicSummary: Encodable {
        var topic: String
        var messages: UInt64
        var encodings: [String]
        var senders: [String]
    }

    /// What `mesh bag info --json` prints.
    struct Info: Encodable {
        var file: String
        var bytes: Int
        var endedCleanly: Bool
        var cutShortAt: Int?
        var cutShortReason: String?
        var messages: UInt64
        /// Nanoseconds since 1970, of the first and last message; null when there are none.
        var startTime: UInt64?
        var endTime: UInt64?
        var start: String?
        var end: String?
        var durationSeconds: Double
        var chunks: UInt32
        var profile: String
        var library: String
        var topics: [TopicSummary]
    }

    static func info(_ arguments: ParsedArguments) throws {
        let path = arguments.positionals[0]
        var reader = try open(path)
        _ = try readAll(&reader, path: path)
        let info = summarize(reader, path: path)
        if arguments.has("--json") {
            print(Format.json(info))
            return
        }
        var lines: [[String]] = [
            ["file:", path],
            ["size:", "\(Format.bytes(Double(info.bytes))) (\(info.bytes) bytes)"],
            [
                "ended:",
                info.endedCleanly
                    ? "cleanly" : "cut short at offset \(info.cutShortAt ?? info.bytes): \(info.cutShortReason ?? "no footer")",
            ],
            ["messages:", "\(info.messages)"],
        ]
        if let start = info.start, let end = info.end {
            lines.append(["start:", start])
            lines.append(["end:", end])
            lines.append(["duration:", "\(Format.fixed(info.durationSeconds, decimals: 3)) s"])
        }
        lines.append(["chunks:", "\(info.chunks)"])
        lines.append(["written by:", info.library.isEmpty ? "(not named)" : info.library])
        print(Format.columns(lines))
        if !info.topics.isEmpty {
            print("")
            print(
                Format.table(
                    ["TOPIC", "MESSAGES", "ENCODING", "SENDERS"],
                    info.topics.map { [$0.topic, String($0.messages), $0.encodings.joined(separator: ","), $0.senders.joined(separator: ", ")] },
                    rightAligned: [1]))
        }
    }

    static func summarize(_ reader: MCAPReader, path: String) -> Info {
        let statistics = reader.statistics
        var byTopic: [String: TopicSummary] = [:]
        for (channelID, count) in statistics.channelMessageCounts {
            guard let channel = reader.channels[channelID] else { continue }
            var entry = byTopic[channel.topic] ?? TopicSummary(topic: channel.topic, messages: 0, encodings: [], senders: [])
            entry.messages += count
            if !entry.encodings.contains(channel.messageEncoding) { entry.encodings.append(channel.messageEncoding) }
            if let sender = channel.metadata["sender"], !entry.senders.contains(sender) { entry.senders.append(sender) }
            byTopic[channel.topic] = entry
        }
        let topics = byTopic.values.sorted { $0.topic < $1.topic }.map { entry -> TopicSummary in
            var entry = entry
            entry.encodings.sort()
            entry.senders.sort()
            return entry
        }
        let hasMessages = statistics.messageCount > 0
        return Info(
            file: path, bytes: reader.data.count, endedCleanly: reader.endedCleanly, cutShortAt: reader.cutShortAt,
            cutShortReason: reader.cutShortReason, messages: statistics.messageCount,
            startTime: hasMessages ? statistics.messageStartTime : nil, endTime: hasMessages ? statistics.messageEndTime : nil,
            start: hasMessages ? timestamp(statistics.messageStartTime) : nil,
            end: hasMessages ? timestamp(statistics.messageEndTime) : nil,
            durationSeconds: hasMessages ? Double(statistics.messageEndTime - statistics.messageStartTime) / 1e9 : 0,
            chunks: statistics.chunkCount, profile: reader.profile, library: reader.library, topics: topics)
    }

    /// `2026-12-03T09:30:01.123456Z`
    static func timestamp(_ nanoseconds: UInt64) -> String {
        let seconds = nanoseconds / 1_000_000_000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let micros = (nanoseconds % 1_000_000_000) / 1000
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(micros))
    }

    /// Opens `path` for reading, with errors a user can act on.
    static func open(_ path: String) throws -> MCAPReader {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CommandLineError.failed("\(path): no such file")
        }
        guard !isDirectory.boolValue else { throw CommandLineError.failed("\(path): is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw CommandLineError.failed("\(path): permission denied")
        }
        let data: Data
        do {
            MappedFileGuard.install(path: path)
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CommandLineError.failed("\(path): cannot read: \(error.localizedDescription)")
        }
        do {
            return try MCAPReader(data: data)
        } catch {
            throw CommandLineError.failed("\(path): \(error.description)")
        }
    }

    /// Reads every message (checking every CRC); returns the count.
    static func readAll(_ reader: inout MCAPReader, path: String) throws -> Int {
        do {
            return try reader.readToEnd()
        } catch {
            throw CommandLineError.failed("\(path): \(error.description)")
        }
    }

    static func fileSize(_ path: String) -> UInt64? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value
    }

    // MARK: play

    static func play(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let path = arguments.positionals[0]
        let rate = try arguments.positiveNumber("--rate") ?? 1
        let startText = arguments.values["--start"]
        let skip = try startText.map { text throws(CommandLineError) in try nonNegative("--start", text) } ?? 0
        let patience = try arguments.seconds("--timeout") ?? 5
        let loop = arguments.has("--loop")
        let wait = !arguments.has("--no-wait")
        if arguments.has("--no-wait") && arguments.has("--wait-for-listeners") {
            throw CommandLineError.usage("give either --wait-for-listeners or --no-wait, not both")
        }
        let only: Set<String>? = arguments.values["--topics"].map {
            Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }

        // Read the whole file first: damage is reported before anything is sent.
        var scan = try open(path)
        _ = try readAll(&scan, path: path)
        let data = scan.data
        let summary = summarize(scan, path: path)
        var topics = Set(summary.topics.map(\.topic))
        // A channel's topic is the file's word: one the mesh would refuse is named and skipped.
        let invalid = topics.compactMap { topic in
            topicProblem(topic).map { "\"\(Format.text(String(topic.prefix(80))))\" (\($0))" }
        }
        if !invalid.isEmpty {
            topics = topics.filter { topicProblem($0) == nil }
            if topics.isEmpty {
                throw CommandLineError.failed(
                    "\(path) holds messages only on topics the mesh does not allow: \(invalid.sorted().prefix(3).joined(separator: ", "))")
            }
            note("\(path) has messages on \(invalid.count) topic(s) the mesh does not allow, which are skipped: \(invalid.sorted().prefix(3).joined(separator: ", "))")
        }
        if let only {
            let missing = only.subtracting(topics)
            topics.formIntersection(only)
            if topics.isEmpty {
                throw CommandLineError.failed("\(path) has no messages on \(only.sorted().joined(separator: ", "))")
            }
            if !missing.isEmpty { note("\(path) has no messages on \(missing.sorted().joined(separator: ", "))") }
        }
        guard !topics.isEmpty else { throw CommandLineError.failed("\(path) holds no messages") }
        if let at = scan.cutShortAt {
            note("\(path) was cut short at offset \(at) (\(scan.cutShortReason ?? "no footer")); playing the \(summary.messages) message(s) before it")
        }
        // Log times are the file's: any 64-bit value. Arithmetic on them is checked, and what
        // --start asks for is compared with the span the file covers, not added blindly.
        let origin = scan.statistics.messageStartTime
        let span = scan.statistics.messageEndTime - origin  // the reader keeps end ≥ start
        guard skip <= Double(span) / 1e9 else {
            throw CommandLineError.failed(
                "\(path): --start \(startText ?? "0") is past its last message, \(Format.span(Double(span) / 1e9)) after its first")
        }
        let skipped = min(nanoseconds(skip), span)
        let firstPlayed = origin + skipped
        let playingFor = Double(span - skipped) / 1e9 / rate
        if playingFor > 86_400 {
            note(
                "\(path): its messages span \(Format.span(Double(span - skipped) / 1e9)); at --rate \(Format.number(rate)) playing them"
                    + " takes \(playingFor < longestPause ? Format.span(playingFor) : "more than 31,000 years") (--rate or --start shorten it)")
        }

        let node = try await context.node(named: "mesh-bag-play-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            if wait {
                let waitFor = topics
                let waited = try await runUntilInterrupted { () async throws -> [String] in
                    let deadline = ContinuousClock.now + .seconds(patience)
                    var unheard: [String] = []
                    for topic in waitFor.sorted() {
                        let left = max(.zero, ContinuousClock.now.duration(to: deadline))
                        do {
                            try await node.waitForListener(topic, timeout: max(left, .milliseconds(1)))
                        } catch MeshError.timedOut {
                            unheard.append(topic)
                        }
                    }
                    return unheard
                }
                if let signal = waited.signal {
                    await node.close()
                    if await node.wasAskedToStop { return }
                    throw CommandLineError.interrupted(
                        "while waiting for listeners on \(topics.count) topic(s); nothing was sent", signal: signal)
                }
                let unheard = waited.value ?? []
                if unheard.count == topics.count {
                    throw CommandLineError.failed("no listener on \(unheard.joined(separator: ", ")) within \(Format.seconds(patience)) s")
                }
                if !unheard.isEmpty {
                    note("no listener on \(unheard.joined(separator: ", ")) within \(Format.seconds(patience)) s; their messages go nowhere")
                }
            }
            let started = ContinuousClock.now
            let playing = topics
            let outcome = try await runUntilInterrupted { () async throws -> Played in
                var played = Played()
                repeat {
                    let before = played.sent.values.reduce(0, +)
                    do {
                        try await playOnce(data: data, topics: playing, from: firstPlayed, rate: rate, node: node, played: &played)
                    } catch let error as MCAP.ReadError {
                        throw CommandLineError.failed("\(path): \(error.description)")  // changed since it was checked
                    }
                    // A pass that sent nothing (every message too large) would only spin.
                    if played.sent.values.reduce(0, +) == before { break }
                } while loop && !Task.isCancelled
                return played
            }
            let sent = outcome.value
            let elapsed = started.duration(to: .now).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            let counts = sent?.sent ?? [:]
            let total = counts.values.reduce(0, +)
            let unrouted = await node.statistics.messagesUnrouted
            var line = "sent \(total) message(s) on \(counts.count) topic(s) in \(Format.seconds(seconds)) s"
            if unrouted > 0 { line += "; \(unrouted) found no listener and were dropped" }
            if let tooLarge = sent?.tooLarge, tooLarge > 0 {
                line += "; \(tooLarge) larger than the \(Format.bytes(Double(node.configuration.maximumMessageSize))) a message may be were skipped"
            }
            print(line)
            if !counts.isEmpty {
                print(Format.table(["TOPIC", "SENT"], counts.keys.sorted().map { [$0, String(counts[$0]!)] }, rightAligned: [1]))
            }
            // Stopped before the end of the file (with --loop, Ctrl-C is the end).
            if let signal = outcome.signal, !loop, !(await node.wasAskedToStop) {
                let planned = plannedCount(data: data, topics: playing, from: firstPlayed)
                if total + (sent?.tooLarge ?? 0) < planned {
                    await node.close()
                    throw CommandLineError.interrupted("after \(total) of \(planned) message(s) of \(path)", signal: signal)
                }
            }
        } catch {
            await node.close()
            if case MeshError.closed = error, await node.wasAskedToStop { return }
            throw error
        }
        await node.close()
    }

    /// What a play sent, by topic, and what it could not.
    struct Played: Sendable {
        var sent: [String: Int] = [:]
        /// Messages over the node's ``MeshNode/Configuration/maximumMessageSize``, not sent.
        var tooLarge = 0
    }

    /// The longest pause between two messages, in seconds (about 31,700 years): log times 0 and
    /// 2^64-1 at a tiny rate are a wait without end, not an overflow.
    static let longestPause = 1e12

    /// Sends the file's messages once, spaced by their log times divided by `rate`.
    private static func playOnce(
        data: Data, topics: Set<String>, from firstPlayed: UInt64, rate: Double, node: MeshNode,
        played: inout Played
    ) async throws {
        var reader = try MCAPReader(data: data)
        let clock = ContinuousClock()
        let start = clock.now
        var base: UInt64?
        while let message = try reader.next() {
            if Task.isCancelled { return }
            guard message.logTime >= firstPlayed, let channel = reader.channels[message.channelID],
                topics.contains(channel.topic)
            else { continue }
            let zero = base ?? message.logTime
            base = zero
            if message.logTime > zero {
                // A UInt64 difference as Double is finite; divided by a tiny rate it may not be.
                let offset = Double(message.logTime - zero) / 1e9 / rate
                let due = start + .seconds(offset.isFinite ? min(offset, longestPause) : longestPause)
                // In slices of at most an hour: no clock is asked to hold a deadline centuries out.
                while due > clock.now {
                    try? await Task.sleep(until: min(due, clock.now + .seconds(3600)), clock: clock)
                    if Task.isCancelled { return }
                }
            }
            let encoding: PayloadEncoding =
                switch channel.metadata["mesh_encoding"] {
                case "codec": .codec
                case "raw": .raw
                default: channel.messageEncoding == "json" ? .codec : .raw
                }
            do {
                try await node.sendPayload(channel.topic, message.data, encoding: encoding)
            } catch MeshError.frameTooLarge {
                played.tooLarge += 1
                continue
            }
            played.sent[channel.topic, default: 0] += 1
        }
    }

    /// How many messages a whole pass plays: those on `topics` from `firstPlayed` on.
    static func plannedCount(data: Data, topics: Set<String>, from firstPlayed: UInt64) -> Int {
        guard var reader = try? MCAPReader(data: data) else { return 0 }
        var count = 0
        while let message = try? reader.next() {
            if message.logTime >= firstPlayed, let channel = reader.channels[message.channelID], topics.contains(channel.topic) {
                count += 1
            }
        }
        return count
    }

    /// Why the mesh would refuse `topic`, or `nil` when it is a valid topic.
    static func topicProblem(_ topic: String) -> String? {
        do {
            try validateName(topic, kind: "topic")
            return nil
        } catch {
            if case .invalidName(_, let reason) = error { return reason }
            return error.description
        }
    }

    /// `seconds` as nanoseconds, saturating at the largest `UInt64` (`seconds` is finite and ≥ 0).
    static func nanoseconds(_ seconds: Double) -> UInt64 {
        let value = seconds * 1e9
        return value >= 18_446_744_073_709_551_615.0 ? .max : UInt64(value)
    }

    private static func nonNegative(_ option: String, _ text: String) throws(CommandLineError) -> Double {
        guard let number = Double(text), number.isFinite, number >= 0 else {
            throw .usage("\(option): \"\(text)\" is not a number of seconds (0 or more)")
        }
        return number
    }

    /// A one-line remark on standard error that does not end the command.
    static func note(_ text: String) {
        FileHandle.standardError.write(Data("mesh: note: \(text)\n".utf8))
    }
}

/// The recorder's progress on standard error: rewritten in place on a terminal, one line a
/// second otherwise (so logs and tests see it too).
final class ProgressLine: Sendable {
    private let terminal = isatty(STDERR_FILENO) == 1
    private let shown = Mutex(false)

    func show(_ text: String) {
        if terminal {
            shown.withLock { $0 = true }
            FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
        } else {
            FileHandle.standardError.write(Data("\(text)\n".utf8))
        }
    }

    /// Ends the in-place line, if one is showing.
    func end() {
        if shown.withLock({ $0 }) { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

/// Turns the one way a mapped file can end the process, another program truncating it while it is
/// read (the kernel then raises SIGBUS on the vanished pages), into a one-line failure.
enum MappedFileGuard {
    // Written once by install(), before the handler that reads it is installed, and never again
    // (one file per command): the handler only ever reads a complete value.
    nonisolated(unsafe) private static var message: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) private static var length = 0

    static func install(path: String) {
        guard message == nil else { return }
        let text = "mesh: \(path) shrank while it was being read (another program truncated or rewrote it)\n"
        length = text.utf8.count
        message = strdup(text)
        // Only async-signal-safe calls in the handler: write(2) and _exit(2).
        signal(SIGBUS) { _ in
            if let message = MappedFileGuard.message { _ = write(STDERR_FILENO, message, MappedFileGuard.length) }
            _exit(1)
        }
    }
}
