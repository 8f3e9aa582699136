/* bench_quant_k.c: throughput of the K-quant kernels.
 *
 *   build/bench/bench_quant_k [reps]
 *
 * matvec (n_act = 1, decode): GB/s of weight bytes streamed, over enough
 * copies of the matrix (128 MiB) that they come from DRAM, not L3, as a
 * model's weights do; one thread, and for AVX2 also two threads splitting the
 * rows as the engine does. gemm (n_act = 128, prefill): GOP/s, 2 ops per
 * multiply-add, one thread. Medians (and best) of `reps` runs (default 7). A
 * plain read of the same buffer gives the memory bandwidth for comparison.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"

static double bqk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bqk_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bqk_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bqk_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "median (best)": on a shared machine the best run shows what the kernel
 * does when it has the core and the memory bus to itself. */
static void bqk_report(const char *type, const char *isa, const char *shape, double *v, int n,
                       const char *unit)
{
    double med = bqk_median(v, n);
    printf("%-5s %-7s %-24s %8.2f %-5s (best %.2f)\n", type, isa, shape, med, unit, v[n - 1]);
}

static uint64_t bqk_rng = 88172645463325252ull;

static void bqk_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bqk_rng ^= bqk_rng << 13;
        bqk_rng ^= bqk_rng >> 7;
        bqk_rng ^= bqk_rng << 17;
        p[i] = (uint8_t)bqk_rng;
    }
}

/* Valid blocks: random bytes with small positive halves for d (and dmin). */
static void bqk_weights(int type, uint8_t *w, size_t bytes)
{
    const quant_traits *tr = quant_traits_of(type);
    bqk_fill(w, bytes);
    uint16_t h = quant_f32_to_f16(1e-3f);
    size_t d_off = type == QT_Q6_K ? offsetof(quant_block_q6_K, d) : 0;
    for (size_t b = 0; b + tr->type_size <= bytes; b += tr->type_size) {
        memcpy(w + b + d_off, &h, 2);
        if (type != QT_Q6_K)
            memcpy(w + b + 2, &h, 2);
    }
}

static void *bqk_acts(int64_t k, int64_t n)
{
    size_t rs = quant_row_size(QT_Q8_K, k);
    uint8_t *a = malloc(rs * (size_t)n);
    float *x = malloc((size_t)k * sizeof *x);
    if (!a || !x)
        exit(1);
    for (int64_t t = 0; t < n; t++) {
        for (int64_t i = 0; i < k; i++)
            x[i] = (float)((int)(bqk_rng = bqk_rng * 6364136223846793005ull + 1) >> 8) * 0x1p-23f;
        quant_quantize_row(QT_Q8_K, x, a + (size_t)t * rs, k);
    }
    free(x);
    return a;
}

static volatile uint64_t bqk_sink;

typedef struct {
    quant_gemm_fn fn;
    int64_t k, rows;
    const uint8_t *w;
    size_t rs, mat, copies;
    const void *a;
    float *y;
} bqk_job;

/* One thread's half of the rows of every copy. */
static void *bqk_matvec_job(void *arg)
{
    const bqk_job *j = arg;
    for (size_t c = 0; c < j->copies; c++)
        j->fn(j->k, j->w + c * j->mat, j->rs, j->rows, j->a, 0, 1, j->y, (size_t)j->rows);
    return NULL;
}

static double bqk_memread(const uint8_t *p, size_t bytes, int reps)
{
    double gbs[64];
    for (int r = 0; r < reps; r++) {
        const uint64_t *q = (const uint64_t *)p;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        double t0 = bqk_now();
        for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
            s0 += q[i];
            s1 += q[i + 1];
            s2 += q[i + 2];
            s3 += q[i + 3];
        }
        double dt = bqk_now() - t0;
        bqk_sink = s0 + s1 + s2 + s3;
        gbs[r] = (double)bytes / dt * 1e-9;
    }
    return bqk_median(gbs, reps);
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > 64)
        reps = 7;
    static const int types[] = {QT_Q4_K, QT_Q5_K, QT_Q6_K};
    static const char *const isas[] = {"scalar", "avx2"};
    static const struct { int64_t rows, k; } mv[] = {{4864, 1024}, {1024, 4864}};
    const size_t pool = (size_t)128 << 20;
    uint8_t *wbuf = aligned_alloc(64, pool + 4096);
    float *y = malloc(sizeof(float) * 4864 * 128);
    if (!wbuf || !y)
        return 1;
    bqk_fill(wbuf, pool);
    printf("memory read (uint64 sum, 128 MiB, median): %.1f GB/s\n\n", bqk_memread(wbuf, pool, reps));
    printf("%-5s %-7s %-24s %s\n", "type", "isa", "shape", "median (best of reps)");

    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int type = types[ti];
        const char *tn = quant_traits_of(type)->name;
        bqk_weights(type, wbuf, pool);
        for (size_t ii = 0; ii < 2; ii++) {
            const quant_kernels *ks = quant_kernels_for(isas[ii]);
            if (!ks) {
                printf("%-5s %-7s unavailable on this CPU\n", tn, isas[ii]);
                continue;
            }
            for (size_t si = 0; si < 2; si++) {
                int64_t rows = mv[si].rows, k = mv[si].k;
                size_t rs = quant_row_size(type, k), mat = rs * (size_t)rows;
                size_t copies = pool / mat;
                void *a = bqk_acts(k, 1);
                double gbs[64];
                for (int r = 0; r < reps; r++) {
                    /* scalar is slow: a few copies are enough to time it */
                    size_t n = ii == 0 ? 4 : copies;
                    double t0 = bqk_now();
                    for (size_t c = 0; c < n; c++)
                        ks->gemm[type](k, wbuf + c * mat, rs, rows, a, 0, 1, y, (size_t)rows);
                    gbs[r] = (double)(n * mat) / (bqk_now() - t0) * 1e-9;
                }
                char shape[64];
                snprintf(shape, sizeof shape, "matvec %ldx%ld", (long)rows, (long)k);
                bqk_report(tn, isas[ii], shape, gbs, reps, "GB/s");
                if (ii == 1) {
                    int64_t half = rows / 2;
                    bqk_job jobs[2] = {
                        {ks->gemm[type], k, half, wbuf, rs, mat, copies, a, y},
                        {ks->gemm[type], k, rows - half, wbuf + (size_t)half * rs, rs, mat, copies, a,
                         y + half}};
                    for (int r = 0; r < reps; r++) {
                        pthread_t th;
                        double t0 = bqk_now();
                        if (pthread_create(&th, NULL, bqk_matvec_job, &jobs[1]))
                            return 1;
                        bqk_matvec_job(&jobs[0]);
                        pthread_join(th, NULL);
                        gbs[r] = (double)(copies * mat) / (bqk_now() - t0) * 1e-9;
                    }
                    snprintf(shape, sizeof shape, "matvec %ldx%ld 2thr", (long)rows, (long)k);
                    bqk_report(tn, isas[ii], shape, gbs, reps, "GB/s");
                }
                free(a);
            }
            /* prefill: 128 activation rows against a 1024 x 4864 matrix */
            int64_t rows = ii == 0 ? 128 : 1024, k = 4864, n_act = 128;
            size_t rs = quant_row_size(type, k);
            void *a = bqk_acts(k, n_act);
            double gops[64];
            for (int r = 0; r < reps; r++) {
                double t0 = bqk_now();
                ks->gemm[type](k, wbuf, rs, rows, a, quant_row_size(QT_Q8_K, k), n_act, y,
                               (size_t)rows);
                gops[r] = 2.0 * (double)rows * (double)k * (double)n_act / (bqk_now() - t0) * 1e-9;
            }
            char shape[64];
            snprintf(shape, sizeof shape, "gemm %ldx%ld n_act %ld", (long)rows, (long)k, (long)n_act);
            bqk_report(tn, isas[ii], shape, gops, reps, "GOP/s");
            free(a);
        }
    }
    free(wbuf);
    free(y);
    return 0;
}
