/* health.c: see health.h.
 *
 * Format of the sysfs files read here: thermal_zoneN/type holds the zone's
 * name and a newline, thermal_zoneN/temp a decimal integer in millidegrees
 * Celsius and a newline.
 */
#include "health.h"

#include <dirent.h>
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
    const char *status = !h->model_loaded ? "unavailable"
                         : h->workers_alive < h->workers_configured ? "degraded"
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
    sbuf_printf(out, "\"queue_depth\":%lld}", h->queue_depth);
    return h->model_loaded ? 200 : 503;
}
