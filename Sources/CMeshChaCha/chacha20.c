// ChaCha20 (RFC 8439 2.3 and 2.4): a portable version one block at a time, and an AVX2 version
// that runs eight blocks side by side.
//
// The AVX2 version keeps the state "word-sliced": register i holds word i of eight consecutive
// blocks, one per 32-bit lane, so each quarter round is eight quarter rounds at once and no
// shuffling is needed inside the rounds. The 16- and 8-bit rotations are byte shuffles; 12 and 7
// are shift pairs. At the end an 8x8 transpose of 32-bit words turns the registers back into
// eight consecutive 64-byte blocks. Nothing here depends on secret data for a branch or an
// address: ChaCha20 is additions, rotations and XORs.
//
// The AVX2 functions carry their own target attribute, so no global -m flags are needed and the
// binary still runs (on the portable path) on CPUs without AVX2.
#include "CMeshChaCha.h"
#include "internal.h"
#include "poly1305.h"

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

#define QUARTER_ROUND(a, b, c, d)               \
    a += b; d ^= a; d = ROTL32(d, 16);          \
    c += d; b ^= c; b = ROTL32(b, 12);          \
    a += b; d ^= a; d = ROTL32(d, 8);           \
    c += d; b ^= c; b = ROTL32(b, 7)

/// One 64-byte keystream block for `input` (RFC 8439 2.3.1).
static void chacha20_block(const uint32_t input[16], uint8_t out[64]) {
    uint32_t x[16];
    memcpy(x, input, sizeof x);
    for (int i = 0; i < 10; i++) {
        QUARTER_ROUND(x[0], x[4], x[8], x[12]);
        QUARTER_ROUND(x[1], x[5], x[9], x[13]);
        QUARTER_ROUND(x[2], x[6], x[10], x[14]);
        QUARTER_ROUND(x[3], x[7], x[11], x[15]);
        QUARTER_ROUND(x[0], x[5], x[10], x[15]);
        QUARTER_ROUND(x[1], x[6], x[11], x[12]);
        QUARTER_ROUND(x[2], x[7], x[8], x[13]);
        QUARTER_ROUND(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) store32_le(out + 4 * i, x[i] + input[i]);
    wipe(x, sizeof x);
}

void cmesh_chacha20_xor_portable(uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len) {
    uint8_t block[64];
    while (len > 0) {
        chacha20_block(state, block);
        state[12] += 1;
        const size_t n = len < 64 ? len : 64;
        for (size_t i = 0; i < n; i++) out[i] = in[i] ^ block[i];
        in += n;
        out += n;
        len -= n;
    }
    wipe(block, sizeof block);
}

#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>

int cmesh_chacha_avx2_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int has_osxsave = (ecx >> 27) & 1;
    const int has_avx = (ecx >> 28) & 1;
    if (!has_osxsave || !has_avx) return 0;
    // The operating system must save the YMM registers: XCR0 bits 1 (SSE) and 2 (AVX).
    unsigned int xcr0_low, xcr0_high;
    __asm__ __volatile__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if ((xcr0_low & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 5) & 1;
}

#define AVX2 __attribute__((target("avx2")))

#define ROTV(v, n) _mm256_or_si256(_mm256_slli_epi32(v, n), _mm256_srli_epi32(v, 32 - (n)))

#define QUARTER_ROUND_V(a, b, c, d)                                                     \
    a = _mm256_add_epi32(a, b); d = _mm256_shuffle_epi8(_mm256_xor_si256(d, a), rot16); \
    c = _mm256_add_epi32(c, d); b = ROTV(_mm256_xor_si256(b, c), 12);                   \
    a = _mm256_add_epi32(a, b); d = _mm256_shuffle_epi8(_mm256_xor_si256(d, a), rot8);  \
    c = _mm256_add_epi32(c, d); b = ROTV(_mm256_xor_si256(b, c), 7)

/// XORs one 64-byte block of keystream, words 0-7 in `words_lo` and 8-15 in `words_hi`, into `in`.
static inline AVX2 void xor_store(const uint8_t *in, uint8_t *out, __m256i words_lo, __m256i words_hi) {
    const __m256i a = _mm256_loadu_si256((const __m256i *)in);
    const __m256i b = _mm256_loadu_si256((const __m256i *)(in + 32));
    _mm256_storeu_si256((__m256i *)out, _mm256_xor_si256(a, words_lo));
    _mm256_storeu_si256((__m256i *)(out + 32), _mm256_xor_si256(b, words_hi));
}

/// Transposes eight registers of word-sliced state, where register i holds word i of blocks
/// 0...7, so that register j holds eight consecutive words of block j.
static inline AVX2 void transpose8(__m256i x[8]) {
    const __m256i t0 = _mm256_unpacklo_epi32(x[0], x[1]);
    const __m256i t1 = _mm256_unpackhi_epi32(x[0], x[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(x[2], x[3]);
    const __m256i t3 = _mm256_unpackhi_epi32(x[2], x[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(x[4], x[5]);
    const __m256i t5 = _mm256_unpackhi_epi32(x[4], x[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(x[6], x[7]);
    const __m256i t7 = _mm256_unpackhi_epi32(x[6], x[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);  // words 0-3 of blocks 0 | 4
    const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);  // blocks 1 | 5
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);  // blocks 2 | 6
    const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);  // blocks 3 | 7
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6);  // words 4-7 of blocks 0 | 4
    const __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
    const __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
    x[0] = _mm256_permute2x128_si256(u0, u4, 0x20);  // block 0, words 0-7
    x[1] = _mm256_permute2x128_si256(u1, u5, 0x20);  // block 1
    x[2] = _mm256_permute2x128_si256(u2, u6, 0x20);  // block 2
    x[3] = _mm256_permute2x128_si256(u3, u7, 0x20);  // block 3
    x[4] = _mm256_permute2x128_si256(u0, u4, 0x31);  // block 4
    x[5] = _mm256_permute2x128_si256(u1, u5, 0x31);  // block 5
    x[6] = _mm256_permute2x128_si256(u2, u6, 0x31);  // block 6
    x[7] = _mm256_permute2x128_si256(u3, u7, 0x31);  // block 7
}

AVX2 size_t cmesh_chacha20_xor_avx2_chunks(uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len) {
    const __m256i rot16 = _mm256_set_epi8(
        13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i rot8 = _mm256_set_epi8(
        14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3, 14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3);
    __m256i input[16];
    for (int i = 0; i < 16; i++) input[i] = _mm256_set1_epi32((int)state[i]);
    input[12] = _mm256_add_epi32(input[12], _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
    const __m256i eight = _mm256_set1_epi32(8);

    size_t done = 0;
    while (len - done >= 512) {
        __m256i x0 = input[0], x1 = input[1], x2 = input[2], x3 = input[3];
        __m256i x4 = input[4], x5 = input[5], x6 = input[6], x7 = input[7];
        __m256i x8 = input[8], x9 = input[9], x10 = input[10], x11 = input[11];
        __m256i x12 = input[12], x13 = input[13], x14 = input[14], x15 = input[15];
        for (int i = 0; i < 10; i++) {
            QUARTER_ROUND_V(x0, x4, x8, x12);
            QUARTER_ROUND_V(x1, x5, x9, x13);
            QUARTER_ROUND_V(x2, x6, x10, x14);
            QUARTER_ROUND_V(x3, x7, x11, x15);
            QUARTER_ROUND_V(x0, x5, x10, x15);
            QUARTER_ROUND_V(x1, x6, x11, x12);
            QUARTER_ROUND_V(x2, x7, x8, x13);
            QUARTER_ROUND_V(x3, x4, x9, x14);
        }
        __m256i lo[8] = {
            _mm256_add_epi32(x0, input[0]), _mm256_add_epi32(x1, input[1]), _mm256_add_epi32(x2, input[2]),
            _mm256_add_epi32(x3, input[3]), _mm256_add_epi32(x4, input[4]), _mm256_add_epi32(x5, input[5]),
            _mm256_add_epi32(x6, input[6]), _mm256_add_epi32(x7, input[7]),
        };
        __m256i hi[8] = {
            _mm256_add_epi32(x8, input[8]), _mm256_add_epi32(x9, input[9]), _mm256_add_epi32(x10, input[10]),
            _mm256_add_epi32(x11, input[11]), _mm256_add_epi32(x12, input[12]), _mm256_add_epi32(x13, input[13]),
            _mm256_add_epi32(x14, input[14]), _mm256_add_epi32(x15, input[15]),
        };
        transpose8(lo);
        transpose8(hi);
        for (int j = 0; j < 8; j++) xor_store(in + done + 64 * j, out + done + 64 * j, lo[j], hi[j]);
        input[12] = _mm256_add_epi32(input[12], eight);
        done += 512;
    }
    state[12] += (uint32_t)(done / 64);
    return done;
}

/// Four Poly1305 blocks (64 bytes) from `p`, on the accumulator in locals h0, h1, h2.
#define POLY_64(p)                                                   \
    do {                                                             \
        poly1305_block(&h0, &h1, &h2, r0, r1, s1, (p), 1);           \
        poly1305_block(&h0, &h1, &h2, r0, r1, s1, (p) + 16, 1);      \
        poly1305_block(&h0, &h1, &h2, r0, r1, s1, (p) + 32, 1);      \
        poly1305_block(&h0, &h1, &h2, r0, r1, s1, (p) + 48, 1);      \
    } while (0)

AVX2 size_t cmesh_chachapoly_avx2_chunks(
    uint32_t state[16], struct poly1305_state_s *mac, const uint8_t *in, uint8_t *out, size_t len, int decrypt) {
    const __m256i rot16 = _mm256_set_epi8(
        13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2, 13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2);
    const __m256i rot8 = _mm256_set_epi8(
        14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3, 14, 13, 12, 15, 10, 9, 8, 11, 6, 5, 4, 7, 2, 1, 0, 3);
    __m256i input[16];
    for (int i = 0; i < 16; i++) input[i] = _mm256_set1_epi32((int)state[i]);
    input[12] = _mm256_add_epi32(input[12], _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
    const __m256i eight = _mm256_set1_epi32(8);
    const uint64_t r0 = mac->r0, r1 = mac->r1, s1 = mac->s1;
    uint64_t h0 = mac->h0, h1 = mac->h1, h2 = mac->h2;

    // Sealing authenticates the previous chunk's ciphertext while encrypting the next one;
    // opening authenticates each chunk's ciphertext while making its keystream, before the
    // chunk is written (which may be over that very ciphertext, in place).
    const uint8_t *unauthenticated = NULL;
    size_t done = 0;
    while (len - done >= 512) {
        const uint8_t *authenticate = decrypt ? in + done : unauthenticated;
        __m256i x0 = input[0], x1 = input[1], x2 = input[2], x3 = input[3];
        __m256i x4 = input[4], x5 = input[5], x6 = input[6], x7 = input[7];
        __m256i x8 = input[8], x9 = input[9], x10 = input[10], x11 = input[11];
        __m256i x12 = input[12], x13 = input[13], x14 = input[14], x15 = input[15];
        for (int i = 0; i < 10; i++) {
            QUARTER_ROUND_V(x0, x4, x8, x12);
            QUARTER_ROUND_V(x1, x5, x9, x13);
            QUARTER_ROUND_V(x2, x6, x10, x14);
            QUARTER_ROUND_V(x3, x7, x11, x15);
            // 512 bytes of Poly1305 spread over the first eight double rounds, 64 bytes each.
            if (authenticate != NULL && i < 8) POLY_64(authenticate + 64 * i);
            QUARTER_ROUND_V(x0, x5, x10, x15);
            QUARTER_ROUND_V(x1, x6, x11, x12);
            QUARTER_ROUND_V(x2, x7, x8, x13);
            QUARTER_ROUND_V(x3, x4, x9, x14);
        }
        __m256i lo[8] = {
            _mm256_add_epi32(x0, input[0]), _mm256_add_epi32(x1, input[1]), _mm256_add_epi32(x2, input[2]),
            _mm256_add_epi32(x3, input[3]), _mm256_add_epi32(x4, input[4]), _mm256_add_epi32(x5, input[5]),
            _mm256_add_epi32(x6, input[6]), _mm256_add_epi32(x7, input[7]),
        };
        __m256i hi[8] = {
            _mm256_add_epi32(x8, input[8]), _mm256_add_epi32(x9, input[9]), _mm256_add_epi32(x10, input[10]),
            _mm256_add_epi32(x11, input[11]), _mm256_add_epi32(x12, input[12]), _mm256_add_epi32(x13, input[13]),
            _mm256_add_epi32(x14, input[14]), _mm256_add_epi32(x15, input[15]),
        };
        transpose8(lo);
        transpose8(hi);
        for (int j = 0; j < 8; j++) xor_store(in + done + 64 * j, out + done + 64 * j, lo[j], hi[j]);
        input[12] = _mm256_add_epi32(input[12], eight);
        unauthenticated = out + done;
        done += 512;
    }
    if (!decrypt && unauthenticated != NULL) {
        for (int i = 0; i < 8; i++) POLY_64(unauthenticated + 64 * i);
    }
    mac->h0 = h0;
    mac->h1 = h1;
    mac->h2 = h2;
    state[12] += (uint32_t)(done / 64);
    return done;
}

#else

int cmesh_chacha_avx2_available(void) { return 0; }

size_t cmesh_chacha20_xor_avx2_chunks(uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len) {
    (void)state, (void)in, (void)out, (void)len;
    return 0;
}

size_t cmesh_chachapoly_avx2_chunks(
    uint32_t state[16], struct poly1305_state_s *mac, const uint8_t *in, uint8_t *out, size_t len, int decrypt) {
    (void)state, (void)mac, (void)in, (void)out, (void)len, (void)decrypt;
    return 0;
}

#endif

void cmesh_chacha20_xor_state(int avx2, uint32_t state[16], const uint8_t *in, uint8_t *out, size_t len) {
    if (avx2) {
        const size_t done = cmesh_chacha20_xor_avx2_chunks(state, in, out, len);
        in += done;
        out += done;
        len -= done;
        if (len > 256) {
            uint8_t buffer[512] = {0};
            memcpy(buffer, in, len);
            cmesh_chacha20_xor_avx2_chunks(state, buffer, buffer, 512);
            state[12] -= (uint32_t)((512 - len) / 64);  // only the blocks the tail used count
            memcpy(out, buffer, len);
            wipe(buffer, sizeof buffer);
            return;
        }
    }
    cmesh_chacha20_xor_portable(state, in, out, len);
}

void cmesh_chacha20_xor(
    int avx2, const uint8_t key[32], uint32_t counter, const uint8_t nonce[12], const uint8_t *in, uint8_t *out,
    size_t len) {
    uint32_t state[16];
    chacha20_setup(state, key, counter, nonce);
    cmesh_chacha20_xor_state(avx2, state, in, out, len);
    wipe(state, sizeof state);
}
