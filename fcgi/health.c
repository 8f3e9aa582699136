/* health.c: see health.h.
 *
 * Format of the sysfs files read here: thermal_zoneN/type holds the zone's
 * name and a newline, thermal_zoneN/temp a decimal integer in millidegrees
 * Celsius and a newline. The backlog comes from a NETLINK_SOCK_DIAG reply:
 * nlmsghdr, struct unix_diag_msg, then rtattrs; UNIX_DIAG_RQLEN holds
 * struct unix_diag_rqlen, whose rqueue is, for a listening socket, the
 * number of connections not yet accepted.
 */
#include "health.h"

#include <dirent.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "json.h"

static int health_read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

int health_npu_temp(const char *dir, double *celsius)
{
    if (!dir)
        dir = "/sys/class/thermal";
    DIR *d = opendir(dir);
    if (!d)
        return CORE_ENOTFOUND;
    int rc = CORE_ENOTFOUND;
    struct dirent *e;
    while ((e = readdir(d)) && rc != CORE_OK) {
        if (strncmp(e->d_name, "thermal_zone", 12) != 0)
            continue;
        char path[512], type[64], temp[64];
        snprintf(path, sizeof(path), "%s/%s/type", dir, e->d_name);
        if (health_read_small(path, type, sizeof(type)))
            continue;
        for (char *p = type; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        if (!strstr(type, "npu") && !strstr(type, "nsp"))
            continue;
        snprintf(path, sizeof(path), "%s/%s/temp", dir, e->d_name);
        if (health_read_small(path, temp, sizeof(temp)))
            continue;
        char *end;
        errno = 0;
        long milli = strtol(temp, &end, 10);
        if (errno || end == temp || *end)
            continue;
        *celsius = (double)milli / 1000.0;
        rc = CORE_OK;
    }
    closedir(d);
    return rc;
}

int health_render(const health_status *h, sbuf *out)
{
    bool all_loaded = true;
    for (size_t i = 0; i < h->n_models; i++)
        all_loaded = all_loaded && h->models[i].loaded;
    const char *status = !h->model_loaded ? "unavailable"
                         : h->workers_alive < h->workers_configured || !all_loaded ? "degraded"
                                                                                   : "ok";
    sbuf_puts(out, "{\"status\":\"");
    sbuf_puts(out, status);
    sbuf_puts(out, "\",\"model\":{\"id\":");
    json_put_str(out, h->model_id ? h->model_id : "", h->model_id ? strlen(h->model_id) : 0);
    sbuf_printf(out, ",\"loaded\":%s},\"workers\":{\"alive\":%d,\"configured\":%d},",
                h->model_loaded ? "true" : "false", h->workers_alive, h->workers_configured);
    if (h->has_temp)
        sbuf_printf(out, "\"npu_temp_c\":%.1f,", h->npu_temp_c);
    else
        sbuf_puts(out, "\"npu_temp_c\":null,");
    sbuf_printf(out, "\"queue_depth\":%lld,\"in_flight\":%lld,", h->queue_depth, h->in_flight);
    if (h->has_backlog)
        sbuf_printf(out, "\"backlog\":%lld,", h->backlog);
    else
        sbuf_puts(out, "\"backlog\":null,");
    if (!h->has_npu) {
        sbuf_puts(out, "\"npu\":null");
    } else {
        sbuf_printf(out, "\"npu\":{\"busy\":%s,", h->npu_busy ? "true" : "false");
        if (h->npu_holder_pid > 0)
            sbuf_printf(out, "\"holder_pid\":%d,", h->npu_holder_pid);
        else
            sbuf_puts(out, "\"holder_pid\":null,");
        sbuf_printf(out,
                    "\"queue_depth\":%lld,\"hold_ms_mean_recent\":%.3f,\"handoffs\":%lld,"
                    "\"timeouts\":%lld,\"rejected\":%lld}",
                    h->npu_depth, h->npu_hold_ms_mean_recent, h->npu_handoffs, h->npu_timeouts,
                    h->npu_rejected);
    }
    sbuf_puts(out, ",\"models\":[");
    for (size_t i = 0; i < h->n_models; i++) {
        const health_model *m = &h->models[i];
        sbuf_puts(out, i ? ",{\"id\":" : "{\"id\":");
        json_put_str(out, m->id, strlen(m->id));
        if (m->type)
            sbuf_printf(out, ",\"type\":\"%s\"", m->type);
        else
            sbuf_puts(out, ",\"type\":null");
        sbuf_printf(out, ",\"loaded\":%s}", m->loaded ? "true" : "false");
    }
    sbuf_puts(out, "]}");
    return h->model_loaded ? 200 : 503;
}

struct health_probe {
    int nl;      /* NETLINK_SOCK_DIAG socket */
    uint32_t ino; /* inode of the listening socket */
};

health_probe *health_probe_new(int listen_fd)
{
    struct stat st;
    if (fstat(listen_fd, &st) != 0)
        return NULL;
    health_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->ino = (uint32_t)st.st_ino;
    p->nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    long long n;
    if (p->nl < 0 || health_backlog(p, &n) != CORE_OK) {
        health_probe_free(p);
        return NULL;
    }
    return p;
}

void health_probe_free(health_probe *p)
{
    if (!p)
        return;
    if (p->nl >= 0)
        close(p->nl);
    free(p);
}

int health_backlog(health_probe *p, long long *pending)
{
    struct {
        struct nlmsghdr nh;
        struct unix_diag_req r;
    } q = {.nh = {.nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                  .nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = 1},
           .r = {.sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = p->ino,
                 .udiag_show = UDIAG_SHOW_RQLEN, .udiag_cookie = {~0u, ~0u}}};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    long buf[1024];
    if (sendto(p->nl, &q, sizeof(q), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return CORE_EIO;
    ssize_t n = recv(p->nl, buf, sizeof(buf), 0);
    if (n <= 0)
        return CORE_EIO;
    int rc = CORE_EIO;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
         h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
            h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg)))
            continue;
        struct unix_diag_msg *m = NLMSG_DATA(h);
        if (m->udiag_ino != p->ino)
            continue;
        int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
        for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type == UNIX_DIAG_RQLEN &&
                RTA_PAYLOAD(a) >= sizeof(struct unix_diag_rqlen)) {
                struct unix_diag_rqlen *ql = RTA_DATA(a);
                *pending = ql->udiag_rqueue;
                rc = CORE_OK;
            }
        }
    }
    return rc;
}
