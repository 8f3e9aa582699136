/* qa.h: POST /v1/qa, answers from the knowledge base with their sources.
 *
 * A question retrieves the top_k chunks of the knowledge base (kb.h); when
 * none is relevant (no hit, or the best BM25 score is below qa.min_score) the
 * answer is QA_NOT_FOUND, made without the model, the NPU or a token.
 * Otherwise the chat model answers at temperature 0 from a prompt that
 * holds the chunks numbered [1]..[k] (lowest ranked dropped until the
 * prompt and max_tokens fit the context), under the NPU arbiter and the
 * client's token budget (worker_generate()). Answers are cached with the
 * knowledge base version in the key and in the entry, so
 * {"kb_version_below":N} purges the answers of older knowledge bases.
 *
 * Request (JSON object; null means "not given"; anything else is a 400
 * naming the parameter):
 *   question        string, required, not blank, <= qa.max_question_bytes
 *   top_k           integer 1..20 (default qa.top_k)
 *   max_tokens      integer >= 1 (default qa.max_tokens; capped like chat)
 *   model           a chat model id (default qa.model, else the first)
 *   stream          boolean
 *   stream_options  {"include_usage": boolean} (usage is always in the
 *                   final event; accepted for OpenAI clients)
 * Response: {"id","object":"qa","created","model","answer","sources":
 * [{"document","title","section","chunk","score","text"}],"finish_reason",
 * "usage","kb_version"}. Streamed (SSE): a "qa.sources" event (sources,
 * kb_version), "qa.delta" events with answer text, a "qa.done" event with
 * finish_reason and usage, then [DONE].
 *
 * Ownership: strings in a qa_request point into the arena given to
 * qa_parse() (or the body) and live until its next reset. Writers append
 * to the caller's sbuf; every argument is borrowed for the call.
 */
#ifndef QA_H
#define QA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "core.h"
#include "kb.h"
#include "req.h"
#include "sbuf.h"
#include "worker_impl.h"

#define QA_MAX_TOP_K 20
#define QA_NOT_FOUND "I could not find this in the knowledge base."

typedef struct {
    const char *const *models; /* ids a request may name */
    size_t n_models;
    const char *default_model;
    int default_top_k;          /* 1..QA_MAX_TOP_K */
    size_t max_question_bytes;
} qa_limits;

typedef struct {
    const char *model;
    const char *question; /* NUL-terminated, valid UTF-8, no NUL inside */
    size_t question_len;
    int top_k;
    long max_tokens; /* 0: not given */
    bool stream, include_usage;
} qa_request;

/* CORE_OK; CORE_EINVAL with e filled (400); CORE_ENOMEM (e: 500). */
int qa_parse(arena *a, const char *body, size_t len, const qa_limits *lim, qa_request *out,
             api_error *e);

/* The grounded prompt: msgs[0] the system message (answer only from the
 * numbered sources, cite them as [n]), msgs[1] the first n hits numbered
 * [1]..[n] with their titles, then the question. Strings in the arena. */
int qa_prompt(arena *a, const kb_hit *hits, size_t n, const char *question, size_t qlen,
              core_chat_msg msgs[2]);

/* ---- response bodies ------------------------------------------------------ */

typedef struct {
    const char *id;    /* "qa-..." */
    long long created; /* Unix seconds */
    const char *model;
    uint64_t kb_version;
} qa_meta;

/* The "sources" array of the first n hits. */
int qa_sources_json(sbuf *out, const kb_hit *hits, size_t n);
/* sources: a JSON array from qa_sources_json(). usage: prompt, completion,
 * cached prompt tokens. */
int qa_body(sbuf *out, const qa_meta *m, const char *answer, size_t len, const char *sources,
            size_t sources_len, const char *finish, const long long usage[3], bool deadline_hit);
int qa_sse_sources(sbuf *out, const qa_meta *m, const char *sources, size_t sources_len);
int qa_sse_delta(sbuf *out, const qa_meta *m, const char *text, size_t len);
int qa_sse_done(sbuf *out, const qa_meta *m, const char *finish, const long long usage[3],
                bool deadline_hit);

/* The endpoint: POST /v1/qa for an identified client. */
void qa_handle(worker_state *w, worker_req *q, long long t0);

#endif
