/* json.c: JSON text -> json_value tree; see json.h.
 *
 * Format: RFC 8259 JSON, one value, no comments, no trailing garbage (yajl's
 * defaults). Numbers keep their exact integer value when they have no
 * fraction or exponent and fit in int64; everything else is a double.
 */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "core_err.h"

typedef struct {
    arena *a;
    json_value *root;
    json_value *stack[JSON_MAX_DEPTH];
    int depth;
    const char *key; /* pending member name in an object */
    size_t key_len;
    const char *why; /* reason for a cancel */
} json_ctx;

static json_value *json_add(json_ctx *c, json_type t)
{
    json_value *v = arena_calloc(c->a, 1, sizeof(*v));
    if (!v) {
        c->why = "out of memory";
        return NULL;
    }
    v->type = t;
    if (c->depth == 0) {
        c->root = v;
        return v;
    }
    json_value *parent = c->stack[c->depth - 1];
    if (parent->type == JSON_OBJECT) {
        v->key = c->key;
        v->key_len = c->key_len;
        c->key = NULL;
    }
    if (parent->u.kids.last)
        parent->u.kids.last->next = v;
    else
        parent->u.kids.first = v;
    parent->u.kids.last = v;
    parent->u.kids.n++;
    return v;
}

static int json_on_null(void *ctx)
{
    return json_add(ctx, JSON_NULL) != NULL;
}

static int json_on_bool(void *ctx, int b)
{
    json_value *v = json_add(ctx, JSON_BOOL);
    if (v)
        v->u.b = b != 0;
    return v != NULL;
}

static int json_on_number(void *ctx, const char *s, size_t len)
{
    json_ctx *c = ctx;
    char tmp[64];
    if (len >= sizeof(tmp)) {
        /* yajl already checked the grammar; such a long literal is only
         * useful as an attack on strtod, and no field of ours needs it. */
        c->why = "number literal too long";
        return 0;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    json_value *v = json_add(c, JSON_NUMBER);
    if (!v)
        return 0;
    v->u.num.d = strtod(tmp, NULL);
    if (!strpbrk(tmp, ".eE")) {
        errno = 0;
        long long i = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->u.num.i = i;
            v->u.num.is_int = true;
        }
    }
    return 1;
}

static int json_on_string(void *ctx, const unsigned char *s, size_t len)
{
    json_ctx *c = ctx;
    char *copy = arena_strndup(c->a, (const char *)s, len);
    if (!copy) {
        c->why = "out of memory";
        return 0;
    }
    json_value *v = json_add(c, JSON_STRING);
    if (!v)
        return 0;
    v->u.str.s = copy;
    v->u.str.len = len;
    return 1;
}

static int json_push(json_ctx *c, json_type t)
{
    if (c->depth >= JSON_MAX_DEPTH) {
        c->why = "nesting too deep";
        return 0;
    }
    json_value *v = json_add(c, t);
    if (!v)
        return 0;
    c->stack[c->depth++] = v;
    return 1;
}

static int json_on_start_map(void *ctx)
{
    return json_push(ctx, JSON_OBJECT);
}

static int json_on_start_array(void *ctx)
{
    return json_push(ctx, JSON_ARRAY);
}

static int json_on_end(void *ctx)
{
    json_ctx *c = ctx;
    c->depth--;
    return 1;
}

static int json_on_key(void *ctx, const unsigned char *s, size_t len)
{
    json_ctx *c = ctx;
    c->key = arena_strndup(c->a, (const char *)s, len);
    c->key_len = len;
    if (!c->key) {
        c->why = "out of memory";
        return 0;
    }
    return 1;
}

static const yajl_callbacks json_callbacks = {
    .yajl_null = json_on_null,
    .yajl_boolean = json_on_bool,
    .yajl_number = json_on_number,
    .yajl_string = json_on_string,
    .yajl_start_map = json_on_start_map,
    .yajl_map_key = json_on_key,
    .yajl_end_map = json_on_end,
    .yajl_start_array = json_on_start_array,
    .yajl_end_array = json_on_end,
};

int json_parse(arena *a, const char *buf, size_t len, json_value **out, char *msg,
               size_t msg_size)
{
    json_ctx c = {.a = a};
    int rc = CORE_OK;
    *out = NULL;
    yajl_handle h = yajl_alloc(&json_callbacks, NULL, &c);
    if (!h)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    yajl_config(h, yajl_dont_validate_strings, 1);
    yajl_status st = yajl_parse(h, (const unsigned char *)buf, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st == yajl_status_client_canceled) {
        rc = core_errf(strcmp(c.why, "out of memory") ? CORE_EFORMAT : CORE_ENOMEM, msg,
                       msg_size, "%s at byte %zu", c.why, yajl_get_bytes_consumed(h));
        goto out;
    }
    if (st != yajl_status_ok) {
        unsigned char *e = yajl_get_error(h, 0, (const unsigned char *)buf, len);
        /* yajl's messages end with a newline and carry a "parse error: "
         * style prefix; keep them short and on one line. */
        char reason[128];
        snprintf(reason, sizeof(reason), "%s", e ? (const char *)e : "invalid JSON");
        reason[strcspn(reason, "\n")] = '\0';
        if (e)
            yajl_free_error(h, e);
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "%s", reason);
        goto out;
    }
    if (!c.root) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "empty body");
        goto out;
    }
    *out = c.root;
out:
    yajl_free(h);
    return rc;
}

json_value *json_get(const json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    size_t kl = strlen(key);
    for (json_value *v = obj->u.kids.first; v; v = v->next)
        if (v->key_len == kl && memcmp(v->key, key, kl) == 0)
            return v;
    return NULL;
}

const char *json_type_name(json_type t)
{
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t json_utf8_seq(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned min;
    unsigned cp;
    if ((c & 0xE0) == 0xC0) {
        n = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = json_utf8_seq(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

int json_put_str(sbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    sbuf_putc(b, '"');
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c >= 0x80) {
            size_t n = json_utf8_seq(p + i, len - i);
            if (n) {
                sbuf_put(b, p + i, n);
                i += n;
            } else {
                sbuf_puts(b, "\\ufffd");
                i++;
            }
            continue;
        }
        switch (c) {
        case '"': sbuf_puts(b, "\\\""); break;
        case '\\': sbuf_puts(b, "\\\\"); break;
        case '\n': sbuf_puts(b, "\\n"); break;
        case '\r': sbuf_puts(b, "\\r"); break;
        case '\t': sbuf_puts(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sbuf_put(b, e, 6);
            } else {
                sbuf_putc(b, (char)c);
            }
        }
        i++;
    }
    return sbuf_putc(b, '"');
}
