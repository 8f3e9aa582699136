/* The CPU transformer. Shapes use E = n_embd, H = n_head, G = n_head_kv,
 * D = head_dim, F = n_ff, V = n_vocab, T = tokens in the batch, C = n_ctx.
 * A matrix W[n][k] is n rows of k elements (GGUF ne = {k, n}); y = x W^T. */
#include "llm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "pool.h"
#include "quant.h"
#include "vec.h"

enum { LLM_ARCH_LLAMA, LLM_ARCH_QWEN2 };

typedef struct {
    int type;
    int64_t k, n;
    const uint8_t *data;
    size_t row_bytes;
} llm_mat;

typedef struct {
    const float *attn_norm, *ffn_norm; /* [E] */
    llm_mat wq, wk, wv, wo;            /* [H*D][E], [G*D][E], [G*D][E], [E][H*D] */
    llm_mat wg, wu, wd;                /* [F][E], [F][E], [E][F] */
    const float *bq, *bk, *bv;         /* [H*D], [G*D], [G*D]; NULL without biases */
} llm_layer;

typedef struct {
    int arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, rope_dim;
    float rms_eps, rope_base, rope_freq_scale;
    bool rope_neox;
} llm_hparams;

struct llm {
    const gguf *g;
    llm_hparams hp;
    const quant_kernels *kern;
    const vec_ops *vec;
    pool *pool;
    llm_mat tok_embd, output;
    const float *output_norm; /* [E] */
    float *inv_freq;          /* [rope_dim/2] */
    llm_layer *layers;
    int n_ctx, n_batch, n_past;
    int64_t n_params;
    size_t weight_bytes;
    const char *ftype;
    float *k_cache, *v_cache; /* [L][G][C][D] */
    /* scratch for one batch */
    float *x, *xn, *q, *k, *v, *att, *ffg, *ffu; /* [T][E] [T][E] [T][H*D] [T][G*D] [T][G*D] [T][H*D] [T][F] [T][F] */
    float *scores;            /* [n_threads][C] */
    uint8_t *act;             /* activation rows in a weight's act type */
    size_t act_cap;
};

static const char *const llm_arch_names[] = {"llama", "qwen2"};

llm_params llm_default_params(void)
{
    return (llm_params){.n_threads = 0, .n_ctx = 0, .n_batch = 256, .isa = NULL};
}

/* ---- loading ---- */

static int llm_key_u32(const gguf *g, const char *arch, const char *suffix, uint32_t *out, bool required,
                       char *msg, size_t msg_size)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_u32(g, key, out);
    if (rc == CORE_ENOTFOUND && !required)
        return 0;
    if (rc)
        return core_errf(rc, msg, msg_size, "metadata '%s' %s", key,
                         rc == CORE_ENOTFOUND ? "is missing" : "is not a valid unsigned integer");
    return 0;
}

static int llm_key_f32(const gguf *g, const char *arch, const char *suffix, float *out, char *msg,
                       size_t msg_size)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(g, key, out);
    if (rc == CORE_ENOTFOUND)
        return 0;
    return rc ? core_errf(rc, msg, msg_size, "metadata '%s' is not a number", key) : 0;
}

static int llm_load_hparams(llm *m, char *msg, size_t msg_size)
{
    const gguf *g = m->g;
    llm_hparams *hp = &m->hp;
    const char *a;
    size_t alen;
    if (gguf_get_str(g, "general.architecture", &a, &alen))
        return core_errf(CORE_ENOTFOUND, msg, msg_size, "metadata 'general.architecture' is missing");
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)(alen < 31 ? alen : 31), a);
    if (!strcmp(arch, "llama"))
        hp->arch = LLM_ARCH_LLAMA;
    else if (!strcmp(arch, "qwen2"))
        hp->arch = LLM_ARCH_QWEN2;
    else
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size,
                         "architecture '%s' is not supported (llama, qwen2 are)", arch);
    uint32_t e = 0, l = 0, h = 0, hkv = 0, ff = 0, ctx = 0, rdim = 0, klen = 0;
    int rc;
    if ((rc = llm_key_u32(g, arch, "embedding_length", &e, true, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "block_count", &l, true, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "attention.head_count", &h, true, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "feed_forward_length", &ff, true, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "attention.head_count_kv", &hkv, false, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "context_length", &ctx, false, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "rope.dimension_count", &rdim, false, msg, msg_size)) ||
        (rc = llm_key_u32(g, arch, "attention.key_length", &klen, false, msg, msg_size)))
        return rc;
    if (!hkv)
        hkv = h;
    if (!e || !l || !h || !ff || e > 65536 || l > 1024 || h > 1024 || ff > 1 << 20 || h % hkv ||
        e % h)
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "inconsistent hyperparameters (embd %u, layers %u, heads %u/%u, ffn %u)", e,
                         l, h, hkv, ff);
    hp->n_embd = (int)e;
    hp->n_layer = (int)l;
    hp->n_head = (int)h;
    hp->n_head_kv = (int)hkv;
    hp->n_ff = (int)ff;
    hp->head_dim = (int)(e / h);
    if (klen && (int)klen != hp->head_dim)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "key_length %u != embd/heads %d", klen,
                         hp->head_dim);
    hp->rope_dim = rdim ? (int)rdim : hp->head_dim;
    if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
        return core_errf(CORE_EFORMAT, msg, msg_size, "rope.dimension_count %d is invalid", hp->rope_dim);
    hp->n_ctx_train = ctx ? (int)ctx : 2048;
    hp->rms_eps = 1e-5f;
    hp->rope_base = 10000.0f;
    hp->rope_freq_scale = 1.0f;
    if ((rc = llm_key_f32(g, arch, "attention.layer_norm_rms_epsilon", &hp->rms_eps, msg, msg_size)) ||
        (rc = llm_key_f32(g, arch, "rope.freq_base", &hp->rope_base, msg, msg_size)))
        return rc;
    char key[128];
    const char *st;
    size_t stlen;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (!gguf_get_str(g, key, &st, &stlen) && !(stlen == 4 && !memcmp(st, "none", 4))) {
        float factor = 1.0f;
        if (!(stlen == 6 && !memcmp(st, "linear", 6)))
            return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "rope scaling '%.*s' is not supported",
                             (int)stlen, st);
        if ((rc = llm_key_f32(g, arch, "rope.scaling.factor", &factor, msg, msg_size)))
            return rc;
        if (factor > 0)
            hp->rope_freq_scale = 1.0f / factor;
    }
    if (!(hp->rms_eps > 0) || !(hp->rope_base > 1))
        return core_errf(CORE_EFORMAT, msg, msg_size, "invalid rms epsilon or rope base");
    hp->rope_neox = hp->arch == LLM_ARCH_QWEN2;
    return 0;
}

/* Finds a tensor and checks its shape {k, n} (n == 0: a vector of k). */
static int llm_tensor(llm *m, const char *name, int64_t k, int64_t n, bool required, llm_mat *out,
                      char *msg, size_t msg_size)
{
    const gguf_tensor *t = gguf_find_tensor(m->g, name);
    memset(out, 0, sizeof *out);
    if (!t)
        return required ? core_errf(CORE_ENOTFOUND, msg, msg_size, "tensor '%s' is missing", name) : 0;
    int64_t tn = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != k || (n ? tn != n : tn != 1))
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                         (long long)t->ne[0], (long long)tn, (long long)k, (long long)(n ? n : 1));
    out->type = t->type;
    out->k = k;
    out->n = n ? n : 1;
    out->data = t->data;
    out->row_bytes = quant_row_size(t->type, k);
    m->n_params += k * out->n;
    if (n) {
        const quant_traits *tr = quant_traits_of(t->type);
        if (!tr || tr->act_type < 0 || !m->kern->gemm[t->type])
            return core_errf(CORE_EUNSUPPORTED, msg, msg_size,
                             "tensor '%s': type %s cannot be used for matrix products", name,
                             tr ? tr->name : "?");
    }
    return 0;
}

static int llm_vec(llm *m, const char *name, int64_t k, bool required, const float **out, char *msg,
                   size_t msg_size)
{
    llm_mat t;
    int rc = llm_tensor(m, name, k, 0, required, &t, msg, msg_size);
    *out = NULL;
    if (rc || !t.data)
        return rc;
    if (t.type != QT_F32)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "tensor '%s' must be f32", name);
    *out = (const float *)t.data;
    return 0;
}

static int llm_load_tensors(llm *m, char *msg, size_t msg_size)
{
    const llm_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, HD = (int64_t)hp->n_head * hp->head_dim,
            GD = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const gguf_tensor *te = gguf_find_tensor(m->g, "token_embd.weight");
    if (!te)
        return core_errf(CORE_ENOTFOUND, msg, msg_size, "tensor 'token_embd.weight' is missing");
    m->hp.n_vocab = (int)te->ne[1];
    int64_t V = te->ne[1];
    int rc;
    if ((rc = llm_tensor(m, "token_embd.weight", E, V, true, &m->tok_embd, msg, msg_size)) ||
        (rc = llm_vec(m, "output_norm.weight", E, true, &m->output_norm, msg, msg_size)) ||
        (rc = llm_tensor(m, "output.weight", E, V, false, &m->output, msg, msg_size)))
        return rc;
    if (!m->output.data) /* tied embeddings */
        m->output = m->tok_embd;
    else
        m->weight_bytes += m->output.row_bytes * (size_t)V;
    if (m->output.data == m->tok_embd.data)
        m->weight_bytes += m->tok_embd.row_bytes * (size_t)V;
    const float *rf = NULL;
    if ((rc = llm_vec(m, "rope_freqs.weight", hp->rope_dim / 2, false, &rf, msg, msg_size)))
        return rc;
    m->inv_freq = malloc(sizeof(float) * (size_t)(hp->rope_dim / 2));
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->inv_freq || !m->layers)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    for (int i = 0; i < hp->rope_dim / 2; i++)
        m->inv_freq[i] = powf(hp->rope_base, -2.0f * (float)i / (float)hp->rope_dim) / (rf ? rf[i] : 1.0f);
    bool bias = hp->arch == LLM_ARCH_QWEN2;
    for (int l = 0; l < hp->n_layer; l++) {
        llm_layer *ly = &m->layers[l];
        char nm[96];
#define LLM_NM(s) (snprintf(nm, sizeof nm, "blk.%d.%s", l, s), nm)
        if ((rc = llm_vec(m, LLM_NM("attn_norm.weight"), E, true, &ly->attn_norm, msg, msg_size)) ||
            (rc = llm_vec(m, LLM_NM("ffn_norm.weight"), E, true, &ly->ffn_norm, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("attn_q.weight"), E, HD, true, &ly->wq, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("attn_k.weight"), E, GD, true, &ly->wk, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("attn_v.weight"), E, GD, true, &ly->wv, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("attn_output.weight"), HD, E, true, &ly->wo, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("ffn_gate.weight"), E, F, true, &ly->wg, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("ffn_up.weight"), E, F, true, &ly->wu, msg, msg_size)) ||
            (rc = llm_tensor(m, LLM_NM("ffn_down.weight"), F, E, true, &ly->wd, msg, msg_size)) ||
            (rc = llm_vec(m, LLM_NM("attn_q.bias"), HD, bias, &ly->bq, msg, msg_size)) ||
            (rc = llm_vec(m, LLM_NM("attn_k.bias"), GD, bias, &ly->bk, msg, msg_size)) ||
            (rc = llm_vec(m, LLM_NM("attn_v.bias"), GD, bias, &ly->bv, msg, msg_size)))
            return rc;
#undef LLM_NM
        const llm_mat *mats[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->wg, &ly->wu, &ly->wd};
        for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
            m->weight_bytes += mats[i]->row_bytes * (size_t)mats[i]->n;
    }
    /* llama.cpp's file type names the mix; else the type holding most bytes */
    static const char *const ftypes[] = {
        [0] = "f32", [1] = "f16", [2] = "q4_0", [3] = "q4_1", [7] = "q8_0", [8] = "q5_0",
        [9] = "q5_1", [10] = "q2_k", [11] = "q3_k_s", [12] = "q3_k_m", [13] = "q3_k_l",
        [14] = "q4_k_s", [15] = "q4_k_m", [16] = "q5_k_s", [17] = "q5_k_m", [18] = "q6_k", [32] = "bf16"};
    uint32_t ft;
    if (!gguf_get_u32(m->g, "general.file_type", &ft) && ft < sizeof ftypes / sizeof *ftypes && ftypes[ft]) {
        m->ftype = ftypes[ft];
        return 0;
    }
    size_t by_type[QT_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(m->g); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->g, i);
        by_type[t->type] += t->size;
    }
    int best = 0;
    for (int t = 0; t < QT_COUNT; t++)
        if (by_type[t] > by_type[best])
            best = t;
    m->ftype = quant_traits_of(best)->name;
    return 0;
}

static int llm_alloc(llm *m, char *msg, size_t msg_size)
{
    const llm_hparams *hp = &m->hp;
    size_t B = (size_t)m->n_batch, E = (size_t)hp->n_embd, HD = (size_t)hp->n_head * hp->head_dim,
           GD = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff, C = (size_t)m->n_ctx;
    size_t kv = (size_t)hp->n_layer * GD * C;
    size_t kmax = E > F ? E : F;
    kmax = kmax > HD ? kmax : HD;
    m->act_cap = B * (kmax * sizeof(float) + 64);
    m->k_cache = malloc(kv * sizeof(float));
    m->v_cache = malloc(kv * sizeof(float));
    m->x = malloc(B * E * sizeof(float));
    m->xn = malloc(B * E * sizeof(float));
    m->q = malloc(B * HD * sizeof(float));
    m->k = malloc(B * GD * sizeof(float));
    m->v = malloc(B * GD * sizeof(float));
    m->att = malloc(B * HD * sizeof(float));
    m->ffg = malloc(B * F * sizeof(float));
    m->ffu = malloc(B * F * sizeof(float));
    m->scores = malloc((size_t)pool_size(m->pool) * C * sizeof(float));
    m->act = aligned_alloc(64, (m->act_cap + 63) / 64 * 64);
    if (!m->k_cache || !m->v_cache || !m->x || !m->xn || !m->q || !m->k || !m->v || !m->att ||
        !m->ffg || !m->ffu || !m->scores || !m->act)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory for the context (%zu MiB KV cache)",
                         2 * kv * sizeof(float) >> 20);
    return 0;
}

int llm_load(const gguf *g, const llm_params *p, llm **out, char *msg, size_t msg_size)
{
    *out = NULL;
    llm *m = calloc(1, sizeof *m);
    if (!m)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    m->g = g;
    int rc;
    m->kern = quant_kernels_for(p->isa);
    m->vec = m->kern ? vec_ops_for(m->kern->isa) : NULL;
    if (!m->kern || !m->vec) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "this CPU cannot run the '%s' kernels", p->isa);
        goto out;
    }
    if ((rc = llm_load_hparams(m, msg, msg_size)) || (rc = llm_load_tensors(m, msg, msg_size)))
        goto out;
    m->n_ctx = p->n_ctx > 0 ? p->n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    m->n_batch = p->n_batch > 0 ? p->n_batch : 256;
    if (m->n_batch > m->n_ctx)
        m->n_batch = m->n_ctx;
    m->pool = pool_new(p->n_threads);
    if (!m->pool) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "cannot start the thread pool");
        goto out;
    }
    if ((rc = llm_alloc(m, msg, msg_size)))
        goto out;
    *out = m;
    return 0;
out:
    llm_free(m);
    return rc;
}

void llm_free(llm *m)
{
    if (!m)
        return;
    pool_free(m->pool);
    free(m->inv_freq);
    free(m->layers);
    free(m->k_cache);
    free(m->v_cache);
    free(m->x);
    free(m->xn);
    free(m->q);
    free(m->k);
    free(m->v);
    free(m->att);
    free(m->ffg);
    free(m->ffu);
    free(m->scores);
    free(m->act);
    free(m);
}

void llm_get_info(const llm *m, llm_info *info)
{
    const llm_hparams *hp = &m->hp;
    *info = (llm_info){
        .arch = llm_arch_names[hp->arch],
        .isa = m->kern->isa,
        .ftype = m->ftype,
        .n_vocab = hp->n_vocab,
        .n_ctx = m->n_ctx,
        .n_ctx_train = hp->n_ctx_train,
        .n_embd = hp->n_embd,
        .n_layer = hp->n_layer,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .n_ff = hp->n_ff,
        .n_threads = pool_size(m->pool),
        .n_params = m->n_params,
        .weight_bytes = m->weight_bytes,
    };
}

int llm_n_past(const llm *m) { return m->n_past; }
void llm_reset(llm *m) { m->n_past = 0; }

/* ---- parallel building blocks ---- */

/* Row-wise work over T rows, a task per row. */
typedef struct {
    llm *m;
    int layer;
    void (*row)(llm *m, int layer, int t, int ith);
} llm_rows_job;

static void llm_rows_task(void *arg, int64_t t, int ith)
{
    llm_rows_job *j = arg;
    j->row(j->m, j->layer, (int)t, ith);
}

static void llm_for_rows(llm *m, int T, int layer, void (*row)(llm *, int, int, int))
{
    llm_rows_job j = {m, layer, row};
    if (T < 4) { /* a pool round trip costs more than a few short rows */
        for (int t = 0; t < T; t++)
            row(m, layer, t, 0);
        return;
    }
    pool_for(m->pool, T, llm_rows_task, &j);
}

/* Up to three products sharing one input: y_i[T][n_i] = x[T][k] W_i^T.
 * A task is a chunk of rows of one weight. */
typedef struct {
    llm *m;
    const llm_mat *w[3];
    float *y[3];
    int nw, T;
    int64_t chunk;
    int64_t first_chunk[4]; /* prefix sums of chunks per weight */
    const uint8_t *act;
    size_t act_stride;
} llm_mm_job;

static void llm_mm_task(void *arg, int64_t c, int ith)
{
    llm_mm_job *j = arg;
    (void)ith;
    int i = 0;
    while (c >= j->first_chunk[i + 1])
        i++;
    const llm_mat *w = j->w[i];
    int64_t r0 = (c - j->first_chunk[i]) * j->chunk;
    int64_t nr = w->n - r0 < j->chunk ? w->n - r0 : j->chunk;
    j->m->kern->gemm[w->type](w->k, w->data + (size_t)r0 * w->row_bytes, w->row_bytes, nr, j->act,
                              j->act_stride, j->T, j->y[i] + r0, (size_t)w->n);
}

typedef struct {
    llm *m;
    const float *x;
    int64_t k;
    int act_type;
    size_t stride;
} llm_act_job;

static void llm_act_task(void *arg, int64_t t, int ith)
{
    llm_act_job *j = arg;
    (void)ith;
    j->m->kern->act[j->act_type](j->x + (size_t)t * j->k, j->m->act + (size_t)t * j->stride, j->k);
}

/* x: [T][k]; the weights must share k and activation type. */
static void llm_matmul(llm *m, const float *x, int T, int nw, const llm_mat *const *w, float *const *y)
{
    llm_mm_job j = {.m = m, .nw = nw, .T = T, .act = m->act};
    const quant_traits *tr = quant_traits_of(w[0]->type);
    llm_act_job aj = {m, x, w[0]->k, tr->act_type, quant_row_size(tr->act_type, w[0]->k)};
    if (T < 4) {
        for (int t = 0; t < T; t++)
            llm_act_task(&aj, t, 0);
    } else {
        pool_for(m->pool, T, llm_act_task, &aj);
    }
    j.act_stride = aj.stride;
    int64_t rows = 0;
    for (int i = 0; i < nw; i++) {
        j.w[i] = w[i];
        j.y[i] = y[i];
        rows += w[i]->n;
    }
    /* A few chunks per thread balance noisy cores; multiples of 16 rows suit
     * the kernels. Decode (T == 1) streams the weights from DRAM, and each
     * chunk starts its stream cold (the kernel prefetches within its rows
     * only): one chunk per thread measured 5-8% faster decode than four
     * (qwen2.5-0.5b Q4_0 and Q8_0, 2 threads, medians of 5 interleaved
     * --bench runs), and sixteen 18% slower. */
    int nth = pool_size(m->pool);
    j.chunk = (rows / (nth * (T == 1 ? 1 : 4)) + 15) / 16 * 16;
    if (j.chunk < 16)
        j.chunk = 16;
    for (int i = 0; i < nw; i++)
        j.first_chunk[i + 1] = j.first_chunk[i] + (w[i]->n + j.chunk - 1) / j.chunk;
    pool_for(m->pool, j.first_chunk[nw], llm_mm_task, &j);
}

/* Groups the weights by activation type, so mixed quantizations still share work. */
static void llm_matmul_multi(llm *m, const float *x, int T, int nw, const llm_mat *const *w, float *const *y)
{
    bool used[3] = {false};
    for (int done = 0; done < nw;) {
        const llm_mat *gw[3];
        float *gy[3];
        int gn = 0, act = -1;
        for (int i = 0; i < nw; i++) {
            int a = quant_traits_of(w[i]->type)->act_type;
            if (used[i] || (act >= 0 && a != act))
                continue;
            act = a;
            used[i] = true;
            gw[gn] = w[i];
            gy[gn++] = y[i];
        }
        llm_matmul(m, x, T, gn, gw, gy);
        done += gn;
    }
}

/* ---- the layer ---- */

static void llm_rmsnorm(const float *x, const float *w, float *y, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float s = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        y[i] = x[i] * s * w[i];
}

static void llm_row_attn_norm(llm *m, int l, int t, int ith)
{
    (void)ith;
    size_t E = (size_t)m->hp.n_embd;
    llm_rmsnorm(m->x + t * E, m->layers[l].attn_norm, m->xn + t * E, (int)E, m->hp.rms_eps);
}

static void llm_row_ffn_norm(llm *m, int l, int t, int ith)
{
    (void)ith;
    size_t E = (size_t)m->hp.n_embd;
    llm_rmsnorm(m->x + t * E, m->layers[l].ffn_norm, m->xn + t * E, (int)E, m->hp.rms_eps);
}

static void llm_row_out_norm(llm *m, int l, int t, int ith)
{
    (void)ith;
    (void)l;
    size_t E = (size_t)m->hp.n_embd;
    llm_rmsnorm(m->x + t * E, m->output_norm, m->xn + t * E, (int)E, m->hp.rms_eps);
}

/* Rotates the first rope_dim dims of each head: pairs (2i, 2i+1) for llama's
 * permuted weights, (i, i + rope_dim/2) for NeoX-style (qwen2). */
static void llm_rope(const llm *m, float *v, int n_heads, int pos)
{
    const llm_hparams *hp = &m->hp;
    int D = hp->head_dim, half = hp->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float th = (float)pos * hp->rope_freq_scale * m->inv_freq[i];
        float c = cosf(th), s = sinf(th);
        for (int h = 0; h < n_heads; h++) {
            float *p = v + h * D;
            int a = hp->rope_neox ? i : 2 * i, b = hp->rope_neox ? i + half : 2 * i + 1;
            float x0 = p[a], x1 = p[b];
            p[a] = x0 * c - x1 * s;
            p[b] = x0 * s + x1 * c;
        }
    }
}

/* Biases, RoPE, and the new keys and values into the cache. */
static void llm_row_qkv(llm *m, int l, int t, int ith)
{
    (void)ith;
    const llm_hparams *hp = &m->hp;
    const llm_layer *ly = &m->layers[l];
    int D = hp->head_dim, H = hp->n_head, G = hp->n_head_kv, pos = m->n_past + t;
    float *q = m->q + (size_t)t * H * D, *k = m->k + (size_t)t * G * D, *v = m->v + (size_t)t * G * D;
    if (ly->bq) {
        for (int i = 0; i < H * D; i++)
            q[i] += ly->bq[i];
        for (int i = 0; i < G * D; i++) {
            k[i] += ly->bk[i];
            v[i] += ly->bv[i];
        }
    }
    llm_rope(m, q, H, pos);
    llm_rope(m, k, G, pos);
    for (int g = 0; g < G; g++) {
        size_t off = (((size_t)l * G + g) * m->n_ctx + pos) * D;
        memcpy(m->k_cache + off, k + g * D, sizeof(float) * D);
        memcpy(m->v_cache + off, v + g * D, sizeof(float) * D);
    }
}

/* Causal attention of query row t, head h over the cache: a task per (t, h),
 * so decode (T = 1) still spreads its heads over the threads. */
typedef struct {
    llm *m;
    int layer;
} llm_attn_job;

static void llm_attn_task(void *arg, int64_t task, int ith)
{
    llm_attn_job *j = arg;
    llm *m = j->m;
    const llm_hparams *hp = &m->hp;
    int D = hp->head_dim, H = hp->n_head, G = hp->n_head_kv, l = j->layer;
    int t = (int)(task / H), h = (int)(task % H), g = h / (H / G), n = m->n_past + t + 1;
    float *sc = m->scores + (size_t)ith * m->n_ctx;
    const float *q = m->q + ((size_t)t * H + h) * D;
    const float *kc = m->k_cache + ((size_t)l * G + g) * m->n_ctx * D;
    const float *vc = m->v_cache + ((size_t)l * G + g) * m->n_ctx * D;
    float scale = 1.0f / sqrtf((float)D), mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        sc[i] = m->vec->dot(q, kc + (size_t)i * D, D) * scale;
        mx = sc[i] > mx ? sc[i] : mx;
    }
    float inv = 1.0f / m->vec->exp_sum(sc, mx, n);
    for (int i = 0; i < n; i++)
        sc[i] *= inv;
    m->vec->wsum(m->att + ((size_t)t * H + h) * D, sc, vc, n, D, D);
}

static void llm_row_swiglu(llm *m, int l, int t, int ith)
{
    (void)l;
    (void)ith;
    size_t F = (size_t)m->hp.n_ff;
    m->vec->silu_mul(m->ffg + t * F, m->ffu + t * F, (int64_t)F);
}

static void llm_add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* One batch of T <= n_batch tokens at position n_past; x holds the embeddings. */
static void llm_forward(llm *m, int T)
{
    const llm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd;
    for (int l = 0; l < hp->n_layer; l++) {
        const llm_layer *ly = &m->layers[l];
        llm_for_rows(m, T, l, llm_row_attn_norm);
        const llm_mat *wqkv[3] = {&ly->wq, &ly->wk, &ly->wv};
        float *yqkv[3] = {m->q, m->k, m->v};
        llm_matmul_multi(m, m->xn, T, 3, wqkv, yqkv);
        llm_for_rows(m, T, l, llm_row_qkv);
        llm_attn_job aj = {m, l};
        pool_for(m->pool, (int64_t)T * hp->n_head, llm_attn_task, &aj);
        const llm_mat *wo = &ly->wo;
        float *yo = m->xn;
        llm_matmul(m, m->att, T, 1, &wo, &yo);
        llm_add(m->x, m->xn, (size_t)T * E);
        llm_for_rows(m, T, l, llm_row_ffn_norm);
        const llm_mat *wgu[2] = {&ly->wg, &ly->wu};
        float *ygu[2] = {m->ffg, m->ffu};
        llm_matmul_multi(m, m->xn, T, 2, wgu, ygu);
        llm_for_rows(m, T, l, llm_row_swiglu);
        const llm_mat *wd = &ly->wd;
        llm_matmul(m, m->ffg, T, 1, &wd, &yo);
        llm_add(m->x, m->xn, (size_t)T * E);
    }
    llm_for_rows(m, T, 0, llm_row_out_norm);
}

int llm_decode(llm *m, const int32_t *toks, int n, float *logits, bool all, const atomic_int *abort,
               char *msg, size_t msg_size)
{
    const llm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, V = (size_t)hp->n_vocab;
    if (n <= 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "no tokens to decode");
    if (n > m->n_ctx - m->n_past)
        return core_errf(CORE_ECONTEXT, msg, msg_size,
                         "%d tokens do not fit: the context holds %d and %d are used", n, m->n_ctx,
                         m->n_past);
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= hp->n_vocab)
            return core_errf(CORE_EINVAL, msg, msg_size, "token id %d is outside the vocabulary (%d)",
                             toks[i], hp->n_vocab);
    for (int b = 0; b < n; b += m->n_batch) {
        if (abort && atomic_load_explicit(abort, memory_order_relaxed))
            return core_errf(CORE_EABORTED, msg, msg_size, "aborted");
        int T = n - b < m->n_batch ? n - b : m->n_batch;
        for (int t = 0; t < T; t++)
            quant_dequantize_row(m->tok_embd.type,
                                 m->tok_embd.data + (size_t)toks[b + t] * m->tok_embd.row_bytes,
                                 m->x + t * E, (int64_t)E);
        llm_forward(m, T);
        const llm_mat *wout = &m->output;
        if (logits && all) {
            float *y = logits + (size_t)b * V;
            llm_matmul(m, m->xn, T, 1, &wout, &y);
        } else if (logits && b + T == n) {
            llm_matmul(m, m->xn + (size_t)(T - 1) * E, 1, 1, &wout, &logits);
        }
        m->n_past += T;
    }
    return 0;
}
