#!/usr/bin/env python3
"""Computes the worked example of docs/PROTOCOL.md section 3.8 (protocol version 2).

Standard library only. Run it and compare with the document:

    python3 scripts/protocol_vectors.py

Tests/MeshTests/ProtocolVectorTests.swift asserts the same bytes against the Swift code.
"""
import hashlib
import hmac


def hx(data: bytes) -> str:
    """Bytes as hex, 16 to a line, as the document prints them."""
    return "\n".join(" ".join(f"{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


AUTHKEY = "5ede06b6f51adaad884861af2520cd1c1be8e590afcb7c0a289860b2d53071f9"  # made by `mesh keygen`
NODE_SECRET = bytes(range(0xf0, 0x100))      # f0 f1 ... ff
NC = bytes(range(0x00, 0x20))                # connector nonce 00 .. 1f
NA = bytes(range(0xa0, 0xc0))                # acceptor nonce a0 .. bf
CONTROL = 1

key = hashlib.pbkdf2_hmac("sha256", AUTHKEY.encode(), b"swift-mesh/2 authkey", 100_000, 32)
node_id = hashlib.sha256(b"swift-mesh/2 node id" + NODE_SECRET).digest()[:8]
connector_hello = b"MESH" + bytes([2, 1, CONTROL]) + NC + node_id
acceptor_hello = b"MESH" + bytes([2, 1, CONTROL]) + NA + bytes(8)
transcript = connector_hello + acceptor_hello
proof_c = hmac.new(key, b"swift-mesh/2 connector" + transcript, hashlib.sha256).digest()
proof_a = hmac.new(key, b"swift-mesh/2 acceptor" + transcript, hashlib.sha256).digest()
salt = hashlib.sha256(transcript).digest()
c2a = hkdf(key, salt, b"swift-mesh/2 connector to acceptor")
a2c = hkdf(key, salt, b"swift-mesh/2 acceptor to connector")

frame_body = b'{"type":"heartbeat"}'
frame = (len(frame_body) + 1).to_bytes(4, "big") + b"\x01" + frame_body
header = (len(frame) + 32).to_bytes(4, "big")
tag0 = hmac.new(c2a, (0).to_bytes(8, "big") + header + frame, hashlib.sha256).digest()
tag1 = hmac.new(c2a, (1).to_bytes(8, "big") + header + frame, hashlib.sha256).digest()
record0 = header + frame + tag0

VALUES = [
    ("stretched key (PBKDF2-HMAC-SHA256)", key),
    ("node secret", NODE_SECRET),
    ("node id", node_id),
    ("connector hello", connector_hello),
    ("acceptor hello", acceptor_hello),
    ("connector proof", proof_c),
    ("verdict", b"\x00" + proof_a),
    ("HKDF salt = SHA-256(connector hello || acceptor hello)", salt),
    ("key connector to acceptor", c2a),
    ("key acceptor to connector", a2c),
    ("heartbeat frame", frame),
    ("record 0 (connector to acceptor)", record0),
    ("the same frame as record 1: its tag", tag1),
]

if __name__ == "__main__":
    print(f"node id text: {node_id.hex()}  secret text: {NODE_SECRET.hex()}")
    for name, value in VALUES:
        print(f"\n{name} ({len(value)} bytes):\n{hx(value)}")
