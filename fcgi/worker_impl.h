/* worker_impl.h: the worker's request state and reply helpers, shared by
 * the endpoint files of fcgi/ (worker.c, and one file per endpoint family).
 * Private to the pool: nothing outside fcgi/ includes it.
 *
 * Ownership: a worker_state lives for the worker's life (worker_main());
 * a worker_req for one request (worker_handle()). Strings in a worker_req
 * point into the request arena or the FastCGI params (valid until the
 * request ends). The helpers that send a reply set q->status and
 * q->headers_sent; after a send error q->disconnected is set and later
 * sends do nothing.
 */
#ifndef WORKER_IMPL_H
#define WORKER_IMPL_H

#include <fcgiapp.h>
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "budget.h"
#include "cache.h"
#include "cfg.h"
#include "core.h"
#include "health.h"
#include "metrics.h"
#include "npu.h"
#include "req.h"
#include "sbuf.h"
#include "worker.h"

typedef struct {
    const worker_params *p;
    const cfg *cfg;
    core_model *models[CFG_MAX_MODELS];
    int n_ctx[CFG_MAX_MODELS];
    const char *ids[CFG_MAX_MODELS];
    arena *arena;
    sbuf body;  /* response body */
    sbuf chunk; /* one SSE event */
    health_probe *probe; /* NULL: the kernel cannot count the backlog */
    npu *npu;            /* NULL: no arbiter (it failed to open) */
    budget *budget;      /* NULL: budgets disabled or failed to open */
    cache *cache;        /* NULL: cache disabled or failed to open */
    long long model_size[CFG_MAX_MODELS], model_mtime[CFG_MAX_MODELS]; /* cache keys */
    sbuf cachebody;      /* a cache hit's body */
    double temp_c;
    bool has_temp;
    long long temp_read_ms;
} worker_state;

/* What one request did, for its log line and the metrics. */
typedef struct {
    FCGX_Request *r;
    char req_id[72];
    const char *method, *path, *client, *remote;
    metrics_endpoint ep;
    int status;
    const char *model;
    const char *finish;
    long long prompt_tokens, completion_tokens;
    long long gen_us;
    bool stream, deadline_hit, disconnected;
    bool headers_sent;
    char error[320]; /* short reason for the log ("" = none) */
    const char *xcache;  /* X-Cache value; NULL: none */
    char cache_key[65];  /* X-Cache-Key (for a purge by key); "": none */
    bool has_quota;      /* quota: what the x-ratelimit-*-tokens headers say */
    budget_quota quota;
    char hdr[512];       /* extra header lines of every response to this request */
    bool has_npu_wait;
    long long npu_wait_us;
} worker_req;

/* Monotonic microseconds. */
long long worker_now_us(void);
/* Raw output (FCGX_FPrintF has no %zu and truncates: format, then put). */
int worker_put(worker_req *q, const char *s, size_t n);
int worker_flush(worker_req *q);
/* Status line and headers; extra: more lines each ending in \r\n, or NULL;
 * length < 0: no Content-Length (streams). */
int worker_headers(worker_req *q, int status, const char *type, long long length,
                   const char *extra);
/* The x-ratelimit-*-tokens headers of every later reply to q. */
void worker_set_quota(worker_req *q, const budget_quota *bq);
void worker_send(worker_req *q, int status, const char *type, const sbuf *body,
                 const char *extra);
/* w->body as application/json, Cache-Control: no-store. */
void worker_send_json(worker_state *w, worker_req *q, int status);
/* An OpenAI-style error reply (uses w->body). */
void worker_send_error(worker_state *w, worker_req *q, const api_error *e, const char *extra);
void worker_fail(worker_state *w, worker_req *q, int status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A FastCGI param, or NULL; valid until the request ends. */
const char *worker_param(worker_req *q, const char *name);
/* Reads the whole body into the request arena (NUL-terminated, limit from
 * the config). Returns 0, or sends the error reply itself and returns -1. */
int worker_read_body(worker_state *w, worker_req *q, char **out, size_t *len);
/* True when q->method is allowed (GET also allows HEAD); else sends 405. */
bool worker_method(worker_state *w, worker_req *q, const char *allowed);
/* Releases the NPU when this worker holds it. */
void worker_npu_release(worker_state *w);
/* 503 with Retry-After for an NPU grant that was not granted. */
void worker_npu_busy(worker_state *w, worker_req *q, const npu_grant *g);
/* Settles a reservation (when reserved) to actual tokens and sets the quota
 * headers. */
void worker_settle(worker_state *w, worker_req *q, budget_res *res, bool reserved,
                   long long actual);
/* 429 insufficient_quota for a reservation of need tokens that failed. */
void worker_quota_error(worker_state *w, worker_req *q, const budget_quota *bq,
                        long long need);

#endif
