/* The CPU BERT encoder. Shapes use E = n_embd, H = n_head, D = head_dim
 * (E = H*D), F = n_ff, V = n_vocab, P = positions in the table, C = n_ctx,
 * T = token rows in one pass (several sequences packed back to back).
 * A matrix W[n][k] is n rows of k elements (GGUF ne = {k, n}); y = x W^T + b.
 *
 * Per layer (post-LayerNorm, as BERT was trained):
 *   x = LN1(x + (softmax(Q K^T / sqrt(D)) V) Wo^T + bo)   attention within each sequence
 *   x = LN2(x + GELU(x Wu^T + bu) Wd^T + bd)              GELU with erf, as BERT's "gelu"
 */
#include "bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "pool.h"
#include "quant.h"
#include "vec.h"

enum { BERT_POOL_MEAN = 1, BERT_POOL_CLS = 2, BERT_POOL_LAST = 3 };

typedef struct {
    int type;
    int64_t k, n;
    const uint8_t *data;
    size_t row_bytes;
} bert_mat;

typedef struct {
    bert_mat wq, wk, wv, wo;          /* [E][E] each */
    const float *bq, *bk, *bv, *bo;   /* [E] each */
    const float *ln1_w, *ln1_b;       /* attn_output_norm: [E] */
    bert_mat wu, wd;                  /* [F][E], [E][F] */
    const float *bu, *bd;             /* [F], [E] */
    const float *ln2_w, *ln2_b;       /* layer_output_norm: [E] */
} bert_layer;

struct bert {
    const gguf *g;
    const quant_kernels *kern;
    const vec_ops *vec;
    pool *pool;
    int n_vocab, n_embd, n_layer, n_head, head_dim, n_ff, n_pos, n_ctx_train, n_ctx, pooling;
    float eps;
    bert_mat tok_embd;                  /* [V][E] */
    bert_mat pos_embd;                  /* [P][E] */
    bert_mat type_embd;                 /* [types][E]; row 0 is added; absent: data NULL */
    const float *embd_ln_w, *embd_ln_b; /* token_embd_norm: [E] */
    bert_layer *layers;
    int64_t n_params;
    size_t weight_bytes;
    const char *ftype;
    /* scratch for one pass of T <= C rows */
    float *x, *y, *q, *k, *v, *att; /* [C][E] each */
    float *ff;                      /* [C][F] */
    float *scores;                  /* [n_threads][C] */
    int *row_seq0, *row_len;        /* [C]: first row and length of each row's sequence */
    uint8_t *act;                   /* activation rows in a weight's act type */
};

bert_params bert_default_params(void) { return (bert_params){.n_threads = 0, .n_ctx = 0, .isa = NULL}; }

bool bert_is_bert(const gguf *g)
{
    const char *a;
    size_t n;
    return gguf_get_str(g, "general.architecture", &a, &n) == 0 && n == 4 && !memcmp(a, "bert", 4);
}

/* ---- loading ---- */

/* Finds a tensor and checks its shape {k, n} (n == 0: a vector of k). */
static int bert_tensor(bert *b, const char *name, int64_t k, int64_t n, bool required, bert_mat *out,
                       char *msg, size_t msg_size)
{
    const gguf_tensor *t = gguf_find_tensor(b->g, name);
    memset(out, 0, sizeof *out);
    if (!t)
        return required ? core_errf(CORE_ENOTFOUND, msg, msg_size, "tensor '%s' is missing", name) : 0;
    int64_t tn = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != k || (n > 0 ? tn != n : n == 0 ? tn != 1 : tn < 1))
        return core_errf(CORE_EFORMAT, msg, msg_size, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
                         name, (long long)t->ne[0], (long long)tn, (long long)k, (long long)(n ? n : 1));
    const quant_traits *tr = quant_traits_of(t->type);
    out->type = t->type;
    out->k = k;
    out->n = tn;
    out->data = t->data;
    out->row_bytes = quant_row_size(t->type, k);
    b->n_params += k * tn;
    if (!tr || !out->row_bytes)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "tensor '%s' has an unsupported type", name);
    return 0;
}

/* A weight matrix: its type needs a product kernel. */
static int bert_weight(bert *b, const char *name, int64_t k, int64_t n, bert_mat *out, char *msg,
                       size_t msg_size)
{
    int rc = bert_tensor(b, name, k, n, true, out, msg, msg_size);
    if (rc)
        return rc;
    const quant_traits *tr = quant_traits_of(out->type);
    if (tr->act_type < 0 || !b->kern->gemm[out->type] || !b->kern->act[tr->act_type])
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size,
                         "tensor '%s': type %s cannot be used for matrix products", name, tr->name);
    b->weight_bytes += out->row_bytes * (size_t)n;
    return 0;
}

static int bert_vec(bert *b, const char *name, int64_t k, const float **out, char *msg, size_t msg_size)
{
    bert_mat t;
    int rc = bert_tensor(b, name, k, 0, true, &t, msg, msg_size);
    *out = NULL;
    if (rc)
        return rc;
    if (t.type != QT_F32)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "tensor '%s' must be f32", name);
    *out = (const float *)t.data;
    return 0;
}

static int bert_u32(const gguf *g, const char *key, uint32_t *out, bool required, char *msg,
                    size_t msg_size)
{
    int rc = gguf_get_u32(g, key, out);
    if (rc == CORE_ENOTFOUND && !required)
        return 0;
    return rc ? core_errf(rc, msg, msg_size, "metadata '%s' %s", key,
                          rc == CORE_ENOTFOUND ? "is missing" : "is not a valid unsigned integer")
              : 0;
}

static int bert_load_hparams(bert *b, char *msg, size_t msg_size)
{
    const gguf *g = b->g;
    uint32_t e = 0, l = 0, h = 0, ff = 0, ctx = 0, pool_type = BERT_POOL_MEAN;
    bool causal = false;
    int rc;
    if ((rc = bert_u32(g, "bert.embedding_length", &e, true, msg, msg_size)) ||
        (rc = bert_u32(g, "bert.block_count", &l, true, msg, msg_size)) ||
        (rc = bert_u32(g, "bert.attention.head_count", &h, true, msg, msg_size)) ||
        (rc = bert_u32(g, "bert.feed_forward_length", &ff, true, msg, msg_size)) ||
        (rc = bert_u32(g, "bert.context_length", &ctx, false, msg, msg_size)) ||
        (rc = bert_u32(g, "bert.pooling_type", &pool_type, false, msg, msg_size)))
        return rc;
    if (!e || !l || !h || !ff || e > 65536 || l > 1024 || h > 1024 || ff > 1 << 20 || e % h)
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "inconsistent hyperparameters (embd %u, layers %u, heads %u, ffn %u)", e, l, h, ff);
    b->n_embd = (int)e;
    b->n_layer = (int)l;
    b->n_head = (int)h;
    b->head_dim = (int)(e / h);
    b->n_ff = (int)ff;
    b->n_ctx_train = (int)ctx;
    b->eps = 1e-12f;
    rc = gguf_get_f32(g, "bert.attention.layer_norm_epsilon", &b->eps);
    if ((rc && rc != CORE_ENOTFOUND) || !(b->eps > 0) || b->eps > 1)
        return core_errf(CORE_EFORMAT, msg, msg_size, "metadata 'bert.attention.layer_norm_epsilon' is invalid");
    rc = gguf_get_bool(g, "bert.attention.causal", &causal);
    if (rc && rc != CORE_ENOTFOUND)
        return core_errf(CORE_EFORMAT, msg, msg_size, "metadata 'bert.attention.causal' is not a bool");
    if (causal)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "causal attention in a bert model is not supported");
    /* llama.cpp's numbering; "none" (per-token vectors) makes no sentence
     * embedding, so it reads as the common mean pooling */
    if (pool_type == 0)
        pool_type = BERT_POOL_MEAN;
    if (pool_type > BERT_POOL_LAST)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size,
                         "bert.pooling_type %u is not supported (1 mean, 2 cls, 3 last are)", pool_type);
    b->pooling = (int)pool_type;
    return 0;
}

static const char *bert_ftype(const bert *b)
{
    static const char *const names[] = {[0] = "f32", [1] = "f16", [2] = "q4_0", [3] = "q4_1",
                                        [7] = "q8_0", [8] = "q5_0", [9] = "q5_1", [32] = "bf16"};
    uint32_t ft;
    if (!gguf_get_u32(b->g, "general.file_type", &ft) && ft < sizeof names / sizeof *names && names[ft])
        return names[ft];
    size_t by_type[QT_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(b->g); i++) {
        const gguf_tensor *t = gguf_tensor_at(b->g, i);
        by_type[t->type] += t->size;
    }
    int best = 0;
    for (int t = 0; t < QT_COUNT; t++)
        if (by_type[t] > by_type[best])
            best = t;
    return quant_traits_of(best)->name;
}

static int bert_load_tensors(bert *b, char *msg, size_t msg_size)
{
    int64_t E = b->n_embd, F = b->n_ff;
    const gguf_tensor *te = gguf_find_tensor(b->g, "token_embd.weight");
    const gguf_tensor *tp = gguf_find_tensor(b->g, "position_embd.weight");
    if (!te || !tp)
        return core_errf(CORE_ENOTFOUND, msg, msg_size, "tensor '%s' is missing",
                         te ? "position_embd.weight" : "token_embd.weight");
    if (te->ne[1] < 1 || te->ne[1] > INT32_MAX || tp->ne[1] < 1 || tp->ne[1] > 1 << 20)
        return core_errf(CORE_EFORMAT, msg, msg_size, "token or position table has a bad size");
    b->n_vocab = (int)te->ne[1];
    b->n_pos = (int)tp->ne[1];
    int rc;
    if ((rc = bert_tensor(b, "token_embd.weight", E, b->n_vocab, true, &b->tok_embd, msg, msg_size)) ||
        (rc = bert_tensor(b, "position_embd.weight", E, b->n_pos, true, &b->pos_embd, msg, msg_size)) ||
        (rc = bert_tensor(b, "token_types.weight", E, -1, false, &b->type_embd, msg, msg_size)) ||
        (rc = bert_vec(b, "token_embd_norm.weight", E, &b->embd_ln_w, msg, msg_size)) ||
        (rc = bert_vec(b, "token_embd_norm.bias", E, &b->embd_ln_b, msg, msg_size)))
        return rc;
    b->layers = calloc((size_t)b->n_layer, sizeof *b->layers);
    if (!b->layers)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    for (int l = 0; l < b->n_layer; l++) {
        bert_layer *ly = &b->layers[l];
        char nm[96];
#define BERT_NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        if ((rc = bert_weight(b, BERT_NM("attn_q.weight"), E, E, &ly->wq, msg, msg_size)) ||
            (rc = bert_weight(b, BERT_NM("attn_k.weight"), E, E, &ly->wk, msg, msg_size)) ||
            (rc = bert_weight(b, BERT_NM("attn_v.weight"), E, E, &ly->wv, msg, msg_size)) ||
            (rc = bert_weight(b, BERT_NM("attn_output.weight"), E, E, &ly->wo, msg, msg_size)) ||
            (rc = bert_weight(b, BERT_NM("ffn_up.weight"), E, F, &ly->wu, msg, msg_size)) ||
            (rc = bert_weight(b, BERT_NM("ffn_down.weight"), F, E, &ly->wd, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_q.bias"), E, &ly->bq, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_k.bias"), E, &ly->bk, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_v.bias"), E, &ly->bv, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_output.bias"), E, &ly->bo, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_output_norm.weight"), E, &ly->ln1_w, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("attn_output_norm.bias"), E, &ly->ln1_b, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("ffn_up.bias"), F, &ly->bu, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("ffn_down.bias"), E, &ly->bd, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("layer_output_norm.weight"), E, &ly->ln2_w, msg, msg_size)) ||
            (rc = bert_vec(b, BERT_NM("layer_output_norm.bias"), E, &ly->ln2_b, msg, msg_size)))
            return rc;
#undef BERT_NM
    }
    b->ftype = bert_ftype(b);
    return 0;
}

static int bert_alloc(bert *b, char *msg, size_t msg_size)
{
    size_t C = (size_t)b->n_ctx, E = (size_t)b->n_embd, F = (size_t)b->n_ff;
    size_t act_row = (E > F ? E : F) * sizeof(float) + 64; /* the largest activation row of any type */
    b->x = malloc(C * E * sizeof(float));
    b->y = malloc(C * E * sizeof(float));
    b->q = malloc(C * E * sizeof(float));
    b->k = malloc(C * E * sizeof(float));
    b->v = malloc(C * E * sizeof(float));
    b->att = malloc(C * E * sizeof(float));
    b->ff = malloc(C * F * sizeof(float));
    b->scores = malloc((size_t)pool_size(b->pool) * C * sizeof(float));
    b->row_seq0 = malloc(C * sizeof(int));
    b->row_len = malloc(C * sizeof(int));
    b->act = aligned_alloc(64, (C * act_row + 63) / 64 * 64);
    if (!b->x || !b->y || !b->q || !b->k || !b->v || !b->att || !b->ff || !b->scores || !b->row_seq0 ||
        !b->row_len || !b->act)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory for %zu tokens of scratch", C);
    return 0;
}

int bert_load(const gguf *g, const bert_params *p, bert **out, char *msg, size_t msg_size)
{
    *out = NULL;
    bert *b = calloc(1, sizeof *b);
    if (!b)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    b->g = g;
    int rc;
    b->kern = quant_kernels_for(p->isa);
    b->vec = b->kern ? vec_ops_for(b->kern->isa) : NULL;
    if (!b->kern || !b->vec) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "this CPU cannot run the '%s' kernels", p->isa);
        goto out;
    }
    if (!bert_is_bert(g)) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "not a bert model");
        goto out;
    }
    if ((rc = bert_load_hparams(b, msg, msg_size)) || (rc = bert_load_tensors(b, msg, msg_size)))
        goto out;
    if (!b->n_ctx_train || b->n_ctx_train > b->n_pos)
        b->n_ctx_train = b->n_pos;
    b->n_ctx = p->n_ctx > 0 && p->n_ctx < b->n_ctx_train ? p->n_ctx : b->n_ctx_train;
    if (!(b->pool = pool_new(p->n_threads))) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "cannot start the thread pool");
        goto out;
    }
    if ((rc = bert_alloc(b, msg, msg_size)))
        goto out;
    /* rows of the embedding tables are converted one at a time */
    const bert_mat *tables[] = {&b->tok_embd, &b->pos_embd, &b->type_embd};
    for (size_t i = 0; i < 3; i++)
        if (tables[i]->data && quant_dequantize_row(tables[i]->type, tables[i]->data, b->y, b->n_embd)) {
            rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "an embedding table's type %s has no converter",
                           quant_traits_of(tables[i]->type)->name);
            goto out;
        }
    *out = b;
    return 0;
out:
    bert_free(b);
    return rc;
}

void bert_free(bert *b)
{
    if (!b)
        return;
    pool_free(b->pool);
    free(b->layers);
    free(b->x);
    free(b->y);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->att);
    free(b->ff);
    free(b->scores);
    free(b->row_seq0);
    free(b->row_len);
    free(b->act);
    free(b);
}

void bert_get_info(const bert *b, bert_info *info)
{
    static const char *const pools[] = {[BERT_POOL_MEAN] = "mean", [BERT_POOL_CLS] = "cls",
                                        [BERT_POOL_LAST] = "last"};
    *info = (bert_info){
        .isa = b->kern->isa, .ftype = b->ftype, .pooling = pools[b->pooling], .n_vocab = b->n_vocab,
        .n_ctx = b->n_ctx, .n_ctx_train = b->n_ctx_train, .n_embd = b->n_embd, .n_layer = b->n_layer,
        .n_head = b->n_head, .n_ff = b->n_ff, .n_threads = pool_size(b->pool), .n_params = b->n_params,
        .weight_bytes = b->weight_bytes,
    };
}

/* ---- parallel building blocks ---- */

typedef struct {
    bert *b;
    const bert_layer *ly;
    void (*row)(bert *b, const bert_layer *ly, int t);
} bert_rows_job;

static void bert_rows_task(void *arg, int64_t t, int ith)
{
    (void)ith;
    bert_rows_job *j = arg;
    j->row(j->b, j->ly, (int)t);
}

static void bert_for_rows(bert *b, int T, const bert_layer *ly, void (*row)(bert *, const bert_layer *, int))
{
    bert_rows_job j = {b, ly, row};
    pool_for(b->pool, T, bert_rows_task, &j);
}

/* Products sharing one input x[T][k]: y_i[T][n_i] = x W_i^T, every weight
 * of the same activation type. A task is a chunk of rows of one weight. */
typedef struct {
    bert *b;
    const bert_mat *w[3];
    float *y[3];
    int T;
    int64_t chunk, first[4]; /* prefix sums of chunks per weight */
    size_t act_stride;
    const uint8_t *act; /* the input rows in the weights' activation type */
    const float *x;
    int act_type;
} bert_mm_job;

static void bert_act_task(void *arg, int64_t t, int ith)
{
    (void)ith;
    bert_mm_job *j = arg;
    int64_t k = j->w[0]->k;
    j->b->kern->act[j->act_type](j->x + t * k, j->b->act + (size_t)t * j->act_stride, k);
}

static void bert_mm_task(void *arg, int64_t c, int ith)
{
    (void)ith;
    bert_mm_job *j = arg;
    int i = 0;
    while (c >= j->first[i + 1])
        i++;
    const bert_mat *w = j->w[i];
    int64_t r0 = (c - j->first[i]) * j->chunk, nr = w->n - r0 < j->chunk ? w->n - r0 : j->chunk;
    j->b->kern->gemm[w->type](w->k, w->data + (size_t)r0 * w->row_bytes, w->row_bytes, nr, j->act,
                              j->act_stride, j->T, j->y[i] + r0, (size_t)w->n);
}

static void bert_matmul(bert *b, const float *x, int T, int nw, const bert_mat *const *w, float *const *y)
{
    for (int done = 0; done < nw;) {
        bert_mm_job j = {.b = b, .T = T, .x = x, .act_type = quant_traits_of(w[done]->type)->act_type};
        int n = 0;
        /* weights of one activation type share the converted input */
        for (int i = done; i < nw && quant_traits_of(w[i]->type)->act_type == j.act_type; i++, n++) {
            j.w[n] = w[i];
            j.y[n] = y[i];
        }
        j.act_stride = quant_row_size(j.act_type, w[done]->k);
        j.act = (const uint8_t *)x;
        if (j.act_type != QT_F32) { /* F32 activations are the input itself */
            j.act = b->act;
            pool_for(b->pool, T, bert_act_task, &j);
        }
        int64_t rows = 0;
        for (int i = 0; i < n; i++)
            rows += j.w[i]->n;
        j.chunk = (rows / (pool_size(b->pool) * 4) + 15) / 16 * 16;
        if (j.chunk < 16)
            j.chunk = 16;
        for (int i = 0; i < n; i++)
            j.first[i + 1] = j.first[i] + (j.w[i]->n + j.chunk - 1) / j.chunk;
        pool_for(b->pool, j.first[n], bert_mm_task, &j);
        done += n;
    }
}

/* ---- the layer ---- */

static void bert_layernorm(const float *x, const float *w, const float *bias, float *y, int n, float eps)
{
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    float mean = (float)(s / n);
    for (int i = 0; i < n; i++)
        ss += (double)(x[i] - mean) * (x[i] - mean);
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = (x[i] - mean) * r * w[i] + bias[i];
}

static void bert_row_qkv_bias(bert *b, const bert_layer *ly, int t)
{
    size_t E = (size_t)b->n_embd;
    float *q = b->q + t * E, *k = b->k + t * E, *v = b->v + t * E;
    for (size_t i = 0; i < E; i++) {
        q[i] += ly->bq[i];
        k[i] += ly->bk[i];
        v[i] += ly->bv[i];
    }
}

/* Attention of row t, head h over the rows of its own sequence. */
typedef struct {
    bert *b;
} bert_attn_job;

static void bert_attn_task(void *arg, int64_t task, int ith)
{
    bert *b = ((bert_attn_job *)arg)->b;
    int H = b->n_head, D = b->head_dim, t = (int)(task / H), h = (int)(task % H);
    size_t E = (size_t)b->n_embd;
    int s0 = b->row_seq0[t], n = b->row_len[t];
    float *sc = b->scores + (size_t)ith * b->n_ctx;
    const float *q = b->q + t * E + (size_t)h * D;
    const float *k = b->k + s0 * E + (size_t)h * D; /* [n][E], this head's D columns */
    float scale = 1.0f / sqrtf((float)D), mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        sc[i] = b->vec->dot(q, k + i * E, D) * scale;
        mx = sc[i] > mx ? sc[i] : mx;
    }
    float inv = 1.0f / b->vec->exp_sum(sc, mx, n);
    for (int i = 0; i < n; i++)
        sc[i] *= inv;
    b->vec->wsum(b->att + t * E + (size_t)h * D, sc, b->v + s0 * E + (size_t)h * D, n, D, (int64_t)E);
}

/* y holds the attention output's projection: x = LN1(x + y + bo). */
static void bert_row_attn_out(bert *b, const bert_layer *ly, int t)
{
    size_t E = (size_t)b->n_embd;
    float *x = b->x + t * E, *y = b->y + t * E;
    for (size_t i = 0; i < E; i++)
        y[i] += x[i] + ly->bo[i];
    bert_layernorm(y, ly->ln1_w, ly->ln1_b, x, (int)E, b->eps);
}

static void bert_row_gelu(bert *b, const bert_layer *ly, int t)
{
    size_t F = (size_t)b->n_ff;
    float *f = b->ff + t * F;
    for (size_t i = 0; i < F; i++) {
        float u = f[i] + ly->bu[i];
        f[i] = 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
    }
}

/* y holds the FFN's down projection: x = LN2(x + y + bd). */
static void bert_row_ffn_out(bert *b, const bert_layer *ly, int t)
{
    size_t E = (size_t)b->n_embd;
    float *x = b->x + t * E, *y = b->y + t * E;
    for (size_t i = 0; i < E; i++)
        y[i] += x[i] + ly->bd[i];
    bert_layernorm(y, ly->ln2_w, ly->ln2_b, x, (int)E, b->eps);
}

static void bert_forward(bert *b, int T)
{
    for (int l = 0; l < b->n_layer; l++) {
        const bert_layer *ly = &b->layers[l];
        const bert_mat *wqkv[3] = {&ly->wq, &ly->wk, &ly->wv};
        float *yqkv[3] = {b->q, b->k, b->v};
        bert_matmul(b, b->x, T, 3, wqkv, yqkv);
        bert_for_rows(b, T, ly, bert_row_qkv_bias);
        bert_attn_job aj = {b};
        pool_for(b->pool, (int64_t)T * b->n_head, bert_attn_task, &aj);
        const bert_mat *wo = &ly->wo, *wu = &ly->wu, *wd = &ly->wd;
        bert_matmul(b, b->att, T, 1, &wo, &b->y);
        bert_for_rows(b, T, ly, bert_row_attn_out);
        bert_matmul(b, b->x, T, 1, &wu, &b->ff);
        bert_for_rows(b, T, ly, bert_row_gelu);
        bert_matmul(b, b->ff, T, 1, &wd, &b->y);
        bert_for_rows(b, T, ly, bert_row_ffn_out);
    }
}

/* x[t] = LN(token + position + type 0 embeddings); row t is position t - s0. */
static void bert_row_embed(bert *b, const int32_t *toks, int t)
{
    size_t E = (size_t)b->n_embd;
    float *x = b->x + t * E, *y = b->y + t * E;
    int pos = t - b->row_seq0[t];
    quant_dequantize_row(b->tok_embd.type, b->tok_embd.data + (size_t)toks[t] * b->tok_embd.row_bytes, x,
                         (int64_t)E);
    quant_dequantize_row(b->pos_embd.type, b->pos_embd.data + (size_t)pos * b->pos_embd.row_bytes, y,
                         (int64_t)E);
    for (size_t i = 0; i < E; i++)
        x[i] += y[i];
    if (b->type_embd.data) {
        quant_dequantize_row(b->type_embd.type, b->type_embd.data, y, (int64_t)E);
        for (size_t i = 0; i < E; i++)
            x[i] += y[i];
    }
    bert_layernorm(x, b->embd_ln_w, b->embd_ln_b, x, (int)E, b->eps);
}

typedef struct {
    bert *b;
    const int32_t *toks;
} bert_embed_job;

static void bert_embed_task(void *arg, int64_t t, int ith)
{
    (void)ith;
    bert_embed_job *j = arg;
    bert_row_embed(j->b, j->toks, (int)t);
}

/* Pools rows [s0, s0 + n) into out[E] and normalises it. */
static void bert_pool(const bert *b, int s0, int n, float *out)
{
    size_t E = (size_t)b->n_embd;
    if (b->pooling == BERT_POOL_MEAN) {
        for (size_t i = 0; i < E; i++) {
            double s = 0;
            for (int t = 0; t < n; t++)
                s += b->x[(s0 + t) * E + i];
            out[i] = (float)(s / n);
        }
    } else {
        memcpy(out, b->x + (b->pooling == BERT_POOL_CLS ? s0 : s0 + n - 1) * E, E * sizeof(float));
    }
    double ss = 0;
    for (size_t i = 0; i < E; i++)
        ss += (double)out[i] * out[i];
    float r = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (size_t i = 0; i < E; i++)
        out[i] *= r;
}

int bert_embed(bert *b, const int32_t *toks, const size_t *off, size_t n_seq, float *out,
               const atomic_int *abort, char *msg, size_t msg_size)
{
    for (size_t i = 0; i < n_seq; i++) {
        size_t n = off[i + 1] - off[i];
        if (off[i + 1] < off[i] || n == 0 || n > (size_t)b->n_ctx)
            return core_errf(n ? CORE_ECONTEXT : CORE_EINVAL, msg, msg_size,
                             "sequence %zu has %zu tokens; the context holds %d", i, n, b->n_ctx);
        for (size_t t = off[i]; t < off[i + 1]; t++)
            if (toks[t] < 0 || toks[t] >= b->n_vocab)
                return core_errf(CORE_EINVAL, msg, msg_size, "token id %d is outside the vocabulary (%d)",
                                 toks[t], b->n_vocab);
    }
    for (size_t s = 0; s < n_seq;) {
        if (abort && atomic_load_explicit(abort, memory_order_relaxed))
            return core_errf(CORE_EABORTED, msg, msg_size, "aborted");
        /* pack whole sequences into one pass of at most n_ctx rows */
        size_t e = s, T = 0;
        for (; e < n_seq && T + (off[e + 1] - off[e]) <= (size_t)b->n_ctx; e++)
            T += off[e + 1] - off[e];
        for (size_t i = s; i < e; i++)
            for (size_t t = off[i]; t < off[i + 1]; t++) {
                b->row_seq0[t - off[s]] = (int)(off[i] - off[s]);
                b->row_len[t - off[s]] = (int)(off[i + 1] - off[i]);
            }
        bert_embed_job ej = {b, toks + off[s]};
        pool_for(b->pool, (int64_t)T, bert_embed_task, &ej);
        bert_forward(b, (int)T);
        for (size_t i = s; i < e; i++)
            bert_pool(b, (int)(off[i] - off[s]), (int)(off[i + 1] - off[i]), out + i * (size_t)b->n_embd);
        s = e;
    }
    return 0;
}
