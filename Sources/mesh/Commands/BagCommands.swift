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
        let duration = try arguments.positiveNumber("--duration")
        let maximumSize = try arguments.values["--max-size"].map { text throws(CommandLineError) in try byteCount(text, option: "--max-size") }
        let options = BagRecorder.Options(
            topics: topics, allTopics: all, duration: duration.map { .milliseconds(Int($0 * 1000)) },
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
        let skip = arguments.values["--start"] == nil ? 0 : try nonNegative("--start", arguments.values["--start"]!)
        let patience = try arguments.positiveNumber("--timeout") ?? 5
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
        let origin = scan.statistics.messageStartTime
        let firstPlayed = origin &+ UInt64(skip * 1e9)

        let node = try await context.node(named: "mesh-bag-play-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            if wait {
                let deadline = ContinuousClock.now + .milliseconds(Int(patience * 1000))
                var unheard: [String] = []
                for topic in topics.sorted() {
                    let left = max(.zero, ContinuousClock.now.duration(to: deadline))
                    do {
                        try await node.waitForListener(topic, timeout: max(left, .milliseconds(1)))
                    } catch MeshError.timedOut {
                        unheard.append(topic)
                    }
                }
                if unheard.count == topics.count {
                    throw CommandLineError.failed("no listener on \(unheard.joined(separator: ", ")) within \(Format.seconds(patience)) s")
                }
                if !unheard.isEmpty {
                    note("no listener on \(unheard.joined(separator: ", ")) within \(Format.seconds(patience)) s; their messages go nowhere")
                }
            }
            let started = ContinuousClock.now
            let playing = topics
            let sent = try await runUntilSignal { () async throws -> [String: Int] in
                var sent: [String: Int] = [:]
                repeat {
                    do {
                        try await playOnce(data: data, topics: playing, from: firstPlayed, rate: rate, node: node, sent: &sent)
                    } catch let error as MCAP.ReadError {
                        throw CommandLineError.failed("\(path): \(error.description)")  // changed since it was checked
                    }
                } while loop && !Task.isCancelled
                return sent
            }
            let elapsed = started.duration(to: .now).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            let counts = sent ?? [:]
            let total = counts.values.reduce(0, +)
            let unrouted = await node.statistics.messagesUnrouted
            var line = "sent \(total) message(s) on \(counts.count) topic(s) in \(Format.seconds(seconds)) s"
            if unrouted > 0 { line += "; \(unrouted) found no listener and were dropped" }
            print(line)
            if !counts.isEmpty {
                print(Format.table(["TOPIC", "SENT"], counts.keys.sorted().map { [$0, String(counts[$0]!)] }, rightAligned: [1]))
            }
        } catch {
            await node.close()
            if case MeshError.closed = error, await node.wasAskedToStop { return }
            throw error
        }
        await node.close()
    }

    /// Sends the file's messages once, spaced by their log times divided by `rate`.
    private static func playOnce(
        data: Data, topics: Set<String>, from firstPlayed: UInt64, rate: Double, node: MeshNode,
        sent: inout [String: Int]
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
                let offset = Double(message.logTime - zero) / 1e9 / rate
                let due = start + .nanoseconds(Int64(offset * 1e9))
                if due > clock.now {
                    try? await Task.sleep(until: due, clock: clock)
                    if Task.isCancelled { return }
                }
            }
            let encoding: PayloadEncoding =
                switch channel.metadata["mesh_encoding"] {
                case "codec": .codec
                case "raw": .raw
                default: channel.messageEncoding == "json" ? .codec : .raw
                }
            try await node.sendPayload(channel.topic, message.data, encoding: encoding)
            sent[channel.topic, default: 0] += 1
        }
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
