/* image.c: JPEG (libjpeg-turbo) and PNG (libspng) decoding to RGB8, with
 * limits checked on the header before any pixel memory exists.
 *
 * Formats, by magic bytes:
 *   JPEG: FF D8 FF ... (SOI then a marker). Baseline and progressive, grey,
 *         YCbCr and RGB; CMYK/YCCK are refused. A file that ends early
 *         (libjpeg's "premature end" warning, which it would paper over with
 *         grey) is corrupt, and progressive files are bounded in scans
 *         (a few-kB file with thousands of scans is a CPU bomb).
 *   PNG:  89 50 4E 47 0D 0A 1A 0A, then chunks. Every colour type and bit
 *         depth goes through SPNG_FMT_RGB8 (palette expanded, grey
 *         replicated, 16-bit scaled, alpha dropped). A bad CRC on a
 *         critical chunk is corrupt; ancillary chunks are bounded in size.
 */
#include "image.h"

#include "core_err.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <spng.h>

/* Past this many progressive scans a JPEG is refused (libjpeg-turbo's own
 * fuzzers and TurboJPEG use the same bound). */
#define IMG_JPEG_MAX_SCANS 500
/* Ancillary PNG chunks (text, ICC, EXIF) kept in memory, per chunk and in
 * total: we read none of them, so a few MiB is plenty. */
#define IMG_PNG_CHUNK_MAX (4u << 20)

img_limits img_default_limits(void)
{
    return (img_limits){
        .max_bytes = 16u << 20,
        .max_width = 8192,
        .max_height = 8192,
        .max_pixels = 40000000,
    };
}

void img_free(img *im)
{
    if (!im)
        return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

static int img_check_dims(uint64_t w, uint64_t h, const img_limits *lim, char *msg,
                          size_t msg_size)
{
    if (w == 0 || h == 0)
        return core_errf(CORE_EFORMAT, msg, msg_size, "image has no pixels (%llux%llu)",
                         (unsigned long long)w, (unsigned long long)h);
    if (w > (uint64_t)lim->max_width || h > (uint64_t)lim->max_height ||
        w * h > lim->max_pixels)
        return core_errf(CORE_ECONTEXT, msg, msg_size,
                         "image is %llux%llu, over the limit of %dx%d and %llu pixels",
                         (unsigned long long)w, (unsigned long long)h, lim->max_width,
                         lim->max_height, (unsigned long long)lim->max_pixels);
    return 0;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg casts err to this */
    jmp_buf jump;
    int err;                   /* core_err reported after the longjmp */
    char text[JMSG_LENGTH_MAX];
} img_jpeg_err;

static void img_jpeg_error_exit(j_common_ptr c)
{
    img_jpeg_err *e = (img_jpeg_err *)c->err;
    if (!e->err) {
        e->err = e->pub.msg_code == JERR_OUT_OF_MEMORY ? CORE_ENOMEM : CORE_EFORMAT;
        e->pub.format_message(c, e->text);
    }
    longjmp(e->jump, 1);
}

/* Warnings go nowhere (never to stderr), except the one that means the data
 * ran out: libjpeg would return an image padded with grey. */
static void img_jpeg_emit(j_common_ptr c, int level)
{
    img_jpeg_err *e = (img_jpeg_err *)c->err;
    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF)
        img_jpeg_error_exit(c);
}

static void img_jpeg_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    img_jpeg_err *e = (img_jpeg_err *)c->err;
    if (d->progressive_mode && d->input_scan_number > IMG_JPEG_MAX_SCANS) {
        e->err = CORE_EFORMAT;
        snprintf(e->text, sizeof e->text, "more than %d progressive scans",
                 IMG_JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

static int img_decode_jpeg(const uint8_t *data, size_t len, const img_limits *lim, img *out,
                           char *msg, size_t msg_size)
{
    struct jpeg_decompress_struct d;
    struct jpeg_progress_mgr prog = { .progress_monitor = img_jpeg_progress };
    img_jpeg_err e;
    /* Written between setjmp and longjmp, read after: volatile. */
    uint8_t *volatile rgb = NULL;
    int rc = 0;

    memset(&e, 0, sizeof e);
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = img_jpeg_error_exit;
    e.pub.emit_message = img_jpeg_emit;
    if (setjmp(e.jump)) {
        rc = core_errf(e.err, msg, msg_size, "jpeg: %s", e.text);
        goto out;
    }
    jpeg_create_decompress(&d);
    d.progress = &prog;
    jpeg_mem_src(&d, data, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    if (d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "jpeg: CMYK images are not supported");
        goto out;
    }
    if ((rc = img_check_dims(d.image_width, d.image_height, lim, msg, msg_size)))
        goto out;
    d.out_color_space = JCS_RGB;
    jpeg_start_decompress(&d);
    if (d.output_components != 3 || d.output_width != d.image_width ||
        d.output_height != d.image_height) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "jpeg: cannot convert to RGB");
        goto out;
    }
    size_t stride = (size_t)d.output_width * 3;
    rgb = malloc(stride * d.output_height);
    if (!rgb) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "jpeg: no memory for %ux%u pixels",
                       d.output_width, d.output_height);
        goto out;
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = rgb + stride * d.output_scanline;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    out->rgb = rgb;
    out->w = (int)d.output_width;
    out->h = (int)d.output_height;
    out->format = "jpeg";
    rgb = NULL;
out:
    jpeg_destroy_decompress(&d);
    free(rgb);
    return rc;
}

/* ---- PNG ----------------------------------------------------------------- */

static int img_png_err(int e, char *msg, size_t msg_size)
{
    int rc = e == SPNG_EMEM ? CORE_ENOMEM : CORE_EFORMAT;
    return core_errf(rc, msg, msg_size, "png: %s", spng_strerror(e));
}

/* spng's limits are 1 .. 2^31-1. */
static uint32_t img_u31(int v)
{
    return v < 1 ? 1 : (uint32_t)v;
}

static int img_decode_png(const uint8_t *data, size_t len, const img_limits *lim, img *out,
                          char *msg, size_t msg_size)
{
    spng_ctx *ctx = spng_ctx_new(0);
    uint8_t *rgb = NULL;
    struct spng_ihdr ihdr;
    size_t size;
    int e, rc = 0;

    if (!ctx)
        return core_errf(CORE_ENOMEM, msg, msg_size, "png: no memory for a decoder");
    spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_DISCARD);
    spng_set_chunk_limits(ctx, IMG_PNG_CHUNK_MAX, IMG_PNG_CHUNK_MAX);
    spng_set_image_limits(ctx, img_u31(lim->max_width), img_u31(lim->max_height));
    if ((e = spng_set_png_buffer(ctx, data, len)) || (e = spng_get_ihdr(ctx, &ihdr))) {
        if (e == SPNG_EUSER_WIDTH || e == SPNG_EUSER_HEIGHT)
            rc = core_errf(CORE_ECONTEXT, msg, msg_size,
                           "png: image is larger than the limit of %dx%d and %llu pixels",
                           lim->max_width, lim->max_height,
                           (unsigned long long)lim->max_pixels);
        else
            rc = img_png_err(e, msg, msg_size);
        goto out;
    }
    if ((rc = img_check_dims(ihdr.width, ihdr.height, lim, msg, msg_size)))
        goto out;
    if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size))) {
        rc = img_png_err(e, msg, msg_size);
        goto out;
    }
    if (size != (size_t)ihdr.width * ihdr.height * 3) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "png: cannot convert to RGB");
        goto out;
    }
    if (!(rgb = malloc(size))) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "png: no memory for %ux%u pixels",
                       ihdr.width, ihdr.height);
        goto out;
    }
    /* Then the chunks after the image, up to IEND: the last IDAT's CRC is
     * only checked there, and a file cut after its pixels is still cut. */
    if ((e = spng_decode_image(ctx, rgb, size, SPNG_FMT_RGB8, 0)) ||
        (e = spng_decode_chunks(ctx))) {
        rc = img_png_err(e, msg, msg_size);
        goto out;
    }
    out->rgb = rgb;
    out->w = (int)ihdr.width;
    out->h = (int)ihdr.height;
    out->format = "png";
    rgb = NULL;
out:
    spng_ctx_free(ctx);
    free(rgb);
    return rc;
}

int img_decode(const void *data, size_t len, const img_limits *lim, img *out, char *msg,
               size_t msg_size)
{
    static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a };
    img_limits def = img_default_limits();
    const uint8_t *p = data;

    if (!out)
        return core_errf(CORE_EINVAL, msg, msg_size, "no output image");
    memset(out, 0, sizeof *out);
    if (!lim)
        lim = &def;
    if (!p || len == 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "empty image");
    if (len > lim->max_bytes)
        return core_errf(CORE_EINVAL, msg, msg_size, "image is %zu bytes, over the limit of %zu",
                         len, lim->max_bytes);
    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return img_decode_jpeg(p, len, lim, out, msg, msg_size);
    if (len >= 8 && !memcmp(p, png_magic, 8))
        return img_decode_png(p, len, lim, out, msg, msg_size);
    return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "not a JPEG or PNG image");
}
