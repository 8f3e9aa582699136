/* quant_x86.h: small AVX2 building blocks shared by the x86 kernel files
 * (quant_*_avx2.c, quant_*_avx512.c). Include it only from files compiled
 * with the AVX2 flags: every function here is an always-inline intrinsic
 * sequence, built with its includer's target options. */
#ifndef QUANT_X86_H
#define QUANT_X86_H

#include <immintrin.h>

/* 8 rows of 8 dwords -> 8 vectors: vector g holds dword g of rows 0..7
 * (an 8x8 transpose of 32-bit elements). */
static inline __attribute__((always_inline)) void quant_x86_transpose8(__m256i r[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

#endif
