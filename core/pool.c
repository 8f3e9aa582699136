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
 * two loops of one token, short enough that an idle pool sleeps. */
#define POOL_SPINS (1 << 15)

typedef struct {
    struct pool *p;
    int ith;
    pthread_t tid;
} pool_worker;

struct pool {
    int n;
    pool_worker *workers;
    _Alignas(64) atomic_uint gen; /* bumped per loop; the futex word */
    atomic_int sleepers;
    atomic_int stop;
    /* the current loop; written only while no worker is inside it */
    _Alignas(64) pool_fn fn;
    void *arg;
    int64_t n_tasks;
    atomic_int open;   /* workers may join the loop */
    atomic_int active; /* workers inside the loop */
    _Alignas(64) atomic_llong next;
    _Alignas(64) atomic_llong done;
};

static void pool_futex_wait(atomic_uint *w, unsigned val)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void pool_futex_wake(atomic_uint *w)
{
    syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void pool_tasks(struct pool *p, int ith)
{
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            return;
        p->fn(p->arg, t, ith);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *pool_main(void *v)
{
    pool_worker *w = v;
    struct pool *p = w->p;
    /* start from 0, not the current gen: a thread scheduled only after
     * pool_free bumped gen would otherwise wait for a bump that never comes */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < POOL_SPINS) {
                POOL_PAUSE();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            /* re-check after announcing: pool_for wakes only if it sees us */
            if (atomic_load(&p->gen) == seen)
                pool_futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop))
            return NULL;
        /* join only the loop that is still open and still the one we saw;
         * seq_cst pairs with the caller's open = 0 then active check */
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->open) && atomic_load(&p->gen) == seen)
            pool_tasks(p, w->ith);
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
}

pool *pool_new(int n_threads)
{
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    struct pool *p = calloc(1, sizeof *p);
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

void pool_for(pool *p, int64_t n_tasks, pool_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (p->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->open, 1);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers))
        pool_futex_wake(&p->gen);
    pool_tasks(p, 0);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks)
        POOL_PAUSE();
    atomic_store(&p->open, 0);
    while (atomic_load_explicit(&p->active, memory_order_acquire))
        POOL_PAUSE();
}

void pool_free(pool *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    pool_futex_wake(&p->gen);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->workers[i].tid, NULL);
    free(p->workers);
    free(p);
}
