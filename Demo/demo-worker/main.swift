import Foundation
import Mesh

// A worker pool: every process started as `demo-worker` joins the group "worker", and each
// job sent to "jobs" goes to one worker, in turn.
//
//   demo-worker                              a worker: prints each job it gets
//   demo-worker --dispatch N [--workers W]   sends N jobs once W workers listen (default 1)
MeshProcess.lineBufferedOutput()
MeshProcess.catchTerminationSignals()  // a SIGTERM during start-up still shuts down cleanly
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--dispatch" {
    let count = arguments.dropFirst().first.flatMap(Int.init) ?? 12
    let workers = arguments.firstIndex(of: "--workers").flatMap { arguments.dropFirst($0 + 1).first }
        .flatMap(Int.init) ?? 1
    let node = try await buildMeshNode(name: "dispatcher")
    try await node.waitForListener("jobs", count: workers, timeout: .seconds(30))
    for job in 1...count { try await node.send("jobs", ["job": job]) }
    print("dispatcher sent \(count) jobs")
    await node.close()
} else {
    let node = try await buildMeshNode(name: "worker")
    let pid = ProcessInfo.processInfo.processIdentifier
    try await node.listen("jobs") { (_: String, job: [String: Int]) in
        print("worker \(pid) got job \(job["job"] ?? -1)")
    }
    print("worker \(pid) ready")
    _ = await MeshProcess.waitForTerminationSignal()
    await node.close()
}
