import Foundation
import Mesh

// Services: request and reply between nodes. Every process started as `demo-service` joins the
// pool "calculator" and provides three services; `--call` is the client that calls them.
//
//   demo-service            a provider: "add" ({"a":2,"b":3} → {"sum":5}), "uppercase"
//                           ("hello" → "HELLO") and "wait" (N → N, answered after N ms)
//   demo-service --call     calls "add" and "uppercase" once each and prints the replies

struct AddRequest: Codable, Sendable {
    var a: Int
    var b: Int
}

struct AddResponse: Codable, Sendable {
    var sum: Int
}

/// What the `add` service throws on overflow: the caller sees this text.
struct Overflow: Error, CustomStringConvertible {
    var a: Int
    var b: Int
    var description: String { "\(a) + \(b) overflows a 64-bit integer" }
}

let pid = ProcessInfo.processInfo.processIdentifier
await MeshProcess.run(
    help: """
        usage: demo-service
               demo-service --call

        Services: request and reply between nodes. Without options it joins the pool
        "calculator" and provides three services until Ctrl-C or SIGTERM, printing
        `service PID ready: add, uppercase, wait` once ready:
          add        {"a":2,"b":3} → {"sum":5}
          uppercase  "hello" → "HELLO"
          wait       N → N, answered after N milliseconds (at most 600,000)

        With --call it calls "add" and "uppercase" once each (waiting up to 30 s for a
        provider), prints `client called add(2, 3): sum=5` and the uppercase reply, and exits.

        The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
        Exit status: 0 when done or stopped, 1 with one line on standard error when something
        failed, 2 for bad arguments.
        """
) {
    let options = Array(CommandLine.arguments.dropFirst())
    if let unknown = options.first(where: { $0 != "--call" }) {
        throw MeshProcess.UsageError("unknown argument \"\(unknown)\"")
    }
    if options == ["--call"] {
        let node = try await buildMeshNode(name: "calculator-client")
        try await node.waitForService("add", timeout: .seconds(30))
        let sum: AddResponse = try await node.call("add", AddRequest(a: 2, b: 3), timeout: .seconds(5))
        print("client called add(2, 3): sum=\(sum.sum)")
        try await node.waitForService("uppercase", timeout: .seconds(30))
        let shout: String = try await node.call("uppercase", "hello mesh", timeout: .seconds(5))
        print("client called uppercase(\"hello mesh\"): \(shout)")
        await node.close()
        return
    }
    let node = try await buildMeshNode(name: "calculator")
    try await node.serve("add") { (request: AddRequest) async throws -> AddResponse in
        let (sum, overflow) = request.a.addingReportingOverflow(request.b)
        if overflow { throw Overflow(a: request.a, b: request.b) }
        print("service \(pid) add(\(request.a), \(request.b)) = \(sum)")
        return AddResponse(sum: sum)
    }
    try await node.serve("uppercase") { (text: String) async throws -> String in
        print("service \(pid) uppercase(\"\(text)\")")
        return text.uppercased()
    }
    try await node.serve("wait") { (milliseconds: Int) async throws -> Int in
        print("service \(pid) wait(\(milliseconds))")
        try await Task.sleep(for: .milliseconds(max(0, min(milliseconds, 600_000))))
        return milliseconds
    }
    print("service \(pid) ready: add, uppercase, wait")
    _ = await MeshProcess.waitForTerminationSignal()
    await node.close()
}
