/* fuzz_request.c: libFuzzer harness for the chat request parser (and the
 * JSON responses built from what it accepts). Input: one request body. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "req.h"
#include "resp.h"
#include "sbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static arena *a;
    if (!a)
        a = arena_new(0);
    static const char *const models[] = {"demo", "m2"};
    req_limits lim = {.max_messages = 8, .models = models, .n_models = 2};
    req_chat r;
    api_error e;
    sbuf out;
    sbuf_init(&out);
    if (req_parse_chat(a, (const char *)data, size, &lim, &r, &e) == CORE_OK) {
        /* Echo every accepted string back through the writers. */
        resp_meta m = {.id = "chatcmpl-x", .created = 1, .model = r.model};
        resp_usage u = {(long long)r.n_msgs, r.max_tokens};
        for (size_t i = 0; i < r.n_msgs; i++) {
            resp_completion(&out, &m, r.msgs[i].content, strlen(r.msgs[i].content), "stop", &u,
                            r.stream);
            resp_sse_text(&out, &m, r.msgs[i].role, strlen(r.msgs[i].role), r.include_usage);
        }
        for (size_t i = 0; i < r.n_stop; i++)
            resp_sse_text(&out, &m, r.stop[i], strlen(r.stop[i]), false);
    } else {
        resp_error(&out, &e);
    }
    sbuf_free(&out);
    arena_reset(a);
    return 0;
}
