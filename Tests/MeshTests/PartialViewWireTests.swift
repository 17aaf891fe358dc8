import Foundation
import MeshTesting
import Testing

@testable import Mesh

/// The coordinator's partial-view bookkeeping, as a value: changes in, per-session deltas out.
@Suite("Partial view wire format")
struct PartialViewWireTests {
    static func json(_ message: ControlMessage) -> String {
        let frame = message.encodedFrame()
        return String(decoding: frame[Frame.headerLength...], as: UTF8.self)
    }

    @Test("register, interest and the answering delta encode as the protocol document shows")
    func examples() throws {
        let worker = NodeRecord(
            id: "6d7ed78321a0c5f2", name: "worker", host: "", port: 40123, topics: ["results"], pid: 4242,
            key: "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c")
        #expect(
            Self.json(
                ControlMessage(
                    .register, node: worker, view: .partial,
                    interest: ViewInterest(topics: ["jobs"])))
                == #"{"interest":{"topics":["jobs"]},"node":{"host":"","id":"6d7ed78321a0c5f2","key":"07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c","name":"worker","pid":4242,"port":40123,"topics":["results"]},"type":"register","view":"partial"}"#)
        let asked = ViewInterest(topics: ["jobs/urgent"], ids: ["0b7d2e55a1c39f08"])
        #expect(Self.json(ControlMessage(.interest, interest: asked)) == #"{"interest":{"ids":["0b7d2e55a1c39f08"],"topics":["jobs/urgent"]},"type":"interest"}"#)
        let sender = NodeRecord(
            id: "0b7d2e55a1c39f08", name: "sender", host: "10.0.0.5", port: 40999, topics: ["jobs/urgent"], pid: 4100,
            joined: 1732233590.5)
        let answer = ControlMessage(.delta, delta: TopologyDelta(from: 3, to: 4, changes: [.join(sender)]), interest: asked)
        #expect(
            Self.json(answer)
                == #"{"delta":{"changes":[{"node":{"host":"10.0.0.5","id":"0b7d2e55a1c39f08","joined":1732233590.5,"name":"sender","pid":4100,"port":40999,"topics":["jobs/urgent"]},"op":"join"}],"from":3,"to":4},"interest":{"ids":["0b7d2e55a1c39f08"],"topics":["jobs/urgent"]},"type":"delta"}"#)
        // A register without the new fields is what it always was.
        #expect(!Self.json(ControlMessage(.register, node: worker)).contains("view"))
        // And both decode back.
        let decoded = try [UInt8](Self.json(answer).utf8).withUnsafeBytes { try ControlMessage.decode($0) }
        #expect(decoded == answer)
    }

    @Test("the answer to a lookup of a node that has just left encodes as the protocol document shows")
    func departedAnswer() throws {
        let gone = NodeRecord(
            id: "a5f1583b20afe970", name: "mesh-send", host: "10.0.0.5", port: 41002, topics: [], pid: 4711,
            joined: 1732233601.5)
        let answer = ControlMessage(
            .delta, delta: TopologyDelta(from: 5, to: 6, changes: [.join(gone), .leave(gone.id)]),
            interest: ViewInterest(ids: [gone.id]))
        #expect(
            Self.json(answer)
                == #"{"delta":{"changes":[{"node":{"host":"10.0.0.5","id":"a5f1583b20afe970","joined":1732233601.5,"name":"mesh-send","pid":4711,"port":41002,"topics":[]},"op":"join"},{"id":"a5f1583b20afe970","op":"leave"}],"from":5,"to":6},"interest":{"ids":["a5f1583b20afe970"]},"type":"delta"}"#)
    }

    @Test("a partial view's welcome holds only the node itself however many unrelated nodes there are, and says so")
    func welcomeSize() async throws {
        try await withMesh { mesh in
            func welcome() async throws -> (message: ControlMessage, bytes: Int) {
                let (id, register) = RogueClient.validRegister(name: "probe")
                var partial = register
                partial.view = .partial
                let client = try await RogueClient.connect(to: mesh.address, purpose: .control, key: nil, id: id)
                client.send(partial)
                let first = try #require(try await client.messages.wait(for: 1, seconds: 5).first)
                let frames = try await client.frames.wait(for: 1, seconds: 5)
                client.connection.close()
                return (first, frames[0].body.count)
            }
            let alone = try await welcome()
            #expect(alone.message.type == .welcome && alone.message.view == .partial)
            #expect(alone.message.topology?.nodes.count == 1)
            var others: [MeshNode] = []
            for index in 0..<10 { others.append(try await mesh.node("unrelated-\(index)")) }
            let crowded = try await welcome()
            #expect(crowded.message.topology?.nodes.map(\.name) == ["probe"])
            #expect(abs(crowded.bytes - alone.bytes) < 16, "the welcome grew with unrelated nodes: \(alone.bytes) -> \(crowded.bytes)")
            for node in others { await node.close() }
        }
    }
}
