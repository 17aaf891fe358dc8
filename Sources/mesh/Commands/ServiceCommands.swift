import Foundation
import Mesh
import MeshTooling

/// `mesh service list` and `mesh service call`.
enum ServiceCommands {
    static func list(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let topology = try await context.withInspector { try await $0.topology(timeout: context.timeout) }
        Format.printListing(MeshReport.Service.all(in: topology), arguments, header: ["SERVICE", "PROVIDERS", "GROUPS"]) {
            [$0.service, String($0.providers), MeshReport.groupsText($0.groups)]
        }
    }

    static func call(_ arguments: ParsedArguments, _ context: MeshContext) async throws {
        let service = arguments.positionals[0]
        let request: JSONValue
        do {
            request = try JSONValue(parsing: Data(arguments.positionals[1].utf8))
        } catch {
            throw CommandLineError.usage("invalid JSON \"\(arguments.positionals[1].prefix(40))\": \(JSONValue.describe(error))")
        }
        let patience = try arguments.seconds("--timeout") ?? 5
        let node = try await context.node(named: "mesh-call")
        do {
            let started = ContinuousClock.now
            let outcome = try await runUntilInterrupted(onSignal: { await node.close() }) {
                try await node.call(service, request, as: Data.self, timeout: .seconds(patience))
            }
            await node.close()
            guard let reply = outcome.value else {
                // Stopped by `mesh node kill` (a clean stop), or interrupted with no reply yet.
                guard let signal = outcome.signal, !(await node.wasAskedToStop) else { return }
                throw CommandLineError.interrupted(
                    "after waiting \(Format.seconds(seconds(started.duration(to: .now)))) s for the reply from \(service); nothing was printed",
                    signal: signal)
            }
            if let value = try? JSONValue(parsing: reply) {
                print(Format.compactJSON(value))
            } else {
                print("{\"bytes\":\(reply.count),\"base64\":\"\(reply.base64EncodedString())\"}")
            }
        } catch {
            await node.close()
            throw error
        }
    }
}
