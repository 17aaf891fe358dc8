"""The swift-mesh wire protocol, version 2 (docs/PROTOCOL.md), as pure functions and values.

No sockets and no clocks here: the handshake is a state machine fed bytes, records are sealed
and opened from buffers, frames are split from a bytearray.
"""
import hashlib
import hmac
import json
import os
import struct
import unicodedata

MAGIC = b"MESH"
VERSION = 2
NONCE_LENGTH = 32
ID_LENGTH = 8
HELLO_LENGTH = 4 + 1 + 1 + 1 + NONCE_LENGTH + ID_LENGTH  # 47
PROOF_LENGTH = 32
VERDICT_LENGTH = 1 + PROOF_LENGTH
CONNECTOR_LABEL = b"swift-mesh/2 connector"
ACCEPTOR_LABEL = b"swift-mesh/2 acceptor"
C2A_INFO = b"swift-mesh/2 connector to acceptor"
A2C_INFO = b"swift-mesh/2 acceptor to connector"
KEY_SALT = b"swift-mesh/2 authkey"
KEY_ROUNDS = 100_000
MINIMUM_KEY_LENGTH = 16
NODE_ID_LABEL = b"swift-mesh/2 node id"
NO_ID = bytes(ID_LENGTH)
TAG_LENGTH = 32
TARGET_RECORD_LENGTH = 64 * 1024

PURPOSE_CONTROL = 1
PURPOSE_INSPECT = 2
PURPOSE_ADMIN = 3
PURPOSE_DATA = 4
PURPOSE_NAMES = {1: "node control", 2: "inspector", 3: "admin", 4: "peer data"}

KIND_CONTROL = 1
KIND_PEER_HELLO = 2
KIND_MESSAGE = 3
KIND_REQUEST = 4
KIND_REPLY = 5
KIND_FAILURE = 6
KIND_CLOSING = 7  # sender -> receiver, as it closes: messages it sent on the connection (PROTOCOL §8.3)
KIND_CONFIRMED = 8  # receiver -> sender: messages from the connection it took

ENCODING_RAW = 0
ENCODING_CODEC = 1

DEFAULT_PORT = 6374
DEFAULT_COORDINATOR = "127.0.0.1:6374"


class MeshError(Exception):
    """Base of every error this package raises."""


class ProtocolError(MeshError):
    """The peer broke the protocol; the connection is closed."""


class HandshakeError(MeshError):
    """The handshake failed; `reason` is one of the names of docs/PROTOCOL.md section 3.5."""

    def __init__(self, reason, text):
        super().__init__(text)
        self.reason = reason

    @property
    def is_authentication_failure(self):
        return self.reason in ("peerRequiresKey", "peerHasNoKey", "peerProofInvalid", "rejectedByPeer")


class WeakKeyError(MeshError):
    pass


# MARK: keys and ids

_stretched = {}


def stretch_key(text):
    """The 32-byte key a key text stands for (PBKDF2-HMAC-SHA256), or None for no key."""
    if text is None or text == "":
        return None
    raw = text.encode("utf-8")
    if len(raw) < MINIMUM_KEY_LENGTH:
        raise WeakKeyError(
            f"the authkey is {len(raw)} bytes; at least {MINIMUM_KEY_LENGTH} are needed (make one with mesh keygen)")
    key = _stretched.get(text)
    if key is None:
        key = hashlib.pbkdf2_hmac("sha256", raw, KEY_SALT, KEY_ROUNDS, 32)
        if len(_stretched) > 64:
            _stretched.clear()
        _stretched[text] = key
    return key


def node_id_for_secret(secret):
    return hashlib.sha256(NODE_ID_LABEL + secret).digest()[:ID_LENGTH].hex()


def make_node_id():
    """A fresh (id, secret hex) pair."""
    secret = os.urandom(16)
    return node_id_for_secret(secret), secret.hex()


def is_valid_node_id(text):
    return isinstance(text, str) and len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def _has_control_characters(text):
    return any(unicodedata.category(c) == "Cc" for c in text)


def name_problem(name, kind="name"):
    """Why `name` is not a valid node name, topic or service (None when it is)."""
    if not isinstance(name, str):
        return f"{kind} must be a string"
    length = len(name.encode("utf-8", "surrogatepass"))
    if length == 0:
        return f"{kind} is empty"
    if length > 255:
        return f"{kind} is {length} bytes; the limit is 255"
    if _has_control_characters(name):
        return f"{kind} contains control characters"
    return None


# MARK: the handshake

def _hello(purpose, keyed, nonce, node_id):
    return MAGIC + bytes([VERSION, 1 if keyed else 0, purpose]) + nonce + node_id


def _hkdf_expand(prk, info):
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class SessionKeys:
    """One key per direction, from the stretched key and both hellos (section 3.3)."""

    def __init__(self, key, connector_hello, acceptor_hello, connector):
        salt = hashlib.sha256(connector_hello + acceptor_hello).digest()
        prk = hmac.new(salt, key, hashlib.sha256).digest()
        c2a = _hkdf_expand(prk, C2A_INFO)
        a2c = _hkdf_expand(prk, A2C_INFO)
        self.sending, self.receiving = (c2a, a2c) if connector else (a2c, c2a)


class Handshake:
    """The version 2 handshake as a state machine.

    `receive(data)` takes at most `bytes_wanted` bytes and returns (to_send, done); it raises
    HandshakeError on failure, after which `pending` holds bytes worth one attempt to write.
    """

    def __init__(self, connector, purpose=None, key=None, local_id=None, expected_peer_id=None,
                 served=None, nonce=None):
        self.connector = connector
        self.purpose = purpose
        self.key = key
        self.local_id = local_id or NO_ID
        self.expected_peer_id = expected_peer_id
        self.served = served or {}
        self.nonce = nonce or os.urandom(NONCE_LENGTH)
        self.local_hello = b""
        self.peer_hello = b""
        self.peer_id = b""
        self.stage = "hello"
        self.buffer = bytearray()
        self.session_keys = None
        self.established = False
        self.pending = b""

    @property
    def speaks_first(self):
        """A connector that does not dial a known node, and an acceptor that serves data only.

        A connector dialling a known node (`expected_peer_id`) writes nothing until that node's
        hello has arrived with the expected id, so a node that advertises someone else's port
        never makes its senders write to it (docs/PROTOCOL.md section 3.1)."""
        if self.connector:
            return self.expected_peer_id is None
        return set(self.served) == {PURPOSE_DATA}

    @property
    def awaiting_acceptor(self):
        """True while a connector dialling a known node waits for its hello, having sent nothing."""
        return self.connector and self.stage == "hello" and not self.local_hello

    def start(self):
        """This side's hello when it speaks first, else nothing."""
        if not self.speaks_first:
            return b""
        if not self.connector:
            self.purpose = PURPOSE_DATA
            self.key = self.served[PURPOSE_DATA]
        self.local_hello = _hello(self.purpose, self.key is not None, self.nonce, self.local_id)
        return self.local_hello

    @property
    def bytes_wanted(self):
        need = {"hello": HELLO_LENGTH, "proof": PROOF_LENGTH, "verdict": VERDICT_LENGTH}.get(self.stage, 0)
        return need - len(self.buffer)

    def _fail(self, reason, text, pending=b""):
        self.stage = "failed"
        self.pending = pending
        raise HandshakeError(reason, text)

    def receive(self, data):
        self.buffer += data
        if self.stage == "hello":
            head = bytes(self.buffer[:4])
            if head != MAGIC[:len(head)]:
                shown = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in self.buffer[:16])
                self._fail("notAMeshPeer", f'peer is not a mesh peer (its first bytes were "{shown}"); '
                           "is another program on this port?")
            if len(self.buffer) > 4 and self.buffer[4] != VERSION:
                self._fail("versionMismatch", f"protocol mismatch: peer speaks mesh protocol version "
                           f"{self.buffer[4]}, this client speaks version {VERSION}")
        if self.bytes_wanted > 0:
            return b"", False
        message = bytes(self.buffer)
        self.buffer.clear()
        if self.stage == "hello":
            return self._connector_hello(message) if self.connector else self._acceptor_hello(message)
        if self.stage == "proof":
            if not hmac.compare_digest(message, self._proof(CONNECTOR_LABEL)):
                self._fail("peerProofInvalid", "peer failed to prove it knows the authkey (wrong key)",
                           b"\x01" + bytes(PROOF_LENGTH))
            return b"\x00" + self._proof(ACCEPTOR_LABEL), self._establish()
        if self.stage == "verdict":
            if message[0] != 0:
                self._fail("rejectedByPeer", "peer rejected our authkey (wrong key)")
            if not hmac.compare_digest(message[1:], self._proof(ACCEPTOR_LABEL)):
                self._fail("peerProofInvalid", "peer failed to prove it knows the authkey (wrong key)")
            return b"", self._establish()
        return b"", False

    def _key_mismatch(self, peer_keyed, answer=b""):
        if self.key is None and peer_keyed:
            self._fail("peerRequiresKey", "peer requires an authkey but none is configured here "
                       "(set MESH_AUTHKEY)", answer)
        if self.key is not None and not peer_keyed:
            self._fail("peerHasNoKey", "an authkey is configured here but the peer does not use one", answer)

    def _acceptor_hello(self, message):
        self.peer_hello = message
        self.peer_id = message[39:47]
        peer_keyed = message[5] & 1 == 1
        asked = message[6]
        if self.local_hello:
            # This side spoke first (a data port): its hello and its key choice are out already.
            if asked != PURPOSE_DATA:
                name = PURPOSE_NAMES.get(asked, f"unknown purpose {asked}")
                self._fail("purposeNotServed", f"peer asked for a {name} connection, which this port does not serve")
            self._key_mismatch(peer_keyed)
            if self.key is None:
                return b"", self._establish()
            self.stage = "proof"
            return b"", False
        if asked not in self.served:
            self.local_hello = _hello(0, peer_keyed, self.nonce, self.local_id)
            name = PURPOSE_NAMES.get(asked, f"unknown purpose {asked}")
            self._fail("purposeNotServed", f"peer asked for a {name} connection, which this port does not serve",
                       self.local_hello)
        self.purpose = asked
        self.key = self.served[asked]
        self.local_hello = _hello(asked, self.key is not None, self.nonce, self.local_id)
        self._key_mismatch(peer_keyed, self.local_hello)
        if self.key is None:
            return self.local_hello, self._establish()
        self.stage = "proof"
        return self.local_hello, False

    def _connector_hello(self, message):
        self.peer_hello = message
        self.peer_id = message[39:47]
        if message[6] != self.purpose:
            if message[6] == 0 or (self.local_hello and message[6] == PURPOSE_DATA):
                name = PURPOSE_NAMES.get(self.purpose, "?")
                self._fail("purposeRefused", f"peer does not serve {name} connections on this port (wrong port?)")
            self._fail("peerProtocolError", f"peer broke the handshake protocol: echoed purpose {message[6]}")
        if self.expected_peer_id is not None and self.expected_peer_id != self.peer_id:
            self._fail("wrongPeer", f"peer is node {self.peer_id.hex()}, not the node "
                       f"{self.expected_peer_id.hex()} expected at this address")
        self._key_mismatch(message[5] & 1 == 1)
        answer = b""
        if not self.local_hello:
            # Dialled a known node: speak only now that it has shown the expected id.
            self.local_hello = _hello(self.purpose, self.key is not None, self.nonce, self.local_id)
            answer = self.local_hello
        if self.key is None:
            return answer, self._establish()
        self.stage = "verdict"
        return answer + self._proof(CONNECTOR_LABEL), False

    def _transcript(self):
        return self.local_hello + self.peer_hello if self.connector else self.peer_hello + self.local_hello

    def _proof(self, label):
        return hmac.new(self.key, label + self._transcript(), hashlib.sha256).digest()

    def _establish(self):
        self.stage = "established"
        self.established = True
        if self.key is not None:
            transcript = self._transcript()
            self.session_keys = SessionKeys(
                self.key, transcript[:HELLO_LENGTH], transcript[HELLO_LENGTH:], self.connector)
        return True


# MARK: records

def seal_records(key, sequence, frames, out):
    """Appends `frames` (whole frames, back to back) to `out` as records of about 64 KiB.

    Returns the next sequence number.
    """
    total = len(frames)
    start = 0
    view = memoryview(frames)
    while start < total:
        end = start
        while end + 4 <= total:
            length = int.from_bytes(view[end:end + 4], "big")
            following = end + 4 + length
            if following - start > TARGET_RECORD_LENGTH and end > start:
                break
            end = following
        end = min(end, total)
        header = struct.pack(">I", end - start + TAG_LENGTH)
        mac = hmac.new(key, struct.pack(">Q", sequence), hashlib.sha256)
        mac.update(header)
        chunk = view[start:end]
        mac.update(chunk)
        out += header
        out += chunk
        out += mac.digest()
        sequence += 1
        start = end
    return sequence


class RecordOpener:
    """Checks records as they arrive and hands back their frames (section 3.4)."""

    def __init__(self, key, maximum_frame_length):
        self.key = key
        self.sequence = 0
        self.limit = max(TARGET_RECORD_LENGTH, 4 + maximum_frame_length) + TAG_LENGTH
        self.buffer = bytearray()

    def open(self, data, frames):
        """Adds received bytes; appends the frames of every complete, valid record to `frames`."""
        buffer = self.buffer
        buffer += data
        index = 0
        size = len(buffer)
        try:
            while size - index >= 4:
                length = int.from_bytes(buffer[index:index + 4], "big")
                if length == 0:
                    raise ProtocolError("frame with zero length")
                if length > self.limit:
                    raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.limit} bytes")
                if length <= TAG_LENGTH:
                    raise ProtocolError(f"protocol violation: record of {length} bytes is shorter than its tag")
                end = index + 4 + length
                if end > size:
                    break
                body_end = end - TAG_LENGTH
                mac = hmac.new(self.key, struct.pack(">Q", self.sequence), hashlib.sha256)
                mac.update(buffer[index:body_end])
                if not hmac.compare_digest(mac.digest(), bytes(buffer[body_end:end])):
                    raise ProtocolError(
                        f"protocol violation: record {self.sequence} failed authentication: bytes were injected, "
                        "altered, dropped or replayed on the way")
                frames += buffer[index + 4:body_end]
                self.sequence += 1
                index = end
        finally:
            if index:
                del buffer[:index]

    @property
    def holds_partial(self):
        return len(self.buffer) > 0


# MARK: frames

def frame(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


def control_frame(message):
    body = json.dumps(message, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    return frame(KIND_CONTROL, body)


def message_frame(topic_bytes, encoding, payload):
    return (struct.pack(">IBH", len(payload) + len(topic_bytes) + 4, KIND_MESSAGE, len(topic_bytes))
            + topic_bytes + bytes((encoding,)) + payload)


def split_frames(buffer, limit):
    """Yields (kind, body) for each complete frame in `buffer` and removes them from it.

    Raises ProtocolError for a zero or oversized length.
    """
    index = 0
    size = len(buffer)
    out = []
    try:
        while size - index >= 4:
            length = int.from_bytes(buffer[index:index + 4], "big")
            if length == 0:
                raise ProtocolError("frame with zero length")
            if length > limit:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of {limit} bytes")
            end = index + 4 + length
            if end > size:
                break
            out.append((buffer[index + 4], bytes(buffer[index + 5:end])))
            index = end
    finally:
        if index:
            del buffer[:index]
    return out


def parse_message(body):
    """(topic, encoding, payload) of a message frame body; raises ProtocolError."""
    if len(body) < 3:
        raise ProtocolError(f"malformed frame: message body of {len(body)} bytes is too short")
    topic_length = int.from_bytes(body[0:2], "big")
    if topic_length == 0:
        raise ProtocolError("malformed frame: message topic is empty")
    if topic_length > 255:
        raise ProtocolError(f"malformed frame: message topic of {topic_length} bytes exceeds 255")
    if 2 + topic_length >= len(body):
        raise ProtocolError("malformed frame: message topic runs past the end of the frame")
    try:
        topic = body[2:2 + topic_length].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("malformed frame: message topic is not UTF-8") from None
    if _has_control_characters(topic):
        raise ProtocolError("malformed frame: message topic contains control characters")
    encoding = body[2 + topic_length]
    if encoding not in (ENCODING_RAW, ENCODING_CODEC):
        raise ProtocolError(f"malformed frame: unknown payload encoding {encoding}")
    return topic, encoding, body[3 + topic_length:]


def parse_address(text, default_port=DEFAULT_PORT):
    """(host, port) from `a.b.c.d:port`, `[v6]:port`, `host` or `host:port`."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def local_scope():
    """This host and network namespace, as the Swift code names them (PROTOCOL.md section 5.2)."""
    try:
        with open("/etc/machine-id", encoding="utf-8") as file:
            machine = file.read().strip()
    except OSError:
        machine = ""
    if not machine:
        import socket as _socket
        machine = _socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/net")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{machine}/{namespace}".encode("utf-8")).hexdigest()[:12]


def unix_address(node_id):
    """The abstract Unix socket address of a node: NUL, swift-mesh-ID, NUL padding to 108 bytes."""
    name = b"\0swift-mesh-" + node_id.encode("ascii")
    return name + b"\0" * (108 - len(name))


def is_loopback(host):
    return host == "::1" or host.startswith("127.") or host == "localhost" or host.startswith("::ffff:127.")


def same_host(advertised, source):
    """The coordinator's rule: equal, or both loopback."""
    return advertised == source or (is_loopback(advertised) and is_loopback(source))


# Typed topics (PROTOCOL.md §16.1)

def shape(schema):
    """The canonical shape string of `schema`: a shape string as it is, `bool`/`int`/`float`/`str`,
    a one-element list `[S]`, or a dict of field name to schema (a name ending in "?" may be absent;
    `{"*": S}` is a dictionary)."""
    if isinstance(schema, str):
        return schema
    if schema is bool:
        return "bool"
    if schema is int:
        return "int"
    if schema is float:
        return "float"
    if schema is str:
        return "string"
    if isinstance(schema, list) and len(schema) == 1:
        return "[" + shape(schema[0]) + "]"
    if isinstance(schema, dict):
        fields = []
        for key, value in schema.items():
            name, optional = (key[:-1], True) if key.endswith("?") else (key, False)
            fields.append((name.encode("utf-8"), name + ("?:" if optional else ":") + shape(value)))
        return "{" + ",".join(text for _, text in sorted(fields)) + "}"
    raise TypeError(f"not a schema: {schema!r}")


def fingerprint(schema):
    """16 hex digits: the first 8 bytes of SHA-256 of the schema's shape."""
    return hashlib.sha256(shape(schema).encode("utf-8")).hexdigest()[:16]


def topic_type(type_name, schema=None):
    """The declaration for `type_name` (None when no type is declared)."""
    if type_name is None:
        if schema is not None:
            raise ValueError("a schema needs a type_name")
        return None
    problem = name_problem(type_name, "type name")
    if problem:
        raise ValueError(problem)
    declared = {"name": type_name}
    if schema is not None:
        declared["fingerprint"] = fingerprint(schema)
    return declared


def types_agree(a, b):
    if a.get("name") != b.get("name"):
        return False
    if a.get("fingerprint") is None or b.get("fingerprint") is None:
        return True
    return a["fingerprint"] == b["fingerprint"]


def type_text(declared):
    fp = declared.get("fingerprint")
    return f"{declared.get('name')} ({fp})" if fp else str(declared.get("name"))



# MARK: coordinator lists and LAN beacons (PROTOCOL.md sections 7.2 and 7.3)

DISCOVER = "discover"
BEACON_FORMAT = "swift-mesh/1"
BEACON_PORT = 6374
BEACON_MAXIMUM_SIZE = 1024


def coordinator_list(text):
    """The addresses in `a:6374,b:6374`, in order, each once, blanks skipped."""
    seen = []
    for part in (text or "").split(","):
        address = part.strip()
        if address and address not in seen:
            seen.append(address)
    return seen


def beacon_key(stretched):
    """HKDF-SHA256 of the stretched mesh key, salt empty, info "swift-mesh/2 beacon", 32 bytes."""
    prk = hmac.new(b"\x00" * 32, stretched, hashlib.sha256).digest()
    return hmac.new(prk, b"swift-mesh/2 beacon" + b"\x01", hashlib.sha256).digest()


def beacon_signed_bytes(beacon):
    return f"{beacon['beacon']}\n{beacon['mesh']}\n{beacon['address']}\n{beacon['key']}\n".encode("utf-8")


def check_beacon(datagram, sender, mesh, stretched):
    """(address, None) for a beacon a node of `mesh` holding `stretched` may use, else (None, reason)."""
    if len(datagram) > BEACON_MAXIMUM_SIZE:
        return None, f"a datagram of {len(datagram)} bytes, larger than a beacon"
    try:
        beacon = json.loads(datagram)
    except ValueError:
        return None, "not a beacon"
    fields = ("beacon", "mesh", "address", "key", "mac")
    if not isinstance(beacon, dict) or not all(isinstance(beacon.get(field), str) for field in fields):
        return None, "not a beacon"
    if beacon["beacon"] != BEACON_FORMAT:
        return None, "unknown beacon format"
    if any("\n" in beacon[field] or len(beacon[field].encode("utf-8")) > 255 for field in ("mesh", "address", "key")):
        return None, "a field too long or with a line break"
    if beacon["mesh"] != mesh:
        return None, f"another mesh ({beacon['mesh'][:80]!r})"
    try:
        host, port = parse_address(beacon["address"], 0)
        socket_ok = 0 < port < 65536 and host and all(c in "0123456789abcdefABCDEF.:" for c in host)
    except ValueError:
        socket_ok = False
    if not socket_ok:
        return None, "address is not a numeric HOST:PORT"
    if stretched is not None:
        expected = hmac.new(beacon_key(stretched), beacon_signed_bytes(beacon), hashlib.sha256).hexdigest()
        if not beacon["mac"]:
            return None, "no HMAC, and this mesh is keyed"
        if not hmac.compare_digest(expected, beacon["mac"].lower()):
            return None, "bad HMAC (another key)"
    else:
        if beacon["mac"]:
            return None, "a keyed mesh's beacon, and this node has no key"
        if host != sender:
            return None, f"an open mesh's beacon names {host}, not the host it came from"
    return beacon["address"], None
