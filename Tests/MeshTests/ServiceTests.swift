import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Services in one process: request and reply over real sockets on 127.0.0.1.
@Suite("Services, in one process")
struct ServiceTests {
    struct AddRequest: Codable, Sendable, Equatable {
        var a: Int
        var b: Int
    }

    struct AddResponse: Codable, Sendable, Equatable {
        var sum: Int
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String { "refused: the dog ate it" }
    }

    /// Counts how many handlers run at once, and the most that ever did.
    final class Concurrency: Sendable {
        private let state = Mutex((now: 0, most: 0))
        func enter() { state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) } }
        func leave() { state.withLock { $0.now -= 1 } }
        var most: Int { state.withLock { $0.most } }
    }

    /// A provider serving "hang" with a handler that waits for `gate`, a caller, and one call from
    /// the caller whose handler has started.
    static func hangingCall(in mesh: RunningCoordinator, provider name: String, gate: Gate) async throws -> (
        provider: MeshNode, caller: MeshNode, call: Task<Int, any Error>
    ) {
        let provider = try await mesh.node(name)
        let caller = try await mesh.node("caller")
        try await provider.serve("hang") { (_: Int) async throws -> Int in
            await gate.wait()
            return 0
        }
        try await caller.waitForService("hang", timeout: .seconds(5))
        let call = Task { () -> Int in try await caller.call("hang", 1, timeout: .seconds(30)) }
        try await eventually("the handler to start", seconds: 5) { gate.waiting == 1 }
        return (provider, caller, call)
    }

    /// The ServiceError inside a MeshError, or a recorded issue.
    func serviceError(_ body: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async -> ServiceError? {
        do {
            try await body()
            Issue.record("the call succeeded", sourceLocation: sourceLocation)
        } catch MeshError.service(let error) {
            return error
        } catch {
            Issue.record("expected MeshError.service, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    @Test("a typed call gets its reply; raw Data and [UInt8] travel byte for byte; the provider is in the topology")
    func typedAndRawCalls() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("calculator")
            let caller = try await mesh.node("caller")
            try await provider.serve("add") { (request: AddRequest) async throws -> AddResponse in
                AddResponse(sum: request.a + request.b)
            }
            try await provider.serve("reverse") { (data: Data) async throws -> Data in Data(data.reversed()) }
            try await provider.serve("bytes") { (bytes: [UInt8]) async throws -> [UInt8] in bytes.map { $0 ^ 0xFF } }
            try await provider.serve("json-as-data") { (data: Data) async throws -> String in String(decoding: data, as: UTF8.self) }
            try await caller.waitForService("json-as-data", timeout: .seconds(5))
            #expect(await caller.currentTopology.providers(of: "add").map(\.id) == [provider.id])
            #expect(await mesh.coordinator.topology.services["reverse"]?.map(\.name) == ["calculator"])

            let reply: AddResponse = try await caller.call("add", AddRequest(a: 2, b: 3), timeout: .seconds(5))
            #expect(reply == AddResponse(sum: 5))
            let everyByte = Data((0...255).map { UInt8($0) })
            let reversed: Data = try await caller.call("reverse", everyByte, timeout: .seconds(5))
            #expect(reversed == Data(everyByte.reversed()))
            let flipped: [UInt8] = try await caller.call("bytes", [UInt8]([0, 1, 0xFE]), timeout: .seconds(5))
            #expect(flipped == [0xFF, 0xFE, 0x01])
            // Raw means raw: a Data request reaches a Data handler unchanged, not as JSON or base64.
            let seen: String = try await caller.call("json-as-data", Data("{not json".utf8), timeout: .seconds(5))
            #expect(seen == "{not json")
            // A Data response of a codec reply is the codec's bytes.
            let rawReply: Data = try await caller.call("add", AddRequest(a: 1, b: 1), timeout: .seconds(5))
            #expect(String(decoding: rawReply, as: UTF8.self) == #"{"sum":2}"#)
            let statistics = caller.serviceStatistics
            #expect(statistics.callsAnswered == 5 && statistics.callsInProgress == 0)
            #expect(provider.serviceStatistics.requestsServed == 5)


            try await provider.serve("whoami", as: Int.self) { (call: ServiceCall<Int>) async throws -> String in
                "\(call.service) \(call.request) from \(call.caller.name) \(call.caller.id)"
            }
            try await caller.waitForService("whoami", timeout: .seconds(5))
            #expect(try await caller.call("whoami", 7, as: String.self, timeout: .seconds(5)) == "whoami 7 from caller \(caller.id)")

            try await provider.stopServing("add")
            #expect(await provider.currentTopology.providers(of: "add").isEmpty)
            try await eventually("the caller to see the service gone", seconds: 5) {
                await caller.currentTopology.providers(of: "add").isEmpty
            }
            let gone = await serviceError { let _: AddResponse = try await caller.call("add", AddRequest(a: 1, b: 2)) }
            #expect(gone == .noProvider(service: "add"))
        }
    }

    @Test("a pool of 3 providers sharing a name gets 300 calls 100/100/100; two groups share one call stream, each call answered once")
    func poolsAndGroups() async throws {
        try await withMesh { mesh in
            let caller = try await mesh.node("caller")
            let counts = Mutex<[String: Int]>([:])
            var pool: [MeshNode] = []
            for _ in 0..<3 {
                let member = try await mesh.node("adder")
                let memberID = member.id
                try await member.serve("add") { (request: AddRequest) async throws -> AddResponse in
                    counts.withLock { $0[memberID, default: 0] += 1 }
                    return AddResponse(sum: request.a + request.b)
                }
                pool.append(member)
            }
            try await caller.waitForService("add", count: 3, timeout: .seconds(5))
            for index in 0..<300 {
                let reply: AddResponse = try await caller.call("add", AddRequest(a: index, b: 1), timeout: .seconds(5))
                #expect(reply.sum == index + 1)
            }
            #expect(counts.withLock { $0 }.values.sorted() == [100, 100, 100], "\(counts.withLock { $0 })")

            // A second group joins: each call still goes to exactly one provider, the groups in turn.
            counts.withLock { $0 = [:] }
            let other = try await mesh.node("other-adder")
            let otherID = other.id
            try await other.serve("add") { (request: AddRequest) async throws -> AddResponse in
                counts.withLock { $0[otherID, default: 0] += 1 }
                return AddResponse(sum: request.a + request.b)
            }
            try await caller.waitForService("add", count: 4, timeout: .seconds(5))
            for index in 0..<60 {
                let _: AddResponse = try await caller.call("add", AddRequest(a: index, b: 0), timeout: .seconds(5))
            }
            let split = counts.withLock { $0 }
            #expect(split.values.reduce(0, +) == 60, "\(split)")
            #expect(split[otherID] == 30, "\(split)")
            for member in pool { #expect(split[member.id] == 10, "\(split)") }
            for member in pool { await member.close() }
        }
    }

    @Test("a throwing handler's message reaches the caller with service and provider; bad requests and responses are reported")
    func errorsTravelBack() async throws {
        try await withMesh { mesh in
            let capture = LogCapture()
            let provider = try await mesh.node("grumpy") { $0.logger = capture.logger("grumpy", level: .warning) }
            let caller = try await mesh.node("caller")
            try await provider.serve("refuse") { (_: String) async throws -> String in throw Refusal() }
            try await provider.serve("add") { (request: AddRequest) async throws -> AddResponse in
                AddResponse(sum: request.a + request.b)
            }
            try await provider.serve("huge") { (size: Int) async throws -> Data in Data(count: size) }
            try await caller.waitForService("huge", timeout: .seconds(5))
            let peer = MeshPeer(id: provider.id, name: "grumpy")

            let refused = await serviceError { let _: String = try await caller.call("refuse", "please") }
            #expect(refused == .handlerFailed(service: "refuse", provider: peer, reason: "refused: the dog ate it"))
            // The provider's log says it too: service, caller and error.
            let logged = capture.all.filter { $0.contains("service \"refuse\" failed for caller (\(caller.id))") }
            #expect(logged.count == 1 && logged[0].contains("Refusal: refused: the dog ate it"), "\(capture.all)")
            let text = refused.map { MeshError.service($0).description } ?? ""
            #expect(text.contains("refuse") && text.contains("grumpy") && text.contains(provider.id) && text.contains("the dog ate it"), "\(text)")

            // The provider cannot decode the request: its side reports it, to the caller.
            let badRequest = await serviceError { let _: AddResponse = try await caller.call("add", ["a": "two"]) }
            guard case .requestUndecodable(let service, let who, let reason) = badRequest else {
                Issue.record("expected requestUndecodable, got \(String(describing: badRequest))")
                return
            }
            #expect(service == "add" && who == peer && reason.contains("AddRequest"), "\(reason)")
            // The caller cannot decode the response.
            let badResponse = await serviceError { let _: [String] = try await caller.call("add", AddRequest(a: 1, b: 2)) }
            guard case .responseUndecodable(_, let from, _) = badResponse else {
                Issue.record("expected responseUndecodable, got \(String(describing: badResponse))")
                return
            }
            #expect(from == peer)
            // A response over the message size limit is refused at the provider, not sent.
            let limit = provider.configuration.maximumMessageSize
            let tooLarge = await serviceError { let _: Data = try await caller.call("huge", limit + 1, timeout: .seconds(10)) }
            guard case .responseUnusable(_, _, let why) = tooLarge else {
                Issue.record("expected responseUnusable, got \(String(describing: tooLarge))")
                return
            }
            #expect(why.contains("exceeds the message size limit"))
            // A request over the limit is refused before sending.
            await #expect(throws: MeshError.frameTooLarge(size: limit + 1, limit: limit)) {
                let _: Data = try await caller.call("huge", Data(count: limit + 1))
            }
            // The connection survived all of that.
            let fine: AddResponse = try await caller.call("add", AddRequest(a: 20, b: 22), timeout: .seconds(5))
            #expect(fine.sum == 42)
            #expect(caller.serviceStatistics.callsInProgress == 0)
        }
    }

    @Test("no provider fails at once; a timeout and a cancellation leave nothing pending; a late reply is dropped and counted")
    func noProviderTimeoutCancel() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("slow")
            let caller = try await mesh.node("caller")
            let gate = Gate()
            try await provider.serve("slow") { (value: Int) async throws -> Int in
                await gate.wait()
                return value
            }
            try await provider.serve("echo") { (value: Int) async throws -> Int in value }
            try await caller.waitForService("echo", timeout: .seconds(5))

            let start = ContinuousClock.now
            let missing = await serviceError { let _: Int = try await caller.call("nobody-serves-this", 1, timeout: .seconds(30)) }
            #expect(missing == .noProvider(service: "nobody-serves-this"))
            #expect(ContinuousClock.now - start < .milliseconds(500))
            #expect(caller.serviceStatistics.callsInProgress == 0)

            let timedOutAt = ContinuousClock.now
            do {
                let _: Int = try await caller.call("slow", 7, timeout: .milliseconds(300))
                Issue.record("the call did not time out")
            } catch MeshError.timedOut(let what, let seconds) {
                #expect(what.contains("slow") && seconds == 0.3, "\(what)")
            }
            let waited = ContinuousClock.now - timedOutAt
            #expect(waited >= .milliseconds(300) && waited < .seconds(2), "\(waited)")
            #expect(caller.calls.count == 0)
            #expect(caller.serviceStatistics.callsTimedOut == 1)

            // Cancelling the calling task ends the call the same way.
            let task = Task { () -> Int in try await caller.call("slow", 8, timeout: .seconds(30)) }
            try await eventually("two handlers waiting at the gate", seconds: 5) { gate.waiting == 2 }
            let cancelledAt = ContinuousClock.now
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            #expect(ContinuousClock.now - cancelledAt < .seconds(1))
            #expect(caller.calls.count == 0)
            #expect(caller.serviceStatistics.callsCancelled == 1)

            // The provider answers both late: the answers are dropped and counted, never given to another call.
            gate.open()
            try await eventually("the two late answers to arrive", seconds: 5) { caller.serviceStatistics.lateAnswers == 2 }
            let next: Int = try await caller.call("echo", 9, timeout: .seconds(5))
            #expect(next == 9)
            #expect(caller.serviceStatistics.callsInProgress == 0)
        }
    }

    @Test("handlers run concurrently up to the configured bound; later calls wait, none is refused")
    func boundedConcurrency() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("bounded") { $0.maximumConcurrentRequests = 3 }
            let caller = try await mesh.node("caller")
            let running = Concurrency()
            let gate = Gate()
            try await provider.serve("work") { (value: Int) async throws -> Int in
                running.enter()
                defer { running.leave() }
                await gate.wait()
                return value * 2
            }
            try await caller.waitForService("work", timeout: .seconds(5))
            let results = Task {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for value in 0..<10 { group.addTask { try await caller.call("work", value, timeout: .seconds(20)) } }
                    return try await group.reduce(into: []) { $0.append($1) }.sorted()
                }
            }
            try await eventually("three handlers running and seven requests waiting", seconds: 5) {
                gate.waiting == 3 && provider.serviceStatistics.requestsWaiting == 7
            }
            gate.open()
            #expect(try await withDeadline(20) { try await results.value } == (0..<10).map { $0 * 2 })
            #expect(running.most == 3)
        }
    }

    @Test("a flood of requests at a busy provider is bounded: the excess is refused busy at once, the rest answered, nothing left pending")
    func requestFloodIsBounded() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("busy") {
                $0.maximumConcurrentRequests = 1
                $0.maximumInboxBytes = 64 << 10
            }
            let caller = try await mesh.node("caller")
            let gate = Gate()
            try await provider.serve("slow-echo") { (data: Data) async throws -> Data in
                await gate.wait()
                return Data(data.prefix(8))
            }
            try await caller.waitForService("slow-echo", timeout: .seconds(5))
            let count = 2_000
            let payload = Data(repeating: 0xAB, count: 1024)
            let busy = Collector<String>()
            let results = Task {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<count {
                        group.addTask {
                            do {
                                let reply: Data = try await caller.call("slow-echo", payload, timeout: .seconds(60))
                                return reply == payload.prefix(8) ? 1 : 0
                            } catch MeshError.service(.busy(_, _, let reason)) {
                                busy.append(reason)
                                return 0
                            }
                        }
                    }
                    return try await group.reduce(into: 0) { $0 += $1 }
                }
            }
            // The provider holds requests up to 64 KiB (about 62 of them); every one past that is
            // answered busy while the first handler is still held at the gate.
            try await eventually("the excess to be refused", seconds: 20) { busy.values.count + provider.serviceStatistics.requestsWaiting + 1 >= count }
            let waiting = provider.serviceStatistics.requestsWaiting
            print("request flood: \(waiting) of \(count) requests held at the provider, \(busy.values.count) refused busy")
            #expect(waiting < 70, "\(waiting) requests held at the provider")
            #expect(busy.values.first?.contains("would pass its limit of 65536") == true, "\(busy.values.first ?? "")")
            gate.open()
            let answered = try await withDeadline(60) { try await results.value }
            #expect(answered + busy.values.count == count)
            #expect(provider.serviceStatistics.requestsRefused == busy.values.count)
            #expect(provider.serviceStatistics.requestsWaiting == 0)
            #expect(caller.serviceStatistics.callsInProgress == 0)
        }
    }

    @Test("a handler may call another service, and a node may call a service it provides itself")
    func nestedAndSelfCalls() async throws {
        try await withMesh { mesh in
            let front = try await mesh.node("front")
            let back = try await mesh.node("back")
            try await back.serve("double") { (value: Int) async throws -> Int in value * 2 }
            try await front.waitForService("double", timeout: .seconds(5))
            try await front.serve("quadruple") { (value: Int) async throws -> Int in
                let twice: Int = try await front.call("double", value, timeout: .seconds(5))
                return try await front.call("double", twice, timeout: .seconds(5))
            }
            let caller = try await mesh.node("caller")
            try await caller.waitForService("quadruple", timeout: .seconds(5))
            #expect(try await caller.call("quadruple", 5, as: Int.self, timeout: .seconds(5)) == 20)
            // The provider calls itself: no network, same answers and errors.
            #expect(try await front.call("quadruple", 3, as: Int.self, timeout: .seconds(5)) == 12)
            try await front.serve("fail") { (_: Int) async throws -> Int in throw Refusal() }
            let own = await serviceError { let _: Int = try await front.call("fail", 1, timeout: .seconds(5)) }
            #expect(own == .handlerFailed(service: "fail", provider: MeshPeer(id: front.id, name: "front"), reason: "refused: the dog ate it"))
            #expect(front.serviceStatistics.callsInProgress == 0)
        }
    }

    @Test("10,000 concurrent calls from 10 tasks are all answered correctly")
    func tenThousandConcurrentCalls() async throws {
        try await withMesh { mesh in
            // One caller holding 10,000 requests at once: the limits allow it here on purpose.
            let provider = try await mesh.node("adder") {
                $0.serviceLimits.requestsPerCaller = 10_000
                $0.serviceLimits.requests = 10_000
            }
            let caller = try await mesh.node("caller")
            try await provider.serve("add") { (request: AddRequest) async throws -> AddResponse in
                AddResponse(sum: request.a + request.b)
            }
            try await caller.waitForService("add", timeout: .seconds(5))
            let wrong = try await withDeadline(60) {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for task in 0..<10 {
                        group.addTask {
                            try await withThrowingTaskGroup(of: Bool.self) { calls in
                                for index in 0..<1_000 {
                                    calls.addTask {
                                        let a = task * 1_000_000 + index
                                        let reply: AddResponse = try await caller.call("add", AddRequest(a: a, b: index), timeout: .seconds(30))
                                        return reply.sum == a + index
                                    }
                                }
                                return try await calls.reduce(0) { $0 + ($1 ? 0 : 1) }
                            }
                        }
                    }
                    return try await group.reduce(0, +)
                }
            }
            #expect(wrong == 0)
            let statistics = caller.serviceStatistics
            #expect(statistics.callsAnswered == 10_000 && statistics.callsInProgress == 0, "\(statistics)")
        }
    }

    @Test("a provider that closes mid-call fails the call once its close bound passes, not at the timeout")
    func providerClosesMidCall() async throws {
        try await withMesh { mesh in
            let gate = Gate()
            let (provider, caller, call) = try await Self.hangingCall(in: mesh, provider: "leaving", gate: gate)
            let closedAt = ContinuousClock.now
            // A graceful close waits for running handlers up to its bound; this one never returns.
            let report = await provider.close(within: .milliseconds(200))
            #expect(report.requestsUnfinished == 1, "\(report)")
            let lost = await serviceError { _ = try await call.value }
            let took = ContinuousClock.now - closedAt
            guard case .providerLost(let service, let who, _) = lost else {
                Issue.record("expected providerLost, got \(String(describing: lost))")
                return
            }
            #expect(service == "hang" && who.id == provider.id)
            #expect(took < .seconds(2), "\(took) (this includes close() itself)")
            #expect(caller.serviceStatistics.callsInProgress == 0)
            gate.open()
        }
    }

    @Test("closing the calling node ends its calls with closed; later calls throw closed")
    func callerCloses() async throws {
        try await withMesh { mesh in
            let gate = Gate()
            let (_, caller, call) = try await Self.hangingCall(in: mesh, provider: "provider", gate: gate)
            await caller.close()
            await #expect(throws: MeshError.closed) { _ = try await call.value }
            await #expect(throws: MeshError.closed) { let _: Int = try await caller.call("hang", 1) }
            gate.open()
        }
    }

    @Test("a service name is checked; serving one twice is refused")
    func badNames() async throws {
        try await withMesh { mesh in
            let node = try await mesh.node("node")
            await #expect(throws: MeshError.self) { try await node.serve("") { (x: Int) async throws -> Int in x } }
            await #expect(throws: MeshError.self) { try await node.serve(String(repeating: "s", count: 256)) { (x: Int) async throws -> Int in x } }
            await #expect(throws: MeshError.self) { let _: Int = try await node.call("bad\u{7}name", 1) }
            try await node.serve("once") { (x: Int) async throws -> Int in x }
            await #expect(throws: MeshError.self) { try await node.serve("once") { (x: Int) async throws -> Int in x + 1 } }
            #expect(try await node.call("once", 4, as: Int.self, timeout: .seconds(5)) == 4)
        }
    }
}
