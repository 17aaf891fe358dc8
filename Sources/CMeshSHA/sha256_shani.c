// SHA-256 compression with the x86 SHA extensions.
//
// The SHA instructions keep the eight working variables in two registers laid out as
// {F, E, B, A} and {H, G, D, C} (lane 0 first). SHA256RNDS2 runs two rounds from the low two
// lanes of a W+K register and returns the new {F, E, B, A}; the old one becomes the new
// {H, G, D, C}, so the two state registers swap roles every call. SHA256MSG1 and SHA256MSG2
// compute the sigma0 and sigma1 parts of the message schedule four words at a time; the W[t-7]
// term in between is a plain vector add.
//
// The functions carry their own target attribute, so no global -m flags are needed and the rest
// of the binary still runs on CPUs without these instructions.
#include "CMeshSHA.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

int cmesh_sha256_shani_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int has_ssse3 = (ecx >> 9) & 1;
    const int has_sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int has_sha = (ebx >> 29) & 1;
    return has_ssse3 && has_sse41 && has_sha;
}

/// FIPS 180-4 round constants, four to a vector in round order.
static const uint32_t round_constants[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define CMESH_SHA_TARGET __attribute__((target("sha,sse4.1")))

/// Four rounds: adds the round constants for word group `group` to `words` and feeds the sums
/// to SHA256RNDS2 twice, two rounds each.
static inline CMESH_SHA_TARGET void four_rounds(__m128i *fe_ba, __m128i *hg_dc, __m128i words, int group) {
    const __m128i constants = _mm_load_si128((const __m128i *)&round_constants[4 * group]);
    __m128i sums = _mm_add_epi32(words, constants);
    *hg_dc = _mm_sha256rnds2_epu32(*hg_dc, *fe_ba, sums);  // rounds 4g, 4g+1: now {F, E, B, A}
    sums = _mm_shuffle_epi32(sums, 0x0E);                    // lanes 2 and 3 down to 0 and 1
    *fe_ba = _mm_sha256rnds2_epu32(*fe_ba, *hg_dc, sums);  // rounds 4g+2, 4g+3: roles back
}

/// The next four schedule words W[t...t+3] from the previous sixteen, held as four vectors
/// oldest first: W[t-16...t-13], W[t-12...t-9], W[t-8...t-5], W[t-4...t-1].
static inline CMESH_SHA_TARGET __m128i next_words(__m128i w16, __m128i w12, __m128i w8, __m128i w4) {
    const __m128i partial = _mm_sha256msg1_epu32(w16, w12);  // W[t-16+i] + sigma0(W[t-15+i])
    const __m128i w7 = _mm_alignr_epi8(w4, w8, 4);           // W[t-7...t-4]
    return _mm_sha256msg2_epu32(_mm_add_epi32(partial, w7), w4);
}

CMESH_SHA_TARGET
void cmesh_sha256_compress_shani(uint32_t *state, const void *blocks, size_t block_count) {
    const uint8_t *block_bytes = (const uint8_t *)blocks;

    // Message words are big-endian: reverse the bytes inside each 32-bit lane.
    const __m128i byte_swap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);

    // {A, B, C, D} and {E, F, G, H} from memory into the {F, E, B, A} / {H, G, D, C} layout.
    const __m128i abcd = _mm_loadu_si128((const __m128i *)&state[0]);
    const __m128i efgh = _mm_loadu_si128((const __m128i *)&state[4]);
    const __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
    const __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    __m128i fe_ba = _mm_alignr_epi8(badc, hgfe, 8);
    __m128i hg_dc = _mm_blend_epi16(hgfe, badc, 0xF0);

    for (size_t block = 0; block < block_count; block++, block_bytes += 64) {
        const __m128i saved_fe_ba = fe_ba;
        const __m128i saved_hg_dc = hg_dc;

        // A ring of the last sixteen schedule words; group g lives in w[g % 4].
        __m128i w[4];
        for (int group = 0; group < 4; group++) {
            w[group] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block_bytes + 16 * group)), byte_swap);
            four_rounds(&fe_ba, &hg_dc, w[group], group);
        }
#pragma clang loop unroll(full)
        for (int group = 4; group < 16; group++) {
            w[group % 4] = next_words(w[group % 4], w[(group + 1) % 4], w[(group + 2) % 4], w[(group + 3) % 4]);
            four_rounds(&fe_ba, &hg_dc, w[group % 4], group);
        }

        fe_ba = _mm_add_epi32(fe_ba, saved_fe_ba);
        hg_dc = _mm_add_epi32(hg_dc, saved_hg_dc);
    }

    // Back to {A, B, C, D} and {E, F, G, H}.
    const __m128i abef = _mm_shuffle_epi32(fe_ba, 0x1B);
    const __m128i ghcd = _mm_shuffle_epi32(hg_dc, 0xB1);
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(abef, ghcd, 0xF0));
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(ghcd, abef, 8));
}

#else

int cmesh_sha256_shani_available(void) { return 0; }

void cmesh_sha256_compress_shani(uint32_t *state, const void *blocks, size_t block_count) {
    (void)state;
    (void)blocks;
    (void)block_count;
    __builtin_trap();  // never called: availability is 0 on this architecture
}

#endif
