/* embed.h: POST /v1/embeddings, OpenAI-compatible, served by an embedding
 * model (core_info.embedding: a BERT-family GGUF) under the NPU arbiter in
 * the short-job class, charged to the client's token budget (the input
 * tokens, [CLS] and [SEP] included) and cached like chat answers.
 *
 * Request (JSON object; null means "not given"; anything else is a 400
 * naming the parameter):
 *   input            required: a non-empty string, or an array of 1 to
 *                    max_inputs non-empty strings (valid UTF-8, no NUL);
 *                    arrays of token ids are refused (text only)
 *   model            required: a model id, which must be an embedding model
 *   encoding_format  "float" (default) or "base64" (the little-endian
 *                    float32 bytes of each vector)
 *   dimensions       integer: must equal the model's embedding size
 *   user             string, ignored
 * Response: {"object":"list","data":[{"object":"embedding","index":i,
 * "embedding":[...] | "BASE64"}],"model","usage":{"prompt_tokens",
 * "total_tokens"}}; vectors are pooled as the model says and L2-normalised.
 * An input longer than the model's context is a 400 context_length_exceeded.
 *
 * Ownership: strings and arrays in an embed_request point into the arena
 * given to embed_parse() and live until its next reset. embed_body()
 * appends to the caller's sbuf; arguments are borrowed for the call.
 */
#ifndef EMBED_H
#define EMBED_H

#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "req.h"
#include "sbuf.h"
#include "worker_impl.h"

typedef struct {
    const char *const *models; /* ids a request may name */
    size_t n_models;
    size_t max_inputs;         /* items of an input array */
} embed_limits;

typedef struct {
    const char *model;    /* one of embed_limits.models */
    const char **inputs;  /* NUL-terminated, valid UTF-8, no NUL inside */
    size_t *lens;
    size_t n_inputs;      /* >= 1 */
    bool base64;
    long dimensions;      /* 0: not given */
} embed_request;

/* CORE_OK; CORE_EINVAL with e filled (400); CORE_ENOMEM (e: 500). */
int embed_parse(arena *a, const char *body, size_t len, const embed_limits *lim,
                embed_request *out, api_error *e);

/* The response body for n vectors of dim floats (vecs[i * dim ...]). */
int embed_body(sbuf *out, const char *model, const float *vecs, size_t n, int dim, bool base64,
               long long prompt_tokens);

/* The endpoint: POST /v1/embeddings for an identified client. */
void embed_handle(worker_state *w, worker_req *q);

#endif
