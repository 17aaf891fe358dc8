import Foundation
import MeshTesting
import Testing

@testable import Mesh
@testable import MeshTooling

/// Splitting byte streams into frames, and the bodies of message and control frames, with no sockets.
@Suite struct FrameDecoderTests {
    private let sample: [Frame] = [
        Frame(kind: FrameKind.control.rawValue, body: Array(#"{"type":"heartbeat"}"#.utf8)),
        Frame(kind: FrameKind.message.rawValue, body: []),
        Frame(kind: FrameKind.peerHello.rawValue, body: [0, 1, 2, 255]),
        Frame(kind: 0x7F, body: [UInt8](repeating: 0xAB, count: 5_000)),
        Frame(kind: FrameKind.message.rawValue, body: Array("x".utf8)),
    ]

    /// Decodes every complete frame in the decoder.
    private func drain(_ decoder: inout FrameDecoder) throws(FrameError) -> [Frame] {
        var frames: [Frame] = []
        while let frame = try decoder.decode() { frames.append(frame) }
        return frames
    }

    /// The free bytes the decoder would hand to a reader right now (a view of its storage size).
    private func freeSpace(_ decoder: inout FrameDecoder) -> Int {
        var space = 0
        _ = decoder.readInto(minimumSpace: 0) { buffer -> Int? in
            space = buffer.count
            return 0
        }
        return space
    }

    // MARK: framing

    @Test func encodedHeaderIsBigEndianLengthOfKindPlusBody() {
        let frame = Frame(kind: 0x03, body: [9, 8, 7])
        #expect(frame.encoded == [0, 0, 0, 4, 0x03, 9, 8, 7])
        let big = Frame(kind: 0x01, body: [UInt8](repeating: 0, count: 0x01_0203))
        #expect(Array(big.encoded.prefix(5)) == [0x00, 0x01, 0x02, 0x04, 0x01])
        #expect(big.encoded.count == Frame.headerLength + 0x01_0203)
    }

    @Test func decodesOneFrame() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let frame = Frame(kind: FrameKind.control.rawValue, body: Array("hello".utf8))
        decoder.append(frame.encoded)
        #expect(try decoder.decode() == frame)
        #expect(try decoder.decode() == nil)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func headerOnlyFrameHasEmptyBody() throws {
        var decoder = FrameDecoder(maximumFrameLength: 16)
        decoder.append([0, 0, 0, 1, 0x02])
        #expect(try decoder.decode() == Frame(kind: 0x02, body: []))
    }

    @Test func decodesManyFramesJoinedInOneAppend() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        decoder.append(sample.flatMap(\.encoded))
        #expect(try drain(&decoder) == sample)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func frameSplitAtEveryByteGivesTheSameFrames() throws {
        let stream = sample.flatMap(\.encoded)
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        var frames: [Frame] = []
        for byte in stream {
            decoder.append(CollectionOfOne(byte))
            frames += try drain(&decoder)
        }
        #expect(frames == sample)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func frameSplitAtEachSingleBoundaryGivesTheSameFrames() throws {
        let stream = sample.prefix(3).flatMap(\.encoded)
        for cut in 0...stream.count {
            var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
            decoder.append(stream[..<cut])
            var frames = try drain(&decoder)
            decoder.append(stream[cut...])
            frames += try drain(&decoder)
            #expect(frames == Array(sample.prefix(3)), "cut at byte \(cut)")
        }
    }

    @Test func partialFrameIsHeldUntilTheRestArrives() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let encoded = Frame(kind: 0x03, body: [1, 2, 3, 4]).encoded
        decoder.append(encoded.prefix(6))
        #expect(try decoder.decode() == nil)
        #expect(decoder.bufferedByteCount == 6)
        decoder.append(encoded.dropFirst(6))
        #expect(try decoder.decode() == Frame(kind: 0x03, body: [1, 2, 3, 4]))
    }

    @Test func nextAndWithBodyExposeTheFrameInPlace() throws {
        var decoder = FrameDecoder(maximumFrameLength: 64)
        decoder.append(Frame(kind: 0x02, body: [10, 20, 30]).encoded)
        let header = try #require(try decoder.next())
        #expect(header.kind == 0x02)
        #expect(header.body.count == 3)
        #expect(decoder.withBody(header) { Array($0) } == [10, 20, 30])
    }

    @Test func readIntoCountsOnlyTheBytesWritten() throws {
        var decoder = FrameDecoder(maximumFrameLength: 64)
        let encoded = Frame(kind: 0x01, body: [7, 7]).encoded
        let written = decoder.readInto(minimumSpace: 100) { space -> Int? in
            #expect(space.count >= 100)
            space.copyBytes(from: encoded)
            return encoded.count
        }
        #expect(written == encoded.count)
        #expect(decoder.readInto(minimumSpace: 1) { _ in nil } == nil)
        #expect(decoder.bufferedByteCount == encoded.count)
        #expect(try decoder.decode() == Frame(kind: 0x01, body: [7, 7]))
    }

    // MARK: lending payloads without a copy

    /// Writes `bytes` the way a socket read does: into what the decoder offers, at most that much.
    private func socketRead(_ decoder: inout FrameDecoder, _ bytes: ArraySlice<UInt8>) -> Int {
        decoder.readInto(minimumSpace: 64 * 1024, largeFrames: .makeRoomAndStopAtItsEnd) { space -> Int? in
            let count = min(space.count, bytes.count)
            space.copyBytes(from: bytes.prefix(count))
            return count
        } ?? 0
    }

    @Test func lentPayloadsKeepTheirBytesWhileTheDecoderReadsOn() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        var kept: [(Data, UInt8)] = []
        // Many reads of many frames: the decoder fills, moves on and (once nothing is lent) reuses.
        for round in 0..<200 {
            let value = UInt8(truncatingIfNeeded: round)
            var stream: [UInt8] = []
            for _ in 0..<50 { stream += Frame(kind: 3, body: [UInt8](repeating: value, count: 700)).encoded }
            var rest = stream[...]
            while !rest.isEmpty {
                rest = rest.dropFirst(socketRead(&decoder, rest))
                while let header = try decoder.next() {
                    let payload = decoder.lend(header.body)
                    if round % 20 == 0 { kept.append((payload, value)) }
                }
            }
        }
        #expect(kept.count == 500)
        for (payload, value) in kept {
            #expect(payload.count == 700)
            #expect(payload.allSatisfy { $0 == value })
        }
    }

    @Test func storageIsReusedOnceNothingLentIsAlive() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let frame = Frame(kind: 3, body: [UInt8](repeating: 9, count: 1000)).encoded
        _ = socketRead(&decoder, frame[...])
        let first = decoder.storageIdentity
        do {
            let header = try #require(try decoder.next())
            let payload = decoder.lend(header.body)
            #expect(payload.count == 1000)
        }
        // The slice is gone: the next reads go into the same storage, from its start.
        for _ in 0..<100 {
            _ = socketRead(&decoder, frame[...])
            let header = try #require(try decoder.next())
            #expect(decoder.lend(header.body).count == 1000)
        }
        #expect(decoder.storageIdentity == first)
    }

    @Test func heldSliceMovesTheDecoderToNewStorageWithoutTouchingIt() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let frame = Frame(kind: 3, body: [UInt8](repeating: 1, count: 30_000)).encoded
        _ = socketRead(&decoder, frame[...])
        let first = decoder.storageIdentity
        let header = try #require(try decoder.next())
        let held = decoder.lend(header.body)
        let other = Frame(kind: 3, body: [UInt8](repeating: 2, count: 30_000)).encoded
        for _ in 0..<10 {
            var rest = other[...]
            while !rest.isEmpty { rest = rest.dropFirst(socketRead(&decoder, rest)) }
            #expect(try decoder.decode() != nil)
        }
        #expect(decoder.storageIdentity != first)
        #expect(held.count == 30_000 && held.allSatisfy { $0 == 1 })
    }

    @Test func slicesHeldByAStalledListenerKeepAboutTheirOwnBytesAlive() throws {
        // A sender trickles small messages, one or a few per read, to a listener that keeps every
        // payload (a stream nobody reads): the memory kept is about the bytes kept, not a read
        // buffer per read.
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let before = ReadStorage.liveBytes.load(ordering: .relaxed)
        var held: [Data] = []
        var heldBytes = 0
        var random = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                stream += Frame(kind: 3, body: [UInt8](repeating: 7, count: Int.random(in: 1...200, using: &random))).encoded
            }
            heldBytes += stream.count
            var rest = stream[...]
            while !rest.isEmpty {
                rest = rest.dropFirst(socketRead(&decoder, rest))
                while let header = try decoder.next() { held.append(decoder.lend(header.body)) }
            }
        }
        let kept = ReadStorage.liveBytes.load(ordering: .relaxed) - before
        // Other tests may hold storage meanwhile (they run in parallel): the bound is loose, but a
        // buffer per read would be 20,000 x 64 KiB = 1.3 GB.
        #expect(kept < heldBytes * 2 + 8 * 64 * 1024, "kept \(kept) bytes alive for \(heldBytes) bytes held")
        #expect(held.count >= 20_000)
    }

    @Test func aListenerOneReadBehindMakesTheDecoderTakeTurnsWithTwoStorages() throws {
        // Large frames, each payload let go only after the next frame was read (a listener on
        // another thread, one message behind): two storages in turn, no new memory per frame.
        var decoder = FrameDecoder(maximumFrameLength: 4 << 20)
        let frame = Frame(kind: 3, body: [UInt8](repeating: 3, count: 300_000)).encoded
        var previous: Data?
        for _ in 0..<50 {
            var rest = frame[...]
            while !rest.isEmpty { rest = rest.dropFirst(socketRead(&decoder, rest)) }
            let header = try #require(try decoder.next())
            let payload = decoder.lend(header.body)
            #expect(payload.count == 300_000)
            previous = payload
        }
        #expect(previous != nil)
        #expect(decoder.storagesMade <= 4, "\(decoder.storagesMade) storages made for 50 frames")
    }

    @Test func aListenerGrowingOrWritingItsPayloadTouchesNobodyElsesBytes() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let one = Frame(kind: 3, body: [UInt8](repeating: 1, count: 100)).encoded
        let two = Frame(kind: 3, body: [UInt8](repeating: 2, count: 100)).encoded
        let three = Frame(kind: 3, body: [UInt8](repeating: 3, count: 100)).encoded
        // Read 1: the first frame and half the second; read 2: the rest of it and part of a third.
        _ = socketRead(&decoder, (one + two.prefix(50))[...])
        var first = decoder.lend(try #require(try decoder.next()).body)
        #expect(try decoder.next() == nil)
        _ = socketRead(&decoder, (two.dropFirst(50) + three.prefix(30))[...])
        let second = decoder.lend(try #require(try decoder.next()).body)
        #expect(first.startIndex == 0 && first.count == 100)
        // The first payload's only holder grows it and writes into it: the bytes right after it
        // in the read buffer are the second payload's and the third frame's.
        first.append(contentsOf: [UInt8](repeating: 0xEE, count: 300))
        first[0] = 0xDD
        #expect(first.count == 400 && first[0] == 0xDD && first[99] == 1 && first[100] == 0xEE)
        #expect(second.count == 100 && second.allSatisfy { $0 == 2 })
        _ = socketRead(&decoder, three.dropFirst(30))
        #expect(try decoder.decode() == Frame(kind: 3, body: [UInt8](repeating: 3, count: 100)))
    }

    @Test func pinningAStorageIsCountedOnceUntilItIsFreeAgain() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let frame = Frame(kind: 3, body: [UInt8](repeating: 5, count: 100)).encoded
        _ = socketRead(&decoder, (frame + frame)[...])
        let a = decoder.lend(try #require(try decoder.next()).body)
        let b = decoder.lend(try #require(try decoder.next()).body)
        let pinned = decoder.takeNewlyPinned()
        #expect(pinned >= 64 * 1024, "the storage a payload holds alive is counted")
        #expect(decoder.takeNewlyPinned() == 0)
        #expect(a.count == 100 && b.count == 100)
        _ = socketRead(&decoder, frame[...])
        let c = decoder.lend(try #require(try decoder.next()).body)
        #expect(decoder.takeNewlyPinned() == 0, "still pinned by the first two: not counted again")
        #expect(c.count == 100)
    }

    @Test func aLargeFrameIsReadToItsEndAndNoFurther() throws {
        var decoder = FrameDecoder(maximumFrameLength: 4 << 20)
        let big = Frame(kind: 3, body: (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }).encoded
        let next = Frame(kind: 3, body: [1, 2, 3]).encoded
        var rest = (big + next)[...]
        var offered: [Int] = []
        while rest.count > next.count {
            let before = rest.count
            rest = rest.dropFirst(socketRead(&decoder, rest))
            offered.append(before - rest.count)
        }
        // The reads stopped exactly at the large frame's end: the next frame is still unread.
        #expect(rest.count == next.count)
        let header = try #require(try decoder.next())
        let payload = decoder.lend(header.body)
        #expect(payload.elementsEqual(big.dropFirst(Frame.headerLength)))
        _ = socketRead(&decoder, rest)
        #expect(try decoder.decode() == Frame(kind: 3, body: [1, 2, 3]))
        #expect(payload.elementsEqual(big.dropFirst(Frame.headerLength)))
    }

    @Test func aLargeFramesHeaderMakesRoomForAtMostAFewMegabytesAheadOfItsBytes() throws {
        var decoder = FrameDecoder(maximumFrameLength: 512 << 20)
        var header: [UInt8] = []
        Frame.appendHeader(kind: FrameKind.message.rawValue, bodyLength: (400 << 20) - 1, to: &header)
        _ = socketRead(&decoder, header[...])
        var space = 0
        _ = decoder.readInto(minimumSpace: 64 * 1024, largeFrames: .makeRoomAndStopAtItsEnd) { buffer -> Int? in
            space = buffer.count
            return 0
        }
        #expect(space >= 64 * 1024)
        #expect(space <= FrameDecoder.largestPresize * 2)
    }

    // MARK: bad headers

    @Test func tooLargeHeaderThrowsBeforeTheBodyArrives() {
        let limit = 1024
        var decoder = FrameDecoder(maximumFrameLength: limit)
        let declared = 200 * 1024 * 1024
        var header: [UInt8] = []
        Frame.appendHeader(kind: FrameKind.message.rawValue, bodyLength: declared - 1, to: &header)
        decoder.append(header)
        #expect(throws: FrameError.tooLarge(size: declared, limit: limit)) { try decoder.decode() }
        #expect(decoder.bufferedByteCount == Frame.headerLength)
        // Nothing was reserved for the announced 200 MB.
        #expect(freeSpace(&decoder) < 64 * 1024)
    }

    @Test func storageGrowsWithArrivingBytesNotWithTheDeclaredLength() throws {
        var decoder = FrameDecoder(maximumFrameLength: 8 << 20)
        let frame = Frame(kind: 3, body: [UInt8](repeating: 5, count: 4 << 20))
        let encoded = frame.encoded
        decoder.append(encoded.prefix(Frame.headerLength))
        #expect(try decoder.decode() == nil)
        // A peer's header alone must not make this side hold megabytes.
        #expect(freeSpace(&decoder) < 64 * 1024)
        for chunk in stride(from: Frame.headerLength, to: encoded.count, by: 64 * 1024) {
            decoder.append(encoded[chunk..<min(chunk + 64 * 1024, encoded.count)])
        }
        #expect(try decoder.decode() == frame)
    }

    @Test func shrinkIfIdleGivesBackALargeBuffer() throws {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        let big = Frame(kind: 3, body: [UInt8](repeating: 5, count: 200_000))
        decoder.append(big.encoded)
        // Not idle while bytes are buffered: nothing is dropped.
        decoder.shrinkIfIdle(keeping: 4096)
        #expect(decoder.bufferedByteCount == big.encoded.count)
        #expect(try decoder.decode() == big)
        #expect(freeSpace(&decoder) >= 200_000)
        decoder.shrinkIfIdle(keeping: 4096)
        #expect(freeSpace(&decoder) == 4096)
        let small = Frame(kind: 1, body: [1, 2, 3])
        decoder.append(small.encoded)
        #expect(try decoder.decode() == small)
    }

    @Test func lengthOneOverTheLimitIsRejectedAndAtTheLimitAccepted() throws {
        var decoder = FrameDecoder(maximumFrameLength: 8)
        decoder.append(Frame(kind: 1, body: [UInt8](repeating: 1, count: 7)).encoded)
        #expect(try decoder.decode()?.body.count == 7)
        decoder.append(Frame(kind: 1, body: [UInt8](repeating: 1, count: 8)).encoded.prefix(5))
        #expect(throws: FrameError.tooLarge(size: 9, limit: 8)) { try decoder.decode() }
    }

    @Test func zeroLengthThrowsEmpty() {
        var decoder = FrameDecoder(maximumFrameLength: 1024)
        decoder.append([0, 0, 0, 0, 0x01])
        #expect(throws: FrameError.empty) { try decoder.decode() }
    }

    @Test func randomGarbageYieldsFramesOrThrowsButNeverHangs() {
        var random = SplitMix64(seed: 0x5EED)
        var frameCount = 0
        var errorCount = 0
        for _ in 0..<500 {
            var decoder = FrameDecoder(maximumFrameLength: 4096)
            let length = Int.random(in: 0..<300, using: &random)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            // Small lengths in some headers, so some garbage parses into frames.
            if bytes.count >= 4, Bool.random(using: &random) { bytes[0...2] = [0, 0, 0] }
            var offset = 0
            decoding: while offset < bytes.count {
                let chunk = Int.random(in: 1...32, using: &random)
                decoder.append(bytes[offset..<min(bytes.count, offset + chunk)])
                offset += chunk
                do {
                    // Every call consumes a frame or stops, so this ends.
                    while let frame = try decoder.decode() {
                        #expect(frame.body.count + 1 <= 4096)
                        frameCount += 1
                    }
                } catch .empty {
                    errorCount += 1
                    break decoding
                } catch .tooLarge(let size, let limit) {
                    #expect(size > limit)
                    errorCount += 1
                    break decoding
                } catch {
                    Issue.record("framing alone should only throw .empty or .tooLarge, got \(error)")
                    break decoding
                }
            }
            #expect(decoder.bufferedByteCount <= bytes.count)
        }
        #expect(frameCount > 0)
        #expect(errorCount > 0)
    }

    // MARK: message frames

    private func parse(_ body: [UInt8]) throws -> (topic: String, encoding: PayloadEncoding, payload: [UInt8]) {
        try body.withUnsafeBytes { raw in
            let parsed = try MessageFrame.parse(raw)
            return (parsed.topic, parsed.encoding, Array(raw[parsed.payload]))
        }
    }

    @Test(arguments: [
        ("orders", PayloadEncoding.raw, [UInt8]()),
        ("t", PayloadEncoding.codec, Array(#"{"n":1}"#.utf8)),
        ("héllo/wörld ✓", PayloadEncoding.raw, [UInt8](0...255)),
    ])
    func messageFrameRoundTrips(topic: String, encoding: PayloadEncoding, payload: [UInt8]) throws {
        let encoded = payload.withUnsafeBytes { MessageFrame.encode(topic: topic, encoding: encoding, payload: $0) }
        var decoder = FrameDecoder(maximumFrameLength: 1 << 16)
        decoder.append(encoded)
        let frame = try #require(try decoder.decode())
        #expect(frame.kind == FrameKind.message.rawValue)
        #expect(frame.body.count == 2 + topic.utf8.count + 1 + payload.count)
        let parsed = try parse(frame.body)
        #expect(parsed.topic == topic)
        #expect(parsed.encoding == encoding)
        #expect(parsed.payload == payload)
    }

    @Test func messageParseRejectsShortBodies() {
        for body in [[], [0], [0, 1]] as [[UInt8]] {
            #expect(throws: FrameError.self) { try parse(body) }
        }
    }

    @Test func messageParseRejectsZeroTopicLength() {
        #expect(throws: FrameError.self) { try parse([0, 0, 0, 1, 2, 3]) }
    }

    @Test func messageParseRejectsTopicLengthBeyondTheBody() {
        // Declares 5 topic bytes; only 3 follow.
        #expect(throws: FrameError.self) { try parse([0, 5, 0x61, 0x62, 0x63]) }
        // Topic fits exactly but the encoding byte is missing.
        #expect(throws: FrameError.self) { try parse([0, 3, 0x61, 0x62, 0x63]) }
        // The high byte of the length counts too.
        #expect(throws: FrameError.self) { try parse([1, 0, 0x61, 0x00, 0x00]) }
    }

    @Test func messageParseRejectsInvalidUTF8() {
        #expect(throws: FrameError.malformed("message topic is not UTF-8")) { try parse([0, 2, 0xC3, 0x28, 0]) }
        #expect(throws: FrameError.malformed("message topic is not UTF-8")) { try parse([0, 1, 0xFF, 0]) }
    }

    @Test func messageParseRejectsControlCharactersAndOverlongTopics() {
        #expect(throws: FrameError.malformed("message topic contains control characters")) {
            try parse([0, 3, 0x61, 0x0A, 0x62, 0])
        }
        let long = [UInt8](repeating: 0x61, count: 256)
        #expect(throws: FrameError.malformed("message topic of 256 bytes exceeds 255")) {
            try parse([1, 0] + long + [0])
        }
    }

    @Test func messageParseRejectsUnknownEncoding() {
        #expect(throws: FrameError.malformed("unknown payload encoding 2")) { try parse([0, 1, 0x61, 2, 9, 9]) }
        #expect(throws: FrameError.malformed("unknown payload encoding 255")) { try parse([0, 1, 0x61, 255]) }
    }

    // MARK: control messages

    private func decodeControl(_ bytes: [UInt8]) throws -> ControlMessage {
        var decoder = FrameDecoder(maximumFrameLength: 1 << 20)
        decoder.append(bytes)
        let header = try #require(try decoder.next())
        #expect(header.kind == FrameKind.control.rawValue)
        #expect(try decoder.next() == nil)
        return try decoder.withBody(header) { body in try ControlMessage.decode(body) }
    }

    @Test func controlMessagesRoundTrip() throws {
        let node = NodeRecord(
            id: "00112233aabbccdd", name: "worker", host: "127.0.0.1", port: 4000, topics: ["a", "b"], pid: 42,
            joined: 1_700_000_000.5)
        let messages: [ControlMessage] = [
            ControlMessage(.register, node: node),
            ControlMessage(.welcome, node: node, topology: TopologySnapshot(version: 3, nodes: [node])),
            ControlMessage(.rejected, reason: "a node with id 1 is already registered"),
            ControlMessage(.listen, topic: "orders/eu"),
            ControlMessage(.unlisten, topic: "orders/eu"),
            ControlMessage(
                .delta,
                delta: TopologyDelta(
                    from: 3, to: 5, changes: [.join(node), .listen(node.id, "c"), .unlisten(node.id, "a"), .leave("x")])),
            ControlMessage(.sync),
            ControlMessage(.topology, topology: TopologySnapshot(version: 0, nodes: [])),
            ControlMessage(.heartbeat),
            ControlMessage(.bye),
            ControlMessage(.inspect),
        ]
        for message in messages {
            #expect(try decodeControl(message.encodedFrame()) == message)
        }
    }

    @Test func peerHelloRoundTrips() throws {
        let hello = PeerHello(id: "abc", name: "sender")
        var decoder = FrameDecoder(maximumFrameLength: 1024)
        decoder.append(hello.encodedFrame())
        let header = try #require(try decoder.next())
        #expect(header.kind == FrameKind.peerHello.rawValue)
        #expect(try decoder.withBody(header) { try PeerHello.decode($0) } == hello)
    }

    @Test(arguments: [
        "", "{", "null", "[]", #"{"type":"nonsense"}"#, #"{"topic":"a"}"#, #"{"type":"listen","node":7}"#,
    ])
    func malformedControlJSONThrowsMalformed(json: String) {
        let bytes = Array(json.utf8)
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(FrameError) in try ControlMessage.decode(raw) }
        }
        guard case .failure(.malformed(let reason)) = result else {
            Issue.record("expected .malformed for \(json), got \(result)")
            return
        }
        #expect(reason.hasPrefix("control message"))
    }

    // MARK: counting unsent frames

    @Test func countFramesCountsWholeAndPartlyWrittenFrames() {
        let a = Frame(kind: 1, body: [1, 2, 3]).encoded  // 8 bytes
        let b = Frame(kind: 1, body: []).encoded  // 5 bytes
        let c = Frame(kind: 1, body: [UInt8](repeating: 0, count: 10)).encoded  // 15 bytes
        let stream = a + b + c
        #expect(OutboundQueue.countFrames(in: [], after: 0) == .init(frames: 0, bytes: 0))
        #expect(OutboundQueue.countFrames(in: stream, after: 0) == .init(frames: 3, bytes: 28))
        // Partway into the first frame: it still counts, with only its unwritten bytes.
        #expect(OutboundQueue.countFrames(in: stream, after: 3) == .init(frames: 3, bytes: 25))
        // Exactly at a frame boundary: the first frame was sent.
        #expect(OutboundQueue.countFrames(in: stream, after: 8) == .init(frames: 2, bytes: 20))
        #expect(OutboundQueue.countFrames(in: stream, after: 12) == .init(frames: 2, bytes: 16))
        #expect(OutboundQueue.countFrames(in: stream, after: 13) == .init(frames: 1, bytes: 15))
        #expect(OutboundQueue.countFrames(in: stream, after: 27) == .init(frames: 1, bytes: 1))
        #expect(OutboundQueue.countFrames(in: stream, after: 28) == .init(frames: 0, bytes: 0))
    }
}
