"""The swift-mesh wire protocol, version 3 (docs/PROTOCOL.md), as pure functions and values.

No sockets and no clocks here: the handshake is a state machine fed bytes, records are sealed
and opened from buffers, frames are split from a bytearray. The handshake, node identities and
records live in `handshake.py` and are re-exported here.
"""
import hashlib
import hmac
import json
import os
import struct
import unicodedata

MAGIC = b"MESH"
VERSION = 3
NONCE_LENGTH = 32
ID_LENGTH = 8
HELLO_LENGTH = 4 + 1 + 1 + 1 + NONCE_LENGTH + ID_LENGTH  # 47
PROLOGUE_LABEL = b"swift-mesh/3"
KEY_SALT = b"swift-mesh/2 authkey"  # unchanged from version 2: the same key text gives the same PSK
KEY_ROUNDS = 100_000
MINIMUM_KEY_LENGTH = 16
NODE_ID_LABEL = b"swift-mesh/3 node id"
NO_ID = bytes(ID_LENGTH)
TAG_LENGTH = 16
TARGET_RECORD_LENGTH = 64 * 1024
MAXIMUM_HANDSHAKE_MESSAGE = 1024
REKEY_INTERVAL = 1 << 20  # a direction rekeys after every 2^20 records (section 3.4)

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
        return self.reason in AUTHENTICATION_FAILURES


# As the Swift code counts them: a node that fails one of these while starting raises AuthenticationFailed.
AUTHENTICATION_FAILURES = ("peerRequiresKey", "peerHasNoKey", "peerProofInvalid", "rejectedByPeer",
                           "wrongCoordinatorKey")


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


def node_id_for_key(public):
    """The id (16 hex digits) of a 32-byte static public key: SHA-256("swift-mesh/3 node id" || key)."""
    return hashlib.sha256(NODE_ID_LABEL + bytes(public)).digest()[:ID_LENGTH].hex()


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


from .handshake import Handshake, Identity, RecordOpener, seal_records  # noqa: E402,F401  (re-exported)

# MARK: coordinator lists and LAN beacons (PROTOCOL.md sections 7.2 and 7.3)

DISCOVER = "discover"
AUTOMATIC = "auto"  # nothing configured: this host's coordinator, else the LAN's (section 7.3)
BEACON_FORMAT = "swift-mesh/1"
BEACON_PORT = 6374
BEACON_MAXIMUM_SIZE = 1024


# The control message types (PROTOCOL.md section 5.4); any other from a coordinator breaks the protocol.
CONTROL_TYPES = {"register", "welcome", "rejected", "listen", "unlisten", "delta", "sync", "topology",
                 "heartbeat", "bye", "inspect", "status", "kill", "killed", "shutdown", "serve", "unserve",
                 "publish", "refused"}


def control_messages(frames, types):
    """The control messages in `frames` (kind, body), each a dict whose `type` is in `types`;
    a ProtocolError for any other kind of frame or a malformed message."""
    for kind, body in frames:
        if kind != KIND_CONTROL:
            raise ProtocolError(f"unexpected frame kind 0x{kind:x}")
        try:
            message = json.loads(body)
        except ValueError as error:
            raise ProtocolError(f"malformed frame: control message: {error}") from None
        if not isinstance(message, dict) or message.get("type") not in types:
            raise ProtocolError("malformed frame: control message: unknown or missing type")
        yield message


def escaped(text):
    """`text` with what is not printable written as an escape, for log lines holding a peer's words."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
    beacon, reason = trusted_beacon(datagram, sender, mesh, stretched)
    return (beacon["address"], None) if beacon else (None, reason)


def trusted_beacon(datagram, sender, mesh, stretched):
    """(the beacon's fields, None) for a beacon a node of `mesh` holding `stretched` may use, else
    (None, reason)."""
    if len(datagram) > BEACON_MAXIMUM_SIZE:
        return None, f"a datagram of {len(datagram)} bytes, larger than a beacon"
    try:
        beacon = json.loads(datagram)
    except (ValueError, RecursionError):  # RecursionError: deep nesting, well within 1,024 bytes
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
        if not beacon["mac"].isascii():  # compare_digest refuses text that is not ASCII
            return None, "bad HMAC (another key)"
        if not hmac.compare_digest(expected, beacon["mac"].lower()):
            return None, "bad HMAC (another key)"
    else:
        if beacon["mac"]:
            return None, "a keyed mesh's beacon, and this node has no key"
        if host != sender:
            return None, f"an open mesh's beacon names {host}, not the host it came from"
    key = beacon["key"]
    if key and not (len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key)):
        return None, "its key field is not a public key (64 hex digits)"
    return beacon, None
