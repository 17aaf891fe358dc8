import Foundation

/// How much of the topology a node asks the coordinator for, at `register`.
///
/// Swift nodes hold a ``partial`` view unless asked otherwise: a node then holds the records it
/// routes to, and joining costs the mesh O(N) bytes. Choose ``full`` (`MESH_TOPOLOGY_VIEW=full`,
/// or ``MeshNode/Configuration/topologyView``) for code that reads ``MeshNode/currentTopology`` to
/// see every node; tools that list the whole mesh (`mesh node list`, `mesh topic list`) ask the
/// coordinator instead, and see it in either view.
public enum TopologyView: String, Sendable, Equatable, Codable {
    /// Every node's record, kept current with every change: N nodes joining cost the mesh O(N²)
    /// records in all. What a `register` without `view` gets (older nodes, `clients/python`).
    case full
    /// Only this node's own record and the records it declared an interest in (the listeners of
    /// the topics it sends on, the providers of the services it calls, the nodes it waits for or
    /// hears from): a join then costs the mesh O(N) bytes, not O(N²). The default.
    case partial

    /// `$MESH_TOPOLOGY_VIEW` (`full` or `partial`, in any case), else ``partial``. A value that
    /// is neither is ignored (the node logs a warning naming it when it starts).
    public static var fromEnvironment: TopologyView {
        named(ProcessInfo.processInfo.environment[environmentVariable]) ?? .partial
    }

    /// The variable ``fromEnvironment`` reads.
    package static let environmentVariable = "MESH_TOPOLOGY_VIEW"

    /// `full` or `partial`, without surrounding spaces, in any case; else nil.
    package static func named(_ text: String?) -> TopologyView? {
        guard let text else { return nil }
        return TopologyView(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased())
    }

    /// `$MESH_TOPOLOGY_VIEW` when it is set, not empty, and names no view: what the node warns about.
    package static var unrecognizedEnvironmentValue: String? {
        guard let text = ProcessInfo.processInfo.environment[environmentVariable],
            !text.trimmingCharacters(in: .whitespaces).isEmpty, named(text) == nil
        else { return nil }
        return text
    }
}

/// What a node with a partial view wants to hold: the records that match any of these.
///
/// A record matches when it listens to one of `topics`, provides one of `services`, is named one
/// of `names`, or has one of `ids`. On the wire each list is a sorted JSON array, absent when empty.
package struct ViewInterest: Codable, Sendable, Equatable, Hashable, CustomStringConvertible {
    package var topics: Set<String> = []
    package var services: Set<String> = []
    package var names: Set<String> = []
    package var ids: Set<String> = []

    /// The most topics, services, names and ids one session may follow, all counted together
    /// (PROTOCOL.md §6.7): the coordinator refuses more, and a node does not ask for more.
    package static let maximumCount = 10_000

    package init(topics: Set<String> = [], services: Set<String> = [], names: Set<String> = [], ids: Set<String> = []) {
        self.topics = topics
        self.services = services
        self.names = names
        self.ids = ids
    }

    package var description: String {
        let parts = [("topics", topics), ("services", services), ("names", names), ("ids", ids)]
            .filter { !$0.1.isEmpty }
            .map { "\($0.0) \($0.1.sorted().map { "\"\($0)\"" }.joined(separator: ", "))" }
        return parts.joined(separator: "; ")
    }

    var isEmpty: Bool { topics.isEmpty && services.isEmpty && names.isEmpty && ids.isEmpty }
    package var count: Int { topics.count + services.count + names.count + ids.count }

    /// Everything in `other` that is not in this one.
    package func subtracting(_ other: ViewInterest) -> ViewInterest {
        ViewInterest(
            topics: topics.subtracting(other.topics), services: services.subtracting(other.services),
            names: names.subtracting(other.names), ids: ids.subtracting(other.ids))
    }

    package mutating func formUnion(_ other: ViewInterest) {
        topics.formUnion(other.topics)
        services.formUnion(other.services)
        names.formUnion(other.names)
        ids.formUnion(other.ids)
    }

    /// True when this interest covers everything in `other`.
    func contains(_ other: ViewInterest) -> Bool {
        other.topics.isSubset(of: topics) && other.services.isSubset(of: services) && other.names.isSubset(of: names)
            && other.ids.isSubset(of: ids)
    }

    /// True when `node` is one of the records this interest asks for.
    func matches(_ node: NodeRecord) -> Bool {
        ids.contains(node.id) || names.contains(node.name) || node.topics.contains(where: topics.contains)
            || node.services.contains(where: services.contains)
    }

    /// Checks every name: topics, services and names as the mesh's names, ids as node ids.
    ///
    /// - Throws: a reason a node can act on.
    package func validate() throws(MeshError) {
        for topic in topics { try validateName(topic, kind: "topic") }
        for service in services { try validateName(service, kind: "service") }
        for name in names { try validateName(name, kind: "node name") }
        for id in ids where !NodeID.isValid(id) {
            throw .invalidName(id, reason: "node id is not 16 lowercase hex digits")
        }
    }

    private enum CodingKeys: String, CodingKey { case topics, services, names, ids }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        topics = Set(try container.decodeIfPresent([String].self, forKey: .topics) ?? [])
        services = Set(try container.decodeIfPresent([String].self, forKey: .services) ?? [])
        names = Set(try container.decodeIfPresent([String].self, forKey: .names) ?? [])
        ids = Set(try container.decodeIfPresent([String].self, forKey: .ids) ?? [])
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if !topics.isEmpty { try container.encode(topics.sorted(), forKey: .topics) }
        if !services.isEmpty { try container.encode(services.sorted(), forKey: .services) }
        if !names.isEmpty { try container.encode(names.sorted(), forKey: .names) }
        if !ids.isEmpty { try container.encode(ids.sorted(), forKey: .ids) }
    }
}
