/* tok_impl.h: internals shared by tokenizer.c and the tok_*.c algorithms.
 * Not part of the public API (tokenizer.h). */
#ifndef TOK_IMPL_H
#define TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* Growable arrays; every push returns 0 or CORE_ENOMEM. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ivec;

typedef struct {
    size_t *v;
    size_t n, cap;
} tok_svec;

int tok_ivec_grow(tok_ivec *a, size_t need);
int tok_svec_grow(tok_svec *a, size_t need);

static inline int tok_ivec_push(tok_ivec *a, int32_t x)
{
    if (a->n == a->cap && tok_ivec_grow(a, a->n + 1))
        return CORE_ENOMEM;
    a->v[a->n++] = x;
    return 0;
}

static inline int tok_svec_push(tok_svec *a, size_t x)
{
    if (a->n == a->cap && tok_svec_grow(a, a->n + 1))
        return CORE_ENOMEM;
    a->v[a->n++] = x;
    return 0;
}

uint64_t tok_hash(const void *p, size_t n);

/* Pre-tokenizer: a chain of regexes applied one after the other, each
 * splitting every piece the previous ones left (matched and unmatched
 * parts both kept), as llama.cpp's unicode_regex_split. */
typedef struct tok_pretok tok_pretok;

/* generic: run even GPT-2's and Llama-3's regexes on PCRE2 rather than on
 * the hand-written scanners (for tests that compare the two). */
int tok_pretok_new(const char *const *regexes, size_t n, bool generic, tok_pretok **out, char *msg,
                   size_t msg_size);
void tok_pretok_free(tok_pretok *p);
/* Splits the n code points cps into pieces; appends the piece lengths (in
 * code points, summing to n) to out, which the caller empties first. */
int tok_pretok_split(const tok_pretok *p, const uint32_t *cps, size_t n, tok_svec *out);

typedef struct {
    const char *s; /* into the gguf mapping, or the vocab's own arena */
    uint32_t n;
    uint32_t attr;
    float score;
} tok_entry;

struct tok_vocab {
    tok_type type;
    int32_t n_tok;
    tok_entry *tok;
    int32_t *tab; /* open addressing over token texts; -1 = empty */
    size_t tab_mask;
    uint32_t max_len;

    /* BPE merges: key (left id << 32 | right id) -> rank, merged id */
    uint64_t *mkey;
    int32_t *mrank, *mres;
    size_t m_mask;
    tok_pretok *pre;
    bool ignore_merges;

    int32_t bos, eos, eot, eom, unk, sep, pad;
    bool add_bos, add_eos, add_space_prefix;
    bool lowercase, strip_accents; /* WPM normalizer */
    int32_t byte_tok[256];         /* SPM byte fallback; -1 when missing */
    uint8_t *eog;                  /* n_tok flags */

    /* Tokens cut out of the input before tokenizing (control, unknown,
     * user-defined), longest first, and a trie over their texts to find
     * which of them occur in a given input. */
    int32_t *spec;
    size_t n_spec;
    struct tok_trie_node *trie;
    size_t n_trie;
    int32_t trie_root[256];

    char *arena; /* texts of empty tokens ("[EMPTY_i]") */
};

typedef struct tok_trie_node {
    int32_t child;   /* first child, -1 = none */
    int32_t sibling; /* next sibling, -1 = none */
    int32_t tok;     /* token ending here, -1 = none */
    uint8_t byte;
} tok_trie_node;

int32_t tok_lookup(const tok_vocab *v, const char *s, size_t n);

/* A candidate merge of the adjacent symbols left and right, queued by key
 * (lowest first; ties: leftmost). BPE keys by merge rank, SPM by minus the
 * merged token's score; size lets a stale entry be recognised, res is the
 * merged token where the caller knows it. */
typedef struct {
    float key;
    int32_t left, right, res;
    uint32_t size;
} tok_bigram;

typedef struct {
    tok_bigram *v;
    size_t n, cap;
} tok_bigram_heap;

int tok_heap_push(tok_bigram_heap *h, tok_bigram x);
tok_bigram tok_heap_pop(tok_bigram_heap *h); /* h->n > 0 */

/* Algorithms: append the ids of one text fragment to out. */
int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out);
int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out);
int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out);

/* Merge rank of (left, right), -1 when they do not merge; *res gets the
 * merged token id (-1 when the merged text is not a token). */
int32_t tok_merge_rank(const tok_vocab *v, int32_t left, int32_t right, int32_t *res);

#endif
