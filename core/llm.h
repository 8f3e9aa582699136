/* llm.h: the CPU transformer (architectures llama and qwen2) over GGUF
 * weights used in place. Internal to core/: the gateway uses core.h.
 *
 * Ownership: llm_load() borrows the gguf handle, whose mapping holds the
 * weights, until llm_free(); it allocates the KV cache and scratch once, so
 * decoding allocates nothing.
 */
#ifndef LLM_H
#define LLM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct llm llm;

typedef struct {
    int n_threads;   /* <= 0: one per online CPU */
    int n_ctx;       /* <= 0: training context, capped at 4096 */
    int n_batch;     /* tokens per forward pass; <= 0: 256 */
    const char *isa; /* NULL: best */
} llm_params;

llm_params llm_default_params(void);

int llm_load(const gguf *g, const llm_params *p, llm **out, char *msg, size_t msg_size);
void llm_free(llm *m); /* NULL is a no-op */

typedef struct {
    const char *arch, *isa, *ftype;
    int n_vocab, n_ctx, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff, n_threads;
    int64_t n_params;
    size_t weight_bytes; /* matrix bytes read per decoded token */
} llm_info;

void llm_get_info(const llm *m, llm_info *info);

int llm_n_past(const llm *m); /* tokens in the KV cache */
void llm_reset(llm *m);

/* Appends n tokens at position llm_n_past() and runs them (in batches of
 * n_batch). logits: NULL for none; else n_vocab floats for the last token
 * (all == false) or n * n_vocab for every token (all == true). Stops between
 * batches when *abort becomes nonzero (CORE_EABORTED; the cache then holds
 * the batches that ran). CORE_ECONTEXT when the tokens do not fit. */
int llm_decode(llm *m, const int32_t *toks, int n, float *logits, bool all,
               const atomic_int *abort, char *msg, size_t msg_size);

#endif
