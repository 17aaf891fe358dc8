import Foundation
import Mesh
import Synchronization

/// `mesh topic hz` and `mesh topic bw`: rate and bandwidth over a sliding window.
enum TopicRateCommands {
    /// What one printed line says; also its `--json` form.
    struct Reading: Encodable {
        /// The seconds the figures cover: the window, or less just after starting.
        var window: Double
        var messages: Int
        var bytes: Int
        var messagesPerSecond: Double
        var bytesPerSecond: Double
        var totalMessages: Int
        var totalBytes: Int
    }

    static func run(_ arguments: ParsedArguments, _ context: MeshContext, bandwidth: Bool) async throws {
        let topic = arguments.positionals[0]
        let window = try arguments.seconds("--window") ?? 5
        let lines = try arguments.integer("--count", in: 1...Int.max)
        let kind = bandwidth ? "bw" : "hz"
        let node = try await context.node(named: "mesh-\(kind)-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            let meter = Meter()
            try await node.listen(topic, as: Data.self) { (_: String, payload: Data) in meter.record(bytes: payload.count) }
            let json = arguments.has("--json")
            _ = try await runUntilSignal(onSignal: { await node.close() }) {
                let start = ContinuousClock.now
                var printed = 0
                while lines.map({ printed < $0 }) ?? true {
                    try await Task.sleep(until: start + .seconds(printed + 1), clock: .continuous)
                    let reading = meter.reading(window: window)
                    print(json ? Format.compactJSON(reading) : bandwidth ? bandwidthLine(reading) : rateLine(reading))
                    printed += 1
                }
            }
        } catch {
            if case MeshError.closed = error, await node.wasAskedToStop { return }  // killed while starting: a clean stop
            await node.close()
            throw error
        }
        await node.close()
    }

    /// `12.0 msgs/s  60 msgs in 5.0 s  total 123 msgs`
    static func rateLine(_ reading: Reading) -> String {
        "\(Format.fixed(reading.messagesPerSecond, decimals: 1)) msgs/s  \(reading.messages) msgs in \(Format.fixed(reading.window, decimals: 1)) s  total \(reading.totalMessages) msgs"
    }

    /// `1.2 KiB/s  6.0 KiB in 5.0 s  total 123 msgs, 14.5 KiB`
    static func bandwidthLine(_ reading: Reading) -> String {
        "\(Format.bytes(reading.bytesPerSecond))/s  \(Format.bytes(Double(reading.bytes))) in \(Format.fixed(reading.window, decimals: 1)) s  total \(reading.totalMessages) msgs, \(Format.bytes(Double(reading.totalBytes)))"
    }

    /// Counts messages and payload bytes in 100 ms slots, keeping only the slots a window needs.
    final class Meter: Sendable {
        private struct Slot {
            var index: Int
            var messages: Int
            var bytes: Int
        }

        private struct State {
            var slots: [Slot] = []
            var totalMessages = 0
            var totalBytes = 0
        }

        private static let slotsPerSecond = 10
        private let start = ContinuousClock.now
        private let state = Mutex(State())

        private func slotIndex(_ now: ContinuousClock.Instant) -> Int {
            let (seconds, attoseconds) = start.duration(to: now).components
            return Int(seconds) * Meter.slotsPerSecond + Int(attoseconds / (1_000_000_000_000_000_000 / Int64(Meter.slotsPerSecond)))
        }

        func record(bytes: Int) {
            let index = slotIndex(.now)
            state.withLock { state in
                state.totalMessages += 1
                state.totalBytes += bytes
                if let last = state.slots.indices.last, state.slots[last].index == index {
                    state.slots[last].messages += 1
                    state.slots[last].bytes += bytes
                } else {
                    state.slots.append(Slot(index: index, messages: 1, bytes: bytes))
                }
            }
        }

        /// The figures for the last `window` seconds (or since the start, when that is shorter).
        func reading(window: Double) -> Reading {
            let now = ContinuousClock.now
            let current = slotIndex(now)
            let windowSlots = max(1, Int((window * Double(Meter.slotsPerSecond)).rounded()))
            let (seconds, attoseconds) = start.duration(to: now).components
            let elapsed = max(0.001, Double(seconds) + Double(attoseconds) / 1e18)
            let covered = min(Double(windowSlots) / Double(Meter.slotsPerSecond), elapsed)
            return state.withLock { state in
                state.slots.removeAll { $0.index <= current - windowSlots }
                let messages = state.slots.reduce(0) { $0 + $1.messages }
                let bytes = state.slots.reduce(0) { $0 + $1.bytes }
                return Reading(
                    window: covered, messages: messages, bytes: bytes, messagesPerSecond: Double(messages) / covered,
                    bytesPerSecond: Double(bytes) / covered, totalMessages: state.totalMessages,
                    totalBytes: state.totalBytes)
            }
        }
    }
}
