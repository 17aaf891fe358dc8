import Foundation

/// A received message exactly as it travelled: the payload bytes unchanged and how they were
/// encoded. For tools that record, relay or inspect messages without knowing their types.
public struct MeshRawMessage: Sendable {
    /// The topic it was sent on.
    public var topic: String
    /// ``PayloadEncoding/codec`` for a value the sender's codec encoded (JSON by default),
    /// ``PayloadEncoding/raw`` for `Data` and `[UInt8]`.
    public var encoding: PayloadEncoding
    /// The payload bytes as the sender encoded them.
    public var payload: Data
    /// The node that sent it.
    public var sender: MeshPeer

    public init(topic: String, encoding: PayloadEncoding, payload: Data, sender: MeshPeer) {
        self.topic = topic
        self.encoding = encoding
        self.payload = payload
        self.sender = sender
    }
}

extension MeshNode {
    /// Calls `handler` with each message on `topic` as it arrived, undecoded.
    ///
    /// Like ``listen(_:as:_:)``: one call per message, in arrival order, on the node's delivery
    /// task; a handler that takes its time makes the senders wait rather than losing messages.
    /// - Parameters:
    ///   - topic: the topic; 1 to 255 bytes of UTF-8.
    ///   - handler: called once per message with its payload bytes, encoding and sender.
    /// - Throws: ``MeshError/closed`` or ``MeshError/invalidName(_:reason:)``.
    public func listenRaw(_ topic: String, _ handler: nonisolated(nonsending) @escaping @Sendable (MeshRawMessage) async -> Void)
        async throws
    {
        try await addListener(topic) { entryID in
            ListenerTable.Entry(
                id: entryID, type: ObjectIdentifier(MeshRawMessage.self),
                handle: { message, sender in
                    await handler(
                        MeshRawMessage(
                            topic: message.topic, encoding: message.encoding, payload: message.payload, sender: sender))
                },
                decode: { message in message },
                deliver: { message, sender, _ in
                    await handler(
                        MeshRawMessage(
                            topic: message.topic, encoding: message.encoding, payload: message.payload, sender: sender))
                },
                finish: {})
        }
    }

    /// Sends payload bytes that are already encoded, marked with `encoding`.
    ///
    /// Listeners decode a ``PayloadEncoding/codec`` payload with their codec (so the bytes must
    /// be what this mesh's codec makes: JSON by default) and hand a ``PayloadEncoding/raw`` one to
    /// `Data` listeners unchanged. Replaying a recording uses this to send each message as it was sent.
    /// - Throws: as ``send(_:_:)-(String,Data)``.
    public nonisolated(nonsending) func sendPayload(_ topic: String, _ payload: Data, encoding: PayloadEncoding)
        async throws
    {
        try await send(topic, encoding: encoding, payload: payload)
    }

    /// Waits until the topology's version differs from `version` (a node joined or left, or a
    /// listen changed), and returns the new topology.
    ///
    /// With the partial view (the default) the node holds, and so sees change, only the records
    /// it has an interest in (``Configuration/topologyView``); a node that must see every join
    /// and every new topic sets ``TopologyView/full``.
    ///
    /// - Throws: ``MeshError/timedOut(waitingFor:seconds:)`` after `timeout`; ``MeshError/closed``;
    ///   `CancellationError`.
    public func waitForTopologyChange(from version: UInt64, timeout: Duration) async throws -> Topology {
        try await waitForTopology(.anyChange, timeout: timeout, describing: "a topology change") { $0.version != version }
        return topology
    }
}
