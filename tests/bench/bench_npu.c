/* bench_npu.c: NPU arbiter handoff latency and utilisation under saturation.
 *
 *   build/bench/bench_npu [processes=4] [seconds=3] [hold_us=200]
 *
 * K processes loop acquire -> busy hold_us -> release as fast as they can,
 * so someone always waits. Printed:
 *   handoff latency: from the holder calling npu_release() to the next
 *     process returning from npu_acquire() (only acquires that were queued
 *     when the release happened), median and p99 in microseconds;
 *   utilisation: time some process held the NPU / wall time, over the
 *     window in which all K processes were running.
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

#include "npu.c"
#include "sbuf.c"

#define BENCH_MAX_SAMPLES 400000

typedef struct {
    long long last_release_ns;
    int started;
    long long t_begin, t_end;
    long long held_ns[16];
    long long rounds[16];
    int n_samples;
    unsigned samples[BENCH_MAX_SAMPLES]; /* handoff latency, ns */
} bench_shared;

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

int main(int argc, char **argv)
{
    int k = argc > 1 ? atoi(argv[1]) : 4;
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    long long hold_ns = (argc > 3 ? atoll(argv[3]) : 200) * 1000;
    if (k < 2 || k > 16 || secs <= 0 || hold_ns < 0) {
        fprintf(stderr, "usage: bench_npu [processes 2..16] [seconds] [hold_us]\n");
        return 2;
    }
    char dir[] = "/tmp/eg_bench_npu_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[96];
    snprintf(path, sizeof(path), "%s/npu.lock", dir);
    bench_shared *sh = mmap(NULL, sizeof(bench_shared), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    memset(sh, 0, sizeof(*sh));
    pid_t kids[16];
    for (int i = 0; i < k; i++) {
        kids[i] = fork();
        if (kids[i] != 0)
            continue;
        npu_params p = npu_default_params();
        p.lock_path = path;
        p.max_wait_ms = 60000;
        npu *n;
        char msg[256];
        if (npu_open(&p, &n, msg, sizeof(msg)) != CORE_OK) {
            fprintf(stderr, "%s\n", msg);
            _exit(1);
        }
        if (__atomic_add_fetch(&sh->started, 1, __ATOMIC_ACQ_REL) == k) {
            long long t = bench_now() + 50000000LL; /* all start 50 ms from now */
            __atomic_store_n(&sh->t_end, t + (long long)(secs * 1e9), __ATOMIC_RELEASE);
            __atomic_store_n(&sh->t_begin, t, __ATOMIC_RELEASE);
        }
        while (!__atomic_load_n(&sh->t_begin, __ATOMIC_ACQUIRE))
            usleep(100);
        while (bench_now() < sh->t_begin) {
        }
        long long end = sh->t_end;
        for (;;) {
            long long t0 = bench_now();
            if (t0 >= end)
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
            long long stop = t1 + hold_ns;
            while (bench_now() < stop) {
            }
            long long t2 = bench_now();
            /* Count only the part of the hold inside the window. */
            long long a = t1 < sh->t_begin ? sh->t_begin : t1, b = t2 > end ? end : t2;
            if (b > a)
                sh->held_ns[i] += b - a;
            sh->rounds[i]++;
            __atomic_store_n(&sh->last_release_ns, bench_now(), __ATOMIC_RELEASE);
            npu_release(n);
        }
        npu_close(n);
        _exit(0);
    }
    int fail = 0;
    for (int i = 0; i < k; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        fail |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    if (fail) {
        fprintf(stderr, "a benchmark process failed\n");
        return 1;
    }
    int ns = sh->n_samples < BENCH_MAX_SAMPLES ? sh->n_samples : BENCH_MAX_SAMPLES;
    qsort(sh->samples, (size_t)ns, sizeof(unsigned), bench_cmp);
    long long held = 0, rounds = 0, lo = -1, hi = 0;
    for (int i = 0; i < k; i++) {
        held += sh->held_ns[i];
        rounds += sh->rounds[i];
        lo = lo < 0 || sh->rounds[i] < lo ? sh->rounds[i] : lo;
        hi = sh->rounds[i] > hi ? sh->rounds[i] : hi;
    }
    double wall = (double)(sh->t_end - sh->t_begin);
    printf("bench_npu: %d processes, %.1f s, hold %lld us\n", k, secs, hold_ns / 1000);
    if (ns > 0)
        printf("handoff latency: median %.1f us, p99 %.1f us (%d handoffs)\n",
               sh->samples[ns / 2] / 1000.0, sh->samples[(size_t)ns * 99 / 100] / 1000.0, ns);
    printf("utilisation under saturation: %.2f%% (held %.3f s of %.3f s)\n",
           100.0 * (double)held / wall, (double)held / 1e9, wall / 1e9);
    printf("acquires: %lld total, per process min %lld max %lld\n", rounds, lo, hi);
    unlink(path);
    rmdir(dir);
    return 0;
}
