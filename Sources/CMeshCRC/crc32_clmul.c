// CRC-32 by folding with carry-less multiplication (PCLMULQDQ), after Gopal et al., "Fast CRC
// Computation for Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009).
//
// The register holds the message polynomial in reflected bit order (the first byte's lowest bit
// is the highest power of x). Four 128-bit accumulators take 64 bytes a step: each is multiplied
// by x^(512±32) mod P (one constant per 64-bit half) and the next 64 bytes are added in. The
// four are then folded into one (x^(128±32)), the 128 bits reduced to 64 (x^96) and to 32
// (x^64), and a Barrett reduction (mu = x^64 / P) gives the remainder. Each constant is
// x^n mod P, bit-reflected and shifted left by one; the tests check the result against the
// table-driven code on thousands of lengths and alignments.
//
// The functions carry their own target attribute, so no global -m flags are needed and the rest
// of the binary still runs on CPUs without these instructions.
#include "CMeshCRC.h"

#if defined(__x86_64__) || defined(__i386__)

#include <cpuid.h>
#include <immintrin.h>

int cmesh_crc32_clmul_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int has_pclmul = (ecx >> 1) & 1;
    const int has_sse41 = (ecx >> 19) & 1;
    return has_pclmul && has_sse41;
}

#define CMESH_CLMUL __attribute__((target("pclmul,sse4.1")))

/// x times the two constants, one per 64-bit half, plus `next`.
CMESH_CLMUL static inline __m128i fold(__m128i x, __m128i constants, __m128i next) {
    const __m128i low = _mm_clmulepi64_si128(x, constants, 0x00);
    const __m128i high = _mm_clmulepi64_si128(x, constants, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), next);
}

CMESH_CLMUL uint32_t cmesh_crc32_clmul(uint32_t crc, const void *bytes, size_t length) {
    const uint8_t *p = (const uint8_t *)bytes;
    // x^544 (low half) and x^480 (high half): fold forward by 512 bits.
    const __m128i by512 = _mm_set_epi64x(0x1c6e41596, 0x154442bd4);
    // x^160 and x^96: fold forward by 128 bits.
    const __m128i by128 = _mm_set_epi64x(0x0ccaa009e, 0x1751997d0);
    // x^64, for the last 32 bits.
    const __m128i by64 = _mm_set_epi64x(0, 0x163cd6124);
    // Barrett: P' (the polynomial, 33 bits, reflected) low, mu = x^64 / P high.
    const __m128i barrett = _mm_set_epi64x(0x1f7011641, 0x1db710641);
    const __m128i low32 = _mm_set_epi32(0, 0, 0, -1);

    __m128i x0 = _mm_loadu_si128((const __m128i *)(p + 0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
    p += 64;
    length -= 64;
    while (length >= 64) {
        x0 = fold(x0, by512, _mm_loadu_si128((const __m128i *)(p + 0)));
        x1 = fold(x1, by512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, by512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, by512, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        length -= 64;
    }
    x0 = fold(x0, by128, x1);
    x0 = fold(x0, by128, x2);
    x0 = fold(x0, by128, x3);
    while (length >= 16) {
        x0 = fold(x0, by128, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        length -= 16;
    }
    // 128 bits to 64: the low half times x^96, plus the high half.
    __m128i t = _mm_xor_si128(_mm_clmulepi64_si128(x0, by128, 0x10), _mm_srli_si128(x0, 8));
    // 64 bits to 32: the low 32 bits times x^64, plus the rest.
    t = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(t, low32), by64, 0x00), _mm_srli_si128(t, 4));
    // Barrett reduction: q = (t mod x^32) * mu, then t + (q mod x^32) * P.
    __m128i q = _mm_clmulepi64_si128(_mm_and_si128(t, low32), barrett, 0x10);
    q = _mm_clmulepi64_si128(_mm_and_si128(q, low32), barrett, 0x00);
    t = _mm_xor_si128(t, q);
    return (uint32_t)_mm_extract_epi32(t, 1);
}

#else

int cmesh_crc32_clmul_available(void) { return 0; }

uint32_t cmesh_crc32_clmul(uint32_t crc, const void *bytes, size_t length) {
    (void)bytes;
    (void)length;
    return crc;
}

#endif
