/* elog.c: see elog.h. */
#include "elog.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"
#include "json.h"
#include "sbuf.h"

static int elog_fd = STDERR_FILENO;
static elog_level elog_cur = ELOG_INFO;
static pid_t elog_pid;
/* Lines held by elog_hold(): at most PIPE_BUF bytes, so that one write of
 * them stays whole on a pipe too. */
#define ELOG_HOLD_MAX 4096
static bool elog_holding;
static char elog_held[ELOG_HOLD_MAX];
static size_t elog_held_len;

int elog_open(const char *path, elog_level level, char *msg, size_t msg_size)
{
    int fd = STDERR_FILENO;
    if (path && strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
            return core_errf(CORE_EIO, msg, msg_size, "cannot open log file %s: %s", path,
                             strerror(errno));
    }
    if (elog_fd != STDERR_FILENO)
        close(elog_fd);
    elog_fd = fd;
    elog_cur = level;
    return CORE_OK;
}

void elog_close(void)
{
    if (elog_fd != STDERR_FILENO)
        close(elog_fd);
    elog_fd = STDERR_FILENO;
}

void elog_after_fork(void)
{
    elog_pid = getpid();
}

void elog_set_level(elog_level level)
{
    elog_cur = level;
}

bool elog_enabled(elog_level level)
{
    return level <= elog_cur;
}

int elog_level_parse(const char *s, elog_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (elog_level)i;
            return 0;
        }
    return -1;
}

static void elog_begin(sbuf *b, elog_level level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    /* the date and time change once a second: format them then */
    static time_t elog_sec = -1;
    static char elog_when[40];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != elog_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(elog_when, sizeof(elog_when), "{\"ts\":\"%Y-%m-%dT%H:%M:%S.", &tm);
        elog_sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    char frac[4] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 0};
    sbuf_puts(b, elog_when);
    sbuf_puts(b, frac);
    sbuf_puts(b, "Z\",\"level\":\"");
    sbuf_puts(b, names[level]);
    sbuf_puts(b, "\",\"pid\":");
    sbuf_put_int(b, (long long)(elog_pid ? elog_pid : getpid()));
}

static void elog_write(const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(elog_fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void elog_hold(bool on)
{
    elog_flush();
    elog_holding = on;
}

void elog_flush(void)
{
    elog_write(elog_held, elog_held_len);
    elog_held_len = 0;
}

static void elog_end(sbuf *b, elog_level level)
{
    sbuf_puts(b, "}\n");
    if (b->oom)
        return;
    if (elog_holding && level >= ELOG_INFO && b->len <= ELOG_HOLD_MAX) {
        if (elog_held_len + b->len > ELOG_HOLD_MAX)
            elog_flush();
        memcpy(elog_held + elog_held_len, b->data, b->len);
        elog_held_len += b->len;
        return;
    }
    /* Whole lines per write: O_APPEND keeps lines from all processes whole. */
    elog_flush();
    elog_write(b->data, b->len);
}

void elog_fields(elog_level level, const char *msg, const elog_field *f, size_t n)
{
    if (!elog_enabled(level))
        return;
    sbuf b;
    sbuf_init(&b);
    elog_begin(&b, level);
    sbuf_puts(&b, ",\"msg\":");
    json_put_str(&b, msg, strlen(msg));
    for (size_t i = 0; i < n; i++) {
        sbuf_putc(&b, ',');
        json_put_str(&b, f[i].key, strlen(f[i].key));
        sbuf_putc(&b, ':');
        switch (f[i].type) {
        case ELOG_T_STR:
            if (f[i].s)
                json_put_str(&b, f[i].s, strlen(f[i].s));
            else
                sbuf_puts(&b, "null");
            break;
        case ELOG_T_INT: sbuf_put_int(&b, f[i].i); break;
        case ELOG_T_DBL:
            if (isfinite(f[i].d))
                sbuf_printf(&b, "%.6g", f[i].d);
            else
                sbuf_puts(&b, "null");
            break;
        case ELOG_T_BOOL: sbuf_puts(&b, f[i].i ? "true" : "false"); break;
        }
    }
    elog_end(&b, level);
    sbuf_free(&b);
}

void elog_msg(elog_level level, const char *fmt, ...)
{
    if (!elog_enabled(level))
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    elog_fields(level, text, NULL, 0);
}
