/* tokenize.c: build/edgegate-tokenize, the tokenizer from the command line.
 *
 *   edgegate-tokenize -m MODEL.gguf -p TEXT [--special] [--no-add-special] [--pieces]
 *   edgegate-tokenize -m MODEL.gguf -f FILE ...        (text read from FILE)
 *   edgegate-tokenize -m MODEL.gguf --tokenize-tests FILE.inp
 *
 * --tokenize-tests reads llama.cpp's test-tokenizer-0 input (strings
 * separated by "\n__ggml_vocab_test__\n"), tokenizes each string without
 * special tokens (add_special = parse_special = false) and prints one line
 * per string, each id preceded by a space: the format of the .out files,
 * so `diff` against them is empty when the ids agree. --time reports load
 * and tokenization times on stderr.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            break;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Tokenizes into a growing buffer; returns the count or -1. */
static long encode(const tok_vocab *v, const char *s, size_t n, bool add, bool special, int32_t **ids,
                   size_t *cap)
{
    size_t got;
    int rc = tok_encode(v, s, n, add, special, *ids, *cap, &got);
    if (rc == CORE_EINVAL && got > *cap) {
        int32_t *nv = realloc(*ids, got * sizeof *nv);
        if (!nv)
            return -1;
        *ids = nv;
        *cap = got;
        rc = tok_encode(v, s, n, add, special, *ids, *cap, &got);
    }
    if (rc) {
        fprintf(stderr, "tokenize: %s\n", core_strerror(rc));
        return -1;
    }
    return (long)got;
}

static void usage(void)
{
    fprintf(stderr, "usage: edgegate-tokenize -m MODEL.gguf (-p TEXT | -f FILE | --tokenize-tests FILE.inp)\n"
                    "                         [--special] [--no-add-special] [--pieces] [--time]\n");
}

int main(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *file = NULL, *tests = NULL;
    bool special = false, add = true, pieces = false, timing = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(a, "-p") && i + 1 < argc)
            prompt = argv[++i];
        else if (!strcmp(a, "-f") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(a, "--tokenize-tests") && i + 1 < argc)
            tests = argv[++i];
        else if (!strcmp(a, "--special"))
            special = true;
        else if (!strcmp(a, "--no-add-special"))
            add = false;
        else if (!strcmp(a, "--pieces"))
            pieces = true;
        else if (!strcmp(a, "--time"))
            timing = true;
        else {
            usage();
            return 2;
        }
    }
    if (!model || (!prompt && !file && !tests)) {
        usage();
        return 2;
    }

    char msg[256];
    gguf *g = NULL;
    tok_vocab *v = NULL;
    int status = 1;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t cap = 0;
    double t0 = now_ms();
    int rc = gguf_open(model, &g, msg, sizeof msg);
    double t1 = now_ms();
    if (!rc)
        rc = tok_load(g, &v, msg, sizeof msg);
    double t2 = now_ms();
    if (rc) {
        fprintf(stderr, "%s: %s (%s)\n", model, msg, core_strerror(rc));
        goto out;
    }
    if (timing)
        fprintf(stderr, "gguf_open %.2f ms, tok_load %.2f ms, %d tokens\n", t1 - t0, t2 - t1, tok_n_vocab(v));

    size_t len = 0;
    if (tests || file) {
        if (!(text = read_file(tests ? tests : file, &len))) {
            fprintf(stderr, "cannot read %s\n", tests ? tests : file);
            goto out;
        }
    } else {
        len = strlen(prompt);
    }
    const char *src = text ? text : prompt;
    double te = 0;
    size_t total = 0;
    if (tests) {
        static const char sep[] = "\n__ggml_vocab_test__\n";
        size_t sl = sizeof sep - 1, pos = 0;
        while (pos < len) {
            const char *hit = memmem(src + pos, len - pos, sep, sl);
            size_t end = hit ? (size_t)(hit - src) : len;
            double ta = now_ms();
            long n = encode(v, src + pos, end - pos, false, false, &ids, &cap);
            te += now_ms() - ta;
            if (n < 0)
                goto out;
            for (long i = 0; i < n; i++)
                printf(" %d", ids[i]);
            putchar('\n');
            total += (size_t)n;
            if (!hit)
                break;
            pos = end + sl;
        }
    } else {
        double ta = now_ms();
        long n = encode(v, src, len, add, special, &ids, &cap);
        te = now_ms() - ta;
        if (n < 0)
            goto out;
        total = (size_t)n;
        for (long i = 0; i < n; i++) {
            if (!pieces) {
                printf("%s%d", i ? " " : "", ids[i]);
                continue;
            }
            char piece[512];
            size_t pl;
            tok_piece_ex(v, ids[i], true, piece, sizeof piece, &pl);
            printf("%6d '%.*s'\n", ids[i], (int)(pl < sizeof piece ? pl : sizeof piece), piece);
        }
        if (!pieces)
            putchar('\n');
    }
    if (timing)
        fprintf(stderr, "encode %.2f ms: %zu bytes -> %zu tokens\n", te, len, total);
    status = 0;
out:
    free(ids);
    free(text);
    tok_free(v);
    gguf_close(g);
    return status;
}
