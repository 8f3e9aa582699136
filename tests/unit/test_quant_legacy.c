/* test_quant_legacy.c: legacy quant formats (F32 F16 BF16 Q4_0 Q4_1 Q5_0
 * Q5_1 Q8_0 Q8_1): half/bfloat conversion edge cases, hand-computed blocks,
 * quantize/dequantize error bounds, scalar products against a double
 * reference, and the AVX2 kernels against the scalar ones.
 */
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

static uint64_t tq_rng = 0x9e3779b97f4a7c15ull;

static const int tq_types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1,
                               QT_Q5_0, QT_Q5_1, QT_Q8_0, QT_Q8_1};

static uint32_t tq_rand(void)
{
    tq_rng ^= tq_rng << 13;
    tq_rng ^= tq_rng >> 7;
    tq_rng ^= tq_rng << 17;
    return (uint32_t)(tq_rng >> 16);
}

/* Uniform in [-1, 1) times a per-block scale spread over a few decades, with
 * an occasional outlier: weights and activations are not uniform in life. */
static void tq_fill(float *x, int64_t n)
{
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0)
            scale = powf(10.0f, (float)(tq_rand() % 400) / 100.0f - 3.0f);
        float u = (float)(tq_rand() & 0xffffff) / (float)0x800000 - 1.0f;
        x[i] = u * scale * (tq_rand() % 61 == 0 ? 8.0f : 1.0f);
    }
}

static float tq_bits_f(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* ---- half / bfloat ------------------------------------------------------ */

static void test_f16_edges(void **state)
{
    (void)state;
    assert_int_equal(quant_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(quant_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(quant_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(quant_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(quant_f32_to_f16(65504.0f), 0x7bff);  /* largest half */
    assert_int_equal(quant_f32_to_f16(65519.0f), 0x7bff);  /* rounds down */
    assert_int_equal(quant_f32_to_f16(65520.0f), 0x7c00);  /* ties to even: overflow */
    assert_int_equal(quant_f32_to_f16(1e9f), 0x7c00);
    assert_int_equal(quant_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t hn = quant_f32_to_f16(NAN);
    assert_int_equal(hn & 0x7c00, 0x7c00);
    assert_true((hn & 0x03ff) != 0);
    /* subnormals: 2^-24 is the smallest; 2^-25 ties to even (0); 1.5*2^-24 -> 2 */
    assert_int_equal(quant_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(quant_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(quant_f32_to_f16(0x1.8p-24f), 0x0002);
    assert_int_equal(quant_f32_to_f16(0x1.8p-23f), 0x0003);
    assert_int_equal(quant_f32_to_f16(-0x1p-14f), 0x8400); /* smallest normal */
    assert_int_equal(quant_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
    assert_int_equal(quant_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie: up to normal */
    /* normal rounding: 1 + 2^-11 is a tie (even: 1.0), 1 + 3*2^-11 rounds up */
    assert_int_equal(quant_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(quant_f32_to_f16(1.0f + 0x1.8p-10f), 0x3c02);
    assert_int_equal(quant_f32_to_f16(1.0f + 0x1.0p-11f + 0x1p-20f), 0x3c01);

    assert_true(quant_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(quant_f16_to_f32(0x83ff) == -0x1.ff8p-15f);
    assert_true(quant_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(quant_f16_to_f32(0x7c00)) && quant_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(quant_f16_to_f32(0x7e00)));
    assert_true(signbit(quant_f16_to_f32(0x8000)));

    /* every half survives the round trip (NaNs stay NaNs) */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        uint16_t back = quant_f32_to_f16(f);
        if (isnan(f))
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
        else if (back != h)
            fail_msg("half 0x%04x -> %a -> 0x%04x", h, (double)f, back);
    }
}

static void test_bf16_edges(void **state)
{
    (void)state;
    assert_int_equal(quant_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(quant_f32_to_bf16(tq_bits_f(0x3f808000u)), 0x3f80); /* tie, even */
    assert_int_equal(quant_f32_to_bf16(tq_bits_f(0x3f818000u)), 0x3f82); /* tie, up */
    assert_int_equal(quant_f32_to_bf16(tq_bits_f(0x3f808001u)), 0x3f81);
    assert_int_equal(quant_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(quant_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(quant_f32_to_bf16(tq_bits_f(0x00000001u)), 0x0000); /* tiny subnormal */
    uint16_t n = quant_f32_to_bf16(tq_bits_f(0x7f800001u)); /* NaN with low payload only */
    assert_true(isnan(quant_bf16_to_f32(n)));
    assert_true(quant_bf16_to_f32(0x4049) == tq_bits_f(0x40490000u));
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = quant_bf16_to_f32((uint16_t)h);
        if (!isnan(f))
            assert_int_equal(quant_f32_to_bf16(f), h);
    }
}

/* ---- hand-computed blocks ----------------------------------------------- */

static void test_q8_0_hand(void **state)
{
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    quant_block_q8_0 b;
    assert_int_equal(quant_quantize_legacy(QT_Q8_0, x, &b, 32), 0);
    /* d = 16/127 = 0.125984...: half 0x3008 (1 + 8/1024) * 2^-3 */
    assert_int_equal(b.d, 0x3008);
    /* q = roundf((j-16) * 127/16) */
    assert_int_equal(b.qs[0], -127);
    assert_int_equal(b.qs[14], -16);  /* -15.875 */
    assert_int_equal(b.qs[15], -8);   /* -7.9375 */
    assert_int_equal(b.qs[16], 0);
    assert_int_equal(b.qs[31], 119);  /* 119.0625 */

    /* ties round away from zero, as roundf does: amax 127 gives d = 1 */
    float t[32] = {127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -2.5f, 126.5f};
    assert_int_equal(quant_quantize_legacy(QT_Q8_0, t, &b, 32), 0);
    assert_int_equal(b.d, 0x3c00);
    const int8_t want[8] = {127, 3, -4, 1, -1, 2, -3, 127};
    for (int j = 0; j < 8; j++)
        assert_int_equal(b.qs[j], want[j]);

    quant_block_q8_1 b1;
    assert_int_equal(quant_quantize_legacy(QT_Q8_1, t, &b1, 32), 0);
    /* sum = 127+3-4+1-1+2-3+127 = 252, s = 252 * 1.0 */
    assert_int_equal(b1.d, 0x3c00);
    assert_int_equal(b1.s, quant_f32_to_f16(252.0f));
    assert_memory_equal(b1.qs, b.qs, 32);

    /* all zeros: d = 0 and q = 0, no division by zero */
    memset(t, 0, sizeof(t));
    assert_int_equal(quant_quantize_legacy(QT_Q8_0, t, &b, 32), 0);
    assert_int_equal(b.d, 0);
    for (int j = 0; j < 32; j++)
        assert_int_equal(b.qs[j], 0);
}

static void test_q4_q5_hand(void **state)
{
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);

    /* Q4_0: max|x| is x[0] = -16, d = -16/-8 = 2, q = (int)(x/2 + 8.5), max 15 */
    quant_block_q4_0 b4;
    assert_int_equal(quant_quantize_legacy(QT_Q4_0, x, &b4, 32), 0);
    assert_int_equal(b4.d, 0x4000);
    assert_int_equal(b4.qs[0], 0x80);  /* q[0] = 0, q[16] = 8 */
    assert_int_equal(b4.qs[1], 0x91);  /* q[1] = 1, q[17] = 9 */
    assert_int_equal(b4.qs[2], 0x91);  /* 1.5 -> 1, 9.5 -> 9 */
    assert_int_equal(b4.qs[15], 0xf8); /* q[15] = 8, q[31] = 16 clamped to 15 */
    float y[32];
    assert_int_equal(quant_dequantize_legacy(QT_Q4_0, &b4, y, 32), 0);
    assert_true(y[0] == -16.0f && y[16] == 0.0f && y[31] == 14.0f && y[1] == -14.0f);

    /* Q5_0: d = -16/-16 = 1, q = j; bit 4 set for j >= 16 */
    quant_block_q5_0 b5;
    assert_int_equal(quant_quantize_legacy(QT_Q5_0, x, &b5, 32), 0);
    assert_int_equal(b5.d, 0x3c00);
    const uint8_t qh_want[4] = {0x00, 0x00, 0xff, 0xff};
    assert_memory_equal(b5.qh, qh_want, 4);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b5.qs[j], (uint8_t)(j | j << 4));
    assert_int_equal(quant_dequantize_legacy(QT_Q5_0, &b5, y, 32), 0);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == x[j]);

    /* Q4_1 on x[j] = j mod 16: min 0, max 15, d = 1, q = x */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16);
    quant_block_q4_1 c4;
    assert_int_equal(quant_quantize_legacy(QT_Q4_1, x, &c4, 32), 0);
    assert_int_equal(c4.d, 0x3c00);
    assert_int_equal(c4.m, 0x0000);
    for (int j = 0; j < 16; j++)
        assert_int_equal(c4.qs[j], (uint8_t)(j | j << 4));

    /* Q5_1 on x[j] = j - 3: min -3, d = 31/31 = 1, q = j */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 3);
    quant_block_q5_1 c5;
    assert_int_equal(quant_quantize_legacy(QT_Q5_1, x, &c5, 32), 0);
    assert_int_equal(c5.d, 0x3c00);
    assert_int_equal(c5.m, 0xc200); /* -3 */
    assert_memory_equal(c5.qh, qh_want, 4);
    assert_int_equal(c5.qs[5], 0x55);
    assert_int_equal(quant_dequantize_legacy(QT_Q5_1, &c5, y, 32), 0);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == x[j]);
}

/* inf and NaN inputs quantize without undefined behaviour (UBSan's
 * float-cast-overflow watches this in the sanitizer build) and predictably. */
static void test_nonfinite(void **state)
{
    (void)state;
    float x[64];
    for (int j = 0; j < 64; j++)
        x[j] = (float)j * 0.1f - 3.0f;
    x[7] = NAN;
    x[40] = -INFINITY;
    uint8_t q[64 * 4];
    for (size_t t = 0; t < sizeof(tq_types) / sizeof(tq_types[0]); t++)
        assert_int_equal(quant_quantize_legacy(tq_types[t], x, q, 64), 0);
    /* Q8_0: NaN is ignored by the max and becomes 0; the inf block is all 0 */
    quant_block_q8_0 b[2];
    assert_int_equal(quant_quantize_legacy(QT_Q8_0, x, b, 64), 0);
    assert_int_equal(b[0].qs[7], 0);
    assert_int_equal(b[0].qs[0], -127); /* -3.0 is the block's max |x| */
    assert_int_equal(b[1].d, 0x7c00);
    for (int j = 0; j < 32; j++)
        assert_int_equal(b[1].qs[j], 0);
}

static void test_unsupported(void **state)
{
    (void)state;
    float x[256] = {0};
    uint8_t buf[512];
    assert_int_equal(quant_quantize_legacy(QT_Q4_K, x, buf, 256), CORE_EUNSUPPORTED);
    assert_int_equal(quant_dequantize_legacy(QT_Q6_K, buf, x, 256), CORE_EUNSUPPORTED);
    assert_int_equal(quant_dequantize_legacy(77, buf, x, 32), CORE_EUNSUPPORTED);
    assert_int_equal(quant_quantize_legacy(-1, x, buf, 32), CORE_EUNSUPPORTED);
    assert_int_equal(quant_quantize_legacy(QT_Q8_0, x, buf, 33), CORE_EINVAL);
}

/* ---- round trips -------------------------------------------------------- */


/* Largest allowed |x - deq(q(x))| for element j of a 32-block. */
static float tq_bound(int type, const float *blk, float xj)
{
    float mn = blk[0], mx = blk[0], amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        mn = fminf(mn, blk[j]);
        mx = fmaxf(mx, blk[j]);
        amax = fmaxf(amax, fabsf(blk[j]));
    }
    /* slack for the half-precision d and m: 2^-11 relative, and for tiny
     * blocks whose d is a subnormal half, 2^-25 absolute per unit of q */
    const float h = 0x1p-10f, sub = 0x1p-25f;
    switch (type) {
    case QT_F32: return 0.0f;
    case QT_F16: return fabsf(xj) * 0x1p-11f + 0x1p-25f;
    case QT_BF16: return fabsf(xj) * 0x1p-8f;
    case QT_Q4_0: return amax / 8.0f * (1.0f + h) + amax * h + 8 * sub; /* clamped end: one step */
    case QT_Q5_0: return amax / 16.0f * (1.0f + h) + amax * h + 16 * sub;
    case QT_Q4_1:
        return (mx - mn) / 15.0f * (0.5f + h) + (fabsf(mn) + fabsf(mx)) * h + 16 * sub;
    case QT_Q5_1:
        return (mx - mn) / 31.0f * (0.5f + h) + (fabsf(mn) + fabsf(mx)) * h + 32 * sub;
    default: return amax / 127.0f * (0.5f + h) + amax * h + 127 * sub; /* Q8_0, Q8_1 */
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    tq_fill(x, N);
    for (size_t t = 0; t < sizeof(tq_types) / sizeof(tq_types[0]); t++) {
        int type = tq_types[t];
        memset(y, 0, N * sizeof(float));
        assert_int_equal(quant_quantize_legacy(type, x, q, N), 0);
        assert_int_equal(quant_dequantize_legacy(type, q, y, N), 0);
        double err2 = 0, sig2 = 0;
        for (int i = 0; i < N; i++) {
            float b = tq_bound(type, x + i / 32 * 32, x[i]);
            if (!(fabsf(x[i] - y[i]) <= b))
                fail_msg("%s: x[%d] = %g -> %g, bound %g", quant_traits_of(type)->name, i,
                         (double)x[i], (double)y[i], (double)b);
            err2 += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sig2 += (double)x[i] * x[i];
        }
        /* and the overall error is where these formats put it: relative MSE
         * about 1.5x what this data gives (each extra bit quarters it) */
        double mse_max = 1.5e-4; /* Q8_0, Q8_1 */
        switch (type) {
        case QT_F32: mse_max = 0.0; break;
        case QT_F16: mse_max = 1e-7; break;
        case QT_BF16: mse_max = 5e-6; break;
        case QT_Q4_0: mse_max = 0.03; break;
        case QT_Q4_1: mse_max = 0.015; break;
        case QT_Q5_0: mse_max = 0.0075; break;
        case QT_Q5_1: mse_max = 0.0035; break;
        }
        if (!(err2 / sig2 <= mse_max))
            fail_msg("%s: relative MSE %g", quant_traits_of(type)->name, err2 / sig2);
        if (type == QT_Q8_1) { /* s = d * sum(q) */
            const quant_block_q8_1 *b = (const quant_block_q8_1 *)q;
            for (int i = 0; i < N / 32; i++) {
                int s = 0;
                for (int j = 0; j < 32; j++)
                    s += b[i].qs[j];
                float d = quant_f16_to_f32(b[i].d), sf = quant_f16_to_f32(b[i].s);
                /* d and s are halves: relative 2^-11 each, absolute 2^-24 when subnormal */
                assert_true(fabsf(sf - (float)s * d) <=
                            fabsf((float)s * d) * 2e-3f + (float)(abs(s) + 1) * 0x1p-24f);
            }
        }
    }
    free(x);
    free(y);
    free(q);
}

/* ---- products ------------------------------------------------------------ */

static const int tq_wtypes[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1,
                                QT_Q5_0, QT_Q5_1, QT_Q8_0};

typedef struct {
    int type, act;
    int64_t k, rows, nact;
    size_t w_stride, a_stride, y_stride;
    uint8_t *w, *a;
    float *wf, *af; /* dequantized copies, for the double reference */
} tq_prob;

/* Random weights and activations; the activation rows come from the scalar
 * converter so that every ISA multiplies the very same bytes. */
static void tq_prob_init(tq_prob *p, int type, int64_t k, int64_t rows, int64_t nact)
{
    const quant_kernels *ks = quant_kernels_for("scalar");
    p->type = type;
    p->act = quant_traits_of(type)->act_type;
    p->k = k;
    p->rows = rows;
    p->nact = nact;
    p->w_stride = quant_row_size(type, k) + 4 * (size_t)(rows & 1); /* odd strides too */
    p->a_stride = quant_row_size(p->act, k) + 8;
    p->y_stride = (size_t)rows + 3;
    p->w = malloc(p->w_stride * (size_t)rows);
    p->a = malloc(p->a_stride * (size_t)nact);
    p->wf = malloc(sizeof(float) * (size_t)(k * rows));
    p->af = malloc(sizeof(float) * (size_t)(k * nact));
    float *tmp = malloc(sizeof(float) * (size_t)k);
    assert_true(p->w && p->a && p->wf && p->af && tmp);
    for (int64_t r = 0; r < rows; r++) {
        tq_fill(tmp, k);
        assert_int_equal(quant_quantize_row(type, tmp, p->w + (size_t)r * p->w_stride, k), 0);
        assert_int_equal(quant_dequantize_row(type, p->w + (size_t)r * p->w_stride,
                                              p->wf + r * k, k), 0);
    }
    for (int64_t t = 0; t < nact; t++) {
        tq_fill(tmp, k);
        ks->act[p->act](tmp, p->a + (size_t)t * p->a_stride, k);
        assert_int_equal(quant_dequantize_row(p->act, p->a + (size_t)t * p->a_stride,
                                              p->af + t * k, k), 0);
    }
    free(tmp);
}

static void tq_prob_free(tq_prob *p)
{
    free(p->w);
    free(p->a);
    free(p->wf);
    free(p->af);
}

/* sum |w_i a_i| over the dequantized rows, plus for Q8_1 activations the
 * magnitude of the per-block min terms |m * sum(a)|: the scale of the
 * rounding error any summation order can make. */
static double tq_abs_dot(const tq_prob *p, int64_t r, int64_t a)
{
    double sa = 0;
    for (int64_t i = 0; i < p->k; i++)
        sa += fabs((double)p->wf[r * p->k + i] * p->af[a * p->k + i]);
    if (p->act == QT_Q8_1) {
        size_t bsz = quant_traits_of(p->type)->type_size;
        for (int64_t b = 0; b < p->k / 32; b++) {
            uint16_t mh;
            memcpy(&mh, p->w + (size_t)r * p->w_stride + (size_t)b * bsz + 2, 2);
            double sb = 0;
            for (int j = 0; j < 32; j++)
                sb += p->af[a * p->k + b * 32 + j];
            sa += fabs(quant_f16_to_f32(mh) * sb);
        }
    }
    return sa;
}

static float *tq_run(const quant_kernels *ks, const tq_prob *p)
{
    size_t ny = p->y_stride * (size_t)p->nact;
    float *y = malloc(ny * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < ny; i++)
        y[i] = -12345.0f; /* sentinel: the gaps of y_stride must stay untouched */
    ks->gemm[p->type](p->k, p->w, p->w_stride, p->rows, p->a, p->a_stride, p->nact, y,
                      p->y_stride);
    for (int64_t t = 0; t < p->nact; t++)
        for (size_t r = (size_t)p->rows; r < p->y_stride; r++)
            assert_true(y[(size_t)t * p->y_stride + r] == -12345.0f);
    return y;
}

/* The scalar kernels against a double-precision dot of the dequantized rows.
 * The two differ by float rounding, plus for Q4_1/Q5_1 by the half-precision
 * s = d*sum(q) the min term uses. */
static void test_scalar_vs_double(void **state)
{
    (void)state;
    const quant_kernels *ks = quant_kernels_for("scalar");
    assert_non_null(ks);
    const int64_t ks_[] = {32, 896};
    for (size_t t = 0; t < sizeof(tq_wtypes) / sizeof(tq_wtypes[0]); t++) {
        for (size_t kk = 0; kk < 2; kk++) {
            tq_prob p;
            tq_prob_init(&p, tq_wtypes[t], ks_[kk], 7, 3);
            float *y = tq_run(ks, &p);
            for (int64_t a = 0; a < p.nact; a++) {
                for (int64_t r = 0; r < p.rows; r++) {
                    double s = 0;
                    for (int64_t i = 0; i < p.k; i++)
                        s += (double)p.wf[r * p.k + i] * p.af[a * p.k + i];
                    /* half-precision s = d*sum(q) in the min term: 2^-11 relative */
                    double sa = tq_abs_dot(&p, r, a);
                    double got = y[a * p.y_stride + r];
                    double tol = sa * (double)(p.k + 8) * 0x1p-24 + (p.act == QT_Q8_1 ? sa * 0x1p-10 : 0) + 1e-30;
                    if (!(fabs(got - s) <= tol))
                        fail_msg("%s k=%lld [%lld,%lld]: %.9g vs %.9g (tol %g)",
                                 quant_traits_of(p.type)->name, (long long)p.k, (long long)a,
                                 (long long)r, got, s, tol);
                }
            }
            free(y);
            tq_prob_free(&p);
        }
    }
}

/* SIMD against scalar: the block integer dots are exact in both, so only the
 * order of the float additions differs. tol grows with the block count. */
static void tq_compare(const quant_kernels *kv, const tq_prob *p)
{
    const quant_kernels *ks = quant_kernels_for("scalar");
    float *ys = tq_run(ks, p), *yv = tq_run(kv, p);
    const int64_t nterm = p->type == QT_F32 || p->type == QT_F16 || p->type == QT_BF16
                              ? p->k : 2 * (p->k / 32);
    for (int64_t a = 0; a < p->nact; a++) {
        for (int64_t r = 0; r < p->rows; r++) {
            double sa = tq_abs_dot(p, r, a);
            double tol = sa * (double)(nterm + 8) * 0x1p-24 + 1e-30;
            double d = fabs((double)ys[a * p->y_stride + r] - yv[a * p->y_stride + r]);
            if (!(d <= tol))
                fail_msg("%s %s k=%lld rows=%lld nact=%lld [%lld,%lld]: %.9g vs scalar %.9g",
                         kv->isa, quant_traits_of(p->type)->name, (long long)p->k,
                         (long long)p->rows, (long long)p->nact, (long long)a, (long long)r,
                         (double)yv[a * p->y_stride + r], (double)ys[a * p->y_stride + r]);
        }
    }
    free(ys);
    free(yv);
}

static void tq_gemm_isa(const char *isa)
{
    const quant_kernels *kv = quant_kernels_for(isa);
    if (!kv) {
        print_message("SKIP: no %s on this CPU (or build)\n", isa);
        skip();
    }
    const int64_t kvals[] = {32, 256, 896, 4864};
    /* avx2: 8+ and 16+ rows take the panel kernels, 70 spans two activation
     * chunks; avx512: 8+ rows take the panels (tiles of 8 activation rows:
     * 9, 11, 70 and 130 end in partial ones), 130 spans two chunks */
    const int64_t nacts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 16, 64, 70, 130};
    const int64_t rows_big[] = {1, 4, 5, 16, 37};
    int cases = 0;
    for (size_t t = 0; t < sizeof(tq_wtypes) / sizeof(tq_wtypes[0]); t++) {
        for (size_t kk = 0; kk < 4; kk++) {
            int64_t k = kvals[kk];
            /* every row count for short rows; a spread of them for long ones */
            int nrows = k <= 256 ? 37 : 5;
            for (int ri = 0; ri < nrows; ri++) {
                int64_t rows = k <= 256 ? ri + 1 : rows_big[ri];
                for (size_t ai = 0; ai < sizeof(nacts) / sizeof(nacts[0]); ai++) {
                    int64_t nact = nacts[ai];
                    if ((k > 256 && nact >= 70) || (k == 4864 && nact == 64 && rows > 16))
                        continue; /* keeps the scalar reference fast */
                    tq_prob p;
                    tq_prob_init(&p, tq_wtypes[t], k, rows, nact);
                    tq_compare(kv, &p);
                    tq_prob_free(&p);
                    cases++;
                }
            }
        }
    }
    print_message("%s: compared %d shapes\n", isa, cases);
}

static void test_avx2_gemm(void **state)
{
    (void)state;
    tq_gemm_isa("avx2");
}

static void test_avx512_gemm(void **state)
{
    (void)state;
    tq_gemm_isa("avx512");
}

/* The SIMD activation converters write the very bytes the scalar ones do. */
static void tq_act_isa(const char *isa)
{
    const quant_kernels *kv = quant_kernels_for(isa);
    const quant_kernels *ks = quant_kernels_for("scalar");
    if (!kv) {
        print_message("SKIP: no %s on this CPU (or build)\n", isa);
        skip();
    }
    enum { N = 32 * 512 };
    float *x = malloc(N * sizeof(float));
    uint8_t *qa = malloc(N * 4), *qb = malloc(N * 4);
    assert_true(x && qa && qb);
    tq_fill(x, N);
    /* blocks with exact .5 ties (amax 127 -> d = 1) and all-zero blocks */
    for (int j = 0; j < 32; j++) {
        x[j] = (float)(j - 16) + 0.5f;
        x[32 + j] = 0.0f;
        x[64 + j] = -(float)j * 0.25f;
    }
    x[0] = 127.0f;
    x[64 + 31] = -127.0f;
    x[96 + 3] = NAN;       /* a diverged activation: NaN is skipped, q = 0 */
    x[128 + 5] = INFINITY; /* d = inf, every q = 0 */
    const int acts[] = {QT_F32, QT_Q8_0, QT_Q8_1};
    for (int i = 0; i < 3; i++) {
        size_t sz = quant_row_size(acts[i], N);
        memset(qa, 0x55, sz);
        memset(qb, 0xaa, sz);
        ks->act[acts[i]](x, qa, N);
        kv->act[acts[i]](x, qb, N);
        assert_memory_equal(qa, qb, sz);
    }
    free(x);
    free(qa);
    free(qb);
}

static void test_avx2_act(void **state)
{
    (void)state;
    tq_act_isa("avx2");
}

static void test_avx512_act(void **state)
{
    (void)state;
    tq_act_isa("avx512");
}

static void test_tables_complete(void **state)
{
    (void)state;
    const char *isas[] = {"scalar", "avx2", "avx512", NULL};
    for (int i = 0; i < 4; i++) {
        const quant_kernels *k = quant_kernels_for(isas[i]);
        if (!k)
            continue;
        for (size_t t = 0; t < sizeof(tq_wtypes) / sizeof(tq_wtypes[0]); t++) {
            assert_non_null(k->gemm[tq_wtypes[t]]);
            assert_non_null(k->act[quant_traits_of(tq_wtypes[t])->act_type]);
        }
        assert_null(k->act[QT_Q4_0]);
    }
    assert_null(quant_kernels_for("neon-not-here"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_edges),
        cmocka_unit_test(test_bf16_edges),
        cmocka_unit_test(test_q8_0_hand),
        cmocka_unit_test(test_q4_q5_hand),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_scalar_vs_double),
        cmocka_unit_test(test_tables_complete),
        cmocka_unit_test(test_avx2_act),
        cmocka_unit_test(test_avx2_gemm),
        cmocka_unit_test(test_avx512_act),
        cmocka_unit_test(test_avx512_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
