#include "pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define POOL_PAUSE() __asm__ __volatile__("yield")
#else
#define POOL_PAUSE() ((void)0)
#endif

/* Spins before a worker goes to sleep: long enough to bridge the gap between
 * two kernels of one token, short enough that an idle pool sleeps. */
#define POOL_SPINS (1 << 16)

typedef struct {
    pool *p;
    int ith;
    pthread_t tid;
} pool_worker;

struct pool {
    int n;
    pool_worker *workers;
    _Alignas(64) atomic_uint gen;  /* bumped per run; futex word */
    _Alignas(64) atomic_int pending;
    atomic_int sleepers;
    atomic_int stop;
    pool_fn fn;
    void *arg;
};

static void pool_futex_wait(atomic_uint *w, unsigned val)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void pool_futex_wake(atomic_uint *w)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void *pool_main(void *v)
{
    pool_worker *w = v;
    pool *p = w->p;
    unsigned seen = atomic_load_explicit(&p->gen, memory_order_acquire);
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < POOL_SPINS) {
                POOL_PAUSE();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            /* re-check after announcing: pool_run wakes only if it sees us */
            if (atomic_load(&p->gen) == seen)
                pool_futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        p->fn(p->arg, w->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

pool *pool_new(int n_threads)
{
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        p->workers[i] = (pool_worker){.p = p, .ith = i};
        if (pthread_create(&p->workers[i].tid, NULL, pool_main, &p->workers[i])) {
            p->n = i; /* join the ones that started */
            pool_free(p);
            return NULL;
        }
    }
    return p;
}

int pool_size(const pool *p) { return p->n; }

void pool_run(pool *p, pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    /* seq_cst pairs with the worker's sleepers++ then gen re-check */
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers))
        pool_futex_wake(&p->gen);
    fn(arg, 0, p->n);
    while (atomic_load_explicit(&p->pending, memory_order_acquire))
        POOL_PAUSE();
}

void pool_free(pool *p)
{
    if (!p)
        return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pool_futex_wake(&p->gen);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->workers[i].tid, NULL);
    free(p->workers);
    free(p);
}
