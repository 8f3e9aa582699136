#include "vec.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "quant.h" /* quant_cpu_has: one place decides which ISA names the CPU runs */

static float vec_dot_scalar(const float *a, const float *b, int64_t n)
{
    float s[4] = {0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static void vec_axpy_scalar(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void vec_wsum_scalar(float *o, const float *w, const float *v, int64_t n, int64_t D, int64_t ld)
{
    for (int64_t d = 0; d < D; d++)
        o[d] = 0;
    for (int64_t i = 0; i < n; i++)
        vec_axpy_scalar(o, w[i], v + i * ld, D);
}

static void vec_silu_mul_scalar(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static float vec_exp_sum_scalar(float *x, float max, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] = expf(x[i] - max);
    return (float)s;
}

static vec_ops vec_scalar = {"scalar", vec_dot_scalar, vec_axpy_scalar, vec_wsum_scalar,
                             vec_silu_mul_scalar, vec_exp_sum_scalar};
static vec_ops vec_avx2;
static vec_ops vec_avx512; /* the AVX2 kernels, under the name quant's tables use */
static int vec_have_avx2, vec_have_avx512;
static pthread_once_t vec_once = PTHREAD_ONCE_INIT;

static void vec_init(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    vec_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    vec_avx2 = vec_scalar;
    vec_avx2.isa = "avx2";
    vec_fill_avx2(&vec_avx2);
    vec_have_avx512 = vec_have_avx2 && quant_cpu_has("avx512");
    vec_avx512 = vec_avx2;
    vec_avx512.isa = "avx512";
#endif
}

const vec_ops *vec_ops_for(const char *isa)
{
    pthread_once(&vec_once, vec_init);
    if (isa && !strcmp(isa, "scalar"))
        return &vec_scalar;
    if (isa && !strcmp(isa, "avx512"))
        return vec_have_avx512 ? &vec_avx512 : NULL;
    if (isa && strcmp(isa, "avx2"))
        return NULL;
    if (vec_have_avx2)
        return &vec_avx2;
    return isa ? NULL : &vec_scalar;
}
