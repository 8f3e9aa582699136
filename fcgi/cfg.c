/* cfg.c: libconfig file -> cfg, with validation; see cfg.h.
 *
 * Format (libconfig 1.5 syntax; conf/edgegate.conf documents every key):
 *   socket, socket_group, socket_mode ("0660" as a string), pid_file,
 *   log_file, log_level, workers, shutdown_timeout_ms,
 *   models = ( { id, path, threads, n_ctx, chat_template }, ... ),
 *   limits = { max_body_bytes, default_max_tokens, max_tokens_cap,
 *              deadline_ms, max_messages },
 *   clients = ( { id, max_tokens_cap, tokens_per_day, tokens_per_month }, ... ),
 *   npu = { lock_file, classes, chat_class, short_class, max_waiters,
 *           max_wait_ms, slice_tokens, slice_ms, reap_ms },
 *   cache = { enabled, path, map_size_mb, max_kb, ttl_s, shared, reader_check_s },
 *   budgets = { enabled, path, map_size_mb, sync, tokens_per_day,
 *               tokens_per_month, charge_cache_hits },
 *   qa = { model, top_k, min_score, max_question_bytes, max_tokens },
 *   kb = { enabled, path, map_size_mb, chunk_bytes, overlap_bytes,
 *          max_document_bytes, embedding_model },
 *   vision = ( { id, cfg, weights, names, threads }, ... ),
 *   images = { max_bytes, max_width, max_height, max_pixels }
 */
#include "cfg.h"

#include <errno.h>
#include <grp.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core_err.h"
#include "npu.h"

typedef struct {
    const char *name;     /* file name for messages */
    const char *base_dir; /* for relative paths */
    char *msg;
    size_t msg_size;
} cfg_ctx;

static int cfg_fail(cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const char *file = s ? config_setting_source_file(s) : NULL;
    int line = s ? config_setting_source_line(s) : 0;
    return core_errf(CORE_EINVAL, x->msg, x->msg_size, "%s:%d: %s", file ? file : x->name,
                     line, what);
}

static const char *cfg_type_name(int t)
{
    switch (t) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    }
    return "nothing";
}

/* Every member of group must be named in allowed (NULL-terminated). */
static int cfg_check_keys(cfg_ctx *x, const config_setting_t *group, const char *where,
                          const char *const *allowed)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = name && strcmp(name, *a) == 0;
        if (!ok)
            return cfg_fail(x, s, "unknown setting '%s'%s%s", name ? name : "?",
                            where ? " in " : "", where ? where : "");
    }
    return CORE_OK;
}

/* Optional string; *out stays as is when absent. */
static int cfg_str(cfg_ctx *x, const config_setting_t *group, const char *key, bool required,
                   const config_setting_t **where, const char **out)
{
    const config_setting_t *s = config_setting_get_member(group, key);
    if (where)
        *where = s ? s : group;
    if (!s) {
        if (required)
            return cfg_fail(x, group, "missing required setting '%s'", key);
        return CORE_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return cfg_fail(x, s, "'%s' must be a string, not %s", key,
                        cfg_type_name(config_setting_type(s)));
    *out = config_setting_get_string(s);
    return CORE_OK;
}

static int cfg_int(cfg_ctx *x, const config_setting_t *group, const char *key, bool required,
                   long long lo, long long hi, long long *out)
{
    const config_setting_t *s = config_setting_get_member(group, key);
    if (!s) {
        if (required)
            return cfg_fail(x, group, "missing required setting '%s'", key);
        return CORE_OK;
    }
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return cfg_fail(x, s, "'%s' must be an integer, not %s", key, cfg_type_name(t));
    long long v = config_setting_get_int64(s);
    if (v < lo || v > hi)
        return cfg_fail(x, s, "'%s' = %lld is out of range [%lld, %lld]", key, v, lo, hi);
    *out = v;
    return CORE_OK;
}

static int cfg_bool(cfg_ctx *x, const config_setting_t *group, const char *key, bool *out)
{
    const config_setting_t *s = config_setting_get_member(group, key);
    if (!s)
        return CORE_OK;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return cfg_fail(x, s, "'%s' must be a boolean (true or false), not %s", key,
                        cfg_type_name(config_setting_type(s)));
    *out = config_setting_get_bool(s) != 0;
    return CORE_OK;
}

/* Absolute paths stay; relative ones are joined to the config's directory. */
static char *cfg_path(cfg_ctx *x, const char *p)
{
    if (p[0] == '/' || !x->base_dir || !x->base_dir[0])
        return strdup(p);
    size_t n = strlen(x->base_dir) + strlen(p) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", x->base_dir, p);
    return r;
}

static bool cfg_id_ok(const char *s)
{
    if (!*s || strlen(s) > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("._:-/@", *s)))
            return false;
    return true;
}

#define CFG_MAX_BUDGET (1LL << 47) /* tokens; far below budget.h's per-call bound */

#define CFG_TRY(e)                                                                         \
    do {                                                                                   \
        if ((rc = (e)) != CORE_OK)                                                         \
            goto out;                                                                      \
    } while (0)
#define CFG_OOM(p)                                                                         \
    do {                                                                                   \
        if (!(p)) {                                                                        \
            rc = core_errf(CORE_ENOMEM, x->msg, x->msg_size, "out of memory");             \
            goto out;                                                                      \
        }                                                                                  \
    } while (0)

static int cfg_models(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"id", "path", "threads", "n_ctx", "chat_template", NULL};
    int rc = CORE_OK;
    const config_setting_t *list = config_setting_get_member(root, "models");
    if (!list)
        return cfg_fail(x, root, "missing required setting 'models'");
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_fail(x, list, "'models' must be a list ( {...}, ... ), not %s",
                        cfg_type_name(config_setting_type(list)));
    int n = config_setting_length(list);
    if (n < 1)
        return cfg_fail(x, list, "'models' needs at least one model");
    if (n > CFG_MAX_MODELS)
        return cfg_fail(x, list, "'models' has %d entries, at most %d are allowed", n,
                        CFG_MAX_MODELS);
    c->models = calloc((size_t)n, sizeof(*c->models));
    CFG_OOM(c->models);
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return cfg_fail(x, g, "models[%d] must be a group { id = ...; path = ...; }", i);
        CFG_TRY(cfg_check_keys(x, g, "a model", keys));
        cfg_model *m = &c->models[c->n_models++];
        const char *id = NULL, *path = NULL, *tmpl = "auto";
        const config_setting_t *at;
        CFG_TRY(cfg_str(x, g, "id", true, &at, &id));
        if (!cfg_id_ok(id))
            return cfg_fail(x, at, "model id '%s' must be 1-128 of [A-Za-z0-9._:-/@]", id);
        for (int j = 0; j < i; j++)
            if (strcmp(c->models[j].id, id) == 0)
                return cfg_fail(x, at, "model id '%s' is used twice", id);
        CFG_TRY(cfg_str(x, g, "path", true, &at, &path));
        if (!*path)
            return cfg_fail(x, at, "model '%s': 'path' is empty", id);
        CFG_TRY(cfg_str(x, g, "chat_template", false, NULL, &tmpl));
        long long threads = 0, n_ctx = 0;
        CFG_TRY(cfg_int(x, g, "threads", false, 0, 256, &threads));
        CFG_TRY(cfg_int(x, g, "n_ctx", false, 0, 1 << 20, &n_ctx));
        m->id = strdup(id);
        m->path = cfg_path(x, path);
        m->chat_template = strcmp(tmpl, "auto") && *tmpl ? strdup(tmpl) : NULL;
        m->threads = (int)threads;
        m->n_ctx = (int)n_ctx;
        CFG_OOM(m->id && m->path);
        if (access(m->path, R_OK) != 0)
            return cfg_fail(x, at, "model '%s': cannot read %s: %s", id, m->path,
                            strerror(errno));
    }
out:
    return rc;
}

static int cfg_limits_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"max_body_bytes", "default_max_tokens", "max_tokens_cap",
                                       "deadline_ms",    "max_messages",       NULL};
    int rc = CORE_OK;
    const config_setting_t *g = config_setting_get_member(root, "limits");
    if (!g)
        return CORE_OK;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return cfg_fail(x, g, "'limits' must be a group { ... }, not %s",
                        cfg_type_name(config_setting_type(g)));
    CFG_TRY(cfg_check_keys(x, g, "limits", keys));
    long long v;
    v = c->limits.max_body_bytes;
    CFG_TRY(cfg_int(x, g, "max_body_bytes", false, 1024, 64LL << 20, &v));
    c->limits.max_body_bytes = (long)v;
    v = c->limits.max_tokens_cap;
    CFG_TRY(cfg_int(x, g, "max_tokens_cap", false, 1, 1 << 20, &v));
    c->limits.max_tokens_cap = (int)v;
    v = c->limits.default_max_tokens;
    CFG_TRY(cfg_int(x, g, "default_max_tokens", false, 1, 1 << 20, &v));
    c->limits.default_max_tokens = (int)v;
    if (c->limits.default_max_tokens > c->limits.max_tokens_cap)
        return cfg_fail(x, config_setting_get_member(g, "default_max_tokens")
                               ? config_setting_get_member(g, "default_max_tokens")
                               : g,
                        "default_max_tokens (%d) exceeds max_tokens_cap (%d)",
                        c->limits.default_max_tokens, c->limits.max_tokens_cap);
    v = c->limits.deadline_ms;
    CFG_TRY(cfg_int(x, g, "deadline_ms", false, 0, 3600000, &v));
    c->limits.deadline_ms = (int)v;
    v = c->limits.max_messages;
    CFG_TRY(cfg_int(x, g, "max_messages", false, 1, 100000, &v));
    c->limits.max_messages = (int)v;
out:
    return rc;
}

static int cfg_clients(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"id", "max_tokens_cap", "tokens_per_day",
                                       "tokens_per_month", NULL};
    int rc = CORE_OK;
    const config_setting_t *list = config_setting_get_member(root, "clients");
    if (!list)
        return CORE_OK;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_fail(x, list, "'clients' must be a list ( {...}, ... ), not %s",
                        cfg_type_name(config_setting_type(list)));
    int n = config_setting_length(list);
    if (n > 0) {
        c->clients = calloc((size_t)n, sizeof(*c->clients));
        CFG_OOM(c->clients);
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return cfg_fail(x, g, "clients[%d] must be a group { id = ...; }", i);
        CFG_TRY(cfg_check_keys(x, g, "a client", keys));
        const char *id = NULL;
        const config_setting_t *at;
        CFG_TRY(cfg_str(x, g, "id", true, &at, &id));
        if (!cfg_id_ok(id))
            return cfg_fail(x, at, "client id '%s' must be 1-128 of [A-Za-z0-9._:-/@]", id);
        for (size_t j = 0; j < c->n_clients; j++)
            if (strcmp(c->clients[j].id, id) == 0)
                return cfg_fail(x, at, "client id '%s' is used twice", id);
        long long cap = c->limits.max_tokens_cap;
        CFG_TRY(cfg_int(x, g, "max_tokens_cap", false, 1, 1 << 20, &cap));
        long long per_day = -1, per_month = -1;
        CFG_TRY(cfg_int(x, g, "tokens_per_day", false, -1, CFG_MAX_BUDGET, &per_day));
        CFG_TRY(cfg_int(x, g, "tokens_per_month", false, -1, CFG_MAX_BUDGET, &per_month));
        cfg_client *cl = &c->clients[c->n_clients++];
        cl->id = strdup(id);
        CFG_OOM(cl->id);
        cl->max_tokens_cap = (int)cap;
        cl->tokens_per_day = per_day;
        cl->tokens_per_month = per_month;
    }
out:
    return rc;
}

/* A group member of root, or NULL when absent; an error when not a group. */
static int cfg_group(cfg_ctx *x, const config_setting_t *root, const char *name,
                     const char *const *keys, const config_setting_t **out)
{
    const config_setting_t *g = config_setting_get_member(root, name);
    *out = NULL;
    if (!g)
        return CORE_OK;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return cfg_fail(x, g, "'%s' must be a group { ... }, not %s", name,
                        cfg_type_name(config_setting_type(g)));
    *out = g;
    return cfg_check_keys(x, g, name, keys);
}

/* A path setting of group (absent: name beside the socket). */
static int cfg_side_path(cfg_ctx *x, const config_setting_t *g, const char *key,
                         const char *sock, const char *name, char **out)
{
    int rc = CORE_OK;
    const char *s = NULL;
    const config_setting_t *at = NULL;
    if (g)
        CFG_TRY(cfg_str(x, g, key, false, &at, &s));
    if (s && !*s)
        return cfg_fail(x, at, "'%s' is empty", key);
    if (s) {
        *out = cfg_path(x, s);
    } else {
        const char *slash = strrchr(sock, '/');
        size_t dn = slash ? (size_t)(slash - sock) : 0;
        size_t n = dn + strlen(name) + 2;
        *out = malloc(n);
        if (*out)
            snprintf(*out, n, "%.*s/%s", (int)dn, sock, name);
    }
    CFG_OOM(*out);
out:
    return rc;
}

static int cfg_npu_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"lock_file",   "classes",     "chat_class",
                                       "short_class", "max_waiters", "max_wait_ms",
                                       "slice_tokens", "slice_ms",   "reap_ms",
                                       NULL};
    int rc = CORE_OK;
    const config_setting_t *g;
    CFG_TRY(cfg_group(x, root, "npu", keys, &g));
    CFG_TRY(cfg_side_path(x, g, "lock_file", c->socket, "npu.lock", &c->npu.lock_file));
    if (!g)
        goto out;
    long long v;
#define CFG_NPU_INT(field, lo, hi)                                                         \
    v = c->npu.field;                                                                      \
    CFG_TRY(cfg_int(x, g, #field, false, lo, hi, &v));                                     \
    c->npu.field = (int)v
    CFG_NPU_INT(classes, 1, NPU_MAX_CLASSES);
    CFG_NPU_INT(max_waiters, 1, NPU_SLOTS - 1);
    CFG_NPU_INT(max_wait_ms, 1, 600000);
    CFG_NPU_INT(slice_tokens, 1, 4096);
    CFG_NPU_INT(slice_ms, 1, 60000);
    CFG_NPU_INT(reap_ms, 1, 1000);
    /* Classes default to the last (chat) and the first (short jobs). */
    c->npu.chat_class = c->npu.classes - 1;
    c->npu.short_class = 0;
    CFG_NPU_INT(chat_class, 0, c->npu.classes - 1);
    CFG_NPU_INT(short_class, 0, c->npu.classes - 1);
#undef CFG_NPU_INT
out:
    return rc;
}

static int cfg_cache_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"enabled", "path",   "map_size_mb",    "max_kb",
                                       "ttl_s",   "shared", "reader_check_s", NULL};
    int rc = CORE_OK;
    const config_setting_t *g;
    CFG_TRY(cfg_group(x, root, "cache", keys, &g));
    CFG_TRY(cfg_side_path(x, g, "path", c->socket, "cache.mdb", &c->cache.path));
    if (!g)
        goto out;
    CFG_TRY(cfg_bool(x, g, "enabled", &c->cache.enabled));
    CFG_TRY(cfg_bool(x, g, "shared", &c->cache.shared));
    CFG_TRY(cfg_int(x, g, "map_size_mb", false, 1, 65536, &c->cache.map_size_mb));
    CFG_TRY(cfg_int(x, g, "max_kb", false, 0, 64LL << 20, &c->cache.max_kb));
    if (c->cache.max_kb > c->cache.map_size_mb * 1024)
        CFG_TRY(cfg_fail(x, config_setting_get_member(g, "max_kb"),
                         "max_kb (%lld) exceeds map_size_mb (%lld MiB)", c->cache.max_kb,
                         c->cache.map_size_mb));
    CFG_TRY(cfg_int(x, g, "ttl_s", false, 0, 1LL << 40, &c->cache.ttl_s));
    long long v = c->cache.reader_check_s;
    CFG_TRY(cfg_int(x, g, "reader_check_s", false, 1, 86400, &v));
    c->cache.reader_check_s = (int)v;
out:
    return rc;
}

static int cfg_budgets_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"enabled",          "path",           "map_size_mb",
                                       "sync",             "tokens_per_day", "tokens_per_month",
                                       "charge_cache_hits", NULL};
    int rc = CORE_OK;
    const config_setting_t *g;
    CFG_TRY(cfg_group(x, root, "budgets", keys, &g));
    CFG_TRY(cfg_side_path(x, g, "path", c->socket, "budgets.mdb", &c->budgets.path));
    if (!g)
        goto out;
    CFG_TRY(cfg_bool(x, g, "enabled", &c->budgets.enabled));
    CFG_TRY(cfg_bool(x, g, "sync", &c->budgets.sync));
    CFG_TRY(cfg_bool(x, g, "charge_cache_hits", &c->budgets.charge_cache_hits));
    CFG_TRY(cfg_int(x, g, "map_size_mb", false, 1, 65536, &c->budgets.map_size_mb));
    CFG_TRY(cfg_int(x, g, "tokens_per_day", false, 0, CFG_MAX_BUDGET, &c->budgets.tokens_per_day));
    CFG_TRY(cfg_int(x, g, "tokens_per_month", false, 0, CFG_MAX_BUDGET,
                    &c->budgets.tokens_per_month));
out:
    return rc;
}

static int cfg_qa_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"model",      "top_k",      "min_score",
                                       "max_question_bytes", "max_tokens", NULL};
    int rc = CORE_OK;
    const config_setting_t *g, *at;
    CFG_TRY(cfg_group(x, root, "qa", keys, &g));
    if (!g)
        goto out;
    const char *model = "";
    CFG_TRY(cfg_str(x, g, "model", false, &at, &model));
    if (*model) {
        if (!cfg_find_model(c, model))
            CFG_TRY(cfg_fail(x, at, "qa.model '%s' is not one of the models", model));
        c->qa.model = strdup(model);
        CFG_OOM(c->qa.model);
    }
    long long v = c->qa.top_k;
    CFG_TRY(cfg_int(x, g, "top_k", false, 1, 20, &v));
    c->qa.top_k = (int)v;
    v = c->qa.max_question_bytes;
    CFG_TRY(cfg_int(x, g, "max_question_bytes", false, 1, 16384, &v));
    c->qa.max_question_bytes = (int)v;
    v = c->qa.max_tokens;
    CFG_TRY(cfg_int(x, g, "max_tokens", false, 1, 1 << 20, &v));
    c->qa.max_tokens = (int)v;
    const config_setting_t *s = config_setting_get_member(g, "min_score");
    if (s) {
        int t = config_setting_type(s);
        if (t == CONFIG_TYPE_FLOAT)
            c->qa.min_score = config_setting_get_float(s);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            c->qa.min_score = (double)config_setting_get_int64(s);
        else
            CFG_TRY(cfg_fail(x, s, "'min_score' must be a number, not %s", cfg_type_name(t)));
        if (!(c->qa.min_score >= 0 && c->qa.min_score <= 1e6))
            CFG_TRY(cfg_fail(x, s, "'min_score' = %g is out of range [0, 1e6]", c->qa.min_score));
    }
out:
    return rc;
}

static int cfg_kb_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"enabled",       "path",          "map_size_mb",
                                       "chunk_bytes",   "overlap_bytes", "max_document_bytes",
                                       "embedding_model", NULL};
    int rc = CORE_OK;
    const config_setting_t *g, *at = NULL;
    CFG_TRY(cfg_group(x, root, "kb", keys, &g));
    CFG_TRY(cfg_side_path(x, g, "path", c->socket, "kb.mdb", &c->kb.path));
    if (!g)
        goto out;
    CFG_TRY(cfg_bool(x, g, "enabled", &c->kb.enabled));
    CFG_TRY(cfg_int(x, g, "map_size_mb", false, 1, 1 << 20, &c->kb.map_size_mb));
    CFG_TRY(cfg_int(x, g, "chunk_bytes", false, 64, 1 << 20, &c->kb.chunk_bytes));
    CFG_TRY(cfg_int(x, g, "overlap_bytes", false, 0, 1 << 19, &c->kb.overlap_bytes));
    if (c->kb.overlap_bytes >= c->kb.chunk_bytes / 2)
        CFG_TRY(cfg_fail(x, config_setting_get_member(g, "overlap_bytes")
                                ? config_setting_get_member(g, "overlap_bytes")
                                : g,
                         "overlap_bytes (%lld) must be less than half of chunk_bytes (%lld)",
                         c->kb.overlap_bytes, c->kb.chunk_bytes));
    CFG_TRY(cfg_int(x, g, "max_document_bytes", false, 1, 1LL << 30,
                    &c->kb.max_document_bytes));
    if (c->kb.max_document_bytes > c->kb.map_size_mb << 20)
        CFG_TRY(cfg_fail(x, config_setting_get_member(g, "max_document_bytes")
                                ? config_setting_get_member(g, "max_document_bytes")
                                : g,
                         "max_document_bytes (%lld) exceeds map_size_mb (%lld MiB)",
                         c->kb.max_document_bytes, c->kb.map_size_mb));
    const char *em = "";
    CFG_TRY(cfg_str(x, g, "embedding_model", false, &at, &em));
    if (*em && !cfg_find_model(c, em))
        CFG_TRY(cfg_fail(x, at, "kb.embedding_model '%s' is not one of the models", em));
    if (*em) {
        c->kb.embedding_model = strdup(em);
        CFG_OOM(c->kb.embedding_model);
    }
out:
    return rc;
}

/* A readable file of a vision model (absent and optional: *out stays NULL). */
static int cfg_file(cfg_ctx *x, const config_setting_t *g, const char *key, bool required,
                    const char *id, char **out)
{
    int rc = CORE_OK;
    const char *s = NULL;
    const config_setting_t *at;
    CFG_TRY(cfg_str(x, g, key, required, &at, &s));
    if (!s)
        goto out;
    if (!*s)
        return cfg_fail(x, at, "vision model '%s': '%s' is empty", id, key);
    *out = cfg_path(x, s);
    CFG_OOM(*out);
    if (access(*out, R_OK) != 0)
        return cfg_fail(x, at, "vision model '%s': cannot read %s: %s", id, *out,
                        strerror(errno));
out:
    return rc;
}

static int cfg_vision_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"id", "cfg", "weights", "names", "threads", NULL};
    int rc = CORE_OK;
    const config_setting_t *list = config_setting_get_member(root, "vision");
    if (!list)
        return CORE_OK;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return cfg_fail(x, list, "'vision' must be a list ( {...}, ... ), not %s",
                        cfg_type_name(config_setting_type(list)));
    int n = config_setting_length(list);
    if (n > CFG_MAX_VISION)
        return cfg_fail(x, list, "'vision' has %d entries, at most %d are allowed", n,
                        CFG_MAX_VISION);
    if (n > 0) {
        c->vision = calloc((size_t)n, sizeof(*c->vision));
        CFG_OOM(c->vision);
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return cfg_fail(x, g, "vision[%d] must be a group { id = ...; cfg = ...; }", i);
        CFG_TRY(cfg_check_keys(x, g, "a vision model", keys));
        cfg_vision *v = &c->vision[c->n_vision++];
        const char *id = NULL;
        const config_setting_t *at;
        CFG_TRY(cfg_str(x, g, "id", true, &at, &id));
        if (!cfg_id_ok(id))
            return cfg_fail(x, at, "vision model id '%s' must be 1-128 of [A-Za-z0-9._:-/@]",
                            id);
        /* /v1/models lists both kinds: one namespace. */
        if (cfg_find_model(c, id))
            return cfg_fail(x, at, "vision model id '%s' is also a chat model's id", id);
        for (int j = 0; j < i; j++)
            if (strcmp(c->vision[j].id, id) == 0)
                return cfg_fail(x, at, "vision model id '%s' is used twice", id);
        v->id = strdup(id);
        CFG_OOM(v->id);
        CFG_TRY(cfg_file(x, g, "cfg", true, id, &v->cfg));
        CFG_TRY(cfg_file(x, g, "weights", true, id, &v->weights));
        CFG_TRY(cfg_file(x, g, "names", false, id, &v->names));
        long long threads = 0;
        CFG_TRY(cfg_int(x, g, "threads", false, 0, 256, &threads));
        v->threads = (int)threads;
    }
out:
    return rc;
}

static int cfg_images_load(cfg_ctx *x, const config_setting_t *root, cfg *c)
{
    static const char *const keys[] = {"max_bytes", "max_width", "max_height", "max_pixels",
                                       NULL};
    int rc = CORE_OK;
    const config_setting_t *g;
    CFG_TRY(cfg_group(x, root, "images", keys, &g));
    if (!g)
        goto out;
    long long v;
    CFG_TRY(cfg_int(x, g, "max_bytes", false, 1024, 256LL << 20, &c->images.max_bytes));
    v = c->images.max_width;
    CFG_TRY(cfg_int(x, g, "max_width", false, 1, 65535, &v));
    c->images.max_width = (int)v;
    v = c->images.max_height;
    CFG_TRY(cfg_int(x, g, "max_height", false, 1, 65535, &v));
    c->images.max_height = (int)v;
    CFG_TRY(cfg_int(x, g, "max_pixels", false, 1, 1LL << 32, &c->images.max_pixels));
out:
    return rc;
}

static int cfg_from(config_t *lc, cfg_ctx *x, const char *file, cfg **out)
{
    static const char *const keys[] = {"socket",   "socket_group", "socket_mode",
                                       "pid_file", "log_file",     "log_level",
                                       "workers",  "shutdown_timeout_ms", "models",
                                       "limits",   "clients",      "npu",
                                       "cache",    "budgets",      "qa",       "kb",
                                       "vision",   "images",
                                       NULL};
    int rc = CORE_OK;
    const config_setting_t *root = config_root_setting(lc);
    cfg *c = calloc(1, sizeof(*c));
    CFG_OOM(c);
    c->file = strdup(file);
    CFG_OOM(c->file);
    c->socket_mode = 0660;
    c->workers = 2;
    c->shutdown_timeout_ms = 10000;
    c->log_level = ELOG_INFO;
    c->limits = (cfg_limits){.max_body_bytes = 1 << 20,
                             .default_max_tokens = 16,
                             .max_tokens_cap = 512,
                             .deadline_ms = 3000,
                             .max_messages = 256};
    c->npu = (cfg_npu){.classes = 2, .chat_class = 1, .short_class = 0, .max_waiters = 16,
                       .max_wait_ms = 2000, .slice_tokens = 8, .slice_ms = 50, .reap_ms = 10};
    c->cache = (cfg_cache){.enabled = true, .map_size_mb = 256, .ttl_s = 3600,
                           .reader_check_s = 10};
    c->budgets = (cfg_budgets){.enabled = true, .map_size_mb = 16, .tokens_per_day = 1000000,
                               .tokens_per_month = 20000000};
    c->kb = (cfg_kb){.enabled = true, .map_size_mb = 256, .chunk_bytes = 1000,
                      .overlap_bytes = 150, .max_document_bytes = 8 << 20};
    c->images = (cfg_images){.max_bytes = 16 << 20, .max_width = 8192, .max_height = 8192,
                             .max_pixels = 40000000};
    c->qa = (cfg_qa){.top_k = 4, .min_score = 1.0, .max_question_bytes = 2000, .max_tokens = 256};
    CFG_TRY(cfg_check_keys(x, root, NULL, keys));

    const char *s = NULL;
    const config_setting_t *at;
    CFG_TRY(cfg_str(x, root, "socket", true, &at, &s));
    if (!*s)
        CFG_TRY(cfg_fail(x, at, "'socket' is empty"));
    c->socket = cfg_path(x, s);
    CFG_OOM(c->socket);
    /* sizeof(sun_path), with room for the status socket's suffix */
    if (strlen(c->socket) + strlen(CFG_STATUS_SUFFIX) >= 108)
        CFG_TRY(cfg_fail(x, at, "socket path %s is longer than %zu bytes", c->socket,
                         107 - strlen(CFG_STATUS_SUFFIX)));
    c->status_socket = malloc(strlen(c->socket) + strlen(CFG_STATUS_SUFFIX) + 1);
    CFG_OOM(c->status_socket);
    strcat(strcpy(c->status_socket, c->socket), CFG_STATUS_SUFFIX);

    s = "";
    CFG_TRY(cfg_str(x, root, "socket_group", false, &at, &s));
    if (*s) {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
            CFG_TRY(cfg_fail(x, at, "socket_group '%s': no such group", s));
        c->socket_group = strdup(s);
        CFG_OOM(c->socket_group);
        c->socket_gid = res->gr_gid;
    }

    s = NULL;
    CFG_TRY(cfg_str(x, root, "socket_mode", false, &at, &s));
    if (s) {
        char *end;
        unsigned long m = strtoul(s, &end, 8);
        if (!*s || *end || m > 0777 || strspn(s, "01234567") != strlen(s))
            CFG_TRY(cfg_fail(x, at, "socket_mode '%s' must be octal digits such as \"0660\"", s));
        if ((m & 0600) != 0600)
            CFG_TRY(cfg_fail(x, at, "socket_mode '%s' must give the owner read and write", s));
        c->socket_mode = (unsigned)m;
    }

    s = NULL;
    CFG_TRY(cfg_str(x, root, "pid_file", false, &at, &s));
    if (s && *s) {
        c->pid_file = cfg_path(x, s);
        CFG_OOM(c->pid_file);
    }
    s = NULL;
    CFG_TRY(cfg_str(x, root, "log_file", false, &at, &s));
    if (s && *s && strcmp(s, "-") != 0) {
        c->log_file = cfg_path(x, s);
        CFG_OOM(c->log_file);
    }
    s = NULL;
    CFG_TRY(cfg_str(x, root, "log_level", false, &at, &s));
    if (s && elog_level_parse(s, &c->log_level) != 0)
        CFG_TRY(cfg_fail(x, at, "log_level '%s' must be error, warn, info or debug", s));

    long long v = c->workers;
    CFG_TRY(cfg_int(x, root, "workers", false, 1, CFG_MAX_WORKERS, &v));
    c->workers = (int)v;
    v = c->shutdown_timeout_ms;
    CFG_TRY(cfg_int(x, root, "shutdown_timeout_ms", false, 0, 3600000, &v));
    c->shutdown_timeout_ms = (int)v;

    CFG_TRY(cfg_limits_load(x, root, c));
    CFG_TRY(cfg_models(x, root, c));
    CFG_TRY(cfg_clients(x, root, c));
    CFG_TRY(cfg_npu_load(x, root, c));
    CFG_TRY(cfg_cache_load(x, root, c));
    CFG_TRY(cfg_budgets_load(x, root, c));
    CFG_TRY(cfg_kb_load(x, root, c));
    CFG_TRY(cfg_qa_load(x, root, c));
    CFG_TRY(cfg_vision_load(x, root, c));
    CFG_TRY(cfg_images_load(x, root, c));
    *out = c;
    c = NULL;
out:
    cfg_free(c);
    return rc;
}

static char *cfg_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static int cfg_parse_error(config_t *lc, cfg_ctx *x)
{
    const char *f = config_error_file(lc);
    return core_errf(CORE_EFORMAT, x->msg, x->msg_size, "%s:%d: %s", f ? f : x->name,
                     config_error_line(lc), config_error_text(lc));
}

int cfg_load(const char *path, cfg **out, char *msg, size_t msg_size)
{
    *out = NULL;
    char *dir = cfg_dirname(path);
    if (!dir)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    cfg_ctx x = {.name = path, .base_dir = dir, .msg = msg, .msg_size = msg_size};
    config_t lc;
    config_init(&lc);
    config_set_include_dir(&lc, dir);
    int rc;
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = core_errf(CORE_EIO, msg, msg_size, "%s:0: cannot open: %s", path, strerror(errno));
    } else {
        /* config_read() (unlike config_read_file()) would not record the
         * file name for messages, so read by name after checking access. */
        fclose(f);
        if (config_read_file(&lc, path) != CONFIG_TRUE)
            rc = cfg_parse_error(&lc, &x);
        else
            rc = cfg_from(&lc, &x, path, out);
    }
    config_destroy(&lc);
    free(dir);
    return rc;
}

int cfg_parse_string(const char *text, const char *name, const char *base_dir, cfg **out,
                     char *msg, size_t msg_size)
{
    *out = NULL;
    cfg_ctx x = {.name = name, .base_dir = base_dir, .msg = msg, .msg_size = msg_size};
    config_t lc;
    config_init(&lc);
    int rc;
    if (config_read_string(&lc, text) != CONFIG_TRUE)
        rc = cfg_parse_error(&lc, &x);
    else
        rc = cfg_from(&lc, &x, name, out);
    config_destroy(&lc);
    return rc;
}

void cfg_free(cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_models; i++) {
        free(c->models[i].id);
        free(c->models[i].path);
        free(c->models[i].chat_template);
    }
    free(c->models);
    for (size_t i = 0; i < c->n_clients; i++)
        free(c->clients[i].id);
    free(c->clients);
    free(c->npu.lock_file);
    free(c->cache.path);
    free(c->budgets.path);
    free(c->kb.path);
    free(c->kb.embedding_model);
    free(c->qa.model);
    for (size_t i = 0; i < c->n_vision; i++) {
        free(c->vision[i].id);
        free(c->vision[i].cfg);
        free(c->vision[i].weights);
        free(c->vision[i].names);
    }
    free(c->vision);
    free(c->file);
    free(c->socket);
    free(c->status_socket);
    free(c->socket_group);
    free(c->pid_file);
    free(c->log_file);
    free(c);
}

const cfg_model *cfg_find_model(const cfg *c, const char *id)
{
    for (size_t i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].id, id) == 0)
            return &c->models[i];
    return NULL;
}

int cfg_client_cap(const cfg *c, const char *client)
{
    if (client)
        for (size_t i = 0; i < c->n_clients; i++)
            if (strcmp(c->clients[i].id, client) == 0)
                return c->clients[i].max_tokens_cap;
    return c->limits.max_tokens_cap;
}
