/* test_image.c: JPEG and PNG decoding (core/image.c). Test images are made
 * here with the libjpeg and libspng encoders, then decoded and checked pixel
 * by pixel (exactly for PNG, within JPEG's loss for JPEG); broken files are
 * made by cutting or patching good ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <spng.h>

#include "core_err.h"
#include "image.h"

/* Pattern pixel (x, y) of test images: distinct in every channel. */
static uint8_t pat(int x, int y, int c)
{
    return (uint8_t)(x * 7 + y * 13 + c * 85);
}

typedef struct {
    uint8_t *data;
    size_t len;
} blob;

static void blob_free(blob *b)
{
    free(b->data);
    b->data = NULL;
}

/* ---- JPEG encoder ---- */

typedef enum { JP_RGB, JP_GREY, JP_PROGRESSIVE, JP_CMYK, JP_MANY_SCANS } jp_kind;

/* Smooth image (JPEG's loss stays small on it). */
static uint8_t smooth(int x, int y, int c)
{
    return (uint8_t)(20 + x + y / 2 + c * 50);
}

static blob make_jpeg(int w, int h, jp_kind kind)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int comps = kind == JP_GREY ? 1 : kind == JP_CMYK ? 4 : 3;
    jpeg_scan_info *scans = NULL;

    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = kind == JP_GREY ? JCS_GRAYSCALE : kind == JP_CMYK ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    if (kind == JP_PROGRESSIVE)
        jpeg_simple_progression(&c);
    if (kind == JP_MANY_SCANS) {
        /* DC in one scan, then every AC coefficient of every component
         * alone, sent one bit at a time: 1 + 3 * 63 * 6 scans. */
        int n = 0;
        scans = calloc(1 + 3 * 63 * 6, sizeof *scans);
        scans[n++] = (jpeg_scan_info){ .comps_in_scan = 3, .component_index = { 0, 1, 2 } };
        for (int ci = 0; ci < 3; ci++)
            for (int k = 1; k < 64; k++) {
                scans[n++] = (jpeg_scan_info){ 1, { ci }, k, k, 0, 5 };
                for (int al = 4; al >= 0; al--)
                    scans[n++] = (jpeg_scan_info){ 1, { ci }, k, k, al + 1, al };
            }
        c.scan_info = scans;
        c.num_scans = n;
    }
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = malloc((size_t)w * comps);
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w; x++)
            for (int k = 0; k < comps; k++)
                row[x * comps + k] = smooth(x, (int)c.next_scanline, k);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    free(scans);
    return (blob){ buf, len };
}

/* ---- PNG encoder ---- */

typedef enum { PN_RGB, PN_GREY, PN_PALETTE, PN_RGB16, PN_RGBA, PN_INTERLACED } pn_kind;

static blob make_png(int w, int h, pn_kind kind)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = { .width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8 };
    int ch = 3;
    switch (kind) {
    case PN_RGB: ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR; break;
    case PN_INTERLACED:
        ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
        ihdr.interlace_method = SPNG_INTERLACE_ADAM7;
        break;
    case PN_GREY: ihdr.color_type = SPNG_COLOR_TYPE_GRAYSCALE; ch = 1; break;
    case PN_PALETTE: ihdr.color_type = SPNG_COLOR_TYPE_INDEXED; ch = 1; break;
    case PN_RGB16: ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR; ihdr.bit_depth = 16; ch = 6; break;
    case PN_RGBA: ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA; ch = 4; break;
    }
    size_t n = (size_t)w * h * ch;
    uint8_t *px = malloc(n);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * ch;
            switch (kind) {
            case PN_GREY: p[0] = pat(x, y, 0); break;
            case PN_PALETTE: p[0] = (uint8_t)((x + y) % 16); break;
            case PN_RGB16: /* big-endian samples, high byte = pattern */
                for (int c = 0; c < 3; c++)
                    p[2 * c] = p[2 * c + 1] = pat(x, y, c);
                break;
            case PN_RGBA:
                for (int c = 0; c < 3; c++)
                    p[c] = pat(x, y, c);
                p[3] = (uint8_t)(x * 31);
                break;
            default:
                for (int c = 0; c < 3; c++)
                    p[c] = pat(x, y, c);
            }
        }
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_ihdr(ctx, &ihdr);
    if (kind == PN_PALETTE) {
        struct spng_plte plte = { .n_entries = 16 };
        for (int i = 0; i < 16; i++)
            plte.entries[i] = (struct spng_plte_entry){ (uint8_t)(i * 16), (uint8_t)(255 - i),
                                                        (uint8_t)(i * 3), 0 };
        spng_set_plte(ctx, &plte);
    }
    int rc = spng_encode_image(ctx, px, n, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    if (rc)
        fail_msg("png encoder, kind %d: %s", kind, spng_strerror(rc));
    size_t len = 0;
    int e = 0;
    uint8_t *out = spng_get_png_buffer(ctx, &len, &e);
    assert_non_null(out);
    spng_ctx_free(ctx);
    free(px);
    return (blob){ out, len };
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG whose IHDR claims w x h (CRC fixed up), the tiny IDAT unchanged. */
static blob png_claiming(uint32_t w, uint32_t h)
{
    blob b = make_png(4, 4, PN_RGB);
    /* signature(8) length(4) "IHDR"(4) width(4) height(4) ... crc at 29 */
    assert_memory_equal(b.data + 12, "IHDR", 4);
    put_be32(b.data + 16, w);
    put_be32(b.data + 20, h);
    put_be32(b.data + 29, crc32_png(b.data + 12, 17));
    return b;
}

static int decode(const blob *b, const img_limits *lim, img *im, char *msg, size_t n)
{
    return img_decode(b->data, b->len, lim, im, msg, n);
}

/* ---- tests ---- */

static void check_jpeg(int w, int h, jp_kind kind)
{
    blob b = make_jpeg(w, h, kind);
    img im;
    char msg[200];
    assert_int_equal(decode(&b, NULL, &im, msg, sizeof msg), CORE_OK);
    assert_int_equal(im.w, w);
    assert_int_equal(im.h, h);
    assert_string_equal(im.format, "jpeg");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int want = smooth(x, y, kind == JP_GREY ? 0 : c);
                int got = im.rgb[((size_t)y * w + x) * 3 + c];
                if (abs(got - want) > 6)
                    fail_msg("kind %d pixel (%d,%d,%d): %d, want %d", kind, x, y, c, got, want);
            }
    img_free(&im);
    assert_null(im.rgb);
    blob_free(&b);
}

static void test_jpeg_formats(void **state)
{
    (void)state;
    check_jpeg(37, 23, JP_RGB);
    check_jpeg(37, 23, JP_GREY);
    check_jpeg(64, 48, JP_PROGRESSIVE);
}

static void check_png(int w, int h, pn_kind kind)
{
    blob b = make_png(w, h, kind);
    img im;
    char msg[200];
    assert_int_equal(decode(&b, NULL, &im, msg, sizeof msg), CORE_OK);
    assert_int_equal(im.w, w);
    assert_int_equal(im.h, h);
    assert_string_equal(im.format, "png");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = im.rgb + ((size_t)y * w + x) * 3;
            for (int c = 0; c < 3; c++) {
                int want;
                if (kind == PN_GREY)
                    want = pat(x, y, 0);
                else if (kind == PN_PALETTE) {
                    int i = (x + y) % 16;
                    want = c == 0 ? i * 16 : c == 1 ? 255 - i : i * 3;
                } else
                    want = pat(x, y, c);
                if (p[c] != want)
                    fail_msg("kind %d pixel (%d,%d,%d): %d, want %d", kind, x, y, c, p[c], want);
            }
        }
    img_free(&im);
    blob_free(&b);
}

static void test_png_formats(void **state)
{
    (void)state;
    check_png(19, 11, PN_RGB);
    check_png(19, 11, PN_GREY);
    check_png(19, 11, PN_PALETTE);
    check_png(19, 11, PN_RGB16);
    check_png(19, 11, PN_RGBA);
    check_png(19, 11, PN_INTERLACED);
}

static void test_truncated(void **state)
{
    (void)state;
    img im;
    char msg[200];
    blob j = make_jpeg(64, 64, JP_RGB);
    for (size_t cut = 3; cut < j.len; cut += j.len / 7) {
        msg[0] = 0;
        assert_int_equal(img_decode(j.data, cut, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
        assert_null(im.rgb);
        assert_true(strncmp(msg, "jpeg: ", 6) == 0);
    }
    assert_int_equal(img_decode(j.data, j.len - 2, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    blob_free(&j);

    blob p = make_png(64, 64, PN_RGB);
    for (size_t cut = 8; cut < p.len; cut += p.len / 7) {
        msg[0] = 0;
        assert_int_equal(img_decode(p.data, cut, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
        assert_null(im.rgb);
        assert_true(strncmp(msg, "png: ", 5) == 0);
    }
    /* All pixels there, IEND missing. */
    assert_int_equal(img_decode(p.data, p.len - 12, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    blob_free(&p);
}

static void test_png_crc(void **state)
{
    (void)state;
    img im;
    char msg[200];
    blob p = make_png(16, 16, PN_RGB);
    p.data[19] ^= 0x01; /* IHDR width 16 -> 17: its CRC no longer matches */
    assert_int_equal(decode(&p, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "checksum"));
    p.data[19] ^= 0x01;
    assert_int_equal(decode(&p, NULL, &im, msg, sizeof msg), CORE_OK);
    img_free(&im);
    p.data[p.len - 13] ^= 0x01; /* the last IDAT's CRC (IEND is the last 12 bytes) */
    assert_int_equal(decode(&p, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "checksum"));
    blob_free(&p);
}

static void test_limits(void **state)
{
    (void)state;
    img im;
    char msg[200];

    /* Header says 30000x30000 over a 4x4 IDAT: refused on the header. Had
     * the pixels been allocated first, decoding would fail on the data
     * (CORE_EFORMAT) instead. */
    blob big = png_claiming(30000, 30000);
    img_limits wide = img_default_limits();
    wide.max_width = wide.max_height = 1 << 20;
    assert_int_equal(decode(&big, NULL, &im, msg, sizeof msg), CORE_ECONTEXT);
    assert_null(im.rgb);
    assert_int_equal(decode(&big, &wide, &im, msg, sizeof msg), CORE_ECONTEXT);
    assert_non_null(strstr(msg, "30000x30000"));
    blob_free(&big);
    /* Each side under the limit, the product over it. */
    blob sq = png_claiming(8000, 8000);
    assert_int_equal(decode(&sq, NULL, &im, msg, sizeof msg), CORE_ECONTEXT);
    assert_non_null(strstr(msg, "8000x8000"));
    /* With the limits raised the same file gets to the data, which is short. */
    img_limits huge = wide;
    huge.max_pixels = 1ull << 40;
    assert_int_equal(decode(&sq, &huge, &im, msg, sizeof msg), CORE_EFORMAT);
    blob_free(&sq);

    /* JPEG: patch the frame header of a small file to 30000x30000. */
    blob j = make_jpeg(16, 16, JP_RGB);
    size_t i = 2;
    while (i + 9 < j.len && !(j.data[i] == 0xff && j.data[i + 1] == 0xc0))
        i++;
    assert_true(i + 9 < j.len);
    j.data[i + 5] = 30000 >> 8, j.data[i + 6] = 30000 & 255; /* height */
    j.data[i + 7] = 30000 >> 8, j.data[i + 8] = 30000 & 255; /* width */
    assert_int_equal(decode(&j, NULL, &im, msg, sizeof msg), CORE_ECONTEXT);
    assert_null(im.rgb);
    blob_free(&j);

    /* Tight per-call limits. */
    blob p = make_png(20, 10, PN_RGB);
    img_limits lim = img_default_limits();
    lim.max_width = 19;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_ECONTEXT);
    lim = img_default_limits();
    lim.max_height = 9;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_ECONTEXT);
    lim = img_default_limits();
    lim.max_pixels = 199;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_ECONTEXT);
    lim.max_pixels = 200;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_OK);
    img_free(&im);
    lim.max_bytes = p.len - 1;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_EINVAL);
    assert_non_null(strstr(msg, "over the limit"));
    lim.max_bytes = p.len;
    assert_int_equal(decode(&p, &lim, &im, msg, sizeof msg), CORE_OK);
    img_free(&im);
    blob_free(&p);
}

static void test_refused(void **state)
{
    (void)state;
    img im;
    char msg[200];
    static const char garbage[] = "GIF89a not an image we decode";
    assert_int_equal(img_decode(garbage, sizeof garbage, NULL, &im, msg, sizeof msg),
                     CORE_EUNSUPPORTED);
    assert_int_equal(img_decode("\xff\xd8", 2, NULL, &im, msg, sizeof msg), CORE_EUNSUPPORTED);
    assert_int_equal(img_decode(garbage, 0, NULL, &im, msg, sizeof msg), CORE_EINVAL);
    assert_int_equal(img_decode(NULL, 5, NULL, &im, msg, sizeof msg), CORE_EINVAL);
    assert_int_equal(img_decode(garbage, 5, NULL, NULL, msg, sizeof msg), CORE_EINVAL);

    blob c = make_jpeg(16, 16, JP_CMYK);
    assert_int_equal(decode(&c, NULL, &im, msg, sizeof msg), CORE_EUNSUPPORTED);
    assert_non_null(strstr(msg, "CMYK"));
    assert_null(im.rgb);
    blob_free(&c);

    blob s = make_jpeg(16, 16, JP_MANY_SCANS);
    assert_int_equal(decode(&s, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "scans"));
    blob_free(&s);

    /* JPEG magic followed by junk. */
    uint8_t junk[64] = { 0xff, 0xd8, 0xff, 0xe0 };
    for (int i = 4; i < 64; i++)
        junk[i] = (uint8_t)(i * 37);
    assert_int_equal(img_decode(junk, sizeof junk, NULL, &im, msg, sizeof msg), CORE_EFORMAT);
    img_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg_formats), cmocka_unit_test(test_png_formats),
        cmocka_unit_test(test_truncated),    cmocka_unit_test(test_png_crc),
        cmocka_unit_test(test_limits),       cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
