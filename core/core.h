/* core.h: the inference backend API, the only header the gateway includes.
 *
 * One core_model is one loaded model with its context (KV cache) and serves
 * one request at a time: the calls below are not reentrant on one handle,
 * except core_abort(), which any thread or signal handler may call. This is
 * the shape of vendor NPU runtimes (Rockchip RKLLM, Qualcomm Genie: a
 * synchronous run with a per-token callback), so one can sit behind the same
 * API: core.c dispatches every call through a backend table.
 *
 * Ownership: core_load() returns a handle the caller frees with core_free().
 * Strings in core_info are owned by the handle and live until core_free().
 * Text passed to a token callback is valid only during the call.
 */
#ifndef CORE_H
#define CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core_err.h"

typedef struct core_model core_model;

typedef struct {
    const char *path;          /* model file (GGUF) */
    int n_threads;             /* 0: one per online CPU */
    int n_ctx;                 /* 0: the model's training context, capped at 4096 */
    const char *isa;           /* NULL: best the CPU runs; "scalar", "avx2", "avx512" (AVX-512 VNNI) force one */
    const char *chat_template; /* NULL: detect from metadata; else a family name (chat.h) */
} core_params;

core_params core_default_params(void);

int core_load(const core_params *p, core_model **out, char *msg, size_t msg_size);
void core_free(core_model *m); /* NULL is a no-op */

typedef struct {
    const char *backend;   /* "cpu" */
    const char *isa;       /* kernels in use */
    const char *arch;      /* "llama", "qwen2", "bert" */
    const char *name;      /* general.name, or the file's base name */
    const char *ftype;     /* dominant weight type: "q8_0", "q4_K", ... */
    const char *chat_template; /* family in use */
    int n_vocab, n_ctx, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_threads;
    int64_t n_params;
    size_t weight_bytes;   /* bytes of weights read per decoded token */
    bool embedding;        /* an embedding model (arch "bert"): core_embed, no generation */
    const char *pooling;   /* embedding models: "mean", "cls", "last"; else NULL */
} core_info;

void core_get_info(const core_model *m, core_info *info);

/* Tokenizes text. add_special adds BOS (and EOS where the vocabulary asks)
 * per the model's metadata; parse_special turns special-token text such as
 * "<|im_start|>" into its id. Writes at most cap ids; *n_out is the full
 * count, and CORE_EINVAL is returned when it exceeds cap. */
int core_tokenize(core_model *m, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t *toks, size_t cap, size_t *n_out);

/* Bytes of one token's text (may be part of a UTF-8 character). */
int core_token_piece(core_model *m, int32_t tok, char *buf, size_t cap, size_t *len);

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated */
} core_chat_msg;

/* Renders messages with the model's chat template (special tokens as text;
 * tokenize the result with parse_special). Needed size in *len, CORE_EINVAL
 * when it exceeds cap (buf then holds a truncated, NUL-terminated prefix). */
int core_chat_format(core_model *m, const core_chat_msg *msgs, size_t n_msgs,
                     bool add_generation_prompt, char *buf, size_t cap, size_t *len);

/* Renders messages with the chat template and tokenizes the result: the
 * template's special tokens become their ids, while special-token text
 * inside message contents stays text (a user cannot forge a turn). BOS per
 * the model's metadata. Ids and count as core_tokenize(). */
int core_chat_tokenize(core_model *m, const core_chat_msg *msgs, size_t n_msgs,
                       bool add_generation_prompt, int32_t *toks, size_t cap, size_t *n_out);

typedef struct {
    float temperature;       /* <= 0: greedy */
    int top_k;               /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off (llama.cpp's, over the last repeat_last_n tokens) */
    int repeat_last_n;
    float frequency_penalty; /* OpenAI's, over generated tokens */
    float presence_penalty;
    uint64_t seed;           /* same seed, same output */
} core_sampling;

core_sampling core_default_sampling(void);

/* Forgets the context (KV cache). */
void core_reset(core_model *m);

/* Appends tokens to the context and runs them in batches. CORE_ECONTEXT when
 * they do not fit; nothing is appended then. */
int core_prefill(core_model *m, const int32_t *toks, size_t n, char *msg, size_t msg_size);

/* The last prefilled position's logits (n_vocab floats), valid until the
 * next call on m; NULL when there are none (after a reset or a generate, or
 * on a backend that does not expose them). */
const float *core_last_logits(const core_model *m);

/* Called once per generated token with its text: complete UTF-8 characters
 * only, stop strings removed (text may be empty while bytes are held back).
 * Return nonzero to stop generation (finish CORE_FINISH_ABORT). When
 * generation ends with text still held back (a partial stop string at the
 * length limit), one last call brings it with tok == -1. */
typedef int (*core_token_cb)(void *user, int32_t tok, const char *text, size_t len);

typedef struct {
    int max_tokens;            /* > 0 */
    core_sampling sampling;
    const char *const *stop;   /* stop strings, borrowed for the call */
    size_t n_stop;
} core_gen_params;

typedef enum {
    CORE_FINISH_STOP = 0, /* end-of-generation token or stop string */
    CORE_FINISH_LENGTH,   /* max_tokens or the context is full */
    CORE_FINISH_ABORT     /* callback or core_abort() */
} core_finish;

typedef struct {
    size_t n_tokens;      /* generated tokens (sampled, including a final EOG) */
    core_finish finish;
} core_gen_result;

/* Generates after the tokens prefilled so far. Returns 0 also when stopped by
 * the callback or core_abort() (see result.finish); errors otherwise. */
int core_generate(core_model *m, const core_gen_params *p, core_token_cb cb, void *user,
                  core_gen_result *res, char *msg, size_t msg_size);

/* Asks a running core_prefill/core_generate to stop at the next token
 * boundary. Async-signal-safe. Cleared by the next prefill or generate. */
void core_abort(core_model *m);

/* Embeds text with an embedding model: tokenized with the model's special
 * tokens ([CLS] ... [SEP]; empty text is fine), encoded, pooled and
 * L2-normalised into out[0 .. n_embd). n_out is out's size in floats (at
 * least n_embd); *n_tokens (may be NULL) gets the token count.
 * CORE_EUNSUPPORTED for a generative model, CORE_ECONTEXT when the text has
 * more tokens than the context (msg says how many). On an embedding model
 * core_prefill, core_generate and core_eval_all return CORE_EUNSUPPORTED. */
int core_embed(core_model *m, const char *text, size_t len, float *out, size_t n_out,
               size_t *n_tokens, char *msg, size_t msg_size);

/* core_embed over n texts at once (short texts share forward passes):
 * vector i goes to out[i * n_embd ...], n_out >= n * n_embd; n_tokens (may
 * be NULL) gets n counts. lens[i] is the length of texts[i]. On error msg
 * names the text at fault and out is undefined. */
int core_embed_batch(core_model *m, const char *const *texts, const size_t *lens, size_t n,
                     float *out, size_t n_out, size_t *n_tokens, char *msg, size_t msg_size);

/* Runs toks as one batch from position 0 (after a reset) and writes every
 * position's logits, logits[i * n_vocab + v]. For reference comparisons. */
int core_eval_all(core_model *m, const int32_t *toks, size_t n, float *logits, char *msg,
                  size_t msg_size);

#endif
