import Dispatch
import Foundation
@_spi(Testing) import MeshCrypto
import MeshTesting
import Synchronization

/// Measures MeshCrypto's SHA-256 and HMAC-SHA256 against OpenSSL in the same run.
///
/// OpenSSL is reached through Python's `hashlib` and `hmac` (a `python3` child process), so its
/// HMAC figure includes Python's per-call overhead of a few hundred nanoseconds; its SHA-256 figure
/// on 1 MiB inputs is OpenSSL's own. Without `python3` the OpenSSL columns read "unavailable".
enum CryptoBenchmark {
    /// The figures one run produced.
    struct Report: Sendable {
        /// The compression function `SHA256()` uses on this machine.
        var backend: String
        /// SHA-256 throughput on 1 MiB inputs with the preferred backend, best of several runs.
        var sha256MBps: Double
        /// The median of the same runs.
        var sha256MedianMBps: Double
        /// SHA-256 throughput of the portable Swift compression function, best of several runs.
        var portableSHA256MBps: Double
        /// HMAC-SHA256 of a 64-byte message with a prepared ``HMAC/Key``, best of several runs.
        var hmac64Microseconds: Double
        /// The same with a ``SymmetricKey``, whose padding is hashed on every call.
        var hmac64SymmetricKeyMicroseconds: Double
        /// HMAC-SHA256 of a 64-byte message on the portable backend with a prepared key.
        var portableHMAC64Microseconds: Double
        /// OpenSSL's SHA-256 throughput on 1 MiB inputs, or `nil` without `python3`.
        var opensslSHA256MBps: Double?
        /// OpenSSL's HMAC-SHA256 of 64 bytes through `hmac.digest`, or `nil` without `python3`.
        var opensslHMAC64Microseconds: Double?
        /// Why the OpenSSL figures are missing, when they are.
        var opensslUnavailableReason: String?
        /// A whole protocol version 3 handshake, both ends in one thread: node to coordinator
        /// (XXpsk3) and node to node (IKpsk1), in microseconds.
        var handshakeControlMicroseconds = 0.0
        var handshakeDataMicroseconds = 0.0

        /// The SHA-256 speed floor: 150 MB/s, or 0.15 times OpenSSL's when that is higher.
        static let floorMBps = 150.0
        static let floorRatio = 0.15
        /// HMAC-SHA256 of a 64-byte message must stay under this many microseconds.
        static let hmacCeilingMicroseconds = 2.0

        /// Our SHA-256 throughput over OpenSSL's.
        var ratio: Double? { opensslSHA256MBps.map { sha256MBps / $0 } }

        /// The SHA-256 floor for this run.
        var sha256FloorMBps: Double {
            max(Self.floorMBps, Self.floorRatio * (opensslSHA256MBps ?? 0))
        }

        /// Whether this run cleared both floors.
        var meetsFloor: Bool {
            sha256MBps >= sha256FloorMBps && hmac64Microseconds < Self.hmacCeilingMicroseconds
        }

        /// The figures as a small aligned text table.
        ///
        /// - Returns: Several lines, ending without a newline.
        func table() -> String {
            let unavailable = "unavailable"
            let rows: [(String, String, String, String, String)] = [
                ("", "ours", "OpenSSL", "ratio", "floor"),
                (
                    "SHA-256 1 MiB (MB/s)", format(sha256MBps), opensslSHA256MBps.map { format($0) } ?? unavailable,
                    ratio.map { format($0, digits: 2) + "x" } ?? "-",
                    ">= " + format(sha256FloorMBps)
                ),
                (
                    "  portable Swift (MB/s)", format(portableSHA256MBps), "",
                    opensslSHA256MBps.map { format(portableSHA256MBps / $0, digits: 2) + "x" } ?? "-", ""
                ),
                (
                    "HMAC-SHA256 64 B (µs)", format(hmac64Microseconds, digits: 3),
                    opensslHMAC64Microseconds.map { format($0, digits: 3) } ?? unavailable,
                    opensslHMAC64Microseconds.map { format($0 / hmac64Microseconds, digits: 2) + "x" } ?? "-",
                    "< " + format(Self.hmacCeilingMicroseconds, digits: 1)
                ),
                ("  SymmetricKey per call (µs)", format(hmac64SymmetricKeyMicroseconds, digits: 3), "", "", ""),
                ("  portable Swift (µs)", format(portableHMAC64Microseconds, digits: 3), "", "", ""),
            ]
            let widths = [
                rows.map(\.0.count).max()!, rows.map(\.1.count).max()!, rows.map(\.2.count).max()!,
                rows.map(\.3.count).max()!, rows.map(\.4.count).max()!,
            ]
            var lines = rows.map { row in
                [
                    row.0.padding(toLength: widths[0], withPad: " ", startingAt: 0),
                    leftPad(row.1, widths[1]), leftPad(row.2, widths[2]), leftPad(row.3, widths[3]),
                    leftPad(row.4, widths[4]),
                ].joined(separator: "  ")
            }
            lines.insert("MeshCrypto (SHA-256 backend: \(backend)) vs OpenSSL via python3", at: 0)
            lines.append("ratio: our speed over OpenSSL's (above 1 is faster); OpenSSL HMAC includes Python call overhead")
            if let opensslUnavailableReason {
                lines.append("OpenSSL unavailable: \(opensslUnavailableReason)")
            }
            lines.append(meetsFloor ? "floor: met" : "floor: NOT met")
            lines.append(
                "Noise handshake, both ends in one thread: control (XXpsk3) \(format(handshakeControlMicroseconds)) µs,"
                    + " data (IKpsk1) \(format(handshakeDataMicroseconds)) µs (floor: 1,000 µs)")
            return lines.joined(separator: "\n")
        }

        /// The figures by name, for machine-readable output; missing OpenSSL figures are omitted.
        var json: [String: Double] {
            var values = [
                "sha256MBps": sha256MBps,
                "sha256MedianMBps": sha256MedianMBps,
                "portableSHA256MBps": portableSHA256MBps,
                "hmac64Microseconds": hmac64Microseconds,
                "hmac64SymmetricKeyMicroseconds": hmac64SymmetricKeyMicroseconds,
                "portableHMAC64Microseconds": portableHMAC64Microseconds,
                "sha256FloorMBps": sha256FloorMBps,
            ]
            values["opensslSHA256MBps"] = opensslSHA256MBps
            values["opensslHMAC64Microseconds"] = opensslHMAC64Microseconds
            values["ratio"] = ratio
            values["handshakeControlMicroseconds"] = handshakeControlMicroseconds
            values["handshakeDataMicroseconds"] = handshakeDataMicroseconds
            return values
        }

        private func format(_ value: Double, digits: Int = 0) -> String {
            String(format: "%.\(digits)f", value)
        }

        private func leftPad(_ text: String, _ width: Int) -> String {
            String(repeating: " ", count: max(0, width - text.count)) + text
        }
    }

    /// Runs every measurement, ours first, then OpenSSL's in a `python3` child process.
    ///
    /// - Returns: The figures.
    /// - Throws: `CancellationError` when cancelled; a missing `python3` is reported, not thrown.
    static func run() async throws -> Report {
        var generator = SystemRandomNumberGenerator()
        let mebibyte = (0..<(1 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let message = (0..<64).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = SymmetricKey(size: .bits256)

        let sha = measureSHA256(mebibyte, backend: .preferred)
        try Task.checkCancellation()
        let portableSHA = measureSHA256(mebibyte, backend: .portable)
        try Task.checkCancellation()

        let preparedKey = HMAC<SHA256>.Key(key)
        let hmac = bestMicroseconds(iterations: 200_000) {
            HMAC<SHA256>.authenticationCode(for: message, using: preparedKey)
        }
        let hmacSymmetric = bestMicroseconds(iterations: 200_000) {
            HMAC<SHA256>.authenticationCode(for: message, using: key)
        }
        let portableKey = HMAC<SHA256>.Key(key, hasher: SHA256(backend: .portable))
        let portableHMAC = bestMicroseconds(iterations: 50_000) {
            HMAC<SHA256>.authenticationCode(for: message, using: portableKey)
        }
        try Task.checkCancellation()

        var report = Report(
            backend: SHA256.Backend.preferred.description,
            sha256MBps: sha.best, sha256MedianMBps: sha.median, portableSHA256MBps: portableSHA.best,
            hmac64Microseconds: hmac, hmac64SymmetricKeyMicroseconds: hmacSymmetric,
            portableHMAC64Microseconds: portableHMAC)
        (report.handshakeControlMicroseconds, report.handshakeDataMicroseconds) = HandshakeBenchmark.measure()
        do {
            let openssl = try await OpenSSLReference.measure()
            report.opensslSHA256MBps = openssl.sha256MBps
            report.opensslHMAC64Microseconds = openssl.hmac64Microseconds
        } catch let error as OpenSSLReference.Unavailable {
            report.opensslUnavailableReason = error.reason
        }
        return report
    }

    /// SHA-256 throughput over a 1 MiB input: seven runs of at least 100 ms each.
    private static func measureSHA256(_ input: [UInt8], backend: SHA256.Backend) -> (best: Double, median: Double) {
        let clock = ContinuousClock()
        var rates: [Double] = []
        input.withUnsafeBytes { bytes in
            for _ in 0..<7 {
                var hashed = 0
                let start = clock.now
                var elapsed = Duration.zero
                repeat {
                    var hasher = SHA256(backend: backend)
                    hasher.update(bufferPointer: bytes)
                    blackHole(hasher.finalize())
                    hashed += bytes.count
                    elapsed = start.duration(to: clock.now)
                } while elapsed < .milliseconds(100)
                rates.append(Double(hashed) / seconds(elapsed) / 1e6)
            }
        }
        rates.sort()
        return (rates.last!, rates[rates.count / 2])
    }

    /// The fastest per-call time in microseconds over five runs of `iterations` calls.
    private static func bestMicroseconds<R>(iterations: Int, _ body: () -> R) -> Double {
        let clock = ContinuousClock()
        var best = Double.infinity
        for _ in 0..<5 {
            let elapsed = clock.measure {
                for _ in 0..<iterations { blackHole(body()) }
            }
            best = min(best, seconds(elapsed) / Double(iterations) * 1e6)
        }
        return best
    }

    private static func seconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }

    /// Keeps the optimizer from discarding a result the benchmark never reads.
    @_optimize(none)
    private static func blackHole<T>(_ value: T) {}
}

/// OpenSSL's figures, measured by Python's `hashlib` and `hmac` in a child process.
private enum OpenSSLReference {
    /// Why OpenSSL could not be measured.
    struct Unavailable: Error {
        var reason: String
    }

    /// The Python side: SHA-256 over 1 MiB (best of seven 100 ms runs) and `hmac.digest` of 64
    /// bytes (best of five runs of 200,000 calls), written as JSON to the path in argv[1].
    static let script = """
        import hashlib, hmac, json, os, sys, time
        data = os.urandom(1 << 20)
        best_rate = 0.0
        for _ in range(7):
            count, start = 0, time.perf_counter()
            while True:
                hashlib.sha256(data).digest()
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= 0.1:
                    break
            best_rate = max(best_rate, count * len(data) / elapsed / 1e6)
        key, message = os.urandom(32), os.urandom(64)
        best_call = float("inf")
        for _ in range(5):
            calls, start = 200000, time.perf_counter()
            for _ in range(calls):
                hmac.digest(key, message, "sha256")
            best_call = min(best_call, (time.perf_counter() - start) / calls * 1e6)
        with open(sys.argv[1], "w") as out:
            json.dump({"sha256MBps": best_rate, "hmac64Microseconds": best_call}, out)
        """

    /// Runs the script and reads its figures back.
    ///
    /// - Returns: SHA-256 MB/s on 1 MiB and HMAC-SHA256 µs per 64-byte message.
    /// - Throws: ``Unavailable`` when `python3` is missing or fails; `CancellationError`.
    static func measure() async throws -> (sha256MBps: Double, hmac64Microseconds: Double) {
        guard let python = ChildProcess.findOnPath("python3") else { throw Unavailable(reason: "python3 not found on PATH") }
        let output = FileManager.default.temporaryDirectory
            .appendingPathComponent("mesh-bench-openssl-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: output) }

        let status: Int32
        do {
            status = try await ChildProcess.run(path: python, ["-c", script, output.path], seconds: 60).status
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Unavailable(reason: "python3 did not finish: \(error)")
        }
        guard status == 0 else { throw Unavailable(reason: "python3 exited with status \(status)") }
        guard
            let data = try? Data(contentsOf: output),
            let values = try? JSONSerialization.jsonObject(with: data) as? [String: Double],
            let rate = values["sha256MBps"], let call = values["hmac64Microseconds"]
        else { throw Unavailable(reason: "python3 wrote no readable figures") }
        return (rate, call)
    }
}
