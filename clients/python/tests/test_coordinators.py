"""Coordinator lists and LAN beacons (PROTOCOL.md sections 7.2 and 7.3): parsing, the beacon checks
against a beacon the Swift coordinator sent, and failing over to the next coordinator of a list."""
import asyncio
import json
import os
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


class FailoverTests(unittest.IsolatedAsyncioTestCase):
    async def test_a_list_skips_a_dead_coordinator_and_fails_over_to_the_next(self):
        coordinators = [Child([os.path.join(bin_path(), "mesh-coordinator"), "--port", "0"]) for _ in range(2)]
        try:
            addresses = []
            for child in coordinators:
                line = await asyncio.to_thread(child.wait_for_line, "mesh-coordinator listening on ")
                addresses.append(line.split("listening on ")[1].strip())
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


if __name__ == "__main__":
    unittest.main()
