"""Services (serve and call) between Python nodes, through a stub coordinator that knows them.

Services between Python and Swift nodes are tested against the real binaries in
`test_interop.InteropTests.test_services_both_ways`.
"""
import asyncio
import time
import unittest

from support import KEY, eventually  # first: it puts the client on sys.path
from stub_coordinator import StubCoordinator

import swiftmesh


class ServiceTests(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.coordinator = StubCoordinator(KEY)
        self.address = await self.coordinator.start()
        self.addCleanup(self.coordinator.close)

    async def node(self, name):
        node = await asyncio.wait_for(swiftmesh.build_mesh_node(name=name, coordinator=self.address, authkey=KEY), 10)
        self.addAsyncCleanup(node.close)
        return node

    async def test_serve_and_call_with_failures(self):
        provider = await self.node("calculator")
        await provider.serve("add", lambda request: {"sum": request["a"] + request["b"]})

        async def slow_upper(request):
            await asyncio.sleep(0.01)
            return request.upper()
        await provider.serve("upper", slow_upper, raw=True)
        await provider.serve("fail", lambda request: 1 / 0)
        caller = await self.node("caller")
        self.assertTrue(await eventually(lambda: caller.providers("add"), 5))
        self.assertEqual(await caller.call("add", {"a": 2, "b": 3}, timeout=5), {"sum": 5})
        self.assertEqual(await caller.call("upper", b"abc", timeout=5), b"ABC")
        with self.assertRaises(swiftmesh.ServiceError) as failure:
            await caller.call("fail", {}, timeout=5)
        self.assertEqual(failure.exception.code, 1)
        self.assertIn("ZeroDivisionError: division by zero", str(failure.exception))
        # A KeyError keeps its type (its text alone is just 'b'), and the provider logs the failure.
        await provider.serve("lookup", lambda request: {}[request])
        with self.assertLogs("swiftmesh", level="WARNING") as logged:
            with self.assertRaises(swiftmesh.ServiceError) as failure:
                await caller.call("lookup", "b", timeout=5)
        self.assertIn("KeyError: 'b'", str(failure.exception))
        self.assertTrue(any("service lookup failed for caller" in line and "KeyError: 'b'" in line
                            for line in logged.output), logged.output)
        with self.assertRaises(swiftmesh.ServiceError) as failure:
            await caller.call("add", b"raw bytes", timeout=5)  # reach the handler as bytes: it raises
        self.assertEqual(failure.exception.code, 1)
        with self.assertRaises(swiftmesh.ServiceError) as failure:
            await caller.call("nobody", {}, timeout=5)
        self.assertIn("no node provides", str(failure.exception))
        # Many calls at once, answered in any order, each matched by its call id.
        results = await asyncio.gather(*(caller.call("add", {"a": n, "b": n}, timeout=10) for n in range(200)))
        self.assertEqual([r["sum"] for r in results], [2 * n for n in range(200)])
        # Calling oneself goes through the handler without the network.
        self.assertEqual(await provider.call("add", {"a": 1, "b": 1}, timeout=5), {"sum": 2})

    async def test_one_flooding_caller_is_refused_busy_and_an_honest_one_is_answered(self):
        # Issue #22 item 5, at a Python provider: one caller's slow requests take at most 16 of
        # the 64 handler slots and 256 held places; the rest is refused at once with code 5.
        provider = await self.node("provider")
        gate = asyncio.Event()

        async def slow(request):
            await gate.wait()
            return request
        await provider.serve("slow", slow)
        await provider.serve("add", lambda request: {"sum": request["a"] + request["b"]})
        flooder, honest = await self.node("flooder"), await self.node("honest")
        self.assertTrue(await eventually(lambda: flooder.providers("slow") and honest.providers("add"), 5))

        async def attempt(n):
            try:
                return await flooder.call("slow", n, timeout=30)
            except swiftmesh.ServiceError as error:
                return error
        flood = [asyncio.ensure_future(attempt(n)) for n in range(300)]
        self.assertTrue(await eventually(lambda: sum(1 for f in flood if f.done()) >= 44, 10))
        refused = [f.result() for f in flood if f.done()]
        self.assertEqual(len(refused), 44, refused[:3])
        self.assertTrue(all(isinstance(r, swiftmesh.ServiceError) and r.code == 5 for r in refused), refused[:3])
        self.assertIn("busy: this caller already has 256 requests", str(refused[0]))
        self.assertEqual(await honest.call("add", {"a": 2, "b": 3}, timeout=5), {"sum": 5})
        gate.set()
        answered = await asyncio.gather(*flood)
        self.assertEqual(sum(1 for r in answered if not isinstance(r, Exception)), 256)
        self.assertEqual((provider._held_requests, provider._held_bytes, provider._held), (0, 0, {}))

    async def test_groups_take_turns_then_members_within_each(self):
        # PROTOCOL §15.2: one group per call in name order, and each group's members in id order.
        a = sorted([await self.node("a"), await self.node("a")], key=lambda n: n.id)
        b = await self.node("b")
        for provider in (*a, b):
            await provider.serve("who", lambda request, provider=provider: provider.id)
        caller = await self.node("caller")
        self.assertTrue(await eventually(lambda: len(caller.providers("who")) == 3, 5))
        answers = [await caller.call("who", None, timeout=5) for _ in range(6)]
        self.assertEqual(answers, [a[0].id, b.id, a[1].id, b.id, a[0].id, b.id])
        # A group whose every member failed less than 1 s ago is skipped; its turn goes to the next.
        caller._failed[b.id] = time.monotonic()
        answers = [await caller.call("who", None, timeout=5) for _ in range(2)]
        self.assertEqual(answers, [a[1].id, a[0].id])

    async def test_calls_take_turns_and_fail_when_the_provider_goes(self):
        first, second = await self.node("pool"), await self.node("pool")
        await first.serve("who", lambda request: first.id)
        await second.serve("who", lambda request: second.id)
        caller = await self.node("caller")
        self.assertTrue(await eventually(lambda: len(caller.providers("who")) == 2, 5))
        answers = [await caller.call("who", None, timeout=5) for _ in range(4)]
        self.assertEqual(sorted(answers), sorted([first.id, second.id] * 2))
        self.assertNotEqual(answers[0], answers[1])

        async def never(request):
            await asyncio.sleep(30)
        await first.serve("hang", never)
        self.assertTrue(await eventually(lambda: caller.providers("hang"), 5))
        pending = asyncio.ensure_future(caller.call("hang", None, timeout=20))
        await asyncio.sleep(0.2)
        await first.close()
        with self.assertRaises(swiftmesh.ServiceError):
            await asyncio.wait_for(pending, 5)
        with self.assertRaises(asyncio.TimeoutError):
            await second.serve("hang2", never)
            self.assertTrue(await eventually(lambda: caller.providers("hang2"), 5))
            await caller.call("hang2", None, timeout=0.2)
