/* health.h: the GET /health body and the NPU temperature probe.
 *
 * Ownership: all arguments are borrowed for the call.
 */
#ifndef HEALTH_H
#define HEALTH_H

#include <stdbool.h>

#include "metrics.h"
#include "sbuf.h"

/* One configured model as this worker sees it. */
typedef struct {
    const char *id;
    const char *type; /* "chat", "embedding", "detection"; NULL: unknown (not loaded) */
    bool loaded;
} health_model;

typedef struct {
    const char *model_id;   /* the default model */
    bool model_loaded;      /* in the worker answering */
    int workers_alive, workers_configured;
    bool has_temp;
    double npu_temp_c;
    long long in_flight;    /* other requests being served by the pool */
    bool has_backlog;
    long long backlog;      /* connections waiting for a worker */
    long long queue_depth;  /* in_flight + backlog + npu_depth: what a new request is behind */
    bool has_npu;           /* the arbiter answered */
    bool npu_busy;
    int npu_holder_pid;     /* 0: none */
    long long npu_depth;    /* requests waiting for the NPU */
    double npu_hold_ms_mean_recent;
    long long npu_handoffs, npu_timeouts, npu_rejected;
    const health_model *models; /* every configured model, n_models of them */
    size_t n_models;
} health_status;

/* Reads DIR/thermal_zoneN/temp (millidegrees) of the first zone whose type
 * names an NPU ("npu", "nsp"). dir NULL: /sys/class/thermal. Returns
 * CORE_OK, or CORE_ENOTFOUND when there is no such zone. */
int health_npu_temp(const char *dir, double *celsius);

/* Connections waiting in the listening unix socket's backlog for a worker
 * to accept them (sock_diag netlink, UNIX_DIAG_RQLEN). A probe keeps its
 * netlink socket open, so a query costs two syscalls.
 * health_probe_new() returns NULL when out of memory or when the kernel has
 * no unix sock_diag; health_backlog() then is never called. The probe
 * borrows listen_fd; free it with health_probe_free(). */
typedef struct health_probe health_probe;
health_probe *health_probe_new(int listen_fd);
void health_probe_free(health_probe *p); /* NULL is a no-op */
/* CORE_OK, or CORE_EIO when the kernel did not answer. */
int health_backlog(health_probe *p, long long *pending);

/* {"status":"ok"|"degraded"|"unavailable", "model":{"id","loaded"},
 *  "workers":{"alive","configured"}, "npu_temp_c": x|null, "queue_depth": n,
 *  "in_flight": n, "backlog": n|null,
 *  "npu": {"busy","holder_pid"|null,"queue_depth","hold_ms_mean_recent",
 *          "handoffs","timeouts","rejected"} | null,
 *  "models": [{"id","type"|null,"loaded"}]}
 * "degraded" when a worker is down or one of the models failed to load.
 * Returns the HTTP status to send: 200, or 503 when the default model is
 * not loaded here. */
int health_render(const health_status *h, sbuf *out);

#endif
