/* fuzz_kbadmin.c: libFuzzer harness for the POST /admin/kb/documents
 * request parser and the query-string decoder (fcgi/kbadmin.h). Input: the
 * first byte picks JSON or raw; up to the first newline is the query
 * string, the rest the body. Whatever is accepted has an id without NUL
 * bytes and content inside the body or the arena. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "core_err.h"
#include "kbadmin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static arena *a;
    if (!a)
        a = arena_new(0);
    arena_reset(a);
    const char *ct = data[0] & 1 ? "application/json; charset=utf-8" : "text/markdown";
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t ql = nl ? (size_t)(nl - rest) : n;
    char *qs = arena_strndup(a, rest, ql);
    const char *body = nl ? nl + 1 : rest + n;
    size_t blen = nl ? n - ql - 1 : 0;
    size_t vl;
    const char *v = kbadmin_query(a, qs, "q", &vl);
    if (v && vl > strlen(qs))
        abort();
    kbadmin_doc d;
    const char *param;
    char msg[200];
    int rc = kbadmin_parse_doc(a, ct, qs, body, blen, &d, &param, msg, sizeof(msg));
    if (rc == CORE_OK) {
        if (!d.id || !*d.id || !d.content || (d.title && strlen(d.title) > blen + ql))
            abort();
        volatile char sink = 0;
        for (size_t i = 0; i < d.len; i++)
            sink ^= d.content[i];
        (void)sink;
    } else if (rc != CORE_EFORMAT && rc != CORE_ENOMEM) {
        abort();
    }
    return 0;
}
