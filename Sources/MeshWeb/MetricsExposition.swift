import Mesh
import MeshCoordination
import MeshHTTP
import MeshTooling

/// Writes metrics in Prometheus's text exposition format (version 0.0.4): one `# HELP` and one
/// `# TYPE` line per family, then its samples; label values escaped (`\`, `"`, line feed).
///
/// Label values come from the network (node names, topics). Whatever the coordinator let
/// through, no control character reaches the page raw: the format escapes only `\`, `"` and
/// line feed, so every other character ``MeshText/escaped(_:)`` rewrites (ESC, BEL, CR, the bidi
/// overrides, ...) is written as the visible text `\u{1B}`, its backslash escaped as the format
/// wants (`\\u{1B}` on the page).
struct MetricsExposition {
    enum Kind: String {
        case counter, gauge
    }

    private(set) var text = ""

    /// Adds a family with its samples; a family with no samples is still declared.
    mutating func family(
        _ name: String, _ kind: Kind, help: String, samples: [(labels: [(String, String)], value: Double)]
    ) {
        text += "# HELP \(name) \(Self.escapeHelp(help))\n"
        text += "# TYPE \(name) \(kind.rawValue)\n"
        for sample in samples {
            text += name
            if !sample.labels.isEmpty {
                text += "{"
                text += sample.labels.map { "\($0.0)=\"\(Self.escapeLabel($0.1))\"" }.joined(separator: ",")
                text += "}"
            }
            text += " \(Self.format(sample.value))\n"
        }
    }

    /// A family of one sample without labels.
    mutating func single(_ name: String, _ kind: Kind, help: String, _ value: Double) {
        family(name, kind, help: help, samples: [([], value)])
    }

    /// `\` → `\\`, `"` → `\"`, line feed → `\n`; any other control character as `\\u{HEX}`.
    static func escapeLabel(_ value: String) -> String {
        escape(value, quote: true)
    }

    /// `\` → `\\`, line feed → `\n`; any other control character as `\\u{HEX}`.
    static func escapeHelp(_ value: String) -> String {
        escape(value, quote: false)
    }

    private static func escape(_ value: String, quote: Bool) -> String {
        var result = ""
        result.reserveCapacity(value.utf8.count)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"" where quote: result += "\\\""
            case "\n": result += "\\n"
            case _ where MeshText.needsEscaping(scalar):
                result += "\\\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Integers without a fraction; others in Swift's shortest round-trip form, which Go's
    /// `ParseFloat` (and so Prometheus) reads.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

extension MetricsExposition {
    /// The coordinator's metrics: itself, every node's counters from its last heartbeat, every
    /// topic, and the HTTP server's own counters.
    static func render(_ view: WebView, limits: CoordinatorLimits = CoordinatorLimits(), http: HTTPServer.Counters?) -> String {
        var out = MetricsExposition()
        out.single(
            "mesh_coordinator_uptime_seconds", .gauge, help: "Seconds since the coordinator started.",
            view.coordinator.uptime)
        out.single("mesh_nodes", .gauge, help: "Nodes registered with the coordinator.", Double(view.nodes.count))
        out.single("mesh_topics", .gauge, help: "Topics at least one node listens to.", Double(view.topics.count))
        out.single(
            "mesh_topology_version", .gauge, help: "The topology's version; every join, leave, listen and unlisten bumps it.",
            Double(view.coordinator.version))
        out.family(
            "mesh_connections_refused_total", .counter,
            help: "Connections the coordinator refused since it started, by reason.",
            samples: view.refused.sorted { $0.key < $1.key }.map { ([("reason", $0.key)], Double($0.value)) })
        out.single(
            "mesh_heartbeat_topics_dropped_total", .counter,
            help: "Per-topic counters dropped from nodes' heartbeats: names the mesh does not allow, or past 1024 a node.",
            Double(limits.heartbeatTopicsDropped))
        out.single(
            "mesh_sessions_shed_total", .counter,
            help: "Sessions closed because all sessions' queued replies would have passed the coordinator's limit (the ones furthest behind).",
            Double(limits.sessionsShed))
        out.single(
            "mesh_queued_reply_bytes", .gauge, help: "Bytes of replies queued to all sessions, as of the coordinator's last count.",
            Double(limits.queuedReplyBytes))
        out.single(
            "mesh_partial_view_interests", .gauge,
            help: "Topics, services, names and ids the partial views of all sessions follow together.", Double(limits.interests))

        let nodeLabels = { (node: WebView.Node) in [("node", node.name), ("id", node.id)] }
        let perNode: [(String, String, (MeshStatistics) -> Int)] = [
            ("mesh_node_messages_sent_total", "Messages the node handed to connections, one per receiver.", { $0.messagesSent }),
            ("mesh_node_bytes_sent_total", "Frame bytes of the messages the node sent.", { $0.bytesSent }),
            ("mesh_node_messages_received_total", "Messages the node received.", { $0.messagesReceived }),
            ("mesh_node_bytes_received_total", "Frame bytes the node received.", { $0.bytesReceived }),
            (
                "mesh_node_messages_dropped_total", "Messages the node could not deliver (queue full past its deadline, or connection lost).",
                { $0.messagesDropped }
            ),
            ("mesh_node_decode_failures_total", "Messages no listener of the node could decode.", { $0.decodeFailures }),
            ("mesh_node_messages_unrouted_total", "Messages the node sent on a topic nobody listened to.", { $0.messagesUnrouted }),
            ("mesh_node_reconnects_total", "Peer connections the node opened again after a failure.", { $0.reconnects }),
            ("mesh_node_coordinator_reconnects_total", "Times the node lost the coordinator and found it again.", { $0.coordinatorReconnects }),
        ]
        for (name, help, value) in perNode {
            out.family(
                name, .counter, help: help + " From the node's last heartbeat.",
                samples: view.nodes.map { (nodeLabels($0), Double(value($0.stats))) })
        }
        out.family(
            "mesh_node_last_heard_seconds", .gauge, help: "Seconds since the coordinator last heard from the node.",
            samples: view.nodes.map { (nodeLabels($0), $0.lastHeard) })
        out.family(
            "mesh_node_topic_messages_received_total", .counter,
            help: "Messages on one topic handed to the node's listeners. From the node's last heartbeat.",
            samples: view.nodes.flatMap { node in
                (node.stats.topics ?? [:]).sorted { $0.key < $1.key }.map {
                    (nodeLabels(node) + [("topic", $0.key)], Double($0.value.messagesReceived))
                }
            })
        out.family(
            "mesh_node_topic_bytes_received_total", .counter,
            help: "Payload bytes on one topic handed to the node's listeners. From the node's last heartbeat.",
            samples: view.nodes.flatMap { node in
                (node.stats.topics ?? [:]).sorted { $0.key < $1.key }.map {
                    (nodeLabels(node) + [("topic", $0.key)], Double($0.value.bytesReceived))
                }
            })
        out.family(
            "mesh_topic_listeners", .gauge, help: "Nodes listening to the topic.",
            samples: view.topics.map { ([("topic", $0.topic)], Double($0.listeners)) })
        out.family(
            "mesh_topic_groups", .gauge, help: "Groups (distinct node names) listening to the topic; each gets one copy of a message.",
            samples: view.topics.map { ([("topic", $0.topic)], Double($0.groups.count)) })
        if let http {
            out.family(
                "mesh_http_responses_total", .counter, help: "Responses the coordinator's HTTP server sent, by status code.",
                samples: http.responses.sorted { $0.key < $1.key }.map { ([("code", String($0.key))], Double($0.value)) })
            out.single(
                "mesh_http_connections_total", .counter, help: "Connections the HTTP server accepted.",
                Double(http.connections))
            out.single(
                "mesh_http_connections_evicted_total", .counter,
                help: "HTTP connections closed to make room at the connection limit (answered ones first, then idle ones).", Double(http.evicted))
        }
        return out.text
    }
}
