import Foundation
import Mesh
import MeshCoordination
import Synchronization

/// The child processes that use the mesh: a coordinator, senders, receivers, the ping-pong pair
/// and the W6 swarm. Each prints `READY ...` when the parent may go on, then `RESULT {json}`, and
/// then stays alive (its node keeps flushing) until the parent kills it.
enum MeshRoles {
    static func run(_ arguments: RoleArguments) async throws {
        switch arguments.role {
        case "coordinator": try await coordinator()
        case "receiver": try await receiver(arguments)
        case "sender": try await sender(arguments)
        case "pinger": try await pinger(arguments)
        case "ponger": try await ponger(arguments)
        case "swarm": try await swarm(arguments)
        case "fleet": try await FleetRole.run(arguments)
        case "service-provider": try await ServiceRoles.provider(arguments)
        case "service-sequential": try await ServiceRoles.sequential(arguments)
        case "service-pipelined": try await ServiceRoles.pipelined(arguments)
        case "bag-recorder": try await BagBench.recorder(arguments)
        default: throw BenchFailure.usage("unknown role \"\(arguments.role)\"")
        }
    }

    /// Node settings shared by every benchmark node: loopback only, warnings and errors logged.
    static func configuration(_ arguments: RoleArguments, name: String) throws -> MeshNode.Configuration {
        MeshNode.Configuration(
            coordinator: try arguments.string("coordinator"), authkey: benchAuthkey, listenHost: "127.0.0.1",
            logger: MeshLogger(label: name, level: .warning))
    }

    /// The key of the keyed workloads (`w1k` ...), handed down by the parent; `nil` otherwise.
    static var benchAuthkey: String? { ProcessInfo.processInfo.environment["MESH_BENCH_AUTHKEY"] }

    /// Keeps the process (and its node's connections) alive until the parent kills it.
    static func linger() async throws -> Never {
        while true { try await Task.sleep(for: .seconds(3600)) }
    }

    // MARK: Coordinator

    /// A coordinator on 127.0.0.1 with a free port; prints `READY host:port`. Logs warnings, or
    /// what `MESH_BENCH_COORDINATOR_LOG` (a level name) asks for.
    static func coordinator() async throws {
        let level = ProcessInfo.processInfo.environment["MESH_BENCH_COORDINATOR_LOG"].flatMap(MeshLogger.Level.init(name:))
        let coordinator = MeshCoordinator(
            configuration: .init(
                host: "127.0.0.1", port: 0, authkey: benchAuthkey,
                logger: MeshLogger(label: "coordinator", level: level ?? .warning)))
        let address = try await coordinator.start()
        emit("READY \(address)")
        try await coordinator.run()
    }

    // MARK: Throughput

    /// Counts deliveries; the listener calls ``record(bytes:)`` once per message, in order.
    final class DeliveryCounter: Sendable {
        struct State {
            var received = 0
            var bytes = 0
            var first: UInt64 = 0
            var last: UInt64 = 0
            var endedAt: UInt64?
        }

        let state = Mutex(State())

        func record(bytes: Int) {
            let now = monotonicNanos()
            state.withLock { state in
                if state.received == 0 { state.first = now }
                state.received += 1
                state.bytes += bytes
                state.last = now
            }
        }

        func markEnded() {
            let now = monotonicNanos()
            state.withLock { state in
                if state.endedAt == nil { state.endedAt = now }
            }
        }

        var snapshot: State { state.withLock { $0 } }
    }

    /// Listens on the data topic (as `Data` or ``BenchRecord``) and the end topic; prints
    /// `READY`, then `RESULT` once `--count` messages arrived (or, with `--count 0`, once the end
    /// marker did), once the end marker came and `--grace` more seconds passed, or after `--wait`
    /// seconds, whichever is first. What is missing then counts as lost.
    static func receiver(_ arguments: RoleArguments) async throws {
        let name = try arguments.string("name")
        let expected = try arguments.int("count")
        let codable = try arguments.string("payload") == "codable"
        let wait = try arguments.double("wait", default: 60)
        let grace = try arguments.double("grace", default: 0.5)
        let node = try await buildMeshNode(name: name, configuration: configuration(arguments, name: name))
        let counter = DeliveryCounter()
        if codable {
            try await node.listen(BenchTopic.data, as: BenchRecord.self) { _, record in
                counter.record(bytes: record.label.utf8.count)
            }
        } else {
            try await node.listen(BenchTopic.data, as: Data.self) { _, payload in
                counter.record(bytes: payload.count)
            }
        }
        try await node.listen(BenchTopic.end, as: Data.self) { _, _ in counter.markEnded() }
        emit("READY")

        let started = monotonicNanos()
        while true {
            let now = monotonicNanos()
            let state = counter.snapshot
            if expected > 0, state.received >= expected { break }
            if let ended = state.endedAt, expected == 0 || Double(now - ended) / 1e9 >= grace { break }
            if Double(now - started) / 1e9 >= wait { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        let state = counter.snapshot
        emitResult(
            ChildResult(received: state.received, bytes: state.bytes, firstNanos: state.first, lastNanos: state.last))
        try await linger()
    }

    /// Waits for `--members` nodes of each name in `--names` (comma-separated), sends `--count` messages of `--size` bytes (or ``BenchRecord``s) in a tight loop,
    /// then `--markers` end markers; prints `RESULT` with its send times.
    static func sender(_ arguments: RoleArguments) async throws {
        let count = try arguments.int("count")
        let size = try arguments.int("size", default: 64)
        let codable = try arguments.string("payload") == "codable"
        let markers = try arguments.int("markers", default: 1)
        let node = try await buildMeshNode(name: "sender", configuration: configuration(arguments, name: "sender"))
        try await node.waitForListener(BenchTopic.data, timeout: .seconds(10))
        let members = try arguments.int("members", default: 1)
        for name in try arguments.string("names").split(separator: ",") {
            try await node.waitForNodes(named: String(name), count: members, timeout: .seconds(10))
        }

        let first = monotonicNanos()
        if codable {
            for seq in 0..<count { try await node.send(BenchTopic.data, BenchRecord.sample(seq)) }
        } else {
            let payload = Data(repeating: 0xA5, count: size)
            for _ in 0..<count { try await node.send(BenchTopic.data, payload) }
        }
        let last = monotonicNanos()
        for _ in 0..<markers { try await node.send(BenchTopic.end, Data([1])) }
        let dropped = await node.statistics.messagesDropped
        emitResult(ChildResult(sentFirstNanos: first, sentLastNanos: last, dropped: dropped))
        try await linger()
    }

    // MARK: Latency

    /// Answers every ping with a pong of the same bytes; prints `READY` once listening.
    static func ponger(_ arguments: RoleArguments) async throws {
        let node = try await buildMeshNode(name: "ponger", configuration: configuration(arguments, name: "ponger"))
        let pings = try await node.messages(BenchTopic.ping, as: Data.self)
        emit("READY")
        var pingerListens = false
        for try await ping in pings {
            if !pingerListens {
                // The pinger's listen may reach this node's topology just after its first ping.
                try await node.waitForListener(BenchTopic.pong, timeout: .seconds(10))
                pingerListens = true
            }
            try await node.send(BenchTopic.pong, ping.value)
        }
    }

    /// Sends `--warmup` then `--count` pings of `--size` bytes, one at a time, each awaiting its
    /// pong; prints the round-trip percentiles of the counted ones.
    static func pinger(_ arguments: RoleArguments) async throws {
        let warmup = try arguments.int("warmup")
        let count = try arguments.int("count")
        let size = try arguments.int("size", default: 64)
        let node = try await buildMeshNode(name: "pinger", configuration: configuration(arguments, name: "pinger"))
        let pongs = try await node.messages(BenchTopic.pong, as: Data.self)
        try await node.waitForListener(BenchTopic.ping, timeout: .seconds(10))
        let payload = Data(repeating: 0x5A, count: size)
        var replies = pongs.makeAsyncIterator()
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for round in 0..<(warmup + count) {
            let start = monotonicNanos()
            try await node.send(BenchTopic.ping, payload)
            guard try await replies.next() != nil else { throw BenchFailure.usage("the pong stream ended") }
            if round >= warmup { samples.append(monotonicNanos() - start) }
        }
        let (p50, p90, p99) = Percentiles.microseconds(samples)
        emitResult(ChildResult(p50: p50, p90: p90, p99: p99))
        try await linger()
    }

    // MARK: Join

    /// Builds `--nodes` nodes in this process, all at once; each listens on its own topic, waits
    /// for a listener on the next node's topic (node i sends to node i+1 mod N), and sends it one
    /// message. Reports how long until every node joined and all N messages were delivered, and
    /// how many times the nodes had to register again (0 when no node was evicted or gave up).
    /// The nodes hold the default topology view (`$MESH_TOPOLOGY_VIEW`, else partial); `--view
    /// full` or `--view partial` chooses one.
    static func swarm(_ arguments: RoleArguments) async throws {
        raiseOpenFileLimit()
        let count = try arguments.int("nodes")
        let wait = Duration.seconds(try arguments.double("wait", default: 60))
        var settings = try configuration(arguments, name: "swarm")
        settings.connectTimeout = wait
        if let text = try? arguments.string("view") {
            guard let view = TopologyView.named(text) else {
                throw BenchFailure.run("--view \"\(MeshText.escaped(text))\" names no topology view (full or partial)")
            }
            settings.topologyView = view
        }
        let configuration = settings
        let delivered = DeliveryCount()
        let start = monotonicNanos()
        let nodes = try await withThrowingTaskGroup(of: MeshNode.self) { group in
            for index in 0..<count {
                group.addTask {
                    let node = try await buildMeshNode(name: "swarm", configuration: configuration)
                    try await node.listen("swarm/\(index)") { (_: String, _: Int) in delivered.add() }
                    let next = "swarm/\((index + 1) % count)"
                    try await node.waitForListener(next, timeout: wait)
                    try await node.send(next, index)
                    return node
                }
            }
            var nodes: [MeshNode] = []
            for try await node in group { nodes.append(node) }
            return nodes
        }
        let deadline = ContinuousClock.now + wait
        while delivered.value < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        let elapsed = monotonicNanos() - start
        var reconnects = 0
        var dropped = 0
        for node in nodes {
            let statistics = await node.statistics
            reconnects += statistics.coordinatorReconnects
            dropped += statistics.messagesDropped + statistics.messagesUnrouted
        }
        emitResult(
            ChildResult(
                received: delivered.value, dropped: dropped, elapsedNanos: elapsed, reconnects: reconnects))
        try await linger()
    }
}

/// A count shared by many listeners.
final class DeliveryCount: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

/// Round-trip percentiles by the nearest-rank method.
enum Percentiles {
    /// - Returns: p50, p90 and p99 of `samples` (nanoseconds) in microseconds.
    static func microseconds(_ samples: [UInt64]) -> (Double, Double, Double) {
        let sorted = samples.sorted()
        guard !sorted.isEmpty else { return (0, 0, 0) }
        func rank(_ percent: Double) -> Double {
            let index = min(sorted.count - 1, max(0, Int((percent / 100 * Double(sorted.count)).rounded(.up)) - 1))
            return Double(sorted[index]) / 1000
        }
        return (rank(50), rank(90), rank(99))
    }
}
