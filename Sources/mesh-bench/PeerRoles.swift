import Foundation
import Mesh
import Synchronization

/// The four client roles of `../shared/peers/peers.py` (`mesh-bench peer sub|pub|pong|ping ...`),
/// written against the public API as a user would: `listen` with a closure, `send`,
/// `waitForListener`. With a coordinator running and `MESH_COORDINATOR` set:
///
///     python3 ../shared/peers/peers.py --reps 3 --client ".build/release/mesh-bench peer"
///
/// puts swift-mesh beside ZeroMQ, SwiftNIO and raw TCP in one run.
enum PeerRoles {
    static let usage = """
        usage: mesh-bench peer sub N SIZE | pub NSUBS N SIZE | pong | ping WARM N SIZE
        (the roles ../shared/peers/peers.py expects; MESH_COORDINATOR names the coordinator)
        """

    static func run(_ arguments: [String]) async throws {
        func number(_ index: Int) throws -> Int {
            guard index < arguments.count, let value = Int(arguments[index]), value >= 0 else {
                throw BenchFailure.usage(usage)
            }
            return value
        }
        switch arguments.first {
        case "sub": try await subscriber(count: try number(1), size: try number(2))
        case "pub": try await publisher(subscribers: try number(1), count: try number(2), size: try number(3))
        case "pong": try await ponger()
        case "ping": try await pinger(warmUp: try number(1), count: try number(2), size: try number(3))
        default: throw BenchFailure.usage(usage)
        }
    }

    /// A node of its own name (distinct names: each subscriber gets every message).
    private static func node(_ role: String) async throws -> MeshNode {
        try await buildMeshNode(
            name: "peer-\(role)-\(ProcessInfo.processInfo.processIdentifier)",
            configuration: MeshNode.Configuration(logger: MeshLogger(label: role, level: .warning)))
    }

    /// What a subscriber has seen, updated by its listener.
    private struct Tally {
        var count = 0
        var bytes = 0
        var first: UInt64 = 0
        var last: UInt64 = 0
        var highest: UInt64 = 0
    }

    static func subscriber(count: Int, size: Int) async throws {
        let node = try await node("sub")
        let tally = Mutex(Tally())
        @Sendable func sequence(_ payload: Data) -> UInt64 {
            payload.count >= 8 ? UInt64(littleEndian: payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) : 0
        }
        // MESH_PEER_LISTENER=batch takes the messages with `listenBatches`, one call per read, for a
        // second, labelled row beside the plain `listen`.
        if ProcessInfo.processInfo.environment["MESH_PEER_LISTENER"] == "batch" {
            try await node.listenBatches("bench", as: Data.self) { (_: String, payloads: [Data]) in
                let now = monotonicNanos()
                let bytes = payloads.reduce(0) { $0 + $1.count }
                let highest = payloads.reduce(0) { max($0, sequence($1)) }
                tally.withLock { tally in
                    if tally.count == 0 { tally.first = now }
                    tally.count += payloads.count
                    tally.bytes += bytes
                    tally.last = now
                    tally.highest = max(tally.highest, highest)
                }
            }
        } else {
            try await node.listen("bench") { (_: String, payload: Data) in
                let now = monotonicNanos()
                let number = sequence(payload)
                tally.withLock { tally in
                    if tally.count == 0 { tally.first = now }
                    tally.count += 1
                    tally.bytes += payload.count
                    tally.last = now
                    tally.highest = max(tally.highest, number)
                }
            }
        }
        emit("READY")
        var lastCount = -1
        var quietSince = ContinuousClock.now
        while true {
            try await Task.sleep(for: .milliseconds(20))
            let seen = tally.withLock { $0.count }
            if seen >= count { break }
            if seen != lastCount {
                lastCount = seen
                quietSince = .now
            } else if quietSince.duration(to: .now) > (seen > 0 ? .seconds(3) : .seconds(30)) {
                break  // 3 s of silence once messages flowed (30 s for the first one)
            }
        }
        let result = tally.withLock { $0 }
        emit(
            "RESULT count=\(result.count) lost=\(max(0, count - result.count)) first_ns=\(result.first) last_ns=\(result.last) bytes=\(result.bytes)")
        await node.close()
    }

    static func publisher(subscribers: Int, count: Int, size: Int) async throws {
        let node = try await node("pub")
        try await node.waitForListener("bench", count: subscribers, timeout: .seconds(30))
        var payload = Data(count: max(size, 8))
        for sequence in 0..<count {
            payload.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(sequence).littleEndian, as: UInt64.self) }
            try await node.send("bench", payload)
        }
        await node.close()
    }

    static func ponger() async throws {
        let node = try await node("pong")
        try await node.listen("ping") { (_: String, payload: Data) in
            try? await node.send("pong", payload)
        }
        emit("READY")
        try await forever()
    }

    static func pinger(warmUp: Int, count: Int, size: Int) async throws {
        let node = try await node("ping")
        let replies = try await node.messages("pong", as: Data.self)
        try await node.waitForListener("ping", timeout: .seconds(30))
        // The ponger answers on "pong", which it can send to once this node's listen reached it.
        try await Task.sleep(for: .milliseconds(200))
        let payload = Data(count: max(size, 8))
        var iterator = replies.makeAsyncIterator()
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        // The asker is a plain user program: it awaits its replies on the cooperative pool.
        // MESH_PEER_PING_ON_LOOP=1 runs it on the node's loop executor instead, for a second,
        // labelled row.
        let onLoop = ProcessInfo.processInfo.environment["MESH_PEER_PING_ON_LOOP"] == "1"
        try await withTaskExecutorPreference(onLoop ? node.loopExecutor : nil) {
            for round in 0..<(warmUp + count) {
                let start = monotonicNanos()
                try await node.send("ping", payload)
                guard try await iterator.next() != nil else { throw BenchFailure.run("the pong stream ended") }
                if round >= warmUp { samples.append(monotonicNanos() - start) }
            }
        }
        let (p50, p90, p99) = Percentiles.microseconds(samples)
        let microseconds = samples.map { Double($0) / 1000 }
        let mean = microseconds.reduce(0, +) / Double(max(1, microseconds.count))
        emit(
            "RESULT n=\(count) p50_us=\(p50) p90_us=\(p90) p99_us=\(p99) mean_us=\(mean) min_us=\(microseconds.min() ?? 0) max_us=\(microseconds.max() ?? 0)")
        await node.close()
    }
}
