import Foundation
import MeshCrypto
import MeshTesting
import Testing

@testable import Mesh

/// Coordinator beacons (PROTOCOL.md §7.3): what a node trusts, and every way a stranger's or a
/// forger's datagram is turned away.
@Suite("Beacons")
struct BeaconTests {
    static let key = try! MeshKey.stretched("beacon test key, long enough")!
    static let otherKey = try! MeshKey.stretched("another mesh key, long enough")!

    @Test("a keyed beacon checks out with the key and names its address and mesh")
    func keyedBeaconTrusted() throws {
        let beacon = Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.key)
        #expect(beacon.mac.count == 64)
        guard case .trusted(let heard) = Beacon.check(beacon.encoded, from: "10.0.0.9", mesh: "lab", key: Self.key) else {
            Issue.record("a good beacon was not trusted")
            return
        }
        #expect(heard.address == "10.0.0.1:6374")
    }

    @Test("ignored: another key, another mesh, a changed address or key field, no HMAC, a keyed beacon without a key")
    func forgeriesIgnored() throws {
        let good = Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.key)
        func reason(_ beacon: Beacon, mesh: String = "lab", key: SymmetricKey? = Self.key, from sender: String = "10.0.0.1") -> String? {
            if case .ignored(_, let reason) = Beacon.check(beacon.encoded, from: sender, mesh: mesh, key: key) { return reason }
            return nil
        }
        #expect(reason(Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.otherKey))?.contains("bad HMAC") == true)
        #expect(reason(good, mesh: "other")?.contains("another mesh") == true)
        var moved = good
        moved.address = "10.6.6.6:6374"
        #expect(reason(moved)?.contains("bad HMAC") == true, "an address changed in flight must not check out")
        var fingerprint = good
        fingerprint.key = "ab"
        #expect(reason(fingerprint)?.contains("bad HMAC") == true, "the key field is covered by the HMAC")
        // Signed with the mesh key, yet naming no public key: nothing a node could pin.
        let notAKey = Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.key, fingerprint: String(repeating: "z", count: 64))
        #expect(reason(notAKey)?.contains("not a public key") == true)
        var stripped = good
        stripped.mac = ""
        #expect(reason(stripped)?.contains("no HMAC") == true)
        var garbled = good
        garbled.mac = String(repeating: "zz", count: 32)
        #expect(reason(garbled)?.contains("bad HMAC") == true)
        #expect(reason(good, key: nil)?.contains("this node has no key") == true)
    }

    @Test("open meshes: a beacon without HMAC is trusted only when it names the host it came from")
    func openMesh() {
        let open = Beacon(mesh: "default", address: "10.0.0.1:6374", key: nil)
        #expect(open.mac.isEmpty)
        if case .trusted = Beacon.check(open.encoded, from: "10.0.0.1", mesh: "default", key: nil) {} else {
            Issue.record("an open beacon from its own host was not trusted")
        }
        if case .ignored(_, let reason) = Beacon.check(open.encoded, from: "10.0.0.7", mesh: "default", key: nil) {
            #expect(reason.contains("not the host it came from"))
        } else {
            Issue.record("an open beacon pointing elsewhere was trusted")
        }
    }

    @Test("hostile datagrams: garbage, oversized, wrong format, bad addresses, line breaks, deep JSON: ignored, never a crash")
    func hostileDatagrams() {
        func ignored(_ bytes: [UInt8]) -> Bool {
            if case .ignored = Beacon.check(bytes, from: "10.0.0.1", mesh: "lab", key: Self.key) { return true }
            return false
        }
        #expect(ignored([]))
        #expect(ignored(Array("not json".utf8)))
        #expect(ignored([UInt8](repeating: 0x7b, count: 5000)))
        #expect(ignored(Array(String(repeating: "[", count: 1000).utf8)))
        for address in ["10.0.0.1", "unix:/tmp/x", "name.example:6374", "10.0.0.1:0", "10.0.0.1:99999", ""] {
            #expect(ignored(Beacon(mesh: "lab", address: address, key: Self.key).encoded), "\(address)")
        }
        var format = Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.key)
        format.beacon = "swift-mesh/9"
        #expect(ignored(format.encoded))
        #expect(ignored(Beacon(mesh: "lab\nx", address: "10.0.0.1:6374", key: Self.key).encoded))
        #expect(ignored(Beacon(mesh: String(repeating: "m", count: 300), address: "10.0.0.1:6374", key: Self.key).encoded))
    }

    @Test("the beacon key is its own: derived with HKDF under its label, not the mesh key itself")
    func beaconKeyDiffers() {
        let derived = Beacon.beaconKey(Self.key)
        #expect(derived.withUnsafeBytes { Array($0) } != Self.key.withUnsafeBytes { Array($0) })
        #expect(Beacon.beaconKey(Self.key).withUnsafeBytes { Array($0) } == derived.withUnsafeBytes { Array($0) })
    }

    @Test("a configured pin rules over beacons, and two beacons naming different keys for one address are both ignored")
    func pinsAndConflictingKeys() {
        let real = NodeIdentity().publicKeyHex
        let rogue = NodeIdentity().publicKeyHex
        func heard(_ sender: String, _ address: String, _ key: String) -> BeaconListener.Heard {
            BeaconListener.Heard(
                sender: sender, verdict: .trusted(Beacon(mesh: "lab", address: address, key: Self.key, fingerprint: key)))
        }
        let beacons = [heard("10.0.0.1", "10.0.0.1:6374", real), heard("10.0.0.6", "10.0.0.6:6374", rogue)]
        // Without a pin, both coordinators are used, each with the key its beacon names.
        let open = BeaconListener.choose(from: beacons, pinned: nil)
        #expect(open.found.map(\.address) == ["10.0.0.1:6374", "10.0.0.6:6374"])
        #expect(open.found.map(\.key) == [real, rogue])
        // With a pin, a beacon naming another key is ignored, once per sender.
        let pinned = BeaconListener.choose(from: beacons + beacons, pinned: real)
        #expect(pinned.found.map(\.address) == ["10.0.0.1:6374"])
        #expect(pinned.warnings.count == 1 && pinned.warnings[0].contains("10.0.0.6"))
        // A member that announces the real coordinator's address with its own key: neither is trusted.
        let spoofed = BeaconListener.choose(
            from: [heard("10.0.0.1", "10.0.0.1:6374", real), heard("10.0.0.6", "10.0.0.1:6374", rogue),
                   heard("10.0.0.1", "10.0.0.1:6374", real)],
            pinned: nil)
        #expect(spoofed.found.isEmpty)
        #expect(spoofed.warnings == ["ignored the beacons for 10.0.0.1:6374: they name different static keys"])
    }

    @Test("listening: a flood of junk and repeats is read and dropped, kept once per sender; a real beacon among it is heard, and listening ends once it settles")
    func floodedListener() async throws {
        // A free UDP port on loopback, and the listener's own socket on it.
        let probe = try Socket.datagram(binding: .ipv4(host: "127.0.0.1", port: 0), shared: false)
        guard case .ipv4(_, let port)? = probe.localAddress() else {
            Issue.record("no local address for the UDP probe")
            return
        }
        probe.close()
        let sender = try Socket.datagram(binding: .ipv4(host: "127.0.0.1", port: 0), shared: false)
        defer { sender.close() }
        let good = Beacon(mesh: "lab", address: "10.0.0.1:6374", key: Self.key).encoded
        let started = ContinuousClock.now
        let listening = Task {
            try await BeaconListener.listen(for: .seconds(20), mesh: "lab", key: Self.key, port: port, settle: .milliseconds(300))
        }
        // Until the listener has heard the beacon (datagrams sent before it binds are lost).
        for round in 0..<400 where !listening.isCancelled {
            for index in 0..<50 { _ = try? sender.sendDatagram(Array("junk \(round) \(index)".utf8), to: .ipv4(host: "127.0.0.1", port: port)) }
            _ = try? sender.sendDatagram(good, to: .ipv4(host: "127.0.0.1", port: port))
            if ContinuousClock.now - started > .seconds(1) { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        let heard = try await withDeadline(20) { try await listening.value }
        #expect(heard.filter(\.isTrusted).count == 1, "the same beacon again and again is kept once")
        #expect(heard.filter { !$0.isTrusted }.count == 1, "junk is kept once per sender, whatever it says")
        #expect(ContinuousClock.now - started < .seconds(15), "listening ends after the settle time once a beacon is trusted")
    }
}
