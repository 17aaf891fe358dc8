"""A mesh node: registers with the coordinator, keeps the topology, sends and receives messages."""
import asyncio
import collections
import inspect
import json
import logging
import os
import random
import socket
import struct
import time

from . import protocol as p
from .handshake import public_key_problem
from .connection import Connection, ConnectionClosed
from .standby import Standby, silence_problem

log = logging.getLogger("swiftmesh")

HEARTBEAT_INTERVAL = 1.0
CONNECT_TIMEOUT = 5.0
REREGISTRATION_GRACE = 5.0
PEER_HELLO_PATIENCE = 5.0
UNKNOWN_PEER_PATIENCE = 5.0
FAILED_AVOIDANCE = 1.0
MAXIMUM_MESSAGE_SIZE = 8 << 20
MAXIMUM_QUEUED_BYTES_PER_PEER = 32 << 20
MAXIMUM_INBOX_BYTES = 64 << 20
STAT_KEYS = ("messagesSent", "bytesSent", "messagesReceived", "bytesReceived", "messagesDropped",
             "decodeFailures", "messagesUnrouted", "reconnects", "coordinatorReconnects")
MAXIMUM_TOPIC_COUNTERS = 1024
CONTROL_TYPES = p.CONTROL_TYPES
MAXIMUM_LATCHED_TOPICS = 1024
MAXIMUM_LATCHED_BYTES = 64 << 20


class AuthenticationFailed(p.MeshError):
    pass


class TypeMismatch(p.MeshError):
    """A declared message type disagrees with another declaration on the same topic."""


class CoordinatorUnreachable(p.MeshError):
    pass


class RegistrationRejected(p.MeshError):
    pass


class InvalidName(p.MeshError):
    pass


class FrameTooLarge(p.MeshError):
    pass


class NodeClosed(p.MeshError):
    pass


class ServiceError(p.MeshError):
    """A call failed. `code` is the provider's failure code (None for a failure on this side):
    1 the handler raised, 2 the request did not decode, 3 not served, 4 the response was unusable,
    5 busy (the provider refused it at once, past its limits per caller or in total; retry later)."""

    def __init__(self, text, code=None, provider=None):
        super().__init__(text)
        self.code, self.provider = code, provider


MAXIMUM_CONCURRENT_REQUESTS = 64
# Service requests a caller (one connection) may hold, running or waiting, and their bytes; all
# callers together hold at most SERVICE_REQUESTS and the inbox limit in bytes (PROTOCOL.md 15.2).
SERVICE_RUNNING_PER_CALLER = 16
SERVICE_REQUESTS_PER_CALLER = 256
SERVICE_BYTES_PER_CALLER = 16 << 20
SERVICE_REQUESTS = 4096
MAXIMUM_FAILURE_TEXT = 4096


class Policy:
    """What `send` does when a receiver's queue is full (the Swift node's `whenPeerQueueFull`)."""

    def __init__(self, kind, timeout=5.0):
        self.kind, self.timeout = kind, timeout

    @classmethod
    def wait(cls, timeout=5.0):
        return cls("wait", timeout)


Policy.DROP_NEWEST = Policy("dropNewest")
Policy.DROP_OLDEST = Policy("dropOldest")


class Peer:
    __slots__ = ("id", "name", "connection")

    def __init__(self, id_, name, connection):
        self.id, self.name, self.connection = id_, name, connection


class CloseReport(collections.namedtuple("CloseReport", "confirmed unconfirmed receivers")):
    """What `MeshNode.close()` found: messages confirmed and not confirmed by their receivers."""

    @property
    def is_complete(self):
        return self.unconfirmed == 0


class MeshNode:
    """A node of a swift-mesh mesh (docs/PROTOCOL.md, version 3). Make one with `build_mesh_node`."""

    def __init__(self, name, coordinator=None, authkey=None, load_balancing="round_robin",
                 when_peer_queue_full=None, maximum_message_size=MAXIMUM_MESSAGE_SIZE,
                 maximum_queued_bytes_per_peer=MAXIMUM_QUEUED_BYTES_PER_PEER, maximum_inbox_bytes=MAXIMUM_INBOX_BYTES,
                 same_host_transport=None, logger=None, identity_file=None, coordinator_key=None,
                 rekey_interval=p.REKEY_INTERVAL, mesh_name=None):
        problem = p.name_problem(name, "node name")
        if problem:
            raise InvalidName(problem)
        if load_balancing not in ("round_robin", "random", "broadcast"):
            raise ValueError(f"unknown load balancing {load_balancing!r}")
        self.name = name
        # One address, a list (a:6374,b:6374: the next is used when one is lost), "discover", or
        # "auto" (nothing configured): this host's coordinator if one listens, else the LAN's.
        self.coordinator = coordinator or os.environ.get("MESH_COORDINATOR") or p.AUTOMATIC
        self.mesh_name = mesh_name or os.environ.get("MESH_NAME") or "default"
        self._coordinators = p.coordinator_list(self.coordinator) or [self.coordinator]
        self._beacon_keys = {}  # address -> the static key its authenticated beacon names (keyed mesh)
        # With several coordinators: a standby registration with every one but the primary, by
        # index in the list, and the version of this node's own record (PROTOCOL.md section 7.2).
        self._standbys = {}
        self._record_version = 0
        self._current = 0
        self._tried_in_build = 1
        self._authkey_text = authkey if authkey is not None else (os.environ.get("MESH_AUTHKEY") or None)
        self.load_balancing = load_balancing
        self.policy = when_peer_queue_full or Policy.wait()
        self.maximum_message_size = maximum_message_size
        self.maximum_queued_bytes_per_peer = maximum_queued_bytes_per_peer
        self.maximum_inbox_bytes = maximum_inbox_bytes
        self.log = logger or log
        transport = same_host_transport or os.environ.get("MESH_SAME_HOST_TRANSPORT") or "tcp"
        if transport not in ("tcp", "unix"):
            raise ValueError(f"same_host_transport must be tcp or unix, not {transport!r}")
        self.same_host_unix = transport == "unix"
        self._scope = p.local_scope() if self.same_host_unix else None
        self._unix_server = None
        # The node's static key pair (protocol version 3): from a key file for a stable id, else fresh.
        identity_file = identity_file or os.environ.get("MESH_IDENTITY_FILE") or None
        self.identity = p.Identity.load(identity_file) if identity_file else p.Identity.generate()
        self.id = self.identity.id
        pinned = coordinator_key if coordinator_key is not None else (os.environ.get("MESH_COORDINATOR_KEY") or None)
        self._coordinator_key = _public_key(pinned, "the coordinator key (MESH_COORDINATOR_KEY)") if pinned else None
        self._coordinator_key_logged = False
        self._rekey_interval = rekey_interval
        self._key = None
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        # Per topic: [messages, payload bytes] handed to this node's listeners (at most 1,024 topics).
        self.topic_stats = {}
        self._last_reported = None
        self.topology = {}
        self.version = 0
        self._provisional = {}
        self._prefixes = {}
        self._recently_left = {}
        self._handlers = {}
        self._served = {}
        # id(connection) -> [requests held, bytes held, running semaphore]; and the totals.
        self._held = {}
        self._held_requests = 0
        self._held_bytes = 0
        self._refusal_window = (0.0, 0, 0)  # (start, lines written, lines held back) in this second
        self._calls = {}
        self._call_id = 0
        self._requests = None
        self._listened = set()
        self._declared_sends = set()
        self._declared_types = {}
        self._refusals = {}
        self._latched = {}
        self._close_report = None
        self._routes = {}
        self._turns = {}
        self._failed = {}
        self._unkeyed = set()
        self._peers = {}
        self._inbound = {}
        # Messages taken from each inbound connection, for its closing frame's answer (PROTOCOL §8.3).
        self._accepted = {}
        self._unknown = {}
        self._server = None
        self.host = None
        self.port = 0
        self._control = None
        self._registered = False
        self._connecting_since = None
        self._last_heard = 0.0
        self._reconnect_attempt = 0
        self._coordinator_lost_at = None
        self._registration = None
        self._inbox = collections.deque()
        self._inbox_bytes = 0
        self._dispatcher = None
        self._paused_inbound = set()
        self._changed = None
        self._closed = False
        self._closed_event = None
        self._tasks = []
        self._random = random.Random()
        self.loop = None

    # MARK: starting

    async def start(self):
        self.loop = asyncio.get_event_loop()
        self._changed = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._key = await _to_thread(p.stretch_key, self._authkey_text)
        self._requests = asyncio.Semaphore(MAXIMUM_CONCURRENT_REQUESTS)
        self._registration = self.loop.create_future()
        searched = None
        if self._coordinators == [p.AUTOMATIC] and await _is_listening(p.DEFAULT_COORDINATOR):
            self._coordinators = [p.DEFAULT_COORDINATOR]
        elif self._coordinators in ([p.DISCOVER], [p.AUTOMATIC]):
            automatic = self._coordinators == [p.AUTOMATIC]
            if automatic:
                self.log.info("no coordinator configured, and none at %s on this host: listening for one of mesh %r "
                              "on the LAN", p.DEFAULT_COORDINATOR, self.mesh_name)
            found = await discover_coordinators(self.mesh_name, self._key, log=self.log,
                                                pinned=self._coordinator_key.hex() if self._coordinator_key and self._key else None)
            searched = (f"no coordinator of mesh {self.mesh_name!r} announced itself within {DISCOVERY_WINDOW} s "
                        f"(start one with mesh-coordinator --announce --mesh-name {self.mesh_name}, on the same LAN)")
            if found:
                searched = None
                self._coordinators = [address for address, _ in found]
                if self._key is not None:
                    # An authenticated beacon names its coordinator's static key: the handshake must prove it.
                    self._beacon_keys = {address: bytes.fromhex(key) for address, key in found if key}
            elif automatic:
                # Nothing on the LAN either: this host's coordinator may have started meanwhile.
                self.log.info("%s; trying %s again", searched, p.DEFAULT_COORDINATOR)
                self._coordinators = [p.DEFAULT_COORDINATOR]
            else:
                await self._abort()
                raise CoordinatorUnreachable(searched)
            self.coordinator = ",".join(self._coordinators)
        await self._connect_coordinator()
        try:
            await asyncio.wait_for(asyncio.shield(self._registration), CONNECT_TIMEOUT * 2)
        except asyncio.TimeoutError:
            await self._abort()
            raise CoordinatorUnreachable(f"coordinator at {self.coordinator}: no registration within "
                                         f"{CONNECT_TIMEOUT * 2} s" + (f"; nothing was configured (MESH_COORDINATOR), and {searched}"
                                                                       if searched else "")) from None
        except CoordinatorUnreachable as error:
            await self._abort()
            if searched:
                raise CoordinatorUnreachable(f"{error}; nothing was configured (MESH_COORDINATOR), and {searched}") from None
            raise
        except BaseException:
            await self._abort()
            raise
        self._tasks.append(self.loop.create_task(self._heartbeats()))
        return self

    async def _abort(self):
        self._closed = True
        for standby in self._standbys.values():
            standby.stop()
        if self._control:
            self._control.close()
        if self._server:
            self._server.close()

    def _control_handshake(self, address):
        """The handshake of a control session with the coordinator at `address`: its key pinned when
        configured, or when its authenticated beacon named one."""
        pinned = self._coordinator_key or self._beacon_keys.get(address)
        return p.Handshake(True, p.PURPOSE_CONTROL, self._key, self.identity,
                           coordinator_key=pinned, rekey_interval=self._rekey_interval)

    async def _connect_coordinator(self):
        if self._closed:
            return
        host, port = p.parse_address(self._address)
        connection = Connection(self._control_handshake(self._address), max(self.maximum_message_size + 65536, 64 << 20),
                                self._control_frames, self._control_closed)
        self._control = connection
        self._registered = False
        self._connecting_since = time.monotonic()
        try:
            await asyncio.wait_for(self.loop.create_connection(lambda: connection, host, port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as error:
            text = str(error) or "connect timed out"
            connection._finish(f"cannot connect: {text}")
            return
        if self._server is None:
            # Peers reach this node on the interface that reaches the coordinator.
            local = connection.transport.get_extra_info("sockname")[0]
            try:
                self._server = await self.loop.create_server(self._accept_peer, local, 0)
            except OSError as error:
                connection.close(f"cannot listen for peers on {local}: {error}")
                return
            self.host, self.port = self._server.sockets[0].getsockname()[:2]
            if self.same_host_unix:
                self._unix_server = await self._listen_unix()
        # The counters since this process started ride along: a coordinator that sees this node
        # again continues them instead of starting from 0 (docs/PROTOCOL.md section 5.5).
        stats = self._stats_report()
        self._last_reported = stats
        connection.send(p.control_frame({"type": "register", "node": self._record(), "stats": stats}))

    async def _listen_unix(self):
        """Also accepts peers on this node's abstract Unix socket (MESH_SAME_HOST_TRANSPORT=unix)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(p.unix_address(self.id))
        except OSError as error:
            sock.close()
            self.log.warning("cannot listen on the Unix socket for %s: %s; TCP only", self.id, error)
            self._scope = None
            return None
        return await self.loop.create_unix_server(self._accept_peer, sock=sock)

    @property
    def _address(self):
        """The coordinator of the list this node is registered with, or trying."""
        return self._coordinators[self._current]

    def _record(self):
        record = {"id": self.id, "name": self.name, "host": "", "port": self.port,
                  "topics": sorted(self._listened), "pid": os.getpid(), "key": self.identity.public.hex()}
        if len(self._coordinators) > 1:
            record["version"] = self._record_version
        if self._scope is not None and self._unix_server is not None:
            record["local"] = self._scope
        if self._served:
            record["services"] = sorted(self._served)
        if self._declared_sends:
            record["sends"] = sorted(self._declared_sends)
        if self._declared_types:
            record["types"] = dict(self._declared_types)
        return record

    # MARK: the coordinator

    def _control_frames(self, connection, frames):
        if connection is not self._control:
            return
        for message in p.control_messages(frames, CONTROL_TYPES):
            self._last_heard = time.monotonic()
            self._control_message(connection, message)
            if connection is not self._control or connection.closed:
                return

    def _control_message(self, connection, message):
        kind = message["type"]
        if kind == "welcome":
            if self._registered:
                return
            snapshot = message.get("topology")
            if not isinstance(snapshot, dict):
                raise p.ProtocolError("malformed frame: control message: welcome without topology")
            self._registered = True
            self._reconnect_attempt = 0
            proven = connection.handshake.peer_static
            if proven is not None and self._coordinator_key is None and proven != self._coordinator_key_logged:
                # Membership is proven by the mesh key; the coordinator's own key is shown so it can be pinned.
                self._coordinator_key_logged = proven
                self.log.info("the coordinator proved static key %s (pin it with MESH_COORDINATOR_KEY)", proven.hex())
            fresh = self._snapshot_nodes(snapshot)
            if self._coordinator_lost_at is not None:
                self._provisional = {k: v for k, v in self.topology.items() if k != self.id and k not in fresh}
                if self._provisional:
                    self.loop.call_later(REREGISTRATION_GRACE, self._expire_provisional)
                self.stats["coordinatorReconnects"] += 1
                self.log.info("coordinator at %s is back after %.1f s; registered again with %d topic(s)",
                              self.coordinator, time.monotonic() - self._coordinator_lost_at, len(self._listened))
                self._coordinator_lost_at = None
            self._replace_topology(fresh, snapshot.get("version", 0))
            if len(self._coordinators) > 1:
                self._start_standbys()
            if self._registration is not None and not self._registration.done():
                self._registration.set_result(True)
        elif kind == "topology":
            snapshot = message.get("topology")
            if isinstance(snapshot, dict):
                self._replace_topology(self._snapshot_nodes(snapshot), snapshot.get("version", 0))
        elif kind == "delta":
            if not self._registered:
                return
            self._apply_delta(message.get("delta"), connection)
        elif kind == "rejected":
            reason = str(message.get("reason", ""))
            if self._registration is not None and not self._registration.done():
                self._registration.set_exception(RegistrationRejected(f"the coordinator rejected {self.name}: {reason}"))
            else:
                self.log.error("the coordinator rejected %s: %s", self.name, _escaped(reason))
            connection.close(f"rejected: {reason}")
        elif kind == "refused":
            topic = message.get("topic")
            if isinstance(topic, str):
                reason = str(message.get("reason", "no reason given"))
                self.log.warning("the coordinator refused a declaration on %s: %s", _escaped(topic), _escaped(reason))
                self._refusals[topic] = reason
                self._changed.set()
                self._changed = asyncio.Event()
        elif kind == "shutdown":
            self.log.info("stopping: %s", _escaped(str(message.get("reason", ""))))
            self.loop.create_task(self.close())
        elif kind == "heartbeat":
            pass
        else:
            self.log.warning("unexpected %s from the coordinator; ignored", kind)

    @staticmethod
    def _snapshot_nodes(snapshot):
        nodes = snapshot.get("nodes")
        if not isinstance(nodes, list):
            raise p.ProtocolError("malformed frame: control message: snapshot without nodes")
        out = {}
        for record in nodes:
            MeshNode._check_record(record)
            out[record["id"]] = record
        return out

    @staticmethod
    def _check_record(record):
        if not (isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("name"), str)
                and isinstance(record.get("host"), str) and isinstance(record.get("port"), int)
                and isinstance(record.get("topics"), list)):
            raise p.ProtocolError("malformed frame: control message: bad node record")

    def _apply_delta(self, delta, connection):
        if not isinstance(delta, dict) or not isinstance(delta.get("changes"), list):
            raise p.ProtocolError("malformed frame: control message: bad delta")
        start, end = delta.get("from"), delta.get("to")
        if end <= self.version:
            return
        if start != self.version:
            connection.send(p.control_frame({"type": "sync"}))
            return
        nodes = self.topology
        for change in delta["changes"]:
            op = change.get("op")
            if op == "join":
                self._check_record(change.get("node"))
                nodes[change["node"]["id"]] = change["node"]
                self._provisional.pop(change["node"]["id"], None)
            elif op == "leave":
                self._remember_leaving(nodes.pop(change.get("id"), None))
            elif op in ("listen", "unlisten", "serve", "unserve", "publish"):
                record = nodes.get(change.get("id"))
                field = {"listen": "topics", "unlisten": "topics", "publish": "sends"}.get(op, "services")
                value = change.get("service" if field == "services" else "topic")
                if record is None or not isinstance(value, str):
                    continue
                values = set(record.get(field) or [])
                values.add(value) if op in ("listen", "serve", "publish") else values.discard(value)
                record = dict(record)
                record[field] = sorted(values)
                types = dict(record.get("types") or {})
                if op in ("listen", "publish") and isinstance(change.get("type"), dict):
                    types[value] = change["type"]
                elif op == "unlisten" and value not in (record.get("sends") or ()):
                    types.pop(value, None)
                record["types"] = types
                nodes[record["id"]] = record
            # A change this client does not know is about something it does not use: skipped.
        self.version = end
        self._topology_changed()

    def _remember_leaving(self, record):
        """Keeps a departed node's record for a moment: a sender that joins, sends and leaves within
        one publish is never in this node's topology, yet its messages are already on the way."""
        if record is not None:
            now = time.monotonic()
            self._recently_left[record["id"]] = (record, now)
            for key in [k for k, (_, since) in self._recently_left.items() if now - since > UNKNOWN_PEER_PATIENCE]:
                del self._recently_left[key]

    def _replace_topology(self, nodes, version):
        for node_id, record in self.topology.items():
            if node_id not in nodes:
                self._remember_leaving(record)
        self.topology = nodes
        self.version = version
        self._topology_changed()

    def _expire_provisional(self):
        gone = [r["name"] for k, r in self._provisional.items() if k not in self.topology]
        self._provisional = {}
        if gone:
            self.log.info("%d node(s) did not re-register with the new coordinator within %.3f s; no longer "
                          "routing to them: %s", len(gone), REREGISTRATION_GRACE, ", ".join(sorted(gone)))
        self._topology_changed()

    def _topology_changed(self):
        self._routes.clear()
        if self._latched:
            self._deliver_latched()
        known = self._known_nodes()
        for node_id in list(self._peers):
            if node_id not in known:
                peer = self._peers.pop(node_id)
                self.loop.create_task(peer.connection.close_after_flushing(1.0))
        for key in list(self._unknown):
            self._recheck_unknown(key)
        self._changed.set()
        self._changed = asyncio.Event()

    def _known_nodes(self):
        if not self._provisional:
            return self.topology
        merged = dict(self._provisional)
        merged.update(self.topology)
        return merged

    def _control_closed(self, connection, reason):
        if connection is not self._control:
            return
        was_registered = self._registered
        self._registered = False
        self._control = None
        if self._registration is not None and not self._registration.done():
            text = reason or "closed"
            if connection.handshake.failure in p.AUTHENTICATION_FAILURES:
                error = AuthenticationFailed(f"coordinator at {self.coordinator}: {text}")
            elif text.startswith("rejected: "):
                return
            elif self._tried_in_build < len(self._coordinators):
                # A list: the next one may answer (PROTOCOL.md section 7.2).
                self.log.debug("coordinator at %s unreachable (%s); trying the next", self._address, text)
                self._tried_in_build += 1
                self._current = (self._current + 1) % len(self._coordinators)
                self.loop.create_task(self._connect_coordinator())
                return
            else:
                error = CoordinatorUnreachable(f"coordinator at {self.coordinator}: {text}")
            self._registration.set_exception(error)
            return
        if self._closed:
            return
        if was_registered:
            self._coordinator_lost_at = time.monotonic()
            if self._promote_standby(reason):
                return
            self.log.warning("lost the coordinator at %s (%s); keeping the last topology (%d node(s)) and retrying",
                             self._address, reason or "closed", len(self.topology))
        elif self._coordinator_lost_at is not None and self._promote_standby(reason):
            return
        else:
            self.log.debug("coordinator still unreachable: %s", reason or "closed")
        if len(self._coordinators) > 1:
            # Fail over: the next coordinator of the list, at once after a loss. A standby session
            # there would hold this node's id: it gives way to the primary one.
            self._current = (self._current + 1) % len(self._coordinators)
            standby = self._standbys.pop(self._current, None)
            if standby is not None:
                standby.stop()
            if was_registered:
                self._reconnect_attempt = 0
        self._reconnect_attempt += 1
        delay = min(1000, 50 << min(self._reconnect_attempt, 5)) / 1000
        self.loop.call_later(delay, self._retry_coordinator)

    def _retry_coordinator(self):
        if not self._closed and self._control is None:
            self.loop.create_task(self._connect_coordinator())

    async def _heartbeats(self):
        while not self._closed:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            for standby in list(self._standbys.values()):
                standby.beat(time.monotonic(), {"type": "heartbeat"})
            connection = self._control
            if connection is None or connection.closed:
                continue
            problem = silence_problem(self._registered, self._connecting_since, self._last_heard, time.monotonic())
            if problem:
                connection.close(problem)
                continue
            if not self._registered:
                continue
            message = {"type": "heartbeat"}
            stats = self._stats_report()
            if stats != self._last_reported:
                message["stats"] = stats
                self._last_reported = stats
            connection.send(p.control_frame(message))

    def _stats_report(self):
        """The counters as a heartbeat carries them: the totals, and `topics` once any arrived."""
        stats = dict(self.stats)
        if self.topic_stats:
            stats["topics"] = {topic: {"messagesReceived": counts[0], "bytesReceived": counts[1]}
                               for topic, counts in self.topic_stats.items()}
        return stats

    def _count_topic(self, topic, payload_bytes):
        counts = self.topic_stats.get(topic)
        if counts is None:
            if len(self.topic_stats) >= MAXIMUM_TOPIC_COUNTERS:
                return
            counts = self.topic_stats[topic] = [0, 0]
        counts[0] += 1
        counts[1] += payload_bytes

    def _announce(self, kind, topic):
        self._tell_coordinators({"type": kind, "topic": topic})

    def _tell_coordinators(self, message):
        """Sends a change of this node's record to the coordinator it routes by and to every
        standby; with several coordinators, numbered with the record's next version."""
        if len(self._coordinators) > 1:
            self._record_version += 1
            message["version"] = self._record_version
        if self._control is not None and not self._control.closed:
            self._control.send(p.control_frame(message))
        for standby in self._standbys.values():
            standby.send(message)

    def _start_standbys(self):
        """Registers with every coordinator of the list but the primary as a standby."""
        for index in range(len(self._coordinators)):
            if index != self._current and index not in self._standbys:
                standby = self._standbys[index] = Standby(self, index)
                standby.start()

    def _promote_standby(self, reason):
        """Fails over to the first coordinator of the list whose standby session is registered:
        asks it to route this node (`route`), answered by a welcome with its topology; until then
        the node routes with what it holds. False when none is registered."""
        registered = [i for i in sorted(self._standbys) if self._standbys[i].registered]
        if not registered:
            return False
        lost, standby = self._current, self._standbys.pop(registered[0])
        self._current = standby.index
        self._control = standby.connection
        self._connecting_since = time.monotonic()
        self._control.send(p.control_frame({"type": "route"}))
        self.log.info("routing by the coordinator at %s now (%s is unreachable: %s)", self._address,
                      self._coordinators[lost], reason or "closed")
        # The one failed over from is registered with as a standby once it answers again.
        replaced = self._standbys[lost] = Standby(self, lost)
        replaced.attempt = 1
        self.loop.call_later(0.1, replaced._retry)
        return True

    async def _wait_for(self, predicate, timeout):
        deadline = None if timeout is None else self.loop.time() + timeout
        while not predicate():
            if self._closed:
                raise NodeClosed("the node is closed")
            remaining = None if deadline is None else deadline - self.loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return predicate()
        return True

    # MARK: the public API

    async def listen(self, topic, callback, raw=False, type_name=None, schema=None):
        """Calls `callback(topic, data)` (sync or async) for each message on `topic`.

        `data` is the decoded JSON value, or `bytes` when the sender sent raw bytes or `raw` is set.
        With `type_name` (and optionally `schema`, see `swiftmesh.shape`) it declares the messages'
        type, and raises `TypeMismatch` when a sender or listener declared another there.
        Returns once the coordinator has published the listen (or at once while it is away).
        """
        self._check_open()
        problem = p.name_problem(topic, "topic")
        if problem:
            raise InvalidName(problem)
        declared = self._check_declaration(topic, p.topic_type(type_name, schema))
        new_topic = topic not in self._listened
        if not new_topic and not declared:
            self._handlers[topic] = (callback, raw)
            return
        self._refusals.pop(topic, None)
        if declared:
            self._declared_types[topic] = declared
        previous = self._handlers.get(topic)
        self._handlers[topic] = (callback, raw)
        self._listened.add(topic)
        message = {"type": "listen", "topic": topic}
        if declared:
            message["messageType"] = declared
        self._tell_coordinators(message)
        if self._registered:
            def recorded():
                record = self.topology.get(self.id, {})
                return topic in record.get("topics", ()) and (not declared or topic in (record.get("types") or {}))
            await self._wait_for(lambda: recorded() or topic in self._refusals, 5.0)
            if topic in self._refusals:
                if declared and topic not in self._declared_sends:
                    self._declared_types.pop(topic, None)
                if new_topic:
                    self._handlers.pop(topic, None)
                    self._listened.discard(topic)
                    self._announce("unlisten", topic)
                elif previous is not None:
                    self._handlers[topic] = previous
                raise TypeMismatch(f"message types disagree: {self._refusals.pop(topic)}")

    def _check_declaration(self, topic, declared):
        """The declaration to add for `topic`, or None; raises TypeMismatch on a disagreement this node can see."""
        if declared is None:
            return None
        own = self._declared_types.get(topic)
        if own is not None:
            if not p.types_agree(own, declared):
                raise TypeMismatch(f"message types disagree: {self.name} ({self.id}) declares {p.type_text(declared)} "
                                   f"on \"{topic}\", but it declared {p.type_text(own)} there before")
            return None
        for record in sorted(self._known_nodes().values(), key=lambda r: r["id"]):
            theirs = (record.get("types") or {}).get(topic)
            if record["id"] != self.id and isinstance(theirs, dict) and not p.types_agree(theirs, declared):
                does = "sends" if topic in (record.get("sends") or ()) else "listens to"
                raise TypeMismatch(f"message types disagree: {self.name} ({self.id}) declares {p.type_text(declared)} "
                                   f"on \"{topic}\", but {record['name']} ({record['id']}) {does} it as {p.type_text(theirs)}")
        return declared

    async def _declare_send(self, topic, declared):
        """Declares a send on `topic` (with its type) and waits for the coordinator's record or refusal."""
        declared = self._check_declaration(topic, declared)
        if topic in self._declared_sends and not declared:
            return
        self._refusals.pop(topic, None)
        new_topic = topic not in self._declared_sends
        self._declared_sends.add(topic)
        if declared:
            self._declared_types[topic] = declared
        message = {"type": "publish", "topic": topic}
        if declared:
            message["messageType"] = declared
        self._tell_coordinators(message)
        if self._registered:
            def recorded():
                record = self.topology.get(self.id, {})
                return topic in (record.get("sends") or ()) and (not declared or topic in (record.get("types") or {}))
            await self._wait_for(lambda: recorded() or topic in self._refusals, 5.0)
            if topic in self._refusals:
                if new_topic:
                    self._declared_sends.discard(topic)
                if declared and topic not in self._listened:
                    self._declared_types.pop(topic, None)
                raise TypeMismatch(f"message types disagree: {self._refusals.pop(topic)}")

    async def stop_listening(self, topic):
        self._check_open()
        self._handlers.pop(topic, None)
        if topic in self._listened:
            self._listened.discard(topic)
            self._announce("unlisten", topic)
        if self._registered:
            await self._wait_for(lambda: topic not in self.topology.get(self.id, {}).get("topics", ()), 5.0)

    def listeners(self, topic):
        return [r for r in self._known_nodes().values() if topic in r.get("topics", ())]

    async def wait_for_listener(self, topic, timeout=None, count=1):
        """Waits until at least `count` nodes listen to `topic`; raises TimeoutError after `timeout`."""
        self._check_open()
        if not await self._wait_for(lambda: len(self.listeners(topic)) >= count, timeout):
            raise asyncio.TimeoutError(f"no listener on {topic} within {timeout} s")

    async def send(self, topic, data, type_name=None, schema=None, latched=False):
        """Sends `data` (bytes-like: raw; anything else: JSON) to the listeners of `topic`.

        With `type_name` (and optionally `schema`) the first send declares the messages' type and
        raises `TypeMismatch` when listeners declared another. With `latched`, the node keeps the
        value and hands it to every node that starts listening later, before anything newer.
        Returns the number of receivers it was handed to (0: nobody listens; counted as unrouted).
        """
        if self._closed:
            raise NodeClosed("the node is closed")
        if isinstance(data, (bytes, bytearray, memoryview)):
            encoding, payload = p.ENCODING_RAW, bytes(data)
        else:
            encoding = p.ENCODING_CODEC
            payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(payload) > self.maximum_message_size:
            raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {self.maximum_message_size} bytes")
        declared = p.topic_type(type_name, schema)
        if latched or declared is not None:
            if topic not in self._declared_sends or (declared is not None and topic not in self._declared_types):
                await self._declare_send(topic, declared)
        if latched:
            return self._send_latched(topic, encoding, payload)
        route = self._routes.get(topic)
        if route is None:
            problem = p.name_problem(topic, "topic")
            if problem:
                raise InvalidName(problem)
            route = self._routes[topic] = self._make_route(topic)
        if not route:
            self.stats["messagesUnrouted"] += 1
            return 0
        prefix = self._prefixes.get((topic, encoding))
        if prefix is None:
            topic_bytes = topic.encode("utf-8")
            prefix = self._prefixes[(topic, encoding)] = (
                bytes((p.KIND_MESSAGE,)) + len(topic_bytes).to_bytes(2, "big") + topic_bytes + bytes((encoding,)))
            if len(self._prefixes) > 10_000:
                self._prefixes.clear()
        frame = (len(prefix) + len(payload)).to_bytes(4, "big") + prefix + payload
        limit = self.maximum_queued_bytes_per_peer
        delivered = 0
        waits = None
        for group_key, members in route:
            if len(members) == 1 or self.load_balancing == "broadcast":
                chosen = members
            else:
                chosen = (self._pick(group_key, members),)
            for record in chosen:
                node_id = record["id"]
                if node_id == self.id:
                    self._deliver_local(topic, encoding, payload, len(frame))
                    delivered += 1
                    continue
                peer = self._peers.get(node_id)
                if peer is None or peer.connection.closed:
                    peer = self._dial(record, reconnect=peer is not None)
                    if peer is None:
                        self.stats["messagesDropped"] += 1
                        continue
                connection = peer.connection
                if ((connection._write_paused or len(connection._out) + len(frame) > limit)
                        and connection.queued_bytes + len(frame) > limit and connection.queued_bytes):
                    if self.policy.kind == "wait":
                        if waits is None:
                            waits = []
                        waits.append((record, connection))
                        continue
                    if self.policy.kind == "dropNewest":
                        self._dropped(1, record, topic, "the peer's queue is full")
                        continue
                    # Only message frames go: a peer hello still queued stays first.
                    dropped = connection.drop_queued(0 if connection.is_open else connection.hello_length)
                    connection.messages_sent -= dropped
                    self._dropped(dropped, record, topic, "dropped the oldest to make room")
                connection.send(frame)
                connection.messages_sent += 1
                delivered += 1
        if waits:
            for record, connection in waits:
                if await connection.wait_for_room(self.maximum_queued_bytes_per_peer // 2, self.policy.timeout):
                    if connection.send(frame):
                        connection.messages_sent += 1
                    delivered += 1
                else:
                    self._dropped(1, record, topic, f"the peer's queue stayed full for {self.policy.timeout} s")
        self.stats["messagesSent"] += delivered
        self.stats["bytesSent"] += delivered * len(frame)
        return delivered

    def _latched_frame(self, topic, encoding, payload):
        topic_bytes = topic.encode("utf-8")
        body = bytes((p.KIND_MESSAGE,)) + len(topic_bytes).to_bytes(2, "big") + topic_bytes + bytes((encoding,)) + payload
        return len(body).to_bytes(4, "big") + body

    def _send_latched(self, topic, encoding, payload):
        """Keeps the value and hands it to every listening node (a pool's members included)."""
        previous = self._latched.get(topic)
        if previous is None and len(self._latched) >= MAXIMUM_LATCHED_TOPICS:
            raise p.MeshError(f"this node keeps latched values on {MAXIMUM_LATCHED_TOPICS} topics already, the most it may")
        total = sum(len(v[1]) for v in self._latched.values()) - (len(previous[1]) if previous else 0) + len(payload)
        if total > MAXIMUM_LATCHED_BYTES:
            raise p.MeshError(f"latched values would take {total} bytes on this node; the most is {MAXIMUM_LATCHED_BYTES}")
        listeners = [r for r in self._known_nodes().values() if topic in r.get("topics", ())]
        self._latched[topic] = (encoding, payload, {r["id"] for r in listeners if r["id"] != self.id})
        if not listeners:
            self.stats["messagesUnrouted"] += 1
        frame = self._latched_frame(topic, encoding, payload)
        for record in sorted(listeners, key=lambda r: r["id"]):
            self._send_direct(record, topic, encoding, payload, frame)
        return len(listeners)

    def _deliver_latched(self):
        known = self._known_nodes()
        for topic, (encoding, payload, served) in list(self._latched.items()):
            listening = {node_id for node_id, r in known.items() if topic in r.get("topics", ()) and node_id != self.id}
            self._latched[topic] = (encoding, payload, listening)
            newcomers = sorted(listening - served)
            if newcomers:
                frame = self._latched_frame(topic, encoding, payload)
                for node_id in newcomers:
                    self._send_direct(known[node_id], topic, encoding, payload, frame)

    def _send_direct(self, record, topic, encoding, payload, frame):
        if record["id"] == self.id:
            self._deliver_local(topic, encoding, payload, len(frame))
            return
        peer = self._peers.get(record["id"])
        if peer is None or peer.connection.closed:
            peer = self._dial(record, reconnect=peer is not None)
            if peer is None:
                self._dropped(1, record, topic, "no connection could be opened for its latched value")
                return
        if peer.connection.queued_bytes + len(frame) > self.maximum_queued_bytes_per_peer:
            self._dropped(1, record, topic, "the peer's queue was full when its latched value was due")
            return
        peer.connection.send(frame)
        peer.connection.messages_sent += 1  # for its closing frame (PROTOCOL §8.3)
        self.stats["messagesSent"] += 1
        self.stats["bytesSent"] += len(frame)

    def _dropped(self, count, record, topic, reason):
        if count <= 0:
            return
        self.stats["messagesDropped"] += count
        self.log.warning("dropped %d message(s) on %s for %s (%s): %s", count, _escaped(topic),
                         _escaped(record["name"]), record["id"], reason)

    def _make_route(self, topic):
        groups = {}
        for record in self._known_nodes().values():
            if topic in record.get("topics", ()):
                groups.setdefault(record["name"], []).append(record)
        return [((topic, name), sorted(groups[name], key=lambda r: r["id"])) for name in sorted(groups)]

    def _available(self, record, now):
        since = self._failed.get(record["id"])
        return since is None or now - since > FAILED_AVOIDANCE

    def _pick(self, key, members):
        count = len(members)
        now = time.monotonic()
        if self.load_balancing == "random":
            available = [m for m in members if self._available(m, now)] if self._failed else members
            return self._random.choice(available or members)
        start = self._turns.get(key, 0) % count
        pick = start
        if self._failed:
            for offset in range(count):
                if self._available(members[(start + offset) % count], now):
                    pick = (start + offset) % count
                    break
        self._turns[key] = pick + 1
        return members[pick]

    def _dial(self, record, reconnect=False):
        node_id = record["id"]
        peer_key = None
        if self._key is not None:
            # The handshake proves the peer holds the private half of this key: without one that
            # gives the record's id, there is nobody to prove anything to (PROTOCOL §3.3).
            problem = public_key_problem(record)
            if problem is not None:
                if node_id not in self._unkeyed:
                    self._unkeyed.add(node_id)
                    self.log.warning("connection to %s (%s) failed: %s (not dialled)", _escaped(record.get("name", "?")),
                                     node_id, problem)
                return None
            peer_key = bytes.fromhex(record["key"])
        handshake = p.Handshake(True, p.PURPOSE_DATA, self._key, self.identity, expected_peer_id=bytes.fromhex(node_id),
                                peer_key=peer_key, rekey_interval=self._rekey_interval)
        connection = Connection(handshake, self.maximum_message_size + 65536, self._peer_link_frames,
                                self._peer_link_closed, label=node_id)
        hello = json.dumps({"id": self.id, "name": self.name}, separators=(",", ":"), ensure_ascii=False)
        hello_frame = p.frame(p.KIND_PEER_HELLO, hello.encode("utf-8"))
        connection.hello_length = len(hello_frame)
        connection.send(hello_frame)
        peer = Peer(node_id, record["name"], connection)
        self._peers[node_id] = peer
        if node_id in self._failed:
            self.stats["reconnects"] += 1
        self._routes.clear()

        async def connect():
            try:
                if self._scope is not None and record.get("local") == self._scope:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    try:
                        await asyncio.wait_for(self.loop.sock_connect(sock, p.unix_address(node_id)), CONNECT_TIMEOUT)
                    except BaseException:
                        sock.close()
                        raise
                    await self.loop.create_unix_connection(lambda: connection, sock=sock)
                    return
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: connection, record["host"], record["port"]), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as error:
                connection._finish(f"cannot connect: {error or 'connect timed out'}")
        self.loop.create_task(connect())
        return peer

    def _peer_link_frames(self, connection, frames):
        """Answers to this node's calls are the only frames a receiver may send back."""
        for kind, body in frames:
            if kind == p.KIND_CONFIRMED:
                # The answer to this node's closing frame: how many messages the receiver took.
                if connection.confirmed is None or connection.confirmed.done():
                    raise p.ProtocolError("protocol violation: a confirmation without a closing frame")
                if len(body) != 8 or body[0] & 0x80:
                    raise p.ProtocolError(f"malformed frame: closing count of {len(body)} bytes, 8 expected")
                connection.confirmed.set_result(int.from_bytes(body, "big"))
                continue
            if kind not in (p.KIND_REPLY, p.KIND_FAILURE) or len(body) < 9:
                raise p.ProtocolError(f"unexpected frame kind 0x{kind:x}" if kind not in (p.KIND_REPLY, p.KIND_FAILURE)
                                      else f"malformed frame: answer of {len(body)} bytes is too short")
            call_id = int.from_bytes(body[0:8], "big")
            waiting = self._calls.pop((id(connection), call_id), None)
            if waiting is None or waiting.done():
                self.log.debug("dropped a late answer to call %d from %s", call_id, connection.label)
                continue
            if kind == p.KIND_REPLY:
                waiting.set_result((body[8], body[9:]))
            else:
                text = body[9:].decode("utf-8", "replace")
                waiting.set_exception(ServiceError(text, code=body[8], provider=connection.label))

    def _peer_link_closed(self, connection, reason):
        if connection.confirmed is not None and not connection.confirmed.done():
            connection.confirmed.set_result(0)  # ended without an answer: nothing confirmed
        node_id = connection.label
        peer = self._peers.get(node_id)
        if peer is not None and peer.connection is connection:
            del self._peers[node_id]
            self._routes.clear()
        if reason is not None:
            self._failed[node_id] = time.monotonic()
            record = self._known_nodes().get(node_id)
            if not self._closed:
                self.log.warning("connection to %s (%s) failed: %s",
                                 _escaped(record["name"]) if record else "?", node_id, reason)
        for key in [k for k in self._calls if k[0] == id(connection)]:
            waiting = self._calls.pop(key)
            if not waiting.done():
                waiting.set_exception(ServiceError(f"lost the provider {node_id}: {reason or 'connection closed'}",
                                                   provider=node_id))
        unsent = connection.drop_queued(0)
        if unsent and reason is not None:
            unsent -= 0 if connection.is_open else 1  # the peer hello is not a message
            self.stats["messagesDropped"] += max(unsent, 0)

    # MARK: receiving

    def _accept_peer(self):
        handshake = p.Handshake(False, served={p.PURPOSE_DATA: self._key}, identity=self.identity,
                                rekey_interval=self._rekey_interval)
        connection = Connection(handshake, self.maximum_message_size + 65536, self._inbound_frames,
                                self._inbound_closed, on_open=self._inbound_opened)
        connection.raw_frames = True
        return connection

    def _inbound_opened(self, connection):
        """A dialler sends its peer hello right after the handshake; one that has not within
        PEER_HELLO_PATIENCE only holds a descriptor (PROTOCOL §8.2)."""
        def check():
            key = id(connection)
            if not connection.closed and key not in self._inbound and key not in self._unknown:
                connection.close(f"protocol violation: no peer hello within {PEER_HELLO_PATIENCE:.3f} s of the handshake")
        self.loop.call_later(PEER_HELLO_PATIENCE, check)

    def _check_hello(self, hello, connection):
        """None: wait for the topology; else an error text or ''."""
        if hello["id"] != connection.peer_id:
            return f"protocol violation: peer hello names node {hello['id']}, the handshake was for {connection.peer_id}"
        record = self._known_nodes().get(hello["id"])
        if record is None:
            left = self._recently_left.get(hello["id"])
            if left is None or time.monotonic() - left[1] > UNKNOWN_PEER_PATIENCE:
                return None
            record = left[0]
        if record["name"] != hello["name"]:
            return (f"protocol violation: peer hello says node {hello['id']} is named \"{hello['name']}\"; "
                    f"the mesh says \"{record['name']}\"")
        if connection.remote == "unix":
            if self._scope is None or record.get("local") != self._scope:
                return (f"protocol violation: node {hello['id']} is at {record['host']} in the mesh, but this "
                        "connection comes from a Unix socket")
        elif not p.same_host(record["host"], connection.remote):
            return (f"protocol violation: node {hello['id']} is at {record['host']} in the mesh, but this connection "
                    f"comes from {connection.remote}")
        return ""

    def _inbound_frames(self, connection, buffer):
        """Reads the whole frames in `buffer` (the connection's own) and removes them."""
        key = id(connection)
        if key in self._unknown:
            connection.set_reading_paused(True)
            return
        peer = self._inbound.get(key)
        limit = connection.maximum_frame_length
        handlers = self._handlers
        stats = self.stats
        index = 0
        size = len(buffer)
        received = 0
        received_bytes = 0
        unpack = _unpack_length
        try:
            while size - index >= 4:
                length = unpack(buffer, index)[0]
                if length == 0:
                    raise p.ProtocolError("frame with zero length")
                if length > limit:
                    raise p.ProtocolError(f"frame of {length} bytes exceeds the limit of {limit} bytes")
                end = index + 4 + length
                if end > size:
                    break
                kind = buffer[index + 4]
                if kind == p.KIND_MESSAGE and peer is not None:
                    topic_length = (buffer[index + 5] << 8) | buffer[index + 6] if length >= 3 else 0
                    topic_end = index + 7 + topic_length
                    if length < 4 or topic_length == 0 or topic_length > 255 or topic_end >= end:
                        p.parse_message(bytes(buffer[index + 5:end]))  # raises the precise reason
                    topic_bytes = buffer[index + 7:topic_end]
                    if topic_bytes == peer[2]:
                        topic = peer[3]
                    else:
                        topic, _, _ = p.parse_message(bytes(buffer[index + 5:topic_end + 1]))
                        peer = (peer[0], peer[1], bytes(topic_bytes), topic)
                        self._inbound[key] = peer
                    encoding = buffer[topic_end]
                    if encoding > 1:
                        raise p.ProtocolError(f"malformed frame: unknown payload encoding {encoding}")
                    if self._closed:
                        # This node has closed: refused and counted, not handed to a listener and
                        # not confirmed as taken (PROTOCOL §8.3).
                        index = end
                        self.stats["messagesDropped"] += 1
                        continue
                    received += 1
                    received_bytes += length + 4
                    index = end
                    self._count_topic(topic, end - topic_end - 1)
                    handler = handlers.get(topic)
                    if handler is None:
                        self.log.debug("skipped a message on %s from %s: not listening", _escaped(topic), peer[1])
                        continue
                    payload = bytes(buffer[topic_end + 1:end])
                    if self._inbox or self._dispatcher is not None or not (handler[1] or encoding == 0):
                        self._deliver(handler, topic, encoding, payload, peer[1], peer[0], connection)
                        continue
                    # The common case inline: a raw listener with nothing queued before it.
                    try:
                        result = handler[0](topic, payload)
                    except Exception as error:  # a listener's failure is logged, never fatal
                        self._listener_failed(topic, peer[1], peer[0], error)
                        continue
                    if result is not None and inspect.isawaitable(result):
                        self._dispatcher = self.loop.create_task(
                            self._dispatch(self._guard(result, topic, peer[1], peer[0])))
                elif kind == p.KIND_REQUEST and peer is not None:
                    body = bytes(buffer[index + 5:end])
                    index = end
                    self._request(connection, peer, body)
                elif kind == p.KIND_CLOSING and peer is not None:
                    # The sender is closing: everything before this frame has been taken.
                    if length != 9:
                        raise p.ProtocolError(f"malformed frame: closing count of {length - 1} bytes, 8 expected")
                    announced = int.from_bytes(buffer[index + 5:end], "big")
                    if announced >= 1 << 63:
                        raise p.ProtocolError(f"malformed frame: closing count {announced} is out of range")
                    index = end
                    taken = self._accepted.get(key, 0) + received
                    connection.send(p.frame(p.KIND_CONFIRMED, taken.to_bytes(8, "big")))
                    if taken != announced:
                        self.log.debug("%s closed announcing %d message(s); %d were taken", peer[1], announced, taken)
                elif kind == p.KIND_CLOSING:
                    raise p.ProtocolError("protocol violation: closing before peer hello")
                elif kind in (p.KIND_MESSAGE, p.KIND_REQUEST):
                    raise p.ProtocolError("protocol violation: message before peer hello")
                elif kind == p.KIND_PEER_HELLO and peer is None:
                    body = bytes(buffer[index + 5:end])
                    index = end
                    try:
                        hello = json.loads(body)
                        if not (isinstance(hello, dict) and isinstance(hello.get("id"), str)
                                and isinstance(hello.get("name"), str)):
                            raise ValueError("id and name must be strings")
                    except ValueError as error:
                        raise p.ProtocolError(f"malformed frame: peer hello: {error}") from None
                    verdict = self._check_hello(hello, connection)
                    if verdict is None:
                        # Not in the topology yet: hold the rest until it is, or give up.
                        connection.set_reading_paused(True)
                        self._unknown[key] = (hello, connection)
                        self.loop.call_later(UNKNOWN_PEER_PATIENCE, self._unknown_expired, key)
                        break
                    if verdict:
                        raise p.ProtocolError(verdict)
                    peer = (hello["id"], hello["name"], b"", "")
                    self._inbound[key] = peer
                else:
                    raise p.ProtocolError(f"unexpected frame kind 0x{kind:x}")
        finally:
            if index:
                del buffer[:index]
            stats["messagesReceived"] += received
            stats["bytesReceived"] += received_bytes
            if received:
                self._accepted[key] = self._accepted.get(key, 0) + received

    def _recheck_unknown(self, key):
        hello, connection = self._unknown[key]
        verdict = self._check_hello(hello, connection)
        if verdict is None:
            return
        del self._unknown[key]
        if verdict:
            connection.close(verdict)
            return
        self._inbound[key] = (hello["id"], hello["name"], b"", "")
        connection.set_reading_paused(False)
        try:
            self._inbound_frames(connection, connection._frames)
        except p.ProtocolError as error:
            connection.close(str(error))

    def _unknown_expired(self, key):
        waiting = self._unknown.pop(key, None)
        if waiting is not None:
            hello, connection = waiting
            connection.close(f"protocol violation: peer hello from node {hello['id']} (\"{hello['name']}\"), which is "
                             f"not in the mesh (waited {UNKNOWN_PEER_PATIENCE:.3f} s)")

    def _inbound_closed(self, connection, reason):
        key = id(connection)
        peer = self._inbound.pop(key, None)
        self._accepted.pop(key, None)
        self._unknown.pop(key, None)
        self._paused_inbound.discard(connection)
        if reason is None or self._closed:
            return
        who = f"{peer[1]} ({peer[0]}) at {connection.remote}" if peer else str(connection.remote)
        if reason.startswith("disconnected"):
            self.log.debug("connection from %s closed", who)
        else:
            self.log.warning("closed the connection from %s: %s", who, _escaped(reason))

    def _deliver_local(self, topic, encoding, payload, frame_length):
        self.stats["messagesReceived"] += 1
        self.stats["bytesReceived"] += frame_length
        self._count_topic(topic, len(payload))
        handler = self._handlers.get(topic)
        if handler is not None:
            self._deliver(handler, topic, encoding, payload, self.name, self.id, None)

    def _deliver(self, handler, topic, encoding, payload, sender, sender_id, connection):
        """Runs the listener now when nothing is queued before it (listeners run one at a time,
        in arrival order); otherwise queues the message for the dispatcher."""
        if self._inbox or self._dispatcher is not None:
            self._inbox.append((topic, encoding, payload, sender, sender_id))
            self._inbox_bytes += len(payload)
            if self._inbox_bytes > self.maximum_inbox_bytes and connection is not None:
                connection.set_reading_paused(True)
                self._paused_inbound.add(connection)
            if self._dispatcher is None:
                self._dispatcher = self.loop.create_task(self._dispatch(None))
            return
        result = self._call(handler, topic, encoding, payload, sender, sender_id)
        if result is not None:
            self._dispatcher = self.loop.create_task(self._dispatch(result))

    def _call(self, handler, topic, encoding, payload, sender, sender_id):
        """Calls one listener; returns an awaitable to finish when it is async."""
        callback, raw = handler
        if raw or encoding == p.ENCODING_RAW:
            data = payload
        else:
            try:
                data = json.loads(payload)
            except ValueError as error:
                self.stats["decodeFailures"] += 1
                self.log.warning("message on %s from %s (%s) did not decode as JSON: %s",
                                 _escaped(topic), _escaped(sender), sender_id, error)
                return None
        try:
            result = callback(topic, data)
        except Exception as error:  # a listener's failure is logged, never fatal
            self._listener_failed(topic, sender, sender_id, error)
            return None
        if result is not None and inspect.isawaitable(result):
            return self._guard(result, topic, sender, sender_id)
        return None

    async def _guard(self, awaitable, topic, sender, sender_id):
        try:
            await awaitable
        except Exception as error:  # a listener's failure is logged, never fatal
            self._listener_failed(topic, sender, sender_id, error)

    def _listener_failed(self, topic, sender, sender_id, error):
        self.log.error("listener for %s failed on a message from %s (%s): %r",
                       _escaped(topic), _escaped(sender), sender_id, error)

    async def _dispatch(self, first):
        inbox = self._inbox
        try:
            if first is not None:
                await first
            while inbox and not self._closed:
                topic, encoding, payload, sender, sender_id = inbox.popleft()
                self._inbox_bytes -= len(payload)
                handler = self._handlers.get(topic)
                if handler is not None:
                    result = self._call(handler, topic, encoding, payload, sender, sender_id)
                    if result is not None:
                        await result
                if self._paused_inbound and self._inbox_bytes <= self.maximum_inbox_bytes // 2:
                    for connection in list(self._paused_inbound):
                        if id(connection) not in self._unknown:
                            connection.set_reading_paused(False)
                    self._paused_inbound.clear()
        finally:
            self._dispatcher = None
            if inbox and not self._closed:
                self._dispatcher = self.loop.create_task(self._dispatch(None))

    # MARK: services

    async def serve(self, service, handler, raw=False):
        """Provides `service`: `handler(request)` (sync or async) returns the response.

        Needs a coordinator with services (issue #9); raises ServiceError when the coordinator
        does not list the service within 5 s.
        """
        self._check_open()
        problem = p.name_problem(service, "service")
        if problem:
            raise InvalidName(problem)
        self._served[service] = (handler, raw)
        self._tell_coordinators({"type": "serve", "service": service})
        if self._registered and not await self._wait_for(
                lambda: service in (self.topology.get(self.id, {}).get("services") or ()), 5.0):
            self._served.pop(service, None)
            raise ServiceError(f"the coordinator did not list the service \"{service}\" within 5 s "
                               "(does it support services?)")

    async def unserve(self, service):
        self._check_open()
        if self._served.pop(service, None) is not None:
            self._tell_coordinators({"type": "unserve", "service": service})

    def providers(self, service):
        return [r for r in self._known_nodes().values() if service in (r.get("services") or ())]

    async def call(self, service, request, timeout=None, raw=False):
        """Calls `service` on one provider and returns its response (decoded JSON, or bytes)."""
        self._check_open()
        problem = p.name_problem(service, "service")
        if problem:
            raise InvalidName(problem)
        providers = self.providers(service)
        if not providers:
            raise ServiceError(f"no node provides the service \"{service}\"")
        encoding, payload = _encode(request)
        if len(payload) > self.maximum_message_size:
            raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds the limit of {self.maximum_message_size} bytes")
        groups = {}
        for record in providers:
            groups.setdefault(record["name"], []).append(record)
        # One group, then one member of it (PROTOCOL §15.2): a group is available when any member is.
        names = sorted(groups)
        if len(providers) == 1:
            record = providers[0]
        else:
            now = time.monotonic()
            available = [n for n in names if any(self._available(m, now) for m in groups[n])]
            if self.load_balancing == "random":
                name = self._random.choice(available or names)
            else:
                group_key = ("service-group", service)
                start = self._turns.get(group_key, 0) % len(names)
                pick = next((i % len(names) for i in range(start, start + len(names))
                             if names[i % len(names)] in available), start)
                self._turns[group_key] = pick + 1
                name = names[pick]
            members = sorted(groups[name], key=lambda r: r["id"])
            record = members[0] if len(members) == 1 else self._pick(("service", service, name), members)
        provider = f"{record['name']} ({record['id']})"
        if record["id"] == self.id:
            code, answer = await self._answer(service, encoding, payload, f"{self.name} ({self.id})")
            if code:
                raise ServiceError(f"{service} on {provider} failed: {answer.decode('utf-8', 'replace')}", code, provider)
            response_encoding, body = answer
        else:
            peer = self._peers.get(record["id"])
            if peer is None or peer.connection.closed:
                peer = self._dial(record)
                if peer is None:
                    raise ServiceError(f"cannot call {service} on {provider}: its record has no usable public key",
                                       provider=provider)
            self._call_id += 1
            call_id = self._call_id
            waiting = self.loop.create_future()
            key = (id(peer.connection), call_id)
            self._calls[key] = waiting
            service_bytes = service.encode("utf-8")
            body = (call_id.to_bytes(8, "big") + len(service_bytes).to_bytes(2, "big") + service_bytes
                    + bytes((encoding,)) + payload)
            peer.connection.send(p.frame(p.KIND_REQUEST, body))
            try:
                response_encoding, body = await asyncio.wait_for(waiting, timeout)
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(f"no answer from {service} on {provider} within {timeout} s") from None
            except ServiceError as error:
                raise ServiceError(f"{service} on {provider} failed: {error}", error.code, provider) from None
            finally:
                self._calls.pop(key, None)
        if raw or response_encoding == p.ENCODING_RAW:
            return bytes(body)
        try:
            return json.loads(body)
        except ValueError as error:
            raise ServiceError(f"the response of {service} on {provider} is not JSON: {error}", None, provider) from None

    def _request(self, connection, peer, body):
        if len(body) < 12:
            raise p.ProtocolError(f"malformed frame: request of {len(body)} bytes is too short")
        call_id = int.from_bytes(body[0:8], "big")
        length = int.from_bytes(body[8:10], "big")
        if length == 0 or length > 255 or 10 + length >= len(body):
            raise p.ProtocolError(f"malformed frame: request service length {length}")
        service, encoding, payload = p.parse_message(body[8:])
        key = id(connection)
        held = self._held.get(key)
        size = len(body) + 5
        reason = None
        if held is not None and held[0] >= SERVICE_REQUESTS_PER_CALLER:
            reason = (f"busy: this caller already has {SERVICE_REQUESTS_PER_CALLER} requests running or waiting at "
                      "this provider, its limit per caller; retry when some have been answered")
        elif held is not None and held[1] > 0 and held[1] + size > SERVICE_BYTES_PER_CALLER:
            reason = (f"busy: this caller's requests running or waiting at this provider hold {held[1]} bytes, and this "
                      f"one of {size} bytes would pass the limit of {SERVICE_BYTES_PER_CALLER} per caller; retry when "
                      "some have been answered")
        elif self._held_requests >= SERVICE_REQUESTS:
            reason = (f"busy: {SERVICE_REQUESTS} requests from all callers are running or waiting at this provider, "
                      "its limit; retry later")
        elif self._held_bytes > 0 and self._held_bytes + size > self.maximum_inbox_bytes:
            reason = (f"busy: the requests running or waiting at this provider hold {self._held_bytes} bytes, and this "
                      f"one of {size} bytes would pass its limit of {self.maximum_inbox_bytes}; retry later")
        if reason is not None:
            self._log_refusal(f"refused call {call_id} to {_escaped(service)} from {_escaped(peer[1])}: {reason}")
            connection.send(p.frame(p.KIND_FAILURE, call_id.to_bytes(8, "big") + bytes((5,)) + reason.encode()))
            return
        if held is None:
            held = self._held[key] = [0, 0, asyncio.Semaphore(SERVICE_RUNNING_PER_CALLER)]
        held[0] += 1
        held[1] += size
        self._held_requests += 1
        self._held_bytes += size
        caller = f"{peer[1]} ({peer[0]})"
        self.loop.create_task(
            self._serve_request(connection, call_id, service, encoding, payload, key, held, size, caller))

    def _log_refusal(self, text):
        """At most ten refusal lines a second, then one line with how many were held back."""
        now = time.monotonic()
        start, written, held_back = self._refusal_window
        if now - start >= 1.0:
            if held_back:
                self.log.warning("... and %d more refused service requests in the last 1 s", held_back)
            start, written, held_back = now, 0, 0
        if written < 10:
            self.log.warning("%s", text)
            written += 1
        else:
            held_back += 1
        self._refusal_window = (start, written, held_back)

    async def _serve_request(self, connection, call_id, service, encoding, payload, key, held, size, caller):
        """Runs one admitted request and answers it; its place and bytes are held until then."""
        try:
            await self._run_request(connection, call_id, service, encoding, payload, held[2], caller)
        finally:
            held[0] -= 1
            held[1] -= size
            self._held_requests -= 1
            self._held_bytes -= size
            if held[0] == 0 and self._held.get(key) is held:
                del self._held[key]

    async def _run_request(self, connection, call_id, service, encoding, payload, running, caller):
        async with running:
            async with self._requests:
                if connection.closed:
                    self.log.debug("skipped call %d: its caller's connection closed while it waited", call_id)
                    return
                code, answer = await self._answer(service, encoding, payload, caller)
        if code:
            text = answer[:MAXIMUM_FAILURE_TEXT].decode("utf-8", "ignore").encode("utf-8")
            frame = p.frame(p.KIND_FAILURE, call_id.to_bytes(8, "big") + bytes((code,)) + text)
        else:
            frame = p.frame(p.KIND_REPLY, call_id.to_bytes(8, "big") + bytes((answer[0],)) + answer[1])
        if connection.closed:
            self.log.debug("dropped the answer to call %d: its connection closed", call_id)
            return
        if connection.queued_bytes > self.maximum_queued_bytes_per_peer:
            await connection.wait_for_room(self.maximum_queued_bytes_per_peer // 2, 5.0)
        connection.send(frame)

    async def _answer(self, service, encoding, payload, caller="a caller"):
        """(0, (encoding, payload)) or (code, description bytes)."""
        handler = self._served.get(service)
        if handler is None:
            return 3, f"this node does not provide the service \"{service}\"".encode()
        function, raw = handler
        if raw or encoding == p.ENCODING_RAW:
            request = payload
        else:
            try:
                request = json.loads(payload)
            except ValueError as error:
                return 2, str(error).encode()
        try:
            response = function(request)
            if inspect.isawaitable(response):
                response = await response
        except Exception as error:  # the handler's failure goes back to the caller, and to this log
            # KeyError('b') prints as 'b': the type is part of what the caller needs to know.
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            self.log.warning("service %s failed for %s: %s", _escaped(service), _escaped(str(caller)), _escaped(text))
            return 1, text.encode()
        try:
            response_encoding, body = _encode(response)
        except (TypeError, ValueError) as error:
            return 4, f"the response cannot be encoded: {error}".encode()
        if len(body) > self.maximum_message_size:
            return 4, f"the response of {len(body)} bytes exceeds {self.maximum_message_size} bytes".encode()
        return 0, (response_encoding, body)

    # MARK: closing

    def _check_open(self):
        if self._closed:
            raise NodeClosed("the node is closed")

    @property
    def is_closed(self):
        return self._closed

    async def forever(self):
        """Waits until the node is closed (by `close()` or a `mesh node kill`)."""
        await self._closed_event.wait()

    async def close(self):
        """Says goodbye, flushes queued messages and has each receiver confirm them (up to 2 s), and
        closes every connection.

        Returns a `CloseReport`: the messages sent on connections open at the close that their
        receivers confirmed taking, those they did not, and who did not (PROTOCOL §8.3).
        """
        if self._closed:
            return self._close_report or CloseReport(0, 0, [])
        # Let the listeners finish what has arrived, for up to 2 s (as the Swift node does); what
        # is still waiting then is logged and counted, not handled.
        deadline = self.loop.time() + 2.0
        while (self._inbox or self._dispatcher is not None) and self._handlers:
            if self.loop.time() >= deadline:
                left = len(self._inbox)
                self.stats["messagesDropped"] += left
                self.log.warning("closing: %d received message(s) not handed to listeners within 2 s", left)
                break
            await asyncio.sleep(0.001)
        self._closed = True
        control = self._control
        peers = list(self._peers.values())
        results = await asyncio.gather(*(self._confirm(peer, 2.0) for peer in peers))
        confirmed = sum(taken for taken, _ in results)
        unconfirmed = sum(announced - taken for taken, announced in results)
        receivers = [f"{peer.name} ({peer.id}) " + (f"confirmed {taken} of {announced}" if taken else f"did not confirm {announced}")
                     for peer, (taken, announced) in zip(peers, results) if taken < announced]
        if unconfirmed:
            self.log.info("closing: %d of %d message(s) sent were not confirmed by their receivers (%s)",
                          unconfirmed, confirmed + unconfirmed, "; ".join(receivers))
        flushes = []
        if control is not None and not control.closed:
            if self._registered:
                control.send(p.control_frame({"type": "bye"}))
            flushes.append(control.close_after_flushing(1.0))
        for standby in self._standbys.values():
            standby.stopped = True
            if standby.connection is not None and not standby.connection.closed:
                if standby.registered:
                    standby.connection.send(p.control_frame({"type": "bye"}))
                flushes.append(standby.connection.close_after_flushing(1.0))
        if flushes:
            await asyncio.gather(*flushes, return_exceptions=True)
        if self._server is not None:
            self._server.close()
        if self._unix_server is not None:
            self._unix_server.close()
        for task in self._tasks:
            task.cancel()
        self._changed.set()
        self._closed_event.set()
        self._close_report = CloseReport(confirmed, unconfirmed, receivers)
        return self._close_report

    async def _confirm(self, peer, timeout):
        """Sends `peer` its closing frame and waits for the answer; returns (taken, announced)."""
        connection = peer.connection
        announced = connection.messages_sent
        if connection.closed:
            return 0, announced
        connection.confirmed = self.loop.create_future()
        connection.send(p.frame(p.KIND_CLOSING, announced.to_bytes(8, "big")))
        taken = 0
        try:
            taken = min(announced, await asyncio.wait_for(asyncio.shield(connection.confirmed), timeout))
        except (asyncio.TimeoutError, ConnectionClosed):
            pass
        connection.close()
        return taken, announced

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


_unpack_length = struct.Struct(">I").unpack_from


def _encode(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return p.ENCODING_RAW, bytes(value)
    return p.ENCODING_CODEC, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_escaped = p.escaped


def _public_key(text, what):
    """32 bytes from 64 hex digits, or a ValueError that names `what`."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{what} must be 64 hex digits (a public key), not {text!r}")
    return key


async def _to_thread(function, *args):
    return await asyncio.get_event_loop().run_in_executor(None, function, *args)


async def build_mesh_node(name, coordinator=None, authkey=None, **options):
    """Makes a node, registers it with the coordinator, and returns it once welcomed.

    `coordinator` defaults to $MESH_COORDINATOR, else "auto": the coordinator on this host if one
    listens at 127.0.0.1:6374, else those announcing `mesh_name` ($MESH_NAME, else "default") on the
    LAN. `authkey` defaults to $MESH_AUTHKEY.
    Raises AuthenticationFailed, CoordinatorUnreachable or RegistrationRejected.
    """
    node = MeshNode(name, coordinator, authkey, **options)
    return await node.start()


# MARK: LAN discovery (PROTOCOL.md section 7.3)

DISCOVERY_WINDOW = 3.0
DISCOVERY_SETTLE = 1.5


class _BeaconProtocol(asyncio.DatagramProtocol):
    def __init__(self):
        self.heard = []

    def datagram_received(self, data, address):
        if len(self.heard) < 10_000:
            self.heard.append((data, address[0]))


async def listen_for_beacons(seconds, port=p.BEACON_PORT):
    """Every (datagram, sender host) heard on UDP `port` for `seconds`; several listeners may share it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    transport, protocol = await asyncio.get_event_loop().create_datagram_endpoint(_BeaconProtocol, sock=sock)
    try:
        await asyncio.sleep(seconds)
    finally:
        transport.close()
    return protocol.heard


async def discover_coordinators(mesh, stretched, window=DISCOVERY_WINDOW, settle=DISCOVERY_SETTLE, log=log,
                                port=p.BEACON_PORT, pinned=None):
    """The coordinators that announce mesh `mesh` on the LAN with a beacon this key trusts, sorted,
    each as (address, the static key its beacon names in hex, "" in an open mesh). Listens `settle`
    seconds, longer (up to `window`) while none is trusted; logs each ignored sender once.
    A beacon naming a key other than `pinned` (hex) is ignored; beacons that name different keys for
    one address are all ignored (one of them comes from another member, and nothing says which)."""
    heard = await listen_for_beacons(settle, port)
    found, logged, conflicting = {}, set(), set()

    def ignore(sender, reason):
        if sender not in logged:
            logged.add(sender)
            log.warning("ignored a coordinator beacon from %s: %s", sender, reason)

    def weigh(items):
        for data, sender in items:
            beacon, reason = p.trusted_beacon(data, sender, mesh, stretched)
            if not beacon:
                ignore(sender, reason)
            elif pinned and beacon["key"].lower() != pinned.lower():
                ignore(sender, "it names a static key other than the pinned coordinator key")
            elif found.get(beacon["address"], beacon["key"].lower()) != beacon["key"].lower():
                conflicting.add(beacon["address"])
            elif beacon["address"] not in conflicting:
                found[beacon["address"]] = beacon["key"].lower()
    weigh(heard)
    waited = settle
    while not (found.keys() - conflicting) and waited < window:
        weigh(await listen_for_beacons(0.25, port))
        waited += 0.25
    for address in sorted(conflicting):
        found.pop(address, None)
        log.warning("ignored the beacons for %s: they name different static keys", address)
    return sorted(found.items())


async def _is_listening(address):
    """True when `address` (HOST:PORT) accepts a TCP connection: how a node with nothing configured
    learns whether a coordinator runs on its own host. Closed at once, without a byte written."""
    host, port = p.parse_address(address)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True
