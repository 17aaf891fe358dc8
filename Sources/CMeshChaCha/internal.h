// What the C files of CMeshChaCha share; not part of the module's interface.
#ifndef CMESH_CHACHA_INTERNAL_H
#define CMESH_CHACHA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t load32_le(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t load64_le(const uint8_t *p) {
    return (uint64_t)load32_le(p) | (uint64_t)load32_le(p + 4) << 32;
}

static inline void store32_le(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void store64_le(uint8_t *p, uint64_t v) {
    store32_le(p, (uint32_t)v);
    store32_le(p + 4, (uint32_t)(v >> 32));
}

/// Overwrites `len` bytes with zeros in a way the compiler may not drop as a dead store.
static inline void wipe(void *p, size_t len) {
    memset(p, 0, len);
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

/// The sixteen input words of a ChaCha20 block: constants, key, counter, nonce (RFC 8439 2.3).
static inline void chacha20_setup(uint32_t state[16], const uint8_t key[32], uint32_t counter, const uint8_t nonce[12]) {
    state[0] = 0x61707865;
    state[1] = 0x3320646e;
    state[2] = 0x79622d32;
    state[3] = 0x6b206574;
    for (int i = 0; i < 8; i++) state[4 + i] = load32_le(key + 4 * i);
    state[12] = counter;
    for (int i = 0; i < 3; i++) state[13 + i] = load32_le(nonce + 4 * i);
}

/// Portable ChaCha20: XORs the keystream from block `state[12]` into `len` bytes; advances the counter.
void cmesh_chacha20_xor_portable(uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len);

/// AVX2 ChaCha20, eight blocks at a time: XORs whole 512-byte chunks only and returns how many
/// bytes it did (a multiple of 512, at most `len`); advances the counter. x86-64 only.
size_t cmesh_chacha20_xor_avx2_chunks(uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len);

struct poly1305_state_s;

/// The AEAD's bulk on AVX2: encrypts (or, with `decrypt`, decrypts) whole 512-byte chunks and
/// absorbs their ciphertext into `mac`, interleaving the scalar Poly1305 blocks with the vector
/// ChaCha20 rounds so the processor runs both at once. Returns the bytes done, a multiple of 512;
/// advances the counter. x86-64 only.
size_t cmesh_chachapoly_avx2_chunks(
    uint32_t state[16], struct poly1305_state_s *mac, const uint8_t *in, uint8_t *out, size_t len, int decrypt);

/// XORs `len` bytes with the backend `avx2` selects: whole chunks on AVX2, a tail of more than
/// 256 bytes through AVX2 on a stack copy, smaller tails in portable C. Advances the counter.
void cmesh_chacha20_xor_state(int avx2, uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len);

#endif
