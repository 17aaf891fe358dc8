import CMeshSystem
@preconcurrency import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Process-level helpers for programs built on the mesh.
public enum MeshProcess {
    /// Starts catching SIGINT and SIGTERM now, so one that arrives before the program waits for
    /// it is kept rather than ending the process. Call it first thing in `main`; calling it again
    /// does nothing.
    public static func catchTerminationSignals() {
        _ = SignalCatcher.shared
    }

    /// Suspends until the process receives SIGINT or SIGTERM (or returns at once if one already
    /// arrived since ``catchTerminationSignals()``); returns the signal number.
    ///
    /// The signals are caught through Dispatch sources (their default action, ending the
    /// process, is turned off), so the caller can shut down cleanly and exit 0.
    public static func waitForTerminationSignal() async -> Int32 {
        await SignalCatcher.shared.next()
    }

    /// Every SIGINT and SIGTERM the process receives from now on, one element each (starting with
    /// the first one caught, when one already arrived since ``catchTerminationSignals()``).
    ///
    /// ``waitForTerminationSignal()`` only ever reports the first signal; a supervisor that treats
    /// a second Ctrl-C differently (`mesh launch`) counts them here.
    public static func terminationSignals() -> AsyncStream<Int32> {
        SignalCatcher.shared.stream()
    }

    /// Makes `print` output appear line by line even when piped to a file or another program.
    public static func lineBufferedOutput() {
        cmesh_line_buffer_stdout()
    }

    /// Reads an authkey from a file, trimming trailing line ends; ``MeshKeyFile/read(path:warn:)``
    /// does the same and also warns when others may read the file.
    ///
    /// - Throws: ``MeshKeyFile/Error`` when the file cannot be read or is empty.
    public static func readAuthkey(fromFile path: String) throws -> String {
        try MeshKeyFile.read(path: path, warn: { _ in })
    }
}

/// Catches SIGINT and SIGTERM for the life of the process and hands the first to its waiters.
private final class SignalCatcher: Sendable {
    static let shared = SignalCatcher()

    /// The first signal caught, and the tasks waiting for one.
    private final class Caught: Sendable {
        let state = Mutex<(signal: Int32?, waiters: [CheckedContinuation<Int32, Never>])>((nil, []))
        /// The streams of ``MeshProcess/terminationSignals()``, which see every signal.
        let streams = Mutex<[AsyncStream<Int32>.Continuation]>([])

        func fire(_ signalNumber: Int32) {
            let (waiters, listeners) = state.withLock { state in
                if state.signal == nil { state.signal = signalNumber }
                defer { state.waiters = [] }
                return (state.waiters, streams.withLock { $0 })
            }
            for waiter in waiters { waiter.resume(returning: signalNumber) }
            for stream in listeners { stream.yield(signalNumber) }
        }
    }

    private let caught = Caught()
    // Held so the sources live as long as the process; never touched after init.
    private let sources: [any DispatchSourceSignal]

    private init() {
        let queue = DispatchQueue(label: "mesh.signals")
        let caught = self.caught
        sources = [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler { caught.fire(signalNumber) }
            source.resume()
            return source
        }
    }

    func stream() -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        // Under the state lock, so a signal firing now is neither lost nor delivered twice.
        caught.state.withLock { state in
            if let signal = state.signal { continuation.yield(signal) }
            caught.streams.withLock { $0.append(continuation) }
        }
        return stream
    }

    func next() async -> Int32 {
        await withCheckedContinuation { continuation in
            let signal = caught.state.withLock { state -> Int32? in
                if let signal = state.signal { return signal }
                state.waiters.append(continuation)
                return nil
            }
            if let signal { continuation.resume(returning: signal) }
        }
    }
}
