#include "quant.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core_err.h"
#include "quant_impl.h"

#define QUANT_T(t, nm, b, sz, act) [t] = {nm, b, sz, act}
static const quant_traits quant_table[QT_COUNT] = {
    QUANT_T(QT_F32, "f32", 1, 4, QT_F32),
    QUANT_T(QT_F16, "f16", 1, 2, QT_F32),
    QUANT_T(QT_BF16, "bf16", 1, 2, QT_F32),
    QUANT_T(QT_Q4_0, "q4_0", QK4_0, sizeof(quant_block_q4_0), QT_Q8_0),
    QUANT_T(QT_Q4_1, "q4_1", QK4_1, sizeof(quant_block_q4_1), QT_Q8_1),
    QUANT_T(QT_Q5_0, "q5_0", QK5_0, sizeof(quant_block_q5_0), QT_Q8_0),
    QUANT_T(QT_Q5_1, "q5_1", QK5_1, sizeof(quant_block_q5_1), QT_Q8_1),
    QUANT_T(QT_Q8_0, "q8_0", QK8_0, sizeof(quant_block_q8_0), QT_Q8_0),
    QUANT_T(QT_Q8_1, "q8_1", QK8_1, sizeof(quant_block_q8_1), -1),
    QUANT_T(QT_Q4_K, "q4_K", QK_K, sizeof(quant_block_q4_K), QT_Q8_K),
    QUANT_T(QT_Q5_K, "q5_K", QK_K, sizeof(quant_block_q5_K), QT_Q8_K),
    QUANT_T(QT_Q6_K, "q6_K", QK_K, sizeof(quant_block_q6_K), QT_Q8_K),
    QUANT_T(QT_Q8_K, "q8_K", QK_K, sizeof(quant_block_q8_K), -1),
};

const quant_traits *quant_traits_of(int type)
{
    if (type < 0 || type >= QT_COUNT || !quant_table[type].name)
        return NULL;
    return &quant_table[type];
}

size_t quant_row_size(int type, int64_t n)
{
    const quant_traits *t = quant_traits_of(type);
    if (!t || n < 0 || n % t->blck)
        return 0;
    return (size_t)(n / t->blck) * t->type_size;
}

float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t quant_f32_to_f16(float f)
{
    /* Round to nearest even, as the F16C instruction does. */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 0x1p24f));
    }
    uint32_t mant = ax & 0x7fffff, exp = (ax >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float quant_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* nan: keep it quiet */
        return (uint16_t)((x >> 16) | 64);
    return (uint16_t)((x + (0x7fff + ((x >> 16) & 1))) >> 16);
}

int quant_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    int rc = quant_dequantize_legacy(type, src, dst, n);
    return rc == CORE_EUNSUPPORTED ? quant_dequantize_k(type, src, dst, n) : rc;
}

int quant_quantize_row(int type, const float *src, void *dst, int64_t n)
{
    int rc = quant_quantize_legacy(type, src, dst, n);
    return rc == CORE_EUNSUPPORTED ? quant_quantize_k(type, src, dst, n) : rc;
}

static quant_kernels quant_k_scalar = {.isa = "scalar"};
static quant_kernels quant_k_avx2 = {.isa = "avx2"};
static quant_kernels quant_k_avx512 = {.isa = "avx512"};
static int quant_have_avx2, quant_have_avx512;
static pthread_once_t quant_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
/* AVX-512 F/BW/VL/DQ + VNNI (besides the AVX2 set), and an OS that saves
 * the opmask and zmm state: XCR0 bits 1, 2 (SSE, AVX) and 5, 6, 7 (opmask,
 * upper halves of zmm0-15, zmm16-31). CPUID directly: clang 14 lacks some
 * of __builtin_cpu_supports' names. */
static int quant_detect_avx512(void)
{
    unsigned a, b, c = 0, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) /* OSXSAVE */
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 0xe6) != 0xe6)
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    const unsigned ebx_need = 1u << 16 | 1u << 17 | 1u << 30 | 1u << 31; /* F DQ BW VL */
    return (b & ebx_need) == ebx_need && (c >> 11 & 1);                /* VNNI */
}
#endif

static void quant_init_tables(void)
{
    quant_fill_scalar_legacy(&quant_k_scalar);
    quant_fill_scalar_k(&quant_k_scalar);
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* clang 14 has no __builtin_cpu_supports("f16c"): CPUID.1:ECX bit 29 */
    unsigned a, b, c = 0, d;
    __get_cpuid(1, &a, &b, &c, &d);
    quant_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && (c >> 29 & 1);
    quant_have_avx512 = quant_have_avx2 && quant_detect_avx512();
    quant_k_avx2 = quant_k_scalar;
    quant_k_avx2.isa = "avx2";
    quant_fill_avx2_legacy(&quant_k_avx2);
    quant_fill_avx2_k(&quant_k_avx2);
    /* AVX-512 overrides what it speeds up; the rest stays AVX2 */
    quant_k_avx512 = quant_k_avx2;
    quant_k_avx512.isa = "avx512";
    quant_fill_avx512_legacy(&quant_k_avx512);
    quant_fill_avx512_k(&quant_k_avx512);
#endif
    /* A NEON table would be filled here under __aarch64__. */
}

int quant_cpu_has(const char *isa)
{
    pthread_once(&quant_once, quant_init_tables);
    if (!strcmp(isa, "scalar"))
        return 1;
    if (!strcmp(isa, "avx2"))
        return quant_have_avx2;
    if (!strcmp(isa, "avx512"))
        return quant_have_avx512;
    return 0;
}

const quant_kernels *quant_kernels_for(const char *isa)
{
    pthread_once(&quant_once, quant_init_tables);
    if (!isa)
        return quant_have_avx512 ? &quant_k_avx512 : quant_have_avx2 ? &quant_k_avx2 : &quant_k_scalar;
    if (!strcmp(isa, "scalar"))
        return &quant_k_scalar;
    if (!strcmp(isa, "avx2"))
        return quant_have_avx2 ? &quant_k_avx2 : NULL;
    if (!strcmp(isa, "avx512"))
        return quant_have_avx512 ? &quant_k_avx512 : NULL;
    return NULL;
}
