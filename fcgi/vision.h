/* vision.h: POST /v1/vision/detect: object detection on the shared NPU.
 *
 * Requests come in two forms:
 *   - a raw image body (Content-Type image/jpeg or image/png), options in
 *     the query string: ?model=&confidence=&iou=&max_detections=&classes=1,2
 *   - application/json: {"image": "data:image/jpeg;base64,...", "model",
 *     "confidence", "iou", "max_detections", "classes": [ids]}
 * The image format is told by its magic bytes (image.h), not by the
 * declared type. Parsing is strict: unknown fields or query parameters,
 * wrong types and values out of range are 400s naming the parameter.
 *
 * The handler: content type (415) -> body (413) -> options -> response
 * cache (key: endpoint, model identity, SHA-256 of the image bytes, every
 * option, the client unless cache.shared; a hit touches neither decoder
 * nor NPU) -> decode under the images limits (400/413) -> NPU in
 * npu.short_class (503 when busy) -> det_run() under the request deadline
 * (504) -> {"model","width","height","detections":[...],"timing":{...}}.
 *
 * Ownership: parsed requests point into the arena given to the parser (and
 * into the query string for model names) and live until its next reset.
 * vision_load() loads the detectors into w (after fork); vision_unload()
 * frees them.
 */
#ifndef VISION_H
#define VISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "req.h"
#include "worker_impl.h"

#define VISION_MAX_CLASSES 1024 /* entries of "classes" */

typedef struct {
    const char *model;      /* NULL: not given (the first vision model) */
    const uint8_t *image;   /* JSON form: the decoded data URI; raw form: NULL */
    size_t image_len;
    double confidence;      /* 0.25, [0, 1] */
    double iou;             /* 0.45, [0, 1] */
    int max_detections;     /* 100, [1, 1000] */
    int *classes;           /* sorted, without duplicates; NULL: all */
    size_t n_classes;
} vision_req;

void vision_req_init(vision_req *r);

/* The JSON form. CORE_OK; CORE_EINVAL with e filled (400); CORE_ENOMEM. */
int vision_parse_json(arena *a, const char *body, size_t len, vision_req *out, api_error *e);
/* Query-string options of the raw form ("" or NULL: none), percent-decoded. */
int vision_parse_query(arena *a, const char *query, vision_req *out, api_error *e);
/* Standard base64 (RFC 4648 with padding; whitespace not allowed) of n
 * chars into out (room for n / 4 * 3 bytes). -1 when malformed. */
int vision_base64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len);

void vision_load(worker_state *w);
void vision_unload(worker_state *w);
/* The endpoint; always replies. t0: request start (worker_now_us()). */
void vision_detect(worker_state *w, worker_req *q, long long t0);

#endif
