/* test_fcgi_elog.c: log lines are whole JSON objects; held lines come out in
 * order, with the next warning or at a flush, and never past 4 KiB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elog.h"
#include "sbuf.h"

static char te_path[64];

static int te_setup(void **state)
{
    (void)state;
    strcpy(te_path, "/tmp/edgegate-elog-XXXXXX");
    int fd = mkstemp(te_path);
    if (fd < 0)
        return -1;
    close(fd);
    char msg[256];
    return elog_open(te_path, ELOG_INFO, msg, sizeof(msg));
}

static int te_teardown(void **state)
{
    (void)state;
    elog_close();
    unlink(te_path);
    return 0;
}

/* The file's contents (caller frees). */
static char *te_read(void)
{
    FILE *f = fopen(te_path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int te_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_put_int(void **state)
{
    (void)state;
    const long long v[] = {0, 7, -7, 1234567890123LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sbuf a, b;
        sbuf_init(&a);
        sbuf_init(&b);
        sbuf_put_int(&a, v[i]);
        sbuf_printf(&b, "%lld", v[i]);
        assert_string_equal(a.data, b.data);
        sbuf_free(&a);
        sbuf_free(&b);
    }
}

static void test_line_shape(void **state)
{
    (void)state;
    elog_ev(ELOG_INFO, "request", ELOG_I("status", -404), ELOG_S("path", "/a\"b"),
            ELOG_D("ms", 1.5), ELOG_B("stream", true));
    char *s = te_read();
    assert_non_null(strstr(s, "{\"ts\":\""));
    assert_non_null(strstr(s, "Z\",\"level\":\"info\",\"pid\":"));
    assert_non_null(strstr(s, ",\"msg\":\"request\",\"status\":-404,\"path\":\"/a\\\"b\","
                              "\"ms\":1.5,\"stream\":true}\n"));
    /* 2026-12-05T16:26:03.123Z */
    const char *ts = strstr(s, "\"ts\":\"") + 6;
    assert_true(strlen(ts) > 24 && ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
    free(s);
}

static void test_hold_keeps_order(void **state)
{
    (void)state;
    elog_hold(true);
    elog_msg(ELOG_INFO, "first");
    elog_msg(ELOG_INFO, "second");
    char *s = te_read();
    assert_null(strstr(s, "first")); /* held */
    free(s);
    elog_msg(ELOG_WARN, "third"); /* goes out at once, after what was held */
    s = te_read();
    char *a = strstr(s, "first"), *b = strstr(s, "second"), *c = strstr(s, "third");
    assert_true(a && b && c && a < b && b < c);
    free(s);
    elog_msg(ELOG_INFO, "fourth");
    elog_flush();
    s = te_read();
    assert_non_null(strstr(s, "fourth"));
    free(s);
    elog_hold(false);
}

static void test_hold_writes_before_4k(void **state)
{
    (void)state;
    elog_hold(true);
    char text[300];
    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    for (int i = 0; i < 40; i++) /* ~14 KB: several writes of whole lines */
        elog_msg(ELOG_INFO, "%s", text);
    char *s = te_read();
    int n = te_lines(s);
    assert_true(n > 0 && n < 40);
    assert_true(strlen(s) <= 40 * 400);
    assert_int_equal(s[strlen(s) - 1], '\n'); /* whole lines only */
    free(s);
    elog_hold(false); /* flushes */
    s = te_read();
    assert_int_equal(te_lines(s), 40);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_int),
        cmocka_unit_test_setup_teardown(test_line_shape, te_setup, te_teardown),
        cmocka_unit_test_setup_teardown(test_hold_keeps_order, te_setup, te_teardown),
        cmocka_unit_test_setup_teardown(test_hold_writes_before_4k, te_setup, te_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
