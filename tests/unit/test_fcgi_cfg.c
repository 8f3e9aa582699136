/* test_fcgi_cfg.c: config loading: a good file, and each kind of bad file
 * reported with its line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "core_err.h"

static char tdir[64];
static char model_path[128];
static char group_name[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tdir, sizeof(tdir), "/tmp/eg_cfg_XXXXXX");
    if (!mkdtemp(tdir))
        return -1;
    snprintf(model_path, sizeof(model_path), "%s/m.gguf", tdir);
    FILE *f = fopen(model_path, "w");
    if (!f)
        return -1;
    fputs("GGUF", f);
    fclose(f);
    struct group *g = getgrgid(getgid());
    snprintf(group_name, sizeof(group_name), "%s", g ? g->gr_name : "root");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[160];
    snprintf(p, sizeof(p), "%s/c.conf", tdir);
    unlink(p);
    unlink(model_path);
    rmdir(tdir);
    return 0;
}

/* Writes text (with %M = model path, %G = group) to a file and loads it. */
static int load(const char *text, cfg **out, char *msg, size_t n)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/c.conf", tdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (const char *p = text; *p; p++) {
        if (p[0] == '%' && p[1] == 'M') {
            fputs(model_path, f);
            p++;
        } else if (p[0] == '%' && p[1] == 'G') {
            fputs(group_name, f);
            p++;
        } else {
            fputc(*p, f);
        }
    }
    fclose(f);
    return cfg_load(path, out, msg, n);
}

/* Asserts that text fails with "FILE:LINE:" and a message containing what. */
static void expect_bad(const char *text, int line, const char *what)
{
    cfg *c = NULL;
    char msg[512] = "";
    int rc = load(text, &c, msg, sizeof(msg));
    if (rc == CORE_OK)
        fail_msg("accepted a bad config; expected line %d: %s", line, what);
    assert_null(c);
    char want[200];
    snprintf(want, sizeof(want), "%s/c.conf:%d: ", tdir, line);
    if (strncmp(msg, want, strlen(want)) != 0 || !strstr(msg, what))
        fail_msg("got \"%s\"; want prefix \"%s\" and \"%s\"", msg, want, what);
}

static const char good[] =
    "# a full config\n"
    "socket = \"run/eg.sock\";\n"
    "socket_group = \"%G\";\n"
    "socket_mode = \"0660\";\n"
    "pid_file = \"run/eg.pid\";\n"
    "log_file = \"-\";\n"
    "log_level = \"debug\";\n"
    "workers = 3;\n"
    "shutdown_timeout_ms = 2500;\n"
    "models = ( { id = \"demo\"; path = \"%M\"; threads = 2; n_ctx = 1024;\n"
    "             chat_template = \"chatml\"; },\n"
    "           { id = \"second\"; path = \"m.gguf\"; } );\n"
    "limits = { max_body_bytes = 65536; default_max_tokens = 8; max_tokens_cap = 100;\n"
    "           deadline_ms = 1500; max_messages = 10; };\n"
    "clients = ( { id = \"alice\"; max_tokens_cap = 64; tokens_per_day = 1000;\n"
    "              tokens_per_month = 5000000000L; }, { id = \"bob\"; } );\n"
    "npu = { lock_file = \"run/npu.lock\"; classes = 3; chat_class = 2; short_class = 1;\n"
    "        max_waiters = 4; max_wait_ms = 500; slice_tokens = 2; slice_ms = 20; reap_ms = 5; };\n"
    "cache = { enabled = false; path = \"/tmp/c.mdb\"; map_size_mb = 8; max_kb = 512;\n"
    "          ttl_s = 60; shared = true; reader_check_s = 3; };\n"
    "budgets = { enabled = true; path = \"b.mdb\"; map_size_mb = 4; sync = true;\n"
    "            tokens_per_day = 7; tokens_per_month = 0; charge_cache_hits = true; };\n";

static void test_good(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[512] = "";
    int rc = load(good, &c, msg, sizeof(msg));
    if (rc)
        fail_msg("%s", msg);
    char want[200];
    snprintf(want, sizeof(want), "%s/run/eg.sock", tdir);
    assert_string_equal(c->socket, want);
    snprintf(want, sizeof(want), "%s/run/eg.pid", tdir);
    assert_string_equal(c->pid_file, want);
    assert_null(c->log_file);
    assert_int_equal(c->log_level, ELOG_DEBUG);
    assert_string_equal(c->socket_group, group_name);
    assert_int_equal(c->socket_gid, getgid());
    assert_int_equal(c->socket_mode, 0660);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->shutdown_timeout_ms, 2500);
    assert_int_equal(c->n_models, 2);
    assert_string_equal(c->models[0].id, "demo");
    assert_string_equal(c->models[0].path, model_path);
    assert_string_equal(c->models[0].chat_template, "chatml");
    assert_int_equal(c->models[0].threads, 2);
    assert_int_equal(c->models[0].n_ctx, 1024);
    assert_string_equal(c->models[1].path, model_path); /* relative to the config */
    assert_null(c->models[1].chat_template);
    assert_int_equal(c->limits.max_body_bytes, 65536);
    assert_int_equal(c->limits.default_max_tokens, 8);
    assert_int_equal(c->limits.max_tokens_cap, 100);
    assert_int_equal(c->limits.deadline_ms, 1500);
    assert_int_equal(c->limits.max_messages, 10);
    assert_int_equal(cfg_client_cap(c, "alice"), 64);
    assert_int_equal(cfg_client_cap(c, "bob"), 100); /* the global cap */
    assert_int_equal(cfg_client_cap(c, "carol"), 100);
    assert_int_equal(cfg_client_cap(c, NULL), 100);
    assert_non_null(cfg_find_model(c, "second"));
    assert_null(cfg_find_model(c, "third"));
    assert_int_equal(c->clients[0].tokens_per_day, 1000);
    assert_true(c->clients[0].tokens_per_month == 5000000000LL);
    assert_int_equal(c->clients[1].tokens_per_day, -1); /* the default tier */
    assert_int_equal(c->clients[1].tokens_per_month, -1);
    snprintf(want, sizeof(want), "%s/run/npu.lock", tdir);
    assert_string_equal(c->npu.lock_file, want);
    assert_int_equal(c->npu.classes, 3);
    assert_int_equal(c->npu.chat_class, 2);
    assert_int_equal(c->npu.short_class, 1);
    assert_int_equal(c->npu.max_waiters, 4);
    assert_int_equal(c->npu.max_wait_ms, 500);
    assert_int_equal(c->npu.slice_tokens, 2);
    assert_int_equal(c->npu.slice_ms, 20);
    assert_int_equal(c->npu.reap_ms, 5);
    assert_false(c->cache.enabled);
    assert_string_equal(c->cache.path, "/tmp/c.mdb");
    assert_int_equal(c->cache.map_size_mb, 8);
    assert_int_equal(c->cache.max_kb, 512);
    assert_int_equal(c->cache.ttl_s, 60);
    assert_true(c->cache.shared);
    assert_int_equal(c->cache.reader_check_s, 3);
    assert_true(c->budgets.enabled);
    snprintf(want, sizeof(want), "%s/b.mdb", tdir);
    assert_string_equal(c->budgets.path, want);
    assert_int_equal(c->budgets.map_size_mb, 4);
    assert_true(c->budgets.sync);
    assert_int_equal(c->budgets.tokens_per_day, 7);
    assert_int_equal(c->budgets.tokens_per_month, 0);
    assert_true(c->budgets.charge_cache_hits);
    cfg_free(c);
    cfg_free(NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[512] = "";
    int rc = load("socket = \"/tmp/x.sock\";\nmodels = ( { id = \"m\"; path = \"%M\"; } );\n", &c,
                  msg, sizeof(msg));
    if (rc)
        fail_msg("%s", msg);
    assert_int_equal(c->workers, 2);
    assert_int_equal(c->socket_mode, 0660);
    assert_null(c->socket_group);
    assert_null(c->pid_file);
    assert_int_equal(c->limits.default_max_tokens, 16);
    assert_int_equal(c->limits.max_tokens_cap, 512);
    assert_int_equal(c->limits.deadline_ms, 3000);
    assert_int_equal(c->limits.max_body_bytes, 1 << 20);
    assert_int_equal(c->limits.max_messages, 256);
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->log_level, ELOG_INFO);
    /* npu, cache and budgets are on by default, their files beside the socket. */
    assert_string_equal(c->npu.lock_file, "/tmp/npu.lock");
    assert_int_equal(c->npu.classes, 2);
    assert_int_equal(c->npu.chat_class, 1);
    assert_int_equal(c->npu.short_class, 0);
    assert_int_equal(c->npu.max_waiters, 16);
    assert_int_equal(c->npu.max_wait_ms, 2000);
    assert_int_equal(c->npu.slice_tokens, 8);
    assert_int_equal(c->npu.slice_ms, 50);
    assert_true(c->cache.enabled);
    assert_string_equal(c->cache.path, "/tmp/cache.mdb");
    assert_int_equal(c->cache.map_size_mb, 256);
    assert_int_equal(c->cache.max_kb, 0);
    assert_int_equal(c->cache.ttl_s, 3600);
    assert_false(c->cache.shared);
    assert_true(c->budgets.enabled);
    assert_string_equal(c->budgets.path, "/tmp/budgets.mdb");
    assert_false(c->budgets.sync);
    assert_int_equal(c->budgets.tokens_per_day, 1000000);
    assert_int_equal(c->budgets.tokens_per_month, 20000000);
    assert_false(c->budgets.charge_cache_hits);
    cfg_free(c);
}

#define HEAD "socket = \"/tmp/x.sock\";\n"
#define MODELS "models = ( { id = \"m\"; path = \"%M\"; } );\n"

static void test_syntax_error(void **state)
{
    (void)state;
    expect_bad(HEAD "\nworkers = = 2;\n" MODELS, 3, "syntax error");
    expect_bad(HEAD MODELS "limits = { deadline_ms = 5; \n", 4, "syntax error");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_bad(HEAD MODELS "\nworkerz = 2;\n", 4, "unknown setting 'workerz'");
    expect_bad(HEAD MODELS "cache = { size = 1; };\n", 3, "unknown setting 'size' in cache");
    expect_bad(HEAD MODELS "npu = {\n lock = \"x\"; };\n", 4, "unknown setting 'lock' in npu");
    expect_bad(HEAD MODELS "budgets = { per_day = 1; };\n", 3,
               "unknown setting 'per_day' in budgets");
    expect_bad(HEAD MODELS "clients = ( { id = \"a\"; tokens = 5; } );\n", 3,
               "unknown setting 'tokens' in a client");
    expect_bad(HEAD MODELS "quota = 5;\n", 3, "unknown setting 'quota'");
    expect_bad(HEAD "models = ( { id = \"m\";\n  path = \"%M\";\n  thread = 2; } );\n", 4,
               "unknown setting 'thread' in a model");
    expect_bad(HEAD MODELS "limits = {\n  deadline = 5; };\n", 4,
               "unknown setting 'deadline' in limits");
    expect_bad(HEAD MODELS "clients = ( { id = \"a\"; cap = 5; } );\n", 3,
               "unknown setting 'cap' in a client");
}

static void test_types(void **state)
{
    (void)state;
    expect_bad(HEAD "workers = \"2\";\n" MODELS, 2, "'workers' must be an integer, not a string");
    expect_bad("socket = 5;\n" MODELS, 1, "'socket' must be a string, not an integer");
    expect_bad(HEAD "models = { id = \"m\"; };\n", 2, "'models' must be a list");
    expect_bad(HEAD "models = ( \"m\" );\n", 2, "models[0] must be a group");
    expect_bad(HEAD MODELS "limits = ( 1 );\n", 3, "'limits' must be a group");
    expect_bad(HEAD MODELS "\nlimits = { deadline_ms = 1.5; };\n", 4,
               "'deadline_ms' must be an integer, not a float");
    expect_bad(HEAD "socket_mode = 0660;\n" MODELS, 2, "'socket_mode' must be a string");
    expect_bad(HEAD "log_level = true;\n" MODELS, 2, "'log_level' must be a string, not a boolean");
    expect_bad(HEAD MODELS "cache = { enabled = 1; };\n", 3, "'enabled' must be a boolean");
    expect_bad(HEAD MODELS "npu = 3;\n", 3, "'npu' must be a group");
    expect_bad(HEAD MODELS "budgets = {\n tokens_per_day = \"lots\"; };\n", 4,
               "'tokens_per_day' must be an integer, not a string");
}

static void test_ranges(void **state)
{
    (void)state;
    expect_bad(HEAD "workers = 0;\n" MODELS, 2, "'workers' = 0 is out of range [1, 64]");
    expect_bad(HEAD "workers = 65;\n" MODELS, 2, "out of range");
    expect_bad(HEAD MODELS "limits = { max_tokens_cap = 0; };\n", 3, "'max_tokens_cap' = 0");
    expect_bad(HEAD MODELS "limits = { max_body_bytes = 10; };\n", 3, "'max_body_bytes' = 10");
    expect_bad(HEAD MODELS "limits = { default_max_tokens = 600; };\n", 3,
               "default_max_tokens (600) exceeds max_tokens_cap (512)");
    expect_bad(HEAD "models = ( { id = \"m\"; path = \"%M\";\n threads = -1; } );\n", 3,
               "'threads' = -1");
    expect_bad(HEAD "shutdown_timeout_ms = -5;\n" MODELS, 2, "'shutdown_timeout_ms' = -5");
    expect_bad(HEAD "socket_mode = \"0999\";\n" MODELS, 2, "must be octal digits");
    expect_bad(HEAD "socket_mode = \"0440\";\n" MODELS, 2, "owner read and write");
    expect_bad(HEAD "log_level = \"loud\";\n" MODELS, 2, "log_level 'loud'");
    expect_bad(HEAD MODELS "npu = { classes = 5; };\n", 3, "'classes' = 5 is out of range [1, 4]");
    expect_bad(HEAD MODELS "npu = { classes = 2; chat_class = 2; };\n", 3,
               "'chat_class' = 2 is out of range [0, 1]");
    expect_bad(HEAD MODELS "npu = { max_waiters = 128; };\n", 3, "'max_waiters' = 128");
    expect_bad(HEAD MODELS "npu = { max_wait_ms = 0; };\n", 3, "'max_wait_ms' = 0");
    expect_bad(HEAD MODELS "npu = { lock_file = \"\"; };\n", 3, "'lock_file' is empty");
    expect_bad(HEAD MODELS "cache = { map_size_mb = 1;\n max_kb = 2048; };\n", 4,
               "max_kb (2048) exceeds map_size_mb (1 MiB)");
    expect_bad(HEAD MODELS "cache = { ttl_s = -1; };\n", 3, "'ttl_s' = -1");
    expect_bad(HEAD MODELS "budgets = { tokens_per_month = -2; };\n", 3,
               "'tokens_per_month' = -2");
    expect_bad(HEAD MODELS "clients = ( { id = \"a\"; tokens_per_day = -2; } );\n", 3,
               "'tokens_per_day' = -2");
}

static void test_semantics(void **state)
{
    (void)state;
    expect_bad("workers = 2;\n" MODELS, 0, "missing required setting 'socket'");
    expect_bad(HEAD "workers = 2;\n", 0, "missing required setting 'models'");
    expect_bad(HEAD "models = ( );\n", 2, "at least one model");
    expect_bad(HEAD "models = ( { path = \"%M\"; } );\n", 2, "missing required setting 'id'");
    expect_bad(HEAD "models = ( { id = \"m\"; path = \"%M\"; },\n { id = \"m\"; path = \"%M\"; } );\n",
               3, "model id 'm' is used twice");
    expect_bad(HEAD "models = ( { id = \"a b\"; path = \"%M\"; } );\n", 2, "model id 'a b'");
    expect_bad(HEAD "models = ( { id = \"m\";\n path = \"/nonexistent/x.gguf\"; } );\n", 3,
               "cannot read /nonexistent/x.gguf");
    expect_bad(HEAD "socket_group = \"no-such-group-eg\";\n" MODELS, 2, "no such group");
    expect_bad(HEAD MODELS "clients = ( { id = \"a\"; },\n { id = \"a\"; } );\n", 4,
               "client id 'a' is used twice");
    expect_bad("socket = \"/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\";\n" MODELS,
               1, "longer than 100 bytes");
    /* 101 bytes: fits sun_path, but the status socket (+".status") would not */
    expect_bad("socket = \"/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\";\n" MODELS,
               1, "longer than 100 bytes");
}

static void test_missing_file(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[256] = "";
    assert_int_equal(cfg_load("/nonexistent/edgegate.conf", &c, msg, sizeof(msg)), CORE_EIO);
    assert_null(c);
    assert_non_null(strstr(msg, "/nonexistent/edgegate.conf:0: cannot open"));
}

static void test_string_parse(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[256] = "";
    assert_int_equal(cfg_parse_string("socket = \"s\";\nmodels = 5;\n", "mem", "/base", &c, msg,
                                      sizeof(msg)),
                     CORE_EINVAL);
    assert_string_equal(msg, "mem:2: 'models' must be a list ( {...}, ... ), not an integer");
}

/* qa = { ... }: defaults, every key, and each kind of mistake with its line. */
static void test_qa(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[512] = "";
    assert_int_equal(load(HEAD MODELS, &c, msg, sizeof(msg)), CORE_OK);
    assert_null(c->qa.model);
    assert_int_equal(c->qa.top_k, 4);
    assert_true(c->qa.min_score == 1.0);
    assert_int_equal(c->qa.max_question_bytes, 2000);
    assert_int_equal(c->qa.max_tokens, 256);
    cfg_free(c);
    assert_int_equal(load(HEAD "models = ( { id = \"m\"; path = \"%M\"; },\n"
                               "  { id = \"n\"; path = \"%M\"; } );\n"
                               "qa = { model = \"n\"; top_k = 20; min_score = 2.5;\n"
                               "  max_question_bytes = 100; max_tokens = 7; };\n",
                          &c, msg, sizeof(msg)),
                     CORE_OK);
    assert_string_equal(c->qa.model, "n");
    assert_int_equal(c->qa.top_k, 20);
    assert_true(c->qa.min_score == 2.5);
    assert_int_equal(c->qa.max_question_bytes, 100);
    assert_int_equal(c->qa.max_tokens, 7);
    cfg_free(c);
    assert_int_equal(load(HEAD MODELS "qa = { model = \"\"; min_score = 3; };\n", &c, msg,
                          sizeof(msg)),
                     CORE_OK);
    assert_null(c->qa.model);
    assert_true(c->qa.min_score == 3.0);
    cfg_free(c);

    expect_bad(HEAD MODELS "qa = {\n topk = 3; };\n", 4, "unknown setting 'topk' in qa");
    expect_bad(HEAD MODELS "qa = ( 1 );\n", 3, "'qa' must be a group");
    expect_bad(HEAD MODELS "qa = {\n model = \"other\"; };\n", 4,
               "qa.model 'other' is not one of the models");
    expect_bad(HEAD MODELS "qa = { top_k = 0; };\n", 3, "'top_k' = 0 is out of range [1, 20]");
    expect_bad(HEAD MODELS "qa = { top_k = 21; };\n", 3, "'top_k' = 21");
    expect_bad(HEAD MODELS "qa = { top_k = \"4\"; };\n", 3, "'top_k' must be an integer");
    expect_bad(HEAD MODELS "qa = {\n min_score = -0.5; };\n", 4, "'min_score' = -0.5");
    expect_bad(HEAD MODELS "qa = { min_score = true; };\n", 3,
               "'min_score' must be a number, not a boolean");
    expect_bad(HEAD MODELS "qa = { max_question_bytes = 0; };\n", 3, "'max_question_bytes' = 0");
    expect_bad(HEAD MODELS "qa = { max_question_bytes = 16385; };\n", 3,
               "'max_question_bytes' = 16385");
    expect_bad(HEAD MODELS "qa = { max_tokens = 0; };\n", 3, "'max_tokens' = 0");
}

/* kb = { ... }: defaults (file beside the socket), every key, each mistake. */
static void test_kb(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[512] = "";
    assert_int_equal(load(HEAD MODELS, &c, msg, sizeof(msg)), CORE_OK);
    assert_true(c->kb.enabled);
    assert_string_equal(c->kb.path, "/tmp/kb.mdb");
    assert_int_equal(c->kb.map_size_mb, 256);
    assert_int_equal(c->kb.chunk_bytes, 1000);
    assert_int_equal(c->kb.overlap_bytes, 150);
    assert_int_equal(c->kb.max_document_bytes, 8 << 20);
    assert_null(c->kb.embedding_model);
    cfg_free(c);
    assert_int_equal(load(HEAD MODELS "kb = { enabled = false; path = \"k/kb.mdb\";\n"
                                      "  map_size_mb = 16; chunk_bytes = 500; overlap_bytes = 0;\n"
                                      "  max_document_bytes = 1000; embedding_model = \"m\"; };\n",
                          &c, msg, sizeof(msg)),
                     CORE_OK);
    assert_false(c->kb.enabled);
    char want[300];
    snprintf(want, sizeof(want), "%s/k/kb.mdb", tdir);
    assert_string_equal(c->kb.path, want);
    assert_int_equal(c->kb.map_size_mb, 16);
    assert_int_equal(c->kb.chunk_bytes, 500);
    assert_int_equal(c->kb.overlap_bytes, 0);
    assert_int_equal(c->kb.max_document_bytes, 1000);
    assert_string_equal(c->kb.embedding_model, "m");
    cfg_free(c);

    expect_bad(HEAD MODELS "kb = {\n chunk = 3; };\n", 4, "unknown setting 'chunk' in kb");
    expect_bad(HEAD MODELS "kb = 1;\n", 3, "'kb' must be a group");
    expect_bad(HEAD MODELS "kb = { path = \"\"; };\n", 3, "'path' is empty");
    expect_bad(HEAD MODELS "kb = { enabled = \"yes\"; };\n", 3, "'enabled' must be a boolean");
    expect_bad(HEAD MODELS "kb = { chunk_bytes = 63; };\n", 3, "'chunk_bytes' = 63");
    expect_bad(HEAD MODELS "kb = { map_size_mb = 0; };\n", 3, "'map_size_mb' = 0");
    expect_bad(HEAD MODELS "kb = { chunk_bytes = 100;\n overlap_bytes = 50; };\n", 4,
               "overlap_bytes (50) must be less than half of chunk_bytes (100)");
    expect_bad(HEAD MODELS "kb = { map_size_mb = 1;\n max_document_bytes = 2000000; };\n", 4,
               "max_document_bytes (2000000) exceeds map_size_mb (1 MiB)");
    expect_bad(HEAD MODELS "kb = { embedding_model = 3; };\n", 3,
               "'embedding_model' must be a string");
    expect_bad(HEAD MODELS "kb = {\n embedding_model = \"bge\"; };\n", 4,
               "kb.embedding_model 'bge' is not one of the models");
}

/* vision = ( ... ) and images = { ... } (the %M model file stands in for
 * the cfg, weights and names files: only readability is checked here). */
static void test_vision(void **state)
{
    (void)state;
    cfg *c = NULL;
    char msg[512] = "";
    assert_int_equal(load(HEAD MODELS, &c, msg, sizeof(msg)), CORE_OK);
    assert_int_equal(c->n_vision, 0);
    assert_true(c->images.max_bytes == 16 << 20);
    assert_int_equal(c->images.max_width, 8192);
    assert_int_equal(c->images.max_height, 8192);
    assert_true(c->images.max_pixels == 40000000);
    cfg_free(c);
    assert_int_equal(load(HEAD MODELS
                          "vision = ( { id = \"yolo\"; cfg = \"%M\"; weights = \"%M\";\n"
                          "  names = \"%M\"; threads = 2; },\n"
                          "  { id = \"y2\"; cfg = \"%M\"; weights = \"%M\"; } );\n"
                          "images = { max_bytes = 2048; max_width = 640; max_height = 480;\n"
                          "  max_pixels = 300000; };\n",
                          &c, msg, sizeof(msg)),
                     CORE_OK);
    assert_int_equal(c->n_vision, 2);
    assert_string_equal(c->vision[0].id, "yolo");
    assert_string_equal(c->vision[0].cfg, model_path);
    assert_string_equal(c->vision[0].weights, model_path);
    assert_string_equal(c->vision[0].names, model_path);
    assert_int_equal(c->vision[0].threads, 2);
    assert_null(c->vision[1].names);
    assert_int_equal(c->vision[1].threads, 0);
    assert_true(c->images.max_bytes == 2048);
    assert_int_equal(c->images.max_width, 640);
    assert_int_equal(c->images.max_height, 480);
    assert_true(c->images.max_pixels == 300000);
    cfg_free(c);

    expect_bad(HEAD MODELS "vision = { id = \"y\"; };\n", 3, "'vision' must be a list");
    expect_bad(HEAD MODELS "vision = ( 3 );\n", 3, "vision[0] must be a group");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\"; cfg = \"%M\";\n weights = \"%M\";\n"
                           " colour = true; } );\n",
               5, "unknown setting 'colour' in a vision model");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\";\n weights = \"%M\"; } );\n", 3,
               "missing required setting 'cfg'");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\"; cfg = \"%M\";\n weights = \"/nonexistent/w\"; } );\n",
               4, "vision model 'y': cannot read /nonexistent/w");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\"; cfg = \"%M\"; weights = \"%M\";\n names = \"\"; } );\n",
               4, "'names' is empty");
    expect_bad(HEAD MODELS "vision = ( { id = \"m\"; cfg = \"%M\"; weights = \"%M\"; } );\n", 3,
               "vision model id 'm' is also a chat model's id");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\"; cfg = \"%M\"; weights = \"%M\"; },\n"
                           "  { id = \"y\"; cfg = \"%M\"; weights = \"%M\"; } );\n",
               4, "vision model id 'y' is used twice");
    expect_bad(HEAD MODELS "vision = ( { id = \"a b\"; cfg = \"%M\"; weights = \"%M\"; } );\n", 3,
               "vision model id 'a b' must be");
    expect_bad(HEAD MODELS "vision = ( { id = \"y\"; cfg = \"%M\"; weights = \"%M\";\n"
                           " threads = \"2\"; } );\n",
               4, "'threads' must be an integer");
    expect_bad(HEAD MODELS "images = { max_bytes = 10; };\n", 3,
               "'max_bytes' = 10 is out of range");
    expect_bad(HEAD MODELS "images = {\n max_width = 0; };\n", 4, "'max_width' = 0 is out of range");
    expect_bad(HEAD MODELS "images = {\n max_height = 70000; };\n", 4,
               "'max_height' = 70000 is out of range");
    expect_bad(HEAD MODELS "images = { max_pixels = 1.5; };\n", 3,
               "'max_pixels' must be an integer");
    expect_bad(HEAD MODELS "images = { max_depth = 8; };\n", 3,
               "unknown setting 'max_depth' in images");
    expect_bad(HEAD MODELS "images = 3;\n", 3, "'images' must be a group");
}

/* The shipped default config must parse (its model path aside). */
static void test_shipped_config(void **state)
{
    (void)state;
    FILE *f = fopen("conf/edgegate.conf", "r");
    if (!f) {
        print_message("SKIP: conf/edgegate.conf not found (run from the repo root)\n");
        skip();
    }
    char text[16384];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    cfg *c = NULL;
    char msg[512] = "";
    int rc = cfg_parse_string(text, "conf/edgegate.conf", "conf", &c, msg, sizeof(msg));
    /* Only the model file (absent on a build machine) or the www-data group
     * may be missing; everything else must validate. */
    if (rc != CORE_OK && !strstr(msg, "cannot read") && !strstr(msg, "no such group"))
        fail_msg("%s", msg);
    cfg_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),         cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_syntax_error), cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_types),        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_semantics),    cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_string_parse), cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_qa),
        cmocka_unit_test(test_vision),
        cmocka_unit_test(test_kb),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
