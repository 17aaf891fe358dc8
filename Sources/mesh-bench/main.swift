import Foundation
import MeshBag

/// mesh-bench: measures swift-mesh against the baselines named in its issues.
let usage = """
    usage: swift run -c release mesh-bench [WORKLOAD...] [options]

    workloads (default: w1 w2 w3 w4 w5 w6 w7 w8; `all` adds w1k-w4k, bag, codec and crypto)
      w1       1 sender → 1 receiver, 64-byte Data and a small Codable struct: msgs/s, lost
      w2       ping-pong of 64-byte messages: round-trip p50/p90/p99 in µs
      w3       1 MiB Data messages: MB/s, lost
      w4       1 sender → 8 receivers with distinct names: total deliveries/s
      w5       1 sender → 4 workers sharing one name: messages per worker
      w6       100, 500, 1000 and 2000 nodes (one process) join one coordinator, each
               listening on its own topic and sending one message to the next node's:
               seconds until all N are delivered, the coordinator's CPU time and bytes
               sent; the nodes' default configuration (partial topology views), or
               MESH_TOPOLOGY_VIEW=full: every node holds every record
      w7       sequential service calls of 64 bytes: p50/p99 in µs, next to W2's round trip
               measured in the same run
      w8       pipelined service calls of 64 bytes, 64 in flight: calls/s
      w1k-w4k  W1-W4 with an authkey: every frame in encrypted records (`all` adds them)
      bag      `mesh bag record` taking 1,000,000 64-byte and 1,000 1 MiB messages into an
               MCAP file: msgs/s and MB/s (against the mesh's W3 in the same run), lost
      codec    the default JSONCodec encoding and decoding W1's Codable record, next to
               Foundation's JSONEncoder and JSONDecoder in the same run: values/s
      crypto   SHA-256 MB/s on 1 MiB inputs and HMAC-SHA256 µs per 64-byte message,
               next to OpenSSL (through python3's hashlib/hmac) measured in the same run

    peers [--reps N] [--only ...] [--workloads ...] [--out FILE] [--peers-dir DIR] [--from FILE] [--json]
             runs ../shared/peers/peers.py (ZeroMQ, SwiftNIO, NATS, Cyclone DDS, raw TCP) with this
             executable's `peer` roles as the mesh client, and prints W1-W4 beside the peers'
             figures from the same run with the ratios of issue #21's floors, met or missed
             (`mesh-bench peers --help` for the options)
    peer ROLE ...  the client roles of ../shared/peers/peers.py (sub, pub, pong, ping), for
             `python3 ../shared/peers/peers.py --client "mesh-bench peer"` with a coordinator running

    W1–W5 run each node in its own process (this executable, re-run with hidden `_role`
    arguments) next to a raw-socket baseline measured in the same run; W6 runs the nodes in one
    process and the coordinator in another.

    options
      --runs R        runs per workload (default 3); the table shows the median and min–max
      --messages N    W1's message count; every other count scales by N / 1,000,000
      --scale F       multiply every count by F (message sizes stay)
      --quick         tiny sizes, for smoke tests
      --w6-nodes L    W6's node counts, comma-separated (default 100,500,1000,2000)
      --w6-coordinators N  W6 with N coordinators: every node registers with each (default 1)
      --json          print the report as one JSON object instead of a table
    """

/// The parsed command line.
struct BenchOptions {
    var workloads: [String] = []
    var runs = 3
    var scale = 1.0
    var messages: Int?
    var quick = false
    var json = false
    var w6Nodes: [Int]?
    var w6Coordinators: Int?

    init(_ arguments: [String]) throws {
        var rest = arguments[...]
        func value(_ option: String) throws -> String {
            guard let next = rest.popFirst() else { throw BenchFailure.usage("\(option) needs a value") }
            return next
        }
        while let argument = rest.popFirst() {
            switch argument {
            case "--runs":
                guard let parsed = Int(try value(argument)), parsed > 0 else { throw BenchFailure.usage("--runs needs a positive number") }
                runs = parsed
            case "--scale":
                guard let parsed = Double(try value(argument)), parsed > 0 else { throw BenchFailure.usage("--scale needs a positive number") }
                scale = parsed
            case "--messages":
                guard let parsed = Int(try value(argument)), parsed > 0 else { throw BenchFailure.usage("--messages needs a positive number") }
                messages = parsed
            case "--w6-nodes":
                let parsed = try value(argument).split(separator: ",").map { Int($0) }
                guard !parsed.isEmpty, parsed.allSatisfy({ ($0 ?? 0) > 1 }) else {
                    throw BenchFailure.usage("--w6-nodes needs a comma-separated list of node counts above 1")
                }
                w6Nodes = parsed.compactMap { $0 }
            case "--w6-coordinators":
                guard let parsed = Int(try value(argument)), (1...9).contains(parsed) else {
                    throw BenchFailure.usage("--w6-coordinators needs a number from 1 to 9")
                }
                w6Coordinators = parsed
            case "--quick": quick = true
            case "--json": json = true
            case "all": workloads += Workloads.names + Workloads.keyedNames + ["bag", "codec", "crypto"]
            case _ where Workloads.names.contains(argument) || Workloads.keyedNames.contains(argument) || argument == "crypto"
                || argument == "bag" || argument == "codec":
                workloads.append(argument)
            default: throw BenchFailure.usage("unknown workload or option \"\(argument)\"")
            }
        }
        if workloads.isEmpty { workloads = Workloads.names }
    }

    var sizes: BenchSizes {
        let base = quick ? BenchSizes.quick : BenchSizes()
        var factor = scale
        if let messages { factor *= Double(messages) / Double(base.w1Messages) }
        var sizes = factor == 1 ? base : base.scaled(by: factor)
        if let messages { sizes.w1Messages = messages }
        if let w6Nodes { sizes.w6Nodes = w6Nodes }
        if let w6Coordinators { sizes.w6Coordinators = w6Coordinators }
        return sizes
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())

// A child process: run its role and exit. See BenchProcess.swift for the parent's side.
if arguments.first == "_role" {
    do {
        let role = try RoleArguments(Array(arguments.dropFirst()))
        armWatchdog(seconds: try role.double("deadline", default: 600), role: role.role)
        if role.role.hasPrefix("raw-") {
            try RawBaseline.run(role)
        } else {
            try await MeshRoles.run(role)
        }
        exit(0)
    } catch {
        warn("mesh-bench \(arguments.dropFirst().first ?? "?"): \(error)")
        exit(1)
    }
}

// The client roles of ../shared/peers/peers.py, for a side-by-side run with ZeroMQ, SwiftNIO and raw TCP.
if arguments.first == "peer" {
    do {
        try await PeerRoles.run(Array(arguments.dropFirst()))
        exit(0)
    } catch {
        warn("mesh-bench peer: \(error)")
        exit(1)
    }
}

// The peers beside our client, in one run: see PeersCommand.swift.
if arguments.first == "peers" {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(PeersCommand.usage)
        exit(0)
    }
    do {
        exit(try await PeersCommand.run(Array(arguments.dropFirst())))
    } catch BenchFailure.usage(let message) {
        warn("mesh-bench peers: \(message)\n\(PeersCommand.usage)")
        exit(2)
    } catch {
        warn("mesh-bench peers: \(error)")
        exit(1)
    }
}

if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
let options: BenchOptions
do {
    options = try BenchOptions(arguments)
} catch {
    warn("mesh-bench: \(error)\n\(usage)")
    exit(2)
}

let sizes = options.sizes
let workloads = Workloads(sizes: sizes, runs: options.runs, patience: options.quick ? 2 : 1)
var rows: [BenchRow] = []
var cryptoReport: CryptoBenchmark.Report?
for workload in options.workloads {
    if workload == "crypto" {
        Progress.show("crypto")
        cryptoReport = try await CryptoBenchmark.run()
    } else {
        rows += await workloads.rows(for: workload)
    }
}
Progress.finish()

#if DEBUG
let buildConfiguration = "debug"
#else
let buildConfiguration = "release"
#endif
let report = BenchReport(
    rows: rows,
    settings: [
        "runs": "\(options.runs)", "build": buildConfiguration,
        "cores": "\(ProcessInfo.processInfo.activeProcessorCount)", "quick": "\(options.quick)",
    ])
if options.json {
    var object = report.json
    if let cryptoReport { object["crypto"] = cryptoReport.json }
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
} else {
    if !rows.isEmpty { print(report.table()) }
    if let cryptoReport { print((rows.isEmpty ? "" : "\n") + cryptoReport.table()) }
}
exit(rows.contains { $0.failure != nil } ? 1 : 0)
