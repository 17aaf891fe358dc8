import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

/// What a partial view delivers: a sender that joins, sends and leaves at once is not lost, and a
/// flood of hellos under made-up ids neither uses up the lookups nor stops a real sender (#22).
@Suite("Partial views: delivery", .serialized)
struct PartialViewDeliveryTests {
    @Test("a sender that joins, sends one message and closes at once reaches a partial-view receiver, 20 times of 20")
    func shortLivedSenders() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("echo") { $0.topologyView = .partial }
            let got = Collector<Int>()
            try await receiver.listen("once") { (_: String, value: [String: Int]) in got.append(value["once"] ?? -1) }
            let rounds = 20
            for round in 0..<rounds {
                // As `mesh topic send` does: join, wait for the listener, send, say bye and go.
                let sender = try await mesh.node("mesh-send")
                try await sender.waitForListener("once", timeout: .seconds(10))
                try await sender.send("once", ["once": round])
                await sender.close()
                // One at a time, so each round is the race the issue saw.
                _ = try await got.wait(for: round + 1, seconds: 15)
            }
            #expect(got.values == Array(0..<rounds))
            #expect(await receiver.peerLookups.asked >= 1, "the receiver never had to look a sender up")
            #expect(await receiver.interest.ids.isEmpty, "a lookup stayed in the receiver's interest")
            // The last sender's goodbye and the receiver's dropped lookup reach the coordinator
            // after the message did.
            let coordinator = mesh.coordinator
            try await eventually("an answered lookup to cost the coordinator nothing", seconds: 10) {
                await coordinator.views.totalInterests == 0
            }
        }
    }

    @Test("1,200 hellos under made-up ids: each looked up and answered with nothing, bounded meanwhile; a real sender still gets through")
    func madeUpHelloFlood() async throws {
        try await withMesh { mesh in
            let receiver = try await mesh.node("target") { $0.topologyView = .partial }
            let got = Collector<String>()
            try await receiver.listen("inbox") { (_: String, value: String) in got.append(value) }
            let port = try #require(await receiver.listenAddress).port
            let bound = PeerLookups.maximumBatch + PeerLookups.maximumQueued
            var flood: [RogueClient] = []
            var mostPending = 0
            var mostCoordinatorInterests = 0
            for _ in 0..<12 {
                for _ in 0..<100 {
                    let fake = NodeIdentity().id
                    let client = try await RogueClient.connect(to: "127.0.0.1:\(port)", purpose: .data, key: nil, id: fake)
                    client.connection.send(PeerHello(id: fake, name: "ghost").encodedFrame())
                    flood.append(client)
                }
                mostPending = max(mostPending, await receiver.peerLookups.pending)
                mostCoordinatorInterests = max(mostCoordinatorInterests, await mesh.coordinator.views.totalInterests)
            }
            // While the made-up hellos are held and their lookups queued, a real new sender that
            // leaves at once: its lookup waits behind theirs, and its message arrives.
            let sender = try await mesh.node("late-sender")
            try await sender.waitForListener("inbox", timeout: .seconds(10))
            try await sender.send("inbox", "real")
            await sender.close()
            #expect(try await got.wait(for: 1, seconds: 15) == ["real"])

            let samples = Collector<Int>()
            try await eventually("the receiver to have asked about every made-up id", seconds: 30) {
                let lookups = await receiver.peerLookups
                samples.append(lookups.pending)
                return lookups.asked + lookups.refused + lookups.expired >= 1_200 && lookups.pending == 0
            }
            mostPending = max(mostPending, samples.values.max() ?? 0)
            #expect(mostPending <= bound, "\(mostPending) lookups pending at once")
            #expect(mostCoordinatorInterests <= PeerLookups.maximumBatch, "\(mostCoordinatorInterests) ids pending at the coordinator")
            #expect(await receiver.peerLookups.asked >= 1_000, "more than the old lifetime budget of 1,000 lookups")
            #expect(await receiver.interest.ids.isEmpty)
            // The real sender's record goes with its leave (which, closing, it says last).
            let receiverID = receiver.id
            try await eventually("the receiver to hold no record but its own", seconds: 10) {
                await receiver.topologyHolds(only: [receiverID])
            }
            #expect(await mesh.coordinator.views.totalInterests == 0, "made-up ids left something at the coordinator")
            #expect(await receiver.isConnectedToCoordinator)

            // The made-up ones are refused after their 5 s, and none of them delivered anything.
            let clients = flood
            try await eventually("the made-up hellos to be refused", seconds: 20) { clients.allSatisfy(\.isClosed) }
            #expect(got.values == ["real"])
        }
    }
}

extension MeshNode {
    /// True when the node's topology holds exactly `ids` (for tests).
    func topologyHolds(only ids: Set<String>) -> Bool { Set(currentTopology.nodes.keys) == ids }
}
