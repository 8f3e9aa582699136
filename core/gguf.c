/* GGUF reader. Format: see gguf.h. Parsing is a single forward pass with a
 * bounds-checked cursor; nothing is trusted until checked against the file
 * size, and every count is bounded by the bytes that could hold it. */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core_err.h"
#include "quant.h"

typedef struct {
    const char *key;     /* NUL-terminated copy */
    gguf_vtype type;
    gguf_vtype arr_type; /* ARRAY only */
    uint64_t n;          /* ARRAY element count */
    const uint8_t *val;  /* start of the value (after the type, or after arr header) */
    const uint8_t **strs; /* ARRAY of STRING: start of each element (u64 len + bytes) */
} gguf_kv;

struct gguf {
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    size_t alignment;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    char *names; /* keys and tensor names, NUL-separated */
};

typedef struct {
    const uint8_t *p, *end;
    char *msg;
    size_t msg_size;
} gguf_cur;

static const size_t gguf_vsize[GGUF_VTYPE_COUNT] = {
    [GGUF_UINT8] = 1, [GGUF_INT8] = 1, [GGUF_UINT16] = 2, [GGUF_INT16] = 2,
    [GGUF_UINT32] = 4, [GGUF_INT32] = 4, [GGUF_FLOAT32] = 4, [GGUF_BOOL] = 1,
    [GGUF_UINT64] = 8, [GGUF_INT64] = 8, [GGUF_FLOAT64] = 8,
};

static size_t gguf_left(const gguf_cur *c) { return (size_t)(c->end - c->p); }

static int gguf_take(gguf_cur *c, void *dst, size_t n, const char *what)
{
    if (gguf_left(c) < n)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "truncated file: reading %s", what);
    if (dst)
        memcpy(dst, c->p, n);
    c->p += n;
    return 0;
}

static int gguf_take_u32(gguf_cur *c, uint32_t *v, const char *what) { return gguf_take(c, v, 4, what); }
static int gguf_take_u64(gguf_cur *c, uint64_t *v, const char *what) { return gguf_take(c, v, 8, what); }

/* Reads a string header and skips its bytes; s and len describe it. */
static int gguf_take_str(gguf_cur *c, const uint8_t **s, uint64_t *len, const char *what)
{
    int rc = gguf_take_u64(c, len, what);
    if (rc)
        return rc;
    if (*len > gguf_left(c))
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size,
                         "%s: string length %llu exceeds the file", what, (unsigned long long)*len);
    *s = c->p;
    c->p += *len;
    return 0;
}

/* Skips one value of type t (arrays only at depth 0: GGUF writers never nest
 * them and accepting nesting would allow unbounded recursion). */
static int gguf_skip_value(gguf_cur *c, gguf_vtype t, const char *what)
{
    if (t == GGUF_STRING) {
        const uint8_t *s;
        uint64_t n;
        return gguf_take_str(c, &s, &n, what);
    }
    if ((unsigned)t >= GGUF_VTYPE_COUNT || !gguf_vsize[t])
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "%s: invalid value type %u", what,
                         (unsigned)t);
    return gguf_take(c, NULL, gguf_vsize[t], what);
}

static int gguf_parse_kv(gguf *g, gguf_cur *c, gguf_kv *kv, char **names_out)
{
    const uint8_t *ks;
    uint64_t klen = 0;
    uint32_t t = 0;
    int rc = gguf_take_str(c, &ks, &klen, "metadata key");
    if (rc)
        return rc;
    char *key = *names_out;
    memcpy(key, ks, klen);
    key[klen] = 0;
    *names_out += klen + 1;
    kv->key = key;
    if (strlen(key) != klen)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "metadata key with NUL byte");
    /* errors about this value name its key */
    char what[96];
    snprintf(what, sizeof what, "key '%.80s'", key);
    if ((rc = gguf_take_u32(c, &t, what)))
        return rc;
    kv->type = (gguf_vtype)t;
    if (t != GGUF_ARRAY) {
        kv->val = c->p;
        return gguf_skip_value(c, kv->type, what);
    }
    uint32_t at = 0;
    uint64_t n = 0;
    if ((rc = gguf_take_u32(c, &at, what)) || (rc = gguf_take_u64(c, &n, what)))
        return rc;
    if (at == GGUF_ARRAY || at >= GGUF_VTYPE_COUNT)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "key '%s': invalid array type %u", key, at);
    kv->arr_type = (gguf_vtype)at;
    kv->n = n;
    kv->val = c->p;
    if (at != GGUF_STRING) {
        if (n > gguf_left(c) / gguf_vsize[at])
            return core_errf(CORE_EFORMAT, c->msg, c->msg_size,
                             "key '%s': array of %llu elements exceeds the file", key,
                             (unsigned long long)n);
        c->p += n * gguf_vsize[at];
        return 0;
    }
    /* each string takes at least its 8-byte length */
    if (n > gguf_left(c) / 8)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size,
                         "key '%s': array of %llu strings exceeds the file", key, (unsigned long long)n);
    kv->strs = malloc((n ? n : 1) * sizeof *kv->strs);
    if (!kv->strs)
        return core_errf(CORE_ENOMEM, c->msg, c->msg_size, "key '%s': out of memory", key);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint64_t len;
        kv->strs[i] = c->p;
        if ((rc = gguf_take_str(c, &s, &len, what)))
            return rc;
    }
    (void)g;
    return 0;
}

static int gguf_parse_tensor(gguf *g, gguf_cur *c, gguf_tensor *t, char **names_out, int64_t idx)
{
    const uint8_t *ns;
    uint64_t nlen = 0;
    uint32_t nd = 0, type = 0;
    uint64_t off = 0;
    int rc = gguf_take_str(c, &ns, &nlen, "tensor name");
    if (rc)
        return rc;
    char *name = *names_out;
    memcpy(name, ns, nlen);
    name[nlen] = 0;
    *names_out += nlen + 1;
    t->name = name;
    if (strlen(name) != nlen)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "tensor name with NUL byte");
    char what[96];
    snprintf(what, sizeof what, "tensor '%.80s'", name);
    if ((rc = gguf_take_u32(c, &nd, what)))
        return rc;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "tensor '%s': %u dimensions", name, nd);
    t->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if ((uint32_t)d < nd && (rc = gguf_take_u64(c, &ne, what)))
            return rc;
        /* 2^40 elements per dim and 2^50 in all are far beyond any file we can map */
        if (ne == 0 || ne > (1ull << 40) || (uint64_t)nel > (1ull << 50) / ne)
            return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "tensor '%s': bad dimension %llu",
                             name, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        nel *= (int64_t)ne;
    }
    if ((rc = gguf_take_u32(c, &type, what)) || (rc = gguf_take_u64(c, &off, what)))
        return rc;
    t->type = (int)type;
    const quant_traits *tr = quant_traits_of((int)type);
    if (!tr)
        return core_errf(CORE_EUNSUPPORTED, c->msg, c->msg_size,
                         "tensor '%s': unsupported tensor type %u", name, type);
    if (t->ne[0] % tr->blck)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size,
                         "tensor '%s': row of %lld not a multiple of the %s block size %d", name,
                         (long long)t->ne[0], tr->name, tr->blck);
    t->size = (size_t)(nel / tr->blck) * tr->type_size;
    if (off % g->alignment)
        return core_errf(CORE_EFORMAT, c->msg, c->msg_size, "tensor '%s': offset %llu not aligned",
                         name, (unsigned long long)off);
    t->data = (const void *)(uintptr_t)off; /* relative until the data start is known */
    (void)idx;
    return 0;
}

static int gguf_cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting keeps this O(n log n) for files with many keys or tensors.
 * Duplicate keys are refused (as llama.cpp does): which one a getter
 * returned would otherwise depend on the order of the lookup. */
static int gguf_check_unique(const gguf *g, int keys, char *msg, size_t msg_size)
{
    int64_t n = keys ? g->n_kv : g->n_tensors;
    if (n < 2)
        return 0;
    const char **names = malloc((size_t)n * sizeof *names);
    if (!names)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    for (int64_t i = 0; i < n; i++)
        names[i] = keys ? g->kv[i].key : g->tensors[i].name;
    qsort(names, (size_t)n, sizeof *names, gguf_cmp_name);
    int rc = 0;
    for (int64_t i = 1; i < n && !rc; i++)
        if (!strcmp(names[i - 1], names[i]))
            rc = core_errf(CORE_EFORMAT, msg, msg_size, "duplicate %s '%s'", keys ? "key" : "tensor",
                           names[i]);
    free(names);
    return rc;
}

static int gguf_parse(gguf *g, char *msg, size_t msg_size)
{
    gguf_cur c = {g->base, g->base + g->size, msg, msg_size};
    char magic[4];
    uint64_t n_tensors = 0, n_kv = 0;
    int rc;
    if ((rc = gguf_take(&c, magic, 4, "magic")))
        return rc;
    if (memcmp(magic, "GGUF", 4))
        return core_errf(CORE_EFORMAT, msg, msg_size, "not a GGUF file (bad magic)");
    if ((rc = gguf_take_u32(&c, &g->version, "version")))
        return rc;
    if (g->version != 2 && g->version != 3)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "GGUF version %u (2 and 3 are supported)",
                         g->version);
    if ((rc = gguf_take_u64(&c, &n_tensors, "tensor count")) || (rc = gguf_take_u64(&c, &n_kv, "key count")))
        return rc;
    /* a kv needs >= 12 bytes (key length + type), a tensor >= 28 */
    if (n_kv > gguf_left(&c) / 12 || n_tensors > gguf_left(&c) / 28)
        return core_errf(CORE_EFORMAT, msg, msg_size, "counts (%llu keys, %llu tensors) exceed the file",
                         (unsigned long long)n_kv, (unsigned long long)n_tensors);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    /* names are copies of strings in the file, so the file size bounds them */
    g->names = malloc(g->size + n_kv + n_tensors + 1);
    if (!g->kv || !g->tensors || !g->names)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    char *names = g->names;
    g->alignment = 32;
    for (int64_t i = 0; i < g->n_kv; i++) {
        if ((rc = gguf_parse_kv(g, &c, &g->kv[i], &names)))
            return rc;
        if (!strcmp(g->kv[i].key, "general.alignment")) {
            uint32_t a;
            if ((rc = gguf_get_u32(g, "general.alignment", &a)) || a == 0 || (a & (a - 1)))
                return core_errf(CORE_EFORMAT, msg, msg_size, "general.alignment is not an integer power of two");
            g->alignment = a;
        }
    }
    if ((rc = gguf_check_unique(g, 1, msg, msg_size)))
        return rc;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if ((rc = gguf_parse_tensor(g, &c, &g->tensors[i], &names, i)))
            return rc;
    size_t hdr = (size_t)(c.p - g->base);
    size_t data = (hdr + g->alignment - 1) / g->alignment * g->alignment;
    if (data > g->size && g->n_tensors)
        return core_errf(CORE_EFORMAT, msg, msg_size, "truncated file: no tensor data");
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        size_t off = (size_t)(uintptr_t)t->data;
        if (off > g->size - data || t->size > g->size - data - off)
            return core_errf(CORE_EFORMAT, msg, msg_size,
                             "tensor '%s' (offset %zu, %zu bytes) extends past the end of the file",
                             t->name, off, t->size);
        t->data = g->base + data + off;
    }
    return gguf_check_unique(g, 0, msg, msg_size);
}

static int gguf_open_common(gguf *g, gguf **out, char *msg, size_t msg_size)
{
    int rc = gguf_parse(g, msg, msg_size);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open_mem(const void *data, size_t size, gguf **out, char *msg, size_t msg_size)
{
    *out = NULL;
    gguf *g = calloc(1, sizeof *g);
    if (!g)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    g->base = data;
    g->size = size;
    return gguf_open_common(g, out, msg, msg_size);
}

int gguf_open(const char *path, gguf **out, char *msg, size_t msg_size)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return core_errf(CORE_EIO, msg, msg_size, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return core_errf(CORE_EIO, msg, msg_size, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return core_errf(CORE_EFORMAT, msg, msg_size, "%s: truncated file (%lld bytes)", path,
                         (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return core_errf(CORE_EIO, msg, msg_size, "%s: mmap: %s", path, strerror(errno));
    gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(map, (size_t)st.st_size);
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    }
    g->base = map;
    g->size = (size_t)st.st_size;
    g->mapped = 1;
    return gguf_open_common(g, out, msg, msg_size);
}

void gguf_close(gguf *g)
{
    if (!g)
        return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].strs);
    free(g->kv);
    free(g->tensors);
    free(g->names);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free(g);
}

uint32_t gguf_version(const gguf *g) { return g->version; }
size_t gguf_alignment(const gguf *g) { return g->alignment; }
size_t gguf_file_size(const gguf *g) { return g->size; }
int64_t gguf_n_kv(const gguf *g) { return g->n_kv; }
int64_t gguf_n_tensors(const gguf *g) { return g->n_tensors; }

int64_t gguf_find_key(const gguf *g, const char *key)
{
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key))
            return i;
    return -1;
}

const char *gguf_kv_key(const gguf *g, int64_t kv) { return g->kv[kv].key; }
gguf_vtype gguf_kv_type(const gguf *g, int64_t kv) { return g->kv[kv].type; }
gguf_vtype gguf_kv_arr_type(const gguf *g, int64_t kv) { return g->kv[kv].arr_type; }
uint64_t gguf_kv_arr_n(const gguf *g, int64_t kv) { return g->kv[kv].type == GGUF_ARRAY ? g->kv[kv].n : 0; }

/* Numeric value at p of type t, as integer (ok=1) and double. */
static int gguf_num(gguf_vtype t, const uint8_t *p, int64_t *iv, double *dv, int *is_int)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } u;
    if ((unsigned)t >= GGUF_VTYPE_COUNT || !gguf_vsize[t] || t == GGUF_BOOL)
        return CORE_EFORMAT;
    memcpy(&u, p, gguf_vsize[t]);
    *is_int = 1;
    switch (t) {
    case GGUF_UINT8: *iv = u.u8; break;
    case GGUF_INT8: *iv = u.i8; break;
    case GGUF_UINT16: *iv = u.u16; break;
    case GGUF_INT16: *iv = u.i16; break;
    case GGUF_UINT32: *iv = u.u32; break;
    case GGUF_INT32: *iv = u.i32; break;
    case GGUF_INT64: *iv = u.i64; break;
    case GGUF_UINT64:
        if (u.u64 > INT64_MAX)
            return CORE_EFORMAT;
        *iv = (int64_t)u.u64;
        break;
    case GGUF_FLOAT32: *dv = u.f32; *is_int = 0; return 0;
    case GGUF_FLOAT64: *dv = u.f64; *is_int = 0; return 0;
    default: return CORE_EFORMAT;
    }
    *dv = (double)*iv;
    return 0;
}

static const gguf_kv *gguf_scalar(const gguf *g, const char *key, int *rc)
{
    int64_t i = gguf_find_key(g, key);
    *rc = i < 0 ? CORE_ENOTFOUND : g->kv[i].type == GGUF_ARRAY ? CORE_EFORMAT : 0;
    return *rc ? NULL : &g->kv[i];
}

int gguf_get_i64(const gguf *g, const char *key, int64_t *out)
{
    int rc, is_int;
    double d;
    const gguf_kv *kv = gguf_scalar(g, key, &rc);
    if (!kv)
        return rc;
    if (gguf_num(kv->type, kv->val, out, &d, &is_int) || !is_int)
        return CORE_EFORMAT;
    return 0;
}

int gguf_get_u32(const gguf *g, const char *key, uint32_t *out)
{
    int64_t v;
    int rc = gguf_get_i64(g, key, &v);
    if (rc)
        return rc;
    if (v < 0 || v > UINT32_MAX)
        return CORE_EFORMAT;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf *g, const char *key, float *out)
{
    int rc, is_int;
    int64_t iv;
    double d;
    const gguf_kv *kv = gguf_scalar(g, key, &rc);
    if (!kv)
        return rc;
    if (gguf_num(kv->type, kv->val, &iv, &d, &is_int))
        return CORE_EFORMAT;
    *out = (float)d;
    return 0;
}

int gguf_get_bool(const gguf *g, const char *key, bool *out)
{
    int rc;
    const gguf_kv *kv = gguf_scalar(g, key, &rc);
    if (!kv)
        return rc;
    if (kv->type != GGUF_BOOL)
        return CORE_EFORMAT;
    *out = kv->val[0] != 0;
    return 0;
}

static void gguf_str_at(const uint8_t *p, const char **s, size_t *len)
{
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8;
    *len = (size_t)n;
}

int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len)
{
    int rc;
    const gguf_kv *kv = gguf_scalar(g, key, &rc);
    if (!kv)
        return rc;
    if (kv->type != GGUF_STRING)
        return CORE_EFORMAT;
    gguf_str_at(kv->val, s, len);
    return 0;
}

int gguf_arr_str(const gguf *g, int64_t kv, uint64_t i, const char **s, size_t *len)
{
    if (kv < 0 || kv >= g->n_kv || g->kv[kv].type != GGUF_ARRAY || g->kv[kv].arr_type != GGUF_STRING ||
        i >= g->kv[kv].n)
        return CORE_EINVAL;
    gguf_str_at(g->kv[kv].strs[i], s, len);
    return 0;
}

static int gguf_arr_num(const gguf *g, int64_t kv, uint64_t i, int64_t *iv, double *dv, int *is_int)
{
    if (kv < 0 || kv >= g->n_kv || g->kv[kv].type != GGUF_ARRAY || i >= g->kv[kv].n)
        return CORE_EINVAL;
    gguf_vtype t = g->kv[kv].arr_type;
    if (t == GGUF_STRING || t == GGUF_BOOL)
        return t == GGUF_BOOL ? (*iv = g->kv[kv].val[i] != 0, *dv = (double)*iv, *is_int = 1, 0)
                              : CORE_EINVAL;
    return gguf_num(t, g->kv[kv].val + i * gguf_vsize[t], iv, dv, is_int) ? CORE_EINVAL : 0;
}

int gguf_arr_i64(const gguf *g, int64_t kv, uint64_t i, int64_t *out)
{
    double d;
    int is_int;
    int rc = gguf_arr_num(g, kv, i, out, &d, &is_int);
    if (rc)
        return rc;
    /* converting a NaN or out-of-range double to an integer is undefined */
    if (!is_int) {
        if (!(d >= -0x1p63 && d < 0x1p63))
            return CORE_EINVAL;
        *out = (int64_t)d;
    }
    return 0;
}

int gguf_arr_f32(const gguf *g, int64_t kv, uint64_t i, float *out)
{
    int64_t iv;
    double d;
    int is_int;
    int rc = gguf_arr_num(g, kv, i, &iv, &d, &is_int);
    if (!rc)
        *out = (float)d;
    return rc;
}

const gguf_tensor *gguf_tensor_at(const gguf *g, int64_t i)
{
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name)
{
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}
