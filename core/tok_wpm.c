/* tok_wpm.c: WordPiece as llama.cpp's llm_tokenizer_wpm.
 *
 * Normalization: code points (undecodable bytes read as U+FFFD); with
 * strip_accents each is replaced by the first code point of its canonical
 * decomposition and combining marks are dropped; NUL, U+FFFD and control
 * characters are dropped; with lowercase each is lowercased. Words end at
 * whitespace; punctuation, ASCII symbols and CJK ideographs are words of
 * their own. Each word, prefixed with U+2581 (the converter stores
 * word-initial pieces with it and continuation pieces bare, in place of
 * BERT's "##"), is cut greedily into the longest matching tokens, byte by
 * byte as llama.cpp does; a word with an unmatched rest becomes [UNK].
 */
#include "tok_impl.h"
#include "unicode.h"

static bool wpm_is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) ||
           (c >= 0x2B920 && c <= 0x2CEAF) || /* sic: HF's range, not 0x2B820 */
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest-match of one word (U+2581 prefix included). */
static int wpm_word(const tok_vocab *v, const char *w, size_t n, tok_ivec *out)
{
    size_t mark = out->n;
    for (size_t i = 0; i < n; i++) {
        size_t j = i + v->max_len + 1 < n ? i + v->max_len + 1 : n;
        bool match = false;
        for (; j > i; j--) {
            int32_t id = tok_lookup(v, w + i, j - i);
            if (id >= 0) {
                if (tok_ivec_push(out, id))
                    return CORE_ENOMEM;
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match) {
            out->n = mark;
            break;
        }
    }
    if (out->n == mark && v->unk >= 0 && tok_ivec_push(out, v->unk))
        return CORE_ENOMEM;
    return 0;
}

int tok_wpm_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out)
{
    int rc = 0;
    /* 3 bytes of U+2581, then at most 4 bytes per input byte */
    char *w = malloc(len * 4 + 8);
    if (!w)
        return CORE_ENOMEM;
    static const char pfx[3] = {'\xe2', '\x96', '\x81'};
    size_t wn = 0; /* bytes of the current word after the prefix */
    memcpy(w, pfx, 3);
#define WPM_FLUSH()                                                                                \
    do {                                                                                           \
        if (wn) {                                                                                  \
            if ((rc = wpm_word(v, w, wn + 3, out)))                                                \
                goto out;                                                                          \
            wn = 0;                                                                                \
        }                                                                                          \
    } while (0)
    for (size_t off = 0; off < len;) {
        uint32_t c = uni_decode(text, len, &off);
        if (v->strip_accents)
            c = uni_nfd_first(c);
        unsigned f = uni_flags(c);
        if (f & UNI_SPACE) {
            WPM_FLUSH();
            continue;
        }
        if (c == 0 || c == 0xFFFD || (f & UNI_CONTROL))
            continue;
        if (v->strip_accents && (f & UNI_MARK))
            continue;
        uint32_t lc = v->lowercase ? uni_tolower(c) : c;
        if ((f & UNI_PUNCT) || (c < 0x7F && (f & UNI_SYMBOL)) || wpm_is_cjk(c)) {
            WPM_FLUSH();
            wn = uni_encode(lc, w + 3);
            WPM_FLUSH();
        } else {
            wn += uni_encode(lc, w + 3 + wn);
        }
    }
    WPM_FLUSH();
#undef WPM_FLUSH
out:
    free(w);
    return rc;
}
