import Mesh

await MeshProcess.run(
    help: """
        usage: demo-receiver

        Joins the mesh as "receiver", listens on the topic "some-topic" for [String: String]
        messages, and prints each as `receiver got: topic=some-topic; data=[...]`. It prints
        `receiver listening on some-topic` once ready, and runs until Ctrl-C or SIGTERM.

        The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
        Exit status: 0 when stopped, 1 with one line on standard error when something failed.
        """
) {
    let node = try await buildMeshNode(name: "receiver")
    try await node.listen("some-topic") { (topic: String, data: [String: String]) in
        print("receiver got: topic=\(topic); data=\(data)")
    }
    print("receiver listening on some-topic")
    _ = await MeshProcess.waitForTerminationSignal()
    await node.close()
}
