/* sbuf.h: a growable byte buffer for response bodies and log lines.
 *
 * A value type: the owner declares an sbuf, sbuf_init()s it and sbuf_free()s
 * it; data is malloc'ed, always NUL-terminated once anything was appended,
 * and borrowed by readers until the next append, clear or free. After an
 * allocation failure the buffer keeps what it had, sets oom and ignores
 * further appends, so callers may check once at the end.
 */
#ifndef SBUF_H
#define SBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} sbuf;

void sbuf_init(sbuf *b);
void sbuf_free(sbuf *b);  /* leaves b empty and reusable */
void sbuf_clear(sbuf *b); /* len = 0, keeps the memory */
/* Return 0, or -1 when out of memory (and then b->oom is set). */
int sbuf_put(sbuf *b, const void *p, size_t n);
int sbuf_puts(sbuf *b, const char *s);
int sbuf_putc(sbuf *b, char c);
int sbuf_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sbuf_put_int(sbuf *b, long long v); /* decimal, like "%lld" without printf's cost */

#endif
