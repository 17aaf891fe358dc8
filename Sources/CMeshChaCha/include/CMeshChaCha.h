// ChaCha20, Poly1305 and the ChaCha20-Poly1305 AEAD of RFC 8439, for MeshCrypto's ChaChaPoly.
// Only Sources/MeshCrypto/ChaChaPoly+Backend.swift and the Swift files beside it call these.
#ifndef CMESH_CHACHA_H
#define CMESH_CHACHA_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU and operating system run the AVX2 code (`avx2` arguments of 1 below), else 0.
int cmesh_chacha_avx2_available(void);

/// XORs `len` bytes of the ChaCha20 keystream (RFC 8439 2.4) into `in`, writing `out`.
///
/// The keystream starts at block `counter` (a 32-bit block counter that wraps) for the 96-bit
/// `nonce`. `out` may equal `in`; other overlaps are not allowed. `avx2` = 1 runs the eight-block
/// AVX2 code and needs `cmesh_chacha_avx2_available()`; 0 runs portable C.
void cmesh_chacha20_xor(
    int avx2, const uint8_t key[32], uint32_t counter, const uint8_t nonce[12], const uint8_t *in, uint8_t *out,
    size_t len);

/// The Poly1305 one-time authenticator (RFC 8439 2.5) of `len` bytes of `message` under `key` (r then s).
void cmesh_poly1305(const uint8_t key[32], const uint8_t *message, size_t len, uint8_t tag[16]);

/// AEAD_CHACHA20_POLY1305 encryption (RFC 8439 2.8): encrypts `len` bytes of `plaintext` into
/// `ciphertext` and writes the 16-byte tag over `ad` and the ciphertext.
///
/// `ciphertext` may equal `plaintext` (in place); `tag` must not overlap either. `len` must be at
/// most 2^38 - 64 bytes (the 32-bit block counter's limit).
void cmesh_chachapoly_seal(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const uint8_t *plaintext, uint8_t *ciphertext, size_t len, uint8_t tag[16]);

/// One piece of a message sealed by `cmesh_chachapoly_seal_pieces`.
typedef struct cmesh_piece {
    const uint8_t *bytes;
    size_t length;
} cmesh_piece;

/// `cmesh_chachapoly_seal` of the message made of `count` pieces back to back, without joining
/// them first: the ciphertext (their total length) goes to `ciphertext`, which must not overlap
/// any piece, and the tag to `tag`. The bytes written are exactly those of sealing the joined
/// message.
void cmesh_chachapoly_seal_pieces(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const cmesh_piece *pieces, size_t count, uint8_t *ciphertext, uint8_t tag[16]);

/// AEAD_CHACHA20_POLY1305 decryption: checks `tag` over `ad` and `len` bytes of `ciphertext` in
/// constant time and decrypts into `plaintext`.
///
/// Returns 1 when the tag is right. Returns 0 when it is not, and then `plaintext` holds only
/// zeros: no unauthenticated byte is ever left there. `plaintext` may equal `ciphertext`.
int cmesh_chachapoly_open(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const uint8_t *ciphertext, uint8_t *plaintext, size_t len, const uint8_t tag[16]);

#endif
