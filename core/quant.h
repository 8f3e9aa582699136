/* quant.h: tensor element types (GGUF/ggml numbering), their block layouts,
 * reference (scalar) conversion, and the per-CPU matrix kernels.
 *
 * Block layouts are ggml's, byte for byte, because weights are used in place
 * from the mmap'ed GGUF file. Halves are IEEE binary16 stored as uint16_t.
 *
 * Matrix products work on "activation rows" that were first converted to the
 * weight type's activation type (quant_traits.act_type): Q8_0 for Q4_0/Q5_0/
 * Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants, F32 for F32/F16/BF16.
 * All functions here are pure: no allocation, no global state after
 * quant_init(), safe from any thread.
 */
#ifndef QUANT_H
#define QUANT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QT_F32 = 0,
    QT_F16 = 1,
    QT_Q4_0 = 2,
    QT_Q4_1 = 3,
    QT_Q5_0 = 6,
    QT_Q5_1 = 7,
    QT_Q8_0 = 8,
    QT_Q8_1 = 9,
    QT_Q2_K = 10,
    QT_Q3_K = 11,
    QT_Q4_K = 12,
    QT_Q5_K = 13,
    QT_Q6_K = 14,
    QT_Q8_K = 15,
    QT_BF16 = 30,
    QT_COUNT = 31 /* table size; not a type */
} quant_type;

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } quant_block_q4_0;             /* x = (q-8)*d */
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } quant_block_q4_1;         /* x = q*d + m */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } quant_block_q5_0; /* x = (q-16)*d */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } quant_block_q5_1;
typedef struct { uint16_t d; int8_t qs[QK8_0]; } quant_block_q8_0;                 /* x = q*d */
typedef struct { uint16_t d, s; int8_t qs[QK8_1]; } quant_block_q8_1;              /* s = d*sum(qs) */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 8 x (6-bit scale, 6-bit min) */
    uint8_t qs[QK_K / 2];
} quant_block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} quant_block_q5_K;
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} quant_block_q6_K;
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16]; /* sum of each group of 16 qs */
} quant_block_q8_K;

_Static_assert(sizeof(quant_block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(quant_block_q4_1) == 20, "q4_1");
_Static_assert(sizeof(quant_block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(quant_block_q5_1) == 24, "q5_1");
_Static_assert(sizeof(quant_block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(quant_block_q8_1) == 36, "q8_1");
_Static_assert(sizeof(quant_block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(quant_block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(quant_block_q6_K) == 210, "q6_K");
_Static_assert(sizeof(quant_block_q8_K) == 292, "q8_K");

typedef struct {
    const char *name;  /* "q4_K", as ggml names it */
    int blck;          /* elements per block */
    size_t type_size;  /* bytes per block */
    int act_type;      /* activation type for products; -1: not usable as weights */
} quant_traits;

/* NULL when the type number is unknown or unsupported by this build. */
const quant_traits *quant_traits_of(int type);
/* Bytes for n elements (n must be a multiple of blck); 0 for unknown types. */
size_t quant_row_size(int type, int64_t n);

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);

/* Reference conversions (scalar, exact ggml semantics). n is a multiple of the
 * type's blck. Return 0, or CORE_EUNSUPPORTED for a type without converter. */
int quant_dequantize_row(int type, const void *src, float *dst, int64_t n);
int quant_quantize_row(int type, const float *src, void *dst, int64_t n);

/* y[t*y_stride + r] = dot(weight row r, activation row t)
 * for r in [0, n_rows), t in [0, n_act).
 * w: n_rows rows of k elements of the weight type, w_stride bytes apart.
 * a: n_act rows of k elements of the act type, a_stride bytes apart.
 * y_stride is in floats. Kernels may special-case n_act == 1 (decode). */
typedef void (*quant_gemm_fn)(int64_t k, const void *w, size_t w_stride, int64_t n_rows,
                              const void *a, size_t a_stride, int64_t n_act, float *y,
                              size_t y_stride);
/* Converts one row of n floats to an activation type. */
typedef void (*quant_act_fn)(const float *x, void *y, int64_t n);

typedef struct {
    const char *isa;               /* "scalar", "avx2", "avx512" */
    quant_gemm_fn gemm[QT_COUNT];  /* indexed by weight type */
    quant_act_fn act[QT_COUNT];    /* indexed by activation type */
} quant_kernels;

/* Tables are complete: entries a SIMD file does not provide are the scalar
 * ones (the avx512 table: the avx2 ones). quant_kernels_for(NULL) picks the
 * best ISA the CPU runs; a name ("scalar", "avx2", "avx512": AVX-512
 * F/BW/VL/DQ + VNNI besides AVX2) forces one and returns NULL if the CPU
 * (or OS) lacks it. */
const quant_kernels *quant_kernels_for(const char *isa);
/* 1 when the CPU and OS run the named ISA (one of the names above), else 0.
 * vec and sgemm use it to accept the same names. */
int quant_cpu_has(const char *isa);

/* Per-ISA fill functions, one per source file; each sets the entries it
 * implements and leaves the others alone. */
void quant_fill_scalar_legacy(quant_kernels *k); /* F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 */
void quant_fill_scalar_k(quant_kernels *k);      /* Q4_K Q5_K Q6_K Q8_K */
void quant_fill_avx2_legacy(quant_kernels *k);
void quant_fill_avx2_k(quant_kernels *k);
/* Start from a complete (AVX2) table: they keep its entries for few activation rows. */
void quant_fill_avx512_legacy(quant_kernels *k);
void quant_fill_avx512_k(quant_kernels *k);

#endif
