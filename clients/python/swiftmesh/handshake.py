"""Protocol version 3's handshake, node identities and records (docs/PROTOCOL.md section 3).

A pure state machine fed bytes, and record sealing/opening from buffers. The Noise patterns run
in `noise.py`; `cryptography` provides X25519 and ChaCha20-Poly1305.
"""
import os

from . import noise
from .protocol import (HELLO_LENGTH, ID_LENGTH, MAGIC, MAXIMUM_HANDSHAKE_MESSAGE, NO_ID, NONCE_LENGTH,
                       PROLOGUE_LABEL, PURPOSE_ADMIN, PURPOSE_CONTROL, PURPOSE_DATA, PURPOSE_INSPECT,
                       PURPOSE_NAMES, REKEY_INTERVAL, TAG_LENGTH, TARGET_RECORD_LENGTH, VERSION, HandshakeError,
                       MeshError, ProtocolError, node_id_for_key)

REFUSAL = b"\x00\x00"
PROOF_INVALID = "peer failed to prove it knows the authkey (wrong key)"
REJECTED = "peer rejected our handshake (wrong key, or an identity it does not accept)"
DATA_PATTERN = "IKpsk1"
CONTROL_PATTERN = "XXpsk3"
# The sizes of the handshake messages (all payloads are empty, and each still carries its 16-byte
# tag: with a PSK, the "e" token already keys the cipher, so XXpsk3's first message is 32 + 16).
DATA_M1, DATA_M2 = 96, 48
CONTROL_M1, CONTROL_M2, CONTROL_M3 = 48, 96, 64
CONFIRMATION = TAG_LENGTH


# MARK: identities

class Identity:
    """A node's static X25519 key pair and the id it gives."""

    def __init__(self, private):
        self.keypair = noise.KeyPair(private)
        self.public = self.keypair.public
        self.id = node_id_for_key(self.public)
        self.id_bytes = bytes.fromhex(self.id)

    @classmethod
    def generate(cls):
        return cls(noise.KeyPair.generate().private)

    @classmethod
    def load(cls, path):
        """Reads a key file: the private key as 64 hex digits and a newline (`mesh keygen --node`)."""
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise MeshError(f"cannot read the identity file {path}: {error}") from None
        if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise MeshError(f"the identity file {path} does not hold a private key: expected 64 hex digits "
                            "(make one with mesh keygen --node)")
        return cls(bytes.fromhex(text))

    def save(self, path):
        """Writes the private key as `mesh keygen --node` does, readable by the owner only."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(self.keypair.private.hex() + "\n")


def public_key_problem(record):
    """Why a topology record's `key` cannot be dialled with (None when it can)."""
    text = record.get("key")
    if not isinstance(text, str) or len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        return "cannot authenticate the peer: its topology record carries no public key (a node of an older version?)"
    if node_id_for_key(bytes.fromhex(text)) != record.get("id"):
        return "cannot authenticate the peer: the public key in its topology record is not the key its id derives from"
    return None


# MARK: the handshake

def hello(purpose, keyed, nonce, node_id):
    return MAGIC + bytes([VERSION, 1 if keyed else 0, purpose]) + nonce + node_id


def _small_order(number):
    return f"peer broke the handshake protocol: the peer's key in handshake message {number} has small order"


def _framed(message):
    return len(message).to_bytes(2, "big") + message


class Handshake:
    """The version 3 handshake of one connection, as a state machine.

    `receive(data)` takes at most `bytes_wanted` bytes and returns (to_send, done); it raises
    HandshakeError on failure, after which `pending` holds bytes worth one attempt to write (a
    refusal `00 00` when this side was due to write the next message). Once established,
    `ciphers` is (sending, receiving) CipherStates for a keyed mesh, None for an open one, and
    `peer_static` the peer's proven static key.

    - `identity`: this side's Identity. Its id goes into the hello of a node's control and data
      connections; a coordinator (an acceptor that does not serve data), inspect and admin
      connections send the all-zero id. Without one, a fresh key pair is used.
    - `peer_key`: the static key of the node a data connector dials (from its topology record).
    - `coordinator_key`: a pinned coordinator key (32 bytes) for a control connector.
    - `ephemeral`: a fixed ephemeral KeyPair, for worked examples only.
    """

    def __init__(self, connector, purpose=None, key=None, identity=None, expected_peer_id=None, peer_key=None,
                 coordinator_key=None, served=None, nonce=None, ephemeral=None, rekey_interval=REKEY_INTERVAL):
        self.connector = connector
        self.purpose = purpose
        self.key = key
        # A node's hello carries its id; the coordinator's and the `mesh` tool's carry zeros.
        named = identity is not None and purpose not in (PURPOSE_INSPECT, PURPOSE_ADMIN) and (
            connector or PURPOSE_DATA in (served or {}))
        self.static = identity.keypair if identity is not None else noise.KeyPair.generate()
        self.local_id = identity.id_bytes if named else NO_ID
        self.expected_peer_id = expected_peer_id
        self.peer_key = peer_key
        self.coordinator_key = coordinator_key
        self.served = served or {}
        self.nonce = nonce or os.urandom(NONCE_LENGTH)
        self.ephemeral = ephemeral
        self.rekey_interval = rekey_interval
        self.local_hello = b""
        self.peer_hello = b""
        self.peer_id = b""
        self.peer_static = None
        self.stage = "hello"
        self.expecting = None
        self.length = 0
        self.buffer = bytearray()
        self.noise = None
        self.ciphers = None
        self.established = False
        self.failure = None
        self.pending = b""

    @property
    def speaks_first(self):
        """A connector that does not dial a known node, and an acceptor that serves data only.

        A connector dialling a known node (`expected_peer_id`) writes nothing until that node's
        hello has arrived with the expected id (docs/PROTOCOL.md section 3.1)."""
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
        self.local_hello = hello(self.purpose, self.key is not None, self.nonce, self.local_id)
        return self.local_hello

    @property
    def bytes_wanted(self):
        if self.stage == "hello":
            return HELLO_LENGTH - len(self.buffer)
        if self.stage == "length":
            return 2 - len(self.buffer)
        if self.stage == "message":
            return self.length - len(self.buffer)
        return 0

    def _fail(self, reason, text, pending=b""):
        self.stage = "failed"
        self.failure = reason
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
        if self.stage == "length":
            return self._length(int.from_bytes(message, "big"))
        if self.stage == "message":
            due = REFUSAL if self._due_to_write else b""
            number = {"m1": 1, "m2": 2, "m3": 3}.get(self.expecting)
            self.stage = "length"
            try:
                return getattr(self, "_read_" + self.expecting)(message)
            except noise.NoiseError:
                # Writing the answer failed: a low-order ephemeral key shows up only in its DH.
                self._fail("peerProtocolError", _small_order(number), due)
        return b"", False

    # Hellos

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
            return self._expect("m1", b"")
        if asked not in self.served:
            self.local_hello = hello(0, peer_keyed, self.nonce, self.local_id)
            name = PURPOSE_NAMES.get(asked, f"unknown purpose {asked}")
            self._fail("purposeNotServed", f"peer asked for a {name} connection, which this port does not serve",
                       self.local_hello)
        # A coordinator's purposes (a node serves data only; the tests' stub coordinator uses this).
        self.purpose = asked
        self.key = self.served[asked]
        self.local_hello = hello(asked, self.key is not None, self.nonce, self.local_id)
        self._key_mismatch(peer_keyed, self.local_hello)
        if self.key is None:
            return self.local_hello, self._establish()
        return self._expect("m1", self.local_hello)

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
            self.local_hello = hello(self.purpose, self.key is not None, self.nonce, self.local_id)
            answer = self.local_hello
        if self.key is None:
            return answer, self._establish()
        if self.purpose == PURPOSE_DATA:
            if self.peer_key is None:
                raise ValueError("a keyed data connection needs the peer's static key")
            self.noise = self._noise(DATA_PATTERN, rs=self.peer_key)
        else:
            self.noise = self._noise(CONTROL_PATTERN)
        return self._expect("m2", answer + _framed(self.noise.write_message()))

    # Noise messages

    @property
    def prologue(self):
        """"swift-mesh/3" || the connector's hello || the acceptor's hello (106 bytes)."""
        hellos = self.local_hello + self.peer_hello if self.connector else self.peer_hello + self.local_hello
        return PROLOGUE_LABEL + hellos

    def _noise(self, pattern, rs=None):
        return noise.HandshakeState(pattern, self.connector, self.prologue, s=self.static, e=self.ephemeral,
                                    rs=rs, psks=[self.key], rekey_interval=self.rekey_interval)

    def _expect(self, what, answer):
        self.expecting = what
        self.stage = "length"
        return answer, False

    def _length(self, length):
        if length == 0:
            self._fail("rejectedByPeer", REJECTED)
        refusal = REFUSAL if self._due_to_write else b""
        if length > MAXIMUM_HANDSHAKE_MESSAGE:
            self._fail("peerProtocolError", f"peer broke the handshake protocol: handshake message of {length} bytes; "
                       f"at most {MAXIMUM_HANDSHAKE_MESSAGE} are allowed", refusal)
        expected = self._expected_length()
        if length != expected:
            # Every message of both patterns has one size (all payloads are empty): nothing else is read.
            self._fail("peerProtocolError", f"peer broke the handshake protocol: handshake message of {length} bytes; "
                       f"{expected} expected", refusal)
        self.length = length
        self.stage = "message"
        return b"", False

    def _expected_length(self):
        if self.expecting == "confirmation":
            return CONFIRMATION
        if self.purpose == PURPOSE_DATA:
            return DATA_M1 if self.expecting == "m1" else DATA_M2
        return {"m1": CONTROL_M1, "m2": CONTROL_M2, "m3": CONTROL_M3}[self.expecting]

    @property
    def _due_to_write(self):
        """True while this side owes the next handshake message (it refuses with 00 00)."""
        return self.expecting in ("m1", "m2", "m3")

    def _read(self, message, number):
        """Reads Noise message `number`; a failure refuses with 00 00 and says why (section 3.3)."""
        try:
            self.noise.read_message(message)
        except noise.NoiseError as error:
            if error.token == "dh":
                self._fail("peerProtocolError", _small_order(number), REFUSAL)
            carries_psk = "psk" in self.noise.messages[number - 1]
            if self.purpose == PURPOSE_DATA and not self.connector and error.token == "s":
                # IKpsk1's s is encrypted under es alone: the dialler used another key for this node.
                self._fail("peerProtocolError", "peer broke the handshake protocol: handshake message failed "
                           "authentication: the peer does not have this node's public key", REFUSAL)
            if carries_psk:
                self._fail("peerProofInvalid", PROOF_INVALID, REFUSAL)
            if self.purpose == PURPOSE_DATA and self.connector:
                self._fail("staticKeyNotProven", "peer did not prove it holds the private key of the node expected "
                           "at this address", REFUSAL)
            self._fail("peerProtocolError", f"peer broke the handshake protocol: handshake message {number} failed "
                       "authentication", REFUSAL)

    def _read_m1(self, message):
        if self.purpose != PURPOSE_DATA:
            # XXpsk3 responder (a coordinator): e; answer with e, ee, s, es.
            self.noise = self._noise(CONTROL_PATTERN)
            self._read(message, 1)
            return self._expect("m3", _framed(self.noise.write_message()))
        # Data acceptor (IKpsk1 responder): the connector's e, es, s, ss, psk.
        self.noise = self._noise(DATA_PATTERN)
        self._read(message, 1)
        self._check_claimed_id(REFUSAL)
        answer = _framed(self.noise.write_message())
        self.ciphers = self.noise.split()
        return self._expect("confirmation", answer)

    def _check_claimed_id(self, refusal):
        self.peer_static = self.noise.rs
        owner = node_id_for_key(self.peer_static)
        if owner != self.peer_id.hex():
            self._fail("impostor", f"peer claims to be node {self.peer_id.hex()}, but its static key belongs to "
                       f"node {owner}", refusal)

    def _read_m2(self, message):
        self._read(message, 2)
        self.peer_static = self.noise.rs
        if self.purpose == PURPOSE_DATA:
            self.ciphers = self.noise.split()
            confirmation = self.ciphers[0].encrypt_with_ad(b"", b"")
            return _framed(confirmation), self._establish()
        if self.coordinator_key is not None and self.peer_static != self.coordinator_key:
            # Refused instead of M3: this node's static key is never sent to that coordinator.
            self._fail("wrongCoordinatorKey", f"coordinator's static key {self.peer_static.hex()} is not the pinned "
                       f"key {self.coordinator_key.hex()}", REFUSAL)
        answer = _framed(self.noise.write_message())
        self.ciphers = self.noise.split()
        return self._expect("confirmation", answer)

    def _read_m3(self, message):
        """Coordinator (XXpsk3 responder): s, se, psk; then the confirmation."""
        self._read(message, 3)
        if self.purpose == PURPOSE_CONTROL:
            self._check_claimed_id(REFUSAL)
        elif self.peer_id != NO_ID:
            self._fail("peerProtocolError", "peer broke the handshake protocol: the hello of an inspect or admin "
                       "connection names a node", REFUSAL)
        self.peer_static = self.noise.rs
        self.ciphers = self.noise.split()
        return _framed(self.ciphers[0].encrypt_with_ad(b"", b"")), self._establish()

    def _read_confirmation(self, message):
        try:
            self.ciphers[1].decrypt_with_ad(b"", message)
        except noise.NoiseError:
            self._fail("peerProofInvalid", PROOF_INVALID)
        if not self.connector:
            self.peer_static = self.noise.rs
        return b"", self._establish()

    def _establish(self):
        self.stage = "established"
        self.expecting = None
        self.established = True
        return True


# MARK: records (section 3.4)

def seal_records(cipher, frames, out):
    """Appends `frames` (whole frames, back to back) to `out` as records of about 64 KiB, sealed
    with the sending CipherState (its nonce counter and rekeying advance)."""
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
        header = (end - start + TAG_LENGTH).to_bytes(4, "big")
        out += header
        out += cipher.encrypt_with_ad(header, view[start:end])
        start = end


class RecordOpener:
    """Opens records as they arrive and hands back their frames (section 3.4)."""

    def __init__(self, cipher, maximum_frame_length):
        self.cipher = cipher
        self.opened = 0
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
                if length <= TAG_LENGTH:
                    raise ProtocolError(f"protocol violation: record of {length} bytes holds no frame")
                if length > self.limit:
                    raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.limit} bytes")
                end = index + 4 + length
                if end > size:
                    break
                try:
                    frames += self.cipher.decrypt_with_ad(buffer[index:index + 4], buffer[index + 4:end])
                except noise.NoiseError as error:
                    if error.token == "nonce":
                        raise ProtocolError(f"record {self.opened}: {error}") from None
                    raise ProtocolError(
                        f"protocol violation: record {self.opened} failed authentication: bytes were injected, "
                        "altered, dropped or replayed on the way") from None
                self.opened += 1
                index = end
        finally:
            if index:
                del buffer[:index]

    @property
    def holds_partial(self):
        return len(self.buffer) > 0


__all__ = ["Handshake", "Identity", "RecordOpener", "seal_records", "public_key_problem", "hello", "REFUSAL",
           "ID_LENGTH"]
