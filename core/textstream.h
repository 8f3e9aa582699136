/* textstream.h: turns the bytes of generated tokens into text for a
 * core_token_cb: complete UTF-8 characters only, stop strings removed.
 *
 * UTF-8: an incomplete sequence at the end of the bytes so far is held back
 * until its next bytes arrive; each maximal ill-formed subpart (Unicode's
 * "substitution of maximal subparts", as WHATWG decoders do) becomes one
 * U+FFFD, so invalid input neither disappears nor stalls the stream.
 *
 * Stop strings: matched on the decoded text, bytewise. Text that could be
 * the start of a stop string is held back until decided. The first stop
 * string to complete wins (the one ending earliest in the text; of two
 * ending together, the longer), whatever the token boundaries were; it and
 * everything after it are dropped and ts_push() returns TS_STOP. Later
 * pushes return TS_STOP with no text. Empty and NULL stop strings are
 * ignored.
 *
 * Ownership: ts_new() copies the stop strings. Text returned through *out
 * is owned by the stream and valid until the next call on it.
 */
#ifndef TEXTSTREAM_H
#define TEXTSTREAM_H

#include <stddef.h>

typedef struct ts ts;

enum {
    TS_MORE = 0, /* no stop string yet */
    TS_STOP = 1  /* a stop string completed */
};

/* NULL when out of memory. stops may be NULL when n_stops is 0. */
ts *ts_new(const char *const *stops, size_t n_stops);
void ts_free(ts *t); /* NULL is a no-op */

/* Feeds the bytes of one token (n may be 0) and returns the text that is
 * now decided (possibly empty) in *out / *out_len. Returns TS_MORE,
 * TS_STOP, or -CORE_ENOMEM (then *out is empty and the bytes are lost). */
int ts_push(ts *t, const char *bytes, size_t n, const char **out, size_t *out_len);

/* At the end of generation: returns everything still held back (a partial
 * stop string is text after all; a trailing incomplete UTF-8 sequence
 * becomes U+FFFD), then resets the stream for reuse. Returns TS_MORE,
 * TS_STOP when the stream had stopped (*out is then empty), or
 * -CORE_ENOMEM. */
int ts_flush(ts *t, const char **out, size_t *out_len);

/* Forgets all state (held bytes, a past stop); keeps the stop strings. */
void ts_reset(ts *t);

#endif
