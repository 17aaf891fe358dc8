// CRC-32 (the IEEE/zlib polynomial, reflected) with the x86 carry-less multiply, for Mesh's CRC32.
// Only Sources/Mesh/Bag/CRC32.swift calls these.
#ifndef CMESH_CRC_H
#define CMESH_CRC_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has PCLMULQDQ and SSE4.1, which `cmesh_crc32_clmul` uses, else 0.
int cmesh_crc32_clmul_available(void);

/// Advances the CRC-32 register `crc` (before the final XOR) over `length` bytes at `bytes`.
///
/// `length` must be at least 64 and a multiple of 16; `bytes` need not be aligned. Call only
/// when `cmesh_crc32_clmul_available()` returned 1.
uint32_t cmesh_crc32_clmul(uint32_t crc, const void *bytes, size_t length);

#endif
