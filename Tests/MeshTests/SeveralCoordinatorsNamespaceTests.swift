import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

extension ResilienceTests {
    /// Three coordinators on three "hosts" (network namespaces on a bridge), 20 nodes in four
    /// processes of five (`mesh-bench _role fleet`), every node registered with each coordinator
    /// (PROTOCOL.md §7.2). Skipped where namespaces cannot be made, like NetworkNamespaceTests.
    @Suite("Several coordinators in network namespaces", .serialized)
    struct SeveralCoordinatorsNamespaceTests {
        @Test("kill -9 the coordinator all 20 nodes route by, restart it, then cut one coordinator off with 5 nodes for 10 s and heal: no message lost, every coordinator ends with the same records")
        func failoverAndPartition() async throws {
            let lab = NamespaceLab(roles: ["c1", "c2", "c3", "h4"])
            defer { lab.killProcesses() }
            if let reason = await lab.setUp() {
                print("several-coordinator namespace test skipped: \(reason)")
                await lab.tearDown()
                return
            }
            var failure: (any Error)?
            do {
                try await withDeadline(150) { try await Self.scenario(lab) }
            } catch {
                failure = error
            }
            await lab.tearDown()
            if let failure { throw failure }
        }

        /// The last `STATE` a fleet printed.
        static func state(of fleet: ChildProcess) -> FleetState? {
            guard let line = fleet.standardOutput.split(separator: "\n").last(where: { $0.hasPrefix("STATE ") }) else { return nil }
            return try? JSONDecoder().decode(FleetState.self, from: Data(line.dropFirst(6).utf8))
        }

        struct FleetState: Decodable {
            var routes: [String]
            var sizes: [Int]
            var sent: Int
            var received: Int
            var ordered: Bool
        }

        private static func scenario(_ lab: NamespaceLab) async throws {
            let key = MeshKeyFile.newKey()
            let roles = ["c1", "c2", "c3"]
            let addresses = roles.map { "\(lab.address($0)):6374" }
            let list = addresses.joined(separator: ",")
            let environment = ["MESH_COORDINATOR": list, "MESH_AUTHKEY": key]
            func startCoordinator(_ index: Int) async throws -> ChildProcess {
                let role = roles[index]
                let coordinator = try lab.start(
                    "mesh-coordinator", ["--host", lab.address(role), "--port", "6374"], in: role,
                    environment: ["MESH_AUTHKEY": key])
                try await coordinator.waitForOutput("mesh-coordinator listening on \(addresses[index])")
                return coordinator
            }
            var coordinators: [ChildProcess] = []
            for index in 0..<3 { coordinators.append(try await startCoordinator(index)) }
            @Sendable func status() async throws -> String {
                let run = try lab.start("mesh", ["status"], in: "h4", environment: environment)
                _ = try await run.waitForExit(seconds: 20)
                return run.standardOutput + run.standardError
            }

            // Five nodes on each host; c2's first node receives, h4's first node sends.
            let messages = 15_000  // about 30 s at one every 2 ms: through the kill, the restart and the partition
            var fleets: [String: ChildProcess] = [:]
            for role in ["c1", "c2", "c3", "h4"] {
                var arguments = ["_role", "fleet", "--coordinator", list, "--nodes", "5", "--name", role + "-"]
                if role == "c2" { arguments += ["--listen", "stream"] }
                if role == "h4" { arguments += ["--send", "stream", "--messages", "\(messages)"] }
                fleets[role] = try lab.start("mesh-bench", arguments, in: role, environment: environment)
            }
            for fleet in fleets.values { _ = try await fleet.waitForOutput("READY", seconds: 30) }
            let all = Array(fleets.values)
            func everyNode(_ condition: @escaping @Sendable (String, Int) -> Bool) -> @Sendable () async -> Bool {
                {
                    all.allSatisfy { fleet in
                        guard let state = state(of: fleet) else { return false }
                        return zip(state.routes, state.sizes).allSatisfy { condition($0.0, $0.1) }
                    }
                }
            }
            try await eventually("all 20 nodes to hold 20 records and route by c1", seconds: 30, everyNode { $1 == 20 && $0 == addresses[0] })
            let receiver = fleets["c2"]!
            try await eventually("the stream to flow", seconds: 30) { (state(of: receiver)?.received ?? 0) >= 200 }

            // kill -9 the coordinator every node routes by.
            coordinators[0].signal(SIGKILL)
            _ = try await coordinators[0].waitForExit(seconds: 10)
            let failedOver = try await timeUntil("every node to route by another coordinator", seconds: 15, everyNode { route, _ in
                !route.isEmpty && route != addresses[0]
            })
            print("namespaces, 3 coordinators: all 20 nodes failed over \(secondsText(failedOver)) after kill -9")

            // A node that joins now is seen by all.
            let newcomer = try lab.start(
                "mesh-bench", ["_role", "fleet", "--coordinator", list, "--nodes", "1", "--name", "newcomer"], in: "h4",
                environment: environment)
            _ = try await newcomer.waitForOutput("READY", seconds: 30)
            let seen = try await timeUntil("every node to hold the newcomer", seconds: 15, everyNode { _, size in size == 21 })
            print("namespaces, 3 coordinators: the newcomer was seen by all \(secondsText(seen)) after it was ready")
            let dead = try await status()
            #expect(dead.contains("dead: \(addresses[0])"), "\(dead)")

            // Restarted, it holds the full view again.
            coordinators[0] = try await startCoordinator(0)
            let whole = try await timeUntil("the three coordinators to agree on 21 records", seconds: 30) {
                (try? await status())?.contains("agreement: the 3 live coordinators hold the same 21 record(s)") == true
            }
            print("namespaces, 3 coordinators: the restarted coordinator agreed on all 21 records \(secondsText(whole)) after it listened")

            // Cut c3 off, with its coordinator and its five nodes, for 10 s.
            let port = "p\(lab.hosts.firstIndex { $0.role == "c3" }!)"
            try await lab.ip(["-n", lab.bridge, "link", "set", port, "down"])
            let cutAt = ContinuousClock.now
            let c3 = fleets["c3"]!
            try await eventually("c3's nodes to route by c3, holding only their side", seconds: 20) {
                guard let state = state(of: c3) else { return false }
                return state.routes.allSatisfy { $0 == addresses[2] } && state.sizes.allSatisfy { $0 == 5 }
            }
            let others = all.filter { $0 !== c3 } + [newcomer]
            try await eventually("the other 16 nodes to hold only their side", seconds: 20) {
                others.allSatisfy { state(of: $0)?.sizes.allSatisfy { $0 == 16 } == true }
            }
            // Both sides keep working for the rest of the 10 s: the stream goes on, and c3's side
            // still routes by c3 with its own five. (A duration the scenario asks for: no event to wait on.)
            let beforeHeal = state(of: receiver)?.received ?? 0
            try await Task.sleep(until: max(cutAt + .seconds(10), .now + .seconds(1)))
            #expect((state(of: receiver)?.received ?? 0) > beforeHeal, "the stream stalled during the partition")
            #expect(state(of: c3).map { $0.routes.allSatisfy { $0 == addresses[2] } && $0.sizes.allSatisfy { $0 == 5 } } == true)
            try await lab.ip(["-n", lab.bridge, "link", "set", port, "up"])
            let healed = try await timeUntil("every coordinator to hold the same 21 records after the heal", seconds: 30) {
                (try? await status())?.contains("agreement: the 3 live coordinators hold the same 21 record(s)") == true
            }
            print("namespaces, 3 coordinators: every coordinator held the same 21 records \(secondsText(healed)) after the heal")
            try await eventually("every node to hold 21 records again", seconds: 20, everyNode { _, size in size == 21 })

            // Nothing lost, nothing out of order, through all of it.
            let sender = fleets["h4"]!
            try await eventually("the sender to finish", seconds: 60) { state(of: sender)?.sent == messages }
            try await eventually("the receiver to have every message", seconds: 20) { state(of: receiver)?.received == messages }
            let last = try #require(state(of: receiver))
            #expect(last.ordered, "messages missing, duplicated or reordered")
            #expect(!sender.standardError.contains("sending failed"), "\(sender.standardError)")
        }

        @Test("LAN discovery: a node with nothing configured finds its mesh's coordinator by beacon and joins; a rogue's beacon (another key) and a stranger's (another mesh) are ignored and logged once; so do the tools; with a coordinator on its own host, it uses that one")
        func discovery() async throws {
            let lab = NamespaceLab(roles: ["c1", "rogue", "stranger", "node"])
            defer { lab.killProcesses() }
            if let reason = await lab.setUp() {
                print("discovery namespace test skipped: \(reason)")
                await lab.tearDown()
                return
            }
            var failure: (any Error)?
            do {
                try await withDeadline(60) { try await Self.discoveryScenario(lab) }
            } catch {
                failure = error
            }
            await lab.tearDown()
            if let failure { throw failure }
        }

        private static func discoveryScenario(_ lab: NamespaceLab) async throws {
            let key = MeshKeyFile.newKey()
            let coordinators = [("c1", key, "lab"), ("rogue", MeshKeyFile.newKey(), "lab"), ("stranger", key, "other")]
            for (role, roleKey, mesh) in coordinators {
                let coordinator = try lab.start(
                    "mesh-coordinator", ["--host", lab.address(role), "--port", "6374", "--announce", "--mesh-name", mesh], in: role,
                    environment: ["MESH_AUTHKEY": roleKey])
                try await coordinator.waitForOutput("mesh-coordinator listening on \(lab.address(role)):6374")
                #expect(coordinator.output.contains("announcing mesh \"\(mesh)\""), "\(coordinator.output)")
            }
            let environment = ["MESH_AUTHKEY": key, "MESH_NAME": "lab"]

            // `mesh discover` lists all three, and says which one a node of "lab" would use.
            let discover = try lab.start("mesh", ["discover", "--seconds", "2"], in: "node", environment: environment)
            #expect(try await discover.waitForExit(seconds: 20) == 0, "\(discover.output)")
            let lines = discover.standardOutput.split(separator: "\n")
            let c1 = "\(lab.address("c1")):6374"
            #expect(lines.contains { $0.hasPrefix(c1) && $0.hasSuffix("yes") }, "\(discover.output)")
            #expect(lines.contains { $0.contains(lab.address("rogue")) && $0.contains("bad HMAC") }, "\(discover.output)")
            #expect(lines.contains { $0.contains(lab.address("stranger")) && $0.contains("another mesh") }, "\(discover.output)")

            // A node with nothing configured (no coordinator on its own host) joins the one
            // coordinator of its mesh on the LAN.
            let node = try lab.start("mesh-bench", ["_role", "fleet", "--nodes", "1", "--name", "found"], in: "node", environment: environment)
            let joined = try await timeUntil("the node to find its coordinator and join", seconds: 20) {
                node.standardOutput.contains("READY")
            }
            print("discovery: a node with nothing configured joined \(secondsText(joined)) after it started (it listens 1.5 s)")
            try await eventually("the node to route by c1", seconds: 10) { state(of: node)?.routes == [c1] }
            let ignored = node.standardError.split(separator: "\n").filter { $0.contains("ignored a coordinator beacon") }
            #expect(ignored.filter { $0.contains(lab.address("rogue")) }.count == 1, "\(node.standardError)")
            #expect(ignored.filter { $0.contains(lab.address("stranger")) }.count == 1, "\(node.standardError)")
            #expect(ignored.count == 2, "\(node.standardError)")

            // The tools find it the same way.
            let list = try lab.start("mesh", ["node", "list"], in: "node", environment: environment)
            #expect(try await list.waitForExit(seconds: 20) == 0, "\(list.output)")
            #expect(list.standardOutput.contains("found0"), "\(list.output)")

            // With a coordinator on its own host (127.0.0.1:6374), a node with nothing configured
            // uses that one, without listening to the LAN; the port check that found it is not
            // logged as a refused connection.
            let local = try lab.start(
                "mesh-coordinator", ["--host", "127.0.0.1", "--port", "6374"], in: "node", environment: ["MESH_AUTHKEY": key])
            try await local.waitForOutput("mesh-coordinator listening on 127.0.0.1:6374")
            let homebody = try lab.start("mesh-bench", ["_role", "fleet", "--nodes", "1", "--name", "homebody"], in: "node", environment: environment)
            try await eventually("the node to route by the coordinator on its host", seconds: 20) {
                state(of: homebody)?.routes == [MeshDefaults.coordinatorAddress]
            }
            #expect(!homebody.standardError.contains("ignored a coordinator beacon"), "\(homebody.standardError)")
            #expect(!local.standardError.contains("rejected"), "\(local.standardError)")
        }
    }
}
