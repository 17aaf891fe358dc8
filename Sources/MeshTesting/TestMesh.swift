import Foundation
import Mesh
import MeshCoordination
import Synchronization

/// A coordinator running in this process on 127.0.0.1 with a free port, and the nodes a test
/// built against it.
///
/// Prefer ``withMesh(authkey:heartbeatTimeout:_:)``, which closes every node and stops the
/// coordinator however the test ends; ``start(authkey:heartbeatTimeout:)`` with ``stop()`` is for
/// the tests that stop the coordinator on purpose half-way.
package final class RunningCoordinator: Sendable {
    package let coordinator: MeshCoordinator
    package let address: String
    private let task: Task<Void, any Error>
    private let nodes = Mutex<[MeshNode]>([])

    private init(coordinator: MeshCoordinator, address: String, task: Task<Void, any Error>) {
        self.coordinator = coordinator
        self.address = address
        self.task = task
    }

    /// Starts a coordinator on a free loopback port. Tests' keys are readable phrases: weak keys
    /// are allowed (a test of the key check builds its own configuration).
    package static func start(authkey: String? = nil, heartbeatTimeout: Duration = .seconds(3)) async throws
        -> RunningCoordinator
    {
        try await start(testConfiguration(authkey: authkey, heartbeatTimeout: heartbeatTimeout))
    }

    /// A coordinator configuration on 127.0.0.1, port 0, that accepts the tests' readable keys.
    package static func testConfiguration(
        authkey: String? = nil, adminKey: String? = nil, heartbeatTimeout: Duration = .seconds(3),
        logger: MeshLogger = testLogger("coordinator")
    ) -> MeshCoordinator.Configuration {
        var configuration = MeshCoordinator.Configuration(
            host: "127.0.0.1", port: 0, authkey: authkey, logger: logger, heartbeatTimeout: heartbeatTimeout,
            adminKey: adminKey)
        configuration.allowWeakKey = true
        return configuration
    }

    /// Starts a coordinator with `configuration` (which should bind 127.0.0.1, port 0).
    package static func start(_ configuration: MeshCoordinator.Configuration) async throws -> RunningCoordinator {
        let coordinator = MeshCoordinator(configuration: configuration)
        let bound = try await coordinator.start()
        let task = Task { try await coordinator.run() }
        return RunningCoordinator(coordinator: coordinator, address: bound.description, task: task)
    }

    /// Stops the coordinator and waits for it; the nodes keep running (as when a coordinator dies).
    package func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// Closes every node built with ``node(_:authkey:loadBalancing:configure:)``.
    package func closeNodes() async {
        for node in nodes.withLock({ nodes in defer { nodes = [] }; return nodes }) { await node.close() }
    }

    /// Builds a node against this coordinator with test-friendly defaults (the tests' readable
    /// keys allowed); ``withMesh`` closes it.
    package func node(
        _ name: String, authkey: String? = nil, loadBalancing: LoadBalancing = .roundRobin,
        configure: (inout MeshNode.Configuration) -> Void = { _ in }
    ) async throws -> MeshNode {
        var configuration = MeshNode.Configuration(
            coordinator: address, authkey: authkey, loadBalancing: loadBalancing, listenHost: "127.0.0.1",
            logger: testLogger(name))
        configuration.allowWeakKey = true
        configure(&configuration)
        let node = try await buildMeshNode(name: name, configuration: configuration)
        nodes.withLock { $0.append(node) }
        return node
    }
}

/// Runs `body` against a coordinator of its own, then closes the nodes it built and stops the
/// coordinator, whether `body` returned or threw.
///
/// - Parameters:
///   - authkey: The mesh key, or `nil` for an open mesh; a weak one is allowed.
///   - heartbeatTimeout: How long the coordinator waits for a node's heartbeat.
/// - Returns: What `body` returned.
/// - Throws: What `body` threw, or the coordinator's start error.
package func withMesh<T>(
    authkey: String? = nil, heartbeatTimeout: Duration = .seconds(3),
    _ body: (RunningCoordinator) async throws -> T
) async throws -> T {
    try await withMesh(RunningCoordinator.testConfiguration(authkey: authkey, heartbeatTimeout: heartbeatTimeout), body)
}

/// Runs `body` against a coordinator with `configuration` (which should bind 127.0.0.1, port 0),
/// then closes the nodes it built and stops the coordinator, whether `body` returned or threw.
package func withMesh<T>(
    _ configuration: MeshCoordinator.Configuration, _ body: (RunningCoordinator) async throws -> T
) async throws -> T {
    let mesh = try await RunningCoordinator.start(configuration)
    do {
        let result = try await body(mesh)
        await mesh.closeNodes()
        await mesh.stop()
        return result
    } catch {
        await mesh.closeNodes()
        await mesh.stop()
        throw error
    }
}

/// A logger that keeps quiet unless MESH_TEST_LOG names a level.
package func testLogger(_ label: String) -> MeshLogger {
    let level = ProcessInfo.processInfo.environment["MESH_TEST_LOG"].flatMap(MeshLogger.Level.init(name:))
    return level.map { MeshLogger(label: label, level: $0) } ?? .silent
}

/// Keeps every log line given to its loggers, so a test can count what was said.
package final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    package init() {}

    /// A logger at `level` that records into this capture (and echoes to stderr with MESH_TEST_LOG).
    package func logger(_ label: String, level: MeshLogger.Level = .info) -> MeshLogger {
        let echo = ProcessInfo.processInfo.environment["MESH_TEST_LOG"] != nil
        return MeshLogger(label: label, level: level) { [self] line in
            lines.withLock { $0.append(line) }
            if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
    }

    package var all: [String] { lines.withLock { $0 } }

    /// Lines at `level` from the logger labelled `label`.
    package func lines(level: MeshLogger.Level, label: String) -> [String] {
        let levelText = level.description.padding(toLength: 7, withPad: " ", startingAt: 0)
        return all.filter { $0.contains(" \(levelText) [\(label)] ") }
    }

    package func clear() { lines.withLock { $0.removeAll() } }
}
