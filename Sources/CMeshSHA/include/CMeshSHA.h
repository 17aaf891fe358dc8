// SHA-256 block compression on the x86 SHA extensions (SHA-NI), for MeshCrypto's SHA256.
// Only Sources/MeshCrypto/SHA256+Compression.swift calls these.
#ifndef CMESH_SHA_H
#define CMESH_SHA_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the SHA extensions and SSE4.1 that `cmesh_sha256_compress_shani` uses, else 0.
int cmesh_sha256_shani_available(void);

/// Runs the SHA-256 compression function over `block_count` consecutive 64-byte blocks.
///
/// `state` points at the eight working words H0...H7 in order and is updated in place; `blocks`
/// need not be aligned. Call only when `cmesh_sha256_shani_available()` returned 1.
void cmesh_sha256_compress_shani(uint32_t *state, const void *blocks, size_t block_count);

#endif
