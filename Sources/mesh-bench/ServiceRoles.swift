import Foundation
import Mesh
import Synchronization

/// The child processes of W7 and W8: a provider answering each call with its request's bytes,
/// and a caller making sequential (W7) or pipelined (W8) calls.
enum ServiceRoles {
    static let service = "bench.echo"

    /// Provides ``service`` (a `Data` echo); prints `READY` once the coordinator has recorded it.
    static func provider(_ arguments: RoleArguments) async throws {
        var configuration = try MeshRoles.configuration(arguments, name: "provider")
        configuration.maximumConcurrentRequests = try arguments.int("concurrency", default: 64)
        let node = try await buildMeshNode(name: "provider", configuration: configuration)
        try await node.serve(service) { (request: Data) async throws -> Data in request }
        emit("READY")
        try await MeshRoles.linger()
    }

    /// W7: `--warmup` then `--count` calls of `--size` bytes, one at a time; prints the percentiles.
    static func sequential(_ arguments: RoleArguments) async throws {
        let warmup = try arguments.int("warmup")
        let count = try arguments.int("count")
        let payload = Data(repeating: 0x5A, count: try arguments.int("size", default: 64))
        let node = try await buildMeshNode(name: "caller", configuration: MeshRoles.configuration(arguments, name: "caller"))
        try await node.waitForService(service, timeout: .seconds(10))
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for round in 0..<(warmup + count) {
            let start = monotonicNanos()
            let reply: Data = try await node.call(service, payload, timeout: .seconds(10))
            guard reply.count == payload.count else { throw BenchFailure.run("a reply of \(reply.count) bytes") }
            if round >= warmup { samples.append(monotonicNanos() - start) }
        }
        let (p50, p90, p99) = Percentiles.microseconds(samples)
        emitResult(ChildResult(p50: p50, p90: p90, p99: p99))
        try await MeshRoles.linger()
    }

    /// W8: `--count` calls of `--size` bytes with `--inflight` outstanding at any time (that many
    /// tasks, each calling in a loop); prints how many were answered and how long they took.
    static func pipelined(_ arguments: RoleArguments) async throws {
        let count = try arguments.int("count")
        let inflight = max(1, try arguments.int("inflight", default: 64))
        let payload = Data(repeating: 0x5A, count: try arguments.int("size", default: 64))
        let node = try await buildMeshNode(name: "caller", configuration: MeshRoles.configuration(arguments, name: "caller"))
        try await node.waitForService(service, timeout: .seconds(10))
        // Warm the connection up first.
        for _ in 0..<100 { let _: Data = try await node.call(service, payload, timeout: .seconds(10)) }
        let remaining = Remaining(count)
        let start = monotonicNanos()
        let answered = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<inflight {
                group.addTask {
                    var answered = 0
                    while remaining.take() {
                        let reply: Data = try await node.call(service, payload, timeout: .seconds(30))
                        if reply.count == payload.count { answered += 1 }
                    }
                    return answered
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = monotonicNanos() - start
        emitResult(ChildResult(received: answered, elapsedNanos: elapsed))
        try await MeshRoles.linger()
    }
}

/// Calls left to make, shared by the W8 tasks.
private final class Remaining: Sendable {
    private let count: Atomic<Int>
    init(_ count: Int) { self.count = Atomic(count) }
    /// Takes one; `false` when none is left.
    func take() -> Bool { count.subtract(1, ordering: .relaxed).newValue >= 0 }
}
