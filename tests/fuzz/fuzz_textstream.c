/* fuzz_textstream: the token-bytes-to-text stream over arbitrary bytes.
 *
 * Input: byte 0 = number of stop strings (mod 4), then NUL-separated
 * fields: the stop strings, then the pieces pushed one by one.
 *
 * Checks: every emitted piece is valid UTF-8; the pieces together equal
 * what one push of all the bytes gives (chunking never matters); without
 * stop strings, valid UTF-8 comes out unchanged. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "textstream.h"

static void fuzz_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static bool fuzz_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], lo = 0x80, hi = 0xBF;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return false;
        }
        if (i + len > n || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF)
                return false;
        i += len;
    }
    return true;
}

typedef struct {
    unsigned char *text;
    size_t len;
    bool stopped;
} fuzz_out;

static void fuzz_add(fuzz_out *o, int ret, const char *s, size_t n)
{
    fuzz_check(ret == TS_MORE || ret == TS_STOP);
    fuzz_check(fuzz_utf8((const unsigned char *)s, n));
    memcpy(o->text + o->len, s, n);
    o->len += n;
    o->stopped |= ret == TS_STOP;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    size_t n_stops = data[0] % 4;
    const char *body = (const char *)data + 1;
    size_t blen = size - 1;

    char *stops[3];
    size_t pos = 0, got = 0;
    for (; got < n_stops && pos <= blen; got++) {
        size_t l = strnlen(body + pos, blen - pos);
        stops[got] = strndup(body + pos, l);
        if (!stops[got])
            return 0;
        pos += l + 1;
    }
    n_stops = got;
    const char *text = pos < blen ? body + pos : "";
    size_t tlen = pos < blen ? blen - pos : 0;

    /* Every replaced byte can grow to 3. */
    fuzz_out whole = {malloc(3 * tlen + 8), 0, false}, parts = {malloc(3 * tlen + 8), 0, false};
    ts *t = ts_new((const char *const *)stops, n_stops);
    if (!t || !whole.text || !parts.text)
        goto out;
    const char *o;
    size_t on;
    int ret = ts_push(t, text, tlen, &o, &on);
    fuzz_add(&whole, ret, o, on);
    ret = ts_flush(t, &o, &on);
    fuzz_add(&whole, ret, o, on);

    /* Pieces: split at the NULs (which stay in the text). */
    size_t start = 0;
    for (size_t i = 0; i <= tlen; i++) {
        if (i == tlen || text[i] == '\0') {
            size_t end = i < tlen ? i + 1 : i;
            ret = ts_push(t, text + start, end - start, &o, &on);
            fuzz_add(&parts, ret, o, on);
            start = end;
        }
    }
    ret = ts_flush(t, &o, &on);
    fuzz_add(&parts, ret, o, on);

    fuzz_check(whole.len == parts.len && memcmp(whole.text, parts.text, whole.len) == 0);
    fuzz_check(whole.stopped == parts.stopped);
    if (n_stops == 0) {
        fuzz_check(!whole.stopped);
        if (fuzz_utf8((const unsigned char *)text, tlen))
            fuzz_check(whole.len == tlen && memcmp(whole.text, text, tlen) == 0);
    }
out:
    ts_free(t);
    free(whole.text);
    free(parts.text);
    for (size_t i = 0; i < n_stops; i++)
        free(stops[i]);
    return 0;
}
