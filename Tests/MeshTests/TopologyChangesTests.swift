import Foundation
import Testing

@testable import Mesh

/// Issue #21: a node's full-view bookkeeping costs O(changes) per delta. These check that doing
/// less work loses nothing: the right things count as touched, a wait is woken exactly when its
/// condition holds, the router keeps the routes a delta did not touch, and the peer directory
/// still forgets nodes that left.
@Suite("Topology changes")
struct TopologyChangesTests {
    static let me = "00000000000000aa"

    static func record(_ id: String, _ name: String, topics: [String] = [], services: [String] = []) -> NodeRecord {
        NodeRecord(id: id, name: name, host: "127.0.0.1", port: 1, topics: topics, services: services)
    }

    @Test("a delta touches the joined and leaving nodes' names, topics and services, read from the record before it")
    func touched() {
        let old = Self.record("00000000000000bb", "old", topics: ["gone-topic"], services: ["gone-service"])
        var topology = Topology(TopologySnapshot(version: 1, nodes: [old]))
        let new = Self.record("00000000000000cc", "new", topics: ["t"])
        let delta = TopologyDelta(
            from: 1, to: 2,
            changes: [.join(new), .leave(old.id), .listen(Self.me, "u"), .serve("00000000000000dd", "s"), .publish(Self.me, "p", type: nil)])
        let changes = TopologyChanges(delta.changes, before: topology)
        #expect(topology.apply(delta) == .applied)
        #expect(!changes.everything)
        #expect(changes.nodes == [old.id, new.id, Self.me, "00000000000000dd"])
        #expect(changes.names == ["old", "new"])
        #expect(changes.topics == ["gone-topic", "t", "u"], "a sender's publish touches no listeners")
        #expect(changes.services == ["gone-service", "s"])
        #expect(changes.touches(.topic("gone-topic")) && !changes.touches(.topic("p")))
        #expect(changes.touches(.name("old")) && !changes.touches(.name("other")))
        #expect(changes.touches(.anyChange))
        #expect(TopologyChanges.everything.touches(.service("anything")))
        #expect(TopologyChanges().touches(.anyChange) && !TopologyChanges().touches(.node(Self.me)))
    }

    @Test("a listen or serve keeps the record's list sorted, in place or, for a list that came unsorted, by sorting it")
    func listsStaySorted() {
        var topology = Topology(
            TopologySnapshot(
                version: 1,
                nodes: [Self.record(Self.me, "me", topics: ["a", "c"]), Self.record("00000000000000bb", "b", topics: ["z", "m"])]))
        let applied = [
            topology.apply(.listen(Self.me, "b")), topology.apply(.listen(Self.me, "d")), topology.apply(.listen(Self.me, "c")),
            topology.apply(.serve(Self.me, "s")), topology.apply(.listen("00000000000000bb", "a")),
            topology.apply(.listen("00000000000000ff", "a")),
        ]
        // A topic already listed, and a listen of an unknown node, change nothing.
        #expect(applied == [true, true, false, true, true, false])
        #expect(topology.nodes[Self.me]?.topics == ["a", "b", "c", "d"])
        #expect(topology.nodes[Self.me]?.services == ["s"])
        #expect(topology.nodes["00000000000000bb"]?.topics == ["a", "m", "z"])
    }

    typealias Condition = (Topology) -> Bool

    /// Applies `delta`, then wakes (removes and returns, by label) the waits whose condition holds
    /// among those `candidates(for:)` offers, as the node does.
    static func step(
        _ topology: inout Topology, _ waiters: inout TopologyWaiters<(label: String, condition: Condition)>,
        _ changes: [TopologyChange]
    ) -> Set<String> {
        let delta = TopologyDelta(from: topology.version, to: topology.version + 1, changes: changes)
        let touched = TopologyChanges(changes, before: topology)
        #expect(topology.apply(delta) == .applied)
        var woken: Set<String> = []
        for id in waiters.candidates(for: touched) {
            guard let waiter = waiters[id], waiter.condition(topology) else { continue }
            waiters.remove(id)
            woken.insert(waiter.label)
        }
        return woken
    }

    @Test("waits are woken exactly by the delta that satisfies them, with few or many other waits indexed", arguments: [0, 50])
    func waitersWokenWhenSatisfied(unrelated: Int) {
        var topology = Topology(TopologySnapshot(version: 1, nodes: [Self.record(Self.me, "me")]))
        var waiters = TopologyWaiters<(label: String, condition: Condition)>()
        let never: Condition = { _ in false }
        // Waits nothing here satisfies; with many of them the index is walked by change, not by key.
        for index in 0..<unrelated {
            waiters.add(UInt64(1_000 + index), key: .topic("other-\(index)"), ("unrelated", never))
        }
        waiters.add(1, key: .topic("t"), ("two listeners of t", { $0.listeners(of: "t").count >= 2 }))
        waiters.add(2, key: .name("worker"), ("a worker", { !$0.nodes(named: "worker").isEmpty }))
        waiters.add(3, key: .node(Self.me), ("my service", { $0.nodes[Self.me]?.services.contains("s") ?? false }))
        waiters.add(4, key: .service("s"), ("a provider of s", { !$0.providers(of: "s").isEmpty }))
        waiters.add(5, key: .anyChange, ("any change", { $0.version >= 3 }))

        let first = Self.record("00000000000000b1", "listener", topics: ["t"])
        #expect(Self.step(&topology, &waiters, [.join(first)]).isEmpty)
        #expect(waiters.count == 5 + unrelated)
        // A change elsewhere does not even offer the topic wait for a check.
        let unrelatedChange = TopologyChanges([.listen(Self.me, "elsewhere")], before: topology)
        #expect(!waiters.candidates(for: unrelatedChange).contains(1))
        #expect(waiters.candidates(for: unrelatedChange).contains(5), "a wait for any change is offered every change")

        let worker = Self.record("00000000000000b2", "worker", topics: ["t"])
        #expect(Self.step(&topology, &waiters, [.join(worker)]) == ["two listeners of t", "a worker", "any change"])
        #expect(Self.step(&topology, &waiters, [.listen(Self.me, "elsewhere")]).isEmpty)
        #expect(Self.step(&topology, &waiters, [.serve(Self.me, "s")]) == ["my service", "a provider of s"])
        #expect(waiters.count == unrelated)
        // A full copy offers every wait.
        #expect(waiters.candidates(for: .everything).count == unrelated)
        waiters.removeAll()
        #expect(waiters.isEmpty && waiters.candidates(for: .everything).isEmpty)
    }

    static func router() -> Router {
        Router(
            nodeID: me, nodeName: "solo", loadBalancing: .roundRobin,
            options: Connection.Options(
                handshake: .connect(purpose: .data, key: nil, identity: nil, expectedPeerID: nil, expectedPeerKey: nil),
                maximumFrameLength: 1 << 20, maximumPendingBytes: 1 << 20),
            events: EventQueue(), logger: .silent, preferUnix: false, calls: PendingCalls(logger: .silent, loop: .shared),
            loop: .shared)
    }

    @Test("the router drops only the cached routes a delta touches and keeps the others")
    func routeCacheKeepsUnrelatedRoutes() throws {
        let router = Self.router()
        let solo = Self.record(Self.me, "solo", topics: ["a", "b"], services: ["x", "y"])
        _ = router.setTopology(Topology(TopologySnapshot(version: 1, nodes: [solo])))
        for topic in ["a", "b"] {
            let routed = try router.route(topic, frameBytes: 10) { _, _ in }
            #expect(routed)
        }
        for service in ["x", "y"] { #expect(try router.provider(of: service) != nil) }
        #expect(router.cachedRoutes == ["a", "b"] && router.cachedServiceRoutes == ["x", "y"])

        // This node stops listening to "b" and providing "y".
        let updated = Self.record(Self.me, "solo", topics: ["a"], services: ["x"])
        let departures = router.apply([(id: Self.me, record: updated)], topics: ["b"], services: ["y"], version: 2)
        #expect(departures.connections.isEmpty && departures.records.isEmpty)
        #expect(router.node(Self.me) == updated)
        #expect(router.cachedRoutes == ["a"], "an untouched route was dropped, or a touched one kept")
        #expect(router.cachedServiceRoutes == ["x"])
        // The rebuilt routes see the new record; the kept one still delivers.
        let routedB = try router.route("b", frameBytes: 10) { _, _ in }
        #expect(!routedB, "a route kept this node as a listener of b")
        #expect(try router.provider(of: "y") == nil)
        var delivered: [Bool] = []
        let routedA = try router.route("a", frameBytes: 10) { connection, member in
            delivered.append(connection == nil && member.isSelf)
        }
        #expect(routedA && delivered == [true])
        // A full copy still empties the cache.
        _ = router.setTopology(Topology(TopologySnapshot(version: 3, nodes: [updated])))
        #expect(router.cachedRoutes.isEmpty && router.cachedServiceRoutes.isEmpty)
    }

    @Test("a node that leaves stays known to the peer directory for a while, then is forgotten; the router's records come first")
    func peerDirectoryForgetsDeparted() {
        let router = Self.router()
        let directory = PeerDirectory()
        directory.resolve { router.node($0) }
        let start = ContinuousClock.now
        let peer = Self.record("00000000000000bb", "peer")
        let other = Self.record("00000000000000cc", "other")
        router.setTopology(Topology(TopologySnapshot(version: 1, nodes: [Self.record(Self.me, "me")])))
        router.apply([(id: peer.id, record: peer), (id: other.id, record: other)], topics: [], services: [], version: 2)
        #expect(directory.node(peer.id, now: start) == peer)

        let left = router.apply([(id: peer.id, record: nil)], topics: [], services: [], version: 3)
        #expect(left.records == [peer])
        directory.changed(departed: left.records, now: start + .seconds(1))
        #expect(directory.node(peer.id, now: start + .seconds(2)) == peer, "a node that just left is forgotten at once")
        #expect(directory.node(peer.id, now: start + .seconds(7)) == nil, "a departed node is remembered forever")
        #expect(directory.node(other.id, now: start + .seconds(60)) == other, "a node still in the topology was forgotten")

        // A full copy without `other`: it departs too; pruning then forgets the expired `peer`.
        let gone = router.setTopology(Topology(TopologySnapshot(version: 9, nodes: [Self.record(Self.me, "me")])))
        #expect(gone.records == [other])
        directory.changed(departed: gone.records, now: start + .seconds(8))
        #expect(directory.node(other.id, now: start + .seconds(9)) == other)
        #expect(directory.node(other.id, now: start + .seconds(14)) == nil)
        #expect(directory.node(peer.id, now: start + .seconds(2)) == nil, "an expired record was kept past a prune")
        // A node that comes back is known again; a closed node's directory knows nobody.
        router.apply([(id: peer.id, record: peer)], topics: [], services: [], version: 10)
        #expect(directory.node(peer.id, now: start + .seconds(60)) == peer)
        directory.clear()
        #expect(directory.node(peer.id, now: start + .seconds(60)) == nil)
        #expect(directory.node(Self.me) == nil)
    }

    @Test("nodes of one process share a large frame's decoding only when its bytes are the same; a malformed one still fails")
    func sharedDecoding() throws {
        // As if two nodes were open in this process (with one, nothing is kept).
        SharedControlDecoding.nodeOpened()
        SharedControlDecoding.nodeOpened()
        defer {
            SharedControlDecoding.nodeClosed()
            SharedControlDecoding.nodeClosed()
        }
        let records = (0..<20).map { Self.record(String(format: "%016x", $0 + 1), "n\($0)", topics: ["t\($0)"]) }
        let delta = TopologyDelta(from: 1, to: 2, changes: records.map { .join($0) })
        let body = Array(ControlMessage(.delta, delta: delta).encodedFrame().dropFirst(Frame.headerLength))
        #expect(body.count >= SharedControlDecoding.minimumBytes)
        let first = try SharedControlDecoding.decode(body)
        let again = try SharedControlDecoding.decode(Array(body))
        #expect(first.delta == delta && again.delta == delta)
        // One byte different (another node's name): decoded for itself, not taken from the cache.
        var other = body
        let nameAt = other.indices.first { other[$0] == UInt8(ascii: "n") && other[$0 + 1] == UInt8(ascii: "0") && other[$0 - 1] == UInt8(ascii: "\"") }!
        other[nameAt] = UInt8(ascii: "m")
        let changed = try SharedControlDecoding.decode(other)
        #expect(changed.delta?.changes[0].node?.name == "m0")
        #expect(try SharedControlDecoding.decode(body).delta?.changes[0].node?.name == "n0")
        var broken = body
        broken[broken.count - 1] = UInt8(ascii: "[")
        #expect(throws: FrameError.self) { try SharedControlDecoding.decode(broken) }
        #expect(throws: FrameError.self) { try SharedControlDecoding.decode(broken) }
    }
}
