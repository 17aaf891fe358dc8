import Foundation
import Mesh
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where `swift build` put this package's executables (next to the test bundle).
package let executablesDirectory: URL = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return exe.deletingLastPathComponent()
}()

/// A child process whose output is collected line by line, awaited without blocking a thread.
///
/// It runs this package's executables by name, or any program by absolute path (`/usr/sbin/ip`).
/// ``waitForExit(seconds:)`` returns once the process has exited *and* its output has reached
/// end of file, so `output` is complete by then.
package final class ChildProcess: Sendable {
    private struct State {
        /// Standard output and error together, in the order they arrived.
        var output = ""
        var standardOutput = Data()
        var standardError = Data()
        var exitCode: Int32?
        /// Pipes not yet at their end of file (standard output, standard error).
        var openPipes = 2
        var outputEnded: Bool { openPipes == 0 }
        var lineWaiters: [(needle: String, continuation: CheckedContinuation<Void, Never>)] = []
        var exitWaiters: [CheckedContinuation<Int32, Never>] = []
    }

    package let name: String
    /// When the process was started.
    package let started = ContinuousClock.now
    private let process: Process
    private let state = Mutex(State())

    /// Starts `executable` (a product of this package) with `arguments` and extra environment.
    ///
    /// The tests' keys are readable phrases, so the child gets `MESH_ALLOW_WEAK_KEY=1` unless
    /// `environment` sets that variable itself (a test of the key check sets it to `0`).
    package convenience init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
        var environment = environment
        if environment["MESH_ALLOW_WEAK_KEY"] == nil { environment["MESH_ALLOW_WEAK_KEY"] = "1" }
        try self.init(
            path: executablesDirectory.appendingPathComponent(executable).path, arguments, environment: environment)
    }

    /// Starts the program at `path`.
    package init(path: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
        name = ([URL(fileURLWithPath: path).lastPathComponent] + arguments).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        self.process = process
        process.terminationHandler = { [weak self] process in
            self?.exited(process.terminationStatus)
        }
        try process.run()
        // Blocking reads to end of file on threads of their own, never on the cooperative pool
        // (a readability handler may not report the end of file on Linux).
        for (pipe, isError) in [(output, false), (errors, true)] {
            let reader = pipe.fileHandleForReading
            let thread = Thread { [self] in
                while true {
                    let data = reader.availableData
                    received(data, isError: isError)
                    if data.isEmpty { return }
                }
            }
            thread.name = isError ? "child-stderr" : "child-stdout"
            thread.start()
        }
    }

    /// Runs a program to completion within `seconds`; returns its status and whole output.
    package static func run(path: String, _ arguments: [String], seconds: Double = 10) async throws -> (
        status: Int32, output: String
    ) {
        let child = try ChildProcess(path: path, arguments)
        let status = try await child.waitForExit(seconds: seconds)
        return (status, child.output)
    }

    /// Takes bytes from one pipe; empty `data` is its end of file.
    private func received(_ data: Data, isError: Bool) {
        let (ready, finished) = state.withLock { state -> ([CheckedContinuation<Void, Never>], (Int32, [CheckedContinuation<Int32, Never>])?) in
            if data.isEmpty {
                state.openPipes -= 1
                return ([], takeExitWaiters(&state))
            }
            if isError { state.standardError.append(data) } else { state.standardOutput.append(data) }
            state.output += String(decoding: data, as: UTF8.self)
            let output = state.output
            let ready = state.lineWaiters.filter { output.contains($0.needle) }.map(\.continuation)
            state.lineWaiters.removeAll { output.contains($0.needle) }
            return (ready, nil)
        }
        for continuation in ready { continuation.resume() }
        if let (code, waiters) = finished { for waiter in waiters { waiter.resume(returning: code) } }
    }

    private func exited(_ code: Int32) {
        let finished = state.withLock { state -> (Int32, [CheckedContinuation<Int32, Never>])? in
            state.exitCode = code
            return takeExitWaiters(&state)
        }
        if let (code, waiters) = finished { for waiter in waiters { waiter.resume(returning: code) } }
    }

    /// The exit waiters to wake, once the process has exited and its output has ended.
    private func takeExitWaiters(_ state: inout State) -> (Int32, [CheckedContinuation<Int32, Never>])? {
        guard let code = state.exitCode, state.outputEnded else { return nil }
        defer { state.exitWaiters = [] }
        return (code, state.exitWaiters)
    }

    /// Standard output and error together, in the order they arrived.
    package var output: String { state.withLock { $0.output } }
    /// Standard output alone.
    package var standardOutput: String { state.withLock { String(decoding: $0.standardOutput, as: UTF8.self) } }
    /// Standard error alone.
    package var standardError: String { state.withLock { String(decoding: $0.standardError, as: UTF8.self) } }
    package var pid: Int32 { process.processIdentifier }

    /// The process did not print what a test waited for.
    package struct MissingOutput: Error, CustomStringConvertible {
        package var process: String
        package var needle: String
        package var seconds: Double
        package var output: String
        package var description: String {
            "\(process) did not print \"\(needle)\" within \(seconds) s; output so far:\n\(output)"
        }
    }

    /// Waits until the output contains `needle`; returns the output so far.
    ///
    /// - Throws: ``MissingOutput``, with the output so far, past `seconds`.
    @discardableResult
    package func waitForOutput(_ needle: String, seconds: Double = 20) async throws -> String {
        do {
            try await withDeadline(seconds) {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let done = self.state.withLock { state -> Bool in
                        if state.output.contains(needle) { return true }
                        state.lineWaiters.append((needle, continuation))
                        return false
                    }
                    if done { continuation.resume() }
                }
            }
        } catch is DeadlineExceeded {
            throw MissingOutput(process: name, needle: needle, seconds: seconds, output: output)
        }
        return output
    }

    /// Waits for the process to exit and its output to end; returns its status. Past `seconds`
    /// it kills the process and throws ``DeadlineExceeded``.
    package func waitForExit(seconds: Double = 20) async throws -> Int32 {
        do {
            return try await withDeadline(seconds) {
                await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
                    let code = self.state.withLock { state -> Int32? in
                        if let code = state.exitCode, state.outputEnded { return code }
                        state.exitWaiters.append(continuation)
                        return nil
                    }
                    if let code { continuation.resume(returning: code) }
                }
            }
        } catch {
            terminate()
            throw error
        }
    }

    package func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// Kills the process if it still runs (use in `defer`).
    package func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Starts `mesh-coordinator` on a free loopback port; returns it and its address.
package func startCoordinatorProcess(_ extraArguments: [String] = [], environment: [String: String] = [:]) async throws
    -> (ChildProcess, String)
{
    let child = try ChildProcess(
        "mesh-coordinator", ["--host", "127.0.0.1", "--port", "0"] + extraArguments, environment: environment)
    let output = try await child.waitForOutput("mesh-coordinator listening on ")
    guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("mesh-coordinator listening on ") }) else {
        throw ChildProcess.MissingOutput(process: child.name, needle: "listening on", seconds: 0, output: output)
    }
    return (child, String(line.dropFirst("mesh-coordinator listening on ".count)))
}

extension ChildProcess {
    /// The first executable called `name` on `$PATH`, or `nil`.
    package static func findOnPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Kills every process it holds when the test ends (call ``terminateAll()`` in a `defer`).
package final class ProcessBag: Sendable {
    private let children = Mutex<[ChildProcess]>([])

    package init() {}

    /// Starts one of this package's executables and keeps it.
    @discardableResult
    package func start(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws
        -> ChildProcess
    {
        let child = try ChildProcess(executable, arguments, environment: environment)
        children.withLock { $0.append(child) }
        return child
    }

    /// Starts `count` copies of `executable`, one after the other, each once the one before has
    /// printed `ready`; returns them in order.
    ///
    /// - Throws: ``ChildProcess/MissingOutput`` when one does not print `ready` within `seconds`.
    package func startAll(
        _ executable: String, count: Int, environment: [String: String] = [:], waitingFor ready: String,
        seconds: Double = 20
    ) async throws -> [ChildProcess] {
        var started: [ChildProcess] = []
        for _ in 0..<count {
            let child = try start(executable, environment: environment)
            try await child.waitForOutput(ready, seconds: seconds)
            started.append(child)
        }
        return started
    }

    package func terminateAll() {
        for child in children.withLock({ $0 }) { child.terminate() }
    }
}

/// A `mesh-coordinator` process on a fixed loopback port that a test can kill and start again,
/// for the coordinator-loss tests: the nodes keep the address, the process behind it changes.
package final class CoordinatorProcess: Sendable {
    /// `127.0.0.1:PORT`, the same for every process started.
    package let address: String
    private let port: UInt16
    private let arguments: [String]
    private let processes = ProcessBag()
    private let current = Mutex<ChildProcess?>(nil)

    /// Starts the first coordinator on a free port.
    package init(_ extraArguments: [String] = []) async throws {
        port = try freeLoopbackPort()
        address = "127.0.0.1:\(port)"
        arguments = extraArguments
        try await start()
    }

    /// The running process (the last one started).
    package var process: ChildProcess? { current.withLock { $0 } }

    /// Starts a coordinator on the same port and waits until it listens.
    @discardableResult
    package func start() async throws -> ChildProcess {
        let child = try processes.start(
            "mesh-coordinator", ["--host", "127.0.0.1", "--port", "\(port)"] + arguments)
        current.withLock { $0 = child }
        try await child.waitForOutput("mesh-coordinator listening on \(address)")
        return child
    }

    /// Kills the running coordinator with SIGKILL and waits for it to be gone.
    package func kill() async throws {
        guard let child = current.withLock({ $0 }) else { return }
        child.terminate()
        _ = try await child.waitForExit(seconds: 10)
    }

    /// Kills every coordinator this started (for `defer`).
    package func terminateAll() { processes.terminateAll() }

    /// A node configuration for this coordinator on loopback, logging to `logger`.
    package func configuration(_ name: String, logger: MeshLogger? = nil) -> MeshNode.Configuration {
        MeshNode.Configuration(
            coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: logger ?? testLogger(name))
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bound with port 0, read back, closed.
package func freeLoopbackPort() throws -> UInt16 {
    let socket = try Socket.stream(for: .ipv4(host: "127.0.0.1", port: 0))
    defer { socket.close() }
    try socket.bindAndListen(.ipv4(host: "127.0.0.1", port: 0))
    guard let port = socket.localAddress()?.port, port != 0 else {
        throw SocketError.failed("getsockname", EINVAL)
    }
    return port
}
