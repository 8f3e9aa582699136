/* pool.h: a persistent thread pool for data-parallel kernels.
 *
 * pool_run() runs fn(arg, ith, nth) on nth = pool_size() threads (the caller
 * is thread 0) and returns when all have finished. Idle workers spin briefly
 * and then sleep, so back-to-back runs (hundreds per decoded token) cost
 * about a cache-line round trip while an idle pool uses no CPU.
 * One pool serves one caller thread at a time.
 */
#ifndef POOL_H
#define POOL_H

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int ith, int nth);

/* n_threads <= 0: one per online CPU. NULL on allocation/thread failure. */
pool *pool_new(int n_threads);
void pool_free(pool *p); /* NULL is a no-op; joins the workers */
int pool_size(const pool *p);
void pool_run(pool *p, pool_fn fn, void *arg);

#endif
