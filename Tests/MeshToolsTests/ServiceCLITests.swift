import Foundation
import MeshTesting
import Testing

@testable import Mesh

extension CLITests {
    /// Starts a `demo-service` (a node named "calculator" providing add, uppercase and wait).
    func startCalculator(_ address: String) async throws -> ChildProcess {
        let service = try ChildProcess(
            "demo-service", environment: CLITests.quiet.merging(["MESH_COORDINATOR": address]) { $1 })
        try await service.waitForOutput("ready")
        return service
    }

    @Test("service list shows each service's provider count and groups; --json has the fields")
    func serviceList() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let empty = try await mesh(["service", "list", "--coordinator", address])
        #expect(empty.code == 0 && empty.lines == ["SERVICE  PROVIDERS  GROUPS"], "\(empty)")
        let services = [try await startCalculator(address), try await startCalculator(address)]
        defer { for service in services { service.terminate() } }

        let table = try await mesh(["service", "list", "--coordinator", address])
        #expect(table.code == 0)
        #expect(
            table.lines == [
                "SERVICE    PROVIDERS  GROUPS",
                "add        2          calculator (2)",
                "uppercase  2          calculator (2)",
                "wait       2          calculator (2)",
            ], "\(table)")

        let json = try await mesh(["service", "list", "--json", "--coordinator", address])
        let entries = try #require(try json.json() as? [[String: Any]], "\(json)")
        #expect(entries.map { $0["service"] as? String } == ["add", "uppercase", "wait"])
        #expect(entries.map { $0["providers"] as? Int } == [2, 2, 2])
        let groups = try #require(entries.first?["groups"] as? [[String: Any]])
        #expect(groups.map { $0["name"] as? String } == ["calculator"])
        #expect(groups.map { $0["members"] as? Int } == [2])
    }

    @Test("service call prints the reply as JSON and exits 0; no provider, a timeout or a remote error exit 1 with one line")
    func serviceCall() async throws {
        let (coordinator, address) = try await startCoordinatorProcess()
        defer { coordinator.terminate() }
        let service = try await startCalculator(address)
        defer { service.terminate() }

        let sum = try await mesh(["service", "call", "add", #"{"a": 2, "b": 40}"#, "--coordinator", address])
        #expect(sum.code == 0 && sum.lines == [#"{"sum":42}"#] && sum.errors.isEmpty, "\(sum)")
        let shout = try await mesh(["service", "call", "uppercase", #""résumé""#, "--coordinator", address])
        #expect(shout.code == 0 && shout.lines == [#""RÉSUMÉ""#], "\(shout)")

        let nobody = try await mesh(["service", "call", "subtract", "{}", "--coordinator", address])
        expectFailure(nobody, code: 1, mentioning: #"no node provides the service "subtract""#)
        #expect(nobody.seconds < 5, "no provider should fail at once: \(nobody)")

        let slow = try await mesh(["service", "call", "wait", "5000", "--timeout", "0.5", "--coordinator", address])
        expectFailure(slow, code: 1, mentioning: #"timed out after 0.5 s waiting for a reply from service "wait""#)

        let overflow = try await mesh(
            ["service", "call", "add", #"{"a": 9223372036854775807, "b": 1}"#, "--coordinator", address])
        expectFailure(overflow, code: 1, mentioning: "overflows a 64-bit integer")
        #expect(overflow.errors.contains(#"service "add" failed at calculator ("#), "\(overflow)")

        let badRequest = try await mesh(["service", "call", "add", "[1, 2]", "--coordinator", address])
        expectFailure(badRequest, code: 1, mentioning: "could not decode the request")

        let badJSON = try await mesh(["service", "call", "add", "{a:", "--coordinator", address])
        expectFailure(badJSON, code: 2, mentioning: "invalid JSON")
        let missing = try await mesh(["service", "call", "add", "--coordinator", address])
        expectFailure(missing, code: 2, mentioning: "needs JSON")
        let help = try await mesh(["service", "--help"])
        #expect(help.code == 0 && help.output.contains("service call NAME JSON"), "\(help)")
    }
}
