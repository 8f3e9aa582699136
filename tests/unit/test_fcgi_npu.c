/* test_fcgi_npu.c: the NPU arbiter with real processes: mutual exclusion,
 * FIFO within a class, priority classes, bounded waiting, SIGKILLed
 * holders and waiters, and fairness of plain acquires and of slices.
 *
 * Every child opens its own handle after fork(), as workers do. Ordering is
 * arranged by waiting for the queue depth the arbiter reports, never by
 * sleeping, and timing only appears in generous bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"
#include "npu.h"

typedef struct {
    int inside;          /* processes inside the critical section */
    int violations;
    int order[64];       /* who got the NPU, in order */
    int n_order;
    int release;         /* tells a holder to let go */
    int ready[16];
    long long count[16];
    long long granted_ns[16];
    int outcome[16];
    int retry[16];
    long long wait_us[16];
} shared;

static char dir[64];
static char path[96];
static shared *sh;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void spin_us(long long us)
{
    long long end = now_ns() + us * 1000;
    while (now_ns() < end) {
    }
}

static npu_params params(void)
{
    npu_params p = npu_default_params();
    p.lock_path = path;
    p.max_wait_ms = 10000;
    return p;
}

static npu *open_or_die(const npu_params *p)
{
    npu *n = NULL;
    char msg[256];
    if (npu_open(p, &n, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "npu_open: %s\n", msg);
        _exit(90);
    }
    return n;
}

/* Every line is HELP, TYPE or a sample (the exposition format 0.0.4). */
static void check_exposition(const char *text)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+"
                             "|# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)"
                             "|[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN))$",
                             REG_EXTENDED),
                     0);
    char *copy = strdup(text);
    int n = 0;
    for (char *save, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++)
        if (regexec(&re, l, 0, NULL, 0) != 0)
            fail_msg("bad exposition line: %s", l);
    assert_true(n > 10);
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(copy);
    regfree(&re);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/eg_npu_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/npu.lock", dir);
    sh = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return sh == MAP_FAILED ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    munmap(sh, sizeof(shared));
    return 0;
}

static int reset(void **state)
{
    (void)state;
    memset(sh, 0, sizeof(*sh));
    unlink(path); /* a fresh table per test */
    return 0;
}

static int stats_depth(void)
{
    npu_params p = params();
    npu *n = open_or_die(&p);
    npu_stats st;
    assert_int_equal(npu_get_stats(n, &st), CORE_OK);
    npu_close(n);
    return st.depth;
}

static void wait_depth(int want)
{
    for (int i = 0; i < 5000 && stats_depth() != want; i++)
        usleep(1000);
    assert_int_equal(stats_depth(), want);
}

static void wait_flag(int *f)
{
    for (int i = 0; i < 5000 && !__atomic_load_n(f, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    assert_true(__atomic_load_n(f, __ATOMIC_ACQUIRE));
}

static void reap_all(pid_t *kids, int n)
{
    for (int i = 0; i < n; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

/* Child: holds the NPU until sh->release. */
static pid_t spawn_holder(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        npu_params p = params();
        npu *n = open_or_die(&p);
        npu_grant g;
        if (npu_acquire(n, 0, &g) || g.outcome != NPU_GRANTED)
            _exit(91);
        __atomic_store_n(&sh->ready[15], 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&sh->release, __ATOMIC_ACQUIRE))
            usleep(500);
        npu_close(n); /* releases */
        _exit(0);
    }
    wait_flag(&sh->ready[15]);
    return pid;
}

/* Child: one acquire in class cls, records its id in order, releases. */
static pid_t spawn_waiter(int id, int cls, const npu_params *pp)
{
    pid_t pid = fork();
    if (pid == 0) {
        npu *n = open_or_die(pp);
        npu_grant g;
        if (npu_acquire(n, cls, &g))
            _exit(92);
        sh->outcome[id] = (int)g.outcome;
        sh->retry[id] = g.retry_after_s;
        sh->wait_us[id] = (long long)g.wait_us;
        if (g.outcome == NPU_GRANTED) {
            sh->granted_ns[id] = now_ns();
            int k = __atomic_fetch_add(&sh->n_order, 1, __ATOMIC_ACQ_REL);
            sh->order[k] = id;
            npu_release(n);
        }
        npu_close(n);
        _exit(0);
    }
    return pid;
}

static void test_exclusion(void **state)
{
    (void)state;
    enum { K = 4, ROUNDS = 300 };
    pid_t kids[K];
    for (int k = 0; k < K; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            npu_params p = params();
            npu *n = open_or_die(&p);
            for (int i = 0; i < ROUNDS; i++) {
                npu_grant g;
                if (npu_acquire(n, i % 2, &g) || g.outcome != NPU_GRANTED)
                    _exit(93);
                if (__atomic_fetch_add(&sh->inside, 1, __ATOMIC_ACQ_REL) != 0)
                    __atomic_fetch_add(&sh->violations, 1, __ATOMIC_RELAXED);
                spin_us(20);
                __atomic_fetch_sub(&sh->inside, 1, __ATOMIC_ACQ_REL);
                sh->count[k]++;
                if (npu_release(n))
                    _exit(94);
            }
            npu_close(n);
            _exit(0);
        }
    }
    reap_all(kids, K);
    assert_int_equal(sh->violations, 0);
    for (int k = 0; k < K; k++)
        assert_int_equal(sh->count[k], ROUNDS);
    npu_params p = params();
    npu *n = open_or_die(&p);
    npu_stats st;
    npu_get_stats(n, &st);
    assert_int_equal(st.acquired[0] + st.acquired[1], K * ROUNDS);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.holder_pid, 0);
    assert_true(st.handoffs > 0);
    uint64_t hist = 0;
    for (int b = 0; b <= NPU_WAIT_BUCKETS; b++)
        hist += st.wait_bucket[b];
    assert_int_equal(hist, K * ROUNDS);
    npu_close(n);
}

static void test_fifo_within_class(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    npu_params p = params();
    pid_t kids[5];
    for (int i = 0; i < 5; i++) {
        kids[i] = spawn_waiter(i, 1, &p);
        wait_depth(i + 1);
    }
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    reap_all(&h, 1);
    reap_all(kids, 5);
    assert_int_equal(sh->n_order, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(sh->order[i], i);
}

static void test_priority_class_first(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    npu_params p = params();
    pid_t kids[4];
    kids[0] = spawn_waiter(0, 1, &p);
    wait_depth(1);
    kids[1] = spawn_waiter(1, 1, &p);
    wait_depth(2);
    kids[2] = spawn_waiter(2, 0, &p); /* arrives last, served first */
    wait_depth(3);
    kids[3] = spawn_waiter(3, 0, &p);
    wait_depth(4);
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    reap_all(&h, 1);
    reap_all(kids, 4);
    assert_int_equal(sh->n_order, 4);
    assert_int_equal(sh->order[0], 2);
    assert_int_equal(sh->order[1], 3);
    assert_int_equal(sh->order[2], 0);
    assert_int_equal(sh->order[3], 1);
}

static void test_bounded_waiters(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    npu_params p = params();
    p.max_waiters = 2;
    pid_t kids[3];
    kids[0] = spawn_waiter(0, 1, &p);
    wait_depth(1);
    kids[1] = spawn_waiter(1, 1, &p);
    wait_depth(2);
    kids[2] = spawn_waiter(2, 0, &p); /* even class 0 finds no room */
    reap_all(&kids[2], 1);
    assert_int_equal(sh->outcome[2], NPU_QUEUE_FULL);
    assert_true(sh->retry[2] >= 1);
    assert_int_equal(stats_depth(), 2);
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    reap_all(&h, 1);
    reap_all(kids, 2);
    assert_int_equal(sh->outcome[0], NPU_GRANTED);
    assert_int_equal(sh->outcome[1], NPU_GRANTED);
    npu *n = open_or_die(&p);
    npu_stats st;
    npu_get_stats(n, &st);
    assert_int_equal(st.rejected, 1);
    npu_close(n);
}

static void test_wait_timeout(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    npu_params p = params();
    p.max_wait_ms = 150;
    pid_t w = spawn_waiter(0, 1, &p);
    reap_all(&w, 1);
    assert_int_equal(sh->outcome[0], NPU_TIMED_OUT);
    assert_true(sh->wait_us[0] >= 150000);
    assert_true(sh->retry[0] >= 1);
    assert_int_equal(stats_depth(), 0); /* the timed-out waiter left the queue */
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    reap_all(&h, 1);
    npu *n = open_or_die(&p);
    npu_stats st;
    npu_get_stats(n, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.holder_pid, 0);
    /* The NPU is free again: granted at once. */
    npu_grant g;
    assert_int_equal(npu_acquire(n, 1, &g), CORE_OK);
    assert_int_equal(g.outcome, NPU_GRANTED);
    assert_true(npu_held(n));
    assert_int_equal(npu_acquire(n, 1, &g), CORE_EINVAL); /* already held */
    assert_int_equal(npu_release(n), CORE_OK);
    assert_int_equal(npu_release(n), CORE_EINVAL);
    npu_close(n);
}

static void test_killed_holder(void **state)
{
    (void)state;
    pid_t h = spawn_holder(); /* never told to release */
    npu_params p = params();
    pid_t w = spawn_waiter(0, 1, &p);
    wait_depth(1);
    long long t_kill = now_ns();
    kill(h, SIGKILL);
    int st;
    assert_int_equal(waitpid(h, &st, 0), h);
    assert_true(WIFSIGNALED(st));
    reap_all(&w, 1);
    assert_int_equal(sh->outcome[0], NPU_GRANTED);
    /* reap_ms is 10: generous bound, fails only if the queue wedged. */
    assert_true(sh->granted_ns[0] - t_kill < 2000000000LL);
    npu *n = open_or_die(&p);
    npu_stats s;
    npu_get_stats(n, &s);
    assert_int_equal(s.dead_holders, 1);
    assert_int_equal(s.holder_pid, 0);
    npu_close(n);
}

static void test_killed_waiter(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    npu_params p = params();
    pid_t doomed = spawn_waiter(0, 1, &p);
    wait_depth(1);
    pid_t w = spawn_waiter(1, 1, &p);
    wait_depth(2);
    kill(doomed, SIGKILL);
    waitpid(doomed, NULL, 0);
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    reap_all(&h, 1);
    reap_all(&w, 1);
    assert_int_equal(sh->outcome[1], NPU_GRANTED);
    assert_int_equal(sh->n_order, 1);
    npu *n = open_or_die(&p);
    npu_stats s;
    npu_get_stats(n, &s);
    /* Granted to the dead slot first, or cleared while waiting. */
    assert_int_equal(s.dead_waiters + s.dead_holders, 1);
    assert_int_equal(s.depth, 0);
    npu_close(n);
}

/* A holder killed while nobody waits: the next arrival, later, still gets
 * the NPU (the table says "held" until someone notices the death). */
static void test_killed_holder_then_arrival(void **state)
{
    (void)state;
    pid_t h = spawn_holder();
    kill(h, SIGKILL);
    waitpid(h, NULL, 0);
    npu_params p = params();
    p.max_wait_ms = 5000;
    pid_t w = spawn_waiter(0, 0, &p);
    reap_all(&w, 1);
    assert_int_equal(sh->outcome[0], NPU_GRANTED);
    assert_true(sh->wait_us[0] < 2000000);
    npu *n = open_or_die(&p);
    npu_stats s;
    npu_get_stats(n, &s);
    assert_int_equal(s.dead_holders, 1);
    npu_close(n);
}

static void check_spread(const long long *c, int k, const char *what)
{
    long long lo = c[0], hi = c[0];
    for (int i = 1; i < k; i++) {
        lo = c[i] < lo ? c[i] : lo;
        hi = c[i] > hi ? c[i] : hi;
    }
    printf("  %s: min %lld max %lld (%.1f%%)\n", what, lo, hi,
           100.0 * (double)(hi - lo) / (double)hi);
    assert_true(lo > 0);
    assert_true((double)lo >= 0.8 * (double)hi);
}

/* 4 processes, each acquiring for ~2 ms at a time for ~2 s. */
static void test_fair_acquires(void **state)
{
    (void)state;
    enum { K = 4 };
    pid_t kids[K];
    long long end = now_ns() + 2000000000LL;
    for (int k = 0; k < K; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            npu_params p = params();
            npu *n = open_or_die(&p);
            __atomic_fetch_add(&sh->ready[0], 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(&sh->ready[0], __ATOMIC_ACQUIRE) < K)
                usleep(100);
            while (now_ns() < end) {
                npu_grant g;
                if (npu_acquire(n, 1, &g) || g.outcome != NPU_GRANTED)
                    _exit(95);
                spin_us(2000);
                sh->count[k]++;
                npu_release(n);
            }
            npu_close(n);
            _exit(0);
        }
    }
    reap_all(kids, K);
    check_spread(sh->count, K, "acquires per process");
}

/* 4 streams holding the NPU throughout, generating "tokens" of ~0.5 ms and
 * yielding every slice: tokens per stream within 20% of each other. */
static void test_fair_slices(void **state)
{
    (void)state;
    enum { K = 4 };
    pid_t kids[K];
    for (int k = 0; k < K; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            npu_params p = params();
            p.slice_tokens = 4;
            p.slice_ms = 1000;
            npu *n = open_or_die(&p);
            __atomic_fetch_add(&sh->ready[0], 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(&sh->ready[0], __ATOMIC_ACQUIRE) < K)
                usleep(100);
            long long end = now_ns() + 1500000000LL;
            npu_grant g;
            if (npu_acquire(n, 1, &g) || g.outcome != NPU_GRANTED)
                _exit(96);
            while (now_ns() < end) {
                if (__atomic_fetch_add(&sh->inside, 1, __ATOMIC_ACQ_REL) != 0)
                    __atomic_fetch_add(&sh->violations, 1, __ATOMIC_RELAXED);
                spin_us(500);
                __atomic_fetch_sub(&sh->inside, 1, __ATOMIC_ACQ_REL);
                sh->count[k]++;
                bool y;
                if (npu_tick(n, 1, &y))
                    _exit(97);
                if (y)
                    __atomic_fetch_add(&sh->n_order, 1, __ATOMIC_RELAXED);
            }
            npu_release(n);
            npu_close(n);
            _exit(0);
        }
    }
    reap_all(kids, K);
    assert_int_equal(sh->violations, 0);
    /* The streams really interleaved: many handovers, not 3 at the end. */
    assert_true(sh->n_order > 20);
    check_spread(sh->count, K, "tokens per stream");
}

static void test_yield_alone_keeps_npu(void **state)
{
    (void)state;
    npu_params p = params();
    p.slice_tokens = 1;
    npu *n = open_or_die(&p);
    npu_grant g;
    assert_int_equal(npu_acquire(n, 1, &g), CORE_OK);
    bool y = true;
    assert_int_equal(npu_tick(n, 5, &y), CORE_OK);
    assert_false(y);
    assert_int_equal(npu_yield(n, &y), CORE_OK);
    assert_false(y);
    assert_true(npu_held(n));
    assert_int_equal(npu_release(n), CORE_OK);
    assert_int_equal(npu_tick(n, 1, &y), CORE_EINVAL);
    assert_int_equal(npu_acquire(n, 2, &g), CORE_EINVAL); /* only 2 classes */
    assert_int_equal(npu_acquire(n, -1, &g), CORE_EINVAL);
    npu_stats st;
    assert_int_equal(npu_get_stats(n, &st), CORE_OK);
    sbuf b;
    sbuf_init(&b);
    assert_int_equal(npu_metrics_render(&st, &b), 0);
    assert_non_null(strstr(b.data, "edgegate_npu_wait_seconds_count 1\n"));
    assert_non_null(strstr(b.data, "# TYPE edgegate_npu_queue_depth gauge\n"));
    check_exposition(b.data);
    sbuf_free(&b);
    npu_close(n);
    npu_close(NULL);
}

static void test_bad_params(void **state)
{
    (void)state;
    npu *n = (npu *)1;
    char msg[128];
    npu_params p = params();
    p.lock_path = NULL;
    assert_int_equal(npu_open(&p, &n, msg, sizeof(msg)), CORE_EINVAL);
    assert_null(n);
    p = params();
    p.n_classes = 0;
    assert_int_equal(npu_open(&p, &n, msg, sizeof(msg)), CORE_EINVAL);
    p = params();
    p.max_waiters = NPU_SLOTS;
    assert_int_equal(npu_open(&p, &n, msg, sizeof(msg)), CORE_EINVAL);
    p = params();
    p.lock_path = "/nonexistent-dir/npu.lock";
    assert_int_equal(npu_open(&p, &n, msg, sizeof(msg)), CORE_EIO);
    assert_non_null(strstr(msg, "/nonexistent-dir/npu.lock"));
    /* A handle is refused in a child that inherited it. */
    p = params();
    n = open_or_die(&p);
    pid_t pid = fork();
    if (pid == 0) {
        npu_grant g;
        _exit(npu_acquire(n, 0, &g) == CORE_EINVAL ? 0 : 1);
    }
    reap_all(&pid, 1);
    npu_close(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_exclusion, reset),
        cmocka_unit_test_setup(test_fifo_within_class, reset),
        cmocka_unit_test_setup(test_priority_class_first, reset),
        cmocka_unit_test_setup(test_bounded_waiters, reset),
        cmocka_unit_test_setup(test_wait_timeout, reset),
        cmocka_unit_test_setup(test_killed_holder, reset),
        cmocka_unit_test_setup(test_killed_waiter, reset),
        cmocka_unit_test_setup(test_killed_holder_then_arrival, reset),
        cmocka_unit_test_setup(test_fair_acquires, reset),
        cmocka_unit_test_setup(test_fair_slices, reset),
        cmocka_unit_test_setup(test_yield_alone_keeps_npu, reset),
        cmocka_unit_test_setup(test_bad_params, reset),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
