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
#include "detect.h"
#include "health.h"
#include "kb.h"
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
    long long backlog, backlog_us; /* the probe's last answer and when (0: none) */
    npu *npu;            /* NULL: no arbiter (it failed to open) */
    budget *budget;      /* NULL: budgets disabled or failed to open */
    cache *cache;        /* NULL: cache disabled or failed to open */
    kb *kb;              /* NULL: knowledge base disabled or failed to open */
    long long model_size[CFG_MAX_MODELS], model_mtime[CFG_MAX_MODELS]; /* cache keys */
    det_model *dets[CFG_MAX_VISION]; /* cfg->vision[i]'s detector; NULL: failed to load */
    long long det_ident[CFG_MAX_VISION][6]; /* size, mtime of cfg, weights, names (cache keys) */
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
    bool status_lane; /* came over the status socket (see worker_route) */
    bool defer;       /* status lane chat: anything but a cache hit is deferred */
    bool deferred;    /* answered WORKER_DEFER_STATUS: not logged, not counted */
    char error[320]; /* short reason for the log ("" = none) */
    const char *xcache;  /* X-Cache value; NULL: none */
    char cache_key[65];  /* X-Cache-Key (for a purge by key); "": none */
    bool has_quota;      /* quota: what the x-ratelimit-*-tokens headers say */
    budget_quota quota;
    bool has_npu_wait;
    long long npu_wait_us;
} worker_req;

/* The status lane answers a chat request only from the response cache;
 * for anything else it answers this status, which nginx turns into the
 * same request to the main socket (error_page 421 = @edgegate_chat), where
 * it is served from the start. worker_headers() sends it in place of any
 * other status once q->defer is set, so errors too come from the main
 * socket, whole. 421: Misdirected Request. */
#define WORKER_DEFER_STATUS 421

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
/* The whole reply: headers (extra: more header lines, each ending CRLF)
 * and body; a body that ran out of memory is a JSON 500 instead. */
void worker_send(worker_req *q, int status, const char *type, const sbuf *body,
                 const char *extra);
/* w->body as application/json, Cache-Control: no-store. */
void worker_send_json(worker_state *w, worker_req *q, int status);
/* 200 text/event-stream headers that keep nginx from buffering; 0 or -1. */
int worker_sse_headers(worker_req *q);
/* An OpenAI-style error reply (uses w->body). */
void worker_send_error(worker_state *w, worker_req *q, const api_error *e, const char *extra);
void worker_fail(worker_state *w, worker_req *q, int status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A FastCGI param, or NULL; valid until the request ends. */
const char *worker_param(worker_req *q, const char *name);
/* Reads the whole body into the request arena (NUL-terminated, limit from
 * the config). Returns 0, or sends the error reply itself and returns -1. */
int worker_read_body(worker_state *w, worker_req *q, char **out, size_t *len);
/* Same with a limit of max bytes instead of limits.max_body_bytes. */
int worker_read_body_max(worker_state *w, worker_req *q, long max, char **out, size_t *len);
/* True when q->method is allowed (GET also allows HEAD); else sends 405. */
bool worker_method(worker_state *w, worker_req *q, const char *allowed);
/* The index of the loaded model id for a generation (embedding false) or
 * an embedding request; else sends 503 (not loaded here) or 400 (wrong
 * kind of model) and returns -1. */
long worker_model_for(worker_state *w, worker_req *q, const char *id, bool embedding);
/* The request deadline (limits.deadline_ms after t0; none when 0) for a
 * detection: SIGALRM calls det_abort(d). worker_deadline_end() disarms it
 * and says whether it fired. */
void worker_deadline_det(worker_state *w, det_model *d, long long t0);
bool worker_deadline_end(void);
/* Releases the NPU when this worker holds it. */
void worker_npu_release(worker_state *w);
/* 503 with Retry-After for an NPU grant that was not granted. */
void worker_npu_busy(worker_state *w, worker_req *q, const npu_grant *g);
/* Acquires the NPU in class cls (nothing to do without an arbiter) and
 * records the wait in q. 0: held; -1: replied (500, or 503 when busy). */
int worker_npu_acquire(worker_state *w, worker_req *q, int cls);
/* Settles a reservation (when reserved) to actual tokens and sets the quota
 * headers. */
void worker_settle(worker_state *w, worker_req *q, budget_res *res, bool reserved,
                   long long actual);
/* 429 insufficient_quota for a reservation of need tokens that failed. */
void worker_quota_error(worker_state *w, worker_req *q, const budget_quota *bq,
                        long long need);

/* ---- the response cache and generation, shared by chat and QA ---------- */

/* The client sent Cache-Control: no-cache or no-store. */
bool worker_no_cache(worker_req *q);
/* Before answering from the cache: charges the hit when
 * budgets.charge_cache_hits, sets X-Cache: HIT. 0, or -1 after replying
 * (429, 500). */
int worker_charge_hit(worker_state *w, worker_req *q, const cache_info *info);

/* One generation. Borrowed for the worker_generate() call. */
typedef struct {
    size_t mi;             /* the model: w->models[mi] (loaded) */
    const int32_t *toks;   /* the prompt, n_prompt ids */
    size_t n_prompt;
    long max_tokens;       /* may shrink to what the budget grants */
    core_sampling sampling;
    const char *const *stop;
    size_t n_stop;
    int npu_class;
    long long t0;          /* request start (worker_now_us()): the deadline counts from it */
    const char *ctx_param; /* the param of a context_length_exceeded 400 */
    /* Streaming: on_start runs once the prompt is prefilled (send the
     * headers and first events), on_text per piece of text (nonzero: the
     * client is gone, stop). on_text NULL: not streaming, the text goes to
     * text. */
    void (*on_start)(void *user);
    int (*on_text)(void *user, const char *text, size_t len);
    void *user;
    sbuf *text;            /* the whole answer (not streaming, or collect) */
    bool collect;          /* streaming: keep the text in text too */
} worker_gen_params;

typedef struct {
    int rc;              /* core_generate()'s result */
    core_gen_result res;
    bool budget_cut;     /* the budget granted fewer tokens than max_tokens */
    char msg[256];       /* detail of a failure */
} worker_gen_result;

/* Reserves prompt + max_tokens from the client's budget, acquires the NPU
 * in npu_class, prefills and generates under the deadline (yielding the NPU
 * every slice), releases, and settles the budget to what was computed.
 * Sets q->prompt_tokens, completion_tokens, gen_us, deadline_hit and the
 * quota headers. 0: generated (out->rc may still be an error to report);
 * -1: an error reply was sent (429, 503, context, prefill failure). */
int worker_generate(worker_state *w, worker_req *q, const worker_gen_params *p,
                    worker_gen_result *out);
/* After worker_generate() returned 0: sets q->finish ("length" or "stop")
 * and, when the client left (499) or the generation failed (an SSE error
 * event and [DONE] when streaming, else a JSON 500), ends the request and
 * returns true; false: the caller sends the answer. */
bool worker_gen_ended(worker_state *w, worker_req *q, const worker_gen_result *r, bool stream);
/* The answer is whole (not cut by an error, the budget, the deadline or a
 * disconnect): only such answers go into the cache. */
bool worker_gen_whole(const worker_req *q, const worker_gen_result *r);

#endif
