import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// What sessions that ask and never read, or follow without end, can cost the coordinator: at
/// most one unsent copy each, a budget for all queues together, a cap on all interests together;
/// and an honest node still joins.
@Suite("Coordinator reply and interest limits", .serialized)
struct ReplyLimitsTests {
    // MARK: The budget, as a value

    static let t0 = ContinuousClock.now

    @Test("within the limit nothing is closed; past it, the session behind longest goes first, then the fullest")
    func budgetOrder() {
        var budget = ReplyBudget(limit: 100)
        budget.queued(60)
        #expect(budget.fits(40) && !budget.fits(41))
        let backlogs = [
            ReplyBudget.Backlog(session: 1, bytes: 30, since: Self.t0 + .seconds(2)),
            ReplyBudget.Backlog(session: 2, bytes: 20, since: Self.t0),
            ReplyBudget.Backlog(session: 3, bytes: 40, since: Self.t0 + .seconds(2)),
        ]
        // 90 queued and 10 coming fit; what was written since the last count no longer counts.
        #expect(budget.recount(backlogs, incoming: 10).isEmpty)
        #expect(budget.estimate == 90)
        // 30 coming: the oldest backlog (2) makes room enough.
        #expect(budget.recount(backlogs, incoming: 30) == [2])
        #expect(budget.estimate == 70)
        // 31: the oldest is not enough, then the fuller of the two equal ages (3).
        #expect(budget.recount(backlogs, incoming: 31) == [2, 3])
        #expect(budget.estimate == 30)
        // The session the reply is for is never chosen; if the others are not enough, all go.
        #expect(budget.recount(backlogs, incoming: 95, sparing: 1) == [2, 3])
        #expect(budget.recount([], incoming: 500).isEmpty)
    }

    // MARK: Sessions that ask and never read

    /// Registers `count` nodes with `topics` topics of about 150 bytes each, so that the topology
    /// is large; they stay (heartbeats) until closed.
    static func fillTopology(_ address: String, nodes count: Int, topics: Int) async throws -> [ControlClient] {
        var fillers: [ControlClient] = []
        for node in 0..<count {
            let filler = try ControlClient.connect(to: address, lean: true)
            let names = (0..<topics).map { "filler/\(node)/" + String(repeating: "t", count: 130) + "/\($0)" }
            try await filler.register(name: "filler-\(node)", topics: names, seconds: 30)
            filler.keepAlive()
            fillers.append(filler)
        }
        return fillers
    }

    @Test("four sessions asking for the topology 18 times a second and reading nothing: the coordinator's memory stays put, an honest node joins")
    func syncWithoutReading() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        // A topology of about 7 MB: what a large mesh's copy weighs.
        let fillers = try await Self.fillTopology(address, nodes: 10, topics: 5000)
        defer { for filler in fillers { filler.close() } }
        let before = residentMemoryBytes(pid: coordinator.pid)

        var attackers: [ControlClient] = []
        for _ in 0..<4 {
            let attacker = try ControlClient.connect(to: address, purpose: .inspect, lean: true)
            try await attacker.inspect(seconds: 20)
            attacker.pauseReading()
            attackers.append(attacker)
        }
        defer { for attacker in attackers { attacker.close() } }
        // 18 a second each, under the 20 allowed, for 4 s: 72 copies asked for per session, about
        // 2 GB if each were queued; the old coordinator queued 64 MiB a session before closing it.
        var peak = before
        let start = ContinuousClock.now
        for round in 0..<72 {
            for attacker in attackers { attacker.send(ControlMessage(.sync)) }
            try await Task.sleep(until: start + .milliseconds(56 * (round + 1)), clock: .continuous)
            peak = max(peak, residentMemoryBytes(pid: coordinator.pid))
        }
        let growth = peak - before
        print("sync without reading: coordinator RSS \(mebibytes(before)) before, peak \(mebibytes(peak)) during (+\(mebibytes(growth)))")
        #expect(growth < 96 << 20, "the coordinator grew by \(mebibytes(growth))")
        #expect(attackers.allSatisfy { !$0.isClosed }, "asking within the rate limit is allowed; only the copies wait")

        // A reader that resumes gets what was queued, then one answer for all the requests that
        // waited: a handful of copies for 73 requests. A heartbeat's answer, after them on the
        // same connection, says they have arrived (asked before the topology changes again: a
        // delta would make the coordinator skip that answer).
        let reader = attackers[0]
        reader.pauseReading(false)
        try await eventually("the resumed session's waiting answer", seconds: 20) {
            reader.messages.values.filter { $0.type == .topology }.count >= 3
        }
        let heartbeats = reader.messages.values.filter { $0.type == .heartbeat }.count
        reader.send(ControlMessage(.heartbeat))
        try await eventually("the heartbeat's answer", seconds: 10) {
            reader.messages.values.filter { $0.type == .heartbeat }.count > heartbeats
        }
        let copies = reader.messages.values.filter { $0.type == .topology }.count
        print("sync without reading: the resumed session got \(copies) copies for 73 requests")
        // The kernel's socket buffers on both sides hold a few copies before the coordinator's
        // queue is reached at all, and how many depends on the machine's TCP buffer sizes (6 on
        // one machine, 7 on another); without coalescing it would be 73.
        #expect(copies <= 12, "\(copies) copies for 73 requests")

        // An honest node joins and gets the whole topology (it asks for the full view), with the
        // other three still not reading.
        let honest = try await buildMeshNode(
            name: "honest",
            configuration: .init(
                coordinator: address, listenHost: "127.0.0.1", connectTimeout: .seconds(20), logger: testLogger("honest"), topologyView: .full))
        #expect(await honest.currentTopology.nodes.count == fillers.count + 1)
        await honest.close()
    }

    @Test("past maximumQueuedReplyBytes for all sessions together, the sessions behind longest are closed; the total stays bounded, an honest node joins")
    func budgetForAllSessions() async throws {
        let capture = LogCapture()
        var configuration = RunningCoordinator.testConfiguration(logger: capture.logger("coordinator", level: .warning))
        configuration.maximumQueuedReplyBytes = 16 << 20
        try await withMesh(configuration) { mesh in
            let fillers = try await Self.fillTopology(mesh.address, nodes: 10, topics: 5000)
            defer { for filler in fillers { filler.close() } }
            let copy = await mesh.coordinator.topologyFrame().count
            #expect(copy > 6 << 20, "a copy of \(copy) bytes")

            // Twelve sessions that ask a few times and never read: each has a copy stuck in its
            // queue once the kernel's buffers are full, 12 x 7 MB in all without the budget.
            var attackers: [ControlClient] = []
            for _ in 0..<12 {
                let attacker = try ControlClient.connect(to: mesh.address, purpose: .inspect, lean: true)
                try await attacker.inspect(seconds: 20)
                attacker.pauseReading()
                attackers.append(attacker)
            }
            defer { for attacker in attackers { attacker.close() } }
            var highest = 0
            for _ in 0..<20 {
                for attacker in attackers where !attacker.isClosed { attacker.send(ControlMessage(.sync)) }
                try await Task.sleep(for: .milliseconds(100))
                highest = max(highest, await mesh.coordinator.snapshot().limits.queuedReplyBytes)
            }
            let limits = await mesh.coordinator.snapshot().limits
            #expect(limits.sessionsShed > 0, "nobody was closed: \(limits)")
            #expect(highest <= (16 << 20) + copy, "queued \(highest) bytes against a limit of \(16 << 20)")
            #expect(attackers.contains { $0.isClosed })
            // Logged with the peer and the reason, a few lines a second.
            #expect(capture.all.contains { $0.contains("bytes of replies unread for") && $0.contains("at 127.0.0.1:") })

            let honest = try await mesh.node("honest") {
                $0.connectTimeout = .seconds(20)
                $0.topologyView = .full  // a welcome with every record, under the reply pressure
            }
            #expect(await honest.currentTopology.nodes.count == fillers.count + 1)
        }
    }

    // MARK: Interests of all partial views together

    @Test("interests of all partial views together stop at maximumInterests: register and interest past it are rejected with the reason; leaving frees them")
    func interestsInAll() async throws {
        let capture = LogCapture()
        var configuration = RunningCoordinator.testConfiguration(logger: capture.logger("coordinator", level: .warning))
        configuration.maximumInterests = 30_000
        try await withMesh(configuration) { mesh in
            func topics(_ session: Int, _ count: Int) -> Set<String> { Set((0..<count).map { "s\(session)/topic/\($0)" }) }
            var followers: [ControlClient] = []
            for session in 0..<3 {
                let follower = try ControlClient.connect(to: mesh.address, lean: true)
                try await follower.register(
                    name: "follower-\(session)", view: .partial, interest: ViewInterest(topics: topics(session, 10_000)))
                follower.keepAlive()
                followers.append(follower)
            }
            #expect(await mesh.coordinator.snapshot().limits.interests == 30_000)

            // A fourth that asks for as much at register is turned away, saying why.
            let fourth = try ControlClient.connect(to: mesh.address, lean: true)
            await #expect(throws: (any Error).self) {
                try await fourth.register(name: "follower-3", view: .partial, interest: ViewInterest(topics: topics(3, 10_000)))
            }
            let reason = "register: the coordinator's partial views already follow the most topics, services, names and ids it"
                + " keeps for all nodes together (30000, maximumInterests); register with the full view, or follow less"
            #expect(fourth.rejection == reason)
            // One with a small interest joins, and is turned away when it asks for more than is left.
            let small = try ControlClient.connect(to: mesh.address, lean: true)
            try await small.register(name: "small", view: .partial, interest: ViewInterest())
            small.send(ControlMessage(.interest, interest: ViewInterest(topics: topics(4, 10))))
            try await eventually("the small session turned away", seconds: 10) { small.rejection != nil }
            #expect(small.rejection?.hasPrefix("interest: the coordinator's partial views already follow the most") == true)
            #expect(capture.all.contains { $0.contains("rejected connection from 127.0.0.1:") && $0.contains("maximumInterests") })

            // One leaves: its 10,000 are free again.
            followers[0].close()
            try await eventually("the leaver's interests released", seconds: 10) {
                await mesh.coordinator.snapshot().limits.interests == 20_000
            }
            let late = try ControlClient.connect(to: mesh.address, lean: true)
            try await late.register(name: "late", view: .partial, interest: ViewInterest(topics: topics(5, 10_000)))
            #expect(await mesh.coordinator.snapshot().limits.interests == 30_000)
            for follower in followers + [late, small, fourth] { follower.close() }
        }
    }
}
