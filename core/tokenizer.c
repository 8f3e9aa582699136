/* tokenizer.c: loading a tokenizer from GGUF metadata, cutting special
 * tokens out of the input, and rendering tokens as text.
 *
 * Metadata read (llama.cpp's keys):
 *   tokenizer.ggml.model        "llama" | "gpt2" | "bert"
 *   tokenizer.ggml.pre          BPE pre-tokenizer name (absent: "default")
 *   tokenizer.ggml.tokens       string[n]
 *   tokenizer.ggml.scores       float[n] (optional; SPM merge priority)
 *   tokenizer.ggml.token_type   int[n]   (optional; 1 normal, 2 unknown,
 *                               3 control, 4 user-defined, 5 unused, 6 byte)
 *   tokenizer.ggml.merges       string[m] "left right", rank = index (BPE)
 *   tokenizer.ggml.{bos,eos,eot,eom,unknown,seperator,padding,mask}_token_id
 *   tokenizer.ggml.{add_bos_token,add_eos_token,add_space_prefix}
 * Defaults per model type follow llama.cpp (llama_vocab::impl::load),
 * including its detection of end-of-generation tokens by their text.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>

#include "tok_impl.h"
#include "unicode.h"

#define TOK_RE_DS_LETTERS \
    "\\s?[A-Za-z\302\265\303\200-\303\226\303\230-\303\266\303\270-\306\272" \
    "\306\274-\306\277\307\204-\312\223\312\225-\312\257\315\260-\315\263" \
    "\315\266\315\267\315\273-\315\275\315\277\316\206\316\210-\316\212\316" \
    "\214\316\216-\316\241\316\243-\317\265\317\267-\322\201\322\212-\324" \
    "\257\324\261-\325\226\341\202\240-\341\203\205\341\216\240-\341\217\265" \
    "\341\217\270-\341\217\275\341\262\220-\341\262\272\341\262\275-\341\262" \
    "\277\341\264\200-\341\264\253\341\265\253-\341\265\267\341\265\271-\341" \
    "\266\232\341\270\200-\341\274\225\341\274\230-\341\274\235\341\274\240" \
    "-\341\275\205\341\275\210-\341\275\215\341\275\220-\341\275\227\341\275" \
    "\231\341\275\233\341\275\235\341\275\237-\341\275\275\341\276\200-\341" \
    "\276\264\341\276\266-\341\276\274\341\276\276\341\277\202-\341\277\204" \
    "\341\277\206-\341\277\214\341\277\220-\341\277\223\341\277\226-\341\277" \
    "\233\341\277\240-\341\277\254\341\277\262-\341\277\264\341\277\266-\341" \
    "\277\274\342\204\202\342\204\207\342\204\212-\342\204\223\342\204\225" \
    "\342\204\231-\342\204\235\342\204\244\342\204\246\342\204\250\342\204" \
    "\252-\342\204\255\342\204\257-\342\204\264\342\204\271\342\204\274-\342" \
    "\204\277\342\205\205-\342\205\211\342\205\216\342\206\203\342\206\204" \
    "\342\260\200-\342\261\273\342\261\276-\342\263\244\342\263\253-\342\263" \
    "\256\342\263\262\342\263\263\352\231\200-\352\231\255\352\232\200-\352" \
    "\232\233\352\234\242-\352\235\257\352\235\261-\352\236\207\352\236\213" \
    "-\352\236\216\352\255\260-\352\256\277\357\254\200-\357\254\206\357\254" \
    "\223-\357\254\227\357\274\241-\357\274\272\357\275\201-\357\275\232\360" \
    "\220\220\200-\360\220\221\217\360\220\222\260-\360\220\223\223\360\220" \
    "\223\230-\360\220\223\273\360\220\262\200-\360\220\262\262\360\220\263" \
    "\200-\360\220\263\262\360\221\242\240-\360\221\243\237\360\236\244\200" \
    "-\360\236\245\203]+"

#define TOK_RE_DS_PUNCT \
    "\\s?[!-/:-~\357\274\201-\357\274\217\357\274\232-\357\275\236\342\200" \
    "\230-\342\200\237\343\200\200-\343\200\202]+"

#define TOK_RE_DS_CJK \
    "[\344\270\200-\351\276\245\340\240\200-\344\270\200\352\260\200-\355" \
    "\237\277]+"

#define TOK_RE_DS3_CJK \
    "[\344\270\200-\351\276\245\343\201\200-\343\202\237\343\202\240-\343" \
    "\203\277]+"

#define TOK_RE_PORO \
    " ?[^(\\s|.,!?\342\200\246\343\200\202\357\274\214\343\200\201\340\245" \
    "\244\333\224\330\214)]+"

#define TOK_RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define TOK_RE_LLAMA3                                                                              \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_RE_QWEN2                                                                               \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"      \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_RE_CASED_CONTRACTION "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

static const char *const tok_re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", TOK_RE_GPT2, "\\p{N}+",
                                              "[0-9][0-9][0-9]"};
static const char *const tok_re_gpt2[] = {TOK_RE_GPT2};
static const char *const tok_re_llama3[] = {TOK_RE_LLAMA3};
static const char *const tok_re_qwen2[] = {TOK_RE_QWEN2};
static const char *const tok_re_deepseek_llm[] = {"[\r\n]", TOK_RE_DS_LETTERS, TOK_RE_DS_PUNCT, "\\s+$",
                                                  TOK_RE_DS_CJK, "\\p{N}+"};
static const char *const tok_re_deepseek_coder[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", TOK_RE_DS_CJK,
                                                    "\\p{N}"};
static const char *const tok_re_deepseek3[] = {
    "\\p{N}{1,3}", TOK_RE_DS3_CJK,
    ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
     "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")};
static const char *const tok_re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", TOK_RE_GPT2, "[0-9][0-9][0-9]"};
static const char *const tok_re_starcoder[] = {"\\p{N}", TOK_RE_GPT2};
static const char *const tok_re_poro[] = {TOK_RE_PORO};
static const char *const tok_re_viking[] = {TOK_RE_PORO, "\\p{N}"};
static const char *const tok_re_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=["
    "\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+("
    "?!\\S)|\\s+"};
static const char *const tok_re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" TOK_RE_CASED_CONTRACTION
    "?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" TOK_RE_CASED_CONTRACTION
    "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};

enum { PRE_IGNORE_MERGES = 1, PRE_ADD_BOS = 2, PRE_NO_BOS = 4 };

#define TOK_RE(a) a, sizeof a / sizeof a[0]
static const struct {
    const char *names; /* space-separated tokenizer.ggml.pre values */
    const char *const *re;
    size_t n_re;
    unsigned flags;
} tok_pres[] = {
    {"default", TOK_RE(tok_re_default), 0},
    {"gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de mpt olmo jais trillion granite-docling "
     "a.x-4.0 mellum modern-bert exaone4 jina-v1-en jina-v2-code roberta-bpe",
     TOK_RE(tok_re_gpt2), 0},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", TOK_RE(tok_re_llama3),
     PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"dbrx smaug-bpe", TOK_RE(tok_re_llama3), 0},
    {"glm4 chatglm-bpe", TOK_RE(tok_re_llama3), PRE_NO_BOS},
    {"qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open", TOK_RE(tok_re_qwen2), 0},
    {"deepseek-llm", TOK_RE(tok_re_deepseek_llm), 0},
    {"deepseek-coder", TOK_RE(tok_re_deepseek_coder), 0},
    {"deepseek-v3 hunyuan-dense joyai-llm hy_v4", TOK_RE(tok_re_deepseek3), 0},
    {"falcon", TOK_RE(tok_re_falcon), 0},
    {"starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", TOK_RE(tok_re_starcoder), 0},
    {"poro-chat bloom gpt3-finnish", TOK_RE(tok_re_poro), 0},
    {"viking", TOK_RE(tok_re_viking), 0},
    {"tekken", TOK_RE(tok_re_tekken), PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"gpt-4o llama4 kanana2 talkie minimax-m2", TOK_RE(tok_re_gpt4o), 0},
};

/* ---- small utilities ---- */

int tok_ivec_grow(tok_ivec *a, size_t need)
{
    size_t cap = a->cap ? a->cap : 16;
    while (cap < need)
        cap *= 2;
    int32_t *nv = realloc(a->v, cap * sizeof *nv);
    if (!nv)
        return CORE_ENOMEM;
    a->v = nv;
    a->cap = cap;
    return 0;
}

int tok_svec_grow(tok_svec *a, size_t need)
{
    size_t cap = a->cap ? a->cap : 16;
    while (cap < need)
        cap *= 2;
    size_t *nv = realloc(a->v, cap * sizeof *nv);
    if (!nv)
        return CORE_ENOMEM;
    a->v = nv;
    a->cap = cap;
    return 0;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ k) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k |= (uint64_t)s[i] << (8 * i);
    h = (h ^ k) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 32);
}

static inline uint64_t tok_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

static size_t tok_pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

int32_t tok_lookup(const tok_vocab *v, const char *s, size_t n)
{
    for (size_t i = tok_hash(s, n) & v->tab_mask;; i = (i + 1) & v->tab_mask) {
        int32_t id = v->tab[i];
        if (id < 0)
            return -1;
        if (v->tok[id].n == n && !memcmp(v->tok[id].s, s, n))
            return id;
    }
}

int32_t tok_merge_rank(const tok_vocab *v, int32_t left, int32_t right, int32_t *res)
{
    if (!v->mkey)
        return -1;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (size_t i = tok_mix64(key) & v->m_mask;; i = (i + 1) & v->m_mask) {
        if (v->mrank[i] < 0)
            return -1;
        if (v->mkey[i] == key) {
            *res = v->mres[i];
            return v->mrank[i];
        }
    }
}

static bool tok_is(const tok_entry *t, const char *s)
{
    size_t n = strlen(s);
    return t->n == n && !memcmp(t->s, s, n);
}

/* Every special text detected by name starts with one of these bytes. */
static inline bool tok_maybe_named(const tok_entry *t)
{
    unsigned char c = t->n ? (unsigned char)t->s[0] : 0;
    return c == '<' || c == '[' || c == '_' || c == 0xE2;
}

static bool tok_is_any(const tok_entry *t, const char *const *list)
{
    for (; *list; list++)
        if (tok_is(t, *list))
            return true;
    return false;
}

/* ---- loading ---- */

typedef struct {
    const gguf *g;
    tok_vocab *v;
    char *msg;
    size_t msg_size;
} tok_loader;

/* Reads an optional token id key into *id. Absent or negative: unchanged.
 * Out of range: CORE_EFORMAT when strict, else ignored (llama.cpp keeps
 * the default then). */
static int tok_read_id(tok_loader *L, const char *key, int32_t *id, bool strict)
{
    int64_t x;
    int rc = gguf_get_i64(L->g, key, &x);
    if (rc == CORE_ENOTFOUND)
        return 0;
    if (rc)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "%s: not an integer", key);
    if (x < 0)
        return 0;
    if (x >= L->v->n_tok) {
        if (strict)
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "%s = %lld is out of range (%d tokens)", key,
                             (long long)x, L->v->n_tok);
        return 0;
    }
    *id = (int32_t)x;
    return 0;
}

static int tok_read_bool(tok_loader *L, const char *key, bool *b)
{
    int rc = gguf_get_bool(L->g, key, b);
    if (rc == CORE_ENOTFOUND)
        return 0;
    if (rc)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "%s: not a bool", key);
    return 0;
}

/* Array key of strings or numbers with exactly n elements; -1 if absent. */
static int tok_array(tok_loader *L, const char *key, bool strings, bool required, uint64_t n, int64_t *kv)
{
    *kv = gguf_find_key(L->g, key);
    if (*kv < 0) {
        if (required)
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "missing %s", key);
        return 0;
    }
    gguf_vtype et = gguf_kv_arr_type(L->g, *kv);
    bool ok = gguf_kv_type(L->g, *kv) == GGUF_ARRAY &&
              (strings ? et == GGUF_STRING : et != GGUF_STRING && et != GGUF_ARRAY && et != GGUF_BOOL);
    if (!ok)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "%s: not an array of %s", key,
                         strings ? "strings" : "numbers");
    if (n != UINT64_MAX && gguf_kv_arr_n(L->g, *kv) != n)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "%s has %llu entries for %llu tokens", key,
                         (unsigned long long)gguf_kv_arr_n(L->g, *kv), (unsigned long long)n);
    return 0;
}

static int tok_load_tokens(tok_loader *L)
{
    tok_vocab *v = L->v;
    int64_t kv_tok, kv_score, kv_type;
    int rc;
    if ((rc = tok_array(L, "tokenizer.ggml.tokens", true, true, UINT64_MAX, &kv_tok)))
        return rc;
    uint64_t n = gguf_kv_arr_n(L->g, kv_tok);
    if (n == 0 || n > INT32_MAX / 2)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "tokenizer.ggml.tokens: bad count %llu",
                         (unsigned long long)n);
    v->n_tok = (int32_t)n;
    if ((rc = tok_array(L, "tokenizer.ggml.scores", false, false, n, &kv_score)) ||
        (rc = tok_array(L, "tokenizer.ggml.token_type", false, false, n, &kv_type)))
        return rc;
    size_t n_empty = 0;
    if (!(v->tok = calloc(n, sizeof *v->tok)))
        return CORE_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (gguf_arr_str(L->g, kv_tok, i, &s, &len))
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "tokenizer.ggml.tokens[%llu] unreadable",
                             (unsigned long long)i);
        if (len > UINT32_MAX / 2)
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "token %llu is too long",
                             (unsigned long long)i);
        n_empty += len == 0;
        tok_entry *t = &v->tok[i];
        t->s = s;
        t->n = (uint32_t)len;
        t->attr = TOK_ATTR_NORMAL;
        if (kv_score >= 0 && gguf_arr_f32(L->g, kv_score, i, &t->score))
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "tokenizer.ggml.scores[%llu] unreadable",
                             (unsigned long long)i);
        if (kv_type >= 0) {
            int64_t ty;
            if (gguf_arr_i64(L->g, kv_type, i, &ty))
                return core_errf(CORE_EFORMAT, L->msg, L->msg_size,
                                 "tokenizer.ggml.token_type[%llu] unreadable", (unsigned long long)i);
            static const uint32_t map[7] = {0, TOK_ATTR_NORMAL, TOK_ATTR_UNKNOWN, TOK_ATTR_CONTROL,
                                            TOK_ATTR_USER_DEFINED, TOK_ATTR_UNUSED, TOK_ATTR_BYTE};
            t->attr = ty >= 0 && ty < 7 ? map[ty] : 0;
        }
    }
    /* llama.cpp names empty tokens "[EMPTY_<id>]" */
    if (n_empty) {
        char *p = v->arena = malloc(n_empty * 24);
        if (!p)
            return CORE_ENOMEM;
        for (uint64_t i = 0; i < n; i++)
            if (v->tok[i].n == 0) {
                int k = snprintf(p, 24, "[EMPTY_%llu]", (unsigned long long)i);
                v->tok[i].s = p;
                v->tok[i].n = (uint32_t)k;
                p += k;
            }
    }
    size_t cap = tok_pow2_at_least(n * 2);
    if (!(v->tab = malloc(cap * sizeof *v->tab)))
        return CORE_ENOMEM;
    memset(v->tab, 0xff, cap * sizeof *v->tab);
    v->tab_mask = cap - 1;
    for (int32_t id = 0; id < v->n_tok; id++) {
        const tok_entry *t = &v->tok[id];
        size_t i = tok_hash(t->s, t->n) & v->tab_mask;
        for (; v->tab[i] >= 0; i = (i + 1) & v->tab_mask) {
            const tok_entry *o = &v->tok[v->tab[i]];
            if (o->n == t->n && !memcmp(o->s, t->s, t->n))
                return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "duplicate token '%.*s': ids %d and %d",
                                 (int)(t->n > 64 ? 64 : t->n), t->s, v->tab[i], id);
        }
        v->tab[i] = id;
        if (t->n > v->max_len)
            v->max_len = t->n;
    }
    return 0;
}

static int tok_load_merges(tok_loader *L)
{
    tok_vocab *v = L->v;
    int64_t kv;
    int rc = tok_array(L, "tokenizer.ggml.merges", true, true, UINT64_MAX, &kv);
    if (rc)
        return rc;
    uint64_t n = gguf_kv_arr_n(L->g, kv);
    if (n > INT32_MAX / 4)
        return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "tokenizer.ggml.merges: bad count");
    size_t cap = tok_pow2_at_least(n * 2 + 1);
    v->mkey = malloc(cap * sizeof *v->mkey);
    v->mrank = malloc(cap * sizeof *v->mrank);
    v->mres = malloc(cap * sizeof *v->mres);
    if (!v->mkey || !v->mrank || !v->mres)
        return CORE_ENOMEM;
    memset(v->mrank, 0xff, cap * sizeof *v->mrank);
    v->m_mask = cap - 1;
    for (uint64_t r = 0; r < n; r++) {
        const char *s;
        size_t len;
        if (gguf_arr_str(L->g, kv, r, &s, &len))
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "merge %llu unreadable", (unsigned long long)r);
        /* split at the first space after the first byte, as llama.cpp */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        if (!sp)
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "merge %llu '%.*s' has no space",
                             (unsigned long long)r, (int)(len > 64 ? 64 : len), s);
        size_t ln = (size_t)(sp - s), rn = len - ln - 1;
        int32_t a = tok_lookup(v, s, ln), b = tok_lookup(v, sp + 1, rn);
        if (a < 0 || b < 0)
            return core_errf(CORE_EFORMAT, L->msg, L->msg_size, "merge %llu '%.*s' names an unknown token",
                             (unsigned long long)r, (int)(len > 64 ? 64 : len), s);
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        size_t i = tok_mix64(key) & v->m_mask;
        for (; v->mrank[i] >= 0 && v->mkey[i] != key; i = (i + 1) & v->m_mask)
            ;
        if (v->mrank[i] >= 0)
            continue; /* duplicate merge: the first rank wins */
        char small[256], *cat = len <= sizeof small ? small : malloc(len);
        if (!cat)
            return CORE_ENOMEM;
        memcpy(cat, s, ln);
        memcpy(cat + ln, sp + 1, rn);
        v->mres[i] = tok_lookup(v, cat, ln + rn);
        if (cat != small)
            free(cat);
        v->mkey[i] = key;
        v->mrank[i] = (int32_t)r;
    }
    return 0;
}

static void tok_mark_control(tok_vocab *v, int32_t id)
{
    v->tok[id].attr |= TOK_ATTR_CONTROL;
}

/* llama.cpp's detection of EOT/EOM/FIM and end-of-generation tokens by
 * text, with its workarounds. */
static void tok_detect_special(tok_vocab *v, int32_t fim[6])
{
    static const char *const eot_txt[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                          "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                          "<end_of_utterance>", NULL};
    static const char *const eom_txt[] = {"<|eom_id|>", NULL};
    static const char *const fim_txt[6][9] = {
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
         "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL},
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
         "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL},
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
         "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL},
        {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL},
        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
        {"<|file_sep|>", NULL},
    };
    static const char *const eog_txt[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
        "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};

    for (int32_t id = 0; id < v->n_tok; id++) {
        const tok_entry *t = &v->tok[id];
        if (!tok_maybe_named(t))
            continue;
        if (v->eot < 0 && tok_is_any(t, eot_txt)) {
            v->eot = id;
            tok_mark_control(v, id);
        }
        if (v->eom < 0 && tok_is_any(t, eom_txt)) {
            v->eom = id;
            tok_mark_control(v, id);
        }
        for (int f = 0; f < 6; f++)
            if (fim[f] < 0 && tok_is_any(t, fim_txt[f])) {
                fim[f] = id;
                tok_mark_control(v, id);
            }
    }
    for (int32_t id = 0; id < v->n_tok; id++) {
        tok_entry *t = &v->tok[id];
        if ((t->attr & TOK_ATTR_CONTROL) && memmem(t->s, t->n, "unused", 6))
            t->attr |= TOK_ATTR_UNUSED;
    }
    for (int f = 3; f < 6; f++) /* fim pad, repo, sep */
        if (fim[f] >= 0)
            v->eog[fim[f]] = 1;
    for (int32_t id = 0; id < v->n_tok; id++)
        if (tok_maybe_named(&v->tok[id]) && tok_is_any(&v->tok[id], eog_txt)) {
            v->eog[id] = 1;
            tok_mark_control(v, id);
        }
    /* gpt-oss: always render these */
    static const char *const harmony[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
    for (int32_t id = 0; id < v->n_tok; id++)
        if (tok_maybe_named(&v->tok[id]) && tok_is_any(&v->tok[id], harmony))
            v->tok[id].attr = TOK_ATTR_USER_DEFINED;
    int32_t ids[3] = {v->eos, v->eot, v->eom};
    for (int i = 0; i < 3; i++)
        if (ids[i] >= 0)
            v->eog[ids[i]] = 1;
    /* o200k_harmony / solar-open: <|end|> ends a message, not generation */
    int32_t end_id = -1;
    bool has_return = false, has_call = false, has_flush = false;
    bool has_tool_response = false;
    int32_t s_id = -1;
    for (int32_t id = 0; id < v->n_tok; id++) {
        if (!v->eog[id])
            continue;
        const tok_entry *t = &v->tok[id];
        has_return |= tok_is(t, "<|return|>");
        has_call |= tok_is(t, "<|call|>") || tok_is(t, "<|calls|>");
        has_flush |= tok_is(t, "<|flush|>");
        has_tool_response |= tok_is(t, "<|tool_response>");
        if (tok_is(t, "<|end|>"))
            end_id = id;
        if (tok_is(t, "</s>"))
            s_id = id;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        v->eog[end_id] = 0;
        v->tok[end_id].attr = TOK_ATTR_USER_DEFINED;
    }
    if (s_id >= 0 && has_tool_response) {
        v->eog[s_id] = 0;
        v->tok[s_id].attr = TOK_ATTR_NORMAL;
    }
}

static int tok_spec_cmp(const void *a, const void *b, void *arg)
{
    const tok_vocab *v = arg;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->tok[x].n != v->tok[y].n)
        return v->tok[x].n > v->tok[y].n ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Special tokens, longest first, and a byte trie over their texts whose
 * nodes name the index (in spec) of the token ending there. */
static int tok_build_specials(tok_vocab *v)
{
    size_t n = 0, bytes = 0;
    for (int32_t id = 0; id < v->n_tok; id++)
        if (v->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) {
            n++;
            bytes += v->tok[id].n;
        }
    for (int i = 0; i < 256; i++)
        v->trie_root[i] = -1;
    if (!n)
        return 0;
    if (!(v->spec = malloc(n * sizeof *v->spec)) || !(v->trie = malloc(bytes * sizeof *v->trie)))
        return CORE_ENOMEM;
    for (int32_t id = 0; id < v->n_tok; id++)
        if (v->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            v->spec[v->n_spec++] = id;
    qsort_r(v->spec, n, sizeof *v->spec, tok_spec_cmp, v);
    for (size_t k = 0; k < n; k++) {
        const tok_entry *t = &v->tok[v->spec[k]];
        int32_t *link = &v->trie_root[(unsigned char)t->s[0]];
        int32_t node = -1;
        for (uint32_t j = 0; j < t->n; j++) {
            unsigned char c = (unsigned char)t->s[j];
            if (j > 0) {
                link = &v->trie[node].child;
                while (*link >= 0 && v->trie[*link].byte != c)
                    link = &v->trie[*link].sibling;
            }
            if (*link < 0) {
                *link = (int32_t)v->n_trie;
                v->trie[v->n_trie++] = (tok_trie_node){-1, -1, -1, c};
            }
            node = *link;
        }
        v->trie[node].tok = (int32_t)k;
    }
    return 0;
}

int tok_load(const gguf *g, tok_vocab **out, char *msg, size_t msg_size)
{
    int rc = 0;
    const char *s;
    size_t len;
    tok_vocab *v = calloc(1, sizeof *v);
    tok_loader L = {g, v, msg, msg_size};
    *out = NULL;
    if (!v)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = -1;

    if ((rc = gguf_get_str(g, "tokenizer.ggml.model", &s, &len))) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "tokenizer.ggml.model: %s",
                       rc == CORE_ENOTFOUND ? "missing" : "not a string");
        goto out;
    }
    int32_t d_bos, d_eos, d_unk, d_sep, d_pad;
    if (len == 5 && !memcmp(s, "llama", 5)) {
        v->type = TOK_SPM;
        d_bos = 1, d_eos = 2, d_unk = 0, d_sep = -1, d_pad = -1;
        v->add_space_prefix = true;
        v->add_bos = true;
    } else if (len == 4 && !memcmp(s, "gpt2", 4)) {
        v->type = TOK_BPE;
        d_bos = 11, d_eos = 11, d_unk = -1, d_sep = -1, d_pad = -1;
    } else if (len == 4 && !memcmp(s, "bert", 4)) {
        v->type = TOK_WPM;
        d_bos = 101, d_eos = -1, d_unk = 100, d_sep = 102, d_pad = 0;
        v->add_bos = true;
        v->lowercase = v->strip_accents = true;
    } else {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "unsupported tokenizer model '%.*s'",
                       (int)(len > 64 ? 64 : len), s);
        goto out;
    }
    if ((rc = tok_load_tokens(&L)))
        goto out;

    if (v->type == TOK_BPE) {
        const char *pre = "default";
        size_t plen = 7;
        int prc = gguf_get_str(g, "tokenizer.ggml.pre", &s, &len);
        if (prc && prc != CORE_ENOTFOUND) {
            rc = core_errf(CORE_EFORMAT, msg, msg_size, "tokenizer.ggml.pre: not a string");
            goto out;
        }
        if (!prc && len) {
            pre = s;
            plen = len;
        }
        size_t k, nk = sizeof tok_pres / sizeof tok_pres[0];
        for (k = 0; k < nk; k++) {
            const char *nm = tok_pres[k].names;
            bool hit = false;
            while (*nm && !hit) {
                size_t w = strcspn(nm, " ");
                hit = w == plen && !memcmp(nm, pre, plen);
                nm += w + (nm[w] == ' ');
            }
            if (hit)
                break;
        }
        if (k == nk) {
            rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "unsupported pre-tokenizer '%.*s'",
                           (int)(plen > 64 ? 64 : plen), pre);
            goto out;
        }
        v->ignore_merges = tok_pres[k].flags & PRE_IGNORE_MERGES;
        v->add_bos = tok_pres[k].flags & PRE_ADD_BOS;
        if (tok_pres[k].flags & PRE_NO_BOS)
            d_bos = -1;
        if ((rc = tok_pretok_new(tok_pres[k].re, tok_pres[k].n_re, false, &v->pre, msg, msg_size)) ||
            (rc = tok_load_merges(&L)))
            goto out;
    }

    /* defaults outside the vocabulary are dropped, as llama.cpp does */
    v->bos = d_bos < v->n_tok ? d_bos : -1;
    v->eos = d_eos < v->n_tok ? d_eos : -1;
    v->unk = d_unk < v->n_tok ? d_unk : -1;
    v->sep = d_sep < v->n_tok ? d_sep : -1;
    v->pad = d_pad < v->n_tok ? d_pad : -1;
    int32_t fim[6] = {-1, -1, -1, -1, -1, -1};
    if (v->type == TOK_WPM && (rc = tok_read_id(&L, "tokenizer.ggml.cls_token_id", &v->bos, true)))
        goto out;
    if ((rc = tok_read_id(&L, "tokenizer.ggml.bos_token_id", &v->bos, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.eos_token_id", &v->eos, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.eot_token_id", &v->eot, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.eom_token_id", &v->eom, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.unknown_token_id", &v->unk, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.seperator_token_id", &v->sep, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.separator_token_id", &v->sep, true)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.padding_token_id", &v->pad, false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_pre_token_id", &fim[0], false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_suf_token_id", &fim[1], false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_mid_token_id", &fim[2], false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_pad_token_id", &fim[3], false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_rep_token_id", &fim[4], false)) ||
        (rc = tok_read_id(&L, "tokenizer.ggml.fim_sep_token_id", &fim[5], false)) ||
        (rc = tok_read_bool(&L, "tokenizer.ggml.add_bos_token", &v->add_bos)) ||
        (rc = tok_read_bool(&L, "tokenizer.ggml.add_eos_token", &v->add_eos)))
        goto out;
    if (v->type == TOK_SPM && (rc = tok_read_bool(&L, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix)))
        goto out;
    if (v->type == TOK_WPM)
        v->add_bos = true; /* BERT always adds CLS ... SEP with add_special */
    if (v->add_bos && v->bos < 0) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "add_bos_token is true, but there is no bos_token_id");
        goto out;
    }
    if (v->add_eos && v->eos < 0) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "add_eos_token is true, but there is no eos_token_id");
        goto out;
    }

    if (!(v->eog = calloc((size_t)v->n_tok, 1))) {
        rc = CORE_ENOMEM;
        goto out;
    }
    tok_detect_special(v, fim);

    /* Phi-3: llama.cpp strips whitespace after its special tokens */
    if (!gguf_get_str(g, "general.name", &s, &len)) {
        bool phi3 = false;
        for (size_t i = 0; i + 4 <= len && !phi3; i++) {
            char b[5];
            for (int j = 0; j < 5 && i + j < len; j++)
                b[j] = (char)tolower((unsigned char)s[i + j]);
            phi3 = !memcmp(b, "phi3", 4) || (i + 5 <= len && !memcmp(b, "phi-3", 5));
        }
        if (phi3) {
            for (int32_t id = 0; id < v->n_tok; id++)
                if (v->tok[id].attr & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
                    v->tok[id].attr |= TOK_ATTR_RSTRIP;
            int32_t id = tok_lookup(v, "</s>", 4);
            if (id >= 0)
                v->tok[id].attr |= TOK_ATTR_RSTRIP;
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
            for (int k = 0; k < 3; k++)
                if ((id = tok_lookup(v, keep[k], strlen(keep[k]))) >= 0)
                    v->tok[id].attr &= ~(uint32_t)TOK_ATTR_RSTRIP;
        }
    }
    if ((rc = tok_build_specials(v)))
        goto out;

    if (v->type == TOK_SPM) {
        for (int b = 0; b < 256; b++) {
            char hex[7];
            snprintf(hex, sizeof hex, "<0x%02X>", b);
            int32_t id = tok_lookup(v, hex, 6);
            if (id < 0) {
                char c = (char)b;
                id = tok_lookup(v, &c, 1);
            }
            v->byte_tok[b] = id >= 0 ? id : v->unk;
        }
    }
out:
    if (rc) {
        if (rc == CORE_ENOMEM)
            core_errf(rc, msg, msg_size, "out of memory loading the tokenizer");
        tok_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

void tok_free(tok_vocab *v)
{
    if (!v)
        return;
    free(v->tok);
    free(v->tab);
    free(v->mkey);
    free(v->mrank);
    free(v->mres);
    tok_pretok_free(v->pre);
    free(v->eog);
    free(v->spec);
    free(v->trie);
    free(v->arena);
    free(v);
}

/* ---- encoding ---- */

typedef struct {
    int32_t tok; /* >= 0: a special token; -1: raw text */
    size_t off, len;
} tok_frag;

typedef struct {
    tok_frag *v;
    size_t n, cap;
} tok_fvec;

static int tok_fpush(tok_fvec *a, tok_frag f)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        tok_frag *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return CORE_ENOMEM;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = f;
    return 0;
}

static inline bool tok_heap_before(const tok_bigram *a, const tok_bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

int tok_heap_push(tok_bigram_heap *h, tok_bigram x)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_bigram *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv)
            return CORE_ENOMEM;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_heap_before(&x, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = x;
    return 0;
}

tok_bigram tok_heap_pop(tok_bigram_heap *h)
{
    tok_bigram top = h->v[0], x = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && tok_heap_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!tok_heap_before(&h->v[c], &x))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = x;
    return top;
}

static inline bool tok_isspace(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whether [off, off+n) overlaps one of the literal spans (pairs of offset,
 * length, sorted by offset, not overlapping). */
static bool tok_in_literal(const size_t *lit, size_t n_lit, size_t off, size_t n)
{
    size_t lo = 0, hi = n_lit;
    while (lo < hi) { /* first span ending after off */
        size_t mid = (lo + hi) / 2;
        if (lit[2 * mid] + lit[2 * mid + 1] <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_lit && lit[2 * lo] < off + n;
}

/* llama.cpp's tokenizer_st_partition: for each special token, longest
 * first, every raw fragment is split at each of its occurrences, except
 * that control-token text inside a literal span stays text. */
static int tok_partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                         const size_t *lit, size_t n_lit, tok_fvec *frags)
{
    int rc = 0;
    uint8_t *present = NULL;
    tok_fvec next = {0};
    if ((rc = tok_fpush(frags, (tok_frag){-1, 0, len})))
        return rc;
    if (!v->n_spec)
        return 0;
    /* which special tokens occur at all */
    if (!(present = calloc(v->n_spec, 1)))
        return CORE_ENOMEM;
    size_t n_present = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t node = v->trie_root[(unsigned char)text[i]];
        for (size_t j = i + 1;; j++) {
            if (node < 0)
                break;
            int32_t k = v->trie[node].tok;
            if (k >= 0 && !present[k]) {
                present[k] = 1;
                n_present++;
            }
            if (j >= len)
                break;
            unsigned char c = (unsigned char)text[j];
            for (node = v->trie[node].child; node >= 0 && v->trie[node].byte != c; node = v->trie[node].sibling)
                ;
        }
    }
    for (size_t k = 0; k < v->n_spec && n_present; k++) {
        if (!present[k])
            continue;
        n_present--;
        int32_t id = v->spec[k];
        const tok_entry *t = &v->tok[id];
        if (!parse_special && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)))
            continue;
        next.n = 0;
        for (size_t f = 0; f < frags->n; f++) {
            tok_frag fr = frags->v[f];
            if (fr.tok >= 0) {
                if ((rc = tok_fpush(&next, fr)))
                    goto out;
                continue;
            }
            size_t off = fr.off, flen = fr.len, scan = off;
            for (;;) {
                size_t rest = off + flen - scan;
                const char *m = rest >= t->n ? memmem(text + scan, rest, t->s, t->n) : NULL;
                if (m && (t->attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) &&
                    tok_in_literal(lit, n_lit, (size_t)(m - text), t->n)) {
                    scan = (size_t)(m - text) + 1;
                    continue;
                }
                if (!m) {
                    if (flen && (rc = tok_fpush(&next, (tok_frag){-1, off, flen})))
                        goto out;
                    break;
                }
                size_t mo = (size_t)(m - text), left = mo - off;
                if (t->attr & TOK_ATTR_LSTRIP)
                    while (left > 0 && tok_isspace(text[off + left - 1]))
                        left--;
                if (left && (rc = tok_fpush(&next, (tok_frag){-1, off, left})))
                    goto out;
                if ((rc = tok_fpush(&next, (tok_frag){id, 0, 0})))
                    goto out;
                size_t roff = mo + t->n, rlen = off + flen - roff;
                if (t->attr & TOK_ATTR_RSTRIP)
                    while (rlen > 0 && tok_isspace(text[roff])) {
                        roff++;
                        rlen--;
                    }
                off = scan = roff;
                flen = rlen;
                if (!flen)
                    break;
            }
        }
        tok_fvec tmp = *frags;
        *frags = next;
        next = tmp;
    }
out:
    free(present);
    free(next.v);
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
               int32_t *out, size_t cap, size_t *n_out)
{
    return tok_encode_ex(v, text, len, add_special, parse_special, NULL, 0, out, cap, n_out);
}

int tok_encode_ex(const tok_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                  const size_t *literal, size_t n_literal, int32_t *out, size_t cap, size_t *n_out)
{
    int rc = 0;
    tok_ivec ids = {0};
    tok_fvec frags = {0};
    char *buf = NULL;
    *n_out = 0;
    if (!v || (!text && len))
        return CORE_EINVAL;
    if (len && (rc = tok_partition(v, text, len, parse_special, literal, n_literal, &frags)))
        goto out;
    bool begin = add_special && v->add_bos && v->bos >= 0;
    if (v->type == TOK_WPM)
        begin = add_special && v->bos >= 0;
    if (begin && (rc = tok_ivec_push(&ids, v->bos)))
        goto out;
    bool prev_special = true; /* SPM: a space goes before text at the start and after specials */
    for (size_t f = 0; f < frags.n; f++) {
        const tok_frag *fr = &frags.v[f];
        if (fr->tok >= 0) {
            if ((rc = tok_ivec_push(&ids, fr->tok)))
                goto out;
            prev_special = true;
            continue;
        }
        const char *s = text + fr->off;
        switch (v->type) {
        case TOK_SPM: {
            if (!buf && !(buf = malloc(len * 3 + 3))) {
                rc = CORE_ENOMEM;
                goto out;
            }
            size_t n = 0;
            if (v->add_space_prefix && prev_special) {
                memcpy(buf, "\xe2\x96\x81", 3);
                n = 3;
            }
            for (size_t i = 0; i < fr->len; i++) {
                if (s[i] == ' ') {
                    memcpy(buf + n, "\xe2\x96\x81", 3);
                    n += 3;
                } else {
                    buf[n++] = s[i];
                }
            }
            rc = tok_spm_encode(v, buf, n, &ids);
            break;
        }
        case TOK_BPE:
            rc = tok_bpe_encode(v, s, fr->len, &ids);
            break;
        case TOK_WPM:
            rc = tok_wpm_encode(v, s, fr->len, &ids);
            break;
        }
        if (rc)
            goto out;
        prev_special = false;
    }
    if (v->type == TOK_WPM) {
        if (add_special && v->sep >= 0 && (rc = tok_ivec_push(&ids, v->sep)))
            goto out;
    } else if (add_special && v->add_eos && v->eos >= 0 && (rc = tok_ivec_push(&ids, v->eos))) {
        goto out;
    }
    *n_out = ids.n;
    if (ids.n > cap) {
        if (out && cap)
            memcpy(out, ids.v, cap * sizeof *out);
        rc = CORE_EINVAL;
        goto out;
    }
    if (ids.n)
        memcpy(out, ids.v, ids.n * sizeof *out);
out:
    free(ids.v);
    free(frags.v);
    free(buf);
    return rc;
}

/* ---- decoding ---- */

typedef struct {
    char *buf;
    size_t cap, n;
} tok_wr;

static void tok_put(tok_wr *w, const void *p, size_t n)
{
    if (w->n < w->cap)
        memcpy(w->buf + w->n, p, w->n + n <= w->cap ? n : w->cap - w->n);
    w->n += n;
}

static int tok_hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int tok_piece_ex(const tok_vocab *v, int32_t id, bool special, char *buf, size_t cap, size_t *len)
{
    *len = 0;
    if (!v || id < 0 || id >= v->n_tok)
        return CORE_EINVAL;
    const tok_entry *t = &v->tok[id];
    tok_wr w = {buf, buf ? cap : 0, 0};
    if (t->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        if (special || !(t->attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL)))
            tok_put(&w, t->s, t->n);
    } else if (t->attr & TOK_ATTR_NORMAL) {
        if (v->type == TOK_BPE) {
            for (size_t off = 0; off < t->n;) {
                size_t o0 = off;
                uint32_t cp = uni_decode(t->s, t->n, &off);
                int b = uni_cp_to_byte(cp);
                if (b >= 0) {
                    unsigned char c = (unsigned char)b;
                    tok_put(&w, &c, 1);
                } else { /* llama.cpp's rendering of a character outside the alphabet */
                    char hex[3];
                    tok_put(&w, "[UNK_BYTE_0x", 12);
                    for (size_t i = o0; i < off; i++) {
                        snprintf(hex, sizeof hex, "%02x", (unsigned char)t->s[i]);
                        tok_put(&w, hex, 2);
                    }
                    tok_put(&w, t->s, t->n);
                    tok_put(&w, "]", 1);
                }
            }
        } else {
            for (size_t i = 0; i < t->n;) {
                if (i + 3 <= t->n && !memcmp(t->s + i, "\xe2\x96\x81", 3)) {
                    tok_put(&w, " ", 1);
                    i += 3;
                } else {
                    tok_put(&w, t->s + i, 1);
                    i++;
                }
            }
        }
    } else if (t->attr & TOK_ATTR_BYTE) {
        if (t->n >= 5) {
            int hi = tok_hexval(t->s[3]), lo = tok_hexval(t->s[4]);
            if (hi >= 0 && lo >= 0) {
                unsigned char c = (unsigned char)(hi << 4 | lo);
                tok_put(&w, &c, 1);
            }
        }
    }
    *len = w.n;
    return w.n > w.cap ? CORE_EINVAL : 0;
}

int tok_piece(const tok_vocab *v, int32_t id, char *buf, size_t cap, size_t *len)
{
    return tok_piece_ex(v, id, false, buf, cap, len);
}

/* ---- accessors ---- */

int32_t tok_n_vocab(const tok_vocab *v) { return v->n_tok; }
tok_type tok_get_type(const tok_vocab *v) { return v->type; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_sep(const tok_vocab *v) { return v->sep; }
int32_t tok_pad(const tok_vocab *v) { return v->pad; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }

bool tok_is_eog(const tok_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n_tok && v->eog[id];
}

int32_t tok_find(const tok_vocab *v, const char *text, size_t len)
{
    return text || !len ? tok_lookup(v, text ? text : "", len) : -1;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n_tok) {
        *len = 0;
        return NULL;
    }
    *len = v->tok[id].n;
    return v->tok[id].s;
}

uint32_t tok_attr(const tok_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n_tok ? v->tok[id].attr : 0;
}
