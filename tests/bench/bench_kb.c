/* bench_kb: the knowledge base at 10,000 chunks. Ingest throughput (MB/s of
 * document bytes: parsing, chunking, term extraction, LMDB writes and
 * commits) and BM25 query latency (p50, p99 over 2,000 queries, top 5).
 *
 * The corpus is synthetic but shaped like documentation: Markdown files of
 * about 40 KB with a heading every few paragraphs, sentences of 6-20 words
 * drawn from an 8,000-word vocabulary with a Zipf(1) distribution plus
 * English function words, some digits and identifiers. Queries are 2-5
 * vocabulary words (Zipf too), as people type them. The knowledge base is
 * a fresh file in $TMPDIR (default /tmp), removed at the end.
 *
 * Usage: bench_kb [chunks]   (default 10000) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "core_err.h"
#include "kb.h"
#include "sbuf.h"

#define BENCH_VOCAB 8000
#define BENCH_QUERIES 2000

static uint64_t bench_rng = 0x9E3779B97F4A7C15ull;

static double bench_unif(void)
{
    bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((bench_rng >> 11) + 0.5) * 0x1.0p-53;
}

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char bench_words[BENCH_VOCAB][16];
static double bench_cdf[BENCH_VOCAB];

/* Pronounceable pseudo-words of 2-4 syllables. */
static void bench_vocab(void)
{
    static const char *const on[] = {"b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p",
                                     "r", "s", "t", "v", "st", "tr", "pl", "gr", "ch"};
    static const char *const nu[] = {"a", "e", "i", "o", "u", "ai", "ou", "ea"};
    static const char *const co[] = {"", "", "n", "r", "s", "t", "l", "m", "x", "ck"};
    double sum = 0;
    for (int i = 0; i < BENCH_VOCAB; i++) {
        char *w = bench_words[i];
        w[0] = '\0';
        int syl = 2 + (int)(bench_unif() * 3);
        for (int s = 0; s < syl && strlen(w) < 10; s++) {
            strcat(w, on[(int)(bench_unif() * 20)]);
            strcat(w, nu[(int)(bench_unif() * 8)]);
        }
        strcat(w, co[(int)(bench_unif() * 10)]);
        sum += 1.0 / (i + 1);
        bench_cdf[i] = sum;
    }
    for (int i = 0; i < BENCH_VOCAB; i++)
        bench_cdf[i] /= sum;
}

static const char *bench_word(void)
{
    double u = bench_unif();
    int lo = 0, hi = BENCH_VOCAB - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (bench_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return bench_words[lo];
}

static void bench_doc(sbuf *b, int n)
{
    static const char *const fn[] = {"the", "of", "and", "to", "a", "in", "is", "for",
                                     "with", "on", "that", "by", "this", "be", "are"};
    sbuf_clear(b);
    sbuf_printf(b, "# Manual %d\n\n", n);
    for (int sec = 0; b->len < 40000; sec++) {
        sbuf_printf(b, "## Section %d %s %s\n\n", sec, bench_word(), bench_word());
        int paras = 2 + (int)(bench_unif() * 4);
        for (int p = 0; p < paras; p++) {
            int sents = 3 + (int)(bench_unif() * 4);
            for (int s = 0; s < sents; s++) {
                int words = 6 + (int)(bench_unif() * 15);
                for (int w = 0; w < words; w++) {
                    double u = bench_unif();
                    const char *word = u < 0.3   ? fn[(int)(bench_unif() * 15)]
                                       : u < 0.32 ? NULL
                                                  : bench_word();
                    if (w)
                        sbuf_putc(b, ' ');
                    if (word)
                        sbuf_puts(b, word);
                    else
                        sbuf_printf(b, "%s_%d", bench_word(), (int)(bench_unif() * 100));
                }
                sbuf_puts(b, s + 1 < sents ? ". " : ".\n\n");
            }
        }
    }
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long want = argc > 1 ? atol(argv[1]) : 10000;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512], lock[520];
    snprintf(path, sizeof(path), "%s/bench_kb.%d.mdb", tmp, (int)getpid());
    snprintf(lock, sizeof(lock), "%s-lock", path);
    kb_params p = kb_default_params();
    p.path = path;
    p.map_size = 1u << 30;
    kb *k = NULL;
    char msg[256] = "";
    if (kb_open(&p, &k, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "bench_kb: %s\n", msg);
        return 1;
    }
    bench_vocab();
    sbuf doc;
    sbuf_init(&doc);
    size_t chunks = 0, bytes = 0;
    int docs = 0;
    double t_ingest = 0;
    while ((long)chunks < want) {
        bench_doc(&doc, docs);
        char id[32];
        snprintf(id, sizeof(id), "manual-%04d.md", docs++);
        kb_doc_in in = {.id = id, .data = doc.data, .len = doc.len};
        kb_ingest_result r;
        double t0 = bench_now();
        int rc = kb_ingest(k, &in, &r, msg, sizeof(msg));
        t_ingest += bench_now() - t0;
        if (rc != CORE_OK) {
            fprintf(stderr, "bench_kb: ingest: %s\n", msg);
            return 1;
        }
        chunks += r.chunks;
        bytes += doc.len;
    }
    kb_stats st;
    kb_get_stats(k, &st);

    arena *a = arena_new(0);
    double *lat = malloc(BENCH_QUERIES * sizeof(double));
    size_t found = 0;
    for (int i = 0; i < BENCH_QUERIES; i++) {
        char q[256];
        int n = 2 + (int)(bench_unif() * 4), len = 0;
        for (int w = 0; w < n; w++)
            len += snprintf(q + len, sizeof(q) - (size_t)len, "%s%s", w ? " " : "", bench_word());
        kb_query opt = {.top_k = 5, .mode = KB_MODE_BM25};
        kb_result r;
        arena_reset(a);
        double t0 = bench_now();
        int rc = kb_search(k, q, (size_t)len, &opt, a, &r, msg, sizeof(msg));
        lat[i] = (bench_now() - t0) * 1e6;
        if (rc != CORE_OK) {
            fprintf(stderr, "bench_kb: search: %s\n", msg);
            return 1;
        }
        found += r.n;
    }
    qsort(lat, BENCH_QUERIES, sizeof(double), bench_cmp);
    double mb = bytes / 1e6;
    printf("kb: %d documents, %zu chunks, %.1f MB, %llu terms, %llu postings, file %.1f MB\n",
           docs, chunks, mb, (unsigned long long)st.terms, (unsigned long long)st.postings,
           st.map_used / 1e6);
    printf("kb ingest: %.2f s, %.2f MB/s, %.0f chunks/s\n", t_ingest, mb / t_ingest,
           chunks / t_ingest);
    printf("kb query (BM25, top 5, %d queries of 2-5 words): p50 %.0f us, p99 %.0f us, "
           "mean hits %.2f\n",
           BENCH_QUERIES, lat[BENCH_QUERIES / 2], lat[BENCH_QUERIES * 99 / 100],
           (double)found / BENCH_QUERIES);
    printf("{\"bench\":\"kb\",\"chunks\":%zu,\"mb\":%.2f,\"ingest_mb_s\":%.3f,"
           "\"query_p50_us\":%.1f,\"query_p99_us\":%.1f}\n",
           chunks, mb, mb / t_ingest, lat[BENCH_QUERIES / 2], lat[BENCH_QUERIES * 99 / 100]);
    free(lat);
    arena_free(a);
    sbuf_free(&doc);
    kb_close(k);
    unlink(path);
    unlink(lock);
    return 0;
}
