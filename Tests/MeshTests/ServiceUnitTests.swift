import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination

/// The pure parts of services: the topology's service namespace and the three frames, byte by byte
/// (the same bytes docs/PROTOCOL.md §15 shows).
@Suite struct ServiceUnitTests {
    private func node(_ id: String, services: [String] = []) -> NodeRecord {
        NodeRecord(id: id, name: "calculator", host: "127.0.0.1", port: 4000, services: services)
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined(separator: " ") }

    @Test func serveAndUnserveAreRecordedOnceAndFollowedThroughDeltas() throws {
        var book = TopologyBook()
        var follower = Topology()
        let stored = try book.join(node("a", services: ["sub", "add", "add"]))
        #expect(stored.services == ["add", "sub"])
        let first = try book.serve("a", "mul")
        let second = try book.serve("a", "mul")
        let unknown = try book.serve("nobody", "mul")
        #expect(first && !second && !unknown, "serving twice is one change; an unknown node changes nothing")
        let removed = book.unserve("a", "sub")
        let again = book.unserve("a", "sub")
        #expect(removed && !again)
        let taken = book.takeDelta()
        let delta = try #require(taken)
        #expect(delta.changes.map(\.op) == [.join, .serve, .unserve])
        #expect(follower.apply(delta) == .applied)
        #expect(follower == book.topology)
        #expect(follower.providers(of: "mul").map(\.id) == ["a"])
        #expect(follower.services.keys.sorted() == ["add", "mul"])
        let left = book.leave("a")
        #expect(left != nil)
        let last = try #require(book.takeDelta() as TopologyDelta?)
        #expect(follower.apply(last) == .applied)
        #expect(follower.services.isEmpty)
    }

    @Test(arguments: ["", String(repeating: "s", count: 256), "bad\nservice", "esc\u{1B}[0m"])
    func invalidServicesAreRejected(_ service: String) throws {
        var book = TopologyBook()
        var joined: NodeRecord?
        do { joined = try book.join(node("a", services: [service])) } catch {}
        #expect(joined == nil)
        _ = try book.join(node("b"))
        var served: Bool?
        do { served = try book.serve("b", service) } catch {}
        #expect(served == nil)
    }

    @Test func recordsWithoutServicesKeepTheirOldJSON() throws {
        let plain = String(decoding: try JSONEncoder().encode(node("a")), as: UTF8.self)
        #expect(!plain.contains("services"))
        let old = #"{"id":"a","name":"n","host":"127.0.0.1","port":1,"topics":[]}"#
        #expect(try JSONDecoder().decode(NodeRecord.self, from: Data(old.utf8)).services == [])
        let serving = node("a", services: ["add"])
        #expect(try JSONDecoder().decode(NodeRecord.self, from: JSONEncoder().encode(serving)) == serving)
        let message = ControlMessage(.serve, service: "add").encodedFrame()
        #expect(String(decoding: message.dropFirst(5), as: UTF8.self) == #"{"service":"add","type":"serve"}"#)
        let change = TopologyChange.unserve("3f2a9c0d11e4b7a5", "add")
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(change), as: UTF8.self) == #"{"id":"3f2a9c0d11e4b7a5","op":"unserve","service":"add"}"#)
    }

    @Test func requestFrameBytes() throws {
        let payload = Data(#"{"a":2,"b":3}"#.utf8)
        let frame = payload.withUnsafeBytes { ServiceFrame.request(id: 1, service: "add", encoding: .codec, payload: $0) }
        #expect(
            hex(frame)
                == "00 00 00 1c 04 00 00 00 00 00 00 00 01 00 03 61 64 64 01 7b 22 61 22 3a 32 2c 22 62 22 3a 33 7d")
        #expect(frame.count == ServiceFrame.requestLength(serviceBytes: 3, payloadBytes: payload.count))
        let parsed = try frame.dropFirst(5).withUnsafeBytes { try ServiceFrame.parseRequest($0) }
        #expect(parsed.id == 1 && parsed.service == "add" && parsed.encoding == .codec && parsed.payload == payload)
    }

    @Test func replyAndFailureFrameBytes() throws {
        let reply = ServiceFrame.reply(id: 1, encoding: .codec, payload: Data(#"{"sum":5}"#.utf8))
        #expect(hex(reply) == "00 00 00 13 05 00 00 00 00 00 00 00 01 01 7b 22 73 75 6d 22 3a 35 7d")
        let failure = ServiceFrame.failure(id: 258, code: .handlerFailed, description: "no")
        #expect(hex(failure) == "00 00 00 0c 06 00 00 00 00 00 00 01 02 01 6e 6f")
        let (id, answer) = try failure.dropFirst(5).withUnsafeBytes { try ServiceFrame.parseAnswer(kind: .failure, $0) }
        #expect(id == 258)
        guard case .failure(let code, let text) = answer else {
            Issue.record("not a failure: \(answer)")
            return
        }
        #expect(code == 1 && text == "no")
        // A long description is cut, never inside a UTF-8 sequence.
        let long = ServiceFrame.failure(id: 1, code: .handlerFailed, description: String(repeating: "é", count: 3000))
        let (_, cut) = try long.dropFirst(5).withUnsafeBytes { try ServiceFrame.parseAnswer(kind: .failure, $0) }
        guard case .failure(_, let shortened) = cut else { return }
        #expect(shortened.utf8.count <= ServiceFrame.maximumDescriptionBytes && shortened.allSatisfy { $0 == "é" })
    }

    @Test func malformedServiceBodiesAreRefused() {
        let id: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 9]
        let requests: [[UInt8]] = [
            [], id, id + [0, 0, 1], id + [0, 9, 0x61, 0], id + [1, 0] + [UInt8](repeating: 0x61, count: 256) + [0],
            id + [0, 1, 0xFF, 0], id + [0, 1, 0x0A, 0], id + [0, 1, 0x61, 2],
        ]
        for body in requests {
            #expect(throws: FrameError.self, "\(body)") { _ = try body.withUnsafeBytes { try ServiceFrame.parseRequest($0) } }
        }
        #expect(throws: FrameError.self) { _ = try id.withUnsafeBytes { try ServiceFrame.parseAnswer(kind: .reply, $0) } }
        #expect(throws: FrameError.self) { _ = try (id + [7]).withUnsafeBytes { try ServiceFrame.parseAnswer(kind: .reply, $0) } }
        // An unknown failure code is kept for the caller, not a protocol error.
        let unknown = ServiceError(code: 200, description: "?", service: "s", provider: MeshPeer(id: "i", name: "n"))
        #expect(unknown == .remoteFailure(service: "s", provider: MeshPeer(id: "i", name: "n"), code: 200, reason: "?"))
    }

    @Test func anAnswerCountsOnlyOnTheConnectionItsRequestWentOutOn() async throws {
        let calls = PendingCalls(logger: .silent, loop: .shared)
        let id = calls.makeID()
        let provider = MeshPeer(id: "p", name: "provider")
        let call = Task {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Data, any Error>) in
                _ = calls.wait(
                    id,
                    PendingCalls.Waiting(
                        continuation: continuation, connectionID: 1, service: "s", provider: provider,
                        deadline: .now + .seconds(30), timeout: .seconds(30)))
            }
        }
        try await eventually("the call to wait", seconds: 5) { calls.count == 1 }
        calls.answer(id, .reply(.raw, Data([9])), on: 2, from: "impostor")
        calls.answer(id + 1, .reply(.raw, Data([8])), on: 1, from: "provider")
        #expect(calls.count == 1 && calls.statistics.lateAnswers == 2)
        calls.answer(id, .reply(.raw, Data([7])), on: 1, from: "provider")
        #expect(try await call.value == Data([7]))
        #expect(calls.count == 0 && calls.statistics.callsAnswered == 1)
    }
}
