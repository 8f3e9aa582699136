/* test_textstream: UTF-8 holdback and repair, stop strings across tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core_err.h"
#include "textstream.h"

#define FFFD "\xEF\xBF\xBD"

/* Strict UTF-8 check (Unicode table 3-7), for every piece a stream emits. */
static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
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
    char text[4096];
    size_t len;
    int stopped; /* index of the push that returned TS_STOP, -1 none */
} result;

static void collect(result *r, int ret, int idx, const char *out, size_t n)
{
    assert_true(ret == TS_MORE || ret == TS_STOP);
    assert_true(valid_utf8(out, n));
    assert_true(r->len + n < sizeof r->text);
    memcpy(r->text + r->len, out, n);
    r->len += n;
    r->text[r->len] = '\0';
    if (ret == TS_STOP && r->stopped < 0)
        r->stopped = idx;
}

/* Feeds the pieces (NULL-terminated list), then flushes. */
static result run(const char *const *stops, size_t n_stops, const char *const *pieces)
{
    result r = {.len = 0, .stopped = -1};
    ts *t = ts_new(stops, n_stops);
    assert_non_null(t);
    const char *out;
    size_t n;
    int i = 0;
    for (; pieces[i]; i++) {
        int ret = ts_push(t, pieces[i], strlen(pieces[i]), &out, &n);
        collect(&r, ret, i, out, n);
    }
    int ret = ts_flush(t, &out, &n);
    collect(&r, ret, i, out, n);
    ts_free(t);
    return r;
}

/* Feeds bytes split at the given cut points (sorted, within [0, n]). */
static result run_cuts(ts *t, const char *s, size_t n, const size_t *cuts, size_t n_cuts)
{
    result r = {.len = 0, .stopped = -1};
    const char *out;
    size_t on;
    size_t prev = 0;
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t end = c < n_cuts ? cuts[c] : n;
        int ret = ts_push(t, s + prev, end - prev, &out, &on);
        collect(&r, ret, (int)c, out, on);
        prev = end;
    }
    int ret = ts_flush(t, &out, &on);
    collect(&r, ret, (int)n_cuts + 1, out, on);
    return r;
}

static void test_new_free(void **state)
{
    (void)state;
    ts_free(NULL);
    ts *t = ts_new(NULL, 0);
    assert_non_null(t);
    ts_free(t);
    const char *stops[] = {NULL, "", "x"};
    t = ts_new(stops, 3); /* NULL and "" are ignored, "x" works */
    assert_non_null(t);
    const char *out;
    size_t n;
    assert_int_equal(ts_push(t, "abxc", 4, &out, &n), TS_STOP);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "ab", 2);
    ts_free(t);
}

static void test_ascii_no_stops(void **state)
{
    (void)state;
    ts *t = ts_new(NULL, 0);
    assert_non_null(t);
    const char *out;
    size_t n;
    assert_int_equal(ts_push(t, "Hello", 5, &out, &n), TS_MORE);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "Hello", 5);
    assert_int_equal(ts_push(t, "", 0, &out, &n), TS_MORE);
    assert_int_equal(n, 0);
    assert_int_equal(ts_push(t, " <|im_end|>", 11, &out, &n), TS_MORE); /* no stops: all out */
    assert_int_equal(n, 11);
    assert_int_equal(ts_flush(t, &out, &n), TS_MORE);
    assert_int_equal(n, 0);
    ts_free(t);
}

/* Every way of cutting a text of 1-, 2-, 3- and 4-byte characters into
 * three pieces gives the text back, in whole characters only. */
static void test_multibyte_every_split(void **state)
{
    (void)state;
    const char *s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"; /* a é € 😀 z */
    size_t n = strlen(s);
    ts *t = ts_new(NULL, 0);
    assert_non_null(t);
    for (size_t i = 0; i <= n; i++) {
        for (size_t j = i; j <= n; j++) {
            size_t cuts[2] = {i, j};
            result r = run_cuts(t, s, n, cuts, 2);
            assert_int_equal(r.len, n);
            assert_memory_equal(r.text, s, n);
            assert_int_equal(r.stopped, -1);
        }
    }
    ts_free(t);
}

static void test_emoji_bytewise(void **state)
{
    (void)state;
    const char *emoji = "\xF0\x9F\x98\x80";
    ts *t = ts_new(NULL, 0);
    assert_non_null(t);
    const char *out;
    size_t n;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ts_push(t, emoji + i, 1, &out, &n), TS_MORE);
        assert_int_equal(n, 0);
    }
    assert_int_equal(ts_push(t, emoji + 3, 1, &out, &n), TS_MORE);
    assert_int_equal(n, 4);
    assert_memory_equal(out, emoji, 4);
    ts_free(t);
}

static void expect_repair(const char *in, const char *want)
{
    const char *pieces[] = {in, NULL};
    result r = run(NULL, 0, pieces);
    assert_string_equal(r.text, want);
    /* The same byte by byte. */
    ts *t = ts_new(NULL, 0);
    assert_non_null(t);
    size_t n = strlen(in), cuts[64];
    assert_true(n < 64);
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    result b = run_cuts(t, in, n, cuts, n ? n - 1 : 0);
    assert_string_equal(b.text, want);
    ts_free(t);
}

static void test_invalid_bytes(void **state)
{
    (void)state;
    expect_repair("\xFF", FFFD);
    expect_repair("a\x80" "b", "a" FFFD "b");
    expect_repair("\xC0\xAF", FFFD FFFD);             /* overlong */
    expect_repair("\xE0\x80\x80", FFFD FFFD FFFD);    /* overlong, E0 needs A0.. */
    expect_repair("\xED\xA0\x80", FFFD FFFD FFFD);    /* surrogate */
    expect_repair("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* > U+10FFFF */
    expect_repair("\xF5", FFFD);
    expect_repair("\xE2\x82" "A", FFFD "A");          /* truncated: one U+FFFD */
    expect_repair("\xF0\x9F\x98" "\xF0\x9F\x98\x80", FFFD "\xF0\x9F\x98\x80");
    expect_repair("\xC3" "\xC3\xA9", FFFD "\xC3\xA9");
    expect_repair("\xE2\x82", FFFD);                  /* incomplete at the end */
    expect_repair("ok\xF0\x9F", "ok" FFFD);
}

static void test_stop_spanning_tokens(void **state)
{
    (void)state;
    const char *stops[] = {"</answer>"};
    ts *t = ts_new(stops, 1);
    assert_non_null(t);
    const char *out;
    size_t n;
    assert_int_equal(ts_push(t, "foo</an", 7, &out, &n), TS_MORE);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(ts_push(t, "sw", 2, &out, &n), TS_MORE);
    assert_int_equal(n, 0);
    assert_int_equal(ts_push(t, "er>bar", 6, &out, &n), TS_STOP);
    assert_int_equal(n, 0);
    assert_int_equal(ts_push(t, "more", 4, &out, &n), TS_STOP); /* stays stopped */
    assert_int_equal(n, 0);
    assert_int_equal(ts_flush(t, &out, &n), TS_STOP);
    assert_int_equal(n, 0);

    /* The flush reset the stream: it works again. */
    assert_int_equal(ts_push(t, "x</answer", 9, &out, &n), TS_MORE);
    assert_int_equal(n, 1);
    assert_int_equal(ts_push(t, "!", 1, &out, &n), TS_MORE); /* not a stop after all */
    assert_int_equal(n, 9);
    assert_memory_equal(out, "</answer!", 9);
    ts_free(t);
}

static void test_partial_stop_flushed(void **state)
{
    (void)state;
    const char *stops[] = {"<|im_end|>"};
    const char *p1[] = {"Hi", " <|im", NULL};
    result r = run(stops, 1, p1);
    assert_string_equal(r.text, "Hi <|im");
    assert_int_equal(r.stopped, -1);
    const char *p2[] = {"Hi", " <|im", "_end|>", NULL};
    r = run(stops, 1, p2);
    assert_string_equal(r.text, "Hi ");
    assert_int_equal(r.stopped, 2);
}

static void test_stop_prefix_of_another(void **state)
{
    (void)state;
    /* "Hello" completes before "Hello world" can. */
    const char *stops[] = {"Hello world", "Hello"};
    const char *p1[] = {"Say: Hel", "lo world", NULL};
    result r = run(stops, 2, p1);
    assert_string_equal(r.text, "Say: ");
    assert_int_equal(r.stopped, 1);

    /* Of two stops ending together, the longer one is cut. */
    const char *stops2[] = {"bc", "abc"};
    const char *p2[] = {"xab", "c", NULL};
    r = run(stops2, 2, p2);
    assert_string_equal(r.text, "x");

    /* The earliest end wins, whatever the token boundaries: "bc" inside
     * "abcd" ends first. */
    const char *stops3[] = {"abcd", "bc"};
    const char *p3[] = {"abcd", NULL};
    r = run(stops3, 2, p3);
    assert_string_equal(r.text, "a");
    const char *p4[] = {"a", "b", "c", "d", NULL};
    r = run(stops3, 2, p4);
    assert_string_equal(r.text, "a");
}

static void test_overlapping_partial(void **state)
{
    (void)state;
    const char *stops[] = {"aab"};
    const char *p1[] = {"a", "a", "a", "b", "c", NULL};
    result r = run(stops, 1, p1);
    assert_string_equal(r.text, "a");
    assert_int_equal(r.stopped, 3);

    const char *p2[] = {"aaab", NULL};
    r = run(stops, 1, p2);
    assert_string_equal(r.text, "a");

    const char *p3[] = {"aa", "aa", "c", NULL}; /* never completes */
    r = run(stops, 1, p3);
    assert_string_equal(r.text, "aaaac");
    assert_int_equal(r.stopped, -1);

    /* Held text comes out as soon as it cannot start the stop string. */
    ts *t = ts_new(stops, 1);
    assert_non_null(t);
    const char *out;
    size_t n;
    assert_int_equal(ts_push(t, "xaa", 3, &out, &n), TS_MORE);
    assert_int_equal(n, 1);
    assert_int_equal(ts_push(t, "a", 1, &out, &n), TS_MORE);
    assert_int_equal(n, 1);
    assert_memory_equal(out, "a", 1);
    assert_int_equal(ts_push(t, "c", 1, &out, &n), TS_MORE);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "aac", 3);
    ts_free(t);
}

static void test_multibyte_stop(void **state)
{
    (void)state;
    const char *stops[] = {"\xE2\x80\x94" "END"}; /* "—END" */
    const char *p1[] = {"caf\xC3", "\xA9 \xE2\x80", "\x94", "EN", "D!", NULL};
    result r = run(stops, 1, p1);
    assert_string_equal(r.text, "caf\xC3\xA9 ");
    assert_int_equal(r.stopped, 4);

    /* A stop string starting inside a character never splits it. */
    const char *stops2[] = {"\xA9x"};
    const char *p2[] = {"ab\xC3\xA9x", NULL};
    r = run(stops2, 1, p2);
    assert_string_equal(r.text, "ab");

    /* A stop made of U+FFFD matches repaired bytes. */
    const char *stops3[] = {FFFD "!"};
    const char *p3[] = {"ok\xFF", "!", NULL};
    r = run(stops3, 1, p3);
    assert_string_equal(r.text, "ok");
}

/* Chunking never matters: random texts (with stop fragments and invalid
 * bytes) cut at random places give what one push gives. */
static void test_chunking_invariance(void **state)
{
    (void)state;
    static const char *const frag[] = {"a", "b", "</s>", "</", "s>", "\xC3\xA9", "\xC3",
                                       "\xF0\x9F\x98\x80", "\xF0\x9F", "\x80", "\xFF",
                                       "<|im_end|>", "<|im", "ab", "aab", " "};
    const char *stops[] = {"</s>", "<|im_end|>", "aab"};
    uint64_t x = 12345;
    for (int iter = 0; iter < 3000; iter++) {
        char s[256];
        size_t n = 0;
        int parts = 1 + (int)(iter % 12);
        for (int k = 0; k < parts; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            const char *f = frag[(x >> 33) % (sizeof frag / sizeof *frag)];
            memcpy(s + n, f, strlen(f));
            n += strlen(f);
        }
        size_t n_stops = iter % 4; /* 0..3 stop strings */
        ts *t = ts_new(stops, n_stops);
        assert_non_null(t);
        result whole = run_cuts(t, s, n, NULL, 0);
        size_t cuts[8], nc = 0;
        for (size_t c = 0; c < 8; c++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)((x >> 33) % (n + 1));
            if (nc == 0 || at >= cuts[nc - 1])
                cuts[nc++] = at;
        }
        result pieces = run_cuts(t, s, n, cuts, nc);
        assert_int_equal(pieces.len, whole.len);
        assert_memory_equal(pieces.text, whole.text, whole.len);
        assert_int_equal(pieces.stopped >= 0, whole.stopped >= 0);
        if (n_stops == 0 && valid_utf8(s, n)) {
            assert_int_equal(whole.len, n);
            assert_memory_equal(whole.text, s, n);
        }
        ts_free(t);
    }
}

static void test_reset(void **state)
{
    (void)state;
    const char *stops[] = {"END"};
    ts *t = ts_new(stops, 1);
    assert_non_null(t);
    const char *out;
    size_t n;
    assert_int_equal(ts_push(t, "aEN", 3, &out, &n), TS_MORE);
    assert_int_equal(ts_push(t, "\xE2", 1, &out, &n), TS_MORE);
    ts_reset(t); /* drops "EN" and the partial character */
    assert_int_equal(ts_push(t, "D", 1, &out, &n), TS_MORE);
    assert_int_equal(n, 1);
    assert_memory_equal(out, "D", 1);
    assert_int_equal(ts_push(t, "END", 3, &out, &n), TS_STOP);
    ts_reset(t);
    assert_int_equal(ts_push(t, "ok", 2, &out, &n), TS_MORE);
    assert_int_equal(n, 2);
    ts_free(t);
}

static void test_long_text(void **state)
{
    (void)state;
    const char *stops[] = {"STOP"};
    ts *t = ts_new(stops, 1);
    assert_non_null(t);
    size_t total = 0;
    const char *out;
    size_t n;
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(ts_push(t, "word S", 6, &out, &n), TS_MORE);
        total += n;
    }
    assert_int_equal(ts_push(t, "TOP", 3, &out, &n), TS_STOP);
    total += n;
    assert_int_equal(total, 100000 * 6 - 1);
    ts_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_ascii_no_stops),
        cmocka_unit_test(test_multibyte_every_split),
        cmocka_unit_test(test_emoji_bytewise),
        cmocka_unit_test(test_invalid_bytes),
        cmocka_unit_test(test_stop_spanning_tokens),
        cmocka_unit_test(test_partial_stop_flushed),
        cmocka_unit_test(test_stop_prefix_of_another),
        cmocka_unit_test(test_overlapping_partial),
        cmocka_unit_test(test_multibyte_stop),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_long_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
