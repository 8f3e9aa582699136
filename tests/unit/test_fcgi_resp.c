/* test_fcgi_resp.c: response JSON shapes (chat.completion, chunks, errors,
 * models, health) and SSE framing. Outputs are parsed back with our JSON
 * parser and checked field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arena.h"
#include "core_err.h"
#include "health.h"
#include "json.h"
#include "resp.h"

static arena *A;

static json_value *parse_ok(const char *s, size_t n)
{
    json_value *v = NULL;
    char msg[160];
    if (json_parse(A, s, n, &v, msg, sizeof(msg)) != CORE_OK)
        fail_msg("not JSON (%s): %.*s", msg, (int)n, s);
    return v;
}

static const json_value *get(const json_value *o, const char *k, json_type t)
{
    const json_value *v = json_get(o, k);
    if (!v)
        fail_msg("missing \"%s\"", k);
    if (v->type != t)
        fail_msg("\"%s\" is %s, want %s", k, json_type_name(v->type), json_type_name(t));
    return v;
}

static void expect_str(const json_value *o, const char *k, const char *want)
{
    const json_value *v = get(o, k, JSON_STRING);
    assert_string_equal(v->u.str.s, want);
}

static void expect_int(const json_value *o, const char *k, long long want)
{
    const json_value *v = get(o, k, JSON_NUMBER);
    assert_true(v->u.num.is_int);
    assert_int_equal(v->u.num.i, want);
}

static size_t count_keys(const json_value *o)
{
    return o->u.kids.n;
}

static const resp_meta meta = {.id = "chatcmpl-abc123", .created = 1700000000, .model = "demo"};

static void test_completion(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    resp_usage u = {12, 5, 4};
    const char text[] = "Hi \"there\"\n\xe2\x82\xac";
    assert_int_equal(resp_completion(&b, &meta, text, sizeof(text) - 1, "stop", &u, false), 0);
    json_value *v = parse_ok(b.data, b.len);
    expect_str(v, "id", "chatcmpl-abc123");
    expect_str(v, "object", "chat.completion");
    expect_int(v, "created", 1700000000);
    expect_str(v, "model", "demo");
    const json_value *ch = get(v, "choices", JSON_ARRAY);
    assert_int_equal(ch->u.kids.n, 1);
    const json_value *c0 = ch->u.kids.first;
    expect_int(c0, "index", 0);
    expect_str(c0, "finish_reason", "stop");
    get(c0, "logprobs", JSON_NULL);
    const json_value *msg = get(c0, "message", JSON_OBJECT);
    expect_str(msg, "role", "assistant");
    expect_str(msg, "content", text);
    const json_value *us = get(v, "usage", JSON_OBJECT);
    expect_int(us, "prompt_tokens", 12);
    expect_int(us, "completion_tokens", 5);
    expect_int(us, "total_tokens", 17);
    expect_int(get(us, "prompt_tokens_details", JSON_OBJECT), "cached_tokens", 4);
    assert_null(json_get(v, "edgegate"));
    sbuf_clear(&b);

    assert_int_equal(resp_completion(&b, &meta, "", 0, "length", &u, true), 0);
    v = parse_ok(b.data, b.len);
    expect_str(get(v, "choices", JSON_ARRAY)->u.kids.first, "finish_reason", "length");
    get(get(v, "edgegate", JSON_OBJECT), "deadline_hit", JSON_BOOL);
    assert_true(json_get(json_get(v, "edgegate"), "deadline_hit")->u.b);
    sbuf_free(&b);
    arena_reset(A);
}

static void test_invalid_utf8_text(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    resp_usage u = {1, 1, 0};
    assert_int_equal(resp_completion(&b, &meta, "a\xff" "b\xe2\x82", 5, "stop", &u, false), 0);
    json_value *v = parse_ok(b.data, b.len);
    const json_value *msg = get(get(v, "choices", JSON_ARRAY)->u.kids.first, "message", JSON_OBJECT);
    expect_str(msg, "content", "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd");
    sbuf_free(&b);
    arena_reset(A);
}

/* Splits SSE text into events; checks the framing of each. */
static size_t sse_events(const char *s, size_t n, const char **ev, size_t *len, size_t max)
{
    size_t k = 0, i = 0;
    while (i < n) {
        assert_true(k < max);
        assert_memory_equal(s + i, "data: ", 6);
        const char *end = strstr(s + i, "\n\n");
        assert_non_null(end);
        ev[k] = s + i + 6;
        len[k] = (size_t)(end - (s + i + 6));
        assert_null(memchr(ev[k], '\n', len[k])); /* one line per event */
        k++;
        i = (size_t)(end - s) + 2;
    }
    return k;
}

static void test_sse_stream(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    resp_usage u = {3, 2, 0};
    assert_int_equal(resp_sse_role(&b, &meta, true), 0);
    assert_int_equal(resp_sse_text(&b, &meta, "Hel", 3, true), 0);
    assert_int_equal(resp_sse_text(&b, &meta, "lo\n", 3, true), 0);
    assert_int_equal(resp_sse_finish(&b, &meta, "length", true, true), 0);
    assert_int_equal(resp_sse_usage(&b, &meta, &u), 0);
    assert_int_equal(resp_sse_done(&b), 0);
    const char *ev[8];
    size_t len[8];
    size_t n = sse_events(b.data, b.len, ev, len, 8);
    assert_int_equal(n, 6);
    assert_int_equal(len[5], 6);
    assert_memory_equal(ev[5], "[DONE]", 6);
    assert_memory_equal(b.data + b.len - 14, "data: [DONE]\n\n", 14);

    const char *want_text[] = {"", "Hel", "lo\n"};
    for (size_t i = 0; i < 5; i++) {
        json_value *v = parse_ok(ev[i], len[i]);
        expect_str(v, "id", "chatcmpl-abc123");
        expect_str(v, "object", "chat.completion.chunk");
        expect_int(v, "created", 1700000000);
        expect_str(v, "model", "demo");
        const json_value *ch = get(v, "choices", JSON_ARRAY);
        if (i == 4) { /* usage chunk */
            assert_int_equal(ch->u.kids.n, 0);
            const json_value *us = get(v, "usage", JSON_OBJECT);
            expect_int(us, "total_tokens", 5);
            expect_int(get(us, "prompt_tokens_details", JSON_OBJECT), "cached_tokens", 0);
            continue;
        }
        get(v, "usage", JSON_NULL);
        assert_int_equal(ch->u.kids.n, 1);
        const json_value *c0 = ch->u.kids.first;
        expect_int(c0, "index", 0);
        const json_value *d = get(c0, "delta", JSON_OBJECT);
        if (i < 3) {
            get(c0, "finish_reason", JSON_NULL);
            expect_str(d, "content", want_text[i]);
            if (i == 0)
                expect_str(d, "role", "assistant");
            else
                assert_null(json_get(d, "role"));
            assert_null(json_get(v, "edgegate"));
        } else {
            expect_str(c0, "finish_reason", "length");
            assert_int_equal(count_keys(d), 0);
            assert_true(get(get(v, "edgegate", JSON_OBJECT), "deadline_hit", JSON_BOOL)->u.b);
        }
    }
    sbuf_free(&b);
    arena_reset(A);
}

static void test_sse_without_usage(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    resp_sse_text(&b, &meta, "x", 1, false);
    resp_sse_finish(&b, &meta, "stop", false, false);
    const char *ev[4];
    size_t len[4];
    assert_int_equal(sse_events(b.data, b.len, ev, len, 4), 2);
    json_value *v = parse_ok(ev[0], len[0]);
    assert_null(json_get(v, "usage"));
    v = parse_ok(ev[1], len[1]);
    assert_null(json_get(v, "usage"));
    assert_null(json_get(v, "edgegate"));
    sbuf_free(&b);
    arena_reset(A);
}

static void test_error(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    api_error e;
    assert_int_equal(api_fail(&e, 400, "messages[0].role", "invalid_value", "bad %s", "role"),
                     CORE_EINVAL);
    assert_int_equal(resp_error(&b, &e), 0);
    json_value *v = parse_ok(b.data, b.len);
    assert_int_equal(count_keys(v), 1);
    const json_value *err = get(v, "error", JSON_OBJECT);
    assert_int_equal(count_keys(err), 4);
    expect_str(err, "message", "bad role");
    expect_str(err, "type", "invalid_request_error");
    expect_str(err, "param", "messages[0].role");
    expect_str(err, "code", "invalid_value");
    sbuf_clear(&b);

    api_fail(&e, 500, NULL, NULL, "boom");
    resp_error(&b, &e);
    v = parse_ok(b.data, b.len);
    err = get(v, "error", JSON_OBJECT);
    expect_str(err, "type", "server_error");
    get(err, "param", JSON_NULL);
    get(err, "code", JSON_NULL);
    sbuf_clear(&b);

    resp_sse_error(&b, &e);
    assert_memory_equal(b.data, "data: {\"error\":", 15);
    assert_memory_equal(b.data + b.len - 2, "\n\n", 2);
    sbuf_free(&b);
    arena_reset(A);
}

static void test_models(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    const char *ids[] = {"demo", "qwen"}, *types[] = {"chat", NULL};
    assert_int_equal(resp_models(&b, ids, types, 2, 1700000001), 0);
    json_value *v = parse_ok(b.data, b.len);
    expect_str(v, "object", "list");
    const json_value *d = get(v, "data", JSON_ARRAY);
    assert_int_equal(d->u.kids.n, 2);
    expect_str(d->u.kids.first, "id", "demo");
    expect_str(d->u.kids.first, "object", "model");
    expect_int(d->u.kids.first, "created", 1700000001);
    expect_str(d->u.kids.first, "owned_by", "edgegate");
    expect_str(d->u.kids.first, "type", "chat");
    expect_str(d->u.kids.last, "id", "qwen");
    assert_null(json_get(d->u.kids.last, "type"));
    sbuf_free(&b);
    arena_reset(A);
}

static void test_health(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    health_model models[] = {{"demo", "chat", true}, {"yolo", "detection", true}};
    health_status h = {.model_id = "demo", .model_loaded = true, .workers_alive = 2,
                       .workers_configured = 2, .in_flight = 1, .has_backlog = true,
                       .backlog = 2, .queue_depth = 3, .models = models, .n_models = 2};
    assert_int_equal(health_render(&h, &b), 200);
    json_value *v = parse_ok(b.data, b.len);
    expect_str(v, "status", "ok");
    expect_str(get(v, "model", JSON_OBJECT), "id", "demo");
    assert_true(get(get(v, "model", JSON_OBJECT), "loaded", JSON_BOOL)->u.b);
    expect_int(get(v, "workers", JSON_OBJECT), "alive", 2);
    expect_int(get(v, "workers", JSON_OBJECT), "configured", 2);
    get(v, "npu_temp_c", JSON_NULL);
    expect_int(v, "queue_depth", 3);
    expect_int(v, "in_flight", 1);
    expect_int(v, "backlog", 2);
    const json_value *ml = get(v, "models", JSON_ARRAY);
    assert_int_equal(ml->u.kids.n, 2);
    expect_str(ml->u.kids.last, "id", "yolo");
    expect_str(ml->u.kids.last, "type", "detection");
    sbuf_clear(&b);

    /* a model that failed to load: degraded, its type unknown */
    models[1] = (health_model){"yolo", NULL, false};
    assert_int_equal(health_render(&h, &b), 200);
    v = parse_ok(b.data, b.len);
    expect_str(v, "status", "degraded");
    ml = get(v, "models", JSON_ARRAY);
    get(ml->u.kids.last, "type", JSON_NULL);
    assert_false(get(ml->u.kids.last, "loaded", JSON_BOOL)->u.b);
    models[1] = (health_model){"yolo", "detection", true};
    sbuf_clear(&b);

    h.workers_alive = 1;
    h.has_backlog = false;
    h.has_temp = true;
    h.npu_temp_c = 47.25;
    assert_int_equal(health_render(&h, &b), 200);
    v = parse_ok(b.data, b.len);
    expect_str(v, "status", "degraded");
    get(v, "backlog", JSON_NULL);
    assert_true(get(v, "npu_temp_c", JSON_NUMBER)->u.num.d > 47.1);
    sbuf_clear(&b);

    h.model_loaded = false;
    assert_int_equal(health_render(&h, &b), 503);
    v = parse_ok(b.data, b.len);
    expect_str(v, "status", "unavailable");
    sbuf_free(&b);
    arena_reset(A);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_npu_temp(void **state)
{
    (void)state;
    char dir[] = "/tmp/eg_thermal_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    double c = 0;
    assert_int_equal(health_npu_temp(dir, &c), CORE_ENOTFOUND); /* no zones */
    snprintf(p, sizeof(p), "%s/thermal_zone0", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/thermal_zone0/type", dir);
    write_file(p, "soc-thermal\n");
    snprintf(p, sizeof(p), "%s/thermal_zone0/temp", dir);
    write_file(p, "40000\n");
    assert_int_equal(health_npu_temp(dir, &c), CORE_ENOTFOUND); /* a CPU zone is not the NPU */
    snprintf(p, sizeof(p), "%s/thermal_zone1", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/thermal_zone1/type", dir);
    write_file(p, "npu-thermal\n");
    snprintf(p, sizeof(p), "%s/thermal_zone1/temp", dir);
    write_file(p, "52300\n");
    assert_int_equal(health_npu_temp(dir, &c), CORE_OK);
    assert_true(c > 52.29 && c < 52.31);
    write_file(p, "garbage\n");
    assert_int_equal(health_npu_temp(dir, &c), CORE_ENOTFOUND);
    assert_int_equal(health_npu_temp("/nonexistent/thermal", &c), CORE_ENOTFOUND);
    for (int z = 0; z < 2; z++) {
        snprintf(p, sizeof(p), "%s/thermal_zone%d/type", dir, z);
        unlink(p);
        snprintf(p, sizeof(p), "%s/thermal_zone%d/temp", dir, z);
        unlink(p);
        snprintf(p, sizeof(p), "%s/thermal_zone%d", dir, z);
        rmdir(p);
    }
    rmdir(dir);
}

static void test_json_put_str(void **state)
{
    (void)state;
    sbuf b;
    sbuf_init(&b);
    json_put_str(&b, "a\"\\\n\x01\xff\xc3\xa9", 8);
    assert_string_equal(b.data, "\"a\\\"\\\\\\n\\u0001\\ufffd\xc3\xa9\"");
    sbuf_free(&b);
}

static void test_backlog(void **state)
{
    (void)state;
    char path[] = "/tmp/eg_backlog_XXXXXX";
    assert_non_null(mkdtemp(path));
    char sock[64];
    snprintf(sock, sizeof(sock), "%s/s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    long long n = -1;
    health_probe *pr = health_probe_new(fd);
    if (!pr) {
        print_message("SKIP: this kernel has no unix sock_diag\n");
        close(fd);
        unlink(sock);
        rmdir(path);
        skip();
    }
    assert_int_equal(health_backlog(pr, &n), CORE_OK);
    assert_int_equal(n, 0);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(c[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    assert_int_equal(health_backlog(pr, &n), CORE_OK);
    assert_int_equal(n, 3);
    int one = accept(fd, NULL, NULL);
    assert_int_equal(health_backlog(pr, &n), CORE_OK);
    assert_int_equal(n, 2);
    close(one);
    health_probe_free(pr);
    health_probe_free(NULL);
    for (int i = 0; i < 3; i++)
        close(c[i]);
    close(fd);
    unlink(sock);
    rmdir(path);
}

int main(void)
{
    A = arena_new(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion), cmocka_unit_test(test_invalid_utf8_text),
        cmocka_unit_test(test_sse_stream), cmocka_unit_test(test_sse_without_usage),
        cmocka_unit_test(test_error),      cmocka_unit_test(test_models),
        cmocka_unit_test(test_health),     cmocka_unit_test(test_npu_temp),
        cmocka_unit_test(test_json_put_str), cmocka_unit_test(test_backlog),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    arena_free(A);
    return rc;
}
