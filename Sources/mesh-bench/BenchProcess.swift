@preconcurrency import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One child of the benchmark: this executable re-run as `mesh-bench _role ROLE --key value ...`.
///
/// The child talks to the parent through standard output lines (`READY ...`, then a final
/// `RESULT {json}`); standard error is kept (its tail explains a failure). Every wait has a
/// deadline and never blocks a thread: lines and the exit arrive through Foundation's handlers
/// and resume continuations.
final class BenchChild: Sendable {
    private struct LineWaiter {
        let id: Int
        /// The line awaited; `nil` waits for the child to finish instead.
        let prefix: String?
        let continuation: CheckedContinuation<String, any Error>
    }

    private struct State {
        var process: Process?
        var partialLine = Data()
        var lines: [String] = []
        var stderr = ""
        var exitStatus: Int32?
        var stdoutEnded = false
        var waiters: [LineWaiter] = []
        var expired: Set<Int> = []
        var nextWaiterID = 0

        /// The child is gone and every line it printed has been read.
        var isFinished: Bool { exitStatus != nil && stdoutEnded }
    }

    /// A wait's own deadline passed; turned into ``BenchFailure/timedOut(role:waitingFor:seconds:stderr:)``.
    private struct Expired: Error {}

    /// The state the pipe and exit handlers share with the waiters.
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    /// The role name, for messages.
    let role: String
    let pid: Int32
    private let shared = Shared()

    /// This executable, resolved once.
    static let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()

    /// Starts `mesh-bench _role role arguments...`.
    ///
    /// - Parameters:
    ///   - role: the child's role.
    ///   - arguments: `--key value` pairs for the role.
    ///   - deadline: seconds after which the child exits by itself, whatever happens to the parent.
    /// - Throws: when the process cannot be started.
    convenience init(role: String, _ arguments: [String], deadline: Double) throws {
        try self.init(
            label: role, executable: BenchChild.executable,
            arguments: ["_role", role] + arguments + ["--deadline", String(Int(deadline.rounded(.up)))])
    }

    /// Starts any program, its output collected the same way (for `ss`).
    init(label: String, executable: URL, arguments: [String]) throws {
        self.role = label
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        let shared = self.shared
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil }
            BenchChild.received(data, into: shared)
        }
        errors.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            shared.state.withLock { state in
                state.stderr += String(decoding: data, as: UTF8.self)
                if state.stderr.utf8.count > 8192 { state.stderr = String(state.stderr.suffix(4096)) }
            }
        }
        process.terminationHandler = { finished in
            let status = finished.terminationStatus
            BenchChild.settle(shared) { $0.exitStatus = status }
            // Foundation does not always report the end of a pipe whose writer exited; what the
            // child printed is read well within this grace period.
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
                BenchChild.settle(shared) { $0.stdoutEnded = true }
            }
        }
        try process.run()
        pid = process.processIdentifier
        shared.state.withLock { $0.process = process }
    }

    /// Splits new output into lines and wakes the waiters whose line arrived.
    private static func received(_ data: Data, into shared: Shared) {
        settle(shared) { state in
            if data.isEmpty {
                state.stdoutEnded = true
                return
            }
            state.partialLine.append(data)
            while let newline = state.partialLine.firstIndex(of: UInt8(ascii: "\n")) {
                let line = state.partialLine[state.partialLine.startIndex..<newline]
                state.lines.append(String(decoding: line, as: UTF8.self))
                state.partialLine.removeSubrange(state.partialLine.startIndex...newline)
            }
        }
    }

    /// Applies `change`, then resumes every waiter it settles: a line arrived, or the child is finished.
    private static func settle(_ shared: Shared, _ change: (inout State) -> Void) {
        let ready = shared.state.withLock { state -> [(CheckedContinuation<String, any Error>, Result<String, any Error>)] in
            change(&state)
            var ready: [(CheckedContinuation<String, any Error>, Result<String, any Error>)] = []
            state.waiters.removeAll { waiter in
                if let prefix = waiter.prefix, let line = state.lines.first(where: { $0.hasPrefix(prefix) }) {
                    ready.append((waiter.continuation, .success(line)))
                    return true
                }
                return false
            }
            if state.isFinished {
                for waiter in state.waiters {
                    if let prefix = waiter.prefix {
                        ready.append((waiter.continuation, .failure(BenchChild.exitedError(state, prefix))))
                    } else {
                        ready.append((waiter.continuation, .success("")))
                    }
                }
                state.waiters.removeAll()
            }
            return ready
        }
        for (continuation, result) in ready { continuation.resume(with: result) }
    }

    private static func exitedError(_ state: State, _ prefix: String) -> BenchFailure {
        .exited(role: "", status: state.exitStatus ?? -1, waitingFor: "\"\(prefix)\"", stderr: state.stderr)
    }

    /// Waits for the first line starting with `prefix`; returns the rest of that line.
    ///
    /// - Throws: ``BenchFailure/timedOut(role:waitingFor:seconds:stderr:)`` after `seconds` (the
    ///   child is then killed), or ``BenchFailure/exited(role:status:waitingFor:stderr:)``.
    func line(startingWith prefix: String, within seconds: Double) async throws -> String {
        let line = try await wait(for: prefix, within: seconds)
        return String(line.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
    }

    /// Waits until the child exits; returns every line it printed.
    ///
    /// - Throws: ``BenchFailure/timedOut(role:waitingFor:seconds:stderr:)`` after `seconds` (the
    ///   child is then killed).
    func output(within seconds: Double) async throws -> [String] {
        _ = try await wait(for: nil, within: seconds)
        return shared.state.withLock { $0.lines }
    }

    /// Waits for a line starting with `prefix`, or with `nil` for the end of the child.
    private func wait(for prefix: String?, within seconds: Double) async throws -> String {
        let what = prefix.map { "\"\($0)\"" } ?? "its exit"
        let id = shared.state.withLock { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        let timer = Task { [shared] in
            try await Task.sleep(for: .seconds(seconds))
            let expired = shared.state.withLock { state -> LineWaiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else {
                    state.expired.insert(id)
                    return nil
                }
                return state.waiters.remove(at: index)
            }
            expired?.continuation.resume(throwing: Expired())
        }
        defer { timer.cancel() }
        do {
            let line = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String, any Error>) in
                let outcome = shared.state.withLock { state -> Result<String, any Error>? in
                    if let prefix, let line = state.lines.first(where: { $0.hasPrefix(prefix) }) { return .success(line) }
                    if state.isFinished {
                        return prefix.map { .failure(BenchChild.exitedError(state, $0)) } ?? .success("")
                    }
                    if state.expired.contains(id) {
                        return .failure(Expired())
                    }
                    state.waiters.append(LineWaiter(id: id, prefix: prefix, continuation: continuation))
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
            return line
        } catch BenchFailure.exited(_, let status, _, let stderr) {
            throw BenchFailure.exited(role: role, status: status, waitingFor: what, stderr: stderr)
        } catch is Expired {
            kill()
            throw BenchFailure.timedOut(role: role, waitingFor: what, seconds: seconds, stderr: stderrText)
        }
    }

    /// Waits for the child's `RESULT {json}` line and decodes it.
    func result(within seconds: Double) async throws -> ChildResult {
        let json = try await line(startingWith: "RESULT", within: seconds)
        do {
            return try JSONDecoder().decode(ChildResult.self, from: Data(json.utf8))
        } catch {
            throw BenchFailure.unreadable(role: role, line: json)
        }
    }

    /// What the child wrote to standard error (the last few kilobytes).
    var stderrText: String { shared.state.withLock { $0.stderr } }

    /// Kills the child unless it already exited.
    func kill() {
        let running = shared.state.withLock { $0.exitStatus == nil }
        if running { _ = Glibc.kill(pid, SIGKILL) }
    }
}

/// The children of one workload run; whatever happens, ``killAll()`` in a `defer` ends them.
final class ChildGroup: Sendable {
    private let children = Mutex<[BenchChild]>([])
    /// Seconds each child may live.
    let deadline: Double

    init(deadline: Double) {
        self.deadline = deadline
    }

    /// Starts a child; see ``BenchChild/init(role:_:deadline:)``.
    func start(_ role: String, _ arguments: [String]) throws -> BenchChild {
        let child = try BenchChild(role: role, arguments, deadline: deadline)
        children.withLock { $0.append(child) }
        return child
    }

    func killAll() {
        for child in children.withLock({ $0 }) { child.kill() }
    }
}
