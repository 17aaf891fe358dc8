import Foundation
import Mesh
import Synchronization

/// `mesh speedtest`: two nodes in this process, one sending to the other through the real mesh.
enum SpeedtestCommand {
    /// The result, and its `--json` form.
    struct Result: Encodable {
        var topic: String
        var messages: Int
        var size: Int
        var received: Int
        var lost: Int
        /// From the first send to the last message received.
        var seconds: Double
        var messagesPerSecond: Double
        /// Payload bytes, in millions per second.
        var megabytesPerSecond: Double
    }

    /// What the receiver has seen.
    final class Progress: Sendable {
        private struct State {
            var received = 0
            var bytes = 0
            var last: ContinuousClock.Instant?
        }

        private let state = Mutex(State())

        func record(bytes: Int) {
            let now = ContinuousClock.now
            state.withLock {
                $0.received += 1
                $0.bytes += bytes
                $0.last = now
            }
        }

        var snapshot: (received: Int, bytes: Int, last: ContinuousClock.Instant?) {
            state.withLock { ($0.received, $0.bytes, $0.last) }
        }
    }

    static func run(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let messages = try arguments.integer("--messages", in: 1...100_000_000) ?? 100_000
        let size = try arguments.integer("--size", in: 0...(8 << 20)) ?? 64
        let topic = "mesh-speedtest-" + String(format: "%08x", UInt32.random(in: 0...UInt32.max))
        let receiver = try await context.node(named: "mesh-speedtest-receiver")
        let sender: MeshNode
        do {
            sender = try await context.node(named: "mesh-speedtest-sender")
        } catch {
            await receiver.close()
            throw error
        }
        let closeBoth: @Sendable () async -> Void = {
            await sender.close()
            await receiver.close()
        }
        let result: Result?
        do {
            let progress = Progress()
            try await receiver.listen(topic, as: Data.self) { (_: String, payload: Data) in
                progress.record(bytes: payload.count)
            }
            try await sender.waitForListener(topic, timeout: context.timeout)
            result = try await runUntilSignal(onSignal: closeBoth) {
                try await measure(sender: sender, topic: topic, messages: messages, size: size, progress: progress)
            }
        } catch {
            await closeBoth()
            throw error
        }
        await closeBoth()
        guard let result else { return }
        if arguments.has("--json") {
            print(Format.json(result))
            return
        }
        print(
            Format.columns([
                ["messages:", "\(result.messages) of \(result.size) bytes on \(result.topic)"],
                ["received:", "\(result.received) (\(result.lost) lost)"],
                ["time:", Format.fixed(result.seconds, decimals: 3) + " s"],
                ["rate:", Format.fixed(result.messagesPerSecond, decimals: 0) + " msgs/s"],
                ["throughput:", Format.fixed(result.megabytesPerSecond, decimals: 2) + " MB/s"],
            ]))
        if result.lost > 0 { throw CommandLineError.failed("\(result.lost) of \(result.messages) message(s) were lost") }
    }

    /// Sends everything, then waits until all arrived or nothing has arrived for 3 s.
    private static func measure(sender: MeshNode, topic: String, messages: Int, size: Int, progress: Progress)
        async throws -> Result
    {
        let payload = Data(count: size)
        let start = ContinuousClock.now
        for _ in 0..<messages { try await sender.send(topic, payload) }
        var lastCount = -1
        var lastChange = ContinuousClock.now
        while true {
            let seen = progress.snapshot.received
            if seen >= messages { break }
            if seen != lastCount {
                lastCount = seen
                lastChange = .now
            } else if lastChange.duration(to: .now) > .seconds(3) {
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let (received, bytes, last) = progress.snapshot
        let elapsed = max(1e-9, seconds(start.duration(to: last ?? .now)))
        return Result(
            topic: topic, messages: messages, size: size, received: received, lost: messages - received, seconds: elapsed,
            messagesPerSecond: Double(received) / elapsed, megabytesPerSecond: Double(bytes) / elapsed / 1e6)
    }

    private static func seconds(_ duration: Duration) -> Double {
        let (whole, attoseconds) = duration.components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
