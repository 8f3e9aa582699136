/* sgemm.c: blocking, packing and threading around the per-ISA micro-kernels.
 *
 * Packed A: ceil(m / SGEMM_MR) panels, each [k][SGEMM_MR] (rows past m are
 * zero), so a KC slice of a panel is contiguous and the kernel streams it.
 * Packed B: [kc][SGEMM_NR] panels (columns past n are zero), each staying
 * in L1 while all the A panels of a task's block pass over it. A task is a
 * block of C (bm row panels x bn column panels). With one row block, tasks
 * pack their B panels as they go; with several, B is packed once up front
 * into a shared workspace, as every row block would pack it all again.
 * Each element of C sums k in the same order (KC slices in turn, one FMA
 * chain per slice) whatever the blocking and packing, so results do not
 * depend on the number of threads.
 */
#include "sgemm.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "quant.h"

enum { SGEMM_KC = 256 };
#define SGEMM_PREPACK_MAX ((size_t)64 << 20)

struct sgemm_mat {
    int m, k;
    const char *isa;
    sgemm_kernel kern;
    float *p; /* [ceil(m/MR)][k][MR] */
};

static float sgemm_act1(float x, sgemm_act act)
{
    if (act == SGEMM_ACT_LEAKY)
        return x > 0 ? x : 0.1f * x;
    if (act == SGEMM_ACT_RELU)
        return x > 0 ? x : 0;
    return x;
}

static void sgemm_kernel_scalar(int kc, const float *a, const float *b, float *c, size_t ldc,
                                int load, int last, const float *bias, sgemm_act act)
{
    float acc[SGEMM_MR][SGEMM_NR];
    for (int r = 0; r < SGEMM_MR; r++)
        for (int j = 0; j < SGEMM_NR; j++)
            acc[r][j] = load ? c[r * ldc + j] : 0;
    for (int p = 0; p < kc; p++, a += SGEMM_MR, b += SGEMM_NR)
        for (int r = 0; r < SGEMM_MR; r++)
            for (int j = 0; j < SGEMM_NR; j++)
                acc[r][j] += a[r] * b[j];
    for (int r = 0; r < SGEMM_MR; r++)
        for (int j = 0; j < SGEMM_NR; j++) {
            float x = acc[r][j];
            if (last)
                x = sgemm_act1(bias ? x + bias[r] : x, act);
            c[r * ldc + j] = x;
        }
}

static const struct sgemm_impl {
    const char *isa;
    sgemm_kernel kern;
} sgemm_impls[] = {
#if defined(__x86_64__)
    {"avx2", sgemm_kernel_avx2},
    /* the name the rest of the core uses on AVX-512 machines; Zen 4 runs
     * zmm FMAs as two ymm halves, so the AVX2 kernel already gets its peak */
    {"avx512", sgemm_kernel_avx2},
#endif
    {"scalar", sgemm_kernel_scalar},
};
enum { SGEMM_NIMPL = sizeof sgemm_impls / sizeof sgemm_impls[0] };

static int sgemm_have[SGEMM_NIMPL];
static pthread_once_t sgemm_once = PTHREAD_ONCE_INIT;

static void sgemm_init(void)
{
    for (int i = 0; i < SGEMM_NIMPL; i++) {
        sgemm_have[i] = 1;
#if defined(__x86_64__)
        if (!strcmp(sgemm_impls[i].isa, "avx2")) {
            __builtin_cpu_init();
            sgemm_have[i] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        } else if (!strcmp(sgemm_impls[i].isa, "avx512")) {
            sgemm_have[i] = quant_cpu_has("avx512");
        }
#endif
    }
}

int sgemm_pack(const float *a, int m, int k, int lda, const char *isa, sgemm_mat **out)
{
    if (!out)
        return CORE_EINVAL;
    *out = NULL;
    if (!a || m < 1 || k < 1 || lda < k)
        return CORE_EINVAL;
    pthread_once(&sgemm_once, sgemm_init);
    const struct sgemm_impl *impl = NULL;
    for (int i = 0; i < SGEMM_NIMPL && !impl; i++)
        if (sgemm_have[i] && (!isa || !strcmp(isa, sgemm_impls[i].isa)))
            impl = &sgemm_impls[i];
    if (!impl)
        return CORE_EINVAL;

    size_t tm = ((size_t)m + SGEMM_MR - 1) / SGEMM_MR;
    size_t bytes = tm * (size_t)k * SGEMM_MR * sizeof(float);
    sgemm_mat *s = calloc(1, sizeof *s);
    if (!s || !(s->p = aligned_alloc(64, (bytes + 63) & ~(size_t)63))) {
        free(s);
        return CORE_ENOMEM;
    }
    s->m = m;
    s->k = k;
    s->isa = impl->isa;
    s->kern = impl->kern;
    for (size_t t = 0; t < tm; t++) {
        float *dst = s->p + t * (size_t)k * SGEMM_MR;
        for (int r = 0; r < SGEMM_MR; r++) {
            size_t row = t * SGEMM_MR + r;
            for (int p = 0; p < k; p++)
                dst[(size_t)p * SGEMM_MR + r] = row < (size_t)m ? a[row * lda + p] : 0;
        }
    }
    *out = s;
    return CORE_OK;
}

void sgemm_free(sgemm_mat *a)
{
    if (!a)
        return;
    free(a->p);
    free(a);
}

const char *sgemm_isa(const sgemm_mat *a)
{
    return a ? a->isa : NULL;
}

typedef struct {
    const sgemm_mat *a;
    const float *b, *bias;
    float *c;
    float *bp; /* B packed by sgemm_run, [tn][k][NR], or NULL: tasks pack */
    size_t ldb, ldc;
    int n, tm, tn, bm, bn, nb, pchunks;
    sgemm_act act;
} sgemm_job;

/* rows x npanels panels of B (src: row 0, column col of B; n - col
 * columns left) into dst (row p of panel q at dst[q pstride + p NR]),
 * zero-padding the last panel. Rows are read left to right, and the next
 * panels' lines are prefetched: a single panel's 64-byte row pieces at a
 * large stride leave the hardware prefetchers little to go on. */
static void sgemm_pack_b(float *dst, size_t pstride, const float *src, size_t ldb, int rows,
                         int col, int n, int npanels)
{
    src += col;
    for (int p = 0; p < rows; p++, src += ldb, dst += SGEMM_NR)
        for (int q = 0; q < npanels; q++) {
            const float *s = src + q * SGEMM_NR;
            float *d = dst + q * pstride;
            int nr = n - col - q * SGEMM_NR;
            if (nr > 2 * SGEMM_NR)
                __builtin_prefetch(s + 2 * SGEMM_NR);
            if (nr >= SGEMM_NR) {
                memcpy(d, s, sizeof(float) * SGEMM_NR);
            } else {
                memcpy(d, s, sizeof(float) * nr);
                memset(d + nr, 0, sizeof(float) * (SGEMM_NR - nr));
            }
        }
}

enum { SGEMM_PACK_PANELS = 8 }; /* panels per pre-pack task: 512-byte row pieces */

static void sgemm_prepack_task(void *arg, int64_t task, int ith)
{
    (void)ith;
    const sgemm_job *J = arg;
    int k = J->a->k, j0 = (int)(task % J->pchunks) * SGEMM_PACK_PANELS;
    int p0 = (int)(task / J->pchunks) * SGEMM_KC;
    int np = J->tn - j0 < SGEMM_PACK_PANELS ? J->tn - j0 : SGEMM_PACK_PANELS;
    int rows = k - p0 < SGEMM_KC ? k - p0 : SGEMM_KC;
    sgemm_pack_b(J->bp + ((size_t)j0 * k + p0) * SGEMM_NR, (size_t)k * SGEMM_NR,
                 J->b + (size_t)p0 * J->ldb, J->ldb, rows, j0 * SGEMM_NR, J->n, np);
}

/* One block of C: row panels [i0, i1) x column panels [j0, j1). */
static void sgemm_task(void *arg, int64_t task, int ith)
{
    (void)ith;
    const sgemm_job *J = arg;
    const sgemm_mat *A = J->a;
    int i0 = (int)(task / J->nb) * J->bm, i1 = i0 + J->bm < J->tm ? i0 + J->bm : J->tm;
    int j0 = (int)(task % J->nb) * J->bn, j1 = j0 + J->bn < J->tn ? j0 + J->bn : J->tn;
    _Alignas(64) float local[SGEMM_KC * SGEMM_NR];
    _Alignas(64) float tile[SGEMM_MR * SGEMM_NR];
    float bpad[SGEMM_MR];

    for (int pc = 0; pc < A->k; pc += SGEMM_KC) {
        int kc = A->k - pc < SGEMM_KC ? A->k - pc : SGEMM_KC;
        int load = pc > 0, last = pc + kc == A->k;
        for (int jt = j0; jt < j1; jt++) {
            int col = jt * SGEMM_NR, nr = J->n - col < SGEMM_NR ? J->n - col : SGEMM_NR;
            const float *bp = local;
            if (J->bp)
                bp = J->bp + ((size_t)jt * A->k + pc) * SGEMM_NR;
            else
                sgemm_pack_b(local, 0, J->b + (size_t)pc * J->ldb, J->ldb, kc, col, J->n, 1);
            /* first pass over C: its rows two panels on, which the kernels
             * would otherwise wait for (big n, small m: C streams from RAM) */
            if (!load && jt + 2 < j1)
                for (int r = i0 * SGEMM_MR; r < i1 * SGEMM_MR && r < A->m; r++)
                    __builtin_prefetch(J->c + (size_t)r * J->ldc + col + 2 * SGEMM_NR, 1);
            for (int it = i0; it < i1; it++) {
                int row = it * SGEMM_MR, mr = A->m - row < SGEMM_MR ? A->m - row : SGEMM_MR;
                const float *ap = A->p + ((size_t)it * A->k + pc) * SGEMM_MR;
                const float *bias = last && J->bias ? J->bias + row : NULL;
                float *c = J->c + (size_t)row * J->ldc + col;
                if (mr == SGEMM_MR && nr == SGEMM_NR) {
                    A->kern(kc, ap, bp, c, J->ldc, load, last, bias, J->act);
                    continue;
                }
                /* edge tile: through a full-size buffer, never past C or bias */
                if (bias) {
                    memset(bpad, 0, sizeof bpad);
                    memcpy(bpad, bias, mr * sizeof(float));
                    bias = bpad;
                }
                memset(tile, 0, sizeof tile);
                if (load)
                    for (int r = 0; r < mr; r++)
                        memcpy(tile + r * SGEMM_NR, c + r * J->ldc, nr * sizeof(float));
                A->kern(kc, ap, bp, tile, SGEMM_NR, load, last, bias, J->act);
                for (int r = 0; r < mr; r++)
                    memcpy(c + r * J->ldc, tile + r * SGEMM_NR, nr * sizeof(float));
            }
        }
    }
}

/* Process-wide B workspaces, one per concurrent caller (the detector runs
 * bands of a layer as parallel single-threaded calls): each grows to the
 * largest B packed in it (up to SGEMM_PREPACK_MAX) and is kept, so that a
 * forward pass does not fault in fresh pages for every layer. */
enum { SGEMM_NWS = 4 };
static struct sgemm_ws {
    pthread_mutex_t lock;
    float *p;
    size_t cap;
} sgemm_ws[SGEMM_NWS] = {[0 ... SGEMM_NWS - 1] = {PTHREAD_MUTEX_INITIALIZER, NULL, 0}};

static void sgemm_for(pool *pl, int64_t tasks, pool_fn fn, void *arg)
{
    if (pl && pool_size(pl) > 1)
        pool_for(pl, tasks, fn, arg);
    else
        for (int64_t t = 0; t < tasks; t++)
            fn(arg, t, 0);
}

int sgemm_run(const sgemm_mat *a, const float *b, int n, int ldb, const float *bias,
              sgemm_act act, float *c, int ldc, pool *pl)
{
    if (!a || !b || !c || n < 0 || ldb < n || ldc < n ||
        (act != SGEMM_ACT_LINEAR && act != SGEMM_ACT_LEAKY && act != SGEMM_ACT_RELU))
        return CORE_EINVAL;
    if (n == 0)
        return CORE_OK;
    sgemm_job J = {.a = a, .b = b, .bias = bias, .c = c, .ldb = (size_t)ldb,
                   .ldc = (size_t)ldc, .n = n, .act = act};
    J.tm = (a->m + SGEMM_MR - 1) / SGEMM_MR;
    J.tn = (n + SGEMM_NR - 1) / SGEMM_NR;

    /* Blocks of at most 16 row panels (a 96 x KC slice of A stays in L2)
     * and ~512 tiles (the block of C stays in L2 across KC slices); with
     * threads, split until there are ~8 tasks per thread, keeping column
     * blocks >= 8 panels and row blocks >= 4 panels while possible. */
    int nth = pl ? pool_size(pl) : 1, target = nth > 1 ? 8 * nth : 1;
    int bm = J.tm < 16 ? J.tm : 16;
    int mb = (J.tm + bm - 1) / bm;
    int nb = (J.tn + 512 / bm - 1) / (512 / bm);
    while (mb * nb < target) {
        if (J.tn / (nb + 1) >= 8) {
            nb++;
        } else if (bm > 4) {
            bm--;
            mb = (J.tm + bm - 1) / bm;
        } else if (nb < J.tn) {
            nb++;
        } else {
            break;
        }
    }
    J.bm = bm;
    J.bn = (J.tn + nb - 1) / nb;
    J.nb = (J.tn + J.bn - 1) / J.bn;
    /* Several row blocks would each pack all of B again: pack it once into
     * a free workspace instead (with none free or no memory, the tasks pack
     * their own; the sums are the same either way). */
    struct sgemm_ws *ws = NULL;
    size_t bp_bytes = (size_t)J.tn * a->k * SGEMM_NR * sizeof(float);
    for (int i = 0; mb > 1 && bp_bytes <= SGEMM_PREPACK_MAX && !ws && i < SGEMM_NWS; i++)
        if (!pthread_mutex_trylock(&sgemm_ws[i].lock))
            ws = &sgemm_ws[i];
    if (ws) {
        if (ws->cap < bp_bytes) {
            free(ws->p);
            ws->p = aligned_alloc(64, bp_bytes);
            ws->cap = ws->p ? bp_bytes : 0;
        }
        J.bp = ws->p;
    }
    if (J.bp) {
        J.pchunks = (J.tn + SGEMM_PACK_PANELS - 1) / SGEMM_PACK_PANELS;
        sgemm_for(pl, (int64_t)J.pchunks * ((a->k + SGEMM_KC - 1) / SGEMM_KC), sgemm_prepack_task, &J);
    }
    sgemm_for(pl, (int64_t)mb * J.nb, sgemm_task, &J);
    if (ws)
        pthread_mutex_unlock(&ws->lock);
    return CORE_OK;
}
