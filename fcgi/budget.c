/* budget.c: token budgets in LMDB; see budget.h.
 *
 * Record format (DB "budget_usage", key = client id bytes, no NUL):
 *   u32 version (1), u32 zero,
 *   i64 day        UTC days since 1970-01-01 of the day window
 *   i64 day_used   tokens charged in it (reservations included)
 *   i64 month      year*12 + month-1 of the month window
 *   i64 month_used
 * 40 bytes, host byte order (the file never leaves the machine). A record
 * of another size or version is treated as empty and rewritten.
 */
#define _GNU_SOURCE /* timegm */
#include "budget.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_err.h"

#define BUDGET_VERSION 1u

typedef struct {
    uint32_t version, zero;
    int64_t day, day_used, month, month_used;
} budget_rec;

typedef struct {
    char *client;
    long long per_day, per_month;
} budget_tier;

struct budget {
    MDB_env *env;
    MDB_dbi dbi;
    budget_params p;
    budget_tier *tiers;
    size_t n_tiers;
    char err[160];
};

budget_params budget_default_params(void)
{
    return (budget_params){.path = NULL,
                           .map_size = 16u << 20,
                           .sync = false,
                           .per_day = 0,
                           .per_month = 0};
}

const char *budget_errmsg(const budget *b)
{
    return b ? b->err : "";
}

static int budget_mdb(budget *b, int rc, const char *what)
{
    snprintf(b->err, sizeof(b->err), "budget: %s: %s", what, mdb_strerror(rc));
    return CORE_EIO;
}

static long long budget_now(const budget *b)
{
    return b->p.now ? b->p.now(b->p.now_user) : (long long)time(NULL);
}

/* Window indices and the seconds until each ends. */
typedef struct {
    int64_t day, month;
    long long day_reset_s, month_reset_s;
} budget_win;

static budget_win budget_windows(long long t)
{
    budget_win w;
    long long d = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    w.day = d;
    w.day_reset_s = (d + 1) * 86400 - t;
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    w.month = (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
    struct tm next = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon + 1, .tm_mday = 1};
    if (next.tm_mon == 12) {
        next.tm_mon = 0;
        next.tm_year++;
    }
    w.month_reset_s = (long long)timegm(&next) - t;
    return w;
}

static void budget_limits(const budget *b, const char *client, long long *day, long long *month)
{
    *day = b->p.per_day;
    *month = b->p.per_month;
    for (size_t i = 0; i < b->n_tiers; i++) {
        if (strcmp(b->tiers[i].client, client) == 0) {
            if (b->tiers[i].per_day >= 0)
                *day = b->tiers[i].per_day;
            if (b->tiers[i].per_month >= 0)
                *month = b->tiers[i].per_month;
            return;
        }
    }
}

/* Reads the record (absent or foreign: zeros) rolled to the windows of w. */
static int budget_get(budget *b, MDB_txn *txn, const char *client, const budget_win *w,
                      budget_rec *r)
{
    MDB_val k = {strlen(client), (void *)client}, v;
    memset(r, 0, sizeof(*r));
    int rc = mdb_get(txn, b->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    } else if (rc != 0) {
        return budget_mdb(b, rc, "get");
    } else if (v.mv_size == sizeof(*r)) {
        memcpy(r, v.mv_data, sizeof(*r));
        if (r->version != BUDGET_VERSION)
            memset(r, 0, sizeof(*r));
    }
    if (r->day != w->day) {
        r->day = w->day;
        r->day_used = 0;
    }
    if (r->month != w->month) {
        r->month = w->month;
        r->month_used = 0;
    }
    r->version = BUDGET_VERSION;
    return CORE_OK;
}

static int budget_put(budget *b, MDB_txn *txn, const char *client, const budget_rec *r)
{
    MDB_val k = {strlen(client), (void *)client}, v = {sizeof(*r), (void *)r};
    int rc = mdb_put(txn, b->dbi, &k, &v, 0);
    return rc ? budget_mdb(b, rc, "put") : CORE_OK;
}

static long long budget_left(long long limit, long long used)
{
    if (limit <= 0)
        return -1; /* no limit */
    return used >= limit ? 0 : limit - used;
}

static void budget_fill(const budget *b, const char *client, const budget_rec *r,
                        const budget_win *w, budget_quota *q)
{
    long long dl, ml;
    budget_limits(b, client, &dl, &ml);
    q->day_limit = dl;
    q->month_limit = ml;
    q->day_used = r->day_used;
    q->month_used = r->month_used;
    q->day_reset_s = w->day_reset_s;
    q->month_reset_s = w->month_reset_s;
    long long ld = budget_left(dl, r->day_used), lm = budget_left(ml, r->month_used);
    if (ld < 0 && lm < 0) {
        q->limit = -1;
        q->remaining = 0;
        q->reset_s = 0;
    } else if (lm < 0 || (ld >= 0 && ld <= lm)) {
        q->limit = dl;
        q->remaining = ld;
        q->reset_s = w->day_reset_s;
    } else {
        q->limit = ml;
        q->remaining = lm;
        q->reset_s = w->month_reset_s;
    }
}

static bool budget_client_ok(const char *client)
{
    size_t n = client ? strlen(client) : 0;
    return n > 0 && n <= BUDGET_MAX_CLIENT;
}

static int budget_commit(budget *b, MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    return rc ? budget_mdb(b, rc, "commit") : CORE_OK;
}

int budget_reserve(budget *b, const char *client, long long want, long long min,
                   budget_res *res, bool *granted, budget_quota *q)
{
    if (!b || !res || !granted || !budget_client_ok(client) || min < 0 || want < min ||
        want > BUDGET_MAX_TOKENS)
        return CORE_EINVAL;
    *granted = false;
    memset(res, 0, sizeof(*res));
    budget_win w = budget_windows(budget_now(b));
    MDB_txn *txn;
    int rc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (rc)
        return budget_mdb(b, rc, "begin");
    budget_rec r;
    rc = budget_get(b, txn, client, &w, &r);
    if (rc)
        goto fail;
    long long dl, ml;
    budget_limits(b, client, &dl, &ml);
    long long ld = budget_left(dl, r.day_used), lm = budget_left(ml, r.month_used);
    long long avail = ld < 0 ? lm : lm < 0 ? ld : (ld < lm ? ld : lm);
    long long give = avail < 0 || avail >= want ? want : avail;
    if (give >= min) {
        r.day_used += give;
        r.month_used += give;
        rc = budget_put(b, txn, client, &r);
        if (rc)
            goto fail;
        rc = budget_commit(b, txn);
        if (rc)
            return rc;
        snprintf(res->client, sizeof(res->client), "%s", client);
        res->granted = give;
        res->day = w.day;
        res->month = w.month;
        *granted = true;
    } else {
        mdb_txn_abort(txn);
    }
    if (q)
        budget_fill(b, client, &r, &w, q);
    return CORE_OK;
fail:
    mdb_txn_abort(txn);
    return rc;
}

int budget_settle(budget *b, budget_res *res, long long actual, budget_quota *q)
{
    if (!b || !res || actual < 0 || actual > BUDGET_MAX_TOKENS)
        return CORE_EINVAL;
    if (!res->client[0]) /* never granted, or settled already: q untouched */
        return CORE_OK;
    budget_win w = budget_windows(budget_now(b));
    MDB_txn *txn;
    int rc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (rc)
        return budget_mdb(b, rc, "begin");
    budget_rec r;
    rc = budget_get(b, txn, res->client, &w, &r);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    long long delta = actual - res->granted;
    /* A window that ended took the reservation with it. */
    if (r.day == res->day) {
        r.day_used += delta;
        if (r.day_used < 0)
            r.day_used = 0;
    }
    if (r.month == res->month) {
        r.month_used += delta;
        if (r.month_used < 0)
            r.month_used = 0;
    }
    rc = budget_put(b, txn, res->client, &r);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = budget_commit(b, txn);
    if (rc)
        return rc;
    if (q)
        budget_fill(b, res->client, &r, &w, q);
    res->client[0] = '\0';
    res->granted = 0;
    return CORE_OK;
}

int budget_query(budget *b, const char *client, budget_quota *q)
{
    if (!b || !q || !budget_client_ok(client))
        return CORE_EINVAL;
    budget_win w = budget_windows(budget_now(b));
    MDB_txn *txn;
    int rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return budget_mdb(b, rc, "begin");
    budget_rec r;
    rc = budget_get(b, txn, client, &w, &r);
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    budget_fill(b, client, &r, &w, q);
    return CORE_OK;
}

const char *budget_format_reset(long long s, char *buf, size_t size)
{
    if (s < 0)
        s = 0;
    long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
    if (d)
        snprintf(buf, size, "%lldd%lldh%lldm%llds", d, h, m, sec);
    else if (h)
        snprintf(buf, size, "%lldh%lldm%llds", h, m, sec);
    else if (m)
        snprintf(buf, size, "%lldm%llds", m, sec);
    else
        snprintf(buf, size, "%llds", sec);
    return buf;
}

int budget_list(budget *b, budget_usage **out, size_t *n)
{
    if (!b || !out || !n)
        return CORE_EINVAL;
    *out = NULL;
    *n = 0;
    budget_win w = budget_windows(budget_now(b));
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    int rc = mdb_txn_begin(b->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return budget_mdb(b, rc, "begin");
    budget_usage *list = NULL;
    size_t cnt = 0, cap = 0;
    rc = mdb_cursor_open(txn, b->dbi, &cur);
    if (rc) {
        rc = budget_mdb(b, rc, "cursor");
        goto out;
    }
    MDB_val k, v;
    for (int op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        if (k.mv_size == 0 || k.mv_size > BUDGET_MAX_CLIENT)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            budget_usage *nl = realloc(list, cap * sizeof(*list));
            if (!nl) {
                rc = CORE_ENOMEM;
                goto out;
            }
            list = nl;
        }
        budget_usage *u = &list[cnt++];
        memcpy(u->client, k.mv_data, k.mv_size);
        u->client[k.mv_size] = '\0';
        budget_rec r;
        memset(&r, 0, sizeof(r));
        if (v.mv_size == sizeof(r))
            memcpy(&r, v.mv_data, sizeof(r));
        if (r.version != BUDGET_VERSION || r.day != w.day)
            r.day_used = 0;
        if (r.version != BUDGET_VERSION || r.month != w.month)
            r.month_used = 0;
        budget_fill(b, u->client, &r, &w, &u->q);
    }
    rc = rc == MDB_NOTFOUND ? CORE_OK : budget_mdb(b, rc, "cursor");
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (rc) {
        free(list);
        return rc;
    }
    *out = list;
    *n = cnt;
    return CORE_OK;
}

int budget_reset(budget *b, const char *client, bool *found)
{
    if (found)
        *found = false;
    if (!b || !budget_client_ok(client))
        return CORE_EINVAL;
    MDB_txn *txn;
    int rc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (rc)
        return budget_mdb(b, rc, "begin");
    MDB_val k = {strlen(client), (void *)client};
    rc = mdb_del(txn, b->dbi, &k, NULL);
    if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return CORE_OK;
    }
    if (rc) {
        mdb_txn_abort(txn);
        return budget_mdb(b, rc, "del");
    }
    rc = budget_commit(b, txn);
    if (rc == CORE_OK && found)
        *found = true;
    return rc;
}

int budget_open(const budget_params *p, budget **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || !p->path || !*p->path)
        return core_errf(CORE_EINVAL, msg, msg_size, "budgets: path is required");
    if (p->per_day < 0 || p->per_month < 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "budgets: limits must be >= 0 (0: none)");
    for (size_t i = 0; i < p->n_overrides; i++) {
        const budget_override *o = &p->overrides[i];
        if (!budget_client_ok(o->client) || o->per_day < -1 || o->per_month < -1)
            return core_errf(CORE_EINVAL, msg, msg_size, "budgets: override %zu is invalid", i);
    }
    budget *b = calloc(1, sizeof(*b));
    if (!b)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    int rc = CORE_OK;
    b->p = *p;
    b->p.overrides = NULL;
    b->p.n_overrides = 0;
    b->p.path = NULL;
    if (p->n_overrides) {
        b->tiers = calloc(p->n_overrides, sizeof(*b->tiers));
        if (!b->tiers) {
            rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < p->n_overrides; i++, b->n_tiers++) {
            b->tiers[i].client = strdup(p->overrides[i].client);
            if (!b->tiers[i].client) {
                rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
                goto out;
            }
            b->tiers[i].per_day = p->overrides[i].per_day;
            b->tiers[i].per_month = p->overrides[i].per_month;
        }
    }
    int mrc = mdb_env_create(&b->env);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(b->env, p->map_size ? p->map_size : (16u << 20));
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(b->env, 2);
    if (mrc == 0)
        mrc = mdb_env_open(b->env, p->path, MDB_NOSUBDIR | (p->sync ? 0 : MDB_NOSYNC), 0660);
    if (mrc) {
        rc = core_errf(CORE_EIO, msg, msg_size, "budgets: opening %s: %s", p->path,
                       mdb_strerror(mrc));
        goto out;
    }
    int dead = 0;
    mdb_reader_check(b->env, &dead);
    MDB_txn *txn;
    mrc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (mrc == 0) {
        mrc = mdb_dbi_open(txn, "budget_usage", MDB_CREATE, &b->dbi);
        if (mrc == 0)
            mrc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (mrc)
        rc = core_errf(CORE_EIO, msg, msg_size, "budgets: %s: %s", p->path, mdb_strerror(mrc));
out:
    if (rc) {
        budget_close(b);
        return rc;
    }
    *out = b;
    return CORE_OK;
}

void budget_close(budget *b)
{
    if (!b)
        return;
    if (b->env)
        mdb_env_close(b->env);
    for (size_t i = 0; i < b->n_tiers; i++)
        free(b->tiers[i].client);
    free(b->tiers);
    free(b);
}
