/* fuzz_qa_request.c: libFuzzer harness for the POST /v1/qa request parser,
 * the grounded prompt and the response writers. Input: one request body.
 * Whatever the parser accepts is written back as JSON and must parse to
 * the same request; the prompt and every response body are built from it
 * and must be valid JSON. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "json.h"
#include "qa.h"
#include "sbuf.h"

static void fuzz_check_json(arena *a, const char *s, size_t n)
{
    json_value *v;
    char msg[160];
    if (json_parse(a, s, n, &v, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "invalid JSON written (%s): %.*s\n", msg, (int)n, s);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static arena *a;
    if (!a)
        a = arena_new(0);
    static const char *const models[] = {"demo", "m2"};
    qa_limits lim = {.models = models, .n_models = 2, .default_model = "demo",
                     .default_top_k = 4, .max_question_bytes = 300};
    qa_request r, t;
    api_error e;
    sbuf b;
    sbuf_init(&b);
    if (qa_parse(a, (const char *)data, size, &lim, &r, &e) != CORE_OK) {
        arena_reset(a);
        return 0;
    }
    /* Round trip. */
    sbuf_puts(&b, "{\"question\":");
    json_put_str(&b, r.question, r.question_len);
    sbuf_puts(&b, ",\"model\":");
    json_put_str(&b, r.model, strlen(r.model));
    sbuf_printf(&b, ",\"top_k\":%d,\"stream\":%s", r.top_k, r.stream ? "true" : "false");
    if (r.max_tokens)
        sbuf_printf(&b, ",\"max_tokens\":%ld", r.max_tokens);
    sbuf_printf(&b, ",\"stream_options\":{\"include_usage\":%s}}",
                r.include_usage ? "true" : "false");
    if (b.oom || qa_parse(a, b.data, b.len, &lim, &t, &e) != CORE_OK ||
        t.question_len != r.question_len || memcmp(t.question, r.question, r.question_len) ||
        strcmp(t.model, r.model) || t.top_k != r.top_k || t.max_tokens != r.max_tokens ||
        t.stream != r.stream || t.include_usage != r.include_usage) {
        fprintf(stderr, "round trip failed: %s\n", b.data ? b.data : "(oom)");
        abort();
    }
    /* The question as a source too: the prompt and bodies carry it. */
    kb_hit h = {.doc_id = r.question, .doc_title = r.model, .title = r.question, .chunk = 1,
                .score = 2.5, .text = r.question, .text_len = r.question_len};
    core_chat_msg msgs[2];
    if (qa_prompt(a, &h, 1, r.question, r.question_len, msgs) != CORE_OK ||
        !strstr(msgs[1].content, "[1] "))
        abort();
    qa_meta m = {.id = "qa-x", .created = 1, .model = r.model, .kb_version = 3};
    long long u[3] = {r.top_k, r.max_tokens, 0};
    sbuf src;
    sbuf_init(&src);
    qa_sources_json(&src, &h, 1);
    sbuf_clear(&b);
    qa_body(&b, &m, r.question, r.question_len, src.data, src.len, "stop", u, r.stream);
    fuzz_check_json(a, b.data, b.len);
    sbuf_clear(&b);
    qa_sse_delta(&b, &m, r.question, r.question_len);
    fuzz_check_json(a, b.data + 6, b.len - 8); /* "data: " ... "\n\n" */
    sbuf_free(&src);
    sbuf_free(&b);
    arena_reset(a);
    return 0;
}
