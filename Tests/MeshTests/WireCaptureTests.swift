import Foundation
import Mesh
import MeshCoordination
import MeshTesting
import Synchronization
import Testing

/// What an eavesdropper on the loopback sees: `tcpdump -i lo` while a mesh registers, sends,
/// serves and calls. With a key, no name, topic or payload may appear; without one, all do (which
/// also proves the capture works).
@Suite("A packet capture of a keyed mesh", .serialized)
struct WireCaptureTests {
    static let key = "the mesh key for the capture test"

    /// Runs a mesh (coordinator, a listener and service, a sender and caller) with unique markers
    /// in its names, topic, service and payloads, under `tcpdump`, and returns the captured bytes.
    static func captured(authkey: String?, marker: String) async throws -> [UInt8]? {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-capture-\(marker).pcap").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let tcpdump = Process()
        tcpdump.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tcpdump.arguments = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w", file, "tcp"]
        let errors = Pipe()
        tcpdump.standardError = errors
        tcpdump.standardOutput = FileHandle.nullDevice
        do {
            try tcpdump.run()
        } catch {
            return nil
        }
        // Whatever happens below, tcpdump does not outlive the test.
        defer { if tcpdump.isRunning { kill(tcpdump.processIdentifier, SIGKILL) } }
        // tcpdump says "listening on lo" once it captures; a missing binary or no permission ends it.
        let started = Mutex("")
        let reader = errors.fileHandleForReading
        reader.readabilityHandler = { handle in
            let chunk = handle.availableData
            started.withLock { $0 += String(decoding: chunk, as: UTF8.self) }
        }
        try await eventually("tcpdump to start", seconds: 10) {
            started.withLock { $0.contains("listening on") } || !tcpdump.isRunning
        }
        guard tcpdump.isRunning else {
            print("capture test skipped: tcpdump could not capture: \(started.withLock { $0 })")
            return nil
        }
        var configuration = RunningCoordinator.testConfiguration(authkey: authkey)
        configuration.allowWeakKey = true
        try await withMesh(configuration) { mesh in
            let listener = try await mesh.node("listener-\(marker)", authkey: authkey) { $0.allowWeakKey = true }
            let sender = try await mesh.node("sender-\(marker)", authkey: authkey) { $0.allowWeakKey = true }
            let received = Mutex(0)
            try await listener.listen("topic-\(marker)", as: String.self) { _, _ in received.withLock { $0 += 1 } }
            try await listener.serve("service-\(marker)") { (request: String) in "reply-\(marker)-\(request)" }
            try await sender.waitForListener("topic-\(marker)", timeout: .seconds(10))
            try await sender.waitForService("service-\(marker)", timeout: .seconds(10))
            for index in 0..<20 { try await sender.send("topic-\(marker)", "payload-\(marker)-\(index)") }
            let reply: String = try await sender.call("service-\(marker)", "request-\(marker)")
            #expect(reply.contains("reply-\(marker)"))
            try await eventually("the listener to get all 20", seconds: 10) { received.withLock { $0 } == 20 }
        }
        // Every packet is in the file already (--immediate-mode hands each to tcpdump at once, -U
        // writes it at once). The test process may
        // ignore SIGINT and SIGTERM, which a child inherits, so the stop is SIGKILL.
        kill(tcpdump.processIdentifier, SIGKILL)
        try await eventually("tcpdump to stop", seconds: 10) { !tcpdump.isRunning }
        reader.readabilityHandler = nil
        return FileManager.default.contents(atPath: file).map { [UInt8]($0) }
    }

    static func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
        let bytes = Array(needle.utf8)
        guard haystack.count >= bytes.count else { return false }
        let first = bytes[0]
        var index = 0
        while index <= haystack.count - bytes.count {
            if haystack[index] == first, haystack[index..<(index + bytes.count)].elementsEqual(bytes) { return true }
            index += 1
        }
        return false
    }

    @Test("with a key, the capture holds no node name, topic, service or payload; without one it holds them all")
    func keyedTrafficIsUnreadable() async throws {
        let marker = "cap\(UInt32.random(in: 100_000...999_999))"
        guard let plain = try await Self.captured(authkey: nil, marker: marker + "p") else { return }
        // The control run: an open mesh sends everything in clear, so the capture sees it.
        for word in ["listener-", "sender-", "topic-", "service-", "payload-", "reply-"] {
            #expect(Self.contains(plain, word + marker + "p"), "open mesh: \(word) should be visible")
        }
        let keyed = try #require(try await Self.captured(authkey: Self.key, marker: marker + "k"))
        #expect(keyed.count > 4_000, "the keyed capture is \(keyed.count) bytes; did it capture anything?")
        for word in ["listener-", "sender-", "topic-", "service-", "payload-", "reply-", "request-"] {
            #expect(!Self.contains(keyed, word + marker + "k"), "keyed mesh: \(word) is readable on the wire")
        }
    }
}
