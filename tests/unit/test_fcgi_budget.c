/* test_fcgi_budget.c: token budgets: reserve/settle arithmetic, partial
 * grants, day and month rollover on an injected clock, overrides, list and
 * reset, and forked processes reserving at once never overspending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "budget.h"
#include "core_err.h"

static char dir[64];
static char path[96];
static long long *clock_now; /* shared with children */

/* 2026-01-31 23:00:00 UTC */
#define T_JAN31_23H 1769900400LL

static long long fake_now(void *user)
{
    return __atomic_load_n((long long *)user, __ATOMIC_ACQUIRE);
}

static budget_params params(long long day, long long month)
{
    budget_params p = budget_default_params();
    p.path = path;
    p.sync = false;
    p.per_day = day;
    p.per_month = month;
    p.now = fake_now;
    p.now_user = clock_now;
    return p;
}

static budget *open_b(const budget_params *p)
{
    budget *b = NULL;
    char msg[256] = "";
    int rc = budget_open(p, &b, msg, sizeof(msg));
    if (rc != CORE_OK)
        fail_msg("budget_open: %s", msg);
    return b;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/eg_budget_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/budgets.mdb", dir);
    clock_now = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return clock_now == MAP_FAILED ? -1 : 0;
}

static int fresh(void **state)
{
    (void)state;
    char lock[128];
    snprintf(lock, sizeof(lock), "%s-lock", path);
    unlink(path);
    unlink(lock);
    *clock_now = T_JAN31_23H;
    return 0;
}

static int teardown(void **state)
{
    fresh(state);
    rmdir(dir);
    return 0;
}

static void test_reserve_settle(void **state)
{
    (void)state;
    budget_params p = params(1000, 5000);
    budget *b = open_b(&p);
    budget_res r;
    bool ok;
    budget_quota q;
    assert_int_equal(budget_query(b, "alice", &q), CORE_OK); /* no record: a miss */
    assert_int_equal(q.limit, 1000);
    assert_int_equal(q.remaining, 1000);
    assert_int_equal(q.reset_s, 3600);

    assert_int_equal(budget_reserve(b, "alice", 300, 10, &r, &ok, &q), CORE_OK);
    assert_true(ok);
    assert_int_equal(r.granted, 300);
    assert_int_equal(q.remaining, 700);
    assert_int_equal(budget_settle(b, &r, 120, &q), CORE_OK);
    assert_int_equal(q.remaining, 880);
    assert_int_equal(q.day_used, 120);
    assert_int_equal(q.month_used, 120);
    /* Settling twice changes nothing. */
    assert_int_equal(budget_settle(b, &r, 500, NULL), CORE_OK);
    assert_int_equal(budget_query(b, "alice", &q), CORE_OK);
    assert_int_equal(q.remaining, 880);

    /* Partial grant: 880 left, wants 1000, needs at least 100. */
    assert_int_equal(budget_reserve(b, "alice", 1000, 100, &r, &ok, &q), CORE_OK);
    assert_true(ok);
    assert_int_equal(r.granted, 880);
    assert_int_equal(q.remaining, 0);
    /* Exhausted: refused, nothing charged. */
    budget_res r2;
    assert_int_equal(budget_reserve(b, "alice", 10, 1, &r2, &ok, &q), CORE_OK);
    assert_false(ok);
    assert_int_equal(r2.granted, 0);
    assert_int_equal(q.remaining, 0);
    assert_int_equal(q.limit, 1000);
    /* Over-generation is charged too (the stream ran past its reservation). */
    assert_int_equal(budget_settle(b, &r, 900, &q), CORE_OK);
    assert_int_equal(q.day_used, 1020);
    assert_int_equal(q.remaining, 0);
    /* Other clients are separate. */
    assert_int_equal(budget_reserve(b, "bob", 1000, 1000, &r, &ok, &q), CORE_OK);
    assert_true(ok);

    assert_int_equal(budget_reserve(b, "", 1, 1, &r, &ok, NULL), CORE_EINVAL);
    assert_int_equal(budget_reserve(b, "alice", 1, 2, &r, &ok, NULL), CORE_EINVAL);
    assert_int_equal(budget_reserve(b, "alice", -1, -1, &r, &ok, NULL), CORE_EINVAL);
    char big[BUDGET_MAX_CLIENT + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(budget_query(b, big, &q), CORE_EINVAL);
    budget_close(b);
    budget_close(NULL);
}

static void test_rollover(void **state)
{
    (void)state;
    budget_params p = params(1000, 1500);
    budget *b = open_b(&p);
    budget_res r, late;
    bool ok;
    budget_quota q;
    assert_int_equal(budget_reserve(b, "c", 1000, 1000, &r, &ok, &q), CORE_OK);
    assert_true(ok);
    assert_int_equal(q.remaining, 0);
    assert_int_equal(q.reset_s, 3600); /* the day binds, ends at midnight */
    assert_int_equal(budget_settle(b, &r, 1000, NULL), CORE_OK);
    assert_int_equal(budget_reserve(b, "c", 100, 100, &late, &ok, &q), CORE_OK);
    assert_false(ok);

    /* 23:59:59 -> still January. */
    *clock_now = T_JAN31_23H + 3599;
    assert_int_equal(budget_query(b, "c", &q), CORE_OK);
    assert_int_equal(q.remaining, 0);
    assert_int_equal(q.reset_s, 1);
    assert_int_equal(q.day_reset_s, 1);
    assert_int_equal(q.month_reset_s, 1);

    /* Reserve just before midnight, settle after it: no refund into Feb 1. */
    *clock_now = T_JAN31_23H;
    assert_int_equal(budget_reset(b, "c", &ok), CORE_OK);
    assert_true(ok);
    assert_int_equal(budget_reserve(b, "c", 400, 1, &late, &ok, NULL), CORE_OK);
    assert_true(ok);
    *clock_now = T_JAN31_23H + 3600; /* 2026-02-01 00:00:00: both windows new */
    assert_int_equal(budget_query(b, "c", &q), CORE_OK);
    assert_int_equal(q.day_used, 0);
    assert_int_equal(q.month_used, 0);
    assert_int_equal(q.month_reset_s, 28 * 86400);
    assert_int_equal(budget_settle(b, &late, 0, &q), CORE_OK);
    assert_int_equal(q.day_used, 0);
    assert_int_equal(q.remaining, 1000);

    /* Within February the month binds once the days add up. */
    assert_int_equal(budget_reserve(b, "c", 1000, 1, &r, &ok, NULL), CORE_OK);
    *clock_now += 86400; /* Feb 2 */
    assert_int_equal(budget_reserve(b, "c", 1000, 1, &r, &ok, &q), CORE_OK);
    assert_true(ok);
    assert_int_equal(r.granted, 500);
    assert_int_equal(q.limit, 1500);
    assert_int_equal(q.remaining, 0);
    assert_int_equal(q.reset_s, 27 * 86400);
    *clock_now += 86400; /* Feb 3: the day is fresh, the month is not */
    assert_int_equal(budget_query(b, "c", &q), CORE_OK);
    assert_int_equal(q.day_used, 0);
    assert_int_equal(q.month_used, 1500);
    assert_int_equal(q.remaining, 0);
    assert_int_equal(q.limit, 1500);
    budget_close(b);
}

static void test_overrides_and_unlimited(void **state)
{
    (void)state;
    budget_override o[] = {{"vip", 0, 100}, {"tiny", 5, -1}};
    budget_params p = params(1000, 0);
    p.overrides = o;
    p.n_overrides = 2;
    budget *b = open_b(&p);
    budget_quota q;
    budget_res r;
    bool ok;
    assert_int_equal(budget_query(b, "vip", &q), CORE_OK);
    assert_int_equal(q.limit, 100); /* day unlimited, month 100 */
    assert_int_equal(q.day_limit, 0);
    assert_int_equal(budget_reserve(b, "tiny", 10, 6, &r, &ok, &q), CORE_OK);
    assert_false(ok);
    assert_int_equal(q.limit, 5);
    assert_int_equal(q.month_limit, 0); /* inherited: no month limit */
    assert_int_equal(budget_query(b, "anyone", &q), CORE_OK);
    assert_int_equal(q.limit, 1000);
    budget_close(b);

    budget_params u = params(0, 0);
    b = open_b(&u);
    assert_int_equal(budget_reserve(b, "free", 1000000, 1000000, &r, &ok, &q), CORE_OK);
    assert_true(ok);
    assert_int_equal(q.limit, -1);
    budget_close(b);

    budget_override bad[] = {{"", 1, 1}};
    p.overrides = bad;
    p.n_overrides = 1;
    budget *x = NULL;
    assert_int_equal(budget_open(&p, &x, NULL, 0), CORE_EINVAL);
    assert_null(x);
}

static void test_list_and_reset(void **state)
{
    (void)state;
    budget_params p = params(1000, 0);
    budget *b = open_b(&p);
    budget_res r;
    bool ok;
    budget_usage *list;
    size_t n;
    assert_int_equal(budget_list(b, &list, &n), CORE_OK);
    assert_int_equal(n, 0);
    assert_null(list);
    const char *ids[] = {"carol", "alice", "bob"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(budget_reserve(b, ids[i], 10 * (i + 1), 1, &r, &ok, NULL), CORE_OK);
        assert_true(ok);
    }
    assert_int_equal(budget_list(b, &list, &n), CORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].client, "alice");
    assert_int_equal(list[0].q.day_used, 20);
    assert_string_equal(list[1].client, "bob");
    assert_int_equal(list[1].q.remaining, 970);
    assert_string_equal(list[2].client, "carol");
    free(list);
    assert_int_equal(budget_reset(b, "bob", &ok), CORE_OK);
    assert_true(ok);
    assert_int_equal(budget_reset(b, "bob", &ok), CORE_OK);
    assert_false(ok); /* MDB_NOTFOUND: a miss, not an error */
    assert_int_equal(budget_list(b, &list, &n), CORE_OK);
    assert_int_equal(n, 2);
    free(list);
    /* A new day shows zero usage in the list. */
    *clock_now += 86400;
    assert_int_equal(budget_list(b, &list, &n), CORE_OK);
    assert_int_equal(list[0].q.day_used, 0);
    free(list);
    budget_close(b);
}

static void test_format_reset(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(budget_format_reset(0, buf, sizeof(buf)), "0s");
    assert_string_equal(budget_format_reset(59, buf, sizeof(buf)), "59s");
    assert_string_equal(budget_format_reset(360, buf, sizeof(buf)), "6m0s");
    assert_string_equal(budget_format_reset(3723, buf, sizeof(buf)), "1h2m3s");
    assert_string_equal(budget_format_reset(86400 * 3, buf, sizeof(buf)), "3d0h0m0s");
    assert_string_equal(budget_format_reset(-5, buf, sizeof(buf)), "0s");
}

typedef struct {
    long long granted[8];
    long long charged[8];
    int denied[8];
    int ready;
} conc;

/* 8 processes, each reserving 1..37 tokens at a time (all or nothing) and
 * settling some reservations low, until refused: the total charged is
 * exactly what the processes were granted minus their refunds, and never
 * above the limit. */
static void test_concurrent_never_overspend(void **state)
{
    (void)state;
    enum { K = 8, LIMIT = 20000 };
    conc *c = mmap(NULL, sizeof(conc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(c != MAP_FAILED);
    memset(c, 0, sizeof(*c));
    budget_params p = params(LIMIT, LIMIT * 10);
    budget *parent = open_b(&p); /* creates the file; children open their own */
    budget_close(parent);
    pid_t kids[K];
    for (int k = 0; k < K; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            budget *b = NULL;
            if (budget_open(&p, &b, NULL, 0) != CORE_OK)
                _exit(80);
            __atomic_fetch_add(&c->ready, 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(&c->ready, __ATOMIC_ACQUIRE) < K)
                usleep(100);
            unsigned seed = (unsigned)k * 7919u + 1;
            for (int i = 0; i < 100000; i++) {
                long long want = 1 + (rand_r(&seed) % 37);
                budget_res r;
                bool ok;
                budget_quota q;
                if (budget_reserve(b, "shared-client", want, want, &r, &ok, &q) != CORE_OK)
                    _exit(81);
                if (q.remaining < 0 || q.day_used > LIMIT)
                    _exit(82);
                if (!ok) {
                    /* Refused: the rest is smaller than what we asked. */
                    if (q.remaining >= want)
                        _exit(83);
                    if (++c->denied[k] > 20)
                        break;
                    continue;
                }
                long long actual = i % 3 == 0 ? want / 2 : want;
                c->granted[k] += want;
                c->charged[k] += actual;
                if (budget_settle(b, &r, actual, NULL) != CORE_OK)
                    _exit(84);
            }
            budget_close(b);
            _exit(0);
        }
    }
    for (int k = 0; k < K; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    long long charged = 0;
    int served = 0;
    for (int k = 0; k < K; k++) {
        charged += c->charged[k];
        served += c->granted[k] > 0;
    }
    assert_true(served >= 2); /* they really ran at the same time */
    budget *b = open_b(&p);
    budget_quota q;
    assert_int_equal(budget_query(b, "shared-client", &q), CORE_OK);
    assert_int_equal(q.day_used, charged);
    assert_true(q.day_used <= LIMIT);
    assert_true(q.remaining < 37); /* they really ran it down */
    budget_close(b);
    munmap(c, sizeof(conc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_reserve_settle, fresh),
        cmocka_unit_test_setup(test_rollover, fresh),
        cmocka_unit_test_setup(test_overrides_and_unlimited, fresh),
        cmocka_unit_test_setup(test_list_and_reset, fresh),
        cmocka_unit_test(test_format_reset),
        cmocka_unit_test_setup(test_concurrent_never_overspend, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
