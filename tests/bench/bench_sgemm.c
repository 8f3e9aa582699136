/* bench_sgemm: GFLOP/s of sgemm_run() on the convolution GEMMs of one
 * yolov3-tiny forward at 416x416 (/usr/share/darknet/cfg/yolov3-tiny.cfg:
 * m = filters, k = channels x size^2, n = out_h x out_w), on the caller's
 * thread and on a pool of 2, median of N runs after a warm-up. One JSON
 * line per shape, then a summary with the forward's total milliseconds and
 * the FMA peak (2 pipes x 8 lanes x 2 flops x the clock): at the clock in
 * /proc/cpuinfo, which on a VM is the nominal one, and at the clock
 * measured with a chain of dependent one-cycle adds (x86; boost included).
 * Usage: bench_sgemm [runs (default 7)] [isa]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "sgemm.h"

static const struct {
    const char *layer;
    int m, k, n;
} bench_shapes[] = {
    {"conv0", 16, 3 * 9, 416 * 416},     {"conv2", 32, 16 * 9, 208 * 208},
    {"conv4", 64, 32 * 9, 104 * 104},    {"conv6", 128, 64 * 9, 52 * 52},
    {"conv8", 256, 128 * 9, 26 * 26},    {"conv10", 512, 256 * 9, 13 * 13},
    {"conv12", 1024, 512 * 9, 13 * 13},  {"conv13", 256, 1024, 13 * 13},
    {"conv14", 512, 256 * 9, 13 * 13},   {"conv15", 255, 512, 13 * 13},
    {"conv18", 128, 256, 13 * 13},       {"conv21", 256, 384 * 9, 26 * 26},
    {"conv22", 255, 256, 26 * 26},
};
enum { BENCH_NSHAPES = sizeof bench_shapes / sizeof bench_shapes[0], BENCH_MAXRUNS = 101 };

static double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_mhz(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7) && sscanf(strchr(line, ':') + 1, "%lf", &mhz) == 1)
            break;
    if (f)
        fclose(f);
    return mhz;
}

/* Each add waits for the previous one: 10 cycles per iteration; the best
 * of 25 short runs, as a preempted run only reads low. */
static double bench_measured_mhz(void)
{
    double best = 0;
#if defined(__x86_64__)
    for (int r = 0; r < 25; r++) {
        unsigned long x = 0;
        long n = 500000;
        double t0 = bench_now_ms();
        for (long i = 0; i < n; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                             "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                             : "+r"(x));
        double mhz = 10.0 * n / (bench_now_ms() - t0) / 1e3;
        best = mhz > best ? mhz : best;
    }
#endif
    return best;
}

static float *bench_rand(size_t n)
{
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "bench_sgemm: out of memory\n");
        exit(1);
    }
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((s = s * 1103515245u + 12345u) >> 9 & 0xffff) / 65536.0f - 0.5f;
    return x;
}

static double bench_median(const sgemm_mat *a, const float *b, int n, const float *bias, float *c,
                           pool *pl, int runs)
{
    double t[BENCH_MAXRUNS];
    sgemm_run(a, b, n, n, bias, SGEMM_ACT_LEAKY, c, n, pl);
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now_ms();
        sgemm_run(a, b, n, n, bias, SGEMM_ACT_LEAKY, c, n, pl);
        t[r] = bench_now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp);
    return t[runs / 2];
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    const char *isa = argc > 2 ? argv[2] : NULL;
    if (runs < 1 || runs > BENCH_MAXRUNS) {
        fprintf(stderr, "usage: bench_sgemm [runs 1..%d] [isa]\n", BENCH_MAXRUNS);
        return 2;
    }
    pool *pl = pool_new(2);
    if (!pl) {
        fprintf(stderr, "bench_sgemm: pool_new failed\n");
        return 1;
    }
    double mhz = bench_mhz(), peak1 = 32 * mhz / 1e3; /* GFLOP/s per core */
    double mmhz = bench_measured_mhz(), mpeak1 = 32 * mmhz / 1e3;
    double gf_all = 0, ms1_all = 0, ms2_all = 0;
    const char *used = NULL;
    for (int s = 0; s < BENCH_NSHAPES; s++) {
        int m = bench_shapes[s].m, k = bench_shapes[s].k, n = bench_shapes[s].n;
        float *a = bench_rand((size_t)m * k), *b = bench_rand((size_t)k * n);
        float *bias = bench_rand((size_t)m), *c = bench_rand((size_t)m * n);
        sgemm_mat *pa;
        if (sgemm_pack(a, m, k, k, isa, &pa)) {
            fprintf(stderr, "bench_sgemm: isa %s unavailable\n", isa ? isa : "(best)");
            return 1;
        }
        used = sgemm_isa(pa);
        double gf = 2.0 * m * k * n / 1e9;
        double ms1 = bench_median(pa, b, n, bias, c, NULL, runs);
        double ms2 = bench_median(pa, b, n, bias, c, pl, runs);
        printf("{\"layer\":\"%s\",\"m\":%d,\"k\":%d,\"n\":%d,\"gflop\":%.4f,\"ms_1t\":%.3f,"
               "\"ms_2t\":%.3f,\"gflops_1t\":%.1f,\"gflops_2t\":%.1f}\n",
               bench_shapes[s].layer, m, k, n, gf, ms1, ms2, gf / ms1 * 1e3, gf / ms2 * 1e3);
        gf_all += gf;
        ms1_all += ms1;
        ms2_all += ms2;
        sgemm_free(pa);
        free(a);
        free(b);
        free(bias);
        free(c);
    }
    double g1 = gf_all / ms1_all * 1e3, g2 = gf_all / ms2_all * 1e3;
    printf("{\"summary\":\"yolov3-tiny-416 conv gemms\",\"isa\":\"%s\",\"runs\":%d,\"gflop\":%.3f,"
           "\"ms_1t\":%.2f,\"ms_2t\":%.2f,\"gflops_1t\":%.1f,\"gflops_2t\":%.1f,"
           "\"cpuinfo_mhz\":%.0f,\"pct_peak_cpuinfo_1t\":%.1f,\"pct_peak_cpuinfo_2t\":%.1f,"
           "\"measured_mhz\":%.0f,\"peak_gflops_1t\":%.1f,\"pct_peak_1t\":%.1f,\"pct_peak_2t\":%.1f}\n",
           used, runs, gf_all, ms1_all, ms2_all, g1, g2, mhz, g1 / peak1 * 100, g2 / (2 * peak1) * 100,
           mmhz, mpeak1, mmhz > 0 ? g1 / mpeak1 * 100 : 0, mmhz > 0 ? g2 / (2 * mpeak1) * 100 : 0);
    pool_free(pl);
    return 0;
}
