/* quant_k_avx512.c: AVX-512 VNNI prefill kernels for the K-quants (Q4_K,
 * Q5_K, Q6_K weights times Q8_K activation rows).
 *
 * Why: as in quant_legacy_avx512.c, VPDPBUSD (u8 x s8, 4 products summed
 * into an int32 lane, accumulating; s8 operand broadcast from memory)
 * replaces the maddubs/madd chains of the AVX2 tiles.
 *
 * How (many activation rows): 16 weight rows x QKX_PSB super-blocks are
 * unpacked to unsigned bytes (Q4_K 0..15, Q5_K 0..31, Q6_K q+32 = 0..63)
 * and transposed once into a stack panel: zmm vector g of a super-block
 * holds elements 4g..4g+3 of each of the 16 rows (row r in dword lane r).
 * Per activation row and sub-block (32 elements for Q4_K/Q5_K, 16 for
 * Q6_K) dpbusd with broadcast activation dwords gives the 16 rows' exact
 * integer dots, which vpmulld scales by the rows' sub-block scales into an
 * int32 super-block sum. The other per-sub-block term is a dot of 16-bit
 * pairs, one vpdpwssd per pair with the Q8_K bsums broadcast:
 *   Q4_K, Q5_K: sum_j m_j * (bsums[2j] + bsums[2j+1]) (pairs (m_j, m_j)),
 *               scaled by dmin in float;
 *   Q6_K:       sum_g sc_g * bsums[g] (pairs (sc_2j, sc_2j+1)), times 32
 *               subtracted in int32: the q+32 offset.
 * Integer sums are exact (Q6_K, the largest: 16 groups x 128 x 16*63*128
 * < 2^31); results differ from the scalar kernels only in the order of
 * float additions. Measured on Zen 4 (EPYC), one thread, 896x4864 weights
 * x 128 activation rows: about 2.5x-3x the AVX2 tiles for all three types.
 *
 * Few activation rows (decode): the AVX2 kernels, kept by
 * quant_fill_avx512_k from the table it starts from.
 *
 * No allocation; about 24 KiB of stack per call.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"
#include "quant_x86.h"

#define QKX_INLINE static inline __attribute__((always_inline))

#define QKX_PSB 4 /* super-blocks of k per panel */
#define QKX_RN 4  /* activation rows per register tile */

typedef struct {
    _Alignas(64) uint8_t wq[QKX_PSB][64][64]; /* [sb][g][row*4 + e] = u_row[4g + e], 16 rows */
    _Alignas(64) int32_t sc[QKX_PSB][16][16]; /* [sb][sub-block][row] scale (Q4/5_K: 8 used) */
    _Alignas(64) int32_t pr[QKX_PSB][8][16];  /* [sb][pair][row] int16 pairs, see above */
    _Alignas(64) float d[QKX_PSB][16];
    _Alignas(64) float dmin[QKX_PSB][16];
} quant_kx_panel;

QKX_INLINE size_t quant_kx_bsz(int T)
{
    return T == QT_Q4_K ? sizeof(quant_block_q4_K) : T == QT_Q5_K ? sizeof(quant_block_q5_K)
                                                                  : sizeof(quant_block_q6_K);
}

static inline uint16_t quant_kx_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One super-block -> 8 vectors of 32 unsigned q (elements 32s..32s+31). */
QKX_INLINE void quant_kx_unpack(int T, const uint8_t *x, __m256i q[8])
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    if (T == QT_Q6_K) {
        const __m256i m30 = _mm256_set1_epi8(0x30);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(x + 128 + 32 * h));
            q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
            q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        }
        return;
    }
    const size_t qs = T == QT_Q4_K ? offsetof(quant_block_q4_K, qs) : offsetof(quant_block_q5_K, qs);
    const __m256i qh = T == QT_Q5_K ? _mm256_loadu_si256((const __m256i *)(x + offsetof(quant_block_q5_K, qh)))
                                    : _mm256_setzero_si256();
    for (int p = 0; p < 4; p++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(x + qs + 32 * p));
        q[2 * p] = _mm256_and_si256(raw, m4);
        q[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (T == QT_Q5_K) {
            /* bit 2p (2p+1) of qh byte l is the fifth bit of element l of sub-block 2p (2p+1) */
            const __mmask32 h0 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * p))));
            const __mmask32 h1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << (2 * p + 1))));
            q[2 * p] = _mm256_mask_add_epi8(q[2 * p], h0, q[2 * p], _mm256_set1_epi8(0x10));
            q[2 * p + 1] = _mm256_mask_add_epi8(q[2 * p + 1], h1, q[2 * p + 1], _mm256_set1_epi8(0x10));
        }
    }
}

/* Q4_K/Q5_K 12 scale bytes -> 8 6-bit scales and mins (ggml's packing:
 * pairs 0..3 in the low 6 bits of bytes 0..3 / 4..7, pairs 4..7 in the
 * nibbles of bytes 8..11 with their top 2 bits in the top of bytes 0..7). */
static inline void quant_kx_scale_min(const uint8_t *s, int sc[8], int mn[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0xf) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* Unpacks 16 rows (wr[i] at the chunk's first super-block) of nsb
 * super-blocks into the panel. */
QKX_INLINE void quant_kx_pack(int T, const uint8_t *const wr[16], int64_t nsb, quant_kx_panel *pn)
{
    const size_t bsz = quant_kx_bsz(T);
    for (int64_t b = 0; b < nsb; b++) {
        _Alignas(32) uint16_t dh[16], mh[16];
        for (int h = 0; h < 2; h++) {
            __m256i q[8][8]; /* [row][sub-block] */
            for (int i = 0; i < 8; i++) {
                const int r = 8 * h + i;
                const uint8_t *x = wr[r] + (size_t)b * bsz;
                quant_kx_unpack(T, x, q[i]);
                if (T == QT_Q6_K) {
                    const int8_t *s8 = (const int8_t *)(x + offsetof(quant_block_q6_K, scales));
                    for (int g = 0; g < 16; g++)
                        pn->sc[b][g][r] = s8[g];
                    for (int j = 0; j < 8; j++)
                        pn->pr[b][j][r] = (int32_t)((uint32_t)(uint16_t)s8[2 * j] |
                                                    (uint32_t)(uint16_t)s8[2 * j + 1] << 16);
                    dh[r] = quant_kx_u16(x + offsetof(quant_block_q6_K, d));
                } else {
                    int sc[8], mn[8];
                    quant_kx_scale_min(x + offsetof(quant_block_q4_K, scales), sc, mn);
                    for (int j = 0; j < 8; j++) {
                        pn->sc[b][j][r] = sc[j];
                        pn->pr[b][j][r] = mn[j] | mn[j] << 16;
                    }
                    dh[r] = quant_kx_u16(x);
                    mh[r] = quant_kx_u16(x + 2);
                }
            }
            for (int s = 0; s < 8; s++) {
                __m256i t[8];
                for (int i = 0; i < 8; i++)
                    t[i] = q[i][s];
                quant_x86_transpose8(t);
                for (int g = 0; g < 8; g++)
                    _mm256_store_si256((__m256i *)&pn->wq[b][8 * s + g][32 * h], t[g]);
            }
        }
        _mm512_store_ps(pn->d[b], _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)dh)));
        if (T != QT_Q6_K)
            _mm512_store_ps(pn->dmin[b], _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)mh)));
    }
}

/* y[j*y_stride + r] (lanes in keep) = (or += unless first) dot(row r, act
 * row j) over nsb super-blocks, j < RN <= QKX_RN; a[j] points at act row
 * j's first super-block of the chunk. */
QKX_INLINE void quant_kx_tile(int T, int RN, int64_t nsb, const quant_kx_panel *pn,
                              const uint8_t *const a[QKX_RN], float *y, size_t y_stride,
                              __mmask16 keep, int first)
{
    const size_t absz = sizeof(quant_block_q8_K);
    const size_t qs = offsetof(quant_block_q8_K, qs), bs = offsetof(quant_block_q8_K, bsums);
    const int ng = T == QT_Q6_K ? 4 : 8; /* dword groups per sub-block */
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t b = 0; b < nsb; b++) {
        const size_t ao = (size_t)b * absz;
        __m512i i0 = _mm512_setzero_si512(), i1 = i0, i2 = i0, i3 = i0; /* scaled sums */
        __m512i p0 = i0, p1 = i0, p2 = i0, p3 = i0;                     /* pair sums */
        __m512i t0 = _mm512_setzero_si512(), t1 = t0, t2 = t0, t3 = t0; /* one sub-block */
        /* one loop over the 64 dword groups (a constant trip count: gcc
         * ignores the unroll pragma on 64 / ng at -O1, an error with -Werror) */
#pragma GCC unroll 64
        for (int g = 0; g < 64; g++) {
            const __m512i wg = _mm512_load_si512((const void *)pn->wq[b][g]);
#define QKX_P(j, tj)                                                                        \
    if ((j) < RN) {                                                                         \
        int32_t v;                                                                          \
        memcpy(&v, a[j] + ao + qs + 4 * g, 4);                                              \
        tj = _mm512_dpbusd_epi32(tj, wg, _mm512_set1_epi32(v));                             \
    }
            QKX_P(0, t0) QKX_P(1, t1) QKX_P(2, t2) QKX_P(3, t3)
#undef QKX_P
            if (g % ng == ng - 1) { /* end of sub-block g / ng: scale it */
                const __m512i scv = _mm512_load_si512((const void *)pn->sc[b][g / ng]);
                if (RN > 0) i0 = _mm512_add_epi32(i0, _mm512_mullo_epi32(t0, scv));
                if (RN > 1) i1 = _mm512_add_epi32(i1, _mm512_mullo_epi32(t1, scv));
                if (RN > 2) i2 = _mm512_add_epi32(i2, _mm512_mullo_epi32(t2, scv));
                if (RN > 3) i3 = _mm512_add_epi32(i3, _mm512_mullo_epi32(t3, scv));
                t0 = t1 = t2 = t3 = _mm512_setzero_si512();
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m512i prv = _mm512_load_si512((const void *)pn->pr[b][j]);
#define QKX_W(jj, pj)                                                                       \
    if ((jj) < RN) {                                                                        \
        int32_t v;                                                                          \
        memcpy(&v, a[jj] + ao + bs + 4 * j, 4);                                             \
        pj = _mm512_dpwssd_epi32(pj, prv, _mm512_set1_epi32(v));                            \
    }
            QKX_W(0, p0) QKX_W(1, p1) QKX_W(2, p2) QKX_W(3, p3)
#undef QKX_W
        }
        const __m512 dv = _mm512_load_ps(pn->d[b]);
#define QKX_F(j, ij, pj, cj)                                                                \
    if ((j) < RN) {                                                                         \
        float da;                                                                           \
        memcpy(&da, a[j] + ao, 4);                                                          \
        const __m512 dab = _mm512_set1_ps(da);                                              \
        if (T == QT_Q6_K) {                                                                 \
            ij = _mm512_sub_epi32(ij, _mm512_slli_epi32(pj, 5));                            \
            cj = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ij), _mm512_mul_ps(dv, dab), cj);       \
        } else {                                                                            \
            cj = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ij), _mm512_mul_ps(dv, dab), cj);       \
            cj = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(pj),                                   \
                                  _mm512_mul_ps(_mm512_load_ps(pn->dmin[b]), dab), cj);     \
        }                                                                                   \
    }
        QKX_F(0, i0, p0, c0) QKX_F(1, i1, p1, c1) QKX_F(2, i2, p2, c2) QKX_F(3, i3, p3, c3)
#undef QKX_F
    }
#define QKX_S(j, cj)                                                                        \
    if ((j) < RN) {                                                                         \
        float *yj = y + (size_t)(j) * y_stride;                                             \
        __m512 v = first ? cj : _mm512_add_ps(cj, _mm512_maskz_loadu_ps(keep, yj));          \
        _mm512_mask_storeu_ps(yj, keep, v);                                                 \
    }
    QKX_S(0, c0) QKX_S(1, c1) QKX_S(2, c2) QKX_S(3, c3)
#undef QKX_S
}

QKX_INLINE void quant_kx_gemm_panel(int T, int64_t k, const void *w, size_t w_stride,
                                    int64_t n_rows, const void *a, size_t a_stride,
                                    int64_t n_act, float *y, size_t y_stride)
{
    const size_t bsz = quant_kx_bsz(T), absz = sizeof(quant_block_q8_K);
    const int64_t nbt = k / QK_K;
    quant_kx_panel pn;
    for (int64_t b0 = 0; b0 < nbt; b0 += QKX_PSB) {
        const int64_t nsb = nbt - b0 < QKX_PSB ? nbt - b0 : QKX_PSB;
        const int first = b0 == 0; /* later k chunks add to y */
        for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
            /* rows past the end repeat the last one; their results are dropped */
            const uint8_t *wr[16];
            for (int i = 0; i < 16; i++) {
                int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                wr[i] = (const uint8_t *)w + (size_t)r * w_stride + (size_t)b0 * bsz;
            }
            const int nr = n_rows - r0 < 16 ? (int)(n_rows - r0) : 16;
            /* the next panel's rows, into L2 (activations stream through L1) */
            if (r0 + 32 <= n_rows)
                for (int i = 0; i < 16; i++)
                    for (size_t o = 0; o < (size_t)nsb * bsz; o += 64)
                        _mm_prefetch((const char *)(wr[i] + 16 * w_stride + o), _MM_HINT_T1);
            quant_kx_pack(T, wr, nsb, &pn);
            const __mmask16 keep = (__mmask16)((1u << nr) - 1);
            for (int64_t t = 0; t < n_act; t += QKX_RN) {
                const uint8_t *ar[QKX_RN];
                const int nt = n_act - t < QKX_RN ? (int)(n_act - t) : QKX_RN;
                for (int j = 0; j < QKX_RN; j++)
                    ar[j] = (const uint8_t *)a + (size_t)(t + (j < nt ? j : nt - 1)) * a_stride +
                            (size_t)b0 * absz;
                float *yt = y + (size_t)t * y_stride + (size_t)r0;
                switch (nt) {
                case 1: quant_kx_tile(T, 1, nsb, &pn, ar, yt, y_stride, keep, first); break;
                case 2: quant_kx_tile(T, 2, nsb, &pn, ar, yt, y_stride, keep, first); break;
                case 3: quant_kx_tile(T, 3, nsb, &pn, ar, yt, y_stride, keep, first); break;
                default: quant_kx_tile(T, 4, nsb, &pn, ar, yt, y_stride, keep, first); break;
                }
            }
        }
    }
}

/* The table's previous (AVX2) entries, for few activation rows. Set once by
 * quant_fill_avx512_k (inside quant.c's pthread_once), only read afterwards. */
static quant_gemm_fn quant_kx_small[QT_COUNT];

/* Panels pay for their repacking from this many activation rows on
 * (measured on Zen 4, 896x4864 weights from DRAM: 1.1x-1.3x the AVX2 tiles
 * at 12, slower than them at 6..8 for Q4_K). */
#define QKX_PANEL_MIN_ACT 12

#define QKX_GEMM(name, T)                                                                   \
    static void quant_kx_gemm_##name(int64_t k, const void *w, size_t w_stride,            \
                                     int64_t n_rows, const void *a, size_t a_stride,       \
                                     int64_t n_act, float *y, size_t y_stride)             \
    {                                                                                      \
        if (k < QK_K || n_act < QKX_PANEL_MIN_ACT) {                                       \
            quant_kx_small[T](k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);    \
            return;                                                                        \
        }                                                                                  \
        quant_kx_gemm_panel(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);   \
    }
QKX_GEMM(q4_K, QT_Q4_K)
QKX_GEMM(q5_K, QT_Q5_K)
QKX_GEMM(q6_K, QT_Q6_K)

/* k must hold a complete table already (a copy of the AVX2 one): its entries
 * for these types become the few-activation-row fallbacks. */
void quant_fill_avx512_k(quant_kernels *k)
{
    quant_kx_small[QT_Q4_K] = k->gemm[QT_Q4_K];
    quant_kx_small[QT_Q5_K] = k->gemm[QT_Q5_K];
    quant_kx_small[QT_Q6_K] = k->gemm[QT_Q6_K];
    k->gemm[QT_Q4_K] = quant_kx_gemm_q4_K;
    k->gemm[QT_Q5_K] = quant_kx_gemm_q5_K;
    k->gemm[QT_Q6_K] = quant_kx_gemm_q6_K;
}
