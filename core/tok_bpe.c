/* tok_bpe.c: byte-level BPE as llama.cpp's llm_tokenizer_bpe.
 *
 * The pre-tokenizer splits the fragment's code points (undecodable bytes
 * read as U+FFFD) into words; each word's UTF-8 bytes are mapped to the
 * GPT-2 alphabet and start as one symbol per mapped character. Adjacent
 * symbols that form a merge go into a min-heap keyed by merge rank (ties:
 * leftmost first); popping merges the pair unless one side changed since,
 * then queues the new neighbours. Merges are looked up by token id pairs
 * (every merge names two tokens, checked at load), so no strings are built
 * while merging. A final symbol that is not a token falls back to its
 * single bytes, as llama.cpp does. O(n log n) per word.
 */
#include "tok_impl.h"
#include "unicode.h"

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the mapped word */
    int32_t id;      /* token of the symbol's text, -1 if none */
} tok_bsym;

static int bpe_try(const tok_vocab *v, const tok_bsym *sym, int32_t l, int32_t r, tok_bigram_heap *h)
{
    if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0)
        return 0;
    int32_t res;
    int32_t rank = tok_merge_rank(v, sym[l].id, sym[r].id, &res);
    if (rank < 0)
        return 0;
    return tok_heap_push(h, (tok_bigram){(float)rank, l, r, res, sym[l].n + sym[r].n});
}

/* Merges one mapped word w[0..n) and appends its ids. */
static int bpe_word(const tok_vocab *v, const char *w, size_t n, tok_bsym *sym, tok_bigram_heap *h,
                    tok_ivec *out)
{
    int rc;
    int32_t ns = 0;
    h->n = 0;
    int32_t whole = v->ignore_merges ? tok_lookup(v, w, n) : -1;
    if (whole >= 0)
        return tok_ivec_push(out, whole);
    for (size_t off = 0; off < n;) {
        size_t cl = uni_len_utf8((unsigned char)w[off]);
        if (cl > n - off)
            cl = n - off;
        sym[ns] = (tok_bsym){ns - 1, off + cl == n ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl,
                             tok_lookup(v, w + off, cl)};
        ns++;
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++)
        if ((rc = bpe_try(v, sym, i - 1, i, h)))
            return rc;
    while (h->n) {
        tok_bigram b = tok_heap_pop(h);
        tok_bsym *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        l->id = b.res;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = b.left;
        if ((rc = bpe_try(v, sym, l->prev, b.left, h)) || (rc = bpe_try(v, sym, b.left, l->next, h)))
            return rc;
    }
    for (int32_t i = 0; ns > 0 && i != -1; i = sym[i].next) {
        if (sym[i].id >= 0) {
            if ((rc = tok_ivec_push(out, sym[i].id)))
                return rc;
            continue;
        }
        for (uint32_t j = 0; j < sym[i].n; j++) {
            int32_t id = tok_lookup(v, w + sym[i].off + j, 1);
            if (id >= 0 && (rc = tok_ivec_push(out, id)))
                return rc;
        }
    }
    return 0;
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out)
{
    int rc = 0;
    uint32_t *cps = NULL;
    char *word = NULL;
    tok_bsym *sym = NULL;
    tok_bigram_heap h = {0};
    tok_svec pieces = {0};
    size_t n = 0;

    if (len == 0)
        return 0;
    if (!(cps = malloc(len * sizeof *cps))) {
        rc = CORE_ENOMEM;
        goto out;
    }
    for (size_t off = 0; off < len;)
        cps[n++] = uni_decode(text, len, &off);
    if ((rc = tok_pretok_split(v->pre, cps, n, &pieces)))
        goto out;
    size_t maxw = 0;
    for (size_t i = 0; i < pieces.n; i++)
        if (pieces.v[i] > maxw)
            maxw = pieces.v[i];
    /* a code point is <= 4 bytes, each mapped to <= 2 bytes */
    if (!(word = malloc(maxw * 8 + 1)) || !(sym = malloc((maxw * 4 + 1) * sizeof *sym))) {
        rc = CORE_ENOMEM;
        goto out;
    }
    size_t start = 0;
    for (size_t i = 0; i < pieces.n; i++) {
        size_t wn = 0;
        for (size_t c = start; c < start + pieces.v[i]; c++) {
            char u[4];
            size_t k = uni_encode(cps[c], u);
            for (size_t j = 0; j < k; j++)
                wn += uni_encode(uni_byte_to_cp((unsigned char)u[j]), word + wn);
        }
        start += pieces.v[i];
        if (wn && (rc = bpe_word(v, word, wn, sym, &h, out)))
            goto out;
    }
out:
    free(cps);
    free(word);
    free(sym);
    free(h.v);
    free(pieces.v);
    return rc;
}
