#!/usr/bin/env python3
"""Computes the worked example of docs/PROTOCOL.md section 3.8 (protocol version 3).

Uses the Python client's Noise module (clients/python/swiftmesh/noise.py, itself checked
against the published cacophony vectors) and PyPI's `cryptography`. Run it and compare with the
document:

    python3 scripts/protocol_vectors.py

Every private key, ephemeral key and nonce is fixed, so the output never changes.
Tests/MeshTests/ProtocolVectorTests.swift asserts the same bytes against the Swift code.
"""
import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "python"))

from swiftmesh import noise  # noqa: E402

AUTHKEY = "5ede06b6f51adaad884861af2520cd1c1be8e590afcb7c0a289860b2d53071f9"  # made by `mesh keygen`
NODE_A = bytes(range(0x01, 0x21))            # the node's static private key: 01 .. 20
COORDINATOR = bytes(range(0x21, 0x41))       # the coordinator's static private key: 21 .. 40
EPHEMERAL_C = bytes(range(0x41, 0x61))       # the node's ephemeral private key (it connects both times): 41 .. 60
EPHEMERAL_COORDINATOR = bytes(range(0x61, 0x81))  # the coordinator's ephemeral private key: 61 .. 80
NODE_B = bytes(range(0x81, 0xa1))            # the peer's (the dialled node's) static private key: 81 .. a0
EPHEMERAL_B = bytes(range(0xa1, 0xc1))       # the peer's ephemeral private key: a1 .. c0
NC = bytes(range(0x00, 0x20))                # connector nonce 00 .. 1f
NA = bytes(range(0xa0, 0xc0))                # acceptor nonce a0 .. bf
CONTROL, DATA = 1, 4


def hx(data: bytes) -> str:
    """Bytes as hex, 16 to a line, as the document prints them."""
    return "\n".join(" ".join(f"{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))


def node_id(public: bytes) -> bytes:
    return hashlib.sha256(b"swift-mesh/3 node id" + public).digest()[:8]


def hello(purpose: int, nonce: bytes, id_bytes: bytes) -> bytes:
    return b"MESH" + bytes([3, 1, purpose]) + nonce + id_bytes


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def record(cipher: noise.CipherState, frames: bytes) -> bytes:
    header = (len(frames) + 16).to_bytes(4, "big")
    return header + cipher.encrypt_with_ad(header, frames)


key = hashlib.pbkdf2_hmac("sha256", AUTHKEY.encode(), b"swift-mesh/2 authkey", 100_000, 32)
a, b, coordinator = noise.KeyPair(NODE_A), noise.KeyPair(NODE_B), noise.KeyPair(COORDINATOR)
id_a, id_b = node_id(a.public), node_id(b.public)
heartbeat_body = b'{"type":"heartbeat"}'
heartbeat = (len(heartbeat_body) + 1).to_bytes(4, "big") + b"\x01" + heartbeat_body

# Control: node A dials the coordinator (XXpsk3; the connector speaks first).
control_hc = hello(CONTROL, NC, id_a)
control_ha = hello(CONTROL, NA, bytes(8))
control_prologue = b"swift-mesh/3" + control_hc + control_ha
initiator = noise.HandshakeState("XXpsk3", True, control_prologue, s=a, e=noise.KeyPair(EPHEMERAL_C), psks=[key])
responder = noise.HandshakeState("XXpsk3", False, control_prologue, s=coordinator,
                                 e=noise.KeyPair(EPHEMERAL_COORDINATOR),
                                 psks=[key])
control_m1 = initiator.write_message()
responder.read_message(control_m1)
control_m2 = responder.write_message()
initiator.read_message(control_m2)
control_m3 = initiator.write_message()
responder.read_message(control_m3)
assert initiator.h == responder.h and responder.rs == a.public and initiator.rs == coordinator.public
control_h = initiator.h
node_send, node_receive = initiator.split()
coordinator_send, coordinator_receive = responder.split()
control_confirmation = coordinator_send.encrypt_with_ad(b"", b"")
node_receive.decrypt_with_ad(b"", control_confirmation)
control_record = record(node_send, heartbeat)
assert coordinator_receive.decrypt_with_ad(control_record[:4], control_record[4:]) == heartbeat

# Data: node A dials node B (IKpsk1; the acceptor speaks first, still Hc first in the prologue).
data_ha = hello(DATA, NA, id_b)
data_hc = hello(DATA, NC, id_a)
data_prologue = b"swift-mesh/3" + data_hc + data_ha
initiator = noise.HandshakeState("IKpsk1", True, data_prologue, s=a, e=noise.KeyPair(EPHEMERAL_C), rs=b.public,
                                 psks=[key])
responder = noise.HandshakeState("IKpsk1", False, data_prologue, s=b, e=noise.KeyPair(EPHEMERAL_B), psks=[key])
data_m1 = initiator.write_message()
responder.read_message(data_m1)
data_m2 = responder.write_message()
initiator.read_message(data_m2)
assert initiator.h == responder.h and responder.rs == a.public
data_h = initiator.h
a_send, _ = initiator.split()
_, b_receive = responder.split()
data_confirmation = a_send.encrypt_with_ad(b"", b"")
b_receive.decrypt_with_ad(b"", data_confirmation)
data_record = record(a_send, heartbeat)  # nonce 1: the confirmation used nonce 0
assert b_receive.decrypt_with_ad(data_record[:4], data_record[4:]) == heartbeat

VALUES = [
    ("stretched key K, the PSK (PBKDF2-HMAC-SHA256)", key),
    ("node A public key (private 01 .. 20)", a.public),
    ("node A id = SHA-256(\"swift-mesh/3 node id\" || public key)[0..<8]", id_a),
    ("coordinator public key (private 21 .. 40)", coordinator.public),
    ("node A ephemeral public key (private 41 .. 60)", noise.KeyPair(EPHEMERAL_C).public),
    ("coordinator ephemeral public key (private 61 .. 80)", noise.KeyPair(EPHEMERAL_COORDINATOR).public),
    ("node B public key (private 81 .. a0)", b.public),
    ("node B id", id_b),
    ("node B ephemeral public key (private a1 .. c0)", noise.KeyPair(EPHEMERAL_B).public),
    ("control: connector hello Hc (node A)", control_hc),
    ("control: acceptor hello Ha (coordinator)", control_ha),
    ("control: prologue = \"swift-mesh/3\" || Hc || Ha", control_prologue),
    ("control: M1 as sent (length, then e and the empty payload's tag)", framed(control_m1)),
    ("control: M2 as sent (e, ee, s, es, payload tag)", framed(control_m2)),
    ("control: M3 as sent (s, se, psk, payload tag)", framed(control_m3)),
    ("control: handshake hash h after M3", control_h),
    ("control: confirmation as sent (coordinator to node)", framed(control_confirmation)),
    ("control: first record, node to coordinator (nonce 0), one heartbeat frame", control_record),
    ("data: acceptor hello Ha (node B, sent first)", data_ha),
    ("data: connector hello Hc (node A)", data_hc),
    ("data: prologue = \"swift-mesh/3\" || Hc || Ha", data_prologue),
    ("data: M1 as sent (e, es, s, ss, psk, payload tag)", framed(data_m1)),
    ("data: M2 as sent (e, ee, se, payload tag)", framed(data_m2)),
    ("data: handshake hash h after M2", data_h),
    ("data: confirmation as sent (node A to node B, nonce 0)", framed(data_confirmation)),
    ("data: first record, node A to node B (nonce 1), one heartbeat frame", data_record),
]

if __name__ == "__main__":
    print(f"node A id text: {id_a.hex()}   node B id text: {id_b.hex()}")
    print(f"node A key text (as in its record): {a.public.hex()}")
    for name, value in VALUES:
        print(f"\n{name} ({len(value)} bytes):\n{hx(value)}")
