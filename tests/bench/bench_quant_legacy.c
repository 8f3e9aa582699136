/* bench_quant_legacy.c: single-thread speed of the legacy quantized products.
 *
 *   matvec (n_act = 1): GB/s of weight bytes streamed, for qwen2.5-0.5b shapes
 *                       (ffn 4864x896, ffn-down 896x4864, output 151936x896)
 *   gemm (n_act = 128): GOP/s, counting a multiply-add as 2 ops
 * Times are thread CPU time (medians), so a busy machine inflates them less.
 *
 * Usage: bench_quant_legacy [runs [type [isa]]]
 *   runs: median of that many timed runs (default 7); type ("q4_0") and isa
 *   ("avx2", "avx512") restrict the table.
 * Run it pinned and alone, e.g. `taskset -c 1 build/bench/bench_quant_legacy`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"

static uint64_t bq_rng = 0x2545f4914f6cdd1dull;

static float bq_randf(void)
{
    bq_rng ^= bq_rng << 13;
    bq_rng ^= bq_rng >> 7;
    bq_rng ^= bq_rng << 17;
    return (float)((bq_rng >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

/* Thread CPU time, not wall time: the numbers stay meaningful on a shared
 * machine where other processes take turns on this core. */
static double bq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bq_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* rows x k weights of `type`, quantized from random floats. */
static void *bq_weights(int type, int64_t rows, int64_t k)
{
    size_t rs = quant_row_size(type, k);
    uint8_t *w = malloc(rs * (size_t)rows);
    float *tmp = malloc(sizeof(float) * (size_t)k);
    if (!w || !tmp) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++)
            tmp[i] = bq_randf() * 0.05f;
        quant_quantize_row(type, tmp, w + (size_t)r * rs, k);
    }
    free(tmp);
    return w;
}

/* Median seconds of one gemm call over `runs` timed runs after a warm-up. */
static double bq_time(const quant_kernels *ks, int type, const void *w, int64_t rows, int64_t k,
                      int64_t n_act, int runs)
{
    const quant_traits *tr = quant_traits_of(type);
    size_t ars = quant_row_size(tr->act_type, k);
    uint8_t *a = malloc(ars * (size_t)n_act);
    float *x = malloc(sizeof(float) * (size_t)k);
    float *y = malloc(sizeof(float) * (size_t)(rows * n_act));
    double *t = malloc(sizeof(double) * (size_t)runs);
    if (!a || !x || !y || !t) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t j = 0; j < n_act; j++) {
        for (int64_t i = 0; i < k; i++)
            x[i] = bq_randf();
        ks->act[tr->act_type](x, a + (size_t)j * ars, k);
    }
    size_t ws = quant_row_size(type, k);
    ks->gemm[type](k, w, ws, rows, a, ars, n_act, y, (size_t)rows);
    for (int r = 0; r < runs; r++) {
        double t0 = bq_now();
        ks->gemm[type](k, w, ws, rows, a, ars, n_act, y, (size_t)rows);
        t[r] = bq_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof(double), bq_cmp);
    double med = t[runs / 2];
    free(a);
    free(x);
    free(y);
    free(t);
    return med;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;
    const char *only_type = argc > 2 ? argv[2] : NULL, *only_isa = argc > 3 ? argv[3] : NULL;
    const int types[] = {QT_Q8_0, QT_Q4_0, QT_Q5_0};
    const char *isas[] = {"scalar", "avx2", "avx512"};
    const struct { int64_t rows, k, n_act; } shapes[] = {
        {4864, 896, 1}, {896, 4864, 1}, {151936, 896, 1}, {4864, 896, 128}, {896, 4864, 128},
    };
    printf("%-6s %-6s %-20s %10s %10s\n", "type", "isa", "shape (rows x k x n)", "ms", "rate");
    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
        for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
            int type = types[ti];
            if (only_type && strcmp(only_type, quant_traits_of(type)->name))
                continue;
            void *w = bq_weights(type, shapes[si].rows, shapes[si].k);
            for (size_t ii = 0; ii < sizeof(isas) / sizeof(isas[0]); ii++) {
                if (only_isa && strcmp(only_isa, isas[ii]))
                    continue;
                const quant_kernels *ks = quant_kernels_for(isas[ii]);
                if (!ks) {
                    printf("%-6s %-6s (not available on this CPU)\n", quant_traits_of(type)->name,
                           isas[ii]);
                    continue;
                }
                int64_t rows = shapes[si].rows, k = shapes[si].k, n = shapes[si].n_act;
                /* the scalar reference is slow: fewer runs on the big cases */
                int r = ii == 0 && rows * k * n > 100000000 ? (runs < 3 ? runs : 3) : runs;
                double s = bq_time(ks, type, w, rows, k, n, r);
                char shape[48];
                snprintf(shape, sizeof(shape), "%lldx%lldx%lld", (long long)rows, (long long)k,
                         (long long)n);
                if (n == 1)
                    printf("%-6s %-6s %-20s %10.3f %7.2f GB/s\n", quant_traits_of(type)->name,
                           isas[ii], shape, s * 1e3,
                           (double)quant_row_size(type, k) * (double)rows / s * 1e-9);
                else
                    printf("%-6s %-6s %-20s %10.3f %7.1f GOP/s\n", quant_traits_of(type)->name,
                           isas[ii], shape, s * 1e3,
                           2.0 * (double)rows * (double)k * (double)n / s * 1e-9);
                fflush(stdout);
            }
            free(w);
        }
    }
    return 0;
}
