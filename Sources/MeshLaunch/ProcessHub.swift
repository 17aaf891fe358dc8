import CMeshSystem
import Foundation
import Glibc
import Mesh
import MeshTooling
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
package enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    package var isSuccess: Bool { self == .exited(0) }

    package var description: String {
        switch self {
        case .exited(let code): return "exit \(code)"
        case .signalled(let signal): return "killed by \(ExitStatus.signalName(signal))"
        }
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
            SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGUSR1: "SIGUSR1", SIGUSR2: "SIGUSR2",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}

/// The one thread `mesh launch` starts, reads and reaps its children on, and the only writer of
/// its standard output and error.
///
/// - Spawning happens on this thread because `PR_SET_PDEATHSIG` fires when the *thread* that
///   forked ends: this one lives as long as the process, so children die with the process, not
///   with some pool thread that happened to fork them.
/// - It polls every child's stdout and stderr pipe, and a pidfd per child that turns readable
///   when it exits (it falls back to checking every 100 ms where pidfds are missing). Lines are
///   written whole, each with its prefix, one `write` per batch, so two children's lines never
///   mix; a line longer than 16 KiB is cut into pieces, so memory stays bounded.
/// - An exit is reported after the child's pipes reached their end (or 0.5 s after it exited,
///   when something it started still holds them), so it follows the child's last line. What
///   else is left in the child's process group is then killed.
/// - Nothing here blocks the cooperative pool: callers enqueue requests and are resumed.
final class ProcessHub: Sendable {
    struct ChildID: Hashable, Sendable, CustomStringConvertible {
        var raw: Int
        var description: String { "#\(raw)" }
    }

    /// What to start.
    struct Spec: Sendable {
        /// The executable's absolute path.
        var path: String
        /// `argv`, starting with the program's name.
        var arguments: [String]
        var environment: [String: String]
        var workingDirectory: String?
        /// The line prefix, `worker#2`.
        var label: String
        /// The label's colour (an ANSI colour number), or `nil` for none.
        var colour: Int?
        /// Report each stdout line as an ``Event/line(_:_:)`` as well (the coordinator's address).
        var watchOutput = false
        /// When set, `[launch] started LABEL (pid N): ANNOUNCE` is written as the child starts,
        /// before anything it prints.
        var announce: String?
    }

    enum Event: Sendable {
        /// A line a watched child printed on standard output.
        case line(ChildID, String)
        case exited(ChildID, pid: Int32, ExitStatus)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var step: String
        var code: Int32
        var description: String {
            let reason = String(cString: strerror(code))
            return step == "exec" ? reason : "\(step): \(reason)"
        }
    }

    fileprivate enum Request {
        case spawn(Spec, CheckedContinuation<Result<(ChildID, Int32), SpawnError>, Never>)
        case signal(ChildID, Int32)
        case say(String, toError: Bool)
        case flush(CheckedContinuation<Void, Never>)
    }

    /// Events for the launcher: exits, and watched lines.
    let events = EventQueue<Event>()
    private let requests = Mutex<[Request]>([])
    private let wakeRead: Int32
    private let wakeWrite: Int32
    /// Whether launch's own lines get a bold `[launch]`.
    let colour: Bool

    static let maximumLine = 16 * 1024
    static let drainGrace: Duration = .milliseconds(500)

    init(colour: Bool) {
        var fds: [Int32] = [0, 0]
        let created = cmesh_pipe(&fds, 1)
        precondition(created == 0, "pipe failed: \(String(cString: strerror(errno)))")
        wakeRead = fds[0]
        wakeWrite = fds[1]
        self.colour = colour
        let thread = Thread { [self] in
            var loop = Loop(hub: self)
            loop.run()
        }
        thread.name = "mesh-launch"
        thread.start()
    }

    /// Starts a child.
    ///
    /// - Returns: its id and pid, or why it could not start (the program was not found, ...).
    func spawn(_ spec: Spec) async -> Result<(ChildID, Int32), SpawnError> {
        await withCheckedContinuation { continuation in enqueue(.spawn(spec, continuation)) }
    }

    /// Sends `signal` to the child's process group, unless the child has already been reaped.
    func signal(_ id: ChildID, _ signal: Int32) { enqueue(.signal(id, signal)) }

    /// Writes one of launch's own lines, `[launch] TEXT`, in order with the children's lines.
    func say(_ text: String, toError: Bool = false) { enqueue(.say(text, toError: toError)) }

    /// Returns once everything asked for so far has been written.
    func flush() async {
        await withCheckedContinuation { continuation in enqueue(.flush(continuation)) }
    }

    private func enqueue(_ request: Request) {
        requests.withLock { $0.append(request) }
        var one: UInt8 = 1
        _ = write(wakeWrite, &one, 1)  // a full pipe already means "wake up"
    }

    fileprivate func takeRequests() -> [Request] {
        var drain = [UInt8](repeating: 0, count: 256)
        while read(wakeRead, &drain, drain.count) > 0 {}
        return requests.withLock { requests in
            defer { requests.removeAll() }
            return requests
        }
    }

    fileprivate var wakeDescriptor: Int32 { wakeRead }

    /// The thread's state: touched by the hub's thread only.
    private struct Loop {
        struct Stream {
            var fd: Int32
            var buffer: [UInt8] = []
            let toError: Bool
            var isOpen: Bool { fd >= 0 }
        }

        struct Child {
            let id: ChildID
            let pid: Int32
            var pidfd: Int32
            var streams: [Stream]
            let prefix: [UInt8]
            let watch: Bool
            var status: ExitStatus?
            var exitedAt: ContinuousClock.Instant?
        }

        let hub: ProcessHub
        var children: [Child] = []
        var nextID = 1
        var outputBroken = [false, false]
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)

        init(hub: ProcessHub) { self.hub = hub }

        mutating func run() {
            while true {
                var fds = [pollfd(fd: hub.wakeDescriptor, events: Int16(POLLIN), revents: 0)]
                var owners: [(child: Int, stream: Int?)] = [(-1, nil)]
                var timeout: Int32 = -1
                let now = ContinuousClock.now
                for (index, child) in children.enumerated() {
                    for (streamIndex, stream) in child.streams.enumerated() where stream.isOpen {
                        fds.append(pollfd(fd: stream.fd, events: Int16(POLLIN), revents: 0))
                        owners.append((index, streamIndex))
                    }
                    if child.status == nil {
                        if child.pidfd >= 0 {
                            fds.append(pollfd(fd: child.pidfd, events: Int16(POLLIN), revents: 0))
                            owners.append((index, nil))
                        } else {
                            timeout = timeout < 0 ? 100 : min(timeout, 100)
                        }
                    } else if let exitedAt = child.exitedAt {
                        let left = max(0, Int32((seconds(now.duration(to: exitedAt + ProcessHub.drainGrace)) * 1000).rounded(.up)))
                        timeout = timeout < 0 ? left : min(timeout, left)
                    }
                }
                let ready = poll(&fds, nfds_t(fds.count), timeout)
                if ready < 0 && errno != EINTR {
                    // Should not happen; avoid spinning.
                    usleep(10_000)
                }
                for (slot, entry) in fds.enumerated() where slot > 0 && entry.revents != 0 {
                    let owner = owners[slot]
                    if let stream = owner.stream { readStream(child: owner.child, stream: stream) }
                }
                reapExited()
                finishDrained()
                for request in hub.takeRequests() { perform(request) }
            }
        }

        mutating func perform(_ request: Request) {
            switch request {
            case .spawn(let spec, let continuation):
                continuation.resume(returning: spawn(spec))
            case .signal(let id, let signal):
                if let child = children.first(where: { $0.id == id }), child.status == nil {
                    _ = kill(-child.pid, signal)
                }
            case .say(let text, let toError):
                say(text, toError: toError)
            case .flush(let continuation):
                continuation.resume()
            }
        }

        mutating func say(_ text: String, toError: Bool = false) {
            let label = hub.colour ? "\u{1B}[1m[launch]\u{1B}[0m " : "[launch] "
            emit(Array((label + text + "\n").utf8), toError: toError)
        }

        mutating func spawn(_ spec: Spec) -> Result<(ChildID, Int32), SpawnError> {
            var out: [Int32] = [0, 0]
            var err: [Int32] = [0, 0]
            guard cmesh_pipe(&out, 0) == 0 else { return .failure(SpawnError(step: "pipe", code: errno)) }
            guard cmesh_pipe(&err, 0) == 0 else {
                let code = errno
                close(out[0])
                close(out[1])
                return .failure(SpawnError(step: "pipe", code: code))
            }
            let argv = spec.arguments.map { strdup($0) } + [nil]
            let envp = spec.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer {
                for pointer in argv { free(pointer) }
                for pointer in envp { free(pointer) }
            }
            var failedErrno: Int32 = 0
            var failedStep: UnsafePointer<CChar>? = nil
            let pid = argv.withUnsafeBufferPointer { argvBuffer in
                envp.withUnsafeBufferPointer { envpBuffer in
                    if let directory = spec.workingDirectory {
                        return cmesh_spawn(
                            spec.path, argvBuffer.baseAddress, envpBuffer.baseAddress, directory, devNull, out[1],
                            err[1], &failedErrno, &failedStep)
                    }
                    return cmesh_spawn(
                        spec.path, argvBuffer.baseAddress, envpBuffer.baseAddress, nil, devNull, out[1], err[1],
                        &failedErrno, &failedStep)
                }
            }
            close(out[1])
            close(err[1])
            guard pid > 0 else {
                close(out[0])
                close(err[0])
                return .failure(SpawnError(step: failedStep.map { String(cString: $0) } ?? "spawn", code: failedErrno))
            }
            for fd in [out[0], err[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            let id = ChildID(raw: nextID)
            nextID += 1
            let prefix = spec.colour.map { "\u{1B}[\($0)m[\(spec.label)]\u{1B}[0m " } ?? "[\(spec.label)] "
            children.append(
                Child(
                    id: id, pid: pid, pidfd: cmesh_pidfd_open(pid),
                    streams: [Stream(fd: out[0], toError: false), Stream(fd: err[0], toError: true)],
                    prefix: Array(prefix.utf8), watch: spec.watchOutput))
            if let announce = spec.announce { say("started \(spec.label) (pid \(pid)): \(announce)") }
            return .success((id, pid))
        }

        mutating func readStream(child index: Int, stream streamIndex: Int) {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let fd = children[index].streams[streamIndex].fd
            guard fd >= 0 else { return }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if count <= 0 {
                closeStream(child: index, stream: streamIndex)
                return
            }
            children[index].streams[streamIndex].buffer += chunk[..<count]
            writeLines(child: index, stream: streamIndex, atEnd: false)
        }

        /// Writes the buffered whole lines (and, at the end, the rest) with the child's prefix.
        mutating func writeLines(child index: Int, stream streamIndex: Int, atEnd: Bool) {
            var stream = children[index].streams[streamIndex]
            let child = children[index]
            var output: [UInt8] = []
            var start = 0
            let buffer = stream.buffer
            while start < buffer.count {
                var end: Int
                if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")), newline - start <= ProcessHub.maximumLine {
                    end = newline
                } else if buffer.count - start > ProcessHub.maximumLine {
                    end = start + ProcessHub.maximumLine
                    while end > start, buffer[end] & 0xC0 == 0x80 { end -= 1 }  // not inside a UTF-8 character
                } else if atEnd {
                    end = buffer.count
                } else {
                    break
                }
                var line = Array(buffer[start..<end])
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                output += child.prefix + line + [UInt8(ascii: "\n")]
                if child.watch && !stream.toError {
                    hub.events.push(.line(child.id, String(decoding: line, as: UTF8.self)))
                }
                start = end < buffer.count && buffer[end] == UInt8(ascii: "\n") ? end + 1 : end
            }
            stream.buffer.removeFirst(start)
            children[index].streams[streamIndex] = stream
            if !output.isEmpty { emit(output, toError: stream.toError) }
        }

        mutating func closeStream(child index: Int, stream streamIndex: Int) {
            guard children[index].streams[streamIndex].isOpen else { return }
            writeLines(child: index, stream: streamIndex, atEnd: true)
            close(children[index].streams[streamIndex].fd)
            children[index].streams[streamIndex].fd = -1
        }

        /// Collects the exit status of children that ended.
        mutating func reapExited() {
            for index in children.indices where children[index].status == nil {
                var status: Int32 = 0
                guard cmesh_reap(children[index].pid, &status) == children[index].pid else { continue }
                let code = cmesh_exit_code(status)
                children[index].status = code >= 0 ? .exited(code) : .signalled(cmesh_exit_signal(status))
                children[index].exitedAt = .now
                // What the child started in its group goes with it.
                _ = kill(-children[index].pid, SIGKILL)
                if children[index].pidfd >= 0 {
                    close(children[index].pidfd)
                    children[index].pidfd = -1
                }
            }
        }

        /// Reports the exits whose output has ended (or waited long enough).
        mutating func finishDrained() {
            let now = ContinuousClock.now
            var index = 0
            while index < children.count {
                let child = children[index]
                guard let status = child.status, let exitedAt = child.exitedAt,
                    !child.streams.contains(where: \.isOpen) || now >= exitedAt + ProcessHub.drainGrace
                else {
                    index += 1
                    continue
                }
                for stream in children[index].streams.indices { closeStream(child: index, stream: stream) }
                children.remove(at: index)
                hub.events.push(.exited(child.id, pid: child.pid, status))
            }
        }

        /// Writes all of `bytes` to standard output or error; after EPIPE, drops what follows.
        mutating func emit(_ bytes: [UInt8], toError: Bool) {
            let slot = toError ? 1 : 0
            guard !outputBroken[slot] else { return }
            let fd: Int32 = toError ? 2 : 1
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else if written < 0 && errno == EAGAIN {
                    var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&entry, 1, 100)
                } else {
                    outputBroken[slot] = true
                    return
                }
            }
        }
    }
}
