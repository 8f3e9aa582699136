/* det_net.h: a darknet network description built from a .cfg, with the
 * shapes of every layer, and its .weights reader (format in detect.h).
 * Internal to the detector (detect.c runs it); separate so that the fuzz
 * harness reaches the parsers without running a network.
 *
 * Ownership: det_net_parse() fills a det_net freed by det_net_free()
 * (zeroed det_net is safe). Weights live in the net after
 * det_net_load_weights() until det_net_free().
 */
#ifndef DET_NET_H
#define DET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { DET_CONV, DET_MAXPOOL, DET_ROUTE, DET_SHORTCUT, DET_UPSAMPLE, DET_YOLO, DET_REGION } det_ltype;
typedef enum { DET_LINEAR, DET_LEAKY, DET_RELU, DET_LOGISTIC, DET_MISH } det_act;

typedef struct {
    det_ltype type;
    int line;                /* cfg line of the section header */
    int c, h, w;             /* input shape [c][h][w] */
    int out_c, out_h, out_w; /* output shape [out_c][out_h][out_w] */
    det_act act;             /* conv, shortcut */
    /* conv: filters = out_c; maxpool: size, stride, pad; upsample: stride */
    int size, stride, pad, groups;
    bool bn;
    float *weights;          /* conv: [out_c][c/groups][size][size], BN folded in */
    float *bias;             /* conv: [out_c] */
    /* route: the layers concatenated, each sliced to channel group group_id of groups */
    int *from, n_from, group_id;
    float alpha, beta;       /* shortcut: out = alpha * prev + beta * from[0]; upsample: alpha scale */
    /* yolo/region heads: n anchors per cell (yolo: mask[n] of the total), classes */
    int n, classes, total, *mask;
    float *anchors;          /* [total][2]: yolo in network pixels, region in cells */
    float scale_x_y;         /* yolo (v4): xy = logistic * s - (s - 1) / 2 */
    bool softmax;            /* region */
} det_layer;

typedef struct {
    int w, h, c;             /* network input [c][h][w] */
    det_layer *l;
    int n;
    int n_heads, classes;    /* yolo/region layers; all share the class count */
    size_t n_params;         /* floats the weights file holds after its header */
    float *params;           /* [n_params]: every conv's bias and weights point in here */
    double flops;            /* multiply-adds x 2 of one forward pass */
} det_net;

/* CORE_EFORMAT for a malformed cfg or impossible shapes, CORE_EUNSUPPORTED
 * for a layer type or option value not implemented; msg names the line. */
int det_net_parse(const char *text, size_t len, det_net *net, char *msg, size_t msg_size);
/* data: the whole .weights file. CORE_EFORMAT when its size is not what the
 * cfg needs (msg names the layer), CORE_ENOMEM. */
int det_net_load_weights(det_net *net, const uint8_t *data, size_t len, char *msg, size_t msg_size);
void det_net_free(det_net *net);

#endif
