/* fuzz_bert_load.c: libFuzzer harness for the embedding model loader over
 * untrusted GGUF bytes: gguf_open_mem(), bert_load() (one thread, a small
 * context), and when the file is accepted, an embedding of two short
 * sequences, which must come out normalised unless the weights are not
 * finite. Seeds: bert-micro models from edgegate-make-model. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bert.h"
#include "core_err.h"
#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf *g;
    char msg[256];
    if (gguf_open_mem(data, size, &g, msg, sizeof msg) != CORE_OK)
        return 0;
    bert_params p = bert_default_params();
    p.n_threads = 1;
    p.n_ctx = 8;
    bert *b = NULL;
    if (bert_load(g, &p, &b, msg, sizeof msg) == CORE_OK) {
        bert_info in;
        bert_get_info(b, &in);
        if (in.n_ctx < 1 || in.n_ctx > 8 || in.n_embd < 1 || !in.pooling)
            abort();
        int32_t toks[4];
        for (int i = 0; i < 4; i++)
            toks[i] = (int32_t)((i * 7 + 1) % in.n_vocab);
        size_t off[3] = {0, in.n_ctx >= 3 ? 3 : 1, in.n_ctx >= 3 ? 4 : 2};
        float *out = malloc(2 * sizeof(float) * (size_t)in.n_embd);
        if (!out)
            abort();
        if (bert_embed(b, toks, off, 2, out, NULL, msg, sizeof msg) == CORE_OK) {
            for (int s = 0; s < 2; s++) {
                double ss = 0;
                for (int i = 0; i < in.n_embd; i++)
                    ss += (double)out[s * in.n_embd + i] * out[s * in.n_embd + i];
                if (isfinite(ss) && ss != 0 && fabs(ss - 1) > 1e-3) {
                    fprintf(stderr, "vector %d has squared norm %g\n", s, ss);
                    abort();
                }
            }
        }
        free(out);
    }
    bert_free(b);
    gguf_close(g);
    return 0;
}
