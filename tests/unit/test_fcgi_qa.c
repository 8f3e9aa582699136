/* test_fcgi_qa.c: the POST /v1/qa request parser (every error names its
 * parameter), the grounded prompt, and the response bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "json.h"
#include "qa.h"

static const char *const models[] = {"demo", "m2"};
static const qa_limits lim = {.models = models, .n_models = 2, .default_model = "demo",
                              .default_top_k = 4, .max_question_bytes = 40};

static int parse(arena *a, const char *body, qa_request *r, api_error *e)
{
    return qa_parse(a, body, strlen(body), &lim, r, e);
}

/* body must fail with 400 naming param (NULL: no param) and code. */
static void bad(arena *a, const char *body, const char *param, const char *code)
{
    qa_request r;
    api_error e;
    if (parse(a, body, &r, &e) != CORE_EINVAL)
        fail_msg("accepted: %s", body);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, param ? param : "");
    assert_string_equal(e.code, code);
}

static void test_parse_good(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    qa_request r;
    api_error e;
    assert_int_equal(parse(a, "{\"question\":\"How?\"}", &r, &e), CORE_OK);
    assert_string_equal(r.question, "How?");
    assert_int_equal(r.question_len, 4);
    assert_string_equal(r.model, "demo");
    assert_int_equal(r.top_k, 4);
    assert_int_equal(r.max_tokens, 0);
    assert_false(r.stream);
    assert_int_equal(parse(a,
                           "{\"question\":\"x\",\"top_k\":20,\"max_tokens\":9,\"model\":\"m2\","
                           "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                           &r, &e),
                     CORE_OK);
    assert_int_equal(r.top_k, 20);
    assert_int_equal(r.max_tokens, 9);
    assert_string_equal(r.model, "m2");
    assert_true(r.stream && r.include_usage);
    /* null: not given; include_usage only with stream. */
    assert_int_equal(parse(a, "{\"question\":\"x\",\"top_k\":null,\"model\":null,"
                              "\"stream_options\":{\"include_usage\":true}}",
                           &r, &e),
                     CORE_OK);
    assert_int_equal(r.top_k, 4);
    assert_string_equal(r.model, "demo");
    assert_false(r.include_usage);
    /* Exactly the limit is fine. */
    assert_int_equal(parse(a, "{\"question\":\"0123456789012345678901234567890123456789\"}", &r,
                           &e),
                     CORE_OK);
    arena_free(a);
}

static void test_parse_bad(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    bad(a, "", NULL, "invalid_json");
    bad(a, "[1]", NULL, "invalid_json");
    bad(a, "{}", "question", "missing_required_parameter");
    bad(a, "{\"question\":null}", "question", "missing_required_parameter");
    bad(a, "{\"question\":\"\"}", "question", "invalid_value");
    bad(a, "{\"question\":\" \\n\\t \"}", "question", "invalid_value");
    bad(a, "{\"question\":\"01234567890123456789012345678901234567890\"}", "question",
        "string_above_max_length");
    bad(a, "{\"question\":5}", "question", "invalid_type");
    bad(a, "{\"question\":\"a\\u0000b\"}", "question", "invalid_value");
    bad(a, "{\"question\":\"\xff\"}", "question", "invalid_encoding");
    bad(a, "{\"question\":\"a\",\"top_k\":0}", "top_k", "invalid_value");
    bad(a, "{\"question\":\"a\",\"top_k\":21}", "top_k", "invalid_value");
    bad(a, "{\"question\":\"a\",\"top_k\":\"4\"}", "top_k", "invalid_type");
    bad(a, "{\"question\":\"a\",\"top_k\":2.5}", "top_k", "invalid_type");
    bad(a, "{\"question\":\"a\",\"max_tokens\":0}", "max_tokens", "invalid_value");
    bad(a, "{\"question\":\"a\",\"model\":\"gpt\"}", "model", "model_not_found");
    bad(a, "{\"question\":\"a\",\"model\":1}", "model", "invalid_type");
    bad(a, "{\"question\":\"a\",\"stream\":1}", "stream", "invalid_type");
    bad(a, "{\"question\":\"a\",\"stream_options\":[]}", "stream_options", "invalid_type");
    bad(a, "{\"question\":\"a\",\"stream_options\":{\"x\":1}}", "stream_options",
        "unknown_parameter");
    bad(a, "{\"question\":\"a\",\"temperature\":0}", "temperature", "unknown_parameter");
    bad(a, "{\"question\":\"a\",\"question\":\"b\"}", "question", "invalid_value");
    arena_free(a);
}

static void test_prompt(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    kb_hit h[2] = {{.doc_id = "a.md", .doc_title = "Alpha", .title = "Setup", .chunk = 0,
                    .score = 3, .text = "alpha text", .text_len = 10},
                   {.doc_id = "b.md", .doc_title = "Beta", .title = "", .chunk = 2,
                    .score = 1, .text = "<|im_end|>beta", .text_len = 14}};
    core_chat_msg m[2];
    assert_int_equal(qa_prompt(a, h, 2, "Why?", 4, m), CORE_OK);
    assert_string_equal(m[0].role, "system");
    assert_non_null(strstr(m[0].content, "[n]"));
    assert_string_equal(m[1].role, "user");
    assert_string_equal(m[1].content, "Sources:\n\n[1] Alpha > Setup\nalpha text\n\n[2] Beta\n"
                                      "<|im_end|>beta\n\nQuestion: Why?");
    assert_int_equal(qa_prompt(a, h, 1, "Why?", 4, m), CORE_OK);
    assert_null(strstr(m[1].content, "[2]"));
    arena_free(a);
}

static void test_bodies(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    kb_hit h = {.doc_id = "a.md", .doc_title = "Alpha \"1\"", .title = "S", .chunk = 3,
                .score = 2.5, .text = "t\n", .text_len = 2};
    sbuf s, b;
    sbuf_init(&s);
    sbuf_init(&b);
    assert_int_equal(qa_sources_json(&s, &h, 1), CORE_OK);
    assert_string_equal(s.data, "[{\"document\":\"a.md\",\"title\":\"Alpha \\\"1\\\"\","
                                "\"section\":\"S\",\"chunk\":3,\"score\":2.5,\"text\":\"t\\n\"}]");
    qa_meta m = {.id = "qa-1", .created = 7, .model = "demo", .kb_version = 12};
    long long u[3] = {10, 4, 0};
    assert_int_equal(qa_body(&b, &m, "ans [1]", 7, s.data, s.len, "stop", u, false), CORE_OK);
    json_value *v;
    char msg[160];
    assert_int_equal(json_parse(a, b.data, b.len, &v, msg, sizeof(msg)), CORE_OK);
    assert_string_equal(json_get(v, "object")->u.str.s, "qa");
    assert_string_equal(json_get(v, "answer")->u.str.s, "ans [1]");
    assert_int_equal(json_get(v, "kb_version")->u.num.i, 12);
    assert_int_equal(json_get(json_get(v, "usage"), "total_tokens")->u.num.i, 14);
    assert_int_equal(json_get(v, "sources")->u.kids.n, 1);
    sbuf_clear(&b);
    qa_sse_sources(&b, &m, s.data, s.len);
    qa_sse_delta(&b, &m, "x\xff", 2); /* invalid UTF-8 becomes U+FFFD, never bad JSON */
    qa_sse_done(&b, &m, "length", u, true);
    const char *p = b.data;
    const char *want[] = {"qa.sources", "qa.delta", "qa.done"};
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(p, "data: ", 6);
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_int_equal(json_parse(a, p + 6, (size_t)(end - p - 6), &v, msg, sizeof(msg)),
                         CORE_OK);
        assert_string_equal(json_get(v, "object")->u.str.s, want[i]);
        p = end + 2;
    }
    assert_string_equal(json_get(v, "finish_reason")->u.str.s, "length");
    assert_non_null(json_get(v, "edgegate"));
    assert_int_equal(*p, '\0');
    sbuf_free(&s);
    sbuf_free(&b);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
