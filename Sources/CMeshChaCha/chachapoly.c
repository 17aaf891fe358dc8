// Poly1305 on its own and the ChaCha20-Poly1305 AEAD (RFC 8439 2.8).
//
// Poly1305's input is the additional data and the ciphertext, each zero-padded to a multiple of
// 16 bytes, then both lengths as 64-bit little-endian numbers; the one-time key is the first 32
// bytes of keystream block 0, and the message uses blocks 1 onwards. On AVX2 the whole 512-byte
// chunks go through cmesh_chachapoly_avx2_chunks, which interleaves the two; the rest (and
// everything on the portable path) is encrypted and authenticated in chunks of a few kilobytes,
// each authenticated while it is still in the first-level cache (to open: authenticate, then
// decrypt).
#include "CMeshChaCha.h"
#include "internal.h"
#include "poly1305.h"

/// Bytes encrypted before they are authenticated (or authenticated before decrypted): a multiple
/// of the AVX2 code's 512-byte chunk, small enough to stay in the first-level cache.
#define CHUNK 4096

void cmesh_poly1305(const uint8_t key[32], const uint8_t *message, size_t len, uint8_t tag[16]) {
    poly1305_state st;
    poly1305_init(&st, key);
    poly1305_update(&st, message, len);
    poly1305_finish(&st, tag);
}

/// Sets up the ChaCha20 state at block 0, derives the Poly1305 key from it and absorbs `ad`;
/// leaves the state at block 1.
static void aead_start(
    uint32_t state[16], poly1305_state *mac, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad,
    size_t ad_len) {
    chacha20_setup(state, key, 0, nonce);
    uint8_t block[64] = {0};
    cmesh_chacha20_xor_portable(state, block, block, 64);
    poly1305_init(mac, block);
    wipe(block, sizeof block);
    poly1305_update_padded(mac, ad, ad_len);
}

/// Absorbs the two lengths and writes the tag.
static void aead_finish(poly1305_state *mac, size_t ad_len, size_t len, uint8_t tag[16]) {
    uint8_t lengths[16];
    store64_le(lengths, (uint64_t)ad_len);
    store64_le(lengths + 8, (uint64_t)len);
    poly1305_blocks(mac, lengths, 16, 1);
    poly1305_finish(mac, tag);
}

void cmesh_chachapoly_seal(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const uint8_t *plaintext, uint8_t *ciphertext, size_t len, uint8_t tag[16]) {
    uint32_t state[16];
    poly1305_state mac;
    aead_start(state, &mac, key, nonce, ad, ad_len);
    size_t done = avx2 ? cmesh_chachapoly_avx2_chunks(state, &mac, plaintext, ciphertext, len, 0) : 0;
    while (done < len) {
        const size_t n = len - done < CHUNK ? len - done : CHUNK;
        cmesh_chacha20_xor_state(avx2, state, plaintext + done, ciphertext + done, n);
        poly1305_update_padded(&mac, ciphertext + done, n);  // pads only the last chunk
        done += n;
    }
    aead_finish(&mac, ad_len, len, tag);
    wipe(state, sizeof state);
}

// Pieces end anywhere, not on a 64-byte block: a keystream block that a piece ends inside is
// kept and its rest used by the next piece. Whole blocks go through the backend's bulk code (on
// AVX2 the interleaved one, 512-byte chunks at a time), and the ciphertext written so far is
// authenticated as each step ends, while it is still in the cache.
void cmesh_chachapoly_seal_pieces(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const cmesh_piece *pieces, size_t count, uint8_t *ciphertext, uint8_t tag[16]) {
    uint32_t state[16];
    poly1305_state mac;
    aead_start(state, &mac, key, nonce, ad, ad_len);
    uint8_t stream[64];
    size_t used = 64;  // bytes of `stream` already used: 64 when no block is open
    size_t position = 0, authenticated = 0;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *in = pieces[i].bytes;
        size_t left = pieces[i].length;
        while (left > 0) {
            size_t n;
            if (used < 64) {
                n = left < 64 - used ? left : 64 - used;
                for (size_t j = 0; j < n; j++) ciphertext[position + j] = in[j] ^ stream[used + j];
                used += n;
            } else if (left >= 64) {
                n = 0;
                if (avx2 && left >= 512) {
                    // On a block boundary with everything before it authenticated: the interleaved
                    // bulk code encrypts and absorbs whole 512-byte chunks as the one-piece seal does.
                    n = cmesh_chachapoly_avx2_chunks(state, &mac, in, ciphertext + position, left & ~(size_t)511, 0);
                    authenticated = position + n;
                }
                if (n == 0) {
                    n = left & ~(size_t)63;
                    if (n > CHUNK) n = CHUNK;
                    cmesh_chacha20_xor_state(avx2, state, in, ciphertext + position, n);
                }
            } else {
                memset(stream, 0, sizeof stream);
                cmesh_chacha20_xor_portable(state, stream, stream, 64);
                n = left;
                for (size_t j = 0; j < n; j++) ciphertext[position + j] = in[j] ^ stream[j];
                used = n;
            }
            in += n;
            left -= n;
            position += n;
            const size_t whole = position & ~(size_t)15;
            if (whole > authenticated) {
                poly1305_blocks(&mac, ciphertext + authenticated, whole - authenticated, 1);
                authenticated = whole;
            }
        }
    }
    poly1305_update_padded(&mac, ciphertext + authenticated, position - authenticated);
    aead_finish(&mac, ad_len, position, tag);
    wipe(stream, sizeof stream);
    wipe(state, sizeof state);
}

int cmesh_chachapoly_open(
    int avx2, const uint8_t key[32], const uint8_t nonce[12], const uint8_t *ad, size_t ad_len,
    const uint8_t *ciphertext, uint8_t *plaintext, size_t len, const uint8_t tag[16]) {
    uint32_t state[16];
    poly1305_state mac;
    aead_start(state, &mac, key, nonce, ad, ad_len);
    size_t done = avx2 ? cmesh_chachapoly_avx2_chunks(state, &mac, ciphertext, plaintext, len, 1) : 0;
    while (done < len) {
        const size_t n = len - done < CHUNK ? len - done : CHUNK;
        poly1305_update_padded(&mac, ciphertext + done, n);
        cmesh_chacha20_xor_state(avx2, state, ciphertext + done, plaintext + done, n);
        done += n;
    }
    uint8_t computed[16];
    aead_finish(&mac, ad_len, len, computed);
    wipe(state, sizeof state);
    uint8_t difference = 0;
    for (int i = 0; i < 16; i++) difference |= computed[i] ^ tag[i];
    wipe(computed, sizeof computed);
    // 1 when difference == 0, computed without a branch on it.
    const int valid = (int)(1 & (((unsigned)difference - 1) >> 8));
    if (!valid) wipe(plaintext, len);
    return valid;
}
