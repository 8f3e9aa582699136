/* vec.h: float vector kernels of the transformer outside the matrix
 * products (attention dots, softmax, SwiGLU), chosen per ISA like quant.h's.
 * Pure functions, safe from any thread. */
#ifndef VEC_H
#define VEC_H

#include <stdint.h>

typedef struct {
    const char *isa;
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);     /* y += a x */
    /* o[d] = sum_i w[i] v[i*ld + d] for d < D: attention's weighted sum of
     * value rows, with o kept in registers instead of rewritten per row */
    void (*wsum)(float *o, const float *w, const float *v, int64_t n, int64_t D, int64_t ld);
    void (*silu_mul)(float *g, const float *u, int64_t n);          /* g = g sigmoid(g) u */
    float (*exp_sum)(float *x, float max, int64_t n);               /* x = e^(x-max); returns the sum */
} vec_ops;

/* "scalar", "avx2", "avx512" (the AVX2 functions under that name), or
 * NULL for the best the CPU runs; NULL if unavailable. */
const vec_ops *vec_ops_for(const char *isa);

/* Filled by vec_avx2.c. */
void vec_fill_avx2(vec_ops *v);

#endif
