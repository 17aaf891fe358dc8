import Mesh

await MeshProcess.run(
    help: """
        usage: demo-sender

        Joins the mesh as "sender", waits up to 30 s for a node to listen on the topic
        "some-topic", sends it ["hello": "world!"] once, prints
        `sender sent: topic=some-topic; data=["hello": "world!"]`, and exits.

        The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
        Exit status: 0 once sent and confirmed by the receiver, 1 with one line on standard error when something failed
        (no coordinator, a wrong key, nobody listening within 30 s).
        """
) {
    let node = try await buildMeshNode(name: "sender")
    try await node.waitForListener("some-topic", timeout: .seconds(30))
    try await node.send("some-topic", ["hello": "world!"])
    print("sender sent: topic=some-topic; data=[\"hello\": \"world!\"]")
    try await node.closeConfirmed()  // the receiver confirms it took the message, or exit 1
}
