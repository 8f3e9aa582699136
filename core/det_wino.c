/* det_wino.c: Winograd F(2x2, 3x3) convolutions (see det_wino.h).
 *
 *   B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0  1 -1 -1 |
 *         | 0 -1  1  0 |       | 1/2 -1/2  1/2|
 *         | 0  1  0 -1 |       | 0    0    1  |
 *
 * Scratch: V [16][ic][tiles] (transformed input tiles), then
 * M [16][oc][tiles] (their products with the transformed weights).
 */
#include "det_wino.h"

#include <stdlib.h>
#include <string.h>

#include "core_err.h"

struct det_wino {
    int oc, ic;
    sgemm_mat *u[16]; /* U[xi] = (G g G^T)[xi]: [oc][ic] each */
};

void det_wino_free(det_wino *wi)
{
    if (!wi)
        return;
    for (int i = 0; i < 16; i++)
        sgemm_free(wi->u[i]);
    free(wi);
}

const char *det_wino_isa(const det_wino *wi)
{
    return sgemm_isa(wi->u[0]);
}

int det_wino_new(const float *w, int oc, int ic, const char *isa, det_wino **out)
{
    *out = NULL;
    if (!w || oc < 1 || ic < 1)
        return CORE_EINVAL;
    det_wino *wi = calloc(1, sizeof *wi);
    float *u = malloc((size_t)16 * oc * ic * sizeof *u); /* [16][oc][ic] */
    int rc = CORE_ENOMEM;
    if (!wi || !u)
        goto out;
    wi->oc = oc;
    wi->ic = ic;
    size_t plane = (size_t)oc * ic;
    for (size_t f = 0; f < plane; f++) {
        const float *g = w + f * 9; /* [3][3] */
        float t[4][3];              /* G g */
        for (int c = 0; c < 3; c++) {
            t[0][c] = g[c];
            t[1][c] = .5f * (g[c] + g[3 + c] + g[6 + c]);
            t[2][c] = .5f * (g[c] - g[3 + c] + g[6 + c]);
            t[3][c] = g[6 + c];
        }
        for (int r = 0; r < 4; r++) { /* (G g) G^T */
            u[(r * 4 + 0) * plane + f] = t[r][0];
            u[(r * 4 + 1) * plane + f] = .5f * (t[r][0] + t[r][1] + t[r][2]);
            u[(r * 4 + 2) * plane + f] = .5f * (t[r][0] - t[r][1] + t[r][2]);
            u[(r * 4 + 3) * plane + f] = t[r][2];
        }
    }
    for (int i = 0; i < 16; i++)
        if ((rc = sgemm_pack(u + i * plane, oc, ic, ic, isa, &wi->u[i])))
            goto out;
    rc = 0;
out:
    free(u);
    if (rc)
        det_wino_free(wi);
    else
        *out = wi;
    return rc;
}

size_t det_wino_work(const det_wino *wi, int h, int w)
{
    size_t tiles = (size_t)((h + 1) / 2) * ((w + 1) / 2);
    return 16 * tiles * ((size_t)wi->ic + wi->oc);
}

typedef struct {
    const det_wino *wi;
    const float *x, *bias;
    float *y, *v, *m;
    int h, w, th, tw;
    size_t tiles;
    sgemm_act act;
} det_wino_job;

/* B^T d B of every 4x4 input tile of channel c (zero outside the image). */
static void det_wino_in(void *arg, int64_t c, int ith)
{
    (void)ith;
    const det_wino_job *J = arg;
    const float *x = J->x + (size_t)c * J->h * J->w; /* [h][w] */
    size_t stride = (size_t)J->wi->ic * J->tiles;    /* between the 16 V planes */
    float *v = J->v + (size_t)c * J->tiles;           /* V[xi][c][tile] */
    for (int ty = 0; ty < J->th; ty++)
        for (int tx = 0; tx < J->tw; tx++) {
            float d[4][4], t[4][4];
            int y0 = 2 * ty - 1, x0 = 2 * tx - 1;
            for (int r = 0; r < 4; r++)
                for (int k = 0; k < 4; k++) {
                    int iy = y0 + r, ix = x0 + k;
                    d[r][k] = iy >= 0 && iy < J->h && ix >= 0 && ix < J->w ? x[(size_t)iy * J->w + ix] : 0;
                }
            for (int k = 0; k < 4; k++) {
                t[0][k] = d[0][k] - d[2][k];
                t[1][k] = d[1][k] + d[2][k];
                t[2][k] = d[2][k] - d[1][k];
                t[3][k] = d[1][k] - d[3][k];
            }
            float *o = v + (size_t)ty * J->tw + tx;
            for (int r = 0; r < 4; r++) {
                o[(r * 4 + 0) * stride] = t[r][0] - t[r][2];
                o[(r * 4 + 1) * stride] = t[r][1] + t[r][2];
                o[(r * 4 + 2) * stride] = t[r][2] - t[r][1];
                o[(r * 4 + 3) * stride] = t[r][1] - t[r][3];
            }
        }
}

/* M[xi] = U[xi] V[xi]: one single-threaded GEMM per task. */
static void det_wino_gemm(void *arg, int64_t xi, int ith)
{
    (void)ith;
    const det_wino_job *J = arg;
    int n = (int)J->tiles;
    sgemm_run(J->wi->u[xi], J->v + (size_t)xi * J->wi->ic * J->tiles, n, n, NULL, SGEMM_ACT_LINEAR,
              J->m + (size_t)xi * J->wi->oc * J->tiles, n, NULL);
}

static float det_wino_act(float x, sgemm_act act)
{
    return act == SGEMM_ACT_LEAKY ? (x > 0 ? x : .1f * x) : act == SGEMM_ACT_RELU ? (x > 0 ? x : 0) : x;
}

/* A^T m A of every tile of output channel o, plus bias and activation. */
static void det_wino_out(void *arg, int64_t o, int ith)
{
    (void)ith;
    const det_wino_job *J = arg;
    size_t stride = (size_t)J->wi->oc * J->tiles;   /* between the 16 M planes */
    const float *m = J->m + (size_t)o * J->tiles;    /* M[xi][o][tile] */
    float *y = J->y + (size_t)o * J->h * J->w;       /* [h][w] */
    float b = J->bias ? J->bias[o] : 0;
    for (int ty = 0; ty < J->th; ty++)
        for (int tx = 0; tx < J->tw; tx++) {
            const float *p = m + (size_t)ty * J->tw + tx;
            float s[2][4];
            for (int k = 0; k < 4; k++) {
                float m0 = p[(0 * 4 + k) * stride], m1 = p[(1 * 4 + k) * stride];
                float m2 = p[(2 * 4 + k) * stride], m3 = p[(3 * 4 + k) * stride];
                s[0][k] = m0 + m1 + m2;
                s[1][k] = m1 - m2 - m3;
            }
            for (int r = 0; r < 2; r++) {
                int oy = 2 * ty + r;
                if (oy >= J->h)
                    break;
                float *row = y + (size_t)oy * J->w + 2 * tx;
                row[0] = det_wino_act(s[r][0] + s[r][1] + s[r][2] + b, J->act);
                if (2 * tx + 1 < J->w)
                    row[1] = det_wino_act(s[r][1] - s[r][2] - s[r][3] + b, J->act);
            }
        }
}

void det_wino_run(const det_wino *wi, const float *x, int h, int w, const float *bias, sgemm_act act,
                  float *y, float *work, pool *pl)
{
    det_wino_job J = {.wi = wi, .x = x, .bias = bias, .y = y, .h = h, .w = w, .th = (h + 1) / 2,
                      .tw = (w + 1) / 2, .act = act};
    J.tiles = (size_t)J.th * J.tw;
    J.v = work;
    J.m = work + 16 * J.tiles * wi->ic;
    pool_for(pl, wi->ic, det_wino_in, &J);
    pool_for(pl, 16, det_wino_gemm, &J);
    pool_for(pl, wi->oc, det_wino_out, &J);
}
