/* test_fcgi_cache.c: SHA-256 and the key builder, hit/miss/expiry, LRU
 * eviction by the byte bound and by a really full map (MDB_MAP_FULL),
 * purge selectors and their JSON form, concurrent writers in forked
 * processes, and a reader killed inside a read transaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lmdb.h>
#include <math.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "core_err.h"

static char dir[64];
static char path[96];
static long long *clock_now;

static long long fake_now(void *user)
{
    return __atomic_load_n((long long *)user, __ATOMIC_ACQUIRE);
}

static cache_params params(void)
{
    cache_params p = cache_default_params();
    p.path = path;
    p.map_size = 8u << 20;
    p.now = fake_now;
    p.now_user = clock_now;
    return p;
}

static cache *open_c(const cache_params *p)
{
    cache *c = NULL;
    char msg[256] = "";
    if (cache_open(p, &c, msg, sizeof(msg)) != CORE_OK)
        fail_msg("cache_open: %s", msg);
    return c;
}

/* Every line is HELP, TYPE or a sample (the exposition format 0.0.4). */
static void check_exposition(const char *text)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+"
                             "|# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)"
                             "|[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN))$",
                             REG_EXTENDED),
                     0);
    char *copy = strdup(text);
    int n = 0;
    for (char *save, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++)
        if (regexec(&re, l, 0, NULL, 0) != 0)
            fail_msg("bad exposition line: %s", l);
    assert_true(n > 10);
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(copy);
    regfree(&re);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/eg_cache_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/cache.mdb", dir);
    clock_now = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return clock_now == MAP_FAILED ? -1 : 0;
}

static int fresh(void **state)
{
    (void)state;
    char lock[128];
    snprintf(lock, sizeof(lock), "%s-lock", path);
    unlink(path);
    unlink(lock);
    *clock_now = 1700000000;
    return 0;
}

static int teardown(void **state)
{
    fresh(state);
    rmdir(dir);
    return 0;
}

static void hex(const uint8_t *b, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void check_sha(const void *data, size_t len, const char *want)
{
    uint8_t d[32];
    char h[65];
    cache_sha256 s;
    cache_sha256_init(&s);
    cache_sha256_update(&s, data, len);
    cache_sha256_final(&s, d);
    hex(d, h);
    assert_string_equal(h, want);
    /* Same digest fed in uneven pieces. */
    cache_sha256_init(&s);
    size_t step = 1;
    for (size_t off = 0; off < len; off += step, step = step * 3 % 71 + 1)
        cache_sha256_update(&s, (const char *)data + off, off + step > len ? len - off : step);
    cache_sha256_final(&s, d);
    hex(d, h);
    assert_string_equal(h, want);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    /* FIPS 180-4 / NIST CSRC examples. */
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(m448, strlen(m448),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                       "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_sha(m896, strlen(m896),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    char *mil = malloc(1000000);
    memset(mil, 'a', 1000000);
    check_sha(mil, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(mil);
}

static cache_key key_of(const char *a, const char *b)
{
    cache_keyb kb;
    cache_key k;
    cache_key_init(&kb);
    cache_key_add_str(&kb, a, strlen(a));
    cache_key_add_str(&kb, b, strlen(b));
    cache_key_final(&kb, &k);
    return k;
}

static void test_key_builder(void **state)
{
    (void)state;
    cache_key k1 = key_of("ab", "c"), k2 = key_of("a", "bc"), k3 = key_of("ab", "c");
    assert_memory_not_equal(k1.b, k2.b, 32);
    assert_memory_equal(k1.b, k3.b, 32);

    cache_keyb kb;
    cache_key ks, ki, kz, kn, kf1, kf2;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "1", 1);
    cache_key_final(&kb, &ks);
    cache_key_init(&kb);
    cache_key_add_i64(&kb, 1);
    cache_key_final(&kb, &ki);
    assert_memory_not_equal(ks.b, ki.b, 32); /* types are tagged */
    cache_key_init(&kb);
    cache_key_add_f64(&kb, 0.0);
    cache_key_final(&kb, &kz);
    cache_key_init(&kb);
    cache_key_add_f64(&kb, -0.0);
    cache_key_final(&kb, &kn);
    assert_memory_equal(kz.b, kn.b, 32);
    cache_key_init(&kb);
    cache_key_add_f64(&kb, NAN);
    cache_key_final(&kb, &kf1);
    cache_key_init(&kb);
    cache_key_add_f64(&kb, -NAN);
    cache_key_final(&kb, &kf2);
    assert_memory_equal(kf1.b, kf2.b, 32);
    cache_key_init(&kb);
    cache_key_add_f64(&kb, 0.7);
    cache_key_final(&kb, &kf2);
    assert_memory_not_equal(kz.b, kf2.b, 32);
    /* Strings with NULs hash all their bytes. */
    cache_key a, b;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "x\0y", 3);
    cache_key_final(&kb, &a);
    cache_key_init(&kb);
    cache_key_add_str(&kb, "x\0z", 3);
    cache_key_final(&kb, &b);
    assert_memory_not_equal(a.b, b.b, 32);

    char h[65];
    cache_key back;
    cache_key_hex(&k1, h);
    assert_int_equal(strlen(h), 64);
    assert_int_equal(cache_key_from_hex(h, 64, &back), CORE_OK);
    assert_memory_equal(back.b, k1.b, 32);
    h[5] = 'g';
    assert_int_equal(cache_key_from_hex(h, 64, &back), CORE_EFORMAT);
    assert_int_equal(cache_key_from_hex(h, 63, &back), CORE_EFORMAT);
}

static void put_s(cache *c, const cache_key *k, const char *model, const char *client,
                  const char *body, long long ttl)
{
    cache_entry e = {.model = model, .client = client, .ttl_s = ttl, .prompt_tokens = 7,
                     .completion_tokens = 3, .finish = "length"};
    int rc = cache_put(c, k, &e, body, strlen(body));
    if (rc != CORE_OK)
        fail_msg("cache_put: %s (%s)", core_strerror(rc), cache_errmsg(c));
}

static bool get_s(cache *c, const cache_key *k, sbuf *b, cache_info *info)
{
    bool hit = false;
    int rc = cache_get(c, k, &hit, info, b);
    if (rc != CORE_OK)
        fail_msg("cache_get: %s (%s)", core_strerror(rc), cache_errmsg(c));
    return hit;
}

static void test_hit_miss_expiry(void **state)
{
    (void)state;
    cache_params p = params();
    p.default_ttl_s = 100;
    cache *c = open_c(&p);
    cache_key k = key_of("chat", "hello"), other = key_of("chat", "bye");
    sbuf b;
    sbuf_init(&b);
    cache_info info;
    assert_false(get_s(c, &k, &b, &info));
    put_s(c, &k, "demo", "alice", "{\"answer\":42}", -1); /* default TTL */
    assert_true(get_s(c, &k, &b, &info));
    assert_int_equal(b.len, 13);
    assert_string_equal(b.data, "{\"answer\":42}");
    assert_string_equal(info.model, "demo");
    assert_string_equal(info.client, "alice");
    assert_int_equal(info.created, 1700000000);
    assert_int_equal(info.ttl_s, 100);
    assert_int_equal(info.prompt_tokens, 7);
    assert_int_equal(info.completion_tokens, 3);
    assert_int_equal(info.body_len, 13);
    assert_int_equal(info.hits, 1);
    assert_string_equal(info.finish, "length");
    assert_true(get_s(c, &k, &b, &info));
    assert_int_equal(info.hits, 2);
    assert_false(get_s(c, &other, &b, NULL));
    /* Replacing keeps one entry. */
    put_s(c, &k, "demo", NULL, "v2", 0);
    assert_true(get_s(c, &k, &b, &info));
    assert_string_equal(b.data, "v2");
    assert_string_equal(info.client, "");
    assert_int_equal(info.hits, 1);
    put_s(c, &other, "demo", NULL, "short-lived", 10);
    *clock_now += 9;
    assert_true(get_s(c, &other, &b, NULL));
    *clock_now += 1; /* created + ttl: expired */
    assert_false(get_s(c, &other, &b, NULL));
    *clock_now += 1000000; /* ttl 0 never expires */
    assert_true(get_s(c, &k, &b, NULL));
    cache_stats st;
    assert_int_equal(cache_get_stats(c, &st), CORE_OK);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.hits, 5);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.puts, 3);
    assert_true(st.bytes > 2 && st.bytes < 1000);
    sbuf m;
    sbuf_init(&m);
    assert_int_equal(cache_metrics_render(&st, &m), 0);
    assert_non_null(strstr(m.data, "edgegate_cache_hits_total 5\n"));
    assert_non_null(strstr(m.data, "edgegate_cache_misses_total 3\n"));
    assert_non_null(strstr(m.data, "edgegate_cache_entries 1\n"));
    check_exposition(m.data);
    sbuf_free(&m);

    cache_entry e = {.model = NULL};
    char big[CACHE_MAX_ID + 2];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    e.model = big;
    assert_int_equal(cache_put(c, &k, &e, "x", 1), CORE_EINVAL);
    e.model = "demo";
    e.finish = "a-very-long-finish-reason";
    assert_int_equal(cache_put(c, &k, &e, "x", 1), CORE_EINVAL);
    sbuf_free(&b);
    cache_close(c);
    cache_close(NULL);
}

static cache_key key_n(int i)
{
    cache_keyb kb;
    cache_key k;
    cache_key_init(&kb);
    cache_key_add_i64(&kb, i);
    cache_key_final(&kb, &k);
    return k;
}

/* The byte bound: the least recently used entry goes first. */
static void test_lru_bound(void **state)
{
    (void)state;
    char body[1000];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    cache_params p = params();
    p.max_bytes = 5 * (999 + 72 + 4 + 120) + 10; /* five entries fit (72: the header) */
    cache *c = open_c(&p);
    sbuf b;
    sbuf_init(&b);
    for (int i = 0; i < 5; i++) {
        cache_key k = key_n(i);
        put_s(c, &k, "demo", NULL, body, 0);
    }
    cache_key k0 = key_n(0), k1 = key_n(1), k2 = key_n(2);
    assert_true(get_s(c, &k0, &b, NULL)); /* 0 is now the most recent */
    cache_key k5 = key_n(5);
    put_s(c, &k5, "demo", NULL, body, 0);
    assert_true(get_s(c, &k0, &b, NULL));
    assert_false(get_s(c, &k1, &b, NULL)); /* evicted */
    assert_true(get_s(c, &k2, &b, NULL));
    cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.map_full, 0);
    assert_true(st.bytes <= st.max_bytes);
    /* Too big for the bound altogether. */
    char *huge = calloc(1, p.max_bytes + 1);
    assert_int_equal(cache_put(c, &k0, NULL, huge, p.max_bytes + 1), CORE_EINVAL);
    free(huge);
    sbuf_free(&b);
    cache_close(c);
}

/* A map far smaller than the byte bound: LMDB itself runs out of pages
 * (MDB_MAP_FULL), and puts still succeed by evicting. */
static void test_map_full_evicts(void **state)
{
    (void)state;
    cache_params p = params();
    p.map_size = 256u << 10; /* 64 pages of 4 KiB */
    p.max_bytes = p.map_size;
    cache *c = open_c(&p);
    char body[3000];
    sbuf b;
    sbuf_init(&b);
    for (int i = 0; i < 300; i++) {
        memset(body, 'a' + i % 26, sizeof(body));
        cache_key k = key_n(i);
        cache_entry e = {.model = "demo", .client = "c", .ttl_s = 0};
        int rc = cache_put(c, &k, &e, body, sizeof(body));
        if (rc != CORE_OK)
            fail_msg("put %d: %s", i, cache_errmsg(c));
        /* The entry just written is always there. */
        assert_true(get_s(c, &k, &b, NULL));
        assert_int_equal(b.len, sizeof(body));
        assert_int_equal((unsigned char)b.data[0], 'a' + i % 26);
    }
    cache_stats st;
    cache_get_stats(c, &st);
    assert_true(st.map_full > 0);
    assert_true(st.evictions > 0);
    assert_true(st.entries < 300);
    assert_true(st.entries > 3);
    assert_int_equal(st.entries + st.evictions, 300);
    /* The bound was never the reason: far below it. */
    assert_true(st.bytes < st.max_bytes);
    /* The oldest are gone, the newest stay. */
    cache_key first = key_n(0), last = key_n(299);
    assert_false(get_s(c, &first, &b, NULL));
    assert_true(get_s(c, &last, &b, NULL));
    sbuf_free(&b);
    cache_close(c);
}

static void test_purge_selectors(void **state)
{
    (void)state;
    cache_params p = params();
    cache *c = open_c(&p);
    /* 12 entries: model m<i%2>, client c<i%3>, created 10 s apart. */
    for (int i = 0; i < 12; i++) {
        cache_key k = key_n(i);
        char model[8], client[8];
        snprintf(model, sizeof(model), "m%d", i % 2);
        snprintf(client, sizeof(client), "c%d", i % 3);
        put_s(c, &k, model, client, "body", 0);
        *clock_now += 10;
    }
    size_t n;
    cache_purge sel = {.kind = CACHE_PURGE_KEY, .key = key_n(0)};
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 0); /* gone already: a miss, not an error */
    sel = (cache_purge){.kind = CACHE_PURGE_MODEL};
    strcpy(sel.id, "m1"); /* 1,3,5,7,9,11 */
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 6);
    sel = (cache_purge){.kind = CACHE_PURGE_CLIENT};
    strcpy(sel.id, "c2"); /* 2,8 remain of 2,5,8,11 */
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 2);
    /* Left: 4, 6, 10 created at t0+40, +60, +100; now is t0+120, so their
     * ages are 80, 60, 20: older than 60 is only 4, older than 50 also 6. */
    sel = (cache_purge){.kind = CACHE_PURGE_OLDER, .older_than_s = 60};
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 1);
    sel.older_than_s = 50;
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 1);
    cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 1);
    sel = (cache_purge){.kind = CACHE_PURGE_ALL};
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 1);
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    /* Usable after a drop. */
    cache_key k = key_n(99);
    put_s(c, &k, "m", "c", "again", 0);
    sbuf b;
    sbuf_init(&b);
    assert_true(get_s(c, &k, &b, NULL));
    sbuf_free(&b);
    cache_close(c);
}

static void test_purge_parse(void **state)
{
    (void)state;
    cache_purge s;
    const char *param;
    char msg[160];
#define PARSE(t) cache_purge_parse(t, strlen(t), &s, &param, msg, sizeof(msg))
    assert_int_equal(PARSE("{\"all\":true}"), CORE_OK);
    assert_int_equal(s.kind, CACHE_PURGE_ALL);
    assert_null(param);
    assert_int_equal(PARSE("{\"model\":\"demo\"}"), CORE_OK);
    assert_int_equal(s.kind, CACHE_PURGE_MODEL);
    assert_string_equal(s.id, "demo");
    assert_int_equal(PARSE(" {\"client\" : \"alice\"} "), CORE_OK);
    assert_int_equal(s.kind, CACHE_PURGE_CLIENT);
    assert_string_equal(s.id, "alice");
    assert_int_equal(PARSE("{\"older_than_s\":3600}"), CORE_OK);
    assert_int_equal(s.kind, CACHE_PURGE_OLDER);
    assert_int_equal(s.older_than_s, 3600);
    cache_key k = key_n(5);
    char h[65], body[100];
    cache_key_hex(&k, h);
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", h);
    assert_int_equal(PARSE(body), CORE_OK);
    assert_int_equal(s.kind, CACHE_PURGE_KEY);
    assert_memory_equal(s.key.b, k.b, 32);

    assert_int_equal(PARSE("{\"all\":false}"), CORE_EFORMAT);
    assert_string_equal(param, "all");
    assert_int_equal(PARSE("{\"older_than_s\":-1}"), CORE_EFORMAT);
    assert_string_equal(param, "older_than_s");
    assert_int_equal(PARSE("{\"older_than_s\":1.5}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"model\":\"\"}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"model\":7}"), CORE_EFORMAT);
    assert_string_equal(param, "model");
    assert_int_equal(PARSE("{\"client\":\"a\\u0000b\"}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"key\":\"abc\"}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"all\":true,\"model\":\"x\"}"), CORE_EFORMAT);
    assert_null(param);
    assert_int_equal(PARSE("{\"everything\":true}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{}"), CORE_EFORMAT);
    assert_int_equal(PARSE("[]"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"all\":tru"), CORE_EFORMAT);
    assert_int_equal(PARSE(""), CORE_EFORMAT);
#undef PARSE
}

/* Answers made from the knowledge base carry its version; a purge by
 * kb_version_below takes the older ones and never touches other entries. */
static void test_purge_kb_version(void **state)
{
    (void)state;
    cache_params p = params();
    cache *c = open_c(&p);
    /* Keys 0..3: kb versions 0, 1, 2, 3; keys 4, 5: no version (chat). */
    for (int i = 0; i < 6; i++) {
        cache_key k = key_n(i);
        cache_entry e = {.model = "m", .client = "c", .ttl_s = 0, .prompt_tokens = 5,
                         .completion_tokens = 2, .finish = "stop",
                         .has_kb_version = i < 4, .kb_version = i};
        assert_int_equal(cache_put(c, &k, &e, "answer", 6), CORE_OK);
    }
    cache_info info;
    sbuf b;
    sbuf_init(&b);
    cache_key k2 = key_n(2), k4 = key_n(4);
    assert_true(get_s(c, &k2, &b, &info));
    assert_int_equal(info.kb_version, 2);
    assert_true(get_s(c, &k4, &b, &info));
    assert_int_equal(info.kb_version, -1);
    size_t n;
    cache_purge sel = {.kind = CACHE_PURGE_KB_BELOW, .kb_version_below = 0};
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 0);
    sel.kb_version_below = 3; /* 0, 1, 2 */
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 3);
    assert_false(get_s(c, &k2, &b, NULL));
    cache_key k3 = key_n(3);
    assert_true(get_s(c, &k3, &b, NULL));
    sel.kb_version_below = 1000;
    assert_int_equal(cache_purge_run(c, &sel, &n), CORE_OK);
    assert_int_equal(n, 1);
    cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 2); /* the two chat entries stay */
    assert_true(get_s(c, &k4, &b, NULL));

    const char *param;
    char msg[160];
#define PARSE(t) cache_purge_parse(t, strlen(t), &sel, &param, msg, sizeof(msg))
    assert_int_equal(PARSE("{\"kb_version_below\":7}"), CORE_OK);
    assert_int_equal(sel.kind, CACHE_PURGE_KB_BELOW);
    assert_int_equal(sel.kb_version_below, 7);
    assert_null(param);
    assert_int_equal(PARSE("{\"kb_version_below\":-1}"), CORE_EFORMAT);
    assert_string_equal(param, "kb_version_below");
    assert_int_equal(PARSE("{\"kb_version_below\":\"7\"}"), CORE_EFORMAT);
    assert_int_equal(PARSE("{\"kb_version_below\":2.5}"), CORE_EFORMAT);
#undef PARSE
    sbuf_free(&b);
    cache_close(c);
}

/* 4 processes writing and reading their own keys at once. */
static void test_concurrent_writers(void **state)
{
    (void)state;
    enum { K = 4, N = 150 };
    int *ready = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(ready != MAP_FAILED);
    *ready = 0;
    cache_params p = params();
    pid_t kids[K];
    for (int k = 0; k < K; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            cache *c = NULL;
            if (cache_open(&p, &c, NULL, 0) != CORE_OK)
                _exit(70);
            __atomic_fetch_add(ready, 1, __ATOMIC_ACQ_REL);
            while (__atomic_load_n(ready, __ATOMIC_ACQUIRE) < K)
                usleep(100);
            sbuf b;
            sbuf_init(&b);
            char body[64];
            for (int i = 0; i < N; i++) {
                cache_key key = key_n(k * 1000 + i);
                int len = snprintf(body, sizeof(body), "proc %d item %d", k, i);
                cache_entry e = {.model = "demo", .client = "c", .ttl_s = 0};
                if (cache_put(c, &key, &e, body, (size_t)len) != CORE_OK)
                    _exit(71);
                /* Read back one written a while ago. */
                cache_key old = key_n(k * 1000 + i / 2);
                bool hit;
                if (cache_get(c, &old, &hit, NULL, &b) != CORE_OK || !hit)
                    _exit(72);
                int want_len = snprintf(body, sizeof(body), "proc %d item %d", k, i / 2);
                if (b.len != (size_t)want_len || memcmp(b.data, body, b.len) != 0)
                    _exit(73);
            }
            sbuf_free(&b);
            cache_close(c);
            _exit(0);
        }
    }
    for (int k = 0; k < K; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    cache *c = open_c(&p);
    cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, K * N);
    assert_int_equal(st.puts, K * N);
    assert_int_equal(st.hits, K * N);
    assert_int_equal(st.misses, 0);
    cache_close(c);
    munmap(ready, 4096);
}

/* A process SIGKILLed inside a read transaction leaves its reader slot
 * behind; cache_reader_check() clears it. */
static void test_killed_reader(void **state)
{
    (void)state;
    cache_params p = params();
    cache *c = open_c(&p);
    cache_key k = key_n(1);
    put_s(c, &k, "demo", NULL, "x", 0);
    int *ready = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    *ready = 0;
    pid_t pid = fork();
    if (pid == 0) {
        /* Its own environment, as a worker would have (never the parent's). */
        MDB_env *env;
        MDB_txn *txn;
        if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) ||
            mdb_env_set_mapsize(env, p.map_size) ||
            mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOSYNC, 0660) ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
            _exit(60);
        __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
        for (;;)
            pause();
    }
    for (int i = 0; i < 5000 && !__atomic_load_n(ready, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    assert_int_equal(*ready, 1);
    int cleared = -1;
    assert_int_equal(cache_reader_check(c, &cleared), CORE_OK);
    assert_int_equal(cleared, 0); /* alive: left alone */
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(cache_reader_check(c, &cleared), CORE_OK);
    assert_int_equal(cleared, 1);
    cache_stats s;
    cache_get_stats(c, &s);
    assert_int_equal(s.readers_cleared, 1);
    assert_int_equal(cache_reader_check(c, &cleared), CORE_OK);
    assert_int_equal(cleared, 0);
    cache_close(c);
    munmap(ready, 4096);
}

static void test_bad_params(void **state)
{
    (void)state;
    cache *c = (cache *)1;
    cache_params p = params();
    p.path = NULL;
    assert_int_equal(cache_open(&p, &c, NULL, 0), CORE_EINVAL);
    assert_null(c);
    p = params();
    p.max_bytes = p.map_size + 1;
    assert_int_equal(cache_open(&p, &c, NULL, 0), CORE_EINVAL);
    p = params();
    p.path = "/nonexistent-dir/cache.mdb";
    char msg[200];
    assert_int_equal(cache_open(&p, &c, msg, sizeof(msg)), CORE_EIO);
    assert_non_null(strstr(msg, "/nonexistent-dir/cache.mdb"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_key_builder),
        cmocka_unit_test_setup(test_hit_miss_expiry, fresh),
        cmocka_unit_test_setup(test_lru_bound, fresh),
        cmocka_unit_test_setup(test_map_full_evicts, fresh),
        cmocka_unit_test_setup(test_purge_selectors, fresh),
        cmocka_unit_test(test_purge_parse),
        cmocka_unit_test_setup(test_purge_kb_version, fresh),
        cmocka_unit_test_setup(test_concurrent_writers, fresh),
        cmocka_unit_test_setup(test_killed_reader, fresh),
        cmocka_unit_test_setup(test_bad_params, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
