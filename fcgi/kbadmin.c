/* kbadmin.c: admin endpoints and operator commands of the knowledge base;
 * see kbadmin.h.
 *
 * Request formats (POST /admin/kb/documents):
 *   Content-Type application/json: one object with exactly these members:
 *     "id" (string, required), "content" (string, required), "title"
 *     (string or null), "type" ("auto", "text", "markdown", "html", or null).
 *   anything else: the body is the document; QUERY_STRING carries id
 *     (required), title and type, '&'-separated, '+' and %XX decoded.
 */
#include "kbadmin.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core_err.h"
#include "elog.h"
#include "json.h"

/* ---- the embedder ------------------------------------------------------------------ */

typedef struct {
    core_model *m;
    bool own; /* loaded by kbadmin_open(): freed with the kb */
    npu *npu;
    int cls, dim;
} kbadmin_emb;

static int kbadmin_embed(void *user, const char *text, size_t len, float *out)
{
    kbadmin_emb *e = user;
    bool took = false;
    if (e->npu && !npu_held(e->npu)) {
        npu_grant g;
        int rc = npu_acquire(e->npu, e->cls, &g);
        if (rc != CORE_OK)
            return rc;
        if (g.outcome != NPU_GRANTED)
            return CORE_EABORTED;
        took = true;
    }
    char msg[200];
    int rc;
    /* A chunk with more tokens than the model's context: embed its head. */
    while ((rc = core_embed(e->m, text, len, out, (size_t)e->dim, NULL, msg, sizeof(msg))) ==
               CORE_ECONTEXT &&
           len > 16) {
        len /= 2;
        while (len && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--;
    }
    if (took)
        npu_release(e->npu);
    return rc;
}

static void kbadmin_emb_free(void *user)
{
    kbadmin_emb *e = user;
    if (e && e->own)
        core_free(e->m);
    free(e);
}

int kbadmin_open(const cfg *c, core_model *const *models, npu *n, kb **out, char *msg,
                 size_t msg_size)
{
    kb_params p = kb_default_params();
    p.path = c->kb.path;
    p.map_size = (size_t)c->kb.map_size_mb << 20;
    p.chunk_bytes = (size_t)c->kb.chunk_bytes;
    p.overlap_bytes = (size_t)c->kb.overlap_bytes;
    p.max_document_bytes = (size_t)c->kb.max_document_bytes;
    char ident[320];
    const char *id = c->kb.embedding_model;
    size_t mi = 0;
    while (id && mi < c->n_models && strcmp(c->models[mi].id, id) != 0)
        mi++;
    if (id && mi == c->n_models)
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "kb.embedding_model '%s' is not one of the models", id);
    if (id && (!models || models[mi])) {
        kbadmin_emb *e = calloc(1, sizeof(*e));
        if (!e)
            return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        e->npu = n;
        e->cls = c->npu.short_class;
        if (models) {
            e->m = models[mi];
        } else {
            core_params cp = core_default_params();
            cp.path = c->models[mi].path;
            cp.n_threads = c->models[mi].threads;
            cp.n_ctx = c->models[mi].n_ctx;
            int rc = core_load(&cp, &e->m, msg, msg_size);
            if (rc != CORE_OK) {
                free(e);
                return rc;
            }
            e->own = true;
        }
        core_info info;
        core_get_info(e->m, &info);
        if (!info.embedding) {
            kbadmin_emb_free(e);
            return core_errf(CORE_EINVAL, msg, msg_size,
                             "kb.embedding_model '%s' is not an embedding model", id);
        }
        /* Vectors are comparable only between the same weights: the name,
         * the size and the file's length identify them. */
        struct stat st;
        long long size = stat(c->models[mi].path, &st) == 0 ? (long long)st.st_size : 0;
        snprintf(ident, sizeof(ident), "%.200s/%d/%lld", info.name ? info.name : id,
                 info.n_embd, size);
        e->dim = info.n_embd;
        p.embed = kbadmin_embed;
        p.embed_user = e;
        p.embed_dim = info.n_embd;
        p.embed_model = ident;
        p.embed_free = kbadmin_emb_free;
    }
    return kb_open(&p, out, msg, msg_size);
}

/* ---- request parsing ------------------------------------------------------------ */

const char *kbadmin_query(arena *a, const char *qs, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = qs; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        size_t kl = eq ? (size_t)(eq - p) : n;
        if (kl == nl && memcmp(p, name, nl) == 0) {
            const char *v = eq ? eq + 1 : p + n;
            return req_unescape(a, v, (size_t)(p + n - v), len);
        }
        p = amp ? amp + 1 : p + n;
    }
    return NULL;
}

static bool kbadmin_is_json(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, "application/json", 16) == 0 &&
           (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ');
}

static int kbadmin_bad(const char **param, const char *name, char *msg, size_t msg_size,
                       const char *what)
{
    *param = name;
    return core_errf(CORE_EFORMAT, msg, msg_size, "%s", what);
}

/* A string member (no NUL bytes): *out NULL when absent or null. */
static int kbadmin_str(const json_value *v, const char *name, const char **out, size_t *len,
                       const char **param, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!v || v->type == JSON_NULL)
        return CORE_OK;
    if (v->type != JSON_STRING) {
        char m[96];
        snprintf(m, sizeof(m), "'%s' must be a string", name);
        return kbadmin_bad(param, name, msg, msg_size, m);
    }
    *out = v->u.str.s;
    if (len)
        *len = v->u.str.len;
    else if (strlen(v->u.str.s) != v->u.str.len) {
        char m[96];
        snprintf(m, sizeof(m), "'%s' contains a NUL byte", name);
        return kbadmin_bad(param, name, msg, msg_size, m);
    }
    return CORE_OK;
}

int kbadmin_parse_doc(arena *a, const char *content_type, const char *qs, const char *body,
                      size_t len, kbadmin_doc *out, const char **param, char *msg,
                      size_t msg_size)
{
    memset(out, 0, sizeof(*out));
    *param = NULL;
    const char *type = NULL;
    int rc;
    if (kbadmin_is_json(content_type)) {
        json_value *root;
        rc = json_parse(a, body, len, &root, msg, msg_size);
        if (rc != CORE_OK)
            return rc;
        if (root->type != JSON_OBJECT)
            return kbadmin_bad(param, NULL, msg, msg_size, "the body must be a JSON object");
        for (json_value *m = root->u.kids.first; m; m = m->next)
            if (strcmp(m->key, "id") && strcmp(m->key, "title") && strcmp(m->key, "type") &&
                strcmp(m->key, "content")) {
                char t[96];
                snprintf(t, sizeof(t), "unknown member '%.40s'", m->key);
                return kbadmin_bad(param, m->key, msg, msg_size, t);
            }
        if ((rc = kbadmin_str(json_get(root, "id"), "id", &out->id, NULL, param, msg,
                              msg_size)) ||
            (rc = kbadmin_str(json_get(root, "title"), "title", &out->title, NULL, param, msg,
                              msg_size)) ||
            (rc = kbadmin_str(json_get(root, "type"), "type", &type, NULL, param, msg,
                              msg_size)) ||
            (rc = kbadmin_str(json_get(root, "content"), "content", &out->content, &out->len,
                              param, msg, msg_size)))
            return rc;
        if (!out->content)
            return kbadmin_bad(param, "content", msg, msg_size, "'content' is required");
    } else {
        size_t n = 0;
        out->id = kbadmin_query(a, qs, "id", &n);
        if (out->id && strlen(out->id) != n)
            return kbadmin_bad(param, "id", msg, msg_size, "'id' contains a NUL byte");
        out->title = kbadmin_query(a, qs, "title", &n);
        if (out->title && strlen(out->title) != n)
            return kbadmin_bad(param, "title", msg, msg_size, "'title' contains a NUL byte");
        type = kbadmin_query(a, qs, "type", NULL);
        out->content = body ? body : "";
        out->len = len;
    }
    if (!out->id || !*out->id)
        return kbadmin_bad(param, "id", msg, msg_size,
                           "'id' is required (a JSON member, or ?id= with a raw body)");
    if (out->title && !json_utf8_valid(out->title, strlen(out->title)))
        return kbadmin_bad(param, "title", msg, msg_size, "'title' is not valid UTF-8");
    if (type && kb_type_parse(type, &out->type) != 0)
        return kbadmin_bad(param, "type", msg, msg_size,
                           "'type' must be auto, text, markdown or html");
    return CORE_OK;
}

/* ---- JSON views --------------------------------------------------------------------- */

void kbadmin_ingest_json(sbuf *out, const char *id, const kb_ingest_result *r)
{
    sbuf_puts(out, "{\"id\":");
    json_put_str(out, id, strlen(id));
    sbuf_printf(out,
                ",\"version\":%llu,\"chunks\":%zu,\"replaced\":%s,\"unchanged\":%s,"
                "\"type\":\"%s\"}",
                (unsigned long long)r->version, r->chunks, r->replaced ? "true" : "false",
                r->unchanged ? "true" : "false", kb_type_name(r->type));
}

int kbadmin_info_json(kb *k, arena *a, sbuf *out)
{
    kb_stats st;
    kb_doc *docs;
    size_t n;
    uint64_t version;
    int rc = kb_list(k, a, &docs, &n, &version);
    if (rc == CORE_OK)
        rc = kb_get_stats(k, &st);
    if (rc != CORE_OK)
        return rc;
    sbuf_printf(out,
                "{\"object\":\"knowledge_base\",\"version\":%llu,\"stats\":{\"documents\":%llu,"
                "\"chunks\":%llu,\"terms\":%llu,\"postings\":%llu,\"bytes\":%llu,"
                "\"vectors\":%llu,\"embed_dim\":%d,\"map_size\":%llu,\"map_used\":%llu},"
                "\"documents\":[",
                (unsigned long long)version, (unsigned long long)st.documents,
                (unsigned long long)st.chunks, (unsigned long long)st.terms,
                (unsigned long long)st.postings, (unsigned long long)st.bytes,
                (unsigned long long)st.vectors, st.embed_dim, (unsigned long long)st.map_size,
                (unsigned long long)st.map_used);
    for (size_t i = 0; i < n; i++) {
        sbuf_puts(out, i ? ",{\"id\":" : "{\"id\":");
        json_put_str(out, docs[i].id, strlen(docs[i].id));
        sbuf_puts(out, ",\"title\":");
        json_put_str(out, docs[i].title, strlen(docs[i].title));
        sbuf_printf(out, ",\"type\":\"%s\",\"bytes\":%llu,\"chunks\":%u,\"updated\":%lld}",
                    kb_type_name(docs[i].type), (unsigned long long)docs[i].bytes,
                    docs[i].chunks, (long long)docs[i].updated);
    }
    sbuf_puts(out, "]}");
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

void kbadmin_result_json(sbuf *out, const char *query, size_t len, const kb_result *r)
{
    sbuf_puts(out, "{\"object\":\"list\",\"query\":");
    json_put_str(out, query, len);
    sbuf_printf(out, ",\"version\":%llu,\"mode\":\"%s\",\"terms\":%zu,\"data\":[",
                (unsigned long long)r->version, kb_mode_name(r->mode), r->terms);
    for (size_t i = 0; i < r->n; i++) {
        const kb_hit *h = &r->hits[i];
        sbuf_puts(out, i ? ",{\"document\":" : "{\"document\":");
        json_put_str(out, h->doc_id, strlen(h->doc_id));
        sbuf_puts(out, ",\"document_title\":");
        json_put_str(out, h->doc_title, strlen(h->doc_title));
        sbuf_puts(out, ",\"title\":");
        json_put_str(out, h->title, strlen(h->title));
        sbuf_printf(out, ",\"chunk\":%u,\"score\":%.6g,\"start\":%llu,\"end\":%llu,\"text\":",
                    h->chunk, h->score, (unsigned long long)h->start,
                    (unsigned long long)h->end);
        json_put_str(out, h->text, h->text_len);
        sbuf_putc(out, '}');
    }
    sbuf_puts(out, "]}");
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* A kb_ingest / kb_delete failure as an HTTP error. */
static void kbadmin_fail(worker_state *w, worker_req *q, int rc, const char *msg)
{
    if (kb_full(w->kb)) {
        snprintf(q->error, sizeof(q->error), "%s", kb_errmsg(w->kb));
        worker_fail(w, q, 507, "kb_full", "%s", kb_errmsg(w->kb) + 4);
    } else if (rc == CORE_EABORTED) {
        worker_fail(w, q, 503, "npu_busy",
                    "The NPU is busy; the document was not ingested. Retry later.");
    } else if (rc == CORE_EIO || rc == CORE_ENOMEM) {
        snprintf(q->error, sizeof(q->error), "%s", kb_errmsg(w->kb));
        worker_fail(w, q, 500, NULL, "The knowledge base failed: %s.", core_strerror(rc));
    } else if (rc == CORE_EINVAL && strncmp(msg, "document too large", 18) == 0) {
        worker_fail(w, q, 413, "document_too_large", "%s", msg);
    } else {
        api_error e;
        api_fail(&e, 400, rc == CORE_EINVAL && strstr(msg, "id") ? "id" : "content",
                 "invalid_value", "%s", msg);
        worker_send_error(w, q, &e, NULL);
    }
}

static void kbadmin_post(worker_state *w, worker_req *q)
{
    char *body;
    size_t len;
    if (worker_read_body(w, q, &body, &len))
        return;
    kbadmin_doc d;
    api_error e;
    const char *param = NULL;
    api_fail(&e, 400, NULL, "invalid_value", "%s", "");
    int rc = kbadmin_parse_doc(w->arena, worker_param(q, "CONTENT_TYPE"),
                               worker_param(q, "QUERY_STRING"), body, len, &d, &param,
                               e.message, sizeof(e.message));
    if (rc == CORE_EFORMAT) {
        if (param)
            snprintf(e.param, sizeof(e.param), "%s", param);
        worker_send_error(w, q, &e, NULL);
        return;
    }
    if (rc != CORE_OK) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        return;
    }
    kb_doc_in in = {.id = d.id, .title = d.title, .type = d.type, .data = d.content,
                    .len = d.len};
    kb_ingest_result res;
    char msg[320] = "";
    rc = kb_ingest(w->kb, &in, &res, msg, sizeof(msg));
    if (rc != CORE_OK) {
        kbadmin_fail(w, q, rc, msg);
        return;
    }
    if (!res.unchanged)
        elog_ev(ELOG_INFO, "kb document ingested", ELOG_S("request_id", q->req_id),
                ELOG_S("kb_document", d.id), ELOG_I("chunks", (long long)res.chunks),
                ELOG_I("kb_version", (long long)res.version));
    sbuf_clear(&w->body);
    kbadmin_ingest_json(&w->body, d.id, &res);
    worker_send_json(w, q, 200);
}

static void kbadmin_delete(worker_state *w, worker_req *q, const char *id)
{
    bool found = false;
    uint64_t version = 0;
    int rc = kb_delete(w->kb, id, &found, &version);
    if (rc == CORE_EINVAL || (rc == CORE_OK && !found)) {
        worker_fail(w, q, 404, "not_found", "No document '%.200s' in the knowledge base.", id);
        return;
    }
    if (rc != CORE_OK) {
        kbadmin_fail(w, q, rc, "");
        return;
    }
    elog_ev(ELOG_INFO, "kb document deleted", ELOG_S("request_id", q->req_id),
            ELOG_S("kb_document", id), ELOG_I("kb_version", (long long)version));
    sbuf_clear(&w->body);
    sbuf_puts(&w->body, "{\"id\":");
    json_put_str(&w->body, id, strlen(id));
    sbuf_printf(&w->body, ",\"deleted\":true,\"version\":%llu}", (unsigned long long)version);
    worker_send_json(w, q, 200);
}

static void kbadmin_search(worker_state *w, worker_req *q)
{
    const char *qs = worker_param(q, "QUERY_STRING");
    size_t qlen = 0;
    const char *query = kbadmin_query(w->arena, qs, "q", &qlen);
    const char *tk = kbadmin_query(w->arena, qs, "top_k", NULL);
    const char *mode = kbadmin_query(w->arena, qs, "mode", NULL);
    api_error e;
    kb_query opt = {.top_k = 5};
    if (!query || qlen == 0) {
        api_fail(&e, 400, "q", "invalid_value", "The query ?q= is required and non-empty.");
        worker_send_error(w, q, &e, NULL);
        return;
    }
    if (tk) {
        char *end;
        long v = strtol(tk, &end, 10);
        if (!*tk || *end || v < 1 || v > KB_MAX_TOP_K) {
            api_fail(&e, 400, "top_k", "invalid_value", "top_k must be 1..%d.", KB_MAX_TOP_K);
            worker_send_error(w, q, &e, NULL);
            return;
        }
        opt.top_k = (size_t)v;
    }
    if (mode && kb_mode_parse(mode, &opt.mode) != 0) {
        api_fail(&e, 400, "mode", "invalid_value", "mode must be auto, bm25, dense or hybrid.");
        worker_send_error(w, q, &e, NULL);
        return;
    }
    if (!json_utf8_valid(query, qlen)) {
        api_fail(&e, 400, "q", "invalid_value", "The query is not valid UTF-8.");
        worker_send_error(w, q, &e, NULL);
        return;
    }
    kb_result r;
    char msg[320] = "";
    int rc = kb_search(w->kb, query, qlen, &opt, w->arena, &r, msg, sizeof(msg));
    if (rc == CORE_EINVAL) {
        api_fail(&e, 400, "q", "invalid_value", "%s", msg);
        worker_send_error(w, q, &e, NULL);
        return;
    }
    if (rc != CORE_OK) {
        kbadmin_fail(w, q, rc, msg);
        return;
    }
    sbuf_clear(&w->body);
    kbadmin_result_json(&w->body, query, qlen, &r);
    worker_send_json(w, q, 200);
}

void kbadmin_route(worker_state *w, worker_req *q, const char *rest)
{
    if (!w->kb) {
        worker_fail(w, q, 503, "kb_unavailable",
                    "The knowledge base is disabled or failed to open; see the pool's log.");
        return;
    }
    if (!*rest || strcmp(rest, "/") == 0) {
        if (!worker_method(w, q, "GET"))
            return;
        sbuf_clear(&w->body);
        int rc = kbadmin_info_json(w->kb, w->arena, &w->body);
        if (rc == CORE_OK)
            worker_send_json(w, q, 200);
        else
            kbadmin_fail(w, q, rc, "");
    } else if (strcmp(rest, "/search") == 0) {
        if (worker_method(w, q, "GET"))
            kbadmin_search(w, q);
    } else if (strcmp(rest, "/documents") == 0) {
        if (worker_method(w, q, "POST"))
            kbadmin_post(w, q);
    } else if (strncmp(rest, "/documents/", 11) == 0 && rest[11]) {
        if (worker_method(w, q, "DELETE"))
            kbadmin_delete(w, q, rest + 11);
    } else {
        worker_fail(w, q, 404, "not_found", "No admin endpoint %.64s.", q->path);
    }
}

/* ---- command line ---------------------------------------------------------------------- */

static bool kbadmin_wanted(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return false;
    static const char *const ext[] = {".txt", ".text", ".md", ".markdown", ".html", ".htm",
                                      NULL};
    for (int i = 0; ext[i]; i++)
        if (strcasecmp(dot, ext[i]) == 0)
            return true;
    return false;
}

typedef struct {
    kb *k;
    sbuf line;
    int failed;
} kbadmin_cli_st;

static void kbadmin_report(kbadmin_cli_st *s, const char *path, const char *key,
                           const char *what)
{
    sbuf_clear(&s->line);
    sbuf_puts(&s->line, "{\"id\":");
    json_put_str(&s->line, path, strlen(path));
    sbuf_printf(&s->line, ",\"%s\":", key);
    json_put_str(&s->line, what, strlen(what));
    sbuf_putc(&s->line, '}');
    puts(s->line.data ? s->line.data : "");
}

static void kbadmin_ingest_file(kbadmin_cli_st *s, const char *path)
{
    FILE *f = fopen(path, "rb");
    char msg[320] = "";
    if (!f) {
        kbadmin_report(s, path, "error", strerror(errno));
        s->failed = 1;
        return;
    }
    sbuf data;
    sbuf_init(&data);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        sbuf_put(&data, buf, n);
    bool err = ferror(f);
    fclose(f);
    if (err || data.oom) {
        kbadmin_report(s, path, "error", err ? "read error" : "out of memory");
        s->failed = 1;
        sbuf_free(&data);
        return;
    }
    kb_doc_in in = {.id = path, .data = data.data ? data.data : "", .len = data.len};
    kb_ingest_result r;
    int rc = kb_ingest(s->k, &in, &r, msg, sizeof(msg));
    sbuf_free(&data);
    if (rc != CORE_OK) {
        kbadmin_report(s, path, "error", msg);
        s->failed = 1;
        return;
    }
    sbuf_clear(&s->line);
    kbadmin_ingest_json(&s->line, path, &r);
    puts(s->line.data);
}

static void kbadmin_walk(kbadmin_cli_st *s, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        kbadmin_report(s, path, "error", strerror(errno));
        s->failed = 1;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (depth == 0 || kbadmin_wanted(path))
            kbadmin_ingest_file(s, path);
        else
            kbadmin_report(s, path, "skipped", "not .txt .md .markdown .html .htm");
        return;
    }
    if (depth > 32) {
        kbadmin_report(s, path, "skipped", "nested too deeply");
        return;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        kbadmin_report(s, path, "error", strerror(errno));
        s->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        if (nm[0] != '.') {
            size_t pl = strlen(path);
            char *child = malloc(pl + strlen(nm) + 2);
            if (child) {
                snprintf(child, pl + strlen(nm) + 2, "%s%s%s", path,
                         pl && path[pl - 1] == '/' ? "" : "/", nm);
                kbadmin_walk(s, child, depth + 1);
                free(child);
            }
        }
        free(names[i]);
    }
    free(names);
}

int kbadmin_cli(const cfg *c, const char *op, const char *const *args, size_t n)
{
    char msg[512] = "";
    kbadmin_cli_st s = {0};
    sbuf_init(&s.line);
    int rc = kbadmin_open(c, NULL, NULL, &s.k, msg, sizeof(msg));
    arena *a = arena_new(0);
    if (rc == CORE_OK && !a)
        rc = core_errf(CORE_ENOMEM, msg, sizeof(msg), "out of memory");
    if (rc == CORE_OK && strcmp(op, "ingest") == 0) {
        for (size_t i = 0; i < n; i++)
            kbadmin_walk(&s, args[i], 0);
    } else if (rc == CORE_OK && strcmp(op, "list") == 0) {
        rc = kbadmin_info_json(s.k, a, &s.line);
        if (rc == CORE_OK)
            puts(s.line.data);
    } else if (rc == CORE_OK && strcmp(op, "delete") == 0 && n == 1) {
        bool found = false;
        uint64_t version = 0;
        rc = kb_delete(s.k, args[0], &found, &version);
        if (rc == CORE_OK && !found)
            rc = core_errf(CORE_ENOTFOUND, msg, sizeof(msg), "no document '%s'", args[0]);
        else if (rc == CORE_OK)
            printf("{\"deleted\":true,\"version\":%llu}\n", (unsigned long long)version);
    } else if (rc == CORE_OK && strcmp(op, "search") == 0 && n >= 1 && n <= 3) {
        kb_result r;
        kb_query q = {.top_k = 5};
        long top = n == 3 ? strtol(args[2], NULL, 10) : 5;
        if (n >= 2 && kb_mode_parse(args[1], &q.mode) != 0)
            rc = core_errf(CORE_EINVAL, msg, sizeof(msg), "mode must be auto, bm25, dense or hybrid");
        else if (top < 1 || top > KB_MAX_TOP_K)
            rc = core_errf(CORE_EINVAL, msg, sizeof(msg), "top_k must be 1..%d", KB_MAX_TOP_K);
        q.top_k = (size_t)top;
        if (rc == CORE_OK)
            rc = kb_search(s.k, args[0], strlen(args[0]), &q, a, &r, msg, sizeof(msg));
        if (rc == CORE_OK) {
            kbadmin_result_json(&s.line, args[0], strlen(args[0]), &r);
            puts(s.line.data);
        }
    } else if (rc == CORE_OK && strcmp(op, "reembed") == 0) {
        size_t done = 0;
        rc = kb_reembed(s.k, &done, msg, sizeof(msg));
        if (rc == CORE_OK)
            printf("{\"embedded\":%zu}\n", done);
    } else if (rc == CORE_OK) {
        rc = core_errf(CORE_EINVAL, msg, sizeof(msg), "bad knowledge base command");
    }
    if (rc != CORE_OK && !msg[0] && s.k)
        snprintf(msg, sizeof(msg), "%s", kb_errmsg(s.k));
    if (rc != CORE_OK)
        fprintf(stderr, "edgegate-fcgi: %s: %s\n", core_strerror(rc), msg);
    kb_close(s.k);
    arena_free(a);
    sbuf_free(&s.line);
    return rc != CORE_OK || s.failed ? 1 : 0;
}
