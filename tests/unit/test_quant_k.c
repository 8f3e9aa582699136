/* test_quant_k.c: K-quant formats (Q4_K, Q5_K, Q6_K, Q8_K): hand-built
 * blocks, quantize/dequantize round trips, the scalar kernels against float
 * dot products of dequantized rows, and the AVX2 kernels against the scalar
 * ones on random valid blocks of odd shapes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core_err.h"
#include "quant.h"
#include "quant_impl.h"

/* ---- deterministic random numbers ---- */

static uint64_t tqk_state = 0x9e3779b97f4a7c15ull;

static uint32_t tqk_rand(void)
{
    tqk_state = tqk_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(tqk_state >> 33);
}

static float tqk_uniform(void) /* [0, 1) */
{
    return (float)(tqk_rand() >> 8) * 0x1p-23f;
}

static float tqk_gauss(void)
{
    float u = tqk_uniform() + 1e-7f, v = tqk_uniform();
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static const int tqk_wtypes[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K};

/* ---- hand-built blocks ---- */

/* Shared scale bytes: sc = {1,2,3,4,17,0,0,0}, m = {5,6,7,8,34,0,0,0}.
 * Byte 0 top bits 01 -> scale 4 bit 4; byte 4 top bits 10 -> min 4 bit 5;
 * byte 8 = 0x21 -> scale 4 low nibble 1, min 4 low nibble 2. */
static const uint8_t tqk_scales[12] = {0x41, 0x02, 0x03, 0x04, 0x85, 0x06,
                                       0x07, 0x08, 0x21, 0x00, 0x00, 0x00};

static void test_hand_q4_K(void **state)
{
    (void)state;
    quant_block_q4_K b;
    b.d = 0x3C00;    /* 1.0 */
    b.dmin = 0x3800; /* 0.5 */
    memcpy(b.scales, tqk_scales, 12);
    memset(b.qs, 0x39, sizeof b.qs); /* low nibbles 9, high nibbles 3 */
    float y[QK_K];
    assert_int_equal(quant_dequantize_row(QT_Q4_K, &b, y, QK_K), 0);
    /* sub-block j: d*sc*q - dmin*m, even j from low nibbles (9), odd from high (3) */
    static const float want[8] = {1 * 9 - 2.5f, 2 * 3 - 3.0f, 3 * 9 - 3.5f, 4 * 3 - 4.0f,
                                  17 * 9 - 17.0f, 0, 0, 0};
    for (int i = 0; i < QK_K; i++)
        assert_float_equal(y[i], want[i / 32], 0);
}

static void test_hand_q5_K(void **state)
{
    (void)state;
    quant_block_q5_K b;
    b.d = 0x3C00;
    b.dmin = 0x3800;
    memcpy(b.scales, tqk_scales, 12);
    memset(b.qs, 0x39, sizeof b.qs);
    /* bit j of qh[l] is bit 4 of element l of sub-block j: sub-blocks 0 and 4
     * everywhere, sub-block 1 only for l < 16 */
    for (int l = 0; l < 32; l++)
        b.qh[l] = (uint8_t)(0x11 | (l < 16 ? 0x02 : 0));
    float y[QK_K];
    assert_int_equal(quant_dequantize_row(QT_Q5_K, &b, y, QK_K), 0);
    for (int i = 0; i < QK_K; i++) {
        int j = i / 32, l = i % 32;
        float want;
        switch (j) {
        case 0: want = 1 * 25 - 2.5f; break;
        case 1: want = l < 16 ? 2 * 19 - 3.0f : 2 * 3 - 3.0f; break;
        case 2: want = 3 * 9 - 3.5f; break;
        case 3: want = 4 * 3 - 4.0f; break;
        case 4: want = 17 * 25 - 17.0f; break;
        default: want = 0;
        }
        assert_float_equal(y[i], want, 0);
    }
}

static void test_hand_q6_K(void **state)
{
    (void)state;
    quant_block_q6_K b;
    memset(b.ql, 0x5A, sizeof b.ql); /* low nibbles 10, high 5 */
    memset(b.qh, 0xE4, sizeof b.qh); /* 2-bit fields 0,1,2,3 from bit 0 up */
    for (int g = 0; g < 16; g++)
        b.scales[g] = (int8_t)(g - 8);
    b.d = 0x3800; /* 0.5 */
    float y[QK_K];
    assert_int_equal(quant_dequantize_row(QT_Q6_K, &b, y, QK_K), 0);
    /* quarter i of each half of 128: (nibble | field_i << 4) - 32 with the
     * low nibble for i = 0,1 and the high one for i = 2,3 */
    static const int qv[4] = {10 - 32, 10 + 16 - 32, 5 + 32 - 32, 5 + 48 - 32};
    for (int i = 0; i < QK_K; i++)
        assert_float_equal(y[i], 0.5f * (float)(i / 16 - 8) * (float)qv[(i % 128) / 32], 0);
}

static void test_hand_q8_K(void **state)
{
    (void)state;
    quant_block_q8_K b;
    memset(&b, 0, sizeof b);
    b.d = 0.25f;
    for (int i = 0; i < QK_K; i++)
        b.qs[i] = (int8_t)(i % 255 - 127);
    float y[QK_K];
    assert_int_equal(quant_dequantize_row(QT_Q8_K, &b, y, QK_K), 0);
    for (int i = 0; i < QK_K; i++)
        assert_float_equal(y[i], 0.25f * (float)(i % 255 - 127), 0);

    /* ggml's convention: the largest magnitude (-2 here) maps to -127, so
     * d = 2/127 and 1.0 -> round(63.5) = 64 (to even), 0.5 -> 31.75 -> 32. */
    float x[QK_K] = {0};
    x[5] = -2.0f;
    x[6] = 1.0f;
    x[7] = 0.5f;
    x[20] = 0.25f; /* 15.875 -> 16 */
    assert_int_equal(quant_quantize_row(QT_Q8_K, x, &b, QK_K), 0);
    assert_float_equal(b.d, 1 / 63.5f, 0);
    assert_int_equal(b.qs[5], -127);
    assert_int_equal(b.qs[6], 64);
    assert_int_equal(b.qs[7], 32);
    assert_int_equal(b.qs[20], 16);
    assert_int_equal(b.bsums[0], -127 + 64 + 32);
    assert_int_equal(b.bsums[1], 16);
    for (int g = 2; g < 16; g++)
        assert_int_equal(b.bsums[g], 0);
    /* largest value positive: q at that index is -127 and d negative */
    x[5] = 3.0f;
    assert_int_equal(quant_quantize_row(QT_Q8_K, x, &b, QK_K), 0);
    assert_int_equal(b.qs[5], -127);
    assert_true(b.d < 0);
}

static void test_unsupported(void **state)
{
    (void)state;
    float x[QK_K] = {0};
    uint8_t buf[512] = {0};
    assert_int_equal(quant_dequantize_k(QT_Q4_0, buf, x, 32), CORE_EUNSUPPORTED);
    assert_int_equal(quant_quantize_k(QT_Q2_K, x, buf, QK_K), CORE_EUNSUPPORTED);
    assert_int_equal(quant_dequantize_k(QT_F32, buf, x, QK_K), CORE_EUNSUPPORTED);
    assert_int_equal(quant_quantize_k(QT_Q4_K, x, buf, 100), CORE_EINVAL);
    assert_int_equal(quant_dequantize_k(QT_Q6_K, buf, x, 300), CORE_EINVAL);
}

/* ---- round trips ---- */

static double tqk_rel_rmse(int type, const float *x, int64_t n)
{
    size_t sz = quant_row_size(type, n);
    assert_true(sz > 0);
    void *q = malloc(sz);
    float *y = malloc((size_t)n * sizeof *y);
    assert_non_null(q);
    assert_non_null(y);
    assert_int_equal(quant_quantize_row(type, x, q, n), 0);
    assert_int_equal(quant_dequantize_row(type, q, y, n), 0);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(y[i]));
        se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        sx += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sx > 0 ? sqrt(se / sx) : sqrt(se);
}

static void test_round_trip(void **state)
{
    (void)state;
    enum { N = 16 * QK_K };
    static float x[N];
    /* relative RMS error bounds: the measured values (0.070/0.036/0.018/0.007
     * on Gaussian data) plus about 15%; a broken fit or packing lands far above */
    static const struct { int type; double gauss, skewed; } lim[] = {
        {QT_Q4_K, 0.080, 0.036}, {QT_Q5_K, 0.042, 0.018}, {QT_Q6_K, 0.021, 0.016}, {QT_Q8_K, 0.008, 0.005}};
    for (size_t t = 0; t < sizeof lim / sizeof lim[0]; t++) {
        for (int i = 0; i < N; i++)
            x[i] = tqk_gauss() * 0.02f;
        double e = tqk_rel_rmse(lim[t].type, x, N);
        assert_true(e < lim[t].gauss);
        /* offset, per-block varying ranges: exercises the mins */
        for (int i = 0; i < N; i++)
            x[i] = (float)(i / QK_K + 1) * (0.3f + tqk_uniform() + 0.2f * tqk_gauss());
        e = tqk_rel_rmse(lim[t].type, x, N);
        assert_true(e < lim[t].skewed);
        /* zeros stay exact zeros, constants stay close */
        memset(x, 0, sizeof x);
        assert_true(tqk_rel_rmse(lim[t].type, x, N) == 0);
        for (int i = 0; i < N; i++)
            x[i] = -1.5f;
        assert_true(tqk_rel_rmse(lim[t].type, x, N) < 0.01);
    }
}

/* Non-finite input must give some valid block, not a crash. */
static void test_bad_input(void **state)
{
    (void)state;
    float x[QK_K];
    uint8_t buf[sizeof(quant_block_q8_K)];
    float y[QK_K];
    for (int i = 0; i < QK_K; i++)
        x[i] = i % 7 == 0 ? NAN : i % 11 == 0 ? INFINITY : i % 13 == 0 ? -1e38f : (float)i;
    for (int t = QT_Q4_K; t <= QT_Q8_K; t++) {
        assert_int_equal(quant_quantize_row(t, x, buf, QK_K), 0);
        assert_int_equal(quant_dequantize_row(t, buf, y, QK_K), 0);
    }
}

/* ---- kernels ---- */

/* Random valid weight blocks: any bytes are valid; scales kept in a range
 * where products stay far from float limits. */
static void tqk_random_blocks(int type, void *dst, int64_t nb)
{
    const quant_traits *tr = quant_traits_of(type);
    uint8_t *p = dst;
    for (size_t i = 0; i < (size_t)nb * tr->type_size; i++)
        p[i] = (uint8_t)tqk_rand();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = p + (size_t)b * tr->type_size;
        uint16_t d = quant_f32_to_f16((0.5f + tqk_uniform()) * 1e-3f);
        uint16_t dmin = quant_f32_to_f16((0.5f + tqk_uniform()) * 2e-3f);
        if (type == QT_Q6_K) {
            memcpy(blk + offsetof(quant_block_q6_K, d), &d, 2);
        } else {
            memcpy(blk + offsetof(quant_block_q4_K, d), &d, 2);
            memcpy(blk + offsetof(quant_block_q4_K, dmin), &dmin, 2);
        }
    }
}

/* Per-element magnitudes of a weight row before any cancellation: |scaled
 * quant| + |min| (Q4_K/Q5_K, from dequantizing copies with dmin or d zeroed)
 * or |value| (Q6_K). Dotted with |activation| this bounds every partial sum
 * of the row's product, which scales the tolerance. */
static void tqk_weight_magnitude(int type, const void *w, int64_t k, double *out)
{
    size_t wsz = quant_row_size(type, k), bs = quant_traits_of(type)->type_size;
    uint8_t *wc = malloc(wsz);
    float *wa = malloc((size_t)k * 4), *wb = malloc((size_t)k * 4);
    assert_true(wc && wa && wb);
    if (type == QT_Q6_K) {
        assert_int_equal(quant_dequantize_row(type, w, wa, k), 0);
        for (int64_t i = 0; i < k; i++)
            out[i] = fabs((double)wa[i]);
    } else {
        memcpy(wc, w, wsz);
        for (int64_t b = 0; b < k / QK_K; b++)
            memset(wc + b * bs + offsetof(quant_block_q4_K, dmin), 0, 2);
        assert_int_equal(quant_dequantize_row(type, wc, wa, k), 0);
        memcpy(wc, w, wsz);
        for (int64_t b = 0; b < k / QK_K; b++)
            memset(wc + b * bs + offsetof(quant_block_q4_K, d), 0, 2);
        assert_int_equal(quant_dequantize_row(type, wc, wb, k), 0);
        for (int64_t i = 0; i < k; i++)
            out[i] = fabs((double)wa[i]) + fabs((double)wb[i]);
    }
    free(wc);
    free(wa);
    free(wb);
}

static void tqk_act_magnitude(const void *a, int64_t k, double *out)
{
    float *af = malloc((size_t)k * 4);
    assert_non_null(af);
    assert_int_equal(quant_dequantize_row(QT_Q8_K, a, af, k), 0);
    for (int64_t i = 0; i < k; i++)
        out[i] = fabs((double)af[i]);
    free(af);
}

static double tqk_dot(const double *x, const double *y, int64_t k)
{
    double s = 0;
    for (int64_t i = 0; i < k; i++)
        s += x[i] * y[i];
    return s;
}

typedef struct {
    int64_t k, n_rows, n_act;
    size_t w_stride, a_stride, y_stride;
    uint8_t *w, *a;
    float *y;
} tqk_case;

/* Rows and activation rows with padding between them, to catch kernels that
 * assume packed strides. */
static void tqk_case_new(tqk_case *c, int type, int64_t k, int64_t n_rows, int64_t n_act)
{
    c->k = k;
    c->n_rows = n_rows;
    c->n_act = n_act;
    c->w_stride = quant_row_size(type, k) + 6;
    c->a_stride = quant_row_size(QT_Q8_K, k) + 4;
    c->y_stride = (size_t)n_rows + 3;
    c->w = malloc(c->w_stride * (size_t)n_rows);
    c->a = malloc(c->a_stride * (size_t)n_act);
    c->y = malloc(c->y_stride * (size_t)n_act * sizeof(float));
    assert_true(c->w && c->a && c->y);
    for (int64_t r = 0; r < n_rows; r++)
        tqk_random_blocks(type, c->w + (size_t)r * c->w_stride, k / QK_K);
    float *x = malloc((size_t)k * sizeof *x);
    assert_non_null(x);
    for (int64_t t = 0; t < n_act; t++) {
        for (int64_t i = 0; i < k; i++)
            x[i] = tqk_gauss();
        assert_int_equal(quant_quantize_row(QT_Q8_K, x, c->a + (size_t)t * c->a_stride, k), 0);
    }
    free(x);
}

static void tqk_case_run(tqk_case *c, quant_gemm_fn fn, int type)
{
    (void)type;
    for (size_t i = 0; i < c->y_stride * (size_t)c->n_act; i++)
        c->y[i] = -12345.0f; /* sentinel for the padding */
    fn(c->k, c->w, c->w_stride, c->n_rows, c->a, c->a_stride, c->n_act, c->y, c->y_stride);
    for (int64_t t = 0; t < c->n_act; t++)
        for (size_t r = (size_t)c->n_rows; r < c->y_stride; r++)
            assert_true(c->y[t * c->y_stride + r] == -12345.0f);
}

static void tqk_case_free(tqk_case *c)
{
    free(c->w);
    free(c->a);
    free(c->y);
}

/* The scalar kernels against double dot products of dequantized rows. */
static void test_scalar_vs_dequant(void **state)
{
    (void)state;
    const quant_kernels *ks = quant_kernels_for("scalar");
    assert_non_null(ks);
    assert_non_null(ks->act[QT_Q8_K]);
    for (size_t ti = 0; ti < 3; ti++) {
        int type = tqk_wtypes[ti];
        assert_int_equal(quant_traits_of(type)->act_type, QT_Q8_K);
        assert_non_null(ks->gemm[type]);
        tqk_case c;
        int64_t k = 3 * QK_K;
        tqk_case_new(&c, type, k, 5, 3);
        tqk_case_run(&c, ks->gemm[type], type);
        float *wf = malloc((size_t)k * 4), *af = malloc((size_t)k * 4);
        assert_true(wf && af);
        for (int64_t t = 0; t < c.n_act; t++) {
            const uint8_t *a = c.a + t * c.a_stride;
            assert_int_equal(quant_dequantize_row(QT_Q8_K, a, af, k), 0);
            for (int64_t r = 0; r < c.n_rows; r++) {
                const uint8_t *w = c.w + r * c.w_stride;
                assert_int_equal(quant_dequantize_row(type, w, wf, k), 0);
                double ref = 0;
                for (int64_t i = 0; i < k; i++)
                    ref += (double)wf[i] * af[i];
                double mw[3 * QK_K], ma[3 * QK_K];
                tqk_weight_magnitude(type, w, k, mw);
                tqk_act_magnitude(a, k, ma);
                double tol = 1e-5 * tqk_dot(mw, ma, k);
                double got = c.y[t * c.y_stride + r];
                if (fabs(got - ref) > tol)
                    fail_msg("%s r=%ld t=%ld: %g vs %g (tol %g)", quant_traits_of(type)->name,
                             (long)r, (long)t, got, ref, tol);
            }
        }
        free(wf);
        free(af);
        tqk_case_free(&c);
    }
}

static void tqk_compare(int type, const quant_kernels *ref, const quant_kernels *fast, int64_t k,
                        int64_t n_rows, int64_t n_act)
{
    tqk_case c;
    tqk_case_new(&c, type, k, n_rows, n_act);
    float *want = malloc(c.y_stride * (size_t)n_act * sizeof *want);
    assert_non_null(want);
    tqk_case_run(&c, ref->gemm[type], type);
    memcpy(want, c.y, c.y_stride * (size_t)n_act * sizeof *want);
    tqk_case_run(&c, fast->gemm[type], type);
    double *mw = malloc((size_t)(n_rows * k) * sizeof *mw), *ma = malloc((size_t)(n_act * k) * sizeof *ma);
    assert_true(mw && ma);
    for (int64_t r = 0; r < n_rows; r++)
        tqk_weight_magnitude(type, c.w + r * c.w_stride, k, mw + r * k);
    for (int64_t t = 0; t < n_act; t++)
        tqk_act_magnitude(c.a + t * c.a_stride, k, ma + t * k);
    for (int64_t t = 0; t < n_act; t++)
        for (int64_t r = 0; r < n_rows; r++) {
            double got = c.y[t * c.y_stride + r], exp = want[t * c.y_stride + r];
            double tol = 1e-5 * tqk_dot(mw + r * k, ma + t * k, k);
            if (!(fabs(got - exp) <= tol))
                fail_msg("%s k=%ld rows=%ld acts=%ld at r=%ld t=%ld: %.9g vs %.9g (tol %g)",
                         quant_traits_of(type)->name, (long)k, (long)n_rows, (long)n_act, (long)r,
                         (long)t, got, exp, tol);
        }
    free(mw);
    free(ma);
    free(want);
    tqk_case_free(&c);
}

/* isa: "avx2" or "avx512" (whose K-quant entries are the AVX2 ones today;
 * compared all the same, so a future AVX-512 K kernel is covered). */
static void tqk_gemm_isa(const char *isa)
{
    const quant_kernels *fast = quant_kernels_for(isa), *ref = quant_kernels_for("scalar");
    if (!fast) {
        print_message("SKIP: CPU or build without %s\n", isa);
        skip();
    }
    /* avx512: 12+ rows take the panels (tiles of 4: 13..15 end in partial ones) */
    static const int64_t acts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 64};
    static const int64_t ks[] = {256, 512, 4864};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t ki = 0; ki < 3; ki++)
            for (int64_t rows = 1; rows <= 37; rows++)
                for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
                    /* the largest shapes only at a few row counts, for speed */
                    if (ks[ki] > 512 && acts[ai] == 64 && rows % 6 != 1)
                        continue;
                    tqk_compare(tqk_wtypes[ti], ref, fast, ks[ki], rows, acts[ai]);
                }
}

static void test_avx2_gemm(void **state)
{
    (void)state;
    tqk_gemm_isa("avx2");
}

static void test_avx512_gemm(void **state)
{
    (void)state;
    tqk_gemm_isa("avx512");
}

/* The SIMD activation converters write the same bytes as the reference. */
static void tqk_act_isa(const char *isa)
{
    const quant_kernels *fast = quant_kernels_for(isa), *ref = quant_kernels_for("scalar");
    if (!fast) {
        print_message("SKIP: CPU or build without %s\n", isa);
        skip();
    }
    enum { K = 19 * QK_K };
    static float x[K];
    static quant_block_q8_K want[K / QK_K], got[K / QK_K];
    for (int rep = 0; rep < 20; rep++) {
        float scale = rep < 10 ? 1.0f : powf(10.0f, (float)(rep - 15));
        for (int i = 0; i < K; i++)
            x[i] = tqk_gauss() * scale + (rep % 3 == 0 ? 0.5f * scale : 0);
        if (rep == 1)
            memset(x + QK_K, 0, QK_K * sizeof(float)); /* an all-zero block */
        if (rep == 2)
            for (int i = 0; i < K; i++) /* max 127: scale -1, ties at every half */
                x[i] = i % QK_K == 0 ? 127.0f : (float)(i % 64) - 31.5f;
        if (rep == 3)
            for (int i = 0; i < K; i++) /* +-63.5 both present: either sign is right */
                x[i] = (float)(i % 255 - 127) * 0.5f;
        memset(want, 0xAA, sizeof want);
        memset(got, 0x55, sizeof got);
        ref->act[QT_Q8_K](x, want, K);
        fast->act[QT_Q8_K](x, got, K);
        for (int b = 0; b < K / QK_K; b++) {
            if (got[b].d == want[b].d) {
                assert_memory_equal(got[b].qs, want[b].qs, QK_K);
                assert_memory_equal(got[b].bsums, want[b].bsums, sizeof want[b].bsums);
                continue;
            }
            /* the other sign of a tie for largest magnitude: all negated */
            assert_true(got[b].d == -want[b].d);
            for (int i = 0; i < QK_K; i++)
                assert_int_equal(got[b].qs[i], -want[b].qs[i]);
            for (int g = 0; g < QK_K / 16; g++)
                assert_int_equal(got[b].bsums[g], -want[b].bsums[g]);
        }
    }
}

static void test_avx2_act(void **state)
{
    (void)state;
    tqk_act_isa("avx2");
}

static void test_avx512_act(void **state)
{
    (void)state;
    tqk_act_isa("avx512");
}

/* ---- real blocks written by llama.cpp (fixtures, optional) ---- */

typedef struct {
    uint8_t *data;
    size_t size;
} tqk_file;

static int tqk_read_file(const char *path, tqk_file *f)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    int rc = -1;
    if (fseek(fp, 0, SEEK_END) == 0) {
        long n = ftell(fp);
        if (n > 0 && fseek(fp, 0, SEEK_SET) == 0) {
            f->size = (size_t)n;
            f->data = malloc(f->size);
            if (f->data && fread(f->data, 1, f->size, fp) == f->size)
                rc = 0;
        }
    }
    fclose(fp);
    return rc;
}

/* Minimal GGUF v3 walk (the fixture is trusted, but reads stay in bounds):
 * header, key/value pairs skipped, tensor infos, data at the alignment.
 * Returns the tensor's bytes and type, or NULL. */
typedef struct {
    const uint8_t *p, *end;
    int bad;
} tqk_cur;

static uint64_t tqk_get(tqk_cur *c, size_t n)
{
    uint64_t v = 0;
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = 1;
        return 0;
    }
    memcpy(&v, c->p, n); /* little-endian host */
    c->p += n;
    return v;
}

static void tqk_skip_value(tqk_cur *c, uint32_t type, int depth)
{
    static const uint8_t size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) { /* string */
        uint64_t n = tqk_get(c, 8);
        if (n > (uint64_t)(c->end - c->p))
            c->bad = 1;
        else
            c->p += n;
    } else if (type == 9 && depth == 0) { /* array */
        uint32_t et = (uint32_t)tqk_get(c, 4);
        uint64_t n = tqk_get(c, 8);
        for (uint64_t i = 0; i < n && !c->bad; i++)
            tqk_skip_value(c, et, 1);
    } else if (type < 13 && size[type]) {
        tqk_get(c, size[type]);
    } else {
        c->bad = 1;
    }
}

static const uint8_t *tqk_find_tensor(const tqk_file *f, const char *name, int *type, int64_t *n)
{
    tqk_cur c = {f->data, f->data + f->size, 0};
    if (tqk_get(&c, 4) != 0x46554747u || tqk_get(&c, 4) != 3)
        return NULL;
    uint64_t nt = tqk_get(&c, 8), nkv = tqk_get(&c, 8), align = 32;
    for (uint64_t i = 0; i < nkv && !c.bad; i++) {
        uint64_t kl = tqk_get(&c, 8);
        const uint8_t *key = c.p;
        if (kl > (uint64_t)(c.end - c.p))
            return NULL;
        c.p += kl;
        uint32_t vt = (uint32_t)tqk_get(&c, 4);
        if (vt == 4 && kl == 17 && !memcmp(key, "general.alignment", 17))
            align = tqk_get(&c, 4);
        else
            tqk_skip_value(&c, vt, 0);
    }
    const uint8_t *found = NULL;
    uint64_t off = 0;
    for (uint64_t i = 0; i < nt && !c.bad; i++) {
        uint64_t nl = tqk_get(&c, 8);
        const uint8_t *nm = c.p;
        if (nl > (uint64_t)(c.end - c.p))
            return NULL;
        c.p += nl;
        uint32_t nd = (uint32_t)tqk_get(&c, 4);
        int64_t ne = 1;
        for (uint32_t d = 0; d < nd && d < 4; d++)
            ne *= (int64_t)tqk_get(&c, 8);
        int t = (int)tqk_get(&c, 4);
        uint64_t o = tqk_get(&c, 8);
        if (nd <= 4 && nl == strlen(name) && !memcmp(nm, name, nl)) {
            found = nm;
            *type = t;
            *n = ne;
            off = o;
        }
    }
    if (c.bad || !found || !align)
        return NULL;
    uint64_t base = ((uint64_t)(c.p - f->data) + align - 1) / align * align;
    size_t bytes = quant_row_size(*type, *n);
    if (!bytes || base + off > f->size || bytes > f->size - base - off)
        return NULL;
    return f->data + base + off;
}

/* The Q4_K_M fixture and the Q8_0 one hold the same weights: our decoding
 * of llama.cpp's Q4_K and Q6_K blocks must match the Q8_0 decoding within
 * the K-quant's own error (measured 0.071 and 0.019), and the AVX2 (and
 * AVX-512, when the CPU has it) kernels must agree with the scalar ones on
 * those real blocks. */
static void test_fixture_blocks(void **state)
{
    (void)state;
    tqk_file fk = {0}, f8 = {0};
    if (tqk_read_file("../shared/fixtures/llm/tiny-llama-spm-q4_k_m.gguf", &fk) ||
        tqk_read_file("../shared/fixtures/llm/tiny-llama-spm-q8_0.gguf", &f8)) {
        free(fk.data);
        free(f8.data);
        print_message("SKIP: ../shared absent\n");
        skip();
    }
    static const struct { const char *name; int type; double lim; } cases[] = {
        {"blk.0.ffn_down.weight", QT_Q4_K, 0.08},
        {"blk.1.ffn_down.weight", QT_Q6_K, 0.022},
    };
    const quant_kernels *ref = quant_kernels_for("scalar");
    const quant_kernels *fasts[] = {quant_kernels_for("avx2"), quant_kernels_for("avx512")};
    if (!fasts[1])
        print_message("SKIP: fixture blocks on avx512: not on this CPU\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int tk, t8;
        int64_t nk, n8;
        const uint8_t *wk = tqk_find_tensor(&fk, cases[i].name, &tk, &nk);
        const uint8_t *w8 = tqk_find_tensor(&f8, cases[i].name, &t8, &n8);
        assert_non_null(wk);
        assert_non_null(w8);
        assert_int_equal(tk, cases[i].type);
        assert_int_equal(t8, QT_Q8_0);
        assert_true(nk == n8 && nk == 768 * 256);
        float *yk = malloc((size_t)nk * sizeof *yk), *y8 = malloc((size_t)nk * sizeof *y8);
        assert_true(yk && y8);
        assert_int_equal(quant_dequantize_row(tk, wk, yk, nk), 0);
        assert_int_equal(quant_dequantize_row(QT_Q8_0, w8, y8, nk), 0);
        double se = 0, s8 = 0;
        for (int64_t j = 0; j < nk; j++) {
            se += ((double)yk[j] - y8[j]) * ((double)yk[j] - y8[j]);
            s8 += (double)y8[j] * y8[j];
        }
        assert_true(s8 > 0);
        assert_true(sqrt(se / s8) < cases[i].lim);

        /* kernels on the real rows (k = 768), 5 activation rows */
        for (size_t fi = 0; fi < 2; fi++) {
            const quant_kernels *fast = fasts[fi];
            if (!fast)
                continue;
            const int64_t k = 768, rows = 256, acts = 5;
            size_t rs = quant_row_size(tk, k), as = quant_row_size(QT_Q8_K, k);
            uint8_t *a = malloc(as * acts);
            float *x = malloc(k * sizeof *x), *r0 = malloc(rows * acts * 4), *r1 = malloc(rows * acts * 4);
            double *mw = malloc(rows * k * sizeof *mw), *ma = malloc(acts * k * sizeof *ma);
            assert_true(a && x && r0 && r1 && mw && ma);
            for (int64_t t = 0; t < acts; t++) {
                for (int64_t j = 0; j < k; j++)
                    x[j] = tqk_gauss();
                ref->act[QT_Q8_K](x, a + t * as, k);
                tqk_act_magnitude(a + t * as, k, ma + t * k);
            }
            for (int64_t r = 0; r < rows; r++)
                tqk_weight_magnitude(tk, wk + r * rs, k, mw + r * k);
            ref->gemm[tk](k, wk, rs, rows, a, as, acts, r0, rows);
            fast->gemm[tk](k, wk, rs, rows, a, as, acts, r1, rows);
            for (int64_t t = 0; t < acts; t++)
                for (int64_t r = 0; r < rows; r++)
                    assert_true(fabs((double)r0[t * rows + r] - r1[t * rows + r]) <=
                                1e-5 * tqk_dot(mw + r * k, ma + t * k, k));
            free(a);
            free(x);
            free(r0);
            free(r1);
            free(mw);
            free(ma);
        }
        free(yk);
        free(y8);
    }
    free(fk.data);
    free(f8.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_q4_K),     cmocka_unit_test(test_hand_q5_K),
        cmocka_unit_test(test_hand_q6_K),     cmocka_unit_test(test_hand_q8_K),
        cmocka_unit_test(test_unsupported),   cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_input),     cmocka_unit_test(test_scalar_vs_dequant),
        cmocka_unit_test(test_avx2_act),      cmocka_unit_test(test_avx2_gemm),
        cmocka_unit_test(test_avx512_act),    cmocka_unit_test(test_avx512_gemm),
        cmocka_unit_test(test_fixture_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
