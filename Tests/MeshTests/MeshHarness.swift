import Foundation
import Synchronization
import Testing

@testable import Mesh

/// A coordinator running in this process on 127.0.0.1 with a free port.
struct RunningCoordinator {
    let coordinator: MeshCoordinator
    let address: String
    let task: Task<Void, any Error>

    static func start(authkey: String? = nil, heartbeatTimeout: Duration = .seconds(3)) async throws
        -> RunningCoordinator
    {
        let coordinator = MeshCoordinator(
            configuration: .init(
                host: "127.0.0.1", port: 0, authkey: authkey, logger: testLogger("coordinator"),
                heartbeatTimeout: heartbeatTimeout))
        let bound = try await coordinator.start()
        let task = Task { try await coordinator.run() }
        return RunningCoordinator(coordinator: coordinator, address: bound.description, task: task)
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// Builds a node against this coordinator with test-friendly defaults.
    func node(
        _ name: String, authkey: String? = nil, loadBalancing: LoadBalancing = .roundRobin,
        configure: (inout MeshNode.Configuration) -> Void = { _ in }
    ) async throws -> MeshNode {
        var configuration = MeshNode.Configuration(
            coordinator: address, authkey: authkey, loadBalancing: loadBalancing, listenHost: "127.0.0.1",
            logger: testLogger(name))
        configure(&configuration)
        return try await buildMeshNode(name: name, configuration: configuration)
    }
}

/// A logger that keeps quiet unless MESH_TEST_LOG names a level.
func testLogger(_ label: String) -> MeshLogger {
    let level = ProcessInfo.processInfo.environment["MESH_TEST_LOG"].flatMap(MeshLogger.Level.init(name:))
    return level.map { MeshLogger(label: label, level: $0) } ?? .silent
}

/// Collects values from listeners and lets a test wait, with a deadline, for a number of them.
final class Collector<Value: Sendable>: Sendable {
    private struct State {
        var values: [Value] = []
        var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    func append(_ value: Value) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.values.append(value)
            let count = state.values.count
            let ready = state.waiters.filter { $0.count <= count }.map(\.continuation)
            state.waiters.removeAll { $0.count <= count }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    var values: [Value] { state.withLock { $0.values } }

    /// Waits until at least `count` values arrived; fails the test after `seconds`.
    func wait(for count: Int, seconds: Double = 10) async throws -> [Value] {
        try await withDeadline(seconds) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = self.state.withLock { state -> Bool in
                    if state.values.count >= count { return true }
                    state.waiters.append((count, continuation))
                    return false
                }
                if done { continuation.resume() }
            }
        }
        return values
    }
}

/// Polls `condition` every few milliseconds until it holds; fails after `seconds`.
func eventually(
    _ what: String, seconds: Double = 10, _ condition: @escaping @Sendable () async -> Bool
) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("timed out after \(seconds) s waiting for \(what)")
    throw DeadlineExceeded(seconds: seconds)
}

// MARK: Child processes

/// Where `swift build` put this package's executables (next to the test bundle).
let executablesDirectory: URL = {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return exe.deletingLastPathComponent()
}()

/// A child process whose output is collected line by line, awaited without blocking a thread.
///
/// It runs this package's executables by name, or any program by absolute path (`/usr/sbin/ip`).
/// ``waitForExit(seconds:)`` returns once the process has exited *and* its output has reached
/// end of file, so `output` is complete by then.
final class ChildProcess: Sendable {
    private struct State {
        var output = ""
        var exitCode: Int32?
        var outputEnded = false
        var lineWaiters: [(needle: String, continuation: CheckedContinuation<Void, Never>)] = []
        var exitWaiters: [CheckedContinuation<Int32, Never>] = []
    }

    let name: String
    private let process: Process
    private let state = Mutex(State())

    /// Starts `executable` (a product of this package) with `arguments` and extra environment.
    convenience init(_ executable: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
        try self.init(
            path: executablesDirectory.appendingPathComponent(executable).path, arguments, environment: environment)
    }

    /// Starts the program at `path`.
    init(path: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
        name = ([URL(fileURLWithPath: path).lastPathComponent] + arguments).joined(separator: " ")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        self.process = process
        process.terminationHandler = { [weak self] process in
            self?.exited(process.terminationStatus)
        }
        try process.run()
        // Blocking reads to end of file on a thread of their own, never on the cooperative pool
        // (a readability handler may not report the end of file on Linux).
        let reader = pipe.fileHandleForReading
        let thread = Thread { [self] in
            while true {
                let data = reader.availableData
                received(data)
                if data.isEmpty { return }
            }
        }
        thread.name = "child-output"
        thread.start()
    }

    /// Runs a program to completion within `seconds`; returns its status and whole output.
    static func run(path: String, _ arguments: [String], seconds: Double = 10) async throws -> (
        status: Int32, output: String
    ) {
        let child = try ChildProcess(path: path, arguments)
        let status = try await child.waitForExit(seconds: seconds)
        return (status, child.output)
    }

    /// Takes bytes from the pipe; empty `data` is its end of file.
    private func received(_ data: Data) {
        let (ready, finished) = state.withLock { state -> ([CheckedContinuation<Void, Never>], (Int32, [CheckedContinuation<Int32, Never>])?) in
            if data.isEmpty {
                state.outputEnded = true
                return ([], takeExitWaiters(&state))
            }
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

    var output: String { state.withLock { $0.output } }
    var pid: Int32 { process.processIdentifier }

    /// Waits until the output contains `needle`; returns the output so far.
    @discardableResult
    func waitForOutput(_ needle: String, seconds: Double = 20) async throws -> String {
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
        } catch {
            Issue.record("\(name) did not print \"\(needle)\" within \(seconds) s; output so far:\n\(output)")
            throw error
        }
        return output
    }

    /// Waits for the process to exit and its output to end; returns its status. Past `seconds`
    /// it kills the process and throws ``DeadlineExceeded``.
    func waitForExit(seconds: Double = 20) async throws -> Int32 {
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

    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// Kills the process if it still runs (use in `defer`).
    func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Starts `mesh-coordinator` on a free loopback port; returns it and its address.
func startCoordinatorProcess(_ extraArguments: [String] = [], environment: [String: String] = [:]) async throws
    -> (ChildProcess, String)
{
    let child = try ChildProcess(
        "mesh-coordinator", ["--host", "127.0.0.1", "--port", "0"] + extraArguments, environment: environment)
    let output = try await child.waitForOutput("mesh-coordinator listening on ")
    let line = output.split(separator: "\n").first { $0.hasPrefix("mesh-coordinator listening on ") }!
    return (child, String(line.dropFirst("mesh-coordinator listening on ".count)))
}
