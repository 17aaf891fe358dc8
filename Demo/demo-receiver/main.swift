import Mesh

// Listens on "some-topic" and prints every message it gets.
// Start mesh-coordinator first; MESH_COORDINATOR and MESH_AUTHKEY are honoured.
MeshProcess.lineBufferedOutput()
MeshProcess.catchTerminationSignals()  // a SIGTERM during start-up still shuts down cleanly
let node = try await buildMeshNode(name: "receiver")
try await node.listen("some-topic") { (topic: String, data: [String: String]) in
    print("receiver got: topic=\(topic); data=\(data)")
}
print("receiver listening on some-topic")
_ = await MeshProcess.waitForTerminationSignal()
await node.close()
