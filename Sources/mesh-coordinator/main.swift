import Foundation
import Mesh

/// mesh-coordinator: holds the mesh's topology and tells every node about each change.
let usage = """
    usage: mesh-coordinator [--host H] [--port P] [--authkey KEY | --authkey-file PATH] [--log-level L]
                            [--http HOST:PORT]

      --host H            address to listen on (default 0.0.0.0, every IPv4 interface)
      --port P            TCP port (default 6374; 0 picks a free one)
      --authkey KEY       require this shared key on every connection (visible in `ps`:
                          prefer --authkey-file or MESH_AUTHKEY)
      --authkey-file PATH read the key from a file
      --log-level L       error, warning, info (default), debug or trace; also MESH_LOG_LEVEL
      --http HOST:PORT    also serve the web view and Prometheus /metrics there (off by default;
                          127.0.0.1:6375 is typical; with a key, requests need the token that
                          `mesh http-token` prints; see docs/HTTP.md)
      --version           print the version
      --help              print this help

    Without a key option, MESH_AUTHKEY is used when set.
    """

MeshProcess.catchTerminationSignals()

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("mesh-coordinator: \(message)\n".utf8))
    exit(2)
}

var host = "0.0.0.0"
var port = MeshDefaults.coordinatorPort
var authkey: String? = nil
var level: MeshLogger.Level? = nil
var http: String? = nil
var arguments = CommandLine.arguments.dropFirst()
func value(for option: String, from arguments: inout ArraySlice<String>) -> String {
    guard let next = arguments.popFirst() else { fail("\(option) needs a value\n\(usage)") }
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
        do { authkey = try MeshProcess.readAuthkey(fromFile: value(for: argument, from: &arguments)) } catch { fail("\(error)") }
    case "--log-level":
        let text = value(for: argument, from: &arguments)
        guard let parsed = MeshLogger.Level(name: text) else { fail("--log-level: unknown level \"\(text)\"") }
        level = parsed
    case "--http":
        http = value(for: argument, from: &arguments)
    case "--version":
        print("mesh-coordinator \(MeshDefaults.version)")
        exit(0)
    case "--help", "-h":
        print(usage)
        exit(0)
    default:
        fail("unknown option \"\(argument)\"\n\(usage)")
    }
}
if authkey == nil { authkey = MeshDefaults.authkeyFromEnvironment }

let logger = MeshLogger(label: "coordinator", level: level)
let coordinator = MeshCoordinator(configuration: .init(host: host, port: port, authkey: authkey, logger: logger))
let address: SocketAddress
do {
    address = try await coordinator.start()
} catch {
    fail("\(error)")
}
var web: MeshWebServer? = nil
if let http {
    // HOST:PORT, [V6]:PORT, or a bare host (port 6375).
    let server = MeshWebServer(
        coordinator: coordinator,
        configuration: .init(host: http, port: MeshWebServer.defaultPort, authkey: authkey, logger: logger))
    do {
        let bound = try await server.start()
        web = server
        FileHandle.standardOutput.write(Data("mesh-coordinator web view on http://\(bound)/\n".utf8))
    } catch {
        fail("--http: \(error)")
    }
}
// Written unbuffered: scripts and tests wait for this line to learn the port.
FileHandle.standardOutput.write(Data("mesh-coordinator listening on \(address)\n".utf8))
let server = Task { try await coordinator.run() }
_ = await MeshProcess.waitForTerminationSignal()
server.cancel()
_ = await server.result
web?.close()
exit(0)
