/* admin.c: shared admin views of the budgets and the cache; see admin.h. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "json.h"

int admin_open_budget(const cfg *c, budget **out, char *msg, size_t msg_size)
{
    *out = NULL;
    budget_override *ov = c->n_clients ? calloc(c->n_clients, sizeof(*ov)) : NULL;
    if (c->n_clients && !ov)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    for (size_t i = 0; i < c->n_clients; i++)
        ov[i] = (budget_override){.client = c->clients[i].id,
                                  .per_day = c->clients[i].tokens_per_day,
                                  .per_month = c->clients[i].tokens_per_month};
    budget_params bp = budget_default_params();
    bp.path = c->budgets.path;
    bp.map_size = (size_t)c->budgets.map_size_mb << 20;
    bp.sync = c->budgets.sync;
    bp.per_day = c->budgets.tokens_per_day;
    bp.per_month = c->budgets.tokens_per_month;
    bp.overrides = ov;
    bp.n_overrides = c->n_clients;
    int rc = budget_open(&bp, out, msg, msg_size);
    free(ov); /* budget_open copied it */
    return rc;
}

int admin_open_cache(const cfg *c, cache **out, char *msg, size_t msg_size)
{
    cache_params cp = cache_default_params();
    cp.path = c->cache.path;
    cp.map_size = (size_t)c->cache.map_size_mb << 20;
    cp.max_bytes = (size_t)c->cache.max_kb << 10;
    cp.default_ttl_s = c->cache.ttl_s;
    cp.reader_check_s = c->cache.reader_check_s;
    return cache_open(&cp, out, msg, msg_size);
}

int admin_cache_stats_json(cache *ch, sbuf *out)
{
    cache_stats cs;
    int rc = cache_get_stats(ch, &cs);
    if (rc != CORE_OK)
        return rc;
    sbuf_printf(out,
                "{\"entries\":%llu,\"bytes\":%llu,\"max_bytes\":%llu,\"map_size\":%llu,"
                "\"hits\":%llu,\"misses\":%llu,\"evictions\":%llu,\"expired\":%llu,"
                "\"puts\":%llu,\"map_full\":%llu}",
                (unsigned long long)cs.entries, (unsigned long long)cs.bytes,
                (unsigned long long)cs.max_bytes, (unsigned long long)cs.map_size,
                (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                (unsigned long long)cs.evictions, (unsigned long long)cs.expired,
                (unsigned long long)cs.puts, (unsigned long long)cs.map_full);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int admin_cache_purge_json(cache *ch, const char *body, size_t len, sbuf *out,
                           const char **param, char *msg, size_t msg_size)
{
    cache_purge sel;
    *param = NULL;
    int rc = cache_purge_parse(body, len, &sel, param, msg, msg_size);
    if (rc != CORE_OK)
        return rc;
    size_t removed = 0;
    rc = cache_purge_run(ch, &sel, &removed);
    if (rc != CORE_OK)
        return core_errf(rc, msg, msg_size, "purge failed: %s", cache_errmsg(ch));
    sbuf_printf(out, "{\"purged\":%zu}", removed);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

static void admin_quota(sbuf *b, const char *client, const budget_quota *q)
{
    sbuf_puts(b, "{\"client\":");
    json_put_str(b, client, strlen(client));
    sbuf_printf(b,
                ",\"limit\":%lld,\"remaining\":%lld,\"reset_s\":%lld,"
                "\"day\":{\"limit\":%lld,\"used\":%lld,\"reset_s\":%lld},"
                "\"month\":{\"limit\":%lld,\"used\":%lld,\"reset_s\":%lld}}",
                q->limit, q->remaining, q->reset_s, q->day_limit, q->day_used, q->day_reset_s,
                q->month_limit, q->month_used, q->month_reset_s);
}

int admin_budgets_json(budget *b, sbuf *out)
{
    budget_usage *list = NULL;
    size_t n = 0;
    int rc = budget_list(b, &list, &n);
    if (rc != CORE_OK)
        return rc;
    sbuf_puts(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sbuf_putc(out, ',');
        admin_quota(out, list[i].client, &list[i].q);
    }
    sbuf_puts(out, "]}");
    free(list);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int admin_budget_json(budget *b, const char *client, sbuf *out)
{
    budget_quota q;
    int rc = budget_query(b, client, &q);
    if (rc != CORE_OK)
        return rc;
    admin_quota(out, client, &q);
    return out->oom ? CORE_ENOMEM : CORE_OK;
}

int admin_budget_reset_json(budget *b, const char *client, sbuf *out)
{
    bool found = false;
    int rc = budget_reset(b, client, &found);
    if (rc != CORE_OK)
        return rc;
    sbuf_puts(out, "{\"client\":");
    json_put_str(out, client, strlen(client));
    sbuf_printf(out, ",\"reset\":%s}", found ? "true" : "false");
    return out->oom ? CORE_ENOMEM : CORE_OK;
}
