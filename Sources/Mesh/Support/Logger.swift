import Foundation
import Synchronization

/// A small leveled logger. Libraries take one in their configuration; they never print directly.
///
/// Each line reads `2026-11-21T10:00:00.123Z info  [label] message`, with control characters,
/// line separators and bidi overrides escaped (``MeshText/escaped(_:)``), so a line is always
/// one line. The default writes to standard error; pass another sink to capture lines (tests do).
public struct MeshLogger: Sendable {
    /// Severity, most severe first.
    public enum Level: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
        case error, warning, info, debug, trace

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .error: return "error"
            case .warning: return "warning"
            case .info: return "info"
            case .debug: return "debug"
            case .trace: return "trace"
            }
        }

        /// Reads `error`, `warning` (or `warn`), `info`, `debug`, `trace`.
        public init?(name: String) {
            switch name.lowercased() {
            case "error": self = .error
            case "warning", "warn": self = .warning
            case "info": self = .info
            case "debug": self = .debug
            case "trace": self = .trace
            default: return nil
            }
        }
    }

    /// Lines below this level are skipped without formatting them.
    public var level: Level
    /// Names the component or node in each line.
    public var label: String
    private let sink: @Sendable (String) -> Void

    /// - Parameters:
    ///   - label: shown in brackets on each line.
    ///   - level: defaults to `$MESH_LOG_LEVEL`, else `info`.
    ///   - sink: where finished lines go; defaults to standard error.
    public init(label: String, level: Level? = nil, sink: (@Sendable (String) -> Void)? = nil) {
        self.label = label
        self.level = level ?? ProcessInfo.processInfo.environment["MESH_LOG_LEVEL"].flatMap(Level.init(name:)) ?? .info
        self.sink = sink ?? MeshLogger.standardError
    }

    /// A logger that drops everything.
    public static let silent = MeshLogger(label: "", level: .error, sink: { _ in })

    /// The same sink and level under another label.
    public func labeled(_ label: String) -> MeshLogger {
        var copy = self
        copy.label = label
        return copy
    }

    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func trace(_ message: @autoclosure () -> String) { log(.trace, message()) }

    /// Writes `message` when `level` is enabled.
    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        guard level <= self.level else { return }
        let stamp = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        let name = level.description.padding(toLength: 7, withPad: " ", startingAt: 0)
        var text = message()
        if text.utf8.count > MeshLogger.maximumMessageBytes {
            // Peers control some of what is logged (names, topics): keep one line readable.
            let total = text.utf8.count
            text = String(decoding: text.utf8.prefix(MeshLogger.maximumMessageBytes), as: UTF8.self)
                + "… (\(total - MeshLogger.maximumMessageBytes) more bytes)"
        }
        // Names, ids, topics and reasons in messages may come from peers: a line is printed as
        // it reads, never as escape codes or extra lines (see MeshText).
        sink(MeshText.escaped("\(stamp) \(name) [\(label)] \(text)"))
    }

    /// The longest message written whole; longer ones are cut with a note of how much was left out.
    public static let maximumMessageBytes = 2048

    private static let standardErrorLock = Mutex(())

    private static let standardError: @Sendable (String) -> Void = { line in
        standardErrorLock.withLock { _ in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }
}
