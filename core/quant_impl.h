/* quant_impl.h: internal split of quant.c across the per-family files.
 * Not part of the public API. Each function returns CORE_EUNSUPPORTED for a
 * type outside its family. */
#ifndef QUANT_IMPL_H
#define QUANT_IMPL_H

#include "quant.h"

/* quant_legacy.c: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 */
int quant_dequantize_legacy(int type, const void *src, float *dst, int64_t n);
int quant_quantize_legacy(int type, const float *src, void *dst, int64_t n);
/* quant_k.c: Q4_K Q5_K Q6_K Q8_K */
int quant_dequantize_k(int type, const void *src, float *dst, int64_t n);
int quant_quantize_k(int type, const float *src, void *dst, int64_t n);

#endif
