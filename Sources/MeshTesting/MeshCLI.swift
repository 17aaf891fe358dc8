import Foundation

/// What a finished command left behind: its exit code and its two output streams.
package struct CommandRun: Sendable, CustomStringConvertible {
    package var code: Int32
    /// Standard output.
    package var output: String
    /// Standard error.
    package var errors: String
    /// From start to exit, in seconds.
    package var seconds: Double

    /// The output's lines, blank ones included, without the final newline's empty remainder.
    package var lines: [String] {
        var lines = output.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    package var trimmed: String { output.trimmingCharacters(in: .whitespacesAndNewlines) }

    /// The output read as JSON.
    package func json() throws -> Any { try JSONSerialization.jsonObject(with: Data(output.utf8)) }

    /// What is wrong with this run as a failure that exits `code` and says, on one line of
    /// standard error starting `mesh: `, something containing `needle`; `nil` when nothing is.
    package func failureProblem(code: Int32, mentioning needle: String) -> String? {
        var problems: [String] = []
        if self.code != code { problems.append("exit \(self.code), expected \(code)") }
        if !output.isEmpty { problems.append("standard output is not empty") }
        if !(errors.hasPrefix("mesh: ") && errors.hasSuffix("\n")) { problems.append("standard error is not a `mesh: ` line") }
        if errors.dropLast().contains("\n") { problems.append("standard error is not one line") }
        if !errors.contains(needle) { problems.append("\"\(needle)\" not on standard error") }
        return problems.isEmpty ? nil : problems.joined(separator: "; ") + "\n\(self)"
    }

    package var description: String { "exit \(code) after \(seconds) s\nstdout:\n\(output)\nstderr:\n\(errors)" }
}

extension ChildProcess {
    /// Waits until the process exited and its output is all read.
    ///
    /// - Throws: ``DeadlineExceeded`` past `seconds` (the process is killed).
    package func result(seconds: Double = 20) async throws -> CommandRun {
        let code = try await waitForExit(seconds: seconds)
        let elapsed = started.duration(to: .now).components
        return CommandRun(
            code: code, output: standardOutput, errors: standardError,
            seconds: Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
    }
}

/// The `mesh` command-line tool, run as a user runs it.
package enum MeshCLI {
    /// The environment every child gets: no key and no log level leaking in from the test runner.
    package static let quiet = ["MESH_AUTHKEY": "", "MESH_LOG_LEVEL": "warning"]

    /// Starts `mesh` with `arguments`.
    package static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess("mesh", arguments, environment: quiet.merging(environment) { $1 })
    }

    /// Runs `mesh` with `arguments` to the end.
    ///
    /// - Throws: ``DeadlineExceeded`` past `seconds`.
    package static func run(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 20)
        async throws -> CommandRun
    {
        let child = try start(arguments, environment: environment)
        defer { child.terminate() }
        return try await child.result(seconds: seconds)
    }
}
