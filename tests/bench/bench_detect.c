/* bench_detect: forward time of a darknet network, yolov3-tiny at 416x416
 * by default, on 2 threads: the median of N runs of det_run() on a 416x416
 * picture (the letterbox is then a copy) at confidence 0.99 (so box decoding
 * and NMS cost nothing), after one warm-up run. Prints one JSON line;
 * gflop_s counts the multiply-adds of direct convolution (Winograd layers
 * do fewer), so it compares across implementations.
 *
 *   bench_detect [CFG WEIGHTS] [-n N] [-t THREADS] [--isa ISA]
 *
 * Without CFG WEIGHTS: /usr/share/darknet/cfg/yolov3-tiny.cfg and random
 * weights in BUILD/bench-models/ (made once by BUILD/edgegate-make-weights;
 * BUILD is this program's ../). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"
#include "detect.h"

static double bd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int bd_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *cfg = NULL, *weights = NULL, *isa = NULL;
    int reps = 15, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa = argv[++i];
        else if (!cfg)
            cfg = argv[i];
        else if (!weights)
            weights = argv[i];
        else {
            fprintf(stderr, "usage: bench_detect [CFG WEIGHTS] [-n N] [-t THREADS] [--isa ISA]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    char wpath[1024];
    if (!cfg) {
        cfg = "/usr/share/darknet/cfg/yolov3-tiny.cfg";
        if (access(cfg, R_OK)) {
            printf("SKIP: %s absent (Debian package darknet)\n", cfg);
            return 0;
        }
        char self[512];
        snprintf(self, sizeof self, "%s", argv[0]);
        const char *build = dirname(dirname(self));
        snprintf(wpath, sizeof wpath, "%s/bench-models/yolov3-tiny.weights", build);
        if (access(wpath, R_OK)) {
            char cmd[2048];
            snprintf(cmd, sizeof cmd, "mkdir -p '%s/bench-models' && '%s/edgegate-make-weights' '%s' -o '%s' --seed 1",
                     build, build, cfg, wpath);
            if (system(cmd)) {
                fprintf(stderr, "bench_detect: cannot make %s\n", wpath);
                return 1;
            }
        }
        weights = wpath;
    } else if (!weights) {
        fprintf(stderr, "bench_detect: CFG needs WEIGHTS\n");
        return 2;
    }
    det_params p = det_default_params();
    p.cfg_path = cfg;
    p.weights_path = weights;
    p.n_threads = threads;
    p.isa = isa;
    char msg[512] = "";
    det_model *m;
    int rc = det_load(&p, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "bench_detect: %s: %s\n", core_strerror(rc), msg);
        return 1;
    }
    det_info info;
    det_get_info(m, &info);
    int w = info.width, h = info.height;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    double *ms = malloc((reps + 1) * sizeof *ms);
    if (!rgb || !ms)
        return 1;
    uint32_t x = 12345;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        x = x * 1664525u + 1013904223u;
        rgb[i] = (uint8_t)(x >> 24);
    }
    det_opts o = det_default_opts();
    o.confidence = 0.99f;
    det_box box[100];
    size_t n;
    for (int r = 0; r <= reps; r++) {
        double t0 = bd_now();
        if ((rc = det_run(m, rgb, w, h, &o, box, 100, &n, msg, sizeof msg))) {
            fprintf(stderr, "bench_detect: %s: %s\n", core_strerror(rc), msg);
            return 1;
        }
        ms[r] = bd_now() - t0;
    }
    qsort(ms + 1, reps, sizeof *ms, bd_cmp); /* ms[0]: warm-up */
    double med = ms[1 + reps / 2];
    printf("{\"bench\":\"detect\",\"cfg\":\"%s\",\"width\":%d,\"height\":%d,\"isa\":\"%s\",\"threads\":%d,"
           "\"runs\":%d,\"median_ms\":%.2f,\"min_ms\":%.2f,\"gflops\":%.3f,\"gflop_s\":%.1f}\n",
           cfg, w, h, info.isa, info.n_threads, reps, med, ms[1], info.gflops, info.gflops / med * 1e3);
    free(rgb);
    free(ms);
    det_free(m);
    return 0;
}
