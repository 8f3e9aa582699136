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

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} tok_spm_bigram;

/* a before b in the heap: higher score, then smaller left */
static inline bool spm_before(const tok_spm_bigram *a, const tok_spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    tok_spm_bigram *v;
    size_t n, cap;
} tok_spm_heap;

static int spm_push(tok_spm_heap *h, tok_spm_bigram x)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_spm_bigram *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv)
            return CORE_ENOMEM;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&x, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = x;
    return 0;
}

static tok_spm_bigram spm_pop(tok_spm_heap *h)
{
    tok_spm_bigram top = h->v[0], x = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && spm_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!spm_before(&h->v[c], &x))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = x;
    return top;
}

static int spm_try(const tok_vocab *v, const char *text, const tok_sym *sym, int32_t l, int32_t r,
                   tok_spm_heap *h)
{
    if (l < 0 || r < 0)
        return 0;
    uint32_t size = sym[l].n + sym[r].n;
    if (size > v->max_len)
        return 0;
    int32_t id = tok_lookup(v, text + sym[l].off, size);
    if (id < 0)
        return 0;
    return spm_push(h, (tok_spm_bigram){v->tok[id].score, l, r, size});
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out)
{
    int rc = 0;
    tok_spm_heap h = {0};
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
        tok_spm_bigram b = spm_pop(&h);
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
