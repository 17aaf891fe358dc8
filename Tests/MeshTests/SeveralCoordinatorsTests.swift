import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshTooling

extension ResilienceTests {
    /// A mesh with three coordinators (PROTOCOL.md, "Several coordinators"): every node registers
    /// with each and routes by one; losing any one loses neither a message nor sight of anyone.
    @Suite("Several coordinators", .serialized)
    struct SeveralCoordinatorsTests {
        @Test("kill -9 the coordinator every node routes by: all fail over, a newcomer is seen by all, the stream loses nothing, status names the dead one; restarted, it holds every record again")
        func failover() async throws {
            let coordinators = try await [CoordinatorProcess(), CoordinatorProcess(), CoordinatorProcess()]
            defer { for coordinator in coordinators { coordinator.terminateAll() } }
            let addresses = coordinators.map(\.address)
            let list = addresses.joined(separator: ",")
            let logs = LogCapture()
            func configuration(_ name: String) -> MeshNode.Configuration {
                var configuration = coordinators[0].configuration(name, logger: logs.logger(name))
                configuration.coordinator = list
                return configuration
            }
            func build(_ name: String) async throws -> MeshNode {
                try await buildMeshNode(name: name, configuration: configuration(name))
            }

            let receiver = try await build("receiver")
            let got = Collector<Int>()
            try await receiver.listen("stream") { (_: String, n: Int) in got.append(n) }
            let sender = try await build("sender")
            var members = [receiver, sender]
            for index in 0..<4 { members.append(try await build("member\(index)")) }
            let nodes = members
            try await sender.waitForListener("stream", timeout: .seconds(5))
            // Every coordinator holds every node, and every node routes by the first.
            for address in addresses {
                try await eventually("\(address) to hold the 6 nodes", seconds: 10) {
                    await Self.records(at: address)?.count == 6
                }
            }
            // Under load another coordinator may welcome a node first; the first of the list takes
            // over once it has welcomed it within the build (PROTOCOL.md §7.2), so this is a wait.
            for node in nodes {
                try await eventually("\(node.name) to route by the first coordinator", seconds: 10) {
                    await node.routingCoordinator == addresses[0]
                }
            }

            let control = StreamControl()
            let streamer = Task {
                var n = 0
                while !control.isStopped {
                    try await sender.send("stream", n)
                    n += 1
                    control.didSend(n)
                    try await Task.sleep(for: .milliseconds(2))
                }
            }
            defer { streamer.cancel() }
            _ = try await got.wait(for: 100, seconds: 10)
            // The nodes hold partial views (the default): each follows the name of the node that
            // joins after the kill, so that the coordinators they fail over to send it to them.
            for node in nodes { try await node.need(ViewInterest(names: ["newcomer"])) }

            // kill -9 the coordinator they all use.
            let killed = try #require(coordinators[0].process)
            killed.signal(SIGKILL)
            _ = try await killed.waitForExit(seconds: 5)
            let failedOver = try await timeUntil("every node to route by another coordinator", seconds: 10) {
                for node in nodes {
                    guard let now = await node.routingCoordinator, now != addresses[0] else { return false }
                }
                return true
            }
            print("several coordinators: every node failed over \(secondsText(failedOver)) after the kill")
            for node in nodes { #expect(await node.isConnectedToCoordinator) }

            // A node that joins now is seen by every node (through the coordinators still up).
            let newcomer = try await build("newcomer")
            let everyone = nodes + [newcomer]
            let newcomerID = newcomer.id
            let seen = try await timeUntil("every node to hold the newcomer", seconds: 10) {
                for node in nodes where await node.currentTopology.nodes[newcomerID] == nil { return false }
                return true
            }
            print("several coordinators: a node joining after the kill was seen by all \(secondsText(seen)) after its build")

            // `mesh status` with the list names the dead one and says the two live ones agree.
            let status = try await MeshCLI.run(["status", "--coordinator", list], seconds: 20)
            #expect(status.code == 0, "\(status.errors)")
            let dead = status.lines.first { $0.hasPrefix(addresses[0]) }
            #expect(dead?.contains("DEAD") == true, "\(status.output)")
            #expect(status.output.contains("dead: \(addresses[0])"), "\(status.output)")
            try await eventually("the two live coordinators to agree", seconds: 10) {
                let run = try? await MeshCLI.run(["status", "--coordinator", list], seconds: 20)
                return run?.output.contains("agreement: the 2 live coordinators hold the same 7 record(s)") == true
            }

            // Restarted, the coordinator learns every node again from their registrations.
            try await coordinators[0].start()
            let whole = try await timeUntil("the restarted coordinator to hold all 7 nodes", seconds: 15) {
                await Self.records(at: addresses[0])?.count == 7
            }
            print("several coordinators: the restarted coordinator held every record \(secondsText(whole)) after it listened")
            try await eventually("all three coordinators to agree", seconds: 10) {
                let run = try? await MeshCLI.run(["status", "--coordinator", list], seconds: 20)
                return run?.output.contains("agreement: the 3 live coordinators hold the same 7 record(s)") == true
            }
            // The nodes stay where they failed over to: a restarted coordinator is not taken back.
            // (The newcomer may take it: it came up within the newcomer's build deadline.)
            for node in nodes { #expect(await node.routingCoordinator != addresses[0]) }

            control.stop()
            _ = await streamer.result
            let sent = control.sent
            _ = try? await got.wait(for: sent, seconds: 10)
            let all = got.values
            let missing = Set(0..<sent).subtracting(all).sorted()
            #expect(all.count == sent, "received \(all.count) of \(sent); missing \(missing.count): \(describeRuns(missing))")
            #expect(all.elementsEqual(0..<sent), "messages missing, duplicated or reordered across the failover")
            let stats = await sender.statistics
            print("several coordinators: sent \(sent), received \(all.count), unrouted \(stats.messagesUnrouted), dropped \(stats.messagesDropped)")
            #expect(stats.messagesUnrouted == 0)
            #expect(stats.messagesDropped == 0)
            #expect(logs.lines(level: .error, label: "sender").isEmpty, "\(logs.lines(level: .error, label: "sender"))")
            for node in everyone { await node.close() }
        }

        @Test("a build succeeds while one coordinator of the list is down, and registers with it once it is up")
        func buildWithOneDown() async throws {
            let up = try await CoordinatorProcess()
            defer { up.terminateAll() }
            let down = try await CoordinatorProcess()
            defer { down.terminateAll() }
            try await down.kill()
            var configuration = up.configuration("node")
            configuration.coordinator = "\(down.address), \(up.address)"
            configuration.connectTimeout = .seconds(1)
            let started = ContinuousClock.now
            let node = try await buildMeshNode(name: "node", configuration: configuration)
            #expect(await node.routingCoordinator == up.address)
            // Past the build's deadline, a coordinator earlier in the list that comes up is
            // registered with but not routed by: it holds only the nodes that registered so far.
            // (No event marks the deadline inside the node: wait for the instant itself.)
            try await Task.sleep(until: started + .milliseconds(1500))
            try await down.start()
            try await eventually("the coordinator that came up to hold the node", seconds: 10) {
                await Self.records(at: down.address)?.count == 1
            }
            #expect(await node.routingCoordinator == up.address, "the node flapped back to the first of its list")
            await node.close()

            // None up: the build fails, naming each.
            try await up.kill()
            try await down.kill()
            configuration.connectTimeout = .seconds(1)
            await #expect {
                try await buildMeshNode(name: "node", configuration: configuration)
            } throws: { error in
                "\(error)".contains("none of the 2 coordinators registered this node")
            }
        }

        @Test("nothing configured, no coordinator on this host or on the LAN: the build fails after the LAN's window, saying both")
        func nothingConfiguredAndNothingFound() async throws {
            let local = SocketAddress.ipv4(host: "127.0.0.1", port: MeshDefaults.coordinatorPort)
            if await PortProbe.isListening(at: local, timeout: .seconds(1), loop: .shared) {
                print("skipped: something listens on \(MeshDefaults.coordinatorAddress) on this host")
                return
            }
            var configuration = MeshNode.Configuration(coordinator: MeshDefaults.automatic, authkey: nil)
            configuration.meshName = "nobody-announces-this"
            configuration.connectTimeout = .seconds(2)
            let started = ContinuousClock.now
            await #expect {
                try await buildMeshNode(name: "loner", configuration: configuration)
            } throws: { error in
                let text = "\(error)"
                return text.contains("coordinator unreachable at \(MeshDefaults.coordinatorAddress)")
                    && text.contains("nothing was configured (MESH_COORDINATOR)")
                    && text.contains("no coordinator of mesh \"nobody-announces-this\" announced itself")
            }
            // The LAN's window (2 s here, the connect timeout), then one more try on this host: a bounded wait.
            let took = started.duration(to: .now)
            #expect(took >= .seconds(2) && took < .seconds(15), "took \(took)")
        }

        @Test("mesh discover with nothing announced fails with one line; --announce on loopback is refused with one line")
        func discoveryFailuresAreOneLine() async throws {
            let run = try await MeshCLI.run(["discover", "--seconds", "0.3", "--mesh-name", "nobody-announces-this"], seconds: 20)
            #expect(run.failureProblem(code: 1, mentioning: "no coordinator of mesh \"nobody-announces-this\"") == nil, "\(run)")
            let coordinator = try ChildProcess(
                "mesh-coordinator", ["--host", "127.0.0.1", "--port", "0", "--announce"], environment: MeshCLI.quiet)
            defer { coordinator.terminate() }
            #expect(try await coordinator.waitForExit(seconds: 20) == 1)
            let lines = coordinator.standardError.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("mesh-coordinator: --announce:"), "\(coordinator.output)")
        }

        @Test("the agreement report: equal records agree, a missing, extra or older record is named, a dead one is listed")
        func agreementReport() {
            func status(_ records: [(String, UInt64?)]) -> CoordinatorStatus {
                CoordinatorStatus(
                    uptime: 1, version: 1,
                    nodes: records.map {
                        NodeStatus(
                            node: NodeRecord(id: $0.0, name: "n", host: "10.0.0.1", port: 1, version: $0.1),
                            stats: MeshStatistics(), lastHeard: 0)
                    })
            }
            let same = MeshReport.Coordinators([
                ("a:1", .success(status([("01", 2), ("02", nil)]))), ("b:1", .success(status([("02", nil), ("01", 2)]))),
            ])
            #expect(same.agree)
            #expect(same.dead.isEmpty)
            let differ = MeshReport.Coordinators([
                ("a:1", .success(status([("01", 2), ("02", nil)]))),
                ("b:1", .failure(MeshError.coordinatorUnreachable(address: "b:1", reason: "connection refused"))),
                ("c:1", .success(status([("01", 1), ("03", nil)]))),
            ])
            #expect(!differ.agree)
            #expect(differ.dead == ["b:1"])
            let c = differ.coordinators[2]
            #expect(c.missing == ["02"])
            #expect(c.extra == ["03"])
            #expect(c.otherVersion == ["01"])
            #expect(c.agrees == false)
            // One live coordinator is no agreement to speak of.
            #expect(!MeshReport.Coordinators([("a:1", .success(status([])))]).agree)
        }

        /// The records a coordinator holds, `nil` when it does not answer.
        static func records(at address: String) async -> [String: NodeRecord]? {
            guard let inspector = try? await MeshInspector.connect(to: address, authkey: nil, timeout: .seconds(2)) else {
                return nil
            }
            let nodes = try? await inspector.topology(timeout: .seconds(2)).nodes
            await inspector.close()
            return nodes
        }
    }
}
