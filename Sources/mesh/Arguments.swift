import Foundation
import Mesh

/// Why the `mesh` tool stops early; `main.swift` prints the message on one line and exits with ``exitCode``.
enum CommandLineError: Error, CustomStringConvertible {
    /// The arguments are wrong: exit 2.
    case usage(String)
    /// The command ran and failed: exit 1.
    case failed(String)
    /// SIGINT or SIGTERM stopped the command before it did what it was asked (the message says
    /// how far it got): exit 128 + the signal's number, 130 for SIGINT, as a shell reports it.
    case interrupted(String, signal: Int32)

    var description: String {
        switch self {
        case .usage(let message), .failed(let message): return message
        case .interrupted(let message, let signal): return "interrupted by \(signalName(signal)) \(message)"
        }
    }

    var exitCode: Int32 {
        switch self {
        case .usage: return 2
        case .failed: return 1
        case .interrupted(_, let signal): return 128 + signal
        }
    }
}

/// One runnable command: where it sits in the tree and what it accepts.
enum Command: String, CaseIterable, Sendable {
    case nodeList = "node list"
    case nodeKill = "node kill"
    case topicList = "topic list"
    case topicInfo = "topic info"
    case topicEcho = "topic echo"
    case topicSend = "topic send"
    case topicHz = "topic hz"
    case topicBw = "topic bw"
    case status = "status"
    case speedtest = "speedtest"
    case keygen = "keygen"
    case launch = "launch"
    case httpToken = "http-token"
    case discover = "discover"
    case serviceList = "service list"
    case serviceCall = "service call"
    case bagRecord = "bag record"
    case bagInfo = "bag info"
    case bagPlay = "bag play"

    /// Options that take a value, on top of the common ones.
    var valueOptions: Set<String> {
        switch self {
        case .nodeList, .nodeKill, .topicList, .topicInfo, .status, .httpToken: return []
        case .discover: return ["--seconds", "--mesh-name"]
        case .topicEcho: return ["--count"]
        case .topicSend: return ["--count", "--rate", "--timeout"]
        case .topicHz, .topicBw: return ["--count", "--window"]
        case .speedtest: return ["--messages", "--size"]
        case .keygen: return ["--public"]
        case .launch: return []
        case .serviceList: return []
        case .serviceCall: return ["--timeout"]
        case .bagRecord: return ["-o", "--output", "--duration", "--max-size"]
        case .bagInfo: return []
        case .bagPlay: return ["--rate", "--topics", "--start", "--timeout"]
        }
    }

    /// Options without a value, on top of `--help`.
    var flags: Set<String> {
        switch self {
        case .nodeList, .topicList, .topicInfo, .status, .topicHz, .topicBw, .speedtest, .discover: return ["--json"]
        case .nodeKill: return ["--json", "--all"]
        case .topicEcho, .httpToken: return []
        case .topicSend: return ["--no-wait"]
        case .keygen: return ["--base64", "--node"]
        case .launch: return ["--check", "--dry-run"]
        case .serviceList: return ["--json"]
        case .serviceCall: return []
        case .bagRecord: return ["--all"]
        case .bagInfo: return ["--json"]
        case .bagPlay: return ["--loop", "--wait-for-listeners", "--no-wait"]
        }
    }

    /// The names of the positional arguments, in order; all are required.
    var positionals: [String] {
        switch self {
        case .nodeList, .topicList, .status, .speedtest, .keygen, .httpToken, .discover: return []
        case .nodeKill: return ["NAME|ID or --all"]
        case .topicEcho, .topicHz, .topicBw, .topicInfo: return ["TOPIC"]
        case .topicSend: return ["TOPIC", "JSON"]
        case .launch: return ["FILE"]
        case .serviceList: return []
        case .serviceCall: return ["NAME", "JSON"]
        case .bagRecord: return []  // topics, any number: see ParsedArguments.parseOptions
        case .bagInfo, .bagPlay: return ["FILE"]
        }
    }
}

/// Options every command takes.
enum CommonOptions {
    static let values: Set<String> = ["--coordinator", "--authkey", "--authkey-file", "--admin-key-file", "--log-level"]
    /// Common options without a value.
    static let flags: Set<String> = ["--allow-weak-key"]
}

/// The command line after the command words are taken off.
struct ParsedArguments {
    var command: Command
    var values: [String: String] = [:]
    var flags: Set<String> = []
    var positionals: [String] = []

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    /// A whole number in `range`, when the option was given.
    ///
    /// - Throws: ``CommandLineError/usage(_:)`` when the value is not such a number.
    func integer(_ option: String, in range: ClosedRange<Int>) throws(CommandLineError) -> Int? {
        guard let text = values[option] else { return nil }
        guard let number = Int(text), range.contains(number) else {
            throw .usage("\(option): \"\(text)\" is not a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// The most seconds an option may give (about 31 years): more is no wait anyone means, and a
    /// clock cannot hold much more.
    static let maximumSeconds = 1e9

    /// A positive number of seconds up to ``maximumSeconds``, when the option was given.
    ///
    /// - Throws: ``CommandLineError/usage(_:)`` when the value is not such a number.
    func seconds(_ option: String) throws(CommandLineError) -> Double? {
        guard let text = values[option] else { return nil }
        guard let number = Double(text), number.isFinite, number > 0, number <= Self.maximumSeconds else {
            throw .usage("\(option): \"\(text)\" is not a number of seconds (more than 0, at most 1000000000)")
        }
        return number
    }

    /// A positive, finite number, when the option was given.
    ///
    /// - Throws: ``CommandLineError/usage(_:)`` when the value is not such a number.
    func positiveNumber(_ option: String) throws(CommandLineError) -> Double? {
        guard let text = values[option] else { return nil }
        guard let number = Double(text), number.isFinite, number > 0 else {
            throw .usage("\(option): \"\(text)\" is not a positive number")
        }
        return number
    }
}

/// What the command line asks for.
enum Invocation {
    /// Print this help text and exit 0.
    case help(String)
    case version
    case run(ParsedArguments)
}

/// Reads `mesh`'s command line: command words first (options may come before them), then the
/// command's own options and positional arguments.
enum ArgumentParser {
    /// - Parameter arguments: the command line without the program name.
    /// - Throws: ``CommandLineError/usage(_:)`` naming the first thing wrong.
    static func parse(_ arguments: [String]) throws(CommandLineError) -> Invocation {
        let (words, rest) = splitCommandWords(arguments)
        let wantsHelp = rest.contains { $0 == "--help" || $0 == "-h" }
        guard let group = words.first else {
            if rest.contains("--version") { return .version }
            if wantsHelp || rest.isEmpty { return .help(Help.top) }
            throw .usage("missing a command; see mesh --help")
        }
        let command: Command
        switch group {
        case "node", "topic", "service", "bag":
            let help = group == "node" ? Help.node : group == "topic" ? Help.topic : group == "service" ? Help.service : Help.bag
            guard words.count > 1 else {
                if wantsHelp { return .help(help) }
                throw .usage("mesh \(group) needs a subcommand; see mesh \(group) --help")
            }
            guard let found = Command(rawValue: "\(group) \(words[1])") else {
                throw .usage("unknown command \"mesh \(group) \(words[1])\"; see mesh \(group) --help")
            }
            command = found
        default:
            guard let found = Command(rawValue: group) else {
                throw .usage("unknown command \"\(group)\"; see mesh --help")
            }
            command = found
        }
        if wantsHelp { return .help(Help.text(for: command)) }
        let extraWords = words.dropFirst(command.rawValue.split(separator: " ").count)
        return .run(try parseOptions(Array(extraWords) + rest, for: command))
    }

    /// Separates the command words (the first one or two positional arguments) from the rest,
    /// keeping the rest in order. Options before the words are allowed (`mesh --json node list`).
    private static func splitCommandWords(_ arguments: [String]) -> (words: [String], rest: [String]) {
        var words: [String] = []
        var rest: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let wordsNeeded = words.first.map { ["node", "topic", "service", "bag"].contains($0) ? 2 : 1 } ?? 1
            if argument == "--" {
                rest.append(contentsOf: arguments[index...])
                break
            }
            if isOption(argument) {
                rest.append(argument)
                if CommonOptions.values.contains(argument), index + 1 < arguments.count {
                    rest.append(arguments[index + 1])
                    index += 1
                }
            } else if words.count < wordsNeeded {
                words.append(argument)
            } else {
                rest.append(contentsOf: arguments[index...])
                break
            }
            index += 1
        }
        return (words, rest)
    }

    /// `-x` and `--x` are options; `-`, `-1` and `-.5` (a negative JSON number) are not.
    private static func isOption(_ argument: String) -> Bool {
        guard argument.hasPrefix("-"), argument.count > 1 else { return false }
        let second = argument[argument.index(after: argument.startIndex)]
        return !(second.isNumber || second == ".")
    }

    private static func parseOptions(_ arguments: [String], for command: Command) throws(CommandLineError)
        -> ParsedArguments
    {
        var parsed = ParsedArguments(command: command)
        let valueOptions = command.valueOptions.union(CommonOptions.values)
        let seeHelp = "see mesh \(command.rawValue) --help"
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            var argument = arguments[index]
            index += 1
            if onlyPositionals || !isOption(argument) {
                parsed.positionals.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositionals = true
                continue
            }
            var inlineValue: String? = nil
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                inlineValue = String(argument[argument.index(after: equals)...])
                argument = String(argument[..<equals])
            }
            if valueOptions.contains(argument) {
                if let inlineValue {
                    parsed.values[argument] = inlineValue
                } else {
                    guard index < arguments.count, !isOption(arguments[index]) else {
                        throw .usage("\(argument) needs a value; \(seeHelp)")
                    }
                    parsed.values[argument] = arguments[index]
                    index += 1
                }
            } else if command.flags.contains(argument) || CommonOptions.flags.contains(argument) {
                guard inlineValue == nil else { throw .usage("\(argument) takes no value; \(seeHelp)") }
                parsed.flags.insert(argument)
            } else {
                throw .usage("unknown option \"\(argument)\" for mesh \(command.rawValue); \(seeHelp)")
            }
        }
        var names = command.positionals
        if command == .nodeKill && parsed.has("--all") {
            names = []
        }
        if parsed.positionals.count < names.count {
            throw .usage("mesh \(command.rawValue) needs \(names[parsed.positionals.count]); \(seeHelp)")
        }
        if parsed.positionals.count > names.count, command != .bagRecord {
            let extra = parsed.positionals[names.count]
            if command == .nodeKill && parsed.has("--all") {
                throw .usage("give either a NAME|ID or --all, not both")
            }
            throw .usage("unexpected argument \"\(extra)\" for mesh \(command.rawValue); \(seeHelp)")
        }
        return parsed
    }
}
