/* test_fcgi_vision.c: the POST /v1/vision/detect request parsers
 * (fcgi/vision.c): base64 (RFC 4648 test vectors), data URIs, the JSON
 * body and the query string, good and bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "core_err.h"
#include "vision.h"

static arena *A;

static int setup(void **state)
{
    (void)state;
    A = arena_new(0);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    arena_free(A);
    return 0;
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 section 10. */
    static const char *const vec[][2] = {{"", ""},         {"Zg==", "f"},     {"Zm8=", "fo"},
                                         {"Zm9v", "foo"},  {"Zm9vYg==", "foob"},
                                         {"Zm9vYmE=", "fooba"}, {"Zm9vYmFy", "foobar"}};
    uint8_t out[16];
    size_t n;
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) {
        assert_int_equal(vision_base64_decode(vec[i][0], strlen(vec[i][0]), out, &n), 0);
        assert_int_equal(n, strlen(vec[i][1]));
        assert_memory_equal(out, vec[i][1], n);
    }
    assert_int_equal(vision_base64_decode("+/+/", 4, out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(out[2], 0xbf);
    static const char *const bad[] = {"Zg=",  "Zg", "Z===", "Zg==Zg==", "Zm9v YmFy", "Zm9-",
                                      "Zm9_", "=Zg=", "Zm\n9v", "Z=g="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (vision_base64_decode(bad[i], strlen(bad[i]), out, &n) == 0)
            fail_msg("accepted bad base64 '%s'", bad[i]);
}

static vision_req parse_json_ok(const char *s)
{
    vision_req r;
    api_error e;
    int rc = vision_parse_json(A, s, strlen(s), &r, &e);
    if (rc != CORE_OK)
        fail_msg("rejected %s: %s", s, e.message);
    return r;
}

static void expect_json_bad(const char *s, const char *param, const char *code)
{
    vision_req r;
    api_error e;
    if (vision_parse_json(A, s, strlen(s), &r, &e) == CORE_OK)
        fail_msg("accepted %s", s);
    assert_int_equal(e.status, 400);
    if (strcmp(e.param, param) != 0 || strcmp(e.code ? e.code : "", code) != 0)
        fail_msg("%s: param '%s' code '%s', want '%s' '%s' (%s)", s, e.param,
                 e.code ? e.code : "null", param, code, e.message);
}

static void test_json(void **state)
{
    (void)state;
    vision_req r = parse_json_ok("{\"image\":\"data:image/jpeg;base64,Zm9vYmFy\"}");
    assert_null(r.model);
    assert_int_equal(r.image_len, 6);
    assert_memory_equal(r.image, "foobar", 6);
    assert_true(r.confidence == (double)0.25f && r.iou == (double)0.45f);
    assert_int_equal(r.max_detections, 100);
    assert_null(r.classes);
    r = parse_json_ok("{\"classes\":[16,2,16,0],\"image\":\"DATA:Image/PNG;BASE64,Zg==\","
                      "\"model\":\"yolo\",\"confidence\":0.5,\"iou\":1,\"max_detections\":7}");
    assert_string_equal(r.model, "yolo");
    assert_int_equal(r.image_len, 1);
    assert_true(r.confidence == 0.5 && r.iou == 1.0);
    assert_int_equal(r.max_detections, 7);
    assert_int_equal(r.n_classes, 3); /* sorted, duplicates dropped */
    assert_int_equal(r.classes[0], 0);
    assert_int_equal(r.classes[1], 2);
    assert_int_equal(r.classes[2], 16);
    r = parse_json_ok("{\"image\":\"data:image/jpg;base64,\",\"model\":null,\"classes\":null,"
                      "\"confidence\":null}");
    assert_int_equal(r.image_len, 0);
    assert_null(r.classes);
    r = parse_json_ok("{\"image\":\"data:image/png;name=a.png;base64,Zm9v\"}");
    assert_int_equal(r.image_len, 3);

    expect_json_bad("", "", "invalid_json");
    expect_json_bad("{", "", "invalid_json");
    expect_json_bad("[]", "", "invalid_json");
    expect_json_bad("{}", "image", "missing_required_parameter");
    expect_json_bad("{\"image\":null}", "image", "invalid_type");
    expect_json_bad("{\"image\":\"Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:image/jpeg,Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:image/gif;base64,Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:;base64,Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:image/png;base64;x=1,Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:image/png,;base64,Zm9v\"}", "image", "invalid_image");
    expect_json_bad("{\"image\":\"data:image/png;base64,Zm9\"}", "image", "invalid_base64");
    expect_json_bad("{\"image\":\"data:image/png;base64,Zm9v\\n\"}", "image", "invalid_base64");
    const char *img = "\"image\":\"data:image/png;base64,Zm9v\"";
    char b[256];
#define BAD(extra, param, code)                                                            \
    snprintf(b, sizeof b, "{%s,%s}", img, extra);                                          \
    expect_json_bad(b, param, code)
    BAD("\"size\":416", "", "unknown_parameter");
    BAD("\"image\":\"x\"", "image", "invalid_value"); /* twice */
    BAD("\"model\":3", "model", "invalid_type");
    BAD("\"model\":\"\"", "model", "invalid_value");
    BAD("\"confidence\":1.01", "confidence", "invalid_value");
    BAD("\"confidence\":\"0.5\"", "confidence", "invalid_type");
    BAD("\"iou\":-0.5", "iou", "invalid_value");
    BAD("\"max_detections\":0", "max_detections", "invalid_value");
    BAD("\"max_detections\":1001", "max_detections", "invalid_value");
    BAD("\"max_detections\":2.5", "max_detections", "invalid_type");
    BAD("\"classes\":1", "classes", "invalid_type");
    BAD("\"classes\":[]", "classes", "invalid_value");
    BAD("\"classes\":[1,\"2\"]", "classes[1]", "invalid_type");
    BAD("\"classes\":[-1]", "classes[0]", "invalid_value");
#undef BAD
    arena_reset(A);
}

static void expect_query_bad(const char *q, const char *param)
{
    vision_req r;
    api_error e;
    if (vision_parse_query(A, q, &r, &e) == CORE_OK)
        fail_msg("accepted ?%s", q);
    assert_int_equal(e.status, 400);
    if (strcmp(e.param, param) != 0)
        fail_msg("?%s: param '%s', want '%s' (%s)", q, e.param, param, e.message);
}

static void test_query(void **state)
{
    (void)state;
    vision_req r;
    api_error e;
    assert_int_equal(vision_parse_query(A, NULL, &r, &e), CORE_OK);
    assert_int_equal(r.max_detections, 100);
    assert_int_equal(vision_parse_query(A, "", &r, &e), CORE_OK);
    assert_int_equal(vision_parse_query(A, "model=my%20yolo&confidence=0.5&iou=.3&"
                                           "max_detections=9&classes=16%2C2,16",
                                        &r, &e),
                     CORE_OK);
    assert_string_equal(r.model, "my yolo");
    assert_true(r.confidence == 0.5 && r.iou == 0.3);
    assert_int_equal(r.max_detections, 9);
    assert_int_equal(r.n_classes, 2);
    assert_int_equal(r.classes[0], 2);
    assert_int_equal(r.classes[1], 16);
    assert_int_equal(vision_parse_query(A, "model=a+b&", &r, &e), CORE_OK);
    assert_string_equal(r.model, "a b");

    expect_query_bad("colour=red", "");
    expect_query_bad("confidence", "confidence");
    expect_query_bad("confidence=", "confidence");
    expect_query_bad("confidence=abc", "confidence");
    expect_query_bad("confidence=0.5x", "confidence");
    expect_query_bad("confidence=nan", "confidence");
    expect_query_bad("iou=1.5", "iou");
    expect_query_bad("max_detections=0", "max_detections");
    expect_query_bad("max_detections=3.5", "max_detections");
    expect_query_bad("classes=", "classes");
    expect_query_bad("classes=1,,2", "classes");
    expect_query_bad("classes=1,", "classes");
    expect_query_bad("classes=-1", "classes");
    expect_query_bad("classes=x", "classes");
    expect_query_bad("model=", "model");
    expect_query_bad("model=a&model=b", "model");
    expect_query_bad("model=%zz", "");
    expect_query_bad("model=%0", "");
    expect_query_bad("model=a%00b", "");
    arena_reset(A);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
