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
