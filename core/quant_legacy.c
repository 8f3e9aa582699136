/* quant_legacy.c: reference (portable, scalar) code for the "legacy" element
 * types F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1.
 *
 * Block formats (ggml's, see quant.h; 32 elements per quantized block):
 *   Q4_0  d:f16, qs[16]          x[j] = (lo nibble qs[j] - 8)*d, x[j+16] = hi nibble
 *   Q4_1  d,m:f16, qs[16]        x = q*d + m, nibbles as Q4_0
 *   Q5_0  d:f16, qh:u32, qs[16]  bit 4 of x[j] is bit j of qh; x = (q-16)*d
 *   Q5_1  d,m:f16, qh, qs[16]    x = q*d + m
 *   Q8_0  d:f16, qs:i8[32]       x = q*d
 *   Q8_1  d,s:f16, qs:i8[32]     x = q*d, s = d*sum(qs)
 *
 * The quantizers reproduce ggml's quantize_row_*_ref bit for bit, and the
 * scalar products below are the numeric reference the SIMD kernels are tested
 * against: integer dot per block, then scaled by d_w*d_a in float.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core_err.h"
#include "quant.h"
#include "quant_impl.h"

static uint32_t quant_lg_qh(const uint8_t qh[4])
{
    uint32_t v;
    memcpy(&v, qh, 4); /* little endian, as in the file */
    return v;
}

/* ---- block unpacking: the integer q of each element ------------------ */

/* The qh word of a 5-bit block (bit j: bit 4 of element j); 0 otherwise. */
static inline uint32_t quant_lg_blk_qh(int type, const uint8_t *blk)
{
    if (type == QT_Q5_0)
        return quant_lg_qh(blk + 2);
    if (type == QT_Q5_1)
        return quant_lg_qh(blk + 4);
    return 0;
}

/* Elements j and j+16 (j < 16) of a weight block as integers q such that
 * x = q*d (+ m for the _1 types). Nibble j holds element j (low) and j+16
 * (high); h is the block's qh shifted right by j. Computed in registers:
 * unpacking to a byte array first makes the vector loads that follow wait
 * for the narrow stores, and variable shifts made gcc spill. */
static inline void quant_lg_pair(int type, const uint8_t *blk, int j, uint32_t h, int *lo,
                                 int *hi)
{
    switch (type) {
    case QT_Q4_0:
        *lo = (blk[2 + j] & 0x0f) - 8;
        *hi = (blk[2 + j] >> 4) - 8;
        break;
    case QT_Q4_1:
        *lo = blk[4 + j] & 0x0f;
        *hi = blk[4 + j] >> 4;
        break;
    case QT_Q5_0:
        *lo = ((blk[6 + j] & 0x0f) | (int)(h << 4 & 0x10)) - 16;
        *hi = ((blk[6 + j] >> 4) | (int)(h >> 12 & 0x10)) - 16;
        break;
    case QT_Q5_1:
        *lo = (blk[8 + j] & 0x0f) | (int)(h << 4 & 0x10);
        *hi = (blk[8 + j] >> 4) | (int)(h >> 12 & 0x10);
        break;
    case QT_Q8_0:
        *lo = (int8_t)blk[2 + j];
        *hi = (int8_t)blk[2 + 16 + j];
        break;
    default: /* QT_Q8_1 */
        *lo = (int8_t)blk[4 + j];
        *hi = (int8_t)blk[4 + 16 + j];
        break;
    }
}

/* ---- dequantization ---------------------------------------------------- */

/* Every legacy block starts with its half d; the _1 weight types follow it
 * with the half m (for Q8_1 that field is s, which dequantization ignores). */
static void quant_lg_deq_blocks(int type, const void *src, float *y, int64_t nb)
{
    const size_t bsz = quant_traits_of(type)->type_size;
    const int has_m = type == QT_Q4_1 || type == QT_Q5_1;
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const uint8_t *blk = (const uint8_t *)src + (size_t)b * bsz;
        uint16_t dh, mh = 0;
        memcpy(&dh, blk, 2);
        if (has_m)
            memcpy(&mh, blk + 2, 2);
        const float d = quant_f16_to_f32(dh), m = quant_f16_to_f32(mh);
        uint32_t h = quant_lg_blk_qh(type, blk);
        for (int j = 0; j < 16; j++, h >>= 1) {
            int lo, hi;
            quant_lg_pair(type, blk, j, h, &lo, &hi);
            y[j] = has_m ? (float)lo * d + m : (float)lo * d;
            y[j + 16] = has_m ? (float)hi * d + m : (float)hi * d;
        }
    }
}

/* ---- quantization ------------------------------------------------------ */

/* (int)v as C truncates it, kept in [lo, hi], NaN -> 0: the same q as
 * ggml's plain casts for every finite input, and no undefined behaviour for
 * inf/NaN inputs (a diverged activation must not crash the process). */
static inline int quant_lg_trunc(float v, int lo, int hi)
{
    if (!(v == v))
        return 0;
    if (v <= (float)lo)
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

/* Signed value of the element with the largest magnitude (first one wins). */
static float quant_lg_absmax_signed(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void quant_lg_minmax(const float *x, int n, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    *mn = lo;
    *mx = hi;
}

static void quant_lg_q_q4_0(const float *x, quant_block_q4_0 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK4_0) {
        float d = quant_lg_absmax_signed(x, QK4_0) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = quant_lg_trunc(x[j] * id + 8.5f, 0, 127);
            int q1 = quant_lg_trunc(x[j + QK4_0 / 2] * id + 8.5f, 0, 127);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void quant_lg_q_q4_1(const float *x, quant_block_q4_1 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK4_1) {
        float mn, mx;
        quant_lg_minmax(x, QK4_1, &mn, &mx);
        float d = (mx - mn) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_f16(d);
        y[b].m = quant_f32_to_f16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = quant_lg_trunc((x[j] - mn) * id + 0.5f, 0, 127);
            int q1 = quant_lg_trunc((x[j + QK4_1 / 2] - mn) * id + 0.5f, 0, 127);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void quant_lg_q_q5_0(const float *x, quant_block_q5_0 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK5_0) {
        float d = quant_lg_absmax_signed(x, QK5_0) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[b].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = quant_lg_trunc(x[j] * id + 16.5f, 0, 127);
            int q1 = quant_lg_trunc(x[j + QK5_0 / 2] * id + 16.5f, 0, 127);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            y[b].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        memcpy(y[b].qh, &qh, 4);
    }
}

static void quant_lg_q_q5_1(const float *x, quant_block_q5_1 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK5_1) {
        float mn, mx;
        quant_lg_minmax(x, QK5_1, &mn, &mx);
        float d = (mx - mn) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        y[b].d = quant_f32_to_f16(d);
        y[b].m = quant_f32_to_f16(mn);
        for (int j = 0; j < QK5_1 / 2; j++) {
            /* ggml does not clamp here: (x-min)*id + 0.5 stays below 31.5 */
            int q0 = quant_lg_trunc((x[j] - mn) * id + 0.5f, 0, 255);
            int q1 = quant_lg_trunc((x[j + QK5_1 / 2] - mn) * id + 0.5f, 0, 255);
            y[b].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10) >> 4) << (j + QK5_1 / 2);
        }
        memcpy(y[b].qh, &qh, 4);
    }
}

static float quant_lg_absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    return amax;
}

static void quant_lg_q_q8_0(const float *x, quant_block_q8_0 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK8_0) {
        float d = quant_lg_absmax(x, QK8_0) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            y[b].qs[j] = (int8_t)quant_lg_trunc(roundf(x[j] * id), -128, 127);
    }
}

static void quant_lg_q_q8_1(const float *x, quant_block_q8_1 *y, int64_t nb)
{
    for (int64_t b = 0; b < nb; b++, x += QK8_1) {
        float d = quant_lg_absmax(x, QK8_1) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        y[b].d = quant_f32_to_f16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[b].qs[j] = (int8_t)quant_lg_trunc(roundf(x[j] * id), -128, 127);
            sum += y[b].qs[j];
        }
        y[b].s = quant_f32_to_f16((float)sum * d);
    }
}

/* ---- public entry points (via quant.c) ---------------------------------- */

static int quant_lg_check(int type, int64_t n)
{
    const quant_traits *t = quant_traits_of(type);
    if (!t || n < 0 || n % t->blck)
        return CORE_EINVAL;
    return 0;
}

int quant_dequantize_legacy(int type, const void *src, float *dst, int64_t n)
{
    switch (type) {
    case QT_F32: case QT_F16: case QT_BF16: case QT_Q4_0: case QT_Q4_1:
    case QT_Q5_0: case QT_Q5_1: case QT_Q8_0: case QT_Q8_1:
        break;
    default:
        return CORE_EUNSUPPORTED;
    }
    if (quant_lg_check(type, n))
        return CORE_EINVAL;
    int64_t nb = n / 32;
    switch (type) {
    case QT_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case QT_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = quant_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = quant_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    default:
        quant_lg_deq_blocks(type, src, dst, nb);
        break;
    }
    return 0;
}

int quant_quantize_legacy(int type, const float *src, void *dst, int64_t n)
{
    switch (type) {
    case QT_F32: case QT_F16: case QT_BF16: case QT_Q4_0: case QT_Q4_1:
    case QT_Q5_0: case QT_Q5_1: case QT_Q8_0: case QT_Q8_1:
        break;
    default:
        return CORE_EUNSUPPORTED;
    }
    if (quant_lg_check(type, n))
        return CORE_EINVAL;
    int64_t nb = n / 32;
    switch (type) {
    case QT_F32:
        memmove(dst, src, (size_t)n * sizeof(float));
        break;
    case QT_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = quant_f32_to_f16(src[i]);
        break;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = quant_f32_to_bf16(src[i]);
        break;
    case QT_Q4_0: quant_lg_q_q4_0(src, dst, nb); break;
    case QT_Q4_1: quant_lg_q_q4_1(src, dst, nb); break;
    case QT_Q5_0: quant_lg_q_q5_0(src, dst, nb); break;
    case QT_Q5_1: quant_lg_q_q5_1(src, dst, nb); break;
    case QT_Q8_0: quant_lg_q_q8_0(src, dst, nb); break;
    case QT_Q8_1: quant_lg_q_q8_1(src, dst, nb); break;
    }
    return 0;
}

/* ---- scalar dot products: one weight row . one activation row ---------- */

static float quant_lg_dot_f32(int64_t k, const void *w, const void *a)
{
    const float *x = w, *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++)
        s += x[i] * y[i];
    return s;
}

static float quant_lg_dot_f16(int64_t k, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++)
        s += quant_f16_to_f32(x[i]) * y[i];
    return s;
}

static float quant_lg_dot_bf16(int64_t k, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < k; i++)
        s += quant_bf16_to_f32(x[i]) * y[i];
    return s;
}

/* Quantized weights . Q8_0 or Q8_1 activations: exact integer dot per block,
 * scaled by d_w*d_a; the _1 types add m_w*s_a (s_a = d_a*sum(q_a)). */
static inline float quant_lg_dot_q(int type, int64_t k, const void *w, const void *a)
{
    const size_t bsz = quant_traits_of(type)->type_size;
    const int has_m = type == QT_Q4_1 || type == QT_Q5_1;
    const size_t absz = has_m ? sizeof(quant_block_q8_1) : sizeof(quant_block_q8_0);
    float s = 0.0f;
    for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *wb = (const uint8_t *)w + (size_t)b * bsz;
        const uint8_t *ab = (const uint8_t *)a + (size_t)b * absz;
        const int8_t *qa = (const int8_t *)ab + (has_m ? 4 : 2);
        int sumi = 0;
        uint32_t h = quant_lg_blk_qh(type, wb);
        for (int j = 0; j < 16; j++, h >>= 1) {
            int lo, hi;
            quant_lg_pair(type, wb, j, h, &lo, &hi);
            sumi += lo * qa[j] + hi * qa[j + 16];
        }
        uint16_t dw, da;
        memcpy(&dw, wb, 2);
        memcpy(&da, ab, 2);
        s += (float)sumi * (quant_f16_to_f32(dw) * quant_f16_to_f32(da));
        if (has_m) {
            uint16_t mw, sa;
            memcpy(&mw, wb + 2, 2);
            memcpy(&sa, ab + 2, 2);
            s += quant_f16_to_f32(mw) * quant_f16_to_f32(sa);
        }
    }
    return s;
}

#define QUANT_LG_DOT(name, T)                                                    \
    static float quant_lg_dot_##name(int64_t k, const void *w, const void *a)   \
    {                                                                            \
        return quant_lg_dot_q(T, k, w, a);                                       \
    }
QUANT_LG_DOT(q4_0, QT_Q4_0)
QUANT_LG_DOT(q4_1, QT_Q4_1)
QUANT_LG_DOT(q5_0, QT_Q5_0)
QUANT_LG_DOT(q5_1, QT_Q5_1)
QUANT_LG_DOT(q8_0, QT_Q8_0)

typedef float (*quant_lg_dot_fn)(int64_t k, const void *w, const void *a);

static inline void quant_lg_gemm(quant_lg_dot_fn dot, int64_t k, const void *w, size_t w_stride,
                                 int64_t n_rows, const void *a, size_t a_stride, int64_t n_act,
                                 float *y, size_t y_stride)
{
    for (int64_t t = 0; t < n_act; t++) {
        const char *at = (const char *)a + (size_t)t * a_stride;
        for (int64_t r = 0; r < n_rows; r++)
            y[(size_t)t * y_stride + (size_t)r] =
                dot(k, (const char *)w + (size_t)r * w_stride, at);
    }
}

#define QUANT_LG_GEMM(name)                                                                  \
    static void quant_lg_gemm_##name(int64_t k, const void *w, size_t w_stride,             \
                                     int64_t n_rows, const void *a, size_t a_stride,        \
                                     int64_t n_act, float *y, size_t y_stride)              \
    {                                                                                       \
        quant_lg_gemm(quant_lg_dot_##name, k, w, w_stride, n_rows, a, a_stride, n_act, y,   \
                      y_stride);                                                            \
    }
QUANT_LG_GEMM(f32)
QUANT_LG_GEMM(f16)
QUANT_LG_GEMM(bf16)
QUANT_LG_GEMM(q4_0)
QUANT_LG_GEMM(q4_1)
QUANT_LG_GEMM(q5_0)
QUANT_LG_GEMM(q5_1)
QUANT_LG_GEMM(q8_0)

static void quant_lg_act_f32(const float *x, void *y, int64_t n)
{
    memmove(y, x, (size_t)n * sizeof(float));
}

static void quant_lg_act_q8_0(const float *x, void *y, int64_t n)
{
    quant_lg_q_q8_0(x, y, n / QK8_0);
}

static void quant_lg_act_q8_1(const float *x, void *y, int64_t n)
{
    quant_lg_q_q8_1(x, y, n / QK8_1);
}

void quant_fill_scalar_legacy(quant_kernels *k)
{
    k->gemm[QT_F32] = quant_lg_gemm_f32;
    k->gemm[QT_F16] = quant_lg_gemm_f16;
    k->gemm[QT_BF16] = quant_lg_gemm_bf16;
    k->gemm[QT_Q4_0] = quant_lg_gemm_q4_0;
    k->gemm[QT_Q4_1] = quant_lg_gemm_q4_1;
    k->gemm[QT_Q5_0] = quant_lg_gemm_q5_0;
    k->gemm[QT_Q5_1] = quant_lg_gemm_q5_1;
    k->gemm[QT_Q8_0] = quant_lg_gemm_q8_0;
    k->act[QT_F32] = quant_lg_act_f32;
    k->act[QT_Q8_0] = quant_lg_act_q8_0;
    k->act[QT_Q8_1] = quant_lg_act_q8_1;
}
