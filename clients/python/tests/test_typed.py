"""Typed and latched topics (PROTOCOL.md §16) from Python, against the real Swift coordinator and tools."""
import asyncio
import json
import os
import signal
import time

from support import MeshTestCase, eventually, line

import swiftmesh
from swiftmesh import protocol as p

POSE = {"x": float, "y": float, "theta": float, "frame?": str}
TWIST = {"linear": float, "angular": float}


class TypedTopicTests(MeshTestCase):
    async def test_shapes_and_fingerprints_match_the_swift_node(self):
        # The Swift test suite expects the same two fingerprints for its Pose and Twist structs.
        self.assertEqual(p.shape(POSE), "{frame?:string,theta:float,x:float,y:float}")
        self.assertEqual(p.fingerprint(POSE), "7343ed982d6d6e7f")
        self.assertEqual(p.fingerprint(TWIST), "8a6b962494ec90d0")
        self.assertEqual(p.shape({"steps": [POSE], "tags": {"*": int}}),
                         "{steps:[{frame?:string,theta:float,x:float,y:float}],tags:{*:int}}")

    async def test_a_sender_of_another_type_is_refused_naming_both(self):
        listener = await self.node("mapper")
        got = []
        await listener.listen("pose", lambda topic, data: got.append(data), type_name="Pose", schema=POSE)
        sender = await self.node("talker")
        await sender.wait_for_listener("pose", timeout=10)
        started = time.monotonic()
        with self.assertRaises(swiftmesh.TypeMismatch) as caught:
            await sender.send("pose", {"linear": 1.0, "angular": 0.0}, type_name="Twist", schema=TWIST)
        self.assertLess(time.monotonic() - started, 1.0)
        for word in ("Pose", "Twist", "mapper", "talker"):
            self.assertIn(word, str(caught.exception))
        self.assertEqual(await sender.send("pose", {"x": 1.0, "y": 2.0, "theta": 0.0}, type_name="Pose", schema=POSE), 1)
        self.assertTrue(await eventually(lambda: got, 10))
        # `mesh topic info` shows the type, its fingerprint and both nodes.
        code, output = self.mesh("topic", "info", "pose", "--json")
        self.assertEqual(code, 0, output)
        info = json.loads(output)
        self.assertEqual(info["types"], [{"name": "Pose", "fingerprint": "7343ed982d6d6e7f"}])
        self.assertEqual({m["name"] for m in info["senders"]}, {"talker"})
        self.assertEqual({m["name"] for m in info["listeners"]}, {"mapper"})

    async def test_a_listener_of_another_type_is_refused_and_left_nothing(self):
        sender = await self.node("talker")
        await sender.send("cmd", {"linear": 1.0, "angular": 0.0}, type_name="Twist", schema=TWIST)
        listener = await self.node("mapper")
        with self.assertRaises(swiftmesh.TypeMismatch):
            await listener.listen("cmd", lambda topic, data: None, type_name="Pose", schema=POSE)
        record = listener.topology.get(listener.id, {})
        self.assertNotIn("cmd", record.get("topics", ()))

    async def test_latched_value_reaches_a_late_python_listener_and_a_late_echo(self):
        sender = await self.node("mapper")
        for version in (1, 2, 3):
            await sender.send("map", {"version": version}, latched=True)
        await asyncio.sleep(0)  # nothing listens yet: the value is only kept
        late = await self.node("planner")
        got = []
        started = time.monotonic()
        await late.listen("map", lambda topic, data: got.append(data))
        self.assertTrue(await eventually(lambda: got, 10))
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(got, [{"version": 3}])
        await sender.send("map", {"version": 4}, latched=True)
        self.assertTrue(await eventually(lambda: len(got) == 2, 10))
        self.assertEqual(got, [{"version": 3}, {"version": 4}])
        # The Swift `mesh topic echo`, started later, prints the value at once.
        echo = self.start("mesh", "topic", "echo", "map", "--count", "1")
        printed = json.loads(await line(echo, r'"topic":"map"'))
        self.assertEqual(printed["data"], {"version": 4})

    async def test_the_readme_example_runs_as_written_and_stops_on_ctrl_c(self):
        readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
        code = readme.split("```python\n", 1)[1].split("```", 1)[0]
        example = self.start_python("-c", code, PYTHONUNBUFFERED="1")  # a terminal would be line-buffered
        await line(example, r"some-topic \{'hello': 'world!'\}")
        example.stop(signal.SIGINT)
        output = "\n".join(example.lines)
        self.assertEqual(example.process.returncode, 0, output)
        self.assertNotIn("Traceback", output)

    async def test_forever_waits_until_cancelled(self):
        task = asyncio.ensure_future(swiftmesh.forever())
        await asyncio.sleep(0.05)
        self.assertFalse(task.done())
        task.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await task


class ClosedReceiverTests(MeshTestCase):
    async def test_nothing_reaches_a_listener_after_close_returns(self):
        receiver = await self.node("receiver")
        calls = []
        closed = {"at": None}
        await receiver.listen("t", lambda topic, data: calls.append((closed["at"] is not None, data)))
        sender = await self.node("sender")
        await sender.wait_for_listener("t", timeout=10)
        for n in range(5):
            await sender.send("t", n)
        self.assertTrue(await eventually(lambda: len(calls) == 5, 10))
        await receiver.close()
        closed["at"] = time.monotonic()
        # Sends that still find the departed receiver's connection are refused there, not
        # delivered; once the sender has seen the receiver leave, they are unrouted. Which one a
        # send meets depends on when the leave arrives, so the test counts both.
        unrouted_before = sender.stats["messagesUnrouted"]
        for n in range(5, 50):
            await sender.send("t", n)
        unrouted = sender.stats["messagesUnrouted"] - unrouted_before
        report = await sender.close()
        self.assertFalse(any(after for after, _ in calls), calls)
        self.assertEqual([data for _, data in calls], list(range(5)))
        self.assertGreaterEqual(report.confirmed + report.unconfirmed + unrouted, 45, (report, unrouted))
