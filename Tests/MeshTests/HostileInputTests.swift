import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh
@testable import MeshCoordination

#if canImport(Glibc)
import Glibc
#endif

extension ResilienceTests {
    /// Garbage on the wire closes that one connection; the coordinator and nodes serve on.
    @Suite("Hostile input", .serialized)
    struct HostileInputTests {
        /// A coordinator and a node, in this process, logging into a tally.
        struct Target {
            let coordinator: MeshCoordinator
            let task: Task<Void, any Error>
            let address: String
            let port: UInt16
            let node: MeshNode
            let nodePort: UInt16
            let checks: Collector<String>

            static func start(tally: LogTally) async throws -> Target {
                let coordinator = MeshCoordinator(
                    configuration: .init(host: "127.0.0.1", port: 0, logger: tally.logger("coordinator")))
                let bound = try await coordinator.start()
                let task = Task { try await coordinator.run() }
                let node = try await buildMeshNode(
                    name: "target",
                    configuration: MeshNode.Configuration(
                        coordinator: bound.description, authkey: nil, listenHost: "127.0.0.1",
                        logger: tally.logger("target")))
                let checks = Collector<String>()
                try await node.listen("check") { (_: String, text: String) in checks.append(text) }
                let nodePort = await node.listenAddress!.port
                return Target(
                    coordinator: coordinator, task: task, address: bound.description, port: bound.port, node: node,
                    nodePort: nodePort, checks: checks)
            }

            /// Two fresh nodes exchange a message through the coordinator, and a sender reaches the target node.
            func expectServing(_ label: String) async throws {
                let a = try await buildMeshNode(
                    name: "after-a", configuration: .init(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: .silent))
                let b = try await buildMeshNode(
                    name: "after-b", configuration: .init(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: .silent))
                let got = Collector<String>()
                try await b.listen("ping") { (_: String, text: String) in got.append(text) }
                try await a.waitForListener("ping", timeout: .seconds(5))
                try await a.send("ping", label)
                #expect(try await got.wait(for: 1, seconds: 5) == [label])
                let before = checks.values.count
                try await a.waitForListener("check", timeout: .seconds(5))
                try await a.send("check", label)
                let checked = try await checks.wait(for: before + 1, seconds: 5)
                #expect(checked.last == label)
                await a.close()
                await b.close()
            }

            func stop() async {
                await node.close()
                task.cancel()
                _ = await task.result
            }
        }

        @Test("100,000 malformed connections at a coordinator and a node's peer port: each is closed, both serve on, memory and fds return")
        func fuzzCoordinatorAndNode() async throws {
            let environment = ProcessInfo.processInfo.environment
            let seed = environment["MESH_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
            let count = environment["MESH_FUZZ_COUNT"].flatMap { Int($0) } ?? 100_000
            let judgedEvery = environment["MESH_FUZZ_JUDGED_EVERY"].flatMap { Int($0) }.map { max(1, $0) } ?? 20
            print("fuzz: seed \(seed) (set MESH_FUZZ_SEED=\(seed) to replay), \(count) inputs, 1 in \(judgedEvery) judged")
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            try await target.expectServing("before")

            // Warm up: the first few thousand connections grow pools and caches for good.
            let warmUp = 2_000
            _ = await fuzz(seed: seed, range: 0..<warmUp, coordinatorPort: target.port, nodePort: target.nodePort, judgedEvery: judgedEvery)
            try await eventually("warm-up connections to close", seconds: 10) {
                establishedSocketCount(localPort: target.port) <= 3 && establishedSocketCount(localPort: target.nodePort) <= 1
            }
            let baselineFDs = openFileDescriptorCount()
            let baselineRSS = residentMemoryBytes()
            tally.reset()

            let started = ContinuousClock.now
            let report = try await withDeadline(300) {
                await fuzz(
                    seed: seed, range: warmUp..<(warmUp + count), coordinatorPort: target.port, nodePort: target.nodePort,
                    judgedEvery: judgedEvery)
            }
            let elapsed = started.duration(to: .now)
            let peakRSS = residentMemoryBytes()
            print("fuzz: \(report.inputs) inputs (\(report.judged) judged) in \(secondsText(elapsed)) (\(Int(Double(report.inputs) / elapsed.inSeconds))/s)")
            for (index, name) in HostileInput.categoryNames.enumerated() {
                print("fuzz:   \(name): \(report.byCategory[index]) inputs; judged \(report.judgedByCategory[index]), closed by the server \(report.closedByServer[index])")
            }
            print("fuzz: server-side log lines by reason: \(tally.snapshot.sorted { $0.key < $1.key })")
            for (_, line) in tally.examples.sorted(by: { $0.key < $1.key }) { print("fuzz:   e.g. \(line.prefix(200))") }
            #expect(report.inputs == count)
            #expect(report.connectFailures == 0, "\(report.connectFailures) connects failed (first errno \(report.firstConnectError)); seed \(seed)")
            #expect(report.mustClose > report.judged / 3, "the generator produced too few certainly-invalid inputs")
            #expect(report.notClosed.isEmpty, "\(report.notClosed.count) of \(report.mustClose) certainly-invalid judged inputs were not closed within 3 s; seed \(seed), first indices \(report.notClosed.sorted().prefix(10))")
            // The servers read and judged the bytes (rather than seeing only resets).
            let judged = tally.snapshot.filter { !["disconnected", "node joined", "node left"].contains($0.key) }.values.reduce(0, +)
            #expect(judged >= report.mustClose / 2, "only \(judged) rejections were logged for \(report.mustClose) certainly-invalid inputs")

            // Each connection was closed: nothing of the fuzz is still held open by either server.
            let drained = try await timeUntil("every fuzz connection to be closed by the servers", seconds: 10) {
                establishedSocketCount(localPort: target.port) <= 3 && establishedSocketCount(localPort: target.nodePort) <= 1
            }
            try await eventually("the fuzzers' registrations to be gone", seconds: 10) {
                await target.coordinator.topology.nodes.count == 1
            }
            try await target.expectServing("after")
            let fdSettle = try await timeUntil("the fd count to return to its baseline of \(baselineFDs)", seconds: 10) {
                openFileDescriptorCount() <= baselineFDs + 10
            }
            let finalRSS = residentMemoryBytes()
            print("fuzz: sockets drained \(secondsText(drained)) after the last input; fds \(baselineFDs) -> \(openFileDescriptorCount()) (settled in \(secondsText(fdSettle)))")
            print("fuzz: RSS baseline \(mebibytes(baselineRSS)), right after \(mebibytes(peakRSS)), final \(mebibytes(finalRSS)) (bound: baseline + 64 MiB)")
            #expect(finalRSS - baselineRSS < 64 << 20, "RSS grew by \(mebibytes(finalRSS - baselineRSS)); seed \(seed)")
            await target.stop()
        }

        @Test("slowloris: a hello sent one byte every 200 ms is cut off by the 5 s handshake deadline; others register meanwhile")
        func slowloris() async throws {
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            let port = target.port
            let nodePort = target.nodePort
            let before = (establishedSocketCount(localPort: port), establishedSocketCount(localPort: nodePort))
            let slow = Task {
                async let coordinatorSide = onThread("slowloris-coordinator") { slowlorisClient(port: port) }
                async let nodeSide = onThread("slowloris-node") { slowlorisClient(port: nodePort) }
                return await (coordinatorSide, nodeSide)
            }
            try await eventually("both slowloris clients to be connected", seconds: 5) {
                establishedSocketCount(localPort: port) > before.0 && establishedSocketCount(localPort: nodePort) > before.1
            }
            let meanwhile = ContinuousClock.now
            try await target.expectServing("during slowloris")
            let servedIn = meanwhile.duration(to: .now)
            let (coordinatorSide, nodeSide) = try await withDeadline(15) { await slow.value }
            print("slowloris: coordinator closed after \(coordinatorSide.map(secondsText) ?? "never"), node after \(nodeSide.map(secondsText) ?? "never"); a normal exchange took \(secondsText(servedIn)) meanwhile")
            for (side, closedAfter) in [("coordinator", coordinatorSide), ("node", nodeSide)] {
                #expect(closedAfter != nil, "the \(side) never closed the slow connection")
                if let closedAfter {
                    #expect(closedAfter > .milliseconds(4500) && closedAfter < .milliseconds(6500), "\(side): \(secondsText(closedAfter))")
                }
            }
            #expect(servedIn < .seconds(3))
            try await eventually("both servers to log the handshake timeout", seconds: 2) {
                tally.snapshot["no handshake", default: 0] >= 2
            }
            await target.stop()
        }

        @Test("slowloris after the hello: a frame trickled one byte per second is cut off within 10 s, at both servers")
        func slowlorisAfterHandshake() async throws {
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            let port = target.port
            let nodePort = target.nodePort
            let trickles = Task {
                async let coordinatorSide = onThread("trickle-coordinator") {
                    var rng = SplitMix64(seed: 5)
                    let frame = HostileInput.frame(kind: 1, body: HostileInput.controlJSON(type: "register", name: "slow", topics: []))
                    return trickleClient(port: port, opening: openMeshHello(using: &rng), trickled: frame, limit: .seconds(12))
                }
                async let nodeSide = onThread("trickle-node") {
                    var rng = SplitMix64(seed: 6)
                    // The peer hello itself is trickled: a node reads nothing else before it.
                    let opening = openMeshHello(purpose: 4, using: &rng)
                    let frame = HostileInput.frame(kind: 2, body: Array(#"{"id":"0000000000000000","name":"slow"}"#.utf8))
                    return trickleClient(port: nodePort, opening: opening, trickled: frame, limit: .seconds(12))
                }
                return await (coordinatorSide, nodeSide)
            }
            let (coordinatorClosed, nodeClosed) = try await withDeadline(20) { await trickles.value }
            print("slowloris after the hello: coordinator closed after \(coordinatorClosed.map(secondsText) ?? "never (12 s)"), node after \(nodeClosed.map(secondsText) ?? "never (12 s)")")
            #expect(coordinatorClosed.map { $0 < .seconds(10) } ?? false, "the coordinator kept a connection trickling 1 byte/s")
            #expect(nodeClosed.map { $0 < .seconds(10) } ?? false, "the node kept a data connection trickling 1 byte/s open for 12 s")
            try await target.expectServing("after trickling")
            await target.stop()
        }

        @Test("500 connections that never send a byte, at each server, are all closed within ~6 s while a normal node registers and messages")
        func silentConnections() async throws {
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            let baselineFDs = openFileDescriptorCount()
            let port = target.port
            let nodePort = target.nodePort
            let progress = ConnectProgress()
            let idle = Task {
                await onThread("silent-clients") { silentClients(count: 500, ports: [port, nodePort], progress: progress) }
            }
            try await eventually("the 1,000 silent connects to be made", seconds: 5) { progress.attempts == 1000 }
            print("silent: all connected; the servers hold \(establishedSocketCount(localPort: port)) and \(establishedSocketCount(localPort: nodePort)) of them open")
            let meanwhile = ContinuousClock.now
            try await target.expectServing("among silent connections")
            let servedIn = meanwhile.duration(to: .now)
            let result = try await withDeadline(15) { await idle.value }
            print("silent: \(result.opened) opened, \(result.closedByServer) closed by the servers, the last after \(secondsText(result.lastClose)); a normal exchange took \(secondsText(servedIn)) meanwhile")
            #expect(result.opened == 1000)
            #expect(result.closedByServer == result.opened)
            #expect(result.lastClose < .milliseconds(6500))
            #expect(servedIn < .seconds(3))
            try await eventually("descriptors to return", seconds: 5) { openFileDescriptorCount() <= baselineFDs + 10 }
            await target.stop()
        }

        @Test("a frame declaring 2 GiB is refused at once, at both servers, without the process's memory growing")
        func twoGigabyteFrame() async throws {
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            let before = residentMemoryBytes()
            let port = target.port
            let nodePort = target.nodePort
            let closed = await onThread("huge-frame") { () -> [Bool] in
                var rng = SplitMix64(seed: 7)
                var results: [Bool] = []
                for _ in 0..<20 {
                    for (index, server) in [port, nodePort].enumerated() {
                        guard let fd = RawClient.connect(port: server).fd else {
                            results.append(false)
                            continue
                        }
                        var bytes = openMeshHello(purpose: index == 0 ? 1 : 4, using: &rng)
                        bytes += HostileInput.header(length: 0x8000_0000, kind: index == 0 ? 1 : 3) + [UInt8](repeating: 7, count: 1024)
                        RawClient.send(fd, bytes)
                        results.append(RawClient.readUntilClosed(fd, timeoutMilliseconds: 2000))
                        RawClient.reset(fd)
                    }
                }
                return results
            }
            let after = residentMemoryBytes()
            print("2 GiB frames: \(closed.filter { $0 }.count) of \(closed.count) refused; RSS \(mebibytes(before)) -> \(mebibytes(after))")
            #expect(closed.allSatisfy { $0 }, "a connection declaring a 2 GiB frame was not closed within 2 s")
            #expect(after - before < 16 << 20)
            // Ten lines a second per kind, then a count: 40 refusals, as lines or in the summaries.
            try await eventually("40 refusals logged (\"exceeds the limit\" lines and summaries)", seconds: 3) {
                let counts = tally.snapshot
                return counts["exceeds the limit", default: 0] >= 10
                    && counts["exceeds the limit", default: 0] + counts["summarized", default: 0] >= 40
            }
            try await target.expectServing("after 2 GiB frames")
            await target.stop()
        }

        @Test("8 peers that declare a frame just under the node's limit and then stall cost it neither 8 × 8 MiB nor its event loop")
        func stalledLargeFrames() async throws {
            let tally = LogTally()
            let target = try await Target.start(tally: tally)
            let nodePort = target.nodePort
            let stalledCount = 8
            let before = residentMemoryBytes()
            let fds = await onThread("stalled-frames") { () -> [Int32] in
                var rng = SplitMix64(seed: 11)
                var fds: [Int32] = []
                for _ in 0..<stalledCount {
                    guard let fd = RawClient.connect(port: nodePort).fd else { continue }
                    let length = UInt32(HostileInput.Target.node.frameLimit - 1)
                    RawClient.send(
                        fd,
                        openMeshHello(purpose: 4, using: &rng)
                            + HostileInput.header(length: length, kind: 3) + [0, 1, 0x74, 0])
                    fds.append(fd)
                }
                return fds
            }
            // The node acts on the headers on its event loop; watch memory for a while.
            var peak = before
            let watch = ContinuousClock.now
            while watch.duration(to: .now) < .seconds(3) {
                peak = max(peak, residentMemoryBytes())
                try await Task.sleep(for: .milliseconds(100))
            }
            // Meanwhile everyone else must still be served.
            let meanwhile = ContinuousClock.now
            var stalledServing: (any Error)?
            do {
                try await target.expectServing("while frames are stalled")
            } catch {
                stalledServing = error
            }
            let servedIn = meanwhile.duration(to: .now)
            peak = max(peak, residentMemoryBytes())
            for fd in fds { RawClient.reset(fd) }
            print("stalled frames: \(fds.count) connections, each declaring \(HostileInput.Target.node.frameLimit - 1) bytes and sending 4: RSS \(mebibytes(before)) -> peak \(mebibytes(peak)); a normal exchange meanwhile took \(secondsText(servedIn))\(stalledServing.map { " and failed: \($0)" } ?? "")")
            #expect(fds.count == stalledCount)
            #expect(peak - before < 32 << 20, "\(stalledCount) stalled requests of 49 bytes each grew RSS by \(mebibytes(peak - before))")
            #expect(stalledServing == nil, "the node and coordinator stopped serving others while frames were stalled")
            // The event loop is shared by the whole test process: wait until it answers again.
            let address = target.address
            let recovered = try await timeUntil("the shared event loop to answer again", seconds: 120) {
                guard let probe = try? await buildMeshNode(
                    name: "probe", configuration: .init(coordinator: address, authkey: nil, listenHost: "127.0.0.1", logger: .silent))
                else { return false }
                await probe.close()
                return true
            }
            print("stalled frames: the event loop answered again \(secondsText(recovered)) after the stalled peers reset")
            try await target.expectServing("after stalled frames")
            await target.stop()
        }
    }
}

/// Sends a hello one byte every 200 ms; returns how long after connecting the server closed.
private func slowlorisClient(port: UInt16) -> Duration? {
    guard let fd = RawClient.connect(port: port).fd else { return nil }
    defer { RawClient.reset(fd) }
    var rng = SplitMix64(seed: 42)
    let hello = openMeshHello(using: &rng)
    let start = ContinuousClock.now
    for byte in hello {
        if RawClient.send(fd, [byte]) != 1 { return start.duration(to: .now) }
        if RawClient.readUntilClosed(fd, timeoutMilliseconds: 200) { return start.duration(to: .now) }
    }
    return nil
}

/// Sends `opening` at once, then `trickled` one byte per second; returns when the server closed.
private func trickleClient(port: UInt16, opening: [UInt8], trickled: [UInt8], limit: Duration) -> Duration? {
    guard let fd = RawClient.connect(port: port).fd else { return nil }
    defer { RawClient.reset(fd) }
    let start = ContinuousClock.now
    RawClient.send(fd, opening)
    for byte in trickled {
        if start.duration(to: .now) > limit { return nil }
        if RawClient.readUntilClosed(fd, timeoutMilliseconds: 1000) { return start.duration(to: .now) }
        if RawClient.send(fd, [byte]) != 1 { return start.duration(to: .now) }
    }
    return nil
}

/// What ``silentClients(count:ports:)`` saw.
private struct SilentResult: Sendable {
    var opened = 0
    var closedByServer = 0
    var lastClose = Duration.zero
}

/// Counts connect attempts made on another thread.
final class ConnectProgress: Sendable {
    private let count = Mutex(0)
    var attempts: Int { count.withLock { $0 } }
    func attempted() { count.withLock { $0 += 1 } }
}

/// Opens `count` connections to each port, sends nothing, and waits (up to 10 s) for the servers to close them.
private func silentClients(count: Int, ports: [UInt16], progress: ConnectProgress) -> SilentResult {
    var result = SilentResult()
    var open: [(fd: Int32, since: ContinuousClock.Instant)] = []
    for port in ports {
        for _ in 0..<count {
            if let fd = RawClient.connect(port: port).fd { open.append((fd, .now)) }
            progress.attempted()
        }
    }
    result.opened = open.count
    let deadline = ContinuousClock.now + .seconds(10)
    var buffer = [UInt8](repeating: 0, count: 256)
    while !open.isEmpty, ContinuousClock.now < deadline {
        var entries = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let ready = poll(&entries, nfds_t(entries.count), 100)
        guard ready > 0 else { continue }
        var still: [(fd: Int32, since: ContinuousClock.Instant)] = []
        for (index, entry) in entries.enumerated() {
            guard entry.revents != 0 else {
                still.append(open[index])
                continue
            }
            let count = buffer.withUnsafeMutableBytes { recv(entry.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count > 0 || (count < 0 && (errno == EAGAIN || errno == EINTR)) {
                still.append(open[index])  // the server's hello; keep waiting for the close
                continue
            }
            result.closedByServer += 1
            result.lastClose = max(result.lastClose, open[index].since.duration(to: .now))
            RawClient.reset(entry.fd)
        }
        open = still
    }
    for entry in open { RawClient.reset(entry.fd) }
    return result
}
