/* detect.c: darknet YOLO inference (see detect.h). The network description
 * and weights come from det_net.c; this file plans the activation memory,
 * runs the layers and turns the heads' outputs into boxes like darknet's
 * get_network_boxes + do_nms_sort.
 *
 * Tensors are darknet's: one image, [c][h][w] float32, row-major. Every
 * layer's output lives in a buffer planned at load time (buffers are
 * shared by layers whose outputs are not alive at the same time), so a
 * forward pass allocates nothing; the heads' outputs stay alive to the end.
 *
 * Convolutions, all on the core's sgemm with bias and leaky/relu fused:
 * 1x1 stride-1 ones multiply the input itself; 3x3 stride-1 ones with 64+
 * input channels go through Winograd F(2x2, 3x3) (det_wino.c; 2.25x fewer
 * multiply-adds); the rest unroll their input (im2col), in bands of output
 * rows that stay in L2 when the output is large, else whole.
 */
#include "detect.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core_err.h"
#include "det_net.h"
#include "det_wino.h"
#include "pool.h"
#include "sgemm.h"

#ifndef DET_WINO_MIN_C
#define DET_WINO_MIN_C 64
#endif

struct det_model {
    det_net net;
    pool *pool;
    sgemm_mat ***gemm;   /* per layer: groups packed weight matrices, or NULL */
    det_wino **wino;     /* per layer: Winograd weights of a 3x3 stride-1 conv, or NULL */
    float **out;         /* per layer: its output [out_c][out_h][out_w] */
    float **bufs;        /* the planned buffers out[] points into */
    int n_bufs;
    float *input;        /* [3][net.h][net.w] letterboxed image */
    float *biases;       /* [sum of conv filters]: the bias (BN folded) of every conv */
    float *work;         /* im2col: [c/groups * size * size][out_h * out_w] of the largest conv,
                          * or per thread [c * size * size][band rows * out_w] (det_band_task) */
    int *heads;          /* layer index of each yolo/region layer */
    bool ran;
    char **labels;       /* [classes] */
    char *label_mem;
    const char *isa;
    atomic_int abort;
};

det_params det_default_params(void)
{
    return (det_params){0};
}

det_opts det_default_opts(void)
{
    return (det_opts){.confidence = 0.25f, .iou = 0.45f, .max_detections = 100};
}

void det_free(det_model *m)
{
    if (!m)
        return;
    if (m->gemm)
        for (int i = 0; i < m->net.n; i++) {
            if (m->gemm[i])
                for (int g = 0; g < m->net.l[i].groups; g++)
                    sgemm_free(m->gemm[i][g]);
            free(m->gemm[i]);
        }
    free(m->gemm);
    if (m->wino)
        for (int i = 0; i < m->net.n; i++)
            det_wino_free(m->wino[i]);
    free(m->wino);
    for (int i = 0; i < m->n_bufs; i++)
        free(m->bufs[i]);
    free(m->bufs);
    free(m->out);
    free(m->input);
    free(m->work);
    free(m->biases);
    free(m->heads);
    free(m->labels);
    free(m->label_mem);
    pool_free(m->pool);
    det_net_free(&m->net);
    free(m);
}

/* Reads a whole small file (cfg, names). */
static int det_read_file(const char *path, size_t max, char **data, size_t *len, char *msg, size_t msg_size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return core_errf(CORE_EIO, msg, msg_size, "%s: %s", path, strerror(errno));
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return CORE_ENOMEM;
    if (bad || n > max) {
        free(buf);
        return core_errf(bad ? CORE_EIO : CORE_EFORMAT, msg, msg_size, "%s: %s", path,
                         bad ? "read error" : "file too large");
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

static int det_load_weights(det_model *m, const char *path, char *msg, size_t msg_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return core_errf(CORE_EIO, msg, msg_size, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        rc = core_errf(CORE_EIO, msg, msg_size, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        rc = det_net_load_weights(&m->net, (const uint8_t *)"", 0, msg, msg_size);
    } else {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = core_errf(CORE_EIO, msg, msg_size, "%s: mmap: %s", path, strerror(errno));
        } else {
            rc = det_net_load_weights(&m->net, p, (size_t)st.st_size, msg, msg_size);
            munmap(p, (size_t)st.st_size);
        }
    }
    close(fd);
    return rc;
}

static int det_load_labels(det_model *m, const char *path, char *msg, size_t msg_size)
{
    int n = m->net.classes, rc;
    size_t len = 0;
    if (!(m->labels = calloc((size_t)n, sizeof *m->labels)))
        return CORE_ENOMEM;
    if (!path) {
        /* "class N": room for any int */
        if (!(m->label_mem = malloc((size_t)n * 24)))
            return CORE_ENOMEM;
        for (int i = 0; i < n; i++) {
            m->labels[i] = m->label_mem + (size_t)i * 24;
            snprintf(m->labels[i], 24, "class %d", i);
        }
        return 0;
    }
    if ((rc = det_read_file(path, 1 << 20, &m->label_mem, &len, msg, msg_size)))
        return rc;
    char *p = m->label_mem;
    for (int i = 0; i < n; i++) {
        if (p >= m->label_mem + len)
            return core_errf(CORE_EFORMAT, msg, msg_size, "%s: %d labels, the network has %d classes", path, i,
                             n);
        char *e = strchr(p, '\n');
        char *next = e ? e + 1 : m->label_mem + len;
        if (!e)
            e = m->label_mem + len;
        while (e > p && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = 0;
        m->labels[i] = p;
        p = next;
    }
    return 0;
}

/* Which layers read layer i's output last: activations are kept only that long. */
static void det_plan_uses(const det_net *net, int *last)
{
    for (int i = 0; i < net->n; i++)
        last[i] = i;
    for (int i = 0; i < net->n; i++) {
        const det_layer *l = &net->l[i];
        if (l->type != DET_ROUTE && i > 0)
            last[i - 1] = i;
        for (int j = 0; j < l->n_from; j++)
            last[l->from[j]] = i;
        if (l->type == DET_YOLO || l->type == DET_REGION)
            last[i] = net->n;
    }
}

/* Assigns each layer a buffer no live layer uses (best fit, growing one if
 * none is big enough), then allocates the buffers. */
static int det_plan(det_model *m)
{
    det_net *net = &m->net;
    int n = net->n, rc = CORE_ENOMEM;
    int *last = malloc(n * sizeof *last), *owner = malloc(n * sizeof *owner), *buf = malloc(n * sizeof *buf);
    size_t *size = calloc(n, sizeof *size);
    if (!last || !owner || !buf || !size)
        goto out;
    det_plan_uses(net, last);
    int nb = 0;
    for (int i = 0; i < n; i++) {
        const det_layer *l = &net->l[i];
        size_t need = (size_t)l->out_c * l->out_h * l->out_w;
        int best = -1;
        for (int b = 0; b < nb; b++) {
            if (owner[b] >= 0)
                continue;
            if (best < 0 || (size[b] >= need && (size[best] < need || size[b] < size[best])) ||
                (size[best] < need && size[b] > size[best]))
                best = b;
        }
        if (best < 0)
            best = nb++;
        if (size[best] < need)
            size[best] = need;
        owner[best] = i;
        buf[i] = best;
        /* free the buffers of layers read for the last time here (never the one just taken) */
        for (int b = 0; b < nb; b++)
            if (owner[b] >= 0 && owner[b] != i && last[owner[b]] <= i)
                owner[b] = -1;
        if (last[i] <= i)
            owner[best] = -1;
    }
    if (!(m->bufs = calloc(nb, sizeof *m->bufs)) || !(m->out = calloc(n, sizeof *m->out)))
        goto out;
    m->n_bufs = nb;
    for (int b = 0; b < nb; b++)
        if (!(m->bufs[b] = malloc(size[b] * sizeof(float))))
            goto out;
    for (int i = 0; i < n; i++)
        m->out[i] = m->bufs[buf[i]];
    rc = 0;
out:
    free(last);
    free(owner);
    free(buf);
    free(size);
    return rc;
}

static int det_band_rows(const det_layer *l);

/* 3x3 stride-1 convolutions with enough input channels for the 16 GEMMs of
 * Winograd's F(2x2, 3x3) to run well. */
static bool det_use_wino(const det_layer *l)
{
    return l->size == 3 && l->stride == 1 && l->pad == 1 && l->groups == 1 && l->c >= DET_WINO_MIN_C;
}

/* Packs every conv's weights; sizes the im2col buffer for nth threads. */
static int det_pack(det_model *m, const char *isa, int nth, char *msg, size_t msg_size)
{
    det_net *net = &m->net;
    size_t work = 0, n_bias = 0;
    for (int i = 0; i < net->n; i++)
        n_bias += net->l[i].type == DET_CONV ? (size_t)net->l[i].out_c : 0;
    if (!(m->gemm = calloc(net->n, sizeof *m->gemm)) || !(m->wino = calloc(net->n, sizeof *m->wino)) ||
        !(m->biases = malloc(n_bias * sizeof(float) + 1)))
        return CORE_ENOMEM;
    n_bias = 0;
    for (int i = 0; i < net->n; i++) {
        det_layer *l = &net->l[i];
        if (l->type != DET_CONV)
            continue;
        int g = l->groups, rows = l->out_c / g, k = l->c / g * l->size * l->size;
        if (!(m->gemm[i] = calloc(g, sizeof **m->gemm)))
            return CORE_ENOMEM;
        if (det_use_wino(l)) {
            int rc = det_wino_new(l->weights, l->out_c, l->c, isa, &m->wino[i]);
            if (rc)
                return core_errf(rc, msg, msg_size, "layer %d (cfg line %d): cannot transform weights", i, l->line);
            size_t w = det_wino_work(m->wino[i], l->h, l->w);
            work = w > work ? w : work;
        }
        for (int j = 0; j < g && !m->wino[i]; j++) {
            int rc = sgemm_pack(l->weights + (size_t)j * rows * k, rows, k, k, isa, &m->gemm[i][j]);
            if (rc)
                return core_errf(rc, msg, msg_size, "layer %d (cfg line %d): cannot pack weights (isa %s)", i,
                                 l->line, isa ? isa : "auto");
        }
        m->isa = m->wino[i] ? det_wino_isa(m->wino[i]) : sgemm_isa(m->gemm[i][0]);
        memcpy(m->biases + n_bias, l->bias, l->out_c * sizeof(float));
        l->bias = m->biases + n_bias;
        l->weights = NULL;
        n_bias += l->out_c;
        int band = m->wino[i] ? 0 : det_band_rows(l);
        size_t w = m->wino[i] ? 0 : band ? (size_t)nth * k * band * l->out_w
                 : l->size == 1 && l->stride == 1 && l->pad == 0 ? 0 : (size_t)k * l->out_h * l->out_w;
        work = w > work ? w : work;
    }
    if (work && !(m->work = malloc(work * sizeof(float))))
        return CORE_ENOMEM;
    return 0;
}

int det_load(const det_params *p, det_model **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || !p->cfg_path || !p->weights_path)
        return core_errf(CORE_EINVAL, msg, msg_size, "cfg_path and weights_path are required");
    det_model *m = calloc(1, sizeof *m);
    char *text = NULL;
    size_t len;
    int rc = CORE_ENOMEM;
    if (!m)
        goto out;
    if ((rc = det_read_file(p->cfg_path, 4 << 20, &text, &len, msg, msg_size)))
        goto out;
    if ((rc = det_net_parse(text, len, &m->net, msg, msg_size)) ||
        (rc = det_load_weights(m, p->weights_path, msg, msg_size)) ||
        (rc = det_load_labels(m, p->names_path, msg, msg_size)) ||
        (rc = !(m->pool = pool_new(p->n_threads)) ? CORE_ENOMEM : 0) ||
        (rc = det_pack(m, p->isa, pool_size(m->pool), msg, msg_size)))
        goto out;
    /* the packed copies are all forward needs */
    free(m->net.params);
    m->net.params = NULL;
    rc = CORE_ENOMEM;
    if (det_plan(m) || !(m->input = malloc((size_t)3 * m->net.w * m->net.h * sizeof(float))) ||
        !(m->heads = malloc(m->net.n_heads * sizeof *m->heads)))
        goto out;
    for (int i = 0, k = 0; i < m->net.n; i++)
        if (m->net.l[i].type == DET_YOLO || m->net.l[i].type == DET_REGION)
            m->heads[k++] = i;
    rc = 0;
out:
    free(text);
    if (rc) {
        if (rc == CORE_ENOMEM && msg && !*msg)
            core_errf(rc, msg, msg_size, "out of memory loading %s", p->cfg_path);
        det_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void det_get_info(const det_model *m, det_info *info)
{
    *info = (det_info){.width = m->net.w, .height = m->net.h, .channels = m->net.c,
                       .n_classes = m->net.classes, .n_layers = m->net.n,
                       .labels = (const char *const *)m->labels, .isa = m->isa,
                       .n_threads = pool_size(m->pool), .gflops = m->net.flops / 1e9};
}

void det_abort(det_model *m)
{
    if (m)
        atomic_store_explicit(&m->abort, 1, memory_order_relaxed);
}

int det_head_output(const det_model *m, int i, const float **data, int *c, int *h, int *w)
{
    if (!m || !m->ran || i < 0 || i >= m->net.n_heads)
        return CORE_EINVAL;
    const det_layer *l = &m->net.l[m->heads[i]];
    *data = m->out[m->heads[i]];
    *c = l->out_c;
    *h = l->out_h;
    *w = l->out_w;
    return 0;
}

/* ---- layers ---- */

static float det_logistic(float x)
{
    return 1.f / (1.f + expf(-x));
}

static void det_activate(float *x, size_t n, det_act act)
{
    switch (act) {
    case DET_LINEAR: break;
    case DET_LEAKY:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : .1f * x[i];
        break;
    case DET_RELU:
        for (size_t i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : 0;
        break;
    case DET_LOGISTIC:
        for (size_t i = 0; i < n; i++)
            x[i] = det_logistic(x[i]);
        break;
    case DET_MISH:
        /* x * tanh(softplus(x)), softplus cut off at |x| > 20 as darknet does */
        for (size_t i = 0; i < n; i++) {
            float v = x[i], sp = v > 20 ? v : v < -20 ? expf(v) : log1pf(expf(v));
            x[i] = v * tanhf(sp);
        }
        break;
    }
}

/* Convolutions with a large output run in bands of output rows: each task
 * unrolls its band (im2col) into its thread's slice of the work buffer,
 * small enough to stay in L2, and multiplies it on its own thread. */
enum { DET_BAND_FLOATS = 48 * 1024, DET_BAND_MIN_N = 4096 };

typedef struct {
    det_model *m;
    const det_layer *l;
    const float *x; /* [c][h][w] (of this group) */
    float *col;     /* im2col rows [c * size * size][rows * out_w] */
    float *y;       /* the layer's output [out_c][out_h][out_w] */
    int band_rows, i;
} det_job;

/* im2col of channels [c0, c1) for output rows [oy0, oy1): writes
 * col[(c - c0) * k * k + ky * k + kx][(oy - oy0) * out_w + ox]. */
static void det_im2col(const det_layer *l, const float *x, int c0, int c1, int oy0, int oy1, float *col)
{
    int k = l->size, s = l->stride, pad = l->pad, h = l->h, w = l->w, ow = l->out_w;
    size_t ld = (size_t)(oy1 - oy0) * ow;
    for (int c = c0; c < c1; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++, col += ld)
                for (int oy = oy0; oy < oy1; oy++) {
                    float *row = col + (size_t)(oy - oy0) * ow;
                    int iy = oy * s + ky - pad;
                    if (iy < 0 || iy >= h) {
                        memset(row, 0, ow * sizeof *row);
                        continue;
                    }
                    const float *src = x + ((size_t)c * h + iy) * w;
                    if (s == 1) {
                        /* ix = ox + kx - pad is inside for ox in [lo, hi) */
                        int lo = pad - kx > 0 ? pad - kx : 0, hi = w + pad - kx < ow ? w + pad - kx : ow;
                        if (hi < lo)
                            hi = lo;
                        memset(row, 0, lo * sizeof *row);
                        memcpy(row + lo, src + lo + kx - pad, (hi - lo) * sizeof *row);
                        memset(row + hi, 0, (ow - hi) * sizeof *row);
                    } else {
                        for (int ox = 0; ox < ow; ox++) {
                            int ix = ox * s + kx - pad;
                            row[ox] = ix >= 0 && ix < w ? src[ix] : 0;
                        }
                    }
                }
}

static void det_im2col_task(void *arg, int64_t ch, int ith)
{
    (void)ith;
    const det_job *J = arg;
    const det_layer *l = J->l;
    det_im2col(l, J->x, (int)ch, (int)ch + 1, 0, l->out_h,
               J->col + (size_t)ch * l->size * l->size * l->out_h * l->out_w);
}

static sgemm_act det_sgemm_act(det_act a)
{
    return a == DET_LEAKY ? SGEMM_ACT_LEAKY : a == DET_RELU ? SGEMM_ACT_RELU : SGEMM_ACT_LINEAR;
}

static void det_band_task(void *arg, int64_t band, int ith)
{
    const det_job *J = arg;
    const det_layer *l = J->l;
    int oy0 = (int)band * J->band_rows, oy1 = oy0 + J->band_rows < l->out_h ? oy0 + J->band_rows : l->out_h;
    int kk = l->c * l->size * l->size, n = (oy1 - oy0) * l->out_w;
    float *col = J->col + (size_t)ith * kk * J->band_rows * l->out_w; /* [kk][n] */
    det_im2col(l, J->x, 0, l->c, oy0, oy1, col);
    sgemm_run(J->m->gemm[J->i][0], col, n, n, l->bias, det_sgemm_act(l->act), J->y + (size_t)oy0 * l->out_w,
              l->out_h * l->out_w, NULL);
}

/* Output rows per band when layer l runs in bands, else 0. */
static int det_band_rows(const det_layer *l)
{
    size_t kk = (size_t)l->c * l->size * l->size, n = (size_t)l->out_h * l->out_w;
    if (l->groups != 1 || (l->size == 1 && l->stride == 1 && l->pad == 0) || n < DET_BAND_MIN_N)
        return 0;
    size_t rows = DET_BAND_FLOATS / (kk * l->out_w);
    return rows < 1 ? 1 : rows > (size_t)l->out_h ? l->out_h : (int)rows;
}

static void det_conv(det_model *m, int i, const float *x, float *y)
{
    const det_layer *l = &m->net.l[i];
    int g = l->groups, rows = l->out_c / g, cg = l->c / g, n = l->out_h * l->out_w;
    int band = det_band_rows(l);
    if (m->wino[i]) {
        det_wino_run(m->wino[i], x, l->h, l->w, l->bias, det_sgemm_act(l->act), y, m->work, m->pool);
    } else if (band) {
        det_job J = {.m = m, .l = l, .x = x, .col = m->work, .y = y, .band_rows = band, .i = i};
        pool_for(m->pool, (l->out_h + band - 1) / band, det_band_task, &J);
    } else {
        bool direct = l->size == 1 && l->stride == 1 && l->pad == 0;
        for (int j = 0; j < g; j++) {
            const float *xg = x + (size_t)j * cg * l->h * l->w; /* [c/groups][h][w] */
            const float *b = xg;                               /* [c/groups * size * size][out_h * out_w] */
            if (!direct) {
                det_job J = {.l = l, .x = xg, .col = m->work};
                pool_for(m->pool, cg, det_im2col_task, &J);
                b = m->work;
            }
            sgemm_run(m->gemm[i][j], b, n, n, l->bias + (size_t)j * rows, det_sgemm_act(l->act),
                      y + (size_t)j * rows * n, n, m->pool);
        }
    }
    if (l->act == DET_LOGISTIC || l->act == DET_MISH)
        det_activate(y, (size_t)l->out_c * n, l->act);
}

/* darknet's maxpool: windows start at -pad/2; cells outside are skipped. */
static void det_maxpool_task(void *arg, int64_t ch, int ith)
{
    (void)ith;
    const det_job *J = arg;
    const det_layer *l = J->l;
    const float *x = J->x + (size_t)ch * l->h * l->w;         /* [h][w] */
    float *y = J->y + (size_t)ch * l->out_h * l->out_w; /* [out_h][out_w] */
    int off = -l->pad / 2;
    if (off == 0 && l->size == 2 && l->stride == 2 && 2 * l->out_w <= l->w && 2 * l->out_h <= l->h) {
        /* the common 2x2/2 case: every window inside, no bounds checks */
        for (int oy = 0; oy < l->out_h; oy++) {
            const float *r0 = x + (size_t)2 * oy * l->w, *r1 = r0 + l->w;
            float *dst = y + (size_t)oy * l->out_w;
            for (int ox = 0; ox < l->out_w; ox++) {
                float a = r0[2 * ox] > r0[2 * ox + 1] ? r0[2 * ox] : r0[2 * ox + 1];
                float b = r1[2 * ox] > r1[2 * ox + 1] ? r1[2 * ox] : r1[2 * ox + 1];
                dst[ox] = a > b ? a : b;
            }
        }
        return;
    }
    for (int oy = 0; oy < l->out_h; oy++)
        for (int ox = 0; ox < l->out_w; ox++) {
            float best = -FLT_MAX;
            for (int ky = 0; ky < l->size; ky++) {
                int iy = off + oy * l->stride + ky;
                if (iy < 0 || iy >= l->h)
                    continue;
                for (int kx = 0; kx < l->size; kx++) {
                    int ix = off + ox * l->stride + kx;
                    if (ix >= 0 && ix < l->w && x[(size_t)iy * l->w + ix] > best)
                        best = x[(size_t)iy * l->w + ix];
                }
            }
            y[(size_t)oy * l->out_w + ox] = best;
        }
}

static void det_upsample(const det_layer *l, const float *x, float *y)
{
    int s = l->stride;
    for (int c = 0; c < l->c; c++)
        for (int oy = 0; oy < l->out_h; oy++) {
            const float *src = x + ((size_t)c * l->h + oy / s) * l->w;
            float *dst = y + ((size_t)c * l->out_h + oy) * l->out_w;
            for (int ox = 0; ox < l->out_w; ox++)
                dst[ox] = l->alpha * src[ox / s];
        }
}

/* darknet's softmax over n values stride apart (temperature 1). */
static void det_softmax(float *x, int n, size_t stride)
{
    float largest = -FLT_MAX, sum = 0;
    for (int i = 0; i < n; i++)
        largest = x[i * stride] > largest ? x[i * stride] : largest;
    for (int i = 0; i < n; i++) {
        float e = expf(x[i * stride] - largest);
        sum += e;
        x[i * stride] = e;
    }
    for (int i = 0; i < n; i++)
        x[i * stride] /= sum;
}

/* yolo/region outputs: per anchor n (one task each), entries [x, y, w, h,
 * objectness, classes...], each [h][w]. */
static void det_head_task(void *arg, int64_t n, int ith)
{
    (void)ith;
    const det_job *J = arg;
    const det_layer *l = J->l;
    size_t hw = (size_t)l->h * l->w, per = (size_t)(l->classes + 5) * hw;
    float *a = J->y + n * per; /* [classes + 5][h][w] */
    memcpy(a, J->x + n * per, per * sizeof *a);
    det_activate(a, 2 * hw, DET_LOGISTIC);
    if (l->scale_x_y != 1)
        for (size_t i = 0; i < 2 * hw; i++)
            a[i] = a[i] * l->scale_x_y - .5f * (l->scale_x_y - 1);
    if (l->type == DET_YOLO || !l->softmax) {
        det_activate(a + 4 * hw, (size_t)(l->classes + 1) * hw, DET_LOGISTIC);
    } else {
        det_activate(a + 4 * hw, hw, DET_LOGISTIC);
        for (size_t i = 0; i < hw; i++)
            det_softmax(a + 5 * hw + i, l->classes, hw);
    }
}

static int det_forward(det_model *m)
{
    const det_net *net = &m->net;
    for (int i = 0; i < net->n; i++) {
        if (atomic_load_explicit(&m->abort, memory_order_relaxed))
            return CORE_EABORTED;
        const det_layer *l = &net->l[i];
        const float *x = i ? m->out[i - 1] : m->input; /* [c][h][w] */
        float *y = m->out[i];                          /* [out_c][out_h][out_w] */
        size_t hw = (size_t)l->out_h * l->out_w;
        switch (l->type) {
        case DET_CONV: det_conv(m, i, x, y); break;
        case DET_MAXPOOL: {
            det_job J = {.l = l, .x = x, .y = y};
            pool_for(m->pool, l->c, det_maxpool_task, &J);
            break;
        }
        case DET_ROUTE:
            for (int j = 0; j < l->n_from; j++) {
                const det_layer *f = &net->l[l->from[j]];
                size_t part = (size_t)f->out_c / l->groups * hw;
                memcpy(y, m->out[l->from[j]] + part * l->group_id, part * sizeof *y);
                y += part;
            }
            break;
        case DET_SHORTCUT: {
            const float *a = m->out[l->from[0]]; /* [c][h][w] like x */
            size_t n = (size_t)l->out_c * hw;
            for (size_t k = 0; k < n; k++)
                y[k] = l->alpha * x[k] + l->beta * a[k];
            det_activate(y, n, l->act);
            break;
        }
        case DET_UPSAMPLE: det_upsample(l, x, y); break;
        case DET_YOLO:
        case DET_REGION: {
            det_job J = {.l = l, .x = x, .y = y};
            pool_for(m->pool, l->n, det_head_task, &J);
            break;
        }
        }
    }
    return 0;
}

/* ---- pre-processing: darknet's letterbox_image ---- */

/* The letterboxed size of a w x h image in the network's nw x nh. */
static void det_fit(int w, int h, int nw, int nh, int *fw, int *fh)
{
    if ((float)nw / w < (float)nh / h) {
        *fw = nw;
        *fh = (int)((int64_t)h * nw / w);
    } else {
        *fh = nh;
        *fw = (int)((int64_t)w * nh / h);
    }
    /* darknet divides by zero here for extreme aspect ratios */
    *fw = *fw < 1 ? 1 : *fw;
    *fh = *fh < 1 ? 1 : *fh;
}

/* darknet's letterbox_image: resize_image (bilinear, corners aligned;
 * columns first, then rows) of rgb [h][w][3] to [3][rh][rw], embedded at
 * the centre of the network input [3][nh][nw] filled with 0.5. Both passes
 * run in blocks of rows on the pool. */
typedef struct {
    const uint8_t *rgb;
    int w, h, rw, rh, nw, nh;
    float w_scale, h_scale;
    float *part;  /* [3][h][rw]: the columns pass */
    float *input; /* [3][nh][nw] */
    float lut[256];
} det_lb;

enum { DET_LB_ROWS = 16 };

static void det_lb_cols(void *arg, int64_t task, int ith)
{
    (void)ith;
    const det_lb *L = arg;
    int r1 = (int)(task + 1) * DET_LB_ROWS < L->h ? (int)(task + 1) * DET_LB_ROWS : L->h;
    for (int k = 0; k < 3; k++)
        for (int r = (int)task * DET_LB_ROWS; r < r1; r++) {
            const uint8_t *src = L->rgb + (size_t)r * L->w * 3 + k;
            float *dst = L->part + ((size_t)k * L->h + r) * L->rw;
            for (int c = 0; c < L->rw; c++) {
                if (c == L->rw - 1 || L->w == 1) {
                    dst[c] = L->lut[src[(size_t)(L->w - 1) * 3]];
                } else {
                    float sx = c * L->w_scale;
                    int ix = (int)sx;
                    float dx = sx - ix;
                    dst[c] = (1 - dx) * L->lut[src[(size_t)ix * 3]] + dx * L->lut[src[(size_t)(ix + 1) * 3]];
                }
            }
        }
}

static void det_lb_rows(void *arg, int64_t task, int ith)
{
    (void)ith;
    const det_lb *L = arg;
    int ox = (L->nw - L->rw) / 2, oy = (L->nh - L->rh) / 2;
    int y1 = (int)(task + 1) * DET_LB_ROWS < L->nh ? (int)(task + 1) * DET_LB_ROWS : L->nh;
    for (int k = 0; k < 3; k++)
        for (int y = (int)task * DET_LB_ROWS; y < y1; y++) {
            float *dst = L->input + ((size_t)k * L->nh + y) * L->nw;
            int r = y - oy;
            if (r < 0 || r >= L->rh) {
                for (int c = 0; c < L->nw; c++)
                    dst[c] = .5f;
                continue;
            }
            for (int c = 0; c < ox; c++)
                dst[c] = .5f;
            for (int c = ox + L->rw; c < L->nw; c++)
                dst[c] = .5f;
            dst += ox;
            float sy = r * L->h_scale;
            int iy = (int)sy;
            float dy = sy - iy;
            const float *p0 = L->part + ((size_t)k * L->h + iy) * L->rw;
            if (r == L->rh - 1 || L->h == 1) {
                for (int c = 0; c < L->rw; c++)
                    dst[c] = (1 - dy) * p0[c];
            } else {
                for (int c = 0; c < L->rw; c++) {
                    float v = (1 - dy) * p0[c];
                    dst[c] = v + dy * p0[c + L->rw];
                }
            }
        }
}

static void det_letterbox(det_model *m, const uint8_t *rgb, int w, int h, float *part)
{
    det_lb L = {.rgb = rgb, .w = w, .h = h, .nw = m->net.w, .nh = m->net.h, .part = part, .input = m->input};
    det_fit(w, h, L.nw, L.nh, &L.rw, &L.rh);
    for (int v = 0; v < 256; v++)
        L.lut[v] = (float)v / 255.; /* darknet: (float)byte / 255. */
    L.w_scale = L.rw > 1 ? (float)(w - 1) / (L.rw - 1) : 0;
    L.h_scale = L.rh > 1 ? (float)(h - 1) / (L.rh - 1) : 0;
    pool_for(m->pool, (h + DET_LB_ROWS - 1) / DET_LB_ROWS, det_lb_cols, &L);
    pool_for(m->pool, (L.nh + DET_LB_ROWS - 1) / DET_LB_ROWS, det_lb_rows, &L);
}

/* ---- post-processing: darknet's get_network_boxes + do_nms_sort ---- */

typedef struct {
    float x, y, w, h; /* centre and size, relative to the image */
    float prob;
    int cls;
} det_cand;

typedef struct {
    det_cand *c;
    size_t n, cap;
} det_cands;

static int det_cands_push(det_cands *v, det_cand c)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        det_cand *p = realloc(v->c, cap * sizeof *p);
        if (!p)
            return CORE_ENOMEM;
        v->c = p;
        v->cap = cap;
    }
    v->c[v->n++] = c;
    return 0;
}

static int det_decode(det_model *m, int im_w, int im_h, const det_opts *o, const bool *want, det_cands *v)
{
    const det_net *net = &m->net;
    int netw = net->w, neth = net->h, new_w, new_h;
    float thresh = o->confidence;
    det_fit(im_w, im_h, netw, neth, &new_w, &new_h);
    for (int hi = 0; hi < net->n_heads; hi++) {
        const det_layer *l = &net->l[m->heads[hi]];
        const float *out = m->out[m->heads[hi]]; /* [n][classes + 5][h][w] */
        size_t hw = (size_t)l->h * l->w;
        for (size_t i = 0; i < hw; i++)
            for (int n = 0; n < l->n; n++) {
                const float *p = out + (size_t)n * (l->classes + 5) * hw + i; /* [classes + 5] stride hw */
                float obj = p[4 * hw];
                if (!(obj > thresh))
                    continue;
                int row = (int)(i / l->w), col = (int)(i % l->w);
                det_cand c = {.x = (col + p[0]) / l->w, .y = (row + p[hw]) / l->h};
                if (l->type == DET_YOLO) {
                    c.w = (float)(exp(p[2 * hw]) * l->anchors[2 * l->mask[n]] / netw);
                    c.h = (float)(exp(p[3 * hw]) * l->anchors[2 * l->mask[n] + 1] / neth);
                } else {
                    c.w = (float)(exp(p[2 * hw]) * l->anchors[2 * n] / l->w);
                    c.h = (float)(exp(p[3 * hw]) * l->anchors[2 * n + 1] / l->h);
                }
                /* undo the letterbox (darknet's correct_yolo_boxes) */
                c.x = (float)((c.x - (netw - new_w) / 2. / netw) / ((float)new_w / netw));
                c.y = (float)((c.y - (neth - new_h) / 2. / neth) / ((float)new_h / neth));
                c.w *= (float)netw / new_w;
                c.h *= (float)neth / new_h;
                if (!isfinite(c.x) || !isfinite(c.y) || !isfinite(c.w) || !isfinite(c.h))
                    continue; /* garbage weights: no box rather than NaN in the JSON */
                for (int k = 0; k < l->classes; k++) {
                    float prob = obj * p[(size_t)(5 + k) * hw];
                    if (prob > thresh && (!want || want[k])) {
                        c.prob = prob;
                        c.cls = k;
                        if (det_cands_push(v, c))
                            return CORE_ENOMEM;
                    }
                }
            }
    }
    return 0;
}

/* best first; ties by class, then position, so the order is reproducible */
static int det_cmp_prob(const void *a, const void *b)
{
    const det_cand *x = a, *y = b;
    if (x->prob != y->prob)
        return x->prob > y->prob ? -1 : 1;
    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    if (x->y != y->y)
        return x->y < y->y ? -1 : 1;
    return (x->x > y->x) - (x->x < y->x);
}

static float det_overlap(float x1, float w1, float x2, float w2)
{
    float l1 = x1 - w1 / 2, l2 = x2 - w2 / 2, r1 = x1 + w1 / 2, r2 = x2 + w2 / 2;
    return (r1 < r2 ? r1 : r2) - (l1 > l2 ? l1 : l2);
}

/* darknet's box_iou on centre/size boxes */
static float det_iou(const det_cand *a, const det_cand *b)
{
    float w = det_overlap(a->x, a->w, b->x, b->w), h = det_overlap(a->y, a->h, b->y, b->h);
    float inter = w < 0 || h < 0 ? 0 : w * h;
    float uni = a->w * a->h + b->w * b->h - inter;
    return uni > 0 ? inter / uni : 0;
}

/* Greedy NMS within each class (darknet's do_nms_sort), in place, keeping
 * at most max boxes: a box survives when no better box of its class that
 * survived overlaps it by more than thresh, so walking all boxes best first
 * and stopping at max gives the first max of the full result. */
static size_t det_nms(det_cand *c, size_t n, float thresh, size_t max)
{
    qsort(c, n, sizeof *c, det_cmp_prob);
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < max; i++) {
        bool keep = true;
        for (size_t j = 0; j < kept && keep; j++)
            keep = c[j].cls != c[i].cls || !(det_iou(&c[j], &c[i]) > thresh);
        if (keep)
            c[kept++] = c[i];
    }
    return kept;
}

int det_run(det_model *m, const uint8_t *rgb, int w, int h, const det_opts *o, det_box *out, size_t cap,
            size_t *n_out, char *msg, size_t msg_size)
{
    if (n_out)
        *n_out = 0;
    if (!m || !rgb || !o || !n_out || (cap && !out) || w < 1 || h < 1 || w > 65536 || h > 65536)
        return core_errf(CORE_EINVAL, msg, msg_size, "bad arguments");
    if (!(o->confidence >= 0 && o->confidence <= 1) || !(o->iou >= 0 && o->iou <= 1) || o->max_detections < 0 ||
        (o->n_classes && !o->classes))
        return core_errf(CORE_EINVAL, msg, msg_size, "confidence and iou must be in [0, 1], max_detections >= 0");
    int n_cls = m->net.classes, rc = CORE_ENOMEM;
    bool *want = NULL;
    det_cands v = {0};
    float *part = NULL; /* [3][h][letterboxed width] */
    if (o->n_classes) {
        if (!(want = calloc(n_cls, sizeof *want)))
            goto out;
        for (size_t i = 0; i < o->n_classes; i++) {
            if (o->classes[i] < 0 || o->classes[i] >= n_cls) {
                rc = core_errf(CORE_EINVAL, msg, msg_size, "class %d out of range (the model has %d)",
                               o->classes[i], n_cls);
                goto out;
            }
            want[o->classes[i]] = true;
        }
    }
    atomic_store_explicit(&m->abort, 0, memory_order_relaxed);
    int rw, rh;
    det_fit(w, h, m->net.w, m->net.h, &rw, &rh);
    if (!(part = malloc((size_t)3 * h * rw * sizeof *part)))
        goto out;
    det_letterbox(m, rgb, w, h, part);
    m->ran = false;
    if ((rc = det_forward(m))) {
        core_errf(rc, msg, msg_size, "aborted");
        goto out;
    }
    m->ran = true;
    if ((rc = det_decode(m, w, h, o, want, &v)))
        goto out;
    size_t n = det_nms(v.c, v.n, o->iou, (size_t)o->max_detections < cap ? (size_t)o->max_detections : cap);
    for (size_t i = 0; i < n; i++) {
        const det_cand *c = &v.c[i];
        float l = (c->x - c->w / 2) * w, r = (c->x + c->w / 2) * w;
        float t = (c->y - c->h / 2) * h, b = (c->y + c->h / 2) * h;
        l = l < 0 ? 0 : l > w ? w : l;
        r = r < 0 ? 0 : r > w ? w : r;
        t = t < 0 ? 0 : t > h ? h : t;
        b = b < 0 ? 0 : b > h ? h : b;
        out[i] = (det_box){.class_id = c->cls, .confidence = c->prob, .x = l, .y = t, .w = r - l, .h = b - t};
    }
    *n_out = n;
    rc = 0;
out:
    if (rc == CORE_ENOMEM)
        core_errf(rc, msg, msg_size, "out of memory");
    free(want);
    free(v.c);
    free(part);
    return rc;
}
