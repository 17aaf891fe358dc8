import Foundation
import MeshTesting

/// Runs Python scripts for the differential tests against OpenSSL (Python's `hashlib` and `hmac`).
enum Python {
    /// The first executable `python3` on `PATH`, or `nil` when there is none.
    static let executable = ChildProcess.findOnPath("python3")

    /// A script failed, timed out or could not start.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `python3 -c script arguments...` and suspends, without blocking a thread, until it exits.
    ///
    /// - Parameters:
    ///   - script: The Python source.
    ///   - arguments: Its `sys.argv[1...]`.
    ///   - deadline: How long to wait before terminating it.
    /// - Throws: ``Failure`` when python3 is missing, exits non-zero (with its stderr) or times out.
    static func run(_ script: String, arguments: [String], deadline: Duration = .seconds(60)) async throws {
        guard let executable else { throw Failure(description: "python3 not found on PATH") }
        let (status, output) = try await ChildProcess.run(
            path: executable, ["-c", script] + arguments, seconds: Double(deadline.components.seconds))
        guard status == 0 else { throw Failure(description: "python3 exited with status \(status): \(output)") }
    }
}
