/* libFuzzer harness for the GGUF reader: open arbitrary bytes, then use the
 * handle the way a model loader would (every getter on every key, every
 * array element up to a cap, every tensor's first and last byte). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "gguf.h"
#include "quant.h"

static volatile uint64_t fz_sink;

static void fz_walk_kv(const gguf *g, int64_t i)
{
    const char *key = gguf_kv_key(g, i);
    uint32_t u;
    int64_t v;
    float f;
    bool b;
    const char *s;
    size_t len;
    if (!gguf_get_u32(g, key, &u))
        fz_sink += u;
    if (!gguf_get_i64(g, key, &v))
        fz_sink += (uint64_t)v;
    if (!gguf_get_f32(g, key, &f))
        fz_sink += (uint64_t)(f == f);
    if (!gguf_get_bool(g, key, &b))
        fz_sink += b;
    if (!gguf_get_str(g, key, &s, &len) && len)
        fz_sink += (uint8_t)s[0] + (uint8_t)s[len - 1];
    if (gguf_find_key(g, key) < 0)
        abort(); /* a parsed key must be found again */
    if (gguf_kv_type(g, i) != GGUF_ARRAY)
        return;
    uint64_t n = gguf_kv_arr_n(g, i);
    (void)gguf_kv_arr_type(g, i);
    for (uint64_t j = 0; j < n && j < 4096; j++) {
        if (!gguf_arr_str(g, i, j, &s, &len) && len)
            fz_sink += (uint8_t)s[0] + (uint8_t)s[len - 1];
        if (!gguf_arr_i64(g, i, j, &v))
            fz_sink += (uint64_t)v;
        if (!gguf_arr_f32(g, i, j, &f))
            fz_sink += (uint64_t)(f == f);
    }
    /* the element just past the end is refused */
    if (!gguf_arr_i64(g, i, n, &v) || !gguf_arr_str(g, i, n, &s, &len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy of exactly `size` bytes, so ASan sees any overread */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    gguf *g;
    char msg[256];
    msg[0] = 0;
    int rc = gguf_open_mem(copy, size, &g, msg, sizeof msg);
    if (rc) {
        if (g || !msg[0] || rc == CORE_OK)
            abort(); /* failures leave no handle and always explain themselves */
        free(copy);
        return 0;
    }
    (void)gguf_version(g);
    (void)gguf_file_size(g);
    size_t align = gguf_alignment(g);
    for (int64_t i = 0; i < gguf_n_kv(g); i++)
        fz_walk_kv(g, i);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        if (p < copy || p + t->size > copy + size || (size_t)(p - copy) % align)
            abort(); /* tensor outside the file or misaligned */
        if (t->size != quant_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]))
            abort();
        if (t->size)
            fz_sink += p[0] + p[t->size - 1];
        if (gguf_find_tensor(g, t->name) != t)
            abort();
    }
    gguf_close(g);
    free(copy);
    return 0;
}
