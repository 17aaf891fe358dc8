import Foundation
import Mesh

extension MeshCoordinator {
    /// A node's `register`: the checks of PROTOCOL.md §6.1 in order (id, key, names file, host,
    /// interest), then the join; the first failure is answered with `rejected` and a close.
    func register(
        _ record: NodeRecord?, view: TopologyView?, interest: ViewInterest?, stats: MeshStatistics?,
        standby: Bool = false, on connection: Connection
    ) {
        guard var node = record else { return reject(connection, "register without a node record") }
        guard NodeID.isValid(node.id) else {
            return reject(connection, "node id \"\(node.id.prefix(40))\" is not 16 lowercase hex digits")
        }
        // The id in the handshake, and the key the id derives from; in a keyed mesh the handshake
        // proved that key, so no one registers an id that is not theirs.
        guard node.id == connection.peerID else {
            return reject(connection, "register names node \(node.id) but the handshake was for \(connection.peerID)")
        }
        guard let keyHex = node.key, NodeID.matches(id: node.id, keyHex: keyHex) else {
            return reject(connection, "register for node \(node.id) without the public key that id derives from")
        }
        if let proven = connection.peerKey, NodeID.publicKeyBytes(keyHex) != proven {
            return reject(connection, "register for node \(node.id) names a public key other than the one its handshake proved")
        }
        if let names = configuration.names, let refusal = names.refusal(name: node.name, key: keyHex) {
            return reject(connection, refusal)
        }
        if node.host.isEmpty { node.host = connection.remote.host }
        if !configuration.allowForeignHosts, !connection.remote.isSameHost(as: node.host) {
            return reject(
                connection,
                "advertised host \(node.host.prefix(80)) is not the address this node connects from (\(connection.remote.host));"
                    + " start the coordinator with --allow-foreign-hosts for nodes behind NAT")
        }
        guard SocketAddress.parse(node.host, defaultPort: node.port).map({ $0.port == node.port }) == true,
            !node.host.hasPrefix("unix:")
        else {
            return reject(connection, "host \"\(node.host.prefix(80))\" is not a numeric IP address (resolve names before registering)")
        }
        if view == .partial, !standby {
            do {
                try views.check(interest ?? ViewInterest())
            } catch {
                return reject(connection, "register: \(error)")
            }
        }
        node.joined = Date().timeIntervalSince1970
        do {
            let stored = try book.join(node)
            departed.forget(stored.id)
            if view == .partial, !standby { views.open(connection.id, own: stored.id, interest: interest ?? ViewInterest()) }
            sessions[connection.id]?.node = stored
            sessions[connection.id]?.standby = standby
            sessions[connection.id]?.awaitingWelcome = true
            // Totals continue across sessions of one process: from before, and from its register.
            if let earlier = departedCounters.take(stored.id) { sessions[connection.id]?.stats = earlier }
            if let stats { keep(stats, from: stored, on: connection) }
            welcomesDue = true
            logger.info("node joined: \(stored.name) (\(stored.id)) at \(stored.host):\(stored.port)" + (standby ? " (standby)" : ""))
            journal.joined(stored, peer: connection.remote)
        } catch {
            reject(connection, error.description)
        }
    }

    /// A standby's `route`: the node routes by this coordinator now (it failed over here). The
    /// session becomes an ordinary one, with the view and interest the `route` names, and its
    /// next publish welcomes it again with the topology, as it would a routing `register`.
    func route(_ message: ControlMessage, from node: NodeRecord, on connection: Connection) {
        // Routed by already: the topology is on its way or there.
        guard sessions[connection.id]?.standby == true else { return }
        if message.view == .partial {
            let interest = message.interest ?? ViewInterest()
            do {
                try views.check(interest)
            } catch {
                return reject(connection, "route: \(error)")
            }
            views.open(connection.id, own: node.id, interest: interest)
        }
        sessions[connection.id]?.standby = false
        sessions[connection.id]?.awaitingWelcome = true
        welcomesDue = true
        logger.info("node \(node.name) (\(node.id)) routes by this coordinator now")
    }
}
