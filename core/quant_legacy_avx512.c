/* quant_legacy_avx512.c: AVX-512 VNNI kernels for the legacy weight types
 * (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 weights; Q8_0 or Q8_1 activations).
 *
 * Why: for prefill the AVX2 panel spends most of its instructions on the
 * int8 multiply chain (sign, maddubs, madd, add per 4-byte group). VPDPBUSD
 * does u8 x s8 products of 4 byte pairs summed into an int32 lane, and
 * accumulates, in one instruction; its s8 operand can be a dword broadcast
 * from memory ({1to16}), which is exactly the panel's activation operand.
 *
 * How (many activation rows, the "panel"): 16 weight rows are unpacked to
 * unsigned bytes and transposed once per chunk of k into a stack panel whose
 * zmm vector g holds elements 4g..4g+3 of each of the 16 rows (row r in
 * dword lane r). For an activation row, 8 dpbusd with broadcast activation
 * dwords leave the 16 rows' block dots in the 16 lanes: no horizontal sums.
 * The weights must be the unsigned operand, so
 *   Q4_0, Q5_0:  q (0..15 / 0..31) with x = (q - off)*d, off = 8 / 16;
 *   Q8_0:        q + 128 (xor 0x80, 0..255), i.e. off = 128;
 *   Q4_1, Q5_1:  q, with m_w*s_a added in float.
 * The _0 types start each block's int32 accumulator at -off*sum(q_a), so
 * the lane ends holding the exact signed block dot (|sum| <= 32*255*128,
 * far inside int32). Then one cvt, one mul by the broadcast d_a and one FMA
 * per (block, 16 rows, activation row). Each weight vector loaded from the
 * panel serves 8 activation rows (8 int32 + 8 float accumulators in zmm).
 * 512-bit vectors run as two 256-bit halves on Zen 4; they still halve the
 * instruction count, which is what limits this loop: measured on this Zen 4
 * (EPYC), one thread, 4864x896 weights x 128 activation rows, about 460
 * GOPS (int8 multiply-adds x2) against 150 (Q8_0) and 210 (Q4_0) for the
 * AVX2 panel.
 *
 * Few activation rows (< QAX_PANEL_MIN_ACT, decode): a VNNI tile of 8
 * weight rows x up to 4 activation rows (see quant_ax_dtile) with software
 * prefetches spread over its blocks. Decode was not DRAM bound: the AVX2
 * tile read about 10 GB/s per thread against 27 GB/s for a plain read,
 * because its compute and its DRAM misses did not overlap. Measured on this
 * Zen 4, one thread, qwen2.5-0.5b shapes from DRAM, 1 activation row: Q4_0
 * 17-21 GB/s (AVX2 tile 9-10), Q8_0 21-25 (12-13); Q4_1 Q5_0 Q5_1 1.6x.
 * quant_fill_avx512_legacy keeps the table's previous (AVX2) entries for
 * k < 32 only.
 *
 * Results are not bit-identical to the scalar reference (float summation
 * order differs); the integer block dots are exact. Each call uses about
 * 50 KiB of stack for its panel and tables (decode: 8 KiB of tables), and
 * allocates nothing.
 */
#include <immintrin.h>
#include <string.h>

#include "quant.h"
#include "quant_x86.h"

#define QAX_INLINE static inline __attribute__((always_inline))

#define QAX_PKC 32  /* blocks of k per panel */
#define QAX_PNA 128 /* activation rows per table chunk (a prefill batch of 128 fits one) */
#define QAX_RN 8    /* activation rows per register tile */

typedef struct {
    int bsz;   /* weight block bytes */
    int qs;    /* offset of qs in the weight block */
    int qh;    /* offset of qh, or 0 */
    int off;   /* _0 types: x = (q - off)*d on the unsigned q */
    int has_m; /* _1 type: min m at offset 2, Q8_1 activations */
} quant_ax_wfmt;

QAX_INLINE quant_ax_wfmt quant_ax_fmt(int T)
{
    switch (T) {
    case QT_Q4_0: return (quant_ax_wfmt){18, 2, 0, 8, 0};
    case QT_Q4_1: return (quant_ax_wfmt){20, 4, 0, 0, 1};
    case QT_Q5_0: return (quant_ax_wfmt){22, 6, 2, 16, 0};
    case QT_Q5_1: return (quant_ax_wfmt){24, 8, 4, 0, 1};
    default: return (quant_ax_wfmt){34, 2, 0, 128, 0}; /* QT_Q8_0, biased to unsigned */
    }
}

static inline uint16_t quant_ax_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One weight block -> 32 unsigned bytes in element order. */
QAX_INLINE __m256i quant_ax_unpack(int T, const uint8_t *x)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    if (T == QT_Q8_0)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + 2)), _mm256_set1_epi8((char)0x80));
    /* 16 packed bytes: low nibbles are elements 0..15, high ones 16..31 */
    __m128i p = _mm_loadu_si128((const __m128i *)(x + f.qs));
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(p, 4), p), _mm256_set1_epi8(0x0f));
    if (f.qh) {
        /* bit i of qh is the fifth bit of element i: a byte mask per bit */
        uint32_t h;
        memcpy(&h, x + f.qh, 4);
        const __mmask32 m = (__mmask32)h;
        q = _mm256_mask_add_epi8(q, m, q, _mm256_set1_epi8(0x10));
    }
    return q;
}

typedef struct {
    _Alignas(64) uint8_t wq[QAX_PKC][8][64]; /* [block][g][row*4 + e] = q_row[4g + e], 16 rows */
    _Alignas(64) float dw[QAX_PKC][16];
    _Alignas(64) float mw[QAX_PKC][16]; /* _1 types: m */
    float da[QAX_PKC][QAX_PNA];
    union {
        int32_t ncorr[QAX_PKC][QAX_PNA]; /* _0 types: -off * sum(q_a) */
        float sa[QAX_PKC][QAX_PNA];      /* _1 types: s */
    } x;
} quant_ax_panel;

/* Lane r of y[j*y_stride + r] (r < 16 where keep has bit r) gets, or with
 * !first adds, dot(row r, act row j) over nb blocks, j < RN <= QAX_RN;
 * a[j] points at act row j's first block of the chunk, jt is its column in
 * the tables. Stores from here rather than through an array of results,
 * which made gcc keep the float accumulators on the stack. */
QAX_INLINE void quant_ax_panel_tile(int T, int RN, int64_t nb, const quant_ax_panel *pn,
                                    const uint8_t *const a[QAX_RN], int jt, float *y,
                                    size_t y_stride, __mmask16 keep, int first)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const int absz = f.has_m ? 36 : 34, aqs = f.has_m ? 4 : 2;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    for (int64_t b = 0; b < nb; b++) {
        const size_t ao = (size_t)b * (size_t)absz + (size_t)aqs;
        /* named accumulators, not arrays: gcc keeps arrays of them on the
         * stack. The _0 types start at -off*sum(q_a). */
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        if (f.off) {
#define QAX_I(j, sj)                                                                        \
    if ((j) < RN)                                                                           \
        sj = _mm512_set1_epi32(pn->x.ncorr[b][jt + (j)]);
            QAX_I(0, s0) QAX_I(1, s1) QAX_I(2, s2) QAX_I(3, s3)
            QAX_I(4, s4) QAX_I(5, s5) QAX_I(6, s6) QAX_I(7, s7)
#undef QAX_I
        }
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i wg = _mm512_load_si512((const void *)pn->wq[b][g]);
#define QAX_P(j, sj)                                                                        \
    if ((j) < RN) {                                                                         \
        int32_t v;                                                                          \
        memcpy(&v, a[j] + ao + 4 * g, 4);                                                   \
        sj = _mm512_dpbusd_epi32(sj, wg, _mm512_set1_epi32(v));                             \
    }
            QAX_P(0, s0) QAX_P(1, s1) QAX_P(2, s2) QAX_P(3, s3)
            QAX_P(4, s4) QAX_P(5, s5) QAX_P(6, s6) QAX_P(7, s7)
#undef QAX_P
        }
        const __m512 d16 = _mm512_load_ps(pn->dw[b]);
#define QAX_F(j, sj, cj)                                                                    \
    if ((j) < RN) {                                                                         \
        cj = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sj),                                        \
                             _mm512_mul_ps(d16, _mm512_set1_ps(pn->da[b][jt + (j)])), cj);  \
        if (f.has_m)                                                                        \
            cj = _mm512_fmadd_ps(_mm512_load_ps(pn->mw[b]),                                 \
                                 _mm512_set1_ps(pn->x.sa[b][jt + (j)]), cj);                \
    }
        QAX_F(0, s0, c0) QAX_F(1, s1, c1) QAX_F(2, s2, c2) QAX_F(3, s3, c3)
        QAX_F(4, s4, c4) QAX_F(5, s5, c5) QAX_F(6, s6, c6) QAX_F(7, s7, c7)
#undef QAX_F
    }
#define QAX_S(j, cj)                                                                        \
    if ((j) < RN) {                                                                         \
        float *yj = y + (size_t)(j) * y_stride;                                             \
        __m512 v = first ? cj : _mm512_add_ps(cj, _mm512_maskz_loadu_ps(keep, yj));          \
        _mm512_mask_storeu_ps(yj, keep, v);                                                 \
    }
    QAX_S(0, c0) QAX_S(1, c1) QAX_S(2, c2) QAX_S(3, c3)
    QAX_S(4, c4) QAX_S(5, c5) QAX_S(6, c6) QAX_S(7, c7)
#undef QAX_S
}

/* Activation tables for na rows from at0 (a_stride apart), blocks [b0, b0+nb). */
QAX_INLINE void quant_ax_act_tabs(int T, const uint8_t *at0, size_t a_stride, int na, int64_t b0,
                                  int64_t nb, quant_ax_panel *pn)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    for (int t = 0; t < na; t++) {
        const uint8_t *row = at0 + (size_t)t * a_stride + (size_t)b0 * absz;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * absz;
            pn->da[b][t] = _cvtsh_ss(quant_ax_u16(blk));
            if (f.has_m) {
                pn->x.sa[b][t] = _cvtsh_ss(quant_ax_u16(blk + 2));
            } else {
                /* sum of 32 signed bytes: sad of the bytes offset to unsigned */
                __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)),
                                             _mm256_set1_epi8((char)0x80));
                __m256i s = _mm256_sad_epu8(q, _mm256_setzero_si256());
                __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                s2 = _mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2));
                pn->x.ncorr[b][t] = -f.off * (_mm_cvtsi128_si32(s2) - 32 * 128);
            }
        }
    }
}

/* Unpacks and transposes 16 weight rows (wr[i] at the chunk's first block)
 * of nb blocks into the panel, with their scales. */
QAX_INLINE void quant_ax_pack(int T, const uint8_t *const wr[16], int64_t nb, quant_ax_panel *pn)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    for (int64_t b = 0; b < nb; b++) {
        _Alignas(32) uint16_t dh[16], mh[16];
        for (int h = 0; h < 2; h++) {
            __m256i q[8];
            for (int i = 0; i < 8; i++) {
                const uint8_t *blk = wr[8 * h + i] + (size_t)b * (size_t)f.bsz;
                q[i] = quant_ax_unpack(T, blk);
                dh[8 * h + i] = quant_ax_u16(blk);
                if (f.has_m)
                    mh[8 * h + i] = quant_ax_u16(blk + 2);
            }
            quant_x86_transpose8(q);
            for (int g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)&pn->wq[b][g][32 * h], q[g]);
        }
        _mm512_store_ps(pn->dw[b], _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)dh)));
        if (f.has_m)
            _mm512_store_ps(pn->mw[b], _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)mh)));
    }
}

QAX_INLINE void quant_ax_gemm_panel(int T, int64_t k, const void *w, size_t w_stride,
                                    int64_t n_rows, const void *a, size_t a_stride,
                                    int64_t n_act, float *y, size_t y_stride)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    const int64_t nbt = k / 32;
    quant_ax_panel pn;
    for (int64_t b0 = 0; b0 < nbt; b0 += QAX_PKC) {
        const int64_t nb = nbt - b0 < QAX_PKC ? nbt - b0 : QAX_PKC;
        const int first = b0 == 0; /* later k chunks add to y */
        for (int64_t t0 = 0; t0 < n_act; t0 += QAX_PNA) {
            const int na = n_act - t0 < QAX_PNA ? (int)(n_act - t0) : QAX_PNA;
            const uint8_t *at0 = (const uint8_t *)a + (size_t)t0 * a_stride;
            quant_ax_act_tabs(T, at0, a_stride, na, b0, nb, &pn);
            for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
                /* rows past the end repeat the last one; their results are dropped */
                const uint8_t *wr[16];
                for (int i = 0; i < 16; i++) {
                    int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                    wr[i] = (const uint8_t *)w + (size_t)r * w_stride + (size_t)b0 * (size_t)f.bsz;
                }
                const int nr = n_rows - r0 < 16 ? (int)(n_rows - r0) : 16;
                /* The next panel's rows come from DRAM: ask for them now, into
                 * L2 (the activation rows streaming through L1 while this
                 * panel computes would evict them from there). */
                if (r0 + 32 <= n_rows)
                    for (int i = 0; i < 16; i++)
                        for (size_t o = 0; o < (size_t)nb * (size_t)f.bsz; o += 64)
                            _mm_prefetch((const char *)(wr[i] + 16 * w_stride + o), _MM_HINT_T1);
                quant_ax_pack(T, wr, nb, &pn);
                const __mmask16 keep = (__mmask16)((1u << nr) - 1);
                for (int t = 0; t < na; t += QAX_RN) {
                    const uint8_t *ar[QAX_RN];
                    const int nt = na - t < QAX_RN ? na - t : QAX_RN;
                    for (int j = 0; j < QAX_RN; j++)
                        ar[j] = at0 + (size_t)(t + (j < nt ? j : nt - 1)) * a_stride + (size_t)b0 * absz;
                    float *yt = y + (size_t)(t0 + t) * y_stride + (size_t)r0;
                    switch (nt) {
                    case 1: quant_ax_panel_tile(T, 1, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 2: quant_ax_panel_tile(T, 2, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 3: quant_ax_panel_tile(T, 3, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 4: quant_ax_panel_tile(T, 4, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 5: quant_ax_panel_tile(T, 5, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 6: quant_ax_panel_tile(T, 6, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    case 7: quant_ax_panel_tile(T, 7, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    default: quant_ax_panel_tile(T, 8, nb, &pn, ar, t, yt, y_stride, keep, first); break;
                    }
                }
            }
        }
    }
}

/* ---- few activation rows (decode): VNNI tile -----------------------------
 *
 * 8 weight rows x up to 4 activation rows, one 32-element block per step.
 * Two rows share a ymm: lo = [row A elements 0..15 | row B 0..15], hi the
 * same for elements 16..31 (for Q4_* these are the low and high nibbles of
 * the two rows' qs, one load each), and the activation block is broadcast
 * as [a0..15 | a0..15] and [a16..31 | a16..31]. Two dpbusd then leave row
 * A's block dot in lanes 0..3 and row B's in 4..7, already summed across
 * both halves, so 4 row pairs fold to [r0 r2 r4 r6 | r1 r3 r5 r7] with 9
 * unpack/add ops (the AVX2 tile needs maddubs, madd and a 10-op fold per 4
 * rows). The _0 types start the dpbusd accumulators at -off*sum(q_a) in
 * lanes 0 and 4 (one per row), so the int32 block dots stay exact; then one
 * cvt, one mul and one FMA per (8 rows, block, activation row). */

#define QAX_DKC 128 /* blocks of k per decode table chunk */
#define QAX_DNA 8   /* activation rows per decode table chunk (multiple of 4) */
/* Decode prefetches the weight rows this far ahead (16 KiB for 896-element
 * Q4_0 rows), a few lines per block of the tile rather than one burst per
 * row group. Why: with the burst (the AVX2 tile's way, at 0..64 rows ahead)
 * compute and DRAM reads hardly overlapped (one thread, qwen2.5-0.5b shapes
 * from DRAM: 9-10 GB/s for this kernel and for the AVX2 tile, against 20.5
 * GB/s for this kernel in cache and 27 GB/s for a plain read); spread out,
 * 17-21 GB/s for 24..48 rows ahead. Probably the 8 rows' short streams do
 * not train the hardware prefetchers and a burst stalls on full miss
 * buffers; not verified with counters. */
#define QAX_DPF 32

typedef struct {
    float da[QAX_DKC][QAX_DNA];
    union {
        int32_t ncorr[QAX_DKC][QAX_DNA]; /* _0 types: -off * sum(q_a) */
        float sa[QAX_DKC][QAX_DNA];      /* _1 types: s */
    } x;
} quant_ax_dtabs;

/* Blocks p (row A) and q (row B) -> lo = [A 0..15 | B 0..15], hi = [A 16..31 | B 16..31]
 * as unsigned bytes. */
QAX_INLINE void quant_ax_unpack2(int T, const uint8_t *p, const uint8_t *q, __m256i *lo, __m256i *hi)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    if (T == QT_Q8_0) {
        const __m256i bias = _mm256_set1_epi8((char)0x80);
        *lo = _mm256_xor_si256(_mm256_loadu2_m128i((const __m128i *)(q + 2), (const __m128i *)(p + 2)), bias);
        *hi = _mm256_xor_si256(_mm256_loadu2_m128i((const __m128i *)(q + 18), (const __m128i *)(p + 18)), bias);
        return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i v = _mm256_loadu2_m128i((const __m128i *)(q + f.qs), (const __m128i *)(p + f.qs));
    __m256i l = _mm256_and_si256(v, m4), h = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (f.qh) {
        /* bit i of qh is the fifth bit of element i */
        uint32_t hp, hq;
        memcpy(&hp, p + f.qh, 4);
        memcpy(&hq, q + f.qh, 4);
        const __m256i b4 = _mm256_set1_epi8(0x10);
        l = _mm256_mask_add_epi8(l, (__mmask32)((hp & 0xffffu) | hq << 16), l, b4);
        h = _mm256_mask_add_epi8(h, (__mmask32)(hp >> 16 | (hq & 0xffff0000u)), h, b4);
    }
    *lo = l;
    *hi = h;
}

/* 8 halves at p[i] + o -> floats in the fold's lane order [0 2 4 6 | 1 3 5 7]. */
QAX_INLINE __m256 quant_ax_h8(const uint8_t *const p[8], size_t o)
{
    const __m128i h = _mm_setr_epi16((short)quant_ax_u16(p[0] + o), (short)quant_ax_u16(p[2] + o),
                                     (short)quant_ax_u16(p[4] + o), (short)quant_ax_u16(p[6] + o),
                                     (short)quant_ax_u16(p[1] + o), (short)quant_ax_u16(p[3] + o),
                                     (short)quant_ax_u16(p[5] + o), (short)quant_ax_u16(p[7] + o));
    return _mm256_cvtph_ps(h);
}

/* y[j*y_stride + i] (i < nr) gets, or with !first adds, dot(w row i, act
 * row j) over nb blocks for j < RN; w[i], a[j] point at the chunk's first
 * block, jt is act row 0's column in the tables. */
QAX_INLINE void quant_ax_dtile(int T, int RN, int64_t nb, const uint8_t *const w[8],
                               const uint8_t *const a[4], const quant_ax_dtabs *tb, int jt,
                               float *y, size_t y_stride, int nr, int first,
                               const uint8_t *pf, size_t pf_stride)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const int absz = f.has_m ? 36 : 34, aqs = f.has_m ? 4 : 2;
    /* prefetch a block of each of the 8 later rows every pstep blocks:
     * pstep*bsz <= 64, so every line of them is asked for */
    const int pstep = 64 / f.bsz;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * (size_t)f.bsz, ao = (size_t)b * (size_t)absz + (size_t)aqs;
        if (pf && (b % pstep == 0 || b == nb - 1)) {
            const uint8_t *pb = pf + wo + (b == nb - 1 ? (size_t)f.bsz - 1 : 0);
            for (int i = 0; i < 8; i++)
                _mm_prefetch((const char *)(pb + (size_t)i * pf_stride), _MM_HINT_T0);
        }
        __m256i l01, h01, l23, h23, l45, h45, l67, h67;
        quant_ax_unpack2(T, w[0] + wo, w[1] + wo, &l01, &h01);
        quant_ax_unpack2(T, w[2] + wo, w[3] + wo, &l23, &h23);
        quant_ax_unpack2(T, w[4] + wo, w[5] + wo, &l45, &h45);
        quant_ax_unpack2(T, w[6] + wo, w[7] + wo, &l67, &h67);
        const __m256 d8 = quant_ax_h8(w, wo);
        const __m256 m8 = f.has_m ? quant_ax_h8(w, wo + 2) : _mm256_setzero_ps();
#define QAX_D(j, cj)                                                                        \
    if ((j) < RN) {                                                                         \
        const __m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a[j] + ao))); \
        const __m256i ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a[j] + ao + 16))); \
        const __m256i z = f.off ? _mm256_maskz_set1_epi32(0x11, tb->x.ncorr[b][jt + (j)])   \
                                : _mm256_setzero_si256();                                   \
        const __m256i s01 = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l01, alo), h01, ahi); \
        const __m256i s23 = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l23, alo), h23, ahi); \
        const __m256i s45 = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l45, alo), h45, ahi); \
        const __m256i s67 = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, l67, alo), h67, ahi); \
        const __m256i t0 = _mm256_add_epi32(_mm256_unpacklo_epi32(s01, s23), _mm256_unpackhi_epi32(s01, s23)); \
        const __m256i t1 = _mm256_add_epi32(_mm256_unpacklo_epi32(s45, s67), _mm256_unpackhi_epi32(s45, s67)); \
        const __m256i s = _mm256_add_epi32(_mm256_unpacklo_epi64(t0, t1), _mm256_unpackhi_epi64(t0, t1)); \
        cj = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d8, _mm256_set1_ps(tb->da[b][jt + (j)])), cj); \
        if (f.has_m)                                                                        \
            cj = _mm256_fmadd_ps(m8, _mm256_set1_ps(tb->x.sa[b][jt + (j)]), cj);            \
    }
        QAX_D(0, c0) QAX_D(1, c1) QAX_D(2, c2) QAX_D(3, c3)
#undef QAX_D
    }
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* back to row order */
    const __mmask8 keep = (__mmask8)((1u << nr) - 1);
#define QAX_DS(j, cj)                                                                       \
    if ((j) < RN) {                                                                         \
        float *yj = y + (size_t)(j) * y_stride;                                             \
        __m256 v = _mm256_permutexvar_ps(perm, cj);                                         \
        if (!first)                                                                         \
            v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(keep, yj));                          \
        _mm256_mask_storeu_ps(yj, keep, v);                                                 \
    }
    QAX_DS(0, c0) QAX_DS(1, c1) QAX_DS(2, c2) QAX_DS(3, c3)
#undef QAX_DS
}

/* Decode tables for na rows from at0 (a_stride apart), blocks [b0, b0+nb). */
QAX_INLINE void quant_ax_dec_tabs(int T, const uint8_t *at0, size_t a_stride, int na, int64_t b0,
                                  int64_t nb, quant_ax_dtabs *tb)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    for (int t = 0; t < na; t++) {
        const uint8_t *row = at0 + (size_t)t * a_stride + (size_t)b0 * absz;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * absz;
            tb->da[b][t] = _cvtsh_ss(quant_ax_u16(blk));
            if (f.has_m) {
                tb->x.sa[b][t] = _cvtsh_ss(quant_ax_u16(blk + 2));
            } else {
                __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 2)),
                                             _mm256_set1_epi8((char)0x80));
                __m256i s = _mm256_sad_epu8(q, _mm256_setzero_si256());
                __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                s2 = _mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2));
                tb->x.ncorr[b][t] = -f.off * (_mm_cvtsi128_si32(s2) - 32 * 128);
            }
        }
    }
}

QAX_INLINE void quant_ax_gemm_dec(int T, int64_t k, const void *w, size_t w_stride,
                                  int64_t n_rows, const void *a, size_t a_stride,
                                  int64_t n_act, float *y, size_t y_stride)
{
    const quant_ax_wfmt f = quant_ax_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    const int64_t nbt = k / 32;
    quant_ax_dtabs tb;
    for (int64_t b0 = 0; b0 < nbt; b0 += QAX_DKC) {
        const int64_t nb = nbt - b0 < QAX_DKC ? nbt - b0 : QAX_DKC;
        const int first = b0 == 0; /* later k chunks add to y */
        for (int64_t t0 = 0; t0 < n_act; t0 += QAX_DNA) {
            const int na = n_act - t0 < QAX_DNA ? (int)(n_act - t0) : QAX_DNA;
            const uint8_t *at0 = (const uint8_t *)a + (size_t)t0 * a_stride;
            quant_ax_dec_tabs(T, at0, a_stride, na, b0, nb, &tb);
            for (int64_t r0 = 0; r0 < n_rows; r0 += 8) {
                /* rows past the end repeat the last one; their results are dropped */
                const uint8_t *wr[8];
                for (int i = 0; i < 8; i++) {
                    int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                    wr[i] = (const uint8_t *)w + (size_t)r * w_stride + (size_t)b0 * (size_t)f.bsz;
                }
                const int nr = n_rows - r0 < 8 ? (int)(n_rows - r0) : 8;
                /* the weights stream from DRAM with little work per row:
                 * ask for a later group while this one computes */
                const uint8_t *pf = r0 + QAX_DPF + 8 <= n_rows ? wr[0] + QAX_DPF * w_stride : NULL;
                for (int t = 0; t < na; t += 4) {
                    const uint8_t *ar[4];
                    const int nt = na - t < 4 ? na - t : 4;
                    for (int j = 0; j < 4; j++)
                        ar[j] = at0 + (size_t)(t + (j < nt ? j : nt - 1)) * a_stride + (size_t)b0 * absz;
                    float *yt = y + (size_t)(t0 + t) * y_stride + (size_t)r0;
                    switch (nt) {
                    case 1: quant_ax_dtile(T, 1, nb, wr, ar, &tb, t, yt, y_stride, nr, first, t ? NULL : pf, w_stride); break;
                    case 2: quant_ax_dtile(T, 2, nb, wr, ar, &tb, t, yt, y_stride, nr, first, t ? NULL : pf, w_stride); break;
                    case 3: quant_ax_dtile(T, 3, nb, wr, ar, &tb, t, yt, y_stride, nr, first, t ? NULL : pf, w_stride); break;
                    default: quant_ax_dtile(T, 4, nb, wr, ar, &tb, t, yt, y_stride, nr, first, t ? NULL : pf, w_stride); break;
                    }
                }
            }
        }
    }
}

/* The table's previous entries (AVX2), kept for k < 32. Set once by
 * quant_fill_avx512_legacy (inside quant.c's pthread_once), only read
 * afterwards. */
static quant_gemm_fn quant_ax_small[QT_COUNT];

/* Panels pay for their repacking from this many activation rows on
 * (measured on Zen 4, 4864x896 weights from DRAM: even with the AVX2 tiles
 * at 6..7 rows, 1.1x at 8, 1.3x-1.4x at 12, 1.4x-1.7x at 16). */
#define QAX_PANEL_MIN_ACT(T) 8

#define QAX_GEMM(name, T)                                                                   \
    static void quant_ax_gemm_##name(int64_t k, const void *w, size_t w_stride,            \
                                     int64_t n_rows, const void *a, size_t a_stride,       \
                                     int64_t n_act, float *y, size_t y_stride)             \
    {                                                                                      \
        if (k < 32) {                                                                      \
            quant_ax_small[T](k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);    \
            return;                                                                        \
        }                                                                                  \
        if (n_act < QAX_PANEL_MIN_ACT(T)) {                                                \
            quant_ax_gemm_dec(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride); \
            return;                                                                        \
        }                                                                                  \
        quant_ax_gemm_panel(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);   \
    }
QAX_GEMM(q4_0, QT_Q4_0)
QAX_GEMM(q4_1, QT_Q4_1)
QAX_GEMM(q5_0, QT_Q5_0)
QAX_GEMM(q5_1, QT_Q5_1)
QAX_GEMM(q8_0, QT_Q8_0)

/* k must hold a complete table already (a copy of the AVX2 one): its entries
 * for these types become the fallbacks for k < 32. */
void quant_fill_avx512_legacy(quant_kernels *k)
{
    static const int types[] = {QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        quant_ax_small[types[i]] = k->gemm[types[i]];
    k->gemm[QT_Q4_0] = quant_ax_gemm_q4_0;
    k->gemm[QT_Q4_1] = quant_ax_gemm_q4_1;
    k->gemm[QT_Q5_0] = quant_ax_gemm_q5_0;
    k->gemm[QT_Q5_1] = quant_ax_gemm_q5_1;
    k->gemm[QT_Q8_0] = quant_ax_gemm_q8_0;
}
