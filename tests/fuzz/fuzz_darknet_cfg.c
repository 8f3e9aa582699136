/* libFuzzer harness for the darknet readers: the input is a .cfg, and
 * optionally, after a NUL byte, a .weights file for it. The cfg goes
 * through the network builder (syntax, options, shapes) and the weights
 * through the size checks and batch-norm folding; every input must give
 * 0 or an error code with a message, never a crash or a huge allocation
 * (weights are only allocated once their size matches the cfg). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "det_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    char msg[256] = "";
    det_net net;
    int rc = det_net_parse((const char *)data, cfg_len, &net, msg, sizeof msg);
    if (rc) {
        if (!msg[0] && rc != CORE_ENOMEM)
            abort(); /* every error explains itself */
        return 0;
    }
    if (nul) {
        msg[0] = 0;
        rc = det_net_load_weights(&net, nul + 1, size - cfg_len - 1, msg, sizeof msg);
        if (rc && !msg[0])
            abort();
    }
    det_net_free(&net);
    return 0;
}
