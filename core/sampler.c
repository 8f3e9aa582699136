/* sampler.c: penalties, greedy, top-k / temperature / top-p / min-p and a
 * seeded draw (see sampler.h for the pipeline and knob semantics). */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* top-p histogram: buckets of 1/32 of a (temperature-scaled) logit unit
 * below the maximum; the last one also takes everything further than 32
 * units (probability ratio < 1.3e-14), NaN and -inf. */
#define SAMP_NB 1024
#define SAMP_BUCKETS_PER_UNIT 32.0f
/* top-k up to this uses a heap pass over the logits; above, a quickselect. */
#define SAMP_HEAP_MAX_K 256
/* Probabilities are also summed per block of this many candidates, so that
 * the draw walks blocks first. */
#define SAMP_BLK 64
/* Candidates within this many (temperature-scaled) logit units of the
 * maximum are listed while weighing, up to SAMP_NEAR_CAP of them: top-p
 * usually cuts among them, and then never looks at the rest. */
#define SAMP_NEAR_UNITS 16.0f
#define SAMP_NEAR_CAP 8192
/* repeat_last_n above this means every accepted token. */
#define SAMP_RING_MAX 65536

typedef struct {
    float l;
    int32_t id;
} samp_cand;

typedef struct {
    float l;
    int32_t id;
    uint32_t idx; /* index into the candidate arrays */
} samp_bcand;

struct samp {
    core_sampling p;
    int n_vocab;
    uint64_t rng[4];

    /* penalties */
    int32_t *count;  /* [n_vocab] accepted since reset */
    int32_t *seen;   /* [n_vocab] distinct accepted tokens, first-accept order */
    size_t n_seen;
    int32_t *ring;   /* [ring_cap] the last accepted tokens */
    size_t ring_cap, ring_len, ring_pos;
    uint32_t *stamp; /* [n_vocab] dedups the ring: stamp[tok] == gen when applied */
    uint32_t gen;

    /* scratch */
    float *klogit;     /* [top_k] top-k survivors' logits (when top-k is on) */
    int32_t *kid;      /* [top_k] and ids */
    samp_cand *sel;    /* [n_vocab] quickselect workspace (top_k > SAMP_HEAP_MAX_K) */
    float *prob;       /* [n_vocab] unnormalized probabilities, max = 1 */
    uint32_t *keep;    /* [n_vocab] indices of the survivors */
    uint16_t *bucket;  /* [n_vocab] top-p bucket of each listed candidate */
    uint32_t *near;    /* [SAMP_NEAR_CAP + 1] candidates near the maximum */
    float *blk;        /* [n_vocab / SAMP_BLK + 1] block sums of prob */
    samp_bcand *bnd;   /* [n_vocab] the bucket holding the top-p cut */
    double hsum[SAMP_NB];
};

/* ---- PRNG: splitmix64 to seed xoshiro256** (Blackman & Vigna) ---- */

static uint64_t samp_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t samp_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t samp_next(samp *s)
{
    uint64_t *r = s->rng;
    uint64_t out = samp_rotl(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = samp_rotl(r[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static double samp_uniform(samp *s)
{
    return (double)(samp_next(s) >> 11) * 0x1.0p-53;
}

static void samp_seed(samp *s, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = samp_splitmix(&x);
}

/* ---- lifetime ---- */

samp *samp_new(const core_sampling *p, int n_vocab)
{
    if (!p || n_vocab <= 0)
        return NULL;
    samp *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    size_t n = (size_t)n_vocab;
    s->p = *p;
    s->n_vocab = n_vocab;
    if (s->p.repeat_last_n > SAMP_RING_MAX) /* longer than any context: all of them */
        s->p.repeat_last_n = -1;
    s->ring_cap = s->p.repeat_last_n > 0 ? (size_t)s->p.repeat_last_n : 0;
    s->count = calloc(n, sizeof *s->count);
    s->seen = malloc(n * sizeof *s->seen);
    s->ring = malloc((s->ring_cap ? s->ring_cap : 1) * sizeof *s->ring);
    s->stamp = calloc(n, sizeof *s->stamp);
    size_t k = p->top_k > 0 && (size_t)p->top_k < n ? (size_t)p->top_k : 0;
    if (k) {
        s->klogit = malloc(k * sizeof *s->klogit);
        s->kid = malloc(k * sizeof *s->kid);
        if (!s->klogit || !s->kid)
            goto fail;
    }
    if (k > SAMP_HEAP_MAX_K && !(s->sel = malloc(n * sizeof *s->sel)))
        goto fail;
    s->prob = malloc(n * sizeof *s->prob);
    s->keep = malloc(n * sizeof *s->keep);
    s->bnd = malloc(n * sizeof *s->bnd);
    s->bucket = malloc(n * sizeof *s->bucket);
    s->blk = malloc((n / SAMP_BLK + 1) * sizeof *s->blk);
    s->near = malloc((SAMP_NEAR_CAP + 1) * sizeof *s->near);
    if (!s->bucket || !s->blk || !s->near || !s->count || !s->seen || !s->ring || !s->stamp ||
        !s->prob || !s->keep || !s->bnd)
        goto fail;
    samp_reset(s);
    return s;
fail:
    samp_free(s);
    return NULL;
}

void samp_free(samp *s)
{
    if (!s)
        return;
    free(s->count);
    free(s->seen);
    free(s->ring);
    free(s->stamp);
    free(s->klogit);
    free(s->kid);
    free(s->sel);
    free(s->prob);
    free(s->keep);
    free(s->bnd);
    free(s->bucket);
    free(s->blk);
    free(s->near);
    free(s);
}

void samp_reset(samp *s)
{
    for (size_t i = 0; i < s->n_seen; i++)
        s->count[s->seen[i]] = 0;
    s->n_seen = 0;
    s->ring_len = s->ring_pos = 0;
    samp_seed(s, s->p.seed);
}

int samp_accept(samp *s, int32_t tok)
{
    if (tok < 0 || tok >= s->n_vocab)
        return CORE_EINVAL;
    if (s->count[tok]++ == 0)
        s->seen[s->n_seen++] = tok;
    if (s->ring_cap) {
        s->ring[s->ring_pos] = tok;
        s->ring_pos = (s->ring_pos + 1) % s->ring_cap;
        if (s->ring_len < s->ring_cap)
            s->ring_len++;
    }
    return CORE_OK;
}

/* ---- penalties ---- */

static inline void samp_repeat_one(float *l, float pen)
{
    if (*l <= 0)
        *l *= pen;
    else
        *l /= pen;
}

static void samp_penalize(samp *s, float *logits)
{
    const core_sampling *p = &s->p;
    bool rep = p->repeat_penalty != 1.0f && p->repeat_penalty == p->repeat_penalty &&
               p->repeat_last_n != 0;
    if (rep && p->repeat_last_n < 0) {
        for (size_t i = 0; i < s->n_seen; i++)
            samp_repeat_one(&logits[s->seen[i]], p->repeat_penalty);
    } else if (rep) {
        if (++s->gen == 0) { /* wrapped: old stamps could collide */
            memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
            s->gen = 1;
        }
        for (size_t i = 0; i < s->ring_len; i++) {
            int32_t t = s->ring[i];
            if (s->stamp[t] != s->gen) {
                s->stamp[t] = s->gen;
                samp_repeat_one(&logits[t], p->repeat_penalty);
            }
        }
    }

    float freq = p->frequency_penalty == p->frequency_penalty ? p->frequency_penalty : 0;
    float pres = p->presence_penalty == p->presence_penalty ? p->presence_penalty : 0;
    if (freq != 0 || pres != 0) {
        for (size_t i = 0; i < s->n_seen; i++) {
            int32_t t = s->seen[i];
            logits[t] -= (float)s->count[t] * freq + pres;
        }
    }
}

/* ---- filters ---- */

static inline float samp_clean(float x)
{
    return x == x ? x : -INFINITY;
}

/* The strict order used everywhere: larger logit first, then lower id. */
static inline bool samp_better(float la, int32_t ia, float lb, int32_t ib)
{
    return la > lb || (la == lb && ia < ib);
}

/* 4-wide float vectors (GCC/clang vector extensions: SSE2 on x86-64, NEON
 * on arm64, plain scalar code elsewhere) for the passes over the vocabulary. */
typedef float samp_v4f __attribute__((vector_size(16)));
typedef int32_t samp_v4i __attribute__((vector_size(16)));

static inline samp_v4f samp_load(const float *p)
{
    samp_v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline samp_v4f samp_vmax(samp_v4f a, samp_v4f b) /* NaN in b loses */
{
    samp_v4i gt = b > a;
    return (samp_v4f)(((samp_v4i)b & gt) | ((samp_v4i)a & ~gt));
}

/* Largest logit (NaN ignored; -inf when there is nothing else) and the
 * lowest index holding it, or 0 when all are NaN. Vector maxima per block,
 * then a scan of the first block that reached the maximum. */
static float samp_max(const float *x, size_t n, size_t *at)
{
    float m = -INFINITY;
    size_t mb = 0;
    for (size_t b = 0; b * SAMP_BLK < n; b++) {
        size_t i = b * SAMP_BLK, end = i + SAMP_BLK < n ? i + SAMP_BLK : n;
        samp_v4f m0 = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, m1 = m0;
        for (; i + 8 <= end; i += 8) {
            m0 = samp_vmax(m0, samp_load(x + i));
            m1 = samp_vmax(m1, samp_load(x + i + 4));
        }
        m0 = samp_vmax(m0, m1);
        float bm = -INFINITY;
        for (int j = 0; j < 4; j++)
            bm = m0[j] > bm ? m0[j] : bm;
        for (; i < end; i++)
            bm = x[i] > bm ? x[i] : bm;
        if (bm > m) {
            m = bm;
            mb = b;
        }
    }
    *at = 0;
    size_t end = (mb + 1) * SAMP_BLK < n ? (mb + 1) * SAMP_BLK : n;
    for (size_t i = mb * SAMP_BLK; i < end; i++) {
        if (x[i] == m) {
            *at = i;
            break;
        }
    }
    return m;
}

/* Min-heap of the k best so far, worst at the root. */
static void samp_heap_down(float *hl, int32_t *hi, size_t n, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && samp_better(hl[c], hi[c], hl[c + 1], hi[c + 1]))
            c++;
        if (!samp_better(hl[i], hi[i], hl[c], hi[c]))
            return;
        float tl = hl[i];
        int32_t ti = hi[i];
        hl[i] = hl[c];
        hi[i] = hi[c];
        hl[c] = tl;
        hi[c] = ti;
        i = c;
    }
}

static void samp_topk_heap(samp *s, const float *logits, size_t n, size_t k)
{
    float *hl = s->klogit;
    int32_t *hi = s->kid;
    for (size_t i = 0; i < k; i++) {
        hl[i] = samp_clean(logits[i]);
        hi[i] = (int32_t)i;
    }
    for (size_t i = k / 2; i-- > 0;)
        samp_heap_down(hl, hi, k, i);
    /* Later ids lose ties, so only a strictly larger logit enters; most
     * groups of 8 have none and are skipped with one vector test. */
    typedef uint64_t v2u64 __attribute__((vector_size(16)));
    for (size_t i = k; i < n;) {
        if (i + 8 <= n) {
            samp_v4f root = {hl[0], hl[0], hl[0], hl[0]};
            v2u64 any = (v2u64)((samp_load(logits + i) > root) | (samp_load(logits + i + 4) > root));
            if (!(any[0] | any[1])) {
                i += 8;
                continue;
            }
        }
        for (size_t end = i + 8 < n ? i + 8 : n; i < end; i++) {
            float x = logits[i];
            if (x > hl[0]) {
                hl[0] = x;
                hi[0] = (int32_t)i;
                samp_heap_down(hl, hi, k, 0);
            }
        }
    }
}

/* Hoare quickselect: afterwards a[0..k) are the k best, in no order. The
 * pivot comes from a fixed LCG, so the work is reproducible. */
static void samp_topk_select(samp *s, const float *logits, size_t n, size_t k)
{
    samp_cand *a = s->sel;
    for (size_t i = 0; i < n; i++) {
        a[i].l = samp_clean(logits[i]);
        a[i].id = (int32_t)i;
    }
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, t = (ptrdiff_t)k - 1;
    uint64_t lcg = 0x2545f4914f6cdd1dull;
    while (hi > lo) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        samp_cand pv = a[lo + (ptrdiff_t)((lcg >> 33) % (uint64_t)(hi - lo + 1))];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (samp_better(a[i].l, a[i].id, pv.l, pv.id))
                i++;
            while (samp_better(pv.l, pv.id, a[j].l, a[j].id))
                j--;
            if (i <= j) {
                samp_cand tmp = a[i];
                a[i] = a[j];
                a[j] = tmp;
                i++;
                j--;
            }
        }
        /* [lo, j] beat the pivot or are it, [i, hi] lose to it or are it,
         * and anything between is the pivot itself: placed. */
        if (t <= j)
            hi = j;
        else if (t >= i)
            lo = i;
        else
            break;
    }
    for (size_t i = 0; i < k; i++) {
        s->klogit[i] = a[i].l;
        s->kid[i] = a[i].id;
    }
}

/* e^x for x <= 0 with ~1e-7 relative error, 0 for x <= -87 and NaN. Own
 * code rather than expf() so that results do not depend on the libm. */
static inline samp_v4f samp_vexp(samp_v4f x)
{
    samp_v4i live = x > -87.0f;
    x = (samp_v4f)((samp_v4i)x & live); /* keeps the int conversion in range */
    samp_v4i k = __builtin_convertvector(x * 1.44269504f - 0.5f, samp_v4i); /* round */
    samp_v4f kf = __builtin_convertvector(k, samp_v4f);
    samp_v4f r = x - kf * 0.693359375f - kf * -2.12194440e-4f; /* x - k ln2, |r| <= 0.35 */
    samp_v4f q = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 +
                                 r * (1.0f / 120 + r * (1.0f / 720))))));
    samp_v4f scale = (samp_v4f)((k + 127) << 23); /* 2^k, k >= -126 */
    return (samp_v4f)((samp_v4i)(q * scale) & live);
}

/* One pass over n candidates: e[i] = exp((lg[i] - m) * inv_t), blk[j] the
 * float sum of e over block j of SAMP_BLK, and with near, the indices of
 * the candidates near the maximum (*n_near; SIZE_MAX when more than
 * SAMP_NEAR_CAP). Returns the total, summed over the blocks in double. */
static double samp_weigh(const float *lg, size_t n, float m, float inv_t, float *e, float *blk,
                         uint32_t *near, size_t *n_near)
{
    typedef uint64_t v2u64 __attribute__((vector_size(16)));
    double total = 0;
    size_t nn = 0;
    for (size_t j = 0; j * SAMP_BLK < n; j++) {
        size_t i = j * SAMP_BLK, end = i + SAMP_BLK < n ? i + SAMP_BLK : n;
        samp_v4f acc = {0, 0, 0, 0};
        float tail = 0;
        for (; i + 4 <= end; i += 4) {
            samp_v4f d = (samp_load(lg + i) - m) * inv_t;
            samp_v4f x = samp_vexp(d);
            memcpy(e + i, &x, sizeof x);
            acc += x;
            v2u64 hit = (v2u64)(d > -SAMP_NEAR_UNITS);
            if (near && (hit[0] | hit[1])) {
                for (int l = 0; l < 4; l++)
                    if (d[l] > -SAMP_NEAR_UNITS && nn <= SAMP_NEAR_CAP)
                        near[nn++] = (uint32_t)(i + l);
            }
        }
        for (; i < end; i++) {
            float d = (lg[i] - m) * inv_t;
            samp_v4f dv = {d, d, d, d};
            e[i] = samp_vexp(dv)[0];
            tail += e[i];
            if (near && d > -SAMP_NEAR_UNITS && nn <= SAMP_NEAR_CAP)
                near[nn++] = (uint32_t)i;
        }
        blk[j] = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
        total += blk[j];
    }
    if (near)
        *n_near = nn > SAMP_NEAR_CAP ? SIZE_MAX : nn;
    return total;
}

/* Top-p bucket of d = (logit - max) / T <= 0: 1/32 unit wide; the last one
 * also takes d <= -32 (ratio < 1.3e-14 to the maximum), -inf and NaN. */
static inline int samp_bucket(float d)
{
    float b = -d * SAMP_BUCKETS_PER_UNIT;
    return b < (float)(SAMP_NB - 1) ? (int)b : SAMP_NB - 1;
}

static int samp_bcand_cmp(const void *pa, const void *pb)
{
    const samp_bcand *a = pa, *b = pb;
    if (samp_better(a->l, a->id, b->l, b->id))
        return -1;
    return samp_better(b->l, b->id, a->l, a->id);
}

/* Draws from the e of the listed candidates (keep[0..nk)), summing in the
 * same order as the walk so that the walk reaches the total. */
static size_t samp_pick_list(samp *s, const float *e, const uint32_t *keep, size_t nk,
                             size_t fallback)
{
    double z = 0;
    for (size_t j = 0; j < nk; j++)
        z += e[keep[j]];
    if (!(z > 0))
        return fallback;
    double u = samp_uniform(s) * z, acc = 0;
    for (size_t j = 0; j < nk; j++) {
        if (e[keep[j]] > 0) {
            fallback = keep[j];
            acc += e[keep[j]];
            if (u < acc)
                break;
        }
    }
    return fallback;
}

/* Draws from all n candidates: finds the block by its sum, then the token
 * inside it; rounding between the two sums can only bias towards the
 * block's last positive candidate, by float epsilons. */
static size_t samp_pick_all(samp *s, const float *e, const float *blk, size_t n, double total,
                            size_t fallback)
{
    if (!(total > 0))
        return fallback;
    double u = samp_uniform(s) * total, acc = 0;
    size_t nblk = (n + SAMP_BLK - 1) / SAMP_BLK, j = 0;
    for (; j < nblk; j++) {
        if (u < acc + blk[j])
            break;
        acc += blk[j];
    }
    if (j == nblk) /* u rounded onto the total: use the last block with weight */
        while (j > 0 && !(blk[--j] > 0)) {
        }
    size_t end = (j + 1) * SAMP_BLK < n ? (j + 1) * SAMP_BLK : n;
    for (size_t i = j * SAMP_BLK; i < end; i++) {
        if (e[i] > 0) {
            fallback = i;
            acc += e[i];
            if (u < acc)
                break;
        }
    }
    return fallback;
}

/* Top-p over the candidates list[0..nl) (all n when list is NULL): writes
 * the survivors to keep and returns their count. The histogram of buckets
 * locates the bucket holding the cut; buckets before it survive whole and
 * only the cut bucket is sorted. Bucket 0 holds the maximum, so at least
 * one candidate survives. */
static size_t samp_top_p(samp *s, const float *lg, const int32_t *ids, float m, float inv_t,
                         const uint32_t *list, size_t nl, double target)
{
    const float *e = s->prob;
    uint16_t *bk = s->bucket; /* bucket of list[j] */
    double *hs = s->hsum;
    memset(hs, 0, sizeof s->hsum);
    int top = 0;
    for (size_t j = 0; j < nl; j++) {
        size_t i = list ? list[j] : j;
        int b = samp_bucket((lg[i] - m) * inv_t);
        bk[j] = (uint16_t)b;
        hs[b] += e[i];
        top = b > top ? b : top;
    }
    double cum = 0;
    int cut = 0;
    for (; cut < top; cut++) {
        if (hs[cut] > 0 && cum + hs[cut] >= target)
            break;
        cum += hs[cut];
    }
    size_t nk = 0, nb = 0;
    for (size_t j = 0; j < nl; j++) {
        size_t i = list ? list[j] : j;
        if (bk[j] < cut) {
            s->keep[nk++] = (uint32_t)i;
        } else if (bk[j] == cut) {
            s->bnd[nb].l = samp_clean(lg[i]);
            s->bnd[nb].id = ids ? ids[i] : (int32_t)i;
            s->bnd[nb].idx = (uint32_t)i;
            nb++;
        }
    }
    qsort(s->bnd, nb, sizeof *s->bnd, samp_bcand_cmp);
    for (size_t j = 0; j < nb; j++) {
        s->keep[nk++] = s->bnd[j].idx;
        cum += e[s->bnd[j].idx];
        if (cum >= target)
            break;
    }
    return nk;
}

/* Temperature, softmax, top-p, min-p and the draw over n candidates; ids
 * NULL means the candidates are the whole vocabulary (id = index). */
static int32_t samp_draw(samp *s, const float *lg, const int32_t *ids, size_t n)
{
#define SAMP_ID(i) (ids ? ids[i] : (int32_t)(i))
    const core_sampling *p = &s->p;
    size_t im; /* the best candidate: max logit, then lowest id */
    float m = samp_max(lg, n, &im);
    if (ids)
        for (size_t i = 0; i < n; i++)
            if (lg[i] == m && ids[i] < ids[im])
                im = i;
    if (!isfinite(m)) /* all -inf/NaN, or +inf: nothing to weigh */
        return SAMP_ID(im);
    float inv_t = 1.0f / p->temperature;
    if (!isfinite(inv_t)) /* subnormal temperature: only the maximum has weight */
        return SAMP_ID(im);

    bool use_p = p->top_p < 1.0f; /* NaN: off */
    float thr = p->min_p > 0 ? (p->min_p < 1.0f ? p->min_p : 1.0f) : 0.0f; /* max e is 1 */
    float *e = s->prob;
    size_t n_near = 0;
    double total = samp_weigh(lg, n, m, inv_t, e, s->blk, use_p ? s->near : NULL, &n_near);

    uint32_t *keep = s->keep;
    size_t nk = 0;
    if (use_p) {
        double target = (double)p->top_p * total, near_mass = 0;
        if (n_near != SIZE_MAX)
            for (size_t j = 0; j < n_near; j++)
                near_mass += e[s->near[j]];
        if (n_near != SIZE_MAX && near_mass >= target)
            nk = samp_top_p(s, lg, ids, m, inv_t, s->near, n_near, target);
        else
            nk = samp_top_p(s, lg, ids, m, inv_t, NULL, n, target);
        if (thr > 0) { /* min-p keeps a prefix too: the two cuts intersect */
            size_t w = 0;
            for (size_t j = 0; j < nk; j++)
                if (e[keep[j]] >= thr)
                    keep[w++] = keep[j];
            nk = w;
        }
    } else if (thr > 0) {
        for (size_t i = 0; i < n; i++)
            if (e[i] >= thr)
                keep[nk++] = (uint32_t)i;
    } else {
        return SAMP_ID(samp_pick_all(s, e, s->blk, n, total, im));
    }
    return SAMP_ID(samp_pick_list(s, e, keep, nk, im));
#undef SAMP_ID
}

int32_t samp_sample(samp *s, float *logits)
{
    const core_sampling *p = &s->p;
    size_t n = (size_t)s->n_vocab;
    samp_penalize(s, logits);
    if (!(p->temperature > 0))
    {
        size_t at;
        samp_max(logits, n, &at);
        return (int32_t)at;
    }
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        size_t k = (size_t)p->top_k;
        if (k <= SAMP_HEAP_MAX_K)
            samp_topk_heap(s, logits, n, k);
        else
            samp_topk_select(s, logits, n, k);
        return samp_draw(s, s->klogit, s->kid, k);
    }
    return samp_draw(s, logits, NULL, n);
}
