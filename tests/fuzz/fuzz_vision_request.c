/* fuzz_vision_request.c: libFuzzer harness for the POST /v1/vision/detect
 * request parsers (fcgi/vision.c): the JSON body with its base64 data URI,
 * and the query string of raw-image requests. Input: a body; the same bytes
 * (up to the first NUL) are also parsed as a query string. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "vision.h"

static void fuzz_check(const vision_req *r)
{
    /* What the handler relies on. */
    if (r->confidence < 0 || r->confidence > 1 || r->iou < 0 || r->iou > 1 ||
        r->max_detections < 1 || r->max_detections > 1000)
        __builtin_trap();
    for (size_t i = 0; i < r->n_classes; i++)
        if (r->classes[i] < 0 || (i && r->classes[i] <= r->classes[i - 1]))
            __builtin_trap();
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < r->image_len; i++)
        sum += r->image[i];
    if (r->model)
        sum += (uint8_t)strlen(r->model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static arena *a;
    if (!a)
        a = arena_new(0);
    vision_req r;
    api_error e;
    if (vision_parse_json(a, (const char *)data, size, &r, &e) == 0)
        fuzz_check(&r);
    arena_reset(a);
    char *q = arena_strndup(a, (const char *)data, strnlen((const char *)data, size));
    if (q && vision_parse_query(a, q, &r, &e) == 0)
        fuzz_check(&r);
    arena_reset(a);
    return 0;
}
