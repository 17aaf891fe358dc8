import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshBag

/// `mesh bag info` and `play` against files made to break them: log times at both ends of 64
/// bits, `--start` and times a clock cannot hold, fields at their extremes, topics the mesh does
/// not allow. Each ends with exit 0, 1 or 2 and one line, never with a trap.
@Suite("mesh bag against crafted files", .serialized)
struct BagHostileTests {
    let bag = BagTests()

    /// A valid file with one raw channel per topic and these messages, in this order.
    static func file(_ messages: [(topic: String, logTime: UInt64, data: [UInt8])]) -> [UInt8] {
        var writer = MCAPWriter(library: "crafted")
        var channels: [String: UInt16] = [:]
        for message in messages {
            let channel =
                channels[message.topic]
                ?? writer.addChannel(topic: message.topic, messageEncoding: "application/octet-stream", metadata: ["mesh_encoding": "raw"])!
            channels[message.topic] = channel
            writer.append(channelID: channel, logTime: message.logTime, publishTime: message.logTime, data: Data(message.data))
        }
        writer.finish()
        return writer.takeOutput().flatMap { $0 }
    }

    func write(_ bytes: [UInt8], in directory: String, _ name: String) throws -> String {
        let path = directory + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// One line on standard error, `mesh: ` first; the status is an exit, not a signal.
    func expectOneLine(_ run: CommandRun, code: Int32, mentioning needle: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problem = run.failureProblem(code: code, mentioning: needle)
        #expect(problem == nil, "\(problem ?? "")", sourceLocation: sourceLocation)
    }

    @Test("log times 0 and 2^64-1: info describes the file; play sends the first, says how long the wait is, and SIGINT ends it with 130")
    func extremeLogTimes() async throws {
        try await withMesh { coordinator in
            let directory = try bag.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let path = try write(Self.file([("edge", 0, [1]), ("edge", .max, [2])]), in: directory, "edges.mcap")

            let info = try await MeshCLI.run(["bag", "info", "--json", path])
            #expect(info.code == 0, "\(info)")
            #expect(info.output.contains("\"startTime\" : 0,") && info.output.contains("\"endTime\" : 18446744073709551615,"), "\(info)")
            #expect(info.output.contains("\"end\" : \"2554-07-21T23:34:33.709551Z\""), "\(info)")
            let table = try await MeshCLI.run(["bag", "info", path])
            #expect(table.code == 0 && table.output.contains("duration:    18446744073.710 s"), "\(table)")

            let sink = try await coordinator.node("sink")
            let seen = try await bag.collect(["edge"], on: sink)
            let environment = bag.environment(coordinator)

            // At --rate 1 the second message is 584 years away: the first goes, a note says so,
            // and the wait is a wait (no trap). Ctrl-C: what was sent, and 130.
            let play = try MeshCLI.start(["bag", "play", path], environment: environment)
            defer { play.terminate() }
            #expect(try await seen.wait(for: 1, seconds: 20).map(\.payload) == [Data([1])])
            _ = try await play.waitForOutput("playing them takes 584.5 years", seconds: 10)
            play.signal(SIGINT)
            let interrupted = try await play.result(seconds: 10)
            #expect(interrupted.code == 130, "\(interrupted)")
            #expect(interrupted.output.hasPrefix("sent 1 message(s) on 1 topic(s) in "), "\(interrupted)")
            #expect(interrupted.errors.hasSuffix("mesh: interrupted by SIGINT after 1 of 2 message(s) of \(path)\n"), "\(interrupted)")

            // Fast enough, both go at once; a rate too small to matter is a longer wait, not a trap.
            let fast = try await MeshCLI.run(["bag", "play", path, "--rate", "1e300"], environment: environment)
            #expect(fast.code == 0 && fast.output.hasPrefix("sent 2 message(s)"), "\(fast)")
            let slow = try MeshCLI.start(["bag", "play", path, "--rate", "1e-300"], environment: environment)
            defer { slow.terminate() }
            _ = try await seen.wait(for: 4, seconds: 20)
            _ = try await slow.waitForOutput("playing them takes", seconds: 10)
            slow.signal(SIGINT)
            #expect(try await slow.waitForExit(seconds: 10) == 130, "\(slow.output)")

            // --start: 1e10 s in is the late message alone; 1e11 s is past the end, refused.
            let late = try await MeshCLI.run(["bag", "play", path, "--start", "1e10"], environment: environment)
            #expect(late.code == 0 && late.output.hasPrefix("sent 1 message(s)"), "\(late)")
            #expect(try await seen.wait(for: 5, seconds: 10).last?.payload == Data([2]))
            let past = try await MeshCLI.run(["bag", "play", path, "--start", "1e11"], environment: environment)
            expectOneLine(past, code: 1, mentioning: "\(path): --start 1e11 is past its last message, 584.5 years after its first")

            // The late one first, then the early one: nothing to wait for.
            let reversed = try write(Self.file([("edge", .max, [3]), ("edge", 0, [4])]), in: directory, "reversed.mcap")
            let both = try await MeshCLI.run(["bag", "play", reversed], environment: environment, seconds: 20)
            #expect(both.code == 0 && both.output.hasPrefix("sent 2 message(s)"), "\(both)")
            #expect(try await seen.wait(for: 7, seconds: 10).suffix(2).map(\.payload) == [Data([3]), Data([4])])
        }
    }

    @Test("--start past the end of an ordinary file is one line and exit 1; values no clock can hold are bad arguments (exit 2)")
    func outOfRangeOptions() async throws {
        let directory = try bag.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (bytes, _) = MCAPTests.sampleFile(count: 10)  // 9 ms of messages
        let path = try write(bytes, in: directory, "short.mcap")
        let past = try await MeshCLI.run(["bag", "play", path, "--start", "1e11", "--coordinator", "127.0.0.1:1"])
        expectOneLine(past, code: 1, mentioning: "\(path): --start 1e11 is past its last message, 0.0 s after its first")
        let cases: [([String], String)] = [
            (["bag", "play", path, "--start", "1e400"], "--start: \"1e400\" is not a number of seconds"),
            (["bag", "play", path, "--start", "nan"], "--start: \"nan\" is not a number of seconds"),
            (["bag", "play", path, "--timeout", "1e300"], "--timeout: \"1e300\" is not a number of seconds (more than 0, at most 1000000000)"),
            (["bag", "record", "-o", directory + "/x.mcap", "t", "--duration", "1e300"], "--duration: \"1e300\" is not a number of seconds"),
            (["topic", "hz", "t", "--window", "1e300"], "--window: \"1e300\" is not a number of seconds"),
            (["topic", "send", "t", "1", "--timeout", "1e300"], "--timeout: \"1e300\" is not a number of seconds"),
            (["service", "call", "s", "1", "--timeout", "9e18"], "--timeout: \"9e18\" is not a number of seconds"),
        ]
        for (arguments, needle) in cases {
            expectOneLine(try await MeshCLI.run(arguments + ["--coordinator", "127.0.0.1:1"]), code: 2, mentioning: needle)
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/x.mcap"))
    }

    @Test("fields at their extremes: every crafted file is exit 0 or 1 with one line from info and play, never a crash")
    func craftedFields() async throws {
        let directory = try bag.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let header: [UInt8] = {
            var bytes = MCAPBytes()
            bytes.append(MCAP.magic)
            let at = bytes.beginRecord(.header)
            bytes.string("")
            bytes.string("crafted")
            bytes.endRecord(lengthAt: at)
            return bytes.bytes
        }()
        func record(_ opcode: MCAP.Opcode, length: UInt64? = nil, _ body: (inout MCAPBytes) -> Void) -> [UInt8] {
            var content = MCAPBytes()
            body(&content)
            var bytes = MCAPBytes()
            bytes.u8(opcode.rawValue)
            bytes.u64(length ?? UInt64(content.count))
            bytes.append(content.bytes)
            return bytes.bytes
        }
        let channel = record(.channel) {
            $0.u16(1)
            $0.u16(0)
            $0.string("t")
            $0.string("application/octet-stream")
            $0.u32(0)
        }
        func message(_ logTime: UInt64) -> [UInt8] {
            record(.message) {
                $0.u16(1)
                $0.u32(1)
                $0.u64(logTime)
                $0.u64(logTime)
                $0.u8(7)
            }
        }
        let valid = Self.file([("t", 1, [1]), ("t", 2, [2])])
        var hugeSummary = valid
        // The footer's summary start (the 8 bytes after its opcode and length) as 2^64-1.
        let footerAt = valid.count - 8 - 29
        for index in 0..<8 { hugeSummary[footerAt + 9 + index] = 0xFF }
        for index in 0..<4 { hugeSummary[footerAt + 9 + 16 + index] = 0 }  // no summary CRC to trip first

        let files: [(String, [UInt8], Int32, String)] = [
            ("a record 2^64-1 bytes long", header + record(.channel, length: .max) { $0.u8(0) }, 0, "cut short"),
            ("a string 2^32-1 bytes long", header + record(.channel) { $0.u16(1); $0.u16(0); $0.u32(.max) }, 1, "a string runs past the end of its record"),
            ("a map 2^32-1 bytes long", header + record(.channel) { $0.u16(1); $0.u16(0); $0.string("t"); $0.string("e"); $0.u32(.max) }, 1, "a map runs past the end of its record"),
            (
                "a chunk claiming 2^64-1 bytes of records", header + record(.chunk) { $0.u64(0); $0.u64(.max); $0.u64(.max); $0.u32(0); $0.string(""); $0.u64(.max) },
                1, "a chunk's sizes disagree"
            ),
            ("a message before its channel", header + message(5), 1, "no Channel record defined before it"),
            ("summary offsets of 2^64-1", hugeSummary, 1, "point outside the summary"),
            ("times 0 and 2^64-1, loose", header + channel + message(.max) + message(0), 0, "cut short"),
            ("a topic the mesh does not allow", Self.file([("bad\u{1B}[2Jtopic", 5, [1])]), 0, "ended:       cleanly"),
        ]
        for (what, bytes, infoCode, needle) in files {
            let path = try write(bytes, in: directory, "crafted.mcap")
            let info = try await MeshCLI.run(["bag", "info", path])
            if infoCode == 0 {
                #expect(info.code == 0 && info.output.contains(needle), "\(what): \(info)")
                #expect(!info.output.contains("\u{1B}"), "\(what): an escape code reached the terminal: \(info)")
            } else {
                expectOneLine(info, code: 1, mentioning: needle)
            }
            // play reads the whole file before it joins anything: no mesh is needed to be refused.
            let play = try await MeshCLI.run(["bag", "play", path, "--coordinator", "127.0.0.1:1"])
            #expect(play.code == 1 && play.output.isEmpty, "\(what): \(play)")
            // Notes, then the one line that ends it.
            let lines = play.errors.split(separator: "\n")
            #expect(lines.dropLast().allSatisfy { $0.hasPrefix("mesh: note: ") }, "\(what): \(play)")
            #expect(lines.last?.hasPrefix("mesh: ") == true && lines.last?.hasPrefix("mesh: note: ") == false, "\(what): \(play)")
        }
        // The topic the mesh would refuse is named, escaped, and skipped.
        let path = try write(Self.file([("bad\u{1B}[2Jtopic", 5, [1])]), in: directory, "crafted.mcap")
        let refused = try await MeshCLI.run(["bag", "play", path, "--coordinator", "127.0.0.1:1"])
        expectOneLine(
            refused, code: 1,
            mentioning: "holds messages only on topics the mesh does not allow: \"bad\\u{1B}[2Jtopic\" (topic contains control characters)")
    }

    @Test("the reader takes any field at its extreme without trapping")
    func readerExtremes() throws {
        // Every 8-byte field of a valid file set to 2^64-1 in turn, and every 4-byte one to 2^32-1.
        let valid = Self.file([("t", 0, [1, 2, 3]), ("t", .max, [4])])
        for width in [8, 4] {
            for offset in stride(from: 8, to: valid.count - 8 - width, by: 1) {
                var bytes = valid
                for index in 0..<width { bytes[offset + index] = 0xFF }
                guard var reader = try? MCAPReader(data: Data(bytes)) else { continue }
                while (try? reader.next()) != nil {}
            }
        }
    }
}
