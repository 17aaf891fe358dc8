import Mesh

// Waits for someone to listen on "some-topic", then sends one message.
MeshProcess.lineBufferedOutput()
let node = try await buildMeshNode(name: "sender")
try await node.waitForListener("some-topic", timeout: .seconds(30))
try await node.send("some-topic", ["hello": "world!"])
print("sender sent: topic=some-topic; data=[\"hello\": \"world!\"]")
await node.close()
