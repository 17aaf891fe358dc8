"""Starts the real Swift binaries for the tests: the coordinator, demos, and the `mesh` tool.

The binaries come from $SWIFT_MESH_BIN, else from `swift build --show-bin-path` at the
repository root. Missing binaries fail the tests loudly; nothing is skipped.
"""
import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(CLIENT))
sys.path.insert(0, CLIENT)

import swiftmesh  # noqa: E402

# A key as `mesh keygen` prints it: the Swift programs refuse one that is easy to guess.
KEY = "3b5800e943141bb9d9021b8e8b38dc7ce1bf39d26d0748124ca066954ffa920f"
_bin = None


def bin_path():
    global _bin
    if _bin is None:
        _bin = os.environ.get("SWIFT_MESH_BIN") or subprocess.run(
            ["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, timeout=120
        ).stdout.strip()
        missing = [b for b in ("mesh-coordinator", "mesh", "demo-receiver", "demo-worker")
                   if not os.path.exists(os.path.join(_bin, b))]
        if missing:
            raise RuntimeError(f"Swift binaries {missing} not found in {_bin!r}: run `swift build` first")
    return _bin


def _unblock_signals():
    """Children start with SIGINT and SIGTERM deliverable, whatever the test runner blocked."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


class Child:
    """A child process whose combined output is collected by a thread, line by line."""

    def __init__(self, args, env=None):
        self.args = args
        self.lines = []
        self._lock = threading.Condition()
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                        text=True, bufsize=1, preexec_fn=_unblock_signals)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def wait_for_line(self, pattern, timeout=15.0, count=1):
        """The first line matching `pattern` (after `count - 1` others); fails the test after `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.args[0]}: no line matching {pattern!r} within {timeout} s; "
                                         f"output: {self.lines[-20:]}")
                self._lock.wait(min(remaining, 0.2))

    def matching(self, pattern):
        regex = re.compile(pattern)
        with self._lock:
            return [line for line in self.lines if regex.search(line)]

    def wait(self, timeout=15.0):
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def stop(self, sig=None):
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._reader.join(2)
        self.process.stdout.close()


class MeshTestCase(unittest.IsolatedAsyncioTestCase):
    """Each test gets a keyed coordinator on 127.0.0.1 and a free port."""

    key = KEY

    def setUp(self):
        self.children = []
        # Cleanups run last-in first-out: nodes close (and say bye) before the processes stop.
        self.addCleanup(self._stop_children)
        self.coordinator = self.start_coordinator()

    def _stop_children(self):
        for child in reversed(self.children):
            child.stop()

    def env(self, **extra):
        env = dict(os.environ)
        env.update(MESH_COORDINATOR=self.address, MESH_AUTHKEY=self.key, PYTHONPATH=CLIENT, MESH_LOG_LEVEL="warning")
        env.update(extra)
        return env

    def start_coordinator(self, port=0):
        child = Child([os.path.join(bin_path(), "mesh-coordinator"), "--host", "127.0.0.1", "--port", str(port)],
                      env=dict(os.environ, MESH_AUTHKEY=self.key))
        self.children.append(child)
        line = child.wait_for_line(r"listening on 127\.0\.0\.1:\d+")
        self.port = int(line.rsplit(":", 1)[1])
        self.address = f"127.0.0.1:{self.port}"
        return child

    def start(self, program, *args, **env):
        """Starts one of the Swift executables with this mesh's address and key."""
        child = Child([os.path.join(bin_path(), program), *args], env=self.env(**env))
        self.children.append(child)
        return child

    def start_python(self, *args, **env):
        child = Child([sys.executable, *args], env=self.env(**env))
        self.children.append(child)
        return child

    def mesh(self, *args, timeout=15.0):
        """Runs the `mesh` tool to completion; returns (exit status, output)."""
        done = subprocess.run([os.path.join(bin_path(), "mesh"), *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    async def node(self, name, **options):
        node = await asyncio.wait_for(
            swiftmesh.build_mesh_node(name=name, coordinator=self.address, authkey=self.key, **options), 15)
        self.addAsyncCleanup(node.close)
        return node


async def drive(handshake, reader, writer, timeout=5.0):
    """Runs a protocol.Handshake over a stream until it is established; on failure writes what it
    owes (a refusal) and raises its HandshakeError."""
    first = handshake.start()
    if first:
        writer.write(first)
    while not handshake.established:
        piece = await asyncio.wait_for(reader.readexactly(handshake.bytes_wanted), timeout)
        try:
            answer, _ = handshake.receive(piece)
        except swiftmesh.HandshakeError:
            if handshake.pending:
                writer.write(handshake.pending)
            raise
        if answer:
            writer.write(answer)
    return handshake


async def eventually(predicate, timeout, interval=0.05):
    """Waits until `predicate()` is true; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


async def line(child, pattern, timeout=15.0, count=1):
    """`Child.wait_for_line` without blocking the event loop (the Python nodes keep running)."""
    return await asyncio.get_event_loop().run_in_executor(None, child.wait_for_line, pattern, timeout, count)


async def run(test, function, *args, **kwargs):
    """A blocking call (the `mesh` tool) on a thread, so the Python nodes keep running."""
    return await asyncio.get_event_loop().run_in_executor(None, lambda: function(*args, **kwargs))
