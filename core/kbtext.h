/* kbtext.h: documents for the knowledge base: parsing, chunking and index
 * terms. Pure text processing (no I/O, no LMDB); fcgi/kb.c stores the
 * results.
 *
 * Parsing (format comment atop kbtext.c): plain text (paragraphs at blank
 * lines), Markdown (ATX and setext headings open sections, fenced code is
 * one block, list items and quotes are blocks) and HTML (script, style,
 * noscript and template content and comments dropped, entities decoded,
 * <title> is the document title, h1-h6 are headings, block tags end
 * paragraphs, <pre> keeps its line breaks). Input must be UTF-8 (a BOM is
 * skipped): NUL bytes or invalid UTF-8 make it "binary" (CORE_EFORMAT).
 *
 * Chunking: each section (the text under one heading) is cut into chunks
 * of about chunk_bytes of cleaned text, preferably at paragraph ends, then
 * sentence ends, then spaces; a code block is never cut unless it alone is
 * over four chunks long. Each chunk after the first of a section repeats
 * about overlap_bytes from the end of the previous one (starting at a word)
 * so a passage cut in two is still whole in one chunk. Every chunk carries
 * its heading path ("Install > Debian") and the byte range of the original
 * document it came from.
 *
 * Terms: letters and digits, lowercased (Unicode simple case folding) with
 * diacritics removed (first code point of the canonical decomposition);
 * English stopwords dropped; ASCII words Porter-stemmed; runs of CJK
 * ideographs, kana and hangul become overlapping character bigrams (a run
 * of one character is itself a term). Queries go through the same function.
 *
 * Ownership: kbtext_parse() returns a kbtext_doc the caller frees with
 * kbtext_doc_free(); every string in it belongs to it. Everything else
 * borrows its arguments for the call.
 */
#ifndef KBTEXT_H
#define KBTEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    KBTEXT_AUTO = 0,
    KBTEXT_TEXT,
    KBTEXT_MARKDOWN,
    KBTEXT_HTML,
} kbtext_format;

#define KBTEXT_MAX_TERM 64 /* bytes; longer words are not indexed */

/* From name's extension (.txt .text .md .markdown .html .htm .xhtml;
 * name may be NULL), else sniffed from the first bytes. Never AUTO. */
kbtext_format kbtext_detect(const char *name, const char *data, size_t len);

/* True for NUL bytes or invalid UTF-8 (overlongs, surrogates, > U+10FFFF). */
bool kbtext_is_binary(const char *data, size_t len);

typedef struct {
    size_t chunk_bytes;   /* target chunk size (>= 64) */
    size_t overlap_bytes; /* < chunk_bytes / 2 */
} kbtext_params;

typedef struct {
    const char *title; /* heading path, "" when none; NUL-terminated */
    const char *text;  /* cleaned text, NUL-terminated */
    size_t len;        /* bytes of text */
    size_t start, end; /* byte range in the original document */
} kbtext_chunk;

typedef struct {
    const char *title;    /* HTML <title> or the first heading; NULL when none */
    kbtext_chunk *chunks; /* in document order */
    size_t n;
    void *priv;           /* the memory behind the strings */
} kbtext_doc;

/* Parses and chunks data[0..len). CORE_EFORMAT with msg "binary ..." or
 * "empty ..." (no text), CORE_EINVAL for bad params, CORE_ENOMEM. */
int kbtext_parse(const char *data, size_t len, kbtext_format f, const kbtext_params *p,
                 kbtext_doc **out, char *msg, size_t msg_size);
void kbtext_doc_free(kbtext_doc *d); /* NULL is a no-op */

/* Calls fn for every index term of text[0..len) in order (repeats
 * included); term is a scratch buffer valid during the call. A nonzero
 * return from fn stops the scan and is returned. */
typedef int (*kbtext_term_fn)(void *user, const char *term, size_t len);
int kbtext_terms(const char *text, size_t len, kbtext_term_fn fn, void *user);

/* Porter stemmer (M.F. Porter, 1980) on a lowercase ASCII word in place;
 * returns the new length. Words of two letters or fewer are left alone. */
size_t kbtext_stem(char *w, size_t len);

#endif
