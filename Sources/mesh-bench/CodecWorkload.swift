import Foundation
import Mesh

/// `mesh-bench codec`: the default codec (``JSONCodec``, our own JSON) against Foundation's
/// `JSONEncoder` and `JSONDecoder` with the same settings, on W1's Codable record, in one process,
/// alternating within each run so both see the same machine.
extension Workloads {
    func codec() async -> [BenchRow] {
        let count = max(1_000, sizes.w1CodableMessages)
        var encode = BenchRow(
            workload: "codec", title: "JSONCodec encode, W1's Codable record", unit: "values/s", floor: .none)
        var decode = BenchRow(
            workload: "codec", title: "JSONCodec decode, W1's Codable record", unit: "values/s", floor: .none)
        let codec = JSONCodec()
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .withoutEscapingSlashes
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let sample = BenchRecord.sample(count)
        await repeatRuns(&encode, "encode") { row in
            row.ours.append(try Self.rate(count) { try codec.encode(BenchRecord.sample($0)) })
            row.baseline.append(try Self.rate(count) { try encoder.encode(BenchRecord.sample($0)) })
        }
        let payload = (try? codec.encode(sample)) ?? Data()
        await repeatRuns(&decode, "decode") { row in
            row.ours.append(try Self.rate(count) { _ in try codec.decode(BenchRecord.self, from: payload) })
            row.baseline.append(try Self.rate(count) { _ in try decoder.decode(BenchRecord.self, from: payload) })
        }
        return [encode, decode]
    }

    /// Calls `body` `count` times; returns calls per second. The results are kept alive so the
    /// work cannot be optimized away.
    private static func rate<T>(_ count: Int, _ body: (Int) throws -> T) throws -> Double {
        var kept: T?
        let started = monotonicNanos()
        for index in 0..<count { kept = try body(index) }
        let elapsed = monotonicNanos() - started
        withExtendedLifetime(kept) {}
        return Double(count) / (Double(max(elapsed, 1)) / 1e9)
    }
}
