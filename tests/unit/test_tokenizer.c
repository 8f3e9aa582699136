/* test_tokenizer.c: the tokenizers against llama.cpp's test vectors
 * (../shared/fixtures/tokenizer, skipped visibly when absent) and against
 * small vocabularies built in memory, which need no fixtures. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../fuzz/tokenizer_gguf.h"
#include "gguf.h"
#include "tok_impl.h"
#include "tokenizer.h"
#include "unicode.h"

#define FIXTURES "../shared/fixtures/tokenizer/"

/* ---- helpers ---- */

typedef struct {
    unsigned char *bytes;
    gguf *g;
    tok_vocab *v;
} vocab_mem;

/* Loads a vocabulary from GGUF bytes built by b; returns tok_load's code. */
static int load_mem(tgb *b, vocab_mem *m, char *msg, size_t msg_size)
{
    size_t len = 0;
    memset(m, 0, sizeof *m);
    m->bytes = tgb_finish(b, &len);
    assert_non_null(m->bytes);
    int rc = gguf_open_mem(m->bytes, len, &m->g, msg, msg_size);
    assert_int_equal(rc, 0);
    return tok_load(m->g, &m->v, msg, msg_size);
}

static void free_mem(vocab_mem *m)
{
    tok_free(m->v);
    gguf_close(m->g);
    free(m->bytes);
}

/* Encodes s and checks the ids. */
static void expect_ids(const tok_vocab *v, const char *s, bool add, bool special, const int32_t *want, size_t n)
{
    int32_t got[256];
    size_t n_got;
    int rc = tok_encode(v, s, strlen(s), add, special, got, 256, &n_got);
    assert_int_equal(rc, 0);
    if (n_got != n) {
        fprintf(stderr, "'%s': got %zu ids:", s, n_got);
        for (size_t i = 0; i < n_got; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n_got, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

#define EXPECT(v, s, add, sp, ...)                                                                 \
    do {                                                                                           \
        const int32_t w_[] = {__VA_ARGS__};                                                        \
        expect_ids(v, s, add, sp, w_, sizeof w_ / sizeof w_[0]);                                   \
    } while (0)

static void expect_piece(const tok_vocab *v, int32_t id, bool special, const char *want)
{
    char buf[64];
    size_t len;
    assert_int_equal(tok_piece_ex(v, id, special, buf, sizeof buf, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

/* ---- a small SentencePiece vocabulary ---- */

enum { SPM_BYTE0 = 3, SPM_SPACE = 259, SPM_H1, SPM_HE, SPM_HEL, SPM_HELL, SPM_HELLO, SPM_H, SPM_E, SPM_L,
       SPM_O, SPM_LL, SPM_USER, SPM_END, SPM_N };

static void build_spm(tgb *b)
{
    static char bytes[256][8];
    const char *toks[SPM_N];
    float scores[SPM_N];
    int32_t types[SPM_N];
    toks[0] = "<unk>", types[0] = 2;
    toks[1] = "<s>", types[1] = 3;
    toks[2] = "</s>", types[2] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        toks[SPM_BYTE0 + i] = bytes[i];
        types[SPM_BYTE0 + i] = 6;
    }
    const char *words[] = {"\xe2\x96\x81", "\xe2\x96\x81h", "\xe2\x96\x81he", "\xe2\x96\x81hel",
                           "\xe2\x96\x81hell", "\xe2\x96\x81hello", "h", "e", "l", "o", "ll",
                           "<|user|>", "<|end|>"};
    const float wscore[] = {-10, -1, -3, -4, -5, -6, -20, -20, -20, -20, -2, 0, 0};
    for (int i = 0; i < SPM_N - SPM_SPACE; i++) {
        toks[SPM_SPACE + i] = words[i];
        types[SPM_SPACE + i] = 1;
        scores[SPM_SPACE + i] = wscore[i];
    }
    types[SPM_USER] = 4;
    types[SPM_END] = 3;
    for (int i = 0; i < SPM_SPACE; i++)
        scores[i] = 0;
    tgb_str(b, "general.name", "mini-spm");
    tgb_str(b, "tokenizer.ggml.model", "llama");
    tgb_strs(b, "tokenizer.ggml.tokens", toks, SPM_N);
    tgb_f32s(b, "tokenizer.ggml.scores", scores, SPM_N);
    tgb_i32s(b, "tokenizer.ggml.token_type", types, SPM_N);
    tgb_uint(b, "tokenizer.ggml.bos_token_id", 1);
    tgb_uint(b, "tokenizer.ggml.eos_token_id", 2);
}

static void test_spm_mini(void **state)
{
    (void)state;
    tgb b = {0};
    vocab_mem m;
    char msg[256];
    build_spm(&b);
    assert_int_equal(load_mem(&b, &m, msg, sizeof msg), 0);
    const tok_vocab *v = m.v;
    assert_int_equal(tok_get_type(v), TOK_SPM);
    assert_int_equal(tok_n_vocab(v), SPM_N);
    assert_true(tok_add_bos(v));
    assert_int_equal(tok_bos(v), 1);

    EXPECT(v, "hello", false, false, SPM_HELLO);
    EXPECT(v, "hello", true, false, 1, SPM_HELLO);
    /* "i" is no token: its byte */
    EXPECT(v, "hi", false, false, SPM_H1, SPM_BYTE0 + 'i');
    EXPECT(v, " hello", false, false, SPM_SPACE, SPM_HELLO);
    /* user-defined tokens are cut out even without parse_special; the text
     * after a special token gets its own space prefix */
    EXPECT(v, "<|user|>hello", false, false, SPM_USER, SPM_HELLO);
    EXPECT(v, "<|end|>hello", false, true, SPM_END, SPM_HELLO);
    EXPECT(v, "hello<s>", true, true, 1, SPM_HELLO, 1);
    {
        int32_t ids[64];
        size_t n;
        assert_int_equal(tok_encode(v, "<|end|>", 7, false, false, ids, 64, &n), 0);
        assert_true(n > 1);
        for (size_t i = 0; i < n; i++)
            assert_int_not_equal(ids[i], SPM_END);
    }
    expect_piece(v, SPM_HELLO, false, " hello");
    expect_piece(v, SPM_BYTE0 + '\n', false, "\n");
    expect_piece(v, 1, false, "");
    expect_piece(v, 1, true, "<s>");
    expect_piece(v, SPM_USER, false, "<|user|>");
    assert_true(tok_is_eog(v, 2));
    assert_true(tok_is_eog(v, SPM_END));
    assert_false(tok_is_eog(v, SPM_HELLO));
    assert_int_equal(tok_eot(v), SPM_END);
    assert_int_equal(tok_find(v, "<|user|>", 8), SPM_USER);
    assert_int_equal(tok_find(v, "nope", 4), -1);
    assert_true(tok_attr(v, SPM_USER) & TOK_ATTR_USER_DEFINED);
    free_mem(&m);
}

/* ---- a small byte-level BPE vocabulary ---- */

enum { BPE_HE = 256, BPE_LL, BPE_HELL, BPE_HELLO, BPE_GHELLO, BPE_EOT, BPE_IMEND, BPE_N };

static const char *bpe_merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 hello"};

static void build_bpe(tgb *b, const char *pre, const char *const *merges, size_t n_merges, int bos)
{
    static char bytes[256][4];
    const char *toks[BPE_N];
    int32_t types[BPE_N];
    for (int i = 0; i < 256; i++) {
        size_t k = uni_encode(uni_byte_to_cp((unsigned char)i), bytes[i]);
        bytes[i][k] = 0;
        toks[i] = bytes[i];
        types[i] = 1;
    }
    const char *words[] = {"he", "ll", "hell", "hello", "\xc4\xa0hello", "<|endoftext|>", "<|im_end|>"};
    for (int i = 0; i < BPE_N - BPE_HE; i++) {
        toks[BPE_HE + i] = words[i];
        types[BPE_HE + i] = 1;
    }
    types[BPE_EOT] = types[BPE_IMEND] = 3;
    tgb_str(b, "tokenizer.ggml.model", "gpt2");
    if (pre)
        tgb_str(b, "tokenizer.ggml.pre", pre);
    tgb_strs(b, "tokenizer.ggml.tokens", toks, BPE_N);
    tgb_i32s(b, "tokenizer.ggml.token_type", types, BPE_N);
    tgb_strs(b, "tokenizer.ggml.merges", merges, n_merges);
    if (bos >= 0)
        tgb_uint(b, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    tgb_uint(b, "tokenizer.ggml.eos_token_id", BPE_EOT);
}

static void test_bpe_mini(void **state)
{
    (void)state;
    static const char *pres[] = {"gpt-2", "qwen2", "llama-bpe", "deepseek-llm", "default", NULL};
    for (int p = 0; p < 6; p++) {
        tgb b = {0};
        vocab_mem m;
        char msg[256];
        build_bpe(&b, pres[p], bpe_merges, 5, BPE_EOT);
        int rc = load_mem(&b, &m, msg, sizeof msg);
        if (rc)
            fprintf(stderr, "pre %s: %s\n", pres[p] ? pres[p] : "(none)", msg);
        assert_int_equal(rc, 0);
        const tok_vocab *v = m.v;
        assert_int_equal(tok_get_type(v), TOK_BPE);
        EXPECT(v, "hello hello", false, false, BPE_HELLO, BPE_GHELLO);
        EXPECT(v, "hello<|endoftext|>", false, true, BPE_HELLO, BPE_EOT);
        EXPECT(v, "<|im_end|>", false, true, BPE_IMEND);
        {
            int32_t ids[64];
            size_t n;
            assert_int_equal(tok_encode(v, "<|im_end|>", 10, false, false, ids, 64, &n), 0);
            assert_int_equal(n, 10); /* one byte token per character */
        }
        /* llama-bpe adds BOS by default, gpt-2 does not */
        bool lbpe = pres[p] && !strcmp(pres[p], "llama-bpe");
        assert_int_equal(tok_add_bos(v), lbpe);
        if (lbpe)
            EXPECT(v, "hello", true, false, BPE_EOT, BPE_HELLO);
        else
            EXPECT(v, "hello", true, false, BPE_HELLO);
        expect_piece(v, BPE_GHELLO, false, " hello");
        expect_piece(v, (int32_t)'\n', false, "\n"); /* byte 0x0A is token 10 here */
        expect_piece(v, BPE_EOT, false, "");
        expect_piece(v, BPE_EOT, true, "<|endoftext|>");
        assert_true(tok_is_eog(v, BPE_EOT));
        assert_true(tok_is_eog(v, BPE_IMEND));
        assert_false(tok_is_eog(v, BPE_HELLO));
        assert_int_equal(tok_eot(v), BPE_EOT);
        free_mem(&m);
    }
}

static void test_encode_capacity(void **state)
{
    (void)state;
    tgb b = {0};
    vocab_mem m;
    char msg[256];
    build_bpe(&b, "gpt-2", bpe_merges, 5, -1);
    assert_int_equal(load_mem(&b, &m, msg, sizeof msg), 0);
    int32_t ids[2] = {-7, -7};
    size_t n;
    assert_int_equal(tok_encode(m.v, "hello hello", 11, false, false, ids, 1, &n), CORE_EINVAL);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], BPE_HELLO);
    assert_int_equal(ids[1], -7);
    assert_int_equal(tok_encode(m.v, "hello hello", 11, false, false, NULL, 0, &n), CORE_EINVAL);
    assert_int_equal(n, 2);
    assert_int_equal(tok_encode(m.v, "", 0, true, false, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
    char piece[3];
    size_t len;
    assert_int_equal(tok_piece(m.v, BPE_GHELLO, piece, sizeof piece, &len), CORE_EINVAL);
    assert_int_equal(len, 6);
    assert_int_equal(tok_piece(m.v, BPE_N, piece, sizeof piece, &len), CORE_EINVAL);
    assert_int_equal(tok_piece(m.v, -1, piece, sizeof piece, &len), CORE_EINVAL);
    free_mem(&m);
}

/* ---- a small WordPiece vocabulary ---- */

static void test_wpm_mini(void **state)
{
    (void)state;
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xe2\x96\x81hello",
                          "\xe2\x96\x81world", "\xe2\x96\x81!", "\xe2\x96\x81play", "ing", "\xe2\x96\x81,",
                          ("\xe2\x96\x81" "cafe"), "\xe2\x96\x81\xe4\xb8\xad"};
    int32_t types[13] = {3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    tgb b = {0};
    vocab_mem m;
    char msg[256];
    tgb_str(&b, "tokenizer.ggml.model", "bert");
    tgb_strs(&b, "tokenizer.ggml.tokens", toks, 13);
    tgb_i32s(&b, "tokenizer.ggml.token_type", types, 13);
    tgb_uint(&b, "tokenizer.ggml.unknown_token_id", 1);
    tgb_uint(&b, "tokenizer.ggml.seperator_token_id", 3);
    tgb_uint(&b, "tokenizer.ggml.cls_token_id", 2);
    tgb_uint(&b, "tokenizer.ggml.padding_token_id", 0);
    assert_int_equal(load_mem(&b, &m, msg, sizeof msg), 0);
    const tok_vocab *v = m.v;
    const char *s = "Hello, playing World! Caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87";
    EXPECT(v, s, false, false, 5, 10, 8, 9, 6, 7, 11, 12, 1);
    EXPECT(v, s, true, false, 2, 5, 10, 8, 9, 6, 7, 11, 12, 1, 3);
    EXPECT(v, "[SEP]hello", false, true, 3, 5);
    EXPECT(v, "  \t\n", false, false);
    expect_piece(v, 5, false, " hello");
    expect_piece(v, 9, false, "ing");
    expect_piece(v, 1, false, "");
    expect_piece(v, 1, true, "[UNK]");
    assert_int_equal(tok_sep(v), 3);
    assert_int_equal(tok_bos(v), 2);
    free_mem(&m);
}

/* ---- malformed metadata ---- */

static int load_bpe_variant(int variant, char *msg, size_t msg_size)
{
    tgb b = {0};
    vocab_mem m;
    const char *bad_merge[] = {"h e", "q zz"};
    const char *no_space[] = {"h e", "hello"};
    switch (variant) {
    case 0: /* fine */
        build_bpe(&b, "gpt-2", bpe_merges, 5, -1);
        break;
    case 1: /* merge names an unknown token */
        build_bpe(&b, "gpt-2", bad_merge, 2, -1);
        break;
    case 2: /* merge without a space */
        build_bpe(&b, "gpt-2", no_space, 2, -1);
        break;
    case 3: /* out-of-range bos */
        build_bpe(&b, "gpt-2", bpe_merges, 5, BPE_N + 5);
        break;
    case 4: { /* token_type shorter than tokens */
        const char *toks[] = {"a", "b", "c"};
        int32_t types[] = {1, 1};
        tgb_str(&b, "tokenizer.ggml.model", "llama");
        tgb_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        tgb_i32s(&b, "tokenizer.ggml.token_type", types, 2);
        break;
    }
    case 5: { /* duplicate token */
        const char *toks[] = {"a", "b", "a"};
        tgb_str(&b, "tokenizer.ggml.model", "llama");
        tgb_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        break;
    }
    case 6: /* no tokens */
        tgb_str(&b, "tokenizer.ggml.model", "llama");
        break;
    case 7: /* no merges */
        tgb_str(&b, "tokenizer.ggml.model", "gpt2");
        tgb_strs(&b, "tokenizer.ggml.tokens", bpe_merges, 2);
        break;
    case 8: /* unknown model */
        tgb_str(&b, "tokenizer.ggml.model", "klingon");
        break;
    case 9: /* unknown pre-tokenizer */
        build_bpe(&b, "klingon", bpe_merges, 5, -1);
        break;
    case 10: { /* tokens of the wrong type */
        int32_t x[] = {1, 2};
        tgb_str(&b, "tokenizer.ggml.model", "llama");
        tgb_i32s(&b, "tokenizer.ggml.tokens", x, 2);
        break;
    }
    case 11: /* no model */
        tgb_uint(&b, "tokenizer.ggml.bos_token_id", 1);
        break;
    case 12: { /* add_bos without any bos: gpt2 default 11 is out of a 3-token vocabulary */
        const char *toks[] = {"a", "b", "c"};
        const char *merges[] = {"a b"};
        tgb_str(&b, "tokenizer.ggml.model", "gpt2");
        tgb_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        tgb_strs(&b, "tokenizer.ggml.merges", merges, 1);
        tgb_bool(&b, "tokenizer.ggml.add_bos_token", true);
        break;
    }
    }
    int rc = load_mem(&b, &m, msg, msg_size);
    assert_true(rc != 0 || m.v != NULL);
    assert_true(rc == 0 || m.v == NULL);
    free_mem(&m);
    return rc;
}

static void test_malformed(void **state)
{
    (void)state;
    char msg[256];
    static const int want[] = {0, CORE_EFORMAT, CORE_EFORMAT, CORE_EFORMAT, CORE_EFORMAT, CORE_EFORMAT,
                               CORE_EFORMAT, CORE_EFORMAT, CORE_EUNSUPPORTED, CORE_EUNSUPPORTED,
                               CORE_EFORMAT, CORE_EFORMAT, CORE_EFORMAT};
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        msg[0] = 0;
        int rc = load_bpe_variant(i, msg, sizeof msg);
        if (rc != want[i])
            fprintf(stderr, "variant %d: rc %d (%s)\n", i, rc, msg);
        assert_int_equal(rc, want[i]);
        if (rc)
            assert_true(msg[0] != 0);
    }
}

/* ---- invalid UTF-8 and odd input never break encoding ---- */

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void fuzz_vocab(const tok_vocab *v, uint32_t seed, int rounds)
{
    char text[600];
    int32_t ids[2048];
    static const char *frag[] = {"\xe2\x96\x81", "<|endoftext|>", "<s>", " ", "\n", "\xc3", "\xe4\xb8",
                                 "\xf0\x9f\x98", "'s", "123", "\xed\xa0\x80", "\xf7\xbf\xbf\xbf", "[SEP]"};
    for (int r = 0; r < rounds; r++) {
        size_t n = lcg(&seed) % sizeof text;
        for (size_t i = 0; i < n;) {
            if (lcg(&seed) % 4 == 0) {
                const char *f = frag[lcg(&seed) % (sizeof frag / sizeof frag[0])];
                size_t k = strlen(f);
                if (i + k > n)
                    break;
                memcpy(text + i, f, k);
                i += k;
            } else {
                text[i++] = (char)lcg(&seed);
            }
        }
        size_t got;
        int rc = tok_encode(v, text, n, r & 1, r & 2, ids, 2048, &got);
        assert_int_equal(rc, 0);
        for (size_t i = 0; i < got; i++) {
            assert_true(ids[i] >= 0 && ids[i] < tok_n_vocab(v));
            char piece[512];
            size_t pl;
            tok_piece_ex(v, ids[i], r & 4, piece, sizeof piece, &pl);
        }
    }
}

static void test_robust_mini(void **state)
{
    (void)state;
    char msg[256];
    tgb b = {0};
    vocab_mem m;
    build_spm(&b);
    assert_int_equal(load_mem(&b, &m, msg, sizeof msg), 0);
    fuzz_vocab(m.v, 1, 300);
    free_mem(&m);
    static const char *pres[] = {"gpt-2", "qwen2", "llama-bpe", "deepseek-llm", "deepseek-coder",
                                 "deepseek-v3", "falcon", "starcoder", "bloom", "viking", "tekken",
                                 "gpt-4o", "chatglm-bpe", "default"};
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        build_bpe(&b, pres[p], bpe_merges, 5, BPE_EOT);
        int rc = load_mem(&b, &m, msg, sizeof msg);
        if (rc)
            fprintf(stderr, "pre %s: %s\n", pres[p], msg);
        assert_int_equal(rc, 0);
        fuzz_vocab(m.v, 2 + (uint32_t)p, 100);
        free_mem(&m);
    }
}

/* ---- pre-tokenizer: hand-written scanners == the regexes on PCRE2 ---- */

static const char *const pt_strings[] = {
    "Hello world", " Hello World!", "I've been 'told he's there, 'RE you sure? 'M not sure I'll",
    "   leading and trailing   ", "tabs\t\tand\nnew\r\nlines\n\n\n", "3333333 12 1.5 x2y",
    "\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0", "\xf0\x9f\x9a\x80 (normal) \xe2\x9c\x85",
    ("\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple\xe5\xb7\xa5\xe4\xbd\x9c" "1314151\xe5\xa4\xa9\xef\xbd\x9e"),
    "  \xe2\x80\x83 x \xe3\x80\x80y ", "''''''```````\"\"\"\"......!!!!!!??????", "a\xcc\x81 e\xcc\x81\xcc\x81",
    "\x01\x02 \x7f", ("C\xe1\xbb\xad" "a Vi\xe1\xbb\x87t"), "\n =", "' era", "$1,000 + <tag>=^~|`",
};

static void pt_split(const char *re, bool generic, const char *s, tok_svec *out)
{
    tok_pretok *p;
    char msg[128];
    assert_int_equal(tok_pretok_new(&re, 1, generic, &p, msg, sizeof msg), 0);
    uint32_t cps[512];
    size_t n = 0, len = strlen(s);
    for (size_t off = 0; off < len && n < 512;)
        cps[n++] = uni_decode(s, len, &off);
    out->n = 0;
    assert_int_equal(tok_pretok_split(p, cps, n, out), 0);
    size_t sum = 0;
    for (size_t i = 0; i < out->n; i++)
        sum += out->v[i];
    assert_int_equal(sum, n);
    tok_pretok_free(p);
}

static void test_pretok_scanners(void **state)
{
    (void)state;
    static const char *const res[] = {
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
        "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    };
    tok_svec a = {0}, b = {0};
    for (size_t r = 0; r < 2; r++)
        for (size_t i = 0; i < sizeof pt_strings / sizeof pt_strings[0]; i++) {
            pt_split(res[r], false, pt_strings[i], &a);
            pt_split(res[r], true, pt_strings[i], &b);
            if (a.n != b.n || memcmp(a.v, b.v, a.n * sizeof *a.v))
                fprintf(stderr, "regex %zu differs on '%s'\n", r, pt_strings[i]);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
        }
    /* and a known split: GPT-2's regex keeps one space with the next word */
    pt_split(res[0], false, "a  b", &a);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.v[0], 1);
    assert_int_equal(a.v[1], 1);
    assert_int_equal(a.v[2], 2);
    free(a.v);
    free(b.v);
}

static void test_unicode(void **state)
{
    (void)state;
    assert_true(uni_flags('a') & UNI_LETTER);
    assert_true(uni_flags('7') & UNI_NUMBER);
    assert_true(uni_flags(' ') & UNI_SPACE);
    assert_true(uni_flags(0x3000) & UNI_SPACE);
    assert_true(uni_flags(0x4E2D) & UNI_LETTER);
    assert_true(uni_flags(0x0301) & UNI_MARK);
    assert_int_equal(uni_flags(0x110000), UNI_UNDEFINED);
    assert_int_equal(uni_tolower('A'), 'a');
    assert_int_equal(uni_tolower(0x0416), 0x0436);
    assert_int_equal(uni_nfd_first(0xE9), 'e');
    for (int b = 0; b < 256; b++)
        assert_int_equal(uni_cp_to_byte(uni_byte_to_cp((unsigned char)b)), b);
    assert_int_equal(uni_byte_to_cp(' '), 0x120);
    size_t off = 0;
    assert_int_equal(uni_decode("\xc3", 1, &off), 0xFFFD);
    assert_int_equal(off, 1);
    off = 0;
    assert_int_equal(uni_decode("\xe2\x96\x81", 3, &off), 0x2581);
    assert_int_equal(off, 3);
}

/* ---- llama.cpp's test vectors ---- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static bool fixtures_present(void)
{
    FILE *f = fopen(FIXTURES "ggml-vocab-gpt-2.gguf", "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* Tokenizes every string of NAME.gguf.inp as test-tokenizer-0 does and
 * compares with NAME.gguf.out; returns the number of differing lines. */
static int run_vectors(const char *name)
{
    char path[256], msg[256];
    gguf *g = NULL;
    tok_vocab *v = NULL;
    snprintf(path, sizeof path, FIXTURES "ggml-vocab-%s.gguf", name);
    assert_int_equal(gguf_open(path, &g, msg, sizeof msg), 0);
    int rc = tok_load(g, &v, msg, sizeof msg);
    if (rc)
        fprintf(stderr, "%s: %s\n", name, msg);
    assert_int_equal(rc, 0);
    size_t ilen, olen;
    snprintf(path, sizeof path, FIXTURES "ggml-vocab-%s.gguf.inp", name);
    char *inp = slurp(path, &ilen);
    snprintf(path, sizeof path, FIXTURES "ggml-vocab-%s.gguf.out", name);
    char *outp = slurp(path, &olen);
    assert_non_null(inp);
    assert_non_null(outp);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t pos = 0, opos = 0;
    int bad = 0, lines = 0;
    int32_t *ids = malloc(65536 * sizeof *ids);
    char *line = malloc(65536 * 8);
    assert_non_null(ids);
    assert_non_null(line);
    while (pos < ilen) {
        const char *hit = memmem(inp + pos, ilen - pos, sep, sizeof sep - 1);
        size_t end = hit ? (size_t)(hit - inp) : ilen;
        size_t n;
        assert_int_equal(tok_encode(v, inp + pos, end - pos, false, false, ids, 65536, &n), 0);
        size_t ll = 0;
        for (size_t i = 0; i < n; i++)
            ll += (size_t)sprintf(line + ll, " %d", ids[i]);
        const char *nl = memchr(outp + opos, '\n', olen - opos);
        size_t want_len = nl ? (size_t)(nl - outp) - opos : olen - opos;
        if (want_len != ll || memcmp(outp + opos, line, ll)) {
            if (bad < 3)
                fprintf(stderr, "%s line %d:\n  want%.*s\n  got %s\n", name, lines + 1, (int)want_len,
                        outp + opos, line);
            bad++;
        }
        opos += want_len + (nl != NULL);
        lines++;
        if (!hit)
            break;
        pos = end + sizeof sep - 1;
    }
    assert_int_equal(opos, olen); /* as many lines as strings */
    fprintf(stderr, "%-14s %d strings, %d differ\n", name, lines, bad);
    free(ids);
    free(line);
    free(inp);
    free(outp);
    tok_free(v);
    gguf_close(g);
    return bad;
}

static void test_llama_vectors(void **state)
{
    (void)state;
    if (!fixtures_present()) {
        printf("SKIP: ../shared absent (tokenizer test vectors)\n");
        skip();
    }
    static const char *names[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "bert-bge"};
    int bad = 0;
    for (int i = 0; i < 5; i++)
        bad += run_vectors(names[i]);
    assert_int_equal(bad, 0);
}

static void test_fixture_robust(void **state)
{
    (void)state;
    if (!fixtures_present()) {
        printf("SKIP: ../shared absent (tokenizer fixture vocabularies)\n");
        skip();
    }
    static const char *names[] = {"llama-spm", "gpt-2", "deepseek-llm", "bert-bge"};
    for (int i = 0; i < 4; i++) {
        char path[256], msg[256];
        gguf *g;
        tok_vocab *v;
        snprintf(path, sizeof path, FIXTURES "ggml-vocab-%s.gguf", names[i]);
        assert_int_equal(gguf_open(path, &g, msg, sizeof msg), 0);
        assert_int_equal(tok_load(g, &v, msg, sizeof msg), 0);
        fuzz_vocab(v, 100 + (uint32_t)i, 60);
        /* a long input is fine too (speed is measured by the tool, not here) */
        size_t n = 100000, got;
        char *big = malloc(n);
        assert_non_null(big);
        for (size_t k = 0; k < n; k++)
            big[k] = "ab c\xc3\xa9" "\n1"[k % 9];
        assert_int_equal(tok_encode(v, big, n, true, true, NULL, 0, &got), CORE_EINVAL);
        assert_true(got > 1000);
        free(big);
        tok_free(v);
        gguf_close(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_spm_mini),
        cmocka_unit_test(test_bpe_mini),
        cmocka_unit_test(test_encode_capacity),
        cmocka_unit_test(test_wpm_mini),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_robust_mini),
        cmocka_unit_test(test_pretok_scanners),
        cmocka_unit_test(test_llama_vectors),
        cmocka_unit_test(test_fixture_robust),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
