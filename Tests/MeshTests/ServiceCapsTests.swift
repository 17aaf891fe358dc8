import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// The request and response of demo-service's `add`.
private struct AddRequest: Codable, Sendable {
    var a: Int
    var b: Int
}

private struct AddResponse: Codable, Sendable {
    var sum: Int
}

extension ResilienceTests.ServiceFailureTests {
    /// Issue #22 item 5: one caller sends 24 requests of 8 MiB and 64 slow ones to a provider in
    /// its own process. Before, every handler slot was shared by all callers and running
    /// requests were not counted: the provider grew by over 200 MB and an honest `add` timed
    /// out. Now one caller holds at most its share of the slots and bytes, the excess is
    /// answered "busy" at once, and the honest call is answered.
    @Test("one caller's 24 x 8 MiB + 64 slow requests: the excess is refused busy, an honest call succeeds, the provider's RSS stays bounded")
    func oneCallerCannotStarveOthers() async throws {
        try await withMesh { mesh in
            let processes = ProcessBag()
            defer { processes.terminateAll() }
            let provider = try processes.start("demo-service", environment: ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": ""])
            try await provider.waitForOutput("ready")
            let attacker = try await mesh.node("attacker")
            let honest = try await mesh.node("honest")
            try await attacker.waitForService("wait", timeout: .seconds(10))
            try await honest.waitForService("add", timeout: .seconds(10))
            let warm: AddResponse = try await honest.call("add", AddRequest(a: 1, b: 2), timeout: .seconds(10))
            #expect(warm.sum == 3)
            #expect(try await attacker.call("wait", 0, as: Int.self, timeout: .seconds(10)) == 0)
            let baseline = residentMemoryBytes(pid: provider.pid)
            let peak = Mutex(baseline)
            let sampler = Task {
                while !Task.isCancelled {
                    let now = residentMemoryBytes(pid: provider.pid)
                    peak.withLock { $0 = max($0, now) }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            defer { sampler.cancel() }

            // 64 slow requests, then 24 of 8 MiB, all at once from one caller.
            let slow = (0..<64).map { _ in
                Task { try? await attacker.call("wait", 30_000, as: Int.self, timeout: .seconds(60)) }
            }
            defer { for task in slow { task.cancel() } }
            try await eventually("the provider to start slow handlers", seconds: 20) {
                provider.output.components(separatedBy: "wait(30000)").count - 1 >= 16
            }
            let outcomes = Collector<String>()
            let big = Data(count: 8 << 20)
            let large = (0..<24).map { _ in
                Task {
                    do {
                        _ = try await attacker.call("wait", big, as: Int.self, timeout: .seconds(60))
                        outcomes.append("answered")
                    } catch MeshError.service(.busy(_, _, let reason)) {
                        outcomes.append("busy: " + reason)
                    } catch {
                        outcomes.append("other: \(error)")
                    }
                }
            }
            defer { for task in large { task.cancel() } }
            _ = try await outcomes.wait(for: 22, seconds: 60)
            let busy = outcomes.values.filter { $0.hasPrefix("busy: ") }
            #expect(busy.count >= 22, "\(outcomes.values.map { $0.prefix(160) })")
            #expect(busy.allSatisfy { $0.contains("per caller") }, "\(busy.first ?? "")")

            // The honest caller, while the attacker's slow requests still hold their slots.
            let started = ContinuousClock.now
            let answer: AddResponse = try await honest.call("add", AddRequest(a: 2, b: 3), timeout: .seconds(5))
            let took = started.duration(to: .now)
            #expect(answer.sum == 5)
            #expect(provider.output.components(separatedBy: "wait(30000)").count - 1 <= 16, "one caller ran more than its 16 handlers")
            // One last sample now, rather than waiting for the sampler's next ones.
            let last = residentMemoryBytes(pid: provider.pid)
            peak.withLock { $0 = max($0, last) }
            let grown = peak.withLock { $0 } - baseline
            print(
                "service attack (24 x 8 MiB + 64 slow, one caller): \(busy.count) refused busy, honest add answered in \(secondsText(took));"
                    + " provider RSS \(mebibytes(baseline)) -> peak \(mebibytes(baseline + grown)) (+\(mebibytes(grown)); before the caps: +217 MB)")
            #expect(grown < 96 << 20, "the provider grew by \(mebibytes(grown))")
            await attacker.close()
        }
    }
}
