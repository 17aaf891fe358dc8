/// What a server reads about a connection's outgoing queue to bound what it queues to all its
/// clients together (the coordinator's reply budget).
extension Connection {
    /// Bytes queued on this connection and not yet written to its socket.
    package var queuedByteCount: Int { unsentByteCount }
}
