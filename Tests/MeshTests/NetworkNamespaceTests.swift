import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Separate network stacks on one machine: a bridge namespace and one namespace per "host", each
/// joined to the bridge by a veth pair, with addresses in 10.231.N.0/24 that exist only in there.
final class NamespaceLab: Sendable {
    static let ip = "/usr/sbin/ip"

    let prefix: String
    let subnet: String
    let bridge: String
    /// Host namespaces by role, with their address.
    let hosts: [(role: String, namespace: String, address: String)]
    private let processes = Mutex<[ChildProcess]>([])

    init(roles: [String]) {
        let pid = ProcessInfo.processInfo.processIdentifier
        let prefix = "meshtest\(pid)"
        let subnet = "10.231.\(pid % 250 + 1)"
        self.prefix = prefix
        self.subnet = subnet
        bridge = "\(prefix)-br"
        hosts = roles.enumerated().map { index, role in (role, "\(prefix)-\(role)", "\(subnet).\(index + 1)") }
    }

    func namespace(_ role: String) -> String { hosts.first { $0.role == role }!.namespace }
    func address(_ role: String) -> String { hosts.first { $0.role == role }!.address }

    /// Runs `ip ARGS`; throws with its output when it fails.
    @discardableResult
    func ip(_ arguments: [String]) async throws -> String {
        let (status, output) = try await ChildProcess.run(path: Self.ip, arguments, seconds: 10)
        guard status == 0 else {
            throw NamespaceError(description: "ip \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
        return output
    }

    /// Creates the namespaces, the bridge and the links; `nil` on success, else why it could not.
    func setUp() async -> String? {
        guard FileManager.default.isExecutableFile(atPath: Self.ip) else { return "\(Self.ip) is not installed" }
        if getuid() != 0 { return "network namespaces need root" }
        await tearDown()  // leftovers of an earlier run with the same pid
        do {
            try await ip(["netns", "add", bridge])
        } catch {
            return "cannot create a network namespace: \(error)"
        }
        do {
            try await ip(["-n", bridge, "link", "set", "lo", "up"])
            try await ip(["-n", bridge, "link", "add", "br0", "type", "bridge"])
            try await ip(["-n", bridge, "link", "set", "br0", "up"])
            for (index, host) in hosts.enumerated() {
                try await ip(["netns", "add", host.namespace])
                let port = "p\(index)"
                try await ip(["-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.namespace])
                try await ip(["-n", bridge, "link", "set", port, "master", "br0"])
                try await ip(["-n", bridge, "link", "set", port, "up"])
                try await ip(["-n", host.namespace, "addr", "add", "\(host.address)/24", "dev", "eth0"])
                try await ip(["-n", host.namespace, "link", "set", "eth0", "up"])
                try await ip(["-n", host.namespace, "link", "set", "lo", "up"])
            }
        } catch {
            Issue.record("setting up the namespaces failed: \(error)")
            return "setup failed: \(error)"
        }
        return nil
    }

    /// Starts this package's `executable` inside the namespace of `role`.
    func start(_ executable: String, _ arguments: [String] = [], in role: String, environment: [String: String] = [:])
        throws -> ChildProcess
    {
        let path = executablesDirectory.appendingPathComponent(executable).path
        let process = try ChildProcess(
            path: Self.ip, ["netns", "exec", namespace(role), path] + arguments, environment: environment)
        processes.withLock { $0.append(process) }
        return process
    }

    /// Kills what was started (synchronous: safe in a `defer`).
    func killProcesses() {
        for process in processes.withLock({ $0 }) { process.terminate() }
    }

    /// Kills every process and deletes every namespace (which deletes the links in them).
    func tearDown() async {
        killProcesses()
        for namespace in [bridge] + hosts.map(\.namespace) {
            _ = try? await ChildProcess.run(path: Self.ip, ["netns", "del", namespace], seconds: 10)
        }
    }

    struct NamespaceError: Error, CustomStringConvertible {
        var description: String
    }
}

extension ResilienceTests {
    /// Real separate hosts, as far as TCP can tell: each program in its own network namespace.
    @Suite("Network namespaces", .serialized)
    struct NetworkNamespaceTests {
        @Test("coordinator, workers and a dispatcher on separate network stacks; a host whose link goes down is evicted")
        func separateHosts() async throws {
            let lab = NamespaceLab(roles: ["coordinator", "worker1", "worker2", "dispatcher"])
            defer { lab.killProcesses() }
            if let reason = await lab.setUp() {
                print("network namespace test skipped: \(reason)")
                await lab.tearDown()
                return
            }
            var failure: (any Error)?
            do {
                try await withDeadline(40) { try await Self.scenario(lab) }
            } catch {
                failure = error
            }
            // Awaited here rather than in the `defer` (which cannot await); the defer still kills
            // the processes if anything above throws unexpectedly.
            await lab.tearDown()
            let leftovers = try await lab.ip(["netns", "list"])
            #expect(!leftovers.contains(lab.prefix), "namespaces left behind: \(leftovers)")
            if let failure { throw failure }
        }

        private static func scenario(_ lab: NamespaceLab) async throws {
            let coordinatorAddress = "\(lab.address("coordinator")):6374"
            // A keyed mesh: an open coordinator refuses to listen beyond loopback, as it should here.
            let key = MeshKeyFile.newKey()  // started through `ip netns exec`: no test default allows a weak key
            let environment = ["MESH_COORDINATOR": coordinatorAddress, "MESH_AUTHKEY": key]
            let coordinator = try lab.start(
                "mesh-coordinator", ["--host", lab.address("coordinator"), "--port", "6374"], in: "coordinator",
                environment: ["MESH_AUTHKEY": key])
            try await coordinator.waitForOutput("mesh-coordinator listening on \(coordinatorAddress)")

            let worker1 = try lab.start("demo-worker", in: "worker1", environment: environment)
            try await worker1.waitForOutput("ready")
            // The coordinator recorded the address it saw the worker connect from.
            try await coordinator.waitForOutput("node joined: worker (")
            let joined = coordinator.output.split(separator: "\n").first { $0.contains("node joined: worker (") }!
            #expect(joined.contains(") at \(lab.address("worker1")):"), "\(joined)")

            let dispatch = try lab.start("demo-worker", ["--dispatch", "6"], in: "dispatcher", environment: environment)
            #expect(try await dispatch.waitForExit(seconds: 20) == 0, "\(dispatch.output)")
            try await worker1.waitForOutput("got job 6", seconds: 5)
            #expect(occurrences(of: "got job", in: worker1.output) == 6)

            let worker2 = try lab.start("demo-worker", in: "worker2", environment: environment)
            try await worker2.waitForOutput("ready")
            try await coordinator.waitForOutput(") at \(lab.address("worker2")):")

            // Cut worker1's host off: its sockets stay open, nothing gets through any more.
            try await lab.ip(["-n", lab.namespace("worker1"), "link", "set", "eth0", "down"])
            let left = try await timeUntil("the coordinator to log worker1 leaving", seconds: 8) {
                coordinator.output.split(separator: "\n").contains {
                    $0.contains("node left: worker (") && $0.contains(") at \(lab.address("worker1")):")
                }
            }
            print("namespaces: worker1's host cut off; the coordinator logged it leaving after \(secondsText(left))")
            #expect(left < .milliseconds(4500), "eviction took \(secondsText(left))")

            let before = occurrences(of: "got job", in: worker2.output)
            let again = try lab.start("demo-worker", ["--dispatch", "6"], in: "dispatcher", environment: environment)
            #expect(try await again.waitForExit(seconds: 20) == 0, "\(again.output)")
            try await eventually("worker2 to get the 6 new jobs", seconds: 5) {
                occurrences(of: "got job", in: worker2.output) == before + 6
            }
            #expect(occurrences(of: "got job", in: worker1.output) == 6, "the cut-off worker got jobs")
        }
    }
}
