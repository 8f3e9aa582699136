/* metrics.h: counters shared by the master and every worker.
 *
 * The master creates the table (one anonymous MAP_SHARED mapping) before it
 * forks, so all processes see the same memory without locks: each worker
 * writes only its own slot with relaxed atomics, and whoever answers
 * /metrics or /health sums the slots. Slots are never zeroed when a worker
 * is replaced, so the totals stay monotonic as Prometheus expects; only the
 * gauges (in flight, model loaded) are cleared by the master when it reaps
 * a worker.
 *
 * Ownership: metrics_create() maps, metrics_destroy() unmaps (in the master,
 * after the workers are gone; forked children just exit).
 */
#ifndef METRICS_H
#define METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sbuf.h"

typedef enum {
    METRICS_EP_CHAT = 0,
    METRICS_EP_MODELS,
    METRICS_EP_HEALTH,
    METRICS_EP_METRICS,
    METRICS_EP_ADMIN,
    METRICS_EP_QA,
    METRICS_EP_VISION,
    METRICS_EP_EMBED,
    METRICS_EP_OTHER,
    METRICS_EP_COUNT
} metrics_endpoint;

typedef struct metrics metrics;

/* What one finished request adds. */
typedef struct {
    metrics_endpoint endpoint;
    int status;                /* HTTP status; 499 when the client went away */
    uint64_t latency_us;       /* accept to last byte */
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t gen_us;           /* time in core_generate */
    bool deadline_hit;
    bool disconnected;
    bool has_queue_wait;       /* nginx told us when it took the request */
    uint64_t queue_wait_us;    /* nginx handing it over to a worker accepting it */
} metrics_sample;

/* n_slots: how many workers may be alive at once (old and new during a reload). */
metrics *metrics_create(int n_slots);
void metrics_destroy(metrics *m); /* NULL is a no-op */

/* Master side. acquire reserves a free slot (-1 when none) before fork;
 * bind records the child's pid; release frees it after waitpid(). */
int metrics_slot_acquire(metrics *m);
void metrics_slot_bind(metrics *m, int slot, pid_t pid);
void metrics_slot_release(metrics *m, int slot);
void metrics_set_configured(metrics *m, int workers);
void metrics_count_restart(metrics *m);
void metrics_count_reload(metrics *m);

/* Worker side, own slot only. */
void metrics_set_model_loaded(metrics *m, int slot, bool loaded);
void metrics_request_begin(metrics *m, int slot);
void metrics_request_end(metrics *m, int slot, const metrics_sample *s);
/* Ends a request begun here and counted elsewhere (deferred to the main
 * socket): only the in-flight gauge changes. */
void metrics_request_drop(metrics *m, int slot);

/* Readers (any process). */
typedef struct {
    int workers_alive, workers_configured, workers_with_model;
    long long in_flight;
} metrics_summary;
bool metrics_slot_model_loaded(const metrics *m, int slot);
void metrics_summarize(const metrics *m, metrics_summary *out);
/* Prometheus text exposition format 0.0.4. backlog: connections waiting in
 * the socket's accept queue, or NULL when the kernel cannot tell. */
int metrics_render(const metrics *m, const long long *backlog, sbuf *out);

const char *metrics_endpoint_name(metrics_endpoint ep);

#endif
