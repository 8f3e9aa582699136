/* edgegate-make-model: writes a random-weight GGUF model of a named shape.
 *
 *   edgegate-make-model --shape tiny|qwen2.5-0.5b|bert-tiny|bge-small|bert-micro
 *                       --type f32|f16|q8_0|q4_0|q4_k_m --seed S -o FILE
 *                       [--threads N] [--vocab VOCAB.gguf] [--pooling mean|cls]
 *
 * The bert shapes are embedding models (llama.cpp's "bert" architecture:
 * token, position and token-type tables, post-LayerNorm blocks with biases,
 * GELU FFN) with a WordPiece tokenizer: the tokenizer.* metadata of
 * --vocab (e.g. llama.cpp's ggml-vocab-bert-bge.gguf), else a small
 * vocabulary of characters and the words of the text below. Their weights
 * are N(0, 1/E) so that attention is not uniform, LayerNorm weights 1 +
 * N(0, 0.1^2); pooling is mean for bert-tiny, CLS for bge-small.
 *
 * The file is what llama.cpp's convert + llama-quantize would write for a
 * qwen2 model: the same tensor names, shapes and metadata keys, the tensor
 * types of a "pure" f16/q8_0/q4_0 file (every 2-D weight in that type, norms
 * and biases F32) or of llama.cpp's Q4_K_M mixing rules. Weights are
 * N(0, 0.02) with norms 1, like a freshly initialised network, so that
 * activations stay in range; the output is noise, by construction.
 *
 * The tokenizer is our own byte-level BPE ("gpt2" model, "qwen2"
 * pre-tokenizer): the 256 byte symbols of GPT-2's bytes_to_unicode, merges
 * learned from the small English text below, then merges of word pieces drawn
 * deterministically until the vocabulary is full, then the ChatML control
 * tokens. It depends only on the vocabulary size, so models that differ only
 * in their seed share one tokenizer.
 *
 * Output is a pure function of (shape, type, seed): every row of every tensor
 * draws from its own PRNG stream, so the thread count does not matter.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core_err.h"
#include "gguf.h"
#include "quant.h"

/* ---- shapes and types ------------------------------------------------- */

typedef struct {
    const char *name, *model_name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    int tied; /* no output.weight: the output projection reuses token_embd */
    float rope_base, rms_eps;
    int bert; /* an embedding model; n_vocab comes from its tokenizer */
    uint32_t pooling; /* bert: llama.cpp's pooling type, 1 mean, 2 cls */
} mm_shape;

static const mm_shape mm_shapes[] = {
    /* small enough for unit tests; has its own output.weight, so both the
     * tied and the untied paths of an engine get a generated model */
    {"tiny", "edgegate tiny (random weights)", 256, 2, 4, 2, 768, 4096, 2048, 0, 1000000.0f, 1e-6f, 0, 0},
    {"qwen2.5-0.5b", "edgegate qwen2.5-0.5b shape (random weights)", 896, 24, 14, 2, 4864, 151936,
     32768, 1, 1000000.0f, 1e-6f, 0, 0},
    {"bert-tiny", "edgegate bert-tiny (random weights)", 128, 2, 4, 4, 512, 0, 512, 0, 0, 1e-12f, 1, 1},
    /* a few KB: seeds of the loader's fuzz harness */
    {"bert-micro", "edgegate bert-micro (random weights)", 32, 1, 2, 2, 64, 0, 16, 0, 0, 1e-12f, 1, 1},
    {"bge-small", "edgegate bge-small shape (random weights)", 384, 12, 12, 12, 1536, 0, 512, 0, 0,
     1e-12f, 1, 2},
};

typedef struct {
    const char *name;
    int weight_type; /* base type of 2-D weights */
    uint32_t ftype;  /* llama.cpp's LLAMA_FTYPE_* number */
} mm_type;

static const mm_type mm_types[] = {
    {"f32", QT_F32, 0},
    {"f16", QT_F16, 1},
    {"q8_0", QT_Q8_0, 7},
    {"q4_0", QT_Q4_0, 2},
    {"q4_k_m", QT_Q4_K, 15},
};

typedef enum {
    MM_EMBD, MM_OUTPUT, MM_NORM, MM_BIAS, MM_ATTN_Q, MM_ATTN_K, MM_ATTN_V, MM_ATTN_O,
    MM_FFN_GATE, MM_FFN_UP, MM_FFN_DOWN, MM_LNORM /* LayerNorm weight: 1 + noise */
} mm_kind;

/* llama.cpp's use_more_bits(): the first and last eighth of the layers and
 * every third layer in between get more bits in *_M mixes. */
static int mm_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* Tensor type under llama.cpp's llama_tensor_get_type() for Q4_K_M, for the
 * tensors a qwen2 model has. */
static int mm_q4_k_m_type(const mm_shape *s, mm_kind kind, int layer, int64_t ne0)
{
    int t = QT_Q4_K;
    if (kind == MM_OUTPUT || (kind == MM_EMBD && s->tied)) {
        /* the output projection: Q6_K, or Q8_0 when rows do not fit K-blocks */
        t = ne0 % QK_K ? QT_Q8_0 : QT_Q6_K;
    } else if ((kind == MM_ATTN_V || kind == MM_FFN_DOWN) && mm_more_bits(layer, s->n_layer)) {
        t = QT_Q6_K;
    }
    if (ne0 % quant_traits_of(t)->blck) {
        /* K-quant rows must be whole 256-blocks: llama.cpp's fallbacks */
        t = t == QT_Q4_K ? QT_Q5_0 : t == QT_Q5_K ? QT_Q5_1 : QT_Q8_0;
        if (ne0 % quant_traits_of(t)->blck)
            t = QT_F16;
    }
    return t;
}

/* ---- deterministic random numbers ------------------------------------- */

static uint64_t mm_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1), never 0 so that log() is finite. */
static float mm_unif(uint64_t *s) { return ((float)(mm_splitmix(s) >> 40) + 0.5f) * 0x1p-24f; }

/* n samples of N(0, sd^2) by Box-Muller. */
static void mm_normal(uint64_t *s, float *x, int64_t n, float sd)
{
    for (int64_t i = 0; i < n; i += 2) {
        float r = sd * sqrtf(-2.0f * logf(mm_unif(s)));
        float a = 6.28318530718f * mm_unif(s);
        x[i] = r * cosf(a);
        if (i + 1 < n)
            x[i + 1] = r * sinf(a);
    }
}

/* ---- tensors ---------------------------------------------------------- */

typedef struct {
    char name[64];
    mm_kind kind;
    int type, n_dims;
    int64_t ne[2];
    size_t row_size, size;
    uint8_t *data;
} mm_tensor;

typedef struct {
    mm_tensor *t;
    int n;
    uint64_t seed;
    float sd; /* of weights and biases */
    atomic_long next_job; /* jobs are blocks of rows, in tensor order */
    long n_jobs;
    long *job_tensor;   /* first job index of each tensor, n + 1 entries */
    int failed;
} mm_work;

enum { MM_ROWS_PER_JOB = 32 };

static void mm_add(mm_tensor *ts, int *n, mm_kind kind, int type, int n_dims, int64_t ne0,
                   int64_t ne1, const char *fmt, int layer)
{
    mm_tensor *t = &ts[(*n)++];
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->kind = kind;
    t->type = type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
}

/* Fills one row of tensor i: norms are 1, everything else N(0, sd^2). */
static int mm_fill_row(const mm_work *w, int i, int64_t row, float *buf)
{
    const mm_tensor *t = &w->t[i];
    if (t->kind == MM_NORM) {
        for (int64_t k = 0; k < t->ne[0]; k++)
            buf[k] = 1.0f;
    } else {
        uint64_t s = w->seed ^ 0x6d6d2d6d6f64656cull; /* "mm-model" */
        s ^= mm_splitmix(&s) + (uint64_t)i * 0x100000001b3ull;
        s ^= mm_splitmix(&s) + (uint64_t)row;
        mm_splitmix(&s);
        mm_normal(&s, buf, t->ne[0], t->kind == MM_LNORM ? 0.1f : w->sd);
        if (t->kind == MM_LNORM)
            for (int64_t k = 0; k < t->ne[0]; k++)
                buf[k] += 1.0f;
    }
    return quant_quantize_row(t->type, buf, t->data + (size_t)row * t->row_size, t->ne[0]);
}

static void *mm_worker(void *arg)
{
    mm_work *w = arg;
    int64_t max_ne0 = 0;
    for (int i = 0; i < w->n; i++)
        if (w->t[i].ne[0] > max_ne0)
            max_ne0 = w->t[i].ne[0];
    float *buf = malloc((size_t)max_ne0 * sizeof *buf);
    if (!buf) {
        w->failed = 1;
        return NULL;
    }
    int i = 0;
    for (;;) {
        long job = atomic_fetch_add(&w->next_job, 1);
        if (job >= w->n_jobs)
            break;
        while (w->job_tensor[i + 1] <= job)
            i++;
        while (w->job_tensor[i] > job)
            i--;
        int64_t r0 = (int64_t)(job - w->job_tensor[i]) * MM_ROWS_PER_JOB;
        for (int64_t r = r0; r < r0 + MM_ROWS_PER_JOB && r < w->t[i].ne[1]; r++)
            if (mm_fill_row(w, i, r, buf))
                w->failed = 1;
    }
    free(buf);
    return NULL;
}

/* ---- tokenizer -------------------------------------------------------- */

/* Training text for the merges: plain English, written for this tool. */
static const char mm_text[] =
    "The quick brown fox jumps over the lazy dog. Once upon a time, there was a little robot who "
    "loved to read books. Every morning the robot walked to the library at the end of the street, "
    "said hello to the people it met, and chose a new story to read before the sun went down.\n"
    "The library was an old stone building with tall windows and a green door. Inside there were "
    "thousands of books about the sea, the stars, the history of cities, the lives of animals, "
    "and the strange machines that people had built over the years. The robot liked the books "
    "about machines the most, because they helped it understand how it had been made.\n"
    "One day the librarian asked the robot what it wanted to learn next. The robot thought for a "
    "while and said that it wanted to learn how to write its own stories. The librarian smiled "
    "and gave it a notebook, a pencil, and some simple advice: write a little every day, read "
    "what you wrote out loud, and do not be afraid of making mistakes.\n"
    "So the robot started writing. At first its sentences were short and plain. It wrote about "
    "the weather, the color of the sky, the sound of the rain on the roof, and the way the light "
    "changed in the afternoon. After a few weeks the stories became longer. It wrote about a "
    "small boat that wanted to cross the ocean, a garden where the flowers could talk, and a "
    "clock that was always five minutes late because it liked to listen to the birds.\n"
    "People in the town began to read the stories too. Children came to the library after "
    "school to hear the robot read aloud. Their parents said the stories were gentle and kind, "
    "and that they made them think about the small things they had stopped noticing. The "
    "teacher from the school asked if the class could write a story together with the robot, "
    "and the robot said yes at once.\n"
    "They worked on it for a whole month. Each student wrote one page, and the robot helped "
    "them connect the pages into a single story about a journey through the mountains. There "
    "were rivers to cross, bridges to repair, and a friendly bear who knew the way through the "
    "forest. When the story was finished, the library printed it as a real book and put it on "
    "the shelf next to the books the robot had read when it first arrived.\n"
    "Years later, the robot still walks to the library every morning. It still reads before the "
    "sun goes down, and it still writes a little every day. When people ask it what it has "
    "learned, it gives the same answer: that stories are how we share what we see, what we "
    "hope for, and what we remember, and that anyone can tell one if they are patient and "
    "willing to listen.\n"
    "Numbers appear in stories as well: 1 robot, 2 friends, 3 rivers, 10 days, 24 hours, 100 "
    "pages, 2048 words, the year 1999 and the year 2025. Questions end with a question mark? "
    "Some sentences end with an exclamation mark! Others use commas, semicolons; colons: and "
    "quotes like \"hello\" or 'goodbye'. Code looks different: int main(void) { return 0; } "
    "and x = y + 1; while (i < n) i++;\n";

/* Byte-level BPE symbol of each byte (GPT-2's bytes_to_unicode), as UTF-8,
 * and the byte order of the first 256 tokens (printable bytes first). */
static void mm_byte_symbols(char sym[256][3], int order[256])
{
    int n = 0, extra = 0, printable[256] = {0};
    for (int b = 0; b < 256; b++)
        printable[b] = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    for (int b = 0; b < 256; b++)
        if (printable[b])
            order[n++] = b;
    for (int b = 0; b < 256; b++)
        if (!printable[b])
            order[n++] = b;
    for (int b = 0; b < 256; b++) {
        int cp = printable[b] ? b : 256 + extra++;
        if (cp < 0x80) {
            sym[b][0] = (char)cp;
            sym[b][1] = 0;
        } else {
            sym[b][0] = (char)(0xc0 | (cp >> 6));
            sym[b][1] = (char)(0x80 | (cp & 0x3f));
            sym[b][2] = 0;
        }
    }
}

/* String set (open addressing) to keep every token distinct. */
typedef struct {
    char **slot;
    size_t cap;
} mm_set;

static uint64_t mm_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* Returns 1 when s was added, 0 when present. The set borrows s. */
static int mm_set_add(mm_set *set, char *s)
{
    size_t i = mm_hash(s) & (set->cap - 1);
    while (set->slot[i]) {
        if (!strcmp(set->slot[i], s))
            return 0;
        i = (i + 1) & (set->cap - 1);
    }
    set->slot[i] = s;
    return 1;
}

typedef struct {
    char **tok;     /* n_vocab strings */
    int32_t *ttype; /* token types: 1 normal, 3 control */
    char **merges;
    int n_merges, n_learned; /* merges in all, and of those learned from the text */
} mm_vocab;

typedef struct {
    int *sym; /* token ids */
    int len, count;
} mm_word;

static char *mm_concat(const char *a, const char *b, const char *sep)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *s = malloc(la + ls + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, lb + 1);
    }
    return s;
}

static int mm_is_alpha(int c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }

/* Splits the text roughly as the qwen2 pre-tokenizer does (ASCII only):
 * contractions, [optional non-letter] letters, single digits, [space]
 * punctuation runs, whitespace runs. Returns the number of words. */
static int mm_pretokenize(const char *t, int (*fn)(void *, const char *, int), void *ctx)
{
    int n = 0;
    for (int i = 0; t[i];) {
        int j = i;
        if (t[i] == '\'' && mm_is_alpha(t[i + 1]) && !mm_is_alpha(t[i + 2])) {
            j = i + 2;
        } else if (mm_is_alpha(t[i]) || (t[i] != '\n' && !(t[i] >= '0' && t[i] <= '9') &&
                                         mm_is_alpha(t[i + 1]))) {
            j = i + 1;
            while (mm_is_alpha(t[j]))
                j++;
        } else if (t[i] >= '0' && t[i] <= '9') {
            j = i + 1;
        } else if (t[i] == ' ' || t[i] == '\n') {
            j = i + 1;
            if (t[i] == ' ' && t[j] && t[j] != ' ' && t[j] != '\n' && !mm_is_alpha(t[j]) &&
                !(t[j] >= '0' && t[j] <= '9')) {
                while (t[j] && t[j] != ' ' && t[j] != '\n' && !mm_is_alpha(t[j]) &&
                       !(t[j] >= '0' && t[j] <= '9'))
                    j++;
            } else {
                while (t[j] == t[i])
                    j++;
            }
        } else {
            while (t[j] && t[j] != ' ' && t[j] != '\n' && !mm_is_alpha(t[j]) &&
                   !(t[j] >= '0' && t[j] <= '9'))
                j++;
            while (t[j] == '\n')
                j++;
        }
        if (fn(ctx, t + i, j - i))
            return -1;
        n++;
        i = j;
    }
    return n;
}

typedef struct {
    mm_word *w;
    int n;
    int byte_tok[256];
} mm_words;

static int mm_add_word(void *ctx, const char *s, int len)
{
    mm_words *ws = ctx;
    for (int k = 0; k < ws->n; k++) {
        mm_word *w = &ws->w[k];
        if (w->len != len)
            continue;
        int same = 1;
        for (int c = 0; c < len && same; c++)
            same = w->sym[c] == ws->byte_tok[(uint8_t)s[c]];
        if (same) {
            w->count++;
            return 0;
        }
    }
    mm_word *w = &ws->w[ws->n++];
    w->sym = malloc((size_t)len * sizeof *w->sym);
    if (!w->sym)
        return -1;
    for (int c = 0; c < len; c++)
        w->sym[c] = ws->byte_tok[(uint8_t)s[c]];
    w->len = len;
    w->count = 1;
    return 0;
}

static void mm_vocab_free(mm_vocab *v, int n_vocab)
{
    if (v->tok)
        for (int i = 0; i < n_vocab; i++)
            free(v->tok[i]);
    if (v->merges)
        for (int i = 0; i < v->n_merges; i++)
            free(v->merges[i]);
    free(v->tok);
    free(v->ttype);
    free(v->merges);
}

/* Word pieces for synthetic merges: letters only, left side may start with
 * the space symbol, right side may not; so every merge could apply inside a
 * pre-tokenized word. */
static int mm_wordish(const char *s, int allow_space)
{
    if (allow_space && (uint8_t)s[0] == 0xc4 && (uint8_t)s[1] == 0xa0)
        s += 2;
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!mm_is_alpha(*s))
            return 0;
    return 1;
}

static int mm_build_vocab(int n_vocab, mm_vocab *v)
{
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const int n_regular = n_vocab - 3;
    int rc = CORE_ENOMEM, n_tok = 0;
    mm_words ws = {0};
    mm_set set = {0};
    int *left = NULL, *right = NULL;
    memset(v, 0, sizeof *v);
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->ttype = malloc((size_t)n_vocab * sizeof *v->ttype);
    v->merges = calloc((size_t)n_vocab, sizeof *v->merges);
    set.cap = 1;
    while (set.cap < 2 * (size_t)n_vocab)
        set.cap *= 2;
    set.slot = calloc(set.cap, sizeof *set.slot);
    ws.w = calloc(sizeof mm_text, sizeof *ws.w);
    left = malloc((size_t)n_vocab * sizeof *left);
    right = malloc((size_t)n_vocab * sizeof *right);
    if (!v->tok || !v->ttype || !v->merges || !set.slot || !ws.w || !left || !right)
        goto out;

    char sym[256][3];
    int order[256];
    mm_byte_symbols(sym, order);
    for (int i = 0; i < 256; i++) {
        if (!(v->tok[i] = strdup(sym[order[i]])))
            goto out;
        ws.byte_tok[order[i]] = i;
        mm_set_add(&set, v->tok[i]);
    }
    n_tok = 256;
    if (mm_pretokenize(mm_text, mm_add_word, &ws) < 0)
        goto out;

    /* BPE training: merge the most frequent adjacent pair (ties: lowest ids)
     * until no pair occurs twice. The text is small, so plain counting is
     * fast enough. */
    int *pair_count = NULL;
    while (n_tok < n_regular) {
        int best_a = -1, best_b = -1, best = 1;
        /* count pairs with a hash of (a, b) into a small table */
        size_t cap = 1;
        while (cap < 2 * sizeof mm_text)
            cap *= 2;
        if (!pair_count && !(pair_count = malloc(cap * 3 * sizeof *pair_count)))
            goto out;
        memset(pair_count, 0xff, cap * 3 * sizeof *pair_count);
        for (int k = 0; k < ws.n; k++) {
            const mm_word *w = &ws.w[k];
            for (int c = 0; c + 1 < w->len; c++) {
                int a = w->sym[c], b = w->sym[c + 1];
                size_t h = ((size_t)a * 2654435761u ^ (size_t)b * 40503u) & (cap - 1);
                while (pair_count[3 * h] != -1 && (pair_count[3 * h] != a || pair_count[3 * h + 1] != b))
                    h = (h + 1) & (cap - 1);
                if (pair_count[3 * h] == -1) {
                    pair_count[3 * h] = a;
                    pair_count[3 * h + 1] = b;
                    pair_count[3 * h + 2] = 0;
                }
                int cnt = pair_count[3 * h + 2] += w->count;
                if (cnt > best || (cnt == best && best_a >= 0 &&
                                   (a < best_a || (a == best_a && b < best_b)))) {
                    best = cnt;
                    best_a = a;
                    best_b = b;
                }
            }
        }
        if (best_a < 0)
            break;
        char *t = mm_concat(v->tok[best_a], v->tok[best_b], "");
        char *m = mm_concat(v->tok[best_a], v->tok[best_b], " ");
        if (!t || !m) {
            free(t);
            free(m);
            free(pair_count);
            goto out;
        }
        int id;
        if (mm_set_add(&set, t)) {
            id = n_tok;
            v->tok[n_tok++] = t;
        } else {
            /* same string from another pair: the merge still counts */
            id = -1;
            for (int k = 0; k < n_tok && id < 0; k++)
                if (!strcmp(v->tok[k], t))
                    id = k;
            free(t);
        }
        v->merges[v->n_merges++] = m;
        for (int k = 0; k < ws.n; k++) {
            mm_word *w = &ws.w[k];
            int o = 0;
            for (int c = 0; c < w->len; c++) {
                if (c + 1 < w->len && w->sym[c] == best_a && w->sym[c + 1] == best_b) {
                    w->sym[o++] = id;
                    c++;
                } else {
                    w->sym[o++] = w->sym[c];
                }
            }
            w->len = o;
        }
    }
    free(pair_count);
    v->n_learned = v->n_merges;

    /* Fill the rest with merges of word pieces, drawn from a fixed stream. */
    int n_left = 0, n_right = 0;
    for (int i = 0; i < n_tok; i++) {
        if (mm_wordish(v->tok[i], 1))
            left[n_left++] = i;
        if (mm_wordish(v->tok[i], 0))
            right[n_right++] = i;
    }
    uint64_t s = 0x746f6b656e697a65ull; /* "tokenize" */
    while (n_tok < n_regular) {
        int a = left[mm_splitmix(&s) % (uint64_t)n_left];
        int b = right[mm_splitmix(&s) % (uint64_t)n_right];
        if (strlen(v->tok[a]) + strlen(v->tok[b]) > 14)
            continue;
        char *t = mm_concat(v->tok[a], v->tok[b], "");
        if (!t)
            goto out;
        if (!mm_set_add(&set, t)) {
            free(t);
            continue;
        }
        if (!(v->merges[v->n_merges] = mm_concat(v->tok[a], v->tok[b], " "))) {
            free(t);
            goto out;
        }
        v->n_merges++;
        v->tok[n_tok] = t;
        left[n_left++] = n_tok;
        if (mm_wordish(t, 0))
            right[n_right++] = n_tok;
        n_tok++;
    }
    for (int i = 0; i < n_regular; i++)
        v->ttype[i] = 1;
    for (int i = 0; i < 3; i++) {
        if (!(v->tok[n_regular + i] = strdup(specials[i])))
            goto out;
        v->ttype[n_regular + i] = 3;
    }
    rc = 0;
out:
    for (int k = 0; k < ws.n; k++)
        free(ws.w[k].sym);
    free(ws.w);
    free(set.slot);
    free(left);
    free(right);
    return rc;
}

/* ChatML, as Qwen2.5's template renders it without tools. */
static const char mm_chat_template[] =
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\") %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n";

/* ---- WordPiece vocabulary (bert shapes) ------------------------------- */

/* Our own WordPiece vocabulary in llama.cpp's converted form (word-initial
 * pieces start with U+2581, continuations are bare): [PAD] [UNK] [CLS]
 * [SEP] [MASK], every printable ASCII character both ways, a few suffixes,
 * and the lowercase words of mm_text. Token types: 1 normal, 2 unknown,
 * 3 control. */
static int mm_build_wpm_vocab(mm_vocab *v, int *n_vocab)
{
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    static const char *const suffixes[] = {"s", "ed", "ing", "er", "ly", "es", "tion", "ness"};
    int cap = 5 + 2 * 94 + 8 + (int)sizeof mm_text / 2, n = 0;
    mm_set set = {.cap = 4096};
    memset(v, 0, sizeof *v);
    v->tok = calloc((size_t)cap, sizeof *v->tok);
    v->ttype = calloc((size_t)cap, sizeof *v->ttype);
    set.slot = calloc(set.cap, sizeof *set.slot);
    if (!v->tok || !v->ttype || !set.slot)
        goto fail;
#define MM_PUSH(str, type)                                                                           \
    do {                                                                                             \
        char *t_ = (str);                                                                            \
        if (!t_)                                                                                     \
            goto fail;                                                                               \
        if (n < cap && mm_set_add(&set, t_)) {                                                       \
            v->ttype[n] = (type);                                                                    \
            v->tok[n++] = t_;                                                                        \
        } else {                                                                                     \
            free(t_);                                                                                \
        }                                                                                            \
    } while (0)
    for (int i = 0; i < 5; i++)
        MM_PUSH(strdup(specials[i]), i == 1 ? 2 : 3);
    for (int c = '!'; c <= '~'; c++) {
        if (c >= 'A' && c <= 'Z')
            continue; /* the normalizer lowercases */
        char one[2] = {(char)c, 0};
        MM_PUSH(mm_concat("\xe2\x96\x81", one, ""), 1);
        MM_PUSH(strdup(one), 1);
    }
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        MM_PUSH(strdup(suffixes[i]), 1);
    for (const char *t = mm_text; *t;) {
        if (!mm_is_alpha(*t)) {
            t++;
            continue;
        }
        char word[64];
        size_t len = 0;
        for (; mm_is_alpha(*t); t++)
            if (len + 1 < sizeof word)
                word[len++] = (char)(*t | 32);
        word[len] = 0;
        MM_PUSH(mm_concat("\xe2\x96\x81", word, ""), 1);
    }
#undef MM_PUSH
    free(set.slot);
    *n_vocab = n;
    return 0;
fail:
    free(set.slot);
    mm_vocab_free(v, cap);
    return CORE_ENOMEM;
}

/* Copies every tokenizer.* key of a vocabulary GGUF (strings are not
 * NUL-terminated there, so arrays of them are copied first). *n_vocab gets
 * the length of tokenizer.ggml.tokens. */
static int mm_copy_vocab(gguf_writer *w, const gguf *g, int *n_vocab)
{
    int64_t kt = gguf_find_key(g, "tokenizer.ggml.tokens");
    if (kt < 0 || gguf_kv_arr_type(g, kt) != GGUF_STRING || !gguf_kv_arr_n(g, kt) ||
        gguf_kv_arr_n(g, kt) > INT32_MAX)
        return CORE_EFORMAT;
    *n_vocab = (int)gguf_kv_arr_n(g, kt);
    for (int64_t kv = 0; kv < gguf_n_kv(g); kv++) {
        const char *key = gguf_kv_key(g, kv), *str;
        if (strncmp(key, "tokenizer.", 10))
            continue;
        gguf_vtype t = gguf_kv_type(g, kv);
        uint64_t n = gguf_kv_arr_n(g, kv);
        int rc = 0;
        size_t len;
        uint32_t u;
        int64_t i64;
        float f;
        bool b;
        if (t == GGUF_STRING) {
            char *c = gguf_get_str(g, key, &str, &len) ? NULL : strndup(str, len);
            rc = c ? gguf_writer_set_str(w, key, c) : CORE_ENOMEM;
            free(c);
        } else if (t == GGUF_BOOL) {
            rc = gguf_get_bool(g, key, &b) ? CORE_EFORMAT : gguf_writer_set_bool(w, key, b);
        } else if (t == GGUF_FLOAT32 || t == GGUF_FLOAT64) {
            rc = gguf_get_f32(g, key, &f) ? CORE_EFORMAT : gguf_writer_set_f32(w, key, f);
        } else if (t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64) {
            rc = gguf_get_i64(g, key, &i64) || i64 < INT32_MIN || i64 > INT32_MAX
                     ? CORE_EFORMAT
                     : gguf_writer_set_i32(w, key, (int32_t)i64);
        } else if (t != GGUF_ARRAY) {
            rc = gguf_get_u32(g, key, &u) ? CORE_EFORMAT : gguf_writer_set_u32(w, key, u);
        } else if (gguf_kv_arr_type(g, kv) == GGUF_STRING) {
            char **a = calloc(n ? n : 1, sizeof *a);
            rc = a ? 0 : CORE_ENOMEM;
            for (uint64_t i = 0; !rc && i < n; i++)
                rc = gguf_arr_str(g, kv, i, &str, &len) ? CORE_EFORMAT
                     : (a[i] = strndup(str, len))       ? 0
                                                        : CORE_ENOMEM;
            if (!rc)
                rc = gguf_writer_set_arr_str(w, key, (const char *const *)a, n);
            for (uint64_t i = 0; a && i < n; i++)
                free(a[i]);
            free(a);
        } else {
            /* numeric arrays: token types and ids as i32, scores as f32 */
            gguf_vtype et = gguf_kv_arr_type(g, kv);
            bool fl = et == GGUF_FLOAT32 || et == GGUF_FLOAT64;
            float *af = fl ? malloc((n ? n : 1) * sizeof *af) : NULL;
            int32_t *ai = fl ? NULL : malloc((n ? n : 1) * sizeof *ai);
            rc = af || ai ? 0 : CORE_ENOMEM;
            for (uint64_t i = 0; !rc && i < n; i++)
                rc = fl ? (gguf_arr_f32(g, kv, i, &af[i]) ? CORE_EFORMAT : 0)
                        : (gguf_arr_i64(g, kv, i, &i64) || i64 < INT32_MIN || i64 > INT32_MAX
                               ? CORE_EFORMAT
                               : (ai[i] = (int32_t)i64, 0));
            if (!rc)
                rc = fl ? gguf_writer_set_arr_f32(w, key, af, n) : gguf_writer_set_arr_i32(w, key, ai, n);
            free(af);
            free(ai);
        }
        if (rc) {
            fprintf(stderr, "edgegate-make-model: copying '%s': %s\n", key, core_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* ---- main ------------------------------------------------------------- */

static double mm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void mm_usage(FILE *f)
{
    fprintf(f, "usage: edgegate-make-model --shape tiny|qwen2.5-0.5b|bert-tiny|bge-small|bert-micro\n"
               "                           --type f32|f16|q8_0|q4_0|q4_k_m --seed S -o FILE\n"
               "                           [--threads N] [--vocab VOCAB.gguf] [--pooling mean|cls]\n"
               "q4_k_m is for the llm shapes; --vocab and --pooling for the bert ones.\n");
}

#define MM_SET(call)                                                                      \
    do {                                                                                  \
        if ((rc = (call))) {                                                              \
            fprintf(stderr, "edgegate-make-model: %s: %s\n", #call, core_strerror(rc));   \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

/* The tensors of a qwen2 model; shapes are [ne0 = input features, ne1 = output features]. */
static void mm_llm_tensors(const mm_shape *sh, int n_vocab, mm_tensor *ts, int *n)
{
    const int E = sh->n_embd, kv = sh->n_embd / sh->n_head * sh->n_head_kv;
    mm_add(ts, n, MM_EMBD, 0, 2, E, n_vocab, "token_embd.weight", 0);   /* [E, vocab] */
    mm_add(ts, n, MM_NORM, QT_F32, 1, E, 1, "output_norm.weight", 0);  /* [E] */
    if (!sh->tied)
        mm_add(ts, n, MM_OUTPUT, 0, 2, E, n_vocab, "output.weight", 0); /* [E, vocab] */
    for (int l = 0; l < sh->n_layer; l++) {
        mm_add(ts, n, MM_NORM, QT_F32, 1, E, 1, "blk.%d.attn_norm.weight", l);       /* [E] */
        mm_add(ts, n, MM_ATTN_Q, 0, 2, E, E, "blk.%d.attn_q.weight", l);             /* [E, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_q.bias", l);            /* [E] */
        mm_add(ts, n, MM_ATTN_K, 0, 2, E, kv, "blk.%d.attn_k.weight", l);            /* [E, kv] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, kv, 1, "blk.%d.attn_k.bias", l);           /* [kv] */
        mm_add(ts, n, MM_ATTN_V, 0, 2, E, kv, "blk.%d.attn_v.weight", l);            /* [E, kv] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, kv, 1, "blk.%d.attn_v.bias", l);           /* [kv] */
        mm_add(ts, n, MM_ATTN_O, 0, 2, E, E, "blk.%d.attn_output.weight", l);        /* [E, E] */
        mm_add(ts, n, MM_NORM, QT_F32, 1, E, 1, "blk.%d.ffn_norm.weight", l);        /* [E] */
        mm_add(ts, n, MM_FFN_GATE, 0, 2, E, sh->n_ff, "blk.%d.ffn_gate.weight", l);  /* [E, ff] */
        mm_add(ts, n, MM_FFN_UP, 0, 2, E, sh->n_ff, "blk.%d.ffn_up.weight", l);      /* [E, ff] */
        mm_add(ts, n, MM_FFN_DOWN, 0, 2, sh->n_ff, E, "blk.%d.ffn_down.weight", l);  /* [ff, E] */
    }
}

/* The tensors of a bert model, as llama.cpp's converter names them. */
static void mm_bert_tensors(const mm_shape *sh, int n_vocab, mm_tensor *ts, int *n)
{
    const int E = sh->n_embd, F = sh->n_ff;
    mm_add(ts, n, MM_EMBD, 0, 2, E, n_vocab, "token_embd.weight", 0);         /* [E, vocab] */
    mm_add(ts, n, MM_EMBD, QT_F32, 2, E, 2, "token_types.weight", 0);         /* [E, 2] */
    mm_add(ts, n, MM_EMBD, 0, 2, E, sh->n_ctx, "position_embd.weight", 0);    /* [E, ctx] */
    mm_add(ts, n, MM_LNORM, QT_F32, 1, E, 1, "token_embd_norm.weight", 0);    /* [E] */
    mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "token_embd_norm.bias", 0);       /* [E] */
    for (int l = 0; l < sh->n_layer; l++) {
        mm_add(ts, n, MM_ATTN_Q, 0, 2, E, E, "blk.%d.attn_q.weight", l);                /* [E, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_q.bias", l);               /* [E] */
        mm_add(ts, n, MM_ATTN_K, 0, 2, E, E, "blk.%d.attn_k.weight", l);                /* [E, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_k.bias", l);               /* [E] */
        mm_add(ts, n, MM_ATTN_V, 0, 2, E, E, "blk.%d.attn_v.weight", l);                /* [E, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_v.bias", l);               /* [E] */
        mm_add(ts, n, MM_ATTN_O, 0, 2, E, E, "blk.%d.attn_output.weight", l);           /* [E, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_output.bias", l);          /* [E] */
        mm_add(ts, n, MM_LNORM, QT_F32, 1, E, 1, "blk.%d.attn_output_norm.weight", l);  /* [E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.attn_output_norm.bias", l);     /* [E] */
        mm_add(ts, n, MM_FFN_UP, 0, 2, E, F, "blk.%d.ffn_up.weight", l);                /* [E, F] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, F, 1, "blk.%d.ffn_up.bias", l);               /* [F] */
        mm_add(ts, n, MM_FFN_DOWN, 0, 2, F, E, "blk.%d.ffn_down.weight", l);            /* [F, E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.ffn_down.bias", l);             /* [E] */
        mm_add(ts, n, MM_LNORM, QT_F32, 1, E, 1, "blk.%d.layer_output_norm.weight", l); /* [E] */
        mm_add(ts, n, MM_BIAS, QT_F32, 1, E, 1, "blk.%d.layer_output_norm.bias", l);    /* [E] */
    }
}

int main(int argc, char **argv)
{
    const char *shape_name = NULL, *type_name = NULL, *out_path = NULL, *vocab_path = NULL;
    const char *pooling = NULL;
    uint64_t seed = 0;
    int have_seed = 0, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            mm_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            mm_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--shape")) {
            shape_name = v;
        } else if (!strcmp(a, "--type")) {
            type_name = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            out_path = v;
        } else if (!strcmp(a, "--vocab")) {
            vocab_path = v;
        } else if (!strcmp(a, "--pooling")) {
            pooling = v;
        } else if (!strcmp(a, "--seed")) {
            errno = 0;
            seed = strtoull(v, &end, 0);
            if (errno || *end || !*v) {
                fprintf(stderr, "edgegate-make-model: bad seed '%s'\n", v);
                return 2;
            }
            have_seed = 1;
        } else if (!strcmp(a, "--threads")) {
            n_threads = (int)strtol(v, &end, 10);
            if (*end || n_threads < 1 || n_threads > 256) {
                fprintf(stderr, "edgegate-make-model: bad thread count '%s'\n", v);
                return 2;
            }
        } else {
            mm_usage(stderr);
            return 2;
        }
    }
    if (!shape_name || !type_name || !out_path || !have_seed) {
        mm_usage(stderr);
        return 2;
    }
    const mm_shape *sh = NULL;
    const mm_type *ty = NULL;
    for (size_t i = 0; i < sizeof mm_shapes / sizeof mm_shapes[0]; i++)
        if (!strcmp(mm_shapes[i].name, shape_name))
            sh = &mm_shapes[i];
    for (size_t i = 0; i < sizeof mm_types / sizeof mm_types[0]; i++)
        if (!strcmp(mm_types[i].name, type_name))
            ty = &mm_types[i];
    if (!sh || !ty) {
        fprintf(stderr, "edgegate-make-model: unknown %s '%s'\n", sh ? "type" : "shape",
                sh ? type_name : shape_name);
        mm_usage(stderr);
        return 2;
    }
    uint32_t pool_type = !pooling ? sh->pooling : !strcmp(pooling, "mean") ? 1 : !strcmp(pooling, "cls") ? 2 : 0;
    if ((sh->bert && ty->ftype == 15) || (!sh->bert && (vocab_path || pooling)) || (sh->bert && !pool_type)) {
        fprintf(stderr, "edgegate-make-model: --shape %s does not take %s\n", sh->name,
                !sh->bert ? "--vocab or --pooling" : ty->ftype == 15 ? "--type q4_k_m" : "that --pooling");
        mm_usage(stderr);
        return 2;
    }

    double t0 = mm_now();
    int rc = 0, n = 0, n_vocab = sh->n_vocab;
    gguf_writer *w = NULL;
    gguf *vg = NULL;
    mm_vocab voc = {0};
    mm_work work = {0};
    uint8_t *arena = NULL;
    size_t total = 0, at = 0;
    long jobs = 0;
    pthread_t th[256];
    int started = 0;
    char msg[512];
    const int E = sh->n_embd;
    mm_tensor *ts = calloc(5 + 16 * (size_t)sh->n_layer, sizeof *ts);
    if (!ts || !(w = gguf_writer_new())) {
        rc = CORE_ENOMEM;
        goto out;
    }
    /* a bert model's size follows its vocabulary, so that comes first */
    if (sh->bert && vocab_path) {
        if ((rc = gguf_open(vocab_path, &vg, msg, sizeof msg))) {
            fprintf(stderr, "edgegate-make-model: %s: %s\n", vocab_path, msg);
            goto out;
        }
        if ((rc = mm_copy_vocab(w, vg, &n_vocab))) {
            fprintf(stderr, "edgegate-make-model: %s: no usable tokenizer metadata\n", vocab_path);
            goto out;
        }
    } else if (sh->bert) {
        if ((rc = mm_build_wpm_vocab(&voc, &n_vocab)))
            goto out;
        MM_SET(gguf_writer_set_str(w, "tokenizer.ggml.model", "bert"));
        MM_SET(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)voc.tok,
                                       (uint64_t)n_vocab));
        MM_SET(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", voc.ttype, (uint64_t)n_vocab));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.cls_token_id", 2));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.mask_token_id", 4));
    }
    if (sh->bert)
        mm_bert_tensors(sh, n_vocab, ts, &n);
    else
        mm_llm_tensors(sh, n_vocab, ts, &n);
    for (int i = 0; i < n; i++) {
        mm_tensor *t = &ts[i];
        if (t->n_dims == 2 && t->type == 0) {
            int layer = 0;
            sscanf(t->name, "blk.%d.", &layer);
            t->type = ty->ftype == 15 ? mm_q4_k_m_type(sh, t->kind, layer, t->ne[0]) : ty->weight_type;
        }
        t->row_size = quant_row_size(t->type, t->ne[0]);
        t->size = t->row_size * (size_t)t->ne[1];
        total += t->size;
    }
    arena = malloc(total);
    work.job_tensor = malloc(((size_t)n + 1) * sizeof *work.job_tensor);
    if (!arena || !work.job_tensor) {
        rc = CORE_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        ts[i].data = arena + at;
        at += ts[i].size;
        work.job_tensor[i] = jobs;
        jobs += (long)((ts[i].ne[1] + MM_ROWS_PER_JOB - 1) / MM_ROWS_PER_JOB);
    }
    work.job_tensor[n] = jobs;
    work.n_jobs = jobs;
    work.t = ts;
    work.n = n;
    work.seed = seed;
    /* bert: 1/sqrt(E) keeps projections at unit scale, so attention is not uniform */
    work.sd = sh->bert ? 1.0f / sqrtf((float)E) : 0.02f;
    atomic_init(&work.next_job, 0);

    for (; started < n_threads - 1; started++)
        if (pthread_create(&th[started], NULL, mm_worker, &work))
            break;
    /* the BPE tokenizer is built while the workers fill tensors */
    int vrc = sh->bert ? 0 : mm_build_vocab(n_vocab, &voc);
    mm_worker(&work);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (vrc || work.failed) {
        rc = vrc ? vrc : CORE_EUNSUPPORTED;
        fprintf(stderr, "edgegate-make-model: %s\n",
                vrc ? "building the vocabulary failed" : "quantization failed (type not built?)");
        goto out;
    }

    const char *arch = sh->bert ? "bert" : "qwen2";
    char key[96];
#define MM_KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    MM_SET(gguf_writer_set_str(w, "general.architecture", arch));
    MM_SET(gguf_writer_set_str(w, "general.name", sh->model_name));
    MM_SET(gguf_writer_set_u32(w, MM_KEY("context_length"), (uint32_t)sh->n_ctx));
    MM_SET(gguf_writer_set_u32(w, MM_KEY("embedding_length"), (uint32_t)E));
    MM_SET(gguf_writer_set_u32(w, MM_KEY("block_count"), (uint32_t)sh->n_layer));
    MM_SET(gguf_writer_set_u32(w, MM_KEY("feed_forward_length"), (uint32_t)sh->n_ff));
    MM_SET(gguf_writer_set_u32(w, MM_KEY("attention.head_count"), (uint32_t)sh->n_head));
    if (sh->bert) {
        MM_SET(gguf_writer_set_f32(w, MM_KEY("attention.layer_norm_epsilon"), sh->rms_eps));
        MM_SET(gguf_writer_set_bool(w, MM_KEY("attention.causal"), false));
        MM_SET(gguf_writer_set_u32(w, MM_KEY("pooling_type"), pool_type));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.token_type_count", 2));
    } else {
        MM_SET(gguf_writer_set_u32(w, MM_KEY("attention.head_count_kv"), (uint32_t)sh->n_head_kv));
        MM_SET(gguf_writer_set_f32(w, MM_KEY("rope.freq_base"), sh->rope_base));
        MM_SET(gguf_writer_set_f32(w, MM_KEY("attention.layer_norm_rms_epsilon"), sh->rms_eps));
    }
#undef MM_KEY
    MM_SET(gguf_writer_set_u32(w, "general.file_type", ty->ftype));
    MM_SET(gguf_writer_set_u32(w, "general.quantization_version", 2));
    if (!sh->bert) {
        MM_SET(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"));
        MM_SET(gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2"));
        MM_SET(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)voc.tok,
                                       (uint64_t)n_vocab));
        MM_SET(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", voc.ttype, (uint64_t)n_vocab));
        MM_SET(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)voc.merges,
                                       (uint64_t)voc.n_merges));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)n_vocab - 3));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)n_vocab - 1));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)n_vocab - 1));
        MM_SET(gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)n_vocab - 3));
        MM_SET(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false));
        MM_SET(gguf_writer_set_str(w, "tokenizer.chat_template", mm_chat_template));
    }
    for (int i = 0; i < n; i++)
        MM_SET(gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, ts[i].data,
                                      ts[i].size));
    if ((rc = gguf_writer_write(w, out_path, msg, sizeof msg))) {
        fprintf(stderr, "edgegate-make-model: %s\n", msg);
        goto out;
    }
    struct stat st;
    printf("%s: %lld bytes (%s %s, seed %llu), %d tensors, vocab %d (%d merges, %d learned), %.2f s\n",
           out_path, stat(out_path, &st) ? -1LL : (long long)st.st_size, sh->name, ty->name,
           (unsigned long long)seed, n, n_vocab, voc.n_merges, voc.n_learned, mm_now() - t0);
out:
    if (rc)
        fprintf(stderr, "edgegate-make-model: failed: %s\n", core_strerror(rc));
    gguf_writer_free(w);
    gguf_close(vg);
    free(arena);
    mm_vocab_free(&voc, voc.tok ? n_vocab : 0);
    free(work.job_tensor);
    free(ts);
    return rc ? 1 : 0;
}
