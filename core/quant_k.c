/* quant_k.c: the K-quant family (Q4_K, Q5_K, Q6_K, with Q8_K activations):
 * reference conversions and the scalar kernels, in portable C.
 *
 * Block formats (ggml's, 256 elements per super-block, see quant.h):
 *   Q4_K  x = d*sc[j]*q - dmin*m[j], q in [0,15]; 8 sub-blocks of 32 with
 *         6-bit (sc, m) packed into 12 bytes (qk_scale_min below). qs holds
 *         64 elements per 32 bytes: low nibbles are sub-block 2p, high
 *         nibbles sub-block 2p+1.
 *   Q5_K  as Q4_K with q in [0,31]; bit 4 of element 32*j+l is bit j of qh[l].
 *   Q6_K  x = d*sc[g]*(q-32), q in [0,63], 16 sub-blocks of 16, int8 scales.
 *         Per half of 128: element 32*i+l takes the low (i=0,1) or high
 *         (i=2,3) nibble of ql[l + 32*(i&1)] and bits 2i..2i+1 of qh[l].
 *   Q8_K  x = d*q, q in [-127,127], float d, bsums[g] = sum of q over the
 *         16 elements of group g.
 *
 * The scalar kernels are the reference the SIMD ones are tested against:
 * integer sums per sub-block times the integer scales, the min (or the -32
 * offset) through the activation's bsums, then times the float scales.
 */
#include <math.h>
#include <string.h>

#include "core_err.h"
#include "quant.h"
#include "quant_impl.h"

/* Round to nearest even (as ggml's nearest_int) after clamping to [lo, hi],
 * so that NaN or huge inputs never reach the conversion. Adding 1.5 * 2^23
 * leaves the rounded integer in the low mantissa bits (|v| < 2^22); unlike
 * lrintf this needs no libm call. */
static inline int qk_round(float v, int lo, int hi)
{
    if (!(v >= (float)lo)) /* also NaN */
        v = (float)lo;
    if (v > (float)hi)
        v = (float)hi;
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- block unpacking, shared by dequantization and the dot products ---- */

/* The 12 scale bytes hold 8 (scale, min) pairs of 6 bits: pairs 0..3 in the
 * low 6 bits of bytes 0..3 (scale) and 4..7 (min); pairs 4..7 keep their low
 * 4 bits in the nibbles of bytes 8..11 and their top 2 bits in the top bits
 * of bytes 0..3 (scale) and 4..7 (min). */
static void qk_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void qk_pack_scale_min(uint8_t *q, const uint8_t *sc, const uint8_t *m)
{
    memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = sc[j];
            q[j + 4] = m[j];
        } else {
            q[j + 4] = (uint8_t)((sc[j] & 0xF) | ((m[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            q[j] |= (uint8_t)((m[j] >> 4) << 6);
        }
    }
}

/* q: 256 values in [0, 15] or [0, 31]; sc, m: 8 sub-block scales and mins. */
static void qk_unpack_q4_K(const quant_block_q4_K *b, uint8_t *q, int *sc, int *m)
{
    for (int j = 0; j < 8; j++)
        qk_scale_min(b->scales, j, &sc[j], &m[j]);
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) {
            q[64 * p + l] = b->qs[32 * p + l] & 0xF;
            q[64 * p + 32 + l] = b->qs[32 * p + l] >> 4;
        }
}

static void qk_unpack_q5_K(const quant_block_q5_K *b, uint8_t *q, int *sc, int *m)
{
    for (int j = 0; j < 8; j++)
        qk_scale_min(b->scales, j, &sc[j], &m[j]);
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) {
            int lo = 2 * p, hi = 2 * p + 1;
            q[64 * p + l] = (uint8_t)((b->qs[32 * p + l] & 0xF) | (((b->qh[l] >> lo) & 1) << 4));
            q[64 * p + 32 + l] = (uint8_t)((b->qs[32 * p + l] >> 4) | (((b->qh[l] >> hi) & 1) << 4));
        }
}

/* q: 256 values in [-32, 31]. */
static void qk_unpack_q6_K(const quant_block_q6_K *b, int8_t *q)
{
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* ---- dequantization ---- */

int quant_dequantize_k(int type, const void *src, float *dst, int64_t n)
{
    if (type != QT_Q4_K && type != QT_Q5_K && type != QT_Q6_K && type != QT_Q8_K)
        return CORE_EUNSUPPORTED;
    if (n < 0 || n % QK_K)
        return CORE_EINVAL;
    int64_t nb = n / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        float *y = dst + i * QK_K;
        uint8_t q[QK_K];
        int sc[8], m[8];
        if (type == QT_Q4_K || type == QT_Q5_K) {
            float d, dmin;
            if (type == QT_Q4_K) {
                const quant_block_q4_K *b = (const quant_block_q4_K *)src + i;
                qk_unpack_q4_K(b, q, sc, m);
                d = quant_f16_to_f32(b->d);
                dmin = quant_f16_to_f32(b->dmin);
            } else {
                const quant_block_q5_K *b = (const quant_block_q5_K *)src + i;
                qk_unpack_q5_K(b, q, sc, m);
                d = quant_f16_to_f32(b->d);
                dmin = quant_f16_to_f32(b->dmin);
            }
            for (int j = 0; j < 8; j++) {
                float dj = d * (float)sc[j], mj = dmin * (float)m[j];
                for (int l = 0; l < 32; l++)
                    y[32 * j + l] = dj * (float)q[32 * j + l] - mj;
            }
        } else if (type == QT_Q6_K) {
            const quant_block_q6_K *b = (const quant_block_q6_K *)src + i;
            int8_t q6[QK_K];
            qk_unpack_q6_K(b, q6);
            float d = quant_f16_to_f32(b->d);
            for (int g = 0; g < 16; g++) {
                float dg = d * (float)b->scales[g];
                for (int l = 0; l < 16; l++)
                    y[16 * g + l] = dg * (float)q6[16 * g + l];
            }
        } else {
            const quant_block_q8_K *b = (const quant_block_q8_K *)src + i;
            for (int l = 0; l < QK_K; l++)
                y[l] = b->d * (float)b->qs[l];
        }
    }
    return 0;
}

/* ---- quantization ---- */

/* Q8_K, exactly as ggml's quantize_row_q8_K_ref: the element of largest
 * magnitude maps to -127 (so d = -max/127 may be negative). */
static void qk_quantize_q8_K(const float *x, quant_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0, max = 0;
        for (int l = 0; l < QK_K; l++) {
            float ax = fabsf(x[l]);
            if (ax > amax) {
                amax = ax;
                max = x[l];
            }
        }
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -127.f / max;
        for (int l = 0; l < QK_K; l++)
            y[i].qs[l] = (int8_t)qk_round(iscale * x[l], -127, 127);
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

/* Weighted least squares fit of x[i] ~ s*q[i] - m, q in [0, nmax], m >= 0.
 * Tries the plain min/max grid and nstep grids around it (scale stretched
 * by +-k*0.1 levels), refits s and m for each assignment, keeps the best. */
static float qk_fit_affine(int n, int nmax, const float *x, const float *w, float *m_out)
{
    float xmin = x[0], xmax = x[0];
    for (int i = 1; i < n; i++) {
        xmin = fminf(xmin, x[i]);
        xmax = fmaxf(xmax, x[i]);
    }
    if (xmin > 0)
        xmin = 0;
    if (!(xmax > xmin)) { /* constant (non-positive) or NaN sub-block */
        *m_out = isfinite(xmin) ? -xmin : 0;
        return 0;
    }
    double sw = 0, sx = 0, sx2 = 0;
    for (int i = 0; i < n; i++) {
        sw += w[i];
        sx += (double)w[i] * x[i];
        sx2 += (double)w[i] * x[i] * x[i];
    }
    float best_s = (xmax - xmin) / (float)nmax, best_mn = xmin;
    double best_err = INFINITY;
    const int nstep = 12;
    for (int k = -nstep; k <= nstep; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / (xmax - xmin);
        double sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = qk_round(iscale * (x[i] - xmin), 0, nmax);
            sl += (double)w[i] * l;
            sl2 += (double)w[i] * l * l;
            sxl += (double)w[i] * x[i] * l;
        }
        double det = sw * sl2 - sl * sl, s, mn;
        if (det > 0) {
            s = (sw * sxl - sx * sl) / det;
            mn = (sl2 * sx - sl * sxl) / det;
            if (mn > 0) { /* the format cannot add: refit through zero */
                mn = 0;
                s = sl2 > 0 ? sxl / sl2 : 0;
            }
        } else {
            s = 1 / iscale;
            mn = xmin;
        }
        if (!(s > 0))
            continue;
        /* sum of w*(s*l + mn - x)^2, expanded over the sums above */
        double err = s * s * sl2 + mn * mn * sw + sx2 + 2 * s * mn * sl - 2 * s * sxl - 2 * mn * sx;
        if (err < best_err) {
            best_err = err;
            best_s = (float)s;
            best_mn = (float)mn;
        }
    }
    *m_out = -best_mn;
    return best_s;
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills d, dmin, the packed
 * scales and q[256] (values in [0, nmax]). */
static void qk_quantize_affine_block(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                                     uint8_t *scales, uint8_t *q)
{
    float w[32], sc[8], mn[8], max_sc = 0, max_mn = 0, sum_x2 = 0;
    for (int l = 0; l < QK_K; l++)
        sum_x2 += x[l] * x[l];
    float av_x = sqrtf(sum_x2 / QK_K);
    if (!isfinite(av_x))
        av_x = 0;
    for (int j = 0; j < 8; j++) {
        /* weight large values more: they dominate the dot products */
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        sc[j] = qk_fit_affine(32, nmax, x + 32 * j, w, &mn[j]);
        if (!isfinite(sc[j]))
            sc[j] = 0;
        if (!isfinite(mn[j]))
            mn[j] = 0;
        max_sc = fmaxf(max_sc, sc[j]);
        max_mn = fmaxf(max_mn, mn[j]);
    }
    float inv_sc = max_sc > 0 ? 63.f / max_sc : 0, inv_mn = max_mn > 0 ? 63.f / max_mn : 0;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)qk_round(inv_sc * sc[j], 0, 63);
        lm[j] = (uint8_t)qk_round(inv_mn * mn[j], 0, 63);
    }
    qk_pack_scale_min(scales, ls, lm);
    *d_out = quant_f32_to_f16(max_sc / 63.f);
    *dmin_out = quant_f32_to_f16(max_mn / 63.f);
    /* Requantize against the scales as stored (6-bit, half precision). */
    float d = quant_f16_to_f32(*d_out), dmin = quant_f16_to_f32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        float dj = d * (float)ls[j], mj = dmin * (float)lm[j];
        for (int l = 0; l < 32; l++)
            q[32 * j + l] = dj > 0 ? (uint8_t)qk_round((x[32 * j + l] + mj) / dj, 0, nmax) : 0;
    }
}

static void qk_quantize_q4_K(const float *x, quant_block_q4_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t q[QK_K];
        qk_quantize_affine_block(x, 15, &y[i].d, &y[i].dmin, y[i].scales, q);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * p + l] = (uint8_t)(q[64 * p + l] | (q[64 * p + 32 + l] << 4));
    }
}

static void qk_quantize_q5_K(const float *x, quant_block_q5_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        uint8_t q[QK_K];
        qk_quantize_affine_block(x, 31, &y[i].d, &y[i].dmin, y[i].scales, q);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                uint8_t lo = q[64 * p + l], hi = q[64 * p + 32 + l];
                y[i].qs[32 * p + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * p)) | ((hi >> 4) << (2 * p + 1)));
            }
    }
}

/* Symmetric weighted fit of x[i] ~ s*q[i], q in [-32, 31]; returns s (its
 * sign follows the element of largest magnitude, which maps to -32). */
static float qk_fit_symmetric(int n, const float *x)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (!(amax > 0) || !isfinite(amax))
        return 0;
    float best_s = -max / 32.f, best_score = -1;
    for (int k = -9; k <= 9; k++) {
        float iscale = -(32.f + 0.1f * (float)k) / max, sxl = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            int l = qk_round(iscale * x[i], -32, 31);
            sxl += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
        }
        /* the least squares s = sxl/sl2 leaves error sum(w x^2) - sxl^2/sl2 */
        if (sl2 > 0 && sxl * sxl / sl2 > best_score) {
            best_score = sxl * sxl / sl2;
            best_s = sxl / sl2;
        }
    }
    return best_s;
}

static void qk_quantize_q6_K(const float *x, quant_block_q6_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float sc[16], max_sc = 0, amax_sc = 0;
        for (int g = 0; g < 16; g++) {
            sc[g] = qk_fit_symmetric(16, x + 16 * g);
            if (fabsf(sc[g]) > amax_sc) {
                amax_sc = fabsf(sc[g]);
                max_sc = sc[g];
            }
        }
        uint8_t q[QK_K];
        if (amax_sc == 0) {
            memset(&y[i], 0, sizeof y[i]);
            memset(q, 32, sizeof q);
        } else {
            float iscale = -128.f / max_sc;
            y[i].d = quant_f32_to_f16(1 / iscale);
            float d = quant_f16_to_f32(y[i].d);
            for (int g = 0; g < 16; g++) {
                y[i].scales[g] = (int8_t)qk_round(iscale * sc[g], -128, 127);
                float dg = d * (float)y[i].scales[g];
                for (int l = 0; l < 16; l++)
                    q[16 * g + l] = (uint8_t)(dg != 0 ? qk_round(x[16 * g + l] / dg, -32, 31) + 32 : 32);
            }
        }
        for (int h = 0; h < 2; h++) {
            const uint8_t *qq = q + 128 * h;
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                                  ((qq[l + 96] >> 4) << 6));
            }
        }
    }
}

int quant_quantize_k(int type, const float *src, void *dst, int64_t n)
{
    if (type != QT_Q4_K && type != QT_Q5_K && type != QT_Q6_K && type != QT_Q8_K)
        return CORE_EUNSUPPORTED;
    if (n < 0 || n % QK_K)
        return CORE_EINVAL;
    int64_t nb = n / QK_K;
    switch (type) {
    case QT_Q4_K: qk_quantize_q4_K(src, dst, nb); break;
    case QT_Q5_K: qk_quantize_q5_K(src, dst, nb); break;
    case QT_Q6_K: qk_quantize_q6_K(src, dst, nb); break;
    default: qk_quantize_q8_K(src, dst, nb); break;
    }
    return 0;
}

/* ---- scalar kernels ---- */

static float qk_dot_q4_K(const void *wv, const quant_block_q8_K *a, int64_t nb)
{
    const quant_block_q4_K *w = wv;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t q[QK_K];
        int sc[8], m[8], sumi = 0, summ = 0;
        qk_unpack_q4_K(&w[i], q, sc, m);
        for (int j = 0; j < 8; j++) {
            int s = 0;
            for (int l = 0; l < 32; l++)
                s += q[32 * j + l] * a[i].qs[32 * j + l];
            sumi += sc[j] * s;
            summ += m[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        sum += a[i].d * quant_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * quant_f16_to_f32(w[i].dmin) * (float)summ;
    }
    return sum;
}

static float qk_dot_q5_K(const void *wv, const quant_block_q8_K *a, int64_t nb)
{
    const quant_block_q5_K *w = wv;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t q[QK_K];
        int sc[8], m[8], sumi = 0, summ = 0;
        qk_unpack_q5_K(&w[i], q, sc, m);
        for (int j = 0; j < 8; j++) {
            int s = 0;
            for (int l = 0; l < 32; l++)
                s += q[32 * j + l] * a[i].qs[32 * j + l];
            sumi += sc[j] * s;
            summ += m[j] * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
        }
        sum += a[i].d * quant_f16_to_f32(w[i].d) * (float)sumi -
               a[i].d * quant_f16_to_f32(w[i].dmin) * (float)summ;
    }
    return sum;
}

static float qk_dot_q6_K(const void *wv, const quant_block_q8_K *a, int64_t nb)
{
    const quant_block_q6_K *w = wv;
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int8_t q[QK_K];
        int sumi = 0;
        qk_unpack_q6_K(&w[i], q);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += q[16 * g + l] * a[i].qs[16 * g + l];
            sumi += w[i].scales[g] * s;
        }
        sum += a[i].d * quant_f16_to_f32(w[i].d) * (float)sumi;
    }
    return sum;
}

typedef float (*qk_dot_fn)(const void *w, const quant_block_q8_K *a, int64_t nb);

static void qk_gemm(qk_dot_fn dot, int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                    const void *a, size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    int64_t nb = k / QK_K;
    for (int64_t t = 0; t < n_act; t++) {
        const quant_block_q8_K *at = (const void *)((const char *)a + t * a_stride);
        for (int64_t r = 0; r < n_rows; r++)
            y[t * y_stride + r] = dot((const char *)w + r * w_stride, at, nb);
    }
}

static void qk_gemm_q4_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(qk_dot_q4_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void qk_gemm_q5_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(qk_dot_q5_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void qk_gemm_q6_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(qk_dot_q6_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void qk_act_q8_K(const float *x, void *y, int64_t n)
{
    qk_quantize_q8_K(x, y, n / QK_K);
}

void quant_fill_scalar_k(quant_kernels *k)
{
    k->gemm[QT_Q4_K] = qk_gemm_q4_K;
    k->gemm[QT_Q5_K] = qk_gemm_q5_K;
    k->gemm[QT_Q6_K] = qk_gemm_q6_K;
    k->act[QT_Q8_K] = qk_act_q8_K;
}
