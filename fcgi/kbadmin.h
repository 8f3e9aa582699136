/* kbadmin.h: the knowledge base's admin API and operator commands.
 *
 * HTTP (admin key, routed from worker_admin()):
 *   POST   /admin/kb/documents       {"id","title","type","content"} as JSON,
 *                                    or the raw document with ?id=&title=&type=
 *                                    -> {"id","version","chunks","replaced","unchanged","type"}
 *   DELETE /admin/kb/documents/ID    -> {"id","deleted":true,"version"}; 404 unknown
 *   GET    /admin/kb                 -> {"version","stats":{...},"documents":[...]}
 *   GET    /admin/kb/search?q=&top_k=&mode=
 *                                    -> {"query","version","mode","data":[hits]}
 * Bad input is a 400 naming the parameter (binary or empty documents, bad
 * JSON, missing id); a document over kb.max_document_bytes is a 413; a
 * full knowledge base is a 507.
 *
 * Command line (edgegate-fcgi -c CONF ...): --kb-ingest PATH... (files, or
 * directories walked recursively for .txt .text .md .markdown .html .htm;
 * one JSON line per file), --kb-list, --kb-delete ID, --kb-search QUERY
 * [MODE [TOP_K]], --kb-reembed (vectors for chunks that have none of the
 * configured embedding model).
 *
 * Ownership: kbadmin_open() returns a handle closed with kb_close(); the
 * parse and JSON functions allocate from the arena given and append to the
 * sbuf given; everything else is borrowed for the call.
 */
#ifndef KBADMIN_H
#define KBADMIN_H

#include <stddef.h>

#include "arena.h"
#include "cfg.h"
#include "core.h"
#include "kb.h"
#include "npu.h"
#include "sbuf.h"
#include "worker_impl.h"

/* Opens the knowledge base of c->kb (ignores c->kb.enabled). With
 * kb.embedding_model set, chunks and queries are embedded by that model
 * (dense and hybrid ranking): models[i] when models (a worker's loaded
 * models, indexed like c->models) holds it, else the model is loaded here
 * (the command line) and freed by kb_close(). n (may be NULL) is the NPU
 * arbiter: the embedder takes it in class npu.short_class for each chunk,
 * unless this process holds it already (QA holds it around a search); not
 * granted in time: CORE_EABORTED from the ingest. A worker whose model
 * failed to load gets a BM25-only knowledge base. CORE_EINVAL when the
 * model is not an embedding model. */
int kbadmin_open(const cfg *c, core_model *const *models, npu *n, kb **out, char *msg,
                 size_t msg_size);

/* The value of name in a query string (a=b&c=d, decoded by req_unescape),
 * NUL-terminated in the arena; NULL when absent or malformed (a bad %XX,
 * %00). *len (may be NULL) gets its length. */
const char *kbadmin_query(arena *a, const char *qs, const char *name, size_t *len);

/* A document to ingest, parsed from a POST /admin/kb/documents request. */
typedef struct {
    const char *id, *title; /* title NULL: none given */
    kb_type type;
    const char *content;    /* into body or the arena */
    size_t len;
} kbadmin_doc;

/* content_type, qs may be NULL. JSON when content_type is application/json,
 * else the body is the document and id/title/type come from qs.
 * CORE_EFORMAT with a message and *param naming the member; CORE_ENOMEM. */
int kbadmin_parse_doc(arena *a, const char *content_type, const char *qs, const char *body,
                      size_t len, kbadmin_doc *out, const char **param, char *msg,
                      size_t msg_size);

/* JSON bodies shared by the HTTP API and the command line. */
void kbadmin_ingest_json(sbuf *out, const char *id, const kb_ingest_result *r);
int kbadmin_info_json(kb *k, arena *a, sbuf *out);
void kbadmin_result_json(sbuf *out, const char *query, size_t len, const kb_result *r);

/* The HTTP endpoints: rest is the path after "/admin/kb" ("", "/search",
 * "/documents", "/documents/ID"). Needs w->kb (503 without it). */
void kbadmin_route(worker_state *w, worker_req *q, const char *rest);

/* The command line: op is "ingest" (args: paths), "list", "delete" (args[0]:
 * id), "search" (args: query, then optionally mode and top_k) or
 * "reembed". Prints
 * JSON on stdout, errors on stderr; returns the exit status. */
int kbadmin_cli(const cfg *c, const char *op, const char *const *args, size_t n);

#endif
