/// How a message reaches the members of a group of nodes that share a name.
public enum LoadBalancing: String, Sendable, CaseIterable {
    /// Each message goes to the next member in turn (per topic and per group).
    case roundRobin
    /// Each message goes to a member picked at random.
    case random
    /// Every member gets a copy.
    case broadcast
}

/// Chooses which members of each listening group receive a message. A value: no sockets, no clocks.
///
/// Every group that listens to a topic receives each message once (or once per member for
/// ``LoadBalancing/broadcast``). Round-robin keeps a separate turn per topic and group, and
/// steps over members the caller reports unavailable (a failed connection); when every member is
/// unavailable it still names the next in turn, so that member gets a fresh connection attempt.
struct LoadBalancer: Sendable {
    let strategy: LoadBalancing
    private var turns: [Key: Int] = [:]

    private struct Key: Hashable, Sendable {
        var topic: String
        var group: String
    }

    init(strategy: LoadBalancing) {
        self.strategy = strategy
    }

    /// The receivers for one message on `topic`.
    ///
    /// - Parameters:
    ///   - groups: the listening nodes grouped by name, each group in a stable order (by id).
    ///   - isAvailable: whether a node can be sent to now.
    /// - Returns: the chosen nodes, at most one per group unless broadcasting.
    mutating func receivers<R: RandomNumberGenerator>(
        topic: String, groups: [[NodeRecord]], isAvailable: (NodeRecord) -> Bool, using random: inout R
    ) -> [NodeRecord] {
        var chosen: [NodeRecord] = []
        chosen.reserveCapacity(groups.count)
        for members in groups where !members.isEmpty {
            if strategy == .broadcast {
                chosen.append(contentsOf: members)
                continue
            }
            let key = Key(topic: topic, group: members[0].name)
            var turn = turns[key, default: 0]
            let index = LoadBalancer.pick(
                strategy, among: members.count, turn: &turn, isAvailable: { isAvailable(members[$0]) }, using: &random)
            turns[key] = turn
            chosen.append(members[index])
        }
        return chosen
    }

    /// Picks one member of a group of `count` for ``LoadBalancing/roundRobin`` or ``LoadBalancing/random``.
    ///
    /// - Parameters:
    ///   - turn: the group's round-robin position for this topic, advanced past the pick.
    ///   - isAvailable: whether the member at an index can be sent to now.
    /// - Returns: the member's index; the next in turn when none is available.
    static func pick<R: RandomNumberGenerator>(
        _ strategy: LoadBalancing, among count: Int, turn: inout Int, isAvailable: (Int) -> Bool,
        using random: inout R
    ) -> Int {
        switch strategy {
        case .random:
            let available = (0..<count).filter(isAvailable)
            return (available.isEmpty ? Array(0..<count) : available).randomElement(using: &random)!
        case .roundRobin, .broadcast:
            let start = turn % count
            var pick = start
            for offset in 0..<count where isAvailable((start + offset) % count) {
                pick = (start + offset) % count
                break
            }
            turn = pick + 1
            return pick
        }
    }

    /// Groups the listeners of a topic by node name, in a stable order.
    static func groups(_ listeners: [NodeRecord]) -> [[NodeRecord]] {
        var byName: [String: [NodeRecord]] = [:]
        for node in listeners { byName[node.name, default: []].append(node) }
        return byName.keys.sorted().map { name in byName[name]!.sorted { $0.id < $1.id } }
    }
}
