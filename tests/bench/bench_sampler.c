/* bench_sampler: median microseconds per samp_sample() at Qwen2's vocabulary
 * size (151936), on synthetic logits: "peaked" (Gaussian bulk, sd 2.5, and
 * a few tokens 16-24 above it, like a trained model's output) and "flat"
 * (sd 1, like the random-weight fixtures). Usage: bench_sampler [iters]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler.h"

#define BENCH_NV 151936

static uint64_t bench_rng = 0x1234567;

static double bench_unif(void)
{
    bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((bench_rng >> 11) + 0.5) * 0x1.0p-53;
}

static double bench_gauss(void)
{
    return sqrt(-2 * log(bench_unif())) * cos(6.283185307179586 * bench_unif());
}

static double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_one(const char *name, const float *base, core_sampling sp, int iters)
{
    samp *s = samp_new(&sp, BENCH_NV);
    float *l = malloc(BENCH_NV * sizeof *l);
    double *t = malloc((size_t)iters * sizeof *t);
    if (!s || !l || !t) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    long sink = 0;
    for (int i = 0; i < iters; i++) {
        memcpy(l, base, BENCH_NV * sizeof *l);
        double t0 = bench_now_us();
        int32_t tok = samp_sample(s, l);
        t[i] = bench_now_us() - t0;
        sink += tok;
    }
    qsort(t, (size_t)iters, sizeof *t, bench_cmp);
    printf("%-34s median %8.1f us  p90 %8.1f us  (token sum %ld)\n", name, t[iters / 2],
           t[iters * 9 / 10], sink);
    free(t);
    free(l);
    samp_free(s);
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    if (iters < 1)
        iters = 1;
    float *peaked = malloc(BENCH_NV * sizeof *peaked);
    float *flat = malloc(BENCH_NV * sizeof *flat);
    if (!peaked || !flat)
        return 1;
    for (int i = 0; i < BENCH_NV; i++) {
        peaked[i] = (float)(2.5 * bench_gauss());
        flat[i] = (float)bench_gauss();
    }
    for (int j = 0; j < 8; j++)
        peaked[(int)(bench_unif() * BENCH_NV)] += (float)(16 + 8 * bench_unif());

    core_sampling g = {.temperature = 0, .top_p = 1, .repeat_penalty = 1};
    core_sampling tp = {.temperature = 0.8f, .top_p = 0.9f, .repeat_penalty = 1};
    core_sampling k40 = tp;
    k40.top_k = 40;
    core_sampling pure = tp;
    pure.top_p = 1;

    printf("n_vocab %d, %d iterations each\n", BENCH_NV, iters);
    bench_one("peaked greedy", peaked, g, iters);
    bench_one("peaked temp 0.8 top-p 0.9", peaked, tp, iters);
    bench_one("peaked temp 0.8 top-k 40 top-p 0.9", peaked, k40, iters);
    bench_one("peaked temp 0.8 (no filters)", peaked, pure, iters);
    bench_one("flat greedy", flat, g, iters);
    bench_one("flat temp 0.8 top-p 0.9", flat, tp, iters);
    free(peaked);
    free(flat);
    return 0;
}
