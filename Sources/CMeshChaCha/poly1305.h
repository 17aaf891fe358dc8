// Poly1305 (RFC 8439 2.5) in radix 2^64: the accumulator is h0 + h1 2^64 + h2 2^128 with h2 a
// few bits, and r is two 64-bit halves. Clamping clears the low two bits of r1, so
// r1 2^128 = (r1 / 4) 2^130 = 5 (r1 / 4) mod 2^130 - 5, and s1 = r1 + r1 / 4 folds the top
// products back down. Every step is multiplications, additions and masks: no branch or address
// depends on the key or the message.
#ifndef CMESH_POLY1305_H
#define CMESH_POLY1305_H

#include "internal.h"

typedef unsigned __int128 u128;

typedef struct poly1305_state_s {
    uint64_t r0, r1, s1;
    uint64_t h0, h1, h2;
    uint64_t pad0, pad1;
} poly1305_state;

static inline void poly1305_init(poly1305_state *st, const uint8_t key[32]) {
    st->r0 = load64_le(key) & 0x0ffffffc0fffffffULL;
    st->r1 = load64_le(key + 8) & 0x0ffffffc0ffffffcULL;
    st->s1 = st->r1 + (st->r1 >> 2);
    st->h0 = st->h1 = st->h2 = 0;
    st->pad0 = load64_le(key + 16);
    st->pad1 = load64_le(key + 24);
}

/// Absorbs one 16-byte block into h = (h0, h1, h2), adding 2^128 when `hibit` is 1 (a full
/// block). Takes the accumulator by pointer so that callers keep it in registers across blocks.
static inline void poly1305_block(
    uint64_t *h0p, uint64_t *h1p, uint64_t *h2p, uint64_t r0, uint64_t r1, uint64_t s1, const uint8_t *m,
    uint64_t hibit) {
    uint64_t h0 = *h0p, h1 = *h1p, h2 = *h2p;
    // h += m (+ 2^128)
    u128 t = (u128)h0 + load64_le(m);
    h0 = (uint64_t)t;
    t = (u128)h1 + load64_le(m + 8) + (uint64_t)(t >> 64);
    h1 = (uint64_t)t;
    h2 += (uint64_t)(t >> 64) + hibit;

    // h *= r, with h2 < 8 so that h2 * s1 and h2 * r0 fit in 64 bits
    const u128 d0 = (u128)h0 * r0 + (u128)h1 * s1;
    u128 d1 = (u128)h0 * r1 + (u128)h1 * r0 + h2 * s1;
    uint64_t d2 = h2 * r0;
    d1 += (uint64_t)(d0 >> 64);
    d2 += (uint64_t)(d1 >> 64);

    // fold everything at or above 2^130 back in, times 5
    h0 = (uint64_t)d0;
    h1 = (uint64_t)d1;
    h2 = d2 & 3;
    const uint64_t carry = (d2 & ~(uint64_t)3) + (d2 >> 2);
    t = (u128)h0 + carry;
    h0 = (uint64_t)t;
    t = (u128)h1 + (uint64_t)(t >> 64);
    h1 = (uint64_t)t;
    h2 += (uint64_t)(t >> 64);
    *h0p = h0;
    *h1p = h1;
    *h2p = h2;
}

/// Absorbs `len / 16` whole blocks, each with 2^128 added when `hibit` is 1 (a full block).
static inline void poly1305_blocks(poly1305_state *st, const uint8_t *m, size_t len, uint64_t hibit) {
    uint64_t h0 = st->h0, h1 = st->h1, h2 = st->h2;
    while (len >= 16) {
        poly1305_block(&h0, &h1, &h2, st->r0, st->r1, st->s1, m, hibit);
        m += 16;
        len -= 16;
    }
    st->h0 = h0;
    st->h1 = h1;
    st->h2 = h2;
}

/// Absorbs a message of any length: whole blocks, then a last partial block padded with 1 then zeros.
static inline void poly1305_update(poly1305_state *st, const uint8_t *m, size_t len) {
    const size_t whole = len & ~(size_t)15;
    poly1305_blocks(st, m, whole, 1);
    if (len > whole) {
        uint8_t block[16] = {0};
        memcpy(block, m + whole, len - whole);
        block[len - whole] = 1;
        poly1305_blocks(st, block, 16, 0);
    }
}

/// Absorbs `len` bytes and zeros up to the next multiple of 16, as the AEAD's padding does.
static inline void poly1305_update_padded(poly1305_state *st, const uint8_t *m, size_t len) {
    const size_t whole = len & ~(size_t)15;
    poly1305_blocks(st, m, whole, 1);
    if (len > whole) {
        uint8_t block[16] = {0};
        memcpy(block, m + whole, len - whole);
        poly1305_blocks(st, block, 16, 1);
    }
}

/// Reduces h modulo 2^130 - 5, adds s modulo 2^128 and writes the tag; wipes the state.
static inline void poly1305_finish(poly1305_state *st, uint8_t tag[16]) {
    uint64_t h0 = st->h0, h1 = st->h1;
    const uint64_t h2 = st->h2;
    // h < 2^131 < 2p, so one conditional subtraction of p is enough: h + 5 reaches 2^130 exactly
    // when h >= p, and then h + 5 - 2^130 = h - p.
    u128 t = (u128)h0 + 5;
    const uint64_t g0 = (uint64_t)t;
    t = (u128)h1 + (uint64_t)(t >> 64);
    const uint64_t g1 = (uint64_t)t;
    const uint64_t g2 = h2 + (uint64_t)(t >> 64);
    const uint64_t use_g = 0 - (g2 >> 2);
    h0 = (h0 & ~use_g) | (g0 & use_g);
    h1 = (h1 & ~use_g) | (g1 & use_g);

    t = (u128)h0 + st->pad0;
    h0 = (uint64_t)t;
    h1 = h1 + st->pad1 + (uint64_t)(t >> 64);
    store64_le(tag, h0);
    store64_le(tag + 8, h1);
    wipe(st, sizeof *st);
}

#endif
