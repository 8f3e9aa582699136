/* fuzz_tokenizer.c: libFuzzer harness for the tokenizers.
 *
 * Input: one mode byte, then data.
 *   mode & 0x80: data is a GGUF file; its tokenizer metadata goes through
 *                tok_load(), and a loaded vocabulary encodes a fixed text
 *                and renders every token.
 *   otherwise:   data is text for one of the vocabularies below (mode % n),
 *                add_special = mode & 0x10, parse_special = mode & 0x20;
 *                every resulting token is rendered.
 * Vocabularies: small SPM / byte-level BPE (gpt-2, qwen2, deepseek-llm
 * pre-tokenizers) / WordPiece ones built in memory, plus llama.cpp's GPT-2
 * and Llama vocabularies from ../shared when present.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"
#include "tokenizer_gguf.h"
#include "unicode.h"

#define MAX_VOCABS 8

static struct {
    unsigned char *bytes;
    gguf *g;
    tok_vocab *v;
} fz_vocabs[MAX_VOCABS];
static int fz_n;

static void fz_add(tgb *b)
{
    size_t len;
    char msg[256];
    unsigned char *bytes = tgb_finish(b, &len);
    gguf *g = NULL;
    tok_vocab *v = NULL;
    if (!bytes || gguf_open_mem(bytes, len, &g, msg, sizeof msg) || tok_load(g, &v, msg, sizeof msg)) {
        fprintf(stderr, "fuzz_tokenizer: built-in vocabulary failed: %s\n", msg);
        abort();
    }
    fz_vocabs[fz_n].bytes = bytes;
    fz_vocabs[fz_n].g = g;
    fz_vocabs[fz_n++].v = v;
}

static void fz_add_file(const char *path)
{
    char msg[256];
    gguf *g = NULL;
    tok_vocab *v = NULL;
    if (gguf_open(path, &g, msg, sizeof msg))
        return;
    if (tok_load(g, &v, msg, sizeof msg)) {
        gguf_close(g);
        return;
    }
    fz_vocabs[fz_n].g = g;
    fz_vocabs[fz_n++].v = v;
}

static void fz_build_bpe(const char *pre)
{
    static char bytes[256][4];
    const char *toks[262];
    for (int i = 0; i < 256; i++) {
        size_t k = uni_encode(uni_byte_to_cp((unsigned char)i), bytes[i]);
        bytes[i][k] = 0;
        toks[i] = bytes[i];
    }
    toks[256] = "he", toks[257] = "ll", toks[258] = "hell", toks[259] = "hello";
    toks[260] = "<|endoftext|>", toks[261] = "\xe4\xb8\xad"; /* user-defined, as deepseek has */
    int32_t types[262];
    for (int i = 0; i < 262; i++)
        types[i] = 1;
    types[260] = 3;
    types[261] = 4;
    const char *merges[] = {"h e", "l l", "he ll", "hell o"};
    tgb b = {0};
    tgb_str(&b, "tokenizer.ggml.model", "gpt2");
    tgb_str(&b, "tokenizer.ggml.pre", pre);
    tgb_strs(&b, "tokenizer.ggml.tokens", toks, 262);
    tgb_i32s(&b, "tokenizer.ggml.token_type", types, 262);
    tgb_strs(&b, "tokenizer.ggml.merges", merges, 4);
    tgb_uint(&b, "tokenizer.ggml.bos_token_id", 260);
    tgb_uint(&b, "tokenizer.ggml.eos_token_id", 260);
    tgb_bool(&b, "tokenizer.ggml.add_bos_token", true);
    fz_add(&b);
}

static void fz_build_spm(void)
{
    static char bytes[256][8];
    const char *toks[264];
    float scores[264] = {0};
    int32_t types[264];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        toks[3 + i] = bytes[i];
        types[3 + i] = 6;
    }
    const char *w[] = {"\xe2\x96\x81", "\xe2\x96\x81h", "he", "\xe2\x96\x81he", "<|user|>"};
    for (int i = 0; i < 5; i++) {
        toks[259 + i] = w[i];
        types[259 + i] = 1;
        scores[259 + i] = -(float)i;
    }
    types[263] = 4;
    tgb b = {0};
    tgb_str(&b, "tokenizer.ggml.model", "llama");
    tgb_strs(&b, "tokenizer.ggml.tokens", toks, 264);
    tgb_f32s(&b, "tokenizer.ggml.scores", scores, 264);
    tgb_i32s(&b, "tokenizer.ggml.token_type", types, 264);
    fz_add(&b);
}

static void fz_build_wpm(void)
{
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xe2\x96\x81hello", "ing", "\xe2\x96\x81!"};
    int32_t types[] = {3, 3, 3, 3, 1, 1, 1};
    tgb b = {0};
    tgb_str(&b, "tokenizer.ggml.model", "bert");
    tgb_strs(&b, "tokenizer.ggml.tokens", toks, 7);
    tgb_i32s(&b, "tokenizer.ggml.token_type", types, 7);
    tgb_uint(&b, "tokenizer.ggml.unknown_token_id", 1);
    tgb_uint(&b, "tokenizer.ggml.seperator_token_id", 3);
    tgb_uint(&b, "tokenizer.ggml.cls_token_id", 2);
    fz_add(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_build_spm();
    fz_build_bpe("gpt-2");
    fz_build_bpe("qwen2");
    fz_build_bpe("deepseek-llm");
    fz_build_wpm();
    fz_add_file("../shared/fixtures/tokenizer/ggml-vocab-gpt-2.gguf");
    fz_add_file("../shared/fixtures/tokenizer/ggml-vocab-llama-spm.gguf");
    return 0;
}

static void fz_run(const tok_vocab *v, const char *text, size_t len, bool add, bool special)
{
    int32_t small[64];
    size_t n;
    int rc = tok_encode(v, text, len, add, special, small, 64, &n);
    int32_t *ids = small;
    if (rc == CORE_EINVAL) {
        if (!(ids = malloc(n * sizeof *ids)))
            return;
        rc = tok_encode(v, text, len, add, special, ids, n, &n);
    }
    if (rc)
        abort(); /* any text must tokenize */
    for (size_t i = 0; i < n; i++) {
        char piece[300];
        size_t pl;
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(v))
            abort();
        tok_piece_ex(v, ids[i], special, piece, sizeof piece, &pl);
    }
    if (ids != small)
        free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    if (mode & 0x80) {
        gguf *g = NULL;
        tok_vocab *v = NULL;
        char msg[256];
        if (!gguf_open_mem(data, size, &g, msg, sizeof msg) && !tok_load(g, &v, msg, sizeof msg)) {
            static const char text[] = "Hello world! <|endoftext|> <s>  caf\xc3\xa9 123 \xe4\xb8\xad";
            fz_run(v, text, sizeof text - 1, true, true);
            fz_run(v, text, sizeof text - 1, false, false);
            for (int32_t id = 0; id < tok_n_vocab(v) && id < 4096; id++) {
                char piece[64];
                size_t pl;
                tok_piece_ex(v, id, true, piece, sizeof piece, &pl);
            }
        }
        tok_free(v);
        gguf_close(g);
        return 0;
    }
    fz_run(fz_vocabs[mode % (unsigned)fz_n].v, (const char *)data, size, mode & 0x10, mode & 0x20);
    return 0;
}
