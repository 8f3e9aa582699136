/* det_cfg.c: darknet .cfg syntax (see det_cfg.h for the format). */
#include "det_cfg.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"

enum { DET_CFG_MAX_BYTES = 4 << 20 };

void det_cfg_free(det_cfg *c)
{
    if (!c)
        return;
    free(c->sects);
    free(c->opt_store);
    free(c->text);
    memset(c, 0, sizeof *c);
}

int det_cfg_parse(const char *text, size_t len, det_cfg *out, char *msg, size_t msg_size)
{
    memset(out, 0, sizeof *out);
    if (len > DET_CFG_MAX_BYTES)
        return core_errf(CORE_EINVAL, msg, msg_size, "cfg is %zu bytes, over the %d limit", len,
                         DET_CFG_MAX_BYTES);
    det_cfg c = {0};
    int rc = CORE_ENOMEM;
    /* Upper bounds for the arrays: one section or option per line. */
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    if (!(c.text = malloc(len + 1)) || !(c.sects = calloc(n_lines, sizeof *c.sects)) ||
        !(c.opt_store = calloc(n_lines, sizeof *c.opt_store)))
        goto out;
    memcpy(c.text, text, len);
    c.text[len] = 0;
    int n_opts = 0, line = 0;
    for (char *p = c.text;;) {
        char *nl = memchr(p, '\n', (size_t)(c.text + len - p));
        char *end = nl ? nl : c.text + len;
        line++;
        /* strip all whitespace in place, as darknet does */
        char *d = p;
        for (char *s = p; s < end; s++) {
            if (*s == 0) {
                rc = core_errf(CORE_EFORMAT, msg, msg_size, "line %d: NUL byte", line);
                goto out;
            }
            if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\v' && *s != '\f')
                *d++ = *s;
        }
        *d = 0;
        if (*p == 0 || *p == '#' || *p == ';') {
            /* comment or blank */
        } else if (*p == '[') {
            if (d - p < 3 || d[-1] != ']') {
                rc = core_errf(CORE_EFORMAT, msg, msg_size, "line %d: bad section header '%.40s'",
                               line, p);
                goto out;
            }
            d[-1] = 0;
            c.sects[c.n_sects++] = (det_cfg_sect){.type = p + 1, .line = line, .opts = c.opt_store + n_opts};
        } else {
            char *eq = strchr(p, '=');
            if (!eq || eq == p) {
                rc = core_errf(CORE_EFORMAT, msg, msg_size, "line %d: expected key=value, got '%.40s'",
                               line, p);
                goto out;
            }
            if (!c.n_sects) {
                rc = core_errf(CORE_EFORMAT, msg, msg_size, "line %d: option before the first section",
                               line);
                goto out;
            }
            *eq = 0;
            c.opt_store[n_opts++] = (det_cfg_opt){.key = p, .val = eq + 1, .line = line};
            c.sects[c.n_sects - 1].n_opts++;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    *out = c;
    return 0;
out:
    det_cfg_free(&c);
    return rc;
}

static det_cfg_opt *det_cfg_find(det_cfg_sect *s, const char *key)
{
    det_cfg_opt *found = NULL;
    for (int i = 0; i < s->n_opts; i++)
        if (!strcmp(s->opts[i].key, key)) {
            s->opts[i].used = true;
            found = &s->opts[i];
        }
    return found;
}

const char *det_cfg_str(det_cfg_sect *s, const char *key)
{
    det_cfg_opt *o = det_cfg_find(s, key);
    return o ? o->val : NULL;
}

static int det_cfg_parse_int(const char *s, char **end, int *v)
{
    errno = 0;
    long x = strtol(s, end, 10);
    if (*end == s || errno || x < INT_MIN || x > INT_MAX)
        return -1;
    *v = (int)x;
    return 0;
}

static int det_cfg_parse_float(const char *s, char **end, float *v)
{
    errno = 0;
    float x = strtof(s, end);
    if (*end == s || errno || !isfinite(x))
        return -1;
    *v = x;
    return 0;
}

int det_cfg_int(det_cfg_sect *s, const char *key, int def, int *val, char *msg, size_t msg_size)
{
    det_cfg_opt *o = det_cfg_find(s, key);
    char *end;
    *val = def;
    if (o && (det_cfg_parse_int(o->val, &end, val) || *end))
        return core_errf(CORE_EFORMAT, msg, msg_size, "line %d: %s=%.40s is not an integer", o->line,
                         key, o->val);
    return 0;
}

int det_cfg_float(det_cfg_sect *s, const char *key, float def, float *val, char *msg, size_t msg_size)
{
    det_cfg_opt *o = det_cfg_find(s, key);
    char *end;
    *val = def;
    if (o && (det_cfg_parse_float(o->val, &end, val) || *end))
        return core_errf(CORE_EFORMAT, msg, msg_size, "line %d: %s=%.40s is not a number", o->line,
                         key, o->val);
    return 0;
}

/* Items separated by ',' (a trailing ',' is tolerated, as darknet does). */
static int det_cfg_list(det_cfg_sect *s, const char *key, bool is_float, void **vals, int *n, char *msg,
                        size_t msg_size)
{
    det_cfg_opt *o = det_cfg_find(s, key);
    *vals = NULL;
    *n = 0;
    if (!o)
        return 0;
    size_t cap = 1;
    for (const char *p = o->val; *p; p++)
        cap += *p == ',';
    char *buf = malloc(cap * 4);
    if (!buf)
        return core_errf(CORE_ENOMEM, msg, msg_size, "line %d: %s", o->line, key);
    int k = 0;
    for (const char *p = o->val; *p;) {
        char *end;
        int bad = is_float ? det_cfg_parse_float(p, &end, (float *)buf + k)
                           : det_cfg_parse_int(p, &end, (int *)buf + k);
        if (bad || (*end && *end != ',')) {
            free(buf);
            return core_errf(CORE_EFORMAT, msg, msg_size, "line %d: %s: bad list item '%.20s'", o->line,
                             key, p);
        }
        k++;
        p = *end ? end + 1 : end;
    }
    if (!k) {
        free(buf);
        return core_errf(CORE_EFORMAT, msg, msg_size, "line %d: %s: empty list", o->line, key);
    }
    *vals = buf;
    *n = k;
    return 0;
}

int det_cfg_floats(det_cfg_sect *s, const char *key, float **vals, int *n, char *msg, size_t msg_size)
{
    return det_cfg_list(s, key, true, (void **)vals, n, msg, msg_size);
}

int det_cfg_ints(det_cfg_sect *s, const char *key, int **vals, int *n, char *msg, size_t msg_size)
{
    return det_cfg_list(s, key, false, (void **)vals, n, msg, msg_size);
}
