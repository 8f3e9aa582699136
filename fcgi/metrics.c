/* metrics.c: the shared counter table; see metrics.h. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core_err.h"

static const int metrics_codes[] = {200, 400, 401, 403, 404, 405, 408,
                                    413, 429, 499, 500, 503};
#define METRICS_N_STATUS ((int)(sizeof(metrics_codes) / sizeof(metrics_codes[0])) + 1)
/* Upper bounds in microseconds; the last bucket is +Inf. */
static const uint64_t metrics_le_us[] = {1000,   2500,   5000,    10000,   25000,  50000,
                                         100000, 250000, 500000,  1000000, 2500000,
                                         5000000, 10000000, 30000000};
#define METRICS_N_BUCKETS ((int)(sizeof(metrics_le_us) / sizeof(metrics_le_us[0])) + 1)

typedef struct {
    _Atomic int32_t pid; /* 0 free, -1 reserved, else the worker */
    _Atomic int32_t model_loaded;
    _Atomic int64_t in_flight;
    _Atomic uint64_t requests[METRICS_EP_COUNT][METRICS_N_STATUS];
    _Atomic uint64_t latency[METRICS_EP_COUNT][METRICS_N_BUCKETS];
    _Atomic uint64_t latency_us_sum[METRICS_EP_COUNT];
    _Atomic uint64_t queue[METRICS_N_BUCKETS];
    _Atomic uint64_t queue_us_sum;
    _Atomic uint64_t prompt_tokens, completion_tokens, gen_us;
    _Atomic uint64_t deadline_hits, disconnects;
} __attribute__((aligned(64))) metrics_slot;

struct metrics {
    size_t map_size;
    int n_slots;
    _Atomic int32_t configured;
    _Atomic uint64_t restarts, reloads;
    metrics_slot slots[];
};

#define MX_LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define MX_ADD(x, v) atomic_fetch_add_explicit(&(x), (v), memory_order_relaxed)
#define MX_SET(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

metrics *metrics_create(int n_slots)
{
    if (n_slots < 1)
        return NULL;
    size_t size = sizeof(metrics) + (size_t)n_slots * sizeof(metrics_slot);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    metrics *m = p; /* anonymous mappings start zeroed */
    m->map_size = size;
    m->n_slots = n_slots;
    return m;
}

void metrics_destroy(metrics *m)
{
    if (m)
        munmap(m, m->map_size);
}

int metrics_slot_acquire(metrics *m)
{
    for (int i = 0; i < m->n_slots; i++) {
        int32_t zero = 0;
        if (atomic_compare_exchange_strong(&m->slots[i].pid, &zero, -1))
            return i;
    }
    return -1;
}

void metrics_slot_bind(metrics *m, int slot, pid_t pid)
{
    if (slot >= 0 && slot < m->n_slots)
        MX_SET(m->slots[slot].pid, (int32_t)pid);
}

void metrics_slot_release(metrics *m, int slot)
{
    if (slot < 0 || slot >= m->n_slots)
        return;
    metrics_slot *s = &m->slots[slot];
    /* A worker killed mid-request never ran metrics_request_end(). */
    MX_SET(s->in_flight, 0);
    MX_SET(s->model_loaded, 0);
    MX_SET(s->pid, 0);
}

void metrics_set_configured(metrics *m, int workers)
{
    MX_SET(m->configured, workers);
}

void metrics_count_restart(metrics *m)
{
    MX_ADD(m->restarts, 1);
}

void metrics_count_reload(metrics *m)
{
    MX_ADD(m->reloads, 1);
}

void metrics_set_model_loaded(metrics *m, int slot, bool loaded)
{
    if (slot >= 0 && slot < m->n_slots)
        MX_SET(m->slots[slot].model_loaded, loaded ? 1 : 0);
}

void metrics_request_begin(metrics *m, int slot)
{
    if (slot >= 0 && slot < m->n_slots)
        MX_ADD(m->slots[slot].in_flight, 1);
}

void metrics_request_drop(metrics *m, int slot)
{
    if (slot >= 0 && slot < m->n_slots)
        MX_ADD(m->slots[slot].in_flight, -1);
}

static int metrics_status_index(int status)
{
    for (int i = 0; i < METRICS_N_STATUS - 1; i++)
        if (metrics_codes[i] == status)
            return i;
    return METRICS_N_STATUS - 1;
}

static int metrics_bucket(uint64_t us)
{
    int b = 0;
    while (b < METRICS_N_BUCKETS - 1 && us > metrics_le_us[b])
        b++;
    return b;
}

void metrics_request_end(metrics *m, int slot, const metrics_sample *x)
{
    if (slot < 0 || slot >= m->n_slots)
        return;
    metrics_slot *s = &m->slots[slot];
    int ep = x->endpoint < METRICS_EP_COUNT ? (int)x->endpoint : METRICS_EP_OTHER;
    MX_ADD(s->requests[ep][metrics_status_index(x->status)], 1);
    MX_ADD(s->latency[ep][metrics_bucket(x->latency_us)], 1);
    MX_ADD(s->latency_us_sum[ep], x->latency_us);
    if (x->has_queue_wait) {
        MX_ADD(s->queue[metrics_bucket(x->queue_wait_us)], 1);
        MX_ADD(s->queue_us_sum, x->queue_wait_us);
    }
    MX_ADD(s->prompt_tokens, x->prompt_tokens);
    MX_ADD(s->completion_tokens, x->completion_tokens);
    MX_ADD(s->gen_us, x->gen_us);
    if (x->deadline_hit)
        MX_ADD(s->deadline_hits, 1);
    if (x->disconnected)
        MX_ADD(s->disconnects, 1);
    if (MX_LOAD(s->in_flight) > 0)
        MX_ADD(s->in_flight, -1);
}

const char *metrics_endpoint_name(metrics_endpoint ep)
{
    static const char *const names[METRICS_EP_COUNT] = {
        "chat", "models", "health", "metrics", "admin", "qa", "vision", "embeddings", "other"};
    return ep < METRICS_EP_COUNT ? names[ep] : "other";
}

bool metrics_slot_model_loaded(const metrics *m, int slot)
{
    if (slot < 0 || slot >= m->n_slots)
        return false;
    return MX_LOAD(((metrics *)m)->slots[slot].model_loaded) != 0;
}

void metrics_summarize(const metrics *m, metrics_summary *out)
{
    memset(out, 0, sizeof(*out));
    out->workers_configured = MX_LOAD(((metrics *)m)->configured);
    for (int i = 0; i < m->n_slots; i++) {
        metrics_slot *s = (metrics_slot *)&m->slots[i];
        if (MX_LOAD(s->pid) > 0) {
            out->workers_alive++;
            out->workers_with_model += MX_LOAD(s->model_loaded) != 0;
        }
        out->in_flight += MX_LOAD(s->in_flight);
    }
}

/* Totals over all slots, read once so one scrape is self-consistent. */
typedef struct {
    uint64_t requests[METRICS_EP_COUNT][METRICS_N_STATUS];
    uint64_t latency[METRICS_EP_COUNT][METRICS_N_BUCKETS];
    uint64_t latency_us_sum[METRICS_EP_COUNT];
    uint64_t queue[METRICS_N_BUCKETS];
    uint64_t queue_us_sum;
    uint64_t prompt_tokens, completion_tokens, gen_us, deadline_hits, disconnects;
} metrics_totals;

static void metrics_sum(const metrics *m, metrics_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < m->n_slots; i++) {
        metrics_slot *s = (metrics_slot *)&m->slots[i];
        for (int e = 0; e < METRICS_EP_COUNT; e++) {
            for (int k = 0; k < METRICS_N_STATUS; k++)
                t->requests[e][k] += MX_LOAD(s->requests[e][k]);
            for (int b = 0; b < METRICS_N_BUCKETS; b++)
                t->latency[e][b] += MX_LOAD(s->latency[e][b]);
            t->latency_us_sum[e] += MX_LOAD(s->latency_us_sum[e]);
        }
        for (int b = 0; b < METRICS_N_BUCKETS; b++)
            t->queue[b] += MX_LOAD(s->queue[b]);
        t->queue_us_sum += MX_LOAD(s->queue_us_sum);
        t->prompt_tokens += MX_LOAD(s->prompt_tokens);
        t->completion_tokens += MX_LOAD(s->completion_tokens);
        t->gen_us += MX_LOAD(s->gen_us);
        t->deadline_hits += MX_LOAD(s->deadline_hits);
        t->disconnects += MX_LOAD(s->disconnects);
    }
}

static void metrics_head(sbuf *o, const char *name, const char *type, const char *help)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_scalar(sbuf *o, const char *name, const char *type, const char *help,
                           double v)
{
    metrics_head(o, name, type, help);
    sbuf_printf(o, "%s %.17g\n", name, v);
}

/* One histogram series; label may be NULL. Buckets are stored per bucket
 * and printed cumulative. */
static void metrics_hist(sbuf *o, const char *name, const char *label, const char *value,
                         const uint64_t *buckets, uint64_t sum_us)
{
    char lab[64] = "", sep[2] = "";
    if (label) {
        snprintf(lab, sizeof(lab), "%s=\"%s\"", label, value);
        sep[0] = ',';
    }
    uint64_t cum = 0;
    for (int b = 0; b < METRICS_N_BUCKETS; b++) {
        cum += buckets[b];
        if (b < METRICS_N_BUCKETS - 1)
            sbuf_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep,
                        (double)metrics_le_us[b] / 1e6, (unsigned long long)cum);
        else
            sbuf_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep,
                        (unsigned long long)cum);
    }
    const char *open = label ? "{" : "", *close = label ? "}" : "";
    sbuf_printf(o, "%s_sum%s%s%s %.6f\n", name, open, lab, close, (double)sum_us / 1e6);
    sbuf_printf(o, "%s_count%s%s%s %llu\n", name, open, lab, close, (unsigned long long)cum);
}

int metrics_render(const metrics *m, const long long *backlog, sbuf *o)
{
    metrics_totals t;
    metrics_sum(m, &t);
    metrics_summary sum;
    metrics_summarize(m, &sum);

    metrics_head(o, "edgegate_requests_total", "counter",
                 "Requests answered by the pool, by endpoint and HTTP status.");
    for (int e = 0; e < METRICS_EP_COUNT; e++)
        for (int k = 0; k < METRICS_N_STATUS; k++) {
            if (!t.requests[e][k])
                continue;
            char code[8];
            if (k < METRICS_N_STATUS - 1)
                snprintf(code, sizeof(code), "%d", metrics_codes[k]);
            else
                snprintf(code, sizeof(code), "other");
            sbuf_printf(o, "edgegate_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n",
                        metrics_endpoint_name((metrics_endpoint)e), code,
                        (unsigned long long)t.requests[e][k]);
        }

    metrics_head(o, "edgegate_request_duration_seconds", "histogram",
                 "Time from accept to the last byte of the response.");
    for (int e = 0; e < METRICS_EP_COUNT; e++)
        metrics_hist(o, "edgegate_request_duration_seconds", "endpoint",
                     metrics_endpoint_name((metrics_endpoint)e), t.latency[e],
                     t.latency_us_sum[e]);
    metrics_head(o, "edgegate_queue_wait_seconds", "histogram",
                 "Time from nginx handing a request to the pool (its $msec) until a worker "
                 "accepted it: the wait for a free worker.");
    metrics_hist(o, "edgegate_queue_wait_seconds", NULL, NULL, t.queue, t.queue_us_sum);
    if (backlog)
        metrics_scalar(o, "edgegate_queue_depth", "gauge",
                       "Connections waiting in the socket's accept queue for a free worker.",
                       (double)*backlog);
    metrics_scalar(o, "edgegate_prompt_tokens_total", "counter",
                   "Prompt tokens prefilled for chat completions.", (double)t.prompt_tokens);
    metrics_scalar(o, "edgegate_completion_tokens_total", "counter",
                   "Tokens generated for chat completions.", (double)t.completion_tokens);
    metrics_scalar(o, "edgegate_generation_seconds_total", "counter",
                   "Time spent generating tokens (decode), summed over workers.",
                   (double)t.gen_us / 1e6);
    metrics_scalar(o, "edgegate_generation_tokens_per_second", "gauge",
                   "Generated tokens per second of decode time since the pool started.",
                   t.gen_us ? (double)t.completion_tokens * 1e6 / (double)t.gen_us : 0.0);
    metrics_scalar(o, "edgegate_requests_in_flight", "gauge",
                   "Requests being served now (the pool has no queue of its own: "
                   "waiting requests sit in the socket backlog).",
                   (double)sum.in_flight);
    metrics_scalar(o, "edgegate_deadline_hits_total", "counter",
                   "Generations cut by the deadline.", (double)t.deadline_hits);
    metrics_scalar(o, "edgegate_client_disconnects_total", "counter",
                   "Streams stopped because the client went away.", (double)t.disconnects);
    metrics_scalar(o, "edgegate_workers_alive", "gauge", "Worker processes running.",
                   (double)sum.workers_alive);
    metrics_scalar(o, "edgegate_workers_configured", "gauge", "Workers the config asks for.",
                   (double)sum.workers_configured);
    metrics_scalar(o, "edgegate_workers_model_loaded", "gauge",
                   "Workers that have their models loaded.", (double)sum.workers_with_model);
    metrics_scalar(o, "edgegate_worker_restarts_total", "counter",
                   "Workers restarted after dying unexpectedly.",
                   (double)MX_LOAD(((metrics *)m)->restarts));
    metrics_scalar(o, "edgegate_reloads_total", "counter", "Configuration reloads (SIGHUP).",
                   (double)MX_LOAD(((metrics *)m)->reloads));
    return o->oom ? CORE_ENOMEM : CORE_OK;
}
