/// Keeps a flood of similar log lines (rejected connections, say) to a few lines a second.
///
/// Per category, the first ``limit`` lines of each ``interval`` go out as they are; the rest are
/// only counted, and once the interval is over one summary line says how many were held back:
/// `... and 37 more rejected connections in the last 1 s`. The summary goes out with the next
/// line of its category or from ``flush(now:)``, whichever comes first, so call `flush` from a
/// timer when a flood may stop abruptly.
///
/// A value type with the time passed in: the owner (an actor, or a loop thread) keeps it in its
/// state and writes the lines it returns, and tests drive it with no clock and no sleeps.
package struct RateLimitedLog: Sendable {
    /// Lines written whole per category and interval.
    package let limit: Int
    /// The length of one counting window.
    package let interval: Duration

    /// One category's current window.
    private struct Window {
        var start: ContinuousClock.Instant
        var written = 0
        var heldBack = 0
    }

    private var windows: [String: Window] = [:]

    /// - Parameters:
    ///   - limit: lines per category written in each interval (at least 1).
    ///   - interval: the window the limit applies to.
    package init(limit: Int = 10, interval: Duration = .seconds(1)) {
        precondition(limit >= 1 && interval > .zero, "a rate limit needs a limit of at least 1 and a positive interval")
        self.limit = limit
        self.interval = interval
    }

    /// Offers one line in `category`; returns what to write now, oldest first.
    ///
    /// That is the line itself while the category is under its limit, preceded by the summary
    /// of the category's previous window when that held lines back; nothing while over it.
    /// - Parameters:
    ///   - category: what the line is about, in plural words (`rejected connections`); it
    ///     names the held-back lines in the summary.
    ///   - line: the line; only built when it is written.
    ///   - now: the current time.
    /// - Returns: zero, one or two lines.
    package mutating func record(
        _ category: String, _ line: @autoclosure () -> String, now: ContinuousClock.Instant
    ) -> [String] {
        var lines: [String] = []
        var window = windows[category] ?? Window(start: now)
        if now - window.start >= interval {
            if let summary = summary(category, window) { lines.append(summary) }
            window = Window(start: now)
        }
        if window.written < limit {
            window.written += 1
            lines.append(line())
        } else {
            window.heldBack += 1
        }
        windows[category] = window
        return lines
    }

    /// Summaries of every window that has ended with lines held back; forgets ended windows, so
    /// the memory held stays with the categories seen in the last interval.
    ///
    /// - Parameter now: the current time.
    /// - Returns: one line per category that held lines back, sorted by category.
    package mutating func flush(now: ContinuousClock.Instant) -> [String] {
        var lines: [String] = []
        for category in windows.keys.sorted() {
            guard let window = windows[category], now - window.start >= interval else { continue }
            if let summary = summary(category, window) { lines.append(summary) }
            windows[category] = nil
        }
        return lines
    }

    /// Lines held back in `category`'s current window so far (not yet summarised).
    package func heldBack(in category: String) -> Int {
        windows[category]?.heldBack ?? 0
    }

    /// Offers a line and writes what comes out to `logger` at `level`.
    ///
    /// - Parameters:
    ///   - category: as for ``record(_:_:now:)``.
    ///   - level: the level of the line and of its summary.
    ///   - logger: where the lines go.
    ///   - now: the current time.
    ///   - line: the line; only built when it is written.
    package mutating func log(
        _ category: String, level: MeshLogger.Level, to logger: MeshLogger, now: ContinuousClock.Instant = .now,
        _ line: @autoclosure () -> String
    ) {
        guard level <= logger.level else { return }
        for text in record(category, line(), now: now) { logger.log(level, text) }
    }

    private func summary(_ category: String, _ window: Window) -> String? {
        guard window.heldBack > 0 else { return nil }
        return "... and \(window.heldBack) more \(category) in the last \(RateLimitedLog.seconds(interval)) s"
    }

    /// `1`, or `0.5` when there is a fraction.
    private static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 { return String(seconds) }
        let value = Double(seconds) + Double(attoseconds) / 1e18
        return String((value * 1000).rounded() / 1000)
    }
}
