/* admin.h: what the admin API and the operator command line share: opening
 * the budget store and the response cache from the config, and the JSON
 * bodies of their admin views.
 *
 * Used by the workers (GET /admin/cache/stats, POST /admin/cache/purge,
 * GET /admin/budgets[/CLIENT], POST /admin/budgets/CLIENT/reset) and by
 * `edgegate-fcgi -c CONF --cache-stats | --cache-purge JSON | --budgets |
 * --budget CLIENT | --budget-reset CLIENT`, which work with or without a
 * running pool (LMDB is multi-process).
 *
 * Ownership: the open functions return handles the caller closes with
 * cache_close() / budget_close(); the JSON functions append to out and
 * borrow everything else for the call.
 */
#ifndef ADMIN_H
#define ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "budget.h"
#include "cache.h"
#include "cfg.h"
#include "sbuf.h"

/* From c->budgets and the clients' overrides; ignores c->budgets.enabled. */
int admin_open_budget(const cfg *c, budget **out, char *msg, size_t msg_size);
/* From c->cache; ignores c->cache.enabled. */
int admin_open_cache(const cfg *c, cache **out, char *msg, size_t msg_size);

/* {"entries","bytes","max_bytes","map_size","hits","misses","evictions",
 *  "expired","puts","map_full"} */
int admin_cache_stats_json(cache *ch, sbuf *out);
/* Parses the selector (cache_purge_parse: CORE_EFORMAT with msg and *param
 * for a bad one), purges, and appends {"purged":N}. */
int admin_cache_purge_json(cache *ch, const char *body, size_t len, sbuf *out,
                           const char **param, char *msg, size_t msg_size);
/* {"object":"list","data":[{"client",...quota...}, ...]} */
int admin_budgets_json(budget *b, sbuf *out);
/* {"client","limit","remaining","reset_s","day":{"limit","used","reset_s"},"month":{...}}
 * (limit -1 / 0: no limit). CORE_EINVAL for a bad client id. */
int admin_budget_json(budget *b, const char *client, sbuf *out);
/* {"client":...,"reset":true|false}; CORE_EINVAL for a bad client id. */
int admin_budget_reset_json(budget *b, const char *client, sbuf *out);

#endif
