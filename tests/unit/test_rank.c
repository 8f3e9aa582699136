/* test_rank.c: top-k selection (order, ties, bound), BM25 against the
 * formula computed here (hash and array accumulators), inner-product
 * ranking, reciprocal rank fusion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rank.h"

static void test_topk(void **state)
{
    (void)state;
    rank_hit buf[4];
    rank_topk t;
    rank_topk_init(&t, buf, 4);
    /* A pseudo-random stream of 1000 scores with many ties. */
    uint32_t x = 12345;
    double best[1000];
    for (uint32_t i = 0; i < 1000; i++) {
        x = x * 1103515245u + 12345u;
        best[i] = (double)((x >> 16) % 50);
        rank_topk_push(&t, i, best[i]);
    }
    assert_int_equal(rank_topk_sort(&t), 4);
    /* Expected: the highest scores, smaller ids first among equals. */
    size_t k = 0;
    for (int s = 49; s >= 0 && k < 4; s--)
        for (uint32_t i = 0; i < 1000 && k < 4; i++)
            if (best[i] == s) {
                assert_int_equal(buf[k].id, i);
                assert_true(buf[k].score == s);
                k++;
            }
    rank_topk_init(&t, buf, 0);
    rank_topk_push(&t, 1, 1.0);
    assert_int_equal(rank_topk_sort(&t), 0);
}

static double bm25(double N, double df, double tf, double len, double avgdl)
{
    double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avgdl));
}

/* dense: the accumulator indexed by id (else the hash table); both must
 * give the same scores. */
static void check_bm25(bool dense)
{
    /* 10 chunks of mean length 20; term a in chunks 1, 2; term b in 2, 7, 9. */
    rank_bm25 *r = rank_bm25_new(10, 200, dense ? 10 : 0);
    assert_non_null(r);
    rank_posting a[] = {{1, 3, 10}, {2, 1, 40}};
    rank_posting b[] = {{2, 2, 40}, {7, 1, 5}, {9, 4, 100}};
    assert_int_equal(rank_bm25_add(r, 2, 1.0, a, 2), 0);
    assert_int_equal(rank_bm25_add(r, 3, 2.0, b, 3), 0); /* b twice in the query */
    rank_hit out[10];
    size_t n = rank_bm25_top(r, 10, out);
    assert_int_equal(n, 4);
    double s1 = bm25(10, 2, 3, 10, 20);
    double s2 = bm25(10, 2, 1, 40, 20) + 2 * bm25(10, 3, 2, 40, 20);
    double s7 = 2 * bm25(10, 3, 1, 5, 20);
    double s9 = 2 * bm25(10, 3, 4, 100, 20);
    double want[4][2] = {{1, s1}, {2, s2}, {7, s7}, {9, s9}};
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < 4; j++)
            if (out[i].id == (uint32_t)want[j][0]) {
                assert_true(fabs(out[i].score - want[j][1]) < 1e-9);
                found = 1;
            }
        assert_true(found);
        if (i)
            assert_true(out[i - 1].score >= out[i].score);
    }
    assert_int_equal(rank_bm25_top(r, 1, out), 1);
    assert_true(out[0].score >= s1 && out[0].score >= s2 && out[0].score >= s7);
    rank_bm25_free(r);
    rank_bm25_free(NULL);

    /* Many candidates: the table grows and keeps every sum. */
    r = rank_bm25_new(100000, 1000000, dense ? 100000 : 0);
    rank_posting *big = malloc(50000 * sizeof(*big));
    for (uint32_t i = 0; i < 50000; i++)
        big[i] = (rank_posting){i * 2, 1 + i % 3, 10};
    assert_int_equal(rank_bm25_add(r, 50000, 1, big, 50000), 0);
    assert_int_equal(rank_bm25_add(r, 50000, 1, big, 50000), 0);
    n = rank_bm25_top(r, 3, out);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].id, 4); /* tf 3, the smallest id */
    assert_true(fabs(out[0].score - 2 * bm25(100000, 50000, 3, 10, 10)) < 1e-9);
    free(big);
    rank_bm25_free(r);
}

static void test_bm25_hash(void **state)
{
    (void)state;
    check_bm25(false);
}

static void test_bm25_array(void **state)
{
    (void)state;
    check_bm25(true);
}

static void test_dense(void **state)
{
    (void)state;
    enum { N = 300, D = 37 };
    float *v = malloc(N * D * sizeof(float)), q[D];
    uint32_t ids[N];
    for (int d = 0; d < D; d++)
        q[d] = (float)((d % 5) - 2) / 3.0f;
    for (int i = 0; i < N; i++) {
        ids[i] = (uint32_t)(1000 + i);
        for (int d = 0; d < D; d++)
            v[i * D + d] = (float)(((i * 7 + d * 3) % 11) - 5) / 5.0f;
    }
    rank_hit buf[5];
    rank_topk t;
    rank_topk_init(&t, buf, 5);
    rank_dense(&t, q, v, ids, 150, D); /* in two batches, as kb.c does */
    rank_dense(&t, q, v + 150 * D, ids + 150, N - 150, D);
    assert_int_equal(rank_topk_sort(&t), 5);
    double prev = INFINITY;
    for (int k = 0; k < 5; k++) {
        int i = (int)(buf[k].id - 1000);
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += (double)q[d] * v[i * D + d];
        assert_true(fabs(dot - buf[k].score) < 1e-4);
        assert_true(buf[k].score <= prev);
        prev = buf[k].score;
    }
    for (int i = 0; i < N; i++) { /* nothing left out beats the 5th */
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += (double)q[d] * v[i * D + d];
        assert_true(dot <= buf[0].score + 1e-4);
        int in = 0;
        for (int k = 0; k < 5; k++)
            in |= buf[k].id == ids[i];
        if (!in)
            assert_true(dot <= buf[4].score + 1e-4);
    }
    free(v);
}

static void test_rrf(void **state)
{
    (void)state;
    rank_hit a[] = {{1, 9}, {2, 8}, {3, 7}};
    rank_hit b[] = {{3, 0.9}, {4, 0.8}, {1, 0.7}};
    const rank_hit *ls[2] = {a, b};
    size_t ns[2] = {3, 3};
    rank_hit out[4];
    assert_int_equal(rank_rrf(ls, ns, 2, 4, out), 4);
    /* 1: 1/61 + 1/63; 3: 1/63 + 1/61 (a tie: smaller id first); 2: 1/62; 4: 1/62. */
    assert_int_equal(out[0].id, 1);
    assert_int_equal(out[1].id, 3);
    assert_int_equal(out[2].id, 2);
    assert_int_equal(out[3].id, 4);
    assert_true(fabs(out[0].score - (1.0 / 61 + 1.0 / 63)) < 1e-12);
    assert_true(fabs(out[2].score - 1.0 / 62) < 1e-12);
    assert_int_equal(rank_rrf(ls, ns, 2, 1, out), 1);
    size_t zero[2] = {0, 0};
    assert_int_equal(rank_rrf(ls, zero, 2, 4, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_bm25_hash),
        cmocka_unit_test(test_bm25_array),
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_rrf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
