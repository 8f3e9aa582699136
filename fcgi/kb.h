/* kb.h: the knowledge base: documents split into chunks, stored in LMDB,
 * found again by BM25 (and, with an embedder, by dense vectors and a hybrid
 * of both).
 *
 * Documents: plain text, Markdown or HTML bytes under an id (a path or any
 * name). kb_ingest() parses and chunks them (core/kbtext.h: headings and
 * paragraphs, a target size with overlap, the heading path as each chunk's
 * title, byte offsets into the original), indexes the terms of every chunk
 * (English: lowercased, stopwords dropped, stemmed; CJK: character bigrams)
 * and replaces the document's previous chunks in the same write transaction.
 * Re-ingesting identical content (same bytes, title, type, chunking
 * parameters and embedding model) writes nothing.
 *
 * The version: a uint64 in the file, bumped by every ingest that changes
 * something and by every delete that removes something, never by a no-op.
 * Searches report the version of the snapshot they read, so an answer can
 * name the knowledge base it came from (the response cache keys on it).
 *
 * Ranking (core/rank.h): BM25 (k1 1.2, b 0.75) over an inverted index;
 * dense: exact inner product between the query vector and every stored
 * chunk vector; hybrid: reciprocal rank fusion (k = 60) of the two lists.
 * Ties are broken by chunk age (older first), so results are deterministic.
 *
 * Concurrency: one kb handle per process, used by one thread at a time
 * (LMDB rules: open after fork(), never before). Any number of processes
 * may open the same file: writes are serialised by LMDB, and every search
 * or listing reads one consistent snapshot even while another process
 * ingests.
 *
 * Ownership: kb_open() copies what it needs from the params (the path, the
 * embedder's model name); the embedder's user pointer is borrowed for the
 * handle's life, or owned by it when embed_free is set. Everything kb_list() and kb_search() return is allocated
 * from the caller's arena and lives until its next reset; nothing in it
 * points into LMDB. Inputs are borrowed for the call.
 */
#ifndef KB_H
#define KB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

#define KB_MAX_ID 255           /* bytes in a document id (UTF-8, no control characters) */
#define KB_MAX_TITLE 1024       /* bytes kept of a title */
#define KB_MAX_TOP_K 100        /* hits one search may return */
#define KB_MAX_QUERY_BYTES 16384 /* longer queries are CORE_EINVAL */
#define KB_MAX_EMBED_DIM 4096

typedef enum {
    KB_TYPE_AUTO = 0, /* from the id's extension, else sniffed from the bytes */
    KB_TYPE_TEXT,
    KB_TYPE_MARKDOWN,
    KB_TYPE_HTML,
} kb_type;

typedef enum {
    KB_MODE_AUTO = 0, /* hybrid when an embedder is configured and vectors exist, else BM25 */
    KB_MODE_BM25,
    KB_MODE_DENSE,
    KB_MODE_HYBRID,
} kb_mode;

/* "text", "markdown", "html" ("auto" for KB_TYPE_AUTO). */
const char *kb_type_name(kb_type t);
/* Accepts the names above plus "md", "htm", "txt", "plain"; -1 if unknown. */
int kb_type_parse(const char *s, kb_type *out);
/* "auto", "bm25", "dense", "hybrid". */
const char *kb_mode_name(kb_mode m);
int kb_mode_parse(const char *s, kb_mode *out); /* 0, or -1 if unknown */

/* An embedding function: writes dim floats (the vector of text[0..len),
 * normalised so that inner product is cosine similarity) into out. Returns
 * 0 or a core_err code. Called by kb_ingest() once per chunk (outside any
 * write transaction) and by kb_search() for a query without a query_vec. */
typedef int (*kb_embed_fn)(void *user, const char *text, size_t len, float *out);

typedef struct {
    const char *path;          /* required: the LMDB file (MDB_NOSUBDIR); "-lock" beside it */
    size_t map_size;           /* 256 MiB; a write that would pass it fails, see kb_full() */
    size_t chunk_bytes;        /* 1000: target chunk size in bytes of text */
    size_t overlap_bytes;      /* 150: text repeated from the end of the previous chunk */
    size_t max_document_bytes; /* 8 MiB: larger documents are CORE_EINVAL */
    int reader_check_s;        /* 10: how often stale reader slots are cleared */
    /* Optional dense vectors (NULL embed: BM25 only). embed_model names the
     * model, so vectors made by another one are never compared with these. */
    kb_embed_fn embed;
    void *embed_user;
    int embed_dim;             /* 1..KB_MAX_EMBED_DIM when embed is set */
    const char *embed_model;   /* required with embed; copied */
    /* Called by kb_close() (and by a failing kb_open()) with embed_user;
     * NULL: the caller keeps embed_user alive and frees it. */
    void (*embed_free)(void *user);
} kb_params;

kb_params kb_default_params(void);

typedef struct kb kb;

/* Creates the file if absent. CORE_EINVAL for bad params, CORE_EIO when
 * LMDB fails, CORE_EUNSUPPORTED for a file of another format version. */
int kb_open(const kb_params *p, kb **out, char *msg, size_t msg_size);
void kb_close(kb *k); /* NULL is a no-op */
/* Text of the last LMDB failure (for the log); "" when none. */
const char *kb_errmsg(const kb *k);
/* True when the last failed write failed because the map is full (raise
 * kb.map_size_mb or delete documents); reset by the next successful write. */
bool kb_full(const kb *k);

/* ---- writing ------------------------------------------------------------------ */

typedef struct {
    const char *id;    /* required, NUL-terminated, 1..KB_MAX_ID bytes */
    const char *title; /* NULL or "": the document's own (HTML <title>, first heading) or the id */
    kb_type type;      /* KB_TYPE_AUTO: from the id's extension, else sniffed */
    const char *data;  /* the document's bytes */
    size_t len;
} kb_doc_in;

typedef struct {
    uint64_t version; /* of the knowledge base after the call */
    size_t chunks;    /* chunks the document now has */
    bool replaced;    /* an earlier version of the document was replaced */
    bool unchanged;   /* identical to the stored version: nothing written */
    kb_type type;     /* the type used (never AUTO) */
} kb_ingest_result;

/* Adds or replaces one document. Errors (msg says which, for the client):
 *   CORE_EINVAL   bad id, or len > max_document_bytes ("too large")
 *   CORE_EFORMAT  binary (NUL bytes or invalid UTF-8), or no text at all ("empty")
 *   CORE_EIO      LMDB failed (kb_errmsg(); kb_full() when the map is full)
 *   any code the embedder returns
 * On error nothing is written. res may be NULL. */
int kb_ingest(kb *k, const kb_doc_in *d, kb_ingest_result *res, char *msg, size_t msg_size);

/* Removes a document and its chunks. *found false: no such id (not an
 * error; the version stays). version (may be NULL) gets the version after. */
int kb_delete(kb *k, const char *id, bool *found, uint64_t *version);

/* Computes vectors for every chunk that has none from the configured
 * embedder (after the embedder was added or changed; vectors of another
 * model are dropped first). *done (may be NULL) gets the chunks embedded.
 * CORE_EINVAL without an embedder. */
int kb_reembed(kb *k, size_t *done, char *msg, size_t msg_size);

/* ---- reading -------------------------------------------------------------------- */

typedef struct {
    const char *id, *title;
    kb_type type;
    uint64_t bytes;   /* of the original document */
    uint32_t chunks;
    int64_t updated;  /* Unix seconds of the last change */
} kb_doc;

/* Every document in id order, from one snapshot. *out (arena) holds *n. */
int kb_list(kb *k, arena *a, kb_doc **out, size_t *n, uint64_t *version);

typedef struct {
    uint64_t version;
    uint64_t documents, chunks, terms; /* terms: distinct indexed terms */
    uint64_t postings;                 /* (term, chunk) pairs */
    uint64_t bytes;                    /* sum of the documents' sizes */
    uint64_t vectors;                  /* chunks with a vector of the configured model */
    int embed_dim;                     /* 0: no embedder */
    uint64_t map_size, map_used;       /* bytes */
} kb_stats;

int kb_get_stats(kb *k, kb_stats *out);
/* The current version (0 for a knowledge base never written). */
int kb_version(kb *k, uint64_t *out);

typedef struct {
    size_t top_k;           /* 1..KB_MAX_TOP_K (0: 5) */
    kb_mode mode;           /* KB_MODE_AUTO by default */
    /* Optional: the query's vector (embed_dim floats), e.g. computed by the
     * caller under the NPU arbiter; NULL: kb_search() calls the embedder
     * when the mode needs one. Borrowed for the call. */
    const float *query_vec;
} kb_query;

typedef struct {
    const char *doc_id;    /* the document's id */
    const char *doc_title; /* the document's title */
    const char *title;     /* the chunk's heading path ("Install > Debian"); may be "" */
    uint32_t chunk;        /* index of the chunk in its document, from 0 */
    double score;          /* BM25 score, inner product, or RRF score (by mode) */
    const char *text;      /* the chunk's text (markup removed), NUL-terminated */
    size_t text_len;
    uint64_t start, end;   /* byte range of the chunk in the original document */
} kb_hit;

typedef struct {
    kb_hit *hits; /* best first; in the arena */
    size_t n;
    uint64_t version; /* of the snapshot searched */
    kb_mode mode;     /* the mode used (never AUTO) */
    size_t terms;     /* distinct query terms after stopwords (0: nothing to match) */
} kb_result;

/* Searches query[0..len) (UTF-8). q may be NULL (defaults). A query with no
 * indexable terms finds nothing in BM25 mode (n = 0, not an error).
 * CORE_EINVAL: empty or longer than KB_MAX_QUERY_BYTES, bad top_k, or
 * DENSE/HYBRID without an embedder or query_vec; CORE_EIO: LMDB. */
int kb_search(kb *k, const char *query, size_t len, const kb_query *q, arena *a,
              kb_result *out, char *msg, size_t msg_size);

#endif
