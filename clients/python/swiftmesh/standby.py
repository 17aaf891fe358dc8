"""Standby registrations (PROTOCOL.md section 7.2): with several coordinators, the node routes by one
(its primary) and registers with every other one as a standby, so each holds its record and the
nodes that route by another coordinator see it. A standby session takes no topology; on failover
the node sends it `route` and it becomes the primary session."""
import asyncio
import time

from . import protocol as p
from .connection import Connection

HEARTBEAT_INTERVAL = 1.0
CONNECT_TIMEOUT = 5.0


def silence_problem(registered, connecting_since, last_heard, now):
    """Why a control session is to be closed for silence, or None: no welcome within the connect
    timeout, or nothing heard for three heartbeat intervals once registered."""
    if not registered:
        if now - connecting_since > CONNECT_TIMEOUT:
            return f"protocol violation: no welcome from the coordinator within {CONNECT_TIMEOUT} s"
        return None
    silence = now - last_heard
    if silence > 3 * HEARTBEAT_INTERVAL:
        return f"protocol violation: no heartbeat from the coordinator for {silence:.1f} s"
    return None


class Standby:
    """The node's session with one coordinator it does not route by: registers with `standby`,
    answers nothing but heartbeats, and redials with backoff when lost, until stopped or promoted."""

    def __init__(self, node, index):
        self.node = node
        self.index = index
        self.connection = None
        self.registered = False
        self.register_sent = False
        self.stopped = False
        self.last_heard = 0.0
        self.connecting_since = 0.0
        self.attempt = 0
        self.logged_rejection = False

    @property
    def address(self):
        return self.node._coordinators[self.index]

    def start(self):
        self.node.loop.create_task(self._connect())

    def stop(self):
        self.stopped = True
        if self.connection is not None and not self.connection.closed:
            self.connection.close("stopped")

    def send(self, message):
        """Sends a record change once the `register` is on its way (the coordinator reads them in
        order); before that, the `register` will carry the whole record."""
        if self.register_sent and self.connection is not None and not self.connection.closed:
            self.connection.send(p.control_frame(message))

    async def _connect(self):
        node = self.node
        if self.stopped or node._closed:
            return
        host, port = p.parse_address(self.address)
        connection = Connection(node._control_handshake(self.address), 64 << 20, self._frames, self._closed)
        self.connection = connection
        self.registered = False
        self.register_sent = False
        self.connecting_since = time.monotonic()
        try:
            await asyncio.wait_for(node.loop.create_connection(lambda: connection, host, port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as error:
            connection._finish(f"cannot connect: {str(error) or 'connect timed out'}")
            return
        if connection.closed:
            return
        connection.send(p.control_frame({"type": "register", "node": node._record(), "stats": node._stats_report(),
                                         "standby": True}))
        self.register_sent = True

    def _frames(self, connection, frames):
        if connection is self.node._control:
            # Promoted: the node's primary session now.
            return self.node._control_frames(connection, frames)
        if connection is not self.connection:
            return
        for message in p.control_messages(frames, p.CONTROL_TYPES):
            self.last_heard = time.monotonic()
            kind = message.get("type")
            if kind == "welcome":
                if not self.registered:
                    self.registered = True
                    self.attempt = 0
                    self.logged_rejection = False
                    self.node.log.debug("registered with the coordinator at %s as a standby", self.address)
            elif kind == "rejected":
                reason = str(message.get("reason", ""))
                if not self.logged_rejection:
                    self.logged_rejection = True
                    self.node.log.warning("the coordinator at %s rejected this node as a standby: %s",
                                          self.address, p.escaped(reason))
                connection.close(f"rejected: {reason}")
            elif kind == "shutdown":
                # An operator's `mesh node kill` through any coordinator of the list stops the node,
                # as a Swift node's standby session does.
                self.node.log.info("stopping: %s", p.escaped(str(message.get("reason", ""))))
                self.node.loop.create_task(self.node.close())
            # Heartbeat answers, and anything a standby is not sent: nothing to do.

    def _closed(self, connection, reason):
        if connection is self.node._control:
            return self.node._control_closed(connection, reason)
        if connection is not self.connection:
            return
        was_registered = self.registered
        self.registered = False
        self.register_sent = False
        self.connection = None
        if self.stopped or self.node._closed:
            return
        if was_registered:
            self.node.log.info("lost the standby coordinator at %s (%s); retrying", self.address, reason or "closed")
            self.attempt = 0
        self.attempt += 1
        delay = min(1000, 50 << min(self.attempt, 5)) / 1000
        self.node.loop.call_later(delay, self._retry)

    def _retry(self):
        if not self.stopped and not self.node._closed and self.connection is None:
            self.node.loop.create_task(self._connect())

    def beat(self, now, stats_message):
        """Once a heartbeat interval: a heartbeat while registered, and the liveness checks."""
        connection = self.connection
        if connection is None or connection.closed:
            return
        problem = silence_problem(self.registered, self.connecting_since, self.last_heard, now)
        if problem:
            connection.close(problem)
        elif self.registered:
            connection.send(p.control_frame(stats_message))
