import Synchronization

/// A thread-safe set of connections (a node's inbound ones, closed with the node).
final class ConnectionSet: Sendable {
    private let connections = Mutex<[UInt64: Connection]>([:])
    private let closed = Mutex(false)

    /// Adds a connection; after ``removeAll()`` it closes it instead (one accepted while closing).
    func insert(_ connection: Connection) {
        let refused = closed.withLock { closed -> Bool in
            if !closed { connections.withLock { $0[connection.id] = connection } }
            return closed
        }
        if refused { connection.close() }
    }

    func remove(_ connection: Connection) {
        _ = connections.withLock { $0.removeValue(forKey: connection.id) }
    }

    func removeAll() -> [Connection] {
        closed.withLock { $0 = true }
        return connections.withLock { connections in
            defer { connections.removeAll() }
            return Array(connections.values)
        }
    }

    var count: Int { connections.withLock { $0.count } }
}
