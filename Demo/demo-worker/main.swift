import Foundation
import Mesh

// A worker pool: every process started as `demo-worker` joins the group "worker", and each
// job sent to "jobs" goes to one worker, in turn.
await MeshProcess.run(
    help: """
        usage: demo-worker
               demo-worker --dispatch N [--workers W]

        A worker pool. Without options it joins the mesh as "worker", listens on the topic
        "jobs" for ["job": N] messages, prints `worker PID ready`, then `worker PID got job N`
        for each job, until Ctrl-C or SIGTERM. Start several: they share one name, so each job
        goes to one of them, in turn.

        With --dispatch it joins as "dispatcher", waits up to 30 s until W workers listen on
        "jobs" (default 1), sends jobs 1 to N, prints `dispatcher sent N jobs`, and exits once
        the workers have confirmed taking them (exit 1 with one line when some did not).

          --dispatch N   send N jobs instead of working
          --workers W    with --dispatch: wait for W workers first

        The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
        Exit status: 0 when done or stopped, 1 with one line on standard error when something
        failed, 2 for bad arguments.
        """
) {
    var arguments = CommandLine.arguments.dropFirst()
    var dispatch: Int? = nil
    var workers = 1
    while let option = arguments.popFirst() {
        guard option == "--dispatch" || option == "--workers" else {
            throw MeshProcess.UsageError("unknown argument \"\(option)\"")
        }
        guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else {
            throw MeshProcess.UsageError("\(option) needs a positive whole number")
        }
        if option == "--dispatch" { dispatch = value } else { workers = value }
    }
    if let count = dispatch {
        let node = try await buildMeshNode(name: "dispatcher")
        try await node.waitForListener("jobs", count: workers, timeout: .seconds(30))
        for job in 1...count { try await node.send("jobs", ["job": job]) }
        print("dispatcher sent \(count) jobs")
        // Returns once every worker has confirmed taking its jobs; throws (exit 1, one line) if not.
        try await node.closeConfirmed()
    } else {
        let node = try await buildMeshNode(name: "worker")
        let pid = ProcessInfo.processInfo.processIdentifier
        try await node.listen("jobs") { (_: String, job: [String: Int]) in
            print("worker \(pid) got job \(job["job"] ?? -1)")
        }
        print("worker \(pid) ready")
        _ = await MeshProcess.waitForTerminationSignal()
        // Handles every job already received before it exits; says so if it could not.
        try await node.closeConfirmed()
    }
}
