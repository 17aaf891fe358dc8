import Foundation
import Testing

@testable import Mesh
@testable import MeshCoordination

/// What the coordinator keeps of a heartbeat's counters: valid topic names only, at most 1,024,
/// nothing negative.
@Suite("Heartbeat counters")
struct HeartbeatCountersTests {
    @Test("honest counters are kept as they are")
    func honest() {
        var stats = MeshStatistics()
        stats.messagesReceived = 12
        stats.bytesReceived = 1200
        stats.topics = ["jobs": TopicStatistics(messagesReceived: 12, bytesReceived: 600), "ünïcode/topic": TopicStatistics()]
        let checked = HeartbeatCounters(stats)
        #expect(checked.statistics == stats)
        #expect(checked.dropped == 0 && checked.negativeCounters == 0 && checked.firstInvalid == nil)
        #expect(HeartbeatCounters(MeshStatistics()).statistics == MeshStatistics())  // no topics at all stays nil
    }

    @Test("topic keys the mesh would refuse as names are dropped and counted; the first by name is named")
    func invalidNames() {
        var stats = MeshStatistics()
        stats.topics = [
            "evil\u{1B}]0;owned\u{07}": TopicStatistics(messagesReceived: 1), "bell\u{07}": TopicStatistics(),
            "new\nline": TopicStatistics(), String(repeating: "x", count: 256): TopicStatistics(), "": TopicStatistics(),
            "fine": TopicStatistics(messagesReceived: 3),
        ]
        let checked = HeartbeatCounters(stats)
        #expect(checked.statistics.topics == ["fine": TopicStatistics(messagesReceived: 3)])
        #expect(checked.invalidTopics == 5 && checked.dropped == 5)
        #expect(checked.firstInvalid?.topic == "" && checked.firstInvalid?.reason == "topic must not be empty")
    }

    @Test("past 1,024 topics the first 1,024 by name are kept, the same ones every time")
    func tooMany() {
        var stats = MeshStatistics()
        stats.topics = Dictionary(uniqueKeysWithValues: (0..<5000).map { (String(format: "t%05d", $0), TopicStatistics(messagesReceived: $0)) })
        let checked = HeartbeatCounters(stats)
        #expect(checked.statistics.topics?.count == TopicStatistics.maximumTopics)
        #expect(checked.topicsOverLimit == 5000 - 1024)
        #expect(checked.statistics.topics?.keys.sorted() == (0..<1024).map { String(format: "t%05d", $0) })
        #expect(HeartbeatCounters(stats).statistics == checked.statistics)
    }

    @Test("negative counts are taken as 0, so no rate or sum made from them can overflow")
    func negative() {
        var stats = MeshStatistics()
        stats.messagesSent = -5
        stats.bytesSent = .min
        stats.messagesReceived = .max
        stats.topics = ["t": TopicStatistics(messagesReceived: -1, bytesReceived: .min)]
        let checked = HeartbeatCounters(stats)
        #expect(checked.statistics.messagesSent == 0 && checked.statistics.bytesSent == 0)
        #expect(checked.statistics.messagesReceived == .max)
        #expect(checked.statistics.topics?["t"] == TopicStatistics())
        #expect(checked.negativeCounters == 3)
    }
}

/// Counters that never go backwards for one process (one node id), across heartbeats and sessions.
@Suite("Monotonic counters")
struct MonotonicCounterTests {
    @Test("a counter below the node's earlier value is kept at that value, and counted")
    func backwardsIsClamped() {
        var before = MeshStatistics()
        before.messagesReceived = 92
        before.bytesReceived = 9200
        before.topics = ["jobs": TopicStatistics(messagesReceived: 92, bytesReceived: 4600), "gone": TopicStatistics(messagesReceived: 1)]
        var now = MeshStatistics()
        now.messagesReceived = 0
        now.bytesReceived = 9300
        now.topics = ["jobs": TopicStatistics(messagesReceived: 3, bytesReceived: 4700)]
        let checked = HeartbeatCounters(now, previous: before)
        #expect(checked.statistics.messagesReceived == 92)
        #expect(checked.statistics.bytesReceived == 9300)
        #expect(checked.statistics.topics?["jobs"] == TopicStatistics(messagesReceived: 92, bytesReceived: 4700))
        #expect(checked.statistics.topics?["gone"] == TopicStatistics(messagesReceived: 1))
        #expect(checked.backwardCounters == 2)
        // Counters that only grow are taken as they are.
        var later = now
        later.messagesReceived = 95
        later.topics = ["jobs": TopicStatistics(messagesReceived: 95, bytesReceived: 4800)]
        let honest = HeartbeatCounters(later, previous: checked.statistics)
        #expect(honest.backwardCounters == 0 && honest.statistics.messagesReceived == 95)
    }

    @Test("the memory of departed nodes gives back each one's counters once, and stays bounded")
    func memory() {
        var memory = CounterMemory(capacity: 2, topicCapacity: 3)
        var stats = MeshStatistics()
        stats.messagesReceived = 7
        memory.remember(stats, for: "a")
        memory.remember(stats, for: "b")
        memory.remember(stats, for: "c")
        #expect(memory.count == 2)
        #expect(memory.take("a") == nil, "the oldest went first")
        #expect(memory.take("b")?.messagesReceived == 7)
        #expect(memory.take("b") == nil, "taken once")
        stats.topics = ["x": TopicStatistics(), "y": TopicStatistics()]
        memory.remember(stats, for: "d")
        memory.remember(stats, for: "e")  // 4 topic entries would pass 3: "c" and "d" make room
        #expect(memory.take("d") == nil)
        #expect(memory.take("e")?.topics?.count == 2)
        stats.topics = ["1": TopicStatistics(), "2": TopicStatistics(), "3": TopicStatistics(), "4": TopicStatistics()]
        memory.remember(stats, for: "f")  // more topics than the whole memory holds: not kept
        #expect(memory.take("f") == nil)
    }
}
