"""Coordinator lists and LAN beacons (PROTOCOL.md sections 7.2 and 7.3): parsing, the beacon checks
against a beacon the Swift coordinator sent, and failing over to the next coordinator of a list."""
import asyncio
import hashlib
import hmac
import json
import os
import socket
import signal
import unittest

from support import Child, bin_path, eventually

import swiftmesh
from swiftmesh import protocol as p

# Sent by `mesh-coordinator --host 10.250.0.1 --announce --mesh-name lab` with this key.
VECTOR_KEY = "beacon vector key, long enough 123"
VECTOR = (b'{"address":"10.250.0.1:6374","beacon":"swift-mesh/1","key":"",'
          b'"mac":"d0e7a085303962bc195b8f9690d214629b622b2c2c37395628de11cedac008cd","mesh":"lab"}')


class BeaconTests(unittest.TestCase):
    def test_coordinator_list(self):
        self.assertEqual(p.coordinator_list(" a:1, b:2 ,,a:1"), ["a:1", "b:2"])
        self.assertEqual(p.coordinator_list("a:1"), ["a:1"])

    def test_the_swift_beacon_checks_out_with_its_key(self):
        key = p.stretch_key(VECTOR_KEY)
        self.assertEqual(p.check_beacon(VECTOR, "10.250.0.9", "lab", key), ("10.250.0.1:6374", None))

    def test_forged_and_foreign_beacons_are_ignored(self):
        key = p.stretch_key(VECTOR_KEY)
        self.assertIn("bad HMAC", p.check_beacon(VECTOR, "x", "lab", p.stretch_key("another key, long enough"))[1])
        self.assertIn("another mesh", p.check_beacon(VECTOR, "x", "other", key)[1])
        moved = VECTOR.replace(b"10.250.0.1:6374", b"10.6.6.6:6374")
        self.assertIn("bad HMAC", p.check_beacon(moved, "x", "lab", key)[1])
        self.assertIn("no key", p.check_beacon(VECTOR, "x", "lab", None)[1])
        for junk in (b"", b"[", b"{}", b"x" * 5000, b'{"beacon": 1}', b"[" * 1000):
            self.assertIsNone(p.check_beacon(junk, "x", "lab", key)[0])
        # A MAC that is not ASCII (compare_digest would raise) is a bad MAC, not a crash.
        unicode_mac = json.loads(VECTOR)
        unicode_mac["mac"] = "\u00e9" * 64
        self.assertIn("bad HMAC", p.check_beacon(json.dumps(unicode_mac).encode(), "x", "lab", key)[1])
        beacon = json.loads(VECTOR)
        beacon["mac"], beacon["address"] = "", "10.0.0.1:6374"
        self.assertIsNone(p.check_beacon(json.dumps(beacon).encode(), "10.0.0.2", "lab", None)[0])
        self.assertEqual(p.check_beacon(json.dumps(beacon).encode(), "10.0.0.1", "lab", None)[0], "10.0.0.1:6374")


def _signed_beacon(stretched, address, key, mesh="lab"):
    beacon = {"beacon": p.BEACON_FORMAT, "mesh": mesh, "address": address, "key": key, "mac": ""}
    beacon["mac"] = hmac.new(p.beacon_key(stretched), p.beacon_signed_bytes(beacon), hashlib.sha256).hexdigest()
    return json.dumps(beacon).encode()


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DiscoveryTests(unittest.IsolatedAsyncioTestCase):
    async def _discover(self, datagrams, pinned=None):
        """What discover_coordinators makes of `datagrams`, sent to it on loopback while it listens."""
        port, key = _free_udp_port(), p.stretch_key(VECTOR_KEY)
        warnings = []

        class Log:
            def warning(self, text, *args):
                warnings.append(text % args)
        listening = asyncio.create_task(
            swiftmesh.node.discover_coordinators("lab", key, window=1.0, settle=0.5, log=Log(), port=port, pinned=pinned))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            # Until the listener is bound: a datagram sent before is lost, so send each round again.
            for _ in range(5):
                await asyncio.sleep(0.05)
                for datagram in datagrams:
                    sender.sendto(datagram, ("127.0.0.1", port))
        return await asyncio.wait_for(listening, 10), warnings

    async def test_each_coordinator_comes_with_the_key_its_beacon_names(self):
        key = p.stretch_key(VECTOR_KEY)
        one, two = "11" * 32, "22" * 32
        found, warnings = await self._discover([_signed_beacon(key, "10.0.0.2:6374", two),
                                                _signed_beacon(key, "10.0.0.1:6374", one)])
        self.assertEqual(found, [("10.0.0.1:6374", one), ("10.0.0.2:6374", two)])
        self.assertEqual(warnings, [])

    async def test_a_pin_rules_and_two_keys_for_one_address_are_both_ignored(self):
        key = p.stretch_key(VECTOR_KEY)
        one, two, rogue = "11" * 32, "22" * 32, "66" * 32
        datagrams = [_signed_beacon(key, "10.0.0.1:6374", one), _signed_beacon(key, "10.0.0.2:6374", two),
                     _signed_beacon(key, "10.0.0.3:6374", one), _signed_beacon(key, "10.0.0.3:6374", rogue)]
        found, warnings = await self._discover(datagrams)
        self.assertEqual(found, [("10.0.0.1:6374", one), ("10.0.0.2:6374", two)])
        self.assertTrue(any("10.0.0.3:6374" in line and "different static keys" in line for line in warnings), warnings)
        # With a pin, only beacons naming the pinned key count: 10.0.0.3's rogue one is dropped.
        found, warnings = await self._discover(datagrams, pinned=one)
        self.assertEqual(found, [("10.0.0.1:6374", one), ("10.0.0.3:6374", one)])
        self.assertEqual(len([line for line in warnings if "other than the pinned" in line]), 1, warnings)

    async def test_nothing_configured_and_nothing_found_fails_saying_both(self):
        if await swiftmesh.node._is_listening(p.DEFAULT_COORDINATOR):
            self.skipTest(f"something listens on {p.DEFAULT_COORDINATOR} on this host")
        os.environ.pop("MESH_COORDINATOR", None)
        with self.assertRaises(swiftmesh.CoordinatorUnreachable) as caught:
            await swiftmesh.build_mesh_node(name="py-loner", mesh_name="nobody-announces-this")
        text = str(caught.exception)
        self.assertIn("nothing was configured (MESH_COORDINATOR)", text)
        self.assertIn("announced itself", text)


async def _addresses(coordinators):
    """Where each coordinator child listens, once it says so."""
    addresses = []
    for child in coordinators:
        line = await asyncio.to_thread(child.wait_for_line, "mesh-coordinator listening on ")
        addresses.append(line.split("listening on ")[1].strip())
    return addresses


class FailoverTests(unittest.IsolatedAsyncioTestCase):
    async def test_a_list_skips_a_dead_coordinator_and_fails_over_to_the_next(self):
        coordinators = [Child([os.path.join(bin_path(), "mesh-coordinator"), "--port", "0"]) for _ in range(2)]
        try:
            addresses = await _addresses(coordinators)
            node = await swiftmesh.build_mesh_node(name="py-failover", coordinator=f"127.0.0.1:1,{addresses[0]},{addresses[1]}")
            try:
                self.assertEqual(node._address, addresses[0])
                coordinators[0].stop(signal.SIGKILL)
                self.assertTrue(await eventually(lambda: node._registered and node._address == addresses[1], 10))
            finally:
                await node.close()
        finally:
            for child in coordinators:
                child.stop()

    async def test_every_coordinator_holds_the_record_and_failover_loses_nothing(self):
        """Registered with the first of its list and, as a standby, with the second: a node that
        routes by the second sees it, and after the first is killed it routes by the second with
        every message still arriving (PROTOCOL.md section 7.2)."""
        coordinators = [Child([os.path.join(bin_path(), "mesh-coordinator"), "--port", "0"]) for _ in range(2)]
        nodes = []
        try:
            addresses = await _addresses(coordinators)
            node = await swiftmesh.build_mesh_node(name="py-listed", coordinator=",".join(addresses))
            nodes.append(node)
            got = []
            await node.listen("standby-topic", lambda t, data: got.append(data))
            # Its list in the other order routes it by the second coordinator: it sees the node through
            # the node's standby record there, and the node sees it through its standby record at the first.
            other = await swiftmesh.build_mesh_node(name="py-other", coordinator=f"{addresses[1]},{addresses[0]}")
            nodes.append(other)
            await other.wait_for_listener("standby-topic", timeout=10)
            await other.send("standby-topic", b"before")
            self.assertTrue(await eventually(lambda: got == [b"before"], 10), got)

            coordinators[0].stop(signal.SIGKILL)
            self.assertTrue(await eventually(lambda: node._registered and node._address == addresses[1], 10))
            self.assertIn(other.id, node.topology)
            await node.listen("after-failover", lambda t, data: got.append(data))
            await other.wait_for_listener("after-failover", timeout=10)
            for index in range(50):
                await other.send("standby-topic", index.to_bytes(2, "big"))
            self.assertTrue(await eventually(lambda: len(got) == 51, 10), len(got))
            self.assertEqual(got[1:], [i.to_bytes(2, "big") for i in range(50)])
        finally:
            for node in nodes:
                await node.close()
            for child in coordinators:
                child.stop()

    async def test_a_kill_through_a_standby_coordinator_stops_the_node(self):
        coordinators = [Child([os.path.join(bin_path(), "mesh-coordinator"), "--port", "0"]) for _ in range(2)]
        try:
            addresses = await _addresses(coordinators)
            node = await swiftmesh.build_mesh_node(name="py-killed", coordinator=",".join(addresses))
            try:
                self.assertTrue(await eventually(lambda: any(s.registered for s in node._standbys.values()), 10))
                tool = await asyncio.create_subprocess_exec(
                    os.path.join(bin_path(), "mesh"), "node", "kill", "py-killed", "--coordinator", addresses[1],
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await asyncio.wait_for(tool.communicate(), 30)
                self.assertEqual(tool.returncode, 0, (out, err))
                self.assertTrue(await eventually(lambda: node._closed, 10))
            finally:
                await node.close()
        finally:
            for child in coordinators:
                child.stop()


if __name__ == "__main__":
    unittest.main()
