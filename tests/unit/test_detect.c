/* The darknet detector: cfg and weights errors, every layer type on a tiny
 * network, thread/ISA independence, abort, and the reference comparison:
 * yolov2-tiny and yolov3-tiny with random weights against darknet itself
 * (tests/ref/darknet_ref.c over Debian's libdarknet.so) on the darknet
 * package's test images (and a PNG of one): the raw yolo/region outputs
 * within a tight relative tolerance and the same detections (classes,
 * IoU > 0.9); OpenCV's dnn module as a second opinion on yolov4-tiny. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <spng.h>

#include "core_err.h"
#include "det_net.h"
#include "det_wino.h"
#include "detect.h"
#include "image.h"
#include "pool.h"

static char td_dir[256], td_build[256];

static int td_setup(void **state)
{
    (void)state;
    const char *b = getenv("EDGEGATE_BUILD");
    snprintf(td_build, sizeof td_build, "%s", b && *b ? b : "build");
    snprintf(td_dir, sizeof td_dir, "/tmp/test_detect.XXXXXX");
    return mkdtemp(td_dir) ? 0 : -1;
}

static int td_teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", td_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void td_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void *td_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, len, f), (size_t)len);
    fclose(f);
    buf[len] = 0;
    *n = (size_t)len;
    return buf;
}

static int td_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* edgegate-make-weights CFG -o OUT with extra args */
static void td_weights(const char *cfg, const char *out, const char *extra)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s/edgegate-make-weights' '%s' -o '%s' %s 2>/dev/null", td_build, cfg, out, extra);
    assert_int_equal(td_sh(cmd), 0);
}

/* Every layer type and option the four networks use, small. */
static const char td_tiny_cfg[] =
    "[net]\n# comment\nwidth=64\nheight = 48\nchannels=3\nmomentum=0.9\n"
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=leaky\n" /* 0: 8x24x32 */
    "[maxpool]\nsize=2\nstride=2\n"                                                          /* 1: 8x12x16 */
    "[convolutional]\nfilters=8\nsize=3\npad=1\ngroups=2\nactivation=mish\n"                  /* 2: 8x12x16 */
    "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"                                             /* 3: 4x12x16 */
    "[upsample]\nstride=2\n"                                                                 /* 4: 4x24x32 */
    "[route]\nlayers=-1, 0\n"                                                                /* 5: 12x24x32 */
    "[convolutional]\nbatch_normalize=1\nfilters=12\nsize=3\npad=1\nactivation=relu\n"       /* 6 */
    "[shortcut]\nfrom=-2\nactivation=linear\n"                                               /* 7 */
    "[maxpool]\nsize=2\nstride=1\n"                                                          /* 8: 12x24x32 */
    "[convolutional]\nfilters=21\nsize=1\nstride=1\npad=1\nactivation=linear\n"              /* 9: 3 x (2+5) */
    "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58, 81,82\nclasses=2\nnum=4\nscale_x_y=1.05\n"
    "jitter=.3\nignore_thresh=.7\nnms_kind=greedynms\n"
    "[route]\nlayers=-4\n"
    "[convolutional]\nfilters=35\nsize=1\nactivation=logistic\n" /* 5 x (2+5) */
    "[region]\nanchors=1,1, 2,2, 3,3, 4,4, 5,5\nclasses=2\ncoords=4\nnum=5\nsoftmax=1\nthresh=.3\n";

static int td_parse(const char *cfg, char *msg, size_t n)
{
    det_net net;
    int rc = det_net_parse(cfg, strlen(cfg), &net, msg, n);
    det_net_free(&net);
    return rc;
}

static void td_cfg_errors(void **state)
{
    (void)state;
    char msg[256];
    det_net net;
    assert_int_equal(det_net_parse(td_tiny_cfg, strlen(td_tiny_cfg), &net, msg, sizeof msg), 0);
    assert_int_equal(net.n, 14);
    assert_int_equal(net.n_heads, 2);
    assert_int_equal(net.l[3].out_c, 4);
    assert_int_equal(net.l[5].out_c, 12);
    assert_int_equal(net.l[8].out_h, 24);
    det_net_free(&net);

    static const struct {
        const char *cfg;
        int err;
        const char *want;
    } bad[] = {
        {"", CORE_EFORMAT, "[net]"},
        {"width=3\n", CORE_EFORMAT, "line 1"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional\n", CORE_EFORMAT, "line 5"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[softmax]\n", CORE_EUNSUPPORTED, "line 5"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=x\n", CORE_EFORMAT, "line 6"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nactivation=swish\n", CORE_EUNSUPPORTED,
         "swish"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=3\nxnor=1\n", CORE_EUNSUPPORTED,
         "xnor"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=3\nfoo=1\n", CORE_EUNSUPPORTED,
         "'foo'"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[route]\nlayers=1\n", CORE_EFORMAT, "line 5"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=20\n[yolo]\nclasses=2\nnum=3\n"
         "anchors=1,1,2,2,3,3\n", CORE_EFORMAT, "line 7"},
        {"[net]\nwidth=64\nheight=64\nchannels=1\n[convolutional]\n", CORE_EUNSUPPORTED, "channels"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nsize=99\n", CORE_EFORMAT, "size"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=3\n", CORE_EFORMAT, "no [yolo]"},
        {"[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nsize=7\n", CORE_EFORMAT, "kernel"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=8\ngroups=3\n", CORE_EFORMAT,
         "groups"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=14\n[yolo]\nclasses=2\nnum=2\n"
         "mask=0,5\nanchors=1,1,2,2\n", CORE_EFORMAT, "mask"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=7\n[yolo]\nclasses=2\nnum=1\n"
         "anchors=1,1\nnms_kind=diounms\n", CORE_EUNSUPPORTED, "nms_kind"},
        {"[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=9\n[region]\nclasses=4\ncoords=4\n"
         "num=1\nanchors=1\n", CORE_EFORMAT, "anchor"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        msg[0] = 0;
        int rc = td_parse(bad[i].cfg, msg, sizeof msg);
        if (rc != bad[i].err || !strstr(msg, bad[i].want))
            fail_msg("case %zu: rc %d (%s) msg '%s', want %d '%s'", i, rc, core_strerror(rc), msg, bad[i].err,
                     bad[i].want);
    }
}

static det_model *td_load(const char *cfg, const char *weights, int threads, const char *isa)
{
    det_params p = det_default_params();
    p.cfg_path = cfg;
    p.weights_path = weights;
    p.n_threads = threads;
    p.isa = isa;
    char msg[256] = "";
    det_model *m = NULL;
    int rc = det_load(&p, &m, msg, sizeof msg);
    if (rc)
        fail_msg("det_load %s: %s: %s", cfg, core_strerror(rc), msg);
    return m;
}

static int td_load_err(const char *cfg, const char *weights, char *msg, size_t n)
{
    det_params p = det_default_params();
    p.cfg_path = cfg;
    p.weights_path = weights;
    det_model *m = NULL;
    int rc = det_load(&p, &m, msg, n);
    assert_null(m);
    return rc;
}

static void td_weights_errors(void **state)
{
    (void)state;
    char cfg[300], w[300], bad[300], msg[256];
    snprintf(cfg, sizeof cfg, "%s/tiny.cfg", td_dir);
    snprintf(w, sizeof w, "%s/tiny.weights", td_dir);
    snprintf(bad, sizeof bad, "%s/bad.weights", td_dir);
    td_write(cfg, td_tiny_cfg, strlen(td_tiny_cfg));
    td_weights(cfg, w, "--seed 3");
    det_free(td_load(cfg, w, 1, NULL));
    size_t n;
    char *data = td_read(w, &n);
    assert_non_null(data);
    /* the header's seen is 64-bit from version 0.2 on: 0.1 has 4 bytes fewer */
    td_weights(cfg, bad, "--seed 3 --version 0.1.0");
    size_t n1;
    free(td_read(bad, &n1));
    assert_int_equal(n1 + 4, n);
    det_free(td_load(cfg, bad, 1, NULL));
    /* 0.2 with the 32-bit field is truncated; trailing and short files name the layer */
    int32_t v01[3] = {0, 1, 0};
    memcpy(data, v01, sizeof v01);
    td_write(bad, data, n);
    assert_int_equal(td_load_err(cfg, bad, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "after the last layer"));
    int32_t v02[3] = {0, 2, 0};
    memcpy(data, v02, sizeof v02);
    td_write(bad, data, n - 4);
    assert_int_equal(td_load_err(cfg, bad, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "truncated in layer 12 "));
    td_write(bad, data, 200);
    assert_int_equal(td_load_err(cfg, bad, msg, sizeof msg), CORE_EFORMAT);
    assert_non_null(strstr(msg, "truncated in layer 0 "));
    td_write(bad, data, 10);
    assert_int_equal(td_load_err(cfg, bad, msg, sizeof msg), CORE_EFORMAT);
    snprintf(bad, sizeof bad, "%s/absent.weights", td_dir);
    assert_int_equal(td_load_err(cfg, bad, msg, sizeof msg), CORE_EIO);
    assert_int_equal(td_load_err("/nonexistent.cfg", w, msg, sizeof msg), CORE_EIO);
    free(data);
}

/* A deterministic test picture: smooth gradients plus a bright block. */
static uint8_t *td_picture(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            bool block = x > w / 3 && x < w / 2 && y > h / 4 && y < h / 2;
            q[0] = block ? 250 : (uint8_t)(x * 255 / w);
            q[1] = block ? 240 : (uint8_t)(y * 255 / h);
            q[2] = (uint8_t)((x + y) & 255);
        }
    return p;
}

static void td_heads(det_model *m, float **copy, size_t *n)
{
    const float *d;
    int c, h, w;
    size_t total = 0;
    for (int i = 0; !det_head_output(m, i, &d, &c, &h, &w); i++)
        total += (size_t)c * h * w;
    *copy = malloc(total * sizeof **copy);
    assert_non_null(*copy);
    *n = 0;
    for (int i = 0; !det_head_output(m, i, &d, &c, &h, &w); i++) {
        memcpy(*copy + *n, d, (size_t)c * h * w * sizeof *d);
        *n += (size_t)c * h * w;
    }
}

static void td_tiny_run(void **state)
{
    (void)state;
    char cfg[300], w[300], msg[256];
    snprintf(cfg, sizeof cfg, "%s/tiny.cfg", td_dir);
    snprintf(w, sizeof w, "%s/tiny-run.weights", td_dir);
    td_write(cfg, td_tiny_cfg, strlen(td_tiny_cfg));
    td_weights(cfg, w, "--seed 5");
    int iw = 90, ih = 50;
    uint8_t *pic = td_picture(iw, ih);
    det_opts o = det_default_opts();
    o.confidence = 0.3f;
    det_box b1[64], b2[64];
    size_t n1, n2, h1, h2;
    float *o1, *o2;

    det_model *m = td_load(cfg, w, 1, "scalar");
    det_info info;
    det_get_info(m, &info);
    assert_int_equal(info.width, 64);
    assert_int_equal(info.n_classes, 2);
    assert_string_equal(info.labels[1], "class 1");
    const float *d;
    int c, h, wd;
    assert_int_equal(det_head_output(m, 0, &d, &c, &h, &wd), CORE_EINVAL); /* nothing ran yet */
    assert_int_equal(det_run(m, pic, iw, ih, &o, b1, 64, &n1, msg, sizeof msg), 0);
    assert_true(n1 > 0);
    td_heads(m, &o1, &h1);
    for (size_t i = 0; i < n1; i++) {
        assert_true(b1[i].x >= 0 && b1[i].y >= 0 && b1[i].x + b1[i].w <= iw + 1e-3 && b1[i].y + b1[i].h <= ih + 1e-3);
        assert_true(b1[i].confidence > o.confidence && b1[i].confidence <= 1);
        if (i)
            assert_true(b1[i].confidence <= b1[i - 1].confidence);
    }
    /* region outputs are probabilities: the softmax sums to 1 per anchor */
    assert_int_equal(det_head_output(m, 1, &d, &c, &h, &wd), 0);
    assert_int_equal(c, 35);
    for (int a = 0; a < 5; a++) {
        double s = 0;
        for (int k = 0; k < 2; k++)
            s += d[(size_t)(a * 7 + 5 + k) * h * wd];
        assert_true(fabs(s - 1) < 1e-5);
    }
    /* classes filter and max_detections */
    int only = b1[0].class_id;
    o.classes = &only;
    o.n_classes = 1;
    assert_int_equal(det_run(m, pic, iw, ih, &o, b2, 64, &n2, msg, sizeof msg), 0);
    for (size_t i = 0; i < n2; i++)
        assert_int_equal(b2[i].class_id, only);
    int nope = 2;
    o.classes = &nope;
    assert_int_equal(det_run(m, pic, iw, ih, &o, b2, 64, &n2, msg, sizeof msg), CORE_EINVAL);
    o.classes = NULL;
    o.n_classes = 0;
    o.max_detections = 1;
    assert_int_equal(det_run(m, pic, iw, ih, &o, b2, 64, &n2, msg, sizeof msg), 0);
    assert_int_equal(n2, 1);
    assert_memory_equal(&b2[0], &b1[0], sizeof b1[0]);
    o.max_detections = 100;
    o.confidence = 1.5f;
    assert_int_equal(det_run(m, pic, iw, ih, &o, b2, 64, &n2, msg, sizeof msg), CORE_EINVAL);
    o.confidence = 0.3f;
    assert_int_equal(det_run(m, pic, 0, ih, &o, b2, 64, &n2, msg, sizeof msg), CORE_EINVAL);
    det_free(m);

    /* two threads and the best ISA: same boxes, outputs within rounding */
    m = td_load(cfg, w, 2, NULL);
    assert_int_equal(det_run(m, pic, iw, ih, &o, b2, 64, &n2, msg, sizeof msg), 0);
    td_heads(m, &o2, &h2);
    assert_int_equal(h1, h2);
    double worst = 0;
    for (size_t i = 0; i < h1; i++)
        worst = fmax(worst, fabs(o1[i] - o2[i]) / fmax(fabs(o1[i]), 1e-2));
    print_message("tiny: scalar 1 thread vs best ISA 2 threads: max rel diff %.2e\n", worst);
    assert_true(worst < 1e-4);
    assert_int_equal(n1, n2);
    for (size_t i = 0; i < n1; i++) {
        assert_int_equal(b1[i].class_id, b2[i].class_id);
        assert_true(fabsf(b1[i].x - b2[i].x) < 1e-2f && fabsf(b1[i].w - b2[i].w) < 1e-2f);
    }
    /* a one-pixel image and an extreme aspect ratio run too */
    assert_int_equal(det_run(m, pic, 1, 1, &o, b2, 64, &n2, msg, sizeof msg), 0);
    assert_int_equal(det_run(m, pic, 2000, 1, &o, b2, 64, &n2, msg, sizeof msg), 0);
    det_free(m);
    det_free(NULL);
    free(o1);
    free(o2);
    free(pic);
}

/* Winograd F(2x2, 3x3) against the definition, odd sizes (partial tiles) included */
static void td_wino(void **state)
{
    (void)state;
    enum { IC = 5, OC = 7 };
    static const int sizes[][2] = {{1, 1}, {5, 7}, {8, 6}, {13, 13}};
    float w[OC][IC][3][3], bias[OC];
    uint32_t r = 1;
    for (int i = 0; i < OC * IC * 9; i++) {
        r = r * 1664525u + 1013904223u;
        (&w[0][0][0][0])[i] = (float)(r >> 8) / (1 << 24) - .5f;
    }
    for (int o = 0; o < OC; o++)
        bias[o] = .1f * o - .3f;
    det_wino *wi;
    assert_int_equal(det_wino_new(&w[0][0][0][0], OC, IC, NULL, &wi), 0);
    pool *pl = pool_new(1); /* on this thread: the model tests cover the pool */
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int h = sizes[k][0], wd = sizes[k][1];
        float *x = malloc(sizeof(float) * IC * h * wd), *y = malloc(sizeof(float) * OC * h * wd);
        float *work = malloc(sizeof(float) * det_wino_work(wi, h, wd));
        for (int i = 0; i < IC * h * wd; i++) {
            r = r * 1664525u + 1013904223u;
            x[i] = (float)(r >> 8) / (1 << 24);
        }
        det_wino_run(wi, x, h, wd, bias, SGEMM_ACT_LEAKY, y, work, pl);
        for (int o = 0; o < OC; o++)
            for (int oy = 0; oy < h; oy++)
                for (int ox = 0; ox < wd; ox++) {
                    double s = bias[o];
                    for (int c = 0; c < IC; c++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy + ky - 1, ix = ox + kx - 1;
                                if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                                    s += (double)w[o][c][ky][kx] * x[(c * h + iy) * wd + ix];
                            }
                    s = s > 0 ? s : .1 * s;
                    float got = y[(o * h + oy) * wd + ox];
                    if (fabs(got - s) > 1e-5 * fmax(1, fabs(s)))
                        fail_msg("%dx%d: y[%d][%d][%d] = %g, want %g", h, wd, o, oy, ox, got, s);
                }
        free(x);
        free(y);
        free(work);
    }
    pool_free(pl);
    det_wino_free(wi);
}

typedef struct {
    det_model *m;
    atomic_int done;
} td_abort_arg;

static void *td_aborter(void *v)
{
    td_abort_arg *a = v;
    while (!atomic_load(&a->done))
        det_abort(a->m);
    return NULL;
}

static void td_abort(void **state)
{
    (void)state;
    char cfg[300], w[300], msg[256];
    snprintf(cfg, sizeof cfg, "%s/tiny.cfg", td_dir);
    snprintf(w, sizeof w, "%s/tiny-abort.weights", td_dir);
    td_write(cfg, td_tiny_cfg, strlen(td_tiny_cfg));
    td_weights(cfg, w, "--seed 6");
    det_model *m = td_load(cfg, w, 1, NULL);
    uint8_t *pic = td_picture(64, 48);
    det_opts o = det_default_opts();
    det_box b[8];
    size_t n = 99;
    td_abort_arg a = {.m = m};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, td_aborter, &a), 0);
    int rc = 0;
    /* the flag is cleared as a run starts and set again at once by the other thread */
    for (int i = 0; i < 200 && rc != CORE_EABORTED; i++)
        rc = det_run(m, pic, 64, 48, &o, b, 8, &n, msg, sizeof msg);
    atomic_store(&a.done, 1);
    pthread_join(th, NULL);
    assert_int_equal(rc, CORE_EABORTED);
    assert_int_equal(n, 0);
    assert_int_equal(det_run(m, pic, 64, 48, &o, b, 8, &n, msg, sizeof msg), 0);
    det_free(m);
    free(pic);
}

/* ---- against darknet ---- */

typedef struct {
    int cls;
    float prob, x, y, w, h;
} td_ref_box;

static float td_iou(float ax, float ay, float aw, float ah, float bx, float by, float bw, float bh)
{
    if (fminf(fminf(aw, ah), fminf(bw, bh)) <= 0) /* clipped to nothing: compare the corners */
        return fabsf(ax - bx) < 1 && fabsf(ay - by) < 1 && fabsf(aw - bw) < 1 && fabsf(ah - bh) < 1;
    float iw = fminf(ax + aw, bx + bw) - fmaxf(ax, bx), ih = fminf(ay + ah, by + bh) - fmaxf(ay, by);
    if (iw <= 0 || ih <= 0)
        return 0;
    return iw * ih / (aw * ah + bw * bh - iw * ih);
}

/* Writes the decoded pixels of a JPEG as a PNG (libspng), so that the PNG
 * path is compared on a real photograph. */
static void td_png_from(const char *jpg, const char *png)
{
    size_t n;
    void *data = td_read(jpg, &n);
    assert_non_null(data);
    img_limits lim = img_default_limits();
    img im;
    char msg[256];
    assert_int_equal(img_decode(data, n, &lim, &im, msg, sizeof msg), 0);
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {.width = (uint32_t)im.w, .height = (uint32_t)im.h, .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    FILE *f = fopen(png, "wb");
    assert_non_null(f);
    spng_set_png_file(ctx, f);
    spng_set_ihdr(ctx, &ihdr);
    assert_int_equal(spng_encode_image(ctx, im.rgb, (size_t)im.w * im.h * 3, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
    spng_ctx_free(ctx);
    fclose(f);
    img_free(&im);
    free(data);
}

static void td_compare(const char *ref, const char *net, const char *image, float thresh)
{
    char cfg[300], w[300], out[300], cmd[1600], msg[256];
    snprintf(cfg, sizeof cfg, "/usr/share/darknet/cfg/%s.cfg", net);
    snprintf(w, sizeof w, "%s/%s.weights", td_dir, net);
    snprintf(out, sizeof out, "%s/ref.bin", td_dir);
    if (access(w, R_OK))
        td_weights(cfg, w, "--seed 7");
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=2 '%s' '%s' '%s' '%s' %g 0.45 '%s' >/dev/null 2>&1", ref, cfg, w,
             image, thresh, out);
    assert_int_equal(td_sh(cmd), 0);
    size_t n;
    char *bin = td_read(out, &n), *p = bin;
#define TD_TAKE(dst, bytes) (assert_true(p + (bytes) <= bin + n), memcpy((dst), p, (bytes)), p += (bytes))
    int32_t n_heads, shape[3];
    TD_TAKE(&n_heads, 4);

    det_model *m = td_load(cfg, w, 2, NULL);
    size_t len;
    void *data = td_read(image, &len);
    img_limits lim = img_default_limits();
    img im;
    assert_int_equal(img_decode(data, len, &lim, &im, msg, sizeof msg), 0);
    det_opts o = det_default_opts();
    o.confidence = thresh;
    o.max_detections = 1000;
    det_box boxes[1000];
    size_t nb;
    assert_int_equal(det_run(m, im.rgb, im.w, im.h, &o, boxes, 1000, &nb, msg, sizeof msg), 0);

    for (int hi = 0; hi < n_heads; hi++) {
        TD_TAKE(shape, 12);
        const float *d;
        int c, h, wd;
        assert_int_equal(det_head_output(m, hi, &d, &c, &h, &wd), 0);
        assert_true(c == shape[0] && h == shape[1] && wd == shape[2]);
        size_t cnt = (size_t)c * h * wd;
        float *r = malloc(cnt * sizeof *r);
        TD_TAKE(r, cnt * 4);
        /* relative to the value, floored at 0.01 for values near zero */
        double worst = 0, worst_abs = 0;
        for (size_t i = 0; i < cnt; i++) {
            double e = fabs((double)d[i] - r[i]);
            worst = fmax(worst, e / fmax(fabs(r[i]), 1e-2));
            worst_abs = fmax(worst_abs, e);
        }
        print_message("%s %s head %d [%d][%d][%d]: max rel diff %.2e (abs %.2e)\n", net, strrchr(image, '/') + 1,
                      hi, c, h, wd, worst, worst_abs);
        assert_true(worst < 1e-3);
        free(r);
    }
    int32_t hdr[3];
    TD_TAKE(hdr, 12);
    assert_int_equal(hdr[0], im.w);
    assert_int_equal(hdr[1], im.h);
    td_ref_box *rb = malloc((hdr[2] + 1) * sizeof *rb);
    for (int i = 0; i < hdr[2]; i++) {
        TD_TAKE(&rb[i].cls, 4);
        TD_TAKE(&rb[i].prob, 20);
    }
    assert_true(p == bin + n);
    print_message("%s %s: %d boxes (darknet), %zu (ours) at thresh %.2f\n", net, strrchr(image, '/') + 1, hdr[2],
                  nb, thresh);
    assert_int_equal((int)nb, hdr[2]);
    assert_true(nb > 0);
    float min_iou = 1;
    for (size_t i = 0; i < nb; i++) {
        float best = 0;
        int bj = -1;
        for (int j = 0; j < hdr[2]; j++) {
            if (rb[j].cls != boxes[i].class_id)
                continue;
            float iou = td_iou(boxes[i].x, boxes[i].y, boxes[i].w, boxes[i].h, rb[j].x, rb[j].y, rb[j].w, rb[j].h);
            if (iou > best) {
                best = iou;
                bj = j;
            }
        }
        if (bj < 0 || best <= 0.9f)
            fail_msg("%s: box %zu (class %d, %.3f) has no darknet match (best IoU %.3f)", net, i,
                     boxes[i].class_id, boxes[i].confidence, best);
        assert_true(fabsf(rb[bj].prob - boxes[i].confidence) < 1e-3f);
        rb[bj].cls = -1; /* matched once */
        min_iou = fminf(min_iou, best);
    }
    print_message("%s %s: all boxes matched, min IoU %.4f\n", net, strrchr(image, '/') + 1, min_iou);
    free(rb);
    img_free(&im);
    free(data);
    free(bin);
    det_free(m);
}

static void td_reference(void **state)
{
    (void)state;
    char ref[400], png[300];
    snprintf(ref, sizeof ref, "%s/ref/darknet_ref", td_build);
    if (access("/usr/lib/darknet/libdarknet.so", R_OK) || access(ref, X_OK)) {
        print_message("SKIP: darknet (libdarknet.so, %s) absent: no reference comparison\n", ref);
        return;
    }
    snprintf(png, sizeof png, "%s/dog.png", td_dir);
    td_png_from("/usr/share/darknet/data/dog.jpg", png);
    static const char *const images[] = {"/usr/share/darknet/data/dog.jpg", "/usr/share/darknet/data/person.jpg",
                                         NULL};
    static const struct {
        const char *net;
        float thresh;
    } nets[] = {{"yolov3-tiny", 0.8f}, {"yolov2-tiny", 0.6f}};
    for (size_t k = 0; k < sizeof nets / sizeof *nets; k++)
        for (int i = 0; images[i]; i++)
            td_compare(ref, nets[k].net, images[i], nets[k].thresh);
    td_compare(ref, "yolov3-tiny", png, 0.8f);
}

/* OpenCV's dnn module as a second opinion (tests/vision/compare_opencv.py)
 * where Debian's darknet cannot be one: the tiny network (grouped
 * convolutions, mish, route groups, scale_x_y) and yolov4-tiny. */
static void td_opencv(void **state)
{
    (void)state;
    if (td_sh("/usr/bin/python3 -c 'import cv2, numpy' >/dev/null 2>&1")) {
        print_message("SKIP: /usr/bin/python3 with cv2 (python3-opencv) absent: no OpenCV comparison\n");
        return;
    }
    char w[300], cfg[300], cmd[1200];
    /* every layer type and option on the tiny network (its raw outputs) */
    snprintf(cfg, sizeof cfg, "%s/tiny.cfg", td_dir);
    snprintf(w, sizeof w, "%s/tiny-cv.weights", td_dir);
    td_write(cfg, td_tiny_cfg, strlen(td_tiny_cfg));
    td_weights(cfg, w, "--seed 5");
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/vision/compare_opencv.py '%s' '%s' /usr/share/darknet/data/dog.jpg "
             "--build '%s' --thresh 0.4",
             cfg, w, td_build);
    assert_int_equal(td_sh(cmd), 0);
    snprintf(w, sizeof w, "%s/yolov4-tiny.weights", td_dir);
    td_weights("tests/vision/yolov4-tiny.cfg", w, "--seed 1");
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/vision/compare_opencv.py tests/vision/yolov4-tiny.cfg '%s' "
             "/usr/share/darknet/data/person.jpg --build '%s' --thresh 0.75",
             w, td_build);
    assert_int_equal(td_sh(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(td_cfg_errors),
        cmocka_unit_test(td_weights_errors),
        cmocka_unit_test(td_tiny_run),
        cmocka_unit_test(td_wino),
        cmocka_unit_test(td_abort),
        cmocka_unit_test(td_reference),
        cmocka_unit_test(td_opencv),
    };
    return cmocka_run_group_tests(tests, td_setup, td_teardown);
}
