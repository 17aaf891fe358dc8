import Foundation
import Mesh
import MeshTooling
import Synchronization

/// `mesh topic list`, `mesh topic echo` and `mesh topic send`.
enum TopicCommands {
    static func list(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topology = try await context.withInspector { try await $0.topology(timeout: context.timeout) }
        Format.printListing(
            MeshReport.Topic.all(in: topology), arguments, header: ["TOPIC", "TYPE", "SENDERS", "LISTENERS", "GROUPS"]
        ) {
            [$0.topic, $0.typeText, String($0.senders), String($0.listeners), MeshReport.groupsText($0.groups)]
        }
    }

    /// `mesh topic info TOPIC`: its type, and who sends and listens, one line each.
    static func info(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topic = arguments.positionals[0]
        let topology = try await context.withInspector { try await $0.topology(timeout: context.timeout) }
        let info = MeshReport.TopicInfo(topic: topic, in: topology)
        if arguments.has("--json") { return print(Format.json(info)) }
        guard !info.senders.isEmpty || !info.listeners.isEmpty else {
            throw CommandLineError.failed("no node sends on or listens to \(topic)")
        }
        print("topic:     \(Format.text(topic))")
        print("type:      \(info.types.isEmpty ? "- (untyped)" : info.types.map(\.description).joined(separator: ", "))")
        for (title, members) in [("senders", info.senders), ("listeners", info.listeners)] {
            print("\(title):\(String(repeating: " ", count: 10 - title.count))\(members.count)")
            for member in members {
                print("  \(Format.text(member.name)) (\(member.id))\(member.type.map { "  \($0)" } ?? "")")
            }
        }
    }

    static func echo(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topic = arguments.positionals[0]
        let limit = try arguments.integer("--count", in: 1...Int.max)
        // A name of its own, so two echoes each see every message instead of sharing them as a pool.
        let node = try await context.node(named: "mesh-echo-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            let messages = try await node.messages(topic, as: Data.self)
            // The listen is recorded: a send from now on reaches this echo. Scripts wait for this line.
            FileHandle.standardError.write(Data("listening on \(Format.text(topic))\n".utf8))
            _ = try await runUntilSignal(onSignal: { await node.close() }) {
                var seen = 0
                for try await message in messages {
                    print(echoLine(message))
                    seen += 1
                    if let limit, seen >= limit { break }
                }
            }
        } catch {
            if case MeshError.closed = error, await node.wasAskedToStop { return }  // killed while starting: a clean stop
            await node.close()
            throw error
        }
        await node.close()
    }

    /// The most bytes of JSON read from standard input or a file: a message's own limit.
    static let maximumJSONBytes = 8 << 20

    /// A JSON value given as text, as `-` (standard input) or as `@FILE`.
    ///
    /// - Throws: ``CommandLineError`` naming the file and the reason, or the JSON's first error.
    static func jsonArgument(_ argument: String) throws -> JSONValue {
        let bytes: Data
        let source: String
        if argument == "-" {
            source = "standard input"
            bytes = try readBounded(FileHandle.standardInput, source: source)
        } else if argument.hasPrefix("@") {
            let path = String(argument.dropFirst())
            source = path
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw CommandLineError.failed("cannot read \(Format.text(path)): \(String(cString: strerror(errno)))")
            }
            defer { try? handle.close() }
            bytes = try readBounded(handle, source: source)
        } else {
            source = "\"\(argument.prefix(40))\""
            bytes = Data(argument.utf8)
        }
        do {
            return try JSONValue(parsing: bytes)
        } catch {
            throw CommandLineError.usage("invalid JSON in \(Format.text(source)): \(JSONValue.describe(error))")
        }
    }

    private static func readBounded(_ handle: FileHandle, source: String) throws -> Data {
        var bytes = Data()
        while true {
            let chunk: Data
            do {
                chunk = try handle.read(upToCount: 1 << 16) ?? Data()
            } catch {
                throw CommandLineError.failed("cannot read \(Format.text(source)): \(error.localizedDescription)")
            }
            if chunk.isEmpty { return bytes }
            bytes.append(chunk)
            guard bytes.count <= maximumJSONBytes else {
                throw CommandLineError.failed("\(Format.text(source)) holds more than \(maximumJSONBytes) bytes, the most a message may")
            }
        }
    }

    /// `{"topic":…,"sender":…,"senderId":…,"data":…}` for a JSON payload, else `…,"bytes":N,"base64":…}`.
    static func echoLine(_ message: MeshMessage<Data>) -> String {
        let head =
            "{\"topic\":\(Format.compactJSON(message.topic)),\"sender\":\(Format.compactJSON(message.sender.name)),\"senderId\":\(Format.compactJSON(message.sender.id))"
        if let value = try? JSONValue(parsing: message.value) {
            return head + ",\"data\":\(Format.compactJSON(value))}"
        }
        return head + ",\"bytes\":\(message.value.count),\"base64\":\"\(message.value.base64EncodedString())\"}"
    }

    static func send(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topic = arguments.positionals[0]
        let value = try jsonArgument(arguments.positionals[1])
        let rate = try arguments.positiveNumber("--rate")
        // With a rate and no count: until Ctrl-C.
        let count = try arguments.integer("--count", in: 1...Int.max) ?? (rate == nil ? 1 : nil)
        let patience = try arguments.seconds("--timeout") ?? 5
        let node = try await context.node(named: "mesh-send")
        let waited = !arguments.has("--no-wait")
        // Counted as they go: an interrupted send still says how many went out.
        let progress = Mutex((sent: 0, waiting: waited))
        let outcome: Interruptible<Int>
        do {
            outcome = try await runUntilInterrupted { () async throws -> Int in
                if waited {
                    do {
                        try await node.waitForListener(topic, timeout: .seconds(patience))
                    } catch MeshError.timedOut {
                        throw CommandLineError.failed("no listener on \(topic) within \(Format.seconds(patience)) s")
                    }
                    progress.withLock { $0.waiting = false }
                }
                let start = ContinuousClock.now
                var sent = 0
                while count.map({ sent < $0 }) ?? true {
                    if let rate, sent > 0 {
                        // Finite and bounded whatever the rate (1e-300 Hz is a wait, not a trap).
                        let due = start + .seconds(min(Double(sent) / rate, BagCommands.longestPause))
                        try? await Task.sleep(until: due, clock: .continuous)
                    }
                    if Task.isCancelled { break }
                    try await node.send(topic, value)
                    sent += 1
                    progress.withLock { $0.sent = sent }
                }
                return sent
            }
        } catch {
            await node.close()
            throw error
        }
        // Closing flushes what is queued and asks each receiver to confirm what it took; only
        // then is it known whether everything arrived.
        let closed = await node.close()
        let (sent, stillWaiting) = progress.withLock { ($0.sent, $0.waiting) }
        // Stopped before it did what was asked: with --count (or the single default message),
        // not when it was sending until Ctrl-C.
        if let signal = outcome.signal, let count, sent < count, !(await node.wasAskedToStop) {
            if stillWaiting {
                throw CommandLineError.interrupted("while waiting for a listener on \(topic); nothing was sent", signal: signal)
            }
            print(sendReport(topic: topic, sent: sent, unrouted: await node.statistics.messagesUnrouted))
            throw CommandLineError.interrupted("after \(sent) of \(count) message(s) on \(topic)", signal: signal)
        }
        let statistics = await node.statistics
        // Messages never written are dropped, with the reason; those written and still not
        // confirmed (lost at the receiver, or a receiver that does not answer) are named apart.
        if closed.messagesUnconfirmed > statistics.messagesDropped {
            throw CommandLineError.failed(
                "\(closed.messagesUnconfirmed) of \(closed.messagesConfirmed + closed.messagesUnconfirmed) message(s) on \(topic) were not confirmed by their receivers (\(closed.unconfirmedReceivers.joined(separator: "; ")))")
        }
        if let failure = sendFailure(
            topic: topic, sent: sent, dropped: statistics.messagesDropped, unrouted: statistics.messagesUnrouted,
            waited: waited, reason: node.lastDropReason)
        {
            throw CommandLineError.failed(failure)
        }
        print(sendReport(topic: topic, sent: sent, unrouted: statistics.messagesUnrouted))
    }

    /// `sent 3 message(s) on jobs`, and how many found no listener.
    static func sendReport(topic: String, sent: Int, unrouted: Int) -> String {
        var report = "sent \(sent) message(s) on \(Format.text(topic))"
        if unrouted > 0 { report += "; \(unrouted) found no listener and were dropped" }
        return report
    }

    /// What `mesh topic send` reports when messages it sent did not reach a listener; `nil` when
    /// all did (as far as this side can tell: queued and written to the listener's connection).
    ///
    /// Messages dropped on the way (a queue that stayed full, a connection that closed first)
    /// always count. Messages that found no listener count only when the command had waited for
    /// one: the listener left in between. With `--no-wait` they are what the user asked for.
    static func sendFailure(topic: String, sent: Int, dropped: Int, unrouted: Int, waited: Bool, reason: String?)
        -> String?
    {
        let lost = dropped + (waited ? unrouted : 0)
        guard lost > 0 else { return nil }
        let why: String
        if dropped > 0, let reason {
            why = reason
        } else if dropped > 0 {
            why = "the listener did not take them"
        } else {
            why = "the listener left before they were sent"
        }
        let what = lost <= sent ? "\(lost) of \(sent) message(s)" : "\(lost) deliveries of \(sent) message(s)"
        return "\(what) on \(topic) were dropped (\(why))"
    }
}
