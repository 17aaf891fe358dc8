import Foundation

extension MeshProcess {
    /// Thrown from ``run(help:_:)``'s body for a bad command line: one line, exit 2.
    public struct UsageError: Error, CustomStringConvertible {
        public var description: String

        /// - Parameter message: what is wrong, e.g. `unknown option "--x"`; the program's name and
        ///   a pointer to `--help` are added.
        public init(_ message: String) {
            description = "\(message); see \(MeshProcess.programName) --help"
        }
    }

    /// The name this program was started under, without its directory.
    public static var programName: String {
        URL(fileURLWithPath: CommandLine.arguments.first ?? "mesh").lastPathComponent
    }

    /// Runs a mesh program's `main`: answers `--help`, keeps a Ctrl-C or SIGTERM that arrives
    /// during start-up, and turns any error into one line on standard error.
    ///
    /// ```swift
    /// await MeshProcess.run(help: "usage: my-node\n\nListens on ...") {
    ///     let node = try await buildMeshNode(name: "my-node")
    ///     ...
    /// }
    /// ```
    ///
    /// - `--help` or `-h` anywhere on the command line prints `help` and exits 0.
    /// - Standard output is line-buffered, so piped output (`mesh launch`, `grep`) arrives line by line.
    /// - SIGINT and SIGTERM are caught (``catchTerminationSignals()``). A body that waits for them
    ///   with ``waitForTerminationSignal()`` shuts down its own way; the body's task is also
    ///   cancelled, so a body still starting (`waitForListener`) ends at once, and that counts as a
    ///   clean stop.
    /// - When the body ends (returning, failing or stopped by a signal), every node it left open
    ///   is closed gracefully (``closeOpenNodes()``); a close that left something unfinished ends
    ///   the process with its ``MeshNode/CloseReport`` on one line and exit status 1.
    /// - An error ends the process with `PROGRAM: REASON` on one line and exit status 1
    ///   (2 for ``UsageError``); success exits 0. No crash report, no backtrace.
    ///
    /// - Parameters:
    ///   - help: the `--help` text.
    ///   - body: the program.
    public static func run(help: String, _ body: @escaping @Sendable () async throws -> Void) async -> Never {
        lineBufferedOutput()
        catchTerminationSignals()
        if CommandLine.arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
            print(help)
            exit(0)
        }
        let work = Task { try await body() }
        let watcher = Task {
            _ = await waitForTerminationSignal()
            work.cancel()
        }
        let result = await work.result
        watcher.cancel()
        // Nodes the body left open (it was stopped by a signal, or returned without closing
        // them) close gracefully: what arrived is handled and what was sent is confirmed.
        let unfinished = await closeOpenNodes()
        switch result {
        case .success:
            break
        case .failure(let error as UsageError):
            fail(error.description, code: 2)
        case .failure(is CancellationError) where work.isCancelled:
            break  // stopped by a signal while starting or waiting: a clean stop
        case .failure(MeshError.closed) where work.isCancelled:
            break  // the same, seen through a node the signal closed
        case .failure(let error):
            fail("\(error)", code: 1)
        }
        if let report = unfinished.first { fail("\(report)", code: 1) }
        exit(0)
    }

    /// Prints `PROGRAM: MESSAGE` as one line on standard error and exits with `code`.
    public static func fail(_ message: String, code: Int32 = 1) -> Never {
        let line = message.split(whereSeparator: \.isNewline).joined(separator: " ")
        FileHandle.standardError.write(Data("\(programName): \(line)\n".utf8))
        exit(code)
    }
}
