/* image.h: JPEG and PNG decoding into 8-bit RGB, with limits.
 *
 * Input is untrusted (request bodies): the format is told by its magic
 * bytes (FF D8 FF: JPEG through libjpeg-turbo; 89 'PNG' 0D 0A 1A 0A: PNG
 * through libspng), and the limits are checked on the header's dimensions
 * before any pixel memory is allocated, so a decompression bomb costs
 * nothing. Grey, palette, 16-bit and alpha inputs become RGB8 (alpha is
 * dropped, as darknet does); CMYK JPEGs are refused.
 *
 * Errors: CORE_EINVAL for empty input or input over max_bytes,
 * CORE_EUNSUPPORTED for an unknown format, CORE_EFORMAT for a corrupt or
 * truncated file, CORE_ENOTFOUND never, CORE_ECONTEXT when the image is
 * larger than the limits, CORE_ENOMEM; msg says what.
 *
 * Ownership: img_decode() fills out->rgb with memory the caller frees with
 * img_free() (which also resets the struct; img_free(NULL) is a no-op).
 * The input is borrowed for the call only.
 */
#ifndef IMAGE_H
#define IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t max_bytes;     /* 16 MiB: encoded size */
    int max_width;        /* 8192 */
    int max_height;       /* 8192 */
    uint64_t max_pixels;  /* 40 000 000: width x height */
} img_limits;

img_limits img_default_limits(void);

typedef struct {
    uint8_t *rgb;   /* [h][w][3], row-major, no padding */
    int w, h;
    const char *format; /* "jpeg" or "png" (static) */
} img;

int img_decode(const void *data, size_t len, const img_limits *lim, img *out, char *msg,
               size_t msg_size);
void img_free(img *im);

#endif
