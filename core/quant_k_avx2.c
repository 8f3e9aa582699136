/* quant_k_avx2.c: AVX2 kernels for the K-quants (Q4_K, Q5_K, Q6_K weights
 * times Q8_K activation rows) and the Q8_K activation converter.
 *
 * Products run as register-blocked tiles: QK_TR weight rows x QK_TC
 * activation rows for prefill, 4 x 1 for decode. Each 32 unpacked weights
 * meet each activation row in one vpmaddubsw (unsigned weights times signed
 * int8 activations; no saturation: 2*63*128 < 32767) and one vpmaddwd by the
 * sub-block scale into int32 lanes. Per super-block the int32 sums become
 * floats once; the Q4_K/Q5_K mins go through the activation's bsums, as does
 * Q6_K's -32 offset, so the inner loop never subtracts. Integer sums are
 * exact: results differ from the scalar kernels only in the order of float
 * additions.
 *
 * Measured on Zen3 (2 multiply pipes): prefill tiles run close to the two
 * multiplies per 32 products that this scheme needs; decode streams weights
 * near DRAM bandwidth with the help of software prefetch.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

#define QK_AI static inline __attribute__((always_inline))

/* Prefill tile shapes (weight rows x activation rows), the best measured
 * per type; edge tiles use every smaller shape. */
#define QK_TR(type) ((type) == QT_Q5_K ? 4 : 2)
#define QK_TC(type) 4
/* Activation rows of one pass are kept within about this many bytes so that
 * they stay in L2 while every weight row tile of the slice streams by. */
#define QK_ACT_BUDGET (160 * 1024)
/* Decode prefetch distance. */
#define QK_PF_BYTES 8192

QK_AI __m256i qk_load(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

QK_AI float qk_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q4_K/Q5_K 12-byte scales (the 16 bytes at s12 must be readable) -> 8
 * int16 scales in both 128-bit lanes of *sc (for vpshufb broadcasts) and 8
 * int16 mins in *mn. Same packing as qk_scale_min in quant_k.c, in 32-bit
 * lanes u0..u2: scales 0..3 = u0 & 0x3f, mins 0..3 = u1 & 0x3f, scales 4..7 =
 * low nibbles of u2 | top bits of u0, mins 4..7 = high nibbles of u2 | top
 * bits of u1. */
QK_AI void qk_scales_k4(const uint8_t *s12, __m256i *sc, __m128i *mn)
{
    __m128i v = _mm_loadu_si128((const __m128i *)s12);
    __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x3f));                    /* s_lo m_lo . . */
    __m128i top = _mm_and_si128(_mm_srli_epi32(v, 2), _mm_set1_epi8(0x30)); /* u0, u1 top bits */
    __m128i nib = _mm_and_si128(_mm_shuffle_epi32(v, 0xA0), _mm_set1_epi8(0x0F)); /* . . u2 u2 */
    __m128i nibh = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(v, 0xA0), 4), _mm_set1_epi8(0x0F));
    nib = _mm_blend_epi32(nib, nibh, 0x8);                                  /* . . s_hi4 m_hi4 */
    __m128i hi = _mm_or_si128(nib, _mm_shuffle_epi32(top, 0x40));           /* . . s_hi m_hi */
    __m128i all = _mm_blend_epi32(lo, hi, 0xC);                             /* s_lo m_lo s_hi m_hi */
    all = _mm_shuffle_epi32(all, 0xD8);                                     /* s_lo s_hi m_lo m_hi */
    __m256i w = _mm256_cvtepu8_epi16(all);
    *sc = _mm256_permute2x128_si256(w, w, 0x00);
    *mn = _mm256_extracti128_si256(w, 1);
}

/* Keeps acc a register value at this point: stops the compiler from
 * reassociating a tile's accumulations into trees that spill. */
#define QK_KEEP(x) __asm__("" : "+x"(x))

/* Broadcasts int16 lane j0 of the low 128-bit half over that half and lane
 * j1 of the high half over the high half. */
QK_AI __m256i qk_bcast16x2(__m256i v, int j0, int j1)
{
    __m128i c0 = _mm_set1_epi16((short)((2 * j0 + 1) << 8 | 2 * j0));
    __m128i c1 = _mm_set1_epi16((short)((2 * j1 + 1) << 8 | 2 * j1));
    return _mm256_shuffle_epi8(v, _mm256_setr_m128i(c0, c1));
}

/* Q5_K: bit s of each qh byte moved to bit 4. 16-bit shifts are safe because
 * the mask keeps, in each byte, only the bit that came from that byte. */
QK_AI __m256i qk_q5_hbit(__m256i qh, int s)
{
    __m256i t = s <= 4 ? _mm256_slli_epi16(qh, 4 - s) : _mm256_srli_epi16(qh, s - 4);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x10));
}

/* One tile: rows [0, R) of w times activation rows [0, C) of a, nb blocks. */
QK_AI void qk_tile(const int type, const int R, const int C, int64_t nb, const uint8_t *w,
                   size_t w_stride, const uint8_t *a, size_t a_stride, float *y, size_t y_stride,
                   size_t pf)
{
    const size_t wbs = type == QT_Q4_K   ? sizeof(quant_block_q4_K)
                       : type == QT_Q5_K ? sizeof(quant_block_q5_K)
                                         : sizeof(quant_block_q6_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 facc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            facc[r][c] = _mm256_setzero_ps();

    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb[4];
        const quant_block_q8_K *ab[4];
        __m256i acc[4][4];
        float dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wb[r] = w + (size_t)r * w_stride + (size_t)b * wbs;
#pragma GCC unroll 4
        for (int c = 0; c < C; c++)
            ab[c] = (const quant_block_q8_K *)(a + (size_t)c * a_stride) + b;
        /* decode streams weights from DRAM: each block step prefetches the
         * next R blocks' worth of bytes, in address order, pf bytes past the
         * tile (exact coverage when rows are contiguous, as in a GGUF file;
         * sequential addresses stream better than R interleaved rows) */
        if (pf)
            for (size_t o = 0; o < R * wbs; o += 64)
                /* integer arithmetic: the address may lie past the matrix */
                _mm_prefetch((const char *)((uintptr_t)w + pf + (size_t)b * R * wbs + o), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_setzero_si256();

        if (type == QT_Q6_K) {
            __m256i sc[4][2];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const quant_block_q6_K *x = (const quant_block_q6_K *)wb[r];
                __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
                __m256i s16 = _mm256_cvtepi8_epi16(s8); /* groups 0..7 | 8..15 */
                sc[r][0] = _mm256_permute2x128_si256(s16, s16, 0x00);
                sc[r][1] = _mm256_permute2x128_si256(s16, s16, 0x11);
                dw[r] = _cvtsh_ss(x->d);
                /* the -32 offset: sum over groups of sc * 32 * bsums */
#pragma GCC unroll 4
                for (int c = 0; c < C; c++) {
                    __m256i off = _mm256_madd_epi16(s16, qk_load(ab[c]->bsums));
                    acc[r][c] = _mm256_sub_epi32(acc[r][c], _mm256_slli_epi32(off, 5));
                }
            }
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
#pragma GCC unroll 4
                    for (int r = 0; r < R; r++) {
                        const quant_block_q6_K *x = (const quant_block_q6_K *)wb[r];
                        __m256i ql = qk_load(x->ql + 64 * h + 32 * (i & 1));
                        __m256i qh = qk_load(x->qh + 32 * h);
                        __m256i lo = i < 2 ? _mm256_and_si256(ql, m4)
                                           : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
                        __m256i hi = i == 0   ? _mm256_slli_epi16(qh, 4)
                                     : i == 1 ? _mm256_slli_epi16(qh, 2)
                                     : i == 2 ? qh
                                              : _mm256_srli_epi16(qh, 2);
                        __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
                        /* groups 2i (bytes 0..15) and 2i+1 (bytes 16..31) */
                        __m256i s = qk_bcast16x2(sc[r][h], 2 * i, 2 * i + 1);
#pragma GCC unroll 4
                        for (int c = 0; c < C; c++) {
                            __m256i p = _mm256_maddubs_epi16(q, qk_load(ab[c]->qs + 128 * h + 32 * i));
                            acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p, s));
                            QK_KEEP(acc[r][c]);
                        }
                    }
                }
            }
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                __m256 da = _mm256_set1_ps(ab[c]->d);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    facc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][c]),
                                                 _mm256_mul_ps(da, _mm256_set1_ps(dw[r])), facc[r][c]);
            }
        } else {
            /* Q4_K and Q5_K share d, dmin and scales at the same offsets. */
            const size_t qs_off = type == QT_Q4_K ? offsetof(quant_block_q4_K, qs)
                                                  : offsetof(quant_block_q5_K, qs);
            __m256i sc[4], qh[4];
            __m128i mn[4];
            float dmw[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const quant_block_q4_K *x = (const quant_block_q4_K *)wb[r];
                qk_scales_k4(x->scales, &sc[r], &mn[r]);
                dw[r] = _cvtsh_ss(x->d);
                dmw[r] = _cvtsh_ss(x->dmin);
                if (type == QT_Q5_K)
                    qh[r] = qk_load(((const quant_block_q5_K *)wb[r])->qh);
            }
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    __m256i raw = qk_load(wb[r] + qs_off + 32 * p);
                    __m256i w0 = _mm256_and_si256(raw, m4);
                    __m256i w1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    if (type == QT_Q5_K) {
                        w0 = _mm256_or_si256(w0, qk_q5_hbit(qh[r], 2 * p));
                        w1 = _mm256_or_si256(w1, qk_q5_hbit(qh[r], 2 * p + 1));
                    }
                    __m256i s0 = qk_bcast16x2(sc[r], 2 * p, 2 * p);
                    __m256i s1 = qk_bcast16x2(sc[r], 2 * p + 1, 2 * p + 1);
#pragma GCC unroll 4
                    for (int c = 0; c < C; c++) {
                        __m256i p0 = _mm256_maddubs_epi16(w0, qk_load(ab[c]->qs + 64 * p));
                        __m256i p1 = _mm256_maddubs_epi16(w1, qk_load(ab[c]->qs + 64 * p + 32));
                        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p0, s0));
                        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p1, s1));
                        QK_KEEP(acc[r][c]);
                    }
                }
            }
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) {
                /* bsums of 16 -> sums per 32-element sub-block */
                __m128i bp = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)ab[c]->bsums),
                                            _mm_loadu_si128((const __m128i *)(ab[c]->bsums + 8)));
                __m256 da = _mm256_set1_ps(ab[c]->d);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) {
                    __m128i mi = _mm_madd_epi16(mn[r], bp);
                    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][c]), _mm256_set1_ps(dw[r]));
                    t = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(mi)),
                                         _mm256_set1_ps(dmw[r]), t);
                    facc[r][c] = _mm256_fmadd_ps(t, da, facc[r][c]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            y[(size_t)c * y_stride + r] = qk_hsum(facc[r][c]);
}

/* Instantiates qk_tile for a runtime edge shape (1..QK_TR) x (1..QK_TC);
 * shapes beyond the type's tile are never reached and compile away. */
#define QK_TILE_C(type, R, cc, ...)                                                                \
    do {                                                                                           \
        if ((R) > QK_TR(type))                                                                     \
            break;                                                                                 \
        switch (cc) {                                                                              \
        case 1: qk_tile(type, R, 1, __VA_ARGS__, 0); break;                                        \
        case 2: if (QK_TC(type) >= 2) qk_tile(type, R, 2, __VA_ARGS__, 0); break;                  \
        case 3: if (QK_TC(type) >= 3) qk_tile(type, R, 3, __VA_ARGS__, 0); break;                  \
        default: if (QK_TC(type) >= 4) qk_tile(type, R, 4, __VA_ARGS__, 0); break;                 \
        }                                                                                          \
    } while (0)

QK_AI void qk_tile_any(const int type, int rr, int cc, int64_t nb, const uint8_t *w, size_t w_stride,
                       const uint8_t *a, size_t a_stride, float *y, size_t y_stride)
{
    switch (rr) {
    case 1: QK_TILE_C(type, 1, cc, nb, w, w_stride, a, a_stride, y, y_stride); break;
    case 2: QK_TILE_C(type, 2, cc, nb, w, w_stride, a, a_stride, y, y_stride); break;
    case 3: QK_TILE_C(type, 3, cc, nb, w, w_stride, a, a_stride, y, y_stride); break;
    default: QK_TILE_C(type, 4, cc, nb, w, w_stride, a, a_stride, y, y_stride); break;
    }
}

QK_AI void qk_gemm(const int type, int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                   const void *a, size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    const uint8_t *wp = w, *ap = a;
    int64_t nb = k / QK_K;
    if (n_act == 1) {
        /* decode: stream the weights once, four rows at a time, prefetching
         * whole row tiles at least QK_PF_BYTES ahead (more than a DRAM
         * latency of work, also when rows are short) */
        size_t tile = 4 * w_stride, pf = tile * ((QK_PF_BYTES + tile - 1) / tile);
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4)
            qk_tile(type, 4, 1, nb, wp + r * w_stride, w_stride, ap, a_stride, y + r, y_stride, pf);
        for (; r < n_rows; r++)
            qk_tile(type, 1, 1, nb, wp + r * w_stride, w_stride, ap, a_stride, y + r, y_stride, 0);
        return;
    }
    const int tr = QK_TR(type), tc = QK_TC(type);
    _Static_assert(QK_TR(QT_Q4_K) <= 4 && QK_TR(QT_Q5_K) <= 4 && QK_TR(QT_Q6_K) <= 4 &&
                       QK_TC(QT_Q4_K) <= 4 && QK_TC(QT_Q5_K) <= 4 && QK_TC(QT_Q6_K) <= 4,
                   "qk_tile arrays hold 4x4 tiles");
    int64_t a_bytes = nb * (int64_t)sizeof(quant_block_q8_K);
    int64_t chunk = a_bytes > 0 ? QK_ACT_BUDGET / a_bytes / tc * tc : n_act;
    if (chunk < tc)
        chunk = tc;
    for (int64_t t0 = 0; t0 < n_act; t0 += chunk) {
        int64_t t1 = t0 + chunk < n_act ? t0 + chunk : n_act;
        for (int64_t r = 0; r < n_rows; r += tr) {
            int rr = n_rows - r < tr ? (int)(n_rows - r) : tr;
            for (int64_t t = t0; t < t1; t += tc) {
                int cc = t1 - t < tc ? (int)(t1 - t) : tc;
                qk_tile_any(type, rr, cc, nb, wp + r * w_stride, w_stride, ap + t * a_stride,
                            a_stride, y + t * y_stride + r, y_stride);
            }
        }
    }
}

static void qk_gemm_q4_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(QT_Q4_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void qk_gemm_q5_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(QT_Q5_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void qk_gemm_q6_K(int64_t k, const void *w, size_t w_stride, int64_t n_rows, const void *a,
                         size_t a_stride, int64_t n_act, float *y, size_t y_stride)
{
    qk_gemm(QT_Q6_K, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

/* Same result as the reference converter in quant_k.c: the element of
 * largest magnitude maps to -127, q = round-to-even(x * -127/max). (Should
 * +a and -a tie for largest, the sign picked may differ from the scalar
 * one's; q and d then both flip sign, so every product is unchanged.) */
static void qk_act_q8_K(const float *x, void *yv, int64_t n)
{
    quant_block_q8_K *y = yv;
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 vmax = _mm256_loadu_ps(x), vmin = vmax;
        for (int l = 8; l < QK_K; l += 8) {
            __m256 v = _mm256_loadu_ps(x + l);
            vmax = _mm256_max_ps(vmax, v);
            vmin = _mm256_min_ps(vmin, v);
        }
        __m128 mx = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
        __m128 mn = _mm_min_ps(_mm256_castps256_ps128(vmin), _mm256_extractf128_ps(vmin, 1));
        mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
        mn = _mm_min_ps(mn, _mm_movehl_ps(mn, mn));
        float hi = _mm_cvtss_f32(_mm_max_ss(mx, _mm_movehdup_ps(mx)));
        float lo = _mm_cvtss_f32(_mm_min_ss(mn, _mm_movehdup_ps(mn)));
        float max = hi >= -lo ? hi : lo;
        if (!(max > 0 || max < 0)) { /* all zero (or NaN: keep the output defined) */
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -127.f / max;
        const __m256 vs = _mm256_set1_ps(iscale), vhi = _mm256_set1_ps(127.f),
                     vlo = _mm256_set1_ps(-127.f);
        for (int l = 0; l < QK_K; l += 32) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + l + 8 * j), vs);
                q[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi));
            }
            /* packs interleave 128-bit lanes; the permute restores order */
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + l), _mm256_permutevar8x32_epi32(p, perm));
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

void quant_fill_avx2_k(quant_kernels *k)
{
    k->gemm[QT_Q4_K] = qk_gemm_q4_K;
    k->gemm[QT_Q5_K] = qk_gemm_q5_K;
    k->gemm[QT_Q6_K] = qk_gemm_q6_K;
    k->act[QT_Q8_K] = qk_act_q8_K;
}
