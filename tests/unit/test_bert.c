/* Embedding models (core_embed over core/bert.c): random-weight bert models
 * from edgegate-make-model against an independent numpy reference
 * (tests/ref/bert_ref.py), scalar against AVX2 kernels, and the API's
 * contract: norm 1, determinism, batches, empty and too long texts,
 * generation refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core.h"

static char tb_dir[256];
static char tb_tool[512];

static const char *const tb_texts[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little robot who loved to read books.",
    "",
    "x",
    "Numbers: 1 robot, 24 hours, 2048 words; code: int main(void) { return 0; }",
    "Zebras quizzically vex jumping wizards!!! (unusual words split into pieces)",
};
enum { TB_N = sizeof tb_texts / sizeof *tb_texts };

static int tb_setup(void **state)
{
    (void)state;
    const char *build = getenv("EDGEGATE_BUILD");
    snprintf(tb_tool, sizeof tb_tool, "%s/edgegate-make-model", build && *build ? build : "build");
    snprintf(tb_dir, sizeof tb_dir, "/tmp/test_bert.XXXXXX");
    return mkdtemp(tb_dir) ? 0 : -1;
}

static int tb_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tb_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes DIR/NAME.gguf with the tool and returns its path (static buffer). */
static const char *tb_make(const char *name, const char *args)
{
    static char path[400];
    char cmd[1200];
    if (access(tb_tool, X_OK))
        fail_msg("%s not built (make %s)", tb_tool, tb_tool);
    snprintf(path, sizeof path, "%s/%s.gguf", tb_dir, name);
    if (access(path, R_OK) == 0)
        return path;
    snprintf(cmd, sizeof cmd, "'%s' %s -o '%s' >/dev/null", tb_tool, args, path);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return path;
}

static core_model *tb_load(const char *path, const char *isa, int n_ctx, int n_threads)
{
    core_params p = core_default_params();
    p.path = path;
    p.n_threads = n_threads;
    p.isa = isa;
    p.n_ctx = n_ctx;
    core_model *m = NULL;
    char msg[256];
    int rc = core_load(&p, &m, msg, sizeof msg);
    if (rc)
        fail_msg("%s (%s): %s", path, isa ? isa : "best", msg);
    return m;
}

static double tb_cos(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

static bool tb_have_numpy(void)
{
    static int have = -1;
    if (have < 0) {
        have = system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
        if (!have)
            print_message("SKIP: /usr/bin/python3 with numpy absent: no reference comparison\n");
    }
    return have;
}

/* Runs the reference over tb_texts; returns the file's bytes. */
static uint8_t *tb_reference(const char *model, size_t *size)
{
    char out[400], cmd[4096];
    snprintf(out, sizeof out, "%s/ref.bin", tb_dir);
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/bert_ref.py '%s' '%s'", model, out);
    for (int i = 0; i < TB_N; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", tb_texts[i]);
    assert_true(n < (int)sizeof cmd);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(out, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(*size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *size, f), *size);
    fclose(f);
    return buf;
}

/* Every text against the reference (token ids equal, cosine >= min_cos), on
 * the scalar and the AVX2 kernels, which must also agree with each other
 * (as closely for float weights; quantized activations round differently). */
static void tb_check_model(const char *label, const char *path, double min_cos, bool scalar)
{
    if (!tb_have_numpy())
        return;
    size_t size;
    uint8_t *ref = tb_reference(path, &size), *p = ref + 8;
    int32_t hdr[2];
    memcpy(hdr, ref, 8);
    assert_int_equal(hdr[0], TB_N);
    core_model *m[2] = {tb_load(path, scalar ? "scalar" : NULL, 0, 2), NULL};
    core_params ap = core_default_params();
    char amsg[256];
    ap.path = path;
    ap.n_threads = 2;
    ap.isa = "avx2";
    if (scalar && core_load(&ap, &m[1], amsg, sizeof amsg))
        print_message("SKIP: no AVX2 kernels on this CPU (%s)\n", amsg);
    core_info info;
    core_get_info(m[0], &info);
    int E = info.n_embd;
    assert_int_equal(E, hdr[1]);
    assert_true(info.embedding);
    float *v[2] = {malloc(sizeof(float) * E), malloc(sizeof(float) * E)};
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)info.n_ctx);
    double worst[2] = {1, 1}, worst_isa = 1;
    for (int i = 0; i < TB_N; i++) {
        int32_t n_ref;
        memcpy(&n_ref, p, 4);
        assert_true(p + 4 + 4 * (size_t)n_ref + 4 * (size_t)E <= ref + size);
        size_t n_tok = 0;
        const char *t = tb_texts[i];
        assert_int_equal(core_tokenize(m[0], t, strlen(t), true, false, toks, (size_t)info.n_ctx, &n_tok), 0);
        assert_int_equal(n_tok, n_ref);
        assert_memory_equal(toks, p + 4, 4 * (size_t)n_ref);
        float *r = malloc(sizeof(float) * E);
        memcpy(r, p + 4 + 4 * (size_t)n_ref, sizeof(float) * E);
        p += 4 + 4 * (size_t)n_ref + 4 * (size_t)E;
        for (int k = 0; k < 2 && m[k]; k++) {
            char msg[256];
            size_t nt = 0;
            assert_int_equal(core_embed(m[k], t, strlen(t), v[k], (size_t)E, &nt, msg, sizeof msg), 0);
            assert_int_equal(nt, n_tok);
            double c = tb_cos(v[k], r, E);
            if (c < worst[k])
                worst[k] = c;
            if (c < min_cos)
                fail_msg("%s %s, text %d: cosine %.7f < %.4f", label, k ? "avx2" : info.isa, i, c, min_cos);
        }
        if (m[1]) {
            double c = tb_cos(v[0], v[1], E);
            worst_isa = c < worst_isa ? c : worst_isa;
            if (c < min_cos)
                fail_msg("%s text %d: scalar vs avx2 cosine %.7f", label, i, c);
        }
        free(r);
    }
    if (scalar)
        print_message("%s: min cosine vs numpy: scalar %.8f, avx2 %.8f; scalar vs avx2 %.8f\n", label,
                      worst[0], m[1] ? worst[1] : NAN, m[1] ? worst_isa : NAN);
    else
        print_message("%s: min cosine vs numpy: %.8f (%s)\n", label, worst[0], info.isa);
    core_free(m[0]);
    core_free(m[1]);
    free(v[0]);
    free(v[1]);
    free(toks);
    free(ref);
}

static void test_bert_tiny_f32(void **state)
{
    (void)state;
    tb_check_model("bert-tiny f32", tb_make("bt-f32", "--shape bert-tiny --type f32 --seed 7"), 0.9999, true);
}

static void test_bert_tiny_f16(void **state)
{
    (void)state;
    tb_check_model("bert-tiny f16", tb_make("bt-f16", "--shape bert-tiny --type f16 --seed 7"), 0.9999, true);
}

static void test_bert_tiny_q8_0(void **state)
{
    (void)state;
    tb_check_model("bert-tiny q8_0", tb_make("bt-q8_0", "--shape bert-tiny --type q8_0 --seed 7"), 0.999, true);
}

static void test_bert_tiny_cls(void **state)
{
    (void)state;
    tb_check_model("bert-tiny f16 cls",
                   tb_make("bt-cls", "--shape bert-tiny --type f16 --pooling cls --seed 3"), 0.9999, true);
}

/* bge-small's shape with the real bge WordPiece vocabulary when ../shared
 * has it, else our own. */
static void tb_bge(const char *type, double min_cos, bool scalar)
{
    const char *vocab = "../shared/fixtures/tokenizer/ggml-vocab-bert-bge.gguf";
    char args[400], name[64], label[64];
    bool real = access(vocab, R_OK) == 0;
    if (!real)
        print_message("SKIP: ../shared absent: bge-small with the synthesized vocabulary\n");
    snprintf(args, sizeof args, "--shape bge-small --type %s --seed 5%s%s", type, real ? " --vocab " : "",
             real ? vocab : "");
    snprintf(name, sizeof name, "bge-%s", type);
    snprintf(label, sizeof label, "bge-small %s%s", type, real ? " (bge vocab)" : "");
    tb_check_model(label, tb_make(name, args), min_cos, scalar);
}

static void test_bge_small_f16(void **state)
{
    (void)state;
    tb_bge("f16", 0.9999, false); /* scalar f16 products are slow: bert-tiny covers them */
}

static void test_bge_small_q8_0(void **state)
{
    (void)state;
    tb_bge("q8_0", 0.999, true);
}

static void test_contract(void **state)
{
    (void)state;
    core_model *m = tb_load(tb_make("bt-f16", "--shape bert-tiny --type f16 --seed 7"), NULL, 0, 2);
    core_info info;
    core_get_info(m, &info);
    int E = info.n_embd;
    assert_string_equal(info.arch, "bert");
    assert_string_equal(info.pooling, "mean");
    assert_int_equal(E, 128);
    float *a = malloc(sizeof(float) * E * TB_N), *b = malloc(sizeof(float) * E * TB_N);
    char msg[256];
    size_t nt = 0, nts[TB_N];
    /* norm 1; same text, same vector */
    for (int i = 0; i < TB_N; i++) {
        const char *t = tb_texts[i];
        assert_int_equal(core_embed(m, t, strlen(t), a + i * E, (size_t)E, &nt, msg, sizeof msg), 0);
        assert_int_equal(core_embed(m, t, strlen(t), b, (size_t)E, NULL, msg, sizeof msg), 0);
        assert_memory_equal(a + i * E, b, sizeof(float) * E);
        double ss = 0;
        for (int k = 0; k < E; k++)
            ss += (double)b[k] * b[k];
        assert_true(fabs(sqrt(ss) - 1) < 1e-5);
        if (!*t)
            assert_int_equal(nt, 2); /* [CLS] [SEP] */
    }
    assert_true(tb_cos(a, a + E, E) < 0.9999); /* different texts differ */
    /* a batch gives what one at a time gives */
    size_t lens[TB_N];
    for (int i = 0; i < TB_N; i++)
        lens[i] = strlen(tb_texts[i]);
    assert_int_equal(core_embed_batch(m, tb_texts, lens, TB_N, b, (size_t)E * TB_N, nts, msg, sizeof msg), 0);
    for (int i = 0; i < TB_N; i++) {
        assert_true(tb_cos(a + i * E, b + i * E, E) > 0.99999);
        assert_true(nts[i] >= 2);
    }
    /* output too small, generation refused */
    assert_int_equal(core_embed_batch(m, tb_texts, lens, TB_N, b, (size_t)E * TB_N - 1, NULL, msg, sizeof msg),
                     CORE_EINVAL);
    int32_t tok = 5;
    assert_int_equal(core_prefill(m, &tok, 1, msg, sizeof msg), CORE_EUNSUPPORTED);
    assert_non_null(strstr(msg, "embedding model"));
    assert_int_equal(core_eval_all(m, &tok, 1, a, msg, sizeof msg), CORE_EUNSUPPORTED);
    core_gen_params gp = {.max_tokens = 1, .sampling = core_default_sampling()};
    core_gen_result res;
    assert_int_equal(core_generate(m, &gp, NULL, NULL, &res, msg, sizeof msg), CORE_EUNSUPPORTED);
    core_reset(m);
    core_free(m);
    free(a);
    free(b);
}

/* A small context: too long texts fail with CORE_ECONTEXT naming the count,
 * and many texts span several packed passes without changing results. */
static void test_context(void **state)
{
    (void)state;
    const char *path = tb_make("bt-f16", "--shape bert-tiny --type f16 --seed 7");
    core_model *m = tb_load(path, NULL, 32, 2), *big = tb_load(path, NULL, 0, 2);
    core_info info;
    core_get_info(m, &info);
    int E = info.n_embd;
    assert_int_equal(info.n_ctx, 32);
    char msg[256], text[400];
    size_t nt = 0;
    float *v = malloc(sizeof(float) * E * 40), *w = malloc(sizeof(float) * E);
    snprintf(text, sizeof text, "%s %s %s", tb_texts[0], tb_texts[1], tb_texts[4]);
    assert_int_equal(core_embed(m, text, strlen(text), v, (size_t)E, &nt, msg, sizeof msg), CORE_ECONTEXT);
    assert_true(nt == 0 || nt > 32);
    assert_non_null(strstr(msg, "context holds 32"));
    assert_int_equal(core_embed(big, text, strlen(text), v, (size_t)E, &nt, msg, sizeof msg), 0);
    assert_true(nt > 32);
    /* 40 texts of 2 to 20 tokens: several passes of up to 32 */
    const char *texts[40];
    size_t lens[40];
    char words[40][128];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(words[i], sizeof words[i], "text %d:", i);
        for (int k = 0; k < i % 9; k++)
            n += snprintf(words[i] + n, sizeof words[i] - (size_t)n, " robot%d", k);
        texts[i] = words[i];
        lens[i] = (size_t)n;
    }
    assert_int_equal(core_embed_batch(m, texts, lens, 40, v, (size_t)E * 40, NULL, msg, sizeof msg), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(core_embed(big, texts[i], lens[i], w, (size_t)E, NULL, msg, sizeof msg), 0);
        assert_true(tb_cos(v + i * E, w, E) > 0.99999);
    }
    /* one text too long fails the batch and says which */
    texts[7] = text;
    lens[7] = strlen(text);
    assert_int_equal(core_embed_batch(m, texts, lens, 40, v, (size_t)E * 40, NULL, msg, sizeof msg), CORE_ECONTEXT);
    assert_non_null(strstr(msg, "input 7"));
    core_free(m);
    core_free(big);
    free(v);
    free(w);
}

static void test_generative_model_refuses(void **state)
{
    (void)state;
    /* one thread: this model is freed right away, and a pool worker that has
     * not started by then would never see the stop (core/pool.c) */
    core_model *m = tb_load(tb_make("tiny", "--shape tiny --type q8_0 --seed 1"), NULL, 64, 1);
    core_info info;
    core_get_info(m, &info);
    assert_false(info.embedding);
    assert_null(info.pooling);
    float v[256];
    char msg[256];
    assert_int_equal(core_embed(m, "hello", 5, v, 256, NULL, msg, sizeof msg), CORE_EUNSUPPORTED);
    assert_non_null(strstr(msg, "not an embedding model"));
    core_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_tiny_f32),   cmocka_unit_test(test_bert_tiny_f16),
        cmocka_unit_test(test_bert_tiny_q8_0),  cmocka_unit_test(test_bert_tiny_cls),
        cmocka_unit_test(test_bge_small_f16),   cmocka_unit_test(test_bge_small_q8_0),
        cmocka_unit_test(test_contract),        cmocka_unit_test(test_context),
        cmocka_unit_test(test_generative_model_refuses),
    };
    return cmocka_run_group_tests(tests, tb_setup, tb_teardown);
}
