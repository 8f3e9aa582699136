/* rank.h: ranking for the knowledge base: BM25 over postings, exact inner
 * product over vectors, top-k selection and reciprocal rank fusion.
 *
 * Ids are the caller's (fcgi/kb.c uses chunk ids, which grow with age), and
 * every list this module returns is ordered by score, then by id (smaller
 * first), so equal scores give the same order on every run.
 *
 * Ownership: rank_bm25_new() returns an accumulator the caller frees with
 * rank_bm25_free(); a rank_topk works in a buffer the caller provides.
 * Inputs are borrowed for the call.
 */
#ifndef RANK_H
#define RANK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t id;  /* chunk */
    uint32_t tf;  /* occurrences of the term in it */
    uint32_t len; /* terms in the chunk */
} rank_posting;

typedef struct {
    uint32_t id;
    double score;
} rank_hit;

/* ---- top-k: a bounded min-heap ----------------------------------------------- */

typedef struct {
    rank_hit *h; /* caller's buffer of k entries */
    size_t k, n;
} rank_topk;

void rank_topk_init(rank_topk *t, rank_hit *buf, size_t k);
void rank_topk_push(rank_topk *t, uint32_t id, double score);
/* Sorts the kept hits best first (in t->h) and returns how many. */
size_t rank_topk_sort(rank_topk *t);

/* ---- BM25 ------------------------------------------------------------------------ */

#define RANK_BM25_K1 1.2
#define RANK_BM25_B 0.75

typedef struct rank_bm25 rank_bm25;

/* n_docs: chunks in the collection; total_len: the sum of their lengths
 * in terms; id_bound: every id is below it (0: unknown). A small bound (up
 * to 4 ids per chunk plus 65536) accumulates in an array indexed by id,
 * else in a hash table. */
rank_bm25 *rank_bm25_new(uint64_t n_docs, uint64_t total_len, uint64_t id_bound);
void rank_bm25_free(rank_bm25 *r); /* NULL is a no-op */
/* Adds one query term's contribution: postings p[0..n) of a term that
 * occurs in df chunks, weighted by qtf (its count in the query).
 * idf = ln(1 + (N - df + 0.5) / (df + 0.5)) (never negative). Returns 0,
 * or -1 when out of memory. */
int rank_bm25_add(rank_bm25 *r, uint64_t df, double qtf, const rank_posting *p, size_t n);
/* The best k candidates into out (k entries), best first; returns the count. */
size_t rank_bm25_top(const rank_bm25 *r, size_t k, rank_hit *out);

/* ---- dense ------------------------------------------------------------------------ */

/* Pushes the inner product of q with each row of vecs [n][dim] (ids[i] for
 * row i) into t, with the core's dot kernel. */
void rank_dense(rank_topk *t, const float *q, const float *vecs, const uint32_t *ids, size_t n,
                size_t dim);

/* ---- fusion ------------------------------------------------------------------------ */

#define RANK_RRF_K 60.0

/* Reciprocal rank fusion: score(id) = sum over lists of 1 / (RANK_RRF_K +
 * rank), rank from 1. lists[i] has ns[i] hits, best first. Writes the best
 * k into out and returns the count; -1 when out of memory. */
long rank_rrf(const rank_hit *const *lists, const size_t *ns, size_t n_lists, size_t k,
              rank_hit *out);

#endif
