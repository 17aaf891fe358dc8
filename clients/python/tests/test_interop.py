"""The Python client against the real Swift coordinator, nodes and `mesh` tool."""
import asyncio
import base64
import collections
import json
import os
import signal
import time

from support import MeshTestCase, drive, eventually, line, run

import swiftmesh


class InteropTests(MeshTestCase):
    async def test_python_to_swift_json(self):
        receiver = self.start("demo-receiver")
        await line(receiver, "receiver listening on some-topic")
        node = await self.node("sender")
        await node.wait_for_listener("some-topic", timeout=10)
        self.assertEqual(await node.send("some-topic", {"hello": "world!"}), 1)
        await line(receiver, r'receiver got: topic=some-topic; data=\["hello": "world!"\]')

    async def test_python_to_swift_raw_bytes(self):
        echo = self.start("mesh", "topic", "echo", "camera", "--count", "1")
        node = await self.node("camera")
        await node.wait_for_listener("camera", timeout=10)
        await node.send("camera", b"\xff\x00\x01")
        printed = json.loads(await line(echo, r'"topic":"camera"'))
        self.assertEqual(printed["sender"], "camera")
        self.assertEqual(printed["senderId"], node.id)
        self.assertEqual(base64.b64decode(printed["base64"]), b"\xff\x00\x01")

    async def test_swift_to_python_json_and_raw_view(self):
        node = await self.node("py-listener")
        typed, raw = [], []
        await node.listen("jobs", lambda topic, data: typed.append((topic, data)))
        await node.listen("jobs-raw", lambda topic, data: raw.append(data), raw=True)
        code, output = await run(self, self.mesh, "topic", "send", "jobs", '{"job": 7, "name": "naïve/ü"}')
        self.assertEqual(code, 0, output)
        code, output = await run(self, self.mesh, "topic", "send", "jobs-raw", '[1, 2.5, null, true]')
        self.assertEqual(code, 0, output)
        self.assertTrue(await eventually(lambda: typed and raw, 10))
        self.assertEqual(typed, [("jobs", {"job": 7, "name": "naïve/ü"})])
        self.assertEqual(json.loads(raw[0]), [1, 2.5, None, True])
        self.assertIsInstance(raw[0], bytes)

    async def test_python_to_pool_of_swift_workers_even_split(self):
        workers = [self.start("demo-worker") for _ in range(3)]
        for worker in workers:
            await line(worker, r"worker \d+ ready")
        node = await self.node("dispatcher")
        await node.wait_for_listener("jobs", count=3, timeout=10)
        for job in range(1, 31):
            await node.send("jobs", {"job": job})
        for worker in workers:
            await line(worker, r"got job", count=10)
        await asyncio.sleep(0.3)
        counts = [len(worker.matching(r"got job")) for worker in workers]
        self.assertEqual(counts, [10, 10, 10])
        jobs = sorted(int(l.rsplit(" ", 1)[1]) for w in workers for l in w.matching(r"got job"))
        self.assertEqual(jobs, list(range(1, 31)))

    async def test_swift_to_pool_of_python_workers_even_split(self):
        got = collections.defaultdict(list)
        nodes = [await self.node("worker") for _ in range(3)]
        for node in nodes:
            await node.listen("jobs", lambda topic, data, node=node: got[node.id].append(data["job"]))
        dispatcher = self.start("demo-worker", "--dispatch", "30", "--workers", "3")
        self.assertEqual(await run(self, dispatcher.wait, 20), 0, dispatcher.lines)
        self.assertTrue(await eventually(lambda: sum(map(len, got.values())) == 30, 10), dict(got))
        self.assertEqual(sorted(len(jobs) for jobs in got.values()), [10, 10, 10])
        self.assertEqual(sorted(j for jobs in got.values() for j in jobs), list(range(1, 31)))

    async def test_ten_thousand_messages_in_order_to_swift_and_to_python(self):
        echo = self.start("mesh", "topic", "echo", "seq", "--count", "10000")
        receiver = await self.node("py-seq")
        seen = []
        await receiver.listen("seq", lambda topic, data: seen.append(data["n"]))
        sender = await self.node("seq-sender")
        await sender.wait_for_listener("seq", count=2, timeout=10)
        for n in range(10000):
            self.assertEqual(await sender.send("seq", {"n": n}), 2)
        await line(echo, r'"data":\{"n":9999\}', timeout=60)
        printed = [json.loads(l)["data"]["n"] for l in echo.matching(r'"topic":"seq"')]
        self.assertEqual(printed, list(range(10000)))
        self.assertTrue(await eventually(lambda: len(seen) == 10000, 30), len(seen))
        self.assertEqual(seen, list(range(10000)))

    async def test_wrong_key_is_refused_on_both_sides(self):
        # Python connecting with the wrong key: the Swift coordinator refuses it.
        with self.assertRaises(swiftmesh.AuthenticationFailed):
            await swiftmesh.build_mesh_node(name="intruder", coordinator=self.address,
                                            authkey="not-the-mesh-key-at-all")
        await line(self.coordinator, "rejected connection from .*wrong key")
        # A Swift client with the wrong key is refused by the coordinator too, and says so.
        code, output = await run(self, self.mesh, "node", "list", "--authkey",
                                 "2820e28bae898a6753faf59e1210006f549bdf463a6139093e4cc268730da32a")
        self.assertEqual(code, 1, output)
        # The Python node's own peer port refuses a connector with the wrong key, and goes on.
        node = await self.node("guarded")
        handshake = swiftmesh.protocol.Handshake(True, swiftmesh.protocol.PURPOSE_DATA,
                                                 swiftmesh.protocol.stretch_key("not-the-mesh-key-at-all"),
                                                 swiftmesh.protocol.Identity.generate(),
                                                 expected_peer_id=bytes.fromhex(node.id), peer_key=node.identity.public)
        reader, writer = await asyncio.open_connection(node.host, node.port)
        with self.assertRaises(swiftmesh.HandshakeError) as failure:
            await drive(handshake, reader, writer)
        self.assertEqual(failure.exception.reason, "rejectedByPeer")
        writer.close()
        receiver = self.start("demo-receiver")
        await line(receiver, "receiver listening")
        await node.wait_for_listener("some-topic", timeout=10)
        await node.send("some-topic", {"still": "working"})
        await line(receiver, "still")

    async def test_python_node_listed_and_removed_within_3_s_after_kill(self):
        child = self.start_python("-m", "swiftmesh.demo.receiver")
        await line(child, "receiver listening on some-topic")
        code, output = await run(self, self.mesh, "node", "list", "--json")
        self.assertEqual(code, 0, output)
        listed = json.loads(output)
        mine = [n for n in listed if n.get("pid") == child.process.pid]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0]["name"], "receiver")
        self.assertEqual(mine[0]["topics"], ["some-topic"])
        os.kill(child.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def gone():
            code, output = self.mesh("node", "list", "--json")
            return code == 0 and not any(n.get("pid") == child.process.pid for n in json.loads(output))
        while not await run(self, gone):
            self.assertLess(time.monotonic() - killed_at, 3.0, "still listed 3 s after SIGKILL")
            await asyncio.sleep(0.1)

    async def test_survives_a_coordinator_restart(self):
        node = await self.node("survivor")
        got = []
        await node.listen("after-restart", lambda topic, data: got.append(data))
        self.coordinator.stop(signal.SIGKILL)
        await asyncio.sleep(0.5)
        self.start_coordinator(self.port)
        self.assertTrue(await eventually(lambda: node._registered and node.id in node.topology, 15))
        self.assertEqual(node.stats["coordinatorReconnects"], 1)
        code, output = await run(self, self.mesh, "topic", "send", "after-restart", '{"n": 1}', "--timeout", "10")
        self.assertEqual(code, 0, output)
        self.assertTrue(await eventually(lambda: got == [{"n": 1}], 10), got)

    async def test_per_topic_counters_reach_status_and_survive_a_coordinator_restart(self):
        # Issue #22: a Python listener sent no per-topic counters, and a re-registered node's
        # totals started again at 0.
        node = await self.node("counted")
        got = []
        await node.listen("counted-topic", lambda topic, data: got.append(data))
        code, output = await run(self, self.mesh, "topic", "send", "counted-topic", '{"n": 1}', "--count", "3",
                                 "--timeout", "10")
        self.assertEqual(code, 0, output)
        self.assertTrue(await eventually(lambda: len(got) == 3, 10), got)

        def entry():
            code, output = self.mesh("status", "--json")
            if code != 0:
                return None
            mine = [n for n in json.loads(output)["nodes"] if n["id"] == node.id]
            return mine[0]["stats"] if mine else None

        async def wait_for_entry(predicate, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                stats = await run(self, entry)
                if stats is not None and predicate(stats):
                    return stats
                await asyncio.sleep(0.2)
            return await run(self, entry)

        def counted(stats):
            return stats.get("topics", {}).get("counted-topic", {}).get("messagesReceived") == 3

        stats = await wait_for_entry(counted, 10)
        self.assertTrue(stats is not None and counted(stats), stats)
        # Payload bytes: `mesh topic send` re-encodes the value as {"n":1}.
        self.assertEqual(stats["topics"]["counted-topic"]["bytesReceived"], 3 * len(b'{"n":1}'), stats)
        self.assertEqual(stats["messagesReceived"], 3, stats)

        self.coordinator.stop(signal.SIGKILL)
        await asyncio.sleep(0.5)
        self.start_coordinator(self.port)
        # The first entry the fresh coordinator shows already has the totals: never a 0 between.
        first = await wait_for_entry(lambda stats: True, 15)
        self.assertIsNotNone(first)
        self.assertEqual(first["messagesReceived"], 3, first)
        self.assertTrue(counted(first), first)

    async def test_demos_print_what_the_swift_demos_print(self):
        receiver = self.start_python("-m", "swiftmesh.demo.receiver")
        await line(receiver, "^receiver listening on some-topic$")
        sender = self.start("demo-sender")
        self.assertEqual(await run(self, sender.wait, 20), 0)
        await line(receiver, r'^receiver got: topic=some-topic; data=\["hello": "world!"\]$')
        receiver.stop()  # SIGTERM: a clean exit, and it leaves the group "receiver" to the Swift one
        self.assertEqual(receiver.process.returncode, 0, receiver.lines)
        swift_receiver = self.start("demo-receiver")
        await line(swift_receiver, "receiver listening")
        py_sender = self.start_python("-m", "swiftmesh.demo.sender")
        self.assertEqual(await run(self, py_sender.wait, 20), 0)
        self.assertIn('sender sent: topic=some-topic; data=["hello": "world!"]', py_sender.lines)
        await line(swift_receiver, r'receiver got: topic=some-topic; data=\["hello": "world!"\]')

    async def test_services_both_ways(self):
        # Python calls a Swift provider (Demo/demo-service: add, uppercase).
        provider = self.start("demo-service")
        await line(provider, "ready")
        node = await self.node("py-caller")
        self.assertTrue(await eventually(lambda: node.providers("add"), 10), "the provider never appeared")
        self.assertEqual(await node.call("add", {"a": 2, "b": 3}, timeout=10), {"sum": 5})
        self.assertEqual(await node.call("uppercase", "hello mesh", timeout=10), "HELLO MESH")
        # A Swift caller (`mesh service call`) calls a Python provider.
        py_provider = await self.node("py-provider")
        await py_provider.serve("double", lambda request: {"twice": request["n"] * 2})
        code, output = await run(self, self.mesh, "service", "call", "double", '{"n": 21}')
        self.assertEqual(code, 0, output)
        self.assertEqual(json.loads(output.strip().splitlines()[-1]), {"twice": 42})
        # A handler that raises: the Swift caller gets an error naming the service, exit 1.
        def broken(request):
            raise ValueError("no such thing")
        await py_provider.serve("broken", broken)
        code, output = await run(self, self.mesh, "service", "call", "broken", "1")
        self.assertEqual(code, 1, output)
        self.assertIn("broken", output)


class UnixSocketTests(MeshTestCase):
    """MESH_SAME_HOST_TRANSPORT=unix: the padded abstract name and the `local` scope, both ways."""

    async def test_unix_sockets_both_ways(self):
        receiver = self.start("demo-receiver", MESH_SAME_HOST_TRANSPORT="unix")
        await line(receiver, "receiver listening")
        node = await self.node("unix-py", same_host_transport="unix")
        await node.wait_for_listener("some-topic", timeout=10)
        swift = [r for r in node.topology.values() if r["name"] == "receiver"][0]
        self.assertEqual(swift.get("local"), swiftmesh.protocol.local_scope())
        self.assertEqual(node.topology[node.id].get("local"), swift["local"])
        await node.send("some-topic", {"via": "unix"})
        await line(receiver, '"via": "unix"')
        self.assertEqual(node._peers[swift["id"]].connection.remote, "unix")
        got = []
        await node.listen("back", lambda t, d: got.append(d))
        sender = self.start("mesh", "topic", "send", "back", '"over unix"', MESH_SAME_HOST_TRANSPORT="unix")
        self.assertEqual(await run(self, sender.wait, 20), 0, sender.lines)
        self.assertTrue(await eventually(lambda: got == ["over unix"], 5), got)
