/* POST /v1/embeddings: the request parser (what it accepts, and the param
 * each bad request names) and the response body (float and base64). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "embed.h"

static const char *const te_models[] = {"embed", "chat"};
static const embed_limits te_lim = {.models = te_models, .n_models = 2, .max_inputs = 3};

static int te_parse(const char *body, embed_request *r, api_error *e)
{
    static arena *a;
    if (!a)
        a = arena_new(0);
    return embed_parse(a, body, strlen(body), &te_lim, r, e);
}

static void test_accepts(void **state)
{
    (void)state;
    embed_request r;
    api_error e;
    assert_int_equal(te_parse("{\"model\":\"embed\",\"input\":\"hello\"}", &r, &e), CORE_OK);
    assert_string_equal(r.model, "embed");
    assert_int_equal(r.n_inputs, 1);
    assert_int_equal(r.lens[0], 5);
    assert_false(r.base64);
    assert_int_equal(r.dimensions, 0);
    assert_int_equal(te_parse("{\"input\":[\"a\",\"b c\",\"\\u00e9\"],\"model\":\"chat\","
                              "\"encoding_format\":\"base64\",\"dimensions\":384,\"user\":\"u\"}",
                              &r, &e),
                     CORE_OK);
    assert_int_equal(r.n_inputs, 3);
    assert_string_equal(r.inputs[2], "\xc3\xa9");
    assert_true(r.base64);
    assert_int_equal(r.dimensions, 384);
    assert_int_equal(te_parse("{\"model\":\"embed\",\"input\":\"x\",\"encoding_format\":null,"
                              "\"dimensions\":null,\"user\":null}",
                              &r, &e),
                     CORE_OK);
}

static void test_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param, *code;
    } bad[] = {
        {"[]", "", "invalid_json"},
        {"{\"model\":\"embed\",\"input\":", "", "invalid_json"},
        {"{\"model\":\"embed\"}", "input", "missing_required_parameter"},
        {"{\"input\":\"a\"}", "model", "missing_required_parameter"},
        {"{\"model\":\"nope\",\"input\":\"a\"}", "model", "model_not_found"},
        {"{\"model\":\"embed\",\"input\":\"\"}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":[]}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":[\"a\",\"\"]}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":[\"a\",\"b\",\"c\",\"d\"]}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":[1,2]}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":[[1],[2]]}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":7}", "input", "invalid_type"},
        {"{\"model\":\"embed\",\"input\":\"a\\u0000b\"}", "input", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":\"\xff\"}", "input", "invalid_encoding"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"encoding_format\":\"hex\"}", "encoding_format",
         "invalid_value"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"dimensions\":1.5}", "dimensions", "invalid_type"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"dimensions\":0}", "dimensions", "invalid_value"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"user\":1}", "user", "invalid_type"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"n\":1}", "n", "unknown_parameter"},
        {"{\"model\":\"embed\",\"input\":\"a\",\"input\":\"b\"}", "input", "invalid_value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        embed_request r;
        api_error e;
        if (te_parse(bad[i].body, &r, &e) != CORE_EINVAL || e.status != 400 ||
            strcmp(e.param, bad[i].param) || strcmp(e.code, bad[i].code))
            fail_msg("%s: status %d param '%s' code '%s'", bad[i].body, e.status, e.param,
                     e.code ? e.code : "(null)");
    }
}

static void test_body(void **state)
{
    (void)state;
    const float v[5] = {1.0f, -0.5f, 0.1f, 3.0e-8f, -2.0f}; /* 2 vectors of 2, 1 left over */
    sbuf b;
    sbuf_init(&b);
    assert_int_equal(embed_body(&b, "embed", v, 2, 2, false, 7), CORE_OK);
    assert_string_equal(b.data,
                        "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                        "\"embedding\":[1,-0.5]},{\"object\":\"embedding\",\"index\":1,"
                        "\"embedding\":[0.100000001,2.99999989e-08]}],\"model\":\"embed\","
                        "\"usage\":{\"prompt_tokens\":7,\"total_tokens\":7}}");
    sbuf_clear(&b);
    /* 1.0f = 00 00 80 3f, -0.5f = 00 00 00 bf: "AACAPwAAAL8=" */
    assert_int_equal(embed_body(&b, "e", v, 1, 2, true, 2), CORE_OK);
    assert_non_null(strstr(b.data, "\"embedding\":\"AACAPwAAAL8=\""));
    sbuf_clear(&b);
    assert_int_equal(embed_body(&b, "e", v, 1, 3, true, 2), CORE_OK); /* 12 bytes: no padding */
    assert_non_null(strstr(b.data, "\"embedding\":\"AACAPwAAAL/NzMw9\""));
    sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
