/* fuzz_image.c: libFuzzer harness for the JPEG and PNG decoders
 * (core/image.c). Input: one encoded image. Limits are small so that the
 * fuzzer spends its time on the parsers, not on huge valid images. */
#include <stddef.h>
#include <stdint.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    img_limits lim = img_default_limits();
    lim.max_width = lim.max_height = 2048;
    lim.max_pixels = 1 << 20;
    img im;
    char msg[200];
    if (img_decode(data, size, &lim, &im, msg, sizeof msg) == 0) {
        /* Touch every byte, so that a short buffer shows up under ASan. */
        volatile unsigned sum = 0;
        for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++)
            sum += im.rgb[i];
        (void)sum;
        if (im.w < 1 || im.h < 1 || im.w > 2048 || im.h > 2048)
            __builtin_trap();
    }
    img_free(&im);
    return 0;
}
