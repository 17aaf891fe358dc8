import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// Latched topics: each sender keeps its last value for the listeners that come later.
@Suite("Latched topics")
struct LatchedTopicTests {
    struct MapVersion: Codable, Sendable, Equatable {
        var version: Int
    }

    @Test("a listener that starts after the sends gets the latest value only, at once, and newer sends after it")
    func lateListener() async throws {
        try await withMesh { mesh in
            let publisher = try await mesh.node("mapper")
            let map = Topic<MapVersion>("map", latched: true)
            for version in 1...3 { try await publisher.send(map, MapVersion(version: version)) }

            let late = try await mesh.node("planner")
            let got = Collector<MapVersion>()
            let start = ContinuousClock.now
            try await late.listen(map) { (_: String, value: MapVersion) in got.append(value) }
            #expect(try await got.wait(for: 1) == [MapVersion(version: 3)])
            print("latched: the late listener had the value \(ContinuousClock.now - start) after listen began")
            try await publisher.send(map, MapVersion(version: 4))
            #expect(try await got.wait(for: 2) == [MapVersion(version: 3), MapVersion(version: 4)])
            // A second listener node gets only the latest, and the first gets nothing twice.
            let second = try await mesh.node("viewer")
            let seen = Collector<MapVersion>()
            try await second.listen(map) { (_: String, value: MapVersion) in seen.append(value) }
            #expect(try await seen.wait(for: 1) == [MapVersion(version: 4)])
            // A duplicate for the first listener would have been queued with the second's value,
            // so ahead of this send on the same connection.
            try await publisher.send(map, MapVersion(version: 5))
            #expect(try await got.wait(for: 3) == [3, 4, 5].map { MapVersion(version: $0) })
        }
    }

    @Test("every member of a pool gets the latched value (it is state, not a job); string topics latch too")
    func poolsAndStrings() async throws {
        try await withMesh { mesh in
            let publisher = try await mesh.node("config")
            try await publisher.send("settings", ["rate": 10], latched: true)
            let got = Collector<String>()
            for _ in 0..<2 {
                let worker = try await mesh.node("worker")
                let workerID = worker.id
                try await worker.listen("settings") { (_: String, value: [String: Int]) in
                    if value == ["rate": 10] { got.append(workerID) }
                }
            }
            let members = try await got.wait(for: 2)
            #expect(Set(members).count == 2)
        }
    }

    @Test("latched values are bounded per node: topics and bytes; past them the send is refused with the reason")
    func bounds() async throws {
        try await withMesh { mesh in
            let publisher = try await mesh.node("big") { $0.maximumMessageSize = 40 << 20 }
            let blob = Data(count: 33 << 20)
            try await publisher.send("a", blob, latched: true)
            await #expect(throws: MeshError.self) { try await publisher.send("b", blob, latched: true) }
            // Replacing a topic's value frees the old one's bytes.
            try await publisher.send("a", blob, latched: true)
        }
    }
}
