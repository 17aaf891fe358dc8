import Foundation
import Mesh
import MeshCoordination
import MeshHTTP
import MeshTooling

/// Per-second rates computed from two heartbeats of one node.
struct NodeRates: Codable, Sendable, Equatable {
    var messagesSent = 0.0
    var messagesReceived = 0.0
    var bytesSent = 0.0
    var bytesReceived = 0.0
    var messagesDropped = 0.0
    var decodeFailures = 0.0
}

/// Turns the counters that arrive with heartbeats into rates.
///
/// A node's counters change only when a heartbeat brings them, so the rate is taken between the
/// last two heartbeats, at the instants the coordinator heard them (not when someone asked):
/// polling faster or slower than the heartbeats does not make the rate jump. A heartbeat that
/// brought no counters (nothing changed) is a sample too, and makes the rate 0.
///
/// A node's counters only grow (the coordinator holds them so, across its sessions too). A
/// sample below the last one is not taken at all: were it, the next sample would measure the
/// whole count since 0 as one interval's traffic (a phantom `102 msg/s`).
struct RateTracker: Sendable {
    struct Sample: Sendable {
        var at: ContinuousClock.Instant
        var stats: MeshStatistics
    }

    private var samples: [String: (previous: Sample?, latest: Sample)] = [:]
    /// Samples closer together than this are the same heartbeat seen twice.
    let minimumSpacing: Duration

    init(minimumSpacing: Duration = .milliseconds(500)) {
        self.minimumSpacing = minimumSpacing
    }

    /// Records what the coordinator held for each node at `now`; forgets nodes no longer there.
    mutating func update(_ nodes: [NodeStatus], now: ContinuousClock.Instant) {
        var next: [String: (previous: Sample?, latest: Sample)] = [:]
        for node in nodes {
            let heard = now - .milliseconds(Int64((node.lastHeard * 1000).rounded()))
            let sample = Sample(at: heard, stats: node.stats)
            if let known = samples[node.node.id] {
                if Self.isBehind(sample.stats, known.latest.stats) {
                    next[node.node.id] = known
                    continue
                }
                next[node.node.id] = heard - known.latest.at >= minimumSpacing ? (known.latest, sample) : known
            } else {
                next[node.node.id] = (nil, sample)
            }
        }
        samples = next
    }

    /// True when any counter a rate is taken from is lower in `stats` than in `before`.
    static func isBehind(_ stats: MeshStatistics, _ before: MeshStatistics) -> Bool {
        stats.messagesSent < before.messagesSent || stats.messagesReceived < before.messagesReceived
            || stats.bytesSent < before.bytesSent || stats.bytesReceived < before.bytesReceived
            || stats.messagesDropped < before.messagesDropped || stats.decodeFailures < before.decodeFailures
    }

    /// Whether the node's rates are known: two heartbeats far enough apart have been heard.
    func knowsRates(_ id: String) -> Bool { samples[id]?.previous != nil }

    /// The node's rates per second, zero before its second heartbeat.
    func rates(_ id: String) -> NodeRates {
        guard let entry = samples[id], let previous = entry.previous else { return NodeRates() }
        let elapsed = seconds(entry.latest.at - previous.at)
        guard elapsed > 0 else { return NodeRates() }
        let (a, b) = (previous.stats, entry.latest.stats)
        // A counter that went down means the node restarted its counting: no rate from that pair.
        func rate(_ now: Int, _ before: Int) -> Double { now >= before ? Double(now - before) / elapsed : 0 }
        return NodeRates(
            messagesSent: rate(b.messagesSent, a.messagesSent), messagesReceived: rate(b.messagesReceived, a.messagesReceived),
            bytesSent: rate(b.bytesSent, a.bytesSent), bytesReceived: rate(b.bytesReceived, a.bytesReceived),
            messagesDropped: rate(b.messagesDropped, a.messagesDropped), decodeFailures: rate(b.decodeFailures, a.decodeFailures))
    }

    /// Messages and bytes per second one node took for `topic`'s listeners.
    func topicRates(_ id: String, topic: String) -> (messages: Double, bytes: Double) {
        guard let entry = samples[id], let previous = entry.previous else { return (0, 0) }
        let elapsed = seconds(entry.latest.at - previous.at)
        guard elapsed > 0, let now = entry.latest.stats.topics?[topic] else { return (0, 0) }
        let before = previous.stats.topics?[topic] ?? TopicStatistics()
        guard now.messagesReceived >= before.messagesReceived, now.bytesReceived >= before.bytesReceived else { return (0, 0) }
        return (
            Double(now.messagesReceived - before.messagesReceived) / elapsed,
            Double(now.bytesReceived - before.bytesReceived) / elapsed
        )
    }
}

/// Everything the web page draws, as served by `/api/view`. Each box kind is a top-level array
/// (`nodes`, `topics`); a new kind (services) becomes one more array and one more column on the page.
struct WebView: Encodable, Sendable {
    struct Coordinator: Encodable, Sendable {
        var address: String
        var uptime: Double
        var version: UInt64
        var nodeCount: Int
        var topicCount: Int
        /// Seconds since 1970 when this view was taken (the coordinator's clock).
        var time: Double
    }

    struct Node: Encodable, Sendable {
        var name: String
        var id: String
        var address: String
        var pid: Int32?
        var topics: [String]
        var joined: Double?
        var uptime: Double?
        var lastHeard: Double
        var stats: MeshStatistics
        var rates: NodeRates
        /// False until two heartbeats gave a rate: the page shows "–" rather than a made-up 0.
        var ratesKnown: Bool
        /// A node of the `mesh` tool (its names start with `mesh-`): short-lived, never a pool.
        var tool: Bool
    }

    struct Group: Encodable, Sendable {
        var name: String
        var members: Int
    }

    struct Topic: Encodable, Sendable {
        var topic: String
        var listeners: Int
        var groups: [Group]
        /// The ids of the listening nodes.
        var nodes: [String]
        /// Messages and bytes per second handed to its listeners, summed over the listening nodes.
        var messagesPerSecond: Double
        var bytesPerSecond: Double
        /// Nodes that declared a send on it, by id.
        var senders: [String]
        /// The declared message type(s), `Pose (7343ed982d6d6e7f)`, or nil when untyped.
        var type: String?
        /// Total messages handed to its listeners, summed over the nodes listening now.
        var messagesReceived: Int
    }

    /// One service and the nodes that provide it.
    struct Service: Encodable, Sendable {
        var service: String
        var nodes: [String]
        var groups: [Group]
    }

    var coordinator: Coordinator
    var nodes: [Node]
    var topics: [Topic]
    var services: [Service]
    var events: [CoordinatorEvent]
    /// Connections refused since the start, by reason (every reason, zeros included).
    var refused: [String: Int]

    init(_ snapshot: CoordinatorSnapshot, rates: RateTracker, now: Date = Date()) {
        let clock = now.timeIntervalSince1970
        let statuses = Dictionary(snapshot.status.nodes.map { ($0.node.id, $0) }, uniquingKeysWith: { a, _ in a })
        let records = snapshot.topology.nodes.values.sorted { ($0.name, $0.id) < ($1.name, $1.id) }
        nodes = records.map { record in
            let status = statuses[record.id]
            return Node(
                name: record.name, id: record.id, address: record.address.description, pid: record.pid,
                topics: record.topics, joined: record.joined, uptime: record.joined.map { max(0, clock - $0) },
                lastHeard: status?.lastHeard ?? 0, stats: status?.stats ?? MeshStatistics(), rates: rates.rates(record.id),
                ratesKnown: rates.knowsRates(record.id), tool: record.name.hasPrefix("mesh-"))
        }
        let listening = snapshot.topology.topics
        let sending = snapshot.topology.senders
        let allTopics = Set(listening.keys).union(sending.keys).sorted()
        topics = allTopics.map { topic in
            let listeners = listening[topic] ?? []
            let senders = sending[topic] ?? []
            let members = Dictionary(grouping: listeners, by: \.name)
            var messages = 0.0
            var bytes = 0.0
            var total = 0
            for node in listeners {
                let rate = rates.topicRates(node.id, topic: topic)
                messages += rate.messages
                bytes += rate.bytes
                // Counts come from nodes: saturate rather than trap when they add up past Int.max.
                let (sum, overflow) = total.addingReportingOverflow(statuses[node.id]?.stats.topics?[topic]?.messagesReceived ?? 0)
                total = overflow ? .max : sum
            }
            let report = MeshReport.Topic(topic: topic, listeners: listeners, senders: senders)
            return Topic(
                topic: topic, listeners: listeners.count,
                groups: members.keys.sorted().map { Group(name: $0, members: members[$0]?.count ?? 0) },
                nodes: listeners.map(\.id), messagesPerSecond: messages, bytesPerSecond: bytes,
                senders: senders.map(\.id), type: report.types.isEmpty ? nil : report.typeText, messagesReceived: total)
        }
        services = snapshot.topology.services.sorted { $0.key < $1.key }.map { service, providers in
            let members = Dictionary(grouping: providers, by: \.name)
            return Service(
                service: service, nodes: providers.map(\.id),
                groups: members.keys.sorted().map { Group(name: $0, members: members[$0]?.count ?? 0) })
        }
        coordinator = Coordinator(
            address: snapshot.address, uptime: snapshot.status.uptime, version: snapshot.status.version,
            nodeCount: nodes.count, topicCount: topics.count, time: clock)
        events = snapshot.events
        refused = Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map { ($0.rawValue, snapshot.refused[$0] ?? 0) })
    }
}

/// The JSON documents under `/api/`, in the shapes the `mesh` command prints with `--json`.
enum WebDocuments {
    /// `/api/topology`: the version, every node (as `mesh node list --json`) and every topic (as
    /// `mesh topic list --json`).
    struct TopologyDocument: Encodable {
        var version: UInt64
        var nodes: [MeshReport.Node]
        var topics: [MeshReport.Topic]
    }

    /// `/api/events`: the recent events and the refusal counters.
    struct EventsDocument: Encodable {
        var events: [CoordinatorEvent]
        var refused: [String: Int]
    }

    static func topology(_ snapshot: CoordinatorSnapshot) -> TopologyDocument {
        let now = Date().timeIntervalSince1970
        return TopologyDocument(
            version: snapshot.topology.version,
            nodes: snapshot.topology.nodes.values.sorted { ($0.name, $0.id) < ($1.name, $1.id) }.map {
                MeshReport.Node($0, now: now)
            },
            topics: MeshReport.Topic.all(in: snapshot.topology))
    }

    /// `/api/status`: as `mesh status --json`.
    static func status(_ snapshot: CoordinatorSnapshot) -> MeshReport.Status {
        MeshReport.Status(coordinator: snapshot.address, status: snapshot.status)
    }

    static func events(_ view: WebView) -> EventsDocument {
        EventsDocument(events: view.events, refused: view.refused)
    }

    /// Encodes with sorted keys, so the documents read the same from one call to the next.
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value)) + [UInt8(ascii: "\n")]
        } catch {
            // Only a non-finite Double fails; rates and times are finite by construction.
            return Array("{\"error\":\"could not encode: \(error)\"}\n".utf8)
        }
    }
}
