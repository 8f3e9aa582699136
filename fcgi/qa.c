/* qa.c: POST /v1/qa; see qa.h.
 *
 * Format of the request: a JSON object (RFC 8259, UTF-8) with the members
 * listed in qa.h, each at most once.
 *
 * Format of a cache entry's body: the sources JSON's length in decimal,
 * "\n", the sources JSON (an array), then the answer's bytes; the entry's
 * kb_version is the knowledge base the sources came from.
 */
#include "qa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_err.h"
#include "elog.h"
#include "json.h"
#include "resp.h"

static const char qa_system[] =
    "You answer questions using only the numbered sources given with the question. "
    "Cite every source you use as [n], for example [1] or [2][3]. If the sources do not "
    "contain the answer, say that you could not find it in the knowledge base. Never use "
    "outside knowledge and never invent facts.";

/* ---- the request ---------------------------------------------------------- */

static bool qa_key_is(const json_value *v, const char *k)
{
    size_t n = strlen(k);
    return v->key_len == n && memcmp(v->key, k, n) == 0;
}

static int qa_type_err(api_error *e, const char *param, const json_value *v, const char *want)
{
    return api_fail(e, 400, param, "invalid_type",
                    "Invalid type for '%s': expected %s, but got %s.", param, want,
                    json_type_name(v->type));
}

static int qa_text(api_error *e, const char *param, const json_value *v)
{
    if (v->type != JSON_STRING)
        return qa_type_err(e, param, v, "a string");
    if (!json_utf8_valid(v->u.str.s, v->u.str.len))
        return api_fail(e, 400, param, "invalid_encoding", "'%s' is not valid UTF-8.", param);
    if (memchr(v->u.str.s, '\0', v->u.str.len))
        return api_fail(e, 400, param, "invalid_value", "'%s' contains a NUL character.", param);
    return CORE_OK;
}

static int qa_int(api_error *e, const char *param, const json_value *v, int64_t lo, int64_t hi,
                  int64_t *out)
{
    if (v->type != JSON_NUMBER || !v->u.num.is_int)
        return qa_type_err(e, param, v, "an integer");
    if (v->u.num.i < lo || v->u.num.i > hi)
        return api_fail(e, 400, param, "invalid_value", "'%s' must be between %lld and %lld, got %lld.",
                        param, (long long)lo, (long long)hi, (long long)v->u.num.i);
    *out = v->u.num.i;
    return CORE_OK;
}

static bool qa_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\f\v", s[i]))
            return false;
    return true;
}

static int qa_members(const qa_limits *lim, const json_value *root, qa_request *out, api_error *e)
{
    const json_value *question = NULL;
    int rc = CORE_OK;
    int64_t v;
    for (const json_value *k = root->u.kids.first; k && rc == CORE_OK; k = k->next) {
        if (qa_key_is(k, "question")) {
            question = k;
        } else if (!qa_key_is(k, "top_k") && !qa_key_is(k, "max_tokens") &&
                   !qa_key_is(k, "model") && !qa_key_is(k, "stream") &&
                   !qa_key_is(k, "stream_options")) {
            rc = api_fail(e, 400, k->key, "unknown_parameter",
                          "Unrecognized request argument supplied: %.40s", k->key);
        } else if (k->type == JSON_NULL) {
            continue; /* null means "not given" for every optional member */
        } else if (qa_key_is(k, "top_k")) {
            if ((rc = qa_int(e, "top_k", k, 1, QA_MAX_TOP_K, &v)) == CORE_OK)
                out->top_k = (int)v;
        } else if (qa_key_is(k, "max_tokens")) {
            if ((rc = qa_int(e, "max_tokens", k, 1, INT32_MAX, &v)) == CORE_OK)
                out->max_tokens = (long)v;
        } else if (qa_key_is(k, "model")) {
            if ((rc = qa_text(e, "model", k)) != CORE_OK)
                break;
            out->model = NULL;
            for (size_t i = 0; i < lim->n_models && !out->model; i++)
                if (strcmp(lim->models[i], k->u.str.s) == 0)
                    out->model = lim->models[i];
            if (!out->model)
                rc = api_fail(e, 400, "model", "model_not_found",
                              "The model '%.64s' does not exist; GET /v1/models lists the models.",
                              k->u.str.s);
        } else if (qa_key_is(k, "stream")) {
            if (k->type != JSON_BOOL)
                rc = qa_type_err(e, "stream", k, "a boolean");
            else
                out->stream = k->u.b;
        } else {
            if (k->type != JSON_OBJECT)
                return qa_type_err(e, "stream_options", k, "an object");
            for (const json_value *o = k->u.kids.first; o; o = o->next) {
                if (!qa_key_is(o, "include_usage"))
                    return api_fail(e, 400, "stream_options", "unknown_parameter",
                                    "Unrecognized stream_options argument '%.40s'.", o->key);
                if (o->type != JSON_NULL && o->type != JSON_BOOL)
                    return qa_type_err(e, "stream_options.include_usage", o, "a boolean");
                out->include_usage = o->type == JSON_BOOL && o->u.b;
            }
        }
    }
    if (rc)
        return rc;
    if (!question || question->type == JSON_NULL)
        return api_fail(e, 400, "question", "missing_required_parameter",
                        "Missing required parameter: 'question'.");
    if ((rc = qa_text(e, "question", question)))
        return rc;
    if (qa_blank(question->u.str.s, question->u.str.len))
        return api_fail(e, 400, "question", "invalid_value", "'question' must not be empty.");
    if (question->u.str.len > lim->max_question_bytes)
        return api_fail(e, 400, "question", "string_above_max_length",
                        "'question' has %zu bytes; at most %zu are allowed.",
                        question->u.str.len, lim->max_question_bytes);
    out->question = question->u.str.s;
    out->question_len = question->u.str.len;
    if (!out->stream)
        out->include_usage = false;
    return CORE_OK;
}

int qa_parse(arena *a, const char *body, size_t len, const qa_limits *lim, qa_request *out,
             api_error *e)
{
    memset(out, 0, sizeof(*out));
    out->model = lim->default_model;
    out->top_k = lim->default_top_k;
    json_value *root;
    int rc = req_parse_object(a, body, len, 16, &root, e);
    if (rc)
        return rc;
    return qa_members(lim, root, out, e);
}

/* ---- the prompt ------------------------------------------------------------ */

int qa_prompt(arena *a, const kb_hit *hits, size_t n, const char *question, size_t qlen,
              core_chat_msg msgs[2])
{
    sbuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "Sources:\n");
    for (size_t i = 0; i < n; i++) {
        const kb_hit *h = &hits[i];
        sbuf_printf(&b, "\n[%zu] %s", i + 1, h->doc_title ? h->doc_title : "");
        if (h->title && *h->title)
            sbuf_printf(&b, " > %s", h->title);
        sbuf_putc(&b, '\n');
        sbuf_put(&b, h->text, h->text_len);
        sbuf_putc(&b, '\n');
    }
    sbuf_puts(&b, "\nQuestion: ");
    sbuf_put(&b, question, qlen);
    char *user = b.oom ? NULL : arena_strndup(a, b.data, b.len);
    sbuf_free(&b);
    if (!user)
        return CORE_ENOMEM;
    msgs[0] = (core_chat_msg){"system", qa_system};
    msgs[1] = (core_chat_msg){"user", user};
    return CORE_OK;
}

/* ---- response bodies --------------------------------------------------------- */

int qa_sources_json(sbuf *out, const kb_hit *hits, size_t n)
{
    sbuf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        const kb_hit *h = &hits[i];
        const char *dt = h->doc_title ? h->doc_title : "", *t = h->title ? h->title : "";
        sbuf_puts(out, i ? ",{\"document\":" : "{\"document\":");
        json_put_str(out, h->doc_id, strlen(h->doc_id));
        sbuf_puts(out, ",\"title\":");
        json_put_str(out, dt, strlen(dt));
        sbuf_puts(out, ",\"section\":");
        json_put_str(out, t, strlen(t));
        sbuf_printf(out, ",\"chunk\":%u,\"score\":%.6g,\"text\":", (unsigned)h->chunk,
                    h->score == h->score ? h->score : 0.0);
        json_put_str(out, h->text, h->text_len);
        sbuf_putc(out, '}');
    }
    sbuf_putc(out, ']');
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

static void qa_head(sbuf *out, const qa_meta *m, const char *object)
{
    sbuf_puts(out, "{\"id\":");
    json_put_str(out, m->id, strlen(m->id));
    sbuf_printf(out, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, m->created);
    json_put_str(out, m->model, strlen(m->model));
}

static void qa_usage(sbuf *out, const long long u[3])
{
    sbuf_printf(out,
                ",\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":%lld}}",
                u[0], u[1], u[0] + u[1], u[2]);
}

int qa_body(sbuf *out, const qa_meta *m, const char *answer, size_t len, const char *sources,
            size_t sources_len, const char *finish, const long long usage[3], bool deadline_hit)
{
    qa_head(out, m, "qa");
    sbuf_puts(out, ",\"answer\":");
    json_put_str(out, answer ? answer : "", answer ? len : 0);
    sbuf_puts(out, ",\"sources\":");
    sbuf_put(out, sources, sources_len);
    sbuf_printf(out, ",\"finish_reason\":\"%s\"", finish);
    qa_usage(out, usage);
    sbuf_printf(out, ",\"kb_version\":%llu", (unsigned long long)m->kb_version);
    if (deadline_hit)
        sbuf_puts(out, ",\"edgegate\":{\"deadline_hit\":true}");
    sbuf_putc(out, '}');
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int qa_sse_sources(sbuf *out, const qa_meta *m, const char *sources, size_t sources_len)
{
    sbuf_puts(out, "data: ");
    qa_head(out, m, "qa.sources");
    sbuf_puts(out, ",\"sources\":");
    sbuf_put(out, sources, sources_len);
    sbuf_printf(out, ",\"kb_version\":%llu}\n\n", (unsigned long long)m->kb_version);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int qa_sse_delta(sbuf *out, const qa_meta *m, const char *text, size_t len)
{
    sbuf_puts(out, "data: ");
    qa_head(out, m, "qa.delta");
    sbuf_puts(out, ",\"delta\":");
    json_put_str(out, text, len);
    sbuf_puts(out, "}\n\n");
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int qa_sse_done(sbuf *out, const qa_meta *m, const char *finish, const long long usage[3],
                bool deadline_hit)
{
    sbuf_puts(out, "data: ");
    qa_head(out, m, "qa.done");
    sbuf_printf(out, ",\"finish_reason\":\"%s\"", finish);
    qa_usage(out, usage);
    if (deadline_hit)
        sbuf_puts(out, ",\"edgegate\":{\"deadline_hit\":true}");
    sbuf_puts(out, "}\n\n");
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

/* ---- the endpoint -------------------------------------------------------------- */

/* A finished answer, replied in one piece (JSON, or the whole SSE stream
 * when the headers are not out yet). */
typedef struct {
    const qa_meta *meta;
    const char *answer;
    size_t len;
    const char *sources;
    size_t sources_len;
    const char *finish;
    long long usage[3];
} qa_answer;

static void qa_reply(worker_state *w, worker_req *q, const qa_request *rq, const qa_answer *a)
{
    q->finish = a->finish;
    if (!rq->stream) {
        sbuf_clear(&w->body);
        qa_body(&w->body, a->meta, a->answer, a->len, a->sources, a->sources_len, a->finish,
                a->usage, false);
        worker_send(q, 200, "application/json", &w->body, NULL);
        return;
    }
    if (worker_sse_headers(q) != 0)
        return;
    sbuf_clear(&w->chunk);
    qa_sse_sources(&w->chunk, a->meta, a->sources, a->sources_len);
    if (a->len)
        qa_sse_delta(&w->chunk, a->meta, a->answer, a->len);
    qa_sse_done(&w->chunk, a->meta, a->finish, a->usage, false);
    resp_sse_done(&w->chunk);
    if (w->chunk.oom) {
        q->status = 500;
        snprintf(q->error, sizeof(q->error), "out of memory");
        return;
    }
    if (worker_put(q, w->chunk.data, w->chunk.len) == 0)
        worker_flush(q);
}

/* Everything that changes the answer; the knowledge base by its version. */
static void qa_cache_key(worker_state *w, worker_req *q, size_t mi, const qa_request *rq,
                         long max_tokens, uint64_t version, cache_key *key)
{
    const cfg *c = w->cfg;
    const cfg_model *cm = &c->models[mi];
    const char *tmpl = cm->chat_template ? cm->chat_template : "auto";
    const char *client = c->cache.shared ? "" : q->client;
    cache_keyb kb;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "qa", 2);
    cache_key_add_str(&kb, qa_system, sizeof(qa_system) - 1);
    cache_key_add_str(&kb, cm->id, strlen(cm->id));
    cache_key_add_str(&kb, cm->path, strlen(cm->path));
    cache_key_add_i64(&kb, w->model_size[mi]);
    cache_key_add_i64(&kb, w->model_mtime[mi]);
    cache_key_add_str(&kb, tmpl, strlen(tmpl));
    cache_key_add_i64(&kb, w->n_ctx[mi]);
    cache_key_add_str(&kb, client, strlen(client));
    cache_key_add_str(&kb, rq->question, rq->question_len);
    cache_key_add_i64(&kb, rq->top_k);
    cache_key_add_i64(&kb, max_tokens);
    cache_key_add_f64(&kb, c->qa.min_score);
    cache_key_add_i64(&kb, (int64_t)version);
    cache_key_final(&kb, key);
}

static void qa_cache_put(worker_state *w, worker_req *q, const qa_request *rq,
                         const cache_key *key, const qa_answer *a, uint64_t version)
{
    sbuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "%zu\n", a->sources_len);
    sbuf_put(&b, a->sources, a->sources_len);
    sbuf_put(&b, a->answer, a->len);
    cache_entry ce = {.model = rq->model,
                      .client = w->cfg->cache.shared ? NULL : q->client,
                      .ttl_s = -1,
                      .prompt_tokens = a->usage[0],
                      .completion_tokens = a->usage[1],
                      .finish = a->finish,
                      .has_kb_version = true,
                      .kb_version = (long long)version};
    if (b.oom || cache_put(w->cache, key, &ce, b.data, b.len) != CORE_OK)
        elog_ev(ELOG_WARN, "cache put failed", ELOG_S("request_id", q->req_id),
                ELOG_S("error", b.oom ? "out of memory" : cache_errmsg(w->cache)));
    sbuf_free(&b);
}

/* Replies from a cache entry (w->cachebody); false when the entry is not
 * one of ours (then it is treated as a miss). */
static bool qa_hit(worker_state *w, worker_req *q, const qa_request *rq, const cache_info *info,
                   qa_meta *meta)
{
    const char *d = w->cachebody.data ? w->cachebody.data : "";
    size_t n = w->cachebody.data ? w->cachebody.len : 0;
    char *end;
    unsigned long long sl = strtoull(d, &end, 10);
    size_t head = (size_t)(end - d) + 1;
    if (end == d || *end != '\n' || sl > n - head || info->kb_version < 0)
        return false;
    if (worker_charge_hit(w, q, info))
        return true;
    q->prompt_tokens = info->prompt_tokens;
    q->completion_tokens = info->completion_tokens;
    meta->kb_version = (uint64_t)info->kb_version;
    qa_answer a = {.meta = meta,
                   .answer = d + head + sl,
                   .len = n - head - (size_t)sl,
                   .sources = d + head,
                   .sources_len = (size_t)sl,
                   .finish = strcmp(info->finish, "length") == 0 ? "length" : "stop",
                   .usage = {info->prompt_tokens, info->completion_tokens,
                             info->prompt_tokens}};
    qa_reply(w, q, rq, &a);
    return true;
}

/* Streaming answers: worker_generate()'s hooks. */
typedef struct {
    worker_state *w;
    worker_req *q;
    const qa_meta *meta;
    const char *sources;
    size_t sources_len;
} qa_sse;

static void qa_start(void *user)
{
    qa_sse *x = user;
    if (worker_sse_headers(x->q) == 0) {
        sbuf_clear(&x->w->chunk);
        qa_sse_sources(&x->w->chunk, x->meta, x->sources, x->sources_len);
        if (worker_put(x->q, x->w->chunk.data, x->w->chunk.len) == 0)
            worker_flush(x->q);
    }
}

static int qa_text_cb(void *user, const char *text, size_t len)
{
    qa_sse *x = user;
    sbuf_clear(&x->w->chunk);
    if (qa_sse_delta(&x->w->chunk, x->meta, text, len) != CORE_OK)
        return 1;
    return worker_put(x->q, x->w->chunk.data, x->w->chunk.len) || worker_flush(x->q);
}

/* Retrieval runs on the NPU (short-job class) only when it embeds the
 * question, i.e. dense or hybrid ranking; BM25 alone is a few LMDB reads.
 * The embedder runs inside kb_search() while this worker holds the NPU.
 * *best: the relevance that qa.min_score gates, always the best BM25
 * score: fused (RRF) scores only rank, they say nothing of relevance. */
static int qa_retrieve(worker_state *w, worker_req *q, const qa_request *rq, bool dense,
                       kb_result *res, double *best)
{
    char msg[256] = "";
    if (dense && worker_npu_acquire(w, q, w->cfg->npu.short_class))
        return -1;
    kb_query kq = {.top_k = (size_t)rq->top_k, .mode = KB_MODE_AUTO};
    int rc = kb_search(w->kb, rq->question, rq->question_len, &kq, w->arena, res, msg,
                       sizeof(msg));
    worker_npu_release(w);
    *best = res->n ? res->hits[0].score : 0;
    if (rc == CORE_OK && res->n && res->mode != KB_MODE_BM25) {
        kb_query lq = {.top_k = 1, .mode = KB_MODE_BM25};
        kb_result lex;
        rc = kb_search(w->kb, rq->question, rq->question_len, &lq, w->arena, &lex, msg,
                       sizeof(msg));
        *best = rc == CORE_OK && lex.n ? lex.hits[0].score : 0;
    }
    if (rc != CORE_OK) {
        snprintf(q->error, sizeof(q->error), "kb: %s", msg[0] ? msg : kb_errmsg(w->kb));
        worker_fail(w, q, 500, NULL, "Searching the knowledge base failed: %s.",
                    core_strerror(rc));
        return -1;
    }
    return 0;
}

/* The prompt of the first k hits, dropping the lowest ranked while the
 * prompt and max_tokens do not fit the context (keeping at least one). */
static int qa_tokenize(worker_state *w, size_t mi, const qa_request *rq, const kb_result *res,
                       long max_tokens, size_t *k, int32_t **toks, size_t *n_prompt)
{
    core_model *m = w->models[mi];
    for (*k = res->n;; (*k)--) {
        core_chat_msg msgs[2];
        int rc = qa_prompt(w->arena, res->hits, *k, rq->question, rq->question_len, msgs);
        if (rc)
            return rc;
        size_t cap = strlen(msgs[0].content) + strlen(msgs[1].content) + 256;
        *toks = arena_alloc(w->arena, cap * sizeof(int32_t));
        rc = *toks ? core_chat_tokenize(m, msgs, 2, true, *toks, cap, n_prompt) : CORE_ENOMEM;
        if (rc == CORE_EINVAL && *n_prompt > cap) {
            cap = *n_prompt;
            *toks = arena_alloc(w->arena, cap * sizeof(int32_t));
            rc = *toks ? core_chat_tokenize(m, msgs, 2, true, *toks, cap, n_prompt)
                       : CORE_ENOMEM;
        }
        if (rc)
            return rc;
        if (*n_prompt + (size_t)max_tokens <= (size_t)w->n_ctx[mi] || *k <= 1)
            return CORE_OK;
    }
}

void qa_handle(worker_state *w, worker_req *q, long long t0)
{
    const cfg *c = w->cfg;
    api_error e;
    char *body;
    size_t body_len;
    budget_quota bq0;
    if (w->budget && budget_query(w->budget, q->client, &bq0) == CORE_OK)
        worker_set_quota(q, &bq0);
    if (worker_read_body(w, q, &body, &body_len))
        return;
    /* without qa.model: the first model here that generates text */
    const char *def = c->qa.model;
    for (size_t i = 0; !def && i < c->n_models; i++) {
        core_info info;
        if (w->models[i] && (core_get_info(w->models[i], &info), !info.embedding))
            def = w->ids[i];
    }
    qa_limits lim = {.models = w->ids,
                     .n_models = c->n_models,
                     .default_model = def ? def : w->ids[0],
                     .default_top_k = c->qa.top_k,
                     .max_question_bytes = (size_t)c->qa.max_question_bytes};
    qa_request rq;
    if (qa_parse(w->arena, body, body_len, &lim, &rq, &e) != CORE_OK) {
        worker_send_error(w, q, &e, NULL);
        return;
    }
    q->model = rq.model;
    q->stream = rq.stream;
    long mi = worker_model_for(w, q, rq.model, false);
    if (mi < 0)
        return;
    if (!w->kb) {
        worker_fail(w, q, 503, "kb_unavailable",
                    "The knowledge base is disabled or failed to open; see the pool's log.");
        return;
    }
    long max_tokens = rq.max_tokens ? rq.max_tokens : c->qa.max_tokens;
    int cap = cfg_client_cap(c, q->client);
    if (max_tokens > cap)
        max_tokens = cap;

    char id[96];
    snprintf(id, sizeof(id), "qa-%s", q->req_id);
    qa_meta meta = {.id = id, .created = (long long)time(NULL), .model = rq.model};

    /* The cache, keyed on the version now: a hit skips retrieval too. */
    kb_stats ks;
    int rc = kb_get_stats(w->kb, &ks);
    if (rc != CORE_OK) {
        snprintf(q->error, sizeof(q->error), "kb: %s", kb_errmsg(w->kb));
        worker_fail(w, q, 500, NULL, "Reading the knowledge base failed: %s.", core_strerror(rc));
        return;
    }
    uint64_t version = ks.version;
    bool cacheable = w->cache && !worker_no_cache(q);
    q->xcache = cacheable ? "MISS" : "BYPASS";
    cache_key key;
    if (cacheable) {
        qa_cache_key(w, q, mi, &rq, max_tokens, version, &key);
        cache_key_hex(&key, q->cache_key);
        bool hit = false;
        cache_info info;
        rc = cache_get(w->cache, &key, &hit, &info, &w->cachebody);
        if (rc != CORE_OK)
            elog_ev(ELOG_WARN, "cache get failed; treated as a miss",
                    ELOG_S("request_id", q->req_id), ELOG_S("error", cache_errmsg(w->cache)));
        else if (hit && qa_hit(w, q, &rq, &info, &meta))
            return;
    }

    kb_result res;
    double best;
    if (qa_retrieve(w, q, &rq, ks.embed_dim > 0 && ks.vectors > 0, &res, &best))
        return;
    meta.kb_version = res.version;
    if (cacheable && res.version != version) {
        /* An ingest landed in between: file the answer under what it read. */
        version = res.version;
        qa_cache_key(w, q, mi, &rq, max_tokens, version, &key);
        cache_key_hex(&key, q->cache_key);
    }

    /* Nothing relevant: say so, without the model, the NPU or a token. */
    if (res.n == 0 || !(best >= c->qa.min_score)) {
        qa_answer a = {.meta = &meta, .answer = QA_NOT_FOUND, .len = strlen(QA_NOT_FOUND),
                       .sources = "[]", .sources_len = 2, .finish = "stop"};
        qa_reply(w, q, &rq, &a);
        if (cacheable && !q->disconnected)
            qa_cache_put(w, q, &rq, &key, &a, version);
        return;
    }

    size_t k = 0, n_prompt = 0;
    int32_t *toks = NULL;
    rc = qa_tokenize(w, mi, &rq, &res, max_tokens, &k, &toks, &n_prompt);
    if (rc != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Could not tokenize the prompt: %s.", core_strerror(rc));
        return;
    }
    q->prompt_tokens = (long long)n_prompt;
    if (n_prompt + 1 > (size_t)w->n_ctx[mi]) {
        api_fail(&e, 400, "question", "context_length_exceeded",
                 "This model's maximum context length is %d tokens; the question with one "
                 "source takes %zu.",
                 w->n_ctx[mi], n_prompt);
        worker_send_error(w, q, &e, NULL);
        return;
    }
    sbuf sources, text;
    sbuf_init(&sources);
    sbuf_init(&text);
    if (qa_sources_json(&sources, res.hits, k) != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        goto out;
    }
    qa_sse sse = {.w = w, .q = q, .meta = &meta, .sources = sources.data,
                  .sources_len = sources.len};
    worker_gen_params gp = {.mi = mi,
                            .toks = toks,
                            .n_prompt = n_prompt,
                            .max_tokens = max_tokens,
                            .sampling = core_default_sampling(),
                            .npu_class = c->npu.chat_class,
                            .t0 = t0,
                            .ctx_param = "question",
                            .on_start = rq.stream ? qa_start : NULL,
                            .on_text = rq.stream ? qa_text_cb : NULL,
                            .user = &sse,
                            .text = &text,
                            .collect = cacheable};
    gp.sampling.temperature = 0; /* grounded answers: greedy, and so cacheable */
    gp.sampling.seed = 0;
    worker_gen_result gr;
    if (worker_generate(w, q, &gp, &gr))
        goto out;

    bool ended = worker_gen_ended(w, q, &gr, rq.stream);
    const char *finish = q->finish;
    long long usage[3] = {q->prompt_tokens, q->completion_tokens, 0};
    if (!ended && rq.stream) {
        sbuf_clear(&w->chunk);
        qa_sse_done(&w->chunk, &meta, finish, usage, q->deadline_hit);
        resp_sse_done(&w->chunk);
        if (worker_put(q, w->chunk.data, w->chunk.len) == 0)
            worker_flush(q);
    } else if (!ended && text.oom) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
    } else if (!ended) {
        sbuf_clear(&w->body);
        qa_body(&w->body, &meta, text.data, text.len, sources.data, sources.len, finish, usage,
                q->deadline_hit);
        worker_send(q, 200, "application/json", &w->body,
                    q->deadline_hit ? "X-Edgegate-Deadline: hit\r\n" : NULL);
    }
    if (q->disconnected && q->status != 499)
        q->status = 499;
    if (cacheable && worker_gen_whole(q, &gr) && !text.oom) {
        qa_answer a = {.meta = &meta, .answer = text.data ? text.data : "", .len = text.len,
                       .sources = sources.data, .sources_len = sources.len, .finish = finish,
                       .usage = {usage[0], usage[1], 0}};
        qa_cache_put(w, q, &rq, &key, &a, version);
    }
out:
    sbuf_free(&sources);
    sbuf_free(&text);
}
