/* vision.c: POST /v1/vision/detect; see vision.h.
 *
 * Formats parsed here (untrusted):
 *   JSON body: one object, members image (required: a data URI
 *     "data:image/jpeg[;param=value]...;base64,..." or image/png,
 *     image/jpg; base64 as in RFC 4648 section 4, padded, no
 *     whitespace), model (string),
 *     confidence, iou (numbers in [0, 1]), max_detections (integer in
 *     [1, 1000]), classes (array of integers >= 0, at most
 *     VISION_MAX_CLASSES); optional members may be null.
 *   Query string (raw bodies): name=value pairs joined by '&', names and
 *     values percent-encoded ('+' is a space); the same options, classes
 *     as comma-separated integers. Each name at most once.
 */
#include "vision.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core_err.h"
#include "elog.h"
#include "image.h"
#include "json.h"

#define VISION_MAX_DETECTIONS 1000

void vision_req_init(vision_req *r)
{
    det_opts d = det_default_opts();
    memset(r, 0, sizeof *r);
    r->confidence = d.confidence;
    r->iou = d.iou;
    r->max_detections = d.max_detections;
}

/* ---- parsing --------------------------------------------------------------- */

int vision_base64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len)
{
    static int8_t val[256];
    if (!val['B']) { /* built once; 'A' is 0, so test another letter */
        memset(val, -1, sizeof val);
        const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++)
            val[(unsigned char)abc[i]] = (int8_t)i;
    }
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        const unsigned char *p = (const unsigned char *)s + i;
        int pad = (p[3] == '=') + (p[2] == '=' && p[3] == '=');
        if (pad && i + 4 != n)
            return -1; /* padding only at the very end */
        int a = val[p[0]], b = val[p[1]];
        int c = pad == 2 ? 0 : val[p[2]], d = pad ? 0 : val[p[3]];
        if (a < 0 || b < 0 || c < 0 || d < 0)
            return -1;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)v;
    }
    *out_len = o;
    return 0;
}

static int vision_oom(api_error *e)
{
    api_fail(e, 500, NULL, NULL, "Out of memory.");
    return CORE_ENOMEM;
}

static int vision_cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sorts and drops duplicates: the same set is the same request (cache). */
static void vision_norm_classes(vision_req *r)
{
    if (!r->n_classes)
        return;
    qsort(r->classes, r->n_classes, sizeof(int), vision_cmp_int);
    size_t k = 1;
    for (size_t i = 1; i < r->n_classes; i++)
        if (r->classes[i] != r->classes[k - 1])
            r->classes[k++] = r->classes[i];
    r->n_classes = k;
}

static int vision_range(api_error *e, const char *param, double d, double lo, double hi)
{
    if (!(d >= lo && d <= hi))
        return api_fail(e, 400, param, "invalid_value", "'%s' must be between %g and %g, got %g.",
                        param, lo, hi, d);
    return CORE_OK;
}

static int vision_type_err(api_error *e, const char *param, const json_value *v, const char *want)
{
    return api_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.",
                    param, want, json_type_name(v->type));
}

static bool vision_key_is(const json_value *v, const char *k)
{
    size_t n = strlen(k);
    return v->key_len == n && memcmp(v->key, k, n) == 0;
}

/* "data:image/png;base64,...." -> bytes in the arena. */
static int vision_data_uri(arena *a, const json_value *v, vision_req *out, api_error *e)
{
    static const char *const types[] = {"image/jpeg", "image/jpg", "image/png"};
    if (v->type != JSON_STRING)
        return vision_type_err(e, "image", v, "a data URI string");
    const char *s = v->u.str.s;
    size_t n = v->u.str.len;
    const char *comma = memchr(s, ',', n);
    if (n < 5 || strncasecmp(s, "data:", 5) != 0 || !comma)
        return api_fail(e, 400, "image", "invalid_image",
                        "'image' must be a data URI: data:image/jpeg;base64,... or "
                        "data:image/png;base64,....");
    /* data:TYPE[;param=value]...;base64,DATA */
    size_t hl = (size_t)(comma - s);
    const char *semi = memchr(s, ';', hl);
    if (!semi || hl < 12 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return api_fail(e, 400, "image", "invalid_image",
                        "The data URI in 'image' must be base64 (\";base64,\").");
    size_t tl = (size_t)(semi - s) - 5;
    bool known = false;
    for (size_t i = 0; i < sizeof types / sizeof *types && !known; i++)
        known = tl == strlen(types[i]) && strncasecmp(s + 5, types[i], tl) == 0;
    if (!known)
        return api_fail(e, 400, "image", "invalid_image",
                        "The data URI's media type '%.*s' is not supported; use image/jpeg or "
                        "image/png.",
                        (int)(tl > 40 ? 40 : tl), s + 5);
    const char *b64 = comma + 1;
    size_t bn = n - hl - 1;
    uint8_t *buf = arena_alloc(a, bn / 4 * 3 + 1);
    if (!buf)
        return vision_oom(e);
    size_t len;
    if (vision_base64_decode(b64, bn, buf, &len))
        return api_fail(e, 400, "image", "invalid_base64",
                        "The data URI in 'image' is not valid base64 (RFC 4648: A-Z a-z 0-9 + /, "
                        "padded with '=', no whitespace).");
    out->image = buf;
    out->image_len = len;
    return CORE_OK;
}

int vision_parse_json(arena *a, const char *body, size_t len, vision_req *out, api_error *e)
{
    json_value *root;
    vision_req_init(out);
    int rc = req_parse_object(a, body, len, 16, &root, e);
    if (rc)
        return rc;
    const json_value *image = NULL;
    for (const json_value *k = root->u.kids.first; k; k = k->next) {
        if (vision_key_is(k, "image")) {
            image = k;
            continue;
        }
        if (k->type == JSON_NULL && (vision_key_is(k, "model") || vision_key_is(k, "confidence") ||
                                     vision_key_is(k, "iou") || vision_key_is(k, "classes") ||
                                     vision_key_is(k, "max_detections")))
            continue;
        if (vision_key_is(k, "model")) {
            if (k->type != JSON_STRING)
                return vision_type_err(e, "model", k, "a string");
            if (!k->u.str.len || k->u.str.len > 128 || memchr(k->u.str.s, '\0', k->u.str.len) ||
                !json_utf8_valid(k->u.str.s, k->u.str.len))
                return api_fail(e, 400, "model", "invalid_value",
                                "'model' must be a model id (1-128 bytes).");
            out->model = k->u.str.s;
        } else if (vision_key_is(k, "confidence") || vision_key_is(k, "iou")) {
            const char *param = vision_key_is(k, "iou") ? "iou" : "confidence";
            if (k->type != JSON_NUMBER)
                return vision_type_err(e, param, k, "a number");
            if ((rc = vision_range(e, param, k->u.num.d, 0, 1)))
                return rc;
            *(param[0] == 'i' ? &out->iou : &out->confidence) = k->u.num.d;
        } else if (vision_key_is(k, "max_detections")) {
            if (k->type != JSON_NUMBER || !k->u.num.is_int)
                return vision_type_err(e, "max_detections", k, "an integer");
            if ((rc = vision_range(e, "max_detections", (double)k->u.num.i, 1,
                                   VISION_MAX_DETECTIONS)))
                return rc;
            out->max_detections = (int)k->u.num.i;
        } else if (vision_key_is(k, "classes")) {
            if (k->type != JSON_ARRAY)
                return vision_type_err(e, "classes", k, "an array of class ids");
            if (k->u.kids.n == 0 || k->u.kids.n > VISION_MAX_CLASSES)
                return api_fail(e, 400, "classes", "invalid_value",
                                "'classes' must hold 1 to %d class ids.", VISION_MAX_CLASSES);
            out->classes = arena_alloc(a, k->u.kids.n * sizeof(int));
            if (!out->classes)
                return vision_oom(e);
            size_t i = 0;
            for (const json_value *c = k->u.kids.first; c; c = c->next, i++) {
                char param[32];
                snprintf(param, sizeof param, "classes[%zu]", i);
                if (c->type != JSON_NUMBER || !c->u.num.is_int)
                    return vision_type_err(e, param, c, "an integer");
                if (c->u.num.i < 0 || c->u.num.i > 1000000)
                    return api_fail(e, 400, param, "invalid_value",
                                    "'%s' must be a class id >= 0, got %lld.", param,
                                    (long long)c->u.num.i);
                out->classes[i] = (int)c->u.num.i;
            }
            out->n_classes = i;
        } else {
            return api_fail(e, 400, NULL, "unknown_parameter",
                            "Unrecognized request argument supplied: %.40s.", k->key);
        }
    }
    if (!image)
        return api_fail(e, 400, "image", "missing_required_parameter",
                        "Missing required parameter: 'image'.");
    if ((rc = vision_data_uri(a, image, out, e)))
        return rc;
    vision_norm_classes(out);
    return CORE_OK;
}

/* A whole string as a finite number. */
static bool vision_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(d) || *s == ' ')
        return false;
    *out = d;
    return true;
}

static bool vision_integer(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return false;
    *out = v;
    return true;
}

static int vision_query_classes(arena *a, const char *v, vision_req *out, api_error *e)
{
    size_t n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    if (!*v || n > VISION_MAX_CLASSES)
        return api_fail(e, 400, "classes", "invalid_value",
                        "'classes' must be 1 to %d comma-separated class ids.", VISION_MAX_CLASSES);
    out->classes = arena_alloc(a, n * sizeof(int));
    if (!out->classes)
        return vision_oom(e);
    out->n_classes = 0;
    for (const char *p = v;;) {
        size_t l = strcspn(p, ",");
        char tok[24];
        long long id;
        if (l == 0 || l >= sizeof tok)
            return api_fail(e, 400, "classes", "invalid_value",
                            "'classes' must be comma-separated class ids, such as 0,16.");
        memcpy(tok, p, l);
        tok[l] = '\0';
        if (!vision_integer(tok, &id) || id < 0 || id > 1000000)
            return api_fail(e, 400, "classes", "invalid_value",
                            "'classes' holds '%s', which is not a class id >= 0.", tok);
        out->classes[out->n_classes++] = (int)id;
        if (!p[l])
            break;
        p += l + 1;
    }
    return CORE_OK;
}

int vision_parse_query(arena *a, const char *query, vision_req *out, api_error *e)
{
    static const char *const names[] = {"model", "confidence", "iou", "max_detections", "classes"};
    bool seen[5] = {false};
    vision_req_init(out);
    for (const char *p = query ? query : ""; *p;) {
        size_t l = strcspn(p, "&");
        const char *eq = memchr(p, '=', l);
        size_t kl = eq ? (size_t)(eq - p) : l;
        char *k = req_unescape(a, p, kl, NULL);
        char *v = req_unescape(a, eq ? eq + 1 : p + l, eq ? l - kl - 1 : 0, NULL);
        if (!k || !v)
            return api_fail(e, 400, NULL, "invalid_value",
                            "The query string is not validly percent-encoded.");
        int which = -1;
        for (int i = 0; i < 5 && which < 0; i++)
            if (strcmp(k, names[i]) == 0)
                which = i;
        if (which < 0 && l > 0)
            return api_fail(e, 400, NULL, "unknown_parameter",
                            "Unrecognized query parameter supplied: %.40s.", k);
        if (which >= 0) {
            if (seen[which])
                return api_fail(e, 400, names[which], "invalid_value",
                                "The query parameter '%s' appears twice.", names[which]);
            seen[which] = true;
            double d;
            long long i;
            int rc = CORE_OK;
            switch (which) {
            case 0:
                if (!*v || strlen(v) > 128 || !json_utf8_valid(v, strlen(v)))
                    return api_fail(e, 400, "model", "invalid_value",
                                    "'model' must be a model id (1-128 bytes).");
                out->model = v;
                break;
            case 1:
            case 2:
                if (!vision_number(v, &d))
                    return api_fail(e, 400, names[which], "invalid_type",
                                    "'%s' must be a number.", names[which]);
                if ((rc = vision_range(e, names[which], d, 0, 1)))
                    return rc;
                *(which == 1 ? &out->confidence : &out->iou) = d;
                break;
            case 3:
                if (!vision_integer(v, &i))
                    return api_fail(e, 400, "max_detections", "invalid_type",
                                    "'max_detections' must be an integer.");
                if ((rc = vision_range(e, "max_detections", (double)i, 1, VISION_MAX_DETECTIONS)))
                    return rc;
                out->max_detections = (int)i;
                break;
            default:
                if ((rc = vision_query_classes(a, v, out, e)))
                    return rc;
            }
        }
        p += l;
        if (*p == '&')
            p++;
    }
    vision_norm_classes(out);
    return CORE_OK;
}

/* ---- detectors --------------------------------------------------------------- */

void vision_load(worker_state *w)
{
    const cfg *c = w->cfg;
    for (size_t i = 0; i < c->n_vision; i++) {
        const cfg_vision *cv = &c->vision[i];
        const char *files[3] = {cv->cfg, cv->weights, cv->names};
        for (int f = 0; f < 3; f++) {
            struct stat st;
            if (files[f] && stat(files[f], &st) == 0) {
                w->det_ident[i][2 * f] = (long long)st.st_size;
                w->det_ident[i][2 * f + 1] =
                    (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
            }
        }
        det_params p = det_default_params();
        p.cfg_path = cv->cfg;
        p.weights_path = cv->weights;
        p.names_path = cv->names;
        p.n_threads = cv->threads;
        char msg[512] = "";
        long long t0 = worker_now_us();
        int rc = det_load(&p, &w->dets[i], msg, sizeof msg);
        if (rc != CORE_OK) {
            w->dets[i] = NULL;
            elog_ev(ELOG_ERROR, "vision model load failed", ELOG_S("model", cv->id),
                    ELOG_S("cfg", cv->cfg), ELOG_S("weights", cv->weights),
                    ELOG_S("error", core_strerror(rc)), ELOG_S("detail", msg),
                    ELOG_I("slot", w->p->slot));
            continue;
        }
        det_info info;
        det_get_info(w->dets[i], &info);
        elog_ev(ELOG_INFO, "vision model loaded", ELOG_S("model", cv->id),
                ELOG_I("width", info.width), ELOG_I("height", info.height),
                ELOG_I("classes", info.n_classes), ELOG_I("layers", info.n_layers),
                ELOG_S("isa", info.isa), ELOG_I("n_threads", info.n_threads),
                ELOG_D("gflops", info.gflops),
                ELOG_D("ms", (double)(worker_now_us() - t0) / 1000.0),
                ELOG_I("slot", w->p->slot));
    }
}

void vision_unload(worker_state *w)
{
    for (size_t i = 0; i < w->cfg->n_vision; i++) {
        det_free(w->dets[i]);
        w->dets[i] = NULL;
    }
}

/* ---- the endpoint ------------------------------------------------------------ */

static void vision_key(worker_state *w, worker_req *q, size_t vi, const vision_req *r,
                       const uint8_t *img, size_t len, cache_key *key)
{
    const cfg_vision *cv = &w->cfg->vision[vi];
    const char *client = w->cfg->cache.shared ? "" : q->client;
    cache_sha256 sha;
    uint8_t digest[32];
    cache_sha256_init(&sha);
    cache_sha256_update(&sha, img, len);
    cache_sha256_final(&sha, digest);
    cache_keyb kb;
    cache_key_init(&kb);
    cache_key_add_str(&kb, "vision.detect", 13);
    cache_key_add_str(&kb, cv->id, strlen(cv->id));
    cache_key_add_str(&kb, cv->cfg, strlen(cv->cfg));
    cache_key_add_str(&kb, cv->weights, strlen(cv->weights));
    cache_key_add_str(&kb, cv->names ? cv->names : "", cv->names ? strlen(cv->names) : 0);
    for (int i = 0; i < 6; i++)
        cache_key_add_i64(&kb, w->det_ident[vi][i]);
    cache_key_add_str(&kb, client, strlen(client));
    cache_key_add_str(&kb, (const char *)digest, sizeof digest);
    cache_key_add_f64(&kb, r->confidence);
    cache_key_add_f64(&kb, r->iou);
    cache_key_add_i64(&kb, r->max_detections);
    cache_key_add_i64(&kb, (int64_t)r->n_classes);
    for (size_t i = 0; i < r->n_classes; i++)
        cache_key_add_i64(&kb, r->classes[i]);
    cache_key_final(&kb, key);
}

/* The media type of CONTENT_TYPE, lowercased, without parameters. */
static void vision_media_type(worker_req *q, char *out, size_t n)
{
    const char *ct = worker_param(q, "CONTENT_TYPE");
    size_t k = 0;
    for (ct = ct ? ct : ""; *ct == ' '; ct++)
        ;
    for (; *ct && *ct != ';' && *ct != ' ' && k + 1 < n; ct++)
        out[k++] = (char)(*ct >= 'A' && *ct <= 'Z' ? *ct + 32 : *ct);
    out[k] = '\0';
}

/* {"model":..., FRAGMENT, "timing":{...}} where the fragment (what the
 * cache keeps) is "width":W,"height":H,"detections":[...]. */
static int vision_fragment(sbuf *b, const det_info *info, int w, int h, const det_box *box,
                           size_t n)
{
    sbuf_printf(b, "\"width\":%d,\"height\":%d,\"detections\":[", w, h);
    for (size_t i = 0; i < n; i++) {
        const det_box *d = &box[i];
        const char *label = d->class_id >= 0 && d->class_id < info->n_classes
                                ? info->labels[d->class_id]
                                : "";
        sbuf_printf(b, "%s{\"class_id\":%d,\"label\":", i ? "," : "", d->class_id);
        json_put_str(b, label, strlen(label));
        sbuf_printf(b, ",\"confidence\":%.4f,\"box\":{\"x\":%.1f,\"y\":%.1f,\"w\":%.1f,\"h\":%.1f}}",
                    d->confidence, d->x, d->y, d->w, d->h);
    }
    sbuf_putc(b, ']');
    return b->oom ? CORE_ENOMEM : CORE_OK;
}

static void vision_reply(worker_state *w, worker_req *q, const char *model, const sbuf *frag,
                         double decode_ms, double infer_ms, double queue_ms)
{
    sbuf_clear(&w->body);
    sbuf_puts(&w->body, "{\"model\":");
    json_put_str(&w->body, model, strlen(model));
    sbuf_putc(&w->body, ',');
    sbuf_put(&w->body, frag->data ? frag->data : "", frag->len);
    sbuf_printf(&w->body,
                ",\"timing\":{\"decode_ms\":%.2f,\"inference_ms\":%.2f,\"queue_ms\":%.2f}}",
                decode_ms, infer_ms, queue_ms);
    worker_send(q, 200, "application/json", &w->body, NULL);
}

static void vision_image_error(worker_state *w, worker_req *q, int rc, const char *msg,
                               long long max_bytes)
{
    api_error e;
    snprintf(q->error, sizeof q->error, "%s", msg);
    if (rc == CORE_EINVAL) /* img_decode(): over max_bytes (empty bodies are refused before) */
        api_fail(&e, 413, "image", "request_too_large",
                 "The image is larger than %lld bytes.", max_bytes);
    else if (rc == CORE_ECONTEXT)
        api_fail(&e, 400, "image", "image_too_large", "The image is too large: %s.", msg);
    else if (rc == CORE_ENOMEM)
        api_fail(&e, 500, NULL, NULL, "Out of memory decoding the image.");
    else
        api_fail(&e, 400, "image", "invalid_image", "The image could not be decoded: %s.", msg);
    worker_send_error(w, q, &e, NULL);
}

void vision_detect(worker_state *w, worker_req *q, long long t0)
{
    const cfg *c = w->cfg;
    api_error e;
    vision_req r;
    img im = {0};
    sbuf frag;
    sbuf_init(&frag);
    int rc;

    /* Every answer, errors included, tells the client its quota (as chat). */
    budget_quota bq0;
    if (w->budget && budget_query(w->budget, q->client, &bq0) == CORE_OK)
        worker_set_quota(q, &bq0);
    if (c->n_vision == 0) {
        worker_fail(w, q, 404, "not_found", "No vision models are configured on this gateway.");
        return;
    }
    char media[64];
    vision_media_type(q, media, sizeof media);
    bool json = strcmp(media, "application/json") == 0;
    if (!json && strcmp(media, "image/jpeg") != 0 && strcmp(media, "image/png") != 0 &&
        strcmp(media, "image/jpg") != 0) {
        worker_fail(w, q, 415, "unsupported_media_type",
                    "Content-Type '%.40s' is not supported; send image/jpeg, image/png or "
                    "application/json with a data URI.",
                    media);
        return;
    }
    /* A whole image, raw or in base64 inside a little JSON. */
    long long max_img = c->images.max_bytes;
    long max_body = c->limits.max_body_bytes;
    if (max_img / 3 * 4 + 65536 > max_body)
        max_body = (long)(max_img / 3 * 4 + 65536);
    char *body;
    size_t len;
    if (worker_read_body_max(w, q, max_body, &body, &len))
        return;
    if (len == 0) {
        worker_fail(w, q, 400, "invalid_request",
                    "The request body is empty: send an image or a JSON object.");
        return;
    }
    const char *query = worker_param(q, "QUERY_STRING");
    if (json) {
        if (query && *query) {
            api_fail(&e, 400, NULL, "invalid_request",
                     "Options of a JSON request go in its body, not the query string.");
            worker_send_error(w, q, &e, NULL);
            return;
        }
        rc = vision_parse_json(w->arena, body, len, &r, &e);
    } else {
        rc = vision_parse_query(w->arena, query, &r, &e);
        r.image = (const uint8_t *)body;
        r.image_len = len;
    }
    if (rc != CORE_OK) {
        worker_send_error(w, q, &e, NULL);
        return;
    }
    size_t vi = 0;
    if (r.model)
        while (vi < c->n_vision && strcmp(c->vision[vi].id, r.model) != 0)
            vi++;
    if (vi == c->n_vision) {
        api_fail(&e, 400, "model", "model_not_found",
                 "The vision model '%.64s' does not exist; GET /v1/models lists the models.",
                 r.model);
        worker_send_error(w, q, &e, NULL);
        return;
    }
    const char *model = c->vision[vi].id;
    q->model = model;
    det_model *d = w->dets[vi];
    if (!d) {
        worker_fail(w, q, 503, "model_unavailable",
                    "The vision model '%.64s' failed to load on this worker; see the pool's log.",
                    model);
        return;
    }
    det_info info;
    det_get_info(d, &info);
    for (size_t i = 0; i < r.n_classes; i++)
        if (r.classes[i] >= info.n_classes) {
            api_fail(&e, 400, "classes", "invalid_value",
                     "Class id %d does not exist: '%s' has %d classes (0-%d).", r.classes[i],
                     model, info.n_classes, info.n_classes - 1);
            worker_send_error(w, q, &e, NULL);
            return;
        }
    if ((long long)r.image_len > max_img) {
        vision_image_error(w, q, CORE_EINVAL, "image over the limit", max_img);
        return;
    }

    /* The cache: keyed by the encoded bytes, so a hit skips decoding too. */
    bool cacheable = w->cache && !worker_no_cache(q);
    q->xcache = cacheable ? "MISS" : "BYPASS";
    cache_key key;
    if (cacheable) {
        vision_key(w, q, vi, &r, r.image, r.image_len, &key);
        cache_key_hex(&key, q->cache_key);
        bool hit = false;
        rc = cache_get(w->cache, &key, &hit, NULL, &w->cachebody);
        if (rc != CORE_OK) {
            elog_ev(ELOG_WARN, "cache get failed; treated as a miss",
                    ELOG_S("request_id", q->req_id), ELOG_S("error", cache_errmsg(w->cache)));
        } else if (hit) {
            /* Vision spends no tokens: a hit costs nothing either. */
            q->xcache = "HIT";
            vision_reply(w, q, model, &w->cachebody, 0, 0, 0);
            return;
        }
    }

    img_limits lim = {.max_bytes = (size_t)max_img,
                      .max_width = c->images.max_width,
                      .max_height = c->images.max_height,
                      .max_pixels = (uint64_t)c->images.max_pixels};
    char msg[256] = "";
    long long td = worker_now_us();
    rc = img_decode(r.image, r.image_len, &lim, &im, msg, sizeof msg);
    double decode_ms = (double)(worker_now_us() - td) / 1000.0;
    if (rc != CORE_OK) {
        vision_image_error(w, q, rc, msg, max_img);
        goto out;
    }
    det_box *boxes = arena_alloc(w->arena, (size_t)r.max_detections * sizeof *boxes);
    if (!boxes) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        goto out;
    }

    /* The NPU: a bounded wait in the short-job class, as chat does. */
    if (worker_npu_acquire(w, q, c->npu.short_class))
        goto out;
    double queue_ms = (double)q->npu_wait_us / 1000.0;
    det_opts o = det_default_opts();
    o.confidence = (float)r.confidence;
    o.iou = (float)r.iou;
    o.max_detections = r.max_detections;
    o.classes = r.classes;
    o.n_classes = r.n_classes;
    size_t n = 0;
    long long ti = worker_now_us();
    /* Past the deadline already (decoding, the NPU queue): do not start;
     * an alarm due within microseconds could also be lost to det_run()
     * clearing its abort flag as it starts. */
    bool late = c->limits.deadline_ms > 0 &&
                ti >= t0 + (long long)c->limits.deadline_ms * 1000 - 100;
    bool fired = false;
    if (!late) {
        worker_deadline_det(w, d, t0);
        rc = det_run(d, im.rgb, im.w, im.h, &o, boxes, (size_t)r.max_detections, &n, msg,
                     sizeof msg);
        fired = worker_deadline_end();
    }
    long long infer_us = worker_now_us() - ti;
    worker_npu_release(w);
    q->gen_us = infer_us;
    /* fired: the run took longer than the deadline, whether or not the
     * abort reached it in time. */
    if (late || fired || rc == CORE_EABORTED) {
        q->deadline_hit = true;
        worker_fail(w, q, 504, "deadline_exceeded",
                    "The detection did not finish within the deadline of %d ms.",
                    c->limits.deadline_ms);
        goto out;
    }
    if (rc != CORE_OK) {
        snprintf(q->error, sizeof q->error, "%s", msg);
        worker_fail(w, q, 500, NULL, "Detection failed: %s.", core_strerror(rc));
        goto out;
    }
    if (vision_fragment(&frag, &info, im.w, im.h, boxes, n)) {
        worker_fail(w, q, 500, NULL, "Out of memory.");
        goto out;
    }
    vision_reply(w, q, model, &frag, decode_ms, (double)infer_us / 1000.0, queue_ms);
    if (cacheable) {
        cache_entry ce = {.model = model,
                          .client = c->cache.shared ? NULL : q->client,
                          .ttl_s = -1};
        if (cache_put(w->cache, &key, &ce, frag.data, frag.len) != CORE_OK)
            elog_ev(ELOG_WARN, "cache put failed", ELOG_S("request_id", q->req_id),
                    ELOG_S("error", cache_errmsg(w->cache)));
    }
out:
    img_free(&im);
    sbuf_free(&frag);
}
