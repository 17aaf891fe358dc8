import Foundation
import MeshTesting
import Testing

@testable import Mesh

#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C in the middle of a command that had something left to do: it says what it did, and
/// exits 130 (143 for SIGTERM), as a shell reports an interrupted program. A command that runs
/// until Ctrl-C by design still exits 0.
@Suite("Interrupted commands", .serialized)
struct InterruptTests {
    func environment(_ mesh: RunningCoordinator) -> [String: String] {
        MeshCLI.quiet.merging(["MESH_COORDINATOR": mesh.address]) { $1 }
    }

    @Test("topic send --count 100 stopped by SIGINT: what it sent on stdout, `interrupted by SIGINT after N of 100` and 130")
    func sendWithCount() async throws {
        try await withMesh { mesh in
            let listener = try await mesh.node("listener")
            let got = Collector<Int>()
            try await listener.listen("ticks") { (_: String, value: Int) in got.append(value) }
            let send = try MeshCLI.start(["topic", "send", "ticks", "7", "--count", "100", "--rate", "20"], environment: environment(mesh))
            defer { send.terminate() }
            _ = try await got.wait(for: 3, seconds: 20)
            send.signal(SIGINT)
            let run = try await send.result(seconds: 10)
            #expect(run.code == 130, "\(run)")
            let sent = try #require(Int(run.trimmed.split(separator: " ").dropFirst().first ?? ""), "\(run)")
            #expect(sent >= 3 && sent < 100, "\(run)")
            #expect(run.lines == ["sent \(sent) message(s) on ticks"], "\(run)")
            #expect(run.errors == "mesh: interrupted by SIGINT after \(sent) of 100 message(s) on ticks\n", "\(run)")
            // What it said it sent is what arrived.
            try await eventually("the listener to get all \(sent)", seconds: 10) { got.values.count == sent }

            // Until Ctrl-C by design (a rate, no count): Ctrl-C is the end, not an interruption.
            let endless = try MeshCLI.start(["topic", "send", "ticks", "8", "--rate", "20"], environment: environment(mesh))
            defer { endless.terminate() }
            _ = try await got.wait(for: sent + 2, seconds: 20)
            endless.signal(SIGINT)
            let stopped = try await endless.result(seconds: 10)
            #expect(stopped.code == 0 && stopped.output.hasPrefix("sent ") && stopped.errors.isEmpty, "\(stopped)")
        }
    }

    @Test("topic send waiting for a listener that never comes: SIGINT ends the wait at once with 130, nothing sent")
    func sendWhileWaiting() async throws {
        try await withMesh { mesh in
            let watcher = try await mesh.node("watcher")
            let send = try MeshCLI.start(["topic", "send", "nobody", "1", "--timeout", "60"], environment: environment(mesh))
            defer { send.terminate() }
            try await watcher.waitForNodes(named: "mesh-send", timeout: .seconds(20))
            let interrupted = ContinuousClock.now
            send.signal(SIGINT)
            let run = try await send.result(seconds: 10)
            #expect(run.code == 130, "\(run)")
            #expect(run.output.isEmpty, "\(run)")
            #expect(run.errors == "mesh: interrupted by SIGINT while waiting for a listener on nobody; nothing was sent\n", "\(run)")
            #expect(interrupted.duration(to: .now) < .seconds(5), "the 60 s wait was not cut short")
        }
    }

    @Test("service call with no reply yet: SIGINT (130) and SIGTERM (143) end it at once, saying how long it waited")
    func serviceCall() async throws {
        try await withMesh { mesh in
            let provider = try await mesh.node("staller")
            let requests = Collector<Int>()
            let release = Gate()
            defer { release.open() }
            try await provider.serve("stall") { (request: Int) async throws -> Int in
                requests.append(request)
                await release.wait()
                return request
            }
            for (signal, code, name) in [(SIGINT, Int32(130), "SIGINT"), (SIGTERM, Int32(143), "SIGTERM")] {
                let before = requests.values.count
                let call = try MeshCLI.start(["service", "call", "stall", "1", "--timeout", "60"], environment: environment(mesh))
                defer { call.terminate() }
                _ = try await requests.wait(for: before + 1, seconds: 20)  // the request is with the provider
                let interrupted = ContinuousClock.now
                call.signal(signal)
                let run = try await call.result(seconds: 10)
                #expect(run.code == code, "\(run)")
                #expect(run.output.isEmpty, "\(run)")
                #expect(run.errors.hasPrefix("mesh: interrupted by \(name) after waiting "), "\(run)")
                #expect(run.errors.hasSuffix(" s for the reply from stall; nothing was printed\n"), "\(run)")
                #expect(interrupted.duration(to: .now) < .seconds(5), "the 60 s timeout was not cut short")
            }
        }
    }
}
