import CMeshSystem
@preconcurrency import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Process-level helpers for programs built on the mesh.
public enum MeshProcess {
    /// Suspends until the process receives SIGINT or SIGTERM; returns the signal number.
    ///
    /// The signals are caught through Dispatch sources (their default action, ending the
    /// process, is turned off), so the caller can shut down cleanly and exit 0.
    public static func waitForTerminationSignal() async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let queue = DispatchQueue(label: "mesh.signals")
            let once = SignalOnce(continuation)
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
                source.setEventHandler { once.fire(signalNumber) }
                source.resume()
                once.keep(source)
            }
        }
    }

    /// Makes `print` output appear line by line even when piped to a file or another program.
    public static func lineBufferedOutput() {
        cmesh_line_buffer_stdout()
    }

    /// Reads an authkey from a file, trimming one trailing newline.
    ///
    /// - Throws: ``MeshError/invalidName(_:reason:)`` when the file cannot be read or is empty.
    public static func readAuthkey(fromFile path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), var text = String(data: data, encoding: .utf8)
        else { throw MeshError.invalidName(path, reason: "cannot read the authkey file") }
        // By scalars: Swift reads "\r\n" as one character, which hasSuffix("\n") would miss.
        while let last = text.unicodeScalars.last, last == "\n" || last == "\r" { text.unicodeScalars.removeLast() }
        guard !text.isEmpty else { throw MeshError.invalidName(path, reason: "the authkey file is empty") }
        return text
    }
}

/// Resumes a continuation on the first signal and keeps the signal sources alive.
private final class SignalOnce: @unchecked Sendable {
    // Touched only on the serial "mesh.signals" queue (fire) and once before any signal can be
    // delivered to it (keep), so the unchecked conformance holds.
    private var continuation: CheckedContinuation<Int32, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Int32, Never>) {
        self.continuation = continuation
    }

    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }

    func fire(_ signalNumber: Int32) {
        continuation?.resume(returning: signalNumber)
        continuation = nil
    }
}
