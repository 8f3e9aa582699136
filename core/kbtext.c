/* kbtext.c: document parsing, chunking and index terms; see kbtext.h.
 *
 * Input formats (all UTF-8; a leading BOM is skipped; CR LF is a line end):
 *   text      paragraphs separated by blank lines.
 *   Markdown  line based, a subset of CommonMark: "#".."######" ATX
 *             headings (closing #s dropped), setext headings (a paragraph
 *             underlined by === or ---), fenced code (``` or ~~~, at least
 *             three, closed by the same character at least as long; the
 *             info string is dropped), list items ("-", "*", "+", "1." or
 *             "1)") and block quotes (">") start blocks, thematic breaks
 *             and blank lines end them. Inline markup is kept as text.
 *   HTML      a forgiving tag scanner, not a tree builder: comments,
 *             <!...> and <?...?> are skipped; the content of script and
 *             style (raw text up to the matching close tag) and of noscript
 *             and template (nested) is dropped; <title> becomes the
 *             document title; h1-h6 are headings, <pre> is code; block-level
 *             tags end a paragraph, other tags vanish. Character references
 *             (&name; for the common names, &#N; and &#xN;) are decoded;
 *             unknown ones are kept as written.
 *
 * Everything is first written into one cleaned buffer: blocks (headings,
 * paragraphs with whitespace runs collapsed to one space, code with its
 * line breaks) separated by a blank line. A table of segments maps cleaned
 * offsets back to the original: a "copy" segment is byte-for-byte, any
 * other (collapsed whitespace, a decoded entity, a separator) maps as a
 * whole to the input span it replaced. Chunks are ranges of that buffer.
 */
#include "kbtext.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "unicode.h"

/* ---- UTF-8 validity ------------------------------------------------------------ */

bool kbtext_is_binary(const char *data, size_t len)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return true;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, cp = c & 0x07, min = 0x10000;
        else
            return true;
        if (len - i <= n)
            return true;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return true;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return true;
        i += n + 1;
    }
    return false;
}

/* ---- format detection ------------------------------------------------------------ */

static bool kbt_ieq(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return false;
    }
    return true;
}

/* Case-insensitive: does s[0..n) start with lit? */
static bool kbt_iprefix(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n >= m && kbt_ieq(s, m, lit);
}

kbtext_format kbtext_detect(const char *name, const char *data, size_t len)
{
    if (name) {
        const char *dot = strrchr(name, '.'), *slash = strrchr(name, '/');
        if (dot && (!slash || dot > slash)) {
            const char *e = dot + 1;
            size_t n = strlen(e);
            if (kbt_ieq(e, n, "html") || kbt_ieq(e, n, "htm") || kbt_ieq(e, n, "xhtml"))
                return KBTEXT_HTML;
            if (kbt_ieq(e, n, "md") || kbt_ieq(e, n, "markdown") || kbt_ieq(e, n, "mdown"))
                return KBTEXT_MARKDOWN;
            if (kbt_ieq(e, n, "txt") || kbt_ieq(e, n, "text"))
                return KBTEXT_TEXT;
        }
    }
    size_t i = 0, n = len < 4096 ? len : 4096;
    if (n >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n && strchr(" \t\r\n", data[i]))
        i++;
    static const char *const html[] = {"<!doctype html", "<html", "<head", "<body", "<!--",
                                       "<?xml",          "<div",  "<p>",   "<h1",  NULL};
    for (int k = 0; html[k]; k++)
        if (kbt_iprefix(data + i, n - i, html[k]))
            return KBTEXT_HTML;
    /* Markdown: an ATX heading or a code fence at the start of some line. */
    for (size_t ls = 0; ls < n;) {
        const char *p = data + ls;
        size_t rest = n - ls;
        if ((rest >= 2 && p[0] == '#' && (p[1] == ' ' || p[1] == '#')) ||
            (rest >= 3 && (memcmp(p, "```", 3) == 0 || memcmp(p, "~~~", 3) == 0)))
            return KBTEXT_MARKDOWN;
        const char *nl = memchr(p, '\n', rest);
        if (!nl)
            break;
        ls = (size_t)(nl - data) + 1;
    }
    return KBTEXT_TEXT;
}

/* ---- the cleaned buffer ------------------------------------------------------------ */

enum { KBT_PARA, KBT_HEAD, KBT_CODE };

typedef struct {
    size_t out, in, out_len, in_len;
    bool copy;
} kbt_seg;

typedef struct {
    int kind, level;
    size_t cs, ce; /* range in the cleaned buffer */
} kbt_block;

typedef struct {
    const char *src;
    char *buf;
    size_t len, cap;
    kbt_seg *seg;
    size_t nseg, segcap;
    kbt_block *blk;
    size_t nblk, blkcap;
    bool oom;
    /* the open block */
    bool open, started;
    int kind, level;
    size_t bstart;
    bool space;          /* a collapsed whitespace run is pending */
    size_t space_in, space_end;
    char *title;         /* HTML <title> (malloc) */
} kbt_b;

static bool kbt_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return false;
    *p = np;
    *cap = nc;
    return true;
}

/* Appends out bytes that stand for src[in..in+in_len); copy: byte-for-byte. */
static void kbt_put(kbt_b *b, const char *s, size_t n, size_t in, size_t in_len, bool copy)
{
    if (b->oom || n == 0)
        return;
    if (!kbt_grow((void **)&b->buf, &b->cap, b->len + n + 1, 1) ||
        !kbt_grow((void **)&b->seg, &b->segcap, b->nseg + 1, sizeof(kbt_seg))) {
        b->oom = true;
        return;
    }
    kbt_seg *last = b->nseg ? &b->seg[b->nseg - 1] : NULL;
    if (copy && last && last->copy && last->out + last->out_len == b->len &&
        last->in + last->in_len == in) {
        last->out_len += n;
        last->in_len += n;
    } else {
        b->seg[b->nseg++] = (kbt_seg){b->len, in, n, in_len, copy};
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void kbt_close(kbt_b *b)
{
    if (b->open && b->started && !b->oom) {
        /* Code keeps its lines; drop the trailing line breaks. */
        while (b->len > b->bstart && (b->buf[b->len - 1] == '\n' || b->buf[b->len - 1] == ' '))
            b->len--;
        while (b->nseg && b->seg[b->nseg - 1].out >= b->len)
            b->nseg--;
        if (b->nseg) {
            kbt_seg *s = &b->seg[b->nseg - 1];
            if (s->out + s->out_len > b->len) {
                size_t cut = s->out + s->out_len - b->len;
                s->out_len -= cut;
                if (s->copy)
                    s->in_len -= cut;
            }
        }
        if (b->len > b->bstart) {
            if (!kbt_grow((void **)&b->blk, &b->blkcap, b->nblk + 1, sizeof(kbt_block)))
                b->oom = true;
            else
                b->blk[b->nblk++] = (kbt_block){b->kind, b->level, b->bstart, b->len};
        }
    }
    b->open = b->started = b->space = false;
}

static void kbt_open(kbt_b *b, int kind, int level)
{
    kbt_close(b);
    b->open = true;
    b->kind = kind;
    b->level = level;
}

/* Content is about to be appended at input offset in. */
static void kbt_start(kbt_b *b, size_t in)
{
    if (!b->open)
        kbt_open(b, KBT_PARA, 0);
    if (!b->started) {
        if (b->len)
            kbt_put(b, "\n\n", 2, in, 0, false);
        b->started = true;
        b->bstart = b->len;
        b->space = false;
    } else if (b->space) {
        kbt_put(b, " ", 1, b->space_in, b->space_end - b->space_in,
                b->space_end - b->space_in == 1 && b->src[b->space_in] == ' ');
        b->space = false;
    }
}

static void kbt_ws(kbt_b *b, size_t in, size_t end)
{
    if (!b->started)
        return;
    if (!b->space) {
        b->space = true;
        b->space_in = in;
    }
    b->space_end = end;
}

static bool kbt_isws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends src[i..j) as text: whitespace runs collapse unless in code. */
static void kbt_text(kbt_b *b, size_t i, size_t j)
{
    const char *s = b->src;
    if (b->open && b->kind == KBT_CODE) {
        if (i < j) {
            kbt_start(b, i);
            kbt_put(b, s + i, j - i, i, j - i, true);
        }
        return;
    }
    while (i < j) {
        size_t k = i;
        while (k < j && kbt_isws(s[k]))
            k++;
        if (k > i) {
            kbt_ws(b, i, k);
            i = k;
            continue;
        }
        while (k < j && !kbt_isws(s[k]))
            k++;
        kbt_start(b, i);
        kbt_put(b, s + i, k - i, i, k - i, true);
        i = k;
    }
}

/* Appends a decoded character that replaced src[in..in+in_len). */
static void kbt_char(kbt_b *b, uint32_t cp, size_t in, size_t in_len)
{
    if (cp == 0xA0 || cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') {
        if (b->open && b->kind == KBT_CODE) {
            kbt_start(b, in);
            kbt_put(b, cp == 0xA0 ? " " : (char[]){(char)cp}, 1, in, in_len, false);
        } else {
            kbt_ws(b, in, in + in_len);
        }
        return;
    }
    char u[4];
    size_t n = uni_encode(cp, u);
    kbt_start(b, in);
    kbt_put(b, u, n, in, in_len, false);
}

/* ---- plain text and Markdown ------------------------------------------------------------ */

static size_t kbt_line_end(const char *s, size_t len, size_t i, size_t *next)
{
    const char *nl = memchr(s + i, '\n', len - i);
    size_t e = nl ? (size_t)(nl - s) : len;
    *next = nl ? e + 1 : len;
    if (e > i && s[e - 1] == '\r')
        e--;
    return e;
}

static bool kbt_blank(const char *s, size_t i, size_t e)
{
    for (; i < e; i++)
        if (!kbt_isws(s[i]))
            return false;
    return true;
}

static void kbt_parse_text(kbt_b *b, size_t i, size_t len)
{
    const char *s = b->src;
    while (i < len) {
        size_t next, e = kbt_line_end(s, len, i, &next);
        if (kbt_blank(s, i, e))
            kbt_close(b);
        else
            kbt_text(b, i, next);
        i = next;
    }
    kbt_close(b);
}

/* Lines of one character c (and spaces after), at least min of them. */
static bool kbt_rule(const char *s, size_t i, size_t e, char c, size_t min, bool spaced)
{
    size_t n = 0;
    for (; i < e; i++) {
        if (s[i] == c)
            n++;
        else if (s[i] == ' ' || s[i] == '\t') {
            if (!spaced) {
                while (i < e && (s[i] == ' ' || s[i] == '\t'))
                    i++;
                return i == e && n >= min;
            }
        } else {
            return false;
        }
    }
    return n >= min;
}

static void kbt_parse_markdown(kbt_b *b, size_t i, size_t len)
{
    const char *s = b->src;
    bool fence = false;
    char fc = 0;
    size_t flen = 0;
    while (i < len) {
        size_t next, e = kbt_line_end(s, len, i, &next);
        size_t p = i;
        while (p < e && p - i < 3 && s[p] == ' ')
            p++;
        if (fence) {
            size_t q = p, n = 0;
            while (q < e && s[q] == fc)
                q++, n++;
            if (n >= flen && kbt_blank(s, q, e)) {
                kbt_close(b);
                fence = false;
            } else {
                kbt_text(b, i, next); /* verbatim, line break included */
            }
            i = next;
            continue;
        }
        if (kbt_blank(s, i, e)) {
            kbt_close(b);
        } else if (e - p >= 3 && (s[p] == '`' || s[p] == '~') && s[p + 1] == s[p] &&
                   s[p + 2] == s[p]) {
            fc = s[p];
            flen = 0;
            for (size_t q = p; q < e && s[q] == fc; q++)
                flen++;
            kbt_open(b, KBT_CODE, 0);
            fence = true;
        } else if (s[p] == '#') {
            size_t q = p, lv = 0;
            while (q < e && s[q] == '#')
                q++, lv++;
            if (lv <= 6 && (q == e || s[q] == ' ' || s[q] == '\t')) {
                size_t te = e;
                while (te > q && kbt_isws(s[te - 1]))
                    te--;
                size_t h = te;
                while (h > q && s[h - 1] == '#')
                    h--;
                if (h == q || s[h - 1] == ' ' || s[h - 1] == '\t')
                    te = h;
                kbt_open(b, KBT_HEAD, (int)lv);
                kbt_text(b, q, te);
                kbt_close(b);
            } else {
                kbt_text(b, i, next);
            }
        } else if (b->open && b->started && b->kind == KBT_PARA &&
                   (kbt_rule(s, p, e, '=', 1, false) || kbt_rule(s, p, e, '-', 1, false))) {
            b->kind = KBT_HEAD; /* setext: the paragraph was a heading */
            b->level = s[p] == '=' ? 1 : 2;
            kbt_close(b);
        } else if (kbt_rule(s, p, e, '-', 3, true) || kbt_rule(s, p, e, '*', 3, true) ||
                   kbt_rule(s, p, e, '_', 3, true)) {
            kbt_close(b);
        } else {
            size_t q = p;
            bool item = false;
            if (s[q] == '>') {
                item = true;
                q++;
            } else if ((s[q] == '-' || s[q] == '*' || s[q] == '+') && q + 1 < e &&
                       (s[q + 1] == ' ' || s[q + 1] == '\t')) {
                item = true;
                q++;
            } else {
                size_t d = q;
                while (d < e && d - q < 9 && s[d] >= '0' && s[d] <= '9')
                    d++;
                if (d > q && d + 1 < e && (s[d] == '.' || s[d] == ')') &&
                    (s[d + 1] == ' ' || s[d + 1] == '\t')) {
                    item = true;
                    q = d + 1;
                }
            }
            if (item) {
                kbt_open(b, KBT_PARA, 0);
                kbt_text(b, q, next);
            } else {
                if (b->open && b->kind != KBT_PARA)
                    kbt_close(b);
                kbt_text(b, i, next);
            }
        }
        i = next;
    }
    kbt_close(b);
}

/* ---- HTML ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t cp;
} kbt_entities[] = {
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},
    {"apos", '\''},    {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},
    {"trade", 0x2122}, {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026},
    {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C}, {"rdquo", 0x201D},
    {"laquo", 0xAB},   {"raquo", 0xBB},   {"bull", 0x2022},  {"middot", 0xB7},
    {"deg", 0xB0},     {"times", 0xD7},   {"divide", 0xF7},  {"euro", 0x20AC},
    {"pound", 0xA3},   {"yen", 0xA5},     {"cent", 0xA2},    {"sect", 0xA7},
    {"para", 0xB6},    {"shy", 0xAD},     {"ensp", 0x2002},  {"emsp", 0x2003},
    {"thinsp", 0x2009}, {"larr", 0x2190}, {"rarr", 0x2192},  {"uarr", 0x2191},
    {"darr", 0x2193},  {"harr", 0x2194},  {"le", 0x2264},    {"ge", 0x2265},
    {"ne", 0x2260},    {"plusmn", 0xB1},  {"micro", 0xB5},   {"iexcl", 0xA1},
    {"iquest", 0xBF},  {"auml", 0xE4},    {"ouml", 0xF6},    {"uuml", 0xFC},
    {"Auml", 0xC4},    {"Ouml", 0xD6},    {"Uuml", 0xDC},    {"szlig", 0xDF},
    {"eacute", 0xE9},  {"egrave", 0xE8},  {"aacute", 0xE1},  {"agrave", 0xE0},
    {"ccedil", 0xE7},  {"ntilde", 0xF1},  {"oacute", 0xF3},  {"iacute", 0xED},
    {"uacute", 0xFA},  {"zwj", 0x200D},   {"zwnj", 0x200C},  {"dagger", 0x2020},
};

/* A character reference at s[i] == '&'; returns its length (0: none). */
static size_t kbt_entity(const char *s, size_t i, size_t end, uint32_t *cp)
{
    size_t j = i + 1;
    if (j < end && s[j] == '#') {
        j++;
        bool hex = j < end && (s[j] == 'x' || s[j] == 'X');
        if (hex)
            j++;
        uint32_t v = 0;
        size_t d0 = j;
        for (; j < end && j - d0 < 8; j++) {
            char c = s[j];
            int x = c >= '0' && c <= '9'                 ? c - '0'
                    : hex && c >= 'a' && c <= 'f'        ? c - 'a' + 10
                    : hex && c >= 'A' && c <= 'F'        ? c - 'A' + 10
                                                         : -1;
            if (x < 0)
                break;
            v = v * (hex ? 16 : 10) + (uint32_t)x;
        }
        if (j == d0 || j >= end || s[j] != ';')
            return 0;
        if (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            v = 0xFFFD;
        *cp = v;
        return j + 1 - i;
    }
    size_t n0 = j;
    while (j < end && j - n0 < 10 && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
        j++;
    if (j == n0 || j >= end || s[j] != ';')
        return 0;
    for (size_t k = 0; k < sizeof(kbt_entities) / sizeof(kbt_entities[0]); k++)
        if (strlen(kbt_entities[k].name) == j - n0 &&
            memcmp(kbt_entities[k].name, s + n0, j - n0) == 0) {
            *cp = kbt_entities[k].cp;
            return j + 1 - i;
        }
    return 0;
}

/* HTML text src[i..j): entities decoded. */
static void kbt_html_text(kbt_b *b, size_t i, size_t j)
{
    const char *s = b->src;
    while (i < j) {
        const char *amp = memchr(s + i, '&', j - i);
        size_t k = amp ? (size_t)(amp - s) : j;
        kbt_text(b, i, k);
        if (k >= j)
            break;
        uint32_t cp;
        size_t n = kbt_entity(s, k, j, &cp);
        if (n) {
            kbt_char(b, cp, k, n);
            i = k + n;
        } else {
            kbt_text(b, k, k + 1);
            i = k + 1;
        }
    }
}

/* Decoded, whitespace-collapsed copy of src[i..j) (for <title>). */
static char *kbt_plain(const char *s, size_t i, size_t j)
{
    char *out = malloc((j - i) * 3 + 1); /* an entity of 2+ bytes decodes to <= 4 */
    if (!out)
        return NULL;
    size_t n = 0;
    bool sp = false;
    while (i < j) {
        uint32_t cp = 0;
        size_t el = s[i] == '&' ? kbt_entity(s, i, j, &cp) : 0;
        if (!el) {
            cp = (unsigned char)s[i];
            el = 1;
        }
        if ((el > 1 && cp == 0xA0) || (cp < 0x80 && kbt_isws((char)cp))) {
            sp = n > 0;
        } else {
            if (sp)
                out[n++] = ' ';
            sp = false;
            if (el == 1)
                out[n++] = s[i];
            else
                n += uni_encode(cp, out + n);
        }
        i += el;
    }
    out[n] = '\0';
    return out;
}

/* Finds "</name" (any case) from i; returns its offset or end. */
static size_t kbt_find_close(const char *s, size_t i, size_t end, const char *name)
{
    size_t nl = strlen(name);
    for (;;) {
        const char *lt = memchr(s + i, '<', end - i);
        if (!lt)
            return end;
        i = (size_t)(lt - s);
        if (i + 2 + nl <= end && s[i + 1] == '/' && kbt_ieq(s + i + 2, nl, name))
            return i;
        i++;
    }
}

/* The '>' ending a tag whose attributes start at i (quotes respected). */
static size_t kbt_tag_end(const char *s, size_t i, size_t end)
{
    char q = 0;
    for (; i < end; i++) {
        if (q) {
            if (s[i] == q)
                q = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = s[i];
        } else if (s[i] == '>') {
            return i;
        }
    }
    return end;
}

static bool kbt_in_list(const char *name, size_t n, const char *const *list)
{
    for (; *list; list++)
        if (kbt_ieq(name, n, *list))
            return true;
    return false;
}

static const char *const kbt_block_tags[] = {
    "p",       "div",    "br",         "li",      "ul",       "ol",     "dl",     "dt",
    "dd",      "table",  "tr",         "td",      "th",       "thead",  "tbody",  "tfoot",
    "caption", "blockquote", "section", "article", "header",  "footer", "nav",    "aside",
    "main",    "hr",     "figure",     "figcaption", "form",  "fieldset", "legend", "address",
    "details", "summary", "body",      "html",    "head",     "center", "menu",   "dir",
    "option",  "select", "textarea",   "label",   "iframe",   "object", "video",  "audio",
    "canvas",  "svg",    NULL};

static void kbt_parse_html(kbt_b *b, size_t i, size_t len)
{
    const char *s = b->src;
    int skip = 0; /* depth inside noscript/template */
    while (i < len) {
        const char *lt = memchr(s + i, '<', len - i);
        size_t k = lt ? (size_t)(lt - s) : len;
        if (k > i && !skip)
            kbt_html_text(b, i, k);
        if (k >= len)
            break;
        i = k;
        if (len - i >= 4 && memcmp(s + i, "<!--", 4) == 0) {
            const char *e = NULL;
            for (size_t q = i + 4; q + 3 <= len; q++)
                if (s[q] == '-' && s[q + 1] == '-' && s[q + 2] == '>') {
                    e = s + q;
                    break;
                }
            i = e ? (size_t)(e - s) + 3 : len;
            continue;
        }
        if (i + 1 < len && (s[i + 1] == '!' || s[i + 1] == '?')) {
            size_t e = kbt_tag_end(s, i + 2, len);
            i = e < len ? e + 1 : len;
            continue;
        }
        size_t q = i + 1;
        bool closing = q < len && s[q] == '/';
        if (closing)
            q++;
        size_t n0 = q;
        if (q < len && ((s[q] >= 'a' && s[q] <= 'z') || (s[q] >= 'A' && s[q] <= 'Z')))
            while (q < len && ((s[q] >= 'a' && s[q] <= 'z') || (s[q] >= 'A' && s[q] <= 'Z') ||
                               (s[q] >= '0' && s[q] <= '9') || s[q] == '-' || s[q] == ':'))
                q++;
        size_t nl = q - n0;
        if (nl == 0) {
            if (!skip)
                kbt_html_text(b, i, i + 1); /* a lone '<' is text */
            i++;
            continue;
        }
        const char *name = s + n0;
        size_t e = kbt_tag_end(s, q, len);
        size_t after = e < len ? e + 1 : len;
        if (kbt_ieq(name, nl, "script") || kbt_ieq(name, nl, "style")) {
            if (!closing) {
                char nm[8];
                memcpy(nm, name, nl);
                nm[nl] = '\0';
                for (size_t c = 0; c < nl; c++)
                    nm[c] = (char)(nm[c] | 0x20);
                size_t c = kbt_find_close(s, after, len, nm);
                e = kbt_tag_end(s, c, len);
                after = e < len ? e + 1 : len;
            }
        } else if (kbt_ieq(name, nl, "title")) {
            if (!closing) {
                size_t c = kbt_find_close(s, after, len, "title");
                if (!b->title && !skip) {
                    b->title = kbt_plain(s, after, c);
                    if (!b->title)
                        b->oom = true;
                }
                e = kbt_tag_end(s, c, len);
                after = e < len ? e + 1 : len;
            }
        } else if (kbt_ieq(name, nl, "noscript") || kbt_ieq(name, nl, "template")) {
            if (closing)
                skip -= skip > 0;
            else if (e == 0 || s[e - 1] != '/')
                skip++;
        } else if (skip) {
            /* inside dropped content */
        } else if (nl == 2 && (name[0] | 0x20) == 'h' && name[1] >= '1' && name[1] <= '6') {
            if (closing)
                kbt_close(b);
            else
                kbt_open(b, KBT_HEAD, name[1] - '0');
        } else if (kbt_ieq(name, nl, "pre")) {
            if (closing)
                kbt_close(b);
            else
                kbt_open(b, KBT_CODE, 0);
        } else if (kbt_ieq(name, nl, "br") && b->open && b->kind == KBT_CODE) {
            kbt_char(b, '\n', i, after - i);
        } else if (kbt_in_list(name, nl, kbt_block_tags)) {
            if (!(b->open && b->kind == KBT_HEAD) || closing)
                kbt_close(b);
        }
        i = after;
    }
    kbt_close(b);
}

/* ---- chunking -------------------------------------------------------------------- */

#define KBT_MAX_TITLE 512
#define KBT_MAX_HEADING 120 /* bytes of one heading in a title */

typedef struct kbt_mem {
    struct kbt_mem *next;
    char data[];
} kbt_mem;

typedef struct {
    kbtext_doc doc;
    kbt_mem *mem;
    size_t cap;
} kbt_out;

static char *kbt_strdup(kbt_out *o, const char *s, size_t n)
{
    kbt_mem *m = malloc(sizeof(*m) + n + 1);
    if (!m)
        return NULL;
    m->next = o->mem;
    o->mem = m;
    memcpy(m->data, s, n);
    m->data[n] = '\0';
    return m->data;
}

static size_t kbt_map_seg(const kbt_b *b, size_t o)
{
    size_t lo = 0, hi = b->nseg;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (b->seg[mid].out <= o)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static size_t kbt_map_start(const kbt_b *b, size_t o)
{
    const kbt_seg *s = &b->seg[kbt_map_seg(b, o)];
    return s->copy ? s->in + (o - s->out) : s->in;
}

static size_t kbt_map_end(const kbt_b *b, size_t o)
{
    const kbt_seg *s = &b->seg[kbt_map_seg(b, o - 1)];
    return s->copy ? s->in + (o - s->out) : s->in + s->in_len;
}

static int kbt_emit(kbt_out *o, const kbt_b *b, const char *title, size_t a, size_t z)
{
    while (a < z && kbt_isws(b->buf[a]))
        a++;
    while (z > a && kbt_isws(b->buf[z - 1]))
        z--;
    if (a == z)
        return CORE_OK;
    if (!kbt_grow((void **)&o->doc.chunks, &o->cap, o->doc.n + 1, sizeof(kbtext_chunk)))
        return CORE_ENOMEM;
    char *t = kbt_strdup(o, b->buf + a, z - a);
    if (!t)
        return CORE_ENOMEM;
    o->doc.chunks[o->doc.n++] = (kbtext_chunk){.title = title,
                                               .text = t,
                                               .len = z - a,
                                               .start = kbt_map_start(b, a),
                                               .end = kbt_map_end(b, z)};
    return CORE_OK;
}

static bool kbt_sentence_end(const char *s, size_t i)
{
    /* s[i] ends a sentence: ".!?" before a space, or the CJK full stops. */
    if ((s[i] == '.' || s[i] == '!' || s[i] == '?' || s[i] == ':' || s[i] == ';') &&
        kbt_isws(s[i + 1]))
        return true;
    return i >= 2 && (memcmp(s + i - 2, "\xE3\x80\x82", 3) == 0 || /* 。 */
                      memcmp(s + i - 2, "\xEF\xBC\x81", 3) == 0 || /* ！ */
                      memcmp(s + i - 2, "\xEF\xBC\x9F", 3) == 0);  /* ？ */
}

/* Chunks the blocks blk[first..last) (one section) under title. */
static int kbt_section(kbt_out *o, const kbt_b *b, const kbtext_params *p, const char *title,
                       size_t first, size_t last)
{
    const char *s = b->buf;
    size_t cb = p->chunk_bytes, ov = p->overlap_bytes;
    size_t pos = b->blk[first].cs, end = b->blk[last - 1].ce, bi = first;
    while (pos < end) {
        while (pos < end && kbt_isws(s[pos]))
            pos++;
        if (pos >= end)
            break;
        if (end - pos <= cb)
            return kbt_emit(o, b, title, pos, end);
        size_t hi = pos + cb, lo = pos + cb / 2, cut = 0;
        while (bi < last && b->blk[bi].ce <= pos)
            bi++;
        /* A code block across the limit: cut before it, or take it whole. */
        for (size_t k = bi; k < last && b->blk[k].cs < hi; k++) {
            const kbt_block *c = &b->blk[k];
            if (c->kind != KBT_CODE || c->ce <= hi)
                continue;
            if (c->cs > pos + cb / 4)
                cut = c->cs;
            else if (c->ce - pos <= 4 * cb)
                cut = c->ce;
            else
                for (size_t q = hi; q > lo && !cut; q--)
                    if (s[q - 1] == '\n')
                        cut = q;
            break;
        }
        if (!cut) /* the last paragraph end in the window */
            for (size_t k = bi; k < last && b->blk[k].cs < hi; k++)
                if (b->blk[k].ce >= lo && b->blk[k].ce <= hi)
                    cut = b->blk[k].ce;
        for (size_t q = hi; !cut && q > lo; q--)
            if (kbt_sentence_end(s, q - 1))
                cut = q;
        for (size_t q = hi; !cut && q > lo; q--)
            if (kbt_isws(s[q - 1]))
                cut = q;
        if (!cut) {
            cut = hi;
            while (cut > pos + 1 && ((unsigned char)s[cut] & 0xC0) == 0x80)
                cut--;
        }
        int rc = kbt_emit(o, b, title, pos, cut);
        if (rc)
            return rc;
        size_t np = cut;
        if (ov && cut - pos > ov && cut < end) {
            np = cut - ov;
            while (np < cut && ((unsigned char)s[np] & 0xC0) == 0x80)
                np++;
            /* Start at a word: after the next space, unless there is none. */
            size_t w = np;
            while (w < cut && !kbt_isws(s[w]))
                w++;
            np = w < cut ? w : np;
        }
        pos = np > pos ? np : cut;
    }
    return CORE_OK;
}

static int kbt_chunk(kbt_out *o, const kbt_b *b, const kbtext_params *p)
{
    size_t hs[7] = {0}, he[7] = {0}; /* heading text per level 1..6 */
    char *title = NULL;
    size_t i = 0;
    while (i < b->nblk) {
        const kbt_block *k = &b->blk[i];
        if (k->kind == KBT_HEAD) {
            int lv = k->level < 1 ? 1 : k->level > 6 ? 6 : k->level;
            hs[lv] = k->cs;
            he[lv] = k->ce;
            for (int l = lv + 1; l <= 6; l++)
                hs[l] = he[l] = 0;
            if (!o->doc.title) {
                o->doc.title = kbt_strdup(o, b->buf + k->cs, k->ce - k->cs);
                if (!o->doc.title)
                    return CORE_ENOMEM;
            }
            title = NULL;
            i++;
            continue;
        }
        size_t j = i;
        while (j < b->nblk && b->blk[j].kind != KBT_HEAD)
            j++;
        if (!title) {
            char t[KBT_MAX_TITLE + 8];
            size_t n = 0;
            for (int l = 1; l <= 6; l++) {
                if (he[l] == hs[l])
                    continue;
                size_t hl = he[l] - hs[l];
                if (hl > KBT_MAX_HEADING) { /* at a character boundary */
                    hl = KBT_MAX_HEADING;
                    while (hl && ((unsigned char)b->buf[hs[l] + hl] & 0xC0) == 0x80)
                        hl--;
                }
                if (n + hl + 3 > KBT_MAX_TITLE)
                    break;
                if (n) {
                    memcpy(t + n, " > ", 3);
                    n += 3;
                }
                memcpy(t + n, b->buf + hs[l], hl);
                n += hl;
            }
            title = kbt_strdup(o, t, n);
            if (!title)
                return CORE_ENOMEM;
        }
        int rc = kbt_section(o, b, p, title, i, j);
        if (rc)
            return rc;
        i = j;
    }
    return CORE_OK;
}

void kbtext_doc_free(kbtext_doc *d)
{
    if (!d)
        return;
    kbt_out *o = (kbt_out *)d;
    for (kbt_mem *m = o->mem, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    free(d->chunks);
    free(o);
}

int kbtext_parse(const char *data, size_t len, kbtext_format f, const kbtext_params *p,
                 kbtext_doc **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || p->chunk_bytes < 64 || p->overlap_bytes >= p->chunk_bytes / 2 || (!data && len))
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "chunk_bytes must be >= 64 and overlap_bytes < chunk_bytes / 2");
    if (kbtext_is_binary(data, len))
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "binary content (NUL bytes or invalid UTF-8); only UTF-8 text, "
                         "Markdown and HTML can be ingested");
    if (f == KBTEXT_AUTO)
        f = kbtext_detect(NULL, data, len);
    kbt_b b = {.src = data};
    size_t start = len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    if (f == KBTEXT_HTML)
        kbt_parse_html(&b, start, len);
    else if (f == KBTEXT_MARKDOWN)
        kbt_parse_markdown(&b, start, len);
    else
        kbt_parse_text(&b, start, len);
    int rc = CORE_OK;
    kbt_out *o = calloc(1, sizeof(*o));
    if (!o || b.oom) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    if (b.title && *b.title) {
        o->doc.title = kbt_strdup(o, b.title, strlen(b.title));
        if (!o->doc.title) {
            rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
            goto out;
        }
    }
    rc = kbt_chunk(o, &b, p);
    if (rc) {
        rc = core_errf(rc, msg, msg_size, "out of memory");
        goto out;
    }
    if (o->doc.n == 0)
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "empty document: no text to index");
out:
    free(b.buf);
    free(b.seg);
    free(b.blk);
    free(b.title);
    if (rc) {
        kbtext_doc_free(o ? &o->doc : NULL);
        return rc;
    }
    *out = &o->doc;
    return CORE_OK;
}

/* ---- terms ------------------------------------------------------------------------ */

/* Sorted, for bsearch. */
static const char *const kbt_stop[] = {
    "a",       "about",   "above",      "after",    "again",   "against", "all",     "am",
    "an",      "and",     "any",        "are",      "as",      "at",      "be",      "because",
    "been",    "before",  "being",      "below",    "between", "both",    "but",     "by",
    "can",     "could",   "did",        "do",       "does",    "doing",   "down",    "during",
    "each",    "few",     "for",        "from",     "further", "had",     "has",     "have",
    "having",  "he",      "her",        "here",     "hers",    "herself", "him",     "himself",
    "his",     "how",     "i",          "if",       "in",      "into",    "is",      "it",
    "its",     "itself",  "just",       "me",       "more",    "most",    "my",      "myself",
    "no",      "nor",     "not",        "now",      "of",      "off",     "on",      "once",
    "only",    "or",      "other",      "our",      "ours",    "ourselves", "out",   "over",
    "own",     "s",       "same",       "she",      "should",  "so",      "some",    "such",
    "t",       "than",    "that",       "the",      "their",   "theirs",  "them",    "themselves",
    "then",    "there",   "these",      "they",     "this",    "those",   "through", "to",
    "too",     "under",   "until",      "up",       "very",    "was",     "we",      "were",
    "what",    "when",    "where",      "which",    "while",   "who",     "whom",    "why",
    "will",    "with",    "would",      "you",      "your",    "yours",   "yourself", "yourselves",
};

static int kbt_stopcmp(const void *a, const void *b)
{
    return strcmp(a, *(const char *const *)b);
}

static bool kbt_is_stop(const char *w)
{
    return bsearch(w, kbt_stop, sizeof(kbt_stop) / sizeof(kbt_stop[0]), sizeof(kbt_stop[0]),
                   kbt_stopcmp) != NULL;
}

static bool kbt_is_cjk(uint32_t c)
{
    return (c >= 0x3040 && c <= 0x30FF) ||   /* hiragana, katakana */
           (c >= 0x31F0 && c <= 0x31FF) ||   /* katakana extensions */
           (c >= 0x3400 && c <= 0x4DBF) ||   /* CJK extension A */
           (c >= 0x4E00 && c <= 0x9FFF) ||   /* CJK unified ideographs */
           (c >= 0xAC00 && c <= 0xD7AF) ||   /* hangul syllables */
           (c >= 0x1100 && c <= 0x11FF) ||   /* hangul jamo */
           (c >= 0x3130 && c <= 0x318F) ||   /* hangul compatibility jamo */
           (c >= 0xF900 && c <= 0xFAFF) ||   /* compatibility ideographs */
           (c >= 0xFF66 && c <= 0xFF9F) ||   /* halfwidth katakana */
           (c >= 0x20000 && c <= 0x3134F);   /* extensions B.. */
}

typedef struct {
    kbtext_term_fn fn;
    void *user;
    char w[KBTEXT_MAX_TERM + 8];
    size_t wn;
    bool over, ascii;
    uint32_t prev; /* last CJK character */
    int run;       /* CJK characters in the current run */
} kbt_terms_st;

static int kbt_flush_word(kbt_terms_st *t)
{
    int rc = 0;
    if (t->wn && !t->over) {
        t->w[t->wn] = '\0';
        if (!kbt_is_stop(t->w)) {
            size_t n = t->ascii ? kbtext_stem(t->w, t->wn) : t->wn;
            rc = t->fn(t->user, t->w, n);
        }
    }
    t->wn = 0;
    t->over = false;
    t->ascii = true;
    return rc;
}

static int kbt_flush_cjk(kbt_terms_st *t)
{
    int rc = 0;
    if (t->run == 1) {
        char u[4];
        size_t n = uni_encode(t->prev, u);
        rc = t->fn(t->user, u, n);
    }
    t->run = 0;
    return rc;
}

int kbtext_terms(const char *text, size_t len, kbtext_term_fn fn, void *user)
{
    kbt_terms_st t = {.fn = fn, .user = user, .ascii = true};
    size_t off = 0;
    int rc = 0;
    while (off < len && !rc) {
        unsigned char c = (unsigned char)text[off];
        if (c < 0x80 && c != '\'') { /* ASCII, most of the text: no table lookups */
            off++;
            if (t.run && (rc = kbt_flush_cjk(&t)))
                break;
            bool alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
            if (alpha || (c >= '0' && c <= '9')) {
                if (t.wn + 1 > KBTEXT_MAX_TERM)
                    t.over = true;
                else
                    t.w[t.wn++] = (char)(alpha ? c | 0x20 : c);
                t.ascii &= alpha;
            } else {
                rc = kbt_flush_word(&t);
            }
            continue;
        }
        uint32_t cp = uni_decode(text, len, &off);
        if (kbt_is_cjk(cp)) {
            if ((rc = kbt_flush_word(&t)))
                break;
            if (t.run) {
                char u[8];
                size_t n = uni_encode(t.prev, u);
                n += uni_encode(cp, u + n);
                rc = fn(user, u, n);
            }
            t.prev = cp;
            t.run++;
            continue;
        }
        if (t.run && (rc = kbt_flush_cjk(&t)))
            break;
        unsigned f = uni_flags(cp);
        if (f & UNI_MARK)
            continue; /* combining marks: diacritics are folded away */
        if (f & (UNI_LETTER | UNI_NUMBER)) {
            cp = uni_tolower(uni_nfd_first(uni_tolower(cp)));
            if (cp >= 0x80 || !(cp >= 'a' && cp <= 'z'))
                t.ascii = false;
            char u[4];
            size_t n = uni_encode(cp, u);
            if (t.wn + n > KBTEXT_MAX_TERM) {
                t.over = true;
            } else {
                memcpy(t.w + t.wn, u, n);
                t.wn += n;
            }
            continue;
        }
        if ((cp == '\'' || cp == 0x2019) && t.wn && off < len) {
            /* "don't" -> "dont"; a possessive 's is dropped. */
            size_t o2 = off;
            uint32_t nx = uni_decode(text, len, &o2);
            if (nx == 's' || nx == 'S') {
                size_t o3 = o2;
                uint32_t after = o3 < len ? uni_decode(text, len, &o3) : ' ';
                if (!(uni_flags(after) & (UNI_LETTER | UNI_NUMBER))) {
                    off = o2;
                    rc = kbt_flush_word(&t);
                    continue;
                }
            }
            if (uni_flags(nx) & UNI_LETTER)
                continue;
        }
        rc = kbt_flush_word(&t);
    }
    if (!rc)
        rc = kbt_flush_word(&t);
    if (!rc && t.run)
        rc = kbt_flush_cjk(&t);
    return rc;
}

/* ---- Porter stemmer (the 1980 algorithm, as in Porter's reference C) ------------- */

typedef struct {
    char *b;
    int k, j; /* k: last index of the word; j: end of the stem being tested */
} kbt_stem_st;

static bool kbt_cons(const kbt_stem_st *z, int i)
{
    switch (z->b[i]) {
    case 'a':
    case 'e':
    case 'i':
    case 'o':
    case 'u':
        return false;
    case 'y':
        return i == 0 ? true : !kbt_cons(z, i - 1);
    default:
        return true;
    }
}

/* The number of VC sequences in b[0..j]. */
static int kbt_m(const kbt_stem_st *z)
{
    int n = 0, i = 0;
    for (;;) {
        if (i > z->j)
            return n;
        if (!kbt_cons(z, i))
            break;
        i++;
    }
    i++;
    for (;;) {
        for (;;) {
            if (i > z->j)
                return n;
            if (kbt_cons(z, i))
                break;
            i++;
        }
        i++;
        n++;
        for (;;) {
            if (i > z->j)
                return n;
            if (!kbt_cons(z, i))
                break;
            i++;
        }
        i++;
    }
}

static bool kbt_vowel_in_stem(const kbt_stem_st *z)
{
    for (int i = 0; i <= z->j; i++)
        if (!kbt_cons(z, i))
            return true;
    return false;
}

static bool kbt_doublec(const kbt_stem_st *z, int j)
{
    return j >= 1 && z->b[j] == z->b[j - 1] && kbt_cons(z, j);
}

static bool kbt_cvc(const kbt_stem_st *z, int i)
{
    if (i < 2 || !kbt_cons(z, i) || kbt_cons(z, i - 1) || !kbt_cons(z, i - 2))
        return false;
    char c = z->b[i];
    return c != 'w' && c != 'x' && c != 'y';
}

static bool kbt_ends(kbt_stem_st *z, const char *s)
{
    int n = (int)strlen(s);
    if (n > z->k + 1 || memcmp(z->b + z->k - n + 1, s, (size_t)n) != 0)
        return false;
    z->j = z->k - n;
    return true;
}

static void kbt_setto(kbt_stem_st *z, const char *s)
{
    int n = (int)strlen(s);
    memcpy(z->b + z->j + 1, s, (size_t)n);
    z->k = z->j + n;
}

static void kbt_r(kbt_stem_st *z, const char *s)
{
    if (kbt_m(z) > 0)
        kbt_setto(z, s);
}

static void kbt_step1ab(kbt_stem_st *z)
{
    if (z->b[z->k] == 's') {
        if (kbt_ends(z, "sses"))
            z->k -= 2;
        else if (kbt_ends(z, "ies"))
            kbt_setto(z, "i");
        else if (z->b[z->k - 1] != 's')
            z->k--;
    }
    if (kbt_ends(z, "eed")) {
        if (kbt_m(z) > 0)
            z->k--;
    } else if ((kbt_ends(z, "ed") || kbt_ends(z, "ing")) && kbt_vowel_in_stem(z)) {
        z->k = z->j;
        if (kbt_ends(z, "at"))
            kbt_setto(z, "ate");
        else if (kbt_ends(z, "bl"))
            kbt_setto(z, "ble");
        else if (kbt_ends(z, "iz"))
            kbt_setto(z, "ize");
        else if (kbt_doublec(z, z->k)) {
            z->k--;
            char c = z->b[z->k];
            if (c == 'l' || c == 's' || c == 'z')
                z->k++;
        } else if (kbt_m(z) == 1 && kbt_cvc(z, z->k)) {
            kbt_setto(z, "e");
        }
    }
}

static void kbt_step1c(kbt_stem_st *z)
{
    if (kbt_ends(z, "y") && kbt_vowel_in_stem(z))
        z->b[z->k] = 'i';
}

typedef struct {
    const char *from, *to;
} kbt_rule_t;

/* The first rule whose suffix matches is the only one tried. */
static void kbt_rules(kbt_stem_st *z, const kbt_rule_t *r)
{
    for (; r->from; r++)
        if (kbt_ends(z, r->from)) {
            kbt_r(z, r->to);
            return;
        }
}

static void kbt_step2(kbt_stem_st *z)
{
    static const kbt_rule_t a[] = {{"ational", "ate"}, {"tional", "tion"}, {0, 0}};
    static const kbt_rule_t c[] = {{"enci", "ence"}, {"anci", "ance"}, {0, 0}};
    static const kbt_rule_t e[] = {{"izer", "ize"}, {0, 0}};
    static const kbt_rule_t l[] = {{"bli", "ble"}, {"alli", "al"}, {"entli", "ent"},
                                   {"eli", "e"},   {"ousli", "ous"}, {0, 0}};
    static const kbt_rule_t o[] = {{"ization", "ize"}, {"ation", "ate"}, {"ator", "ate"}, {0, 0}};
    static const kbt_rule_t s[] = {{"alism", "al"}, {"iveness", "ive"}, {"fulness", "ful"},
                                   {"ousness", "ous"}, {0, 0}};
    static const kbt_rule_t t[] = {{"aliti", "al"}, {"iviti", "ive"}, {"biliti", "ble"}, {0, 0}};
    static const kbt_rule_t g[] = {{"logi", "log"}, {0, 0}};
    switch (z->b[z->k - 1]) {
    case 'a': kbt_rules(z, a); break;
    case 'c': kbt_rules(z, c); break;
    case 'e': kbt_rules(z, e); break;
    case 'l': kbt_rules(z, l); break;
    case 'o': kbt_rules(z, o); break;
    case 's': kbt_rules(z, s); break;
    case 't': kbt_rules(z, t); break;
    case 'g': kbt_rules(z, g); break;
    default: break;
    }
}

static void kbt_step3(kbt_stem_st *z)
{
    static const kbt_rule_t e[] = {{"icate", "ic"}, {"ative", ""}, {"alize", "al"}, {0, 0}};
    static const kbt_rule_t i[] = {{"iciti", "ic"}, {0, 0}};
    static const kbt_rule_t l[] = {{"ical", "ic"}, {"ful", ""}, {0, 0}};
    static const kbt_rule_t s[] = {{"ness", ""}, {0, 0}};
    switch (z->b[z->k]) {
    case 'e': kbt_rules(z, e); break;
    case 'i': kbt_rules(z, i); break;
    case 'l': kbt_rules(z, l); break;
    case 's': kbt_rules(z, s); break;
    default: break;
    }
}

static void kbt_step4(kbt_stem_st *z)
{
    static const char *const a[] = {"al", 0}, *const c[] = {"ance", "ence", 0},
                             *const e[] = {"er", 0}, *const i[] = {"ic", 0},
                             *const l[] = {"able", "ible", 0},
                             *const n[] = {"ant", "ement", "ment", "ent", 0},
                             *const s[] = {"ism", 0}, *const t[] = {"ate", "iti", 0},
                             *const u[] = {"ous", 0}, *const v[] = {"ive", 0},
                             *const zz[] = {"ize", 0};
    const char *const *list = NULL;
    switch (z->b[z->k - 1]) {
    case 'a': list = a; break;
    case 'c': list = c; break;
    case 'e': list = e; break;
    case 'i': list = i; break;
    case 'l': list = l; break;
    case 'n': list = n; break;
    case 'o':
        if (kbt_ends(z, "ion") && z->j >= 0 && (z->b[z->j] == 's' || z->b[z->j] == 't'))
            break;
        if (kbt_ends(z, "ou"))
            break;
        return;
    case 's': list = s; break;
    case 't': list = t; break;
    case 'u': list = u; break;
    case 'v': list = v; break;
    case 'z': list = zz; break;
    default: return;
    }
    if (list) {
        bool hit = false;
        for (; *list && !hit; list++)
            hit = kbt_ends(z, *list);
        if (!hit)
            return;
    }
    if (kbt_m(z) > 1)
        z->k = z->j;
}

static void kbt_step5(kbt_stem_st *z)
{
    z->j = z->k;
    if (z->b[z->k] == 'e') {
        int a = kbt_m(z);
        if (a > 1 || (a == 1 && !kbt_cvc(z, z->k - 1)))
            z->k--;
    }
    if (z->b[z->k] == 'l' && kbt_doublec(z, z->k) && kbt_m(z) > 1)
        z->k--;
}

size_t kbtext_stem(char *w, size_t len)
{
    if (len <= 2)
        return len;
    kbt_stem_st z = {.b = w, .k = (int)len - 1, .j = 0};
    kbt_step1ab(&z);
    if (z.k > 0) {
        kbt_step1c(&z);
        kbt_step2(&z);
        kbt_step3(&z);
        kbt_step4(&z);
        kbt_step5(&z);
    }
    w[z.k + 1] = '\0';
    return (size_t)z.k + 1;
}
