import Foundation
import Mesh
import MeshCoordination
import MeshWeb

/// mesh-coordinator: holds the mesh's topology and tells every node about each change.
let usage = """
    usage: mesh-coordinator [--host H] [--port P] [--authkey KEY | --authkey-file PATH]
                            [--admin-key-file PATH] [--allow-weak-key] [--insecure]
                            [--allow-foreign-hosts] [--log-level L] [--http HOST:PORT]
                            [--identity-file PATH] [--names-file PATH]
                            [--announce [--mesh-name NAME]]

      --host H            address to listen on (default 127.0.0.1 without a key, 0.0.0.0 with one)
      --port P            TCP port (default 6374; 0 picks a free one)
      --authkey KEY       require this shared key on every connection (visible in `ps`:
                          prefer --authkey-file or MESH_AUTHKEY)
      --authkey-file PATH read the key from a file (make one with `mesh keygen`)
      --admin-key-file PATH
                          the key `mesh status` and `mesh node kill` must prove (default: the
                          mesh key); nodes holding only the mesh key then cannot use them
      --identity-file PATH
                          the coordinator's static key pair (`mesh keygen --node`), so nodes can
                          pin its public key (MESH_COORDINATOR_KEY) across restarts; without it
                          a fresh pair is made at start and its public key printed
      --names-file PATH   which node keys may use which names ("worker: KEY, KEY", one name a
                          line; "*: closed" refuses names not listed); needs a key
      --allow-weak-key    accept a key that is easy to guess (a passphrase of a few words);
                          refused by default; also MESH_ALLOW_WEAK_KEY=1
      --insecure          allow listening beyond loopback with no key (an open mesh, on
                          purpose); also MESH_INSECURE=1
      --allow-foreign-hosts
                          let nodes advertise an address other than the one they connect
                          from (NAT, several interfaces)
      --log-level L       error, warning, info (default), debug or trace; also MESH_LOG_LEVEL
      --http HOST:PORT    also serve the web view and Prometheus /metrics there (off by default;
                          127.0.0.1:6375 is typical; with a key, requests need the token that
                          `mesh http-token` prints; see docs/HTTP.md)
      --announce          send a beacon on the LAN every 0.5 s (UDP broadcast, port 6374) so
                          nodes with MESH_COORDINATOR=discover find this coordinator; needs
                          --host set to the address nodes reach; keyed meshes sign it
      --mesh-name NAME    the mesh name the beacon carries (default $MESH_NAME, else default)
      --version           print the version
      --help              print this help

    Without a key option, MESH_AUTHKEY is used when set.
    """

MeshProcess.catchTerminationSignals()

/// One line on standard error, then exit: 2 for bad arguments, 1 when the coordinator cannot run.
func fail(_ message: String, code: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("mesh-coordinator: \(message)\n".utf8))
    exit(code)
}

/// Reads a key file, warning on standard error when others can read it.
func readKeyFile(_ path: String) -> String {
    do {
        return try MeshKeyFile.read(path: path) { warning in
            FileHandle.standardError.write(Data("mesh-coordinator: \(MeshText.escaped(warning))\n".utf8))
        }
    } catch {
        fail("\(error)")
    }
}

var host: String? = nil
var adminKey: String? = nil
var insecure = ProcessInfo.processInfo.environment["MESH_INSECURE"] == "1"
var allowForeignHosts = false
var allowWeakKey = MeshKey.allowWeakFromEnvironment
var port = MeshDefaults.coordinatorPort
var authkey: String? = nil
var level: MeshLogger.Level? = nil
var http: String? = nil
var identity: NodeIdentity? = nil
var names: NameBindings? = nil
var announce = false
var meshName = MeshDefaults.meshNameFromEnvironment
var arguments = CommandLine.arguments.dropFirst()
func value(for option: String, from arguments: inout ArraySlice<String>) -> String {
    guard let next = arguments.popFirst() else { fail("\(option) needs a value; see mesh-coordinator --help") }
    return next
}
while let argument = arguments.popFirst() {
    switch argument {
    case "--host": host = value(for: argument, from: &arguments)
    case "--port":
        let text = value(for: argument, from: &arguments)
        guard let parsed = UInt16(text) else { fail("--port: \"\(text)\" is not a port number (0-65535)") }
        port = parsed
    case "--authkey":
        authkey = value(for: argument, from: &arguments)
        if authkey?.isEmpty == true { fail("--authkey: the key must not be empty") }
    case "--authkey-file":
        authkey = readKeyFile(value(for: argument, from: &arguments))
    case "--admin-key-file":
        adminKey = readKeyFile(value(for: argument, from: &arguments))
    case "--identity-file":
        do {
            identity = try NodeIdentity(contentsOfFile: value(for: argument, from: &arguments))
        } catch {
            fail(error.description)
        }
    case "--names-file":
        do {
            names = try NameBindings(contentsOfFile: value(for: argument, from: &arguments))
        } catch {
            fail(error.description)
        }
    case "--insecure": insecure = true
    case "--allow-foreign-hosts": allowForeignHosts = true
    case "--allow-weak-key": allowWeakKey = true
    case "--log-level":
        let text = value(for: argument, from: &arguments)
        guard let parsed = MeshLogger.Level(name: text) else { fail("--log-level: unknown level \"\(text)\"") }
        level = parsed
    case "--http":
        http = value(for: argument, from: &arguments)
    case "--announce": announce = true
    case "--mesh-name":
        meshName = value(for: argument, from: &arguments)
        if meshName.isEmpty || meshName.utf8.count > 255 || meshName.contains(where: \.isNewline) {
            fail("--mesh-name: a name of 1 to 255 bytes on one line")
        }
    case "--version":
        print("mesh-coordinator \(MeshDefaults.version)")
        exit(0)
    case "--help", "-h":
        print(usage)
        exit(0)
    default:
        fail("unknown option \"\(argument)\"; see mesh-coordinator --help")
    }
}
if authkey == nil { authkey = MeshDefaults.authkeyFromEnvironment }
// A key too short or too easy to guess is a bad argument: said before anything starts.
for key in [authkey, adminKey] {
    guard let key, !key.isEmpty else { continue }
    do {
        try MeshKey.validate(key, allowWeak: allowWeakKey)
    } catch {
        fail(error.description)
    }
}

let logger = MeshLogger(label: "coordinator", level: level)
var configuration = MeshCoordinator.Configuration(
    host: host, port: port, authkey: authkey, logger: logger, adminKey: adminKey, insecure: insecure,
    allowForeignHosts: allowForeignHosts)
configuration.allowWeakKey = allowWeakKey
configuration.identity = identity
configuration.names = names
let coordinator = MeshCoordinator(configuration: configuration)
let address: SocketAddress
do {
    address = try await coordinator.start()
} catch {
    fail("\(error)", code: 1)
}
var web: MeshWebServer? = nil
if let http {
    // HOST:PORT, [V6]:PORT, or a bare host (port 6375).
    let server = MeshWebServer(
        coordinator: coordinator,
        // The page shows what `mesh status` shows, so its token comes from the admin key.
        configuration: .init(host: http, port: MeshWebServer.defaultPort, authkey: adminKey ?? authkey, logger: logger))
    do {
        let bound = try await server.start()
        if !bound.isLoopback, (adminKey ?? authkey ?? "").isEmpty, !insecure {
            fail(
                "--http: refusing to serve the web view beyond loopback with no authkey: anyone who can reach"
                    + " \(bound) could read the mesh's status. Set a key, or pass --insecure if that is meant", code: 1)
        }
        web = server
        FileHandle.standardOutput.write(Data("mesh-coordinator web view on http://\(bound)/\n".utf8))
    } catch {
        fail("--http: \(error)")
    }
}
if !(authkey ?? "").isEmpty {
    FileHandle.standardOutput.write(Data("mesh-coordinator static key \(coordinator.identity.publicKeyHex)\n".utf8))
}
var announcer: BeaconAnnouncer? = nil
if announce {
    guard case .ipv4(let bound, _) = address, bound != "0.0.0.0", !address.isLoopback else {
        fail("--announce: the beacon names this coordinator's address, so listen on the IPv4 address nodes reach (--host), not \(address)", code: 1)
    }
    do {
        let key = try MeshKey.stretched(authkey)
        // A keyed beacon names the coordinator's static key, which nodes that discover it pin.
        let beacon = Beacon(
            mesh: meshName, address: address.description, key: key,
            fingerprint: key == nil ? "" : coordinator.identity.publicKeyHex)
        announcer = try BeaconAnnouncer(beacon, from: bound, logger: logger)
        FileHandle.standardOutput.write(Data("mesh-coordinator announcing mesh \"\(MeshText.escaped(meshName))\" on the LAN (UDP \(Beacon.port))\n".utf8))
    } catch {
        fail("--announce: \(error)", code: 1)
    }
}
// Written unbuffered: scripts and tests wait for this line to learn the port.
FileHandle.standardOutput.write(Data("mesh-coordinator listening on \(address)\n".utf8))
let server = Task { try await coordinator.run() }
_ = await MeshProcess.waitForTerminationSignal()
announcer?.stop()
server.cancel()
_ = await server.result
web?.close()
exit(0)
