/* sgemm.h: single-precision matrix multiply with a packed constant left
 * operand, for the detector's convolutions (im2col or 1x1) and any other
 * dense F32 work in the core.
 *
 *   C[m][n] = act(sum_k A[m][k] * B[k][n] + bias[m])
 *
 * A (the weights, [m][k]) is packed once at load time into the kernel's
 * panel layout; B ([k][n], row stride ldb) and C ([m][n], row stride ldc)
 * are row-major F32. The work is split over the pool in blocks of C so
 * that every thread streams its own B panel; the result does not depend
 * on the number of threads. Kernels are chosen per ISA ("scalar", "avx2", and "avx512" naming the AVX2 kernel;
 * a NEON kernel slots into the same table), and the scalar path is the
 * reference the tests compare against.
 *
 * Ownership: sgemm_pack() returns a packed matrix freed with
 * sgemm_free() (NULL is a no-op); the source A is only read during the
 * call. sgemm_run() borrows everything for the call. When m spans several
 * row blocks it packs B into a process-wide workspace that it keeps for
 * later calls: one per concurrent caller, up to 4, each grown to the
 * largest such B it packed, at most 64 MiB (a call that finds none free or
 * cannot grow one packs per task, a little slower, with the same results).
 * Safe from several threads at once with different pools (or none).
 */
#ifndef SGEMM_H
#define SGEMM_H

#include <stddef.h>

#include "pool.h"

typedef enum {
    SGEMM_ACT_LINEAR = 0,
    SGEMM_ACT_LEAKY,    /* x > 0 ? x : 0.1 x (darknet's leaky) */
    SGEMM_ACT_RELU,
} sgemm_act;

typedef struct sgemm_mat sgemm_mat;

/* isa: NULL for the best the CPU runs. CORE_EINVAL for bad sizes
 * (m, k < 1, lda < k), a NULL pointer or an unknown isa, CORE_ENOMEM. */
int sgemm_pack(const float *a, int m, int k, int lda, const char *isa, sgemm_mat **out);
void sgemm_free(sgemm_mat *a);
const char *sgemm_isa(const sgemm_mat *a);

/* bias: m floats or NULL. pl: NULL runs on the caller's thread. n == 0 is
 * a no-op. CORE_EINVAL (nothing written) for n < 0, ldb < n, ldc < n, an
 * unknown act or a NULL a/b/c. */
int sgemm_run(const sgemm_mat *a, const float *b, int n, int ldb, const float *bias,
              sgemm_act act, float *c, int ldc, pool *pl);

/* Internal: the micro-kernel contract shared by sgemm.c and the per-ISA
 * files. One call updates a full SGEMM_MR x SGEMM_NR tile of C (row stride
 * ldc) with kc steps of packed A (a[p][SGEMM_MR]) and packed B
 * (b[p][SGEMM_NR]): c = (load ? c : 0) + a b, then, when last, adds bias
 * (SGEMM_MR floats, or NULL) and applies act. b is 32-byte aligned; a
 * and c need not be. */
#define SGEMM_MR 6
#define SGEMM_NR 16
typedef void (*sgemm_kernel)(int kc, const float *a, const float *b, float *c, size_t ldc,
                             int load, int last, const float *bias, sgemm_act act);
void sgemm_kernel_avx2(int kc, const float *a, const float *b, float *c, size_t ldc,
                       int load, int last, const float *bias, sgemm_act act);

#endif
