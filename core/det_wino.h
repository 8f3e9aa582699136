/* det_wino.h: 3x3 stride-1 pad-1 convolutions by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin & Gray, 2015): every 2x2 output tile comes
 * from a 4x4 input tile as Y = A^T [(G g G^T) . (B^T d B)] A, and the
 * products summed over input channels become 16 GEMMs
 * [out_c][in_c] x [in_c][tiles] on the core's sgemm: 2.25x fewer
 * multiply-adds than im2col + GEMM. Internal to the detector.
 *
 * Ownership: det_wino_new() returns transformed, packed weights freed by
 * det_wino_free() (NULL is a no-op); the source weights are only read
 * during the call. det_wino_run() borrows everything for the call.
 */
#ifndef DET_WINO_H
#define DET_WINO_H

#include <stddef.h>

#include "pool.h"
#include "sgemm.h"

typedef struct det_wino det_wino;

/* w: [oc][ic][3][3]. CORE_EINVAL, CORE_ENOMEM. */
int det_wino_new(const float *w, int oc, int ic, const char *isa, det_wino **out);
void det_wino_free(det_wino *wi);
const char *det_wino_isa(const det_wino *wi);

/* Floats of scratch det_wino_run() needs for an h x w input. */
size_t det_wino_work(const det_wino *wi, int h, int w);

/* x: [ic][h][w] -> y: [oc][h][w] = act(conv3x3(x) + bias); work: det_wino_work() floats. */
void det_wino_run(const det_wino *wi, const float *x, int h, int w, const float *bias, sgemm_act act,
                  float *y, float *work, pool *pl);

#endif
