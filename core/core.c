/* core.c: the backend API of core.h. Every call goes through a backend table
 * so that a vendor runtime (RKLLM, Genie: load, synchronous run with a
 * per-token callback, abort) can be added beside the CPU backend: such a
 * backend fills the same table from its own SDK calls. */
#include "core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "chat.h"
#include "gguf.h"
#include "llm.h"
#include "sampler.h"
#include "textstream.h"
#include "tokenizer.h"

typedef struct {
    const char *name;
    int (*load)(core_model *m, const core_params *p, char *msg, size_t msg_size);
    void (*free)(core_model *m);
    int (*tokenize)(core_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                    int32_t *toks, size_t cap, size_t *n_out);
    int (*piece)(core_model *m, int32_t tok, char *buf, size_t cap, size_t *len);
    int (*chat_tokenize)(core_model *m, const core_chat_msg *msgs, size_t n_msgs, bool add_gen,
                         int32_t *toks, size_t cap, size_t *n_out);
    void (*reset)(core_model *m);
    int (*prefill)(core_model *m, const int32_t *toks, size_t n, char *msg, size_t msg_size);
    int (*generate)(core_model *m, const core_gen_params *p, core_token_cb cb, void *user,
                    core_gen_result *res, char *msg, size_t msg_size);
    int (*eval_all)(core_model *m, const int32_t *toks, size_t n, float *logits, char *msg,
                    size_t msg_size);
    int (*embed)(core_model *m, const char *const *texts, const size_t *lens, size_t n, float *out,
                 size_t *n_tokens, char *msg, size_t msg_size);
} core_backend;

struct core_model {
    const core_backend *be;
    atomic_int abort;
    core_info info;
    int chat_family;
    char *name;
    /* CPU backend */
    gguf *g;
    llm *llm;
    bert *bert; /* instead of llm for an embedding model */
    tok_vocab *vocab;
    float *logits; /* [V]: the last position's logits after a prefill */
    bool have_logits;
};

core_params core_default_params(void)
{
    return (core_params){.path = NULL, .n_threads = 0, .n_ctx = 0, .isa = NULL, .chat_template = NULL};
}

core_sampling core_default_sampling(void)
{
    return (core_sampling){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                           .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

/* ---- the CPU backend ---- */

/* An embedding model: the encoder and its WordPiece vocabulary. */
static int core_cpu_load_embed(core_model *m, const core_params *p, char *msg, size_t msg_size)
{
    bert_params bp = bert_default_params();
    bp.n_threads = p->n_threads;
    bp.n_ctx = p->n_ctx;
    bp.isa = p->isa;
    int rc;
    if ((rc = bert_load(m->g, &bp, &m->bert, msg, msg_size)) ||
        (rc = tok_load(m->g, &m->vocab, msg, msg_size)))
        return rc;
    bert_info bi;
    bert_get_info(m->bert, &bi);
    if (tok_n_vocab(m->vocab) > bi.n_vocab)
        return core_errf(CORE_EFORMAT, msg, msg_size, "the tokenizer has %d tokens, the model %d",
                         tok_n_vocab(m->vocab), bi.n_vocab);
    const char *name = NULL, *base = strrchr(p->path, '/');
    size_t nlen = 0;
    m->name = gguf_get_str(m->g, "general.name", &name, &nlen) == 0 && nlen ? strndup(name, nlen)
                                                                          : strdup(base ? base + 1 : p->path);
    if (!m->name)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    m->chat_family = chat_family_from_name("chatml"); /* never used to generate */
    m->info = (core_info){
        .backend = "cpu", .isa = bi.isa, .arch = "bert", .name = m->name, .ftype = bi.ftype,
        .chat_template = chat_family_name(m->chat_family), .n_vocab = bi.n_vocab, .n_ctx = bi.n_ctx,
        .n_ctx_train = bi.n_ctx_train, .n_embd = bi.n_embd, .n_layer = bi.n_layer,
        .n_head = bi.n_head, .n_head_kv = bi.n_head, .n_threads = bi.n_threads,
        .n_params = bi.n_params, .weight_bytes = bi.weight_bytes, .embedding = true,
        .pooling = bi.pooling,
    };
    return 0;
}

static int core_cpu_load(core_model *m, const core_params *p, char *msg, size_t msg_size)
{
    int rc = gguf_open(p->path, &m->g, msg, msg_size);
    if (rc)
        return rc;
    if (bert_is_bert(m->g))
        return core_cpu_load_embed(m, p, msg, msg_size);
    llm_params lp = llm_default_params();
    lp.n_threads = p->n_threads;
    lp.n_ctx = p->n_ctx;
    lp.isa = p->isa;
    if ((rc = llm_load(m->g, &lp, &m->llm, msg, msg_size)) ||
        (rc = tok_load(m->g, &m->vocab, msg, msg_size)))
        return rc;
    llm_info li;
    llm_get_info(m->llm, &li);
    if (tok_n_vocab(m->vocab) > li.n_vocab)
        return core_errf(CORE_EFORMAT, msg, msg_size, "the tokenizer has %d tokens, the model %d",
                         tok_n_vocab(m->vocab), li.n_vocab);
    m->logits = malloc(sizeof(float) * (size_t)li.n_vocab);
    if (!m->logits)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    const char *tmpl = NULL, *name = NULL;
    size_t tlen = 0, nlen = 0;
    gguf_get_str(m->g, "tokenizer.chat_template", &tmpl, &tlen);
    if (p->chat_template && *p->chat_template && strcmp(p->chat_template, "auto")) {
        m->chat_family = chat_family_from_name(p->chat_template);
        if (m->chat_family < 0)
            return core_errf(CORE_EINVAL, msg, msg_size, "unknown chat template '%s'", p->chat_template);
    } else {
        /* a template we cannot render: ChatML, the most common today */
        m->chat_family = chat_detect(tmpl, tlen);
        if (m->chat_family < 0)
            m->chat_family = chat_family_from_name("chatml");
    }
    if (gguf_get_str(m->g, "general.name", &name, &nlen) == 0 && nlen) {
        m->name = strndup(name, nlen);
    } else {
        const char *b = strrchr(p->path, '/');
        m->name = strdup(b ? b + 1 : p->path);
    }
    if (!m->name)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    m->info = (core_info){
        .backend = "cpu", .isa = li.isa, .arch = li.arch, .name = m->name, .ftype = li.ftype,
        .chat_template = chat_family_name(m->chat_family), .n_vocab = li.n_vocab, .n_ctx = li.n_ctx,
        .n_ctx_train = li.n_ctx_train, .n_embd = li.n_embd, .n_layer = li.n_layer,
        .n_head = li.n_head, .n_head_kv = li.n_head_kv, .n_threads = li.n_threads,
        .n_params = li.n_params, .weight_bytes = li.weight_bytes,
    };
    return 0;
}

static void core_cpu_free(core_model *m)
{
    tok_free(m->vocab);
    llm_free(m->llm);
    bert_free(m->bert);
    gguf_close(m->g);
    free(m->logits);
}

static int core_cpu_tokenize(core_model *m, const char *text, size_t len, bool add_special,
                             bool parse_special, int32_t *toks, size_t cap, size_t *n_out)
{
    return tok_encode(m->vocab, text, len, add_special, parse_special, toks, cap, n_out);
}

static int core_cpu_piece(core_model *m, int32_t tok, char *buf, size_t cap, size_t *len)
{
    return tok_piece(m->vocab, tok, buf, cap, len);
}

static int core_cpu_chat_tokenize(core_model *m, const core_chat_msg *msgs, size_t n_msgs, bool add_gen,
                                  int32_t *toks, size_t cap, size_t *n_out)
{
    size_t len = 0, n_spans = 0, max_spans = n_msgs ? n_msgs : 1;
    size_t *spans = malloc(2 * max_spans * sizeof *spans);
    char *text = NULL;
    int rc = spans ? chat_format_spans(m->chat_family, msgs, n_msgs, add_gen, NULL, 0, &len, NULL, 0,
                                       &n_spans)
                   : CORE_ENOMEM;
    if (rc == CORE_EINVAL && len) /* sized; now render for real */
        rc = (text = malloc(len + 1)) ? chat_format_spans(m->chat_family, msgs, n_msgs, add_gen, text,
                                                          len + 1, &len, spans, max_spans, &n_spans)
                                      : CORE_ENOMEM;
    if (!rc && n_spans > max_spans)
        rc = CORE_EINVAL;
    if (!rc)
        rc = tok_encode_ex(m->vocab, text ? text : "", len, true, true, spans, n_spans, toks, cap, n_out);
    free(text);
    free(spans);
    return rc;
}

static void core_cpu_reset(core_model *m)
{
    if (m->llm)
        llm_reset(m->llm);
    m->have_logits = false;
}

static int core_cpu_prefill(core_model *m, const int32_t *toks, size_t n, char *msg, size_t msg_size)
{
    if (n == 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "empty prompt");
    if (n > (size_t)(m->info.n_ctx - llm_n_past(m->llm)))
        return core_errf(CORE_ECONTEXT, msg, msg_size,
                         "the prompt has %zu tokens; the context holds %d and %d are in use", n,
                         m->info.n_ctx, llm_n_past(m->llm));
    int rc = llm_decode(m->llm, toks, (int)n, m->logits, false, &m->abort, msg, msg_size);
    m->have_logits = rc == 0;
    return rc;
}

/* Text held back by the stream (partial UTF-8, a possible stop string) goes
 * out with token id -1 when generation ends for another reason. */
static int core_cpu_flush(ts *ts, core_token_cb cb, void *user)
{
    const char *out;
    size_t len;
    if (ts_flush(ts, &out, &len) < 0)
        return 1; /* out of memory while repairing: end as if stopped by the caller */
    return len ? cb(user, -1, out, len) : 0;
}

static int core_cpu_generate(core_model *m, const core_gen_params *p, core_token_cb cb, void *user,
                             core_gen_result *res, char *msg, size_t msg_size)
{
    memset(res, 0, sizeof *res);
    if (!m->have_logits)
        return core_errf(CORE_EINVAL, msg, msg_size, "nothing was prefilled");
    if (p->max_tokens <= 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "max_tokens must be positive");
    samp *s = samp_new(&p->sampling, m->info.n_vocab);
    ts *ts = ts_new(p->stop, p->n_stop);
    int rc = 0;
    if (!s || !ts) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    char piece[256];
    for (;;) {
        if (atomic_load_explicit(&m->abort, memory_order_relaxed)) {
            res->finish = CORE_FINISH_ABORT;
            break;
        }
        int32_t tok = samp_sample(s, m->logits);
        m->have_logits = false;
        samp_accept(s, tok);
        res->n_tokens++;
        if (tok_is_eog(m->vocab, tok)) {
            res->finish = CORE_FINISH_STOP;
            if (core_cpu_flush(ts, cb, user))
                res->finish = CORE_FINISH_ABORT;
            break;
        }
        size_t plen = 0;
        if ((rc = tok_piece(m->vocab, tok, piece, sizeof piece, &plen))) {
            core_errf(rc, msg, msg_size, "token %d has no text", tok);
            goto out;
        }
        const char *out;
        size_t olen;
        int stopped = ts_push(ts, piece, plen, &out, &olen);
        if (stopped < 0) {
            rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
            goto out;
        }
        if (cb(user, tok, out, olen)) {
            res->finish = CORE_FINISH_ABORT;
            break;
        }
        if (stopped) {
            res->finish = CORE_FINISH_STOP;
            break;
        }
        if (res->n_tokens >= (size_t)p->max_tokens || llm_n_past(m->llm) >= m->info.n_ctx) {
            res->finish = CORE_FINISH_LENGTH;
            if (core_cpu_flush(ts, cb, user))
                res->finish = CORE_FINISH_ABORT;
            break;
        }
        rc = llm_decode(m->llm, &tok, 1, m->logits, false, &m->abort, msg, msg_size);
        if (rc == CORE_EABORTED) {
            rc = 0;
            res->finish = CORE_FINISH_ABORT;
            break;
        }
        if (rc)
            goto out;
        m->have_logits = true;
    }
out:
    samp_free(s);
    ts_free(ts);
    return rc;
}

static int core_cpu_eval_all(core_model *m, const int32_t *toks, size_t n, float *logits, char *msg,
                             size_t msg_size)
{
    core_cpu_reset(m);
    if (n == 0 || n > (size_t)m->info.n_ctx)
        return core_errf(n ? CORE_ECONTEXT : CORE_EINVAL, msg, msg_size,
                         "%zu tokens for a context of %d", n, m->info.n_ctx);
    return llm_decode(m->llm, toks, (int)n, logits, true, &m->abort, msg, msg_size);
}

/* Texts are tokenized one by one and packed into passes of up to n_ctx
 * tokens (bert_embed packs the same way, so a pass is one forward). */
static int core_cpu_embed(core_model *m, const char *const *texts, const size_t *lens, size_t n,
                          float *out, size_t *n_tokens, char *msg, size_t msg_size)
{
    size_t C = (size_t)m->info.n_ctx, E = (size_t)m->info.n_embd, used = 0, first = 0, cnt = 0;
    int32_t *toks = malloc(2 * C * sizeof *toks); /* [C] packed, then [C] for the next text */
    size_t *off = malloc((C + 1) * sizeof *off);  /* a pass holds at most C texts */
    int rc = toks && off ? 0 : core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    for (size_t i = 0; !rc && i <= n; i++) {
        if (i < n) {
            rc = tok_encode(m->vocab, texts[i] ? texts[i] : "", texts[i] ? lens[i] : 0, true, false,
                            toks + C, C, &cnt);
            if (rc == CORE_EINVAL && cnt > C)
                rc = core_errf(CORE_ECONTEXT, msg, msg_size,
                               "input %zu has %zu tokens; the context holds %zu", i, cnt, C);
            else if (rc)
                rc = core_errf(rc, msg, msg_size, "input %zu: tokenizing failed", i);
            if (rc)
                break;
            if (n_tokens)
                n_tokens[i] = cnt;
        }
        if (i == n || used + cnt > C) { /* run the pass so far */
            off[i - first] = used;
            if (i > first && (rc = bert_embed(m->bert, toks, off, i - first, out + first * E, &m->abort,
                                              msg, msg_size)))
                break;
            first = i;
            used = 0;
        }
        if (i < n) {
            off[i - first] = used;
            memcpy(toks + used, toks + C, cnt * sizeof *toks);
            used += cnt;
        }
    }
    free(toks);
    free(off);
    return rc;
}

static const core_backend core_cpu = {
    .name = "cpu",
    .load = core_cpu_load,
    .free = core_cpu_free,
    .tokenize = core_cpu_tokenize,
    .piece = core_cpu_piece,
    .chat_tokenize = core_cpu_chat_tokenize,
    .reset = core_cpu_reset,
    .prefill = core_cpu_prefill,
    .generate = core_cpu_generate,
    .eval_all = core_cpu_eval_all,
    .embed = core_cpu_embed,
};

/* ---- dispatch ---- */

int core_load(const core_params *p, core_model **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || !p->path)
        return core_errf(CORE_EINVAL, msg, msg_size, "no model path");
    core_model *m = calloc(1, sizeof *m);
    if (!m)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    m->be = &core_cpu; /* the one backend today: vendor files would be picked by extension */
    int rc = m->be->load(m, p, msg, msg_size);
    if (rc) {
        core_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void core_free(core_model *m)
{
    if (!m)
        return;
    m->be->free(m);
    free(m->name);
    free(m);
}

void core_get_info(const core_model *m, core_info *info) { *info = m->info; }

int core_tokenize(core_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                  int32_t *toks, size_t cap, size_t *n_out)
{
    return m->be->tokenize(m, text, len, add_special, parse_special, toks, cap, n_out);
}

int core_token_piece(core_model *m, int32_t tok, char *buf, size_t cap, size_t *len)
{
    return m->be->piece(m, tok, buf, cap, len);
}

int core_chat_format(core_model *m, const core_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                     char *buf, size_t cap, size_t *len)
{
    return chat_format(m->chat_family, msgs, n_msgs, add_generation_prompt, buf, cap, len);
}

int core_chat_tokenize(core_model *m, const core_chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                       int32_t *toks, size_t cap, size_t *n_out)
{
    return m->be->chat_tokenize(m, msgs, n_msgs, add_generation_prompt, toks, cap, n_out);
}

void core_reset(core_model *m) { m->be->reset(m); }

/* Generation on an embedding model. */
static int core_no_gen(const core_model *m, char *msg, size_t msg_size)
{
    return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "'%s' is an embedding model: it does not generate text",
                     m->name);
}

const float *core_last_logits(const core_model *m) { return m->have_logits ? m->logits : NULL; }

int core_prefill(core_model *m, const int32_t *toks, size_t n, char *msg, size_t msg_size)
{
    atomic_store(&m->abort, 0);
    if (m->info.embedding)
        return core_no_gen(m, msg, msg_size);
    return m->be->prefill(m, toks, n, msg, msg_size);
}

int core_generate(core_model *m, const core_gen_params *p, core_token_cb cb, void *user,
                  core_gen_result *res, char *msg, size_t msg_size)
{
    atomic_store(&m->abort, 0);
    if (m->info.embedding) {
        memset(res, 0, sizeof *res);
        return core_no_gen(m, msg, msg_size);
    }
    return m->be->generate(m, p, cb, user, res, msg, msg_size);
}

void core_abort(core_model *m) { atomic_store(&m->abort, 1); }

int core_eval_all(core_model *m, const int32_t *toks, size_t n, float *logits, char *msg, size_t msg_size)
{
    atomic_store(&m->abort, 0);
    if (m->info.embedding)
        return core_no_gen(m, msg, msg_size);
    return m->be->eval_all(m, toks, n, logits, msg, msg_size);
}

int core_embed_batch(core_model *m, const char *const *texts, const size_t *lens, size_t n, float *out,
                     size_t n_out, size_t *n_tokens, char *msg, size_t msg_size)
{
    atomic_store(&m->abort, 0);
    if (!m->info.embedding)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "'%s' is not an embedding model", m->name);
    if (n_out / (size_t)m->info.n_embd < n)
        return core_errf(CORE_EINVAL, msg, msg_size, "%zu floats of output for %zu vectors of %d", n_out,
                         n, m->info.n_embd);
    return m->be->embed(m, texts, lens, n, out, n_tokens, msg, msg_size);
}

int core_embed(core_model *m, const char *text, size_t len, float *out, size_t n_out, size_t *n_tokens,
               char *msg, size_t msg_size)
{
    return core_embed_batch(m, &text, &len, 1, out, n_out, n_tokens, msg, msg_size);
}
