/* darknet_ref: the reference for the detector tests, darknet itself
 * (Debian's libdarknet.so, pjreddie's C implementation, 2018).
 *
 *   darknet_ref CFG WEIGHTS IMAGE THRESH NMS OUT.bin [REPS]
 *
 * Runs what `darknet detector test` runs: load_image_color,
 * letterbox_image, network_predict, get_network_boxes (relative boxes,
 * hier 0.5), do_nms_sort, and writes OUT.bin (little-endian):
 *   int32 n_heads; per yolo/region layer in cfg order: int32 c, h, w,
 *     float32 output[c][h][w] (the layer's output after network_predict);
 *   int32 image w, h, n_boxes; per box (one per detection and class with
 *     prob > THRESH): int32 class, float32 prob, x, y, w, h (pixels,
 *     top-left corner, clipped to the image).
 * With REPS > 0 it also times REPS forward passes and prints the median
 * in milliseconds on stdout (threads: darknet's own, OMP_NUM_THREADS).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "darknet.h"

static double ref_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int ref_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float ref_clip(float v, float hi)
{
    return v < 0 ? 0 : v > hi ? hi : v;
}

int main(int argc, char **argv)
{
    if (argc != 7 && argc != 8) {
        fprintf(stderr, "usage: darknet_ref CFG WEIGHTS IMAGE THRESH NMS OUT.bin [REPS]\n");
        return 2;
    }
    float thresh = strtof(argv[4], NULL), nms = strtof(argv[5], NULL);
    int reps = argc == 8 ? atoi(argv[7]) : 0;
    network *net = load_network(argv[1], argv[2], 0);
    set_batch_network(net, 1);
    image im = load_image_color(argv[3], 0, 0);
    image sized = letterbox_image(im, net->w, net->h);
    network_predict(net, sized.data);
    FILE *f = fopen(argv[6], "wb");
    if (!f) {
        perror(argv[6]);
        return 1;
    }
    int n_heads = 0, classes = 0;
    for (int i = 0; i < net->n; i++)
        n_heads += net->layers[i].type == YOLO || net->layers[i].type == REGION;
    fwrite(&n_heads, 4, 1, f);
    for (int i = 0; i < net->n; i++) {
        layer *l = &net->layers[i];
        if (l->type != YOLO && l->type != REGION)
            continue;
        int shape[3] = {l->out_c, l->out_h, l->out_w};
        fwrite(shape, 4, 3, f);
        fwrite(l->output, sizeof(float), (size_t)l->outputs, f);
        classes = l->classes;
    }
    int nboxes = 0;
    detection *dets = get_network_boxes(net, im.w, im.h, thresh, .5f, 0, 1, &nboxes);
    if (nms > 0)
        do_nms_sort(dets, nboxes, classes, nms);
    int n_out = 0;
    for (int i = 0; i < nboxes; i++)
        for (int k = 0; k < classes; k++)
            n_out += dets[i].prob[k] > thresh;
    int hdr[3] = {im.w, im.h, n_out};
    fwrite(hdr, 4, 3, f);
    for (int i = 0; i < nboxes; i++)
        for (int k = 0; k < classes; k++) {
            if (!(dets[i].prob[k] > thresh))
                continue;
            box b = dets[i].bbox;
            float l = ref_clip((b.x - b.w / 2) * im.w, im.w), r = ref_clip((b.x + b.w / 2) * im.w, im.w);
            float t = ref_clip((b.y - b.h / 2) * im.h, im.h), d = ref_clip((b.y + b.h / 2) * im.h, im.h);
            float v[5] = {dets[i].prob[k], l, t, r - l, d - t};
            fwrite(&k, 4, 1, f);
            fwrite(v, 4, 5, f);
        }
    if (fclose(f)) {
        perror(argv[6]);
        return 1;
    }
    if (reps > 0) {
        double *ms = malloc(reps * sizeof *ms);
        for (int r = 0; r < reps; r++) {
            double t0 = ref_now();
            network_predict(net, sized.data);
            ms[r] = ref_now() - t0;
        }
        qsort(ms, reps, sizeof *ms, ref_cmp);
        printf("%.1f\n", ms[reps / 2]);
        free(ms);
    }
    free_detections(dets, nboxes);
    free_image(sized);
    free_image(im);
    free_network(net);
    return 0;
}
