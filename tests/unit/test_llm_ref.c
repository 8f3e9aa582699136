/* The engine against llama.cpp: for every model in ../shared/fixtures/llm,
 * tokenize prompt1 as llama.cpp does, run it in one batch and compare every
 * position's logits with NAME.prompt1.ref (layout in ../shared/README.md):
 * cosine similarity >= 0.999 (0.99 for Q4_K_M), and the same top-1 token
 * wherever llama.cpp's top two logits are more than 5% of the row's standard
 * deviation apart. Runs with the best kernels and with the scalar ones. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core.h"
#include "quant.h" /* quant_kernels_for: which ISAs this CPU runs */

#define REF_DIR "../shared/fixtures/llm/"
static const char ref_prompt[] =
    "The quick brown fox jumps over the lazy dog. Once upon a time, there was a little robot who "
    "loved to read books.";

typedef struct {
    int32_t n, vocab;
    int32_t *toks;
    float *logits;
} ref_file;

static int ref_read(const char *path, ref_file *r)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int ok = fread(&r->n, 4, 1, f) == 1 && fread(&r->vocab, 4, 1, f) == 1 && r->n > 0 && r->vocab > 0;
    if (ok) {
        r->toks = malloc(sizeof(int32_t) * r->n);
        r->logits = malloc(sizeof(float) * (size_t)r->n * r->vocab);
        ok = r->toks && r->logits && fread(r->toks, 4, r->n, f) == (size_t)r->n &&
             fread(r->logits, sizeof(float) * r->vocab, r->n, f) == (size_t)r->n;
    }
    fclose(f);
    return ok ? 0 : -1;
}

static void ref_check(const char *name, const char *isa, double min_cos)
{
    char path[512], msg[512] = "";
    if (isa && !quant_kernels_for(isa)) {
        print_message("SKIP: %s: this CPU cannot run the %s kernels\n", name, isa);
        skip();
    }
    snprintf(path, sizeof path, REF_DIR "%s.gguf", name);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        print_message("SKIP: %s absent (../shared not here)\n", path);
        skip();
    }
    fclose(probe);
    ref_file ref = {0};
    snprintf(path, sizeof path, REF_DIR "%s.prompt1.ref", name);
    assert_int_equal(ref_read(path, &ref), 0);

    core_params p = core_default_params();
    snprintf(path, sizeof path, REF_DIR "%s.gguf", name);
    p.path = path;
    p.isa = isa;
    p.n_threads = 2;
    core_model *m = NULL;
    int rc = core_load(&p, &m, msg, sizeof msg);
    if (rc)
        fail_msg("load %s: %s", path, msg);
    core_info info;
    core_get_info(m, &info);
    assert_int_equal(info.n_vocab, ref.vocab);

    int32_t toks[256];
    size_t n = 0;
    assert_int_equal(core_tokenize(m, ref_prompt, strlen(ref_prompt), true, false, toks, 256, &n), 0);
    assert_int_equal((int)n, ref.n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(toks[i], ref.toks[i]);

    float *logits = malloc(sizeof(float) * n * (size_t)ref.vocab);
    assert_non_null(logits);
    rc = core_eval_all(m, toks, n, logits, msg, sizeof msg);
    if (rc)
        fail_msg("eval %s: %s", name, msg);
    double worst = 1;
    int top1_checked = 0;
    for (size_t i = 0; i < n; i++) {
        const float *a = logits + i * ref.vocab, *b = ref.logits + i * ref.vocab;
        double ab = 0, aa = 0, bb = 0, mean = 0, var = 0;
        int ia = 0, ib = 0, ib2 = -1;
        for (int v = 0; v < ref.vocab; v++) {
            ab += (double)a[v] * b[v];
            aa += (double)a[v] * a[v];
            bb += (double)b[v] * b[v];
            mean += b[v];
            if (a[v] > a[ia])
                ia = v;
            if (b[v] > b[ib]) {
                ib2 = ib;
                ib = v;
            } else if (v != ib && (ib2 < 0 || b[v] > b[ib2])) {
                ib2 = v;
            }
        }
        mean /= ref.vocab;
        for (int v = 0; v < ref.vocab; v++)
            var += (b[v] - mean) * (b[v] - mean);
        double sd = sqrt(var / ref.vocab), cs = ab / sqrt(aa * bb);
        worst = cs < worst ? cs : worst;
        if (cs < min_cos)
            fail_msg("%s/%s position %zu: cosine %.5f < %.3f", name, isa ? isa : "best", i, cs, min_cos);
        if (b[ib] - b[ib2] > 0.05 * sd) {
            top1_checked++;
            if (ia != ib)
                fail_msg("%s/%s position %zu: top-1 %d, llama.cpp %d (gap %.3f sd)", name,
                         isa ? isa : "best", i, ia, ib, (b[ib] - b[ib2]) / sd);
        }
    }
    print_message("%s [%s]: %zu positions, worst cosine %.6f, top-1 checked at %d\n", name, info.isa, n,
                  worst, top1_checked);
    free(logits);
    free(ref.toks);
    free(ref.logits);
    core_free(m);
}

#define REF_TEST(fn, name, isa, cos)                                                                   \
    static void fn(void **state)                                                                       \
    {                                                                                                  \
        (void)state;                                                                                   \
        ref_check(name, isa, cos);                                                                     \
    }
REF_TEST(t_llama_q8_0, "tiny-llama-spm-q8_0", NULL, 0.999)
REF_TEST(t_llama_q4_k_m, "tiny-llama-spm-q4_k_m", NULL, 0.99)
REF_TEST(t_qwen2_q8_0, "tiny-qwen2-bpe-q8_0", NULL, 0.999)
REF_TEST(t_qwen2_q4_0, "tiny-qwen2-bpe-q4_0", NULL, 0.999)
REF_TEST(t_llama_q8_0_scalar, "tiny-llama-spm-q8_0", "scalar", 0.999)
REF_TEST(t_llama_q4_k_m_scalar, "tiny-llama-spm-q4_k_m", "scalar", 0.99)
REF_TEST(t_qwen2_q8_0_scalar, "tiny-qwen2-bpe-q8_0", "scalar", 0.999)
REF_TEST(t_qwen2_q4_0_scalar, "tiny-qwen2-bpe-q4_0", "scalar", 0.999)
REF_TEST(t_llama_q8_0_avx2, "tiny-llama-spm-q8_0", "avx2", 0.999)
REF_TEST(t_llama_q4_k_m_avx2, "tiny-llama-spm-q4_k_m", "avx2", 0.99)
REF_TEST(t_qwen2_q8_0_avx2, "tiny-qwen2-bpe-q8_0", "avx2", 0.999)
REF_TEST(t_qwen2_q4_0_avx2, "tiny-qwen2-bpe-q4_0", "avx2", 0.999)
REF_TEST(t_llama_q8_0_avx512, "tiny-llama-spm-q8_0", "avx512", 0.999)
REF_TEST(t_llama_q4_k_m_avx512, "tiny-llama-spm-q4_k_m", "avx512", 0.99)
REF_TEST(t_qwen2_q8_0_avx512, "tiny-qwen2-bpe-q8_0", "avx512", 0.999)
REF_TEST(t_qwen2_q4_0_avx512, "tiny-qwen2-bpe-q4_0", "avx512", 0.999)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_llama_q8_0),        cmocka_unit_test(t_llama_q4_k_m),
        cmocka_unit_test(t_qwen2_q8_0),        cmocka_unit_test(t_qwen2_q4_0),
        cmocka_unit_test(t_llama_q8_0_scalar), cmocka_unit_test(t_llama_q4_k_m_scalar),
        cmocka_unit_test(t_qwen2_q8_0_scalar), cmocka_unit_test(t_qwen2_q4_0_scalar),
        cmocka_unit_test(t_llama_q8_0_avx2),   cmocka_unit_test(t_llama_q4_k_m_avx2),
        cmocka_unit_test(t_qwen2_q8_0_avx2),   cmocka_unit_test(t_qwen2_q4_0_avx2),
        cmocka_unit_test(t_llama_q8_0_avx512), cmocka_unit_test(t_llama_q4_k_m_avx512),
        cmocka_unit_test(t_qwen2_q8_0_avx512), cmocka_unit_test(t_qwen2_q4_0_avx512),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
