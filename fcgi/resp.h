/* resp.h: response bodies, shaped as OpenAI shapes them.
 *
 * chat.completion (non-streaming), chat.completion.chunk SSE events
 * ("data: {...}\n\n", ending with "data: [DONE]\n\n"), errors, the model
 * list. Every function appends to out and returns 0, or CORE_ENOMEM. Text is
 * written as given; invalid UTF-8 bytes (which the core should never hand
 * us) become U+FFFD rather than breaking the JSON.
 *
 * Ownership: all arguments are borrowed for the call.
 */
#ifndef RESP_H
#define RESP_H

#include <stdbool.h>
#include <stddef.h>

#include "req.h"
#include "sbuf.h"

typedef struct {
    const char *id;    /* "chatcmpl-..." */
    long long created; /* Unix seconds */
    const char *model;
} resp_meta;

typedef struct {
    long long prompt_tokens, completion_tokens;
    long long cached_tokens; /* prompt tokens answered from the cache */
} resp_usage;

/* finish: "stop" or "length". deadline_hit adds "edgegate":{"deadline_hit":true}. */
int resp_completion(sbuf *out, const resp_meta *m, const char *text, size_t len,
                    const char *finish, const resp_usage *u, bool deadline_hit);

/* The first event: delta {"role":"assistant","content":""}. include_usage
 * adds "usage": null to every event but the usage one, as OpenAI does. */
int resp_sse_role(sbuf *out, const resp_meta *m, bool include_usage);
int resp_sse_text(sbuf *out, const resp_meta *m, const char *text, size_t len,
                  bool include_usage);
int resp_sse_finish(sbuf *out, const resp_meta *m, const char *finish, bool include_usage,
                    bool deadline_hit);
/* "choices": [] with the usage; sent last when include_usage. */
int resp_sse_usage(sbuf *out, const resp_meta *m, const resp_usage *u);
/* An error after the headers went out: data: {"error":{...}} */
int resp_sse_error(sbuf *out, const api_error *e);
int resp_sse_done(sbuf *out);

/* {"error":{"message","type","param","code"}} */
int resp_error(sbuf *out, const api_error *e);
/* {"object":"list","data":[{"id","object":"model","created","owned_by","type"}]}
 * type (edgegate's own field: "chat", "embedding" or "detection", so clients
 * can tell which endpoint takes the model) is left out where types[i] or
 * types is NULL. */
int resp_models(sbuf *out, const char *const *ids, const char *const *types, size_t n,
                long long created);

#endif
