/* tokenizer.h: the model's tokenizer, loaded from GGUF metadata, giving the
 * token ids llama.cpp gives.
 *
 * Vocabulary types (`tokenizer.ggml.model`):
 *   "llama" SentencePiece: bigram merges by token score over the whole text
 *           (spaces escaped to U+2581, one prepended per add_space_prefix),
 *           unknown pieces as byte tokens <0xXX>;
 *   "gpt2"  byte-level BPE: a pre-tokenizer (`tokenizer.ggml.pre`: gpt-2,
 *           llama-bpe, qwen2, deepseek-llm, ...) splits the text into
 *           words, whose bytes are mapped to the GPT-2 alphabet and merged
 *           by `tokenizer.ggml.merges` rank;
 *   "bert"  WordPiece: lowercase, accents stripped, split at whitespace,
 *           punctuation and CJK, greedy longest match per word.
 * Control, unknown and user-defined token texts are cut out of the input
 * before any of that (user-defined ones always, control ones only with
 * parse_special), longest token first, as llama.cpp does.
 *
 * Ownership: tok_load() borrows the token strings from the gguf mapping, so
 * the gguf handle must outlive the vocabulary; tok_free() frees it. A
 * vocabulary is immutable after loading: any number of threads may call the
 * functions below on one vocabulary at once.
 */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core_err.h"
#include "gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum { TOK_SPM = 1, TOK_BPE = 2, TOK_WPM = 3 } tok_type;

/* Token attributes (llama.cpp's llama_token_attr bits). */
enum {
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7, /* eat whitespace before the token's text */
    TOK_ATTR_RSTRIP = 1 << 8, /* eat whitespace after it */
};

/* Loads the tokenizer from g's metadata. CORE_EFORMAT for malformed
 * metadata (missing or mistyped arrays, lengths that disagree, duplicate
 * tokens, out-of-range special ids, merges naming unknown tokens),
 * CORE_EUNSUPPORTED for an unknown model or pre-tokenizer, with msg saying
 * which. */
int tok_load(const gguf *g, tok_vocab **out, char *msg, size_t msg_size);
void tok_free(tok_vocab *v); /* NULL is a no-op */

/* Tokenizes len bytes of text (any bytes: invalid UTF-8 is handled as
 * llama.cpp does). add_special adds BOS/EOS (BERT: CLS/SEP) as the
 * vocabulary asks; parse_special turns control-token text into its id.
 * Writes at most cap ids to out; *n_out is the full count, and CORE_EINVAL
 * is returned when it exceeds cap. CORE_ENOMEM on allocation failure. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t *out, size_t cap, size_t *n_out);

/* tok_encode, except that control-token text inside the literal spans (n
 * pairs of byte offset and length, sorted, not overlapping) stays text: a
 * rendered chat prompt keeps its template's special tokens while what users
 * wrote cannot forge them. */
int tok_encode_ex(const tok_vocab *v, const char *text, size_t len, bool add_special,
                  bool parse_special, const size_t *literal, size_t n_literal, int32_t *out,
                  size_t cap, size_t *n_out);

/* Bytes of one token's text as it reads in output (may be part of a UTF-8
 * character): byte-level BPE mapped back to bytes, U+2581 to space, <0xXX>
 * to its byte. Control and unknown tokens give no bytes. *len is the full
 * size; CORE_EINVAL when it exceeds cap or id is out of range. */
int tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap, size_t *len);
/* Same, but with special set control and unknown tokens render their text
 * (e.g. "<|im_end|>"). */
int tok_piece_ex(const tok_vocab *v, int32_t id, bool special, char *buf, size_t cap,
                 size_t *len);

int32_t tok_n_vocab(const tok_vocab *v);
tok_type tok_get_type(const tok_vocab *v);
/* Special ids; -1 when the vocabulary has none. */
int32_t tok_bos(const tok_vocab *v);
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);
int32_t tok_unk(const tok_vocab *v);
int32_t tok_sep(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
/* Whether add_special adds BOS / EOS for this vocabulary. */
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
/* End of generation: eos, eot, eom and tokens such as <|im_end|>,
 * <|endoftext|>, <|eot_id|>, <end_of_turn>, <|end|>. */
bool tok_is_eog(const tok_vocab *v, int32_t id);
/* Exact token text -> id, or -1. */
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);
/* Raw token text as stored (not NUL-terminated; valid while the vocabulary
 * lives); NULL when id is out of range. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
/* TOK_ATTR_* bits; 0 when id is out of range. */
uint32_t tok_attr(const tok_vocab *v, int32_t id);

#endif
