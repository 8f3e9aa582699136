/* bench_npu.c: NPU arbiter handoff latency, utilisation under saturation
 * and fairness between streams.
 *
 *   build/bench/bench_npu [processes=4] [seconds=3] [hold_us=200] [token_us=500]
 *
 * Phase 1 (requests): K processes loop acquire -> busy hold_us -> release
 * as fast as they can, so someone always waits. Printed:
 *   handoff latency: from the holder calling npu_release() to the next
 *     process returning from npu_acquire() (only acquires that were queued
 *     when the release happened), median and p99 in microseconds;
 *   utilisation: time some process held the NPU / wall time, over the
 *     window in which all K processes were running.
 * Phase 2 (streams): K processes each acquire once and "generate" tokens
 * of token_us busy time, calling npu_tick() after each (slices of 8
 * tokens), as the worker does during a chat completion. Printed: tokens/s
 * per stream, the spread (max-min)/max, handoffs, and utilisation.
 * The benchmark links only libedgecore.a (Makefile rule for tests/bench),
 * so it compiles the two fcgi sources it needs into itself.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"
#include "npu.h"
#include "sbuf.h"

#define BENCH_MAX_SAMPLES 400000

typedef struct {
    long long last_release_ns;
    int started;
    long long t_begin, t_end;
    long long held_ns[16];
    long long rounds[16];
    long long yields[16];
    int n_samples;
    unsigned samples[BENCH_MAX_SAMPLES]; /* handoff latency, ns */
} bench_shared;

typedef struct {
    int k;
    double secs;
    long long hold_ns, token_ns;
    char path[96];
} bench_cfg;

static long long bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int bench_cmp(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

static void bench_spin_until(long long t)
{
    while (bench_now() < t) {
    }
}

/* Adds the part of [a, b) inside the measured window. */
static void bench_held(bench_shared *sh, int i, long long a, long long b)
{
    a = a < sh->t_begin ? sh->t_begin : a;
    b = b > sh->t_end ? sh->t_end : b;
    if (b > a)
        sh->held_ns[i] += b - a;
}

static npu *bench_open(const bench_cfg *c, bench_shared *sh)
{
    npu_params p = npu_default_params();
    p.lock_path = c->path;
    p.max_wait_ms = 60000;
    p.max_waiters = 32;
    npu *n;
    char msg[256];
    if (npu_open(&p, &n, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "%s\n", msg);
        _exit(1);
    }
    /* Everyone starts together, 50 ms after the last one is ready. */
    if (__atomic_add_fetch(&sh->started, 1, __ATOMIC_ACQ_REL) == c->k) {
        long long t = bench_now() + 50000000LL;
        __atomic_store_n(&sh->t_end, t + (long long)(c->secs * 1e9), __ATOMIC_RELEASE);
        __atomic_store_n(&sh->t_begin, t, __ATOMIC_RELEASE);
    }
    while (!__atomic_load_n(&sh->t_begin, __ATOMIC_ACQUIRE))
        usleep(100);
    bench_spin_until(sh->t_begin);
    return n;
}

static void bench_requests(const bench_cfg *c, bench_shared *sh, int i)
{
    npu *n = bench_open(c, sh);
    for (;;) {
        long long t0 = bench_now();
        if (t0 >= sh->t_end)
            break;
        npu_grant g;
        if (npu_acquire(n, 1, &g) != CORE_OK || g.outcome != NPU_GRANTED)
            _exit(1);
        long long t1 = bench_now();
        long long rel = __atomic_load_n(&sh->last_release_ns, __ATOMIC_ACQUIRE);
        if (rel > t0) { /* we were queued when the last holder let go */
            int s = __atomic_fetch_add(&sh->n_samples, 1, __ATOMIC_RELAXED);
            if (s < BENCH_MAX_SAMPLES)
                sh->samples[s] = (unsigned)(t1 - rel);
        }
        bench_spin_until(t1 + c->hold_ns);
        bench_held(sh, i, t1, bench_now());
        sh->rounds[i]++;
        __atomic_store_n(&sh->last_release_ns, bench_now(), __ATOMIC_RELEASE);
        npu_release(n);
    }
    npu_close(n);
}

static void bench_streams(const bench_cfg *c, bench_shared *sh, int i)
{
    npu *n = bench_open(c, sh);
    npu_grant g;
    if (npu_acquire(n, 1, &g) != CORE_OK || g.outcome != NPU_GRANTED)
        _exit(1);
    long long since = bench_now();
    while (bench_now() < sh->t_end) {
        bench_spin_until(bench_now() + c->token_ns);
        sh->rounds[i]++;
        long long before = bench_now();
        bool y;
        if (npu_tick(n, 1, &y) != CORE_OK)
            _exit(1);
        if (y) { /* the NPU was someone else's in between */
            sh->yields[i]++;
            bench_held(sh, i, since, before);
            since = bench_now();
        }
    }
    bench_held(sh, i, since, bench_now());
    npu_release(n);
    npu_close(n);
}

static int bench_run(const bench_cfg *c, bench_shared *sh,
                     void (*fn)(const bench_cfg *, bench_shared *, int))
{
    memset(sh, 0, sizeof(*sh));
    unlink(c->path);
    pid_t kids[16];
    for (int i = 0; i < c->k; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            fn(c, sh, i);
            _exit(0);
        }
    }
    int fail = 0;
    for (int i = 0; i < c->k; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    if (fail)
        fprintf(stderr, "a benchmark process failed\n");
    return fail;
}

static void bench_totals(const bench_cfg *c, const bench_shared *sh, long long *held,
                         long long *rounds, long long *lo, long long *hi)
{
    *held = *rounds = *hi = 0;
    *lo = -1;
    for (int i = 0; i < c->k; i++) {
        *held += sh->held_ns[i];
        *rounds += sh->rounds[i];
        *lo = *lo < 0 || sh->rounds[i] < *lo ? sh->rounds[i] : *lo;
        *hi = sh->rounds[i] > *hi ? sh->rounds[i] : *hi;
    }
}

int main(int argc, char **argv)
{
    bench_cfg c = {.k = argc > 1 ? atoi(argv[1]) : 4,
                   .secs = argc > 2 ? atof(argv[2]) : 3.0,
                   .hold_ns = (argc > 3 ? atoll(argv[3]) : 200) * 1000,
                   .token_ns = (argc > 4 ? atoll(argv[4]) : 500) * 1000};
    if (c.k < 2 || c.k > 16 || c.secs <= 0 || c.hold_ns < 0 || c.token_ns < 0) {
        fprintf(stderr, "usage: bench_npu [processes 2..16] [seconds] [hold_us] [token_us]\n");
        return 2;
    }
    char dir[] = "/tmp/eg_bench_npu_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    snprintf(c.path, sizeof(c.path), "%s/npu.lock", dir);
    bench_shared *sh = mmap(NULL, sizeof(bench_shared), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    long long held, rounds, lo, hi;
    double wall = c.secs * 1e9;

    if (bench_run(&c, sh, bench_requests))
        return 1;
    int ns = sh->n_samples < BENCH_MAX_SAMPLES ? sh->n_samples : BENCH_MAX_SAMPLES;
    qsort(sh->samples, (size_t)ns, sizeof(unsigned), bench_cmp);
    bench_totals(&c, sh, &held, &rounds, &lo, &hi);
    printf("bench_npu requests: %d processes, %.1f s, hold %lld us each\n", c.k, c.secs,
           c.hold_ns / 1000);
    if (ns > 0)
        printf("  handoff latency: median %.1f us, p99 %.1f us (%d handoffs)\n",
               sh->samples[ns / 2] / 1000.0, sh->samples[(size_t)ns * 99 / 100] / 1000.0, ns);
    printf("  utilisation under saturation: %.2f%% (held %.3f s of %.3f s)\n",
           100.0 * (double)held / wall, (double)held / 1e9, wall / 1e9);
    printf("  acquires: %lld total, per process min %lld max %lld\n", rounds, lo, hi);

    if (bench_run(&c, sh, bench_streams))
        return 1;
    bench_totals(&c, sh, &held, &rounds, &lo, &hi);
    long long yields = 0;
    printf("bench_npu streams: %d streams, %.1f s, %lld us per token, slices of 8 tokens\n",
           c.k, c.secs, c.token_ns / 1000);
    printf("  tokens/s per stream:");
    for (int i = 0; i < c.k; i++) {
        printf(" %.0f", (double)sh->rounds[i] / c.secs);
        yields += sh->yields[i];
    }
    printf("\n  fairness spread (max-min)/max: %.1f%%, handoffs %lld\n",
           hi ? 100.0 * (double)(hi - lo) / (double)hi : 0.0, yields);
    printf("  utilisation: %.2f%% (held %.3f s of %.3f s)\n", 100.0 * (double)held / wall,
           (double)held / 1e9, wall / 1e9);
    unlink(c.path);
    rmdir(dir);
    return 0;
}
