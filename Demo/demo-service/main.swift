import Foundation
import Mesh

// Services: request and reply between nodes. Every process started as `demo-service` joins the
// pool "calculator" and provides three services; `--call` is the client that calls them.
//
//   demo-service            a provider: "add" ({"a":2,"b":3} → {"sum":5}), "uppercase"
//                           ("hello" → "HELLO") and "wait" (N → N, answered after N ms)
//   demo-service --call     calls "add" and "uppercase" once each and prints the replies
MeshProcess.lineBufferedOutput()
MeshProcess.catchTerminationSignals()  // a SIGTERM during start-up still shuts down cleanly

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

/// Prints `demo-service: REASON` and exits 1.
func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("demo-service: \(error)\n".utf8))
    exit(1)
}

let pid = ProcessInfo.processInfo.processIdentifier
do {
    if CommandLine.arguments.dropFirst().first == "--call" {
        let node = try await buildMeshNode(name: "calculator-client")
        try await node.waitForService("add", timeout: .seconds(30))
        let sum: AddResponse = try await node.call("add", AddRequest(a: 2, b: 3), timeout: .seconds(5))
        print("client called add(2, 3): sum=\(sum.sum)")
        try await node.waitForService("uppercase", timeout: .seconds(30))
        let shout: String = try await node.call("uppercase", "hello mesh", timeout: .seconds(5))
        print("client called uppercase(\"hello mesh\"): \(shout)")
        await node.close()
    } else {
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
} catch {
    fail(error)
}
