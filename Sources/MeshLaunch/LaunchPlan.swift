import Foundation
import Mesh
import MeshTooling

/// A launch file read and checked: what `mesh launch` starts, in what order, and how it keeps
/// it running. docs/LAUNCH.md describes the file; ``parse(_:file:environment:)`` reads it.
package struct LaunchPlan: Sendable, Equatable {
    /// Where the mesh's coordinator comes from.
    package enum Coordinator: Sendable, Equatable {
        /// Always start one listening on `host:port` (port 0: a free port, read back from it).
        case start(host: String, port: UInt16)
        /// Use the coordinator at this address; start one there when none answers.
        case address(String)
    }

    /// When a copy that exited is started again.
    package enum RestartPolicy: String, Sendable, CaseIterable {
        /// When it failed: a non-zero exit status, or killed by a signal.
        case onFailure = "on-failure"
        case always
        case never
    }

    /// One entry under `nodes:`: a program and how many copies of it run.
    package struct Entry: Sendable, Equatable {
        package var name: String
        /// The program and its arguments; `["/bin/sh", "-c", TEXT]` with `shell: true`.
        package var arguments: [String]
        /// The command as the file wrote it, for the plan.
        package var commandText: String
        package var usesShell: Bool
        package var count: Int
        package var restart: RestartPolicy
        /// Extra environment variables for this entry's processes.
        package var environment: [String: String]
        /// The directory the copies run in (absolute); `nil`: where `mesh launch` runs.
        package var workingDirectory: String?
        /// How long to wait before starting, after the `after` entries joined.
        package var delay: Duration
        /// Entries whose every copy must have joined the mesh before this one starts.
        package var after: [String]
        /// How long a copy has between SIGTERM and SIGKILL when stopping.
        package var stopTimeout: Duration
        /// Restarts in a row (each within 30 s of the last start) before giving up.
        package var maxRestarts: Int
        /// Where the entry's name is in the file.
        package var position: TextPosition
    }

    /// The file as named on the command line.
    package var file: String
    /// The file's directory: relative paths in the file are relative to it.
    package var directory: String
    package var coordinator: Coordinator
    /// Extra arguments for a coordinator launch starts (`coordinator_args`, for example
    /// `--http 127.0.0.1:8080`); launch sets `--host` and `--port` itself.
    package var coordinatorArguments: [String] = []
    /// The key file (absolute), when the file names one.
    package var authkeyFile: String?
    /// Entries whose end ends the launch: once every copy of each has exited and will not be
    /// restarted, everything stops (exit 0 when they all succeeded).
    package var untilDone: [String]
    /// In file order.
    package var entries: [Entry]

    static let topKeys = ["coordinator", "coordinators", "coordinator_args", "authkey_file", "nodes", "stop_timeout", "until_done"]
    static let entryKeys = [
        "command", "shell", "count", "restart", "env", "cwd", "delay", "after", "stop_timeout", "max_restarts",
    ]
    static let defaultStopTimeout: Duration = .seconds(5)
    static let defaultMaxRestarts = 10

    /// Reads and checks a launch file (YAML or JSON).
    ///
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - file: its path as the user gave it: named in errors, and its directory anchors relative paths.
    ///   - environment: for `$MESH_COORDINATOR` when the file names no coordinator.
    /// - Throws: ``LaunchFileError`` naming the file, line and column of the first problem.
    package static func parse(_ text: String, file: String, environment: [String: String] = [:])
        throws(LaunchFileError) -> LaunchPlan
    {
        let root = try DocumentParser.parse(text, file: file)
        var reader = SchemaReader(file: file)
        let top = try reader.mapping(root, "the top of a launch file")
        try reader.refuseUnknownKeys(top, allowed: topKeys, in: "the top level")
        let directory = URL(fileURLWithPath: file).deletingLastPathComponent().standardizedFileURL.path

        var coordinator = Coordinator.address(
            environment["MESH_COORDINATOR"].flatMap { $0.isEmpty ? nil : $0 } ?? MeshDefaults.coordinatorAddress)
        if let node = top.value("coordinator") {
            coordinator = try reader.coordinator(node)
        }
        if let node = top.value("coordinators") {
            if top.value("coordinator") != nil {
                throw reader.error(node, "give either coordinator or coordinators, not both")
            }
            coordinator = try reader.coordinatorList(node)
        }
        var coordinatorArguments: [String] = []
        if let node = top.value("coordinator_args") {
            coordinatorArguments = try reader.command(node, of: "coordinator_args", usesShell: false).0
            if let set = coordinatorArguments.first(where: { ["--host", "--port"].contains($0) }) {
                throw reader.error(node, "coordinator_args may not set \(set): launch sets it from \"coordinator\"")
            }
        }
        let authkeyFile = try top.value("authkey_file").map { node throws(LaunchFileError) in
            absolute(try reader.string(node, "authkey_file"), in: directory)
        }
        let stopTimeout = try top.value("stop_timeout").map { node throws(LaunchFileError) in
            try reader.duration(node, "stop_timeout")
        } ?? defaultStopTimeout

        guard let nodesNode = top.value("nodes") else {
            throw LaunchFileError(
                file: file, position: root.position, message: "missing \"nodes\": the programs to start")
        }
        let nodes = try reader.mapping(nodesNode, "\"nodes\" (entry name: settings)")
        guard !nodes.entries.isEmpty else { throw reader.error(nodesNode, "\"nodes\" is empty: name at least one entry") }
        var entries: [Entry] = []
        for item in nodes.entries {
            entries.append(
                try reader.entry(item, directory: directory, defaultStopTimeout: stopTimeout))
        }

        let names = Set(entries.map(\.name))
        for (entry, item) in zip(entries, nodes.entries) {
            let after = item.value.mappingValue("after")
            for dependency in entry.after where !names.contains(dependency) {
                throw reader.error(after ?? item.value, "\"after\" names \"\(dependency)\", which is not an entry")
            }
            if entry.after.contains(entry.name) {
                throw reader.error(after ?? item.value, "\"\(entry.name)\" cannot start after itself")
            }
        }
        if let cycle = findCycle(entries) {
            let entry = entries.first { $0.name == cycle[0] }!
            throw LaunchFileError(
                file: file, position: entry.position,
                message: "\"after\" goes round in a circle: \(cycle.joined(separator: " -> ")); nothing in it could start")
        }

        var untilDone: [String] = []
        if let node = top.value("until_done") {
            untilDone = try reader.names(node, "until_done")
            for name in untilDone {
                guard let entry = entries.first(where: { $0.name == name }) else {
                    throw reader.error(node, "\"until_done\" names \"\(name)\", which is not an entry")
                }
                if entry.restart == .always {
                    throw reader.error(
                        node, "\"until_done\" names \"\(name)\", which has restart: always and so is never done")
                }
            }
        }
        return LaunchPlan(
            file: file, directory: directory, coordinator: coordinator, coordinatorArguments: coordinatorArguments,
            authkeyFile: authkeyFile, untilDone: untilDone, entries: entries)
    }

    /// The first circle of `after` references, as names ending where they start.
    static func findCycle(_ entries: [Entry]) -> [String]? {
        let after = Dictionary(entries.map { ($0.name, $0.after) }, uniquingKeysWith: { first, _ in first })
        var state: [String: Bool] = [:]  // false: on the current path; true: finished
        var path: [String] = []
        func visit(_ name: String) -> [String]? {
            if state[name] == true { return nil }
            if state[name] == false {
                let start = path.firstIndex(of: name)!
                return Array(path[start...]) + [name]
            }
            state[name] = false
            path.append(name)
            for next in after[name] ?? [] {
                if let cycle = visit(next) { return cycle }
            }
            path.removeLast()
            state[name] = true
            return nil
        }
        for entry in entries {
            if let cycle = visit(entry.name) { return cycle }
        }
        return nil
    }

    static func absolute(_ path: String, in directory: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + path.dropFirst(1) }
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: directory, isDirectory: true))
            .standardizedFileURL.path
    }
}

extension DocumentNode {
    /// The value under `key`, when this is a mapping that has it.
    func mappingValue(_ key: String) -> DocumentNode? {
        guard case .mapping(let entries) = content else { return nil }
        return entries.first { $0.key == key }?.value
    }
}

/// A mapping's entries, looked up by key.
struct MappingView {
    var node: DocumentNode
    var entries: [DocumentNode.Entry]

    func value(_ key: String) -> DocumentNode? { entries.first { $0.key == key }?.value }
}

/// Reads typed values out of ``DocumentNode``s, with errors that say what was expected where.
struct SchemaReader {
    let file: String

    func error(_ node: DocumentNode, _ message: String) -> LaunchFileError {
        LaunchFileError(file: file, position: node.position, message: message)
    }

    func error(at position: TextPosition, _ message: String) -> LaunchFileError {
        LaunchFileError(file: file, position: position, message: message)
    }

    func mapping(_ node: DocumentNode, _ what: String) throws(LaunchFileError) -> MappingView {
        guard case .mapping(let entries) = node.content else {
            throw error(node, "expected a mapping (key: value lines) for \(what), found \(node.kindDescription)")
        }
        return MappingView(node: node, entries: entries)
    }

    func refuseUnknownKeys(_ mapping: MappingView, allowed: [String], in place: String) throws(LaunchFileError) {
        for entry in mapping.entries where !allowed.contains(entry.key) {
            var message = "unknown key \"\(entry.key)\" in \(place)"
            if let near = allowed.min(by: { distance($0, entry.key) < distance($1, entry.key) }),
                distance(near, entry.key) <= 2
            {
                message += "; did you mean \"\(near)\"?"
            }
            message += " (expected one of: \(allowed.joined(separator: ", ")))"
            throw error(at: entry.keyPosition, message)
        }
    }

    func string(_ node: DocumentNode, _ what: String) throws(LaunchFileError) -> String {
        guard case .scalar(let text, _) = node.content else {
            throw error(node, "expected a string for \(what), found \(node.kindDescription)")
        }
        return text
    }

    func integer(_ node: DocumentNode, _ what: String, in range: ClosedRange<Int>) throws(LaunchFileError) -> Int {
        guard case .scalar(let text, false) = node.content, let value = Int(text), range.contains(value) else {
            throw error(
                node,
                "expected a whole number from \(range.lowerBound) to \(range.upperBound) for \(what), found \(node.kindDescription)")
        }
        return value
    }

    func boolean(_ node: DocumentNode, _ what: String) throws(LaunchFileError) -> Bool {
        if case .scalar(let text, false) = node.content {
            if ["true", "True", "TRUE", "yes"].contains(text) { return true }
            if ["false", "False", "FALSE", "no"].contains(text) { return false }
        }
        throw error(node, "expected true or false for \(what), found \(node.kindDescription)")
    }

    /// Seconds: `5`, `0.5`, `5s` or `500ms`.
    func duration(_ node: DocumentNode, _ what: String) throws(LaunchFileError) -> Duration {
        if case .scalar(var text, false) = node.content {
            var scale = 1.0
            if text.hasSuffix("ms") {
                text.removeLast(2)
                scale = 0.001
            } else if text.hasSuffix("s") {
                text.removeLast()
            }
            if let value = Double(text), value.isFinite, value >= 0, value * scale <= 86_400 {
                return .milliseconds(Int((value * scale * 1000).rounded()))
            }
        }
        throw error(
            node, "expected a number of seconds (such as 5, 0.5 or 500ms) for \(what), found \(node.kindDescription)")
    }

    /// `coordinators:`: a list of `HOST:PORT` (or one string with commas). The nodes register
    /// with each (PROTOCOL.md §7.2); launch starts none of them.
    func coordinatorList(_ node: DocumentNode) throws(LaunchFileError) -> LaunchPlan.Coordinator {
        let addresses = try names(node, "coordinators").flatMap { MeshDefaults.coordinatorList($0) }
        guard !addresses.isEmpty else { throw error(node, "expected at least one HOST:PORT for coordinators") }
        for address in addresses where SchemaReader.hostAndPort(address) == nil {
            throw error(node, "expected HOST:PORT in coordinators, found \"\(address)\"")
        }
        return .address(addresses.joined(separator: ","))
    }

    /// One entry name, or a list of them.
    func names(_ node: DocumentNode, _ what: String) throws(LaunchFileError) -> [String] {
        let items: [DocumentNode]
        switch node.content {
        case .sequence(let list): items = list
        case .scalar: items = [node]
        default: throw error(node, "expected an entry name or a list of them for \(what), found \(node.kindDescription)")
        }
        var names: [String] = []
        for item in items {
            guard case .scalar(let name, _) = item.content else {
                throw error(item, "expected an entry name in \(what), found \(item.kindDescription)")
            }
            names.append(name)
        }
        return names
    }

    func coordinator(_ node: DocumentNode) throws(LaunchFileError) -> LaunchPlan.Coordinator {
        let text = try string(node, "coordinator").trimmingCharacters(in: .whitespaces)
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if words.first == "start" {
            guard words.count <= 2 else {
                throw error(node, "expected \"start\" or \"start HOST:PORT\" for coordinator, found \"\(text)\"")
            }
            guard words.count == 2 else { return .start(host: "127.0.0.1", port: MeshDefaults.coordinatorPort) }
            guard let (host, port) = SchemaReader.hostAndPort(words[1]) else {
                throw error(node, "expected HOST:PORT after \"start\" (such as 127.0.0.1:0), found \"\(words[1])\"")
            }
            return .start(host: host, port: port)
        }
        guard words.count == 1, SchemaReader.hostAndPort(text) != nil else {
            throw error(
                node, "expected \"start\", \"start HOST:PORT\" or a coordinator's HOST:PORT for coordinator, found \"\(text)\"")
        }
        return .address(text)
    }

    /// `host:port`, `[v6]:port`, or `host` (port 6374).
    static func hostAndPort(_ text: String) -> (String, UInt16)? {
        var host = text
        var port = MeshDefaults.coordinatorPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let parsed = UInt16(rest.dropFirst()) else { return nil }
                port = parsed
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            guard let parsed = UInt16(text[text.index(after: colon)...]) else { return nil }
            port = parsed
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" }) else { return nil }
        return (host, port)
    }

    mutating func entry(_ item: DocumentNode.Entry, directory: String, defaultStopTimeout: Duration)
        throws(LaunchFileError) -> LaunchPlan.Entry
    {
        let name = item.key
        guard SchemaReader.isValidName(name) else {
            throw error(
                at: item.keyPosition,
                "invalid entry name \"\(name.prefix(40))\": use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit")
        }
        let settings: MappingView
        if case .scalar = item.value.content {
            throw error(
                item.value, "expected the settings of \"\(name)\" on the lines below it (command: ...), found \(item.value.kindDescription)")
        }
        settings = try mapping(item.value, "the settings of \"\(name)\"")
        try refuseUnknownKeys(settings, allowed: LaunchPlan.entryKeys, in: "entry \"\(name)\"")

        let usesShell = try settings.value("shell").map { node throws(LaunchFileError) in try boolean(node, "shell") } ?? false
        guard let commandNode = settings.value("command") else {
            throw error(at: item.keyPosition, "entry \"\(name)\" has no \"command\": the program to run")
        }
        let (arguments, commandText) = try command(commandNode, of: name, usesShell: usesShell)
        let count = try settings.value("count").map { node throws(LaunchFileError) in
            try integer(node, "count", in: 1...1000)
        } ?? 1
        var restart = LaunchPlan.RestartPolicy.onFailure
        if let node = settings.value("restart") {
            let text = try string(node, "restart")
            guard let policy = LaunchPlan.RestartPolicy(rawValue: text) else {
                throw error(node, "expected on-failure, always or never for restart, found \"\(text)\"")
            }
            restart = policy
        }
        var environment: [String: String] = [:]
        if let node = settings.value("env") {
            for variable in try mapping(node, "env (NAME: value lines)").entries {
                guard SchemaReader.isValidVariableName(variable.key) else {
                    throw error(at: variable.keyPosition, "invalid environment variable name \"\(variable.key)\"")
                }
                guard case .scalar(let value, _) = variable.value.content else {
                    throw error(
                        variable.value, "expected a string for env \(variable.key), found \(variable.value.kindDescription)")
                }
                environment[variable.key] = value
            }
        }
        let workingDirectory = try settings.value("cwd").map { node throws(LaunchFileError) in
            LaunchPlan.absolute(try string(node, "cwd"), in: directory)
        }
        let delay = try settings.value("delay").map { node throws(LaunchFileError) in try duration(node, "delay") } ?? .zero
        let after = try settings.value("after").map { node throws(LaunchFileError) in try names(node, "after") } ?? []
        let stopTimeout = try settings.value("stop_timeout").map { node throws(LaunchFileError) in
            try duration(node, "stop_timeout")
        } ?? defaultStopTimeout
        let maxRestarts = try settings.value("max_restarts").map { node throws(LaunchFileError) in
            try integer(node, "max_restarts", in: 0...1_000_000)
        } ?? LaunchPlan.defaultMaxRestarts
        return LaunchPlan.Entry(
            name: name, arguments: arguments, commandText: commandText, usesShell: usesShell, count: count,
            restart: restart, environment: environment, workingDirectory: workingDirectory, delay: delay, after: after,
            stopTimeout: stopTimeout, maxRestarts: maxRestarts, position: item.keyPosition)
    }

    /// `command`: one string split as a shell would (no shell runs), or a list of arguments.
    func command(_ node: DocumentNode, of name: String, usesShell: Bool) throws(LaunchFileError) -> ([String], String) {
        switch node.content {
        case .scalar(let text, let quoted):
            guard !text.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw error(node, "the command of \"\(name)\" is empty")
            }
            if usesShell { return (["/bin/sh", "-c", text], text) }
            do {
                return (try ShellWords.split(text), text)
            } catch {
                // In a plain scalar the offset maps to a column; in a quoted one, point at the value.
                var position = node.position
                if !quoted { position.column += error.offset }
                throw self.error(at: position, "in the command of \"\(name)\": \(error.message)")
            }
        case .sequence(let items):
            guard !usesShell else {
                throw error(node, "with shell: true, write the command of \"\(name)\" as one string")
            }
            var arguments: [String] = []
            for item in items {
                guard case .scalar(let text, _) = item.content else {
                    throw error(item, "expected a string in the command of \"\(name)\", found \(item.kindDescription)")
                }
                arguments.append(text)
            }
            guard let first = arguments.first, !first.isEmpty else {
                throw error(node, "the command of \"\(name)\" is empty")
            }
            return (arguments, arguments.map(ShellWords.quote).joined(separator: " "))
        default:
            throw error(
                node, "expected a command (a string, or a list of arguments) for \"\(name)\", found \(node.kindDescription)")
        }
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 64 else { return false }
        let allowed = { (scalar: Unicode.Scalar) in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-_.".unicodeScalars.contains(scalar))
        }
        return allowed(first) && first != "-" && first != "." && first != "_" && name.unicodeScalars.allSatisfy(allowed)
    }

    static func isValidVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }

    /// Edit distance, for "did you mean".
    func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(1, a.count) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(1, b.count) where !b.isEmpty {
                let old = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = old
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }
}

/// Splits a command line into words the way a POSIX shell does, with no expansions: blanks
/// separate words, 'single quotes' keep everything, "double quotes" honour `\"`, `\\`, `\$` and
/// `` \` ``, and a backslash outside quotes keeps the next character.
package enum ShellWords {
    struct SplitError: Error, Equatable {
        /// Where in the text, in Unicode scalars.
        var offset: Int
        var message: String
    }

    static func split(_ text: String) throws(SplitError) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var words: [String] = []
        var word = String.UnicodeScalarView()
        var inWord = false
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case " ", "\t":
                if inWord { words.append(String(word)) }
                word = String.UnicodeScalarView()
                inWord = false
            case "'":
                let open = index
                inWord = true
                index += 1
                while index < scalars.count, scalars[index] != "'" {
                    word.append(scalars[index])
                    index += 1
                }
                guard index < scalars.count else { throw SplitError(offset: open, message: "unclosed quote: no closing '") }
            case "\"":
                let open = index
                inWord = true
                index += 1
                while index < scalars.count, scalars[index] != "\"" {
                    if scalars[index] == "\\", index + 1 < scalars.count, "\"\\$`".unicodeScalars.contains(scalars[index + 1]) {
                        index += 1
                    }
                    word.append(scalars[index])
                    index += 1
                }
                guard index < scalars.count else { throw SplitError(offset: open, message: "unclosed quote: no closing \"") }
            case "\\":
                inWord = true
                guard index + 1 < scalars.count else {
                    throw SplitError(offset: index, message: "a '\\' ends the command")
                }
                index += 1
                word.append(scalars[index])
            case "|", "&", ";", "<", ">", "$", "`", "(", ")":
                throw SplitError(
                    offset: index,
                    message: "'\(scalar)' needs a shell, and the command runs without one: quote it, or add shell: true")
            default:
                inWord = true
                word.append(scalar)
            }
            index += 1
        }
        if inWord { words.append(String(word)) }
        return words
    }

    /// A word quoted so ``split(_:)`` (and a shell) reads it back as itself.
    package static func quote(_ word: String) -> String {
        let plain = word.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_./=:,+@%".unicodeScalars.contains($0))
        }
        if plain && !word.isEmpty { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
