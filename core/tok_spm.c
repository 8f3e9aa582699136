/* tok_spm.c: SentencePiece BPE as llama.cpp's llm_tokenizer_spm.
 *
 * The fragment (spaces already escaped to U+2581) starts as one symbol per
 * UTF-8 character (by lead byte; a truncated tail keeps what is left).
 * Every adjacent pair whose concatenation is a token goes into a max-heap
 * keyed by that token's score (ties: leftmost first); popping merges the
 * pair unless one side changed since it was queued, then queues the new
 * neighbours. Each final symbol is its token, or else its bytes as byte
 * tokens <0xXX>. O(n log n) in the fragment length.
 */
#include "tok_impl.h"
#include "unicode.h"

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes of text */
} tok_sym;

static int spm_try(const tok_vocab *v, const char *text, const tok_sym *sym, int32_t l, int32_t r,
                   tok_bigram_heap *h)
{
    if (l < 0 || r < 0)
        return 0;
    uint32_t size = sym[l].n + sym[r].n;
    if (size > v->max_len)
        return 0;
    int32_t id = tok_lookup(v, text + sym[l].off, size);
    if (id < 0)
        return 0;
    return tok_heap_push(h, (tok_bigram){-v->tok[id].score, l, r, id, size});
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out)
{
    int rc = 0;
    tok_bigram_heap h = {0};
    tok_sym *sym = NULL;
    if (len == 0)
        return 0;
    if (len > INT32_MAX || !(sym = malloc(len * sizeof *sym)))
        return CORE_ENOMEM;
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t cl = uni_len_utf8((unsigned char)text[off]);
        if (cl > len - off)
            cl = len - off;
        sym[n] = (tok_sym){n - 1, off + cl == len ? -1 : n + 1, (uint32_t)off, (uint32_t)cl};
        n++;
        off += cl;
    }
    for (int32_t i = 1; i < n; i++)
        if ((rc = spm_try(v, text, sym, i - 1, i, &h)))
            goto out;
    while (h.n) {
        tok_bigram b = tok_heap_pop(&h);
        tok_sym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = b.left;
        if ((rc = spm_try(v, text, sym, l->prev, b.left, &h)) ||
            (rc = spm_try(v, text, sym, b.left, l->next, &h)))
            goto out;
    }
    for (int32_t i = 0; i != -1; i = sym[i].next) {
        int32_t id = tok_lookup(v, text + sym[i].off, sym[i].n);
        if (id >= 0) {
            if ((rc = tok_ivec_push(out, id)))
                goto out;
            continue;
        }
        for (uint32_t j = 0; j < sym[i].n; j++) {
            int32_t bt = v->byte_tok[(unsigned char)text[sym[i].off + j]];
            if (bt >= 0 && (rc = tok_ivec_push(out, bt)))
                goto out;
        }
    }
out:
    free(h.v);
    free(sym);
    return rc;
}
