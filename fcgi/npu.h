/* npu.h: the NPU arbiter, a fair cross-process lock for the one accelerator.
 *
 * Every inference runs while its process holds the NPU. The lock is a set of
 * Linux open-file-description (OFD) fcntl locks on one lock file from the
 * config, and the queue that makes it fair is a small table mapped from the
 * same file (MAP_SHARED), so unrelated processes that open the same path
 * agree on one queue. Byte ranges far past the table carry the locks:
 *
 *   NPU_LK_INIT  taken while a process creates or checks the table
 *   NPU_LK_QUEUE guards the table (held for microseconds)
 *   NPU_LK_HOLD  held by the process that holds the NPU
 *   NPU_LK_SLOT+i held by the owner of table slot i for the handle's life
 *
 * The kernel drops all of a process's locks when it dies, also on SIGKILL:
 * the hold lock goes at once, and the queue notices the dead owner of a
 * slot through its slot lock (probed with F_OFD_GETLK every reap_ms while
 * someone waits), so a dead holder or a dead waiter never wedges the NPU.
 * The hold lock is the mutual exclusion itself; the queue only decides who
 * takes it next: the waiting slot with the lowest (class, ticket), where
 * tickets are handed out in arrival order. Class 0 is served first (short
 * jobs: vision, QA retrieval, embeddings); higher classes wait behind it
 * (chat generation). Strict priority: a steady stream of class 0 jobs can
 * delay class 1 work, which is why class 0 is meant for short jobs only.
 *
 * Long holders share: npu_tick() counts generated tokens and, once the
 * slice (slice_tokens or slice_ms) is used up and someone waits, hands the
 * NPU to the next waiter and queues the caller again with a fresh ticket,
 * so concurrent streams interleave slice by slice.
 *
 * Waiting is bounded: at most max_waiters waiting slots, and at most
 * max_wait_ms per acquire; past either, npu_acquire() returns CORE_OK with
 * outcome NPU_QUEUE_FULL or NPU_TIMED_OUT and a Retry-After estimate (queue
 * depth x recent mean hold time). A re-queue after a yield is not bounded
 * (the request was admitted already; it waits one round of slices).
 *
 * Processes: call npu_open() after fork() and use a handle only in the
 * process that opened it (the functions check). A child that inherits an
 * open handle shares its OFD locks, which would keep a dead parent's slot
 * looking alive, so never fork with a handle open (or close it in the
 * child at once). One handle serves one request at a time; it is not
 * thread-safe.
 *
 * Ownership: npu_open() returns a handle the caller frees with npu_close()
 * (which releases the NPU if held). Strings in npu_params are copied.
 */
#ifndef NPU_H
#define NPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define NPU_MAX_CLASSES 4
#define NPU_SLOTS 128 /* processes that may have the file open at once */
/* Wait-time histogram upper bounds in microseconds; one more bucket is +Inf. */
#define NPU_WAIT_BUCKETS 12

typedef struct {
    const char *lock_path; /* required; created (mode file_mode) when absent */
    unsigned file_mode;    /* 0660 */
    int n_classes;         /* 2; classes are 0 (first) .. n_classes-1 */
    int max_waiters;       /* 16; waiting slots at once, all classes */
    int max_wait_ms;       /* 2000; per npu_acquire() */
    int slice_tokens;      /* 8; npu_tick(): tokens per slice */
    int slice_ms;          /* 50; npu_tick(): milliseconds per slice */
    int reap_ms;           /* 10; how often a waiter checks for a dead holder */
} npu_params;

npu_params npu_default_params(void);

typedef struct npu npu;

/* CORE_EINVAL for bad params, CORE_EIO when the file cannot be opened,
 * mapped or locked, CORE_EFORMAT when it holds a table of another layout
 * that is in use, CORE_ENOMEM when all NPU_SLOTS slots are taken. */
int npu_open(const npu_params *p, npu **out, char *msg, size_t msg_size);
void npu_close(npu *n); /* NULL is a no-op; releases the NPU when held */

typedef enum {
    NPU_GRANTED = 0,
    NPU_QUEUE_FULL, /* max_waiters were waiting already: answer 503 */
    NPU_TIMED_OUT,  /* waited max_wait_ms: answer 503 */
} npu_outcome;

typedef struct {
    npu_outcome outcome;
    uint64_t wait_us;   /* time spent waiting */
    int depth;          /* waiters (others) when this call returned */
    int retry_after_s;  /* for Retry-After when not granted; >= 1 */
} npu_grant;

/* Waits for the NPU in class cls. Returns CORE_OK with out->outcome telling
 * whether the NPU is now held; an error code only when the arbiter itself
 * fails (CORE_EIO) or the call is wrong (CORE_EINVAL: bad class, already
 * held, handle from another process). */
int npu_acquire(npu *n, int cls, npu_grant *out);
/* Gives the NPU up; CORE_EINVAL when not held. */
int npu_release(npu *n);
/* Counts tokens of the current slice; once the slice is over and another
 * process waits, yields (see npu_yield). *yielded may be NULL. */
int npu_tick(npu *n, int tokens, bool *yielded);
/* Hands the NPU to the next waiter when there is one, waits for its turn
 * again (no bound) and returns holding the NPU. Without waiters it only
 * starts a new slice. *yielded says whether another process ran. */
int npu_yield(npu *n, bool *yielded);
bool npu_held(const npu *n);
/* Retry-After seconds for a request turned away now (>= 1). */
int npu_retry_after_s(npu *n);

typedef struct {
    int depth;                             /* waiting now */
    int depth_by_class[NPU_MAX_CLASSES];
    int holder_pid;                        /* 0: free */
    int holder_class;                      /* -1: free */
    uint64_t acquired[NPU_MAX_CLASSES];    /* granted npu_acquire() calls */
    uint64_t wait_bucket[NPU_WAIT_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t wait_us_sum;
    uint64_t holds;                        /* hold episodes (slices count apart) */
    uint64_t hold_us_sum;
    uint64_t hold_us_mean_recent;          /* moving average, for Retry-After */
    uint64_t handoffs;                     /* released straight to a waiter */
    uint64_t handoff_us_sum;               /* release to the next holder running */
    uint64_t yields;                       /* slices handed to another process */
    uint64_t timeouts, rejected;           /* NPU_TIMED_OUT, NPU_QUEUE_FULL */
    uint64_t dead_holders, dead_waiters;   /* slots of dead processes cleared */
} npu_stats;

/* Upper bounds of wait_bucket[0..NPU_WAIT_BUCKETS-1] in microseconds. */
extern const uint64_t npu_wait_le_us[NPU_WAIT_BUCKETS];

int npu_get_stats(npu *n, npu_stats *out);
/* Prometheus text (families edgegate_npu_*); 0 or -1 when out of memory. */
int npu_metrics_render(const npu_stats *s, sbuf *out);

#endif
