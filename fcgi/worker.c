/* worker.c: the FastCGI accept loop and the HTTP endpoints; see worker.h.
 *
 * Input: FastCGI requests from nginx (libfcgi parses the records). The
 * params used: REQUEST_METHOD, DOCUMENT_URI (else SCRIPT_NAME, else
 * REQUEST_URI without its query), CONTENT_LENGTH, REQUEST_ID,
 * EDGEGATE_CLIENT, EDGEGATE_ADMIN, EDGEGATE_START_MSEC, EDGEGATE_CACHE_CONTROL
 * (the request's Cache-Control header), REMOTE_ADDR; CONTENT_TYPE and
 * QUERY_STRING for /v1/vision/detect (vision.c).
 *
 * A chat request goes: parse, template, tokenize -> response cache lookup
 * (deterministic requests only; a hit never touches the NPU) -> token budget
 * reservation (prompt + max tokens) -> NPU acquire (bounded wait, else 503)
 * -> prefill and generate, yielding the NPU every slice -> release -> settle
 * the budget to the real count -> cache put.
 *
 * Signals: SIGTERM/SIGINT stay blocked except while the worker waits for a
 * connection in epoll_pwait(), so a stop never
 * interrupts a request's I/O and never gets lost between "check the flag"
 * and "wait". The listening socket
 * is non-blocking: when another worker wins the accept, FCGX_Accept_r()
 * returns -EAGAIN and we go back to waiting. SIGALRM carries the generation
 * deadline into core_abort().
 */
#define _GNU_SOURCE /* epoll_pwait */
#include "worker.h"

#include <errno.h>
#include <fcgiapp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "kbadmin.h"
#include "arena.h"
#include "budget.h"
#include "cache.h"
#include "core.h"
#include "elog.h"
#include "embed.h"
#include "health.h"
#include "npu.h"
#include "qa.h"
#include "req.h"
#include "resp.h"
#include "sbuf.h"
#include "vision.h"
#include "worker_impl.h"

static volatile sig_atomic_t worker_stop;
static volatile sig_atomic_t worker_deadline_fired;
static core_model *volatile worker_busy_model; /* the model the deadline aborts */
static det_model *volatile worker_busy_det;    /* or the detector */

long long worker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void worker_on_stop(int sig)
{
    (void)sig;
    worker_stop = 1;
}

static void worker_on_alarm(int sig)
{
    (void)sig;
    worker_deadline_fired = 1;
    core_model *m = worker_busy_model;
    if (m)
        core_abort(m);
    det_model *d = worker_busy_det;
    if (d)
        det_abort(d);
}

static void worker_arm_deadline(long long us)
{
    struct itimerval it = {0};
    if (us > 0) {
        it.it_value.tv_sec = us / 1000000;
        it.it_value.tv_usec = us % 1000000;
    }
    setitimer(ITIMER_REAL, &it, NULL);
}

void worker_deadline_det(worker_state *w, det_model *d, long long t0)
{
    worker_deadline_fired = 0;
    worker_busy_det = d;
    if (w->cfg->limits.deadline_ms > 0) {
        long long left = t0 + (long long)w->cfg->limits.deadline_ms * 1000 - worker_now_us();
        worker_arm_deadline(left > 0 ? left : 1);
    }
}

bool worker_deadline_end(void)
{
    worker_arm_deadline(0);
    worker_busy_det = NULL;
    return worker_deadline_fired;
}

/* ---- output ------------------------------------------------------------ */

static const char *worker_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "Unknown";
}

/* FCGX_FPrintF has no %zu and truncates silently: format here, PutStr there. */
int worker_put(worker_req *q, const char *s, size_t n)
{
    if (q->disconnected)
        return -1;
    if (n && FCGX_PutStr(s, (int)n, q->r->out) != (int)n) {
        q->disconnected = true;
        return -1;
    }
    return 0;
}

int worker_flush(worker_req *q)
{
    if (q->disconnected || FCGX_FFlush(q->r->out) != 0) {
        q->disconnected = true;
        return -1;
    }
    return 0;
}

/* extra: more header lines, each ending in \r\n (or NULL). */
/* X-Cache, X-Cache-Key and the quota (OpenAI's rate-limit header names;
 * left out when no limit applies) into h; returns the length. */
static size_t worker_req_hdr(const worker_req *q, char *h, size_t size)
{
    size_t n = 0;
    if (q->xcache)
        n += (size_t)snprintf(h, size, "X-Cache: %s\r\n", q->xcache);
    if (q->cache_key[0] && n < size)
        n += (size_t)snprintf(h + n, size - n, "X-Cache-Key: %s\r\n", q->cache_key);
    if (q->has_quota && q->quota.limit >= 0 && n < size) {
        char reset[48];
        budget_format_reset(q->quota.reset_s, reset, sizeof(reset));
        n += (size_t)snprintf(h + n, size - n,
                              "x-ratelimit-limit-tokens: %lld\r\nx-ratelimit-remaining-tokens: "
                              "%lld\r\nx-ratelimit-reset-tokens: %s\r\n",
                              q->quota.limit, q->quota.remaining, reset);
    }
    return n < size ? n : size;
}

int worker_headers(worker_req *q, int status, const char *type, long long length,
                   const char *extra)
{
    if (q->defer && status != 200) {
        status = WORKER_DEFER_STATUS;
        q->deferred = true;
    }
    char h[2048];
    int n = snprintf(h, sizeof(h), "Status: %d %s\r\nContent-Type: %s\r\nX-Request-Id: %s\r\n",
                     status, worker_reason(status), type, q->req_id);
    if (n > 0 && (size_t)n < sizeof(h))
        n += (int)worker_req_hdr(q, h + n, sizeof(h) - (size_t)n);
    if (length >= 0 && n > 0 && (size_t)n < sizeof(h))
        n += snprintf(h + n, sizeof(h) - (size_t)n, "Content-Length: %lld\r\n", length);
    if (extra && n > 0 && (size_t)n < sizeof(h))
        n += snprintf(h + n, sizeof(h) - (size_t)n, "%s", extra);
    if (n > 0 && (size_t)n < sizeof(h) - 2)
        n += snprintf(h + n, sizeof(h) - (size_t)n, "\r\n");
    else
        return -1;
    q->status = status;
    q->headers_sent = true;
    return worker_put(q, h, (size_t)n);
}

void worker_set_quota(worker_req *q, const budget_quota *bq)
{
    q->quota = *bq;
    q->has_quota = true;
}

void worker_send(worker_req *q, int status, const char *type, const sbuf *body,
                 const char *extra)
{
    if (body->oom) { /* the body is cut short: never send it */
        static const char oom[] = "{\"error\":{\"message\":\"Out of memory.\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        snprintf(q->error, sizeof(q->error), "out of memory building the reply");
        if (worker_headers(q, 500, "application/json", (long long)sizeof oom - 1, NULL) == 0)
            worker_put(q, oom, sizeof oom - 1);
        return;
    }
    size_t len = body->data ? body->len : 0;
    if (worker_headers(q, status, type, (long long)len, extra) == 0)
        worker_put(q, body->data ? body->data : "", len);
}

int worker_sse_headers(worker_req *q)
{
    return worker_headers(q, 200, "text/event-stream", -1,
                          "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
}

void worker_send_error(worker_state *w, worker_req *q, const api_error *e,
                       const char *extra)
{
    sbuf_clear(&w->body);
    resp_error(&w->body, e);
    if (!q->error[0])
        snprintf(q->error, sizeof(q->error), "%s", e->message);
    worker_send(q, e->status, "application/json", &w->body, extra);
}

void worker_fail(worker_state *w, worker_req *q, int status, const char *code,
                 const char *fmt, ...)
{
    api_error e;
    api_fail(&e, status, NULL, code, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    worker_send_error(w, q, &e, NULL);
}

/* ---- request plumbing -------------------------------------------------- */

const char *worker_param(worker_req *q, const char *name)
{
    return FCGX_GetParam(name, q->r->envp);
}

static const char *worker_param_dup(worker_state *w, worker_req *q, const char *name)
{
    const char *v = worker_param(q, name);
    return v ? arena_strndup(w->arena, v, strlen(v)) : NULL;
}

/* nginx's $request_id is 32 hex digits; anything odd is replaced, since it
 * goes into a header and the log. */
static void worker_request_id(worker_req *q)
{
    const char *id = worker_param(q, "REQUEST_ID");
    size_t n = id ? strlen(id) : 0;
    bool ok = n > 0 && n < 65;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
             (id[i] >= 'A' && id[i] <= 'Z') || id[i] == '-' || id[i] == '_' || id[i] == '.';
    if (ok) {
        memcpy(q->req_id, id, n + 1);
        return;
    }
    unsigned char r[16];
    if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        long long t = worker_now_us() ^ ((long long)getpid() << 40);
        memcpy(r, &t, 8);
        memcpy(r + 8, &t, 8);
    }
    for (int i = 0; i < 16; i++)
        snprintf(q->req_id + 2 * i, 3, "%02x", r[i]);
}

/* Reads the body into the arena. Returns 0, or sends the error itself. */
int worker_read_body(worker_state *w, worker_req *q, char **out, size_t *len)
{
    return worker_read_body_max(w, q, w->cfg->limits.max_body_bytes, out, len);
}

int worker_read_body_max(worker_state *w, worker_req *q, long max, char **out, size_t *len)
{
    const char *cl = worker_param(q, "CONTENT_LENGTH");
    long want = -1;
    if (cl && *cl) {
        char *end;
        errno = 0;
        want = strtol(cl, &end, 10);
        if (errno || *end || want < 0) {
            worker_fail(w, q, 400, "invalid_request", "Invalid Content-Length.");
            return -1;
        }
        if (want > max) {
            api_error e;
            api_fail(&e, 413, NULL, "request_too_large",
                     "The request body is %ld bytes; the limit is %ld.", want, max);
            worker_send_error(w, q, &e, NULL);
            return -1;
        }
    }
    size_t cap = want >= 0 ? (size_t)want : (size_t)max + 1;
    char *buf = arena_alloc(w->arena, cap + 1);
    if (!buf) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        return -1;
    }
    size_t got = 0;
    while (got < cap) {
        int n = FCGX_GetStr(buf + got, (int)(cap - got), q->r->in);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (want < 0 && got > (size_t)max) {
        api_error e;
        api_fail(&e, 413, NULL, "request_too_large", "The request body exceeds %ld bytes.", max);
        worker_send_error(w, q, &e, NULL);
        return -1;
    }
    if (want >= 0 && got < (size_t)want) {
        worker_fail(w, q, 400, "invalid_request", "The request body is shorter than its Content-Length.");
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* ---- /v1/chat/completions ---------------------------------------------- */

/* One generation in progress (worker_generate()). */
typedef struct {
    worker_state *w;
    worker_req *q;
    const worker_gen_params *p;
    bool collect;        /* streaming: keep the text too (for the cache) */
    long long deadline;  /* monotonic us; 0: none */
} worker_gen;

static int worker_on_token(void *user, int32_t tok, const char *text, size_t len)
{
    (void)tok;
    worker_gen *g = user;
    if (g->p->on_text) {
        if (len) {
            if (g->p->on_text(g->p->user, text, len))
                return 1; /* the client went away: stop spending the CPU on it */
            if (g->collect && sbuf_put(g->p->text, text, len))
                g->collect = false; /* text.oom now keeps it out of the cache */
        }
    } else if (len && sbuf_put(g->p->text, text, len)) {
        return 1;
    }
    /* One token of the slice; past the slice, others get the NPU first. */
    if (g->w->npu && npu_tick(g->w->npu, 1, NULL) != CORE_OK) {
        snprintf(g->q->error, sizeof(g->q->error), "npu_tick failed");
        return 1;
    }
    if (g->deadline && worker_now_us() >= g->deadline) {
        g->q->deadline_hit = true;
        return 1;
    }
    return 0;
}

static uint64_t worker_random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
        s = (uint64_t)worker_now_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    return s;
}

static int worker_context_error(worker_state *w, worker_req *q, const char *param, int n_ctx,
                                size_t n_prompt)
{
    api_error e;
    api_fail(&e, 400, param, "context_length_exceeded",
             "This model's maximum context length is %d tokens. However, your messages "
             "resulted in %zu tokens.",
             n_ctx, n_prompt);
    worker_send_error(w, q, &e, NULL);
    return -1;
}

void worker_npu_release(worker_state *w)
{
    if (w->npu && npu_held(w->npu) && npu_release(w->npu) != CORE_OK)
        elog_msg(ELOG_ERROR, "worker %d: npu_release failed", w->p->slot);
}

/* Settles a reservation (if any) to actual tokens; the headers follow. */
void worker_settle(worker_state *w, worker_req *q, budget_res *res, bool reserved,
                   long long actual)
{
    if (!reserved)
        return;
    budget_quota bq;
    int rc = budget_settle(w->budget, res, actual, &bq);
    if (rc != CORE_OK)
        elog_ev(ELOG_ERROR, "budget settle failed", ELOG_S("request_id", q->req_id),
                ELOG_S("client", q->client), ELOG_I("tokens", actual),
                ELOG_S("error", budget_errmsg(w->budget)));
    else
        worker_set_quota(q, &bq);
}

void worker_quota_error(worker_state *w, worker_req *q, const budget_quota *bq,
                        long long need)
{
    char reset[48], extra[64];
    budget_format_reset(bq->reset_s, reset, sizeof(reset));
    api_error e;
    api_fail(&e, 429, NULL, "insufficient_quota",
             "You exceeded your token quota: this request needs at least %lld tokens and "
             "%lld of %lld are left; the quota resets in %s.",
             need, bq->remaining, bq->limit, reset);
    e.type = "insufficient_quota";
    snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", bq->reset_s > 0 ? bq->reset_s : 1);
    worker_send_error(w, q, &e, extra);
}

void worker_npu_busy(worker_state *w, worker_req *q, const npu_grant *g)
{
    bool full = g->outcome == NPU_QUEUE_FULL;
    char extra[64];
    api_error e;
    api_fail(&e, 503, NULL, full ? "npu_queue_full" : "npu_timeout",
             "The NPU is busy (%d requests waiting%s); retry after %d s.", g->depth,
             full ? ", the queue is full" : ", waited too long", g->retry_after_s);
    e.type = "server_error";
    snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", g->retry_after_s);
    worker_send_error(w, q, &e, extra);
}

int worker_npu_acquire(worker_state *w, worker_req *q, int cls)
{
    if (!w->npu)
        return 0;
    npu_grant grant;
    int rc = npu_acquire(w->npu, cls, &grant);
    if (rc != CORE_OK) {
        worker_fail(w, q, 500, NULL, "The NPU arbiter failed: %s.", core_strerror(rc));
        return -1;
    }
    q->has_npu_wait = true;
    q->npu_wait_us = (long long)grant.wait_us;
    if (grant.outcome != NPU_GRANTED) {
        worker_npu_busy(w, q, &grant);
        return -1;
    }
    return 0;
}

/* The cache key: everything that changes the answer, in a fixed order. The
 * rendered prompt is the normal form of the messages (roles, contents and
 * the template; its tokens follow from it and the model, so a hit needs no
 * tokenizing); stream, include_usage and user do not change the text. */
static void worker_chat_key(worker_state *w, worker_req *q, size_t mi, const req_chat *rq,
                            const char *prompt, size_t plen, long max_tokens, cache_key *key)
{
    const cfg *c = w->cfg;
    const cfg_model *cm = &c->models[mi];
    const char *tmpl = cm->chat_template ? cm->chat_template : "auto";
    const char *client = c->cache.shared ? "" : q->client;
    cache_keyb kb;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "chat.completions", 16);
    cache_key_add_str(&kb, cm->id, strlen(cm->id));
    cache_key_add_str(&kb, cm->path, strlen(cm->path));
    cache_key_add_i64(&kb, w->model_size[mi]);
    cache_key_add_i64(&kb, w->model_mtime[mi]);
    cache_key_add_str(&kb, tmpl, strlen(tmpl));
    cache_key_add_str(&kb, client, strlen(client));
    cache_key_add_str(&kb, prompt, plen);
    cache_key_add_i64(&kb, max_tokens);
    cache_key_add_f64(&kb, rq->temperature);
    cache_key_add_f64(&kb, rq->top_p);
    cache_key_add_f64(&kb, rq->frequency_penalty);
    cache_key_add_f64(&kb, rq->presence_penalty);
    cache_key_add_i64(&kb, rq->has_seed);
    cache_key_add_i64(&kb, rq->has_seed ? (int64_t)rq->seed : 0);
    cache_key_add_i64(&kb, (int64_t)rq->n_stop);
    for (size_t i = 0; i < rq->n_stop; i++)
        cache_key_add_str(&kb, rq->stop[i], strlen(rq->stop[i]));
    cache_key_final(&kb, key);
}

bool worker_no_cache(worker_req *q)
{
    const char *cc = worker_param(q, "EDGEGATE_CACHE_CONTROL");
    return cc && (strcasestr(cc, "no-cache") || strcasestr(cc, "no-store"));
}

/* Hits are free unless budgets.charge_cache_hits. */
int worker_charge_hit(worker_state *w, worker_req *q, const cache_info *info)
{
    if (w->budget && w->cfg->budgets.charge_cache_hits) {
        long long cost = info->prompt_tokens + info->completion_tokens;
        budget_res res;
        budget_quota bq;
        bool granted = false;
        int rc = budget_reserve(w->budget, q->client, cost, cost, &res, &granted, &bq);
        if (rc != CORE_OK) {
            snprintf(q->error, sizeof(q->error), "budget: %s", budget_errmsg(w->budget));
            worker_fail(w, q, 500, NULL, "The token budget store failed: %s.",
                        core_strerror(rc));
            return -1;
        }
        worker_set_quota(q, &bq);
        if (!granted) {
            worker_quota_error(w, q, &bq, cost);
            return -1;
        }
        worker_settle(w, q, &res, true, cost);
    }
    q->xcache = "HIT";
    return 0;
}

/* Answers from a cache entry: no NPU, no generation. */
static void worker_chat_hit(worker_state *w, worker_req *q, const req_chat *rq,
                            const cache_info *info)
{
    if (worker_charge_hit(w, q, info))
        return;
    q->prompt_tokens = info->prompt_tokens;
    q->completion_tokens = info->completion_tokens;
    const char *finish = strcmp(info->finish, "length") == 0 ? "length" : "stop";
    q->finish = finish;
    char cid[96];
    snprintf(cid, sizeof(cid), "chatcmpl-%s", q->req_id);
    resp_meta meta = {.id = cid, .created = (long long)time(NULL), .model = rq->model};
    resp_usage usage = {info->prompt_tokens, info->completion_tokens, info->prompt_tokens};
    const char *text = w->cachebody.data ? w->cachebody.data : "";
    size_t len = w->cachebody.data ? w->cachebody.len : 0;
    if (!rq->stream) {
        sbuf_clear(&w->body);
        resp_completion(&w->body, &meta, text, len, finish, &usage, false);
        worker_send(q, 200, "application/json", &w->body, NULL);
        return;
    }
    if (worker_sse_headers(q) != 0)
        return;
    sbuf_clear(&w->chunk);
    resp_sse_role(&w->chunk, &meta, rq->include_usage);
    if (len)
        resp_sse_text(&w->chunk, &meta, text, len, rq->include_usage);
    resp_sse_finish(&w->chunk, &meta, finish, rq->include_usage, false);
    if (rq->include_usage)
        resp_sse_usage(&w->chunk, &meta, &usage);
    resp_sse_done(&w->chunk);
    if (w->chunk.oom) {
        q->status = 500;
        snprintf(q->error, sizeof(q->error), "out of memory");
        return;
    }
    if (worker_put(q, w->chunk.data, w->chunk.len) == 0)
        worker_flush(q);
}

/* Streaming chat: the SSE events of worker_generate()'s hooks. */
typedef struct {
    worker_state *w;
    worker_req *q;
    const resp_meta *meta;
    const req_chat *rq;
} worker_chat_sse;

static void worker_chat_start(void *user)
{
    worker_chat_sse *x = user;
    if (worker_sse_headers(x->q) == 0) {
        sbuf_clear(&x->w->chunk);
        resp_sse_role(&x->w->chunk, x->meta, x->rq->include_usage);
        if (worker_put(x->q, x->w->chunk.data, x->w->chunk.len) == 0)
            worker_flush(x->q);
    }
}

static int worker_chat_text(void *user, const char *text, size_t len)
{
    worker_chat_sse *x = user;
    sbuf_clear(&x->w->chunk);
    if (resp_sse_text(&x->w->chunk, x->meta, text, len, x->rq->include_usage) != 0)
        return 1;
    return worker_put(x->q, x->w->chunk.data, x->w->chunk.len) || worker_flush(x->q);
}

bool worker_gen_whole(const worker_req *q, const worker_gen_result *r)
{
    return r->rc == CORE_OK && !q->disconnected && !q->deadline_hit && !r->budget_cut;
}

bool worker_gen_ended(worker_state *w, worker_req *q, const worker_gen_result *r, bool stream)
{
    q->finish = q->deadline_hit || r->res.finish == CORE_FINISH_LENGTH ? "length" : "stop";
    if (q->disconnected) {
        q->status = 499;
        q->finish = "disconnected";
        elog_ev(ELOG_INFO, "client disconnected; generation stopped",
                ELOG_S("request_id", q->req_id), ELOG_I("completion_tokens", q->completion_tokens));
        return true;
    }
    if (r->rc == CORE_OK)
        return false;
    api_error e;
    snprintf(q->error, sizeof(q->error), "%s", r->msg);
    api_fail(&e, 500, NULL, NULL, "Generation failed: %s.", core_strerror(r->rc));
    if (stream) {
        sbuf_clear(&w->chunk);
        resp_sse_error(&w->chunk, &e);
        resp_sse_done(&w->chunk);
        worker_put(q, w->chunk.data, w->chunk.len);
        q->status = 500;
    } else {
        worker_send_error(w, q, &e, NULL);
    }
    return true;
}

int worker_generate(worker_state *w, worker_req *q, const worker_gen_params *p,
                    worker_gen_result *out)
{
    const cfg *c = w->cfg;
    core_model *m = w->models[p->mi];
    long max_tokens = p->max_tokens;
    size_t n_prompt = p->n_prompt;
    int rc;
    memset(out, 0, sizeof(*out));
    out->res = (core_gen_result){0, CORE_FINISH_LENGTH};
    q->prompt_tokens = (long long)n_prompt;

    /* Budget: reserve the most this request may spend; settled below. */
    budget_res bres;
    bool reserved = false;
    if (w->budget) {
        bool granted = false;
        budget_quota bq;
        long long want_tok = (long long)n_prompt + max_tokens;
        rc = budget_reserve(w->budget, q->client, want_tok, (long long)n_prompt + 1, &bres,
                            &granted, &bq);
        if (rc != CORE_OK) {
            snprintf(q->error, sizeof(q->error), "budget: %s", budget_errmsg(w->budget));
            worker_fail(w, q, 500, NULL, "The token budget store failed: %s.",
                        core_strerror(rc));
            return -1;
        }
        worker_set_quota(q, &bq);
        if (!granted) {
            worker_quota_error(w, q, &bq, (long long)n_prompt + 1);
            return -1;
        }
        reserved = true;
        if (bres.granted < want_tok) {
            max_tokens = (long)(bres.granted - (long long)n_prompt);
            out->budget_cut = true;
        }
    }

    /* The NPU: a bounded wait, before the deadline timer runs. */
    if (w->npu) {
        npu_grant grant;
        rc = npu_acquire(w->npu, p->npu_class, &grant);
        if (rc != CORE_OK) {
            worker_settle(w, q, &bres, reserved, 0);
            worker_fail(w, q, 500, NULL, "The NPU arbiter failed: %s.", core_strerror(rc));
            return -1;
        }
        q->has_npu_wait = true;
        q->npu_wait_us = (long long)grant.wait_us;
        if (grant.outcome != NPU_GRANTED) {
            worker_settle(w, q, &bres, reserved, 0);
            worker_npu_busy(w, q, &grant);
            return -1;
        }
    }

    long long deadline = 0;
    if (c->limits.deadline_ms > 0) {
        deadline = p->t0 + (long long)c->limits.deadline_ms * 1000;
        long long left = deadline - worker_now_us();
        worker_arm_deadline(left > 0 ? left : 1);
    }
    worker_deadline_fired = 0;
    worker_busy_model = m;

    core_reset(m);
    rc = core_prefill(m, p->toks, n_prompt, out->msg, sizeof(out->msg));
    if (rc == CORE_ECONTEXT) {
        worker_busy_model = NULL;
        worker_arm_deadline(0);
        worker_npu_release(w);
        worker_settle(w, q, &bres, reserved, 0);
        worker_context_error(w, q, p->ctx_param, w->n_ctx[p->mi], n_prompt);
        return -1;
    }
    bool prefill_cut = rc == CORE_EABORTED || (rc == CORE_OK && deadline && worker_now_us() >= deadline);
    if (rc != CORE_OK && rc != CORE_EABORTED) {
        worker_busy_model = NULL;
        worker_arm_deadline(0);
        worker_npu_release(w);
        worker_settle(w, q, &bres, reserved, 0);
        snprintf(q->error, sizeof(q->error), "%s", out->msg);
        worker_fail(w, q, 500, NULL, "Prefill failed: %s.", core_strerror(rc));
        return -1;
    }
    if (p->on_start)
        p->on_start(p->user);

    rc = CORE_OK;
    if (prefill_cut) {
        q->deadline_hit = true;
    } else if (!q->disconnected) {
        core_gen_params gp = {.max_tokens = (int)max_tokens,
                              .sampling = p->sampling,
                              .stop = p->stop,
                              .n_stop = p->n_stop};
        worker_gen g = {.w = w, .q = q, .p = p, .collect = p->collect, .deadline = deadline};
        long long g0 = worker_now_us();
        rc = core_generate(m, &gp, worker_on_token, &g, &out->res, out->msg, sizeof(out->msg));
        q->gen_us = worker_now_us() - g0;
        q->completion_tokens = (long long)out->res.n_tokens;
        if (worker_deadline_fired && out->res.finish == CORE_FINISH_ABORT)
            q->deadline_hit = true;
    }
    worker_busy_model = NULL;
    worker_arm_deadline(0);
    /* Nobody waits on us while we write the last chunks to nginx. */
    worker_npu_release(w);
    /* Charged what was computed: a disconnect or a deadline pays for its
     * tokens, the rest of the reservation goes back. */
    worker_settle(w, q, &bres, reserved, q->prompt_tokens + q->completion_tokens);
    out->rc = rc;
    return 0;
}

static void worker_chat(worker_state *w, worker_req *q, long long t0)
{
    const cfg *c = w->cfg;
    api_error e;
    char *body;
    size_t body_len;
    /* Every chat answer, errors included, tells the client its quota. */
    budget_quota bq0;
    if (w->budget && budget_query(w->budget, q->client, &bq0) == CORE_OK)
        worker_set_quota(q, &bq0);
    if (worker_read_body(w, q, &body, &body_len))
        return;

    req_chat rq;
    req_limits lim = {.max_messages = (size_t)c->limits.max_messages,
                      .models = w->ids,
                      .n_models = c->n_models};
    int rc = req_parse_chat(w->arena, body, body_len, &lim, &rq, &e);
    if (rc != CORE_OK) {
        worker_send_error(w, q, &e, NULL);
        return;
    }
    q->model = rq.model;
    q->stream = rq.stream;
    long mi = worker_model_for(w, q, rq.model, false);
    if (mi < 0)
        return;
    core_model *m = w->models[mi];

    int cap = cfg_client_cap(c, q->client);
    long max_tokens = rq.max_tokens ? rq.max_tokens : c->limits.default_max_tokens;
    if (max_tokens > cap)
        max_tokens = cap;

    /* The rendered prompt (special tokens as text) keys the cache. */
    size_t want = 512, plen = 0;
    for (size_t i = 0; i < rq.n_msgs; i++)
        want += strlen(rq.msgs[i].content) + 64;
    char *prompt = arena_alloc(w->arena, want);
    rc = prompt ? core_chat_format(m, rq.msgs, rq.n_msgs, true, prompt, want, &plen)
                : CORE_ENOMEM;
    if (rc == CORE_EINVAL && plen >= want) {
        want = plen + 1;
        prompt = arena_alloc(w->arena, want);
        rc = prompt ? core_chat_format(m, rq.msgs, rq.n_msgs, true, prompt, want, &plen)
                    : CORE_ENOMEM;
    }
    if (rc != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Could not apply the chat template: %s.", core_strerror(rc));
        return;
    }
    /* Response cache: only answers that a repeat would reproduce. */
    bool cacheable = w->cache && (rq.temperature == 0 || rq.has_seed) && !worker_no_cache(q);
    q->xcache = cacheable ? "MISS" : "BYPASS";
    cache_key key;
    if (cacheable) {
        worker_chat_key(w, q, mi, &rq, prompt, plen, max_tokens, &key);
        cache_key_hex(&key, q->cache_key);
        bool hit = false;
        cache_info info;
        rc = (q->defer ? cache_get_hit : cache_get)(w->cache, &key, &hit, &info, &w->cachebody);
        if (rc != CORE_OK) {
            elog_ev(ELOG_WARN, "cache get failed; treated as a miss",
                    ELOG_S("request_id", q->req_id), ELOG_S("error", cache_errmsg(w->cache)));
        } else if (hit) {
            worker_chat_hit(w, q, &rq, &info);
            return;
        }
    }
    if (q->defer) { /* the status lane never generates */
        worker_headers(q, WORKER_DEFER_STATUS, "text/plain", 0, NULL);
        return;
    }
    /* The template's special tokens count, but what users wrote is text:
     * special-token strings in contents cannot forge a turn. */
    size_t tcap = plen + 8, n_prompt = 0;
    int32_t *toks = arena_alloc(w->arena, tcap * sizeof(int32_t));
    rc = toks ? core_chat_tokenize(m, rq.msgs, rq.n_msgs, true, toks, tcap, &n_prompt) : CORE_ENOMEM;
    if (rc == CORE_EINVAL && n_prompt > tcap) {
        tcap = n_prompt;
        toks = arena_alloc(w->arena, tcap * sizeof(int32_t));
        rc = toks ? core_chat_tokenize(m, rq.msgs, rq.n_msgs, true, toks, tcap, &n_prompt)
                  : CORE_ENOMEM;
    }
    if (rc != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Could not tokenize the prompt: %s.", core_strerror(rc));
        return;
    }
    q->prompt_tokens = (long long)n_prompt;
    /* Room for at least one generated token. */
    if (n_prompt + 1 > (size_t)w->n_ctx[mi]) {
        worker_context_error(w, q, "messages", w->n_ctx[mi], n_prompt);
        return;
    }

    char cid[96];
    snprintf(cid, sizeof(cid), "chatcmpl-%s", q->req_id);
    resp_meta meta = {.id = cid, .created = (long long)time(NULL), .model = rq.model};
    sbuf text;
    sbuf_init(&text);
    worker_chat_sse cs = {.w = w, .q = q, .meta = &meta, .rq = &rq};
    worker_gen_params gp = {.mi = mi,
                            .toks = toks,
                            .n_prompt = n_prompt,
                            .max_tokens = max_tokens,
                            .sampling = core_default_sampling(),
                            .stop = rq.stop,
                            .n_stop = rq.n_stop,
                            .npu_class = c->npu.chat_class,
                            .t0 = t0,
                            .ctx_param = "messages",
                            .on_start = rq.stream ? worker_chat_start : NULL,
                            .on_text = rq.stream ? worker_chat_text : NULL,
                            .user = &cs,
                            .text = &text,
                            .collect = cacheable};
    gp.sampling.temperature = (float)rq.temperature;
    gp.sampling.top_p = (float)rq.top_p;
    gp.sampling.frequency_penalty = (float)rq.frequency_penalty;
    gp.sampling.presence_penalty = (float)rq.presence_penalty;
    gp.sampling.seed = rq.has_seed ? rq.seed : worker_random_seed();
    worker_gen_result gr;
    if (worker_generate(w, q, &gp, &gr)) {
        sbuf_free(&text);
        return;
    }

    bool ended = worker_gen_ended(w, q, &gr, rq.stream);
    const char *finish = q->finish;
    resp_usage usage = {q->prompt_tokens, q->completion_tokens, 0};
    if (!ended && rq.stream) {
        sbuf_clear(&w->chunk);
        resp_sse_finish(&w->chunk, &meta, finish, rq.include_usage, q->deadline_hit);
        if (rq.include_usage)
            resp_sse_usage(&w->chunk, &meta, &usage);
        resp_sse_done(&w->chunk);
        if (worker_put(q, w->chunk.data, w->chunk.len) == 0)
            worker_flush(q);
    } else if (!ended && text.oom) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
    } else if (!ended) {
        sbuf_clear(&w->body);
        resp_completion(&w->body, &meta, text.data, text.len, finish, &usage, q->deadline_hit);
        worker_send(q, 200, "application/json", &w->body,
                    q->deadline_hit ? "X-Edgegate-Deadline: hit\r\n" : NULL);
    }
    if (q->disconnected && q->status != 499)
        q->status = 499;
    /* A shortened (budget) or cut (deadline, disconnect) answer is not the
     * answer to this request: only whole answers go into the cache. */
    if (cacheable && worker_gen_whole(q, &gr) && !text.oom) {
        cache_entry ce = {.model = rq.model,
                          .client = c->cache.shared ? NULL : q->client,
                          .ttl_s = -1,
                          .prompt_tokens = q->prompt_tokens,
                          .completion_tokens = q->completion_tokens,
                          .finish = finish};
        if (cache_put(w->cache, &key, &ce, text.data ? text.data : "", text.len) != CORE_OK)
            elog_ev(ELOG_WARN, "cache put failed", ELOG_S("request_id", q->req_id),
                    ELOG_S("error", cache_errmsg(w->cache)));
    }
    sbuf_free(&text);
}

/* ---- other endpoints ---------------------------------------------------- */

/* Language models, then detectors (one namespace, see cfg.h), into out
 * (CFG_MAX_MODELS + CFG_MAX_VISION entries); the type of a model that
 * failed to load here is unknown. Returns the count. */
static size_t worker_model_list(const worker_state *w, health_model *out)
{
    size_t n = 0;
    for (size_t i = 0; i < w->cfg->n_models; i++, n++) {
        out[n] = (health_model){.id = w->ids[i], .loaded = w->models[i] != NULL};
        if (w->models[i]) {
            core_info info;
            core_get_info(w->models[i], &info);
            out[n].type = info.embedding ? "embedding" : "chat";
        }
    }
    for (size_t i = 0; i < w->cfg->n_vision; i++, n++)
        out[n] = (health_model){.id = w->cfg->vision[i].id,
                                .type = w->dets[i] ? "detection" : NULL,
                                .loaded = w->dets[i] != NULL};
    return n;
}

static void worker_models(worker_state *w, worker_req *q)
{
    health_model list[CFG_MAX_MODELS + CFG_MAX_VISION];
    const char *ids[CFG_MAX_MODELS + CFG_MAX_VISION], *types[CFG_MAX_MODELS + CFG_MAX_VISION];
    size_t n = worker_model_list(w, list);
    for (size_t i = 0; i < n; i++) {
        ids[i] = list[i].id;
        types[i] = list[i].type;
    }
    sbuf_clear(&w->body);
    resp_models(&w->body, ids, types, n, w->p->started);
    worker_send(q, 200, "application/json", &w->body, NULL);
}

/* The main socket's backlog, asked of the kernel at most every 10 ms: two
 * system calls per /health would be a third of its cost under a load
 * balancer polling hard. */
static bool worker_backlog(worker_state *w, long long *out)
{
    long long now = worker_now_us();
    if (w->probe && (w->backlog_us == 0 || now - w->backlog_us >= 10000)) {
        if (health_backlog(w->probe, &w->backlog) == CORE_OK)
            w->backlog_us = now;
        else
            w->backlog_us = 0;
    }
    *out = w->backlog;
    return w->backlog_us != 0;
}

static void worker_health(worker_state *w, worker_req *q)
{
    /* sysfs reads cost a few syscalls; once a second is plenty. */
    long long now_ms = worker_now_us() / 1000;
    if (now_ms - w->temp_read_ms >= 1000 || w->temp_read_ms == 0) {
        w->has_temp = health_npu_temp(NULL, &w->temp_c) == CORE_OK;
        w->temp_read_ms = now_ms;
    }
    metrics_summary s;
    metrics_summarize(w->p->metrics, &s);
    long long backlog = 0;
    bool has_backlog = worker_backlog(w, &backlog);
    long long others = s.in_flight > 0 ? s.in_flight - 1 : 0; /* not this request */
    health_model list[CFG_MAX_MODELS + CFG_MAX_VISION];
    health_status h = {.model_id = w->ids[0],
                       .models = list,
                       .n_models = worker_model_list(w, list),
                       .model_loaded = w->models[0] != NULL,
                       .workers_alive = s.workers_alive,
                       .workers_configured = s.workers_configured,
                       .has_temp = w->has_temp,
                       .npu_temp_c = w->temp_c,
                       .in_flight = others,
                       .has_backlog = has_backlog,
                       .backlog = backlog,
                       .queue_depth = others + backlog};
    npu_stats ns;
    if (w->npu && npu_get_stats(w->npu, &ns) == CORE_OK) {
        h.has_npu = true;
        h.npu_busy = ns.holder_pid != 0;
        h.npu_holder_pid = ns.holder_pid;
        h.npu_depth = ns.depth;
        h.npu_hold_ms_mean_recent = (double)ns.hold_us_mean_recent / 1000.0;
        h.npu_handoffs = (long long)ns.handoffs;
        h.npu_timeouts = (long long)ns.timeouts;
        h.npu_rejected = (long long)ns.rejected;
    }
    sbuf_clear(&w->body);
    int status = health_render(&h, &w->body);
    worker_send(q, status, "application/json", &w->body, "Cache-Control: no-store\r\n");
}

static void worker_metrics(worker_state *w, worker_req *q)
{
    sbuf_clear(&w->body);
    long long backlog;
    bool has_backlog = worker_backlog(w, &backlog);
    metrics_render(w->p->metrics, has_backlog ? &backlog : NULL, &w->body);
    /* Both live in shared files: already totals over every worker. */
    npu_stats ns;
    if (w->npu && npu_get_stats(w->npu, &ns) == CORE_OK)
        npu_metrics_render(&ns, &w->body);
    cache_stats cs;
    if (w->cache && cache_get_stats(w->cache, &cs) == CORE_OK)
        cache_metrics_render(&cs, &w->body);
    worker_send(q, 200, "text/plain; version=0.0.4; charset=utf-8", &w->body, NULL);
}

long worker_model_for(worker_state *w, worker_req *q, const char *id, bool embedding)
{
    size_t mi = 0;
    while (mi < w->cfg->n_models && strcmp(w->ids[mi], id) != 0)
        mi++;
    if (mi == w->cfg->n_models || !w->models[mi]) {
        worker_fail(w, q, 503, "model_unavailable",
                    "The model '%.64s' failed to load on this worker; see the pool's log.", id);
        return -1;
    }
    core_info info;
    core_get_info(w->models[mi], &info);
    if (info.embedding != embedding) {
        api_error e;
        api_fail(&e, 400, "model", "invalid_value",
                 embedding ? "The model '%.64s' does not support embeddings; use an embedding model."
                           : "The model '%.64s' is an embedding model: it does not generate text "
                             "(use /v1/embeddings).",
                 id);
        worker_send_error(w, q, &e, NULL);
        return -1;
    }
    return (long)mi;
}

bool worker_method(worker_state *w, worker_req *q, const char *allowed)
{
    const char *m = q->method;
    if (strcmp(m, allowed) == 0 || (strcmp(allowed, "GET") == 0 && strcmp(m, "HEAD") == 0))
        return true;
    api_error e;
    api_fail(&e, 405, NULL, "method_not_allowed", "Method %.16s is not allowed here; use %s.", m,
             allowed);
    char allow[64];
    snprintf(allow, sizeof(allow), "Allow: %s\r\n", allowed);
    worker_send_error(w, q, &e, allow);
    return false;
}

/* ---- admin endpoints (EDGEGATE_ADMIN=1) ---------------------------------- */

void worker_send_json(worker_state *w, worker_req *q, int status)
{
    worker_send(q, status, "application/json", &w->body, "Cache-Control: no-store\r\n");
}

/* After an admin_* call: 200 with the body, or the matching error. */
static void worker_admin_reply(worker_state *w, worker_req *q, int rc, const char *what,
                               const char *store_err)
{
    if (rc == CORE_OK) {
        worker_send_json(w, q, 200);
    } else if (rc == CORE_EINVAL) {
        worker_fail(w, q, 400, "invalid_value", "Invalid client id.");
    } else {
        snprintf(q->error, sizeof(q->error), "%s", store_err);
        worker_fail(w, q, 500, NULL, "%s failed: %s.", what, core_strerror(rc));
    }
}

static void worker_admin_cache(worker_state *w, worker_req *q, const char *what)
{
    if (!w->cache) {
        worker_fail(w, q, 503, "cache_unavailable",
                    "The response cache is disabled or failed to open; see the pool's log.");
        return;
    }
    sbuf_clear(&w->body);
    if (strcmp(what, "stats") == 0) {
        if (worker_method(w, q, "GET"))
            worker_admin_reply(w, q, admin_cache_stats_json(w->cache, &w->body),
                               "Reading the cache statistics", cache_errmsg(w->cache));
    } else if (strcmp(what, "purge") == 0) {
        if (!worker_method(w, q, "POST"))
            return;
        char *body;
        size_t len;
        if (worker_read_body(w, q, &body, &len))
            return;
        api_error e;
        const char *param = NULL;
        api_fail(&e, 400, NULL, "invalid_value", "%s", "");
        sbuf_clear(&w->body);
        int rc = admin_cache_purge_json(w->cache, body, len, &w->body, &param, e.message,
                                        sizeof(e.message));
        if (rc == CORE_EFORMAT) {
            if (param)
                snprintf(e.param, sizeof(e.param), "%s", param);
            worker_send_error(w, q, &e, NULL);
            return;
        }
        if (rc == CORE_OK)
            elog_ev(ELOG_INFO, "cache purged", ELOG_S("request_id", q->req_id),
                    ELOG_S("result", w->body.data));
        worker_admin_reply(w, q, rc, "The purge", cache_errmsg(w->cache));
    } else {
        worker_fail(w, q, 404, "not_found", "No admin endpoint %.64s.", q->path);
    }
}

/* rest: "" (the list), "CLIENT" or "CLIENT/reset". */
static void worker_admin_budgets(worker_state *w, worker_req *q, const char *rest)
{
    if (!w->budget) {
        worker_fail(w, q, 503, "budgets_unavailable",
                    "Token budgets are disabled or failed to open; see the pool's log.");
        return;
    }
    sbuf_clear(&w->body);
    if (!*rest) {
        if (worker_method(w, q, "GET"))
            worker_admin_reply(w, q, admin_budgets_json(w->budget, &w->body),
                               "Reading the budgets", budget_errmsg(w->budget));
        return;
    }
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    char client[BUDGET_MAX_CLIENT + 1];
    if (n == 0 || n > BUDGET_MAX_CLIENT || (slash && strcmp(slash, "/reset") != 0)) {
        worker_fail(w, q, 404, "not_found", "No admin endpoint %.64s.", q->path);
        return;
    }
    memcpy(client, rest, n);
    client[n] = '\0';
    if (!slash) {
        if (worker_method(w, q, "GET"))
            worker_admin_reply(w, q, admin_budget_json(w->budget, client, &w->body),
                               "Reading the budget", budget_errmsg(w->budget));
        return;
    }
    if (!worker_method(w, q, "POST"))
        return;
    int rc = admin_budget_reset_json(w->budget, client, &w->body);
    if (rc == CORE_OK)
        elog_ev(ELOG_INFO, "budget reset", ELOG_S("request_id", q->req_id),
                ELOG_S("budget_client", client));
    worker_admin_reply(w, q, rc, "Resetting the budget", budget_errmsg(w->budget));
}

static void worker_admin(worker_state *w, worker_req *q)
{
    const char *p = q->path;
    if (strncmp(p, "/admin/cache/", 13) == 0)
        worker_admin_cache(w, q, p + 13);
    else if (strcmp(p, "/admin/budgets") == 0)
        worker_admin_budgets(w, q, "");
    else if (strncmp(p, "/admin/budgets/", 15) == 0)
        worker_admin_budgets(w, q, p + 15);
    else if (strcmp(p, "/admin/kb") == 0 || strncmp(p, "/admin/kb/", 10) == 0)
        kbadmin_route(w, q, p + 9);
    else
        worker_fail(w, q, 404, "not_found", "No admin endpoint %.64s.", p);
}

static void worker_embed(worker_state *w, worker_req *q, long long t0)
{
    (void)t0;
    embed_handle(w, q);
}

/* The client API: POST only, and only with a client id from nginx's key map. */
static const struct {
    const char *path;
    metrics_endpoint ep;
    void (*handle)(worker_state *, worker_req *, long long t0);
} worker_api[] = {
    {"/v1/chat/completions", METRICS_EP_CHAT, worker_chat},
    {"/v1/qa", METRICS_EP_QA, qa_handle},
    {"/v1/vision/detect", METRICS_EP_VISION, vision_detect},
    {"/v1/embeddings", METRICS_EP_EMBED, worker_embed},
};

static void worker_route(worker_state *w, worker_req *q, long long t0)
{
    const char *p = q->path;
    /* A status connection is kept open while this worker waits: nothing
     * that might run for long may come over it (see worker_kept_close).
     * Chat comes for its cache hits only (WORKER_DEFER_STATUS). */
    if (q->status_lane && strcmp(p, "/health") != 0 && strcmp(p, "/v1/models") != 0 &&
        strcmp(p, "/metrics") != 0) {
        q->defer = true;
        if (strcmp(p, "/v1/chat/completions") != 0) {
            worker_fail(w, q, 404, "not_found", "No endpoint %.64s on the status socket.", p);
            return;
        }
    }
    for (size_t i = 0; i < sizeof worker_api / sizeof *worker_api; i++) {
        if (strcmp(p, worker_api[i].path) != 0)
            continue;
        q->ep = worker_api[i].ep;
        if (!worker_method(w, q, "POST"))
            return;
        if (!q->client || !*q->client)
            worker_fail(w, q, 401, "invalid_api_key", "No client identity reached the pool.");
        else
            worker_api[i].handle(w, q, t0);
        return;
    }
    if (strcmp(p, "/v1/models") == 0) {
        q->ep = METRICS_EP_MODELS;
        if (worker_method(w, q, "GET"))
            worker_models(w, q);
    } else if (strcmp(p, "/health") == 0) {
        q->ep = METRICS_EP_HEALTH;
        if (worker_method(w, q, "GET"))
            worker_health(w, q);
    } else if (strcmp(p, "/metrics") == 0) {
        q->ep = METRICS_EP_METRICS;
        if (worker_method(w, q, "GET"))
            worker_metrics(w, q);
    } else if (strncmp(p, "/admin/", 7) == 0 || strcmp(p, "/admin") == 0) {
        q->ep = METRICS_EP_ADMIN;
        const char *admin = worker_param(q, "EDGEGATE_ADMIN");
        if (!admin || strcmp(admin, "1") != 0)
            worker_fail(w, q, 403, "forbidden", "The admin API needs the admin key.");
        else
            worker_admin(w, q);
    } else {
        q->ep = METRICS_EP_OTHER;
        worker_fail(w, q, 404, "not_found", "No endpoint %.64s.", p);
    }
}

/* Ends the request. libfcgi's close lingers (shutdown, then reads until
 * the peer closes, up to 2 s) so that unread request bytes cannot make a
 * TCP stack reset the connection before the response is read; here it
 * kept the worker waiting for nginx's close, a round trip per request in
 * which it could not accept the next one. Once the input is read to its
 * end (draining at most 64 KiB more here) nothing unread can remain, so
 * the connection is closed at once: FCGX_Detach() makes FCGX_Finish_r()
 * skip the linger. Measured on /health through nginx TLS: 15 syscalls per
 * request -> 12, 9.1k -> 13.4k requests/s (wrk -c32, medians of 4 runs). */
static void worker_finish(FCGX_Request *r)
{
    char sink[4096];
    for (int i = 0; i < 16 && !FCGX_HasSeenEOF(r->in); i++)
        if (FCGX_GetStr(sink, (int)sizeof sink, r->in) <= 0)
            break;
    if (FCGX_HasSeenEOF(r->in))
        FCGX_Detach(r);
    else /* a kept connection's unread input would be read as a request */
        r->keepConnection = 0;
    FCGX_Finish_r(r);
}

static void worker_handle(worker_state *w, FCGX_Request *r, bool status_lane)
{
    long long t0 = worker_now_us();
    metrics_request_begin(w->p->metrics, w->p->slot);
    worker_req q = {.r = r, .ep = METRICS_EP_OTHER, .status = 500, .status_lane = status_lane};
    worker_request_id(&q);
    /* Copies: FCGX_Finish_r() frees the params before the log line is written. */
    q.method = worker_param_dup(w, &q, "REQUEST_METHOD");
    q.client = worker_param_dup(w, &q, "EDGEGATE_CLIENT");
    q.remote = worker_param_dup(w, &q, "REMOTE_ADDR");
    if (!q.method)
        q.method = "GET";
    const char *path = worker_param_dup(w, &q, "DOCUMENT_URI");
    if (!path || !*path)
        path = worker_param_dup(w, &q, "SCRIPT_NAME");
    if (!path || !*path) {
        const char *uri = worker_param(&q, "REQUEST_URI");
        uri = uri ? uri : "/";
        path = arena_strndup(w->arena, uri, strcspn(uri, "?"));
    }
    q.path = path ? path : "/";

    /* nginx's $msec when it built the FastCGI request: the wait for a worker. */
    const char *start = worker_param(&q, "EDGEGATE_START_MSEC");
    bool has_wait = false;
    long long wait_us = 0;
    if (start && *start) {
        char *end;
        double sent = strtod(start, &end);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        double d = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - sent;
        if (*end == '\0' && d > -1.0 && d < 3600.0) {
            has_wait = true;
            wait_us = d > 0 ? (long long)(d * 1e6) : 0; /* ms resolution; clocks agree */
        }
    }
    worker_route(w, &q, t0);
    worker_npu_release(w); /* never carried past a request, whatever path it took */
    if (!q.headers_sent && !q.disconnected)
        worker_fail(w, &q, 500, NULL, "The request was not answered.");
    worker_finish(r);
    if (q.deferred) { /* counted and logged where it is served */
        metrics_request_drop(w->p->metrics, w->p->slot);
        return;
    }

    long long us = worker_now_us() - t0;
    metrics_sample s = {.endpoint = q.ep,
                        .status = q.status,
                        .latency_us = (uint64_t)us,
                        .prompt_tokens = (uint64_t)q.prompt_tokens,
                        .completion_tokens = (uint64_t)q.completion_tokens,
                        .gen_us = (uint64_t)q.gen_us,
                        .deadline_hit = q.deadline_hit,
                        .disconnected = q.disconnected,
                        .has_queue_wait = has_wait,
                        .queue_wait_us = (uint64_t)wait_us};
    metrics_request_end(w->p->metrics, w->p->slot, &s);
    elog_level lvl = q.status >= 500 ? ELOG_WARN : ELOG_INFO;
    if (elog_enabled(lvl))
        elog_ev(lvl, "request", ELOG_S("request_id", q.req_id), ELOG_S("client", q.client),
                ELOG_S("remote", q.remote), ELOG_S("method", q.method),
                ELOG_S("endpoint", metrics_endpoint_name(q.ep)), ELOG_S("path", q.path),
                ELOG_I("status", q.status), ELOG_S("model", q.model),
                ELOG_B("stream", q.stream), ELOG_I("prompt_tokens", q.prompt_tokens),
                ELOG_I("completion_tokens", q.completion_tokens), ELOG_S("finish", q.finish),
                ELOG_B("deadline_hit", q.deadline_hit), ELOG_D("ms", (double)us / 1000.0),
                ELOG_D("queue_ms", has_wait ? (double)wait_us / 1000.0 : NAN),
                ELOG_D("npu_wait_ms", q.has_npu_wait ? (double)q.npu_wait_us / 1000.0 : NAN),
                ELOG_S("cache", q.xcache),
                ELOG_I("slot", w->p->slot), ELOG_S("error", q.error[0] ? q.error : NULL));
}

/* ---- the status socket ---------------------------------------------------
 *
 * GET /health, /v1/models and /metrics, and chat requests for their cache
 * hits (WORKER_DEFER_STATUS), come over a second socket (cfg.h) on
 * connections nginx keeps open (fastcgi_keep_conn, upstream keepalive).
 * Each request then spares nginx a socket, connect and close and the
 * worker an accept and close; on this machine a system call costs about a
 * microsecond, and /health through nginx TLS went from ~13k to ~21k
 * requests/s, chat cache hits from ~12k to ~19k (scripts/bench-gateway).
 *
 * A worker keeps up to WORKER_KEPT such connections while it waits and
 * answers their requests one at a time. Before it takes a request from the
 * main socket, which may generate for seconds, it closes every one it
 * keeps, so that no request waits behind a generation on a connection
 * nginx believes idle. A request nginx writes just as the worker closes
 * fails on nginx's side, and nginx sends it again on a new connection
 * (fastcgi_next_upstream error; non_idempotent for chat, which never
 * generates here).
 *
 * libfcgi has no call to adopt an open connection, so the first request of
 * a status connection is served by `acc` (which accepts), and the request
 * is then copied into a free slot: after FCGX_Finish_r() an FCGX_Request
 * holds only its descriptor and flags (fcgiapp.h, unchanged since libfcgi
 * 2.4.0). The slot's listen_sock is -1, so when its connection ends libfcgi
 * cannot accept a new one behind epoll's back; worker_finish() clears
 * keepConnection when input was left unread. Connections past WORKER_KEPT
 * are answered and closed. */
#define WORKER_KEPT 32
enum { WORKER_EV_MAIN = 0, WORKER_EV_STATUS = 1, WORKER_EV_KEPT = 2 };

typedef struct {
    FCGX_Request r; /* r.ipcFd < 0: a free slot */
} worker_kept;

static void worker_kept_close(worker_kept *k)
{
    if (k->r.ipcFd < 0)
        return;
    FCGX_Detach(&k->r); /* close at once: no linger (see worker_finish) */
    FCGX_Free(&k->r, 1); /* epoll forgets a closed descriptor by itself */
}

/* epoll saw a request (nginx writes one whole): read it and answer. */
static void worker_kept_serve(worker_state *w, worker_kept *k)
{
    if (FCGX_Accept_r(&k->r) < 0)
        return; /* the connection ended; libfcgi closed it */
    worker_handle(w, &k->r, true);
    arena_reset(w->arena);
}

static void worker_status_accept(worker_state *w, int ep, FCGX_Request *acc, worker_kept *kept)
{
    if (FCGX_Accept_r(acc) < 0)
        return; /* another worker took it */
    worker_handle(w, acc, true);
    arena_reset(w->arena);
    if (acc->ipcFd < 0)
        return; /* not kept: nginx asked to close it */
    worker_kept *k = NULL;
    for (int i = 0; i < WORKER_KEPT && !k; i++)
        if (kept[i].r.ipcFd < 0)
            k = &kept[i];
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                             .data.u64 = (uint64_t)(WORKER_EV_KEPT + (k ? k - kept : 0))};
    if (!k || epoll_ctl(ep, EPOLL_CTL_ADD, acc->ipcFd, &ev) != 0) {
        FCGX_Detach(acc);
        FCGX_Free(acc, 1);
        return;
    }
    k->r = *acc;
    k->r.listen_sock = -1;
    FCGX_InitRequest(acc, w->p->status_fd, FCGI_FAIL_ACCEPT_ON_INTR);
}

/* ---- process ------------------------------------------------------------ */

static void worker_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = worker_on_stop; /* no SA_RESTART: the wait must return */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = worker_on_alarm;
    sa.sa_flags = SA_RESTART; /* a deadline must not break a write to nginx */
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL); /* a closed connection is a write error, not a death */
    sigaction(SIGHUP, &sa, NULL);  /* reloads are the master's business */
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    /* If the master dies without stopping us, stop as if it had. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_SETMASK, &set, NULL);
}

static void worker_load(worker_state *w)
{
    const cfg *c = w->cfg;
    for (size_t i = 0; i < c->n_models; i++) {
        const cfg_model *cm = &c->models[i];
        w->ids[i] = cm->id;
        core_params cp = core_default_params();
        cp.path = cm->path;
        cp.n_threads = cm->threads;
        cp.n_ctx = cm->n_ctx;
        cp.chat_template = cm->chat_template;
        char msg[512] = "";
        long long t0 = worker_now_us();
        struct stat st;
        if (stat(cm->path, &st) == 0) { /* the model's identity in cache keys */
            w->model_size[i] = (long long)st.st_size;
            w->model_mtime[i] = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        }
        int rc = core_load(&cp, &w->models[i], msg, sizeof(msg));
        if (rc != CORE_OK) {
            w->models[i] = NULL;
            elog_ev(ELOG_ERROR, "model load failed", ELOG_S("model", cm->id),
                    ELOG_S("path", cm->path), ELOG_S("error", core_strerror(rc)),
                    ELOG_S("detail", msg), ELOG_I("slot", w->p->slot));
            continue;
        }
        core_info info;
        core_get_info(w->models[i], &info);
        w->n_ctx[i] = info.n_ctx;
        elog_ev(ELOG_INFO, "model loaded", ELOG_S("model", cm->id), ELOG_S("arch", info.arch),
                ELOG_S("ftype", info.ftype), ELOG_S("isa", info.isa),
                ELOG_S("chat_template", info.chat_template), ELOG_I("n_ctx", info.n_ctx),
                ELOG_I("n_threads", info.n_threads), ELOG_I("n_params", info.n_params),
                ELOG_D("ms", (double)(worker_now_us() - t0) / 1000.0),
                ELOG_I("slot", w->p->slot));
    }
}

/* The arbiter, budgets and cache, opened after fork (LMDB environments and
 * OFD locks must not cross a fork). A failure is logged and that feature
 * is off in this worker; without the arbiter the worker still serves, but
 * /health says so ("npu": null). */
static void worker_open_shared(worker_state *w)
{
    const cfg *c = w->cfg;
    char msg[512] = "";
    npu_params np = npu_default_params();
    np.lock_path = c->npu.lock_file;
    np.n_classes = c->npu.classes;
    np.max_waiters = c->npu.max_waiters;
    np.max_wait_ms = c->npu.max_wait_ms;
    np.slice_tokens = c->npu.slice_tokens;
    np.slice_ms = c->npu.slice_ms;
    np.reap_ms = c->npu.reap_ms;
    if (npu_open(&np, &w->npu, msg, sizeof(msg)) != CORE_OK)
        elog_ev(ELOG_ERROR, "npu arbiter unavailable", ELOG_S("path", c->npu.lock_file),
                ELOG_S("error", msg), ELOG_I("slot", w->p->slot));
    if (c->budgets.enabled) {
        msg[0] = '\0';
        if (admin_open_budget(c, &w->budget, msg, sizeof(msg)) != CORE_OK)
            elog_ev(ELOG_ERROR, "token budgets unavailable", ELOG_S("path", c->budgets.path),
                    ELOG_S("error", msg), ELOG_I("slot", w->p->slot));
    }
    if (c->cache.enabled) {
        msg[0] = '\0';
        if (admin_open_cache(c, &w->cache, msg, sizeof(msg)) != CORE_OK)
            elog_ev(ELOG_ERROR, "response cache unavailable", ELOG_S("path", c->cache.path),
                    ELOG_S("error", msg), ELOG_I("slot", w->p->slot));
    }
    if (c->kb.enabled) {
        msg[0] = '\0';
        if (kbadmin_open(c, w->models, w->npu, &w->kb, msg, sizeof(msg)) != CORE_OK)
            elog_ev(ELOG_ERROR, "knowledge base unavailable", ELOG_S("path", c->kb.path),
                    ELOG_S("error", msg), ELOG_I("slot", w->p->slot));
    }
}

int worker_main(const worker_params *p)
{
    elog_after_fork();
    elog_hold(true);
    worker_signals();
    worker_state w = {.p = p, .cfg = p->cfg};
    int ep = -1;
    sbuf_init(&w.body);
    sbuf_init(&w.chunk);
    sbuf_init(&w.cachebody);
    int status = 0;
    w.arena = arena_new(0);
    if (!w.arena || FCGX_Init() != 0) {
        elog_msg(ELOG_ERROR, "worker %d: out of memory at start", p->slot);
        status = 1;
        goto out;
    }
    worker_load(&w);
    vision_load(&w);
    worker_open_shared(&w);
    w.probe = health_probe_new(p->listen_fd);
    metrics_set_model_loaded(p->metrics, p->slot, w.models[0] != NULL);

    static worker_kept kept[WORKER_KEPT];
    FCGX_Request r, acc;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || FCGX_InitRequest(&r, p->listen_fd, FCGI_FAIL_ACCEPT_ON_INTR) != 0 ||
        FCGX_InitRequest(&acc, p->status_fd, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
        elog_msg(ELOG_ERROR, "worker %d: cannot set up the accept loop: %s", p->slot,
                 strerror(errno));
        status = 1;
        goto out;
    }
    for (int i = 0; i < WORKER_KEPT; i++)
        FCGX_InitRequest(&kept[i].r, -1, FCGI_FAIL_ACCEPT_ON_INTR);
    sigset_t waitmask;
    sigemptyset(&waitmask); /* only SIGTERM/SIGINT are blocked; let them in here */
    sigaddset(&waitmask, SIGHUP);
    /* EPOLLEXCLUSIVE wakes one idle worker per connection instead of all
     * of them (the others would only lose the accept race). */
    const int lfd[2] = {p->listen_fd, p->status_fd};
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = (uint64_t)i};
        if (lfd[i] >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev) != 0) {
            elog_msg(ELOG_ERROR, "worker %d: epoll_ctl: %s", p->slot, strerror(errno));
            status = 1;
            goto out;
        }
    }
    int accept_errors = 0;
    while (!worker_stop) {
        struct epoll_event got[WORKER_KEPT + 2];
        /* Look first, flush the held log lines only before really waiting:
         * a busy worker writes its request lines a few KiB at a time. */
        int n = epoll_pwait(ep, got, WORKER_KEPT + 2, 0, &waitmask);
        if (n == 0) {
            elog_flush();
            n = epoll_pwait(ep, got, WORKER_KEPT + 2, -1, &waitmask);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            elog_msg(ELOG_ERROR, "worker %d: waiting for connections: %s", p->slot,
                     strerror(errno));
            status = 1;
            break;
        }
        bool main_ready = false;
        for (int i = 0; i < n; i++) {
            uint64_t tag = got[i].data.u64;
            if (tag == WORKER_EV_MAIN)
                main_ready = true;
            else if (tag == WORKER_EV_STATUS)
                worker_status_accept(&w, ep, &acc, kept);
            else if (got[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                worker_kept_close(&kept[tag - WORKER_EV_KEPT]); /* nginx let it go */
            else
                worker_kept_serve(&w, &kept[tag - WORKER_EV_KEPT]);
        }
        if (!main_ready)
            continue;
        int rc = FCGX_Accept_r(&r);
        if (rc < 0) {
            /* Another worker took it (EAGAIN), or the peer gave up early. */
            if (rc == -EAGAIN || rc == -EWOULDBLOCK || rc == -EINTR || rc == -ECONNABORTED)
                continue;
            elog_msg(ELOG_WARN, "worker %d: accept failed: %s", p->slot,
                     rc > -4096 ? strerror(-rc) : "protocol error");
            if (++accept_errors > 100) {
                status = 1;
                break;
            }
            continue;
        }
        accept_errors = 0;
        /* this request may generate for seconds: no status connection may
         * wait behind it (see the top of the status socket section) */
        for (int i = 0; i < WORKER_KEPT; i++)
            worker_kept_close(&kept[i]);
        elog_flush();
        worker_handle(&w, &r, false);
        arena_reset(w.arena);
    }
    for (int i = 0; i < WORKER_KEPT; i++)
        worker_kept_close(&kept[i]);
    FCGX_Free(&r, 0);
    FCGX_Free(&acc, 0);
out:
    elog_hold(false);
    if (ep >= 0)
        close(ep);
    npu_close(w.npu);
    budget_close(w.budget);
    cache_close(w.cache);
    kb_close(w.kb);
    sbuf_free(&w.cachebody);
    for (size_t i = 0; i < p->cfg->n_models; i++)
        core_free(w.models[i]);
    vision_unload(&w);
    health_probe_free(w.probe);
    sbuf_free(&w.body);
    sbuf_free(&w.chunk);
    arena_free(w.arena);
    return status;
}
