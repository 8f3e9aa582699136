/* bench_embed.c: embedding speed (core_embed / core_embed_batch) with 2
 * threads, one JSON line per model and workload:
 *   sentence  one short sentence (~12 tokens) per call
 *   batch32   32 such sentences per core_embed_batch call
 *   chunk     one ~200-token passage per call (a knowledge base chunk)
 *
 *   bench_embed [-t THREADS] [MODEL.gguf ...]
 * Without models: random-weight bert-tiny and bge-small models (f16, q8_0)
 * made by $EDGEGATE_BUILD/edgegate-make-model (default build/) in /tmp,
 * with the bge vocabulary when ../shared has it. Each workload runs for
 * about a second after a warm-up call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

static double be_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char be_sentence[] = "The robot walked to the library every morning to read.";
static const char be_chunk[] =
    "The library was an old stone building with tall windows and a green door. Inside there "
    "were thousands of books about the sea, the stars, the history of cities, the lives of "
    "animals, and the strange machines that people had built over the years. The robot liked "
    "the books about machines the most, because they helped it understand how it had been "
    "made. One day the librarian asked the robot what it wanted to learn next. The robot "
    "thought for a while and said that it wanted to learn how to write its own stories. The "
    "librarian smiled and gave it a notebook, a pencil, and some simple advice: write a little "
    "every day, read what you wrote out loud, and do not be afraid of making mistakes.";

/* Runs n texts per call for about a second; prints one line. */
static int be_run(core_model *m, const char *label, const char *work, const char *text, size_t n)
{
    core_info info;
    core_get_info(m, &info);
    const char *texts[32];
    size_t lens[32], toks[32];
    for (size_t i = 0; i < n; i++) {
        texts[i] = text;
        lens[i] = strlen(text);
    }
    float *out = malloc(sizeof(float) * (size_t)info.n_embd * n);
    char msg[256];
    if (!out || core_embed_batch(m, texts, lens, n, out, (size_t)info.n_embd * n, toks, msg, sizeof msg)) {
        fprintf(stderr, "bench_embed: %s: %s\n", label, out ? msg : "out of memory");
        free(out);
        return 1;
    }
    long calls = 0;
    double t0 = be_now(), t;
    do {
        core_embed_batch(m, texts, lens, n, out, (size_t)info.n_embd * n, NULL, msg, sizeof msg);
        calls++;
    } while ((t = be_now() - t0) < 1.0);
    double eps = (double)calls * (double)n / t;
    printf("{\"bench\":\"embed\",\"model\":\"%s\",\"ftype\":\"%s\",\"isa\":\"%s\",\"threads\":%d,"
           "\"workload\":\"%s\",\"tokens_per_text\":%zu,\"embeddings_per_s\":%.1f,\"tokens_per_s\":%.0f}\n",
           label, info.ftype, info.isa, info.n_threads, work, toks[0], eps, eps * (double)toks[0]);
    fflush(stdout);
    free(out);
    return 0;
}

static int be_model(const char *path, const char *label, int threads)
{
    core_params p = core_default_params();
    p.path = path;
    p.n_threads = threads;
    core_model *m;
    char msg[256];
    if (core_load(&p, &m, msg, sizeof msg)) {
        fprintf(stderr, "bench_embed: %s: %s\n", path, msg);
        return 1;
    }
    int rc = be_run(m, label, "sentence", be_sentence, 1) || be_run(m, label, "batch32", be_sentence, 32) ||
             be_run(m, label, "chunk", be_chunk, 1);
    core_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    int threads = 2, rc = 0, i = 1;
    if (argc > 2 && !strcmp(argv[1], "-t")) {
        threads = atoi(argv[2]);
        i = 3;
    }
    if (i < argc) {
        for (; i < argc; i++)
            rc |= be_model(argv[i], argv[i], threads);
        return rc;
    }
    const char *build = getenv("EDGEGATE_BUILD");
    const char *vocab = "../shared/fixtures/tokenizer/ggml-vocab-bert-bge.gguf";
    bool real = access(vocab, R_OK) == 0;
    if (!real)
        printf("SKIP: ../shared absent: models with the synthesized vocabulary\n");
    char dir[] = "/tmp/bench_embed.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    static const char *const shapes[] = {"bert-tiny", "bge-small"}, *const types[] = {"f16", "q8_0"};
    for (int s = 0; s < 2 && !rc; s++)
        for (int t = 0; t < 2 && !rc; t++) {
            char path[256], cmd[1024], label[64];
            snprintf(path, sizeof path, "%s/%s-%s.gguf", dir, shapes[s], types[t]);
            snprintf(cmd, sizeof cmd, "'%s/edgegate-make-model' --shape %s --type %s --seed 1 %s%s -o '%s' >/dev/null",
                     build && *build ? build : "build", shapes[s], types[t], real ? "--vocab " : "",
                     real ? vocab : "", path);
            snprintf(label, sizeof label, "%s", shapes[s]);
            rc = system(cmd) != 0 || be_model(path, label, threads);
            unlink(path);
        }
    rmdir(dir);
    return rc;
}
