import Foundation

/// mesh-bench: measures swift-mesh against the baselines named in its issues.
let usage = """
    usage: swift run -c release mesh-bench [crypto] [--json]

      crypto   SHA-256 MB/s on 1 MiB inputs and HMAC-SHA256 µs per 64-byte message,
               next to OpenSSL (through python3's hashlib/hmac) measured in the same run
      --json   print the figures as JSON instead of a table
    """

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
let workloads = arguments.filter { !$0.hasPrefix("--") }
let wantsJSON = arguments.contains("--json")
for workload in workloads.isEmpty ? ["crypto"] : workloads {
    switch workload {
    case "crypto":
        let report = try await CryptoBenchmark.run()
        if wantsJSON {
            let data = try JSONSerialization.data(withJSONObject: report.json, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(report.table())
        }
    default:
        FileHandle.standardError.write(Data("mesh-bench: unknown workload \"\(workload)\"\n\(usage)\n".utf8))
        exit(2)
    }
}
