import Foundation
import Mesh

/// The shapes in which the mesh describes itself to people and programs: `mesh node list
/// --json`, `mesh topic list --json`, `mesh status --json`, and the web view's `/api/topology`
/// and `/api/status` are these, so a script reads the same fields from either.
package enum MeshReport {
    /// One node, as `mesh node list --json` prints it.
    package struct Node: Encodable, Sendable, Equatable {
        package var name: String
        package var id: String
        package var host: String
        package var port: UInt16
        /// `host:port`, where peers dial it.
        package var address: String
        package var pid: Int32?
        package var topics: [String]
        /// The services it provides.
        package var services: [String]
        /// Seconds since 1970, the coordinator's clock.
        package var joined: Double?
        /// Seconds since it joined.
        package var uptime: Double?

        /// - Parameter now: seconds since 1970, for ``uptime``.
        package init(_ node: NodeRecord, now: Double) {
            name = node.name
            id = node.id
            host = node.host
            port = node.port
            address = node.address.description
            pid = node.pid
            topics = node.topics
            services = node.services
            joined = node.joined
            uptime = node.joined.map { max(0, now - $0) }
        }
    }

    /// Nodes sharing a name, and how many of them there are.
    package struct Group: Encodable, Sendable, Equatable {
        package var name: String
        package var members: Int

        package init(name: String, members: Int) {
            self.name = name
            self.members = members
        }

        /// The groups of `nodes`, by name.
        package static func of(_ nodes: [NodeRecord]) -> [Group] {
            let members = Dictionary(grouping: nodes, by: \.name)
            return members.keys.sorted().map { Group(name: $0, members: members[$0]?.count ?? 0) }
        }
    }

    /// One topic, as `mesh topic list --json` prints it.
    package struct Topic: Encodable, Sendable, Equatable {
        package var topic: String
        package var listeners: Int
        package var groups: [Group]
        /// Nodes that declared a send on it.
        package var senders: Int
        /// The message types declared on it, each once (normally one; more means records that
        /// disagree, which the coordinator refuses from then on).
        package var types: [TopicType]

        package init(topic: String, listeners: [NodeRecord], senders: [NodeRecord] = []) {
            self.topic = topic
            self.listeners = listeners.count
            self.groups = Group.of(listeners)
            self.senders = senders.count
            var types: [TopicType] = []
            for node in (listeners + senders) {
                if let type = node.types[topic], !types.contains(type) { types.append(type) }
            }
            self.types = types.sorted { $0.description < $1.description }
        }

        /// `Pose (7343ed982d6d6e7f)`, several joined with ", ", or "-" for an untyped topic.
        package var typeText: String { types.isEmpty ? "-" : types.map(\.description).joined(separator: ", ") }

        /// Every topic of `topology` someone listens to or declared a send on, sorted by name.
        package static func all(in topology: Topology) -> [Topic] {
            let listeners = topology.topics
            let senders = topology.senders
            return Set(listeners.keys).union(senders.keys).sorted().map {
                Topic(topic: $0, listeners: listeners[$0] ?? [], senders: senders[$0] ?? [])
            }
        }
    }

    /// One topic in full, as `mesh topic info --json` prints it.
    package struct TopicInfo: Encodable, Sendable, Equatable {
        package struct Member: Encodable, Sendable, Equatable {
            package var name: String
            package var id: String
            /// The type this node declared there, if any.
            package var type: TopicType?
        }

        package var topic: String
        package var types: [TopicType]
        package var senders: [Member]
        package var listeners: [Member]

        package init(topic: String, in topology: Topology) {
            self.topic = topic
            let listening = topology.listeners(of: topic)
            let sending = topology.senders(of: topic)
            types = Topic(topic: topic, listeners: listening, senders: sending).types
            senders = sending.map { Member(name: $0.name, id: $0.id, type: $0.types[topic]) }
            listeners = listening.map { Member(name: $0.name, id: $0.id, type: $0.types[topic]) }
        }
    }

    /// One service, as `mesh service list --json` prints it.
    package struct Service: Encodable, Sendable, Equatable {
        package var service: String
        package var providers: Int
        package var groups: [Group]

        package init(service: String, providers: [NodeRecord]) {
            self.service = service
            self.providers = providers.count
            self.groups = Group.of(providers)
        }

        /// Every service of `topology`, sorted by name.
        package static func all(in topology: Topology) -> [Service] {
            topology.services.sorted { $0.key < $1.key }.map { Service(service: $0.key, providers: $0.value) }
        }
    }

    /// The groups as the tables show them: `worker (3), planner (1)`.
    package static func groupsText(_ groups: [Group]) -> String {
        groups.map { "\($0.name) (\($0.members))" }.joined(separator: ", ")
    }

    /// The coordinator's status, as `mesh status --json` prints it.
    package struct Status: Encodable, Sendable {
        package struct Node: Encodable, Sendable {
            package var name: String
            package var id: String
            package var address: String
            /// Seconds since the coordinator last heard from the node.
            package var lastHeard: Double
            package var stats: MeshStatistics
        }

        /// The coordinator's address, as the asker knows it.
        package var coordinator: String
        /// Seconds since the coordinator started.
        package var uptime: Double
        package var version: UInt64
        package var nodeCount: Int
        /// Sorted by name, then id.
        package var nodes: [Node]

        package init(coordinator: String, status: CoordinatorStatus) {
            let sorted = status.nodes.sorted { ($0.node.name, $0.node.id) < ($1.node.name, $1.node.id) }
            self.coordinator = coordinator
            uptime = status.uptime
            version = status.version
            nodeCount = sorted.count
            nodes = sorted.map {
                Node(name: $0.node.name, id: $0.node.id, address: $0.node.address.description, lastHeard: $0.lastHeard, stats: $0.stats)
            }
        }
    }
}
