#!/usr/bin/env python3
"""Measures the Python client: msgs/s and ping-pong p50 of 64-byte messages (open mesh, loopback).

    python3 clients/python/bench.py [--bin DIR] [--runs 3] [--messages 200000]

The keyed row runs the same Python -> Python test through mesh-coordinator with a key (records
and their HMACs on the wire). DIR holds the Swift binaries (default: `swift build -c release --show-bin-path`); the Swift side
of each row is `mesh-bench`'s own receiver and ponger roles. Prints median and min-max per row.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import swiftmesh  # noqa: E402

DATA, END, PING, PONG = "bench.data", "bench.end", "bench.ping", "bench.pong"


def emit(line):
    print(line, flush=True)


KEY = os.environ.get("BENCH_AUTHKEY", "")


async def py_receiver(coordinator, count):
    node = await swiftmesh.build_mesh_node(name="rx", coordinator=coordinator, authkey=KEY)
    state = {"n": 0, "first": 0, "last": 0}
    done = asyncio.get_event_loop().create_future()

    def got(topic, data):
        now = time.monotonic_ns()
        if state["n"] == 0:
            state["first"] = now
        state["n"] += 1
        state["last"] = now
        if state["n"] >= count and not done.done():
            done.set_result(True)
    await node.listen(DATA, got, raw=True)
    emit("READY")
    try:
        await asyncio.wait_for(done, 120)
    except asyncio.TimeoutError:
        pass
    emit("RESULT " + json.dumps({"received": state["n"], "firstNanos": state["first"], "lastNanos": state["last"]}))
    await node.close()


async def py_ponger(coordinator):
    node = await swiftmesh.build_mesh_node(name="ponger", coordinator=coordinator, authkey="")

    async def ping(topic, data):
        await node.send(PONG, data)
    await node.listen(PING, ping, raw=True)
    emit("READY")
    await node.forever()


async def sender(coordinator, count, size):
    node = await swiftmesh.build_mesh_node(name="sender", coordinator=coordinator, authkey=KEY)
    await node.wait_for_listener(DATA, timeout=10)
    payload = b"\xa5" * size
    send = node.send
    first = time.monotonic_ns()
    for _ in range(count):
        await send(DATA, payload)
    await send(END, b"\x01")
    await node.close()  # flushes
    return first


async def pinger(coordinator, warmup, count, size):
    node = await swiftmesh.build_mesh_node(name="pinger", coordinator=coordinator, authkey="")
    loop = asyncio.get_event_loop()
    waiting = []
    await node.listen(PONG, lambda topic, data: waiting.pop().set_result(None), raw=True)
    await node.wait_for_listener(PING, timeout=10)
    payload = b"\x5a" * size
    samples = []
    for round_ in range(warmup + count):
        reply = loop.create_future()
        waiting.append(reply)
        start = time.monotonic_ns()
        await node.send(PING, payload)
        await asyncio.wait_for(reply, 5)
        if round_ >= warmup:
            samples.append(time.monotonic_ns() - start)
    await node.close()
    samples.sort()
    return samples[len(samples) // 2] / 1000


class Child:
    def __init__(self, args):
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def expect(self, prefix, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        raise RuntimeError(f"{self.process.args[:3]}: no {prefix!r} line")

    def stop(self):
        self.process.kill()
        self.process.wait()


def throughput(bin_dir, receiver, messages, size):
    if KEY:
        coordinator = Child([os.path.join(bin_dir, "mesh-coordinator"), "--host", "127.0.0.1", "--port", "0",
                             "--authkey", KEY])
        address = coordinator.expect("mesh-coordinator listening on ")
    else:
        coordinator = Child([os.path.join(bin_dir, "mesh-bench"), "_role", "coordinator"])
        address = coordinator.expect("READY ")
    try:
        if receiver == "swift":
            rx = Child([os.path.join(bin_dir, "mesh-bench"), "_role", "receiver", "--name", "rx", "--count",
                        str(messages), "--payload", "data", "--coordinator", address, "--wait", "120"])
        else:
            rx = Child([sys.executable, __file__, "--role", "py-receiver", "--coordinator", address,
                        "--messages", str(messages)])
        rx.expect("READY")
        first = asyncio.run(sender(address, messages, size))
        result = json.loads(rx.expect("RESULT "))
        rx.stop()
        received = result["received"]
        return received / ((result["lastNanos"] - first) / 1e9), messages - received
    finally:
        coordinator.stop()


def latency(bin_dir, ponger, warmup, count, size):
    coordinator = Child([os.path.join(bin_dir, "mesh-bench"), "_role", "coordinator"])
    address = coordinator.expect("READY ")
    try:
        if ponger == "swift":
            pong = Child([os.path.join(bin_dir, "mesh-bench"), "_role", "ponger", "--coordinator", address])
        else:
            pong = Child([sys.executable, __file__, "--role", "py-ponger", "--coordinator", address])
        pong.expect("READY")
        p50 = asyncio.run(pinger(address, warmup, count, size))
        pong.stop()
        return p50
    finally:
        coordinator.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--pings", type=int, default=5_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--role")
    parser.add_argument("--coordinator")
    args = parser.parse_args()
    if args.role == "py-receiver":
        return asyncio.run(py_receiver(args.coordinator, args.messages))
    if args.role == "py-ponger":
        return asyncio.run(py_ponger(args.coordinator))
    bin_dir = args.bin or subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"],
                                         cwd=os.path.dirname(os.path.dirname(HERE)), capture_output=True,
                                         text=True).stdout.strip()

    def row(label, values, unit, digits=0):
        median = statistics.median(values)
        print(f"{label:<34} {median:>12,.{digits}f} {unit}   (min {min(values):,.{digits}f}, max {max(values):,.{digits}f}, "
              f"{len(values)} runs)", flush=True)

    print(f"Python {sys.version.split()[0]}, {args.size}-byte messages, open mesh on loopback, Swift binaries in {bin_dir}")
    for receiver in ("swift", "python"):
        results = [throughput(bin_dir, receiver, args.messages, args.size) for _ in range(args.runs)]
        lost = sum(r[1] for r in results)
        row(f"Python -> {receiver.capitalize()} msgs/s", [r[0] for r in results], f"msgs/s, lost {lost}")
    global KEY
    KEY = os.environ["BENCH_AUTHKEY"] = "5de539e734a0d667c60d9af0af770fdb7880445a4eb7715eef78bb450b07e14d"
    results = [throughput(bin_dir, "python", args.messages, args.size) for _ in range(args.runs)]
    row("Python -> Python msgs/s, keyed", [r[0] for r in results], f"msgs/s, lost {sum(r[1] for r in results)}")
    KEY = os.environ["BENCH_AUTHKEY"] = ""
    for ponger in ("swift", "python"):
        row(f"Python <-> {ponger.capitalize()} ping-pong p50",
            [latency(bin_dir, ponger, 500, args.pings, args.size) for _ in range(args.runs)], "us")


if __name__ == "__main__":
    main()
