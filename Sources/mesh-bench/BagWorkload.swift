import Foundation
import Mesh
import MeshBag

/// The `bag` workload: `mesh bag record`'s recorder taking everything one sender sends as fast
/// as the mesh moves it, into an MCAP file on the local disk.
///
/// Two rows: 64-byte messages (msgs/s, floor 500,000), and 1 MiB messages in MB/s against the
/// mesh's own W3 (1 MiB messages to a plain receiver) measured in the same run (floor 0.5×). The
/// rate is the file's: messages (or payload bytes) over the span of their receive times, read
/// back from the finished file, so a message counts only once it is in the file. Lost is what
/// was sent and is not in the file. The 1 MiB row also notes the file system's own ceiling in the
/// same run: plain 4 MiB `write` calls of the same number of bytes into the same directory.
extension Workloads {
    func bag() async -> [BenchRow] {
        let count = sizes.w1Messages
        var small = BenchRow(
            workload: "bag", title: "bag record Data \(sizes.payloadBytes) B, \(count) msgs", unit: "msgs/s",
            floor: .atLeast(500_000))
        small.lost = 0
        let smallLimit = deadline(count, 40e-6)
        await repeatRuns(&small, "recorder") { row in
            let result = try await recordRun(count: count, size: sizes.payloadBytes, deadline: smallLimit)
            row.ours.append(result.rate)
            row.lost = max(row.lost ?? 0, count - result.recorded)
            row.addDetail("file MB", Double(result.fileBytes) / 1e6)
        }

        let bigCount = sizes.w3Messages
        let bigSize = sizes.w3PayloadBytes
        var big = BenchRow(
            workload: "bag", title: "bag record Data \(bigSize >> 20) MiB, \(bigCount) msgs (base: mesh W3)", unit: "MB/s",
            floor: .ratioAtLeast(0.5))
        big.lost = 0
        let bigLimit = deadline(bigCount, Double(bigSize) / 10e6)
        await repeatRuns(&big, "recorder") { row in
            let result = try await recordRun(count: bigCount, size: bigSize, deadline: bigLimit)
            row.ours.append(result.megabytesPerSecond)
            row.lost = max(row.lost ?? 0, bigCount - result.recorded)
        }
        await repeatRuns(&big, "plain file writes") { row in
            row.addDetail("plain write MB/s", try await plainWriteMegabytesPerSecond(bytes: bigCount * bigSize))
        }
        await repeatRuns(&big, "mesh W3") { row in
            let fanOut = try await meshFanOut(
                receivers: ["receiver"], count: bigCount, size: bigSize, codable: false, expectedEach: bigCount,
                deadline: bigLimit)
            row.baseline.append(fanOut.receiverMegabytesPerSecond)
        }
        return [small, big]
    }

    private struct Recording {
        var recorded: Int
        var rate: Double
        var megabytesPerSecond: Double
        var fileBytes: Int
    }

    /// One sender and one recorder process, with a coordinator in this one.
    private func recordRun(count: Int, size: Int, deadline: Double) async throws -> Recording {
        try await LocalCoordinator.with { coordinator in
            let children = ChildGroup(deadline: deadline + 10)
            defer { children.killAll() }
            let path = FileManager.default.temporaryDirectory
                .appendingPathComponent("mesh-bench-bag-\(ProcessInfo.processInfo.processIdentifier).mcap").path
            defer { unlink(path) }
            let recorder = try children.start(
                "bag-recorder",
                ["--coordinator", coordinator, "--count", "\(count)", "--path", path, "--wait", "\(Int(deadline))"])
            _ = try await recorder.line(startingWith: "READY", within: 30 * patience)
            let sender = try children.start(
                "sender",
                [
                    "--coordinator", coordinator, "--payload", "data", "--count", "\(count)", "--size", "\(size)",
                    "--markers", "1", "--names", BagBench.nodeName, "--members", "1",
                ])
            let sent = try await sender.result(within: deadline + 5)
            let result = try await recorder.result(within: deadline + 5)
            if let dropped = sent.dropped, dropped > 0 { throw BenchFailure.run("the sender dropped \(dropped) messages") }
            let recorded = result.received ?? 0
            let seconds = Double((result.lastNanos ?? 0) &- (result.firstNanos ?? 0)) / 1e9
            guard seconds > 0 else { throw BenchFailure.run("the recording spans no time (\(recorded) messages)") }
            return Recording(
                recorded: recorded, rate: Double(recorded) / seconds,
                megabytesPerSecond: Double(result.bytes ?? 0) / seconds / 1e6, fileBytes: Int(result.elapsedNanos ?? 0))
        }
    }
}

/// Writes `bytes` zero bytes in 4 MiB `write` calls to a new file in the temporary directory (on
/// a thread of its own), then removes it; returns MB/s.
private func plainWriteMegabytesPerSecond(bytes: Int) async throws -> Double {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("mesh-bench-plain-\(ProcessInfo.processInfo.processIdentifier).bin").path
    let result: Result<Double, BenchFailure> = await withCheckedContinuation { continuation in
        Thread.detachNewThread {
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                continuation.resume(returning: .failure(.run("cannot create \(path)")))
                return
            }
            defer {
                close(fd)
                unlink(path)
            }
            let block = [UInt8](repeating: 0, count: 4 << 20)
            let start = monotonicNanos()
            var left = bytes
            while left > 0 {
                let written = block.withUnsafeBytes { write(fd, $0.baseAddress, min(left, $0.count)) }
                guard written > 0 else {
                    continuation.resume(returning: .failure(.run("write to \(path) failed")))
                    return
                }
                left -= written
            }
            let seconds = Double(monotonicNanos() - start) / 1e9
            continuation.resume(returning: .success(Double(bytes) / seconds / 1e6))
        }
    }
    return try result.get()
}

/// The recorder's side of the `bag` workload, run as a child process.
enum BagBench {
    static let nodeName = "mesh-bag-bench"

    /// Records the data topic into `--path` until `--count` messages are in, or `--wait` seconds
    /// passed; then finishes the file, reads it back, and prints `RESULT` with what the file holds:
    /// messages, payload bytes, the first and last receive time, and (in `elapsedNanos`) its size.
    static func recorder(_ arguments: RoleArguments) async throws {
        let expected = try arguments.int("count")
        let path = try arguments.string("path")
        let wait = try arguments.double("wait", default: 60)
        let node = try await buildMeshNode(
            name: nodeName, configuration: MeshRoles.configuration(arguments, name: nodeName))
        let recorder = try BagRecorder(path: path, options: .init(topics: [BenchTopic.data]))
        let recording = Task { try await recorder.run(node: node) }
        try await node.waitUntilListening(BenchTopic.data)
        emit("READY")
        let started = ContinuousClock.now
        while recorder.snapshot(since: started).messages < expected, started.duration(to: .now) < .seconds(wait) {
            try await Task.sleep(for: .milliseconds(5))
        }
        recording.cancel()
        _ = try await recording.value
        var reader = try MCAPReader(path: path)
        var bytes = 0
        while let message = try reader.next() { bytes += message.data.count }
        let statistics = reader.statistics
        guard reader.endedCleanly else { throw BenchFailure.run("the recording did not end cleanly") }
        emitResult(
            ChildResult(
                received: Int(statistics.messageCount), bytes: bytes, firstNanos: statistics.messageStartTime,
                lastNanos: statistics.messageEndTime, elapsedNanos: UInt64(reader.data.count)))
        try await MeshRoles.linger()
    }
}

extension MeshNode {
    /// Waits until this node's own listen on `topic` is in its topology.
    fileprivate func waitUntilListening(_ topic: String) async throws {
        let me = id
        while !(currentTopology.nodes[me]?.topics.contains(topic) ?? false) {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
