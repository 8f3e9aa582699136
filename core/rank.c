/* rank.c: BM25, inner-product and fused rankings; see rank.h.
 *
 * The BM25 accumulator is an array indexed by id when ids are dense (chunk
 * ids grow with every ingest, so after many replacements they may not
 * be), else an open-addressing hash table (id -> score) grown at half load,
 * whose memory follows the candidates, not the collection.
 */
#include "rank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vec.h"

/* ---- top-k ------------------------------------------------------------------------ */

/* a ranks below b: lower score, or the same score and a larger id. */
static int rank_below(const rank_hit *a, const rank_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->id > b->id);
}

static void rank_sift_down(rank_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && rank_below(&h[l], &h[m]))
            m = l;
        if (r < n && rank_below(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        rank_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

void rank_topk_init(rank_topk *t, rank_hit *buf, size_t k)
{
    t->h = buf;
    t->k = k;
    t->n = 0;
}

void rank_topk_push(rank_topk *t, uint32_t id, double score)
{
    rank_hit x = {id, score};
    if (t->n < t->k) {
        size_t i = t->n++;
        t->h[i] = x;
        while (i > 0) { /* sift up: the worst stays at the root */
            size_t p = (i - 1) / 2;
            if (!rank_below(&t->h[i], &t->h[p]))
                break;
            rank_hit s = t->h[i];
            t->h[i] = t->h[p];
            t->h[p] = s;
            i = p;
        }
    } else if (t->k && rank_below(&t->h[0], &x)) {
        t->h[0] = x;
        rank_sift_down(t->h, t->n, 0);
    }
}

static int rank_cmp_desc(const void *a, const void *b)
{
    const rank_hit *x = a, *y = b;
    if (rank_below(x, y))
        return 1;
    if (rank_below(y, x))
        return -1;
    return 0;
}

size_t rank_topk_sort(rank_topk *t)
{
    qsort(t->h, t->n, sizeof(*t->h), rank_cmp_desc);
    return t->n;
}

/* ---- BM25 ------------------------------------------------------------------------ */

struct rank_bm25 {
    uint32_t *keys; /* hash: id + 1; 0 = empty. array: the ids touched */
    double *vals;   /* hash: by slot. array: by id */
    size_t cap, n;
    uint64_t bound; /* array mode when nonzero */
    double n_docs, avgdl;
};

rank_bm25 *rank_bm25_new(uint64_t n_docs, uint64_t total_len, uint64_t id_bound)
{
    rank_bm25 *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->n_docs = (double)n_docs;
    r->avgdl = n_docs && total_len ? (double)total_len / (double)n_docs : 1;
    if (id_bound && id_bound <= 4 * n_docs + 65536) {
        r->vals = malloc(id_bound * sizeof(*r->vals));
        r->keys = malloc(id_bound * sizeof(*r->keys));
        if (!r->vals || !r->keys) {
            rank_bm25_free(r);
            return NULL;
        }
        for (uint64_t i = 0; i < id_bound; i++)
            r->vals[i] = -1; /* untouched (scores are >= 0) */
        r->bound = id_bound;
    }
    return r;
}

void rank_bm25_free(rank_bm25 *r)
{
    if (!r)
        return;
    free(r->keys);
    free(r->vals);
    free(r);
}

static size_t rank_slot(const uint32_t *keys, size_t cap, uint32_t key)
{
    size_t i = (key * 2654435761u) & (cap - 1);
    while (keys[i] && keys[i] != key)
        i = (i + 1) & (cap - 1);
    return i;
}

static int rank_grow(rank_bm25 *r, size_t need)
{
    if (need * 2 <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 256;
    while (need * 2 > cap)
        cap *= 2;
    uint32_t *keys = calloc(cap, sizeof(*keys));
    double *vals = malloc(cap * sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < r->cap; i++)
        if (r->keys[i]) {
            size_t j = rank_slot(keys, cap, r->keys[i]);
            keys[j] = r->keys[i];
            vals[j] = r->vals[i];
        }
    free(r->keys);
    free(r->vals);
    r->keys = keys;
    r->vals = vals;
    r->cap = cap;
    return 0;
}

int rank_bm25_add(rank_bm25 *r, uint64_t df, double qtf, const rank_posting *p, size_t n)
{
    if (!r->bound && rank_grow(r, r->n + n) != 0)
        return -1;
    double d = (double)df;
    double idf = log(1.0 + (r->n_docs - d + 0.5) / (d + 0.5));
    if (idf < 0)
        idf = 0;
    const double k1 = RANK_BM25_K1, b = RANK_BM25_B;
    for (size_t i = 0; i < n; i++) {
        double tf = p[i].tf;
        double norm = k1 * (1.0 - b + b * (double)p[i].len / r->avgdl);
        double s = qtf * idf * tf * (k1 + 1.0) / (tf + norm);
        if (r->bound) {
            uint32_t id = p[i].id;
            if (id >= r->bound)
                continue; /* outside the promised bound: the caller's bug */
            if (r->vals[id] < 0) {
                r->vals[id] = 0;
                r->keys[r->n++] = id;
            }
            r->vals[id] += s;
            continue;
        }
        uint32_t key = p[i].id + 1;
        size_t j = rank_slot(r->keys, r->cap, key);
        if (!r->keys[j]) {
            r->keys[j] = key;
            r->vals[j] = 0;
            r->n++;
        }
        r->vals[j] += s;
    }
    return 0;
}

size_t rank_bm25_top(const rank_bm25 *r, size_t k, rank_hit *out)
{
    rank_topk t;
    rank_topk_init(&t, out, k);
    if (r->bound)
        for (size_t i = 0; i < r->n; i++)
            rank_topk_push(&t, r->keys[i], r->vals[r->keys[i]]);
    else
        for (size_t i = 0; i < r->cap; i++)
            if (r->keys[i])
                rank_topk_push(&t, r->keys[i] - 1, r->vals[i]);
    return rank_topk_sort(&t);
}

/* ---- dense ------------------------------------------------------------------------ */

void rank_dense(rank_topk *t, const float *q, const float *vecs, const uint32_t *ids, size_t n,
                size_t dim)
{
    const vec_ops *v = vec_ops_for(NULL);
    for (size_t i = 0; i < n; i++)
        rank_topk_push(t, ids[i], v->dot(q, vecs + i * dim, (int64_t)dim));
}

/* ---- fusion ------------------------------------------------------------------------ */

static int rank_cmp_id(const void *a, const void *b)
{
    const rank_hit *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

long rank_rrf(const rank_hit *const *lists, const size_t *ns, size_t n_lists, size_t k,
              rank_hit *out)
{
    size_t total = 0;
    for (size_t l = 0; l < n_lists; l++)
        total += ns[l];
    rank_hit *all = malloc((total ? total : 1) * sizeof(*all));
    if (!all)
        return -1;
    size_t m = 0;
    for (size_t l = 0; l < n_lists; l++)
        for (size_t i = 0; i < ns[l]; i++)
            all[m++] = (rank_hit){lists[l][i].id, 1.0 / (RANK_RRF_K + (double)(i + 1))};
    qsort(all, m, sizeof(*all), rank_cmp_id);
    rank_topk t;
    rank_topk_init(&t, out, k);
    for (size_t i = 0; i < m;) {
        size_t j = i;
        double s = 0;
        for (; j < m && all[j].id == all[i].id; j++)
            s += all[j].score;
        rank_topk_push(&t, all[i].id, s);
        i = j;
    }
    free(all);
    return (long)rank_topk_sort(&t);
}
