/* GGUF reader and writer: round trips through the writer, hand-crafted files
 * for the types the writer does not emit, and systematic corruption (every
 * truncation point, every count and length pushed out of range). */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core_err.h"
#include "gguf.h"
#include "quant.h"

/* ---- helpers ---------------------------------------------------------- */

static char tg_dir[256];

static int tg_setup(void **state)
{
    (void)state;
    snprintf(tg_dir, sizeof tg_dir, "/tmp/test_gguf.XXXXXX");
    return mkdtemp(tg_dir) ? 0 : -1;
}

static int tg_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(tg_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", tg_dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tg_dir);
    return 0;
}

static void *tg_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n ? (size_t)n : 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

/* Writes w to a file in the temp dir and returns its bytes. */
static uint8_t *tg_write(gguf_writer *w, const char *name, size_t *size)
{
    char path[512], msg[256] = "";
    snprintf(path, sizeof path, "%s/%s", tg_dir, name);
    int rc = gguf_writer_write(w, path, msg, sizeof msg);
    if (rc)
        fail_msg("write %s: %s", path, msg);
    return tg_read_file(path, size);
}

/* Opens a private copy of exactly n bytes, so that ASan sees any overread. */
static int tg_open_n(const uint8_t *bytes, size_t n, char *msg, size_t msg_size)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, n);
    gguf *g = (gguf *)1;
    msg[0] = 0;
    int rc = gguf_open_mem(copy, n, &g, msg, msg_size);
    if (rc) {
        assert_null(g);
        assert_true(msg[0] != 0); /* every failure explains itself */
    } else {
        assert_non_null(g);
        /* walk everything, as a user of the handle would */
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            volatile uint8_t sink = 0;
            if (t->size)
                sink ^= ((const uint8_t *)t->data)[t->size - 1];
            (void)sink;
        }
    }
    gguf_close(g);
    free(copy);
    return rc;
}

#define TG_EXPECT(bytes, n, code, needle)                                                  \
    do {                                                                                   \
        char m_[256];                                                                      \
        int rc_ = tg_open_n((bytes), (n), m_, sizeof m_);                                  \
        if (rc_ != (code) || !strstr(m_, (needle)))                                        \
            fail_msg("expected %s with '%s', got %s: '%s'", core_strerror(code), (needle), \
                     core_strerror(rc_), m_);                                              \
    } while (0)

/* Byte builder for hand-made files; records where fields were put. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} tg_buf;

static size_t tg_put(tg_buf *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->n, v, n);
    b->n += n;
    return b->n - n;
}
static size_t tg_u32(tg_buf *b, uint32_t v) { return tg_put(b, &v, 4); }
static size_t tg_u64(tg_buf *b, uint64_t v) { return tg_put(b, &v, 8); }
static size_t tg_str(tg_buf *b, const char *s)
{
    size_t at = tg_u64(b, strlen(s));
    tg_put(b, s, strlen(s));
    return at;
}
static void tg_strn(tg_buf *b, const char *s, size_t n)
{
    tg_u64(b, n);
    tg_put(b, s, n);
}
static void tg_pad(tg_buf *b, size_t a)
{
    while (b->n % a)
        tg_put(b, "", 1);
}
static void tg_patch_u32(uint8_t *p, size_t at, uint32_t v) { memcpy(p + at, &v, 4); }
static void tg_patch_u64(uint8_t *p, size_t at, uint64_t v) { memcpy(p + at, &v, 8); }

/* ---- writer round trips ----------------------------------------------- */

static void test_roundtrip_kv(void **state)
{
    (void)state;
    static const char odd[] = "caf\xc3\xa9 \x01\x7f\xff\xfe\t\n\"'\\ <|im_end|>";
    const char *strs[] = {"", "a", odd, "\xe4\xb8\xad\xe6\x96\x87", "two words"};
    const float fs[] = {0.0f, -1.5f, 3.25e-7f, INFINITY, 65504.0f};
    const int32_t is[] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_u32(w, "u32", 4000000000u), 0);
    assert_int_equal(gguf_writer_set_i32(w, "i32", -123456), 0);
    assert_int_equal(gguf_writer_set_f32(w, "f32", 1e-6f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "yes", true), 0);
    assert_int_equal(gguf_writer_set_bool(w, "no", false), 0);
    assert_int_equal(gguf_writer_set_str(w, "odd", odd), 0);
    assert_int_equal(gguf_writer_set_str(w, "empty", ""), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "strs", strs, 5), 0);
    assert_int_equal(gguf_writer_set_arr_f32(w, "fs", fs, 5), 0);
    assert_int_equal(gguf_writer_set_arr_i32(w, "is", is, 5), 0);
    assert_int_equal(gguf_writer_set_arr_i32(w, "none", NULL, 0), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "nostrs", NULL, 0), 0);
    /* setting again replaces, keeping one entry */
    assert_int_equal(gguf_writer_set_i32(w, "replaced", 1), 0);
    assert_int_equal(gguf_writer_set_str(w, "replaced", "now a string"), 0);
    /* bad arguments */
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 48), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 0), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_i32(w, "general.alignment", 64), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_str(w, "general.alignment", "64"), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_str(w, "", "x"), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_str(w, "k", NULL), CORE_EINVAL);
    assert_int_equal(gguf_writer_set_arr_f32(w, "k", NULL, 3), CORE_EINVAL);

    size_t n;
    uint8_t *bytes = tg_write(w, "kv.gguf", &n);
    gguf_writer_free(w);
    gguf *g;
    char msg[256];
    assert_int_equal(gguf_open_mem(bytes, n, &g, msg, sizeof msg), 0);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_n_kv(g), 13);
    assert_int_equal(gguf_n_tensors(g), 0);

    uint32_t u;
    int64_t i64;
    float f;
    bool b;
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_u32(g, "u32", &u), 0);
    assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_i64(g, "i32", &i64), 0);
    assert_int_equal(i64, -123456);
    assert_int_equal(gguf_get_u32(g, "i32", &u), CORE_EFORMAT); /* negative */
    assert_int_equal(gguf_get_f32(g, "f32", &f), 0);
    assert_true(f == 1e-6f);
    assert_int_equal(gguf_get_f32(g, "i32", &f), 0); /* integers read as float */
    assert_true(f == -123456.0f);
    assert_int_equal(gguf_get_bool(g, "yes", &b), 0);
    assert_true(b);
    assert_int_equal(gguf_get_bool(g, "no", &b), 0);
    assert_false(b);
    assert_int_equal(gguf_get_str(g, "odd", &s, &len), 0);
    assert_int_equal(len, sizeof odd - 1);
    assert_memory_equal(s, odd, len);
    assert_int_equal(gguf_get_str(g, "empty", &s, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(gguf_get_str(g, "replaced", &s, &len), 0);
    assert_int_equal(len, 12);
    assert_memory_equal(s, "now a string", 12);

    int64_t k = gguf_find_key(g, "strs");
    assert_true(k >= 0);
    assert_string_equal(gguf_kv_key(g, k), "strs");
    assert_int_equal(gguf_kv_type(g, k), GGUF_ARRAY);
    assert_int_equal(gguf_kv_arr_type(g, k), GGUF_STRING);
    assert_int_equal(gguf_kv_arr_n(g, k), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gguf_arr_str(g, k, (uint64_t)i, &s, &len), 0);
        assert_int_equal(len, strlen(strs[i]));
        assert_memory_equal(s, strs[i], len);
    }
    assert_int_equal(gguf_arr_str(g, k, 5, &s, &len), CORE_EINVAL);
    assert_int_equal(gguf_arr_i64(g, k, 0, &i64), CORE_EINVAL);

    k = gguf_find_key(g, "fs");
    assert_int_equal(gguf_kv_arr_type(g, k), GGUF_FLOAT32);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gguf_arr_f32(g, k, (uint64_t)i, &f), 0);
        assert_memory_equal(&f, &fs[i], 4);
    }
    assert_int_equal(gguf_arr_str(g, k, 0, &s, &len), CORE_EINVAL);
    k = gguf_find_key(g, "is");
    assert_int_equal(gguf_kv_arr_type(g, k), GGUF_INT32);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gguf_arr_i64(g, k, (uint64_t)i, &i64), 0);
        assert_int_equal(i64, is[i]);
    }
    assert_int_equal(gguf_arr_i64(g, k, 5, &i64), CORE_EINVAL);
    assert_int_equal(gguf_kv_arr_n(g, gguf_find_key(g, "none")), 0);
    assert_int_equal(gguf_kv_arr_n(g, gguf_find_key(g, "nostrs")), 0);
    assert_int_equal(gguf_kv_arr_n(g, gguf_find_key(g, "u32")), 0);

    /* error codes of the getters */
    assert_int_equal(gguf_get_u32(g, "odd", &u), CORE_EFORMAT);
    assert_int_equal(gguf_get_u32(g, "absent", &u), CORE_ENOTFOUND);
    assert_int_equal(gguf_get_str(g, "absent", &s, &len), CORE_ENOTFOUND);
    assert_int_equal(gguf_get_str(g, "u32", &s, &len), CORE_EFORMAT);
    assert_int_equal(gguf_get_bool(g, "u32", &b), CORE_EFORMAT);
    assert_int_equal(gguf_get_i64(g, "f32", &i64), CORE_EFORMAT);
    assert_int_equal(gguf_get_u32(g, "is", &u), CORE_EFORMAT); /* array */
    assert_int_equal(gguf_get_f32(g, "yes", &f), CORE_EFORMAT);
    assert_int_equal(gguf_find_key(g, "absent"), -1);
    gguf_close(g);
    free(bytes);
}

static void tg_kv(tg_buf *b, const char *key, gguf_vtype t, const void *v, size_t n)
{
    tg_str(b, key);
    tg_u32(b, (uint32_t)t);
    tg_put(b, v, n);
}

static void tg_kv_arr(tg_buf *b, const char *key, gguf_vtype et, uint64_t n, const void *v, size_t bytes)
{
    tg_str(b, key);
    tg_u32(b, GGUF_ARRAY);
    tg_u32(b, (uint32_t)et);
    tg_u64(b, n);
    tg_put(b, v, bytes);
}

/* Every value type, scalar and array, including those the writer never emits. */
static void test_all_value_types(void **state)
{
    (void)state;
    tg_buf b = {0};
    tg_put(&b, "GGUF", 4);
    tg_u32(&b, 3);
    tg_u64(&b, 0);
    tg_u64(&b, 25);
    uint8_t u8 = 250;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -7;
    float f32 = 2.5f;
    uint8_t bo = 1;
    uint64_t u64 = UINT64_C(1) << 40, u64big = UINT64_MAX;
    int64_t i64 = -(INT64_C(1) << 50);
    double f64 = 0.125;
    tg_kv(&b, "u8", GGUF_UINT8, &u8, 1);
    tg_kv(&b, "i8", GGUF_INT8, &i8, 1);
    tg_kv(&b, "u16", GGUF_UINT16, &u16, 2);
    tg_kv(&b, "i16", GGUF_INT16, &i16, 2);
    tg_kv(&b, "u32", GGUF_UINT32, &u32, 4);
    tg_kv(&b, "i32", GGUF_INT32, &i32, 4);
    tg_kv(&b, "f32", GGUF_FLOAT32, &f32, 4);
    tg_kv(&b, "bool", GGUF_BOOL, &bo, 1);
    tg_str(&b, "str");
    tg_u32(&b, GGUF_STRING);
    tg_strn(&b, "x\0y", 3); /* strings may hold any byte */
    tg_kv(&b, "u64", GGUF_UINT64, &u64, 8);
    tg_kv(&b, "u64big", GGUF_UINT64, &u64big, 8);
    tg_kv(&b, "i64", GGUF_INT64, &i64, 8);
    tg_kv(&b, "f64", GGUF_FLOAT64, &f64, 8);

    const uint8_t au8[] = {1, 2, 255};
    const int8_t ai8[] = {-1, 0, 127};
    const uint16_t au16[] = {0, 1000, 65535};
    const int16_t ai16[] = {-32768, 0, 5};
    const uint32_t au32[] = {7, 0, 4294967295u};
    const int32_t ai32[] = {-2, 3, -4};
    const float af32[] = {0.5f, -0.25f, 8.0f};
    const uint8_t abool[] = {1, 0, 1};
    const uint64_t au64[] = {0, 9, UINT64_C(1) << 62};
    const int64_t ai64[] = {-9, 9, INT64_MIN};
    const double af64[] = {1.0, -2.0, 0.75};
    tg_kv_arr(&b, "a_u8", GGUF_UINT8, 3, au8, sizeof au8);
    tg_kv_arr(&b, "a_i8", GGUF_INT8, 3, ai8, sizeof ai8);
    tg_kv_arr(&b, "a_u16", GGUF_UINT16, 3, au16, sizeof au16);
    tg_kv_arr(&b, "a_i16", GGUF_INT16, 3, ai16, sizeof ai16);
    tg_kv_arr(&b, "a_u32", GGUF_UINT32, 3, au32, sizeof au32);
    tg_kv_arr(&b, "a_i32", GGUF_INT32, 3, ai32, sizeof ai32);
    tg_kv_arr(&b, "a_f32", GGUF_FLOAT32, 3, af32, sizeof af32);
    tg_kv_arr(&b, "a_bool", GGUF_BOOL, 3, abool, sizeof abool);
    tg_kv_arr(&b, "a_u64", GGUF_UINT64, 3, au64, sizeof au64);
    tg_kv_arr(&b, "a_i64", GGUF_INT64, 3, ai64, sizeof ai64);
    tg_kv_arr(&b, "a_f64", GGUF_FLOAT64, 3, af64, sizeof af64);
    tg_kv_arr(&b, "a_str", GGUF_STRING, 2, NULL, 0);
    tg_strn(&b, "\xff\x00z", 3);
    tg_str(&b, "");

    gguf *g;
    char msg[256] = "";
    int rc = gguf_open_mem(b.p, b.n, &g, msg, sizeof msg);
    if (rc)
        fail_msg("%s", msg);
    assert_int_equal(gguf_n_kv(g), 25);
    int64_t v;
    float f;
    uint32_t u;
    bool bv;
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_i64(g, "u8", &v), 0), assert_int_equal(v, 250);
    assert_int_equal(gguf_get_i64(g, "i8", &v), 0), assert_int_equal(v, -100);
    assert_int_equal(gguf_get_i64(g, "u16", &v), 0), assert_int_equal(v, 65000);
    assert_int_equal(gguf_get_i64(g, "i16", &v), 0), assert_int_equal(v, -32000);
    assert_int_equal(gguf_get_u32(g, "u32", &u), 0), assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_i64(g, "i32", &v), 0), assert_int_equal(v, -7);
    assert_int_equal(gguf_get_f32(g, "f32", &f), 0), assert_true(f == 2.5f);
    assert_int_equal(gguf_get_bool(g, "bool", &bv), 0), assert_true(bv);
    assert_int_equal(gguf_get_str(g, "str", &s, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "x\0y", 3);
    assert_int_equal(gguf_get_i64(g, "u64", &v), 0), assert_int_equal(v, INT64_C(1) << 40);
    assert_int_equal(gguf_get_u32(g, "u64", &u), CORE_EFORMAT); /* does not fit */
    assert_int_equal(gguf_get_i64(g, "u64big", &v), CORE_EFORMAT);
    assert_int_equal(gguf_get_i64(g, "i64", &v), 0), assert_int_equal(v, -(INT64_C(1) << 50));
    assert_int_equal(gguf_get_f32(g, "f64", &f), 0), assert_true(f == 0.125f);
    assert_int_equal(gguf_get_f32(g, "u16", &f), 0), assert_true(f == 65000.0f);

    struct { const char *k; gguf_vtype t; int64_t iv[3]; } arrs[] = {
        {"a_u8", GGUF_UINT8, {1, 2, 255}},        {"a_i8", GGUF_INT8, {-1, 0, 127}},
        {"a_u16", GGUF_UINT16, {0, 1000, 65535}}, {"a_i16", GGUF_INT16, {-32768, 0, 5}},
        {"a_u32", GGUF_UINT32, {7, 0, 4294967295}}, {"a_i32", GGUF_INT32, {-2, 3, -4}},
        {"a_bool", GGUF_BOOL, {1, 0, 1}},         {"a_i64", GGUF_INT64, {-9, 9, INT64_MIN}},
        {"a_f64", GGUF_FLOAT64, {1, -2, 0}},
    };
    for (size_t a = 0; a < sizeof arrs / sizeof arrs[0]; a++) {
        int64_t k = gguf_find_key(g, arrs[a].k);
        assert_true(k >= 0);
        assert_int_equal(gguf_kv_type(g, k), GGUF_ARRAY);
        assert_int_equal(gguf_kv_arr_type(g, k), arrs[a].t);
        assert_int_equal(gguf_kv_arr_n(g, k), 3);
        for (uint64_t i = 0; i < 3; i++) {
            assert_int_equal(gguf_arr_i64(g, k, i, &v), 0);
            assert_int_equal(v, arrs[a].iv[i]);
        }
        assert_int_equal(gguf_arr_i64(g, k, 3, &v), CORE_EINVAL);
        assert_int_equal(gguf_arr_str(g, k, 0, &s, &len), CORE_EINVAL);
    }
    int64_t k = gguf_find_key(g, "a_f32");
    assert_int_equal(gguf_arr_f32(g, k, 1, &f), 0), assert_true(f == -0.25f);
    k = gguf_find_key(g, "a_f64");
    assert_int_equal(gguf_arr_f32(g, k, 2, &f), 0), assert_true(f == 0.75f);
    k = gguf_find_key(g, "a_u64");
    assert_int_equal(gguf_arr_i64(g, k, 2, &v), 0), assert_int_equal(v, INT64_C(1) << 62);
    k = gguf_find_key(g, "a_str");
    assert_int_equal(gguf_kv_arr_n(g, k), 2);
    assert_int_equal(gguf_arr_str(g, k, 0, &s, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "\xff\x00z", 3);
    assert_int_equal(gguf_arr_str(g, k, 1, &s, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(gguf_arr_f32(g, k, 0, &f), CORE_EINVAL);
    assert_int_equal(gguf_arr_i64(g, 999, 0, &v), CORE_EINVAL);
    assert_int_equal(gguf_arr_i64(g, -1, 0, &v), CORE_EINVAL);
    gguf_close(g);

    /* every strict prefix of this file is truncated */
    for (size_t n = 0; n < b.n; n++)
        TG_EXPECT(b.p, n, CORE_EFORMAT, "");
    free(b.p);
}

/* Tensor payloads with distinct bytes, so a misplaced pointer shows. */
static uint8_t *tg_payload(int type, int64_t ne0, int64_t rows, size_t *size, uint32_t seed)
{
    *size = quant_row_size(type, ne0) * (size_t)rows;
    uint8_t *p = malloc(*size);
    assert_non_null(p);
    for (size_t i = 0; i < *size; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
    return p;
}

static void tg_tensor_roundtrip(uint32_t alignment)
{
    struct { const char *name; int type; int n_dims; int64_t ne[4]; } ts[] = {
        {"norm", QT_F32, 1, {7}},
        {"h", QT_F16, 2, {5, 3}},
        {"blk.0.attn_q.weight", QT_Q8_0, 2, {64, 3}},
        {"q4", QT_Q4_0, 3, {32, 2, 2}},
        {"k", QT_Q4_K, 2, {256, 2}},
        {"six", QT_Q6_K, 4, {256, 1, 1, 2}},
        {"b", QT_BF16, 1, {1}},
    };
    enum { NT = sizeof ts / sizeof ts[0] };
    uint8_t *data[NT];
    size_t sizes[NT];
    gguf_writer *w = gguf_writer_new();
    if (alignment)
        assert_int_equal(gguf_writer_set_u32(w, "general.alignment", alignment), 0);
    assert_int_equal(gguf_writer_set_str(w, "general.name", "tensors"), 0);
    for (int i = 0; i < NT; i++) {
        int64_t rows = 1;
        for (int d = 1; d < ts[i].n_dims; d++)
            rows *= ts[i].ne[d];
        data[i] = tg_payload(ts[i].type, ts[i].ne[0], rows, &sizes[i], (uint32_t)i + 1);
        assert_int_equal(gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne,
                                                data[i], sizes[i]),
                         0);
    }
    /* refused: wrong size, duplicate name, unknown type, bad shapes */
    int64_t ne2[2] = {32, 2};
    uint8_t junk[1024] = {0};
    assert_int_equal(gguf_writer_add_tensor(w, "x", QT_Q8_0, 2, ne2, junk, 67), CORE_EINVAL);
    assert_int_equal(gguf_writer_add_tensor(w, "h", QT_Q8_0, 2, ne2, junk, 68), CORE_EINVAL);
    assert_int_equal(gguf_writer_add_tensor(w, "x", 99, 2, ne2, junk, 68), CORE_EUNSUPPORTED);
    assert_int_equal(gguf_writer_add_tensor(w, "x", QT_Q8_0, 5, ne2, junk, 68), CORE_EINVAL);
    int64_t ne_odd[2] = {33, 2}, ne_zero[2] = {32, 0};
    assert_int_equal(gguf_writer_add_tensor(w, "x", QT_Q8_0, 2, ne_odd, junk, 68), CORE_EINVAL);
    assert_int_equal(gguf_writer_add_tensor(w, "x", QT_Q8_0, 2, ne_zero, junk, 0), CORE_EINVAL);
    assert_int_equal(gguf_writer_add_tensor(w, "", QT_Q8_0, 2, ne2, junk, 68), CORE_EINVAL);

    size_t n;
    uint8_t *bytes = tg_write(w, "tensors.gguf", &n);
    gguf_writer_free(w);
    gguf *g;
    char msg[256] = "";
    if (gguf_open_mem(bytes, n, &g, msg, sizeof msg))
        fail_msg("%s", msg);
    size_t a = alignment ? alignment : 32;
    assert_int_equal(gguf_alignment(g), a);
    assert_int_equal(gguf_n_tensors(g), NT);
    for (int i = 0; i < NT; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        assert_ptr_equal(gguf_find_tensor(g, ts[i].name), t);
        assert_string_equal(t->name, ts[i].name);
        assert_int_equal(t->type, ts[i].type);
        assert_int_equal(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
        assert_int_equal(t->size, sizes[i]);
        size_t off = (size_t)((const uint8_t *)t->data - bytes);
        assert_int_equal(off % a, 0);
        assert_memory_equal(t->data, data[i], sizes[i]);
        free(data[i]);
    }
    assert_null(gguf_find_tensor(g, "absent"));
    assert_null(gguf_tensor_at(g, NT));
    gguf_close(g);
    free(bytes);
}

static void test_tensors(void **state)
{
    (void)state;
    tg_tensor_roundtrip(0);
    tg_tensor_roundtrip(64);
    tg_tensor_roundtrip(1);
}

/* Also through gguf_open (mmap), and the file is replaced atomically. */
static void test_open_file(void **state)
{
    (void)state;
    char path[512], msg[256];
    snprintf(path, sizeof path, "%s/file.gguf", tg_dir);
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)i;
    int64_t ne[2] = {32, 2};
    for (int round = 0; round < 2; round++) {
        gguf_writer *w = gguf_writer_new();
        assert_int_equal(gguf_writer_set_u32(w, "round", (uint32_t)round), 0);
        assert_int_equal(gguf_writer_add_tensor(w, "x", QT_F32, 2, ne, x, sizeof x), 0);
        assert_int_equal(gguf_writer_write(w, path, msg, sizeof msg), 0);
        gguf_writer_free(w);
    }
    gguf *g;
    assert_int_equal(gguf_open(path, &g, msg, sizeof msg), 0);
    uint32_t r;
    assert_int_equal(gguf_get_u32(g, "round", &r), 0);
    assert_int_equal(r, 1);
    assert_memory_equal(gguf_find_tensor(g, "x")->data, x, sizeof x);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(gguf_file_size(g), (size_t)st.st_size);
    assert_int_equal(st.st_mode & 0777, 0644);
    gguf_close(g);
    /* no temporary files left behind */
    DIR *d = opendir(tg_dir);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);

    gguf_close(NULL);
    gguf_writer_free(NULL);
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &g, msg, sizeof msg), CORE_EIO);
    assert_null(g);
    assert_non_null(strstr(msg, "/nonexistent/x.gguf"));
    assert_int_equal(gguf_open(tg_dir, &g, msg, sizeof msg), CORE_EIO);
    gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_write(w, "/nonexistent/dir/x.gguf", msg, sizeof msg), CORE_EIO);
    assert_non_null(strstr(msg, "/nonexistent/dir/x.gguf"));
    gguf_writer_free(w);
    /* short file through the mmap path */
    FILE *f = fopen(path, "wb");
    fwrite("GGUF\3\0\0\0", 1, 8, f);
    fclose(f);
    assert_int_equal(gguf_open(path, &g, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "truncated"));
}

/* ---- corruption ------------------------------------------------------- */

/* A small valid file, hand-made so that the offsets of its fields are known:
 *   kv0 "general.alignment" u32 32, kv1 "s" str, kv2 "arr" i32[3], kv3 "toks" str[2]
 *   tensor "t0" F32 [8,2], tensor "t1" Q8_0 [32,1] */
typedef struct {
    tg_buf b;
    size_t version, n_tensors, n_kv, align_val, key1_len, str1_len, arr_type, arr_n, toks_n,
        tok1_len, kv1_type, t0_name_len, t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off, t1_name,
        t1_off, data_end;
} tg_file;

static void tg_make(tg_file *f)
{
    memset(f, 0, sizeof *f);
    tg_buf *b = &f->b;
    tg_put(b, "GGUF", 4);
    f->version = tg_u32(b, 3);
    f->n_tensors = tg_u64(b, 2);
    f->n_kv = tg_u64(b, 4);
    tg_str(b, "general.alignment");
    tg_u32(b, GGUF_UINT32);
    f->align_val = tg_u32(b, 32);
    f->key1_len = tg_str(b, "s");
    f->kv1_type = tg_u32(b, GGUF_STRING);
    f->str1_len = tg_str(b, "hello");
    tg_str(b, "arr");
    tg_u32(b, GGUF_ARRAY);
    f->arr_type = tg_u32(b, GGUF_INT32);
    f->arr_n = tg_u64(b, 3);
    int32_t v[3] = {1, 2, 3};
    tg_put(b, v, sizeof v);
    tg_str(b, "toks");
    tg_u32(b, GGUF_ARRAY);
    tg_u32(b, GGUF_STRING);
    f->toks_n = tg_u64(b, 2);
    tg_str(b, "a");
    f->tok1_len = tg_str(b, "bc");
    f->t0_name_len = tg_str(b, "t0");
    f->t0_ndims = tg_u32(b, 2);
    f->t0_ne0 = tg_u64(b, 8);
    f->t0_ne1 = tg_u64(b, 2);
    f->t0_type = tg_u32(b, QT_F32);
    f->t0_off = tg_u64(b, 0);
    f->t1_name = tg_str(b, "t1");
    tg_u32(b, 2);
    tg_u64(b, 32);
    tg_u64(b, 1);
    tg_u32(b, QT_Q8_0);
    f->t1_off = tg_u64(b, 64);
    tg_pad(b, 32);
    for (int i = 0; i < 64 + 34; i++)
        tg_put(b, &(uint8_t){(uint8_t)(i * 7)}, 1);
    f->data_end = b->n;
}

/* A patched copy of the base file, opened and checked. */
static void tg_expect_patch64(const tg_file *f, size_t at, uint64_t v, int code, const char *needle)
{
    uint8_t *p = malloc(f->b.n);
    memcpy(p, f->b.p, f->b.n);
    tg_patch_u64(p, at, v);
    TG_EXPECT(p, f->b.n, code, needle);
    free(p);
}

static void tg_expect_patch32(const tg_file *f, size_t at, uint32_t v, int code, const char *needle)
{
    uint8_t *p = malloc(f->b.n);
    memcpy(p, f->b.p, f->b.n);
    tg_patch_u32(p, at, v);
    TG_EXPECT(p, f->b.n, code, needle);
    free(p);
}

static void test_base_file_valid(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    char msg[256];
    assert_int_equal(tg_open_n(f.b.p, f.b.n, msg, sizeof msg), 0);
    /* version 2 has the same layout */
    uint8_t *p = malloc(f.b.n);
    memcpy(p, f.b.p, f.b.n);
    tg_patch_u32(p, f.version, 2);
    gguf *g;
    assert_int_equal(gguf_open_mem(p, f.b.n, &g, msg, sizeof msg), 0);
    assert_int_equal(gguf_version(g), 2);
    assert_int_equal(gguf_n_tensors(g), 2);
    assert_int_equal(gguf_find_tensor(g, "t1")->type, QT_Q8_0);
    assert_ptr_equal(gguf_find_tensor(g, "t1")->data, p + f.data_end - 34);
    gguf_close(g);
    free(p);
    free(f.b.p);
}

static void test_truncation_everywhere(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    for (size_t n = 0; n < f.data_end; n++)
        TG_EXPECT(f.b.p, n, CORE_EFORMAT, n < 4 ? "magic" : "");
    free(f.b.p);

    /* the same over a file from the writer, including its padding */
    gguf_writer *w = gguf_writer_new();
    const char *toks[] = {"x", "yy", ""};
    float fs[3] = {1, 2, 3};
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_writer_set_arr_f32(w, "scores", fs, 3);
    gguf_writer_set_bool(w, "b", true);
    size_t s1, s2;
    uint8_t *d1 = tg_payload(QT_Q4_0, 64, 2, &s1, 5); /* 72 bytes: padded to 96 */
    uint8_t *d2 = tg_payload(QT_F16, 16, 2, &s2, 6);  /* 64 bytes: ends the file */
    assert_int_equal(gguf_writer_add_tensor(w, "a", QT_Q4_0, 2, (int64_t[]){64, 2}, d1, s1), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "b", QT_F16, 2, (int64_t[]){16, 2}, d2, s2), 0);
    size_t n;
    uint8_t *bytes = tg_write(w, "trunc.gguf", &n);
    gguf_writer_free(w);
    assert_int_equal(n % 32, 0);
    assert_memory_equal(bytes + n - s2, d2, s2);
    char msg[256];
    assert_int_equal(tg_open_n(bytes, n, msg, sizeof msg), 0);
    for (size_t k = 0; k < n; k++)
        TG_EXPECT(bytes, k, CORE_EFORMAT, "");
    free(bytes);
    free(d1);
    free(d2);
}

static void test_corrupt_counts(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    tg_expect_patch64(&f, f.n_kv, UINT64_MAX, CORE_EFORMAT, "exceed the file");
    tg_expect_patch64(&f, f.n_kv, UINT64_C(1) << 40, CORE_EFORMAT, "exceed the file");
    tg_expect_patch64(&f, f.n_tensors, UINT64_MAX, CORE_EFORMAT, "exceed the file");
    tg_expect_patch64(&f, f.n_tensors, 3, CORE_EFORMAT, "");
    tg_expect_patch64(&f, f.n_kv, 5, CORE_EFORMAT, "");
    /* string lengths */
    tg_expect_patch64(&f, f.key1_len, UINT64_MAX, CORE_EFORMAT, "string length");
    tg_expect_patch64(&f, f.key1_len, UINT64_MAX - 7, CORE_EFORMAT, "string length");
    tg_expect_patch64(&f, f.str1_len, UINT64_C(1) << 62, CORE_EFORMAT, "'s'");
    tg_expect_patch64(&f, f.tok1_len, 1000000, CORE_EFORMAT, "toks");
    tg_expect_patch64(&f, f.t0_name_len, UINT64_MAX, CORE_EFORMAT, "string length");
    /* array lengths and types */
    tg_expect_patch64(&f, f.arr_n, UINT64_MAX, CORE_EFORMAT, "'arr'");
    tg_expect_patch64(&f, f.arr_n, UINT64_MAX / 4 + 1, CORE_EFORMAT, "'arr'");
    tg_expect_patch64(&f, f.arr_n, 1000, CORE_EFORMAT, "'arr'");
    tg_expect_patch64(&f, f.toks_n, UINT64_MAX, CORE_EFORMAT, "'toks'");
    tg_expect_patch64(&f, f.toks_n, UINT64_MAX / 8 + 1, CORE_EFORMAT, "'toks'");
    tg_expect_patch32(&f, f.arr_type, GGUF_ARRAY, CORE_EFORMAT, "'arr'");
    tg_expect_patch32(&f, f.arr_type, 13, CORE_EFORMAT, "'arr'");
    tg_expect_patch32(&f, f.arr_type, UINT32_MAX, CORE_EFORMAT, "'arr'");
    tg_expect_patch32(&f, f.kv1_type, 13, CORE_EFORMAT, "'s'");
    tg_expect_patch32(&f, f.kv1_type, UINT32_MAX, CORE_EFORMAT, "'s'");
    free(f.b.p);
}

static void test_corrupt_tensors(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    tg_expect_patch32(&f, f.t0_ndims, 0, CORE_EFORMAT, "'t0'");
    tg_expect_patch32(&f, f.t0_ndims, 5, CORE_EFORMAT, "'t0'");
    tg_expect_patch32(&f, f.t0_ndims, UINT32_MAX, CORE_EFORMAT, "'t0'");
    tg_expect_patch64(&f, f.t0_ne0, 0, CORE_EFORMAT, "'t0': bad dimension");
    tg_expect_patch64(&f, f.t0_ne1, UINT64_MAX, CORE_EFORMAT, "'t0': bad dimension");
    tg_expect_patch64(&f, f.t0_ne0, UINT64_C(1) << 40, CORE_EFORMAT, "'t0'");
    tg_expect_patch64(&f, f.t0_ne1, UINT64_C(1) << 40, CORE_EFORMAT, "'t0'");
    tg_expect_patch64(&f, f.t0_off, 4096, CORE_EFORMAT, "'t0'");
    tg_expect_patch64(&f, f.t0_off, UINT64_MAX - 31, CORE_EFORMAT, "'t0'");
    tg_expect_patch64(&f, f.t1_off, 96, CORE_EFORMAT, "'t1'");
    tg_expect_patch64(&f, f.t0_off, 4, CORE_EFORMAT, "'t0': offset 4 not aligned");
    tg_expect_patch32(&f, f.t0_type, 99, CORE_EUNSUPPORTED, "'t0'");
    tg_expect_patch32(&f, f.t0_type, 16, CORE_EUNSUPPORTED, "'t0'"); /* IQ2_XXS */
    tg_expect_patch32(&f, f.t0_type, UINT32_MAX, CORE_EUNSUPPORTED, "'t0'");
    tg_expect_patch32(&f, f.t0_type, QT_Q4_0, CORE_EFORMAT, "'t0'"); /* row of 8 */
    /* rename t1 to t0 */
    uint8_t *p = malloc(f.b.n);
    memcpy(p, f.b.p, f.b.n);
    p[f.t1_name + 9] = '0';
    TG_EXPECT(p, f.b.n, CORE_EFORMAT, "duplicate tensor 't0'");
    free(p);
    free(f.b.p);
}

static void test_corrupt_header(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    uint8_t *p = malloc(f.b.n);
    memcpy(p, f.b.p, f.b.n);
    p[0] = 'g';
    TG_EXPECT(p, f.b.n, CORE_EFORMAT, "magic");
    free(p);
    tg_expect_patch32(&f, f.version, 1, CORE_EUNSUPPORTED, "version 1");
    tg_expect_patch32(&f, f.version, 0x03000000, CORE_EUNSUPPORTED, "version");
    tg_expect_patch32(&f, f.align_val, 48, CORE_EFORMAT, "general.alignment");
    tg_expect_patch32(&f, f.align_val, 0, CORE_EFORMAT, "general.alignment");
    /* 16 is legal; the data start can only move earlier, so t1 still fits */
    tg_expect_patch32(&f, f.align_val, 16, CORE_OK, "");
    free(f.b.p);

    /* key with an embedded NUL, duplicate keys, alignment of the wrong type */
    tg_buf b = {0};
    tg_put(&b, "GGUF", 4);
    tg_u32(&b, 3);
    tg_u64(&b, 0);
    tg_u64(&b, 1);
    tg_u64(&b, 3);
    tg_put(&b, "a\0b", 3);
    tg_u32(&b, GGUF_UINT8);
    tg_put(&b, "x", 1);
    TG_EXPECT(b.p, b.n, CORE_EFORMAT, "NUL");
    b.n = 0;
    tg_put(&b, "GGUF", 4);
    tg_u32(&b, 3);
    tg_u64(&b, 0);
    tg_u64(&b, 2);
    tg_kv(&b, "dup", GGUF_UINT8, "x", 1);
    tg_kv(&b, "dup", GGUF_UINT8, "y", 1);
    TG_EXPECT(b.p, b.n, CORE_EFORMAT, "duplicate key 'dup'");
    b.n = 0;
    tg_put(&b, "GGUF", 4);
    tg_u32(&b, 3);
    tg_u64(&b, 0);
    tg_u64(&b, 1);
    tg_str(&b, "general.alignment");
    tg_u32(&b, GGUF_STRING);
    tg_str(&b, "32");
    TG_EXPECT(b.p, b.n, CORE_EFORMAT, "general.alignment");
    free(b.p);
}

/* Flipping each byte of the header area must never crash (any code is fine). */
static void test_flip_every_byte(void **state)
{
    (void)state;
    tg_file f;
    tg_make(&f);
    uint8_t *p = malloc(f.b.n);
    char msg[256];
    static const uint8_t xs[] = {0x01, 0x80, 0xff};
    for (size_t i = 0; i < f.b.n; i++)
        for (size_t x = 0; x < sizeof xs; x++) {
            memcpy(p, f.b.p, f.b.n);
            p[i] ^= xs[x];
            int rc = tg_open_n(p, f.b.n, msg, sizeof msg);
            assert_true(rc == CORE_OK || rc == CORE_EFORMAT || rc == CORE_EUNSUPPORTED);
        }
    free(p);
    free(f.b.p);
}

/* ---- real files ------------------------------------------------------- */

static int tg_has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void test_fixtures_llm(void **state)
{
    (void)state;
    const char *dir = "../shared/fixtures/llm";
    DIR *d = opendir(dir);
    if (!d) {
        printf("SKIP: ../shared absent (%s)\n", dir);
        skip();
    }
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d))) {
        if (!tg_has_suffix(e->d_name, ".gguf"))
            continue;
        char path[512], msg[256], key[128];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gguf *g;
        if (gguf_open(path, &g, msg, sizeof msg))
            fail_msg("%s: %s", path, msg);
        const char *arch;
        size_t len;
        assert_int_equal(gguf_get_str(g, "general.architecture", &arch, &len), 0);
        char a[32];
        snprintf(a, sizeof a, "%.*s", (int)len, arch);
        int qwen2 = !strcmp(a, "qwen2");
        assert_true(qwen2 || !strcmp(a, "llama"));
        uint32_t n_layer, n_embd, n_ff;
        snprintf(key, sizeof key, "%s.block_count", a);
        assert_int_equal(gguf_get_u32(g, key, &n_layer), 0);
        snprintf(key, sizeof key, "%s.embedding_length", a);
        assert_int_equal(gguf_get_u32(g, key, &n_embd), 0);
        snprintf(key, sizeof key, "%s.feed_forward_length", a);
        assert_int_equal(gguf_get_u32(g, key, &n_ff), 0);
        float eps;
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
        assert_int_equal(gguf_get_f32(g, key, &eps), 0);
        assert_true(eps > 0 && eps < 1e-3f);
        int64_t tk = gguf_find_key(g, "tokenizer.ggml.tokens");
        assert_true(tk >= 0);
        uint64_t n_vocab = gguf_kv_arr_n(g, tk);
        assert_int_equal(gguf_kv_arr_n(g, gguf_find_key(g, "tokenizer.ggml.token_type")), n_vocab);
        int has_out = gguf_find_tensor(g, "output.weight") != NULL;
        int64_t expect = 2 + has_out + (int64_t)n_layer * (qwen2 ? 12 : 9);
        assert_int_equal(gguf_n_tensors(g), expect);
        const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
        assert_non_null(emb);
        assert_int_equal(emb->ne[0], n_embd);
        assert_int_equal(emb->ne[1], (int64_t)n_vocab);
        snprintf(key, sizeof key, "blk.%u.ffn_down.weight", n_layer - 1);
        const gguf_tensor *down = gguf_find_tensor(g, key);
        assert_non_null(down);
        assert_int_equal(down->ne[0], n_ff);
        assert_int_equal(down->ne[1], n_embd);
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            assert_true(t->type == QT_F32 || quant_row_size(t->type, t->ne[0]) > 0);
            assert_int_equal((uintptr_t)t->data % gguf_alignment(g), 0);
        }
        printf("  %s: %s, %lld tensors, vocab %llu\n", e->d_name, a, (long long)gguf_n_tensors(g),
               (unsigned long long)n_vocab);
        gguf_close(g);
        seen++;
    }
    closedir(d);
    assert_true(seen > 0);
}

static void test_fixtures_tokenizer(void **state)
{
    (void)state;
    const char *dir = "../shared/fixtures/tokenizer";
    DIR *d = opendir(dir);
    if (!d) {
        printf("SKIP: ../shared absent (%s)\n", dir);
        skip();
    }
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d))) {
        if (!tg_has_suffix(e->d_name, ".gguf"))
            continue;
        char path[512], msg[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gguf *g;
        if (gguf_open(path, &g, msg, sizeof msg))
            fail_msg("%s: %s", path, msg);
        const char *model;
        size_t len;
        assert_int_equal(gguf_get_str(g, "tokenizer.ggml.model", &model, &len), 0);
        int64_t tk = gguf_find_key(g, "tokenizer.ggml.tokens");
        assert_true(tk >= 0);
        assert_true(gguf_kv_arr_n(g, tk) > 1000);
        const char *s;
        size_t sl;
        assert_int_equal(gguf_arr_str(g, tk, gguf_kv_arr_n(g, tk) - 1, &s, &sl), 0);
        gguf_close(g);
        seen++;
    }
    closedir(d);
    assert_true(seen > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_kv),
        cmocka_unit_test(test_all_value_types),
        cmocka_unit_test(test_tensors),
        cmocka_unit_test(test_open_file),
        cmocka_unit_test(test_base_file_valid),
        cmocka_unit_test(test_truncation_everywhere),
        cmocka_unit_test(test_corrupt_counts),
        cmocka_unit_test(test_corrupt_tensors),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_fixtures_llm),
        cmocka_unit_test(test_fixtures_tokenizer),
    };
    return cmocka_run_group_tests(tests, tg_setup, tg_teardown);
}
