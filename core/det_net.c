/* det_net.c: darknet network descriptions (.cfg) and weights (.weights).
 *
 * .cfg: sections parsed by det_cfg.c; the first is [net] (or [network])
 * with width, height, channels; every later section is one layer, numbered
 * from 0, and layers refer to each other by that number (negative: relative
 * to the referring layer). Only options that change inference are read;
 * training-only options are skipped; any other option is refused, so a
 * network is never run with math we do not do.
 *
 * .weights: int32 major, minor, revision; "seen" as uint64 when
 * major*10+minor >= 2 (and both < 1000, darknet's transposed-format marker)
 * else uint32; then per [convolutional] in order: biases[n], and when
 * batch_normalize=1 scales[n], rolling_mean[n], rolling_variance[n]; then
 * weights[n][c/groups][size][size]; float32 little-endian; nothing after.
 */
#include "det_net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "det_cfg.h"

enum { DET_MAX_DIM = 16384, DET_MAX_CH = 65536, DET_MAX_SIZE = 32, DET_MAX_LAYERS = 4096 };
#define DET_MAX_OUT ((int64_t)1 << 28) /* floats in one layer's output */

/* Options darknet reads only for training (or for its own bookkeeping). */
static const char *const det_train_keys[] = {
    "jitter", "ignore_thresh", "truth_thresh", "random", "rescore", "bias_match", "absolute", "thresh",
    "object_scale", "noobject_scale", "class_scale", "coord_scale", "iou_thresh", "iou_normalizer",
    "cls_normalizer", "obj_normalizer", "iou_loss", "iou_thresh_kind", "max", "resize", "beta_nms",
    "counters_per_class", "label_smooth_eps", "max_delta", "focal_loss", "stopbackward", "dontload",
    "dontloadscales", "learning_rate", "train_only_bn", "uc_normalizer", "objectness_smooth",
    "delta_normalizer", "embedding_layer", "track_history_size", "sim_thresh", "dets_for_track",
    "dets_for_show", "track_ciou_norm", "show_details"};

static bool det_is_train_key(const char *k)
{
    for (size_t i = 0; i < sizeof det_train_keys / sizeof *det_train_keys; i++)
        if (!strcmp(k, det_train_keys[i]))
            return true;
    return false;
}

static int det_parse_act(det_cfg_sect *s, const char *def, det_act *act, char *msg, size_t msg_size)
{
    static const char *const names[] = {"linear", "leaky", "relu", "logistic", "mish"};
    const char *v = det_cfg_str(s, "activation");
    if (!v)
        v = def;
    for (int i = 0; i < 5; i++)
        if (!strcmp(v, names[i])) {
            *act = (det_act)i;
            return 0;
        }
    return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "line %d: [%s] activation=%.40s is not supported",
                     s->line, s->type, v);
}

/* An option whose only supported value is its default. */
static int det_need_int(det_cfg_sect *s, const char *key, int def, char *msg, size_t msg_size)
{
    int v, rc = det_cfg_int(s, key, def, &v, msg, msg_size);
    if (!rc && v != def)
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "line %d: [%s] %s=%d is not supported", s->line,
                       s->type, key, v);
    return rc;
}

static int det_bad(int err, det_cfg_sect *s, char *msg, size_t msg_size, const char *what)
{
    return core_errf(err, msg, msg_size, "line %d: [%s] %s", s->line, s->type, what);
}

/* Resolves a layer reference of layer i (negative: relative). */
static int det_ref(int i, int v, int *out)
{
    int k = v < 0 ? i + v : v;
    if (k < 0 || k >= i)
        return -1;
    *out = k;
    return 0;
}

static int det_parse_conv(det_cfg_sect *s, det_layer *l, char *msg, size_t msg_size)
{
    int rc, pad, padding, bn;
    if ((rc = det_cfg_int(s, "filters", 1, &l->out_c, msg, msg_size)) ||
        (rc = det_cfg_int(s, "size", 1, &l->size, msg, msg_size)) ||
        (rc = det_cfg_int(s, "stride", 1, &l->stride, msg, msg_size)) ||
        (rc = det_cfg_int(s, "pad", 0, &pad, msg, msg_size)) ||
        (rc = det_cfg_int(s, "padding", 0, &padding, msg, msg_size)) ||
        (rc = det_cfg_int(s, "groups", 1, &l->groups, msg, msg_size)) ||
        (rc = det_cfg_int(s, "batch_normalize", 0, &bn, msg, msg_size)) ||
        (rc = det_parse_act(s, "logistic", &l->act, msg, msg_size)) ||
        (rc = det_need_int(s, "dilation", 1, msg, msg_size)) || (rc = det_need_int(s, "binary", 0, msg, msg_size)) ||
        (rc = det_need_int(s, "xnor", 0, msg, msg_size)) || (rc = det_need_int(s, "flipped", 0, msg, msg_size)))
        return rc;
    if (l->out_c < 1 || l->out_c > DET_MAX_CH)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "filters out of range");
    if (l->size < 1 || l->size > DET_MAX_SIZE || l->stride < 1 || l->stride > DET_MAX_SIZE)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "size or stride out of range");
    if (bn != 0 && bn != 1)
        return det_bad(CORE_EUNSUPPORTED, s, msg, msg_size, "batch_normalize must be 0 or 1");
    l->bn = bn;
    l->pad = pad ? l->size / 2 : padding;
    if (l->pad < 0 || l->pad > DET_MAX_SIZE)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "padding out of range");
    if (l->groups < 1 || l->c % l->groups || l->out_c % l->groups)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "groups must divide the input channels and filters");
    int64_t oh = ((int64_t)l->h + 2 * l->pad - l->size), ow = ((int64_t)l->w + 2 * l->pad - l->size);
    if (oh < 0 || ow < 0)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "kernel larger than its padded input");
    l->out_h = (int)(oh / l->stride + 1);
    l->out_w = (int)(ow / l->stride + 1);
    return 0;
}

static int det_parse_maxpool(det_cfg_sect *s, det_layer *l, char *msg, size_t msg_size)
{
    int rc;
    if ((rc = det_cfg_int(s, "stride", 1, &l->stride, msg, msg_size)) ||
        (rc = det_cfg_int(s, "size", l->stride, &l->size, msg, msg_size)) ||
        (rc = det_cfg_int(s, "padding", l->size - 1, &l->pad, msg, msg_size)))
        return rc;
    if (l->size < 1 || l->size > DET_MAX_SIZE || l->stride < 1 || l->stride > DET_MAX_SIZE ||
        l->pad < 0 || l->pad > DET_MAX_SIZE)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "size, stride or padding out of range");
    int64_t oh = (int64_t)l->h + l->pad - l->size, ow = (int64_t)l->w + l->pad - l->size;
    if (oh < 0 || ow < 0)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "window larger than its padded input");
    l->out_c = l->c;
    l->out_h = (int)(oh / l->stride + 1);
    l->out_w = (int)(ow / l->stride + 1);
    return 0;
}

static int det_parse_route(det_cfg_sect *s, det_layer *ls, int i, char *msg, size_t msg_size)
{
    det_layer *l = &ls[i];
    int rc;
    if ((rc = det_cfg_ints(s, "layers", &l->from, &l->n_from, msg, msg_size)) ||
        (rc = det_cfg_int(s, "groups", 1, &l->groups, msg, msg_size)) ||
        (rc = det_cfg_int(s, "group_id", 0, &l->group_id, msg, msg_size)))
        return rc;
    if (!l->n_from)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "layers= is required");
    if (l->groups < 1 || l->group_id < 0 || l->group_id >= l->groups)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "groups/group_id out of range");
    l->out_c = 0;
    for (int j = 0; j < l->n_from; j++) {
        if (det_ref(i, l->from[j], &l->from[j]))
            return det_bad(CORE_EFORMAT, s, msg, msg_size, "layers= refers to a layer not before it");
        const det_layer *f = &ls[l->from[j]];
        if (j && (f->out_h != l->out_h || f->out_w != l->out_w))
            return det_bad(CORE_EFORMAT, s, msg, msg_size, "routed layers differ in width or height");
        if (f->out_c % l->groups)
            return det_bad(CORE_EFORMAT, s, msg, msg_size, "groups does not divide a routed layer's channels");
        l->out_h = f->out_h;
        l->out_w = f->out_w;
        l->out_c += f->out_c / l->groups;
    }
    return 0;
}

static int det_parse_shortcut(det_cfg_sect *s, det_layer *ls, int i, char *msg, size_t msg_size)
{
    det_layer *l = &ls[i];
    int rc, from;
    if ((rc = det_cfg_int(s, "from", 0, &from, msg, msg_size)) ||
        (rc = det_parse_act(s, "linear", &l->act, msg, msg_size)) ||
        (rc = det_cfg_float(s, "alpha", 1, &l->alpha, msg, msg_size)) ||
        (rc = det_cfg_float(s, "beta", 1, &l->beta, msg, msg_size)))
        return rc;
    if (!(l->from = malloc(sizeof *l->from)))
        return CORE_ENOMEM;
    l->n_from = 1;
    if (!det_cfg_str(s, "from") || det_ref(i, from, &l->from[0]))
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "from= must name a layer before it");
    const det_layer *f = &ls[l->from[0]];
    if (f->out_c != l->c || f->out_h != l->h || f->out_w != l->w)
        return det_bad(CORE_EUNSUPPORTED, s, msg, msg_size, "adding layers of different shapes");
    l->out_c = l->c;
    l->out_h = l->h;
    l->out_w = l->w;
    return 0;
}

static int det_parse_upsample(det_cfg_sect *s, det_layer *l, char *msg, size_t msg_size)
{
    int rc;
    if ((rc = det_cfg_int(s, "stride", 2, &l->stride, msg, msg_size)) ||
        (rc = det_cfg_float(s, "scale", 1, &l->alpha, msg, msg_size)))
        return rc;
    if (l->stride < 1 || l->stride > DET_MAX_SIZE)
        return det_bad(l->stride < 0 ? CORE_EUNSUPPORTED : CORE_EFORMAT, s, msg, msg_size,
                       "stride out of range (downsampling is not supported)");
    l->out_c = l->c;
    l->out_h = l->h * l->stride;
    l->out_w = l->w * l->stride;
    return 0;
}

static int det_parse_head(det_cfg_sect *s, det_layer *l, char *msg, size_t msg_size)
{
    bool yolo = l->type == DET_YOLO;
    int rc, n_anchors, coords = 4, softmax = 0;
    if ((rc = det_cfg_int(s, "classes", 20, &l->classes, msg, msg_size)) ||
        (rc = det_cfg_int(s, "num", 1, &l->total, msg, msg_size)) ||
        (rc = det_cfg_floats(s, "anchors", &l->anchors, &n_anchors, msg, msg_size)))
        return rc;
    if (l->classes < 1 || l->classes > DET_MAX_CH || l->total < 1 || l->total > DET_MAX_CH)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "classes or num out of range");
    if (n_anchors < 2 * l->total)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "fewer than num anchor pairs");
    l->n = l->total;
    if (yolo) {
        const char *nms = det_cfg_str(s, "nms_kind");
        if ((rc = det_cfg_ints(s, "mask", &l->mask, &l->n, msg, msg_size)) ||
            (rc = det_cfg_float(s, "scale_x_y", 1, &l->scale_x_y, msg, msg_size)) ||
            (rc = det_need_int(s, "new_coords", 0, msg, msg_size)))
            return rc;
        if (nms && strcmp(nms, "greedynms"))
            return det_bad(CORE_EUNSUPPORTED, s, msg, msg_size, "nms_kind other than greedynms");
        if (!l->mask) {
            if (!(l->mask = malloc(l->total * sizeof *l->mask)))
                return CORE_ENOMEM;
            for (int j = 0; j < l->total; j++)
                l->mask[j] = j;
            l->n = l->total;
        }
        for (int j = 0; j < l->n; j++)
            if (l->mask[j] < 0 || l->mask[j] >= l->total)
                return det_bad(CORE_EFORMAT, s, msg, msg_size, "mask refers to an anchor past num");
    } else {
        if ((rc = det_cfg_int(s, "coords", 4, &coords, msg, msg_size)) ||
            (rc = det_cfg_int(s, "softmax", 0, &softmax, msg, msg_size)) ||
            (rc = det_need_int(s, "background", 0, msg, msg_size)))
            return rc;
        if (coords != 4 || det_cfg_str(s, "tree") || det_cfg_str(s, "map"))
            return det_bad(CORE_EUNSUPPORTED, s, msg, msg_size, "coords other than 4, tree or map");
        l->softmax = softmax != 0;
    }
    if ((int64_t)l->n * (l->classes + 5) != l->c)
        return det_bad(CORE_EFORMAT, s, msg, msg_size,
                       "input channels are not anchors x (classes + 5): check filters of the layer before");
    l->out_c = l->c;
    l->out_h = l->h;
    l->out_w = l->w;
    return 0;
}

static const struct {
    const char *name;
    det_ltype type;
} det_types[] = {{"convolutional", DET_CONV}, {"conv", DET_CONV},      {"maxpool", DET_MAXPOOL},
                 {"max", DET_MAXPOOL},        {"route", DET_ROUTE},    {"shortcut", DET_SHORTCUT},
                 {"upsample", DET_UPSAMPLE},  {"yolo", DET_YOLO},      {"region", DET_REGION}};

static int det_parse_layer(det_cfg_sect *s, det_net *net, int i, char *msg, size_t msg_size)
{
    det_layer *l = &net->l[i];
    int k = -1;
    for (size_t j = 0; j < sizeof det_types / sizeof *det_types; j++)
        if (!strcmp(s->type, det_types[j].name))
            k = (int)j;
    if (k < 0)
        return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "line %d: layer type [%.40s] is not supported",
                         s->line, s->type);
    l->type = det_types[k].type;
    l->line = s->line;
    l->alpha = l->beta = l->scale_x_y = 1;
    l->groups = 1;
    if (i) {
        l->c = net->l[i - 1].out_c;
        l->h = net->l[i - 1].out_h;
        l->w = net->l[i - 1].out_w;
    } else {
        l->c = net->c;
        l->h = net->h;
        l->w = net->w;
    }
    int rc;
    switch (l->type) {
    case DET_CONV: rc = det_parse_conv(s, l, msg, msg_size); break;
    case DET_MAXPOOL: rc = det_parse_maxpool(s, l, msg, msg_size); break;
    case DET_ROUTE: rc = det_parse_route(s, net->l, i, msg, msg_size); break;
    case DET_SHORTCUT: rc = det_parse_shortcut(s, net->l, i, msg, msg_size); break;
    case DET_UPSAMPLE: rc = det_parse_upsample(s, l, msg, msg_size); break;
    default: rc = det_parse_head(s, l, msg, msg_size); break;
    }
    if (rc)
        return rc;
    if (l->out_c < 1 || l->out_h < 1 || l->out_w < 1 || l->out_h > DET_MAX_DIM || l->out_w > DET_MAX_DIM ||
        (int64_t)l->out_c * l->out_h * l->out_w > DET_MAX_OUT)
        return det_bad(CORE_EFORMAT, s, msg, msg_size, "output too large");
    for (int j = 0; j < s->n_opts; j++)
        if (!s->opts[j].used && !det_is_train_key(s->opts[j].key))
            return core_errf(CORE_EUNSUPPORTED, msg, msg_size, "line %d: [%s] option '%.40s' is not supported",
                             s->opts[j].line, s->type, s->opts[j].key);
    if (l->type == DET_CONV) {
        size_t k2 = (size_t)l->size * l->size;
        net->n_params += (size_t)l->out_c * (l->bn ? 4 : 1) + (size_t)l->out_c * (l->c / l->groups) * k2;
        net->flops += 2.0 * l->out_c * (l->c / l->groups) * k2 * l->out_h * l->out_w;
    }
    if (l->type == DET_YOLO || l->type == DET_REGION) {
        if (net->n_heads && net->classes != l->classes)
            return det_bad(CORE_EUNSUPPORTED, s, msg, msg_size, "heads with different class counts");
        net->classes = l->classes;
        net->n_heads++;
    }
    return 0;
}

void det_net_free(det_net *net)
{
    if (!net)
        return;
    for (int i = 0; i < net->n; i++) {
        free(net->l[i].from);
        free(net->l[i].mask);
        free(net->l[i].anchors);
    }
    free(net->l);
    free(net->params);
    memset(net, 0, sizeof *net);
}

int det_net_parse(const char *text, size_t len, det_net *net, char *msg, size_t msg_size)
{
    det_cfg cfg;
    memset(net, 0, sizeof *net);
    int rc = det_cfg_parse(text, len, &cfg, msg, msg_size);
    if (rc)
        return rc;
    det_cfg_sect *s = cfg.sects;
    if (!cfg.n_sects || (strcmp(s->type, "net") && strcmp(s->type, "network"))) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "the cfg must start with [net]");
        goto out;
    }
    if ((rc = det_cfg_int(s, "width", 0, &net->w, msg, msg_size)) ||
        (rc = det_cfg_int(s, "height", 0, &net->h, msg, msg_size)) ||
        (rc = det_cfg_int(s, "channels", 0, &net->c, msg, msg_size)))
        goto out;
    if (net->w < 1 || net->h < 1 || net->w > DET_MAX_DIM || net->h > DET_MAX_DIM) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "line %d: [net] width and height must be 1..%d", s->line,
                       DET_MAX_DIM);
        goto out;
    }
    if (net->c != 3) {
        rc = core_errf(CORE_EUNSUPPORTED, msg, msg_size, "line %d: [net] channels=%d (only RGB, 3)", s->line,
                       net->c);
        goto out;
    }
    int n = cfg.n_sects - 1;
    if (n < 1 || n > DET_MAX_LAYERS) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "the cfg has %d layers (1..%d)", n, DET_MAX_LAYERS);
        goto out;
    }
    if (!(net->l = calloc((size_t)n, sizeof *net->l))) {
        rc = CORE_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        net->n = i + 1;
        if ((rc = det_parse_layer(&cfg.sects[i + 1], net, i, msg, msg_size)))
            goto out;
    }
    if (!net->n_heads)
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "the cfg has no [yolo] or [region] layer");
out:
    det_cfg_free(&cfg);
    if (rc)
        det_net_free(net);
    return rc;
}

static const char *det_type_name(det_ltype t)
{
    static const char *const names[] = {"convolutional", "maxpool", "route", "shortcut", "upsample", "yolo",
                                        "region"};
    return names[t];
}

int det_net_load_weights(det_net *net, const uint8_t *data, size_t len, char *msg, size_t msg_size)
{
    int32_t ver[3];
    if (len < 16)
        return core_errf(CORE_EFORMAT, msg, msg_size, "weights file too short for its header (%zu bytes)", len);
    memcpy(ver, data, sizeof ver);
    size_t hdr = (int64_t)ver[0] * 10 + ver[1] >= 2 && ver[0] < 1000 && ver[1] < 1000 ? 20 : 16;
    size_t avail = len >= hdr ? (len - hdr) / 4 : 0, off = 0;
    if (len < hdr || (len - hdr) % 4 || avail != net->n_params) {
        /* name the first layer that does not fit */
        for (int i = 0; i < net->n; i++) {
            det_layer *l = &net->l[i];
            if (l->type != DET_CONV)
                continue;
            size_t need = (size_t)l->out_c * (l->bn ? 4 : 1) +
                          (size_t)l->out_c * (l->c / l->groups) * l->size * l->size;
            if (len < hdr || off + need > avail)
                return core_errf(CORE_EFORMAT, msg, msg_size,
                                 "weights file truncated in layer %d ([%s], cfg line %d): %zu bytes, need %zu",
                                 i, det_type_name(l->type), l->line, len,
                                 hdr + 4 * (net->n_params));
            off += need;
        }
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "weights file has %zu bytes after the last layer (%zu bytes, the cfg needs %zu)",
                         len - hdr - 4 * net->n_params, len, hdr + 4 * net->n_params);
    }
    free(net->params);
    if (!(net->params = malloc(net->n_params * sizeof(float) + 1)))
        return core_errf(CORE_ENOMEM, msg, msg_size, "weights: %zu floats", net->n_params);
    memcpy(net->params, data + hdr, net->n_params * sizeof(float));
    for (int i = 0; i < net->n; i++) {
        det_layer *l = &net->l[i];
        if (l->type != DET_CONV)
            continue;
        size_t n = (size_t)l->out_c, per = (size_t)(l->c / l->groups) * l->size * l->size;
        l->bias = net->params + off;
        l->weights = l->bias + n * (l->bn ? 4 : 1);
        if (l->bn) {
            /* darknet: (x - mean) / (sqrt(var) + 1e-6) * scale + bias */
            const float *scale = l->bias + n, *mean = l->bias + 2 * n, *var = l->bias + 3 * n;
            for (size_t f = 0; f < n; f++) {
                float k = scale[f] / (sqrtf(var[f]) + .000001f);
                for (size_t j = 0; j < per; j++)
                    l->weights[f * per + j] *= k;
                l->bias[f] -= mean[f] * k;
            }
        }
        off += n * (l->bn ? 4 : 1) + n * per;
    }
    return 0;
}
