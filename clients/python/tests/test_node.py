"""The node API against the real Swift coordinator and `mesh` tool: routing, listens, kill, status."""
import asyncio
import collections
import json
import os

from support import Child, MeshTestCase, bin_path, eventually, line, run

import swiftmesh


class NodeTests(MeshTestCase):
    async def group(self, name, count, topic):
        got = collections.defaultdict(list)
        nodes = [await self.node(name) for _ in range(count)]
        for node in nodes:
            await node.listen(topic, lambda t, data, node=node: got[node.id].append(data))
        return nodes, got

    async def test_round_robin_starts_at_the_lowest_id_and_takes_turns(self):
        nodes, got = await self.group("pool", 3, "rr")
        sender = await self.node("rr-sender")
        await sender.wait_for_listener("rr", count=3, timeout=10)
        ids = sorted(node.id for node in nodes)
        for n in range(6):
            await sender.send("rr", n)
        self.assertTrue(await eventually(lambda: sum(map(len, got.values())) == 6, 10))
        self.assertEqual([got[i] for i in ids], [[0, 3], [1, 4], [2, 5]])

    async def test_broadcast_and_random(self):
        nodes, got = await self.group("all", 3, "bc")
        broadcaster = await self.node("bc-sender", load_balancing="broadcast")
        await broadcaster.wait_for_listener("bc", count=3, timeout=10)
        self.assertEqual(await broadcaster.send("bc", "x"), 3)
        self.assertTrue(await eventually(lambda: all(got[n.id] == ["x"] for n in nodes), 10), dict(got))
        randomizer = await self.node("rnd-sender", load_balancing="random")
        await randomizer.wait_for_listener("bc", count=3, timeout=10)
        for _ in range(60):
            self.assertEqual(await randomizer.send("bc", "r"), 1)
        self.assertTrue(await eventually(lambda: sum(len(v) for v in got.values()) == 63, 10))
        self.assertTrue(all(v.count("r") > 0 for v in got.values()), dict(got))

    async def test_self_delivery_counts_as_sent_and_received(self):
        node = await self.node("self")
        got = []
        await node.listen("me", lambda t, data: got.append(data))
        self.assertEqual(await node.send("me", {"a": [1, 2]}), 1)
        self.assertTrue(await eventually(lambda: got == [{"a": [1, 2]}], 5))
        self.assertEqual((node.stats["messagesSent"], node.stats["messagesReceived"]), (1, 1))

    async def test_stop_listening_and_wait_for_listener_timeout(self):
        node = await self.node("fickle")
        await node.listen("maybe", lambda t, d: None)
        code, output = await run(self, self.mesh, "topic", "list", "--json")
        self.assertIn("maybe", output)
        await node.stop_listening("maybe")
        code, output = await run(self, self.mesh, "topic", "list", "--json")
        self.assertEqual(code, 0, output)
        self.assertNotIn("maybe", output)
        with self.assertRaises(asyncio.TimeoutError):
            await node.wait_for_listener("maybe", timeout=0.3)
        self.assertEqual(await node.send("maybe", 1), 0)
        self.assertEqual(node.stats["messagesUnrouted"], 1)
        with self.assertRaises(swiftmesh.InvalidName):
            await node.send("bad\ttopic", 1)
        with self.assertRaises(swiftmesh.FrameTooLarge):
            await node.send("maybe", b"x" * (8 << 20 + 1))

    async def test_mesh_node_kill_ends_forever_and_status_shows_counters(self):
        node = await self.node("victim")
        await node.listen("v", lambda t, d: None)
        await node.send("v", 1)
        await asyncio.sleep(1.5)  # a heartbeat carries the counters
        code, output = await run(self, self.mesh, "status", "--json")
        self.assertEqual(code, 0, output)
        status = json.loads(output)
        mine = [n for n in status["nodes"] if n["id"] == node.id]
        self.assertEqual(mine[0]["stats"]["messagesSent"], 1, output)
        code, output = await run(self, self.mesh, "node", "kill", "victim")
        self.assertEqual(code, 0, output)
        self.assertIn(node.id, output)
        await asyncio.wait_for(node.forever(), 5)
        self.assertTrue(node.is_closed)

    async def test_a_bad_registration_is_reported(self):
        with self.assertRaises(swiftmesh.InvalidName):
            swiftmesh.MeshNode("bad\x07name")
        with self.assertRaises(swiftmesh.CoordinatorUnreachable):
            await swiftmesh.build_mesh_node(name="lost", coordinator="127.0.0.1:1", authkey=self.key)


class OpenMeshTests(MeshTestCase):
    """No key anywhere: plain frames, no records."""

    key = ""

    async def test_open_mesh_both_directions(self):
        receiver = self.start("demo-receiver")
        await line(receiver, "receiver listening")
        node = await self.node("open-sender")
        await node.wait_for_listener("some-topic", timeout=10)
        await node.send("some-topic", {"hello": "open"})
        await line(receiver, '"hello": "open"')
        got_python = []
        listener = await self.node("open-listener")
        await listener.listen("py", lambda t, d: got_python.append(d))
        await node.wait_for_listener("py", timeout=10)
        for n in range(100):
            await node.send("py", n)
        report = await node.close()  # confirmed by a Swift receiver and a Python one
        self.assertEqual((report.confirmed, report.unconfirmed), (101, 0), report)
        self.assertEqual(len(got_python), 100)  # confirmed: taken before the answer went out
        node = await self.node("open-sender-2")
        await node.wait_for_listener("some-topic", timeout=10)
        got = []
        await node.listen("back", lambda t, d: got.append(d))
        code, output = await run(self, self.mesh, "topic", "send", "back", '"x"')
        self.assertEqual(code, 0, output)
        self.assertTrue(await eventually(lambda: got == ["x"], 5))

    async def test_key_on_one_side_only(self):
        with self.assertRaises(swiftmesh.AuthenticationFailed) as failure:
            await swiftmesh.build_mesh_node(name="keyed", coordinator=self.address, authkey="a-key-the-mesh-has-not")
        self.assertIn("does not use one", str(failure.exception))


class QueuePolicyTests(MeshTestCase):
    """A receiver that never completes the handshake: messages queue, and the policy decides."""

    async def stalled_receiver(self, sender):
        # A node record pointing at a socket that accepts and then never reads nor answers.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        self.addCleanup(server.close)
        port = server.sockets[0].getsockname()[1]
        # A valid identity, so a keyed sender dials it (protocol version 3 dials only records whose key gives the id).
        identity = swiftmesh.Identity.generate()
        self.stalled_id = identity.id
        record = {"id": identity.id, "key": identity.public.hex(), "name": "stalled", "host": "127.0.0.1", "port": port,
                  "topics": ["q"]}
        sender.topology[record["id"]] = record
        sender._topology_changed()

    async def test_drop_newest_and_drop_oldest_bound_the_queue(self):
        for policy in (swiftmesh.Policy.DROP_NEWEST, swiftmesh.Policy.DROP_OLDEST):
            sender = await self.node(f"q-{policy.kind}", when_peer_queue_full=policy,
                                     maximum_queued_bytes_per_peer=64 * 1024)
            await self.stalled_receiver(sender)
            for _ in range(200):
                await sender.send("q", b"x" * 1024)
            peer = sender._peers[self.stalled_id].connection
            self.assertLessEqual(peer.queued_bytes, 64 * 1024 + 2048)
            self.assertGreater(sender.stats["messagesDropped"], 100)
            self.assertTrue(peer._out.startswith(p_frame_hello(sender)), "the peer hello stays first")

    async def test_close_reports_what_a_receiver_did_not_confirm(self):
        sender = await self.node("q-unconfirmed")
        await self.stalled_receiver(sender)
        for _ in range(3):
            await sender.send("q", b"x")
        report = await sender.close()
        self.assertEqual((report.confirmed, report.unconfirmed), (0, 3))
        self.assertEqual(report.receivers, [f"stalled ({self.stalled_id}) did not confirm 3"])
        self.assertFalse(report.is_complete)

    async def test_wait_policy_gives_up_after_its_timeout(self):
        sender = await self.node("q-wait", when_peer_queue_full=swiftmesh.Policy.wait(0.3),
                                 maximum_queued_bytes_per_peer=4 * 1024)
        await self.stalled_receiver(sender)
        for _ in range(3):
            await sender.send("q", b"x" * 1024)
        self.assertEqual(sender.stats["messagesDropped"], 0)
        started = asyncio.get_event_loop().time()
        await sender.send("q", b"x" * 1024)
        self.assertGreaterEqual(asyncio.get_event_loop().time() - started, 0.25)
        self.assertEqual(sender.stats["messagesDropped"], 1)


def p_frame_hello(node):
    from swiftmesh import protocol as p
    body = json.dumps({"id": node.id, "name": node.name}, separators=(",", ":"), ensure_ascii=False).encode()
    return p.frame(p.KIND_PEER_HELLO, body)


class InboxBoundTests(MeshTestCase):
    async def test_a_slow_listener_pauses_reading_and_loses_nothing(self):
        receiver = await self.node("slow", maximum_inbox_bytes=64 * 1024)
        gate = asyncio.Event()
        got = []

        async def slow(topic, data):
            await gate.wait()
            got.append(data)
        await receiver.listen("s", slow, raw=True)
        sender = await self.node("fast")
        await sender.wait_for_listener("s", timeout=10)
        for n in range(2000):
            await sender.send("s", n.to_bytes(4, "big") + b"x" * 1020)
        self.assertTrue(await eventually(lambda: receiver._paused_inbound, 10))
        await asyncio.sleep(0.3)
        # Bounded: the limit plus what one read can bring (records of at most 64 KiB, socket reads).
        self.assertLess(receiver._inbox_bytes, 64 * 1024 + 512 * 1024)
        gate.set()
        self.assertTrue(await eventually(lambda: len(got) == 2000, 20), len(got))
        self.assertEqual([int.from_bytes(d[:4], "big") for d in got], list(range(2000)))
