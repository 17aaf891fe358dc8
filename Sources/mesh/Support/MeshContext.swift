import Foundation
import Mesh
import MeshTooling
import Synchronization

/// Where the mesh is and how to talk to it, read from the common options and the environment.
struct MeshContext: Sendable {
    /// The coordinator's `HOST:PORT`, or several separated by commas.
    var coordinator: String
    /// True when `--coordinator` or `$MESH_COORDINATOR` named one (not `auto` or `discover`);
    /// otherwise ``located()`` looks, once per command.
    var coordinatorConfigured: Bool
    /// What ``located()`` found, shared by every copy of this context.
    private let search = Search()
    var authkey: String?
    /// The admin credential for `status` and `node kill`: `--admin-key-file`, else the mesh key.
    var adminKey: String?
    var logger: MeshLogger
    /// How long any one wait on the network may take.
    var timeout: Duration = .seconds(5)
    /// `--allow-weak-key` or `MESH_ALLOW_WEAK_KEY=1`: a key that is easy to guess is used anyway.
    var allowWeakKey: Bool

    /// - Throws: ``CommandLineError/usage(_:)`` for an unreadable key file or an unknown log level.
    init(_ arguments: ParsedArguments) throws(CommandLineError) {
        coordinator = arguments.values["--coordinator"] ?? MeshDefaults.coordinatorFromEnvironment
        coordinatorConfigured = ![MeshDefaults.automatic, MeshDefaults.discover].contains(coordinator)
            && (arguments.values["--coordinator"] != nil || ProcessInfo.processInfo.environment["MESH_COORDINATOR"]?.isEmpty == false)
        if let key = arguments.values["--authkey"] {
            guard !key.isEmpty else { throw .usage("--authkey: the key must not be empty") }
            authkey = key
        } else if let path = arguments.values["--authkey-file"] {
            do {
                authkey = try MeshKeyFile.read(path: path) { warning in
                    FileHandle.standardError.write(Data("mesh: \(MeshText.escaped(warning))\n".utf8))
                }
            } catch {
                throw .usage("--authkey-file: \(error)")
            }
        } else {
            authkey = MeshDefaults.authkeyFromEnvironment
        }
        if let path = arguments.values["--admin-key-file"] {
            do {
                adminKey = try MeshKeyFile.read(path: path) { warning in
                    FileHandle.standardError.write(Data("mesh: \(MeshText.escaped(warning))\n".utf8))
                }
            } catch {
                throw .usage("--admin-key-file: \(error)")
            }
        }
        // The tool's own output is the point; the library's info lines would only clutter it.
        var level = MeshLogger.Level.warning
        if let text = arguments.values["--log-level"] ?? ProcessInfo.processInfo.environment["MESH_LOG_LEVEL"] {
            guard let parsed = MeshLogger.Level(name: text) else {
                throw .usage("--log-level: unknown level \"\(text)\" (error, warning, info, debug or trace)")
            }
            level = parsed
        }
        logger = MeshLogger(label: "mesh", level: level)
        allowWeakKey = arguments.has("--allow-weak-key") || MeshKey.allowWeakFromEnvironment
    }

    /// Checks the keys this command will use: long enough and, unless allowed, hard to guess.
    ///
    /// - Throws: ``MeshError/weakKey(length:minimum:)`` or ``MeshError/guessableKey(estimatedBits:minimumBits:)``.
    func checkKeys() throws(MeshError) {
        for key in [authkey, adminKey] {
            if let key, !key.isEmpty { try MeshKey.validate(key, allowWeak: allowWeakKey) }
        }
    }

    /// This context with its coordinators found, when none was configured, as a node finds
    /// them (asked by each command when it first needs the coordinator, after checking its own
    /// arguments): the one on this host if 127.0.0.1:6374 accepts a connection, else every coordinator
    /// that announces `$MESH_NAME` on the LAN (PROTOCOL.md §7.3).
    ///
    /// - Throws: ``MeshError/coordinatorUnreachable(address:reason:)`` when neither answers.
    func located() async throws -> MeshContext {
        guard !coordinatorConfigured else { return self }
        var located = self
        located.coordinatorConfigured = true
        if let found = search.found.withLock({ $0 }) {
            located.coordinator = found
            return located
        }
        let local = SocketAddress.ipv4(host: "127.0.0.1", port: MeshDefaults.coordinatorPort)
        if coordinator != MeshDefaults.discover, await PortProbe.isListening(at: local, timeout: timeout, loop: .shared) {
            located.coordinator = MeshDefaults.coordinatorAddress
            search.found.withLock { $0 = located.coordinator }
            return located
        }
        try checkKeys()
        let mesh = MeshDefaults.meshNameFromEnvironment
        let found: [(address: String, key: String)]
        do {
            found = try await BeaconListener.discover(
                mesh: mesh, key: try MeshKey.stretched(authkey), window: min(timeout, MeshDefaults.discoveryWindow),
                settle: MeshDefaults.discoverySettle, logger: logger)
        } catch MeshError.coordinatorUnreachable(_, let reason) {
            throw MeshError.coordinatorUnreachable(
                address: MeshDefaults.coordinatorAddress,
                reason: (coordinator == MeshDefaults.discover ? "" : "nothing was configured (--coordinator, MESH_COORDINATOR), nothing listens there, and ") + reason)
        }
        located.coordinator = found.map(\.address).joined(separator: ",")
        search.found.withLock { $0 = located.coordinator }
        return located
    }

    /// The coordinators ``located()`` found, kept for the rest of the command.
    private final class Search: Sendable {
        let found = Mutex<String?>(nil)
    }

    /// Connects to the coordinator as an inspecting client (not a node).
    ///
    /// - Throws: ``MeshError`` within ``timeout``: unreachable, authentication failed, ...
    /// - Parameter admin: connect with the admin credential (for `status` and `node kill`).
    func inspector(admin: Bool = false) async throws -> MeshInspector {
        try checkKeys()
        let coordinator = try await located().coordinator
        do {
            return try await MeshInspector.connect(
                to: coordinator, authkey: authkey, adminKey: admin ? (adminKey ?? authkey ?? "") : nil, timeout: timeout)
        } catch MeshError.authenticationFailed(let peer, let reason) where admin && adminKey == nil {
            throw MeshError.authenticationFailed(
                peer: peer,
                reason: "\(reason); this command proves the admin key, which is the mesh key unless the coordinator"
                    + " has its own (then pass --admin-key-file)")
        }
    }

    /// Runs `body` with an inspector and closes it afterwards, whatever happens.
    func withInspector<T: Sendable>(admin: Bool = false, _ body: (MeshInspector) async throws -> T) async throws -> T {
        let inspector = try await inspector(admin: admin)
        do {
            let result = try await body(inspector)
            await inspector.close()
            return result
        } catch {
            await inspector.close()
            throw error
        }
    }

    /// Joins the mesh as a node named `name`.
    ///
    /// A `mesh node kill` closes the node and sends this process SIGTERM, which the command's
    /// signal watcher turns into a clean stop.
    /// - Throws: ``MeshError`` within ``timeout``.
    /// - Parameter view: `full` for a node that must see every topic (`mesh bag record --all`).
    func node(named name: String, listenHost: String = "", view: TopologyView? = nil) async throws -> MeshNode {
        var configuration = MeshNode.Configuration(
            coordinator: try await located().coordinator, authkey: authkey, listenHost: listenHost, connectTimeout: timeout,
            logger: logger.labeled(name))
        if let view { configuration.topologyView = view }
        configuration.allowWeakKey = allowWeakKey
        return try await buildMeshNode(name: name, configuration: configuration)
    }
}

/// Runs `body` until it returns or the process gets SIGINT/SIGTERM.
///
/// On a signal, `body`'s task is cancelled and `onSignal` runs (closing a node there ends any
/// message sequence `body` is reading). `body` ending by `CancellationError` counts as a normal stop.
/// - Returns: `body`'s result, or `nil` when a signal stopped it.
func runUntilSignal<T: Sendable>(
    onSignal: @escaping @Sendable () async -> Void = {},
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await runUntilInterrupted(onSignal: onSignal, body).value
}

/// How ``runUntilInterrupted(onSignal:_:)`` ended.
struct Interruptible<T: Sendable>: Sendable {
    /// What `body` returned; `nil` when a signal stopped it before it returned.
    var value: T?
    /// The signal that arrived while `body` ran (SIGINT or SIGTERM), if one did. `body` may
    /// have returned all the same: a loop that checks `Task.isCancelled` returns what it did.
    var signal: Int32?
}

/// ``runUntilSignal(onSignal:_:)`` that also says whether a signal arrived, for the commands
/// that report an interruption (exit 130).
func runUntilInterrupted<T: Sendable>(
    onSignal: @escaping @Sendable () async -> Void = {},
    _ body: @escaping @Sendable () async throws -> T
) async throws -> Interruptible<T> {
    let caught = Mutex<Int32?>(nil)
    let work = Task { try await body() }
    let watcher = Task {
        let signal = await MeshProcess.waitForTerminationSignal()
        caught.withLock { $0 = signal }  // before the cancel: a cancelled body always finds it
        work.cancel()
        await onSignal()
    }
    defer { watcher.cancel() }
    do {
        let value = try await work.value
        return Interruptible(value: value, signal: caught.withLock { $0 })
    } catch is CancellationError {
        return Interruptible(value: nil, signal: caught.withLock { $0 })
    } catch MeshError.closed where work.isCancelled {
        return Interruptible(value: nil, signal: caught.withLock { $0 })
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGINT: return "SIGINT"
    case SIGTERM: return "SIGTERM"
    default: return "signal \(signal)"
    }
}
