import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// ``EventQueue``, ``MessageChannel`` and ``SocketAddress`` parsing: the small pieces the node and
/// connections are built from. Every wait has a deadline.
@Suite struct ConcurrencyPrimitivesTests {
    /// A flag set from another task.
    private final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    // MARK: EventQueue

    @Test func eventQueueDeliversEveryPushInPerProducerOrder() async throws {
        let queue = EventQueue<(producer: Int, index: Int)>()
        let producers = 4
        let perProducer = 5_000
        for producer in 0..<producers {
            // Real threads, like the event loop's handlers.
            Thread.detachNewThread {
                for index in 0..<perProducer { queue.push((producer, index)) }
            }
        }
        let received = try await withDeadline(10) {
            var received: [(producer: Int, index: Int)] = []
            var batches = 0
            while received.count < producers * perProducer {
                let batch = await queue.next()
                #expect(!batch.isEmpty, "next() returned an empty batch before finish()")
                received += batch
                batches += 1
            }
            return (received.map { [$0.producer, $0.index] }, batches)
        }
        #expect(received.0.count == producers * perProducer)
        for producer in 0..<producers {
            let indices = received.0.filter { $0[0] == producer }.map { $0[1] }
            #expect(indices == Array(0..<perProducer), "producer \(producer) out of order or incomplete")
        }
        #expect(received.1 <= producers * perProducer)
    }

    @Test func eventQueueDeliversPushesFromTasks() async throws {
        let queue = EventQueue<Int>()
        await withTaskGroup(of: Void.self) { group in
            for producer in 0..<8 {
                group.addTask { for index in 0..<100 { queue.push(producer * 1_000 + index) } }
            }
        }
        let all = try await withDeadline(5) {
            var all: [Int] = []
            while all.count < 800 { all += await queue.next() }
            return all
        }
        #expect(all.count == 800)
        for producer in 0..<8 {
            #expect(all.filter { $0 / 1_000 == producer } == (0..<100).map { producer * 1_000 + $0 })
        }
    }

    @Test func eventQueueDrainsWhatGatheredInOneBatch() async throws {
        let queue = EventQueue<Int>()
        for value in 1...5 { queue.push(value) }
        #expect(try await withDeadline(5) { await queue.next() } == [1, 2, 3, 4, 5])
        queue.push(6)
        #expect(try await withDeadline(5) { await queue.next() } == [6])
    }

    @Test func eventQueueFinishWakesAWaitingNext() async throws {
        let queue = EventQueue<Int>()
        let waiting = Task { await queue.next() }
        try await eventually("next() to wait") { queue.hasWaiter }
        queue.finish()
        #expect(try await withDeadline(5) { await waiting.value } == [])
        queue.push(1)
        #expect(try await withDeadline(5) { await queue.next() } == [], "pushes after finish() are ignored")
    }

    @Test func eventQueueFinishLetsBufferedItemsOutFirst() async throws {
        let queue = EventQueue<Int>()
        queue.push(1)
        queue.finish()
        #expect(try await withDeadline(5) { await queue.next() } == [1])
        #expect(try await withDeadline(5) { await queue.next() } == [])
    }

    @Test func eventQueueCancelledNextReturnsEmpty() async throws {
        let queue = EventQueue<Int>()
        let waiting = Task { await queue.next() }
        try await eventually("next() to wait") { queue.hasWaiter }
        waiting.cancel()
        #expect(try await withDeadline(5) { await waiting.value } == [])
    }

    // MARK: MessageChannel

    @Test func channelDeliversInOrder() async throws {
        let channel = MessageChannel<Int>(capacity: 4)
        let consumer = Task {
            var values: [Int] = []
            while let value = await channel.next() { values.append(value) }
            return values
        }
        try await withDeadline(5) {
            for value in 0..<100 { #expect(await channel.send(value)) }
        }
        channel.finish()
        #expect(try await withDeadline(5) { await consumer.value } == Array(0..<100))
    }

    @Test func channelProducerWaitsWhileFull() async throws {
        let channel = MessageChannel<Int>(capacity: 1)
        #expect(channel.capacity == 1)
        #expect(try await withDeadline(5) { await channel.send(1) })

        let delivered = Flag()
        let second = Task {
            let accepted = await channel.send(2)
            delivered.set()
            return accepted
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!delivered.isSet, "a send to a full channel completed without a next()")

        #expect(try await withDeadline(5) { await channel.next() } == 1)
        #expect(try await withDeadline(5) { await second.value })
        #expect(delivered.isSet)
        #expect(try await withDeadline(5) { await channel.next() } == 2)
    }

    @Test func channelCapacityBelowOneMeansOne() {
        #expect(MessageChannel<Int>(capacity: 0).capacity == 1)
        #expect(MessageChannel<Int>(capacity: -3).capacity == 1)
    }

    @Test func channelSendWakesAWaitingConsumer() async throws {
        let channel = MessageChannel<String>(capacity: 1)
        let consumer = Task { await channel.next() }
        try await eventually("the consumer to wait") { channel.hasWaitingConsumer }
        #expect(try await withDeadline(5) { await channel.send("hi") })
        #expect(try await withDeadline(5) { await consumer.value } == "hi")
    }

    @Test func channelFinishDrainsThenEnds() async throws {
        let channel = MessageChannel<Int>(capacity: 3)
        for value in 1...3 { #expect(try await withDeadline(5) { await channel.send(value) }) }
        channel.finish()
        #expect(try await withDeadline(5) { await channel.send(4) } == false, "send after finish() is dropped")
        let drained = try await withDeadline(5) {
            var values: [Int] = []
            while let value = await channel.next() { values.append(value) }
            return values
        }
        #expect(drained == [1, 2, 3])
        #expect(try await withDeadline(5) { await channel.next() } == nil)
    }

    @Test func channelFinishReleasesWaitingProducersWithFalse() async throws {
        let channel = MessageChannel<Int>(capacity: 1)
        #expect(try await withDeadline(5) { await channel.send(0) })
        let producers = (1...3).map { value in Task { await channel.send(value) } }
        try await eventually("three producers to wait") { channel.waitingProducerCount == 3 }
        channel.finish()
        for producer in producers {
            #expect(try await withDeadline(5) { await producer.value } == false)
        }
        #expect(try await withDeadline(5) { await channel.next() } == 0)
        #expect(try await withDeadline(5) { await channel.next() } == nil)
    }

    @Test func channelFinishWakesAWaitingConsumerWithNil() async throws {
        let channel = MessageChannel<Int>(capacity: 1)
        let consumer = Task { await channel.next() }
        try await eventually("the consumer to wait") { channel.hasWaitingConsumer }
        channel.finish()
        #expect(try await withDeadline(5) { await consumer.value } == nil)
    }

    @Test func channelManyProducersOneConsumer() async throws {
        let channel = MessageChannel<Int>(capacity: 2)
        let producers = Task {
            await withTaskGroup(of: Void.self) { group in
                for producer in 0..<4 {
                    group.addTask { for index in 0..<250 { await channel.send(producer * 1_000 + index) } }
                }
            }
            channel.finish()
        }
        let received = try await withDeadline(10) {
            var received: [Int] = []
            while let value = await channel.next() { received.append(value) }
            return received
        }
        try await withDeadline(5) { await producers.value }
        #expect(received.count == 1_000)
        for producer in 0..<4 {
            #expect(received.filter { $0 / 1_000 == producer } == (0..<250).map { producer * 1_000 + $0 })
        }
    }

    // MARK: SocketAddress

    @Test func parsesNumericAddresses() {
        #expect(SocketAddress.parse("127.0.0.1:80", defaultPort: 1) == .ipv4(host: "127.0.0.1", port: 80))
        #expect(SocketAddress.parse("10.1.2.3", defaultPort: 7000) == .ipv4(host: "10.1.2.3", port: 7000))
        #expect(SocketAddress.parse("[::1]:9", defaultPort: 1) == .ipv6(host: "::1", port: 9))
        #expect(SocketAddress.parse("[::1]", defaultPort: 5) == .ipv6(host: "::1", port: 5))
        #expect(SocketAddress.parse("::1", defaultPort: 7000) == .ipv6(host: "::1", port: 7000))
        #expect(SocketAddress.parse("fe80::1:2", defaultPort: 3) == .ipv6(host: "fe80::1:2", port: 3))
        #expect(SocketAddress.parse("unix:/tmp/x", defaultPort: 7000) == .unix(path: "/tmp/x"))
    }

    @Test(arguments: [
        "host:notaport", "localhost:5", "example.com", "127.0.0.1:70000", "127.0.0.1:", "[::1:9", "[::1]x9", "",
        "1.2.3:4",
    ])
    func rejectsNonNumericOrMalformedAddresses(text: String) {
        #expect(SocketAddress.parse(text, defaultPort: 1) == nil)
    }

    @Test func descriptionParsesBack() {
        let addresses: [SocketAddress] = [
            .ipv4(host: "127.0.0.1", port: 80), .ipv6(host: "::1", port: 9), .unix(path: "/tmp/mesh.sock"),
        ]
        for address in addresses {
            #expect(SocketAddress.parse(address.description, defaultPort: 1) == address)
        }
        #expect(SocketAddress.ipv6(host: "::1", port: 9).description == "[::1]:9")
    }

    @Test func hostPortAndLoopback() {
        #expect(SocketAddress.ipv4(host: "127.0.0.5", port: 1).isLoopback)
        #expect(!SocketAddress.ipv4(host: "10.0.0.1", port: 1).isLoopback)
        #expect(SocketAddress.ipv6(host: "::1", port: 1).isLoopback)
        #expect(SocketAddress.unix(path: "/x").isLoopback)
        #expect(SocketAddress.unix(path: "/x").port == 0)
        #expect(SocketAddress.unix(path: "/x").host == "/x")
    }

    @Test func resolvesLocalhostToIPv4Loopback() async throws {
        let address = try await withDeadline(10) { try await SocketAddress.resolve("localhost:5", defaultPort: 1) }
        guard case .ipv4(let host, let port) = address else {
            Issue.record("expected an IPv4 address, got \(address)")
            return
        }
        #expect(host.hasPrefix("127."))
        #expect(port == 5)
        #expect(address.isLoopback)
    }

    @Test func resolveReturnsLiteralsAsIs() async throws {
        let address = try await withDeadline(5) { try await SocketAddress.resolve("[::1]:9", defaultPort: 1) }
        #expect(address == .ipv6(host: "::1", port: 9))
    }

    @Test func resolveRejectsMalformedText() async throws {
        let outcome = try await withDeadline(10) { () -> MeshError? in
            do {
                _ = try await SocketAddress.resolve("host:notaport", defaultPort: 1)
                return nil
            } catch let error as MeshError {
                return error
            }
        }
        guard case .invalidAddress(let text, _) = outcome else {
            Issue.record("expected .invalidAddress, got \(String(describing: outcome))")
            return
        }
        #expect(text == "host:notaport")
    }
}
