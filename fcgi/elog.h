/* elog.h: JSON-lines logging for the master and the workers.
 *
 * Every line is one JSON object; whole lines go out with a single write(2)
 * to a file opened O_APPEND (or stderr), so lines from several processes
 * never interleave. Fields: ts (UTC, ms), level, pid, msg, then the caller's.
 * Process-global state: elog_open() in the master before fork; workers
 * inherit the descriptor. Not for use from signal handlers.
 */
#ifndef ELOG_H
#define ELOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { ELOG_ERROR = 0, ELOG_WARN, ELOG_INFO, ELOG_DEBUG } elog_level;

typedef enum { ELOG_T_STR, ELOG_T_INT, ELOG_T_DBL, ELOG_T_BOOL } elog_type;

typedef struct {
    const char *key;
    elog_type type;
    const char *s; /* ELOG_T_STR; NULL is written as null */
    long long i;   /* ELOG_T_INT, ELOG_T_BOOL */
    double d;      /* ELOG_T_DBL */
} elog_field;

#define ELOG_S(k, v) ((elog_field){.key = (k), .type = ELOG_T_STR, .s = (v)})
#define ELOG_I(k, v) ((elog_field){.key = (k), .type = ELOG_T_INT, .i = (long long)(v)})
#define ELOG_D(k, v) ((elog_field){.key = (k), .type = ELOG_T_DBL, .d = (double)(v)})
#define ELOG_B(k, v) ((elog_field){.key = (k), .type = ELOG_T_BOOL, .i = (v) ? 1 : 0})

/* path "-" or NULL: stderr. Reopening (SIGHUP, log rotation) is allowed;
 * on failure the previous destination stays. */
int elog_open(const char *path, elog_level level, char *msg, size_t msg_size);
void elog_close(void);
/* Call in a forked child: the pid in each line is cached, not asked for. */
void elog_after_fork(void);
/* on: info and debug lines are held in memory (up to 4 KiB) and written
 * together, with the next warning or error, or at elog_flush(): a write
 * per request costs a system call. A process that holds lines flushes
 * them before it waits; lines held when it dies are lost. off: flushes. */
void elog_hold(bool on);
void elog_flush(void);
void elog_set_level(elog_level level);
bool elog_enabled(elog_level level);
/* "error", "warn", "info", "debug"; returns -1 when unknown. */
int elog_level_parse(const char *s, elog_level *out);

/* One line with msg and n extra fields. */
void elog_fields(elog_level level, const char *msg, const elog_field *f, size_t n);
/* One line with a printf-formatted msg and no extra fields. */
void elog_msg(elog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* elog_ev(ELOG_INFO, "worker started", ELOG_I("slot", 1), ELOG_S("model", id)); */
#define elog_ev(level, msg, ...)                                                          \
    do {                                                                               \
        const elog_field elog_f_[] = {__VA_ARGS__};                                    \
        elog_fields((level), (msg), elog_f_, sizeof(elog_f_) / sizeof(elog_f_[0]));    \
    } while (0)

#endif
