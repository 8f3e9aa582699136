/* quant_legacy_avx2.c: AVX2/FMA/F16C kernels for the legacy weight types.
 *
 * Quantized products (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 weights; Q8_0 or Q8_1
 * activations) have two kernels; both take integer dots per 32-element
 * block and scale them by d_w*d_a (f16 scales are converted once into small
 * stack tables per chunk of k, so inner loops only load floats):
 *
 * Tile (decode and few activation rows): 4 weight rows x up to 4 activation
 * rows. Each weight block is unpacked once to 32 bytes and multiplied with
 *   Q8_0:        maddubs(|a|, sign(w, a))  (the sign trick: maddubs needs one
 *                unsigned operand; |a| <= 127 cannot saturate)
 *   Q4_*, Q5_*:  maddubs(q, a) with the unsigned q (0..15 / 0..31); the _0
 *                types subtract off*sum(a) (off = 8 / 16) exactly in int32,
 *                the _1 types add m_w*s_a in float.
 * The products of the 4 rows are folded with unpack/add trees into one
 * vector [row0..row3 | row0..row3], so conversion and scaling cost one cvt
 * and one FMA per 4 pairs. Decode streams 4 weight rows at once and
 * prefetches the group 16 rows ahead: it runs at memory bandwidth.
 *
 * Panel (prefill, >= QAV_PANEL_MIN_ACT activation rows): see below; no
 * horizontal sums at all, about 1.4x-1.8x the tile's throughput there.
 *
 * Results are not bit-identical to the scalar reference (float summation
 * order differs); the integer block dots are exact. Each call uses about
 * 26 KiB of stack for its tables and panels, and allocates nothing.
 */
#include <immintrin.h>
#include <string.h>

#include "quant.h"
#include "quant_x86.h"

#define QAV_INLINE static inline __attribute__((always_inline))

#define QAV_NA 32 /* activation rows per chunk (multiple of 4) */
#define QAV_KC 64 /* blocks of k per chunk: the tile's stack tables are 26 KiB */
/* Float products: activation rows per chunk, about 256 KiB so they stay in L2. */
#define QAV_ACT_CHUNK_BYTES (256u * 1024u)

typedef struct {
    int bsz;    /* weight block bytes */
    int qs;     /* offset of qs in the weight block */
    int qh;     /* offset of qh, or 0 */
    int off;    /* _0 types on the unsigned path: x = (q - off)*d */
    int has_m;  /* _1 type: min m at offset 2, Q8_1 activations */
    int h16;    /* small q: int16 sums of products fit, widen late (see fold) */
} quant_av_wfmt;

QAV_INLINE quant_av_wfmt quant_av_fmt(int T)
{
    switch (T) {
    case QT_Q4_0: return (quant_av_wfmt){18, 2, 0, 8, 0, 1};
    case QT_Q4_1: return (quant_av_wfmt){20, 4, 0, 0, 1, 1};
    case QT_Q5_0: return (quant_av_wfmt){22, 6, 2, 16, 0, 0};
    case QT_Q5_1: return (quant_av_wfmt){24, 8, 4, 0, 1, 0};
    default: return (quant_av_wfmt){34, 2, 0, 0, 0, 0}; /* QT_Q8_0, signed */
    }
}

static inline uint16_t quant_av_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* 16 packed bytes -> 32 bytes: low nibbles first, then high nibbles. */
QAV_INLINE __m256i quant_av_nibbles(const uint8_t *qs)
{
    __m128i x = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(x, 4), x);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* 32 bits -> 32 bytes, 0xff where the bit is set. */
QAV_INLINE __m256i quant_av_bits(const uint8_t *qh)
{
    uint32_t v;
    memcpy(&v, qh, 4);
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                            0x0303030303030303LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* One weight block -> 32 bytes: signed q for Q8_0, unsigned q otherwise. */
QAV_INLINE __m256i quant_av_unpack(int T, const uint8_t *x)
{
    const quant_av_wfmt f = quant_av_fmt(T);
    if (T == QT_Q8_0)
        return _mm256_loadu_si256((const __m256i *)(x + 2));
    __m256i q = quant_av_nibbles(x + f.qs);
    if (f.qh)
        q = _mm256_or_si256(q, _mm256_and_si256(quant_av_bits(x + f.qh), _mm256_set1_epi8(0x10)));
    return q;
}

/* int16 products, adjacent pairs summed: w . a over one block. */
QAV_INLINE __m256i quant_av_mul(int T, __m256i w, __m256i a, __m256i a_abs)
{
    if (T == QT_Q8_0)
        return _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(w, a));
    return _mm256_maddubs_epi16(w, a);
}

/* Four rows' int16 products -> int32 [r0 r1 r2 r3 | r0 r1 r2 r3] where
 * lane i holds row i's sum over elements 0..15 and lane i+4 over 16..31.
 * Unpack+add trees rather than hadd (two cycles each on Zen 3). With small
 * weights (|product pair| <= 2*31*127 = 7874) four int16 of one row are
 * summed before the one madd that widens to int32 (4*7874 < 32768); Q8_0's
 * products are too large for that and widen first. */
QAV_INLINE __m256i quant_av_fold(int h16, __m256i p0, __m256i p1, __m256i p2, __m256i p3)
{
    const __m256i ones = _mm256_set1_epi16(1);
    if (h16) {
        /* each int32 slot keeps an int16 pair of one row */
        __m256i s01 = _mm256_add_epi16(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
        __m256i s23 = _mm256_add_epi16(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
        __m256i s = _mm256_add_epi16(_mm256_unpacklo_epi64(s01, s23),
                                     _mm256_unpackhi_epi64(s01, s23));
        return _mm256_madd_epi16(s, ones);
    }
    p0 = _mm256_madd_epi16(p0, ones);
    p1 = _mm256_madd_epi16(p1, ones);
    p2 = _mm256_madd_epi16(p2, ones);
    p3 = _mm256_madd_epi16(p3, ones);
    __m256i s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    __m256i s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

/* Four halves (at p0..p3) -> 4 floats. */
QAV_INLINE __m128 quant_av_h4(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                              const uint8_t *p3)
{
    __m128i h = _mm_cvtsi32_si128((int)(quant_av_u16(p0) | (uint32_t)quant_av_u16(p1) << 16));
    h = _mm_insert_epi32(h, (int)(quant_av_u16(p2) | (uint32_t)quant_av_u16(p3) << 16), 1);
    return _mm_cvtph_ps(h);
}

/* Broadcast lane j (< 4) within each 128-bit half. */
QAV_INLINE __m256i quant_av_lane_i(__m256i v, int j)
{
    switch (j) {
    case 0: return _mm256_shuffle_epi32(v, 0x00);
    case 1: return _mm256_shuffle_epi32(v, 0x55);
    case 2: return _mm256_shuffle_epi32(v, 0xaa);
    default: return _mm256_shuffle_epi32(v, 0xff);
    }
}

/* Per-block tables for QAV_KC blocks: activation rows [t0, t0+QAV_NA) as
 * [block][row], weight group as [block][row 0..3]. */
typedef struct {
    _Alignas(32) float da[QAV_KC][QAV_NA];
    union {
        /* _0 types: off * sum(q_a) over elements 0..15 ([0]) and 16..31 ([1]),
         * matching the two halves of the folded lanes so that each lane is
         * the exact signed half-block dot (no cancellation between lanes) */
        int32_t corr[QAV_KC][2][QAV_NA];
        float sa[QAV_KC][QAV_NA];     /* _1 types: s of the Q8_1 block */
    } x;
    _Alignas(16) float dw[QAV_KC][4];
    _Alignas(16) float mw[QAV_KC][4]; /* _1 types: m of the weight block */
} quant_av_tabs;

/* The register tile over nb blocks: out[j*4 + i] = dot(w row i, act row j)
 * for i < 4, j < RN; w[i], a[j] point at the chunk's first block, jt is
 * the column of act row 0 in the tables. */
QAV_INLINE void quant_av_tile(int T, int RN, int64_t nb, const uint8_t *const w[4],
                              const uint8_t *const a[4], const quant_av_tabs *tb, int jt,
                              float out[16])
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const int absz = f.has_m ? 36 : 34; /* Q8_1 : Q8_0 block bytes */
    const int aqs = f.has_m ? 4 : 2;
    const __m256i low4 = _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * (size_t)f.bsz, ao = (size_t)b * (size_t)absz;
        const __m256i q0 = quant_av_unpack(T, w[0] + wo), q1 = quant_av_unpack(T, w[1] + wo);
        const __m256i q2 = quant_av_unpack(T, w[2] + wo), q3 = quant_av_unpack(T, w[3] + wo);
        const __m256 d8 = _mm256_broadcast_ps((const __m128 *)tb->dw[b]);
        __m256 m8 = _mm256_setzero_ps();
        __m256i c4 = _mm256_setzero_si256();
        if (f.has_m) {
            m8 = _mm256_and_ps(_mm256_castsi256_ps(low4),
                               _mm256_broadcast_ps((const __m128 *)tb->mw[b]));
        } else if (f.off) {
            c4 = _mm256_loadu2_m128i((const __m128i *)&tb->x.corr[b][1][jt],
                                     (const __m128i *)&tb->x.corr[b][0][jt]);
        }
        /* acc0..acc3 are named, not an array: gcc kept an array on the stack,
         * which put a store-to-load round trip into every FMA chain. */
#define QAV_STEP(j, acc)                                                                     \
    if ((j) < RN) {                                                                          \
        const __m256i av = _mm256_loadu_si256((const __m256i *)(a[j] + ao + aqs));           \
        const __m256i aa = T == QT_Q8_0 ? _mm256_sign_epi8(av, av) : av;                     \
        __m256i si = quant_av_fold(T != QT_Q8_0, quant_av_mul(T, q0, av, aa), quant_av_mul(T, q1, av, aa), \
                                   quant_av_mul(T, q2, av, aa), quant_av_mul(T, q3, av, aa)); \
        if (f.off) /* exact: subtract off*sum(a) per half-block lane */                      \
            si = _mm256_sub_epi32(si, quant_av_lane_i(c4, j));                               \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si),                                     \
                              _mm256_mul_ps(d8, _mm256_broadcast_ss(&tb->da[b][jt + (j)])),  \
                              acc);                                                          \
        if (f.has_m)                                                                         \
            acc = _mm256_fmadd_ps(m8, _mm256_broadcast_ss(&tb->x.sa[b][jt + (j)]), acc);     \
    }
        QAV_STEP(0, acc0)
        QAV_STEP(1, acc1)
        QAV_STEP(2, acc2)
        QAV_STEP(3, acc3)
#undef QAV_STEP
    }
    const __m256 accs[4] = {acc0, acc1, acc2, acc3};
    for (int j = 0; j < RN; j++) {
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(accs[j]), _mm256_extractf128_ps(accs[j], 1));
        _mm_storeu_ps(out + 4 * j, r);
    }
}

/* Activation tables for rows a_rows[0..na) (na <= QAV_NA), blocks [b0, b0+nb). */
QAV_INLINE void quant_av_act_tabs(int T, const uint8_t *a, size_t a_stride, int na, int64_t b0,
                                  int64_t nb, quant_av_tabs *tb)
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    const __m128i bias = _mm_set1_epi8((char)0x80);
    for (int t = 0; t < na; t++) {
        const uint8_t *row = a + (size_t)t * a_stride;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)(b0 + b) * absz;
            tb->da[b][t] = _cvtsh_ss(quant_av_u16(blk));
            if (f.has_m) {
                tb->x.sa[b][t] = _cvtsh_ss(quant_av_u16(blk + 2));
            } else if (f.off) {
                /* sum of 16 signed bytes: sad of the bytes offset to unsigned */
                __m128i lo = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(blk + 2)), bias),
                                          _mm_setzero_si128());
                __m128i hi = _mm_sad_epu8(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(blk + 18)), bias),
                                          _mm_setzero_si128());
                tb->x.corr[b][0][t] = f.off * (_mm_cvtsi128_si32(lo) + _mm_extract_epi16(lo, 4) - 16 * 128);
                tb->x.corr[b][1][t] = f.off * (_mm_cvtsi128_si32(hi) + _mm_extract_epi16(hi, 4) - 16 * 128);
            }
        }
    }
    /* rows past na repeat the last one, so whole tiles can be loaded */
    for (int t = na; t < ((na + 3) & ~3); t++)
        for (int64_t b = 0; b < nb; b++) {
            tb->da[b][t] = tb->da[b][na - 1];
            if (f.has_m) {
                tb->x.sa[b][t] = tb->x.sa[b][na - 1];
            } else {
                tb->x.corr[b][0][t] = tb->x.corr[b][0][na - 1];
                tb->x.corr[b][1][t] = tb->x.corr[b][1][na - 1];
            }
        }
}

QAV_INLINE void quant_av_gemm_q(int T, int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                                const void *a, size_t a_stride, int64_t n_act, float *y,
                                size_t y_stride)
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const int64_t nbt = k / 32;
    quant_av_tabs tb;
    for (int64_t b0 = 0; b0 < nbt; b0 += QAV_KC) {
        const int64_t nb = nbt - b0 < QAV_KC ? nbt - b0 : QAV_KC;
        const int first = b0 == 0; /* later k chunks add to y */
        for (int64_t t0 = 0; t0 < n_act; t0 += QAV_NA) {
            const int na = n_act - t0 < QAV_NA ? (int)(n_act - t0) : QAV_NA;
            const uint8_t *at0 = (const uint8_t *)a + (size_t)t0 * a_stride;
            quant_av_act_tabs(T, at0, a_stride, na, b0, nb, &tb);
            for (int64_t r0 = 0; r0 < n_rows; r0 += 4) {
                /* rows past the end repeat the last one; their results are dropped */
                const uint8_t *wr[4];
                for (int i = 0; i < 4; i++) {
                    int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                    wr[i] = (const uint8_t *)w + (size_t)r * w_stride + (size_t)b0 * (size_t)f.bsz;
                }
                const int nr = n_rows - r0 < 4 ? (int)(n_rows - r0) : 4;
                /* Prefetch a later group while this one computes: the weight
                 * slice is larger than L2, so each group comes from L3/DRAM.
                 * Decode has little work per group and looks further ahead. */
                const int64_t rp = r0 + (n_act <= 4 ? 16 : 4);
                const uint8_t *wp = rp + 3 < n_rows
                                        ? (const uint8_t *)w + (size_t)rp * w_stride +
                                              (size_t)b0 * (size_t)f.bsz
                                        : NULL;
                for (int64_t b = 0; b < nb; b++) {
                    const size_t o = (size_t)b * (size_t)f.bsz;
                    _mm_store_ps(tb.dw[b], quant_av_h4(wr[0] + o, wr[1] + o, wr[2] + o, wr[3] + o));
                    if (f.has_m)
                        _mm_store_ps(tb.mw[b], quant_av_h4(wr[0] + o + 2, wr[1] + o + 2,
                                                           wr[2] + o + 2, wr[3] + o + 2));
                }
                if (wp)
                    for (int i = 0; i < 4; i++)
                        for (size_t o = 0; o < (size_t)nb * (size_t)f.bsz; o += 64)
                            _mm_prefetch((const char *)(wp + (size_t)i * w_stride + o),
                                         _MM_HINT_T0);
                for (int t = 0; t < na; t += 4) {
                    const uint8_t *ar[4];
                    const int nt = na - t < 4 ? na - t : 4;
                    for (int j = 0; j < 4; j++)
                        ar[j] = at0 + (size_t)(t + (j < nt ? j : nt - 1)) * a_stride +
                                (size_t)b0 * (f.has_m ? 36u : 34u);
                    float out[16];
                    switch (nt) {
                    case 1: quant_av_tile(T, 1, nb, wr, ar, &tb, t, out); break;
                    case 2: quant_av_tile(T, 2, nb, wr, ar, &tb, t, out); break;
                    case 3: quant_av_tile(T, 3, nb, wr, ar, &tb, t, out); break;
                    default: quant_av_tile(T, 4, nb, wr, ar, &tb, t, out); break;
                    }
                    for (int j = 0; j < nt; j++) {
                        float *yt = y + (size_t)(t0 + t + j) * y_stride + (size_t)r0;
                        for (int i = 0; i < nr; i++)
                            yt[i] = first ? out[4 * j + i] : yt[i] + out[4 * j + i];
                    }
                }
            }
        }
    }
}

/* ---- many activation rows (prefill): repacked 8-row weight panels ----------
 *
 * For prefill the horizontal reductions of the tile above cost more than the
 * multiplies. Here 8 weight rows are unpacked and transposed once per k
 * chunk into a stack panel whose vector g holds elements 4g..4g+3 of each of
 * the 8 rows; the matching 4 activation bytes are broadcast to all 8 lanes.
 * maddubs+accumulate then leaves row r's block dot in lane r: no horizontal
 * sums at all, one or two madds and one FMA per (8 rows, activation row,
 * block).
 * The panel is reused by every activation row of the chunk (QAV_PNA).
 * Q8_0 uses the sign trick per product and widens to int32 right away. */
#define QAV_PKC 32 /* blocks per panel */
#define QAV_PNA 64 /* activation rows per table chunk (multiple of 4); 26 KiB */

typedef struct {
    _Alignas(32) uint8_t wq[QAV_PKC][8][32]; /* [block][g][row*4 + e] = q_row[4g + e] */
    _Alignas(32) float dw[QAV_PKC][8];
    _Alignas(32) float mw[QAV_PKC][8]; /* _1 types: m */
    float da[QAV_PKC][QAV_PNA];
    union {
        int32_t corr[QAV_PKC][QAV_PNA]; /* _0 types: off * sum(q_a) */
        float sa[QAV_PKC][QAV_PNA];     /* _1 types: s */
    } x;
} quant_av_panel;

/* An empty asm that "changes" v: keeps gcc from reassociating a chain of
 * integer adds into a tree, which made it compute all 32 products of a block
 * first and spill them. */
#define QAV_KEEP(v) __asm__("" : "+x"(v))

/* acc[j] lanes r = dot(row r, act row j) over nb blocks, j < RN <= 4. */
QAV_INLINE void quant_av_panel_tile(int T, int RN, int64_t nb, const quant_av_panel *pn,
                                    const uint8_t *const a[4], int jt, __m256 acc[4])
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const int absz = f.has_m ? 36 : 34, aqs = f.has_m ? 4 : 2;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t b = 0; b < nb; b++) {
        const size_t ao = (size_t)b * (size_t)absz + (size_t)aqs;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0; /* int16 */
        __m256i w0 = s0, w1 = s0, w2 = s0, w3 = s0;                     /* int32 */
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i wg = _mm256_load_si256((const __m256i *)pn->wq[b][g]);
            if (T == QT_Q8_0) {
                /* signed x signed: the sign trick, widened to int32 at once
                 * (one product pair can reach 2*127*127) */
                const __m256i wa = _mm256_sign_epi8(wg, wg);
#define QAV_P(j, wj)                                                                        \
    if ((j) < RN) {                                                                         \
        int32_t v;                                                                          \
        memcpy(&v, a[j] + ao + 4 * g, 4);                                                   \
        const __m256i p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(_mm256_set1_epi32(v), wg)); \
        wj = _mm256_add_epi32(wj, _mm256_madd_epi16(p, ones));                              \
        QAV_KEEP(wj);                                                                       \
    }
                QAV_P(0, w0) QAV_P(1, w1) QAV_P(2, w2) QAV_P(3, w3)
#undef QAV_P
                continue;
            }
#define QAV_P(j, sj)                                                                        \
    if ((j) < RN) {                                                                         \
        int32_t v;                                                                          \
        memcpy(&v, a[j] + ao + 4 * g, 4);                                                   \
        sj = _mm256_add_epi16(sj, _mm256_maddubs_epi16(wg, _mm256_set1_epi32(v)));          \
        QAV_KEEP(sj);                                                                       \
    }
            QAV_P(0, s0) QAV_P(1, s1) QAV_P(2, s2) QAV_P(3, s3)
#undef QAV_P
            /* int16 holds 8 sums of 4-bit q (8*2*15*127) but only 4 of 5-bit ones */
            if (g == 7 || (!f.h16 && g == 3)) {
                w0 = _mm256_add_epi32(w0, _mm256_madd_epi16(s0, ones));
                if (RN > 1) w1 = _mm256_add_epi32(w1, _mm256_madd_epi16(s1, ones));
                if (RN > 2) w2 = _mm256_add_epi32(w2, _mm256_madd_epi16(s2, ones));
                if (RN > 3) w3 = _mm256_add_epi32(w3, _mm256_madd_epi16(s3, ones));
                s0 = s1 = s2 = s3 = _mm256_setzero_si256();
            }
        }
        const __m256 d8 = _mm256_load_ps(pn->dw[b]);
#define QAV_F(j, wj, cj)                                                                    \
    if ((j) < RN) {                                                                         \
        if (f.off)                                                                          \
            wj = _mm256_sub_epi32(wj, _mm256_set1_epi32(pn->x.corr[b][jt + (j)]));         \
        cj = _mm256_fmadd_ps(_mm256_cvtepi32_ps(wj),                                        \
                             _mm256_mul_ps(d8, _mm256_broadcast_ss(&pn->da[b][jt + (j)])), cj); \
        if (f.has_m)                                                                        \
            cj = _mm256_fmadd_ps(_mm256_load_ps(pn->mw[b]),                                 \
                                 _mm256_broadcast_ss(&pn->x.sa[b][jt + (j)]), cj);          \
    }
        QAV_F(0, w0, c0) QAV_F(1, w1, c1) QAV_F(2, w2, c2) QAV_F(3, w3, c3)
#undef QAV_F
    }
    acc[0] = c0;
    acc[1] = c1;
    acc[2] = c2;
    acc[3] = c3;
}

QAV_INLINE void quant_av_gemm_panel(int T, int64_t k, const void *w, size_t w_stride,
                                    int64_t n_rows, const void *a, size_t a_stride,
                                    int64_t n_act, float *y, size_t y_stride)
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const size_t absz = f.has_m ? 36 : 34;
    const int64_t nbt = k / 32;
    quant_av_panel pn;
    for (int64_t b0 = 0; b0 < nbt; b0 += QAV_PKC) {
        const int64_t nb = nbt - b0 < QAV_PKC ? nbt - b0 : QAV_PKC;
        const int first = b0 == 0; /* later k chunks add to y */
        for (int64_t t0 = 0; t0 < n_act; t0 += QAV_PNA) {
            const int na = n_act - t0 < QAV_PNA ? (int)(n_act - t0) : QAV_PNA;
            const uint8_t *at0 = (const uint8_t *)a + (size_t)t0 * a_stride;
            for (int t = 0; t < na; t++) {
                const uint8_t *row = at0 + (size_t)t * a_stride + (size_t)b0 * absz;
                for (int64_t b = 0; b < nb; b++) {
                    const uint8_t *blk = row + (size_t)b * absz;
                    pn.da[b][t] = _cvtsh_ss(quant_av_u16(blk));
                    if (f.has_m) {
                        pn.x.sa[b][t] = _cvtsh_ss(quant_av_u16(blk + 2));
                    } else {
                        int sum = 0;
                        for (int e = 0; e < 32; e++)
                            sum += (int8_t)blk[2 + e];
                        pn.x.corr[b][t] = f.off * sum;
                    }
                }
            }
            for (int64_t r0 = 0; r0 < n_rows; r0 += 8) {
                /* rows past the end repeat the last one; their results are dropped */
                const uint8_t *wr[8];
                for (int i = 0; i < 8; i++) {
                    int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                    wr[i] = (const uint8_t *)w + (size_t)r * w_stride + (size_t)b0 * (size_t)f.bsz;
                }
                const int nr = n_rows - r0 < 8 ? (int)(n_rows - r0) : 8;
                /* the next panel's rows come from L3/DRAM: ask for them now */
                if (r0 + 16 <= n_rows)
                    for (int i = 0; i < 8; i++)
                        for (size_t o = 0; o < (size_t)nb * (size_t)f.bsz; o += 64)
                            _mm_prefetch((const char *)(wr[i] + 8 * w_stride + o), _MM_HINT_T0);
                for (int64_t b = 0; b < nb; b++) {
                    __m256i q[8];
                    for (int i = 0; i < 8; i++) {
                        const uint8_t *blk = wr[i] + (size_t)b * (size_t)f.bsz;
                        q[i] = quant_av_unpack(T, blk);
                        pn.dw[b][i] = _cvtsh_ss(quant_av_u16(blk));
                        if (f.has_m)
                            pn.mw[b][i] = _cvtsh_ss(quant_av_u16(blk + 2));
                    }
                    quant_x86_transpose8(q);
                    for (int g = 0; g < 8; g++)
                        _mm256_store_si256((__m256i *)pn.wq[b][g], q[g]);
                }
                for (int t = 0; t < na; t += 4) {
                    const uint8_t *ar[4];
                    const int nt = na - t < 4 ? na - t : 4;
                    for (int j = 0; j < 4; j++)
                        ar[j] = at0 + (size_t)(t + (j < nt ? j : nt - 1)) * a_stride +
                                (size_t)b0 * absz;
                    __m256 acc[4];
                    switch (nt) {
                    case 1: quant_av_panel_tile(T, 1, nb, &pn, ar, t, acc); break;
                    case 2: quant_av_panel_tile(T, 2, nb, &pn, ar, t, acc); break;
                    case 3: quant_av_panel_tile(T, 3, nb, &pn, ar, t, acc); break;
                    default: quant_av_panel_tile(T, 4, nb, &pn, ar, t, acc); break;
                    }
                    for (int j = 0; j < nt; j++) {
                        float *yt = y + (size_t)(t0 + t + j) * y_stride + (size_t)r0;
                        if (nr == 8) {
                            __m256 v = acc[j];
                            if (!first)
                                v = _mm256_add_ps(v, _mm256_loadu_ps(yt));
                            _mm256_storeu_ps(yt, v);
                        } else {
                            float o[8];
                            _mm256_storeu_ps(o, acc[j]);
                            for (int i = 0; i < nr; i++)
                                yt[i] = first ? o[i] : yt[i] + o[i];
                        }
                    }
                }
            }
        }
    }
}

/* Panels pay for their repacking from this many activation rows on
 * (measured on Zen 3, 4864x896 weights: 8 for 4/5-bit q, 16 for Q8_0). */
#define QAV_PANEL_MIN_ACT(T) ((T) == QT_Q8_0 ? 16 : 8)

#define QAV_GEMM(name, T)                                                                   \
    static void quant_av_gemm_##name(int64_t k, const void *w, size_t w_stride,            \
                                     int64_t n_rows, const void *a, size_t a_stride,       \
                                     int64_t n_act, float *y, size_t y_stride)             \
    {                                                                                      \
        if (k < 32) { /* no block: the (empty) dots are 0, as in the scalar code */        \
            for (int64_t t = 0; t < n_act; t++)                                            \
                for (int64_t r = 0; r < n_rows; r++)                                       \
                    y[(size_t)t * y_stride + (size_t)r] = 0.0f;                            \
            return;                                                                        \
        }                                                                                  \
        if (n_act >= QAV_PANEL_MIN_ACT(T))                                                 \
            quant_av_gemm_panel(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride); \
        else                                                                               \
            quant_av_gemm_q(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);   \
    }
QAV_GEMM(q4_0, QT_Q4_0)
QAV_GEMM(q4_1, QT_Q4_1)
QAV_GEMM(q5_0, QT_Q5_0)
QAV_GEMM(q5_1, QT_Q5_1)
QAV_GEMM(q8_0, QT_Q8_0)

/* ---- float weights (F32, F16) x F32 activations ------------------------- */

static inline float quant_av_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

QAV_INLINE __m256 quant_av_load8(int T, const void *w, int64_t i)
{
    if (T == QT_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    return _mm256_loadu_ps((const float *)w + i);
}

QAV_INLINE float quant_av_load1(int T, const void *w, int64_t i)
{
    if (T == QT_F16)
        return quant_f16_to_f32(((const uint16_t *)w)[i]);
    return ((const float *)w)[i];
}

/* out[j*4 + i] = dot(w[i], a[j]), i < 4, j < RN (RN <= 3: 12 accumulators,
 * named rather than an array, which gcc kept on the stack). */
QAV_INLINE void quant_av_ftile(int T, int RN, int64_t k, const void *const w[4],
                               const float *const a[3], float out[12])
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    int64_t e = 0;
    for (; e + 8 <= k; e += 8) {
        const __m256 w0 = quant_av_load8(T, w[0], e), w1 = quant_av_load8(T, w[1], e);
        const __m256 w2 = quant_av_load8(T, w[2], e), w3 = quant_av_load8(T, w[3], e);
#define QAV_FSTEP(j, x0, x1, x2, x3)                                                        \
    if ((j) < RN) {                                                                         \
        const __m256 av = _mm256_loadu_ps(a[j] + e);                                        \
        x0 = _mm256_fmadd_ps(w0, av, x0);                                                   \
        x1 = _mm256_fmadd_ps(w1, av, x1);                                                   \
        x2 = _mm256_fmadd_ps(w2, av, x2);                                                   \
        x3 = _mm256_fmadd_ps(w3, av, x3);                                                   \
    }
        QAV_FSTEP(0, c00, c01, c02, c03)
        QAV_FSTEP(1, c10, c11, c12, c13)
        QAV_FSTEP(2, c20, c21, c22, c23)
#undef QAV_FSTEP
    }
    const __m256 acc[3][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23}};
    for (int j = 0; j < RN; j++) {
        for (int i = 0; i < 4; i++) {
            float s = quant_av_hsum(acc[j][i]);
            for (int64_t t = e; t < k; t++)
                s += quant_av_load1(T, w[i], t) * a[j][t];
            out[4 * j + i] = s;
        }
    }
}

QAV_INLINE void quant_av_gemm_f(int T, int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                                const void *a, size_t a_stride, int64_t n_act, float *y,
                                size_t y_stride)
{
    int64_t chunk = (int64_t)(QAV_ACT_CHUNK_BYTES / (a_stride ? a_stride : 1));
    chunk = chunk < 3 ? 3 : chunk - chunk % 3;
    for (int64_t t0 = 0; t0 < n_act; t0 += chunk) {
        const int64_t t1 = t0 + chunk < n_act ? t0 + chunk : n_act;
        for (int64_t r0 = 0; r0 < n_rows; r0 += 4) {
            const void *wr[4];
            for (int i = 0; i < 4; i++) {
                int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                wr[i] = (const uint8_t *)w + (size_t)r * w_stride;
            }
            const int nr = n_rows - r0 < 4 ? (int)(n_rows - r0) : 4;
            for (int64_t t = t0; t < t1; t += 3) {
                const float *ar[3];
                const int na = t1 - t < 3 ? (int)(t1 - t) : 3;
                for (int j = 0; j < 3; j++)
                    ar[j] = (const float *)((const uint8_t *)a +
                                            (size_t)(t + (j < na ? j : na - 1)) * a_stride);
                float out[12];
                switch (na) {
                case 1: quant_av_ftile(T, 1, k, wr, ar, out); break;
                case 2: quant_av_ftile(T, 2, k, wr, ar, out); break;
                default: quant_av_ftile(T, 3, k, wr, ar, out); break;
                }
                for (int j = 0; j < na; j++)
                    for (int i = 0; i < nr; i++)
                        y[(size_t)(t + j) * y_stride + (size_t)(r0 + i)] = out[4 * j + i];
            }
        }
    }
}

static void quant_av_gemm_f32(int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                              const void *a, size_t a_stride, int64_t n_act, float *y,
                              size_t y_stride)
{
    quant_av_gemm_f(QT_F32, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

static void quant_av_gemm_f16(int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                              const void *a, size_t a_stride, int64_t n_act, float *y,
                              size_t y_stride)
{
    quant_av_gemm_f(QT_F16, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);
}

/* ---- activation quantizers (bit-identical to the scalar reference) ------ */

/* roundf: half away from zero, unlike _mm256_round_ps's nearest-even. */
static inline __m256 quant_av_roundf(__m256 x)
{
    const __m256 t = _mm256_round_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(x, t));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(sign, _mm256_set1_ps(1.0f))));
}

/* One block of 32 floats -> 32 int8 stored at qs; returns d; *sum = sum(q). */
static inline float quant_av_q8_block(const float *x, int8_t *qs, int *sum)
{
    const __m256 nz = _mm256_set1_ps(-0.0f);
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        m = _mm256_max_ps(_mm256_andnot_ps(nz, v[i]), m); /* this order skips NaNs */
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float d = _mm_cvtss_f32(m4) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 r = quant_av_roundf(_mm256_mul_ps(v[i], idv));
        r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN -> 0, as in the scalar code */
        q[i] = _mm256_cvttps_epi32(r);
    }
    /* packs interleave 128-bit lanes; the permute restores element order */
    __m256i q01 = _mm256_packs_epi32(q[0], q[1]), q23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i s = _mm256_madd_epi16(_mm256_add_epi16(q01, q23), _mm256_set1_epi16(1));
    __m256i b = _mm256_packs_epi16(q01, q23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, b);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    *sum = _mm_cvtsi128_si32(s4);
    return d;
}

static void quant_av_act_q8_0(const float *x, void *y, int64_t n)
{
    quant_block_q8_0 *yb = y;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sum;
        float d = quant_av_q8_block(x + b * QK8_0, yb[b].qs, &sum);
        yb[b].d = quant_f32_to_f16(d);
    }
}

static void quant_av_act_q8_1(const float *x, void *y, int64_t n)
{
    quant_block_q8_1 *yb = y;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        int sum;
        float d = quant_av_q8_block(x + b * QK8_1, yb[b].qs, &sum);
        yb[b].d = quant_f32_to_f16(d);
        yb[b].s = quant_f32_to_f16((float)sum * d);
    }
}

void quant_fill_avx2_legacy(quant_kernels *k)
{
    k->gemm[QT_Q4_0] = quant_av_gemm_q4_0;
    k->gemm[QT_Q4_1] = quant_av_gemm_q4_1;
    k->gemm[QT_Q5_0] = quant_av_gemm_q5_0;
    k->gemm[QT_Q5_1] = quant_av_gemm_q5_1;
    k->gemm[QT_Q8_0] = quant_av_gemm_q8_0;
    k->gemm[QT_F32] = quant_av_gemm_f32;
    k->gemm[QT_F16] = quant_av_gemm_f16;
    k->act[QT_Q8_0] = quant_av_act_q8_0;
    k->act[QT_Q8_1] = quant_av_act_q8_1;
}
