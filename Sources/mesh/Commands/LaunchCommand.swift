
#if canImport(Glibc)
import Foundation
import Glibc
import Mesh
import MeshLaunch
import MeshTooling
#endif

/// `mesh launch FILE`: start a whole system from a launch file, keep it running, stop it
/// cleanly (docs/LAUNCH.md). The work is ``Launcher``'s; this reads the file and prints the plan.
enum LaunchCommand {
    static let help = """
        usage: mesh launch FILE [--check | --dry-run] [--log-level L] [--allow-weak-key]

        Starts what a launch file (YAML or JSON; see docs/LAUNCH.md) names: a coordinator when none
        answers (or always, with `coordinator: start`), then each entry under `nodes:` in file
        order, as many copies as its `count`, each once the entries in its `after` have joined the
        mesh. Every line a process prints comes out whole, prefixed with its name and copy
        (`[worker#2] ...`), coloured on a terminal. A process that exits is restarted as its
        `restart` says (on-failure by default), backing off from 0.5 s to 10 s, and given up after
        `max_restarts` (10) quick restarts in a row.

        Ctrl-C or SIGTERM stops everything, last started first: SIGTERM, then SIGKILL after
        `stop_timeout` (5 s); a second Ctrl-C kills at once. With `until_done: [a, b]` the launch
        also stops once a and b have finished. Processes die with mesh launch even when it is
        killed with SIGKILL.

          --check     read and check the file, print the plan, start nothing
          --dry-run   as --check, and also find each program, read the key file and ask whether
                      a coordinator answers, still starting nothing
          --log-level L  sets MESH_LOG_LEVEL for every process it starts
          --allow-weak-key  sets MESH_ALLOW_WEAK_KEY=1 for them: a key that is easy to guess is
                      used (it is refused before anything starts otherwise)

        Exit status: 0 when stopped by Ctrl-C/SIGTERM or when the `until_done` entries (or,
        without it, all entries) succeeded; 1 when something failed; 2 for a bad file or arguments.
        """

    /// The largest launch file read.
    static let maximumFileSize = 1 << 20

    static func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        for option in ["--coordinator", "--authkey", "--authkey-file"] where arguments.values[option] != nil {
            throw CommandLineError.usage(
                "mesh launch takes the coordinator and key from the launch file (coordinator:, authkey_file:) or from $MESH_COORDINATOR and $MESH_AUTHKEY, not \(option)")
        }
        let file = arguments.positionals[0]
        var environment = ProcessInfo.processInfo.environment
        // The children log at the level asked for (an entry's own env still wins).
        if let level = arguments.values["--log-level"] { environment["MESH_LOG_LEVEL"] = level }
        // So do the key check: every process started takes the weak key too.
        if arguments.has("--allow-weak-key") { environment["MESH_ALLOW_WEAK_KEY"] = "1" }
        let plan: LaunchPlan
        do {
            plan = try LaunchPlan.parse(try read(file), file: file, environment: environment)
        } catch let error as LaunchFileError {
            throw CommandLineError.usage(error.description)
        }
        let options = Launcher.Options(
            colour: isatty(1) == 1 && environment["NO_COLOR"] == nil && environment["TERM"] != "dumb",
            environment: environment, programDirectories: [executableDirectory])
        if arguments.has("--check") || arguments.has("--dry-run") {
            try await printPlan(plan, options: options, resolve: arguments.has("--dry-run"))
            return
        }
        signal(SIGPIPE, SIG_IGN)  // a closed output pipe must not kill the supervisor (children reset it)
        do {
            try await Launcher(plan: plan, options: options).run()
        } catch let error as LaunchError {
            throw CommandLineError.failed(error.description)
        }
    }

    /// Where the running `mesh` is: programs are also looked for there.
    static var executableDirectory: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    static func read(_ file: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw LaunchFileError(
                file: file, position: nil,
                message: FileManager.default.fileExists(atPath: file) ? "cannot read the file" : "no such file")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maximumFileSize + 1)) ?? Data()
        guard data.count <= maximumFileSize else {
            throw LaunchFileError(file: file, position: nil, message: "the file is over \(maximumFileSize) bytes; a launch file is small")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw LaunchFileError(file: file, position: nil, message: "the file is not UTF-8 text")
        }
        return text
    }

    /// Prints what `mesh launch` would do; with `resolve`, also where each program is, and
    /// whether a coordinator answers.
    static func printPlan(_ plan: LaunchPlan, options: Launcher.Options, resolve: Bool) async throws {
        var lines: [[String]] = []
        lines.append(["file", "\(plan.file) (valid)"])
        var coordinator: String
        switch plan.coordinator {
        case .start(let host, let port):
            coordinator = "start one on \(host):\(port)" + (port == 0 ? " (a free port)" : "")
        case .address(let address):
            coordinator = "\(address), or start one there when none answers"
        }
        let authkey: String?
        do {
            authkey = try Launcher.authkey(for: plan, environment: options.environment)
        } catch let error as LaunchError {
            if resolve { throw CommandLineError.failed(error.description) }
            authkey = nil
        }
        if resolve, case .address(let address) = plan.coordinator {
            do {
                let inspector = try await MeshInspector.connect(to: address, authkey: authkey, timeout: .seconds(3))
                await inspector.close()
                coordinator = "\(address): one answers; it would be used"
            } catch MeshError.coordinatorUnreachable(_, let reason) {
                coordinator = "\(address): none answers (\(reason)); one would be started there"
            } catch {
                throw CommandLineError.failed("the coordinator at \(address): \(error)")
            }
        }
        lines.append(["coordinator", coordinator])
        if let file = plan.authkeyFile {
            lines.append(["authkey", "from \(file)"])
        } else {
            lines.append(["authkey", authkey == nil ? "none: an open mesh" : "from $MESH_AUTHKEY"])
        }
        if !plan.untilDone.isEmpty { lines.append(["until done", plan.untilDone.joined(separator: ", ")]) }
        print(Format.columns(lines))
        print("")
        var rows: [[String]] = []
        var details: [String] = []
        for entry in plan.entries {
            var command = entry.commandText
            if resolve {
                do {
                    let path = try Launcher.resolveProgram(
                        entry.arguments[0], planDirectory: plan.directory, environment: options.environment,
                        directories: options.programDirectories)
                    command = ([path] + entry.arguments.dropFirst()).map(ShellWords.quote).joined(separator: " ")
                } catch {
                    throw CommandLineError.failed("\(plan.file):\(entry.position): entry \"\(entry.name)\": \(error)")
                }
            }
            if entry.usesShell && !resolve { command = "sh -c " + ShellWords.quote(command) }
            rows.append([
                entry.name, String(entry.count), entry.restart.rawValue,
                entry.after.isEmpty ? "-" : entry.after.joined(separator: ","),
                entry.delay == .zero ? "-" : Launcher.format(entry.delay), command,
            ])
            var extra: [String] = []
            if let directory = entry.workingDirectory { extra.append("cwd \(directory)") }
            if !entry.environment.isEmpty {
                extra.append("env " + entry.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
            if entry.stopTimeout != .seconds(5) { extra.append("stop_timeout \(Launcher.format(entry.stopTimeout))") }
            if entry.maxRestarts != 10 { extra.append("max_restarts \(entry.maxRestarts)") }
            if !extra.isEmpty { details.append("\(entry.name): " + extra.joined(separator: "; ")) }
        }
        print(Format.table(["ENTRY", "COPIES", "RESTART", "AFTER", "DELAY", "COMMAND"], rows))
        if !details.isEmpty {
            print("")
            for line in details { print(line) }
        }
    }
}
