/* tok_pretok.c: BPE pre-tokenizers, reproducing llama.cpp's
 * unicode_regex_split.
 *
 * A pre-tokenizer is a chain of regexes. Each one splits every piece the
 * previous ones produced; both the matches and the text between them
 * become pieces. Two regexes (GPT-2's and Llama-3's) are hand-written
 * scanners, as in llama.cpp. Every other regex runs on PCRE2, but never
 * with PCRE2's own Unicode tables: llama.cpp matches
 *   - regexes with \p{..} classes against a "collapsed" text in which each
 *     non-ASCII code point becomes one byte naming its class (0xD1 number,
 *     0xD2 letter, 0xD3 punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 other,
 *     0x0B whitespace) and each \p{X} becomes [<class byte><ASCII members>];
 *   - other regexes with std::wregex over code points, non-ASCII
 *     whitespace replaced by 0x0B, where \s and friends are ASCII-only.
 * We do the same: the first kind with PCRE2 in byte mode, the second in
 * UTF-8 mode without UCP. The class tables are therefore llama.cpp's (see
 * unicode.h), quirks included (ASCII '~' is in neither \p{P} nor \p{S}).
 * `$` matches only at the end of a piece (ECMAScript), and an empty match
 * splits the piece there, as std::regex_iterator does.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>

#include "tok_impl.h"
#include "unicode.h"

enum { PT_GPT2, PT_LLAMA3, PT_COLLAPSED, PT_UTF };

typedef struct {
    int kind;
    pcre2_code *re;
} tok_pt_rule;

struct tok_pretok {
    tok_pt_rule *rules;
    size_t n;
    bool need_collapse;
};

static const char TOK_RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char TOK_RE_LLAMA3_A[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char TOK_RE_LLAMA3_B[] =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const struct {
    const char *name;
    unsigned flag;
    unsigned char byte;
    const char *ascii; /* ASCII members, as class syntax */
} tok_pt_cats[] = {
    {"\\p{N}", UNI_NUMBER, 0xD1, "0-9"},
    {"\\p{L}", UNI_LETTER, 0xD2, "A-Za-z"},
    {"\\p{P}", UNI_PUNCT, 0xD3, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", UNI_MARK, 0xD4, ""},
    {"\\p{S}", UNI_SYMBOL, 0xD5, "\\$\\+<->^`\\|"},
    {"\\p{Lu}", UNI_LETTER, 0xD2, "A-Za-z"},
    {"\\p{Ll}", UNI_LETTER, 0xD2, "A-Za-z"},
    {"\\p{Lt}", UNI_LETTER, 0xD2, "A-Za-z"},
    {"\\p{Lm}", UNI_LETTER, 0xD2, "A-Za-z"},
    {"\\p{Lo}", UNI_LETTER, 0xD2, "A-Za-z"},
};
#define TOK_PT_NCATS (sizeof tok_pt_cats / sizeof tok_pt_cats[0])

static bool tok_pt_has_cat(const char *re)
{
    for (size_t i = 0; i < TOK_PT_NCATS; i++)
        if (strstr(re, tok_pt_cats[i].name))
            return true;
    return false;
}

/* llama.cpp's regex collapsing, character for character. */
static char *tok_pt_collapse(const char *re)
{
    size_t n = strlen(re);
    char *out = malloc(n * 16 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
            out[o++] = '[';
            inside = true;
            continue;
        }
        if (inside && re[i] == ']' && re[i - 1] != '\\') {
            out[o++] = ']';
            inside = false;
            continue;
        }
        if (re[i] == '\\' && i + 3 < n && re[i + 1] == 'p' && re[i + 2] == '{') {
            const char *close = strchr(re + i + 3, '}');
            if (close && (size_t)(close - re) <= i + 10) {
                size_t plen = (size_t)(close - re) - i + 1;
                size_t c;
                for (c = 0; c < TOK_PT_NCATS; c++)
                    if (strlen(tok_pt_cats[c].name) == plen && !memcmp(tok_pt_cats[c].name, re + i, plen))
                        break;
                if (c < TOK_PT_NCATS) {
                    if (!inside)
                        out[o++] = '[';
                    out[o++] = (char)tok_pt_cats[c].byte;
                    size_t al = strlen(tok_pt_cats[c].ascii);
                    memcpy(out + o, tok_pt_cats[c].ascii, al);
                    o += al;
                    if (!inside)
                        out[o++] = ']';
                    i += plen - 1;
                    continue;
                }
            }
        }
        out[o++] = re[i];
    }
    out[o] = 0;
    return out;
}

int tok_pretok_new(const char *const *regexes, size_t n, bool generic, tok_pretok **out, char *msg,
                   size_t msg_size)
{
    int rc = 0;
    tok_pretok *p = calloc(1, sizeof *p);
    if (!p || !(p->rules = calloc(n ? n : 1, sizeof *p->rules))) {
        free(p);
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *re = regexes[i];
        tok_pt_rule *r = &p->rules[p->n++];
        bool cat = tok_pt_has_cat(re);
        p->need_collapse |= cat;
        if (!generic && !strcmp(re, TOK_RE_GPT2)) {
            r->kind = PT_GPT2;
            continue;
        }
        if (!generic && (!strcmp(re, TOK_RE_LLAMA3_A) || !strcmp(re, TOK_RE_LLAMA3_B))) {
            r->kind = PT_LLAMA3;
            continue;
        }
        char *pat = NULL;
        uint32_t opts = PCRE2_DOLLAR_ENDONLY;
        if (cat) {
            r->kind = PT_COLLAPSED;
            for (const unsigned char *c = (const unsigned char *)re; *c; c++)
                if (*c >= 0x80) {
                    rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size,
                                   "pre-tokenizer regex mixes \\p{..} and non-ASCII text");
                    goto out;
                }
            if (!(pat = tok_pt_collapse(re))) {
                rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
                goto out;
            }
        } else {
            r->kind = PT_UTF;
            opts |= PCRE2_UTF;
        }
        int err;
        PCRE2_SIZE erroff;
        r->re = pcre2_compile((PCRE2_SPTR)(pat ? pat : re), PCRE2_ZERO_TERMINATED, opts, &err, &erroff,
                              NULL);
        free(pat);
        if (!r->re) {
            char buf[128];
            pcre2_get_error_message(err, (PCRE2_UCHAR *)buf, sizeof buf);
            rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "pre-tokenizer regex %zu: %s at %zu", i, buf,
                           (size_t)erroff);
            goto out;
        }
        pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    }
out:
    if (rc) {
        tok_pretok_free(p);
        p = NULL;
    }
    *out = p;
    return rc;
}

void tok_pretok_free(tok_pretok *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        pcre2_code_free(p->rules[i].re);
    free(p->rules);
    free(p);
}

/* Scanner state shared by the two hand-written splitters: one piece
 * [ini, end) of cps. Out-of-piece positions read as OOR / no flags. */
#define PT_OOR 0xFFFFFFFFu

typedef struct {
    const uint32_t *cps;
    size_t ini, end, prev;
    tok_svec *out;
    int err;
} tok_pt_scan;

static inline uint32_t pt_cpt(const tok_pt_scan *s, size_t pos)
{
    return pos >= s->ini && pos < s->end ? s->cps[pos] : PT_OOR;
}

static inline unsigned pt_flags(const tok_pt_scan *s, size_t pos)
{
    return pos >= s->ini && pos < s->end ? uni_flags(s->cps[pos]) : 0;
}

static inline size_t pt_add(tok_pt_scan *s, size_t end)
{
    size_t len = end - s->prev;
    if (len > 0 && tok_svec_push(s->out, len))
        s->err = CORE_ENOMEM;
    s->prev = end;
    return len;
}

#define PT_WLN (UNI_SPACE | UNI_LETTER | UNI_NUMBER)

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void pt_gpt2(tok_pt_scan *s)
{
    for (size_t pos = s->ini; pos < s->end;) {
        uint32_t cpt = pt_cpt(s, pos);
        unsigned flags = pt_flags(s, pos);
        if (cpt == '\'' && pos + 1 < s->end) {
            uint32_t nx = pt_cpt(s, pos + 1);
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
                pos += pt_add(s, pos + 2);
                continue;
            }
            if (pos + 2 < s->end) {
                uint32_t nn = pt_cpt(s, pos + 2);
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += pt_add(s, pos + 3);
                    continue;
                }
            }
        }
        unsigned f2 = cpt == ' ' ? pt_flags(s, pos + 1) : flags;
        if (f2 & UNI_LETTER) {
            pos += cpt == ' ';
            while (f2 & UNI_LETTER)
                f2 = pt_flags(s, ++pos);
            pt_add(s, pos);
            continue;
        }
        if (f2 & UNI_NUMBER) {
            pos += cpt == ' ';
            while (f2 & UNI_NUMBER)
                f2 = pt_flags(s, ++pos);
            pt_add(s, pos);
            continue;
        }
        if (!(f2 & PT_WLN) && f2) {
            pos += cpt == ' ';
            while (!(f2 & PT_WLN) && f2)
                f2 = pt_flags(s, ++pos);
            pt_add(s, pos);
            continue;
        }
        size_t nws = 0;
        while (pt_flags(s, pos + nws) & UNI_SPACE)
            nws++;
        if (nws > 1 && pt_cpt(s, pos + nws) != PT_OOR) {
            pos += nws - 1;
            pt_add(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            pt_add(s, pos);
            continue;
        }
        pt_add(s, ++pos);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void pt_llama3(tok_pt_scan *s)
{
    for (size_t pos = s->ini; pos < s->end;) {
        uint32_t cpt = pt_cpt(s, pos);
        unsigned flags = pt_flags(s, pos);
        if (cpt == '\'' && pos + 1 < s->end) {
            uint32_t nx = uni_tolower(pt_cpt(s, pos + 1));
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
                pos += pt_add(s, pos + 2);
                continue;
            }
            if (pos + 2 < s->end) {
                uint32_t nn = uni_tolower(pt_cpt(s, pos + 2));
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += pt_add(s, pos + 3);
                    continue;
                }
            }
        }
        if (!(cpt == '\r' || cpt == '\n' || (flags & UNI_NUMBER))) {
            if ((flags & UNI_LETTER) || (pt_flags(s, pos + 1) & UNI_LETTER)) {
                pos++;
                while (pt_flags(s, pos) & UNI_LETTER)
                    pos++;
                pt_add(s, pos);
                continue;
            }
        }
        if (flags & UNI_NUMBER) {
            size_t ini = pos;
            while (pt_flags(s, pos) & UNI_NUMBER) {
                if (++pos - ini >= 3) {
                    pt_add(s, pos);
                    ini = pos;
                }
            }
            pt_add(s, pos);
            continue;
        }
        unsigned f2 = cpt == ' ' ? pt_flags(s, pos + 1) : flags;
        /* llama.cpp tests flags (not f2) for "any class" here */
        if (!(f2 & PT_WLN) && flags) {
            pos += cpt == ' ';
            while (!(f2 & PT_WLN) && f2)
                f2 = pt_flags(s, ++pos);
            uint32_t c2 = pt_cpt(s, pos);
            while (c2 == '\r' || c2 == '\n')
                c2 = pt_cpt(s, ++pos);
            pt_add(s, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (pt_flags(s, pos + nws) & UNI_SPACE) {
            uint32_t c2 = pt_cpt(s, pos + nws);
            if (c2 == '\r' || c2 == '\n')
                last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) {
            pos = last_rn;
            pt_add(s, pos);
            continue;
        }
        if (nws > 1 && pt_cpt(s, pos + nws) != PT_OOR) {
            pos += nws - 1;
            pt_add(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            pt_add(s, pos);
            continue;
        }
        pt_add(s, ++pos);
    }
}

/* The subject a PCRE2 rule runs on: bytes, plus (UTF mode) the byte offset
 * of every code point and the code point index of every byte offset. */
typedef struct {
    const unsigned char *s;
    const size_t *cp_off; /* NULL: one byte per code point */
    const size_t *byte_cp;
} tok_pt_subject;

static size_t pt_next_char(const tok_pt_subject *sub, size_t base, size_t pos)
{
    if (!sub->cp_off)
        return pos + 1;
    return pos + uni_len_utf8(sub->s[base + pos]);
}

/* Splits one piece [cp0, cp0 + ncp) with a PCRE2 rule (std::regex_iterator
 * semantics), appending piece lengths in code points. */
static int pt_regex_piece(const tok_pt_rule *r, const tok_pt_subject *sub, pcre2_match_data *md,
                          pcre2_match_context *mc, size_t cp0, size_t ncp, tok_svec *out)
{
    size_t b0 = sub->cp_off ? sub->cp_off[cp0] : cp0;
    size_t blen = (sub->cp_off ? sub->cp_off[cp0 + ncp] : cp0 + ncp) - b0;
    const unsigned char *seg = sub->s + b0;
#define PT_CP(off) (sub->cp_off ? sub->byte_cp[b0 + (off)] - cp0 : (off))
    size_t pos = 0, start = 0;
    uint32_t opts = 0;
    while (pos <= blen) {
        int m = pcre2_match(r->re, seg, blen, pos, opts | PCRE2_NO_UTF_CHECK, md, mc);
        if (m == PCRE2_ERROR_NOMATCH) {
            if (!opts)
                break;
            opts = 0; /* after an empty match: retry one character on */
            if (pos >= blen)
                break;
            pos = pt_next_char(sub, b0, pos);
            continue;
        }
        if (m == PCRE2_ERROR_JIT_STACKLIMIT && !mc)
            return PCRE2_ERROR_JIT_STACKLIMIT; /* the caller retries with a big stack */
        if (m < 0)
            return CORE_EINVAL; /* match limits hit: too complex an input for the regex */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms > start && tok_svec_push(out, PT_CP(ms) - PT_CP(start)))
            return CORE_ENOMEM;
        if (me > ms && tok_svec_push(out, PT_CP(me) - PT_CP(ms)))
            return CORE_ENOMEM;
        start = me;
        pos = me;
        opts = me == ms ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    if (start < blen && tok_svec_push(out, PT_CP(blen) - PT_CP(start)))
        return CORE_ENOMEM;
#undef PT_CP
    return 0;
}

int tok_pretok_split(const tok_pretok *p, const uint32_t *cps, size_t n, tok_svec *out)
{
    int rc = 0;
    tok_svec a = {0}, b = {0};
    unsigned char *collapsed = NULL, *utf = NULL;
    size_t *cp_off = NULL, *byte_cp = NULL;
    pcre2_match_data *md = NULL;
    pcre2_match_context *mc = NULL;
    pcre2_jit_stack *js = NULL;

    if (n == 0)
        return 0;
    if (tok_svec_push(&a, n)) {
        rc = CORE_ENOMEM;
        goto out;
    }
    for (size_t r = 0; r < p->n; r++) {
        const tok_pt_rule *rule = &p->rules[r];
        b.n = 0;
        if (rule->kind == PT_GPT2 || rule->kind == PT_LLAMA3) {
            tok_pt_scan s = {.cps = cps, .out = &b};
            size_t start = 0;
            for (size_t i = 0; i < a.n; i++) {
                s.ini = s.prev = start;
                s.end = start + a.v[i];
                if (rule->kind == PT_GPT2)
                    pt_gpt2(&s);
                else
                    pt_llama3(&s);
                start = s.end;
            }
            if ((rc = s.err))
                goto out;
        } else {
            tok_pt_subject sub = {0};
            if (rule->kind == PT_COLLAPSED) {
                if (!collapsed) {
                    if (!(collapsed = malloc(n))) {
                        rc = CORE_ENOMEM;
                        goto out;
                    }
                    for (size_t i = 0; i < n; i++) {
                        uint32_t c = cps[i];
                        if (c < 0x80) {
                            collapsed[i] = (unsigned char)c;
                            continue;
                        }
                        unsigned f = uni_flags(c);
                        unsigned char by = 0xD0;
                        if (f & UNI_SPACE)
                            by = 0x0B;
                        else
                            for (size_t k = 0; k < 5; k++)
                                if ((f & UNI_CATEGORY) == tok_pt_cats[k].flag)
                                    by = tok_pt_cats[k].byte;
                        collapsed[i] = by;
                    }
                }
                sub.s = collapsed;
            } else {
                if (!utf) {
                    if (!(utf = malloc(n * 4 + 1)) || !(cp_off = malloc((n + 1) * sizeof *cp_off)) ||
                        !(byte_cp = malloc((n * 4 + 1) * sizeof *byte_cp))) {
                        rc = CORE_ENOMEM;
                        goto out;
                    }
                    size_t o = 0;
                    for (size_t i = 0; i < n; i++) {
                        uint32_t c = cps[i];
                        if (c > 0x7F && (uni_flags(c) & UNI_SPACE))
                            c = 0x0B;
                        else if ((c >= 0xD800 && c <= 0xDFFF) || c >= UNI_MAX_CP)
                            c = 0xFFFD; /* keep the subject valid UTF-8 */
                        cp_off[i] = o;
                        size_t k = uni_encode(c, (char *)utf + o);
                        for (size_t j = 0; j < k; j++)
                            byte_cp[o + j] = i;
                        o += k;
                    }
                    cp_off[n] = o;
                    byte_cp[o] = n;
                }
                sub.s = utf;
                sub.cp_off = cp_off;
                sub.byte_cp = byte_cp;
            }
            pcre2_match_data_free(md);
            if (!(md = pcre2_match_data_create_from_pattern(rule->re, NULL))) {
                rc = CORE_ENOMEM;
                goto out;
            }
            size_t start = 0;
            for (size_t i = 0; i < a.n; i++) {
                size_t mark = b.n;
                rc = pt_regex_piece(rule, &sub, md, mc, start, a.v[i], &b);
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
                    /* the JIT's default 32 KiB stack was not enough for
                     * this piece: redo it with a stack of up to 64 MiB */
                    b.n = mark;
                    if (!(mc = pcre2_match_context_create(NULL)) ||
                        !(js = pcre2_jit_stack_create(64 << 10, 64 << 20, NULL))) {
                        rc = CORE_ENOMEM;
                        goto out;
                    }
                    pcre2_jit_stack_assign(mc, NULL, js);
                    rc = pt_regex_piece(rule, &sub, md, mc, start, a.v[i], &b);
                }
                if (rc)
                    goto out;
                start += a.v[i];
            }
        }
        tok_svec t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < a.n; i++)
        if (tok_svec_push(out, a.v[i])) {
            rc = CORE_ENOMEM;
            goto out;
        }
out:
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    free(a.v);
    free(b.v);
    free(collapsed);
    free(utf);
    free(cp_off);
    free(byte_cp);
    return rc;
}
