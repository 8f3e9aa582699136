/* bench_tokenizer.c: tokenizer load and encode speed on llama.cpp's test
 * vocabularies (../shared/fixtures/tokenizer; skipped when absent).
 *
 * Per vocabulary: the best of 5 tok_load() calls (the gguf already open),
 * then the best of 5 encodings of ~100 KB of mixed text (the test strings
 * of the .inp file repeated: ASCII, CJK, Cyrillic, emoji, whitespace runs).
 * Run: make build/bench/bench_tokenizer && build/bench/bench_tokenizer
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"

#define DIR "../shared/fixtures/tokenizer/"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(void)
{
    static const char *names[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "bert-bge"};
    FILE *f = fopen(DIR "ggml-vocab-gpt-2.gguf.inp", "rb");
    if (!f) {
        printf("SKIP: ../shared absent\n");
        return 0;
    }
    char seed[8192];
    size_t sn = fread(seed, 1, sizeof seed, f);
    fclose(f);
    size_t len = 100 * 1000;
    char *text = malloc(len);
    int32_t *ids = malloc(len * sizeof *ids * 2);
    if (!text || !ids || !sn)
        return 1;
    for (size_t i = 0; i < len; i++)
        text[i] = seed[i % sn];
    printf("%-14s %8s %10s %10s %9s %8s\n", "vocab", "tokens", "load ms", "encode ms", "tokens", "MB/s");
    for (int k = 0; k < 5; k++) {
        char path[256], msg[256];
        gguf *g;
        snprintf(path, sizeof path, DIR "ggml-vocab-%s.gguf", names[k]);
        if (gguf_open(path, &g, msg, sizeof msg)) {
            printf("%s: %s\n", names[k], msg);
            return 1;
        }
        double best_load = 1e9, best_enc = 1e9;
        tok_vocab *v = NULL;
        for (int r = 0; r < 5; r++) {
            tok_free(v);
            double t0 = now_ms();
            if (tok_load(g, &v, msg, sizeof msg)) {
                printf("%s: %s\n", names[k], msg);
                return 1;
            }
            double t = now_ms() - t0;
            best_load = t < best_load ? t : best_load;
        }
        size_t n = 0;
        for (int r = 0; r < 5; r++) {
            double t0 = now_ms();
            if (tok_encode(v, text, len, false, false, ids, len * 2, &n))
                return 1;
            double t = now_ms() - t0;
            best_enc = t < best_enc ? t : best_enc;
        }
        printf("%-14s %8d %10.2f %10.2f %9zu %8.1f\n", names[k], tok_n_vocab(v), best_load, best_enc, n,
               len / 1e3 / best_enc);
        tok_free(v);
        gguf_close(g);
    }
    free(text);
    free(ids);
    return 0;
}
