/* test_sgemm.c: the packed F32 GEMM against a naive double-precision triple
 * loop on odd shapes (edge tiles, several KC slices, several blocks), with
 * strides, bias and every activation, per ISA; identical bits for pools of
 * 1, 2 and 3 threads and for concurrent callers; untouched padding; bad
 * arguments. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core_err.h"
#include "pool.h"
#include "sgemm.h"

static uint64_t tsg_state = 0x243f6a8885a308d3ull;

static float tsg_uniform(void) /* [-1, 1) */
{
    tsg_state = tsg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(tsg_state >> 40) * 0x1p-23f - 1.0f;
}

static int tsg_rand(int n)
{
    tsg_state = tsg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((tsg_state >> 33) % (uint64_t)n);
}

typedef struct {
    int m, k, n, lda, ldb, ldc;
    float *a, *b, *bias, *c; /* a [m][lda], b [k][ldb], bias [m], c [m][ldc] */
} tsg_case;

static const float tsg_sentinel = -12345.0f;

static void tsg_new(tsg_case *t, int m, int k, int n, int pad)
{
    *t = (tsg_case){m, k, n, k + pad, n + pad, n + 2 * pad, NULL, NULL, NULL, NULL};
    t->a = malloc(sizeof(float) * m * t->lda);
    t->b = malloc(sizeof(float) * k * t->ldb);
    t->bias = malloc(sizeof(float) * m);
    t->c = malloc(sizeof(float) * m * t->ldc);
    assert_non_null(t->a);
    assert_non_null(t->b);
    assert_non_null(t->bias);
    assert_non_null(t->c);
    for (int i = 0; i < m * t->lda; i++)
        t->a[i] = tsg_uniform();
    for (int i = 0; i < k * t->ldb; i++)
        t->b[i] = tsg_uniform();
    for (int i = 0; i < m; i++)
        t->bias[i] = tsg_uniform();
}

static void tsg_free(tsg_case *t)
{
    free(t->a);
    free(t->b);
    free(t->bias);
    free(t->c);
}

static void tsg_fill(tsg_case *t)
{
    for (int i = 0; i < t->m * t->ldc; i++)
        t->c[i] = tsg_sentinel;
}

static float tsg_act(double x, sgemm_act act)
{
    if (act == SGEMM_ACT_LEAKY)
        return (float)(x > 0 ? x : 0.1 * x);
    if (act == SGEMM_ACT_RELU)
        return (float)(x > 0 ? x : 0);
    return (float)x;
}

/* Every element within a rounding bound of the double-precision sum; the
 * padding columns of C untouched. */
static void tsg_check(const tsg_case *t, const float *bias, sgemm_act act, const char *what)
{
    for (int i = 0; i < t->m; i++) {
        for (int j = 0; j < t->n; j++) {
            double s = bias ? bias[i] : 0, mag = bias ? fabs(bias[i]) : 0;
            for (int p = 0; p < t->k; p++) {
                double x = (double)t->a[i * t->lda + p] * t->b[p * t->ldb + j];
                s += x;
                mag += fabs(x);
            }
            float want = tsg_act(s, act), got = t->c[i * t->ldc + j];
            double tol = 1e-6 * sqrt((double)t->k + 1) * mag + 1e-30;
            if (!(fabs(got - want) <= tol))
                fail_msg("%s m=%d k=%d n=%d act=%d bias=%d: c[%d][%d] = %.9g, want %.9g (tol %.3g)",
                         what, t->m, t->k, t->n, act, bias != NULL, i, j, got, want, tol);
        }
        for (int j = t->n; j < t->ldc; j++)
            if (t->c[i * t->ldc + j] != tsg_sentinel)
                fail_msg("%s m=%d k=%d n=%d: padding c[%d][%d] written", what, t->m, t->k, t->n, i, j);
    }
}

static const char *tsg_isas[] = {"scalar", "avx2", "avx512"};

static void tsg_run_case(int m, int k, int n, int pad, pool *pl)
{
    tsg_case t;
    tsg_new(&t, m, k, n, pad);
    for (size_t i = 0; i < sizeof tsg_isas / sizeof tsg_isas[0]; i++) {
        sgemm_mat *a;
        int rc = sgemm_pack(t.a, m, k, t.lda, tsg_isas[i], &a);
        if (rc == CORE_EINVAL && strcmp(tsg_isas[i], "scalar"))
            continue; /* CPU without AVX2/FMA (AVX-512) or a non-x86 build */
        assert_int_equal(rc, CORE_OK);
        assert_string_equal(sgemm_isa(a), tsg_isas[i]);
        for (int act = SGEMM_ACT_LINEAR; act <= SGEMM_ACT_RELU; act++) {
            const float *bias = act == SGEMM_ACT_LINEAR ? NULL : t.bias;
            tsg_fill(&t);
            assert_int_equal(sgemm_run(a, t.b, n, t.ldb, bias, act, t.c, t.ldc, pl), CORE_OK);
            tsg_check(&t, bias, act, tsg_isas[i]);
        }
        /* linear with bias too */
        tsg_fill(&t);
        assert_int_equal(sgemm_run(a, t.b, n, t.ldb, t.bias, SGEMM_ACT_LINEAR, t.c, t.ldc, pl), CORE_OK);
        tsg_check(&t, t.bias, SGEMM_ACT_LINEAR, tsg_isas[i]);
        sgemm_free(a);
    }
    tsg_free(&t);
}

static void test_shapes(void **state)
{
    (void)state;
    static const int shapes[][3] = {
        {1, 1, 1},    {5, 3, 17},    {6, 16, 16},  {7, 27, 33},   {17, 1, 5},
        {255, 64, 13}, {16, 27, 700}, {12, 257, 40}, {100, 600, 37}, {13, 513, 600},
        {1, 300, 1},  {97, 9, 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        tsg_run_case(shapes[i][0], shapes[i][1], shapes[i][2], (int)(i % 3) * 5, NULL);
    for (int i = 0; i < 12; i++)
        tsg_run_case(1 + tsg_rand(70), 1 + tsg_rand(300), 1 + tsg_rand(90), tsg_rand(9), NULL);
}

static void test_threads_identical(void **state)
{
    (void)state;
    static const int shapes[][3] = {{255, 300, 169}, {16, 27, 2000}, {97, 520, 45}, {1, 5, 1}};
    pool *pools[3] = {pool_new(1), pool_new(2), pool_new(3)};
    for (int i = 0; i < 3; i++)
        assert_non_null(pools[i]);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        tsg_case t;
        tsg_new(&t, shapes[s][0], shapes[s][1], shapes[s][2], 3);
        size_t bytes = sizeof(float) * t.m * t.ldc;
        float *ref = malloc(bytes);
        assert_non_null(ref);
        for (size_t i = 0; i < sizeof tsg_isas / sizeof tsg_isas[0]; i++) {
            sgemm_mat *a;
            if (sgemm_pack(t.a, t.m, t.k, t.lda, tsg_isas[i], &a) != CORE_OK)
                continue;
            tsg_fill(&t);
            assert_int_equal(sgemm_run(a, t.b, t.n, t.ldb, t.bias, SGEMM_ACT_LEAKY, t.c, t.ldc, NULL), 0);
            tsg_check(&t, t.bias, SGEMM_ACT_LEAKY, tsg_isas[i]);
            memcpy(ref, t.c, bytes);
            for (int p = 0; p < 3; p++) {
                tsg_fill(&t);
                assert_int_equal(sgemm_run(a, t.b, t.n, t.ldb, t.bias, SGEMM_ACT_LEAKY, t.c, t.ldc,
                                           pools[p]), 0);
                if (memcmp(ref, t.c, bytes))
                    fail_msg("%s %dx%dx%d: %d threads differ from the caller's thread", tsg_isas[i],
                             t.m, t.k, t.n, pool_size(pools[p]));
            }
            sgemm_free(a);
        }
        free(ref);
        tsg_free(&t);
    }
    for (int i = 0; i < 3; i++)
        pool_free(pools[i]);
}

/* Callers on six threads at once (more than there are B workspaces, so
 * some pack per task): still the bits of a lone caller. */
typedef struct {
    const sgemm_mat *a;
    const tsg_case *t;
    float *c;
    const float *ref;
    int bad;
} tsg_conc;

static void *tsg_conc_main(void *arg)
{
    tsg_conc *x = arg;
    size_t bytes = sizeof(float) * x->t->m * x->t->ldc;
    for (int i = 0; i < 10; i++) {
        if (sgemm_run(x->a, x->t->b, x->t->n, x->t->ldb, x->t->bias, SGEMM_ACT_RELU, x->c, x->t->ldc,
                      NULL) ||
            memcmp(x->c, x->ref, bytes))
            x->bad++;
    }
    return NULL;
}

static void test_concurrent_callers(void **state)
{
    (void)state;
    tsg_case t;
    tsg_new(&t, 200, 300, 60, 0);
    size_t bytes = sizeof(float) * t.m * t.ldc;
    sgemm_mat *a;
    assert_int_equal(sgemm_pack(t.a, t.m, t.k, t.lda, NULL, &a), CORE_OK);
    assert_int_equal(sgemm_run(a, t.b, t.n, t.ldb, t.bias, SGEMM_ACT_RELU, t.c, t.ldc, NULL), 0);
    tsg_check(&t, t.bias, SGEMM_ACT_RELU, sgemm_isa(a));
    tsg_conc x[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        x[i] = (tsg_conc){a, &t, malloc(bytes), t.c, 0};
        assert_non_null(x[i].c);
        assert_int_equal(pthread_create(&th[i], NULL, tsg_conc_main, &x[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(x[i].bad, 0);
        free(x[i].c);
    }
    sgemm_free(a);
    tsg_free(&t);
}

static void test_isa(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6};
    sgemm_mat *m;
    assert_int_equal(sgemm_pack(a, 2, 3, 3, NULL, &m), CORE_OK);
    const char *best = sgemm_isa(m);
    sgemm_free(m);
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        assert_string_equal(best, "avx2");
    else
        assert_string_equal(best, "scalar");
#else
    assert_string_equal(best, "scalar");
#endif
    m = (sgemm_mat *)a;
    assert_int_equal(sgemm_pack(a, 2, 3, 3, "neon-not-here", &m), CORE_EINVAL);
    assert_null(m);
    assert_null(sgemm_isa(NULL));
    sgemm_free(NULL);
}

static void test_bad_args(void **state)
{
    (void)state;
    float a[12] = {0}, b[12] = {0}, c[12], bias[4] = {0};
    sgemm_mat *m = (sgemm_mat *)a;
    assert_int_equal(sgemm_pack(NULL, 2, 3, 3, NULL, &m), CORE_EINVAL);
    assert_null(m);
    assert_int_equal(sgemm_pack(a, 0, 3, 3, NULL, &m), CORE_EINVAL);
    assert_int_equal(sgemm_pack(a, 2, 0, 3, NULL, &m), CORE_EINVAL);
    assert_int_equal(sgemm_pack(a, -1, 3, 3, NULL, &m), CORE_EINVAL);
    assert_int_equal(sgemm_pack(a, 2, 3, 2, NULL, &m), CORE_EINVAL);
    assert_int_equal(sgemm_pack(a, 2, 3, 3, NULL, NULL), CORE_EINVAL);
    assert_null(m);

    assert_int_equal(sgemm_pack(a, 2, 3, 3, NULL, &m), CORE_OK);
    for (int i = 0; i < 12; i++)
        c[i] = tsg_sentinel;
    assert_int_equal(sgemm_run(m, b, -1, 4, bias, 0, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 4, 3, bias, 0, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 4, 4, bias, 0, c, 3, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 4, 4, bias, (sgemm_act)7, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 4, 4, bias, (sgemm_act)-1, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(NULL, b, 4, 4, bias, 0, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, NULL, 4, 4, bias, 0, c, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 4, 4, bias, 0, NULL, 4, NULL), CORE_EINVAL);
    assert_int_equal(sgemm_run(m, b, 0, 0, bias, 0, c, 0, NULL), CORE_OK);
    for (int i = 0; i < 12; i++)
        assert_true(c[i] == tsg_sentinel);
    sgemm_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_isa),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
