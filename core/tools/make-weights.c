/* edgegate-make-weights: random darknet .weights for a .cfg, for tests and
 * demos (Debian's darknet ships cfgs but no weights).
 *
 *   edgegate-make-weights CFG -o OUT [--seed S] [--version MAJOR.MINOR.REV]
 *
 * The layout is darknet's (see core/detect.h); the header's "seen" is 64
 * bits when major*10+minor >= 2 (default version 0.2.0). The values keep
 * activations in a sane range through any depth, so that a forward pass
 * produces a spread of box scores: He-scaled weights (variance 2/fan_in,
 * right for leaky units; 0.1/fan_in on residual branches), batch norm with
 * mean ~0, variance ~1, scale ~1, small biases; the convolution feeding a
 * yolo/region layer gets logits of spread ~1 (wider for softmax classes).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "det_net.h"

static uint64_t mw_state;

static double mw_uniform(void) /* (0, 1) */
{
    uint64_t z = (mw_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) / 9007199254740992.0;
}

static float mw_normal(double sd)
{
    return (float)(sd * sqrt(-2 * log(mw_uniform())) * cos(6.283185307179586 * mw_uniform()));
}

static int mw_write(FILE *f, const float *v, size_t n)
{
    return fwrite(v, sizeof *v, n, f) == n ? 0 : -1;
}

static void mw_usage(FILE *f)
{
    fprintf(f, "usage: edgegate-make-weights CFG -o OUT [--seed S] [--version MAJOR.MINOR.REV]\n");
}

int main(int argc, char **argv)
{
    const char *out = NULL;
    uint64_t seed = 1;
    int32_t ver[3] = {0, 2, 0};
    static const struct option lo[] = {{"seed", 1, 0, 's'}, {"version", 1, 0, 'v'}, {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'v':
            if (sscanf(optarg, "%d.%d.%d", &ver[0], &ver[1], &ver[2]) != 3) {
                fprintf(stderr, "edgegate-make-weights: --version wants MAJOR.MINOR.REV\n");
                return 2;
            }
            break;
        case 'h': mw_usage(stdout); return 0;
        default: mw_usage(stderr); return 2;
        }
    }
    if (!out || optind != argc - 1) {
        mw_usage(stderr);
        return 2;
    }
    const char *cfg = argv[optind];
    FILE *f = fopen(cfg, "rb");
    if (!f) {
        fprintf(stderr, "edgegate-make-weights: %s: %s\n", cfg, strerror(errno));
        return 1;
    }
    static char text[(4 << 20) + 1];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    char msg[512] = "";
    det_net net;
    int rc = det_net_parse(text, len, &net, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "edgegate-make-weights: %s: %s: %s\n", cfg, core_strerror(rc), msg);
        return 1;
    }
    mw_state = seed * 0x2545f4914f6cdd1dull + 1;
    float *buf = NULL;
    size_t cap = 0;
    if (!(f = fopen(out, "wb"))) {
        fprintf(stderr, "edgegate-make-weights: %s: %s\n", out, strerror(errno));
        det_net_free(&net);
        return 1;
    }
    bool wide = (int64_t)ver[0] * 10 + ver[1] >= 2 && ver[0] < 1000 && ver[1] < 1000;
    uint64_t seen = 0;
    int bad = fwrite(ver, sizeof ver, 1, f) != 1 || fwrite(&seen, wide ? 8 : 4, 1, f) != 1;
    for (int i = 0; i < net.n && !bad; i++) {
        const det_layer *l = &net.l[i];
        if (l->type != DET_CONV)
            continue;
        size_t n = (size_t)l->out_c, fan_in = (size_t)(l->c / l->groups) * l->size * l->size,
               need = n * 4 + n * fan_in;
        if (need > cap) {
            free(buf);
            if (!(buf = malloc(need * sizeof *buf))) {
                bad = 1;
                break;
            }
            cap = need;
        }
        float *bias = buf, *scale = buf + n, *mean = buf + 2 * n, *var = buf + 3 * n,
              *w = l->bn ? buf + 4 * n : buf + n;
        /* the conv feeding a yolo/region layer gets logits of spread ~1
         * (box sizes near the anchors, a few confident cells) */
        bool head = i + 1 < net.n && (net.l[i + 1].type == DET_YOLO || net.l[i + 1].type == DET_REGION);
        for (size_t j = 0; j < n; j++) {
            bias[j] = head ? 0 : mw_normal(0.1);
            scale[j] = 1 + mw_normal(0.1);
            mean[j] = mw_normal(0.1);
            var[j] = (float)(0.5 + mw_uniform());
        }
        /* a softmax over many classes needs spread-out logits to pick one */
        const det_layer *h = head ? &net.l[i + 1] : NULL;
        /* a residual branch adds little, so that deep stacks of them do not explode */
        bool res = i + 1 < net.n && net.l[i + 1].type == DET_SHORTCUT;
        for (size_t r = 0; r < n; r++) {
            bool cls = h && h->type == DET_REGION && h->softmax && r % (size_t)(h->classes + 5) >= 5;
            double sd = sqrt((head ? (cls ? 4.0 : 0.25) : res ? 0.1 : 2.0) / fan_in);
            for (size_t j = 0; j < fan_in; j++)
                w[r * fan_in + j] = mw_normal(sd);
        }
        bad = mw_write(f, buf, l->bn ? n * 4 + n * fan_in : n + n * fan_in);
    }
    if (fclose(f) || bad) {
        fprintf(stderr, "edgegate-make-weights: %s: write failed\n", out);
        free(buf);
        det_net_free(&net);
        return 1;
    }
    fprintf(stderr, "wrote %zu parameters (%.1f MB) for %d layers to %s\n", net.n_params,
            net.n_params * 4 / 1e6, net.n, out);
    free(buf);
    det_net_free(&net);
    return 0;
}
