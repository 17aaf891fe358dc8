import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshTooling

/// The job numbers a `demo-worker` printed ("worker PID got job N").
func jobsPrinted(by worker: ChildProcess) -> [Int] {
    worker.output.split(separator: "\n").compactMap { line -> Int? in
        guard let range = line.range(of: "got job ") else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }
}

extension ResilienceTests {
    /// Nodes that crash, freeze or restart: the coordinator forgets them in time, senders stop
    /// using them, and nothing they could not deliver goes uncounted.
    @Suite("Node failure", .serialized)
    struct NodeFailureTests {
        @Test("a SIGKILLed worker leaves the topology within 3 s and later jobs all reach the survivor")
        func killedNodeDisappears() async throws {
            try await withMesh { mesh in
                let processes = ProcessBag()
                defer { processes.terminateAll() }
                let environment = ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": ""]
                let doomed = try processes.start("demo-worker", environment: environment)
                let survivor = try processes.start("demo-worker", environment: environment)
                try await doomed.waitForOutput("ready")
                try await survivor.waitForOutput("ready")
                let observer = try await mesh.node("observer")
                try await observer.waitForNodes(named: "worker", count: 2, timeout: .seconds(5))
                // Open a connection to each worker first, so the kill hits a live route.
                for job in 1...2 { try await observer.send("jobs", ["job": job]) }
                try await eventually("both warm-up jobs") { jobsPrinted(by: doomed).count + jobsPrinted(by: survivor).count == 2 }

                let doomedPID = doomed.pid
                doomed.signal(SIGKILL)
                let removal = try await timeUntil("the killed worker to leave the observer's topology", seconds: 6) {
                    await !observer.currentTopology.nodes.values.contains { $0.pid == doomedPID }
                }
                print("SIGKILL: worker removed from a peer's topology after \(secondsText(removal))")
                #expect(removal < .seconds(3))
                #expect(await mesh.coordinator.topology.nodes(named: "worker").map(\.pid) == [survivor.pid])

                let before = await observer.statistics
                for job in 100..<110 { try await observer.send("jobs", ["job": job]) }
                try await eventually("the survivor to get all ten later jobs", seconds: 5) {
                    jobsPrinted(by: survivor).filter { $0 >= 100 }.count == 10
                }
                let after = await observer.statistics
                #expect(after.messagesDropped == before.messagesDropped, "jobs were still routed to the dead worker")
                #expect(after.messagesUnrouted == before.messagesUnrouted)
            }
        }

        @Test("pool of 3, one SIGKILLed: jobs sent to it before its removal are counted as dropped, later jobs reach the 2 live members")
        func poolMemberKilled() async throws {
            let (coordinator, address) = try await startCoordinatorProcess()
            let processes = ProcessBag()
            defer {
                coordinator.signal(SIGCONT)
                coordinator.terminate()
                processes.terminateAll()
            }
            let environment = ["MESH_COORDINATOR": address, "MESH_AUTHKEY": ""]
            var workers: [ChildProcess] = []
            for _ in 0..<3 {
                let worker = try processes.start("demo-worker", environment: environment)
                try await worker.waitForOutput("ready")
                workers.append(worker)
            }
            let pool = workers
            let logs = LogCapture()
            let dispatcher = try await buildMeshNode(
                name: "dispatcher",
                configuration: MeshNode.Configuration(
                    coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: logs.logger("dispatcher")))
            try await dispatcher.waitForNodes(named: "worker", count: 3, timeout: .seconds(5))
            var job = 0
            for _ in 0..<30 {
                job += 1
                try await dispatcher.send("jobs", ["job": job])
            }
            try await eventually("30 warm-up jobs", seconds: 10) { pool.map { jobsPrinted(by: $0).count }.reduce(0, +) == 30 }

            // Freeze the coordinator so the dispatcher keeps the dead member in its topology for
            // a while (no longer than 1.6 s, well inside the 3 s heartbeat timeout of the others),
            // then kill a worker and wait until it has exited, so no job can be in its socket.
            let victim = workers[0]
            coordinator.signal(SIGSTOP)
            victim.signal(SIGKILL)
            _ = try await victim.waitForExit(seconds: 5)
            try await Task.sleep(for: .milliseconds(200))
            for _ in 0..<30 {
                job += 1
                try await dispatcher.send("jobs", ["job": job])
                try await Task.sleep(for: .milliseconds(40))
            }
            coordinator.signal(SIGCONT)
            let update = try await timeUntil("the dispatcher to see two workers", seconds: 5) {
                await dispatcher.currentTopology.nodes(named: "worker").count == 2
            }
            print("pool: dead member left the dispatcher's topology \(secondsText(update)) after the coordinator resumed")
            let droppedBeforeRemoval = await dispatcher.statistics.messagesDropped

            let firstAfterUpdate = job + 1
            for _ in 0..<60 {
                job += 1
                try await dispatcher.send("jobs", ["job": job])
            }
            let sent = job
            let live = Array(workers[1...])
            do {
                try await eventually("every job delivered or counted as dropped", seconds: 10) {
                    let delivered = pool.map { jobsPrinted(by: $0).count }.reduce(0, +)
                    return await delivered + dispatcher.statistics.messagesDropped >= sent
                }
            } catch {}
            let delivered = pool.map { jobsPrinted(by: $0).count }.reduce(0, +)
            let statistics = await dispatcher.statistics
            print("pool: sent \(sent), delivered \(delivered), dropped \(statistics.messagesDropped) (\(droppedBeforeRemoval) before the removal)")
            #expect(sent == delivered + statistics.messagesDropped, "a job was neither delivered nor counted as dropped")
            #expect(droppedBeforeRemoval >= 1, "no job was tried on the dead member before its removal")
            #expect(statistics.messagesDropped == droppedBeforeRemoval, "jobs were dropped after the topology update")
            let late = live.map { jobsPrinted(by: $0).filter { $0 >= firstAfterUpdate } }
            #expect(late.map(\.count) == [30, 30], "jobs after the update should alternate between the 2 live members")
            #expect(Set(late.joined()) == Set(firstAfterUpdate...sent))
            #expect(!jobsPrinted(by: victim).contains { $0 > 30 })
            let warnings = logs.lines(level: .warning, label: "dispatcher")
            #expect(warnings.contains { $0.contains("dropped") }, "the dispatcher did not log its dropped job(s): \(warnings)")
            await dispatcher.close()
        }

        @Test("a frozen (SIGSTOPped, half-open) worker is evicted by heartbeat within ~3.5 s and rejoins when it resumes")
        func halfOpenNodeEvicted() async throws {
            try await withMesh { mesh in
                let processes = ProcessBag()
                defer { processes.terminateAll() }
                let environment = ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": ""]
                let frozen = try processes.start("demo-worker", environment: environment)
                let steady = try processes.start("demo-worker", environment: environment)
                try await frozen.waitForOutput("ready")
                try await steady.waitForOutput("ready")
                let observer = try await mesh.node("observer")
                try await observer.waitForNodes(named: "worker", count: 2, timeout: .seconds(5))
                let frozenPID = frozen.pid
                let coordinator = mesh.coordinator

                frozen.signal(SIGSTOP)
                defer { frozen.signal(SIGCONT) }
                let eviction = try await timeUntil("the frozen worker to be evicted", seconds: 8) {
                    await !coordinator.topology.nodes.values.contains { $0.pid == frozenPID }
                }
                print("half-open: frozen worker evicted \(secondsText(eviction)) after SIGSTOP")
                #expect(eviction < .milliseconds(4000), "eviction took \(secondsText(eviction)); heartbeat timeout is 3 s")
                #expect(eviction > .milliseconds(1900), "evicted suspiciously early: \(secondsText(eviction))")
                // The other members are untouched, and the mesh still works meanwhile.
                #expect(await coordinator.topology.nodes.values.contains { $0.pid == steady.pid })
                try await eventually("the observer to drop the frozen worker", seconds: 2) {
                    await observer.currentTopology.nodes(named: "worker").count == 1
                }
                for job in 1...3 { try await observer.send("jobs", ["job": job]) }
                try await eventually("the steady worker to take all 3 jobs") { jobsPrinted(by: steady).count == 3 }
                let late = try await mesh.node("latecomer")
                await late.close()

                frozen.signal(SIGCONT)
                let rejoin = try await timeUntil("the resumed worker to register again", seconds: 6) {
                    await coordinator.topology.nodes.values.contains { $0.pid == frozenPID }
                }
                print("half-open: resumed worker registered again \(secondsText(rejoin)) after SIGCONT")
                try await observer.waitForNodes(named: "worker", count: 2, timeout: .seconds(3))
                for job in 10..<14 { try await observer.send("jobs", ["job": job]) }
                try await eventually("the resumed worker to get jobs again", seconds: 5) {
                    jobsPrinted(by: frozen).filter { $0 >= 10 }.count == 2 && jobsPrinted(by: steady).filter { $0 >= 10 }.count == 2
                }
            }
        }

        @Test("a restarted worker (same name) rejoins as a new member; the other members stay")
        func restartedWorkerRejoins() async throws {
            try await withMesh { mesh in
                let processes = ProcessBag()
                defer { processes.terminateAll() }
                let environment = ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": ""]
                var workers: [ChildProcess] = []
                for _ in 0..<3 {
                    let worker = try processes.start("demo-worker", environment: environment)
                    try await worker.waitForOutput("ready")
                    workers.append(worker)
                }
                let coordinator = mesh.coordinator
                try await eventually("three workers", seconds: 5) { await coordinator.topology.nodes(named: "worker").count == 3 }
                let before = await coordinator.topology.nodes(named: "worker")
                let idOf = Dictionary(uniqueKeysWithValues: before.map { ($0.pid!, $0.id) })
                let stayers = workers[1...].map { idOf[$0.pid]! }

                workers[0].signal(SIGKILL)
                try await eventually("the killed worker to leave", seconds: 3) {
                    await coordinator.topology.nodes(named: "worker").count == 2
                }
                let replacement = try processes.start("demo-worker", environment: environment)
                try await replacement.waitForOutput("ready")
                let after = await coordinator.topology.nodes(named: "worker")
                #expect(after.count == 3)
                let newID = after.first { $0.pid == replacement.pid }?.id
                #expect(newID != nil)
                #expect(newID.map { !idOf.values.contains($0) } ?? false, "the restarted worker reused an old id")
                #expect(Set(stayers).isSubset(of: Set(after.map(\.id))), "a pool member was evicted by the newcomer")

                let observer = try await mesh.node("observer")
                try await observer.waitForNodes(named: "worker", count: 3, timeout: .seconds(5))
                for job in 1...6 { try await observer.send("jobs", ["job": job]) }
                let serving = [workers[1], workers[2], replacement]
                try await eventually("six jobs, two per worker", seconds: 5) {
                    serving.map { jobsPrinted(by: $0).count } == [2, 2, 2]
                }
            }
        }
    }
}
