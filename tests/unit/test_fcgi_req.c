/* test_fcgi_req.c: chat request parsing: good requests and many bad ones,
 * each with its exact status, param and code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "core_err.h"
#include "json.h"
#include "req.h"

static const char *const models[] = {"demo", "other"};
static const req_limits lim = {.max_messages = 4, .models = models, .n_models = 2};

static int parse(arena *a, const char *body, size_t len, req_chat *out, api_error *e)
{
    memset(e, 0, sizeof(*e));
    return req_parse_chat(a, body, len, &lim, out, e);
}

static void test_minimal(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    const char *b = "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    assert_int_equal(parse(a, b, strlen(b), &r, &e), CORE_OK);
    assert_string_equal(r.model, "demo");
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].role, "user");
    assert_string_equal(r.msgs[0].content, "Hi");
    assert_int_equal(r.max_tokens, 0);
    assert_true(r.temperature == 1.0);
    assert_true(r.top_p == 1.0);
    assert_false(r.stream);
    assert_false(r.has_seed);
    assert_int_equal(r.n_stop, 0);
    assert_null(r.user);
    arena_free(a);
}

static void test_full(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    const char *b =
        "{\"model\":\"other\",\"messages\":["
        "{\"role\":\"developer\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\\u00e9\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"refusal\":null},"
        "{\"role\":\"user\",\"content\":\"x\"}],"
        "\"max_tokens\":100,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,"
        "\"seed\":-3,\"stop\":[\"\\n\",\"END\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"frequency_penalty\":-2,"
        "\"presence_penalty\":1.5,\"user\":\"u-1\",\"n\":1,\"logprobs\":false,\"tools\":[],"
        "\"response_format\":{\"type\":\"text\"},\"store\":true,\"metadata\":{\"k\":\"v\"},"
        "\"tool_choice\":\"none\",\"logit_bias\":null}";
    int rc = parse(a, b, strlen(b), &r, &e);
    if (rc)
        fail_msg("%s (param %s)", e.message, e.param);
    assert_string_equal(r.model, "other");
    assert_int_equal(r.n_msgs, 4);
    assert_string_equal(r.msgs[0].role, "system");
    assert_string_equal(r.msgs[1].content, "a\nb\xc3\xa9");
    assert_string_equal(r.msgs[2].role, "assistant");
    assert_string_equal(r.msgs[2].content, "");
    assert_int_equal(r.max_tokens, 7); /* max_completion_tokens wins */
    assert_true(r.temperature == 0.0);
    assert_true(r.top_p == 0.5);
    assert_true(r.has_seed);
    assert_true(r.seed == (uint64_t)-3);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[0], "\n");
    assert_string_equal(r.stop[1], "END");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_true(r.frequency_penalty == -2.0);
    assert_true(r.presence_penalty == 1.5);
    assert_string_equal(r.user, "u-1");
    arena_free(a);
}

static void test_nulls_and_stop_string(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    const char *b = "{\"model\":\"demo\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"}],"
                    "\"max_tokens\":null,\"temperature\":null,\"stop\":\"###\","
                    "\"stream_options\":{\"include_usage\":true}}";
    assert_int_equal(parse(a, b, strlen(b), &r, &e), CORE_OK);
    assert_int_equal(r.max_tokens, 0);
    assert_true(r.temperature == 1.0);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "###");
    assert_false(r.include_usage); /* only with stream */
    arena_free(a);
}

typedef struct {
    const char *body; /* "M" = a valid model+messages prefix follows */
    int status;
    const char *param; /* NULL: null */
    const char *code;
} bad_case;

#define P "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
static const bad_case bad[] = {
    /* not JSON / not an object */
    {"", 400, NULL, "invalid_json"},
    {"{", 400, NULL, "invalid_json"},
    {"{\"model\":\"demo\",}", 400, NULL, "invalid_json"},
    {"[1,2]", 400, NULL, "invalid_json"},
    {"\"text\"", 400, NULL, "invalid_json"},
    {P "} trailing", 400, NULL, "invalid_json"},
    {P ", \"x\": 1e999999999999999999999999999999999999999999999999999999999999999}", 400,
     NULL, "invalid_json"},
    {"{\"model\":\"demo\" /* c */}", 400, NULL, "invalid_json"},
    /* required fields */
    {"{}", 400, "model", "missing_required_parameter"},
    {"{\"messages\":[]}", 400, "model", "missing_required_parameter"},
    {"{\"model\":null,\"messages\":[]}", 400, "model", "missing_required_parameter"},
    {"{\"model\":\"demo\"}", 400, "messages", "missing_required_parameter"},
    /* model */
    {"{\"model\":5,\"messages\":[]}", 400, "model", "invalid_type"},
    {"{\"model\":\"gpt-4\",\"messages\":[]}", 400, "model", "model_not_found"},
    {"{\"model\":\"dem\\u0000o\",\"messages\":[]}", 400, "model", "invalid_value"},
    /* messages */
    {"{\"model\":\"demo\",\"messages\":{}}", 400, "messages", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[]}", 400, "messages", "invalid_value"},
    {"{\"model\":\"demo\",\"messages\":[1]}", 400, "messages[0]", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role",
     "missing_required_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content",
     "missing_required_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\","
     "\"content\":\"x\"}]}",
     400, "messages[1].role", "invalid_value"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":7,\"content\":\"x\"}]}", 400,
     "messages[0].role", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
     "messages[0].content", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":null}]}", 400,
     "messages[0].content", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}", 400,
     "messages[0].content", "invalid_value"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[\"x\"]}]}", 400,
     "messages[0].content[0]", "invalid_type"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
     "\"image_url\":{}}]}]}",
     400, "messages[0].content[0]", "unknown_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}",
     400, "messages[0].content[0].type", "invalid_value"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
     400, "messages[0].content[0].text", "missing_required_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}",
     400, "messages[0].content[0].type", "missing_required_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[{}]}]}",
     400, "messages[0].tool_calls", "unknown_parameter"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
     "\"content\":\"a\"},{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"a\"},"
     "{\"role\":\"user\",\"content\":\"a\"}]}",
     400, "messages", "array_above_max_length"},
    /* invalid UTF-8, named where it is */
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400,
     "messages[0].content", "invalid_encoding"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", 400,
     "messages[0].content", "invalid_encoding"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", 400,
     "messages[0].content", "invalid_encoding"},
    {"{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"ok\xe2\x82\"}]}]}",
     400, "messages[0].content[0].text", "invalid_encoding"},
    {P ",\"user\":\"\xfe\"}", 400, "user", "invalid_encoding"},
    {P ",\"\xff\":1}", 400, NULL, "invalid_encoding"},
    /* numbers */
    {P ",\"max_tokens\":0}", 400, "max_tokens", "invalid_value"},
    {P ",\"max_tokens\":-5}", 400, "max_tokens", "invalid_value"},
    {P ",\"max_tokens\":1.5}", 400, "max_tokens", "invalid_type"},
    {P ",\"max_tokens\":\"16\"}", 400, "max_tokens", "invalid_type"},
    {P ",\"max_tokens\":99999999999}", 400, "max_tokens", "invalid_value"},
    {P ",\"max_completion_tokens\":true}", 400, "max_completion_tokens", "invalid_type"},
    {P ",\"temperature\":2.5}", 400, "temperature", "invalid_value"},
    {P ",\"temperature\":-0.1}", 400, "temperature", "invalid_value"},
    {P ",\"temperature\":\"hot\"}", 400, "temperature", "invalid_type"},
    {P ",\"top_p\":1.01}", 400, "top_p", "invalid_value"},
    {P ",\"frequency_penalty\":3}", 400, "frequency_penalty", "invalid_value"},
    {P ",\"presence_penalty\":-2.01}", 400, "presence_penalty", "invalid_value"},
    {P ",\"seed\":1.5}", 400, "seed", "invalid_type"},
    {P ",\"seed\":\"7\"}", 400, "seed", "invalid_type"},
    {P ",\"n\":2}", 400, "n", "unsupported_value"},
    {P ",\"n\":0}", 400, "n", "invalid_value"},
    /* stop */
    {P ",\"stop\":5}", 400, "stop", "invalid_type"},
    {P ",\"stop\":\"\"}", 400, "stop", "invalid_value"},
    {P ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", "array_above_max_length"},
    {P ",\"stop\":[\"a\",3]}", 400, "stop[1]", "invalid_type"},
    {P ",\"stop\":[\"a\",\"\"]}", 400, "stop[1]", "invalid_value"},
    /* stream */
    {P ",\"stream\":\"yes\"}", 400, "stream", "invalid_type"},
    {P ",\"stream\":1}", 400, "stream", "invalid_type"},
    {P ",\"stream_options\":true}", 400, "stream_options", "invalid_type"},
    {P ",\"stream_options\":{\"include_usage\":1}}", 400, "stream_options.include_usage",
     "invalid_type"},
    {P ",\"stream_options\":{\"other\":true}}", 400, "stream_options", "unknown_parameter"},
    /* unknown and unsupported */
    {P ",\"foo\":1}", 400, "foo", "unknown_parameter"},
    {P ",\"logprobs\":true}", 400, "logprobs", "unsupported_parameter"},
    {P ",\"tools\":[{\"type\":\"function\"}]}", 400, "tools", "unsupported_parameter"},
    {P ",\"response_format\":{\"type\":\"json_object\"}}", 400, "response_format",
     "unsupported_parameter"},
    {P ",\"user\":5}", 400, "user", "invalid_type"},
    {P ",\"model\":\"demo\"}", 400, "model", "invalid_value"},
};

static void test_bad(void **state)
{
    (void)state;
    arena *a = arena_new(0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        req_chat r;
        api_error e;
        int rc = parse(a, bad[i].body, strlen(bad[i].body), &r, &e);
        if (rc != CORE_EINVAL)
            fail_msg("case %zu (%s): rc %d, want CORE_EINVAL", i, bad[i].body, rc);
        const char *param = e.param[0] ? e.param : NULL;
        bool param_ok = (!param && !bad[i].param) ||
                        (param && bad[i].param && strcmp(param, bad[i].param) == 0);
        bool code_ok = (!e.code && !bad[i].code) ||
                       (e.code && bad[i].code && strcmp(e.code, bad[i].code) == 0);
        if (e.status != bad[i].status || !param_ok || !code_ok || !e.message[0] ||
            strcmp(e.type, "invalid_request_error") != 0)
            fail_msg("case %zu (%s): got %d param=%s code=%s (%s); want %d param=%s code=%s", i,
                     bad[i].body, e.status, param ? param : "null", e.code ? e.code : "null",
                     e.message, bad[i].status, bad[i].param ? bad[i].param : "null",
                     bad[i].code ? bad[i].code : "null");
        arena_reset(a);
    }
    arena_free(a);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* Must fail cleanly, not recurse: 100k levels. */
    size_t n = 100000;
    char *b = malloc(2 * n + 64);
    assert_non_null(b);
    size_t k = (size_t)sprintf(b, "{\"model\":\"demo\",\"x\":");
    memset(b + k, '[', n);
    k += n;
    memset(b + k, ']', n);
    k += n;
    b[k++] = '}';
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    assert_int_equal(parse(a, b, k, &r, &e), CORE_EINVAL);
    assert_non_null(strstr(e.message, "nesting too deep"));
    arena_free(a);
    free(b);
}

static void test_embedded_nul_body(void **state)
{
    (void)state;
    static const char b[] = "{\"model\":\"demo\",\0\"messages\":[]}";
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    assert_int_equal(parse(a, b, sizeof(b) - 1, &r, &e), CORE_EINVAL);
    assert_string_equal(e.code, "invalid_json");
    arena_free(a);
}

static void test_too_many_members(void **state)
{
    (void)state;
    char b[8192];
    size_t k = (size_t)sprintf(b, "{\"model\":\"demo\"");
    for (int i = 0; i < 100; i++)
        k += (size_t)sprintf(b + k, ",\"k%d\":null", i);
    b[k++] = '}';
    arena *a = arena_new(0);
    req_chat r;
    api_error e;
    assert_int_equal(parse(a, b, k, &r, &e), CORE_EINVAL);
    assert_int_equal(e.status, 400);
    arena_free(a);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(json_utf8_valid("", 0));
    assert_true(json_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    assert_false(json_utf8_valid("\x80", 1));
    assert_false(json_utf8_valid("\xc3", 1));
    assert_false(json_utf8_valid("\xe0\x80\x80", 3)); /* overlong */
    assert_false(json_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(json_utf8_valid("\xed\xbf\xbf", 3)); /* surrogate */
    assert_true(json_utf8_valid("\xef\xbf\xbf", 3));
}

static void test_arena(void **state)
{
    (void)state;
    arena *a = arena_new(128);
    void *p = arena_alloc(a, 10);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    void *big = arena_alloc(a, 100000); /* its own block */
    assert_non_null(big);
    memset(big, 1, 100000);
    assert_true(arena_used(a) >= 100010);
    char *s = arena_strndup(a, "hello", 3);
    assert_string_equal(s, "hel");
    arena_reset(a);
    assert_int_equal(arena_used(a), 0);
    assert_non_null(arena_alloc(a, 64));
    assert_null(arena_alloc(a, SIZE_MAX));
    assert_null(arena_calloc(a, SIZE_MAX / 2, 4));
    arena_free(a);
    arena_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal),          cmocka_unit_test(test_full),
        cmocka_unit_test(test_nulls_and_stop_string), cmocka_unit_test(test_bad),
        cmocka_unit_test(test_deep_nesting),     cmocka_unit_test(test_embedded_nul_body),
        cmocka_unit_test(test_too_many_members), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
