"""Protocol version 3 between Python nodes, through the Python stub coordinator (no Swift needed):
what the wire shows, who may claim an id, and the refusals a node's data port makes."""
import asyncio
import logging
import time
import unittest

from support import KEY, drive, eventually  # first: it puts the client on sys.path
from stub_coordinator import StubCoordinator

import swiftmesh
from swiftmesh import protocol as p
from swiftmesh.connection import Connection


class KeyedMeshTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.coordinator = StubCoordinator(KEY)
        self.address = await self.coordinator.start()
        self.addCleanup(self.coordinator.close)

    async def node(self, name, **options):
        node = await asyncio.wait_for(
            swiftmesh.build_mesh_node(name=name, coordinator=self.address, authkey=KEY, **options), 10)
        self.addAsyncCleanup(node.close)
        return node

    async def test_nothing_readable_crosses_the_wire(self):
        received = bytearray()
        original = Connection.data_received

        def tap(connection, data):
            received.extend(data)
            original(connection, data)
        Connection.data_received = tap
        self.addCleanup(setattr, Connection, "data_received", original)
        got = []
        listener = await self.node("secret-listener-name")
        await listener.listen("secret/topic/name", lambda topic, data: got.append(data))
        sender = await self.node("secret-sender-name")
        await sender.wait_for_listener("secret/topic/name", timeout=5)
        await sender.send("secret/topic/name", {"payload": "secret payload text"})
        self.assertTrue(await eventually(lambda: got, 5))
        self.assertEqual(got, [{"payload": "secret payload text"}])
        # Every byte every Python side read (node-coordinator both ways, node to node).
        for text in (b"secret", b"payload", b"topic", b"register", b"welcome", b'"type"'):
            self.assertNotIn(text, received)
        self.assertGreater(len(received), 1000)

    async def test_the_id_is_the_keys_and_a_key_file_keeps_it(self):
        import os
        import tempfile
        path = os.path.join(tempfile.mkdtemp(), "node.key")
        p.Identity.generate().save(path)
        first = await self.node("stable", identity_file=path)
        identity = p.Identity.load(path)
        self.assertEqual(first.id, identity.id)
        self.assertEqual(self.coordinator.nodes[first.id]["key"], identity.public.hex())
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, "w") as file:
            file.write("not a key\n")
        with self.assertRaises(swiftmesh.MeshError) as failure:
            swiftmesh.MeshNode("bad", coordinator=self.address, authkey=KEY, identity_file=path)
        self.assertIn("does not hold a private key", str(failure.exception))

    async def test_a_pinned_coordinator_key_that_differs_fails_authentication(self):
        with self.assertRaises(swiftmesh.AuthenticationFailed) as failure:
            await self.node("pinned", coordinator_key=p.Identity.generate().public.hex())
        self.assertIn("is not the pinned key", str(failure.exception))

    async def test_a_data_port_gives_a_peer_hello_5_s(self):
        target = await self.node("target")
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            handshake = p.Handshake(True, p.PURPOSE_DATA, p.stretch_key(KEY), p.Identity.generate(),
                                    expected_peer_id=bytes.fromhex(target.id), peer_key=target.identity.public)
            reader, writer = await asyncio.open_connection(target.host, target.port)
            await drive(handshake, reader, writer)
            opened = time.monotonic()
            self.assertEqual(await asyncio.wait_for(reader.read(), 10), b"")  # closed, nothing sent
            self.assertGreaterEqual(time.monotonic() - opened, 4.5)
            writer.close()
            self.assertTrue(await eventually(
                lambda: any("no peer hello within 5.000 s of the handshake" in line for line in logs.output), 5))

    async def test_a_record_without_a_usable_key_is_not_dialled(self):
        sender = await self.node("sender")
        listener = await self.node("listener")
        await listener.listen("t", lambda topic, data: None)
        await sender.wait_for_listener("t", timeout=5)
        record = sender.topology[listener.id]
        for broken, text in ((dict(record, key=None), "its topology record carries no public key"),
                             (dict(record, key=p.Identity.generate().public.hex()),
                              "the public key in its topology record is not the key its id derives from")):
            with self.subTest(text):
                sender._unkeyed.clear()
                sender.topology[listener.id] = broken
                sender._peers.clear()
                sender._routes.clear()
                dropped = sender.stats["messagesDropped"]
                with self.assertLogs("swiftmesh", logging.WARNING) as logs:
                    await sender.send("t", {"n": 1})
                self.assertTrue(any(text in line for line in logs.output), logs.output)
                self.assertEqual(sender.stats["messagesDropped"], dropped + 1)


if __name__ == "__main__":
    unittest.main()
