import Foundation

/// `mesh-bench peers`: runs `../shared/peers/peers.py` with this executable's `peer` roles as the
/// mesh client, against a coordinator in this process, and prints each workload beside the peers'
/// figures from the same run, with the ratios of issue #21's floors (``PeersComparison``).
///
/// peers.py's own progress and table go to standard error; standard output gets the one table
/// (or, with `--json`, one JSON object). `--from FILE` reads a run peers.py saved with `--out`
/// instead of running one.
enum PeersCommand {
    static let usage = """
        usage: mesh-bench peers [--peers-dir DIR] [--client CMD] [--reps N] [--only NAME,...] [--workloads W1,...]
                                [--out FILE] [--json]
               mesh-bench peers --from FILE [--json]
          --peers-dir DIR  where peers.py is (default: $PEERS_DIR, else ../shared/peers from the current directory)
          --client CMD     the mesh client to measure (default: this executable's `peer` roles); e.g. another
                           build's "DIR/mesh-bench peer", for a before/after pair
          --reps, --only, --workloads, --out  passed to peers.py (--only mesh runs our client alone)
          --from FILE      print the table of a run saved with --out, without running anything
          --json           print one JSON object instead of the table
        """

    /// The parsed command line.
    struct Options: Equatable {
        var peersDirectory: String
        var from: String?
        var out: String?
        /// The client command for peers.py; `nil`: this executable's `peer` roles.
        var client: String?
        var json = false
        /// Options handed to peers.py as they are.
        var passThrough: [String] = []

        /// - Throws: ``BenchFailure/usage(_:)`` for an unknown option or a missing value.
        init(_ arguments: [String], environment: [String: String]) throws {
            peersDirectory = environment["PEERS_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "../shared/peers"
            var rest = arguments[...]
            func value(_ option: String) throws -> String {
                guard let next = rest.popFirst(), !next.hasPrefix("--") else {
                    throw BenchFailure.usage("\(option) needs a value")
                }
                return next
            }
            while let argument = rest.popFirst() {
                switch argument {
                case "--peers-dir": peersDirectory = try value(argument)
                case "--from": from = try value(argument)
                case "--out": out = try value(argument)
                case "--client": client = try value(argument)
                case "--json": json = true
                case "--reps":
                    let reps = try value(argument)
                    guard let count = Int(reps), count > 0 else { throw BenchFailure.usage("--reps needs a positive number") }
                    passThrough += [argument, String(count)]
                case "--only", "--workloads": passThrough += [argument, try value(argument)]
                default: throw BenchFailure.usage("unknown option \"\(argument)\"")
                }
            }
        }
    }

    /// Runs the command.
    ///
    /// - Returns: the exit status: 1 when our client failed a rep, else 0 (a missed floor is a
    ///   finding, not a failure).
    /// - Throws: ``BenchFailure/usage(_:)``; ``BenchFailure/run(_:)`` when peers.py or python3 is
    ///   absent, peers.py fails, or its results cannot be read.
    static func run(_ arguments: [String]) async throws -> Int32 {
        let options = try Options(arguments, environment: ProcessInfo.processInfo.environment)
        let results: Data
        if let from = options.from {
            results = try read(from)
        } else {
            results = try await measure(options)
        }
        let comparison: PeersComparison
        do {
            comparison = try PeersComparison(json: results)
        } catch {
            throw BenchFailure.run("\(options.from ?? "peers.py's results"): \(error)")
        }
        if options.json {
            let data = try JSONSerialization.data(withJSONObject: comparison.json, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(comparison.table())
        }
        return comparison.ourErrors.isEmpty ? 0 : 1
    }

    private static func read(_ path: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw BenchFailure.run("cannot read \(path): \(error.localizedDescription)")
        }
    }

    /// peers.py under `options.peersDirectory`, or an error that says how to get it.
    static func script(in directory: String) throws -> URL {
        let script = URL(fileURLWithPath: directory).appendingPathComponent("peers.py")
        guard FileManager.default.isReadableFile(atPath: script.path) else {
            throw BenchFailure.run(
                "no peers.py in \(directory): check out ../shared/peers beside this repository and build it once (bash ../shared/peers/build.sh), or name its directory with --peers-dir DIR or PEERS_DIR"
            )
        }
        return script
    }

    /// Runs peers.py against a fresh coordinator; returns the JSON it saved.
    private static func measure(_ options: Options) async throws -> Data {
        let script = try script(in: options.peersDirectory)
        guard let python = executableOnPath("python3") else {
            throw BenchFailure.run("python3 is not on PATH; peers.py needs it")
        }
        let out = options.out ?? NSTemporaryDirectory() + "mesh-bench-peers-\(ProcessInfo.processInfo.processIdentifier).json"
        if options.out == nil { try? FileManager.default.removeItem(atPath: out) }
        defer { if options.out == nil { try? FileManager.default.removeItem(atPath: out) } }
        let client = options.client ?? shellQuoted(BenchChild.executable.path) + " peer"
        let status = try await LocalCoordinator.with { coordinator in
            var environment = ProcessInfo.processInfo.environment
            environment["MESH_COORDINATOR"] = coordinator
            environment["MESH_AUTHKEY"] = ""  // the peers run keyless; a key in the caller's shell must not reach the client
            return try await runToEnd(
                python, [script.path, "--client", client, "--out", out] + options.passThrough, environment: environment)
        }
        guard status == 0 else { throw BenchFailure.run("peers.py exited with status \(status) (its output is above)") }
        guard FileManager.default.fileExists(atPath: out) else {
            throw BenchFailure.run("peers.py saved no results in \(out): every system was skipped (see its notes above)")
        }
        return try read(out)
    }

    /// Runs a program with its output on this process's standard error; returns its exit status.
    private static func runToEnd(_ executable: URL, _ arguments: [String], environment: [String: String]) async throws -> Int32 {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.standardError
        process.standardError = FileHandle.standardError
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: BenchFailure.run("cannot start \(executable.path): \(error.localizedDescription)"))
            }
        }
    }

    private static func executableOnPath(_ name: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent(name) }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// `text` as one word for Python's `shlex.split` (peers.py splits the client command with it).
    static func shellQuoted(_ text: String) -> String {
        let plain = text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "/._-+:@".contains($0)) }
        if plain && !text.isEmpty { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "'\"'\"'") + "'"
    }
}
