/* npu.c: the NPU arbiter; see npu.h for the protocol.
 *
 * File layout (format of the shared table, little-endian host layout, only
 * ever read by processes built from this source): npu_shm at offset 0,
 * rounded up to whole pages. The locks live at byte offsets from NPU_LK_BASE
 * on, far past the table, so they never overlap what is mapped; fcntl locks
 * may lie past the end of a file.
 *
 * Waking: each slot has its own futex word in the shared table. Granting
 * bumps the grantee's word and wakes only that process, so a handoff costs
 * one wakeup and no thundering herd; the grantee then takes the hold lock
 * without touching the queue lock (see npu_take).
 *
 * Slot states: IDLE -> WAITING (queued, under the queue lock) -> GRANTED
 * (picked, under the queue lock) -> HOLDING (by the owner alone) -> IDLE.
 */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "npu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"

#define NPU_MAGIC 0x4e505551u /* "NPUQ" */
#define NPU_VERSION 1u

#define NPU_LK_BASE (1LL << 40)
#define NPU_LK_INIT (NPU_LK_BASE + 0)
#define NPU_LK_QUEUE (NPU_LK_BASE + 1)
#define NPU_LK_HOLD (NPU_LK_BASE + 2)
#define NPU_LK_SLOT (NPU_LK_BASE + 64)

enum { NPU_S_IDLE = 0, NPU_S_WAITING, NPU_S_GRANTED, NPU_S_HOLDING };

const uint64_t npu_wait_le_us[NPU_WAIT_BUCKETS] = {100,    500,    1000,   5000,
                                                   10000,  50000,  100000, 250000,
                                                   500000, 1000000, 2500000, 5000000};

typedef struct {
    uint32_t wake; /* futex word */
    int32_t pid;
    uint32_t state;
    uint32_t cls;
    uint64_t ticket;
    uint64_t since_ns;   /* queued at */
    uint64_t granted_ns; /* granted at (handoff latency) */
    uint32_t handoff;    /* this grant came straight from a release */
    uint32_t yielding;   /* queued by npu_yield, not npu_acquire */
} __attribute__((aligned(64))) npu_slot;

typedef struct {
    uint32_t magic, version, n_slots, table_size;
    uint64_t next_ticket;
    int32_t holder; /* slot index, -1: free */
    uint32_t n_waiting;
    /* stats */
    uint64_t acquired[NPU_MAX_CLASSES];
    uint64_t wait_bucket[NPU_WAIT_BUCKETS + 1];
    uint64_t wait_ns_sum;
    uint64_t holds, hold_ns_sum, hold_ns_ewma;
    uint64_t handoffs, handoff_ns_sum, yields;
    uint64_t timeouts, rejected, dead_holders, dead_waiters;
    npu_slot slots[NPU_SLOTS];
} npu_shm;

struct npu {
    npu_params p;
    char *path;
    int fd;
    pid_t pid;
    npu_shm *shm;
    size_t map_size;
    int slot;
    bool held;
    uint64_t hold_since_ns;
    uint64_t slice_start_ns;
    int slice_tokens;
};

#define NPU_LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define NPU_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define NPU_ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_RELAXED)

npu_params npu_default_params(void)
{
    return (npu_params){.lock_path = NULL,
                        .file_mode = 0660,
                        .n_classes = 2,
                        .max_waiters = 16,
                        .max_wait_ms = 2000,
                        .slice_tokens = 8,
                        .slice_ms = 50,
                        .reap_ms = 10};
}

static uint64_t npu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- locks ---------------------------------------------------------------- */

static int npu_lk(int fd, short type, long long at, bool wait)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* True when some other open file description holds a lock on byte `at`. */
static bool npu_lk_taken(int fd, long long at)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return true; /* cannot tell: assume alive rather than steal */
    return fl.l_type != F_UNLCK;
}

static void npu_qlock(npu *n)
{
    /* Only EDEADLK/ENOLCK could fail a blocking lock on a plain file;
     * retrying is all there is to do. */
    while (npu_lk(n->fd, F_WRLCK, NPU_LK_QUEUE, true) != 0)
        usleep(100);
}

static void npu_qunlock(npu *n)
{
    npu_lk(n->fd, F_UNLCK, NPU_LK_QUEUE, false);
}

static void npu_futex_wake(uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void npu_futex_wait(uint32_t *w, uint32_t seen, uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    syscall(SYS_futex, w, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/* ---- queue (under the queue lock, except npu_take and the wait itself) ---- */

/* Grants the NPU to the best waiter when it is free. Recounts the waiters
 * on the way, so n_waiting heals even if a process died halfway through
 * updating it (the queue lock is an fcntl lock: the kernel drops it on
 * death, but the table may then be half updated). */
static void npu_pick(npu_shm *s, uint64_t now, bool handoff)
{
    int best = -1;
    uint32_t waiting = 0;
    for (int i = 0; i < (int)s->n_slots; i++) {
        npu_slot *x = &s->slots[i];
        if (NPU_LOAD(x->state) != NPU_S_WAITING)
            continue;
        waiting++;
        if (best < 0 || x->cls < s->slots[best].cls ||
            (x->cls == s->slots[best].cls && x->ticket < s->slots[best].ticket))
            best = i;
    }
    if (s->holder >= 0 || best < 0) {
        NPU_STORE(s->n_waiting, waiting);
        return;
    }
    npu_slot *b = &s->slots[best];
    b->granted_ns = now;
    b->handoff = handoff;
    NPU_STORE(b->state, NPU_S_GRANTED);
    s->holder = best;
    NPU_STORE(s->n_waiting, waiting - 1);
    __atomic_add_fetch(&b->wake, 1, __ATOMIC_RELEASE);
    npu_futex_wake(&b->wake);
}

/* Clears slot i of a process that died (its slot lock is gone). */
static void npu_clear_dead(npu_shm *s, int i)
{
    npu_slot *x = &s->slots[i];
    if (x->state == NPU_S_WAITING) {
        NPU_STORE(s->n_waiting, s->n_waiting ? s->n_waiting - 1 : 0);
        s->dead_waiters++;
    }
    if (s->holder == i) {
        s->holder = -1;
        s->dead_holders++;
    }
    x->state = NPU_S_IDLE;
    x->pid = 0;
}

/* Checks the holder only (cheap: one fcntl), or every slot in use. */
static void npu_reap(npu *n, bool all, uint64_t now)
{
    npu_shm *s = n->shm;
    for (int i = 0; i < (int)s->n_slots; i++) {
        if (i == n->slot)
            continue;
        if (!all && i != s->holder)
            continue;
        if (NPU_LOAD(s->slots[i].state) == NPU_S_IDLE && s->holder != i)
            continue;
        if (!npu_lk_taken(n->fd, NPU_LK_SLOT + i))
            npu_clear_dead(s, i);
    }
    npu_pick(s, now, false);
}

/* Retry-After: queue depth x recent mean hold time, in whole seconds. */
static int npu_retry_calc(npu_shm *s)
{
    uint64_t mean = NPU_LOAD(s->hold_ns_ewma);
    if (!mean)
        mean = 100000000u; /* 100 ms until something was measured */
    uint64_t ns = (uint64_t)(NPU_LOAD(s->n_waiting) + 1) * mean;
    uint64_t sec = (ns + 999999999u) / 1000000000u;
    if (sec < 1)
        sec = 1;
    if (sec > 3600)
        sec = 3600;
    return (int)sec;
}

static void npu_count_wait(npu_shm *s, uint64_t ns)
{
    uint64_t us = ns / 1000;
    int b = 0;
    while (b < NPU_WAIT_BUCKETS && us > npu_wait_le_us[b])
        b++;
    NPU_ADD(s->wait_bucket[b], 1);
    NPU_ADD(s->wait_ns_sum, ns);
}

/* Queue lock held. Takes our slot out of the queue whatever its state
 * (after a failure, so that the NPU never stays granted to no one). */
static void npu_abandon(npu *n)
{
    npu_shm *s = n->shm;
    npu_slot *me = &s->slots[n->slot];
    if (me->state == NPU_S_WAITING)
        NPU_STORE(s->n_waiting, s->n_waiting ? s->n_waiting - 1 : 0);
    NPU_STORE(me->state, NPU_S_IDLE);
    if (s->holder == n->slot) {
        npu_lk(n->fd, F_UNLCK, NPU_LK_HOLD, false);
        s->holder = -1;
    }
    n->held = false;
    npu_pick(s, npu_now_ns(), false);
}

/* Turns our GRANTED slot into the holder by taking the hold lock. Runs
 * without the queue lock, so a handoff costs the grantee one wakeup and
 * one fcntl: a GRANTED slot is ours alone (granters only touch WAITING
 * slots, the reaper only slots whose owner died). */
static int npu_take(npu *n)
{
    npu_shm *s = n->shm;
    npu_slot *me = &s->slots[n->slot];
    /* Busy only if someone outside the protocol holds the byte: then
     * wait for the kernel to let go. */
    if (npu_lk(n->fd, F_WRLCK, NPU_LK_HOLD, false) != 0 &&
        npu_lk(n->fd, F_WRLCK, NPU_LK_HOLD, true) != 0) {
        npu_qlock(n);
        npu_abandon(n);
        npu_qunlock(n);
        return CORE_EIO;
    }
    uint64_t now = npu_now_ns();
    NPU_STORE(me->state, NPU_S_HOLDING);
    if (me->handoff) {
        NPU_ADD(s->handoffs, 1);
        NPU_ADD(s->handoff_ns_sum, now - me->granted_ns);
    }
    n->hold_since_ns = now;
    n->held = true;
    n->slice_start_ns = now;
    n->slice_tokens = 0;
    return CORE_OK;
}

/* Waits with our slot queued. deadline 0: no bound. The queue lock is
 * held on entry and released on return. */
static int npu_wait_turn(npu *n, uint64_t deadline, npu_grant *g)
{
    npu_shm *s = n->shm;
    npu_slot *me = &s->slots[n->slot];
    uint64_t reap_ns = (uint64_t)n->p.reap_ms * 1000000u;
    for (;;) {
        uint64_t now = npu_now_ns();
        if (NPU_LOAD(me->state) == NPU_S_GRANTED) {
            npu_qunlock(n);
            g->outcome = NPU_GRANTED;
            return npu_take(n);
        }
        if (deadline && now >= deadline) {
            NPU_STORE(me->state, NPU_S_IDLE);
            NPU_STORE(s->n_waiting, s->n_waiting ? s->n_waiting - 1 : 0);
            s->timeouts++;
            npu_qunlock(n);
            g->outcome = NPU_TIMED_OUT;
            return CORE_OK;
        }
        uint64_t nap = reap_ns;
        if (deadline && deadline - now < nap)
            nap = deadline - now;
        uint32_t seen = NPU_LOAD(me->wake);
        npu_qunlock(n);
        npu_futex_wait(&me->wake, seen, nap);
        if (NPU_LOAD(me->state) == NPU_S_GRANTED) {
            g->outcome = NPU_GRANTED;
            return npu_take(n);
        }
        npu_qlock(n);
        if (me->state != NPU_S_GRANTED)
            npu_reap(n, false, npu_now_ns());
    }
}

/* This process's pid, kept current across fork() by an atfork handler:
 * every call checks that the handle was opened here (a forked copy must not
 * use it), and getpid() is a system call. */
static pid_t npu_self;

static void npu_after_fork(void)
{
    npu_self = getpid();
}

static void npu_self_init(void)
{
    npu_self = getpid();
    pthread_atfork(NULL, NULL, npu_after_fork);
}

static int npu_check(const npu *n)
{
    return n && n->pid == npu_self && n->shm ? CORE_OK : CORE_EINVAL;
}

/* ---- public ---------------------------------------------------------------- */

int npu_acquire(npu *n, int cls, npu_grant *out)
{
    npu_grant g = {.outcome = NPU_TIMED_OUT};
    if (npu_check(n) || !out || cls < 0 || cls >= n->p.n_classes || n->held)
        return CORE_EINVAL;
    npu_shm *s = n->shm;
    npu_slot *me = &s->slots[n->slot];
    uint64_t t0 = npu_now_ns();
    npu_qlock(n);
    npu_pick(s, t0, false); /* recounts n_waiting */
    if (s->n_waiting >= (uint32_t)n->p.max_waiters)
        npu_reap(n, true, t0);
    if (s->n_waiting >= (uint32_t)n->p.max_waiters) {
        s->rejected++;
        g.outcome = NPU_QUEUE_FULL;
        g.depth = (int)s->n_waiting;
        g.retry_after_s = npu_retry_calc(s);
        npu_qunlock(n);
        *out = g;
        return CORE_OK;
    }
    me->cls = (uint32_t)cls;
    me->ticket = s->next_ticket++;
    me->since_ns = t0;
    me->yielding = 0;
    NPU_STORE(me->state, NPU_S_WAITING);
    NPU_STORE(s->n_waiting, s->n_waiting + 1);
    npu_pick(s, t0, false);
    uint64_t deadline = t0 + (uint64_t)n->p.max_wait_ms * 1000000u;
    int rc = npu_wait_turn(n, deadline, &g);
    uint64_t waited = npu_now_ns() - t0;
    if (rc == CORE_OK && g.outcome == NPU_GRANTED) {
        NPU_ADD(s->acquired[cls], 1);
        npu_count_wait(s, waited);
    }
    g.wait_us = waited / 1000;
    g.depth = (int)NPU_LOAD(s->n_waiting);
    g.retry_after_s = g.outcome == NPU_GRANTED ? 0 : npu_retry_calc(s);
    *out = g;
    return rc;
}

/* Queue lock held. Ends our hold and lets the next waiter in. */
static void npu_drop(npu *n, uint64_t now)
{
    npu_shm *s = n->shm;
    uint64_t held = now - n->hold_since_ns;
    s->holds++;
    s->hold_ns_sum += held;
    uint64_t e = s->hold_ns_ewma;
    NPU_STORE(s->hold_ns_ewma, e ? e - e / 8 + held / 8 : held);
    npu_lk(n->fd, F_UNLCK, NPU_LK_HOLD, false);
    NPU_STORE(s->slots[n->slot].state, NPU_S_IDLE);
    if (s->holder == n->slot)
        s->holder = -1;
    n->held = false;
    npu_pick(s, now, true);
}

int npu_release(npu *n)
{
    if (npu_check(n) || !n->held)
        return CORE_EINVAL;
    npu_qlock(n);
    npu_drop(n, npu_now_ns());
    npu_qunlock(n);
    return CORE_OK;
}

int npu_yield(npu *n, bool *yielded)
{
    if (yielded)
        *yielded = false;
    if (npu_check(n) || !n->held)
        return CORE_EINVAL;
    npu_shm *s = n->shm;
    uint64_t now = npu_now_ns();
    if (NPU_LOAD(s->n_waiting) == 0) {
        n->slice_start_ns = now;
        n->slice_tokens = 0;
        return CORE_OK;
    }
    npu_qlock(n);
    npu_slot *me = &s->slots[n->slot];
    uint32_t cls = me->cls;
    npu_drop(n, now);
    int other = s->holder; /* whom the NPU went to */
    me->cls = cls;
    me->ticket = s->next_ticket++;
    me->since_ns = now;
    me->yielding = 1;
    NPU_STORE(me->state, NPU_S_WAITING);
    NPU_STORE(s->n_waiting, s->n_waiting + 1);
    npu_pick(s, now, true);
    if (other >= 0 && other != n->slot) {
        s->yields++;
        if (yielded)
            *yielded = true;
    }
    npu_grant g;
    return npu_wait_turn(n, 0, &g);
}

int npu_tick(npu *n, int tokens, bool *yielded)
{
    if (yielded)
        *yielded = false;
    if (npu_check(n) || !n->held)
        return CORE_EINVAL;
    if (tokens > 0)
        n->slice_tokens += tokens;
    bool over = n->slice_tokens >= n->p.slice_tokens ||
                npu_now_ns() - n->slice_start_ns >= (uint64_t)n->p.slice_ms * 1000000u;
    if (!over || NPU_LOAD(n->shm->n_waiting) == 0)
        return CORE_OK;
    return npu_yield(n, yielded);
}

bool npu_held(const npu *n)
{
    return n && n->held;
}

int npu_retry_after_s(npu *n)
{
    if (npu_check(n))
        return 1;
    return npu_retry_calc(n->shm);
}

int npu_get_stats(npu *n, npu_stats *out)
{
    if (npu_check(n) || !out)
        return CORE_EINVAL;
    memset(out, 0, sizeof(*out));
    npu_qlock(n);
    npu_shm *s = n->shm;
    npu_reap(n, true, npu_now_ns());
    out->holder_class = -1;
    for (int i = 0; i < (int)s->n_slots; i++) {
        const npu_slot *x = &s->slots[i];
        if (x->state == NPU_S_WAITING && x->cls < NPU_MAX_CLASSES) {
            out->depth++;
            out->depth_by_class[x->cls]++;
        }
    }
    if (s->holder >= 0) {
        out->holder_pid = s->slots[s->holder].pid;
        out->holder_class = (int)s->slots[s->holder].cls;
    }
    for (int c = 0; c < NPU_MAX_CLASSES; c++)
        out->acquired[c] = NPU_LOAD(s->acquired[c]);
    for (int b = 0; b <= NPU_WAIT_BUCKETS; b++)
        out->wait_bucket[b] = NPU_LOAD(s->wait_bucket[b]);
    out->wait_us_sum = NPU_LOAD(s->wait_ns_sum) / 1000;
    out->holds = s->holds;
    out->hold_us_sum = s->hold_ns_sum / 1000;
    out->hold_us_mean_recent = s->hold_ns_ewma / 1000;
    out->handoffs = NPU_LOAD(s->handoffs);
    out->handoff_us_sum = NPU_LOAD(s->handoff_ns_sum) / 1000;
    out->yields = s->yields;
    out->timeouts = s->timeouts;
    out->rejected = s->rejected;
    out->dead_holders = s->dead_holders;
    out->dead_waiters = s->dead_waiters;
    npu_qunlock(n);
    return CORE_OK;
}

int npu_metrics_render(const npu_stats *s, sbuf *o)
{
    sbuf_puts(o, "# HELP edgegate_npu_queue_depth Requests waiting for the NPU.\n"
                 "# TYPE edgegate_npu_queue_depth gauge\n");
    for (int c = 0; c < NPU_MAX_CLASSES; c++)
        if (c < 2 || s->depth_by_class[c] || s->acquired[c])
            sbuf_printf(o, "edgegate_npu_queue_depth{class=\"%d\"} %d\n", c, s->depth_by_class[c]);
    sbuf_printf(o, "# HELP edgegate_npu_busy Whether a process holds the NPU.\n"
                   "# TYPE edgegate_npu_busy gauge\nedgegate_npu_busy %d\n",
                s->holder_pid ? 1 : 0);
    sbuf_puts(o, "# HELP edgegate_npu_acquired_total NPU acquisitions granted.\n"
                 "# TYPE edgegate_npu_acquired_total counter\n");
    for (int c = 0; c < NPU_MAX_CLASSES; c++)
        if (c < 2 || s->acquired[c])
            sbuf_printf(o, "edgegate_npu_acquired_total{class=\"%d\"} %llu\n", c,
                        (unsigned long long)s->acquired[c]);
    sbuf_puts(o, "# HELP edgegate_npu_wait_seconds Time from asking for the NPU to holding it.\n"
                 "# TYPE edgegate_npu_wait_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < NPU_WAIT_BUCKETS; b++) {
        cum += s->wait_bucket[b];
        sbuf_printf(o, "edgegate_npu_wait_seconds_bucket{le=\"%g\"} %llu\n",
                    (double)npu_wait_le_us[b] / 1e6, (unsigned long long)cum);
    }
    cum += s->wait_bucket[NPU_WAIT_BUCKETS];
    sbuf_printf(o, "edgegate_npu_wait_seconds_bucket{le=\"+Inf\"} %llu\n"
                   "edgegate_npu_wait_seconds_sum %.6f\nedgegate_npu_wait_seconds_count %llu\n",
                (unsigned long long)cum, (double)s->wait_us_sum / 1e6, (unsigned long long)cum);
    sbuf_printf(o, "# HELP edgegate_npu_hold_seconds_total Time the NPU was held.\n"
                   "# TYPE edgegate_npu_hold_seconds_total counter\n"
                   "edgegate_npu_hold_seconds_total %.6f\n"
                   "# HELP edgegate_npu_holds_total Hold episodes (each slice counts).\n"
                   "# TYPE edgegate_npu_holds_total counter\nedgegate_npu_holds_total %llu\n",
                (double)s->hold_us_sum / 1e6, (unsigned long long)s->holds);
    sbuf_printf(o, "# HELP edgegate_npu_handoffs_total Releases straight to a waiter.\n"
                   "# TYPE edgegate_npu_handoffs_total counter\nedgegate_npu_handoffs_total %llu\n"
                   "# HELP edgegate_npu_handoff_seconds_total Release to next holder, summed.\n"
                   "# TYPE edgegate_npu_handoff_seconds_total counter\n"
                   "edgegate_npu_handoff_seconds_total %.6f\n",
                (unsigned long long)s->handoffs, (double)s->handoff_us_sum / 1e6);
    sbuf_printf(o, "# HELP edgegate_npu_yields_total Slices handed to another stream.\n"
                   "# TYPE edgegate_npu_yields_total counter\nedgegate_npu_yields_total %llu\n"
                   "# HELP edgegate_npu_timeouts_total Requests that waited max_wait_ms.\n"
                   "# TYPE edgegate_npu_timeouts_total counter\nedgegate_npu_timeouts_total %llu\n"
                   "# HELP edgegate_npu_rejected_total Requests turned away by a full queue.\n"
                   "# TYPE edgegate_npu_rejected_total counter\nedgegate_npu_rejected_total %llu\n"
                   "# HELP edgegate_npu_dead_total Slots of dead processes cleared.\n"
                   "# TYPE edgegate_npu_dead_total counter\n"
                   "edgegate_npu_dead_total{role=\"holder\"} %llu\n"
                   "edgegate_npu_dead_total{role=\"waiter\"} %llu\n",
                (unsigned long long)s->yields, (unsigned long long)s->timeouts,
                (unsigned long long)s->rejected, (unsigned long long)s->dead_holders,
                (unsigned long long)s->dead_waiters);
    return o->oom ? -1 : 0;
}

/* ---- open / close ------------------------------------------------------------ */

static int npu_map(npu *n, char *msg, size_t msg_size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    n->map_size = (sizeof(npu_shm) + page - 1) / page * page;
    if (npu_lk(n->fd, F_WRLCK, NPU_LK_INIT, true) != 0)
        return core_errf(CORE_EIO, msg, msg_size, "locking %s: %s", n->path, strerror(errno));
    int rc = CORE_OK;
    struct stat st;
    if (fstat(n->fd, &st) != 0) {
        rc = core_errf(CORE_EIO, msg, msg_size, "stat %s: %s", n->path, strerror(errno));
        goto out;
    }
    bool fresh = (size_t)st.st_size < n->map_size;
    if (fresh && ftruncate(n->fd, (off_t)n->map_size) != 0) {
        rc = core_errf(CORE_EIO, msg, msg_size, "sizing %s: %s", n->path, strerror(errno));
        goto out;
    }
    void *p = mmap(NULL, n->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, n->fd, 0);
    if (p == MAP_FAILED) {
        rc = core_errf(CORE_EIO, msg, msg_size, "mapping %s: %s", n->path, strerror(errno));
        goto out;
    }
    n->shm = p;
    npu_shm *s = n->shm;
    if (s->magic != NPU_MAGIC || s->version != NPU_VERSION || s->n_slots != NPU_SLOTS ||
        s->table_size != sizeof(npu_shm)) {
        /* A table of another layout: rebuild it only if no one uses it. */
        bool used = false;
        for (int i = 0; i < NPU_SLOTS && !used && !fresh && s->magic == NPU_MAGIC; i++)
            used = npu_lk_taken(n->fd, NPU_LK_SLOT + i);
        if (used) {
            rc = core_errf(CORE_EFORMAT, msg, msg_size,
                           "%s holds an NPU table of another version that is in use", n->path);
            goto out;
        }
        memset(s, 0, sizeof(*s));
        s->version = NPU_VERSION;
        s->n_slots = NPU_SLOTS;
        s->table_size = sizeof(npu_shm);
        s->holder = -1;
        s->next_ticket = 1;
        __atomic_store_n(&s->magic, NPU_MAGIC, __ATOMIC_RELEASE);
    }
out:
    npu_lk(n->fd, F_UNLCK, NPU_LK_INIT, false);
    return rc;
}

static int npu_claim_slot(npu *n, char *msg, size_t msg_size)
{
    npu_shm *s = n->shm;
    for (int i = 0; i < NPU_SLOTS; i++) {
        if (npu_lk(n->fd, F_WRLCK, NPU_LK_SLOT + i, false) != 0)
            continue;
        n->slot = i;
        npu_qlock(n);
        if (s->slots[i].state != NPU_S_IDLE || s->holder == i)
            npu_clear_dead(s, i); /* left by a process that died */
        s->slots[i].pid = (int32_t)n->pid;
        npu_pick(s, npu_now_ns(), false);
        npu_qunlock(n);
        return CORE_OK;
    }
    return core_errf(CORE_ENOMEM, msg, msg_size, "all %d NPU slots of %s are in use", NPU_SLOTS,
                     n->path);
}

int npu_open(const npu_params *p, npu **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || !p->lock_path || !*p->lock_path)
        return core_errf(CORE_EINVAL, msg, msg_size, "npu: lock_path is required");
    if (p->n_classes < 1 || p->n_classes > NPU_MAX_CLASSES)
        return core_errf(CORE_EINVAL, msg, msg_size, "npu: classes must be 1..%d",
                         NPU_MAX_CLASSES);
    if (p->max_waiters < 1 || p->max_waiters >= NPU_SLOTS)
        return core_errf(CORE_EINVAL, msg, msg_size, "npu: max_waiters must be 1..%d",
                         NPU_SLOTS - 1);
    if (p->max_wait_ms < 1 || p->slice_tokens < 1 || p->slice_ms < 1 || p->reap_ms < 1)
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "npu: max_wait_ms, slice_tokens, slice_ms and reap_ms must be >= 1");
    npu *n = calloc(1, sizeof(*n));
    if (!n)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    n->p = *p;
    n->fd = -1;
    n->slot = -1;
    static pthread_once_t npu_once = PTHREAD_ONCE_INIT;
    pthread_once(&npu_once, npu_self_init);
    n->pid = npu_self;
    int rc = CORE_OK;
    n->path = strdup(p->lock_path);
    if (!n->path) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    n->p.lock_path = n->path;
    n->fd = open(n->path, O_RDWR | O_CREAT | O_CLOEXEC, p->file_mode);
    if (n->fd < 0) {
        rc = core_errf(CORE_EIO, msg, msg_size, "opening NPU lock file %s: %s", n->path,
                       strerror(errno));
        goto out;
    }
    rc = npu_map(n, msg, msg_size);
    if (rc == CORE_OK)
        rc = npu_claim_slot(n, msg, msg_size);
out:
    if (rc != CORE_OK) {
        npu_close(n);
        return rc;
    }
    *out = n;
    return CORE_OK;
}

void npu_close(npu *n)
{
    if (!n)
        return;
    if (n->shm && n->pid == npu_self && n->slot >= 0) {
        npu_qlock(n);
        if (n->held)
            npu_drop(n, npu_now_ns());
        npu_abandon(n);
        n->shm->slots[n->slot].pid = 0;
        npu_qunlock(n);
    }
    if (n->shm)
        munmap(n->shm, n->map_size);
    if (n->fd >= 0)
        close(n->fd); /* drops every lock of this description */
    free(n->path);
    free(n);
}
