import Foundation
import MeshCrypto
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshTooling

extension ResilienceTests {
    /// Providers in their own processes: one SIGKILLed mid-call, and peers that break the rules.
    @Suite("Service failures", .serialized)
    struct ServiceFailureTests {
        @Test("a provider SIGKILLed mid-call fails the call within 1 s; later calls go to the surviving pool member")
        func providerKilledMidCall() async throws {
            try await withMesh { mesh in
                let processes = ProcessBag()
                defer { processes.terminateAll() }
                let environment = ["MESH_COORDINATOR": mesh.address, "MESH_AUTHKEY": ""]
                let first = try processes.start("demo-service", environment: environment)
                let second = try processes.start("demo-service", environment: environment)
                try await first.waitForOutput("ready")
                try await second.waitForOutput("ready")
                let caller = try await mesh.node("caller")
                try await caller.waitForService("wait", count: 2, timeout: .seconds(10))

                let call = Task { () -> Int in try await caller.call("wait", 20_000, timeout: .seconds(30)) }
                try await eventually("a provider to start the 20 s call", seconds: 10) {
                    first.output.contains("wait(20000)") || second.output.contains("wait(20000)")
                }
                let (doomed, survivor) = first.output.contains("wait(20000)") ? (first, second) : (second, first)
                let killedAt = ContinuousClock.now
                doomed.signal(SIGKILL)
                do {
                    _ = try await withDeadline(10) { try await call.value }
                    Issue.record("the call to a killed provider succeeded")
                } catch MeshError.service(.providerLost(let service, let provider, let reason)) {
                    #expect(service == "wait")
                    #expect(provider.name == "calculator")
                    print("SIGKILL mid-call: the call failed after \(secondsText(killedAt.duration(to: .now))): \(reason)")
                }
                #expect(killedAt.duration(to: .now) < .seconds(1))
                #expect(caller.serviceStatistics.callsInProgress == 0)

                // Every later call is answered, by the survivor.
                for index in 0..<6 {
                    let answer: Int = try await caller.call("wait", index, timeout: .seconds(10))
                    #expect(answer == index)
                }
                #expect((0..<6).allSatisfy { survivor.output.contains("wait(\($0))\n") }, "\(survivor.output)")
            }
        }

        @Test("calls go on while the coordinator is down, and a fresh coordinator learns the providers again")
        func servicesSurviveCoordinatorRestart() async throws {
            let coordinator = try await CoordinatorProcess()
            defer { coordinator.terminateAll() }
            let address = coordinator.address
            let first = try #require(coordinator.process)
            func configuration(_ name: String) -> MeshNode.Configuration {
                coordinator.configuration(name)
            }
            let provider = try await buildMeshNode(name: "provider", configuration: configuration("provider"))
            try await provider.serve("double") { (value: Int) async throws -> Int in value * 2 }
            let caller = try await buildMeshNode(name: "caller", configuration: configuration("caller"))
            try await caller.waitForService("double", timeout: .seconds(5))
            #expect(try await caller.call("double", 1, as: Int.self, timeout: .seconds(5)) == 2)

            first.signal(SIGKILL)
            try await eventually("the caller to notice the coordinator is gone", seconds: 10) {
                await !caller.isConnectedToCoordinator
            }
            #expect(try await caller.call("double", 2, as: Int.self, timeout: .seconds(5)) == 4, "a call while the coordinator is down")

            try await coordinator.start()
            let inspector = try await withDeadline(10) {
                try await eventuallyConnected(to: address)
            }
            try await eventually("the fresh coordinator to list the provider's service", seconds: 10) {
                let topology = try? await inspector.topology()
                return topology?.providers(of: "double").map(\.id) == [provider.id]
            }
            await inspector.close()
            #expect(try await caller.call("double", 3, as: Int.self, timeout: .seconds(5)) == 6)
            await caller.close()
            await provider.close()
        }

        @Test("a caller with the wrong key is refused at the provider's port, as for topics; the handler never runs")
        func wrongKeyRefused() async throws {
            try await withMesh(authkey: "the right key for services") { mesh in
                let provider = try await mesh.node("provider", authkey: "the right key for services")
                let handled = Mutex(0)
                try await provider.serve("secret") { (value: Int) async throws -> Int in
                    handled.withLock { $0 += 1 }
                    return value
                }
                await #expect(throws: MeshError.self) { _ = try await mesh.node("intruder", authkey: "the wrong key for services") }
                // Straight at the provider's peer port, with a request queued behind the handshake.
                let port = try #require(await provider.listenAddress?.port)
                for key in ["the wrong key for services", nil] {
                    let probe = ProbeLink()
                    var options = Self.dataOptions(id: "0123456789abcdef", key: key)
                    // Dialled as a sender would: the provider's id and key from its record.
                    options.handshake = options.handshake.expecting(provider.identity.idBytes, key: provider.identity.publicKey)
                    let connection = try Connection.connect(to: .ipv4(host: "127.0.0.1", port: port), options: options, delegate: probe, loop: .shared)
                    connection.send(PeerHello(id: "0123456789abcdef", name: "intruder").encodedFrame())
                    connection.send(Data([0x7b]).withUnsafeBytes { ServiceFrame.request(id: 1, service: "secret", encoding: .codec, payload: $0) })
                    let error = try await probe.closed.wait(for: 1, seconds: 10)[0]
                    guard case .handshake(let failure) = error else {
                        Issue.record("expected a handshake failure, got \(String(describing: error))")
                        continue
                    }
                    #expect(failure.isAuthenticationFailure, "\(failure)")
                }
                let caller = try await mesh.node("caller", authkey: "the right key for services")
                try await caller.waitForService("secret", timeout: .seconds(5))
                #expect(try await caller.call("secret", 5, as: Int.self, timeout: .seconds(5)) == 5)
                #expect(handled.withLock { $0 } == 1)
            }
        }

        /// Options for dialling a node's peer port as node `id`, with `key` (stretched as a node would).
        static func dataOptions(id: String, key: String? = nil) -> Connection.Options {
            Connection.Options(
                handshake: .connect(
                    purpose: .data, key: try? MeshKey.stretched(key),
                    identity: RogueClient.identities.withLock { $0[id] } ?? NodeIdentity(claiming: id), expectedPeerID: nil,
                    expectedPeerKey: nil),
                maximumFrameLength: 16 << 20, maximumPendingBytes: 16 << 20)
        }

        @Test("malformed service frames close only the offending connection; the provider serves on")
        func hostileServiceFrames() async throws {
            try await withMesh { mesh in
                let provider = try await mesh.node("provider")
                try await provider.serve("echo") { (data: Data) async throws -> Data in data }
                let port = try #require(await provider.listenAddress?.port)
                // A real member of the mesh (registered by hand), so its peer hello is accepted.
                let (memberID, register) = RogueClient.validRegister(name: "hostile")
                let member = try await RogueClient.connect(to: mesh.address, purpose: .control, key: nil, id: memberID)
                member.send(register)
                #expect(try await member.messages.wait(for: 1).first?.type == .welcome)
                try await provider.waitForNodes(named: "hostile", timeout: .seconds(10))  // partial view: fetches it
                try await eventually("the provider to know the member", seconds: 5) {
                    await provider.currentTopology.nodes[memberID] != nil
                }
                let hello = PeerHello(id: memberID, name: "hostile").encodedFrame()
                func frame(_ kind: UInt8, _ body: [UInt8]) -> [UInt8] { Frame(kind: kind, body: body).encoded }
                let id: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 1]
                let cases: [(String, [UInt8])] = [
                    ("request before the peer hello", frame(0x04, id + [0, 4] + Array("echo".utf8) + [0])),
                    ("short request", hello + frame(0x04, [1, 2, 3])),
                    ("service length 0", hello + frame(0x04, id + [0, 0, 0])),
                    ("service length past the body", hello + frame(0x04, id + [0, 200] + Array("echo".utf8) + [0])),
                    ("service length over 255", hello + frame(0x04, id + [1, 0] + [UInt8](repeating: 0x61, count: 256) + [0])),
                    ("service not UTF-8", hello + frame(0x04, id + [0, 2, 0xC3, 0x28, 0])),
                    ("service with a control character", hello + frame(0x04, id + [0, 2, 0x61, 0x07, 0])),
                    ("unknown encoding", hello + frame(0x04, id + [0, 4] + Array("echo".utf8) + [9])),
                    ("a reply sent to the provider", hello + frame(0x05, id + [0])),
                    ("a failure sent to the provider", hello + frame(0x06, id + [1])),
                ]
                for (label, bytes) in cases {
                    let probe = ProbeLink()
                    let connection = try Connection.connect(
                        to: .ipv4(host: "127.0.0.1", port: port), options: Self.dataOptions(id: memberID), delegate: probe,
                        loop: .shared)
                    connection.send(bytes)
                    let error = try await probe.closed.wait(for: 1, seconds: 10)[0]
                    #expect(error != nil, "\(label): closed without an error on the provider's side")
                    #expect(probe.answers.values.isEmpty, "\(label): the provider answered")
                }
                // A request for a service it does not provide is answered "not served", and the
                // connection stays open.
                let probe = ProbeLink()
                let connection = try Connection.connect(
                    to: .ipv4(host: "127.0.0.1", port: port), options: Self.dataOptions(id: memberID), delegate: probe,
                    loop: .shared)
                connection.send(hello)
                connection.send(Data("x".utf8).withUnsafeBytes { ServiceFrame.request(id: 7, service: "nothing", encoding: .raw, payload: $0) })
                connection.send(Data("hi".utf8).withUnsafeBytes { ServiceFrame.request(id: 8, service: "echo", encoding: .raw, payload: $0) })
                let answers = try await probe.answers.wait(for: 2, seconds: 10)
                let byID = Dictionary(answers, uniquingKeysWith: { first, _ in first })
                if case .failure(let code, _) = byID[7] { #expect(code == ServiceFailureCode.notServed.rawValue) } else {
                    Issue.record("call 7: \(String(describing: byID[7]))")
                }
                if case .reply(let encoding, let payload) = byID[8] { #expect(encoding == .raw && payload == Data("hi".utf8)) } else {
                    Issue.record("call 8: \(String(describing: byID[8]))")
                }
                #expect(probe.closed.values.isEmpty)
                connection.close()

                let caller = try await mesh.node("caller")
                try await caller.waitForService("echo", timeout: .seconds(5))
                #expect(try await caller.call("echo", Data([1, 2, 3]), as: Data.self, timeout: .seconds(5)) == Data([1, 2, 3]))
            }
        }
    }
}

/// A dialling connection's delegate that records the answers and the close.
final class ProbeLink: ConnectionDelegate {
    let answers = Collector<(UInt64, ServiceFrame.Answer)>()
    let closed = Collector<ConnectionError?>()

    func connectionDidOpen(_ connection: Connection) {}

    func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
        while let header = try decoder.next() {
            guard let kind = FrameKind(rawValue: header.kind), kind == .reply || kind == .failure else {
                throw FrameError.unexpectedKind(header.kind)
            }
            answers.append(try decoder.withBody(header) { try ServiceFrame.parseAnswer(kind: kind, $0) })
        }
    }

    func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
        closed.append(error)
    }
}

/// An inspector connected to `address`, retrying until the coordinator there answers; an admin
/// one when `adminKey` is given (`""` in an open mesh).
func eventuallyConnected(to address: String, adminKey: String? = nil) async throws -> MeshInspector {
    while true {
        if let inspector = try? await MeshInspector.connect(to: address, authkey: nil, adminKey: adminKey, timeout: .seconds(2)) {
            return inspector
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
