/* embed.c: POST /v1/embeddings; see embed.h.
 *
 * Format of the request: a JSON object (RFC 8259, UTF-8) with the members
 * listed in embed.h, each at most once.
 *
 * Format of a cache entry's body: the whole response body, which depends
 * only on the key (model identity, inputs, encoding_format).
 */
#include "embed.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core_err.h"
#include "elog.h"
#include "json.h"

/* ---- the request ---------------------------------------------------------- */

static bool embed_key_is(const json_value *v, const char *k)
{
    size_t n = strlen(k);
    return v->key_len == n && memcmp(v->key, k, n) == 0;
}

static int embed_type_err(api_error *e, const char *param, const json_value *v, const char *want)
{
    return api_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.",
                    param, want, json_type_name(v->type));
}

/* A string member: valid UTF-8 without NUL; empty only when allow_empty. */
static int embed_text(api_error *e, const char *param, const json_value *v, bool allow_empty)
{
    if (v->type != JSON_STRING)
        return embed_type_err(e, param, v, "a string");
    if (!json_utf8_valid(v->u.str.s, v->u.str.len))
        return api_fail(e, 400, param, "invalid_encoding", "'%s' is not valid UTF-8.", param);
    if (memchr(v->u.str.s, '\0', v->u.str.len))
        return api_fail(e, 400, param, "invalid_value", "'%s' contains a NUL character.", param);
    if (!allow_empty && v->u.str.len == 0)
        return api_fail(e, 400, param, "invalid_value", "'%s' must not be empty.", param);
    return CORE_OK;
}

static int embed_input(arena *a, const json_value *v, const embed_limits *lim, embed_request *out,
                       api_error *e)
{
    size_t n = v->type == JSON_ARRAY ? v->u.kids.n : 1;
    if (v->type != JSON_STRING && v->type != JSON_ARRAY)
        return embed_type_err(e, "input", v, "a string or an array of strings");
    if (v->type == JSON_ARRAY && n == 0)
        return api_fail(e, 400, "input", "invalid_value", "'input' must not be an empty array.");
    if (n > lim->max_inputs)
        return api_fail(e, 400, "input", "invalid_value",
                        "'input' has %zu items; at most %zu are allowed per request.", n,
                        lim->max_inputs);
    out->inputs = arena_alloc(a, n * sizeof *out->inputs);
    out->lens = arena_alloc(a, n * sizeof *out->lens);
    if (!out->inputs || !out->lens) {
        api_fail(e, 500, NULL, NULL, "Out of memory.");
        return CORE_ENOMEM;
    }
    const json_value *s = v->type == JSON_ARRAY ? v->u.kids.first : v;
    for (size_t i = 0; i < n; i++, s = s->next) {
        if (s->type == JSON_NUMBER || s->type == JSON_ARRAY)
            return api_fail(e, 400, "input", "invalid_value",
                            "Token arrays are not supported: 'input' must be a string or an array "
                            "of strings.");
        char param[48];
        snprintf(param, sizeof param, v->type == JSON_ARRAY ? "input[%zu]" : "input", i);
        int rc = embed_text(e, param, s, false);
        if (rc) {
            snprintf(e->param, sizeof e->param, "input");
            return rc;
        }
        out->inputs[i] = s->u.str.s;
        out->lens[i] = s->u.str.len;
    }
    out->n_inputs = n;
    return CORE_OK;
}

static int embed_members(arena *a, const embed_limits *lim, const json_value *root, embed_request *out,
                         api_error *e)
{
    const json_value *input = NULL, *model = NULL;
    int rc = CORE_OK;
    for (const json_value *k = root->u.kids.first; k && rc == CORE_OK; k = k->next) {
        if (embed_key_is(k, "input")) {
            input = k;
        } else if (embed_key_is(k, "model")) {
            model = k;
        } else if (!embed_key_is(k, "encoding_format") && !embed_key_is(k, "dimensions") &&
                   !embed_key_is(k, "user")) {
            rc = api_fail(e, 400, k->key, "unknown_parameter",
                          "Unrecognized request argument supplied: %.40s", k->key);
        } else if (k->type == JSON_NULL) {
            continue; /* null means "not given" for every optional member */
        } else if (embed_key_is(k, "encoding_format")) {
            if ((rc = embed_text(e, "encoding_format", k, true)) != CORE_OK)
                break;
            if (strcmp(k->u.str.s, "float") && strcmp(k->u.str.s, "base64"))
                rc = api_fail(e, 400, "encoding_format", "invalid_value",
                              "'encoding_format' must be \"float\" or \"base64\", got \"%.40s\".",
                              k->u.str.s);
            out->base64 = !strcmp(k->u.str.s, "base64");
        } else if (embed_key_is(k, "dimensions")) {
            if (k->type != JSON_NUMBER || !k->u.num.is_int)
                rc = embed_type_err(e, "dimensions", k, "an integer");
            else if (k->u.num.i < 1 || k->u.num.i > 65536)
                rc = api_fail(e, 400, "dimensions", "invalid_value",
                              "'dimensions' must be between 1 and 65536, got %lld.",
                              (long long)k->u.num.i);
            else
                out->dimensions = (long)k->u.num.i;
        } else {
            rc = embed_text(e, "user", k, true);
        }
    }
    if (rc)
        return rc;
    if (!input || input->type == JSON_NULL)
        return api_fail(e, 400, "input", "missing_required_parameter",
                        "Missing required parameter: 'input'.");
    if (!model || model->type == JSON_NULL)
        return api_fail(e, 400, "model", "missing_required_parameter",
                        "Missing required parameter: 'model'.");
    if ((rc = embed_text(e, "model", model, true)))
        return rc;
    for (size_t i = 0; i < lim->n_models && !out->model; i++)
        if (strcmp(lim->models[i], model->u.str.s) == 0)
            out->model = lim->models[i];
    if (!out->model)
        return api_fail(e, 400, "model", "model_not_found",
                        "The model '%.64s' does not exist; GET /v1/models lists the models.",
                        model->u.str.s);
    return embed_input(a, input, lim, out, e);
}

int embed_parse(arena *a, const char *body, size_t len, const embed_limits *lim, embed_request *out,
                api_error *e)
{
    memset(out, 0, sizeof *out);
    json_value *root;
    int rc = req_parse_object(a, body, len, 16, &root, e);
    if (rc)
        return rc;
    rc = embed_members(a, lim, root, out, e);
    if (rc == CORE_ENOMEM)
        api_fail(e, 500, NULL, NULL, "Out of memory.");
    return rc;
}

/* ---- the response ----------------------------------------------------------- */

static void embed_base64(sbuf *out, const float *v, int n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t b[3];
    int nb = 0;
    char q[4];
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) { /* little-endian, whatever the host */
            b[nb++] = (uint8_t)(u >> (8 * k));
            if (nb == 3) {
                q[0] = tab[b[0] >> 2];
                q[1] = tab[(b[0] & 3) << 4 | b[1] >> 4];
                q[2] = tab[(b[1] & 15) << 2 | b[2] >> 6];
                q[3] = tab[b[2] & 63];
                sbuf_put(out, q, 4);
                nb = 0;
            }
        }
    }
    if (nb) {
        if (nb == 1)
            b[1] = 0;
        q[0] = tab[b[0] >> 2];
        q[1] = tab[(b[0] & 3) << 4 | b[1] >> 4];
        q[2] = nb == 2 ? tab[(b[1] & 15) << 2] : '=';
        q[3] = '=';
        sbuf_put(out, q, 4);
    }
}

int embed_body(sbuf *out, const char *model, const float *vecs, size_t n, int dim, bool base64,
               long long prompt_tokens)
{
    sbuf_puts(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * (size_t)dim;
        sbuf_printf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (base64) {
            sbuf_putc(out, '"');
            embed_base64(out, v, dim);
            sbuf_putc(out, '"');
        } else {
            sbuf_putc(out, '[');
            /* 9 significant digits read back as the same float32 */
            for (int k = 0; k < dim; k++)
                sbuf_printf(out, k ? ",%.9g" : "%.9g", (double)v[k]);
            sbuf_putc(out, ']');
        }
        sbuf_putc(out, '}');
    }
    sbuf_puts(out, "],\"model\":");
    json_put_str(out, model, strlen(model));
    sbuf_printf(out, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}", prompt_tokens,
                prompt_tokens);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

/* ---- the endpoint ------------------------------------------------------------ */

/* Everything that changes the body, in a fixed order. */
static void embed_cache_key(worker_state *w, worker_req *q, size_t mi, const embed_request *rq, cache_key *key)
{
    const cfg_model *cm = &w->cfg->models[mi];
    const char *client = w->cfg->cache.shared ? "" : q->client;
    cache_keyb kb;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "embeddings", 10);
    cache_key_add_str(&kb, cm->id, strlen(cm->id));
    cache_key_add_str(&kb, cm->path, strlen(cm->path));
    cache_key_add_i64(&kb, w->model_size[mi]);
    cache_key_add_i64(&kb, w->model_mtime[mi]);
    cache_key_add_i64(&kb, w->n_ctx[mi]);
    cache_key_add_str(&kb, client, strlen(client));
    cache_key_add_i64(&kb, rq->base64);
    cache_key_add_i64(&kb, (int64_t)rq->n_inputs);
    for (size_t i = 0; i < rq->n_inputs; i++)
        cache_key_add_str(&kb, rq->inputs[i], rq->lens[i]);
    cache_key_final(&kb, key);
}

/* Token counts of every input (all must fit the context): 0, or -1 after
 * replying. */
static int embed_count(worker_state *w, worker_req *q, size_t mi, const embed_request *rq, size_t *counts,
                       long long *total)
{
    core_model *m = w->models[mi];
    size_t cap = (size_t)w->n_ctx[mi];
    int32_t *toks = arena_alloc(w->arena, cap * sizeof *toks);
    *total = 0;
    for (size_t i = 0; i < rq->n_inputs; i++) {
        int rc = toks ? core_tokenize(m, rq->inputs[i], rq->lens[i], true, false, toks, cap, &counts[i])
                      : CORE_ENOMEM;
        if (rc == CORE_EINVAL && counts[i] > cap) {
            api_error e;
            char which[32] = "";
            if (rq->n_inputs > 1)
                snprintf(which, sizeof which, " (input[%zu])", i);
            api_fail(&e, 400, "input", "context_length_exceeded",
                     "This model's maximum context length is %zu tokens. However, your input%s "
                     "has %zu tokens.",
                     cap, which, counts[i]);
            worker_send_error(w, q, &e, NULL);
            return -1;
        }
        if (rc) {
            worker_fail(w, q, 500, NULL, "Could not tokenize the input: %s.", core_strerror(rc));
            return -1;
        }
        *total += (long long)counts[i];
    }
    return 0;
}

/* Embeds every input into vecs under the NPU, a pass of up to n_ctx tokens
 * at a time, counting them against the slice so that a long request lets
 * waiting ones in. 0, or -1 after replying. */
static int embed_run(worker_state *w, worker_req *q, size_t mi, const embed_request *rq,
                     const size_t *counts, int dim, float *vecs)
{
    core_model *m = w->models[mi];
    if (worker_npu_acquire(w, q, w->cfg->npu.short_class))
        return -1;
    long long g0 = worker_now_us();
    char msg[256] = "";
    int rc = CORE_OK;
    for (size_t i = 0, j; i < rq->n_inputs && rc == CORE_OK; i = j) {
        size_t pass = 0;
        for (j = i; j < rq->n_inputs && (j == i || pass + counts[j] <= (size_t)w->n_ctx[mi]); j++)
            pass += counts[j];
        rc = core_embed_batch(m, rq->inputs + i, rq->lens + i, j - i, vecs + i * (size_t)dim,
                              (j - i) * (size_t)dim, NULL, msg, sizeof msg);
        if (rc == CORE_OK && w->npu && j < rq->n_inputs && npu_tick(w->npu, (int)pass, NULL) != CORE_OK)
            elog_msg(ELOG_WARN, "worker %d: npu_tick failed", w->p->slot);
    }
    q->gen_us = worker_now_us() - g0;
    worker_npu_release(w);
    if (rc != CORE_OK) {
        snprintf(q->error, sizeof q->error, "%s", msg);
        worker_fail(w, q, 500, NULL, "Embedding failed: %s.", core_strerror(rc));
        return -1;
    }
    return 0;
}

void embed_handle(worker_state *w, worker_req *q)
{
    const cfg *c = w->cfg;
    api_error e;
    char *body;
    size_t body_len;
    budget_quota bq;
    if (w->budget && budget_query(w->budget, q->client, &bq) == CORE_OK)
        worker_set_quota(q, &bq);
    if (worker_read_body(w, q, &body, &body_len))
        return;
    embed_limits lim = {.models = w->ids, .n_models = c->n_models,
                        .max_inputs = (size_t)c->limits.max_messages};
    embed_request rq;
    if (embed_parse(w->arena, body, body_len, &lim, &rq, &e) != CORE_OK) {
        worker_send_error(w, q, &e, NULL);
        return;
    }
    q->model = rq.model;
    long mi = worker_model_for(w, q, rq.model, true);
    if (mi < 0)
        return;
    core_info info;
    core_get_info(w->models[mi], &info);
    if (rq.dimensions && rq.dimensions != info.n_embd) {
        api_fail(&e, 400, "dimensions", "invalid_value",
                 "The model '%.64s' makes vectors of %d dimensions; 'dimensions' %ld is not supported.",
                 rq.model, info.n_embd, rq.dimensions);
        worker_send_error(w, q, &e, NULL);
        return;
    }
    size_t *counts = arena_alloc(w->arena, rq.n_inputs * sizeof *counts);
    float *vecs = arena_alloc(w->arena, rq.n_inputs * (size_t)info.n_embd * sizeof *vecs);
    long long total = 0;
    if (!counts || !vecs) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        return;
    }
    if (embed_count(w, q, mi, &rq, counts, &total))
        return;
    q->prompt_tokens = total;

    bool cacheable = w->cache && !worker_no_cache(q);
    q->xcache = cacheable ? "MISS" : "BYPASS";
    cache_key key;
    if (cacheable) {
        embed_cache_key(w, q, mi, &rq, &key);
        cache_key_hex(&key, q->cache_key);
        bool hit = false;
        cache_info ci;
        int rc = cache_get(w->cache, &key, &hit, &ci, &w->cachebody);
        if (rc != CORE_OK) {
            elog_ev(ELOG_WARN, "cache get failed; treated as a miss", ELOG_S("request_id", q->req_id),
                    ELOG_S("error", cache_errmsg(w->cache)));
        } else if (hit) {
            if (worker_charge_hit(w, q, &ci) == 0)
                worker_send(q, 200, "application/json", &w->cachebody, NULL);
            return;
        }
    }

    /* Budget: the input tokens, all or nothing. */
    budget_res bres;
    bool reserved = false;
    if (w->budget) {
        bool granted = false;
        int rc = budget_reserve(w->budget, q->client, total, total, &bres, &granted, &bq);
        if (rc != CORE_OK) {
            snprintf(q->error, sizeof q->error, "budget: %s", budget_errmsg(w->budget));
            worker_fail(w, q, 500, NULL, "The token budget store failed: %s.", core_strerror(rc));
            return;
        }
        worker_set_quota(q, &bq);
        if (!granted) {
            worker_quota_error(w, q, &bq, total);
            return;
        }
        reserved = true;
    }
    int run = embed_run(w, q, mi, &rq, counts, info.n_embd, vecs);
    worker_settle(w, q, &bres, reserved, run ? 0 : total);
    if (run)
        return;
    sbuf_clear(&w->body);
    if (embed_body(&w->body, rq.model, vecs, rq.n_inputs, info.n_embd, rq.base64, total) != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        return;
    }
    worker_send(q, 200, "application/json", &w->body, NULL);
    if (cacheable) {
        cache_entry ce = {.model = rq.model,
                          .client = c->cache.shared ? NULL : q->client,
                          .ttl_s = -1,
                          .prompt_tokens = total};
        if (cache_put(w->cache, &key, &ce, w->body.data, w->body.len) != CORE_OK)
            elog_ev(ELOG_WARN, "cache put failed", ELOG_S("request_id", q->req_id),
                    ELOG_S("error", cache_errmsg(w->cache)));
    }
}
