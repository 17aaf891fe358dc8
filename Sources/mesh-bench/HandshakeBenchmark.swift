import Mesh
import MeshCrypto

/// What a protocol version 3 handshake costs in CPU: both sides of a keyed handshake run in one
/// thread, in memory, so the figure is the work of the two ends together, without the network.
enum HandshakeBenchmark {
    /// The best time for one whole handshake of each kind, in microseconds, over `rounds` runs.
    static func measure(rounds: Int = 200) -> (control: Double, data: Double) {
        let key = SymmetricKey(data: [UInt8](repeating: 0x5a, count: 32))
        let node = NodeIdentity()
        let peer = NodeIdentity()
        let coordinator = NodeIdentity()
        func best(_ make: () -> (Handshake, Handshake)) -> Double {
            let clock = ContinuousClock()
            var fastest = Duration.seconds(1)
            for _ in 0..<rounds {
                var (connector, acceptor) = make()
                let start = clock.now
                run(&connector, &acceptor)
                fastest = min(fastest, start.duration(to: clock.now))
                precondition(connector.isEstablished && acceptor.isEstablished, "the benchmark's handshake failed")
            }
            return Double(fastest.components.attoseconds) / 1e12 + Double(fastest.components.seconds) * 1e6
        }
        let control = best {
            (Handshake(connectingFor: .control, key: key, localID: node.idBytes, staticKey: node.privateKey),
             Handshake(accepting: [.control: .key(key)], staticKey: coordinator.privateKey))
        }
        let data = best {
            (Handshake(
                connectingFor: .data, key: key, localID: node.idBytes, staticKey: node.privateKey,
                expectedPeerID: peer.idBytes, expectedPeerKey: peer.publicKey),
             Handshake(accepting: [.data: .key(key)], localID: peer.idBytes, staticKey: peer.privateKey))
        }
        return (control, data)
    }

    /// Moves every byte each side sends to the other until neither has more to say.
    private static func run(_ connector: inout Handshake, _ acceptor: inout Handshake) {
        var toAcceptor: [UInt8] = []
        var toConnector: [UInt8] = []
        func take(_ actions: [Handshake.Action], into outbox: inout [UInt8]) {
            for case .send(let bytes) in actions { outbox += bytes }
        }
        take(connector.start(), into: &toAcceptor)
        take(acceptor.start(), into: &toConnector)
        while true {
            var moved = false
            while !toAcceptor.isEmpty, acceptor.bytesWanted > 0 {
                let chunk = Array(toAcceptor.prefix(acceptor.bytesWanted))
                toAcceptor.removeFirst(chunk.count)
                take(acceptor.receive(chunk), into: &toConnector)
                moved = true
            }
            while !toConnector.isEmpty, connector.bytesWanted > 0 {
                let chunk = Array(toConnector.prefix(connector.bytesWanted))
                toConnector.removeFirst(chunk.count)
                take(connector.receive(chunk), into: &toAcceptor)
                moved = true
            }
            if !moved { return }
        }
    }
}
