/* edgegate-make-model: the generated tiny models open, have the tensors,
 * types and tokenizer a qwen2 GGUF has, and depend only on the seed. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core_err.h"
#include "gguf.h"
#include "quant.h"

static char tm_dir[256];
static char tm_tool[512];

static int tm_setup(void **state)
{
    (void)state;
    const char *build = getenv("EDGEGATE_BUILD");
    snprintf(tm_tool, sizeof tm_tool, "%s/edgegate-make-model", build && *build ? build : "build");
    snprintf(tm_dir, sizeof tm_dir, "/tmp/test_make_model.XXXXXX");
    return mkdtemp(tm_dir) ? 0 : -1;
}

static int tm_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tm_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs the tool; returns its exit status. */
static int tm_run(const char *args)
{
    if (access(tm_tool, X_OK))
        fail_msg("%s not built (make %s)", tm_tool, tm_tool);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>&1", tm_tool, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void tm_make(const char *type, unsigned seed, const char *extra, char *path, size_t n)
{
    static int count;
    char args[800];
    snprintf(path, n, "%s/tiny-%s-%u-%d.gguf", tm_dir, type, seed, count++);
    snprintf(args, sizeof args, "--shape tiny --type %s --seed %u -o '%s' %s", type, seed, path, extra);
    assert_int_equal(tm_run(args), 0);
}

static void *tm_read(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*size);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, *size, f), *size);
    fclose(f);
    return p;
}

static int tm_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint32_t tm_u32(const gguf *g, const char *key)
{
    uint32_t v = 0;
    if (gguf_get_u32(g, key, &v))
        fail_msg("key %s", key);
    return v;
}

/* Expected tensor type in the tiny shape (2 layers, rows of 256 and 768,
 * untied output) for each --type. */
static int tm_expect_type(const char *type, const char *name, int n_dims)
{
    if (n_dims == 1)
        return QT_F32;
    if (!strcmp(type, "f16"))
        return QT_F16;
    if (!strcmp(type, "q8_0"))
        return QT_Q8_0;
    if (!strcmp(type, "q4_0"))
        return QT_Q4_0;
    /* q4_k_m: output Q6_K; attn_v and ffn_down Q6_K in layer 1 (7*2/8 = 1) */
    if (!strcmp(name, "output.weight"))
        return QT_Q6_K;
    if (!strncmp(name, "blk.1.", 6) && (strstr(name, "attn_v.weight") || strstr(name, "ffn_down")))
        return QT_Q6_K;
    return QT_Q4_K;
}

static void tm_check_model(const char *path, const char *type, uint32_t ftype)
{
    gguf *g;
    char msg[256];
    if (gguf_open(path, &g, msg, sizeof msg))
        fail_msg("%s: %s", path, msg);
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_str(g, "general.architecture", &s, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "qwen2", 5);
    assert_int_equal(tm_u32(g, "general.file_type"), ftype);
    assert_int_equal(tm_u32(g, "qwen2.block_count"), 2);
    assert_int_equal(tm_u32(g, "qwen2.embedding_length"), 256);
    assert_int_equal(tm_u32(g, "qwen2.feed_forward_length"), 768);
    assert_int_equal(tm_u32(g, "qwen2.attention.head_count"), 4);
    assert_int_equal(tm_u32(g, "qwen2.attention.head_count_kv"), 2);
    assert_int_equal(tm_u32(g, "qwen2.context_length"), 2048);
    float f;
    assert_int_equal(gguf_get_f32(g, "qwen2.rope.freq_base", &f), 0);
    assert_true(f == 1000000.0f);
    assert_int_equal(gguf_get_f32(g, "qwen2.attention.layer_norm_rms_epsilon", &f), 0);
    assert_true(f == 1e-6f);

    /* tensor set and shapes */
    struct { const char *name; int64_t ne0, ne1; int n_dims; } want[] = {
        {"token_embd.weight", 256, 4096, 2}, {"output_norm.weight", 256, 1, 1},
        {"output.weight", 256, 4096, 2},
    };
    assert_int_equal(gguf_n_tensors(g), 3 + 2 * 12);
    for (size_t i = 0; i < 3; i++) {
        const gguf_tensor *t = gguf_find_tensor(g, want[i].name);
        assert_non_null(t);
        assert_int_equal(t->ne[0], want[i].ne0);
        assert_int_equal(t->ne[1], want[i].ne1);
        assert_int_equal(t->n_dims, want[i].n_dims);
    }
    static const struct { const char *suffix; int64_t ne0, ne1; int n_dims; } blk[] = {
        {"attn_norm.weight", 256, 1, 1},  {"attn_q.weight", 256, 256, 2},
        {"attn_q.bias", 256, 1, 1},       {"attn_k.weight", 256, 128, 2},
        {"attn_k.bias", 128, 1, 1},       {"attn_v.weight", 256, 128, 2},
        {"attn_v.bias", 128, 1, 1},       {"attn_output.weight", 256, 256, 2},
        {"ffn_norm.weight", 256, 1, 1},   {"ffn_gate.weight", 256, 768, 2},
        {"ffn_up.weight", 256, 768, 2},   {"ffn_down.weight", 768, 256, 2},
    };
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, blk[i].suffix);
            const gguf_tensor *t = gguf_find_tensor(g, name);
            if (!t)
                fail_msg("missing %s", name);
            assert_int_equal(t->ne[0], blk[i].ne0);
            assert_int_equal(t->ne[1], blk[i].ne1);
            assert_int_equal(t->n_dims, blk[i].n_dims);
        }
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        int want_type = tm_expect_type(type, t->name, t->n_dims);
        if (t->type != want_type)
            fail_msg("%s %s: type %d, expected %d", type, t->name, t->type, want_type);
    }

    /* weights look initialised: norms 1, matrices N(0, 0.02) */
    float *row = malloc(768 * sizeof *row);
    const gguf_tensor *t = gguf_find_tensor(g, "blk.1.ffn_norm.weight");
    assert_int_equal(quant_dequantize_row(t->type, t->data, row, 256), 0);
    for (int i = 0; i < 256; i++)
        assert_true(row[i] == 1.0f);
    t = gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    double ss = 0, sum = 0;
    for (int r = 0; r < 64; r++) {
        size_t rs = quant_row_size(t->type, 256);
        assert_int_equal(quant_dequantize_row(t->type, (const uint8_t *)t->data + r * rs, row, 256), 0);
        for (int i = 0; i < 256; i++) {
            sum += row[i];
            ss += (double)row[i] * row[i];
        }
    }
    double sd = sqrt(ss / (64 * 256));
    assert_true(sd > 0.017 && sd < 0.023);
    assert_true(fabs(sum / (64 * 256)) < 0.002);
    free(row);

    /* tokenizer */
    assert_int_equal(gguf_get_str(g, "tokenizer.ggml.model", &s, &len), 0);
    assert_memory_equal(s, "gpt2", 4);
    assert_int_equal(gguf_get_str(g, "tokenizer.ggml.pre", &s, &len), 0);
    assert_memory_equal(s, "qwen2", 5);
    assert_int_equal(gguf_get_str(g, "tokenizer.chat_template", &s, &len), 0);
    assert_non_null(memmem(s, len, "<|im_start|>", 12));
    bool add_bos = true;
    assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos), 0);
    assert_false(add_bos);
    int64_t kt = gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t ky = gguf_find_key(g, "tokenizer.ggml.token_type");
    int64_t km = gguf_find_key(g, "tokenizer.ggml.merges");
    assert_true(kt >= 0 && ky >= 0 && km >= 0);
    uint64_t n_vocab = gguf_kv_arr_n(g, kt);
    assert_int_equal(n_vocab, 4096);
    assert_int_equal(gguf_kv_arr_n(g, ky), n_vocab);
    assert_int_equal(gguf_kv_arr_type(g, ky), GGUF_INT32);
    uint64_t n_merges = gguf_kv_arr_n(g, km);
    assert_true(n_merges > 500 && n_merges <= n_vocab - 256 - 3);
    uint32_t bos = tm_u32(g, "tokenizer.ggml.bos_token_id");
    uint32_t eos = tm_u32(g, "tokenizer.ggml.eos_token_id");
    assert_true(bos < n_vocab && eos < n_vocab);
    assert_int_equal(gguf_arr_str(g, kt, eos, &s, &len), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(s, "<|im_end|>", 10);
    assert_int_equal(gguf_arr_str(g, kt, bos, &s, &len), 0);
    assert_memory_equal(s, "<|endoftext|>", 13);

    char **toks = calloc(n_vocab, sizeof *toks);
    int n_control = 0;
    for (uint64_t i = 0; i < n_vocab; i++) {
        int64_t ty;
        assert_int_equal(gguf_arr_str(g, kt, i, &s, &len), 0);
        assert_true(len > 0);
        toks[i] = strndup(s, len);
        assert_int_equal(gguf_arr_i64(g, ky, i, &ty), 0);
        assert_true(ty == 1 || ty == 3);
        n_control += ty == 3;
        if (i < 256) /* one byte symbol: one code point of 1 or 2 UTF-8 bytes */
            assert_true(len == 1 || (len == 2 && ((uint8_t)s[0] & 0xe0) == 0xc0));
    }
    assert_int_equal(n_control, 3);
    char **sorted = malloc(n_vocab * sizeof *sorted);
    memcpy(sorted, toks, n_vocab * sizeof *sorted);
    qsort(sorted, n_vocab, sizeof *sorted, tm_cmp_str);
    for (uint64_t i = 1; i < n_vocab; i++)
        if (!strcmp(sorted[i - 1], sorted[i]))
            fail_msg("duplicate token '%s'", sorted[i]);
    /* every merge joins two tokens into a third */
    for (uint64_t i = 0; i < n_merges; i++) {
        assert_int_equal(gguf_arr_str(g, km, i, &s, &len), 0);
        char *m = strndup(s, len), *sp = strchr(m, ' ');
        assert_non_null(sp);
        *sp = 0;
        char *joined = malloc(len);
        snprintf(joined, len, "%s%s", m, sp + 1);
        const char *parts[3] = {m, sp + 1, joined};
        for (int p = 0; p < 3; p++)
            if (!bsearch(&parts[p], sorted, n_vocab, sizeof *sorted, tm_cmp_str))
                fail_msg("merge %llu '%.*s': '%s' not in the vocabulary", (unsigned long long)i, (int)len,
                         s, parts[p]);
        free(joined);
        free(m);
    }
    for (uint64_t i = 0; i < n_vocab; i++)
        free(toks[i]);
    free(toks);
    free(sorted);
    gguf_close(g);
}

static void test_each_type(void **state)
{
    (void)state;
    static const struct { const char *name; uint32_t ftype; } types[] = {
        {"f16", 1}, {"q8_0", 7}, {"q4_0", 2}, {"q4_k_m", 15},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char path[512];
        tm_make(types[i].name, 1, "", path, sizeof path);
        tm_check_model(path, types[i].name, types[i].ftype);
    }
}

static void test_deterministic(void **state)
{
    (void)state;
    char a[512], b[512], c[512], d[512];
    tm_make("q4_0", 7, "", a, sizeof a);
    tm_make("q4_0", 7, "--threads 1", b, sizeof b);
    tm_make("q4_0", 8, "", c, sizeof c);
    tm_make("q4_0", 7, "--threads 3", d, sizeof d);
    size_t na, nb, nc, nd;
    uint8_t *pa = tm_read(a, &na), *pb = tm_read(b, &nb), *pc = tm_read(c, &nc), *pd = tm_read(d, &nd);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    assert_int_equal(na, nd);
    assert_memory_equal(pa, pd, na);
    /* another seed: same layout and tokenizer, other weights */
    assert_int_equal(na, nc);
    assert_true(memcmp(pa, pc, na) != 0);
    gguf *ga, *gc;
    char msg[256];
    assert_int_equal(gguf_open_mem(pa, na, &ga, msg, sizeof msg), 0);
    assert_int_equal(gguf_open_mem(pc, nc, &gc, msg, sizeof msg), 0);
    const gguf_tensor *ta = gguf_find_tensor(ga, "blk.0.attn_q.weight");
    const gguf_tensor *tc = gguf_find_tensor(gc, "blk.0.attn_q.weight");
    assert_int_equal(ta->size, tc->size);
    assert_true(memcmp(ta->data, tc->data, ta->size) != 0);
    ta = gguf_find_tensor(ga, "blk.0.attn_norm.weight");
    tc = gguf_find_tensor(gc, "blk.0.attn_norm.weight");
    assert_memory_equal(ta->data, tc->data, ta->size);
    /* the tensor data region differs, the header (metadata) does not */
    size_t hdr = (size_t)((const uint8_t *)gguf_tensor_at(ga, 0)->data - pa);
    assert_memory_equal(pa, pc, hdr);
    gguf_close(ga);
    gguf_close(gc);
    free(pa);
    free(pb);
    free(pc);
    free(pd);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char args[700];
    snprintf(args, sizeof args, "--shape huge --type q4_0 --seed 1 -o '%s/x.gguf'", tm_dir);
    assert_int_not_equal(tm_run(args), 0);
    snprintf(args, sizeof args, "--shape tiny --type q3_k --seed 1 -o '%s/x.gguf'", tm_dir);
    assert_int_not_equal(tm_run(args), 0);
    snprintf(args, sizeof args, "--shape tiny --type q4_0 --seed x1 -o '%s/x.gguf'", tm_dir);
    assert_int_not_equal(tm_run(args), 0);
    assert_int_not_equal(tm_run("--shape tiny --type q4_0 --seed 1"), 0);
    assert_int_not_equal(tm_run("--shape tiny --type q4_0 --seed 1 -o /nonexistent/dir/x.gguf"), 0);
    snprintf(args, sizeof args, "%s/x.gguf", tm_dir);
    assert_int_not_equal(access(args, F_OK), 0);
    assert_int_equal(tm_run("--help"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_type),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, tm_setup, tm_teardown);
}
