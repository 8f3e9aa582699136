/* sgemm_avx2.c: the 6x16 AVX2/FMA micro-kernel (contract in sgemm.h).
 * Twelve ymm accumulators (6 rows x 2 halves), two B vectors and one A
 * broadcast per step: 12 FMAs per 8 loads keeps both FMA pipes busy. */
#include "sgemm.h"

#include <immintrin.h>

/* One row of the tile: + bias, the activation with the scalar path's
 * selects (x > 0 ? x : f(x)), store. */
static inline void sgemm_out_avx2(float *c, __m256 v0, __m256 v1, const float *bias, sgemm_act act)
{
    const __m256 zero = _mm256_setzero_ps();
    if (bias) {
        v0 = _mm256_add_ps(v0, _mm256_set1_ps(*bias));
        v1 = _mm256_add_ps(v1, _mm256_set1_ps(*bias));
    }
    if (act == SGEMM_ACT_LEAKY) {
        const __m256 tenth = _mm256_set1_ps(0.1f);
        v0 = _mm256_blendv_ps(_mm256_mul_ps(v0, tenth), v0, _mm256_cmp_ps(v0, zero, _CMP_GT_OQ));
        v1 = _mm256_blendv_ps(_mm256_mul_ps(v1, tenth), v1, _mm256_cmp_ps(v1, zero, _CMP_GT_OQ));
    } else if (act == SGEMM_ACT_RELU) {
        v0 = _mm256_and_ps(v0, _mm256_cmp_ps(v0, zero, _CMP_GT_OQ));
        v1 = _mm256_and_ps(v1, _mm256_cmp_ps(v1, zero, _CMP_GT_OQ));
    }
    _mm256_storeu_ps(c, v0);
    _mm256_storeu_ps(c + 8, v1);
}

void sgemm_kernel_avx2(int kc, const float *a, const float *b, float *c, size_t ldc,
                       int load, int last, const float *bias, sgemm_act act)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (load) {
        c00 = _mm256_loadu_ps(c + 0 * ldc), c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
        c10 = _mm256_loadu_ps(c + 1 * ldc), c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    for (int p = 0; p < kc; p++, a += SGEMM_MR, b += SGEMM_NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), x;
        x = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    if (!last) {
        _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);
        _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);
        _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
        _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
        _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
        _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
        return;
    }
    sgemm_out_avx2(c + 0 * ldc, c00, c01, bias ? bias + 0 : NULL, act);
    sgemm_out_avx2(c + 1 * ldc, c10, c11, bias ? bias + 1 : NULL, act);
    sgemm_out_avx2(c + 2 * ldc, c20, c21, bias ? bias + 2 : NULL, act);
    sgemm_out_avx2(c + 3 * ldc, c30, c31, bias ? bias + 3 : NULL, act);
    sgemm_out_avx2(c + 4 * ldc, c40, c41, bias ? bias + 4 : NULL, act);
    sgemm_out_avx2(c + 5 * ldc, c50, c51, bias ? bias + 5 : NULL, act);
}
