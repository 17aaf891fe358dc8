import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// `RateLimitedLog`, driven with made-up instants: no clock, no sleeps.
@Suite("rate-limited logging")
struct RateLimitedLogTests {
    let start = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }

    @Test("the first 10 lines of a second go out; the rest are one summary line, given with the next line after the second")
    func limitsAndSummarises() {
        var log = RateLimitedLog(limit: 10, interval: .seconds(1))
        var written: [String] = []
        for index in 0..<1000 {
            written += log.record("rejected connections", "rejected \(index)", now: at(index % 1000 / 2))
        }
        #expect(written == (0..<10).map { "rejected \($0)" })
        #expect(log.heldBack(in: "rejected connections") == 990)
        let next = log.record("rejected connections", "rejected late", now: at(1000))
        #expect(next == ["... and 990 more rejected connections in the last 1 s", "rejected late"])
        #expect(log.heldBack(in: "rejected connections") == 0)
    }

    @Test("flush gives the summary when the flood stops, once, and forgets the category")
    func flushAfterTheFloodStops() {
        var log = RateLimitedLog(limit: 2, interval: .seconds(1))
        var written: [String] = []
        for index in 0..<5 { written += log.record("bad hellos", "bad hello \(index)", now: at(100)) }
        #expect(written == ["bad hello 0", "bad hello 1"])
        #expect(log.flush(now: at(999)) == [], "the window is not over yet")
        #expect(log.flush(now: at(1100)) == ["... and 3 more bad hellos in the last 1 s"])
        #expect(log.flush(now: at(5000)) == [], "said once")
        // A new window starts from scratch.
        #expect(log.record("bad hellos", "bad hello again", now: at(5001)) == ["bad hello again"])
    }

    @Test("a window with nothing held back ends silently")
    func noSummaryWithoutDrops() {
        var log = RateLimitedLog(limit: 3, interval: .seconds(1))
        for index in 0..<3 { #expect(log.record("c", "line \(index)", now: at(index)) == ["line \(index)"]) }
        #expect(log.record("c", "next window", now: at(1500)) == ["next window"])
        #expect(log.flush(now: at(10_000)) == [])
    }

    @Test("categories are counted apart; flush lists each that held lines back, by name")
    func categoriesApart() {
        var log = RateLimitedLog(limit: 1, interval: .seconds(1))
        #expect(log.record("sessions", "s1", now: at(0)) == ["s1"])
        #expect(log.record("hellos", "h1", now: at(0)) == ["h1"])
        #expect(log.record("sessions", "s2", now: at(10)) == [])
        #expect(log.record("sessions", "s3", now: at(20)) == [])
        #expect(log.record("hellos", "h2", now: at(30)) == [])
        #expect(log.record("quiet", "q1", now: at(40)) == ["q1"])
        #expect(
            log.flush(now: at(1500)) == [
                "... and 1 more hellos in the last 1 s", "... and 2 more sessions in the last 1 s",
            ])
    }

    @Test("a line over the limit is not even built")
    func heldBackLinesAreNotBuilt() {
        var log = RateLimitedLog(limit: 1, interval: .seconds(1))
        let built = Mutex(0)
        func line() -> String {
            built.withLock { $0 += 1 }
            return "expensive"
        }
        for _ in 0..<100 { _ = log.record("c", line(), now: at(0)) }
        #expect(built.withLock { $0 } == 1)
    }

    @Test("a flood of 100,000 lines over 10 s writes 10 lines and 1 summary per second")
    func floodIsBounded() {
        var log = RateLimitedLog()
        var written: [String] = []
        for index in 0..<100_000 { written += log.record("rejected connections", "line", now: at(index / 10)) }
        written += log.flush(now: at(20_000))
        #expect(written.count { $0 == "line" } == 100)
        let summaries = written.filter { $0.hasPrefix("... and ") }
        #expect(summaries.count == 10)
        #expect(summaries.allSatisfy { $0 == "... and 9990 more rejected connections in the last 1 s" }, "\(summaries)")
    }

    @Test("log(...) writes through a logger at the level given; a fractional interval reads as such")
    func writesToALogger() {
        let lines = Mutex<[String]>([])
        let logger = MeshLogger(label: "coordinator", level: .info) { line in lines.withLock { $0.append(line) } }
        var log = RateLimitedLog(limit: 1, interval: .milliseconds(500))
        log.log("rejected connections", level: .warning, to: logger, now: at(0), "rejected A")
        log.log("rejected connections", level: .warning, to: logger, now: at(100), "rejected B")
        log.log("rejected connections", level: .warning, to: logger, now: at(600), "rejected C")
        log.log("rejected connections", level: .debug, to: logger, now: at(700), "not at info")
        let written = lines.withLock { $0 }
        #expect(written.count == 3)
        #expect(written[0].hasSuffix("warning [coordinator] rejected A"))
        #expect(written[1].hasSuffix("warning [coordinator] ... and 1 more rejected connections in the last 0.5 s"))
        #expect(written[2].hasSuffix("warning [coordinator] rejected C"))
    }
}
