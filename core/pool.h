/* pool.h: a persistent thread pool running parallel-for loops.
 *
 * pool_for() runs fn(arg, task, ith) for every task in [0, n_tasks) on the
 * caller (ith 0) and the pool's workers (ith 1..n-1), each thread claiming
 * the next task from a shared counter, and returns when all tasks are done.
 * A worker that is late (descheduled on a busy machine) simply finds no task
 * left: nobody waits for a thread that has not started, only for tasks that
 * are running. Idle workers spin briefly and then sleep, so back-to-back
 * loops (hundreds per decoded token) cost a cache-line round trip while an
 * idle pool uses no CPU. One pool serves one caller thread at a time.
 */
#ifndef POOL_H
#define POOL_H

#include <stdint.h>

typedef struct pool pool;
typedef void (*pool_fn)(void *arg, int64_t task, int ith);

/* n_threads <= 0: one per online CPU. NULL on allocation/thread failure. */
pool *pool_new(int n_threads);
void pool_free(pool *p); /* NULL is a no-op; joins the workers */
int pool_size(const pool *p);
void pool_for(pool *p, int64_t n_tasks, pool_fn fn, void *arg);

#endif
