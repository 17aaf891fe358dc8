import Foundation

/// A duration in seconds, as a `Double`.
package func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}

/// Formats a duration as seconds with millisecond precision, for log lines.
package func formatted(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    return String(format: "%.3f s", Double(seconds) + Double(attoseconds) / 1e18)
}
