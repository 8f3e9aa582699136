/* req.c: chat completion request validation; see req.h.
 *
 * Format: a JSON object (RFC 8259, UTF-8) as OpenAI's Chat Completions API
 * defines it. Error params name the field the way a client wrote it:
 * "messages[2].content[0].text".
 */
#include "req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

int api_fail(api_error *e, int status, const char *param, const char *code, const char *fmt,
             ...)
{
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = code;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return CORE_EINVAL;
}

static int req_type_err(api_error *e, const char *param, const json_value *v, const char *want)
{
    return api_fail(e, 400, param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.",
                    param, want, json_type_name(v->type));
}

/* A string field that core and our JSON writer can take as a C string. */
static int req_text(api_error *e, const char *param, const json_value *v)
{
    if (v->type != JSON_STRING)
        return req_type_err(e, param, v, "a string");
    if (!json_utf8_valid(v->u.str.s, v->u.str.len))
        return api_fail(e, 400, param, "invalid_encoding", "'%s' is not valid UTF-8.", param);
    if (memchr(v->u.str.s, '\0', v->u.str.len))
        return api_fail(e, 400, param, "invalid_value", "'%s' contains a NUL character.", param);
    return CORE_OK;
}

static int req_number(api_error *e, const char *param, const json_value *v, double lo, double hi,
                      double *out)
{
    if (v->type != JSON_NUMBER)
        return req_type_err(e, param, v, "a number");
    double d = v->u.num.d;
    if (!(d >= lo && d <= hi))
        return api_fail(e, 400, param, "invalid_value",
                        "'%s' must be between %g and %g, got %g.", param, lo, hi, d);
    *out = d;
    return CORE_OK;
}

static int req_integer(api_error *e, const char *param, const json_value *v, int64_t lo, int64_t hi,
                       int64_t *out)
{
    if (v->type != JSON_NUMBER || !v->u.num.is_int)
        return req_type_err(e, param, v, "an integer");
    int64_t i = v->u.num.i;
    if (i < lo || i > hi)
        return api_fail(e, 400, param, "invalid_value",
                        "'%s' must be between %lld and %lld, got %lld.", param, (long long)lo,
                        (long long)hi, (long long)i);
    *out = i;
    return CORE_OK;
}

/* The "off" form of a feature we do not implement. */
static bool req_trivial(const json_value *v)
{
    switch (v->type) {
    case JSON_NULL: return true;
    case JSON_BOOL: return !v->u.b;
    case JSON_ARRAY:
    case JSON_OBJECT: return v->u.kids.n == 0;
    default: return false;
    }
}

static bool req_key_is(const json_value *v, const char *k)
{
    size_t n = strlen(k);
    return v->key_len == n && memcmp(v->key, k, n) == 0;
}

/* Message content: a string, or text parts joined with newlines. */
static int req_content(arena *a, api_error *e, size_t mi, const json_value *v, bool null_ok,
                       const char **out)
{
    char param[96];
    snprintf(param, sizeof(param), "messages[%zu].content", mi);
    if (v->type == JSON_NULL && null_ok) {
        *out = "";
        return CORE_OK;
    }
    if (v->type == JSON_STRING) {
        int rc = req_text(e, param, v);
        *out = v->u.str.s;
        return rc;
    }
    if (v->type != JSON_ARRAY)
        return req_type_err(e, param, v, "a string or an array of content parts");
    if (v->u.kids.n == 0)
        return api_fail(e, 400, param, "invalid_value", "'%s' must not be an empty array.", param);
    size_t total = 0, j = 0;
    for (const json_value *p = v->u.kids.first; p; p = p->next, j++) {
        char pp[128];
        snprintf(pp, sizeof(pp), "%s[%zu]", param, j);
        if (p->type != JSON_OBJECT)
            return req_type_err(e, pp, p, "an object");
        for (const json_value *k = p->u.kids.first; k; k = k->next)
            if (!req_key_is(k, "type") && !req_key_is(k, "text"))
                return api_fail(e, 400, pp, "unknown_parameter",
                                "Unrecognized content part argument '%.40s'.", k->key);
        const json_value *type = json_get(p, "type"), *text = json_get(p, "text");
        snprintf(pp, sizeof(pp), "%s[%zu].type", param, j);
        if (!type)
            return api_fail(e, 400, pp, "missing_required_parameter", "Missing required parameter: '%s'.", pp);
        int rc = req_text(e, pp, type);
        if (rc)
            return rc;
        if (strcmp(type->u.str.s, "text") != 0)
            return api_fail(e, 400, pp, "invalid_value",
                            "Content part type '%.40s' is not supported; only 'text' is.",
                            type->u.str.s);
        snprintf(pp, sizeof(pp), "%s[%zu].text", param, j);
        if (!text)
            return api_fail(e, 400, pp, "missing_required_parameter", "Missing required parameter: '%s'.", pp);
        if ((rc = req_text(e, pp, text)))
            return rc;
        total += text->u.str.len + 1;
    }
    char *buf = arena_alloc(a, total + 1), *w = buf;
    if (!buf)
        return api_fail(e, 500, NULL, NULL, "Out of memory.") , CORE_ENOMEM;
    for (const json_value *p = v->u.kids.first; p; p = p->next) {
        const json_value *text = json_get(p, "text");
        if (w != buf)
            *w++ = '\n';
        memcpy(w, text->u.str.s, text->u.str.len);
        w += text->u.str.len;
    }
    *w = '\0';
    *out = buf;
    return CORE_OK;
}

static int req_messages(arena *a, const req_limits *lim, const json_value *v, req_chat *out,
                        api_error *e)
{
    if (v->type != JSON_ARRAY)
        return req_type_err(e, "messages", v, "an array");
    if (v->u.kids.n == 0)
        return api_fail(e, 400, "messages", "invalid_value", "'messages' must contain at least one message.");
    if (v->u.kids.n > lim->max_messages)
        return api_fail(e, 400, "messages", "array_above_max_length",
                        "'messages' has %zu messages; at most %zu are allowed.", v->u.kids.n,
                        lim->max_messages);
    out->msgs = arena_calloc(a, v->u.kids.n, sizeof(*out->msgs));
    if (!out->msgs)
        return api_fail(e, 500, NULL, NULL, "Out of memory."), CORE_ENOMEM;
    size_t i = 0;
    for (const json_value *m = v->u.kids.first; m; m = m->next, i++) {
        char param[96];
        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (m->type != JSON_OBJECT)
            return req_type_err(e, param, m, "an object");
        const json_value *role = NULL, *content = NULL;
        for (const json_value *k = m->u.kids.first; k; k = k->next) {
            snprintf(param, sizeof(param), "messages[%zu].%.40s", i, k->key);
            if (req_key_is(k, "role")) {
                role = role ? role : k;
            } else if (req_key_is(k, "content")) {
                content = content ? content : k;
            } else if (req_key_is(k, "name")) {
                int rc = k->type == JSON_NULL ? CORE_OK : req_text(e, param, k);
                if (rc)
                    return rc;
            } else if (!req_trivial(k)) {
                return api_fail(e, 400, param, "unknown_parameter",
                                "Unrecognized or unsupported message argument '%.40s'.", k->key);
            }
        }
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        if (!role)
            return api_fail(e, 400, param, "missing_required_parameter", "Missing required parameter: '%s'.", param);
        int rc = req_text(e, param, role);
        if (rc)
            return rc;
        const char *r = role->u.str.s;
        if (strcmp(r, "developer") == 0)
            r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return api_fail(e, 400, param, "invalid_value",
                            "Invalid value '%.40s' for '%s': supported roles are 'system', "
                            "'developer', 'user' and 'assistant'.",
                            role->u.str.s, param);
        snprintf(param, sizeof(param), "messages[%zu].content", i);
        bool is_assistant = strcmp(r, "assistant") == 0;
        if (!content)
            return api_fail(e, 400, param, "missing_required_parameter", "Missing required parameter: '%s'.", param);
        const char *text = "";
        if ((rc = req_content(a, e, i, content, is_assistant, &text)))
            return rc;
        out->msgs[i].role = r;
        out->msgs[i].content = text;
    }
    out->n_msgs = i;
    return CORE_OK;
}

static int req_stop(const json_value *v, req_chat *out, api_error *e)
{
    if (v->type == JSON_STRING) {
        int rc = req_text(e, "stop", v);
        if (rc)
            return rc;
        if (v->u.str.len == 0)
            return api_fail(e, 400, "stop", "invalid_value", "'stop' must not be empty.");
        out->stop[0] = v->u.str.s;
        out->n_stop = 1;
        return CORE_OK;
    }
    if (v->type != JSON_ARRAY)
        return req_type_err(e, "stop", v, "a string or an array of strings");
    if (v->u.kids.n > REQ_MAX_STOP)
        return api_fail(e, 400, "stop", "array_above_max_length",
                        "'stop' has %zu sequences; at most %d are allowed.", v->u.kids.n,
                        REQ_MAX_STOP);
    size_t i = 0;
    for (const json_value *s = v->u.kids.first; s; s = s->next, i++) {
        char param[32];
        snprintf(param, sizeof(param), "stop[%zu]", i);
        int rc = req_text(e, param, s);
        if (rc)
            return rc;
        if (s->u.str.len == 0)
            return api_fail(e, 400, param, "invalid_value", "'%s' must not be empty.", param);
        out->stop[out->n_stop++] = s->u.str.s;
    }
    return CORE_OK;
}

/* OpenAI parameters that we accept only in their "off" form. */
static const char *const req_unsupported[] = {
    "logprobs", "top_logprobs", "logit_bias", "tools",      "tool_choice", "functions",
    "function_call", "response_format", "modalities", "audio", "prediction",
    "reasoning_effort", "web_search_options", NULL};
/* OpenAI parameters that change nothing here, whatever their value. */
static const char *const req_ignored[] = {"store", "metadata", "service_tier",
                                          "parallel_tool_calls", NULL};

static bool req_in(const json_value *k, const char *const *list)
{
    for (; *list; list++)
        if (req_key_is(k, *list))
            return true;
    return false;
}

static int req_top(arena *a, const req_limits *lim, const json_value *root, req_chat *out,
                   api_error *e)
{
    const json_value *model = NULL, *messages = NULL, *mt = NULL, *mct = NULL;
    int rc = CORE_OK;
    for (const json_value *k = root->u.kids.first; k; k = k->next) {
        if (req_key_is(k, "model"))
            model = k;
        else if (req_key_is(k, "messages"))
            messages = k;
        else if (k->type == JSON_NULL || req_in(k, req_ignored))
            continue; /* null means "not given" for every optional field */
        else if (req_key_is(k, "max_tokens"))
            mt = k;
        else if (req_key_is(k, "max_completion_tokens"))
            mct = k;
        else if (req_key_is(k, "temperature"))
            rc = req_number(e, "temperature", k, 0, 2, &out->temperature);
        else if (req_key_is(k, "top_p"))
            rc = req_number(e, "top_p", k, 0, 1, &out->top_p);
        else if (req_key_is(k, "frequency_penalty"))
            rc = req_number(e, "frequency_penalty", k, -2, 2, &out->frequency_penalty);
        else if (req_key_is(k, "presence_penalty"))
            rc = req_number(e, "presence_penalty", k, -2, 2, &out->presence_penalty);
        else if (req_key_is(k, "seed")) {
            int64_t s;
            rc = req_integer(e, "seed", k, INT64_MIN, INT64_MAX, &s);
            out->seed = (uint64_t)s;
            out->has_seed = true;
        } else if (req_key_is(k, "n")) {
            int64_t n;
            rc = req_integer(e, "n", k, INT64_MIN, INT64_MAX, &n);
            if (!rc && n != 1)
                rc = api_fail(e, 400, "n", n > 1 ? "unsupported_value" : "invalid_value",
                              "'n' = %lld is not supported; only one choice (n = 1) is.",
                              (long long)n);
        } else if (req_key_is(k, "stop")) {
            rc = req_stop(k, out, e);
        } else if (req_key_is(k, "stream")) {
            if (k->type != JSON_BOOL)
                rc = req_type_err(e, "stream", k, "a boolean");
            else
                out->stream = k->u.b;
        } else if (req_key_is(k, "stream_options")) {
            if (k->type != JSON_OBJECT)
                return req_type_err(e, "stream_options", k, "an object");
            for (const json_value *o = k->u.kids.first; o; o = o->next) {
                if (!req_key_is(o, "include_usage"))
                    return api_fail(e, 400, "stream_options", "unknown_parameter",
                                    "Unrecognized stream_options argument '%.40s'.", o->key);
                if (o->type == JSON_NULL)
                    continue;
                if (o->type != JSON_BOOL)
                    return req_type_err(e, "stream_options.include_usage", o, "a boolean");
                out->include_usage = o->u.b;
            }
        } else if (req_key_is(k, "user")) {
            rc = req_text(e, "user", k);
            out->user = k->u.str.s;
        } else if (req_in(k, req_unsupported)) {
            bool off = req_trivial(k) ||
                       (req_key_is(k, "response_format") &&
                        json_get(k, "type") && json_get(k, "type")->type == JSON_STRING &&
                        strcmp(json_get(k, "type")->u.str.s, "text") == 0) ||
                       (req_key_is(k, "tool_choice") && k->type == JSON_STRING &&
                        strcmp(k->u.str.s, "none") == 0);
            if (!off)
                rc = api_fail(e, 400, k->key, "unsupported_parameter",
                              "'%.40s' is not supported by this server.", k->key);
        } else {
            rc = api_fail(e, 400, k->key, "unknown_parameter",
                          "Unrecognized request argument supplied: %.40s", k->key);
        }
        if (rc)
            return rc;
    }

    if (!model || model->type == JSON_NULL)
        return api_fail(e, 400, "model", "missing_required_parameter",
                        "Missing required parameter: 'model'.");
    if ((rc = req_text(e, "model", model)))
        return rc;
    bool known = false;
    for (size_t i = 0; i < lim->n_models && !known; i++)
        known = strcmp(lim->models[i], model->u.str.s) == 0;
    if (!known)
        return api_fail(e, 400, "model", "model_not_found",
                        "The model '%.64s' does not exist; GET /v1/models lists the models.",
                        model->u.str.s);
    out->model = model->u.str.s;

    if (!messages || messages->type == JSON_NULL)
        return api_fail(e, 400, "messages", "missing_required_parameter",
                        "Missing required parameter: 'messages'.");
    if ((rc = req_messages(a, lim, messages, out, e)))
        return rc;

    int64_t t;
    if (mt) {
        if ((rc = req_integer(e, "max_tokens", mt, 1, INT32_MAX, &t)))
            return rc;
        out->max_tokens = (long)t;
    }
    /* The newer name wins when a client sends both. */
    if (mct) {
        if ((rc = req_integer(e, "max_completion_tokens", mct, 1, INT32_MAX, &t)))
            return rc;
        out->max_tokens = (long)t;
    }
    if (out->include_usage && !out->stream)
        out->include_usage = false;
    return CORE_OK;
}

static int req_hex(int c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

char *req_unescape(arena *a, const char *s, size_t n, size_t *len)
{
    char *o = arena_alloc(a, n + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            *w++ = ' ';
        } else if (s[i] == '%') {
            int h = i + 2 < n ? req_hex((unsigned char)s[i + 1]) : -1;
            int l = i + 2 < n ? req_hex((unsigned char)s[i + 2]) : -1;
            if (h < 0 || l < 0 || (h | l) == 0)
                return NULL;
            *w++ = (char)(h << 4 | l);
            i += 2;
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    if (len)
        *len = (size_t)(w - o);
    return o;
}

int req_parse_object(arena *a, const char *body, size_t len, size_t max_members,
                     json_value **root, api_error *e)
{
    char why[160];
    int rc = json_parse(a, body, len, root, why, sizeof(why));
    if (rc == CORE_ENOMEM) {
        api_fail(e, 500, NULL, NULL, "Out of memory.");
        return CORE_ENOMEM;
    }
    if (rc)
        return api_fail(e, 400, NULL, "invalid_json",
                        "We could not parse the JSON body of your request (%s).", why);
    const json_value *o = *root;
    if (o->type != JSON_OBJECT)
        return api_fail(e, 400, NULL, "invalid_json",
                        "The request body must be a JSON object, not %s.", json_type_name(o->type));
    /* bounds the duplicate scan below, which is quadratic */
    if (o->u.kids.n > max_members)
        return api_fail(e, 400, NULL, "invalid_value",
                        "The request has %zu members; no valid request has more than %zu.",
                        o->u.kids.n, max_members);
    for (const json_value *k = o->u.kids.first; k; k = k->next) {
        if (!json_utf8_valid(k->key, k->key_len) || memchr(k->key, '\0', k->key_len))
            return api_fail(e, 400, NULL, "invalid_encoding", "A member name is not valid UTF-8.");
        if (json_get(o, k->key) != k)
            return api_fail(e, 400, k->key, "invalid_value", "'%.40s' is given twice.", k->key);
    }
    return CORE_OK;
}

int req_parse_chat(arena *a, const char *body, size_t len, const req_limits *lim,
                   req_chat *out, api_error *e)
{
    memset(out, 0, sizeof(*out));
    out->temperature = 1.0;
    out->top_p = 1.0;
    json_value *root;
    int rc = req_parse_object(a, body, len, 64, &root, e);
    return rc ? rc : req_top(a, lim, root, out, e);
}
