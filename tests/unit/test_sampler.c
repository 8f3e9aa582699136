/* test_sampler: greedy, penalties, each filter, seeding, and the empirical
 * distribution of draws (fixed seeds, so nothing here can flake). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"

static core_sampling sampling(float temp)
{
    core_sampling p = {0};
    p.temperature = temp;
    p.top_p = 1;
    p.repeat_penalty = 1;
    p.repeat_last_n = 64;
    p.seed = 1234;
    return p;
}

/* Draws `draws` tokens from fixed logits, counting each id. */
static void histogram(const core_sampling *p, const float *logits, int n, int draws, int *count)
{
    samp *s = samp_new(p, n);
    assert_non_null(s);
    float *l = malloc((size_t)n * sizeof *l);
    assert_non_null(l);
    memset(count, 0, (size_t)n * sizeof *count);
    for (int d = 0; d < draws; d++) {
        memcpy(l, logits, (size_t)n * sizeof *l);
        int32_t t = samp_sample(s, l);
        assert_true(t >= 0 && t < n);
        count[t]++;
    }
    free(l);
    samp_free(s);
}

/* Frequencies must match probabilities within 5 standard deviations (and
 * a floor for the tiny ones). */
static void check_freq(const int *count, const double *prob, int n, int draws)
{
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / draws;
        double sd = sqrt(prob[i] * (1 - prob[i]) / draws);
        if (fabs(f - prob[i]) > 5 * sd + 1e-9) {
            fprintf(stderr, "token %d: frequency %.5f, probability %.5f\n", i, f, prob[i]);
            fail();
        }
    }
}

/* logits = log(probs): the softmax gives the probs back (temperature 1). */
static void log_of(const double *prob, float *logits, int n)
{
    for (int i = 0; i < n; i++)
        logits[i] = prob[i] > 0 ? (float)log(prob[i]) : -INFINITY;
}

static void test_new_args(void **state)
{
    (void)state;
    core_sampling p = sampling(1);
    assert_null(samp_new(NULL, 10));
    assert_null(samp_new(&p, 0));
    assert_null(samp_new(&p, -5));
    samp_free(NULL);
    samp *s = samp_new(&p, 10);
    assert_non_null(s);
    assert_int_equal(samp_accept(s, -1), CORE_EINVAL);
    assert_int_equal(samp_accept(s, 10), CORE_EINVAL);
    assert_int_equal(samp_accept(s, 9), CORE_OK);
    samp_free(s);
}

static void test_greedy(void **state)
{
    (void)state;
    float temps[] = {0, -1, NAN};
    for (size_t k = 0; k < sizeof temps / sizeof *temps; k++) {
        core_sampling p = sampling(temps[k]);
        samp *s = samp_new(&p, 6);
        assert_non_null(s);
        float a[6] = {0.5f, 3, -2, 3, 1, 2.9f}; /* tie: lowest id */
        assert_int_equal(samp_sample(s, a), 1);
        float b[6] = {NAN, -1, NAN, -0.5f, -INFINITY, -3};
        assert_int_equal(samp_sample(s, b), 3);
        float c[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        assert_int_equal(samp_sample(s, c), 0);
        samp_free(s);
    }
    /* Large vocabulary: the maximum in the last block, and ties across blocks. */
    enum { N = 151936 };
    float *l = malloc(N * sizeof *l);
    assert_non_null(l);
    for (int i = 0; i < N; i++)
        l[i] = (float)((i * 7919) % 1000) / 100.0f;
    l[N - 1] = 50;
    core_sampling p = sampling(0);
    samp *s = samp_new(&p, N);
    assert_non_null(s);
    assert_int_equal(samp_sample(s, l), N - 1);
    l[N - 1] = 0;
    l[70001] = 50;
    l[150000] = 50;
    assert_int_equal(samp_sample(s, l), 70001);
    samp_free(s);
    free(l);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    core_sampling p = sampling(0);
    p.repeat_penalty = 2;
    p.repeat_last_n = 3;
    samp *s = samp_new(&p, 8);
    assert_non_null(s);
    int32_t hist[] = {0, 1, 2, 2, 3}; /* window of 3: {2, 2, 3} */
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(samp_accept(s, hist[i]), 0);
    float l[8] = {4, 4, 3, -1, 0.5f, 0, 0, 0};
    samp_sample(s, l);
    assert_true(l[0] == 4 && l[1] == 4);
    assert_true(l[2] == 1.5f); /* once, although twice in the window */
    assert_true(l[3] == -2);
    assert_true(l[4] == 0.5f);

    samp_reset(s);
    float m[8] = {4, 4, 3, -1, 0, 0, 0, 0};
    samp_sample(s, m);
    assert_true(m[2] == 3 && m[3] == -1);
    samp_free(s);

    /* repeat_last_n < 0 (or huge): every accepted token; 0: off. */
    int32_t alls[] = {-1, 1 << 30};
    for (int k = 0; k < 2; k++) {
        p.repeat_last_n = alls[k];
        s = samp_new(&p, 8);
        assert_non_null(s);
        samp_accept(s, 0);
        for (int i = 0; i < 100; i++)
            samp_accept(s, 5);
        float q[8] = {2, 0, 0, 0, 0, -3, 0, 0};
        samp_sample(s, q);
        assert_true(q[0] == 1 && q[5] == -6);
        samp_free(s);
    }

    p.repeat_last_n = 0;
    s = samp_new(&p, 8);
    assert_non_null(s);
    samp_accept(s, 0);
    float r[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    samp_sample(s, r);
    assert_true(r[0] == 2);
    samp_free(s);
}

static void test_frequency_presence(void **state)
{
    (void)state;
    core_sampling p = sampling(0);
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 1; /* only the last token: 4 */
    samp *s = samp_new(&p, 6);
    assert_non_null(s);
    int32_t hist[] = {1, 1, 1, 2, 4};
    for (size_t i = 0; i < 5; i++)
        samp_accept(s, hist[i]);
    float l[6] = {1, 2, 3, 0, 3, 5};
    int32_t tok = samp_sample(s, l);
    assert_true(l[0] == 1);
    assert_true(l[1] == 2 - (3 * 0.5f + 0.25f));
    assert_true(l[2] == 3 - (1 * 0.5f + 0.25f));
    assert_true(l[3] == 0);
    assert_true(l[4] == 3 / 1.5f - (0.5f + 0.25f)); /* repetition first */
    assert_int_equal(tok, 5);
    samp_free(s);
}

static void test_top_k(void **state)
{
    (void)state;
    enum { N = 10, DRAWS = 20000 };
    float l[N] = {1, 5, 2, 4.5f, 0, 4.8f, 3, 1, 1, 2};
    int count[N];
    core_sampling p = sampling(1);
    p.top_k = 3; /* {1, 5, 3} */
    histogram(&p, l, N, DRAWS, count);
    double z = exp(5.0) + exp(4.8) + exp(4.5);
    double prob[N] = {0};
    prob[1] = exp(5.0) / z;
    prob[5] = exp(4.8) / z;
    prob[3] = exp(4.5) / z;
    check_freq(count, prob, N, DRAWS);

    p.top_k = 1;
    histogram(&p, l, N, 200, count);
    assert_int_equal(count[1], 200);

    /* Ties at the cut keep the lowest ids. */
    float flat[N] = {0};
    p.top_k = 4;
    histogram(&p, flat, N, 4000, count);
    for (int i = 0; i < N; i++)
        assert_true(i < 4 ? count[i] > 800 : count[i] == 0);
}

/* top_k above the heap limit goes through the quickselect. */
static void test_top_k_large(void **state)
{
    (void)state;
    enum { N = 4000, K = 300, DRAWS = 30000 };
    float *l = malloc(N * sizeof *l);
    int *rank = malloc(N * sizeof *rank), *count = malloc(N * sizeof *count);
    assert_true(l && rank && count);
    /* A permutation of ranks; logits nearly flat, so all survivors are drawn. */
    for (int i = 0; i < N; i++)
        rank[i] = (int)(((int64_t)i * 2654435761u) % N);
    for (int i = 0; i < N; i++)
        l[i] = -0.001f * (float)rank[i];
    core_sampling p = sampling(1);
    p.top_k = K;
    histogram(&p, l, N, DRAWS, count);
    int hit_first = 0, hit_last = 0;
    for (int i = 0; i < N; i++) {
        if (rank[i] >= K)
            assert_int_equal(count[i], 0);
        if (rank[i] == 0)
            hit_first = count[i];
        if (rank[i] == K - 1)
            hit_last = count[i];
    }
    assert_true(hit_first > 40 && hit_last > 40);

    /* All equal: the lowest ids survive. */
    for (int i = 0; i < N; i++)
        l[i] = 1.5f;
    histogram(&p, l, N, DRAWS, count);
    for (int i = 0; i < N; i++)
        assert_true(i < K ? count[i] > 40 : count[i] == 0);
    free(l);
    free(rank);
    free(count);
}

static void test_top_p(void **state)
{
    (void)state;
    enum { N = 5, DRAWS = 20000 };
    double prob[N] = {0.05, 0.5, 0.15, 0.3, 0};
    float l[N];
    log_of(prob, l, N);
    int count[N];
    core_sampling p = sampling(1);

    p.top_p = 0.7f; /* 0.5 < 0.7 <= 0.8: {1, 3} */
    histogram(&p, l, N, DRAWS, count);
    double want[N] = {0, 0.5 / 0.8, 0, 0.3 / 0.8, 0};
    check_freq(count, want, N, DRAWS);

    p.top_p = 0.9f; /* {1, 3, 2} */
    histogram(&p, l, N, DRAWS, count);
    double want2[N] = {0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95, 0};
    check_freq(count, want2, N, DRAWS);

    p.top_p = 0; /* keeps the most likely one */
    histogram(&p, l, N, 100, count);
    assert_int_equal(count[1], 100);

    /* Ten equal tokens: half the mass is exactly five, the lowest ids. */
    enum { T = 10 };
    float flat[T] = {0};
    int tcount[T];
    p.top_p = 0.5f;
    histogram(&p, flat, T, 3000, tcount);
    for (int i = 0; i < T; i++)
        assert_true(i < 5 ? tcount[i] > 450 : tcount[i] == 0);

    /* Temperature comes first: at T = 2 the probabilities flatten to
     * sqrt(p) / sum, and 0.7 of that mass needs three tokens. */
    p.temperature = 2;
    p.top_p = 0.7f;
    histogram(&p, l, N, DRAWS, count);
    double r[N], z = 0;
    for (int i = 0; i < N; i++)
        z += r[i] = sqrt(prob[i]);
    assert_true((r[1] + r[3]) / z < 0.7 && (r[1] + r[3] + r[2]) / z >= 0.7);
    double want3[N] = {0, r[1], r[2], r[3], 0};
    double z3 = r[1] + r[2] + r[3];
    for (int i = 0; i < N; i++)
        want3[i] /= z3;
    check_freq(count, want3, N, DRAWS);
}

static void test_min_p(void **state)
{
    (void)state;
    enum { N = 4, DRAWS = 20000 };
    double prob[N] = {0.5, 0.3, 0.15, 0.05};
    float l[N];
    log_of(prob, l, N);
    int count[N];
    core_sampling p = sampling(1);
    p.min_p = 0.2f; /* >= 0.1: {0, 1, 2} */
    histogram(&p, l, N, DRAWS, count);
    double want[N] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    check_freq(count, want, N, DRAWS);

    p.min_p = 0.5f; /* >= 0.25 */
    histogram(&p, l, N, DRAWS, count);
    double want2[N] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    check_freq(count, want2, N, DRAWS);

    p.min_p = 5; /* more than 1: only the maximum */
    histogram(&p, l, N, 100, count);
    assert_int_equal(count[0], 100);

    /* With top-p: both cuts apply, whichever is tighter. */
    p.min_p = 0.2f;
    p.top_p = 0.7f; /* top-p keeps {0, 1}, min-p {0, 1, 2} */
    histogram(&p, l, N, DRAWS, count);
    double want3[N] = {0.5 / 0.8, 0.3 / 0.8, 0, 0};
    check_freq(count, want3, N, DRAWS);
    p.min_p = 0.4f;
    p.top_p = 0.9f; /* top-p keeps {0, 1, 2}, min-p {0, 1} */
    histogram(&p, l, N, DRAWS, count);
    check_freq(count, want3, N, DRAWS);
}

static void test_softmax_distribution(void **state)
{
    (void)state;
    enum { N = 8, DRAWS = 100000 };
    float l[N] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, -INFINITY, 0.0f};
    int count[N];
    float temps[] = {1.0f, 0.7f, 1.6f};
    for (size_t k = 0; k < 3; k++) {
        core_sampling p = sampling(temps[k]);
        p.seed = 99 + k;
        histogram(&p, l, N, DRAWS, count);
        double prob[N], z = 0;
        for (int i = 0; i < N; i++)
            z += prob[i] = exp(l[i] / temps[k]);
        for (int i = 0; i < N; i++)
            prob[i] /= z;
        check_freq(count, prob, N, DRAWS);
        assert_int_equal(count[6], 0);
    }
}

typedef struct {
    float l;
    int i;
} pair;

static int pair_cmp(const void *a, const void *b) /* logit descending, then id */
{
    const pair *u = a, *v = b;
    return u->l < v->l ? 1 : u->l > v->l ? -1 : (u->i > v->i) - (u->i < v->i);
}

/* Qwen2-sized vocabulary: a peaked distribution (top-p cuts among the few
 * tokens near the maximum), the same with top-p so close to 1 that the far
 * tokens matter, and a flat one (top-p has to look at all). The survivors
 * must be exactly the brute-force top-p set, weighted by probability. */
static void test_large_vocab_top_p(void **state)
{
    (void)state;
    enum { N = 151936 };
    float *l = malloc(N * sizeof *l);
    int *count = malloc(N * sizeof *count);
    double *e = malloc(N * sizeof *e);
    pair *pr = malloc(N * sizeof *pr);
    assert_true(l && count && e && pr);
    const float temp = 0.9f;
    static const struct {
        int peaks, draws;
        float top_p, cut; /* expected logit at the cut; 0: not checked */
    } shape[] = {{1, 1500, 0.8f, 23.0f}, {1, 300, 0.9999999f, 0}, {0, 300, 0.8f, 0}};
    for (size_t sh = 0; sh < 3; sh++) {
        uint64_t x = 7;
        for (int i = 0; i < N; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            l[i] = (float)((double)(x >> 11) * 0x1.0p-53 * 4.0 - 2.0); /* U(-2, 2) */
        }
        if (shape[sh].peaks) /* 21, 22, 23 and 24 */
            for (int j = 0; j < 4; j++)
                l[1000 + 37000 * j] = 21.0f + (float)j;
        float m = -INFINITY;
        for (int i = 0; i < N; i++)
            m = l[i] > m ? l[i] : m;
        double z = 0, cum = 0, kept = 0;
        for (int i = 0; i < N; i++)
            z += e[i] = exp(((double)l[i] - m) / temp);
        for (int i = 0; i < N; i++)
            pr[i] = (pair){l[i], i};
        qsort(pr, N, sizeof *pr, pair_cmp);
        int last = 0;
        for (; last < N; last++) {
            cum += e[pr[last].i];
            if (cum >= shape[sh].top_p * z)
                break;
        }
        float cut_logit = pr[last].l;
        if (shape[sh].cut != 0)
            assert_true(cut_logit == shape[sh].cut);
        for (int j = 0; j <= last; j++)
            kept += e[pr[j].i];

        core_sampling p = sampling(temp);
        p.top_p = shape[sh].top_p;
        histogram(&p, l, N, shape[sh].draws, count);
        for (int i = 0; i < N; i++)
            if (count[i])
                assert_true(l[i] >= cut_logit);
        if (shape[sh].cut != 0) {
            for (int j = 0; j < 4; j++) {
                int id = 1000 + 37000 * j;
                double prob = l[id] >= cut_logit ? e[id] / kept : 0;
                double f = (double)count[id] / shape[sh].draws;
                assert_true(fabs(f - prob) < 5 * sqrt(prob * (1 - prob) / shape[sh].draws) + 1e-9);
            }
        }
    }
    free(l);
    free(count);
    free(e);
    free(pr);
}

static void draw_seq(uint64_t seed, int32_t *out, int n)
{
    core_sampling p = sampling(1);
    p.seed = seed;
    float base[16];
    for (int i = 0; i < 16; i++)
        base[i] = (float)(i % 5) * 0.3f;
    samp *s = samp_new(&p, 16);
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        float l[16];
        memcpy(l, base, sizeof l);
        out[i] = samp_sample(s, l);
    }
    samp_free(s);
}

static void test_seeds(void **state)
{
    (void)state;
    int32_t a[200], b[200], c[200];
    draw_seq(5, a, 200);
    draw_seq(5, b, 200);
    draw_seq(6, c, 200);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);

    /* samp_reset reseeds: the same sequence again. */
    core_sampling p = sampling(1);
    p.seed = 5;
    samp *s = samp_new(&p, 16);
    assert_non_null(s);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            float l[16];
            for (int j = 0; j < 16; j++)
                l[j] = (float)(j % 5) * 0.3f;
            assert_int_equal(samp_sample(s, l), a[i]);
        }
        samp_reset(s);
    }
    samp_free(s);
}

/* Two equal logits: token 1 exactly when the draw is >= 0.5, i.e. when the
 * top bit of the xoshiro256** output is set. The expected bits come from an
 * independent implementation (splitmix64 seeding, reference xoshiro256**;
 * splitmix64(0) = 0xe220a8397b1dcdaf), so this pins the generator on every
 * machine. */
static void test_prng_known_answer(void **state)
{
    (void)state;
    static const struct {
        uint64_t seed;
        const char *bits;
    } kat[] = {
        {42, "0011111111101011111100010001100111111001111110111110010011111101"},
        {0, "1100110111000100101000011011110010111000110011011111110001001010"},
    };
    for (size_t k = 0; k < 2; k++) {
        core_sampling p = sampling(1);
        p.seed = kat[k].seed;
        samp *s = samp_new(&p, 2);
        assert_non_null(s);
        for (int i = 0; i < 64; i++) {
            float l[2] = {0.25f, 0.25f};
            assert_int_equal(samp_sample(s, l), kat[k].bits[i] - '0');
        }
        samp_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_k_large),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_softmax_distribution),
        cmocka_unit_test(test_large_vocab_top_p),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_prng_known_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
