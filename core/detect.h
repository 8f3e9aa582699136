/* detect.h: object detection with darknet-format YOLO networks.
 *
 * A detector is a darknet .cfg (the network: [net], [convolutional],
 * [maxpool], [route], [shortcut], [upsample], [region], [yolo]) and a
 * .weights file (header: int32 major, minor, revision, then "seen" as
 * uint64 when major*10+minor >= 2 else uint32; then per convolutional
 * layer in cfg order: biases[n], and when batch_normalize=1 scales[n],
 * rolling_mean[n], rolling_variance[n]; then weights[n][c/groups][k][k],
 * all float32 little-endian). Covers yolov2-tiny, yolov3-tiny, yolov3,
 * yolov4-tiny. Batch norm is folded into the convolutions at load time.
 *
 * det_run() follows the reference (darknet's C implementation): letterbox
 * to the network size with darknet's bilinear resize and 0.5 grey padding,
 * RGB scaled by 1/255, forward, decode boxes, drop those under the
 * confidence threshold, per-class NMS (darknet's do_nms_sort), boxes in
 * original image pixels clipped to the image.
 *
 * Errors at load: CORE_EIO (cannot read a file), CORE_EFORMAT (bad cfg
 * syntax or values, weights of the wrong size, truncated; msg names the
 * layer/line), CORE_EUNSUPPORTED (a layer type or option not implemented),
 * CORE_ENOMEM.
 *
 * Threads: a detector runs its convolutions on its own thread pool
 * (n_threads) and serves one det_run() at a time; det_abort() may be
 * called from a signal handler or another thread to stop a det_run()
 * early (it then returns CORE_EABORTED).
 *
 * Ownership: det_load() returns a model the caller frees with det_free()
 * (NULL is a no-op). Paths in det_params are read during the call only.
 * det_info strings and labels live as long as the model. det_run() writes
 * into the caller's array.
 */
#ifndef DETECT_H
#define DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct det_model det_model;

typedef struct {
    const char *cfg_path;     /* required */
    const char *weights_path; /* required */
    const char *names_path;   /* class labels, one per line; NULL: "class N" */
    int n_threads;            /* 0: one per online CPU */
    const char *isa;          /* NULL: best the CPU runs; "scalar", "avx2" */
} det_params;

det_params det_default_params(void);

int det_load(const det_params *p, det_model **out, char *msg, size_t msg_size);
void det_free(det_model *m);

typedef struct {
    int width, height, channels; /* network input */
    int n_classes;
    int n_layers;
    const char *const *labels;   /* n_classes entries */
    const char *isa;
    int n_threads;
    double gflops;               /* multiply-adds x 2 of one forward pass / 1e9 */
} det_info;

void det_get_info(const det_model *m, det_info *info);

typedef struct {
    float confidence;     /* 0.25: objectness x class probability threshold */
    float iou;            /* 0.45: NMS overlap threshold */
    int max_detections;   /* 100: best first */
    const int *classes;   /* NULL: all; else only these class ids */
    size_t n_classes;
} det_opts;

det_opts det_default_opts(void);

typedef struct {
    int class_id;
    float confidence;
    float x, y, w, h;     /* pixels of the original image: top-left corner, size */
} det_box;

/* rgb: [h][w][3] 8-bit. Writes up to cap boxes, best first, and the count
 * to *n_out. A box whose class scores above the threshold for several
 * classes appears once per class. CORE_EINVAL for bad arguments
 * (confidence or iou outside [0, 1], a class id out of range),
 * CORE_EABORTED after det_abort(), CORE_ENOMEM. */
int det_run(det_model *m, const uint8_t *rgb, int w, int h, const det_opts *o, det_box *out,
            size_t cap, size_t *n_out, char *msg, size_t msg_size);

void det_abort(det_model *m);

/* The raw output of the i-th yolo/region layer (cfg order) of the last
 * successful det_run(): [c][h][w] floats as darknet's layer output (logistic
 * and softmax applied), valid until the next det_run() or det_free(). For
 * comparisons with the reference. CORE_EINVAL when i is out of range or
 * nothing ran. */
int det_head_output(const det_model *m, int i, const float **data, int *c, int *h, int *w);

#endif
