/* worker.h: one prefork worker: load the models, then serve requests from
 * the shared FastCGI socket one at a time until told to stop.
 *
 * Runs in the child right after fork(). The models are loaded here, after
 * the fork, so every worker maps the same GGUF file and the kernel shares
 * the weight pages between them. SIGTERM/SIGINT finish the current request
 * and end the loop; the master enforces its shutdown deadline.
 *
 * Ownership: everything in worker_params is borrowed for the worker's life
 * (the forked copy of the master's memory).
 */
#ifndef WORKER_H
#define WORKER_H

#include "cfg.h"
#include "metrics.h"

typedef struct {
    const cfg *cfg;
    metrics *metrics;
    int slot;       /* this worker's metrics slot */
    int listen_fd;  /* the FastCGI socket, non-blocking */
    int status_fd;  /* the status socket (cfg.h), non-blocking; -1: none */
    long long started; /* Unix seconds the pool started ("created" in /v1/models) */
} worker_params;

/* Returns the process exit status (0 after a requested stop). Expects
 * SIGTERM, SIGINT and SIGHUP blocked on entry, as the master leaves them. */
int worker_main(const worker_params *p);

#endif
