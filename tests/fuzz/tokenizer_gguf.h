/* tokenizer_gguf.h: builds small tokenizer-only GGUF files in memory, for
 * the tokenizer's unit test and fuzz harness (no GGUF writer needed).
 *
 * Layout written (GGUF v3, no tensors): "GGUF" u32 3, u64 0, u64 n_kv, then
 * n_kv x { u64 len, key, u32 type, value }. Everything is static: include
 * this from one translation unit. The builder owns its buffer; tgb_finish()
 * hands it to the caller, who frees it with free().
 */
#ifndef TOKENIZER_GGUF_H
#define TOKENIZER_GGUF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
    bool oom;
} tgb;

static void tgb_put(tgb *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void tgb_u32(tgb *b, uint32_t v) { tgb_put(b, &v, 4); }
static void tgb_u64(tgb *b, uint64_t v) { tgb_put(b, &v, 8); }

static void tgb_strn(tgb *b, const char *s, size_t n)
{
    tgb_u64(b, n);
    tgb_put(b, s, n);
}

static void tgb_key(tgb *b, const char *key, uint32_t type)
{
    tgb_strn(b, key, strlen(key));
    tgb_u32(b, type);
    b->n_kv++;
}

static void tgb_str(tgb *b, const char *key, const char *v)
{
    tgb_key(b, key, 8);
    tgb_strn(b, v, strlen(v));
}

static void tgb_uint(tgb *b, const char *key, uint32_t v)
{
    tgb_key(b, key, 4);
    tgb_u32(b, v);
}

static void tgb_bool(tgb *b, const char *key, bool v)
{
    unsigned char c = v;
    tgb_key(b, key, 7);
    tgb_put(b, &c, 1);
}

static void tgb_strs(tgb *b, const char *key, const char *const *v, size_t n)
{
    tgb_key(b, key, 9);
    tgb_u32(b, 8);
    tgb_u64(b, n);
    for (size_t i = 0; i < n; i++)
        tgb_strn(b, v[i], strlen(v[i]));
}

static void tgb_i32s(tgb *b, const char *key, const int32_t *v, size_t n)
{
    tgb_key(b, key, 9);
    tgb_u32(b, 5);
    tgb_u64(b, n);
    tgb_put(b, v, n * 4);
}

static void tgb_f32s(tgb *b, const char *key, const float *v, size_t n)
{
    tgb_key(b, key, 9);
    tgb_u32(b, 6);
    tgb_u64(b, n);
    tgb_put(b, v, n * 4);
}

/* Returns the whole file (header + the key/values added so far) and resets
 * the builder; NULL when out of memory. */
static unsigned char *tgb_finish(tgb *b, size_t *len)
{
    tgb out = {0};
    tgb_put(&out, "GGUF", 4);
    tgb_u32(&out, 3);
    tgb_u64(&out, 0);
    tgb_u64(&out, b->n_kv);
    tgb_put(&out, b->p, b->n);
    bool oom = b->oom || out.oom;
    free(b->p);
    *b = (tgb){0};
    if (oom) {
        free(out.p);
        return NULL;
    }
    *len = out.n;
    return out.p;
}

#endif
