/* resp.c: JSON response bodies through yajl_gen; see resp.h. */
#include "resp.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "core_err.h"
#include "json.h"

static void resp_print(void *ctx, const char *s, size_t len)
{
    sbuf_put(ctx, s, len);
}

static yajl_gen resp_gen(sbuf *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g)
        yajl_gen_config(g, yajl_gen_print_callback, resp_print, out);
    return g;
}

static int resp_end(yajl_gen g, sbuf *out, size_t mark, bool ok)
{
    if (g)
        yajl_gen_free(g);
    if (!g || !ok || out->oom) {
        /* Never leave half an object behind. */
        if (out->len > mark) {
            out->len = mark;
            if (out->data)
                out->data[mark] = '\0';
        }
        return CORE_ENOMEM;
    }
    return CORE_OK;
}

static bool resp_key(yajl_gen g, const char *k)
{
    return yajl_gen_string(g, (const unsigned char *)k, strlen(k)) == yajl_gen_status_ok;
}

/* Invalid UTF-8 bytes become U+FFFD (EF BF BD). */
static bool resp_str(yajl_gen g, const char *s, size_t len)
{
    if (json_utf8_valid(s, len))
        return yajl_gen_string(g, (const unsigned char *)s, len) == yajl_gen_status_ok;
    sbuf fixed;
    sbuf_init(&fixed);
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        while (n <= 4 && i + n <= len && !json_utf8_valid(s + i, n))
            n++;
        if (n <= 4 && i + n <= len) {
            sbuf_put(&fixed, s + i, n);
            i += n;
        } else {
            sbuf_put(&fixed, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    bool ok = !fixed.oom && yajl_gen_string(g, (const unsigned char *)(fixed.data ? fixed.data : ""),
                                            fixed.len) == yajl_gen_status_ok;
    sbuf_free(&fixed);
    return ok;
}

static bool resp_cstr(yajl_gen g, const char *s)
{
    return s ? resp_str(g, s, strlen(s)) : yajl_gen_null(g) == yajl_gen_status_ok;
}

static bool resp_int(yajl_gen g, long long v)
{
    return yajl_gen_integer(g, v) == yajl_gen_status_ok;
}

static bool resp_head(yajl_gen g, const resp_meta *m, const char *object)
{
    bool ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "id") && resp_cstr(g, m->id);
    ok = ok && resp_key(g, "object") && resp_cstr(g, object);
    ok = ok && resp_key(g, "created") && resp_int(g, m->created);
    ok = ok && resp_key(g, "model") && resp_cstr(g, m->model);
    ok = ok && resp_key(g, "system_fingerprint") && yajl_gen_null(g) == yajl_gen_status_ok;
    return ok;
}

static bool resp_usage_obj(yajl_gen g, const resp_usage *u)
{
    bool ok = resp_key(g, "usage") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "prompt_tokens") && resp_int(g, u->prompt_tokens);
    ok = ok && resp_key(g, "completion_tokens") && resp_int(g, u->completion_tokens);
    ok = ok && resp_key(g, "total_tokens") &&
         resp_int(g, u->prompt_tokens + u->completion_tokens);
    ok = ok && resp_key(g, "prompt_tokens_details") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "cached_tokens") && resp_int(g, u->cached_tokens);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
}

static bool resp_deadline(yajl_gen g)
{
    bool ok = resp_key(g, "edgegate") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "deadline_hit") && yajl_gen_bool(g, 1) == yajl_gen_status_ok;
    return ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
}

int resp_completion(sbuf *out, const resp_meta *m, const char *text, size_t len,
                    const char *finish, const resp_usage *u, bool deadline_hit)
{
    size_t mark = out->len;
    yajl_gen g = resp_gen(out);
    bool ok = g && resp_head(g, m, "chat.completion");
    ok = ok && resp_key(g, "choices") && yajl_gen_array_open(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "index") && resp_int(g, 0);
    ok = ok && resp_key(g, "message") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "role") && resp_cstr(g, "assistant");
    ok = ok && resp_key(g, "content") && resp_str(g, text ? text : "", text ? len : 0);
    ok = ok && resp_key(g, "refusal") && yajl_gen_null(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "logprobs") && yajl_gen_null(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "finish_reason") && resp_cstr(g, finish);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    ok = ok && resp_usage_obj(g, u);
    if (deadline_hit)
        ok = ok && resp_deadline(g);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return resp_end(g, out, mark, ok);
}

/* One chunk event; text == NULL and role == NULL give an empty delta. */
static int resp_chunk(sbuf *out, const resp_meta *m, const char *role, const char *text,
                      size_t len, const char *finish, bool include_usage, bool deadline_hit)
{
    size_t mark = out->len;
    sbuf_puts(out, "data: ");
    yajl_gen g = resp_gen(out);
    bool ok = g && resp_head(g, m, "chat.completion.chunk");
    ok = ok && resp_key(g, "choices") && yajl_gen_array_open(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "index") && resp_int(g, 0);
    ok = ok && resp_key(g, "delta") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    if (role)
        ok = ok && resp_key(g, "role") && resp_cstr(g, role);
    if (text)
        ok = ok && resp_key(g, "content") && resp_str(g, text, len);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "logprobs") && yajl_gen_null(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "finish_reason") && resp_cstr(g, finish);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    if (include_usage)
        ok = ok && resp_key(g, "usage") && yajl_gen_null(g) == yajl_gen_status_ok;
    if (deadline_hit)
        ok = ok && resp_deadline(g);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    sbuf_puts(out, "\n\n");
    return resp_end(g, out, mark, ok);
}

int resp_sse_role(sbuf *out, const resp_meta *m, bool include_usage)
{
    return resp_chunk(out, m, "assistant", "", 0, NULL, include_usage, false);
}

int resp_sse_text(sbuf *out, const resp_meta *m, const char *text, size_t len,
                  bool include_usage)
{
    return resp_chunk(out, m, NULL, text ? text : "", text ? len : 0, NULL, include_usage, false);
}

int resp_sse_finish(sbuf *out, const resp_meta *m, const char *finish, bool include_usage,
                    bool deadline_hit)
{
    return resp_chunk(out, m, NULL, NULL, 0, finish, include_usage, deadline_hit);
}

int resp_sse_usage(sbuf *out, const resp_meta *m, const resp_usage *u)
{
    size_t mark = out->len;
    sbuf_puts(out, "data: ");
    yajl_gen g = resp_gen(out);
    bool ok = g && resp_head(g, m, "chat.completion.chunk");
    ok = ok && resp_key(g, "choices") && yajl_gen_array_open(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    ok = ok && resp_usage_obj(g, u);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    sbuf_puts(out, "\n\n");
    return resp_end(g, out, mark, ok);
}

static bool resp_error_obj(yajl_gen g, const api_error *e)
{
    bool ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "error") && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "message") && resp_cstr(g, e->message);
    ok = ok && resp_key(g, "type") && resp_cstr(g, e->type ? e->type : "invalid_request_error");
    ok = ok && resp_key(g, "param") && resp_cstr(g, e->param[0] ? e->param : NULL);
    ok = ok && resp_key(g, "code") && resp_cstr(g, e->code);
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
}

int resp_error(sbuf *out, const api_error *e)
{
    size_t mark = out->len;
    yajl_gen g = resp_gen(out);
    bool ok = g && resp_error_obj(g, e);
    return resp_end(g, out, mark, ok);
}

int resp_sse_error(sbuf *out, const api_error *e)
{
    size_t mark = out->len;
    sbuf_puts(out, "data: ");
    yajl_gen g = resp_gen(out);
    bool ok = g && resp_error_obj(g, e);
    sbuf_puts(out, "\n\n");
    return resp_end(g, out, mark, ok);
}

int resp_sse_done(sbuf *out)
{
    return sbuf_puts(out, "data: [DONE]\n\n") ? CORE_ENOMEM : CORE_OK;
}

int resp_models(sbuf *out, const char *const *ids, const char *const *types, size_t n,
                long long created)
{
    size_t mark = out->len;
    yajl_gen g = resp_gen(out);
    bool ok = g && yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok = ok && resp_key(g, "object") && resp_cstr(g, "list");
    ok = ok && resp_key(g, "data") && yajl_gen_array_open(g) == yajl_gen_status_ok;
    for (size_t i = 0; i < n && ok; i++) {
        ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
        ok = ok && resp_key(g, "id") && resp_cstr(g, ids[i]);
        ok = ok && resp_key(g, "object") && resp_cstr(g, "model");
        ok = ok && resp_key(g, "created") && resp_int(g, created);
        ok = ok && resp_key(g, "owned_by") && resp_cstr(g, "edgegate");
        if (types && types[i])
            ok = ok && resp_key(g, "type") && resp_cstr(g, types[i]);
        ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    }
    ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return resp_end(g, out, mark, ok);
}
