/* budget.h: per-client token budgets per UTC day and month, in LMDB.
 *
 * Before generating, a request reserves what it may spend (prompt tokens +
 * its max tokens) with budget_reserve(); afterwards budget_settle() charges
 * the real count and refunds the rest. A reservation is one LMDB write
 * transaction that checks and charges the day and the month window
 * together; LMDB runs one write transaction at a time across all processes
 * sharing the file, so concurrent requests of one client can never spend
 * more than its budget. Windows are UTC calendar days and months; a
 * window that has ended counts as empty, and a settle whose window has
 * ended refunds nothing into the new one.
 *
 * Limits: a default tier and per-client overrides (from the config); 0
 * means no limit for that window. Both windows unlimited: the quota has
 * limit -1 and the rate-limit headers are best left out.
 *
 * LMDB rules: open after fork() (an LMDB environment must not cross a
 * fork), one budget handle per process and file, used by one thread at a
 * time. Stale reader slots of crashed processes are cleared at open.
 *
 * Ownership: budget_open() copies everything in budget_params (the client
 * ids of the overrides included); budget_close() frees. budget_list()
 * returns an array the caller frees with free().
 */
#ifndef BUDGET_H
#define BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BUDGET_MAX_CLIENT 255 /* bytes in a client id */
#define BUDGET_MAX_TOKENS (1LL << 48) /* per call; keeps the sums far from overflow */

typedef struct {
    const char *client;
    long long per_day;   /* -1: the default tier's; 0: no limit */
    long long per_month; /* -1: the default tier's; 0: no limit */
} budget_override;

typedef struct {
    const char *path;      /* required: the LMDB file (MDB_NOSUBDIR); "-lock" beside it */
    size_t map_size;       /* 16 MiB */
    /* false (default): commits reach the page cache, so they survive any
     * process crash; an OS crash or power cut may lose the last seconds of
     * charges. true: fsync every commit (about 7 ms each on this machine's
     * disk; a request commits twice). */
    bool sync;
    long long per_day;     /* default tier; 0: no limit */
    long long per_month;
    const budget_override *overrides;
    size_t n_overrides;
    /* Clock (Unix seconds), for tests; NULL: time(). */
    long long (*now)(void *user);
    void *now_user;
} budget_params;

budget_params budget_default_params(void);

typedef struct budget budget;

int budget_open(const budget_params *p, budget **out, char *msg, size_t msg_size);
void budget_close(budget *b); /* NULL is a no-op */
/* Text of the last LMDB failure (for the log); "" when none. */
const char *budget_errmsg(const budget *b);

/* What the x-ratelimit-*-tokens headers say: the binding window (the one
 * with fewer tokens left; the day on a tie). limit -1: no limit at all. */
typedef struct {
    long long limit;
    long long remaining; /* >= 0 */
    long long reset_s;   /* seconds until that window starts over */
    long long day_limit, day_used, day_reset_s;
    long long month_limit, month_used, month_reset_s;
} budget_quota;

typedef struct {
    char client[BUDGET_MAX_CLIENT + 1];
    long long granted; /* tokens charged by the reservation; 0 after settle */
    long long day, month; /* the windows charged */
} budget_res;

/* Reserves up to want tokens, at least min: grants min(want, what is left)
 * when that is >= min, so the caller can shorten max_tokens to fit. Returns
 * CORE_OK with *granted telling whether it did (res->granted the amount);
 * CORE_EINVAL for a bad client id or amounts (min < 0, want < min, want
 * > BUDGET_MAX_TOKENS), CORE_EIO
 * when LMDB fails. q (may be NULL) gets the quota after the call. */
int budget_reserve(budget *b, const char *client, long long want, long long min,
                   budget_res *res, bool *granted, budget_quota *q);
/* Charges actual tokens instead of the reserved amount (either way). A
 * reservation settles once; again is a no-op that leaves q untouched.
 * q may be NULL. */
int budget_settle(budget *b, budget_res *res, long long actual, budget_quota *q);
/* Current quota of a client (no record: nothing used). */
int budget_query(budget *b, const char *client, budget_quota *q);

/* The OpenAI style duration of x-ratelimit-reset-tokens: "0s", "59s",
 * "6m0s", "1h2m3s", "3d0h0m0s". Returns buf. */
const char *budget_format_reset(long long seconds, char *buf, size_t size);

typedef struct {
    char client[BUDGET_MAX_CLIENT + 1];
    budget_quota q;
} budget_usage;

/* Every client with a record, in key order; *out NULL when there are none. */
int budget_list(budget *b, budget_usage **out, size_t *n);
/* Forgets a client's usage; *found (may be NULL) says whether it had any. */
int budget_reset(budget *b, const char *client, bool *found);

#endif
