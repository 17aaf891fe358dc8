import Foundation
import MeshCoordination
import MeshTesting
import Testing

@testable import Mesh

/// Protocol version 3's identities: ids from keys, key files, a pinned coordinator, names files.
@Suite("Node identities and the names file", .serialized)
struct IdentityTests {
    static let key = "the mesh key for identity tests"

    static func keyFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-identity-\(UUID().uuidString)").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a node's id derives from its public key, and a key file gives the same id every start")
    func keyFileGivesAStableID() async throws {
        let path = try Self.keyFile(NodeIdentity.generateKeyFileText())
        defer { try? FileManager.default.removeItem(atPath: path) }
        let loaded = try NodeIdentity(contentsOfFile: path)
        #expect(loaded.id == NodeID.id(forPublicKey: loaded.publicKey))
        try await withMesh(authkey: Self.key) { mesh in
            let first = try await mesh.node("stable", authkey: Self.key) { $0.identityFile = path }
            #expect(first.id == loaded.id)
            let record = try #require(await mesh.coordinator.topology.nodes[first.id])
            #expect(record.key == loaded.publicKeyHex)
            await first.close()
            let second = try await mesh.node("stable", authkey: Self.key) { $0.identityFile = path }
            #expect(second.id == loaded.id)
        }
    }

    @Test("a key file that is missing or holds no key fails the build with one clear line")
    func badKeyFilesAreRefused() async throws {
        let garbage = try Self.keyFile("not a key\n")
        defer { try? FileManager.default.removeItem(atPath: garbage) }
        for path in [garbage, "/nonexistent/mesh-node.key"] {
            var configuration = MeshNode.Configuration(coordinator: "127.0.0.1:1", authkey: nil, logger: testLogger("bad"))
            configuration.identityFile = path
            do {
                _ = try await buildMeshNode(name: "bad", configuration: configuration)
                Issue.record("a node built with the key file \(path)")
            } catch let error as MeshError {
                guard case .invalidIdentity(let named, _) = error else {
                    Issue.record("expected invalidIdentity, got \(error)")
                    continue
                }
                #expect(named == path)
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test("a node that pins the coordinator's key joins it, and refuses a coordinator with another key")
    func pinnedCoordinator() async throws {
        try await withMesh(authkey: Self.key) { mesh in
            let right = mesh.coordinator.identity.publicKeyHex
            let pinned = try await mesh.node("pinned", authkey: Self.key) { $0.coordinatorKey = right }
            // Hex in either case is the same key.
            let shouting = try await mesh.node("pinned-upper", authkey: Self.key) { $0.coordinatorKey = right.uppercased() }
            #expect(await shouting.isConnectedToCoordinator)
            #expect(await pinned.isConnectedToCoordinator)
            let wrong = NodeIdentity().publicKeyHex.uppercased()
            do {
                _ = try await mesh.node("misled", authkey: Self.key) { $0.coordinatorKey = wrong }
                Issue.record("a node joined a coordinator whose key it did not pin")
            } catch let error as MeshError {
                #expect("\(error)".contains("pinned"), "\(error)")
            }
        }
    }

    @Test("in a keyed mesh, messages larger than a record arrive whole and in order between small ones")
    func largeMessagesSpanRecords() async throws {
        try await withMesh(authkey: Self.key) { mesh in
            let receiver = try await mesh.node("big-receiver", authkey: Self.key)
            let sender = try await mesh.node("big-sender", authkey: Self.key)
            let got = Collector<Data>()
            try await receiver.listen("big") { (_: String, data: Data) in got.append(data) }
            try await sender.waitForListener("big", timeout: .seconds(10))
            var sent: [Data] = []
            for (index, size) in [10, 3 << 20, 7, 65_536 - 9, 65_536, 200_003, 1].enumerated() {
                let data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) })
                sent.append(data)
                try await sender.send("big", data)
            }
            #expect(try await got.wait(for: sent.count, seconds: 20) == sent)
        }
    }

    // MARK: names file

    @Test("names files parse keys, comments and the closed rule, and say which line is wrong")
    func namesFileParsing() throws {
        let a = NodeIdentity().publicKeyHex
        let b = NodeIdentity().publicKeyHex
        let names = try NameBindings(parsing: "# pools\nworker: \(a), \(b.uppercased())\n\ncamera: \(a)  # one\n*: closed\n")
        #expect(names.keys["worker"] == [a, b])
        #expect(names.refusal(name: "worker", key: b) == nil)
        #expect(names.refusal(name: "camera", key: b) != nil)
        #expect(names.refusal(name: "other", key: a)?.contains("does not list") == true)
        let open = try NameBindings(parsing: "worker: \(a)\n")
        #expect(open.refusal(name: "other", key: b) == nil)
        #expect(throws: MeshError.self) { try NameBindings(parsing: "worker: 1234\n") }
        do {
            _ = try NameBindings(parsing: "worker: \(a)\njust words\n", path: "names.txt")
            Issue.record("a bad line was accepted")
        } catch {
            #expect("\(error)".contains("names.txt") && "\(error)".contains("line 2"), "\(error)")
        }
        #expect(throws: MeshError.self) { try NameBindings(parsing: "*: sometimes\n") }
    }

    @Test("with a names file, a stranger holding the mesh key cannot join a listed pool; the listed worker can")
    func poolHijackIsRefused() async throws {
        let worker = NodeIdentity()
        var configuration = RunningCoordinator.testConfiguration(authkey: Self.key)
        configuration.names = try NameBindings(parsing: "worker: \(worker.publicKeyHex)\n")
        try await withMesh(configuration) { mesh in
            do {
                _ = try await mesh.node("worker", authkey: Self.key)
                Issue.record("a stranger joined the worker pool")
            } catch let error as MeshError {
                guard case .registrationRejected(let reason) = error else {
                    Issue.record("expected a rejected registration, got \(error)")
                    return
                }
                #expect(reason.contains("reserved by the names file"), "\(reason)")
            }
            let real = try await mesh.node("worker", authkey: Self.key) { $0.identity = worker }
            let other = try await mesh.node("other-name", authkey: Self.key)
            let names = await mesh.coordinator.topology.nodes.values.map(\.name).sorted()
            #expect(names == ["other-name", "worker"])
            #expect(real.id == worker.id && other.id != worker.id)
        }
    }

    @Test("a names file needs a key: an open coordinator refuses to start with one")
    func namesFileNeedsAKey() async throws {
        var configuration = RunningCoordinator.testConfiguration(authkey: nil)
        configuration.names = try NameBindings(parsing: "worker: \(NodeIdentity().publicKeyHex)\n")
        await #expect(throws: MeshError.self) { _ = try await MeshCoordinator(configuration: configuration).start() }
    }
}
