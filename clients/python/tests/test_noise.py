"""The Noise module against every published vector of its suite (cacophony, 25519/ChaChaPoly/SHA256).

The vectors are the repository's copy in Tests/MeshCryptoTests/Vectors/noise, which the Swift
Noise tests read too: both sides check the same bytes.
"""
import json
import os
import unittest

import support  # noqa: F401  (puts the client on sys.path)

from swiftmesh import noise

VECTORS = os.path.join(support.ROOT, "Tests", "MeshCryptoTests", "Vectors", "noise",
                       "cacophony-25519-chachapoly-sha256.json")


def _pattern(protocol_name):
    prefix, suffix = "Noise_", "_" + noise.SUITE
    assert protocol_name.startswith(prefix) and protocol_name.endswith(suffix), protocol_name
    return protocol_name[len(prefix):-len(suffix)]


def _key(vector, name):
    value = vector.get(name)
    return noise.KeyPair(bytes.fromhex(value)) if value else None


def _public(vector, name):
    value = vector.get(name)
    return bytes.fromhex(value) if value else None


class NoiseVectorTests(unittest.TestCase):
    def test_every_vector_of_the_suite(self):
        with open(VECTORS, encoding="utf-8") as file:
            vectors = json.load(file)["vectors"]
        self.assertEqual(len(vectors), 59)
        for vector in vectors:
            with self.subTest(vector["protocol_name"]):
                self._run(vector)

    def _run(self, v):
        pattern = _pattern(v["protocol_name"])
        initiator = noise.HandshakeState(
            pattern, True, bytes.fromhex(v["init_prologue"]), s=_key(v, "init_static"),
            e=_key(v, "init_ephemeral"), rs=_public(v, "init_remote_static"),
            psks=[bytes.fromhex(x) for x in v.get("init_psks", [])])
        responder = noise.HandshakeState(
            pattern, False, bytes.fromhex(v["resp_prologue"]), s=_key(v, "resp_static"),
            e=_key(v, "resp_ephemeral"), rs=_public(v, "resp_remote_static"),
            psks=[bytes.fromhex(x) for x in v.get("resp_psks", [])])
        sending = {True: None, False: None}
        for index, message in enumerate(v["messages"]):
            payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
            from_initiator = initiator.one_way or index % 2 == 0
            writer, reader = (initiator, responder) if from_initiator else (responder, initiator)
            if not initiator.complete:
                self.assertEqual(writer.write_message(payload).hex(), expected.hex(), f"message {index}")
                self.assertEqual(reader.read_message(expected), payload)
                if initiator.complete:
                    self.assertTrue(responder.complete)
                    self.assertEqual(initiator.h.hex(), v["handshake_hash"])
                    self.assertEqual(responder.h.hex(), v["handshake_hash"])
                    sending[True], receive_i = initiator.split()
                    sending[False], receive_r = responder.split()
                    receiving = {True: receive_i, False: receive_r}
            else:
                sealed = sending[from_initiator].encrypt_with_ad(b"", payload)
                self.assertEqual(sealed.hex(), expected.hex(), f"transport message {index}")
                self.assertEqual(receiving[not from_initiator].decrypt_with_ad(b"", sealed), payload)
        self.assertTrue(initiator.complete)

    def test_a_changed_byte_fails_and_names_where(self):
        psk = bytes(range(32))
        s_i, s_r = noise.KeyPair(bytes([1] * 32)), noise.KeyPair(bytes([2] * 32))
        i = noise.HandshakeState("IKpsk1", True, b"p", s=s_i, rs=s_r.public, psks=[psk])
        m1 = bytearray(i.write_message())
        m1[40] ^= 1  # inside the encrypted static key
        r = noise.HandshakeState("IKpsk1", False, b"p", s=s_r, psks=[psk])
        with self.assertRaises(noise.NoiseError) as caught:
            r.read_message(m1)
        self.assertEqual(caught.exception.token, "s")
        # The right static key, a different PSK: the payload's tag fails.
        i = noise.HandshakeState("IKpsk1", True, b"p", s=s_i, rs=s_r.public, psks=[psk])
        r = noise.HandshakeState("IKpsk1", False, b"p", s=s_r, psks=[bytes(32)])
        with self.assertRaises(noise.NoiseError) as caught:
            r.read_message(i.write_message())
        self.assertEqual(caught.exception.token, "payload")

    def test_a_low_order_public_key_is_refused(self):
        i = noise.HandshakeState("NN", True)
        r = noise.HandshakeState("NN", False)
        r.read_message(i.write_message())
        m2 = bytearray(r.write_message())
        m2[:32] = bytes(32)  # the all-zero point: every shared secret with it is zero
        with self.assertRaises(noise.NoiseError) as caught:
            i.read_message(m2)
        self.assertEqual(caught.exception.token, "dh")


if __name__ == "__main__":
    unittest.main()
