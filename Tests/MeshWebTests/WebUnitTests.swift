import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshCoordination
@testable import MeshHTTP
@testable import MeshWeb

/// The pure parts of the web view: the request decoder and its limits, the exposition writer,
/// the event journal, rates from heartbeats, and the token. No sockets.
@Suite("Web view units")
struct WebUnitTests {
    private func decode(_ text: String, limits: HTTPRequestDecoder.Limits = .init()) throws(HTTPRequestError) -> HTTPRequest? {
        var decoder = HTTPRequestDecoder(limits: limits)
        decoder.append(Array(text.utf8))
        return try decoder.next()
    }

    private func status(of text: String, limits: HTTPRequestDecoder.Limits = .init()) -> Int? {
        do {
            _ = try decode(text, limits: limits)
            return nil
        } catch {
            return error.status.code
        }
    }

    @Test func readsARequestHead() throws {
        let request = try #require(
            try decode("GET /api/status?x=1 HTTP/1.1\r\nHost: example\r\nAccept:  */* \r\nConnection: close\r\n\r\n"))
        #expect(request.method == "GET")
        #expect(request.path == "/api/status")
        #expect(request.query == "x=1")
        #expect(request.minorVersion == 1)
        #expect(request.header("accept") == "*/*")
        #expect(!request.keepAlive)
        let old = try #require(try decode("GET / HTTP/1.0\r\n\r\n"))
        #expect(!old.keepAlive)
        let kept = try #require(try decode("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        #expect(kept.keepAlive)
        let bareLineFeeds = try #require(try decode("GET /metrics HTTP/1.1\nHost: h\n\n"))
        #expect(bareLineFeeds.path == "/metrics")
        let absolute = try #require(try decode("GET http://h:1/api/view HTTP/1.1\r\nHost: h\r\n\r\n"))
        #expect(absolute.path == "/api/view")
    }

    @Test func waitsForTheWholeHeadAndKeepsPipelinedRequests() throws {
        let text = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HT"
        var decoder = HTTPRequestDecoder()
        var seen: [String] = []
        // One byte at a time: no partial head is ever taken for a request.
        for byte in text.utf8 {
            decoder.append([byte])
            while let request = try decoder.next() { seen.append("\(request.method) \(request.path)") }
        }
        #expect(seen == ["GET /a", "HEAD /b"])
        #expect(decoder.bufferedByteCount == "GET /c HT".utf8.count)
    }

    @Test func refusesOversizedHeads() {
        let limits = HTTPRequestDecoder.Limits(requestLine: 100, headerSection: 200, headerCount: 5)
        let long = String(repeating: "a", count: 150)
        #expect(status(of: "GET /\(long) HTTP/1.1\r\nHost: h\r\n\r\n", limits: limits) == 414)
        // Refused as soon as the limit is passed, before any line ending arrives.
        #expect(status(of: "GET /\(long)", limits: limits) == 414)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nX: \(String(repeating: "b", count: 250))", limits: limits) == 431)
        let many = (0..<6).map { "X-\($0): 1\r\n" }.joined()
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\n\(many)\r\n", limits: limits) == 431)
        // The defaults: 8 KiB request line, 16 KiB of fields, 64 fields.
        #expect(status(of: "GET /\(String(repeating: "a", count: 9000)) HTTP/1.1\r\n\r\n") == 414)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nX: \(String(repeating: "b", count: 17000))\r\n\r\n") == 431)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\n" + (0..<65).map { "X-\($0): 1\r\n" }.joined() + "\r\n") == 431)
    }

    @Test func refusesMalformedRequests() {
        #expect(status(of: "GARBAGE\r\n\r\n") == 400)
        #expect(status(of: "GET /\r\n\r\n") == 400)
        #expect(status(of: "GET  / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status(of: "G(T / HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/2.0\r\nHost: h\r\n\r\n") == 505)
        #expect(status(of: "GET / SPDY/3\r\nHost: h\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\n\r\n") == 400, "HTTP/1.1 without Host")
        #expect(status(of: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nX: a\u{01}b\r\n\r\n") == 400)
        #expect(status(of: "GET /\u{01} HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status(of: "GET * HTTP/1.1\r\nHost: h\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n") == 413)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n") == nil)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n") == 400)
        #expect(status(of: "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n") == 400)
        #expect(status(of: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") == 413)
    }

    @Test(arguments: [
        "/../etc/passwd", "/a/../../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E%2Fetc%2Fpasswd", "/..%2fetc",
        "/.", "/./metrics", "/api/..", "/%5c..%5cwindows", "/a\\b", "/%00", "/%zz", "/%2", "/metrics%0a",
    ])
    func refusesPathTraversal(path: String) {
        #expect(status(of: "GET \(path) HTTP/1.1\r\nHost: h\r\n\r\n") == 400, "\(path)")
    }

    @Test func decodesPercentEscapesInPaths() throws {
        #expect(try HTTPRequestDecoder.parseTarget("/api%2Fview").path == "/api/view")
        #expect(try HTTPRequestDecoder.parseTarget("/a%20b?q=%2e%2e").path == "/a b")
        #expect(try HTTPRequestDecoder.parseTarget("/a%20b?q=%2e%2e").query == "q=%2e%2e")
        #expect(try HTTPRequestDecoder.parseTarget("/..a/b..").path == "/..a/b..")
    }

    @Test func serializesResponses() {
        let response = HTTPResponse(contentType: "text/plain", body: Array("hi".utf8))
        let text = String(decoding: response.serialized(keepAlive: true), as: UTF8.self)
        #expect(text == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi")
        let head = String(decoding: response.serialized(keepAlive: false, includeBody: false), as: UTF8.self)
        #expect(head.hasSuffix("Content-Length: 2\r\nConnection: close\r\n\r\n"))
    }

    // MARK: Authentication

    @Test func tokenIsHMACOfAFixedLabel() throws {
        // python3 -c "import hmac,hashlib;k=hashlib.pbkdf2_hmac('sha256',b'the web test key, long enough',b'swift-mesh/2 authkey',100000,32);print(hmac.new(k,b'swift-mesh http token',hashlib.sha256).hexdigest())"
        #expect(
            try MeshWebServer.token(forAuthkey: "the web test key, long enough") == "40a85430768e1f55e0c203b4e210b3f67b96a38947b13676d2a7eb382192cd4c")
        #expect(try MeshWebServer.token(forAuthkey: "the web test key, long enougH") != MeshWebServer.token(forAuthkey: "the web test key, long enough"))
    }

    @Test func acceptsTheTokenAsBearerOrBasicPasswordOnly() {
        let token = Array("abc123".utf8)
        let basic = { (text: String) in "Basic " + Data(text.utf8).base64EncodedString() }
        #expect(WebRouter.authorized("Bearer abc123", token: token))
        #expect(WebRouter.authorized("bearer   abc123", token: token))
        #expect(WebRouter.authorized(basic("prometheus:abc123"), token: token))
        #expect(WebRouter.authorized(basic(":abc123"), token: token))
        #expect(!WebRouter.authorized(nil, token: token))
        #expect(!WebRouter.authorized("Bearer abc124", token: token))
        #expect(!WebRouter.authorized("Bearer abc12", token: token))
        #expect(!WebRouter.authorized("Bearer", token: token))
        #expect(!WebRouter.authorized("Token abc123", token: token))
        #expect(!WebRouter.authorized(basic("abc123"), token: token), "no colon: no password")
        #expect(!WebRouter.authorized(basic("abc123:x"), token: token))
        #expect(!WebRouter.authorized("Basic !!!notbase64", token: token))
    }

    @Test func aLoopbackServerAnswersToLocalNamesOnly() {
        for host in ["localhost", "localhost:6375", "127.0.0.1", "127.0.0.1:6375", "[::1]:6375", "[::1]", "10.0.0.2:80", "LOCALHOST"] {
            #expect(WebRouter.isLocalHost(host), "\(host)")
        }
        for host in ["evil.example", "evil.example:6375", "localhost.evil.example", "127.0.0.1.nip.io:6375", "[evil]", ""] {
            #expect(!WebRouter.isLocalHost(host), "\(host)")
        }
    }

    // MARK: Metrics

    @Test func escapesLabelValuesAndHelp() throws {
        var out = MetricsExposition()
        out.family(
            "mesh_test_total", .counter, help: "back\\slash and\nnewline",
            samples: [([("node", "a\"b\\c\nd"), ("id", "1")], 3), ([("node", "plain"), ("id", "2")], 0.25)])
        #expect(out.text.contains(#"# HELP mesh_test_total back\\slash and\nnewline"#))
        #expect(out.text.contains(#"mesh_test_total{node="a\"b\\c\nd",id="1"} 3"#))
        let parsed = try PrometheusText.parse(out.text)
        #expect(parsed.value("mesh_test_total", ["node": "a\"b\\c\nd", "id": "1"]) == 3)
        #expect(parsed.value("mesh_test_total", ["node": "plain", "id": "2"]) == 0.25)
        #expect(parsed.types["mesh_test_total"] == "counter")
    }

    @Test func formatsNumbersAsPrometheusReadsThem() {
        #expect(MetricsExposition.format(0) == "0")
        #expect(MetricsExposition.format(12) == "12")
        #expect(MetricsExposition.format(1.5) == "1.5")
        #expect(MetricsExposition.format(.infinity) == "+Inf")
        #expect(MetricsExposition.format(.nan) == "NaN")
        #expect(Double(MetricsExposition.format(1e-7)) == 1e-7)
    }

    @Test func strictParserRejectsWhatPrometheusRejects() {
        let bad = [
            "m 1",  // no trailing newline
            "# TYPE m counter\n# TYPE m counter\nm 1\n",  // TYPE twice
            "m 1\n# TYPE m counter\n",  // TYPE after samples
            "m{a=\"1\"} 1\nm{a=\"1\"} 2\n",  // the same series twice
            "m{a=\"x\\q\"} 1\n",  // unknown escape
            "m{a=\"1\",a=\"2\"} 1\n",  // repeated label
            "1m 1\n",  // bad name
            "m{a=1} 1\n",  // unquoted label value
            "m one\n",  // not a number
            "# TYPE m counter\nm -1\n",  // negative counter
            "m 1\nn 1\nm 2\n",  // a family split in two
        ]
        for text in bad {
            #expect(throws: PrometheusText.ParseError.self, "\(text.debugDescription)") { try PrometheusText.parse(text) }
        }
    }

    // MARK: Journal and rates

    @Test func journalKeepsTheLastEventsAndCountsRefusals() {
        var journal = CoordinatorJournal(capacity: 3)
        let peer = SocketAddress.ipv4(host: "127.0.0.1", port: 9)
        let node = NodeRecord(id: "0123456789abcdef", name: "n", host: "127.0.0.1", port: 1)
        journal.joined(node, peer: peer)
        journal.refused(peer: peer, .authentication, reason: "wrong key")
        journal.refused(peer: peer, RefusalReason(.timedOut(seconds: 5)), reason: "slow")
        journal.left(node, peer: peer, reason: "no heartbeat for 3.0 s", evicted: true)
        journal.refused(peer: peer, .authentication, reason: String(repeating: "x", count: 500))
        #expect(journal.events.map(\.sequence) == [3, 4, 5])
        #expect(journal.events.map(\.kind) == [.refused, .evicted, .refused])
        #expect(journal.events.last?.reason?.count == 200)
        #expect(journal.refused == [.authentication: 2, .handshakeTimeout: 1])
    }

    @Test func ratesComeFromHeartbeatTimesNotPollTimes() {
        var tracker = RateTracker()
        let record = NodeRecord(id: "a", name: "n", host: "127.0.0.1", port: 1)
        var stats = MeshStatistics()
        let start = ContinuousClock.now
        tracker.update([NodeStatus(node: record, stats: stats, lastHeard: 0)], now: start)
        #expect(tracker.rates("a") == NodeRates())
        // One heartbeat gives no rate: the page shows "–" until the second.
        #expect(!tracker.knowsRates("a"))
        stats.messagesSent = 100
        stats.bytesSent = 6400
        stats.topics = ["t": TopicStatistics(messagesReceived: 50, bytesReceived: 500)]
        // Heard 0.5 s before a poll 1.5 s in: the heartbeat came 1 s after the first.
        tracker.update([NodeStatus(node: record, stats: stats, lastHeard: 0.5)], now: start + .milliseconds(1500))
        #expect(tracker.knowsRates("a"))
        #expect(abs(tracker.rates("a").messagesSent - 100) < 0.01)
        #expect(abs(tracker.rates("a").bytesSent - 6400) < 0.1)
        #expect(abs(tracker.topicRates("a", topic: "t").messages - 50) < 0.01)
        // Polled again before the next heartbeat: the same heartbeat, the same rate.
        tracker.update([NodeStatus(node: record, stats: stats, lastHeard: 0.8)], now: start + .milliseconds(1800))
        #expect(abs(tracker.rates("a").messagesSent - 100) < 0.01)
        // A heartbeat that brought nothing new: rate 0.
        tracker.update([NodeStatus(node: record, stats: stats, lastHeard: 0)], now: start + .milliseconds(2000))
        #expect(tracker.rates("a").messagesSent == 0)
        // A node gone is forgotten.
        tracker.update([], now: start + .milliseconds(3000))
        #expect(tracker.rates("a") == NodeRates())
    }

    @Test func aCountThatGoesBackMakesNoPhantomRate() {
        // Issue #22: 92 -> 0 -> 92 once showed `102 msg/s` for a node that received nothing.
        var tracker = RateTracker()
        let record = NodeRecord(id: "a", name: "n", host: "127.0.0.1", port: 1)
        func status(_ received: Int) -> [NodeStatus] {
            var stats = MeshStatistics()
            stats.messagesReceived = received
            stats.topics = ["jobs": TopicStatistics(messagesReceived: received)]
            return [NodeStatus(node: record, stats: stats, lastHeard: 0)]
        }
        let start = ContinuousClock.now
        tracker.update(status(92), now: start)
        tracker.update(status(0), now: start + .milliseconds(900))
        #expect(tracker.rates("a").messagesReceived == 0)
        tracker.update(status(92), now: start + .milliseconds(1800))
        #expect(tracker.rates("a").messagesReceived == 0)
        #expect(tracker.topicRates("a", topic: "jobs").messages == 0)
        tracker.update(status(100), now: start + .milliseconds(2800))
        #expect(abs(tracker.rates("a").messagesReceived - 8) < 0.01)
    }

    @Test func perTopicCountsStopGrowingAtTheCap() {
        var stats = MeshStatistics()
        var counts: [String: TopicStatistics] = [:]
        for index in 0..<(TopicStatistics.maximumTopics + 10) { counts["t\(index)"] = TopicStatistics(messagesReceived: 1) }
        stats.addTopics(counts)
        #expect(stats.topics?.count == TopicStatistics.maximumTopics)
        let known = stats.topics!.keys.first!
        stats.addTopics([known: TopicStatistics(messagesReceived: 2, bytesReceived: 3)])
        #expect(stats.topics?[known] == TopicStatistics(messagesReceived: 3, bytesReceived: 3))
    }
}
