/* gguf.h: GGUF v2/v3 reader over mmap, and a writer.
 *
 * File format (little-endian):
 *   "GGUF" u32 version(2|3) u64 n_tensors u64 n_kv
 *   n_kv x { str key, u32 vtype, value }
 *       str   = u64 len, len bytes (no NUL)
 *       value = scalar of vtype | str | ARRAY: u32 elem_vtype, u64 n, n values
 *   n_tensors x { str name, u32 n_dims(1..4), u64 ne[n_dims], u32 ggml_type,
 *                 u64 offset (from data start, multiple of alignment) }
 *   padding to `general.alignment` (u32, default 32), then tensor data.
 *
 * Reader: every count, length, offset and tensor extent is checked against
 * the file size before use; errors name the key or tensor at fault. Tensor
 * data is never copied: gguf_tensor.data points into the read-only mapping,
 * which lives until gguf_close(). Strings returned by the getters point into
 * the mapping too (not NUL-terminated: use the length); keys and tensor names
 * are NUL-terminated copies owned by the gguf handle.
 */
#ifndef GGUF_H
#define GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
} gguf_vtype;

#define GGUF_MAX_DIMS 4

typedef struct gguf gguf;

typedef struct {
    const char *name;          /* NUL-terminated, owned by the gguf handle */
    int type;                  /* quant_type number */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    const void *data;          /* into the mapping */
    size_t size;               /* bytes */
} gguf_tensor;

/* Maps and parses the file. On error *out is NULL and msg says why; a tensor
 * type this build does not know is CORE_EUNSUPPORTED naming the tensor. */
int gguf_open(const char *path, gguf **out, char *msg, size_t msg_size);
/* Same over caller-owned bytes, which must outlive the handle (fuzzing, tests). */
int gguf_open_mem(const void *data, size_t size, gguf **out, char *msg, size_t msg_size);
void gguf_close(gguf *g); /* NULL is a no-op */

uint32_t gguf_version(const gguf *g);
size_t gguf_alignment(const gguf *g);
size_t gguf_file_size(const gguf *g);

/* Key/value metadata. kv indices are 0..gguf_n_kv()-1. */
int64_t gguf_n_kv(const gguf *g);
int64_t gguf_find_key(const gguf *g, const char *key); /* -1 when absent */
const char *gguf_kv_key(const gguf *g, int64_t kv);
gguf_vtype gguf_kv_type(const gguf *g, int64_t kv);
gguf_vtype gguf_kv_arr_type(const gguf *g, int64_t kv); /* element type of an ARRAY */
uint64_t gguf_kv_arr_n(const gguf *g, int64_t kv);      /* 0 for non-arrays */

/* Typed getters by key: CORE_ENOTFOUND when absent, CORE_EFORMAT when the
 * stored type cannot represent the request (integers of any width convert
 * when the value fits; FLOAT32/FLOAT64 both read as float or double). */
int gguf_get_u32(const gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const gguf *g, const char *key, int64_t *out);
int gguf_get_f32(const gguf *g, const char *key, float *out);
int gguf_get_bool(const gguf *g, const char *key, bool *out);
int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len);

/* Array elements by kv index; CORE_EINVAL when i is out of range or the
 * element type does not match (numeric getters convert any numeric type). */
int gguf_arr_str(const gguf *g, int64_t kv, uint64_t i, const char **s, size_t *len);
int gguf_arr_i64(const gguf *g, int64_t kv, uint64_t i, int64_t *out);
int gguf_arr_f32(const gguf *g, int64_t kv, uint64_t i, float *out);

/* Tensors */
int64_t gguf_n_tensors(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name); /* NULL when absent */

/* Writer (gguf_write.c): builds metadata in memory; tensor data is borrowed
 * from the caller until gguf_writer_write() returns. Writes version 3. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w); /* NULL is a no-op */
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* ne as in gguf_tensor; size must equal the type's row size x rows. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims,
                           const int64_t *ne, const void *data, size_t size);
int gguf_writer_write(gguf_writer *w, const char *path, char *msg, size_t msg_size);

#endif
