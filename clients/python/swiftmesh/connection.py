"""One mesh connection on asyncio: the handshake, then frames, sealed into ChaCha20-Poly1305 records with a key."""
import asyncio
import socket
import time

from . import protocol as p

HANDSHAKE_TIMEOUT = 5.0
HELLO_TIMEOUT = 2.0
STALL_WINDOW = 5.0
STALL_MINIMUM = 1024
EAGER_FLUSH_BYTES = 256 * 1024


class Connection(asyncio.Protocol):
    """A connection that runs the handshake, then exchanges frames.

    `on_frames(connection, frames)` gets a list of (kind, body) for each read; it may raise
    ProtocolError, which closes the connection. `on_close(connection, reason)` is called once,
    with None for a close this side asked for without an error.
    """

    def __init__(self, handshake, maximum_frame_length, on_frames, on_close, on_open=None, label=""):
        self.handshake = handshake
        self.maximum_frame_length = maximum_frame_length
        self.on_frames = on_frames
        self.on_close = on_close
        self.on_open = on_open
        self.label = label
        self.loop = asyncio.get_event_loop()
        self.transport = None
        self.remote = None
        self.is_open = False
        self.closed = False
        self.close_reason = None
        self._incoming = bytearray()
        self._frames = bytearray()
        self._early = bytearray()
        self._out = bytearray()
        self._wire = bytearray()
        self._sending_key = None
        self._opener = None
        self._flush_scheduled = False
        self._write_paused = False
        self._room = None
        self._timers = []
        self._reading_paused = False
        self._stall_since = None
        self._stall_bytes = 0
        self.opened = self.loop.create_future()
        self.peer_id = ""
        self.purpose = None
        self.raw_frames = False
        self.hello_length = 0
        # Message frames queued on a data connection this node dialled, and the receiver's
        # answer to the closing frame once it came (PROTOCOL §8.3).
        self.messages_sent = 0
        self.confirmed = None

    # MARK: asyncio callbacks

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else "unix"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._timers.append(self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout))
        if not self.handshake.connector:
            self._timers.append(self.loop.call_later(HELLO_TIMEOUT, self._hello_timeout))
        transport.set_write_buffer_limits(high=4 << 20)
        hello = self.handshake.start()
        if hello:
            transport.write(hello)

    def data_received(self, data):
        if self.closed:
            return
        try:
            if not self.is_open:
                data = self._handshake_bytes(data)
                if not self.is_open or not data:
                    return
            self._receive(data)
        except (p.ProtocolError, p.HandshakeError) as error:
            self.close(str(error), handshake=isinstance(error, p.HandshakeError))
        except ValueError as error:
            self.close(f"malformed frame: {error}")

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if not self.closed:
            if exc is None:
                reason = "disconnected (peer closed the connection)"
            else:
                reason = f"disconnected ({exc})"
            if not self.is_open:
                reason = "peer closed the connection during the handshake (wrong key, or a different protocol?)"
            self._finish(reason)

    def pause_writing(self):
        self._write_paused = True

    def resume_writing(self):
        self._write_paused = False
        self._wake_room()

    # MARK: handshake

    def _handshake_bytes(self, data):
        handshake = self.handshake
        index = 0
        while not handshake.established and index < len(data):
            wanted = handshake.bytes_wanted
            piece = data[index:index + wanted]
            index += len(piece)
            try:
                answer, done = handshake.receive(piece)
            except p.HandshakeError:
                if handshake.pending:
                    try:
                        self.transport.write(handshake.pending)
                    except Exception:
                        pass
                raise
            if answer:
                self.transport.write(answer)
            if done:
                self._established()
        return data[index:]

    def _established(self):
        handshake = self.handshake
        self.is_open = True
        self.peer_id = handshake.peer_id.hex()
        self.purpose = handshake.purpose
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if handshake.ciphers is not None:
            self._sending_key = handshake.ciphers[0]
            self._opener = p.RecordOpener(handshake.ciphers[1], self.maximum_frame_length)
        if not self.opened.done():
            self.opened.set_result(True)
        if self.on_open:
            self.on_open(self)
        if self._out:
            self.flush()

    def _handshake_timeout(self):
        if not self.is_open and not self.closed:
            if self.handshake.awaiting_acceptor:
                self.close(f"no mesh hello from the address within {int(HANDSHAKE_TIMEOUT)} s: a node's data port "
                           "speaks first, so another program may be listening there (the node may advertise a port "
                           "that is not its own); nothing was written to it", handshake=True)
            else:
                self.close(f"no handshake from peer within {int(HANDSHAKE_TIMEOUT)} s", handshake=True)

    def _hello_timeout(self):
        if not self.is_open and not self.closed and len(self.handshake.peer_hello) == 0:
            self.close(f"no handshake hello from peer within {int(HELLO_TIMEOUT)} s", handshake=True)

    # MARK: reading

    def _receive(self, data):
        if self._opener is not None:
            self._opener.open(data, self._frames)
        else:
            self._frames += data
        if self.raw_frames:
            self.on_frames(self, self._frames)
            self._check_stall(len(data))
            return
        frames = p.split_frames(self._frames, self.maximum_frame_length)
        self._check_stall(len(data))
        if frames:
            self.on_frames(self, frames)

    def _check_stall(self, count):
        partial = len(self._frames) > 0 or (self._opener is not None and self._opener.holds_partial)
        if not partial:
            self._stall_since = None
            return
        now = time.monotonic()
        if self._stall_since is None:
            self._stall_since, self._stall_bytes = now, 0
            self._timers.append(self.loop.call_later(STALL_WINDOW, self._stall_check))
            return
        self._stall_bytes += count
        if self._stall_bytes >= STALL_MINIMUM:
            self._stall_since, self._stall_bytes = now, 0

    def _stall_check(self):
        if self.closed or self._stall_since is None or self._reading_paused:
            return
        if time.monotonic() - self._stall_since >= STALL_WINDOW - 0.01:
            self.close(f"protocol violation: stalled mid-frame: fewer than {STALL_MINIMUM} bytes in "
                       f"{int(STALL_WINDOW)} s")
        else:
            self._timers.append(self.loop.call_later(STALL_WINDOW, self._stall_check))

    def set_reading_paused(self, paused):
        if self.closed or self.transport is None or paused == self._reading_paused:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self._stall_since = None
            self.transport.resume_reading()

    # MARK: writing

    def send(self, frame_bytes):
        """Queues one or more whole frames; returns False when the connection is closed."""
        if self.closed:
            return False
        self._out += frame_bytes
        if self.is_open:
            if len(self._out) >= EAGER_FLUSH_BYTES:
                self.flush()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self.flush)
        return True

    @property
    def queued_bytes(self):
        size = len(self._out)
        if self.transport is not None and not self.closed:
            size += self.transport.get_write_buffer_size()
        return size

    def flush(self):
        self._flush_scheduled = False
        if self.closed or not self.is_open or not self._out:
            return
        frames = self._out
        self._out = bytearray()
        if self._sending_key is not None:
            wire = bytearray()
            try:
                p.seal_records(self._sending_key, frames, wire)
            except Exception as error:  # the nonce counter used up (after 2^64 records)
                self.close(f"cannot seal a record: {error}")
                return
            self.transport.write(wire)
        else:
            self.transport.write(frames)

    def drop_queued(self, keep):
        """Drops queued frames not yet written, keeping the first `keep` bytes; returns the count."""
        dropped = 0
        index = keep
        while index + 4 <= len(self._out):
            index += 4 + int.from_bytes(self._out[index:index + 4], "big")
            dropped += 1
        del self._out[keep:]
        return dropped

    def _wake_room(self):
        if self._room is not None and not self._room.done():
            self._room.set_result(True)
        self._room = None

    async def wait_for_room(self, limit, timeout):
        """Waits until at most `limit` bytes are queued; False on timeout or close."""
        deadline = self.loop.time() + timeout
        self.flush()
        while not self.closed and self.queued_bytes > limit:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return False
            if self._room is None:
                self._room = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._room), min(remaining, 0.05))
            except asyncio.TimeoutError:
                pass
        return not self.closed

    # MARK: closing

    def close(self, reason=None, handshake=False):
        """Closes at once; `reason` None means a clean close asked for by this side."""
        if self.closed:
            return
        if reason is not None and handshake and not self.is_open and not reason.startswith("handshake: "):
            reason = "handshake: " + reason
        if self.transport is not None:
            self.transport.abort() if reason is not None else self.transport.close()
        self._finish(reason)

    async def close_after_flushing(self, timeout):
        """Writes what is queued (up to `timeout` seconds), then closes."""
        if self.closed:
            return
        deadline = self.loop.time() + timeout
        if not self.is_open and self._out:
            try:
                await asyncio.wait_for(asyncio.shield(self.opened), timeout)
            except (asyncio.TimeoutError, ConnectionClosed):
                pass
        if self.is_open:
            self.flush()
            while not self.closed and self.queued_bytes > 0 and self.loop.time() < deadline:
                await asyncio.sleep(0.005)
        self.close()

    def _finish(self, reason):
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if not self.opened.done():
            self.opened.set_exception(ConnectionClosed(reason or "closed"))
            self.opened.exception()  # retrieved here, so asyncio does not warn when nobody waits
        self._wake_room()
        self.on_close(self, reason)


class ConnectionClosed(p.MeshError):
    pass


async def dial(host, port, handshake, maximum_frame_length, on_frames, on_close, timeout=5.0, unix_path=None):
    """Connects and returns the Connection at once (frames queue until the handshake ends)."""
    loop = asyncio.get_event_loop()
    connection = Connection(handshake, maximum_frame_length, on_frames, on_close)
    if unix_path is not None:
        await asyncio.wait_for(loop.create_unix_connection(lambda: connection, unix_path), timeout)
    else:
        await asyncio.wait_for(loop.create_connection(lambda: connection, host, port), timeout)
    return connection
