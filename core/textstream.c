/* textstream.c: incremental UTF-8 repair and stop-string holdback (see
 * textstream.h for the rules).
 *
 * Input: arbitrary bytes, pushed in arbitrary pieces. Well-formed UTF-8
 * (Unicode table 3-7):
 *   00..7F
 *   C2..DF 80..BF
 *   E0 A0..BF 80..BF | E1..EC 80..BF 80..BF | ED 80..9F 80..BF | EE..EF 80..BF 80..BF
 *   F0 90..BF 80..BF 80..BF | F1..F3 80..BF x3 | F4 80..8F 80..BF 80..BF
 * Anything else ends the sequence so far, which becomes one U+FFFD.
 */
#include "textstream.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"

struct ts {
    char **stop;
    size_t *stop_len;
    size_t n_stop;

    /* decoder: the bytes of the sequence in progress */
    unsigned char seq[4];
    int n_seq, need;
    unsigned char lo, hi; /* range of the next byte */

    /* decoded text: [0, consumed) went out with the last call, the rest is
     * held back */
    char *buf;
    size_t len, cap, consumed;
    bool stopped;
};

ts *ts_new(const char *const *stops, size_t n_stops)
{
    ts *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (n_stops && stops) {
        t->stop = calloc(n_stops, sizeof *t->stop);
        t->stop_len = calloc(n_stops, sizeof *t->stop_len);
        if (!t->stop || !t->stop_len)
            goto fail;
        for (size_t i = 0; i < n_stops; i++) {
            if (!stops[i] || !stops[i][0])
                continue;
            size_t l = strlen(stops[i]);
            t->stop[t->n_stop] = malloc(l);
            if (!t->stop[t->n_stop])
                goto fail;
            memcpy(t->stop[t->n_stop], stops[i], l);
            t->stop_len[t->n_stop++] = l;
        }
    }
    return t;
fail:
    ts_free(t);
    return NULL;
}

void ts_free(ts *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_stop; i++)
        free(t->stop[i]);
    free(t->stop);
    free(t->stop_len);
    free(t->buf);
    free(t);
}

void ts_reset(ts *t)
{
    t->n_seq = t->need = 0;
    t->len = t->consumed = 0;
    t->stopped = false;
}

/* Drops what the last call returned and makes room for `more` bytes. */
static int ts_prepare(ts *t, size_t more)
{
    if (t->consumed) {
        memmove(t->buf, t->buf + t->consumed, t->len - t->consumed);
        t->len -= t->consumed;
        t->consumed = 0;
    }
    if (more > SIZE_MAX / 2 - t->len)
        return CORE_ENOMEM;
    if (t->len + more > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->len + more)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb)
            return CORE_ENOMEM;
        t->buf = nb;
        t->cap = cap;
    }
    return CORE_OK;
}

static void ts_put_fffd(ts *t)
{
    t->buf[t->len++] = (char)0xEF;
    t->buf[t->len++] = (char)0xBF;
    t->buf[t->len++] = (char)0xBD;
}

/* Decodes one byte; the buffer has room for 3 more bytes. */
static void ts_decode(ts *t, unsigned char c)
{
    for (;;) {
        if (t->n_seq == 0) {
            if (c < 0x80) {
                t->buf[t->len++] = (char)c;
                return;
            }
            t->lo = 0x80;
            t->hi = 0xBF;
            if (c >= 0xC2 && c <= 0xDF) {
                t->need = 1;
            } else if (c >= 0xE0 && c <= 0xEF) {
                t->need = 2;
                if (c == 0xE0)
                    t->lo = 0xA0;
                else if (c == 0xED)
                    t->hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                t->need = 3;
                if (c == 0xF0)
                    t->lo = 0x90;
                else if (c == 0xF4)
                    t->hi = 0x8F;
            } else { /* stray continuation, C0, C1, F5..FF */
                ts_put_fffd(t);
                return;
            }
            t->seq[t->n_seq++] = c;
            return;
        }
        if (c >= t->lo && c <= t->hi) {
            t->seq[t->n_seq++] = c;
            t->lo = 0x80;
            t->hi = 0xBF;
            if (--t->need == 0) {
                memcpy(t->buf + t->len, t->seq, (size_t)t->n_seq);
                t->len += (size_t)t->n_seq;
                t->n_seq = 0;
            }
            return;
        }
        /* The sequence so far is a maximal ill-formed subpart; c starts
         * afresh. */
        ts_put_fffd(t);
        t->n_seq = t->need = 0;
    }
}

/* First occurrence of needle (nl >= 1) in hay, or NULL. */
static const char *ts_find(const char *hay, size_t hl, const char *needle, size_t nl)
{
    const char *p = hay, *end = hay + hl;
    while ((size_t)(end - p) >= nl) {
        p = memchr(p, needle[0], (size_t)(end - p) - nl + 1);
        if (!p)
            return NULL;
        if (memcmp(p, needle, nl) == 0)
            return p;
        p++;
    }
    return NULL;
}

static inline bool ts_is_cont(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* Decides the held text: on a stop match returns TS_STOP and the text
 * before it; otherwise returns the text that cannot start a stop string. */
static int ts_decide(ts *t, bool final, const char **out, size_t *out_len)
{
    size_t best_end = SIZE_MAX, best_start = 0;
    for (size_t k = 0; k < t->n_stop; k++) {
        const char *hit = ts_find(t->buf, t->len, t->stop[k], t->stop_len[k]);
        if (!hit)
            continue;
        size_t start = (size_t)(hit - t->buf), end = start + t->stop_len[k];
        if (end < best_end || (end == best_end && start < best_start)) {
            best_end = end;
            best_start = start;
        }
    }
    size_t cut = t->len;
    int ret = TS_MORE;
    if (best_end != SIZE_MAX) {
        cut = best_start;
        ret = TS_STOP;
        t->stopped = true;
    } else if (!final) {
        /* Hold back the longest tail that a stop string begins with. */
        for (size_t k = 0; k < t->n_stop; k++) {
            size_t sl = t->stop_len[k];
            size_t l = sl - 1 < t->len ? sl - 1 : t->len;
            for (; l > 0 && t->len - l < cut; l--) {
                const char *tail = t->buf + t->len - l;
                if (tail[0] == t->stop[k][0] && memcmp(tail, t->stop[k], l) == 0) {
                    cut = t->len - l;
                    break;
                }
            }
        }
    }
    /* Never split a character (a stop string may start inside one). */
    while (cut > 0 && cut < t->len && ts_is_cont(t->buf[cut]))
        cut--;
    *out = t->buf;
    *out_len = cut;
    t->consumed = ret == TS_STOP ? t->len : cut;
    return ret;
}

int ts_push(ts *t, const char *bytes, size_t n, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (t->stopped) {
        t->len = t->consumed = 0;
        return TS_STOP;
    }
    if (n > SIZE_MAX / 4 || ts_prepare(t, 3 * n + 3) != CORE_OK)
        return -CORE_ENOMEM;
    for (size_t i = 0; i < n; i++)
        ts_decode(t, (unsigned char)bytes[i]);
    return ts_decide(t, false, out, out_len);
}

int ts_flush(ts *t, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (t->stopped) {
        ts_reset(t);
        return TS_STOP;
    }
    if (ts_prepare(t, 3) != CORE_OK)
        return -CORE_ENOMEM;
    if (t->n_seq) {
        ts_put_fffd(t);
        t->n_seq = t->need = 0;
    }
    int ret = ts_decide(t, true, out, out_len);
    /* Start over, keeping the returned text readable until the next call. */
    t->consumed = t->len;
    t->stopped = false;
    return ret;
}
