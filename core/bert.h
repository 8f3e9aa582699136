/* bert.h: the CPU BERT encoder (GGUF architecture "bert", tensors and keys
 * as llama.cpp names them) computing sentence embeddings: learned absolute
 * positions, post-LayerNorm blocks, bidirectional attention, GELU FFN, then
 * mean / CLS / last-token pooling and L2 normalisation. Internal to core/:
 * the gateway uses core_embed() of core.h.
 *
 * Ownership: bert_load() borrows the gguf handle, whose mapping holds the
 * weights, until bert_free(); scratch for one batch of n_ctx tokens is
 * allocated once, so embedding allocates nothing. One caller at a time.
 */
#ifndef BERT_H
#define BERT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct bert bert;

typedef struct {
    int n_threads;   /* <= 0: one per online CPU */
    int n_ctx;       /* <= 0 or above the position table: the position table's size */
    const char *isa; /* NULL: best */
} bert_params;

bert_params bert_default_params(void);

/* True when g's general.architecture is one this file runs. */
bool bert_is_bert(const gguf *g);

int bert_load(const gguf *g, const bert_params *p, bert **out, char *msg, size_t msg_size);
void bert_free(bert *b); /* NULL is a no-op */

typedef struct {
    const char *isa, *ftype;
    const char *pooling; /* "mean", "cls", "last" */
    int n_vocab, n_ctx, n_ctx_train, n_embd, n_layer, n_head, n_ff, n_threads;
    int64_t n_params;
    size_t weight_bytes;
} bert_info;

void bert_get_info(const bert *b, bert_info *info);

/* Embeds n_seq token sequences: sequence i is toks[off[i] .. off[i+1]),
 * 1 to n_ctx tokens (special tokens included), and its pooled, L2-normalised
 * vector goes to out[i * n_embd ...]. Sequences are packed into passes of up
 * to n_ctx tokens; attention stays within each sequence. Stops between
 * passes when *abort becomes nonzero (CORE_EABORTED). */
int bert_embed(bert *b, const int32_t *toks, const size_t *off, size_t n_seq, float *out,
               const atomic_int *abort, char *msg, size_t msg_size);

#endif
