import Dispatch
import Foundation
import Synchronization

/// Runs Python scripts for the differential tests against OpenSSL (Python's `hashlib` and `hmac`).
enum Python {
    /// The first executable `python3` on `PATH`, or `nil` when there is none.
    static let executable: URL? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent("python3")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }()

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
        let errorLog = FileManager.default.temporaryDirectory
            .appendingPathComponent("meshcrypto-python-\(UUID().uuidString).log")
        guard FileManager.default.createFile(atPath: errorLog.path, contents: nil) else {
            throw Failure(description: "cannot create \(errorLog.path)")
        }
        defer { try? FileManager.default.removeItem(at: errorLog) }
        let errorHandle = try FileHandle(forWritingTo: errorLog)
        defer { try? errorHandle.close() }

        let process = Process()
        process.executableURL = executable
        process.arguments = ["-c", script] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errorHandle
        let status = try await ChildProcess.run(process, deadline: deadline)
        guard status == 0 else {
            let log = (try? String(contentsOf: errorLog, encoding: .utf8)) ?? ""
            throw Failure(description: "python3 exited with status \(status): \(log)")
        }
    }
}

/// Awaits a child process without blocking a thread of the cooperative pool.
enum ChildProcess {
    /// The process outlived its deadline and was terminated.
    struct TimedOut: Error, CustomStringConvertible {
        var description: String { "child process timed out" }
    }

    /// Starts `process` and suspends until it exits, its deadline passes, or the task is cancelled.
    ///
    /// - Parameters:
    ///   - process: A configured, not yet started process.
    ///   - deadline: How long to wait before terminating it.
    /// - Returns: The exit status.
    /// - Throws: The launch error, ``TimedOut``, or `CancellationError`; the process is terminated
    ///   in the last two cases.
    static func run(_ process: Process, deadline: Duration) async throws -> Int32 {
        let exit = ExitSignal()
        let handle = ProcessHandle(process)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                exit.install(continuation)
                process.terminationHandler = { finished in
                    exit.settle(.success(finished.terminationStatus))
                }
                do {
                    try process.run()
                } catch {
                    exit.settle(.failure(error))
                    return
                }
                let seconds = Double(deadline.components.seconds)
                DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                    if exit.settle(.failure(TimedOut())) { handle.terminate() }
                }
            }
        } onCancel: {
            if exit.settle(.failure(CancellationError())) { handle.terminate() }
        }
    }

    /// Lets the deadline and cancellation paths terminate the process from another thread.
    private final class ProcessHandle: @unchecked Sendable {
        // Only `isRunning` and `terminate()` are called through this handle, and Process
        // synchronizes those internally.
        private let process: Process

        init(_ process: Process) { self.process = process }

        func terminate() {
            if process.isRunning { process.terminate() }
        }
    }

    /// A one-shot result that resumes a continuation exactly once, whichever side comes first.
    private final class ExitSignal: Sendable {
        private enum State {
            case empty
            case waiting(CheckedContinuation<Int32, any Error>)
            case early(Result<Int32, any Error>)
            case finished
        }

        private let state = Mutex(State.empty)

        func install(_ continuation: CheckedContinuation<Int32, any Error>) {
            let early: Result<Int32, any Error>? = state.withLock { state in
                if case .early(let result) = state {
                    state = .finished
                    return result
                }
                state = .waiting(continuation)
                return nil
            }
            if let early { continuation.resume(with: early) }
        }

        /// Delivers `result` unless one was delivered already.
        ///
        /// - Returns: `true` when this call delivered the result.
        @discardableResult
        func settle(_ result: Result<Int32, any Error>) -> Bool {
            let (delivered, waiting): (Bool, CheckedContinuation<Int32, any Error>?) = state.withLock { state in
                switch state {
                case .empty:
                    state = .early(result)
                    return (true, nil)
                case .waiting(let continuation):
                    state = .finished
                    return (true, continuation)
                case .early, .finished:
                    return (false, nil)
                }
            }
            waiting?.resume(with: result)
            return delivered
        }
    }
}
