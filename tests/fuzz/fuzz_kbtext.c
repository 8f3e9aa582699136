/* fuzz_kbtext.c: libFuzzer harness for the knowledge base's document
 * parser, chunker and term extractor (core/kbtext.h). Input: the first byte
 * picks the format (text, Markdown, HTML, detected) and the chunk size; the
 * rest is the document. Checks: chunks lie inside the document, in order,
 * hold valid UTF-8 and respect the size bound (code blocks aside); terms
 * are short, non-empty UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "kbtext.h"

static int fuzz_term(void *user, const char *t, size_t len)
{
    (void)user;
    if (len == 0 || len > KBTEXT_MAX_TERM + 8 || kbtext_is_binary(t, len))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const kbtext_format fmts[] = {KBTEXT_TEXT, KBTEXT_MARKDOWN, KBTEXT_HTML, KBTEXT_AUTO};
    kbtext_format f = fmts[data[0] & 3];
    kbtext_params p = {64u << ((data[0] >> 2) & 3), (size_t)(data[0] >> 4) * 2};
    const char *doc = (const char *)data + 1;
    size_t len = size - 1;
    kbtext_doc *d = NULL;
    char msg[200];
    int rc = kbtext_parse(doc, len, f, &p, &d, msg, sizeof(msg));
    kbtext_terms(doc, len, fuzz_term, NULL); /* raw bytes too: must not crash */
    if (rc != CORE_OK) {
        if (rc != CORE_EFORMAT || d)
            abort();
        return 0;
    }
    size_t prev = 0;
    for (size_t i = 0; i < d->n; i++) {
        const kbtext_chunk *c = &d->chunks[i];
        if (c->start > c->end || c->end > len || c->start < prev || c->len == 0 ||
            strlen(c->text) != c->len || kbtext_is_binary(c->text, c->len) ||
            kbtext_is_binary(c->title, strlen(c->title)) || c->len > 4 * p.chunk_bytes + 8)
            abort();
        prev = c->start;
        kbtext_terms(c->text, c->len, fuzz_term, NULL);
    }
    if (d->title && kbtext_is_binary(d->title, strlen(d->title)))
        abort();
    kbtext_doc_free(d);
    return 0;
}
