/* req.h: the POST /v1/chat/completions body -> a validated req_chat.
 *
 * Accepts what OpenAI's chat API accepts for text chat: model, messages
 * (system/developer/user/assistant; content a string or an array of
 * {"type":"text","text":...} parts), max_tokens / max_completion_tokens,
 * temperature, top_p, seed, stop (string or up to 4 strings), stream,
 * stream_options.include_usage, frequency_penalty, presence_penalty, user,
 * n (1 only). Optional fields may be null. Features we do not implement
 * (tools, logprobs, ...) are accepted only in their "off" form; anything
 * else is a 400 that names the parameter, as OpenAI's errors do.
 *
 * Ownership: every string in req_chat points into the arena passed to
 * req_parse_chat() and lives until its next reset.
 */
#ifndef REQ_H
#define REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "core.h"
#include "json.h"

#define REQ_MAX_STOP 4

/* An OpenAI-style error: {"error":{"message","type","param","code"}}. */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "server_error", ... */
    const char *code; /* NULL: null */
    char param[96];   /* "": null */
    char message[320];
} api_error;

/* Fills e and returns CORE_EINVAL (for `return api_fail(...)`). */
int api_fail(api_error *e, int status, const char *param, const char *code, const char *fmt,
             ...) __attribute__((format(printf, 5, 6)));

typedef struct {
    size_t max_messages;
    const char *const *models; /* ids a request may name */
    size_t n_models;
} req_limits;

typedef struct {
    const char *model;
    core_chat_msg *msgs; /* roles normalized: "developer" becomes "system" */
    size_t n_msgs;
    long max_tokens; /* 0: not given */
    double temperature, top_p;
    double frequency_penalty, presence_penalty;
    bool has_seed;
    uint64_t seed;
    const char *stop[REQ_MAX_STOP];
    size_t n_stop;
    bool stream, include_usage;
    const char *user; /* NULL: not given */
} req_chat;

/* The body of every JSON endpoint: one object of at most max_members
 * members whose names are valid UTF-8 (no NUL) and distinct, so handlers
 * look members up without surprises. *root lives in a. CORE_OK; CORE_EINVAL
 * with e filled (400 invalid_json, or invalid_value naming the member);
 * CORE_ENOMEM (e: 500). */
int req_parse_object(arena *a, const char *body, size_t len, size_t max_members,
                     json_value **root, api_error *e);

/* Percent-decodes s[0..n) of a query string ('+' is a space) into a; the
 * result is NUL-terminated, its length in *len (may be NULL). NULL when a
 * '%' is not followed by two hex digits, on %00, or out of memory. */
char *req_unescape(arena *a, const char *s, size_t n, size_t *len);

/* CORE_OK; CORE_EINVAL with e filled (status 400); CORE_ENOMEM (e: 500). */
int req_parse_chat(arena *a, const char *body, size_t len, const req_limits *lim,
                   req_chat *out, api_error *e);

#endif
