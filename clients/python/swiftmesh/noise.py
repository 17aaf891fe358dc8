"""The Noise Protocol Framework (revision 34) for one suite: 25519, ChaChaPoly, SHA256.

A HandshakeState driven by the tokens of a pattern, as the specification's sections 5.1 to 5.3
describe it, so that any pattern of sections 7 and 9 (fundamental, deferred, with PSK modifiers)
runs from its token table. Protocol version 3 uses two of them: IKpsk1 (data connections) and
XXpsk3 (control, inspect, admin). The primitives come from PyPI's `cryptography`.

No sockets and no clocks: `write_message` returns bytes, `read_message` takes them.
"""
import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

DHLEN = 32
HASHLEN = 32
TAGLEN = 16
MAX_NONCE = 2 ** 64 - 1
MAX_MESSAGE = 65535
SUITE = "25519_ChaChaPoly_SHA256"


class NoiseError(Exception):
    """A handshake or transport message that cannot be processed.

    `token` names where reading failed: "s" (a static key that did not decrypt), "payload"
    (the payload's tag), "dh" (an all-zero shared secret), "length", "nonce" or "order".
    """

    def __init__(self, text, token):
        super().__init__(text)
        self.token = token


# MARK: the primitives (section 12: 25519, ChaChaPoly, SHA256)

class KeyPair:
    """An X25519 key pair; `private` and `public` are the 32-byte raw forms."""

    __slots__ = ("private", "public", "_key")

    def __init__(self, private):
        self._key = X25519PrivateKey.from_private_bytes(bytes(private))
        self.private = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls):
        key = X25519PrivateKey.generate()
        return cls(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    def dh(self, public):
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
        except ValueError:
            # `cryptography` refuses an all-zero result (a low-order point): so does this protocol.
            raise NoiseError("Diffie-Hellman gave an all-zero secret (a low-order public key)", "dh") from None


def _nonce(n):
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _hash(data):
    return hashlib.sha256(data).digest()


def _hkdf(chaining_key, ikm, outputs):
    temp = hmac.new(chaining_key, ikm, hashlib.sha256).digest()
    out, previous = [], b""
    for i in range(1, outputs + 1):
        previous = hmac.new(temp, previous + bytes([i]), hashlib.sha256).digest()
        out.append(previous)
    return out


# MARK: CipherState (section 5.1)

class CipherState:
    """A key and a nonce counter. `rekey_interval` (0: never) calls Rekey() after every nonce n
    with (n + 1) % rekey_interval == 0; protocol version 3 uses 2^20 for its records."""

    __slots__ = ("k", "n", "rekey_interval", "_aead")

    def __init__(self, k=None, rekey_interval=0):
        self.n = 0
        self.rekey_interval = rekey_interval
        self.initialize_key(k)

    def initialize_key(self, k):
        self.k = k
        self.n = 0
        self._aead = ChaCha20Poly1305(k) if k is not None else None

    def has_key(self):
        return self.k is not None

    def _advance(self):
        self.n += 1
        if self.rekey_interval and self.n % self.rekey_interval == 0:
            self.rekey()

    def encrypt_with_ad(self, ad, plaintext):
        if self.k is None:
            return bytes(plaintext)
        if self.n >= MAX_NONCE:
            raise NoiseError("the nonce counter is used up: the connection must end", "nonce")
        out = self._aead.encrypt(_nonce(self.n), bytes(plaintext), bytes(ad))
        self._advance()
        return out

    def decrypt_with_ad(self, ad, ciphertext):
        if self.k is None:
            return bytes(ciphertext)
        if self.n >= MAX_NONCE:
            raise NoiseError("the nonce counter is used up: the connection must end", "nonce")
        try:
            out = self._aead.decrypt(_nonce(self.n), bytes(ciphertext), bytes(ad))
        except InvalidTag:
            raise NoiseError("a message failed authentication", "payload") from None
        self._advance()
        return out

    def rekey(self):
        """k = the first 32 bytes of ENCRYPT(k, 2^64 - 1, empty, 32 zeros); n keeps counting."""
        self.k = self._aead.encrypt(_nonce(MAX_NONCE), bytes(32), b"")[:32]
        self._aead = ChaCha20Poly1305(self.k)


# MARK: SymmetricState (section 5.2)

class SymmetricState:
    def __init__(self, protocol_name):
        name = protocol_name.encode("ascii")
        self.h = name + bytes(HASHLEN - len(name)) if len(name) <= HASHLEN else _hash(name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, ikm):
        self.ck, temp_k = _hkdf(self.ck, ikm, 2)
        self.cipher.initialize_key(temp_k)

    def mix_hash(self, data):
        self.h = _hash(self.h + bytes(data))

    def mix_key_and_hash(self, ikm):
        self.ck, temp_h, temp_k = _hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher.initialize_key(temp_k)

    def encrypt_and_hash(self, plaintext):
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext):
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self, rekey_interval=0):
        k1, k2 = _hkdf(self.ck, b"", 2)
        return CipherState(k1, rekey_interval), CipherState(k2, rekey_interval)


# MARK: patterns (sections 7.4, 7.5, 7.2 and 9)

# name: (initiator pre-message, responder pre-message, messages); "->" messages are the initiator's.
_BASE = {
    "N": ("", "s", ["e, es"]),
    "K": ("s", "s", ["e, es, ss"]),
    "X": ("", "s", ["e, es, s, ss"]),
    "NN": ("", "", ["e", "e, ee"]),
    "NK": ("", "s", ["e, es", "e, ee"]),
    "NX": ("", "", ["e", "e, ee, s, es"]),
    "KN": ("s", "", ["e", "e, ee, se"]),
    "KK": ("s", "s", ["e, es, ss", "e, ee, se"]),
    "KX": ("s", "", ["e", "e, ee, se, s, es"]),
    "XN": ("", "", ["e", "e, ee", "s, se"]),
    "XK": ("", "s", ["e, es", "e, ee", "s, se"]),
    "XX": ("", "", ["e", "e, ee, s, es", "s, se"]),
    "IN": ("", "", ["e, s", "e, ee, se"]),
    "IK": ("", "s", ["e, es, s, ss", "e, ee, se"]),
    "IX": ("", "", ["e, s", "e, ee, se, s, es"]),
    "NK1": ("", "s", ["e", "e, ee, es"]),
    "NX1": ("", "", ["e", "e, ee, s", "es"]),
    "X1N": ("", "", ["e", "e, ee", "s", "se"]),
    "X1K": ("", "s", ["e, es", "e, ee", "s", "se"]),
    "XK1": ("", "s", ["e", "e, ee, es", "s, se"]),
    "X1K1": ("", "s", ["e", "e, ee, es", "s", "se"]),
    "X1X": ("", "", ["e", "e, ee, s, es", "s", "se"]),
    "XX1": ("", "", ["e", "e, ee, s", "es, s, se"]),
    "X1X1": ("", "", ["e", "e, ee, s", "es, s", "se"]),
    "K1N": ("s", "", ["e", "e, ee", "se"]),
    "K1K": ("s", "s", ["e, es", "e, ee", "se"]),
    "KK1": ("s", "s", ["e", "e, ee, se, es"]),
    "K1K1": ("s", "s", ["e", "e, ee, es", "se"]),
    "K1X": ("s", "", ["e", "e, ee, s, es", "se"]),
    "KX1": ("s", "", ["e", "e, ee, se, s", "es"]),
    "K1X1": ("s", "", ["e", "e, ee, s", "se, es"]),
    "I1N": ("", "", ["e, s", "e, ee", "se"]),
    "I1K": ("", "s", ["e, es, s", "e, ee", "se"]),
    "IK1": ("", "s", ["e, s", "e, ee, se, es"]),
    "I1K1": ("", "s", ["e, s", "e, ee, es", "se"]),
    "I1X": ("", "", ["e, s", "e, ee, s, es", "se"]),
    "IX1": ("", "", ["e, s", "e, ee, se, s", "es"]),
    "I1X1": ("", "", ["e, s", "e, ee, s", "se, es"]),
}


def parse_pattern(name):
    """(pre-messages, messages, one_way) of a pattern name such as "XXpsk3" or "IKpsk1".

    Pre-messages are (initiator tokens, responder tokens); messages a list of token lists, the
    first the initiator's. `pskN` adds "psk" at the start of message 1 (N = 0) or at the end of
    message N (section 9.2).
    """
    base = name
    modifiers = []
    for index in range(1, len(name)):
        if name[index:].startswith("psk") and name[:index] in _BASE:
            base, modifiers = name[:index], name[index:].split("+")
            break
    if base not in _BASE:
        raise ValueError(f"unknown Noise pattern {name}")
    pre_i, pre_r, texts = _BASE[base]
    messages = [[t.strip() for t in text.split(",")] for text in texts]
    for modifier in modifiers:
        if not modifier.startswith("psk") or not modifier[3:].isdigit():
            raise ValueError(f"unknown Noise pattern modifier {modifier}")
        n = int(modifier[3:])
        if n == 0:
            messages[0].insert(0, "psk")
        elif n <= len(messages):
            messages[n - 1].append("psk")
        else:
            raise ValueError(f"{modifier} names a message the pattern {base} does not have")
    pre = ([pre_i] if pre_i else [], [pre_r] if pre_r else [])
    return pre, messages, len(base) == 1


# MARK: HandshakeState (section 5.3)

class HandshakeState:
    """One side of a handshake. `pattern` is the part of the protocol name between "Noise_" and
    the suite ("XXpsk3"); `s` and `e` are KeyPairs (`e` given only by tests), `rs`/`re` public keys.

    After the last message `complete` is True and `split()` returns (send, receive) CipherStates.
    """

    def __init__(self, pattern, initiator, prologue=b"", s=None, e=None, rs=None, re=None, psks=(),
                 rekey_interval=0):
        (pre_i, pre_r), self.messages, self.one_way = parse_pattern(pattern)
        self.protocol_name = f"Noise_{pattern}_{SUITE}"
        self.initiator = initiator
        self.s, self.e, self.rs, self.re = s, e, rs, re
        self.psks = list(psks)
        self.psk_mode = any("psk" in tokens for tokens in self.messages)
        self.rekey_interval = rekey_interval
        self.symmetric = SymmetricState(self.protocol_name)
        self.symmetric.mix_hash(prologue)
        for tokens, own in ((pre_i, initiator), (pre_r, not initiator)):
            for token in tokens:
                key = (self.s if own else self.rs) if token == "s" else (self.e if own else self.re)
                if key is None:
                    raise ValueError(f"the pre-message needs the {'local' if own else 'remote'} key {token}")
                self.symmetric.mix_hash(key.public if isinstance(key, KeyPair) else key)
        self.index = 0
        self.complete = False

    @property
    def h(self):
        return self.symmetric.h

    @property
    def is_my_turn(self):
        return not self.complete and (self.index % 2 == 0) == self.initiator

    def _dh_pair(self, token):
        """(local key pair, remote public key) of a DH token, from this side's point of view."""
        first, second = token[0], token[1]
        local, remote = (first, second) if self.initiator else (second, first)
        pair = self.e if local == "e" else self.s
        public = self.re if remote == "e" else self.rs
        if pair is None or public is None:
            raise NoiseError(f"token {token} needs a key this side does not have", "order")
        return pair, public

    def _psk(self):
        if not self.psks:
            raise ValueError("the pattern needs a pre-shared key")
        psk = self.psks.pop(0)
        if len(psk) != 32:
            raise ValueError("a pre-shared key is 32 bytes")
        self.symmetric.mix_key_and_hash(psk)

    def write_message(self, payload=b""):
        if not self.is_my_turn:
            raise NoiseError("not this side's turn to write", "order")
        out = bytearray()
        sym = self.symmetric
        for token in self.messages[self.index]:
            if token == "e":
                if self.e is None:
                    self.e = KeyPair.generate()
                out += self.e.public
                sym.mix_hash(self.e.public)
                if self.psk_mode:
                    sym.mix_key(self.e.public)
            elif token == "s":
                out += sym.encrypt_and_hash(self.s.public)
            elif token == "psk":
                self._psk()
            else:
                pair, public = self._dh_pair(token)
                sym.mix_key(pair.dh(public))
        out += sym.encrypt_and_hash(payload)
        return self._next(bytes(out))

    def read_message(self, message):
        if self.complete or self.is_my_turn:
            raise NoiseError("not this side's turn to read", "order")
        message = bytes(message)
        sym = self.symmetric
        index = 0
        for token in self.messages[self.index]:
            if token == "e":
                if len(message) - index < DHLEN:
                    raise NoiseError("handshake message is too short", "length")
                self.re = message[index:index + DHLEN]
                index += DHLEN
                sym.mix_hash(self.re)
                if self.psk_mode:
                    sym.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAGLEN if sym.cipher.has_key() else 0)
                if len(message) - index < size:
                    raise NoiseError("handshake message is too short", "length")
                try:
                    self.rs = sym.decrypt_and_hash(message[index:index + size])
                except NoiseError:
                    raise NoiseError("the static key failed authentication", "s") from None
                index += size
            elif token == "psk":
                self._psk()
            else:
                pair, public = self._dh_pair(token)
                sym.mix_key(pair.dh(public))
        if sym.cipher.has_key() and len(message) - index < TAGLEN:
            raise NoiseError("handshake message is too short", "length")
        payload = sym.decrypt_and_hash(message[index:])
        return self._next(payload)

    def _next(self, result):
        self.index += 1
        if self.index == len(self.messages):
            self.complete = True
        return result

    def split(self):
        """(sending, receiving) CipherStates of this side (the initiator sends with c1)."""
        c1, c2 = self.symmetric.split(self.rekey_interval)
        return (c1, c2) if self.initiator else (c2, c1)
