/* fuzz_embed_request.c: libFuzzer harness for the POST /v1/embeddings
 * request parser and response writer. Input: one request body. Whatever
 * the parser accepts is written back as JSON and must parse to the same
 * request; the response body for vectors made from the inputs must be
 * valid JSON, and its base64 vectors must decode to the same floats. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "embed.h"
#include "json.h"
#include "sbuf.h"

static json_value *fuzz_parse_json(arena *a, const char *s, size_t n)
{
    json_value *v;
    char msg[160];
    if (json_parse(a, s, n, &v, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "invalid JSON written (%s): %.*s\n", msg, (int)n, s);
        abort();
    }
    return v;
}

static int fuzz_b64(int c)
{
    const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(t, c) : NULL;
    return p ? (int)(p - t) : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static arena *a;
    if (!a)
        a = arena_new(0);
    static const char *const models[] = {"embed", "m2"};
    embed_limits lim = {.models = models, .n_models = 2, .max_inputs = 8};
    embed_request r, t;
    api_error e;
    if (embed_parse(a, (const char *)data, size, &lim, &r, &e) != CORE_OK) {
        if (e.status != 400 && e.status != 500)
            abort();
        arena_reset(a);
        return 0;
    }
    if (r.n_inputs < 1 || r.n_inputs > lim.max_inputs)
        abort();
    /* Round trip. */
    sbuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "{\"model\":");
    json_put_str(&b, r.model, strlen(r.model));
    sbuf_puts(&b, ",\"input\":[");
    for (size_t i = 0; i < r.n_inputs; i++) {
        if (i)
            sbuf_putc(&b, ',');
        json_put_str(&b, r.inputs[i], r.lens[i]);
    }
    sbuf_printf(&b, "],\"encoding_format\":\"%s\"", r.base64 ? "base64" : "float");
    if (r.dimensions)
        sbuf_printf(&b, ",\"dimensions\":%ld", r.dimensions);
    sbuf_putc(&b, '}');
    if (b.oom || embed_parse(a, b.data, b.len, &lim, &t, &e) != CORE_OK || t.n_inputs != r.n_inputs ||
        strcmp(t.model, r.model) || t.base64 != r.base64 || t.dimensions != r.dimensions) {
        fprintf(stderr, "round trip failed: %s\n", b.data ? b.data : "(oom)");
        abort();
    }
    for (size_t i = 0; i < r.n_inputs; i++)
        if (t.lens[i] != r.lens[i] || memcmp(t.inputs[i], r.inputs[i], r.lens[i]))
            abort();
    /* Vectors from the input bytes, odd sizes included (base64 padding). */
    int dim = 1 + (int)(r.lens[0] % 7);
    float *v = arena_alloc(a, r.n_inputs * (size_t)dim * sizeof *v);
    if (!v)
        abort();
    for (size_t i = 0; i < r.n_inputs * (size_t)dim; i++)
        v[i] = ((float)(uint8_t)r.inputs[i / dim][(i % dim) % (r.lens[i / dim] + 1)] - 100.5f) / 3.0f;
    for (int enc = 0; enc < 2; enc++) {
        sbuf_clear(&b);
        if (embed_body(&b, r.model, v, r.n_inputs, dim, enc, 42) != CORE_OK)
            abort();
        json_value *doc = fuzz_parse_json(a, b.data, b.len);
        json_value *d = json_get(doc, "data");
        if (!d || d->type != JSON_ARRAY || d->u.kids.n != r.n_inputs)
            abort();
        size_t i = 0;
        for (json_value *x = d->u.kids.first; x; x = x->next, i++) {
            json_value *em = json_get(x, "embedding");
            if (!enc) {
                if (!em || em->type != JSON_ARRAY || em->u.kids.n != (size_t)dim)
                    abort();
                continue;
            }
            if (!em || em->type != JSON_STRING || em->u.str.len != ((size_t)dim * 4 + 2) / 3 * 4)
                abort();
            uint8_t bytes[64];
            size_t nb = 0;
            uint32_t acc = 0;
            int bits = 0;
            for (size_t k = 0; k < em->u.str.len && em->u.str.s[k] != '='; k++) {
                int c = fuzz_b64(em->u.str.s[k]);
                if (c < 0)
                    abort();
                acc = acc << 6 | (uint32_t)c;
                if ((bits += 6) >= 8) {
                    bytes[nb++] = (uint8_t)(acc >> (bits -= 8));
                }
            }
            if (nb != (size_t)dim * 4)
                abort();
            for (int k = 0; k < dim; k++) {
                uint32_t u = (uint32_t)bytes[4 * k] | (uint32_t)bytes[4 * k + 1] << 8 |
                             (uint32_t)bytes[4 * k + 2] << 16 | (uint32_t)bytes[4 * k + 3] << 24;
                float f;
                memcpy(&f, &u, 4);
                if (f != v[i * (size_t)dim + (size_t)k])
                    abort();
            }
        }
    }
    sbuf_free(&b);
    arena_reset(a);
    return 0;
}
