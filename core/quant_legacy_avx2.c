/* quant_legacy_avx2.c: AVX2/FMA/F16C kernels for the legacy weight types.
 *
 * Quantized products (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 weights; Q8_0 or Q8_1
 * activations) all run through one register tile: 4 weight rows x up to 4
 * activation rows. Per 32-element block each weight row is unpacked once to
 * 32 int8 (signed q-offset for the _0 types, unsigned q for the _1 types) and
 * reused for every activation row of the tile:
 *   signed x signed:    maddubs(|a|, sign(w, a))  (the sign trick: maddubs
 *                       needs one unsigned operand; |a| <= 127 cannot saturate)
 *   unsigned x signed:  maddubs(w, a)             (w <= 31: no saturation)
 * then madd with ones gives 8 int32 partial sums per (row, act) pair. The four
 * pairs of one activation row are folded with two levels of hadd into one
 * vector whose lanes are [row0..row3 | row0..row3], so the conversion to
 * float and the d_w*d_a scaling cost one cvt and one FMA per 4 pairs instead
 * of per pair. The _1 types add m_w*s_a through a [m0..m3, 0 x4] vector.
 *
 * Decode (n_act == 1) is the same tile with one activation row: four weight
 * streams in flight, one horizontal reduction per 4 rows at the very end.
 * Prefill walks activation rows in chunks that stay in L2 and, inside a
 * chunk, keeps a 4-row weight group hot in L1 while all activation rows of
 * the chunk pass by it.
 *
 * Results are not bit-identical to the scalar reference (float summation
 * order differs); the integer block dots are exact.
 */
#include <immintrin.h>
#include <string.h>

#include "quant.h"

#define QAV_INLINE static inline __attribute__((always_inline))

/* Activation rows per chunk: about 256 KiB of activations, so a chunk stays in
 * L2 while every weight group of the slice streams past it. */
#define QAV_ACT_CHUNK_BYTES (256u * 1024u)

typedef struct {
    int bsz;    /* weight block bytes */
    int qs;     /* offset of qs in the weight block */
    int qh;     /* offset of qh, or -1 */
    int has_m;  /* _1 type: unsigned q with min m at offset 2 */
} quant_av_wfmt;

QAV_INLINE quant_av_wfmt quant_av_fmt(int T)
{
    switch (T) {
    case QT_Q4_0: return (quant_av_wfmt){18, 2, -1, 0};
    case QT_Q4_1: return (quant_av_wfmt){20, 4, -1, 1};
    case QT_Q5_0: return (quant_av_wfmt){22, 6, 2, 0};
    case QT_Q5_1: return (quant_av_wfmt){24, 8, 4, 1};
    default: return (quant_av_wfmt){34, 2, -1, 0}; /* QT_Q8_0 */
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

/* One weight block -> 32 int8: q-8 / q-16 for the _0 types, q for the _1. */
QAV_INLINE __m256i quant_av_unpack(int T, const uint8_t *x)
{
    switch (T) {
    case QT_Q4_0:
        return _mm256_sub_epi8(quant_av_nibbles(x + 2), _mm256_set1_epi8(8));
    case QT_Q4_1:
        return quant_av_nibbles(x + 4);
    case QT_Q5_0: /* q | 0xf0 is q-16 as int8 when the fifth bit is clear */
        return _mm256_or_si256(quant_av_nibbles(x + 6),
                               _mm256_andnot_si256(quant_av_bits(x + 2), _mm256_set1_epi8((char)0xf0)));
    case QT_Q5_1:
        return _mm256_or_si256(quant_av_nibbles(x + 8),
                               _mm256_and_si256(quant_av_bits(x + 4), _mm256_set1_epi8(0x10)));
    default:
        return _mm256_loadu_si256((const __m256i *)(x + 2));
    }
}

/* 8 int32 partial sums of w . a over one block. */
QAV_INLINE __m256i quant_av_dot(int T, __m256i w, __m256i a, __m256i a_abs)
{
    __m256i p;
    if (quant_av_fmt(T).has_m)
        p = _mm256_maddubs_epi16(w, a);
    else
        p = _mm256_maddubs_epi16(a_abs, _mm256_sign_epi8(w, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* [h(x0) h(x1) h(x2) h(x3) | h(x0) h(x1) h(x2) h(x3)] from 4 halves. */
QAV_INLINE __m256 quant_av_half4(uint16_t x0, uint16_t x1, uint16_t x2, uint16_t x3)
{
    __m128i h = _mm_cvtsi32_si128(x0 | (uint32_t)x1 << 16);
    h = _mm_insert_epi32(h, (int)(x2 | (uint32_t)x3 << 16), 1);
    __m128 f = _mm_cvtph_ps(h);
    return _mm256_set_m128(f, f);
}

/* The register tile: out[j*4 + i] = dot(weight row i, act row j) over nb
 * blocks, i < 4, j < RN. w[i] and a[j] point at the first block. */
QAV_INLINE void quant_av_tile(int T, int RN, int64_t nb, const uint8_t *const w[4],
                              const uint8_t *const a[4], float out[16])
{
    const quant_av_wfmt f = quant_av_fmt(T);
    const int abs_ = f.has_m ? 36 : 34; /* Q8_1 : Q8_0 block bytes */
    const int aqs = f.has_m ? 4 : 2;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const __m256 low4 = _mm256_castsi256_ps(_mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0));
    for (int64_t b = 0; b < nb; b++) {
        const size_t wo = (size_t)b * (size_t)f.bsz, ao = (size_t)b * (size_t)abs_;
        const __m256i q0 = quant_av_unpack(T, w[0] + wo), q1 = quant_av_unpack(T, w[1] + wo);
        const __m256i q2 = quant_av_unpack(T, w[2] + wo), q3 = quant_av_unpack(T, w[3] + wo);
        const __m256 d8 = quant_av_half4(quant_av_u16(w[0] + wo), quant_av_u16(w[1] + wo),
                                         quant_av_u16(w[2] + wo), quant_av_u16(w[3] + wo));
        __m256 m8 = _mm256_setzero_ps();
        if (f.has_m)
            m8 = _mm256_and_ps(low4, quant_av_half4(quant_av_u16(w[0] + wo + 2),
                                                    quant_av_u16(w[1] + wo + 2),
                                                    quant_av_u16(w[2] + wo + 2),
                                                    quant_av_u16(w[3] + wo + 2)));
        for (int j = 0; j < RN; j++) {
            const uint8_t *y = a[j] + ao;
            const __m256i av = _mm256_loadu_si256((const __m256i *)(y + aqs));
            const __m256i aa = f.has_m ? av : _mm256_sign_epi8(av, av);
            const __m256i p01 = _mm256_hadd_epi32(quant_av_dot(T, q0, av, aa),
                                                  quant_av_dot(T, q1, av, aa));
            const __m256i p23 = _mm256_hadd_epi32(quant_av_dot(T, q2, av, aa),
                                                  quant_av_dot(T, q3, av, aa));
            const __m256 s = _mm256_cvtepi32_ps(_mm256_hadd_epi32(p01, p23));
            const __m256 da = _mm256_set1_ps(_cvtsh_ss(quant_av_u16(y)));
            acc[j] = _mm256_fmadd_ps(s, _mm256_mul_ps(d8, da), acc[j]);
            if (f.has_m)
                acc[j] = _mm256_fmadd_ps(m8, _mm256_set1_ps(_cvtsh_ss(quant_av_u16(y + 2))),
                                         acc[j]);
        }
    }
    for (int j = 0; j < RN; j++) {
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
        _mm_storeu_ps(out + 4 * j, r);
    }
}

QAV_INLINE void quant_av_gemm_q(int T, int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                                const void *a, size_t a_stride, int64_t n_act, float *y,
                                size_t y_stride)
{
    const int64_t nb = k / 32;
    int64_t chunk = (int64_t)(QAV_ACT_CHUNK_BYTES / (a_stride ? a_stride : 1));
    chunk = chunk < 4 ? 4 : chunk & ~(int64_t)3;
    for (int64_t t0 = 0; t0 < n_act; t0 += chunk) {
        const int64_t t1 = t0 + chunk < n_act ? t0 + chunk : n_act;
        for (int64_t r0 = 0; r0 < n_rows; r0 += 4) {
            /* Rows past the end repeat the last one; their results are dropped. */
            const uint8_t *wr[4];
            for (int i = 0; i < 4; i++) {
                int64_t r = r0 + i < n_rows ? r0 + i : n_rows - 1;
                wr[i] = (const uint8_t *)w + (size_t)r * w_stride;
            }
            const int nr = n_rows - r0 < 4 ? (int)(n_rows - r0) : 4;
            for (int64_t t = t0; t < t1; t += 4) {
                const uint8_t *ar[4];
                const int na = t1 - t < 4 ? (int)(t1 - t) : 4;
                for (int j = 0; j < 4; j++)
                    ar[j] = (const uint8_t *)a + (size_t)(t + (j < na ? j : na - 1)) * a_stride;
                float out[16];
                switch (na) {
                case 1: quant_av_tile(T, 1, nb, wr, ar, out); break;
                case 2: quant_av_tile(T, 2, nb, wr, ar, out); break;
                case 3: quant_av_tile(T, 3, nb, wr, ar, out); break;
                default: quant_av_tile(T, 4, nb, wr, ar, out); break;
                }
                for (int j = 0; j < na; j++)
                    for (int i = 0; i < nr; i++)
                        y[(size_t)(t + j) * y_stride + (size_t)(r0 + i)] = out[4 * j + i];
            }
        }
    }
}

#define QAV_GEMM(name, T)                                                                   \
    static void quant_av_gemm_##name(int64_t k, const void *w, size_t w_stride,            \
                                     int64_t n_rows, const void *a, size_t a_stride,       \
                                     int64_t n_act, float *y, size_t y_stride)             \
    {                                                                                      \
        quant_av_gemm_q(T, k, w, w_stride, n_rows, a, a_stride, n_act, y, y_stride);       \
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

/* out[j*4 + i] = dot(w[i], a[j]), i < 4, j < RN (RN <= 3: 12 accumulators). */
QAV_INLINE void quant_av_ftile(int T, int RN, int64_t k, const void *const w[4],
                               const float *const a[3], float out[12])
{
    __m256 acc[3][4];
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 4; i++)
            acc[j][i] = _mm256_setzero_ps();
    int64_t e = 0;
    for (; e + 8 <= k; e += 8) {
        const __m256 w0 = quant_av_load8(T, w[0], e), w1 = quant_av_load8(T, w[1], e);
        const __m256 w2 = quant_av_load8(T, w[2], e), w3 = quant_av_load8(T, w[3], e);
        for (int j = 0; j < RN; j++) {
            const __m256 av = _mm256_loadu_ps(a[j] + e);
            acc[j][0] = _mm256_fmadd_ps(w0, av, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w1, av, acc[j][1]);
            acc[j][2] = _mm256_fmadd_ps(w2, av, acc[j][2]);
            acc[j][3] = _mm256_fmadd_ps(w3, av, acc[j][3]);
        }
    }
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
        m = _mm256_max_ps(m, _mm256_andnot_ps(nz, v[i]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float d = _mm_cvtss_f32(m4) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvttps_epi32(quant_av_roundf(_mm256_mul_ps(v[i], idv)));
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
