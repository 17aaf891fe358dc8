import MeshTesting
import Testing

@testable import Mesh

/// Which members of each listening group receive a message.
@Suite struct LoadBalancerTests {
    private func node(_ id: String, _ name: String) -> NodeRecord {
        NodeRecord(id: id, name: name, host: "127.0.0.1", port: 4000, topics: ["t"])
    }

    private var workers: [NodeRecord] { [node("w1", "worker"), node("w2", "worker"), node("w3", "worker")] }
    private var loggers: [NodeRecord] { [node("l1", "logger"), node("l2", "logger")] }

    /// The ids chosen for `count` messages on `topic`.
    private func picks(
        _ balancer: inout LoadBalancer, topic: String = "t", groups: [[NodeRecord]], count: Int,
        available: (NodeRecord) -> Bool = { _ in true }
    ) -> [[String]] {
        var random = SplitMix64(seed: 7)
        return (0..<count).map { _ in
            balancer.receivers(topic: topic, groups: groups, isAvailable: available, using: &random).map(\.id)
        }
    }

    // MARK: round robin

    @Test func roundRobinSharesEvenlyInTurn() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        let chosen = picks(&balancer, groups: [workers], count: 30)
        #expect(chosen.allSatisfy { $0.count == 1 })
        let ids = chosen.map { $0[0] }
        #expect(ids.filter { $0 == "w1" }.count == 10)
        #expect(ids.filter { $0 == "w2" }.count == 10)
        #expect(ids.filter { $0 == "w3" }.count == 10)
        #expect(Array(ids.prefix(6)) == ["w1", "w2", "w3", "w1", "w2", "w3"])
    }

    @Test func everyGroupGetsEveryMessage() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        let chosen = picks(&balancer, groups: [loggers, workers], count: 6)
        #expect(chosen == [
            ["l1", "w1"], ["l2", "w2"], ["l1", "w3"], ["l2", "w1"], ["l1", "w2"], ["l2", "w3"],
        ])
    }

    @Test func emptyGroupsAreSkipped() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        #expect(picks(&balancer, groups: [[], workers, []], count: 2) == [["w1"], ["w2"]])
        #expect(picks(&balancer, groups: [], count: 1) == [[]])
    }

    @Test func turnsAreKeptPerTopic() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        var order: [String] = []
        for _ in 0..<3 {
            order += picks(&balancer, topic: "a", groups: [workers], count: 1)[0]
            order += picks(&balancer, topic: "b", groups: [workers], count: 1)[0]
        }
        #expect(order == ["w1", "w1", "w2", "w2", "w3", "w3"])
    }

    @Test func turnsAreKeptPerGroup() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        // Only the workers get the first two messages; the loggers' turn has not moved.
        _ = picks(&balancer, groups: [workers], count: 2)
        #expect(picks(&balancer, groups: [loggers, workers], count: 2) == [["l1", "w3"], ["l2", "w1"]])
    }

    @Test func unavailableMembersAreSkipped() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        let chosen = picks(&balancer, groups: [workers], count: 6) { $0.id != "w2" }
        #expect(chosen.map { $0[0] } == ["w1", "w3", "w1", "w3", "w1", "w3"])
    }

    @Test func whenAllAreUnavailableTheNextInTurnIsStillNamed() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        let chosen = picks(&balancer, groups: [workers], count: 4) { _ in false }
        #expect(chosen == [["w1"], ["w2"], ["w3"], ["w1"]])
    }

    @Test func shrinkingGroupStaysInRange() {
        var balancer = LoadBalancer(strategy: .roundRobin)
        _ = picks(&balancer, groups: [workers], count: 3)
        let smaller = Array(workers.prefix(2))
        let chosen = picks(&balancer, groups: [smaller], count: 4)
        #expect(chosen.allSatisfy { $0.count == 1 })
        #expect(Set(chosen.map { $0[0] }) == ["w1", "w2"])
    }

    // MARK: broadcast and random

    @Test func broadcastReturnsEveryMember() {
        var balancer = LoadBalancer(strategy: .broadcast)
        let chosen = picks(&balancer, groups: [loggers, workers], count: 3) { $0.id != "w1" }
        #expect(chosen.allSatisfy { $0 == ["l1", "l2", "w1", "w2", "w3"] })
    }

    @Test func randomPicksOnlyAvailableMembers() {
        var balancer = LoadBalancer(strategy: .random)
        let chosen = picks(&balancer, groups: [workers, loggers], count: 200) { $0.id != "w2" && $0.id != "l1" }
        #expect(chosen.allSatisfy { $0.count == 2 })
        let workerPicks = Set(chosen.map { $0[0] })
        #expect(workerPicks == ["w1", "w3"])
        #expect(Set(chosen.map { $0[1] }) == ["l2"])
    }

    @Test func randomFallsBackToAnyMemberWhenNoneAreAvailable() {
        var balancer = LoadBalancer(strategy: .random)
        let chosen = picks(&balancer, groups: [workers], count: 200) { _ in false }
        #expect(Set(chosen.map { $0[0] }) == ["w1", "w2", "w3"])
    }

    // MARK: grouping

    @Test func groupsByNameSortedByID() {
        let listeners = [
            node("w3", "worker"), node("l2", "logger"), node("w1", "worker"), node("a9", "audit"),
            node("l1", "logger"), node("w2", "worker"),
        ]
        let groups = LoadBalancer.groups(listeners)
        #expect(groups.map { $0.map(\.id) } == [["a9"], ["l1", "l2"], ["w1", "w2", "w3"]])
        #expect(LoadBalancer.groups([]).isEmpty)
    }
}
