/* GGUF writer. Format: see gguf.h. Writes version 3:
 *   header, kv pairs in insertion order, tensor infos in insertion order,
 *   zero padding to the alignment, then each tensor's bytes followed by zero
 *   padding to the alignment (as ggml does, so every offset is aligned).
 * Metadata values are serialised into owned buffers when set; tensor data is
 * borrowed until gguf_writer_write() returns. The file appears atomically:
 * it is written to a temporary file in the same directory, then renamed. */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core_err.h"
#include "quant.h"

/* ggml's GGML_MAX_NAME is 64 including the NUL; longer names break llama.cpp. */
#define GGUF_W_MAX_NAME 63

typedef struct {
    char *key;
    gguf_vtype type;
    uint8_t *val; /* serialised value: scalar bytes, str, or arr header + elements */
    size_t val_size;
} gguf_wkv;

typedef struct {
    char *name;
    int type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data; /* borrowed */
    size_t size;
} gguf_wtensor;

struct gguf_writer {
    gguf_wkv *kv;
    size_t n_kv, cap_kv;
    gguf_wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->alignment = 32;
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Takes ownership of val (freed on failure too). Setting a key again
 * replaces its value in place, keeping the original order. */
static int gguf_w_put(gguf_writer *w, const char *key, gguf_vtype type, uint8_t *val, size_t val_size)
{
    /* the alignment is only set through gguf_writer_set_u32, which checks it */
    if (!w || !key || !*key || (type != GGUF_UINT32 && !strcmp(key, "general.alignment"))) {
        free(val);
        return CORE_EINVAL;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_size = val_size;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        gguf_wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(val);
            return CORE_ENOMEM;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(val);
        return CORE_ENOMEM;
    }
    w->kv[w->n_kv++] = (gguf_wkv){k, type, val, val_size};
    return 0;
}

static int gguf_w_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *v, size_t n)
{
    uint8_t *val = malloc(n);
    if (!val)
        return CORE_ENOMEM;
    memcpy(val, v, n);
    return gguf_w_put(w, key, type, val, n);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    if (w && key && !strcmp(key, "general.alignment")) {
        if (v == 0 || (v & (v - 1)))
            return CORE_EINVAL;
        int rc = gguf_w_scalar(w, key, GGUF_UINT32, &v, 4);
        if (!rc)
            w->alignment = v;
        return rc;
    }
    return gguf_w_scalar(w, key, GGUF_UINT32, &v, 4);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return gguf_w_scalar(w, key, GGUF_INT32, &v, 4);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return gguf_w_scalar(w, key, GGUF_FLOAT32, &v, 4);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return gguf_w_scalar(w, key, GGUF_BOOL, &b, 1);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return CORE_EINVAL;
    uint64_t len = strlen(v);
    uint8_t *val = malloc(8 + len);
    if (!val)
        return CORE_ENOMEM;
    memcpy(val, &len, 8);
    memcpy(val + 8, v, len);
    return gguf_w_put(w, key, GGUF_STRING, val, 8 + len);
}

/* Array value: u32 element type, u64 count, then elem_size * n bytes of data
 * (already serialised by the caller when data is NULL). */
static uint8_t *gguf_w_arr_alloc(gguf_vtype et, uint64_t n, size_t payload)
{
    if (payload > SIZE_MAX - 12)
        return NULL;
    uint8_t *val = malloc(12 + payload);
    if (!val)
        return NULL;
    uint32_t t = (uint32_t)et;
    memcpy(val, &t, 4);
    memcpy(val + 4, &n, 8);
    return val;
}

static int gguf_w_arr_num(gguf_writer *w, const char *key, gguf_vtype et, const void *v, uint64_t n,
                          size_t esize)
{
    if (n && !v)
        return CORE_EINVAL;
    if (n > (SIZE_MAX - 12) / esize)
        return CORE_ENOMEM;
    uint8_t *val = gguf_w_arr_alloc(et, n, (size_t)n * esize);
    if (!val)
        return CORE_ENOMEM;
    if (n)
        memcpy(val + 12, v, (size_t)n * esize);
    return gguf_w_put(w, key, GGUF_ARRAY, val, 12 + (size_t)n * esize);
}

int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    return gguf_w_arr_num(w, key, GGUF_FLOAT32, v, n, 4);
}

int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    return gguf_w_arr_num(w, key, GGUF_INT32, v, n, 4);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
    if (n && !v)
        return CORE_EINVAL;
    size_t payload = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i])
            return CORE_EINVAL;
        size_t len = strlen(v[i]);
        if (payload > SIZE_MAX - 64 - len)
            return CORE_ENOMEM;
        payload += 8 + len;
    }
    uint8_t *val = gguf_w_arr_alloc(GGUF_STRING, n, payload);
    if (!val)
        return CORE_ENOMEM;
    uint8_t *p = val + 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = strlen(v[i]);
        memcpy(p, &len, 8);
        memcpy(p + 8, v[i], len);
        p += 8 + len;
    }
    return gguf_w_put(w, key, GGUF_ARRAY, val, 12 + payload);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                           const void *data, size_t size)
{
    if (!w || !name || !*name || strlen(name) > GGUF_W_MAX_NAME || n_dims < 1 ||
        n_dims > GGUF_MAX_DIMS || !ne || (!data && size))
        return CORE_EINVAL;
    const quant_traits *tr = quant_traits_of(type);
    if (!tr)
        return CORE_EUNSUPPORTED;
    gguf_wtensor t = {.type = type, .n_dims = n_dims, .data = data, .size = size};
    int64_t rows = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        /* the reader's limits: 2^40 per dimension */
        if (t.ne[d] < 1 || t.ne[d] > (INT64_C(1) << 40))
            return CORE_EINVAL;
        if (d > 0) {
            if (rows > (INT64_C(1) << 50) / t.ne[d])
                return CORE_EINVAL;
            rows *= t.ne[d];
        }
    }
    size_t row = quant_row_size(type, t.ne[0]);
    if (!row || (uint64_t)rows > SIZE_MAX / row || row * (size_t)rows != size)
        return CORE_EINVAL;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return CORE_EINVAL;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        gguf_wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt)
            return CORE_ENOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name)))
        return CORE_ENOMEM;
    w->t[w->n_t++] = t;
    return 0;
}

static size_t gguf_w_pad(size_t n, size_t a) { return (a - n % a) % a; }

/* fwrite that remembers the first failure, so the body reads straight. */
typedef struct {
    FILE *f;
    size_t pos;
    int failed;
} gguf_wout;

static void gguf_w_out(gguf_wout *o, const void *p, size_t n)
{
    errno = 0;
    if (!o->failed && n && fwrite(p, 1, n, o->f) != n)
        o->failed = errno ? errno : EIO;
    o->pos += n;
}

static void gguf_w_zeros(gguf_wout *o, size_t n)
{
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        gguf_w_out(o, zeros, k);
        n -= k;
    }
}

static void gguf_w_str(gguf_wout *o, const char *s)
{
    uint64_t len = strlen(s);
    gguf_w_out(o, &len, 8);
    gguf_w_out(o, s, len);
}

int gguf_writer_write(gguf_writer *w, const char *path, char *msg, size_t msg_size)
{
    if (!w || !path || !*path)
        return core_errf(CORE_EINVAL, msg, msg_size, "gguf writer: no writer or path");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    memcpy(tmp, path, plen);
    /* mkstemp's template: ".tmp." then six 'X' it replaces */
    memcpy(tmp + plen, ".tmp.", 5);
    memset(tmp + plen + 5, 'X', 6);
    tmp[plen + 11] = 0;
    int rc = 0;
    FILE *f = NULL;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = core_errf(CORE_EIO, msg, msg_size, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    /* mkstemp makes 0600; model files are meant to be shared by workers */
    if (fchmod(fd, 0644) || !(f = fdopen(fd, "wb"))) {
        rc = core_errf(CORE_EIO, msg, msg_size, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto out_unlink;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);

    gguf_wout o = {f, 0, 0};
    uint32_t version = 3;
    uint64_t n_t = w->n_t, n_kv = w->n_kv;
    gguf_w_out(&o, "GGUF", 4);
    gguf_w_out(&o, &version, 4);
    gguf_w_out(&o, &n_t, 8);
    gguf_w_out(&o, &n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        uint32_t t = (uint32_t)w->kv[i].type;
        gguf_w_str(&o, w->kv[i].key);
        gguf_w_out(&o, &t, 4);
        gguf_w_out(&o, w->kv[i].val, w->kv[i].val_size);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        uint32_t nd = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        gguf_w_str(&o, t->name);
        gguf_w_out(&o, &nd, 4);
        for (int d = 0; d < t->n_dims; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            gguf_w_out(&o, &ne, 8);
        }
        gguf_w_out(&o, &type, 4);
        gguf_w_out(&o, &off, 8);
        off += t->size + gguf_w_pad(t->size, w->alignment);
    }
    gguf_w_zeros(&o, gguf_w_pad(o.pos, w->alignment));
    for (size_t i = 0; i < w->n_t; i++) {
        gguf_w_out(&o, w->t[i].data, w->t[i].size);
        gguf_w_zeros(&o, gguf_w_pad(w->t[i].size, w->alignment));
    }
    /* No fsync: the rename makes the file appear whole to readers; durability
     * across a power cut is not worth seconds per model. */
    if (fclose(f) && !o.failed)
        o.failed = errno ? errno : EIO;
    if (o.failed) {
        rc = core_errf(CORE_EIO, msg, msg_size, "%s: write: %s", tmp, strerror(o.failed));
        goto out_unlink;
    }
    if (rename(tmp, path)) {
        rc = core_errf(CORE_EIO, msg, msg_size, "rename %s -> %s: %s", tmp, path, strerror(errno));
        goto out_unlink;
    }
    goto out;
out_unlink:
    unlink(tmp);
out:
    free(tmp);
    return rc;
}
