/* test_fcgi_admin.c: the admin views shared by the admin API and the operator
 * command line: stores opened from a config, JSON bodies that parse and say
 * what the stores hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "core_err.h"
#include "json.h"

static char tdir[64];
static arena *A;
static cfg *C;

static int setup(void **state)
{
    (void)state;
    snprintf(tdir, sizeof(tdir), "/tmp/eg_admin_XXXXXX");
    if (!mkdtemp(tdir))
        return -1;
    char model[128], text[1024], msg[256];
    snprintf(model, sizeof(model), "%s/m.gguf", tdir);
    FILE *f = fopen(model, "w");
    if (!f)
        return -1;
    fputs("GGUF", f);
    fclose(f);
    snprintf(text, sizeof(text),
             "socket = \"%s/eg.sock\";\n"
             "models = ( { id = \"m\"; path = \"%s\"; } );\n"
             "clients = ( { id = \"alice\"; tokens_per_day = 100; } );\n"
             "cache = { map_size_mb = 1; };\n"
             "budgets = { tokens_per_month = 1000; };\n",
             tdir, model);
    if (cfg_parse_string(text, "mem", tdir, &C, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "%s\n", msg);
        return -1;
    }
    A = arena_new(0);
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = {"m.gguf", "cache.mdb", "cache.mdb-lock", "budgets.mdb",
                           "budgets.mdb-lock"};
    char p[160];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tdir, files[i]);
        unlink(p);
    }
    rmdir(tdir);
    cfg_free(C);
    arena_free(A);
    return 0;
}

static const json_value *parse(const sbuf *b)
{
    json_value *v = NULL;
    char msg[160];
    if (json_parse(A, b->data, b->len, &v, msg, sizeof(msg)) != CORE_OK)
        fail_msg("not JSON (%s): %s", msg, b->data);
    return v;
}

static long long num(const json_value *o, const char *k)
{
    const json_value *v = json_get(o, k);
    if (!v || v->type != JSON_NUMBER || !v->u.num.is_int)
        fail_msg("no integer \"%s\"", k);
    return v->u.num.i;
}

static void test_cache_views(void **state)
{
    (void)state;
    cache *ch = NULL;
    char msg[256] = "";
    if (admin_open_cache(C, &ch, msg, sizeof(msg)) != CORE_OK)
        fail_msg("%s", msg);
    cache_keyb kb;
    cache_key k1, k2;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "a", 1);
    cache_key_final(&kb, &k1);
    cache_key_init(&kb);
    cache_key_add_str(&kb, "b", 1);
    cache_key_final(&kb, &k2);
    cache_entry e = {.model = "m", .client = "alice", .ttl_s = -1, .prompt_tokens = 3,
                     .completion_tokens = 2, .finish = "stop"};
    assert_int_equal(cache_put(ch, &k1, &e, "hello", 5), CORE_OK);
    e.client = "bob";
    assert_int_equal(cache_put(ch, &k2, &e, "world", 5), CORE_OK);

    sbuf b;
    sbuf_init(&b);
    assert_int_equal(admin_cache_stats_json(ch, &b), CORE_OK);
    const json_value *v = parse(&b);
    assert_int_equal(num(v, "entries"), 2);
    assert_int_equal(num(v, "puts"), 2);
    assert_int_equal(num(v, "map_size"), 1 << 20);
    assert_int_equal(num(v, "max_bytes"), 1 << 19); /* max_kb 0: half the map */
    assert_true(num(v, "bytes") > 10);

    const char *param = NULL;
    sbuf_clear(&b);
    const char *sel = "{\"client\":\"bob\"}";
    assert_int_equal(admin_cache_purge_json(ch, sel, strlen(sel), &b, &param, msg, sizeof(msg)),
                     CORE_OK);
    assert_string_equal(b.data, "{\"purged\":1}");
    sbuf_clear(&b);
    sel = "{\"colour\":1}";
    assert_int_equal(admin_cache_purge_json(ch, sel, strlen(sel), &b, &param, msg, sizeof(msg)),
                     CORE_EFORMAT);
    assert_int_equal(b.len, 0);
    sel = "{\"all\":true}";
    assert_int_equal(admin_cache_purge_json(ch, sel, strlen(sel), &b, &param, msg, sizeof(msg)),
                     CORE_OK);
    assert_string_equal(b.data, "{\"purged\":1}");
    sbuf_free(&b);
    cache_close(ch);
}

static void test_budget_views(void **state)
{
    (void)state;
    budget *bu = NULL;
    char msg[256] = "";
    if (admin_open_budget(C, &bu, msg, sizeof(msg)) != CORE_OK)
        fail_msg("%s", msg);
    budget_res res;
    bool granted = false;
    assert_int_equal(budget_reserve(bu, "alice", 50, 10, &res, &granted, NULL), CORE_OK);
    assert_true(granted);
    assert_int_equal(budget_settle(bu, &res, 30, NULL), CORE_OK);
    assert_int_equal(budget_reserve(bu, "bob", 5, 5, &res, &granted, NULL), CORE_OK);
    assert_int_equal(budget_settle(bu, &res, 5, NULL), CORE_OK);

    sbuf b;
    sbuf_init(&b);
    assert_int_equal(admin_budget_json(bu, "alice", &b), CORE_OK);
    const json_value *v = parse(&b);
    /* alice: her own day limit (100) and the default month tier (1000). */
    assert_string_equal(json_get(v, "client")->u.str.s, "alice");
    assert_int_equal(num(v, "limit"), 100);
    assert_int_equal(num(v, "remaining"), 70);
    assert_int_equal(num(json_get(v, "day"), "used"), 30);
    assert_int_equal(num(json_get(v, "month"), "limit"), 1000);
    assert_int_equal(num(json_get(v, "month"), "used"), 30);

    sbuf_clear(&b);
    assert_int_equal(admin_budgets_json(bu, &b), CORE_OK);
    v = parse(&b);
    const json_value *data = json_get(v, "data");
    assert_non_null(data);
    assert_int_equal(data->u.kids.n, 2);

    sbuf_clear(&b);
    assert_int_equal(admin_budget_reset_json(bu, "alice", &b), CORE_OK);
    assert_string_equal(b.data, "{\"client\":\"alice\",\"reset\":true}");
    sbuf_clear(&b);
    assert_int_equal(admin_budget_reset_json(bu, "carol", &b), CORE_OK);
    assert_string_equal(b.data, "{\"client\":\"carol\",\"reset\":false}");
    sbuf_clear(&b);
    assert_int_equal(admin_budget_json(bu, "", &b), CORE_EINVAL);
    sbuf_free(&b);
    budget_close(bu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_views),
        cmocka_unit_test(test_budget_views),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
