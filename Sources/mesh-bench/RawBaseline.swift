import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The baseline: the same frames over plain blocking TCP sockets between processes, no mesh.
///
/// Frames are the mesh's own: a 4-byte big-endian length (of kind plus body), the kind byte
/// 0x03, then `[2-byte topic length][topic][1 encoding byte][payload]`. The sender appends
/// frames to one buffer and writes it in ~64 KiB chunks (to every receiver, for W4); a receiver
/// reads into a buffer and walks the frames, checking each topic. These are plain synchronous
/// programs: they run in their own processes and never touch Swift concurrency.
enum RawBaseline {
    static let chunkBytes = 64 * 1024

    static func run(_ arguments: RoleArguments) throws {
        switch arguments.role {
        case "raw-receiver": try receiver(arguments)
        case "raw-sender": try sender(arguments)
        case "raw-ponger": try ponger(arguments)
        case "raw-pinger": try pinger(arguments)
        default: throw BenchFailure.usage("unknown role \"\(arguments.role)\"")
        }
    }

    /// Appends one message frame on `topic` carrying `payload`.
    static func appendFrame(topic: [UInt8], payload: UnsafeRawBufferPointer, to buffer: inout [UInt8]) {
        let length = UInt32(1 + 2 + topic.count + 1 + payload.count)
        buffer.append(UInt8(truncatingIfNeeded: length >> 24))
        buffer.append(UInt8(truncatingIfNeeded: length >> 16))
        buffer.append(UInt8(truncatingIfNeeded: length >> 8))
        buffer.append(UInt8(truncatingIfNeeded: length))
        buffer.append(0x03)
        buffer.append(UInt8(truncatingIfNeeded: topic.count >> 8))
        buffer.append(UInt8(truncatingIfNeeded: topic.count))
        buffer.append(contentsOf: topic)
        buffer.append(0)  // raw payload encoding
        buffer.append(contentsOf: payload)
    }

    // MARK: Throughput

    /// Accepts one connection, counts data frames until `--count` arrived or an end frame did.
    static func receiver(_ arguments: RoleArguments) throws {
        let expected = try arguments.int("count")
        let (listener, port) = try RawSocket.listen()
        emit("READY \(port)")
        let connection = try listener.accept()
        listener.close()
        var reader = FrameReader(socket: connection)
        let dataTopic = Array(BenchTopic.data.utf8)
        var received = 0
        var bytes = 0
        var first: UInt64 = 0
        var last: UInt64 = 0
        reading: while received < expected {
            let more = try reader.fill()
            if !more { break }
            while let frame = reader.nextFrame() {
                if reader.topic(of: frame, is: dataTopic) {
                    let now = monotonicNanos()
                    if received == 0 { first = now }
                    received += 1
                    bytes += frame.payloadLength
                    last = now
                } else {
                    break reading  // the end marker: TCP kept the order, nothing more is coming
                }
            }
        }
        connection.close()
        emitResult(ChildResult(received: received, bytes: bytes, firstNanos: first, lastNanos: last))
    }

    /// Connects to every port in `--ports`, writes `--count` frames of `--size` bytes to each in
    /// ~64 KiB chunks, then one end frame; reports its send times.
    static func sender(_ arguments: RoleArguments) throws {
        let count = try arguments.int("count")
        let size = try arguments.int("size", default: 64)
        let ports = try arguments.string("ports").split(separator: ",").compactMap { UInt16($0) }
        let sockets = try ports.map { try RawSocket.connect(port: $0) }
        let topic = Array(BenchTopic.data.utf8)
        let payload = [UInt8](repeating: 0xA5, count: size)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(chunkBytes + size + 64)
        func flush() throws {
            try buffer.withUnsafeBytes { bytes in
                for socket in sockets { try socket.writeAll(bytes) }
            }
            buffer.removeAll(keepingCapacity: true)
        }
        let first = monotonicNanos()
        try payload.withUnsafeBytes { payload in
            for _ in 0..<count {
                appendFrame(topic: topic, payload: payload, to: &buffer)
                if buffer.count >= chunkBytes { try flush() }
            }
        }
        try flush()
        let last = monotonicNanos()
        [UInt8]([1]).withUnsafeBytes { appendFrame(topic: Array(BenchTopic.end.utf8), payload: $0, to: &buffer) }
        try flush()
        for socket in sockets { socket.close() }
        emitResult(ChildResult(sentFirstNanos: first, sentLastNanos: last, dropped: 0))
    }

    // MARK: Latency

    /// Accepts one connection and answers every frame with a pong frame of the same payload.
    static func ponger(_ arguments: RoleArguments) throws {
        let (listener, port) = try RawSocket.listen()
        emit("READY \(port)")
        let connection = try listener.accept()
        listener.close()
        connection.setNoDelay()
        var reader = FrameReader(socket: connection)
        let pongTopic = Array(BenchTopic.pong.utf8)
        var reply: [UInt8] = []
        while try reader.fill() {
            while let frame = reader.nextFrame() {
                reply.removeAll(keepingCapacity: true)
                reader.withPayload(frame) { appendFrame(topic: pongTopic, payload: $0, to: &reply) }
                try reply.withUnsafeBytes { try connection.writeAll($0) }
            }
        }
        connection.close()
    }

    /// Sends `--warmup` then `--count` pings, each waiting for its pong; reports percentiles.
    static func pinger(_ arguments: RoleArguments) throws {
        let warmup = try arguments.int("warmup")
        let count = try arguments.int("count")
        let size = try arguments.int("size", default: 64)
        let connection = try RawSocket.connect(port: UInt16(try arguments.int("port")))
        connection.setNoDelay()
        var reader = FrameReader(socket: connection)
        var ping: [UInt8] = []
        [UInt8](repeating: 0x5A, count: size).withUnsafeBytes {
            appendFrame(topic: Array(BenchTopic.ping.utf8), payload: $0, to: &ping)
        }
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        for round in 0..<(warmup + count) {
            let start = monotonicNanos()
            try ping.withUnsafeBytes { try connection.writeAll($0) }
            while reader.nextFrame() == nil {
                guard try reader.fill() else { throw RawSocket.Failure(operation: "read a pong", code: 0) }
            }
            if round >= warmup { samples.append(monotonicNanos() - start) }
        }
        connection.close()
        let (p50, p90, p99) = Percentiles.microseconds(samples)
        emitResult(ChildResult(p50: p50, p90: p90, p99: p99))
    }
}

/// Reads a socket into one growing buffer and walks the frames in it without copying them.
struct FrameReader {
    /// Where one frame's topic and payload sit in the buffer.
    struct Frame {
        var topicStart: Int
        var topicLength: Int
        var payloadStart: Int
        var payloadLength: Int
    }

    let socket: RawSocket
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0
    private var end = 0

    init(socket: RawSocket) {
        self.socket = socket
    }

    /// Reads what the socket has (blocking until something arrives).
    ///
    /// - Returns: `false` at end of stream.
    mutating func fill() throws -> Bool {
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count {
            // Keep the partial frame: move it to the front, and grow when it fills the buffer.
            let pending = end - start
            if start > 0 {
                buffer.withUnsafeMutableBytes { bytes in
                    _ = memmove(bytes.baseAddress!, bytes.baseAddress! + start, pending)
                }
                start = 0
                end = pending
            }
            if end == buffer.count { buffer.append(contentsOf: repeatElement(0, count: buffer.count)) }
        }
        let count = try buffer.withUnsafeMutableBytes { bytes in
            try socket.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[end...]))
        }
        end += count
        return count > 0
    }

    /// The next whole frame in the buffer, or `nil` when more bytes are needed.
    mutating func nextFrame() -> Frame? {
        guard end - start >= 7 else { return nil }
        let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
            | Int(buffer[start + 3])
        guard end - start >= 4 + length else { return nil }
        let body = start + 5
        let topicLength = Int(buffer[body]) << 8 | Int(buffer[body + 1])
        let payloadStart = body + 2 + topicLength + 1
        start += 4 + length
        return Frame(topicStart: body + 2, topicLength: topicLength, payloadStart: payloadStart, payloadLength: start - payloadStart)
    }

    /// Whether the topic of `frame`, which must be the last frame returned, is `topic`.
    func topic(of frame: Frame, is topic: [UInt8]) -> Bool {
        guard frame.topicLength == topic.count else { return false }
        return buffer.withUnsafeBytes { bytes in
            topic.withUnsafeBytes { memcmp(bytes.baseAddress! + frame.topicStart, $0.baseAddress!, topic.count) == 0 }
        }
    }

    /// Lends the payload of `frame`, which must be the last frame returned.
    func withPayload<R>(_ frame: Frame, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeBytes { bytes in
            try body(UnsafeRawBufferPointer(rebasing: bytes[frame.payloadStart..<(frame.payloadStart + frame.payloadLength)]))
        }
    }
}

/// A blocking IPv4 TCP socket on 127.0.0.1: the only place the baseline calls the socket API.
struct RawSocket {
    /// A failed call, with errno's text.
    struct Failure: Error, CustomStringConvertible {
        var operation: String
        var code: Int32
        var description: String {
            code == 0 ? "\(operation): connection closed" : "\(operation): \(String(cString: strerror(code)))"
        }
    }

    let fd: Int32

    /// Binds 127.0.0.1 on a free port and listens.
    ///
    /// - Returns: the listening socket and its port.
    static func listen() throws -> (RawSocket, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(operation: "socket", code: errno) }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 16) == 0 else { throw Failure(operation: "bind/listen", code: errno) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (RawSocket(fd: fd), UInt16(bigEndian: address.sin_port))
    }

    /// Connects to 127.0.0.1:`port`.
    static func connect(port: UInt16) throws -> RawSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(operation: "socket", code: errno) }
        var address = loopback(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { throw Failure(operation: "connect to port \(port)", code: errno) }
        return RawSocket(fd: fd)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    func accept() throws -> RawSocket {
        while true {
            let client = Glibc.accept(fd, nil, nil)
            if client >= 0 { return RawSocket(fd: client) }
            if errno != EINTR { throw Failure(operation: "accept", code: errno) }
        }
    }

    func setNoDelay() {
        var on: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Writes every byte, retrying on `EINTR` and short writes.
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "send", code: errno)
            }
            offset += written
        }
    }

    /// Reads what is available (blocking until something is).
    ///
    /// - Returns: the byte count; 0 at end of stream.
    func read(into bytes: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let count = recv(fd, bytes.baseAddress!, bytes.count, 0)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return 0 }
            throw Failure(operation: "recv", code: errno)
        }
    }

    func close() {
        _ = Glibc.close(fd)
    }
}
