/* AVX2+FMA versions of vec.h. expf: Cody-Waite range reduction to
 * r in [-ln2/2, ln2/2] and a degree-6 polynomial, about 2 ulp, with inputs
 * clamped so that -inf and large negatives give 0 instead of garbage. */
#include <immintrin.h>

#include "vec.h"

static inline float vec_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 vec_exp8(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.0f), lo = _mm256_set1_ps(-87.3365478515625f);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static float vec_dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = vec_hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void vec_axpy_avx2(float *y, float a, const float *x, int64_t n)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * x[i];
}

static void vec_wsum_avx2(float *o, const float *w, const float *v, int64_t n, int64_t D, int64_t ld)
{
    int64_t d0 = 0;
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int64_t i = 0; i < n; i++) {
            const float *r = v + i * ld + d0;
            __m256 wi = _mm256_broadcast_ss(w + i);
            a0 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 8), a1);
            a2 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 16), a2);
            a3 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 24), a3);
            a4 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 32), a4);
            a5 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 40), a5);
            a6 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 48), a6);
            a7 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r + 56), a7);
        }
        _mm256_storeu_ps(o + d0, a0);
        _mm256_storeu_ps(o + d0 + 8, a1);
        _mm256_storeu_ps(o + d0 + 16, a2);
        _mm256_storeu_ps(o + d0 + 24, a3);
        _mm256_storeu_ps(o + d0 + 32, a4);
        _mm256_storeu_ps(o + d0 + 40, a5);
        _mm256_storeu_ps(o + d0 + 48, a6);
        _mm256_storeu_ps(o + d0 + 56, a7);
    }
    for (; d0 < D; d0++) { /* head sizes not a multiple of 64 */
        float acc = 0;
        for (int64_t i = 0; i < n; i++)
            acc += w[i] * v[i * ld + d0];
        o[d0] = acc;
    }
}

static void vec_silu_mul_avx2(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, vec_exp8(_mm256_sub_ps(zero, x))));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        __m256 x = _mm256_set1_ps(g[i]);
        __m256 e = vec_exp8(_mm256_sub_ps(zero, x));
        g[i] = g[i] / (1.0f + _mm256_cvtss_f32(e)) * u[i];
    }
}

static float vec_exp_sum_avx2(float *x, float max, int64_t n)
{
    __m256 vm = _mm256_set1_ps(max), s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = vec_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float sum = vec_hsum(s);
    for (; i < n; i++) {
        x[i] = _mm256_cvtss_f32(vec_exp8(_mm256_set1_ps(x[i] - max)));
        sum += x[i];
    }
    return sum;
}

void vec_fill_avx2(vec_ops *v)
{
    v->dot = vec_dot_avx2;
    v->axpy = vec_axpy_avx2;
    v->wsum = vec_wsum_avx2;
    v->silu_mul = vec_silu_mul_avx2;
    v->exp_sum = vec_exp_sum_avx2;
}
