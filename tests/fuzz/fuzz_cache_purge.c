/* fuzz_cache_purge.c: libFuzzer harness for the purge selector parser
 * (the body of POST /admin/cache/purge). Input: one request body.
 * Whatever it accepts is written back as JSON and must parse to the same
 * selector. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "core_err.h"
#include "json.h"
#include "sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cache_purge s, t;
    const char *param;
    char msg[200];
    if (cache_purge_parse((const char *)data, size, &s, &param, msg, sizeof(msg)) != CORE_OK)
        return 0;
    sbuf b;
    sbuf_init(&b);
    char h[65];
    switch (s.kind) {
    case CACHE_PURGE_ALL:
        sbuf_puts(&b, "{\"all\":true}");
        break;
    case CACHE_PURGE_MODEL:
    case CACHE_PURGE_CLIENT:
        sbuf_puts(&b, s.kind == CACHE_PURGE_MODEL ? "{\"model\":" : "{\"client\":");
        json_put_str(&b, s.id, strlen(s.id));
        sbuf_putc(&b, '}');
        break;
    case CACHE_PURGE_OLDER:
        sbuf_printf(&b, "{\"older_than_s\":%lld}", s.older_than_s);
        break;
    case CACHE_PURGE_KEY:
        cache_key_hex(&s.key, h);
        sbuf_printf(&b, "{\"key\":\"%s\"}", h);
        break;
    case CACHE_PURGE_KB_BELOW:
        sbuf_printf(&b, "{\"kb_version_below\":%lld}", s.kb_version_below);
        break;
    }
    if (b.oom || cache_purge_parse(b.data, b.len, &t, &param, msg, sizeof(msg)) != CORE_OK ||
        t.kind != s.kind || strcmp(t.id, s.id) != 0 || t.older_than_s != s.older_than_s ||
        t.kb_version_below != s.kb_version_below ||
        memcmp(t.key.b, s.key.b, 32) != 0) {
        fprintf(stderr, "round trip failed: %s\n", b.data ? b.data : "(oom)");
        abort();
    }
    sbuf_free(&b);
    return 0;
}
