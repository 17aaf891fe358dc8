import Foundation
import MeshTesting
import Synchronization
import Testing

@testable import Mesh

/// A plain TCP listener that is not a mesh node (a database, an SSH server...): it accepts,
/// optionally says `banner` first, and records every byte it is sent. Its own thread, with a
/// 100 ms poll, never the cooperative pool.
final class BystanderListener: Sendable {
    let port: UInt16
    private let listenFD: Int32
    private let stopped = Atomic<Bool>(false)
    private let seen = Mutex((accepted: 0, received: [UInt8]()))

    init(banner: [UInt8] = []) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw SocketError.failed("bystander bind", errno)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        listenFD = fd
        let thread = Thread { [self] in serve(banner: banner) }
        thread.name = "bystander"
        thread.start()
    }

    /// Connections accepted, and every byte received on any of them.
    var accepted: Int { seen.withLock { $0.accepted } }
    var received: [UInt8] { seen.withLock { $0.received } }

    func stop() { stopped.store(true, ordering: .relaxed) }

    private func serve(banner: [UInt8]) {
        var clients: [Int32] = []
        defer {
            for client in clients { close(client) }
            close(listenFD)
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopped.load(ordering: .relaxed) {
            var entries = ([listenFD] + clients).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&entries, nfds_t(entries.count), 100)
            if ready < 0, errno != EINTR { return }
            if entries[0].revents != 0 {
                let client = accept(listenFD, nil, nil)
                if client >= 0 {
                    clients.append(client)
                    seen.withLock { $0.accepted += 1 }
                    if !banner.isEmpty { _ = banner.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                }
            }
            var closed: Set<Int32> = []
            for entry in entries.dropFirst() where entry.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { recv(entry.fd, $0.baseAddress, $0.count, 0) }
                if count > 0 {
                    seen.withLock { $0.received += buffer[0..<count] }
                } else {
                    closed.insert(entry.fd)
                    close(entry.fd)
                }
            }
            clients.removeAll { closed.contains($0) }
        }
    }
}

/// Issue #22 item 10: a node that advertises someone else's port. Senders dial that port (the
/// address is all they have), but a connector to a known node writes nothing until the acceptor
/// has sent its hello with the expected node id, so the bystander receives not one byte.
@Suite("Advertised ports", .serialized)
struct AdvertisedPortTests {
    @Test(
        "a send to a node that advertises a silent bystander's port writes nothing there; the sender drops the message with a clear reason",
        arguments: [false, true])
    func bystanderReceivesNothing(speaks: Bool) async throws {
        let banner = speaks ? Array("SSH-2.0-OpenSSH_9.6\r\n".utf8) : []
        let bystander = try BystanderListener(banner: banner)
        defer { bystander.stop() }
        try await withMesh { mesh in
            // A node (registered by hand) that advertises the bystander's port as its own.
            let liar = try ControlClient.connect(to: mesh.address)
            defer { liar.close() }
            try await liar.register(name: "liar", topics: ["jobs"], port: bystander.port)
            liar.keepAlive()
            let logs = LogCapture()
            let sender = try await mesh.node("sender") { $0.logger = logs.logger("sender") }
            try await sender.waitForListener("jobs", timeout: .seconds(10))
            let started = ContinuousClock.now
            try await sender.send("jobs", "take this")
            try await eventually("the sender to drop the message", seconds: 15) { await sender.statistics.messagesDropped >= 1 }
            let reason = sender.lastDropReason ?? ""
            print("advertised bystander port (\(speaks ? "it speaks first" : "silent")): dropped after \(secondsText(started.duration(to: .now))): \(reason)")
            #expect(bystander.accepted >= 1, "the sender never dialled the advertised port, so this test proves nothing")
            #expect(bystander.received.isEmpty, "the bystander received \(bystander.received.count) bytes: \(bystander.received.prefix(64))")
            if speaks {
                #expect(reason.contains("not a mesh peer"), "\(reason)")
            } else {
                #expect(reason.contains("nothing was written to it"), "\(reason)")
            }
            // The sender says so in its log too, naming the node and the address it dialled.
            let warnings = logs.lines(level: .warning, label: "sender")
            #expect(
                warnings.contains { $0.contains("connection to liar (\(liar.id)) at 127.0.0.1:\(bystander.port) failed") },
                "\(warnings)")
        }
    }

    @Test("real nodes still talk, both ways and with a key, now that the data port speaks first")
    func realNodesStillTalk() async throws {
        try await withMesh(authkey: "a key for the advertised-port tests") { mesh in
            let receiver = try await mesh.node("receiver", authkey: "a key for the advertised-port tests")
            let got = Collector<String>()
            try await receiver.listen("jobs") { (_: String, value: String) in got.append(value) }
            let sender = try await mesh.node("sender", authkey: "a key for the advertised-port tests")
            try await sender.waitForListener("jobs", timeout: .seconds(10))
            for index in 0..<5 { try await sender.send("jobs", "job \(index)") }
            #expect(try await got.wait(for: 5, seconds: 10) == (0..<5).map { "job \($0)" })
            #expect(await sender.statistics.messagesDropped == 0)
        }
    }
}
