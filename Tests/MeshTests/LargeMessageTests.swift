import Foundation
import MeshCrypto
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// Large messages through a real connection pair on 127.0.0.1, with and without session keys:
/// their payloads are retained by the queue (not copied), written with gathering writes or sealed
/// straight from the pieces, and must arrive byte for byte, in order, whatever the kernel takes
/// at a time.
@Suite("Large messages without the copy", .serialized)
struct LargeMessageTests {
    /// One connection pair: `sender` dialled `receiver`'s listener.
    final class Pair: ConnectionDelegate {
        let frames = Collector<[UInt8]>()
        private let state = Mutex<(accepted: Connection?, sender: Connection?, listener: Listener?, unsent: Connection.Unsent?)>(
            (nil, nil, nil, nil))
        private let pauseOnOpen: Bool

        var sender: Connection { state.withLock { $0.sender! } }
        var accepted: Connection? { state.withLock { $0.accepted } }
        /// What the sender's close reported unsent, once it closed.
        var senderUnsent: Connection.Unsent? { state.withLock { $0.unsent } }

        private init(pauseOnOpen: Bool) { self.pauseOnOpen = pauseOnOpen }

        static let key = SymmetricKey(data: [UInt8](repeating: 0x5A, count: 32))

        /// Opens a pair; with `keyed`, every frame travels in encrypted records. With
        /// `pauseOnOpen`, the receiver reads nothing until ``resume()``.
        static func open(keyed: Bool, pauseOnOpen: Bool = false) async throws -> Pair {
            let pair = Pair(pauseOnOpen: pauseOnOpen)
            let access: Handshake.Access = keyed ? .key(key) : .open
            let target = NodeIdentity()
            let acceptOptions = Connection.Options(
                handshake: .accept(served: [.data: access], identity: target, staticKey: nil),
                maximumFrameLength: 8 << 20, maximumPendingBytes: 64 << 20)
            let listener = try Listener(binding: .ipv4(host: "127.0.0.1", port: 0), loop: .shared) { socket, peer in
                let connection = Connection.accept(socket, from: peer, options: acceptOptions, delegate: pair, loop: .shared)
                pair.state.withLock { $0.accepted = connection }
            }
            let connectOptions = Connection.Options(
                handshake: .connect(
                    purpose: .data, key: keyed ? key : nil, identity: NodeIdentity(), expectedPeerID: target.idBytes,
                    expectedPeerKey: target.publicKey),
                maximumFrameLength: 8 << 20, maximumPendingBytes: 64 << 20)
            let sender = try Connection.connect(
                to: .ipv4(host: "127.0.0.1", port: listener.address.port), options: connectOptions, delegate: pair,
                loop: .shared)
            pair.state.withLock {
                $0.sender = sender
                $0.listener = listener
            }
            try await eventually("the pair to open", seconds: 20) { sender.isOpen && pair.accepted?.isOpen == true }
            return pair
        }

        func resume() { accepted?.setReadingPaused(false) }

        func close() {
            let (accepted, sender, listener) = state.withLock { ($0.accepted, $0.sender, $0.listener) }
            sender?.close()
            accepted?.close()
            listener?.close()
        }

        func connectionDidOpen(_ connection: Connection) {
            if pauseOnOpen, connection !== state.withLock({ $0.sender }) { connection.setReadingPaused(true) }
        }

        func connection(_ connection: Connection, didReceive decoder: inout FrameDecoder) throws {
            while let header = try decoder.next() {
                var frame: [UInt8] = []
                Frame.appendHeader(kind: header.kind, bodyLength: header.body.count, to: &frame)
                decoder.withBody(header) { frame.append(contentsOf: $0) }
                frames.append(frame)
            }
        }

        func connectionDidClose(_ connection: Connection, error: ConnectionError?, unsent: Connection.Unsent) {
            state.withLock { state in
                if connection === state.sender { state.unsent = unsent }
            }
        }
    }

    /// A payload of `count` bytes that differs from message to message.
    static func payload(_ count: Int, seed: Int) -> Data {
        var random = SplitMix64(seed: UInt64(seed))
        var bytes = [UInt8](repeating: 0, count: count)
        var index = 0
        while index < count {
            let word = random.next()
            for shift in stride(from: 0, to: 64, by: 8) where index < count {
                bytes[index] = UInt8(truncatingIfNeeded: word >> UInt64(shift))
                index += 1
            }
        }
        return Data(bytes)
    }

    /// Queues a message on `connection` and returns the frame the peer must receive.
    static func send(_ payload: Data, topic: String, on connection: Connection) -> [UInt8] {
        var topic = topic
        return topic.withUTF8 { topicUTF8 in
            #expect(connection.sendMessage(topic: UnsafeRawBufferPointer(topicUTF8), encoding: .raw, payload: payload) == .queued)
            return payload.withUnsafeBytes { MessageFrame.encode(topic: String(decoding: topicUTF8, as: UTF8.self), encoding: .raw, payload: $0) }
        }
    }

    /// Messages of 1 MiB and 5 MiB and a burst of small and large ones mixed.
    static func mixedSizes() -> [Int] {
        var random = SplitMix64(seed: 21)
        var sizes = [1 << 20, 5 << 20]
        for index in 0..<40 {
            sizes.append(
                index % 3 == 0
                    ? Int.random(in: FramePieces.retainedPayloadMinimum...(3 << 19), using: &random)
                    : Int.random(in: 0..<4096, using: &random))
        }
        sizes += [FramePieces.retainedPayloadMinimum - 1, FramePieces.retainedPayloadMinimum, 1]
        return sizes
    }

    @Test("1 MiB, 5 MiB and a burst of small and large messages arrive intact and in order", arguments: [false, true])
    func largeAndMixed(keyed: Bool) async throws {
        let pair = try await Pair.open(keyed: keyed)
        defer { pair.close() }
        var expected: [[UInt8]] = []
        for (index, size) in Self.mixedSizes().enumerated() {
            expected.append(Self.send(Self.payload(size, seed: index), topic: "large/\(index)", on: pair.sender))
        }
        let total = expected.count
        try await eventually("every message to arrive", seconds: 60) { pair.frames.values.count >= total }
        let received = pair.frames.values
        #expect(received.count == expected.count)
        for (index, frame) in zip(received, expected).enumerated() where frame.0 != frame.1 {
            Issue.record("message \(index) of \(expected[index].count) bytes arrived changed (\(frame.0.count) bytes)")
        }
        try await eventually("the sender's queue to empty", seconds: 20) { pair.sender.unsentByteCount == 0 }
    }

    @Test("a receiver that stops reading fills the kernel's buffers mid-message; everything still arrives", arguments: [false, true])
    func kernelBufferFills(keyed: Bool) async throws {
        let pair = try await Pair.open(keyed: keyed, pauseOnOpen: true)
        defer { pair.close() }
        var expected: [[UInt8]] = []
        for index in 0..<24 {
            let size = index % 2 == 0 ? (2 << 20) + index * 977 : 100 + index
            expected.append(Self.send(Self.payload(size, seed: 100 + index), topic: "fill", on: pair.sender))
        }
        let sender = pair.sender
        try await eventually("the sender to wait for a writable socket", seconds: 30) { await sender.isWaitingForWritable() }
        #expect(sender.unsentByteCount > 0, "the kernel took part, not all")
        #expect(pair.frames.values.count == 0)
        pair.resume()
        let total = expected.count
        try await eventually("every message to arrive", seconds: 60) { pair.frames.values.count >= total }
        #expect(pair.frames.values == expected)
        try await eventually("the sender's queue to empty", seconds: 20) { sender.unsentByteCount == 0 }
    }

    @Test("closing with large messages queued and half written counts exactly those the peer did not get")
    func closeCountsUnsent() async throws {
        let pair = try await Pair.open(keyed: false, pauseOnOpen: true)
        defer { pair.close() }
        var sizes: [Int] = []
        for index in 0..<16 {
            let frame = Self.send(Self.payload((1 << 20) + index * 4099, seed: 300 + index), topic: "close", on: pair.sender)
            sizes.append(frame.count)
        }
        let sender = pair.sender
        try await eventually("the sender to wait for a writable socket", seconds: 30) { await sender.isWaitingForWritable() }
        let unsentBytes = sender.unsentByteCount
        let written = sizes.reduce(0, +) - unsentBytes
        // Frames wholly with the kernel are sent; the one it holds part of and those after are not.
        var end = 0
        let whole = sizes.prefix { size in
            end += size
            return end <= written
        }.count
        sender.close()
        try await eventually("the sender to report its close", seconds: 20) { pair.senderUnsent != nil }
        #expect(pair.senderUnsent == Connection.Unsent(frames: sizes.count - whole, bytes: unsentBytes))
        #expect(sizes.count - whole > 1, "at least one frame partly written and one still queued")
    }

    /// Counts the payloads whose memory was given back.
    final class Releases: Sendable {
        let count = Mutex(0)
    }

    /// A payload of `size` bytes in memory of its own, which counts in `releases` when the last
    /// `Data` holding it goes.
    static func trackedPayload(_ size: Int, fill: UInt8, releases: Releases) -> Data {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        memory.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        return Data(
            bytesNoCopy: memory, count: size,
            deallocator: .custom { pointer, _ in
                pointer.deallocate()
                releases.count.withLock { $0 += 1 }
            })
    }

    @Test("a retained payload is let go once written, and when the connection closes with it still queued", arguments: [false, true])
    func payloadsAreReleased(keyed: Bool) async throws {
        for closeFirst in [false, true] {
            let pair = try await Pair.open(keyed: keyed, pauseOnOpen: true)
            defer { pair.close() }
            let releases = Releases()
            let count = 12
            for index in 0..<count {
                _ = Self.send(Self.trackedPayload(2 << 20, fill: UInt8(index), releases: releases), topic: "tracked", on: pair.sender)
            }
            let sender = pair.sender
            try await eventually("the sender to wait for a writable socket", seconds: 30) { await sender.isWaitingForWritable() }
            #expect(releases.count.withLock { $0 } < count, "what the kernel has not taken is still held")
            if closeFirst {
                sender.close()
            } else {
                pair.resume()
                try await eventually("every message to arrive", seconds: 60) { pair.frames.values.count >= count }
            }
            try await eventually("every payload to be let go (\(closeFirst ? "closed" : "written"))", seconds: 20) {
                releases.count.withLock { $0 } == count
            }
        }
    }
}
