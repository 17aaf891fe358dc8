"""Bad input to a Python node: each closes that one connection with a logged reason; the node goes on."""
import asyncio
import json
import logging

from support import MeshTestCase, drive, eventually

from swiftmesh import protocol as p


class RawPeer:
    """A hand-driven data connection to a node's peer port, with the mesh key."""

    def __init__(self, reader, writer, handshake):
        self.reader, self.writer, self.handshake = reader, writer, handshake

    @classmethod
    async def open(cls, node, key_text, identity=None, claimed_id=None, peer_key=None):
        """Dials `node` as `identity` (fresh by default), claiming `claimed_id` in the hello if given."""
        handshake = p.Handshake(True, p.PURPOSE_DATA, p.stretch_key(key_text), identity or p.Identity.generate(),
                                expected_peer_id=bytes.fromhex(node.id), peer_key=peer_key or node.identity.public)
        if claimed_id is not None:
            handshake.local_id = bytes.fromhex(claimed_id)
        reader, writer = await asyncio.open_connection(node.host, node.port)
        await drive(handshake, reader, writer)
        return cls(reader, writer, handshake)

    def send_frames(self, frames):
        out = bytearray()
        p.seal_records(self.handshake.ciphers[0], bytearray(frames), out)
        self.writer.write(out)

    async def closed_by_peer(self, timeout=5):
        try:
            return await asyncio.wait_for(self.reader.read(1), timeout) == b""
        except ConnectionResetError:
            return True
        finally:
            self.writer.close()


class HostileInputTests(MeshTestCase):
    async def asyncSetUp(self):
        self.node_ = await self.node("target")
        self.got = []
        await self.node_.listen("t", lambda topic, data: self.got.append(data))
        self.sender = await self.node("honest")
        await self.sender.wait_for_listener("t", timeout=10)

    async def still_works(self):
        before = len(self.got)
        await self.sender.send("t", {"ok": True})
        self.assertTrue(await eventually(lambda: len(self.got) > before, 5))

    async def attack(self, frames, expected):
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            peer = await RawPeer.open(self.node_, self.key, self.sender.identity)
            peer.send_frames(frames)
            self.assertTrue(await peer.closed_by_peer())
            await asyncio.sleep(0.05)
        self.assertTrue(any(expected in line for line in logs.output), logs.output)
        await self.still_works()

    def hello(self, node_id=None, name=None):
        body = json.dumps({"id": node_id or self.sender.id, "name": name or self.sender.name}).encode()
        return p.frame(p.KIND_PEER_HELLO, body)

    async def test_message_before_hello(self):
        await self.attack(p.message_frame(b"t", 1, b"{}"), "message before peer hello")

    async def test_unknown_kind(self):
        await self.attack(self.hello() + p.frame(9, b"x"), "unexpected frame kind 0x9")

    async def test_closing_frames_before_hello_or_malformed(self):
        await self.attack(p.frame(p.KIND_CLOSING, bytes(8)), "closing before peer hello")
        await self.attack(self.hello() + p.frame(p.KIND_CLOSING, b"\x00\x01"), "closing count of 2 bytes")
        await self.attack(self.hello() + p.frame(p.KIND_CLOSING, b"\xff" * 8), "out of range")
        await self.attack(self.hello() + p.frame(p.KIND_CONFIRMED, bytes(8)), "unexpected frame kind 0x8")

    async def test_oversized_length_is_refused_before_allocation(self):
        await self.attack(self.hello() + b"\x7f\xff\xff\xff\x03", "exceeds the limit")

    async def test_zero_length(self):
        await self.attack(self.hello() + b"\x00\x00\x00\x00", "zero length")

    async def test_malformed_topic_and_encoding(self):
        await self.attack(self.hello() + p.frame(p.KIND_MESSAGE, b"\x00\x05ab"), "malformed frame")
        await self.attack(self.hello() + p.message_frame(b"t\x07", 1, b"{}"), "control characters")
        await self.attack(self.hello() + p.message_frame(b"t", 7, b"{}"), "unknown payload encoding 7")

    async def test_hello_that_lies_about_the_id_or_name(self):
        await self.attack(self.hello(node_id="0123456789abcdef"), "the handshake was for")
        await self.attack(self.hello(name="someone-else"), "the mesh says")

    async def test_tampered_record_fails_authentication(self):
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            peer = await RawPeer.open(self.node_, self.key, self.sender.identity)
            out = bytearray()
            p.seal_records(peer.handshake.ciphers[0], bytearray(self.hello() + p.message_frame(b"t", 1, b"{}")), out)
            out[10] ^= 1
            peer.writer.write(out)
            self.assertTrue(await peer.closed_by_peer())
            await asyncio.sleep(0.05)
        self.assertTrue(any("failed authentication" in line for line in logs.output), logs.output)
        self.assertEqual(self.got, [])
        await self.still_works()

    async def refused(self, expected, **dial):
        """Dials the target with `dial`'s changes: it must refuse with 00 00 and log `expected`."""
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            with self.assertRaises(p.HandshakeError) as refusal:
                await RawPeer.open(self.node_, self.key, **dial)
            self.assertEqual(refusal.exception.reason, "rejectedByPeer")
            self.assertTrue(await eventually(lambda: any(expected in line for line in logs.output), 5), logs.output)
        self.assertEqual(self.got, [])
        await self.still_works()

    async def test_a_dialler_claiming_another_nodes_id_is_refused(self):
        # A key holder that puts the honest sender's id in its hello, without the sender's private key.
        await self.refused(f"peer claims to be node {self.sender.id}, but its static key belongs to node", claimed_id=self.sender.id)

    async def test_a_dialler_without_the_nodes_public_key_is_refused(self):
        await self.refused("the peer does not have this node's public key", peer_key=p.Identity.generate().public)

    async def test_a_dialler_with_the_wrong_mesh_key_is_refused(self):
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            with self.assertRaises(p.HandshakeError) as refusal:
                await RawPeer.open(self.node_, "not the mesh key but long enough")
            self.assertEqual(refusal.exception.reason, "rejectedByPeer")
            self.assertTrue(await eventually(lambda: any("wrong key" in line for line in logs.output), 5))
        await self.still_works()

    async def test_not_a_mesh_peer_and_flood_of_garbage(self):
        with self.assertLogs("swiftmesh", logging.WARNING) as logs:
            for _ in range(20):
                reader, writer = await asyncio.open_connection(self.node_.host, self.node_.port)
                writer.write(b"GET / HTTP/1.1\r\n\r\n")
                # A data port speaks first: its own 47-byte hello, then nothing but the close.
                received = await asyncio.wait_for(reader.read(), 5)
                self.assertEqual(len(received), 47, received)
                self.assertEqual(received[:7], b"MESH\x03\x01\x04", received)
                writer.close()
        self.assertTrue(any("not a mesh peer" in line for line in logs.output), logs.output)
        await self.still_works()

    async def test_a_listener_that_raises_is_logged_and_the_node_goes_on(self):
        def broken(topic, data):
            raise RuntimeError("listener bug")
        await self.node_.listen("broken", broken)
        await self.sender.wait_for_listener("broken", timeout=10)
        with self.assertLogs("swiftmesh", logging.ERROR) as logs:
            await self.sender.send("broken", {"n": 1})
            self.assertTrue(await eventually(lambda: any("listener bug" in l for l in logs.output), 5))
        self.assertIn(self.sender.name, logs.output[0])
        self.assertIn("broken", logs.output[0])
        await self.still_works()

    async def test_invalid_json_payload_counts_a_decode_failure(self):
        await self.sender.send("t", b"not json")  # raw bytes reach a listener as bytes
        self.assertTrue(await eventually(lambda: b"not json" in self.got, 5))
        peer = await RawPeer.open(self.node_, self.key, self.sender.identity)
        with self.assertLogs("swiftmesh", logging.WARNING):
            peer.send_frames(self.hello() + p.message_frame(b"t", 1, b"{bad json"))
            self.assertTrue(await eventually(lambda: self.node_.stats["decodeFailures"] == 1, 5))
        peer.writer.close()
        await self.still_works()
