import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

extension ResilienceTests {
    /// A coordinator a node does not route by holds its record but sends it no topology
    /// (PROTOCOL.md §7.2, standby), until the node fails over to it with `route`.
    @Suite("Standby coordinator sessions", .serialized)
    struct StandbyCoordinatorTests {
        @Test("a standby gets its own record only and no deltas; after route, the topology and the deltas")
        func standbyThenRoute() async throws {
            try await withMesh { mesh in
                let standby = try ControlClient.connect(to: mesh.address)
                defer { standby.close() }
                try await standby.register(name: "standby", topics: ["mine"], view: .partial, interest: ViewInterest(topics: ["jobs"]), standby: true)
                let welcome = try await standby.waitFor(.welcome)
                #expect(welcome.standby == true)
                #expect(welcome.topology?.nodes.map(\.id) == [standby.id], "a standby's welcome holds its own record only")
                #expect(welcome.view == nil)
                #expect(welcome.node?.id == standby.id && welcome.node?.topics == ["mine"])

                // Another node joins and listens on what the standby would follow: the standby's
                // record is there, the routing node's delta goes out, and none to the standby.
                let routing = try ControlClient.connect(to: mesh.address)
                defer { routing.close() }
                try await routing.register(name: "routing")
                routing.send(ControlMessage(.listen, topic: "jobs"))
                try await eventually("the routing node to get the delta with its listen", seconds: 10) {
                    routing.messages.values.contains { $0.type == .delta && $0.delta?.changes.contains { $0.op == .listen && $0.topic == "jobs" } == true }
                }
                #expect(await mesh.coordinator.topology.nodes[standby.id]?.topics == ["mine"])
                // Messages on one connection arrive in order: a delta sent to the standby before
                // this sync's answer would come first.
                standby.send(ControlMessage(.sync))
                _ = try await standby.waitFor(.topology)
                let after = standby.messages.values.drop { $0.type != .welcome }.dropFirst().map(\.type)
                #expect(after.first == .topology, "the standby was sent \(after) before the sync's answer")
                // An interest on a standby is left unanswered, not rejected.
                standby.send(ControlMessage(.interest, interest: ViewInterest(topics: ["other"])))

                // It fails over here: the route is answered with a welcome carrying its view.
                standby.send(ControlMessage(.route, view: .partial, interest: ViewInterest(topics: ["jobs"])))
                try await eventually("the route's welcome", seconds: 10) {
                    standby.messages.values.filter { $0.type == .welcome }.count == 2
                }
                let routed = try #require(standby.messages.values.last { $0.type == .welcome })
                #expect(routed.standby == nil)
                #expect(routed.view == .partial)
                #expect(Set(routed.topology?.nodes.map(\.id) ?? []) == [standby.id, routing.id])
                // From now on it follows: another listener of "jobs" reaches it as a delta.
                let third = try ControlClient.connect(to: mesh.address)
                defer { third.close() }
                try await third.register(name: "third", topics: ["jobs"])
                try await eventually("the former standby to get the newcomer", seconds: 10) {
                    standby.messages.values.contains { $0.type == .delta && $0.delta?.changes.contains { $0.node?.id == third.id } == true }
                }
                #expect(standby.rejection == nil)
                #expect(!standby.isClosed)
            }
        }
    }
}
