/* kb.c: the knowledge base in LMDB; see kb.h.
 *
 * File format (one LMDB environment, MDB_NOSUBDIR, five named DBs; integers
 * host byte order unless noted: the file never leaves the host):
 *   "kb_meta"   "stats" -> kb_rec (counters, the version, the next chunk id)
 *               "embed" -> u32 dim, then the embedding model's name: the
 *               model every stored vector was made by.
 *   "kb_docs"   document id bytes -> kb_docrec, then the title.
 *   "kb_chunks" chunk id (u32 BIG-endian, so key order is age order) ->
 *               kb_chunkrec, then the document id, the heading path, the
 *               text. A document's chunks have consecutive ids.
 *   "kb_post"   term bytes -> sorted duplicates (MDB_DUPSORT|MDB_DUPFIXED,
 *               which LMDB packs without per-item headers), 8 bytes each:
 *               u32 BE chunk id, u16 BE term frequency, u16 BE chunk length
 *               in terms (both capped at 65535). Carrying the length makes
 *               BM25 need no other lookup.
 *   "kb_vec"    chunk id (u32 BE) -> embed dim floats.
 * A chunk's terms are those of its heading path and its text. Deleting a
 * chunk re-derives its terms from the stored text (the tokenizer version
 * is part of KB_FORMAT), so postings need no reverse index.
 */
#define _GNU_SOURCE /* qsort_r */
#include "kb.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "core_err.h"
#include "json.h"
#include "kbtext.h"
#include "rank.h"

#define KB_MAGIC 0x3142454bu /* "KEB1" */
#define KB_FORMAT 1u
#define KB_MAX_QTERMS 256
#define KB_POST 8 /* bytes of one posting */

typedef struct {
    uint32_t magic, format;
    uint64_t version, docs, chunks, terms, postings, bytes;
    uint64_t total_len; /* sum of chunk lengths in terms (BM25's avgdl) */
    uint64_t next_chunk, vectors;
} kb_rec;

typedef struct {
    uint32_t magic, type, first, n;
    uint64_t bytes;
    int64_t updated;
    uint8_t hash[32];
    uint32_t title_len, pad;
} kb_docrec;

typedef struct {
    uint32_t magic, index;
    uint64_t start, end;
    uint32_t nterms, text_len;
    uint16_t id_len, title_len;
    uint32_t pad;
} kb_chunkrec;

struct kb {
    MDB_env *env;
    MDB_dbi meta, docs, chunks, post, vec;
    kb_params p;
    char *path, *model;
    long long last_check;
    bool full;
    char err[200];
};

/* ---- names -------------------------------------------------------------------------- */

static const char *const kb_type_names[] = {"auto", "text", "markdown", "html"};
static const char *const kb_mode_names[] = {"auto", "bm25", "dense", "hybrid"};

const char *kb_type_name(kb_type t)
{
    return (unsigned)t < 4 ? kb_type_names[t] : "auto";
}

int kb_type_parse(const char *s, kb_type *out)
{
    static const struct {
        const char *name;
        kb_type t;
    } tab[] = {{"auto", KB_TYPE_AUTO},     {"text", KB_TYPE_TEXT}, {"txt", KB_TYPE_TEXT},
               {"plain", KB_TYPE_TEXT},    {"markdown", KB_TYPE_MARKDOWN},
               {"md", KB_TYPE_MARKDOWN},   {"html", KB_TYPE_HTML}, {"htm", KB_TYPE_HTML}};
    for (size_t i = 0; s && i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcmp(s, tab[i].name) == 0) {
            *out = tab[i].t;
            return 0;
        }
    return -1;
}

const char *kb_mode_name(kb_mode m)
{
    return (unsigned)m < 4 ? kb_mode_names[m] : "auto";
}

int kb_mode_parse(const char *s, kb_mode *out)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, kb_mode_names[i]) == 0) {
            *out = (kb_mode)i;
            return 0;
        }
    return -1;
}

kb_params kb_default_params(void)
{
    return (kb_params){.map_size = 256u << 20,
                       .chunk_bytes = 1000,
                       .overlap_bytes = 150,
                       .max_document_bytes = 8u << 20,
                       .reader_check_s = 10};
}

const char *kb_errmsg(const kb *k)
{
    return k ? k->err : "";
}

bool kb_full(const kb *k)
{
    return k && k->full;
}

/* ---- helpers ------------------------------------------------------------------------- */

static int kb_mdb(kb *k, int mrc, const char *what)
{
    if (mrc == MDB_MAP_FULL) {
        k->full = true;
        snprintf(k->err, sizeof(k->err),
                 "kb: the knowledge base is full (map size %zu MiB): delete documents or "
                 "raise kb.map_size_mb",
                 k->p.map_size >> 20);
    } else {
        snprintf(k->err, sizeof(k->err), "kb: %s: %s", what, mdb_strerror(mrc));
    }
    return CORE_EIO;
}

static void kb_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static uint32_t kb_rd32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int kb_get_rec(kb *k, MDB_txn *txn, kb_rec *r)
{
    MDB_val key = {5, "stats"}, v;
    memset(r, 0, sizeof(*r));
    int mrc = mdb_get(txn, k->meta, &key, &v);
    if (mrc == MDB_NOTFOUND)
        return CORE_OK;
    if (mrc)
        return kb_mdb(k, mrc, "reading stats");
    if (v.mv_size != sizeof(*r))
        return core_errf(CORE_EUNSUPPORTED, k->err, sizeof(k->err), "kb: foreign stats record");
    memcpy(r, v.mv_data, sizeof(*r));
    return CORE_OK;
}

static int kb_put_rec(kb *k, MDB_txn *txn, kb_rec *r)
{
    r->magic = KB_MAGIC;
    r->format = KB_FORMAT;
    MDB_val key = {5, "stats"}, v = {sizeof(*r), r};
    int mrc = mdb_put(txn, k->meta, &key, &v, 0);
    return mrc ? kb_mdb(k, mrc, "writing stats") : CORE_OK;
}

/* The model the stored vectors were made by ("" when none) into buf. */
static int kb_get_embed(kb *k, MDB_txn *txn, char *buf, size_t size, uint32_t *dim)
{
    MDB_val key = {5, "embed"}, v;
    buf[0] = '\0';
    *dim = 0;
    int mrc = mdb_get(txn, k->meta, &key, &v);
    if (mrc == MDB_NOTFOUND)
        return CORE_OK;
    if (mrc)
        return kb_mdb(k, mrc, "reading embed");
    if (v.mv_size < 4)
        return CORE_OK;
    memcpy(dim, v.mv_data, 4);
    size_t n = v.mv_size - 4 < size - 1 ? v.mv_size - 4 : size - 1;
    memcpy(buf, (const char *)v.mv_data + 4, n);
    buf[n] = '\0';
    return CORE_OK;
}

/* True when vectors in the file are the configured model's. */
static bool kb_embed_match(const kb *k, const char *model, uint32_t dim)
{
    return k->p.embed && (int)dim == k->p.embed_dim && strcmp(model, k->model) == 0;
}

static void kb_maybe_check(kb *k)
{
    long long now = (long long)time(NULL);
    if (now - k->last_check >= k->p.reader_check_s) {
        int dead = 0;
        mdb_reader_check(k->env, &dead);
        k->last_check = now;
    }
}

/* ---- term gathering ------------------------------------------------------------------ */

typedef struct {
    uint32_t off;  /* into pool */
    uint8_t len;
    uint32_t chunk; /* local index */
} kb_occ;

typedef struct {
    char *pool;
    size_t pool_len, pool_cap;
    kb_occ *occ;
    size_t n, cap;
    uint32_t chunk;
    uint32_t count; /* terms of the current chunk */
    bool oom;
} kb_gather;

static int kb_gather_term(void *user, const char *t, size_t len)
{
    kb_gather *g = user;
    if (len == 0 || len > KBTEXT_MAX_TERM)
        return 0;
    if (g->pool_len + len > g->pool_cap) {
        size_t cap = g->pool_cap ? g->pool_cap * 2 : 4096;
        while (cap < g->pool_len + len)
            cap *= 2;
        char *np = cap > UINT32_MAX ? NULL : realloc(g->pool, cap);
        if (!np)
            return g->oom = true, -1;
        g->pool = np;
        g->pool_cap = cap;
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 1024;
        kb_occ *no = realloc(g->occ, cap * sizeof(*no));
        if (!no)
            return g->oom = true, -1;
        g->occ = no;
        g->cap = cap;
    }
    g->occ[g->n++] = (kb_occ){(uint32_t)g->pool_len, (uint8_t)len, g->chunk};
    memcpy(g->pool + g->pool_len, t, len);
    g->pool_len += len;
    g->count++;
    return 0;
}

/* Gathers a chunk's terms (heading path and text); returns its length. */
static uint32_t kb_gather_chunk(kb_gather *g, uint32_t chunk, const char *title, size_t tlen,
                                const char *text, size_t len)
{
    g->chunk = chunk;
    g->count = 0;
    kbtext_terms(title, tlen, kb_gather_term, g);
    kbtext_terms(text, len, kb_gather_term, g);
    return g->count;
}

static int kb_occ_cmp(const void *a, const void *b, void *pool)
{
    const kb_occ *x = a, *y = b;
    const char *p = pool;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(p + x->off, p + y->off, n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

static void kb_gather_sort(kb_gather *g)
{
    qsort_r(g->occ, g->n, sizeof(*g->occ), kb_occ_cmp, g->pool);
}

static void kb_gather_free(kb_gather *g)
{
    free(g->pool);
    free(g->occ);
}

static void kb_posting(uint8_t out[KB_POST], uint32_t id, uint32_t tf, uint32_t len)
{
    kb_be32(out, id);
    tf = tf > 65535 ? 65535 : tf;
    len = len > 65535 ? 65535 : len;
    out[4] = (uint8_t)(tf >> 8);
    out[5] = (uint8_t)tf;
    out[6] = (uint8_t)(len >> 8);
    out[7] = (uint8_t)len;
}

/* Walks the sorted occurrences: fn(term, chunk, tf) per (term, chunk). */
typedef int (*kb_walk_fn)(void *user, const char *t, size_t len, uint32_t chunk, uint32_t tf,
                          bool first_of_term);

static int kb_gather_walk(const kb_gather *g, kb_walk_fn fn, void *user)
{
    for (size_t i = 0; i < g->n;) {
        const kb_occ *o = &g->occ[i];
        bool first = true;
        size_t j = i;
        while (j < g->n && g->occ[j].len == o->len &&
               memcmp(g->pool + g->occ[j].off, g->pool + o->off, o->len) == 0) {
            size_t c = j;
            while (c < g->n && g->occ[c].chunk == g->occ[j].chunk && g->occ[c].len == o->len &&
                   memcmp(g->pool + g->occ[c].off, g->pool + o->off, o->len) == 0)
                c++;
            int rc = fn(user, g->pool + o->off, o->len, g->occ[j].chunk, (uint32_t)(c - j), first);
            if (rc)
                return rc;
            first = false;
            j = c;
        }
        i = j;
    }
    return 0;
}

/* ---- writing postings ---------------------------------------------------------------- */

typedef struct {
    kb *k;
    MDB_txn *txn;
    MDB_cursor *cur;
    kb_rec *r;
    uint32_t base;         /* chunk id of local index 0 */
    const uint32_t *lens;  /* chunk lengths by local index */
    bool del;
} kb_post_ctx;

static int kb_post_one(void *user, const char *t, size_t len, uint32_t chunk, uint32_t tf,
                       bool first)
{
    kb_post_ctx *x = user;
    uint8_t pv[KB_POST];
    kb_posting(pv, x->base + chunk, tf, x->lens[chunk]);
    MDB_val key = {len, (void *)t}, val = {KB_POST, pv};
    int mrc;
    if (!x->del) {
        if (first) {
            MDB_val k2 = key, v2;
            mrc = mdb_cursor_get(x->cur, &k2, &v2, MDB_SET);
            if (mrc == MDB_NOTFOUND)
                x->r->terms++;
            else if (mrc)
                return kb_mdb(x->k, mrc, "postings");
        }
        mrc = mdb_cursor_put(x->cur, &key, &val, MDB_NODUPDATA);
        if (mrc == MDB_KEYEXIST)
            return CORE_OK;
        if (mrc)
            return kb_mdb(x->k, mrc, "adding postings");
        x->r->postings++;
        return CORE_OK;
    }
    mrc = mdb_cursor_get(x->cur, &key, &val, MDB_GET_BOTH);
    if (mrc == MDB_NOTFOUND)
        return CORE_OK;
    if (mrc == 0)
        mrc = mdb_cursor_del(x->cur, 0);
    if (mrc)
        return kb_mdb(x->k, mrc, "removing postings");
    if (x->r->postings)
        x->r->postings--;
    MDB_val k2 = {len, (void *)t}, v2;
    mrc = mdb_cursor_get(x->cur, &k2, &v2, MDB_SET);
    if (mrc == MDB_NOTFOUND) {
        if (x->r->terms)
            x->r->terms--;
    } else if (mrc) {
        return kb_mdb(x->k, mrc, "postings");
    }
    return CORE_OK;
}

static int kb_post_apply(kb *k, MDB_txn *txn, kb_rec *r, kb_gather *g, uint32_t base,
                         const uint32_t *lens, bool del)
{
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, k->post, &cur);
    if (mrc)
        return kb_mdb(k, mrc, "cursor");
    kb_gather_sort(g);
    kb_post_ctx x = {k, txn, cur, r, base, lens, del};
    int rc = kb_gather_walk(g, kb_post_one, &x);
    mdb_cursor_close(cur);
    return rc;
}

/* Removes the chunks [first, first+n) of a document: postings, records,
 * vectors; updates r. */
static int kb_remove_chunks(kb *k, MDB_txn *txn, kb_rec *r, uint32_t first, uint32_t n)
{
    if (n == 0)
        return CORE_OK;
    kb_gather g = {0};
    uint32_t *lens = calloc(n, sizeof(*lens));
    int rc = CORE_OK;
    if (!lens) {
        rc = CORE_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint8_t ck[4];
        kb_be32(ck, first + i);
        MDB_val key = {4, ck}, v;
        int mrc = mdb_get(txn, k->chunks, &key, &v);
        if (mrc == MDB_NOTFOUND)
            continue;
        if (mrc) {
            rc = kb_mdb(k, mrc, "reading a chunk");
            goto out;
        }
        kb_chunkrec cr;
        if (v.mv_size < sizeof(cr))
            continue;
        memcpy(&cr, v.mv_data, sizeof(cr));
        if (v.mv_size < sizeof(cr) + cr.id_len + cr.title_len + cr.text_len)
            continue;
        const char *p = (const char *)v.mv_data + sizeof(cr) + cr.id_len;
        lens[i] = kb_gather_chunk(&g, i, p, cr.title_len, p + cr.title_len, cr.text_len);
        if (g.oom) {
            rc = CORE_ENOMEM;
            goto out;
        }
        r->total_len -= r->total_len >= lens[i] ? lens[i] : r->total_len;
        if ((mrc = mdb_del(txn, k->chunks, &key, NULL)) != 0) {
            rc = kb_mdb(k, mrc, "deleting a chunk");
            goto out;
        }
        mrc = mdb_del(txn, k->vec, &key, NULL);
        if (mrc == 0 && r->vectors)
            r->vectors--;
        else if (mrc && mrc != MDB_NOTFOUND) {
            rc = kb_mdb(k, mrc, "deleting a vector");
            goto out;
        }
        if (r->chunks)
            r->chunks--;
    }
    rc = kb_post_apply(k, txn, r, &g, first, lens, true);
out:
    free(lens);
    kb_gather_free(&g);
    return rc;
}

/* ---- open / close --------------------------------------------------------------------- */

int kb_open(const kb_params *p, kb **out, char *msg, size_t msg_size)
{
    *out = NULL;
    int bad = CORE_OK;
    if (!p)
        return core_errf(CORE_EINVAL, msg, msg_size, "kb: no params");
    if (!p->path || !*p->path)
        bad = core_errf(CORE_EINVAL, msg, msg_size, "kb: path is required");
    else if (p->chunk_bytes < 64 || p->overlap_bytes >= p->chunk_bytes / 2)
        bad = core_errf(CORE_EINVAL, msg, msg_size,
                        "kb: chunk_bytes must be >= 64 and overlap_bytes < chunk_bytes / 2");
    else if (p->embed && (p->embed_dim < 1 || p->embed_dim > KB_MAX_EMBED_DIM ||
                          !p->embed_model || !*p->embed_model))
        bad = core_errf(CORE_EINVAL, msg, msg_size,
                        "kb: an embedder needs embed_dim 1..%d and a model name",
                        KB_MAX_EMBED_DIM);
    kb *k = bad ? NULL : calloc(1, sizeof(*k));
    if (!k) {
        if (p->embed_free) /* ownership passed with the call */
            p->embed_free(p->embed_user);
        return bad ? bad : core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    }
    int rc = CORE_OK;
    k->p = *p;
    k->path = strdup(p->path);
    k->model = strdup(p->embed && p->embed_model ? p->embed_model : "");
    if (!k->path || !k->model) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    k->p.path = k->path;
    k->p.embed_model = k->model;
    if (!k->p.map_size)
        k->p.map_size = 256u << 20;
    if (!k->p.max_document_bytes)
        k->p.max_document_bytes = 8u << 20;
    if (k->p.reader_check_s <= 0)
        k->p.reader_check_s = 10;
    int mrc = mdb_env_create(&k->env);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(k->env, k->p.map_size);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(k->env, 6);
    if (mrc == 0)
        mrc = mdb_env_open(k->env, k->path, MDB_NOSUBDIR | MDB_NOMETASYNC, 0660);
    if (mrc) {
        rc = core_errf(CORE_EIO, msg, msg_size, "kb: opening %s: %s", k->path, mdb_strerror(mrc));
        goto out;
    }
    int dead = 0;
    mdb_reader_check(k->env, &dead);
    k->last_check = (long long)time(NULL);
    MDB_txn *txn;
    mrc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (mrc == 0) {
        if ((mrc = mdb_dbi_open(txn, "kb_meta", MDB_CREATE, &k->meta)) == 0 &&
            (mrc = mdb_dbi_open(txn, "kb_docs", MDB_CREATE, &k->docs)) == 0 &&
            (mrc = mdb_dbi_open(txn, "kb_chunks", MDB_CREATE, &k->chunks)) == 0 &&
            (mrc = mdb_dbi_open(txn, "kb_post", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED,
                                &k->post)) == 0 &&
            (mrc = mdb_dbi_open(txn, "kb_vec", MDB_CREATE, &k->vec)) == 0) {
            kb_rec r;
            rc = kb_get_rec(k, txn, &r);
            if (rc == CORE_OK && r.magic && (r.magic != KB_MAGIC || r.format != KB_FORMAT))
                rc = CORE_EUNSUPPORTED;
            if (rc) {
                mdb_txn_abort(txn);
                rc = core_errf(rc, msg, msg_size,
                               "kb: %s is not a knowledge base of this version (format %u); "
                               "move it away and ingest again",
                               k->path, (unsigned)r.format);
                goto out;
            }
            mrc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
    }
    if (mrc)
        rc = core_errf(CORE_EIO, msg, msg_size, "kb: %s: %s", k->path, mdb_strerror(mrc));
out:
    if (rc) {
        kb_close(k);
        return rc;
    }
    *out = k;
    return CORE_OK;
}

void kb_close(kb *k)
{
    if (!k)
        return;
    if (k->env)
        mdb_env_close(k->env);
    if (k->p.embed_free)
        k->p.embed_free(k->p.embed_user);
    free(k->path);
    free(k->model);
    free(k);
}

/* ---- ingest ----------------------------------------------------------------------------- */

static bool kb_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > KB_MAX_ID || !json_utf8_valid(id, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return false;
    return true;
}

static kbtext_format kb_fmt(kb_type t)
{
    return t == KB_TYPE_HTML ? KBTEXT_HTML : t == KB_TYPE_MARKDOWN ? KBTEXT_MARKDOWN : KBTEXT_TEXT;
}

static void kb_hash(const kb *k, const kb_doc_in *d, kb_type type, const char *title,
                    uint8_t out[32])
{
    cache_sha256 s;
    cache_sha256_init(&s);
    uint64_t hdr[5] = {KB_FORMAT, (uint64_t)type, k->p.chunk_bytes, k->p.overlap_bytes,
                       strlen(title)};
    cache_sha256_update(&s, hdr, sizeof(hdr));
    cache_sha256_update(&s, title, strlen(title));
    cache_sha256_update(&s, k->model, strlen(k->model) + 1);
    cache_sha256_update(&s, d->data, d->len);
    cache_sha256_final(&s, out);
}

/* The stored record of id; *found false when absent. */
static int kb_get_doc(kb *k, MDB_txn *txn, const char *id, kb_docrec *dr, bool *found)
{
    MDB_val key = {strlen(id), (void *)id}, v;
    *found = false;
    int mrc = mdb_get(txn, k->docs, &key, &v);
    if (mrc == MDB_NOTFOUND)
        return CORE_OK;
    if (mrc)
        return kb_mdb(k, mrc, "reading a document");
    if (v.mv_size < sizeof(*dr))
        return CORE_OK;
    memcpy(dr, v.mv_data, sizeof(*dr));
    *found = dr->magic == KB_MAGIC;
    return CORE_OK;
}

/* Builds "title\ntext" for the embedder in buf (malloc'ed, grown). */
static int kb_embed_chunk(kb *k, const kbtext_chunk *c, float *out, char **buf, size_t *cap)
{
    size_t tl = strlen(c->title), n = tl + 1 + c->len;
    if (n > *cap) {
        char *nb = realloc(*buf, n);
        if (!nb)
            return CORE_ENOMEM;
        *buf = nb;
        *cap = n;
    }
    memcpy(*buf, c->title, tl);
    (*buf)[tl] = '\n';
    memcpy(*buf + tl + 1, c->text, c->len);
    return k->p.embed(k->p.embed_user, tl ? *buf : *buf + 1, tl ? n : c->len, out);
}

int kb_ingest(kb *k, const kb_doc_in *d, kb_ingest_result *res, char *msg, size_t msg_size)
{
    kb_ingest_result tmp;
    if (!res)
        res = &tmp;
    memset(res, 0, sizeof(*res));
    if (!k || !d || (!d->data && d->len))
        return core_errf(CORE_EINVAL, msg, msg_size, "kb: bad arguments");
    if (!kb_id_ok(d->id))
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "document id must be 1-%d bytes of UTF-8 without control characters",
                         KB_MAX_ID);
    if (d->len > k->p.max_document_bytes)
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "document too large: %zu bytes, the limit is %zu", d->len,
                         k->p.max_document_bytes);
    if (kbtext_is_binary(d->data, d->len))
        return core_errf(CORE_EFORMAT, msg, msg_size,
                         "binary content (NUL bytes or invalid UTF-8); only UTF-8 text, "
                         "Markdown and HTML can be ingested");
    kb_type type = d->type;
    if (type == KB_TYPE_AUTO) {
        kbtext_format f = kbtext_detect(d->id, d->data, d->len);
        type = f == KBTEXT_HTML ? KB_TYPE_HTML : f == KBTEXT_MARKDOWN ? KB_TYPE_MARKDOWN
                                                                        : KB_TYPE_TEXT;
    }
    res->type = type;
    const char *utitle = d->title ? d->title : "";
    uint8_t hash[32];
    kb_hash(k, d, type, utitle, hash);

    int rc = CORE_OK;
    kbtext_doc *doc = NULL;
    kb_gather g = {0};
    uint32_t *lens = NULL;
    float *vecs = NULL;
    char *ebuf = NULL;
    size_t ecap = 0;
    MDB_txn *txn = NULL;
    kb_docrec old;
    bool found;
    kb_rec r;

    /* A no-op re-ingest is detected before any parsing or embedding. */
    int mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return core_errf(kb_mdb(k, mrc, "begin"), msg, msg_size, "%s", k->err);
    rc = kb_get_doc(k, txn, d->id, &old, &found);
    if (rc == CORE_OK)
        rc = kb_get_rec(k, txn, &r);
    mdb_txn_abort(txn);
    txn = NULL;
    if (rc)
        return core_errf(rc, msg, msg_size, "%s", k->err);
    if (found && memcmp(old.hash, hash, 32) == 0) {
        res->version = r.version;
        res->chunks = old.n;
        res->unchanged = true;
        return CORE_OK;
    }

    kbtext_params tp = {k->p.chunk_bytes, k->p.overlap_bytes};
    rc = kbtext_parse(d->data, d->len, kb_fmt(type), &tp, &doc, msg, msg_size);
    if (rc)
        return rc;
    if (doc->n > UINT32_MAX / 2) {
        rc = core_errf(CORE_EINVAL, msg, msg_size, "document has too many chunks");
        goto out;
    }
    const char *title = *utitle ? utitle : doc->title ? doc->title : d->id;
    size_t title_len = strlen(title);
    if (title_len > KB_MAX_TITLE) {
        title_len = KB_MAX_TITLE;
        while (title_len && ((unsigned char)title[title_len] & 0xC0) == 0x80)
            title_len--;
    }
    lens = calloc(doc->n, sizeof(*lens));
    if (!lens) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < doc->n; i++) {
        const kbtext_chunk *c = &doc->chunks[i];
        lens[i] = kb_gather_chunk(&g, (uint32_t)i, c->title, strlen(c->title), c->text, c->len);
    }
    if (g.oom) {
        rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        goto out;
    }
    if (k->p.embed) {
        size_t dim = (size_t)k->p.embed_dim;
        vecs = malloc(doc->n * dim * sizeof(float));
        if (!vecs) {
            rc = core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < doc->n && rc == CORE_OK; i++)
            rc = kb_embed_chunk(k, &doc->chunks[i], vecs + i * dim, &ebuf, &ecap);
        if (rc) {
            rc = core_errf(rc, msg, msg_size, "embedding a chunk failed: %s", core_strerror(rc));
            goto out;
        }
    }

    kb_maybe_check(k);
    mrc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (mrc) {
        rc = kb_mdb(k, mrc, "begin");
        goto fail;
    }
    if ((rc = kb_get_rec(k, txn, &r)) || (rc = kb_get_doc(k, txn, d->id, &old, &found)))
        goto fail;
    if (found && memcmp(old.hash, hash, 32) == 0) { /* another process just did it */
        mdb_txn_abort(txn);
        txn = NULL;
        res->version = r.version;
        res->chunks = old.n;
        res->unchanged = true;
        goto out;
    }
    if (found) {
        if ((rc = kb_remove_chunks(k, txn, &r, old.first, old.n)))
            goto fail;
        r.bytes -= r.bytes >= old.bytes ? old.bytes : r.bytes;
        res->replaced = true;
    }
    if (r.next_chunk + doc->n > UINT32_MAX) {
        rc = core_errf(CORE_EIO, k->err, sizeof(k->err), "kb: chunk ids exhausted; rebuild");
        goto fail;
    }
    uint32_t base = (uint32_t)r.next_chunk;
    char model[256];
    uint32_t edim = 0;
    if (vecs && (rc = kb_get_embed(k, txn, model, sizeof(model), &edim)))
        goto fail;
    bool store_vecs = vecs && (r.vectors == 0 || kb_embed_match(k, model, edim));
    if (store_vecs && !kb_embed_match(k, model, edim)) {
        size_t ml = strlen(k->model);
        uint8_t *ev = malloc(4 + ml);
        if (!ev) {
            rc = CORE_ENOMEM;
            goto fail;
        }
        uint32_t dim = (uint32_t)k->p.embed_dim;
        memcpy(ev, &dim, 4);
        memcpy(ev + 4, k->model, ml);
        MDB_val key = {5, "embed"}, v = {4 + ml, ev};
        mrc = mdb_put(txn, k->meta, &key, &v, 0);
        free(ev);
        if (mrc) {
            rc = kb_mdb(k, mrc, "writing embed");
            goto fail;
        }
    }
    size_t idlen = strlen(d->id);
    for (size_t i = 0; i < doc->n; i++) {
        const kbtext_chunk *c = &doc->chunks[i];
        size_t tl = strlen(c->title);
        kb_chunkrec cr = {.magic = KB_MAGIC,
                          .index = (uint32_t)i,
                          .start = c->start,
                          .end = c->end,
                          .nterms = lens[i],
                          .text_len = (uint32_t)c->len,
                          .id_len = (uint16_t)idlen,
                          .title_len = (uint16_t)tl};
        uint8_t ck[4];
        kb_be32(ck, base + (uint32_t)i);
        MDB_val key = {4, ck}, v = {sizeof(cr) + idlen + tl + c->len, NULL};
        if ((mrc = mdb_put(txn, k->chunks, &key, &v, MDB_RESERVE))) {
            rc = kb_mdb(k, mrc, "adding a chunk");
            goto fail;
        }
        char *p = v.mv_data;
        memcpy(p, &cr, sizeof(cr));
        memcpy(p + sizeof(cr), d->id, idlen);
        memcpy(p + sizeof(cr) + idlen, c->title, tl);
        memcpy(p + sizeof(cr) + idlen + tl, c->text, c->len);
        r.total_len += lens[i];
        if (store_vecs) {
            MDB_val vv = {(size_t)k->p.embed_dim * sizeof(float),
                          vecs + i * (size_t)k->p.embed_dim};
            if ((mrc = mdb_put(txn, k->vec, &key, &vv, 0))) {
                rc = kb_mdb(k, mrc, "adding a vector");
                goto fail;
            }
            r.vectors++;
        }
    }
    if ((rc = kb_post_apply(k, txn, &r, &g, base, lens, false)))
        goto fail;
    {
        kb_docrec dr = {.magic = KB_MAGIC,
                        .type = (uint32_t)type,
                        .first = base,
                        .n = (uint32_t)doc->n,
                        .bytes = d->len,
                        .updated = (int64_t)time(NULL),
                        .title_len = (uint32_t)title_len};
        memcpy(dr.hash, hash, 32);
        MDB_val key = {idlen, (void *)d->id}, v = {sizeof(dr) + title_len, NULL};
        if ((mrc = mdb_put(txn, k->docs, &key, &v, MDB_RESERVE))) {
            rc = kb_mdb(k, mrc, "adding the document");
            goto fail;
        }
        memcpy(v.mv_data, &dr, sizeof(dr));
        memcpy((char *)v.mv_data + sizeof(dr), title, title_len);
    }
    r.next_chunk += doc->n;
    r.chunks += doc->n;
    r.docs += !found;
    r.bytes += d->len;
    r.version++;
    if ((rc = kb_put_rec(k, txn, &r)))
        goto fail;
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc) {
        rc = kb_mdb(k, mrc, "commit");
        goto fail;
    }
    k->full = false;
    res->version = r.version;
    res->chunks = doc->n;
    goto out;
fail:
    if (txn)
        mdb_txn_abort(txn);
    txn = NULL;
    if (rc == CORE_ENOMEM)
        core_errf(rc, msg, msg_size, "out of memory");
    else
        core_errf(rc, msg, msg_size, "%s", k->err);
out:
    kbtext_doc_free(doc);
    kb_gather_free(&g);
    free(lens);
    free(vecs);
    free(ebuf);
    return rc;
}

int kb_delete(kb *k, const char *id, bool *found, uint64_t *version)
{
    bool f = false;
    if (found)
        *found = false;
    if (!k || !kb_id_ok(id))
        return CORE_EINVAL;
    kb_maybe_check(k);
    MDB_txn *txn;
    int mrc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (mrc)
        return kb_mdb(k, mrc, "begin");
    kb_rec r;
    kb_docrec dr;
    int rc = kb_get_rec(k, txn, &r);
    if (rc == CORE_OK)
        rc = kb_get_doc(k, txn, id, &dr, &f);
    if (rc || !f) {
        mdb_txn_abort(txn);
        if (version)
            *version = r.version;
        return rc;
    }
    if ((rc = kb_remove_chunks(k, txn, &r, dr.first, dr.n)))
        goto fail;
    MDB_val key = {strlen(id), (void *)id};
    if ((mrc = mdb_del(txn, k->docs, &key, NULL))) {
        rc = kb_mdb(k, mrc, "deleting the document");
        goto fail;
    }
    r.docs -= r.docs > 0;
    r.bytes -= r.bytes >= dr.bytes ? dr.bytes : r.bytes;
    r.version++;
    if ((rc = kb_put_rec(k, txn, &r)))
        goto fail;
    mrc = mdb_txn_commit(txn);
    if (mrc)
        return kb_mdb(k, mrc, "commit");
    k->full = false;
    if (found)
        *found = true;
    if (version)
        *version = r.version;
    return CORE_OK;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* ---- re-embedding ------------------------------------------------------------------------ */

#define KB_REEMBED_BATCH 64

int kb_reembed(kb *k, size_t *done, char *msg, size_t msg_size)
{
    if (done)
        *done = 0;
    if (!k || !k->p.embed)
        return core_errf(CORE_EINVAL, msg, msg_size, "no embedding model is configured");
    size_t dim = (size_t)k->p.embed_dim;
    int rc = CORE_OK;
    MDB_txn *txn = NULL;
    /* Vectors of another model go first, in one transaction. */
    int mrc = mdb_txn_begin(k->env, NULL, 0, &txn);
    if (mrc)
        return core_errf(kb_mdb(k, mrc, "begin"), msg, msg_size, "%s", k->err);
    char model[256];
    uint32_t edim;
    kb_rec r;
    if ((rc = kb_get_embed(k, txn, model, sizeof(model), &edim)) ||
        (rc = kb_get_rec(k, txn, &r)))
        goto fail;
    if (!kb_embed_match(k, model, edim)) {
        if ((mrc = mdb_drop(txn, k->vec, 0))) {
            rc = kb_mdb(k, mrc, "dropping vectors");
            goto fail;
        }
        size_t ml = strlen(k->model);
        char ev[4 + 256];
        uint32_t d32 = (uint32_t)dim;
        ml = ml > 255 ? 255 : ml;
        memcpy(ev, &d32, 4);
        memcpy(ev + 4, k->model, ml);
        MDB_val key = {5, "embed"}, v = {4 + ml, ev};
        if ((mrc = mdb_put(txn, k->meta, &key, &v, 0))) {
            rc = kb_mdb(k, mrc, "writing embed");
            goto fail;
        }
        r.vectors = 0;
        if ((rc = kb_put_rec(k, txn, &r)))
            goto fail;
    }
    mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (mrc) {
        rc = kb_mdb(k, mrc, "commit");
        goto fail;
    }
    uint32_t ids[KB_REEMBED_BATCH];
    float *vecs = malloc(KB_REEMBED_BATCH * dim * sizeof(float));
    sbuf texts[KB_REEMBED_BATCH];
    for (int i = 0; i < KB_REEMBED_BATCH; i++)
        sbuf_init(&texts[i]);
    if (!vecs) {
        rc = CORE_ENOMEM;
        goto fail;
    }
    uint32_t from = 0;
    for (;;) {
        /* A batch of chunks without vectors, read from one snapshot. */
        size_t n = 0;
        if ((mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn))) {
            rc = kb_mdb(k, mrc, "begin");
            break;
        }
        MDB_cursor *cur;
        if ((mrc = mdb_cursor_open(txn, k->chunks, &cur))) {
            rc = kb_mdb(k, mrc, "cursor");
            break;
        }
        uint8_t ck[4];
        kb_be32(ck, from);
        MDB_val key = {4, ck}, v;
        for (mrc = mdb_cursor_get(cur, &key, &v, MDB_SET_RANGE); mrc == 0 && n < KB_REEMBED_BATCH;
             mrc = mdb_cursor_get(cur, &key, &v, MDB_NEXT)) {
            kb_chunkrec cr;
            if (key.mv_size != 4 || v.mv_size < sizeof(cr))
                continue;
            uint32_t id = kb_rd32(key.mv_data);
            from = id + 1;
            MDB_val vk = key, vv;
            if (mdb_get(txn, k->vec, &vk, &vv) == 0)
                continue;
            memcpy(&cr, v.mv_data, sizeof(cr));
            if (v.mv_size < sizeof(cr) + cr.id_len + cr.title_len + cr.text_len)
                continue;
            const char *p = (const char *)v.mv_data + sizeof(cr) + cr.id_len;
            sbuf_clear(&texts[n]);
            if (cr.title_len) {
                sbuf_put(&texts[n], p, cr.title_len);
                sbuf_putc(&texts[n], '\n');
            }
            sbuf_put(&texts[n], p + cr.title_len, cr.text_len);
            ids[n++] = id;
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        txn = NULL;
        if (mrc && mrc != MDB_NOTFOUND) {
            rc = kb_mdb(k, mrc, "reading chunks");
            break;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n && rc == CORE_OK; i++)
            rc = texts[i].oom ? CORE_ENOMEM
                              : k->p.embed(k->p.embed_user, texts[i].data ? texts[i].data : "",
                                           texts[i].len, vecs + i * dim);
        if (rc)
            break;
        kb_maybe_check(k);
        if ((mrc = mdb_txn_begin(k->env, NULL, 0, &txn))) {
            rc = kb_mdb(k, mrc, "begin");
            break;
        }
        if ((rc = kb_get_rec(k, txn, &r)))
            break;
        size_t put = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t ck[4];
            kb_be32(ck, ids[i]);
            MDB_val key2 = {4, ck}, v2;
            if (mdb_get(txn, k->chunks, &key2, &v2) != 0)
                continue; /* deleted meanwhile */
            MDB_val vv = {dim * sizeof(float), vecs + i * dim};
            mrc = mdb_put(txn, k->vec, &key2, &vv, MDB_NOOVERWRITE);
            if (mrc == MDB_KEYEXIST)
                continue;
            if (mrc) {
                rc = kb_mdb(k, mrc, "adding a vector");
                break;
            }
            put++;
        }
        if (rc)
            break;
        r.vectors += put;
        if ((rc = kb_put_rec(k, txn, &r)))
            break;
        mrc = mdb_txn_commit(txn);
        txn = NULL;
        if (mrc) {
            rc = kb_mdb(k, mrc, "commit");
            break;
        }
        if (done)
            *done += put;
    }
    free(vecs);
    for (int i = 0; i < KB_REEMBED_BATCH; i++)
        sbuf_free(&texts[i]);
fail:
    if (txn)
        mdb_txn_abort(txn);
    if (rc)
        core_errf(rc, msg, msg_size, "%s", rc == CORE_ENOMEM ? "out of memory" : k->err);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------- */

int kb_version(kb *k, uint64_t *out)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return kb_mdb(k, mrc, "begin");
    kb_rec r;
    int rc = kb_get_rec(k, txn, &r);
    mdb_txn_abort(txn);
    *out = rc ? 0 : r.version;
    return rc;
}

int kb_get_stats(kb *k, kb_stats *out)
{
    memset(out, 0, sizeof(*out));
    MDB_txn *txn;
    int mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return kb_mdb(k, mrc, "begin");
    kb_rec r;
    char model[256];
    uint32_t edim;
    int rc = kb_get_rec(k, txn, &r);
    if (rc == CORE_OK)
        rc = kb_get_embed(k, txn, model, sizeof(model), &edim);
    mdb_txn_abort(txn);
    if (rc)
        return rc;
    MDB_envinfo ei;
    MDB_stat st;
    mdb_env_info(k->env, &ei);
    mdb_env_stat(k->env, &st);
    *out = (kb_stats){.version = r.version,
                      .documents = r.docs,
                      .chunks = r.chunks,
                      .terms = r.terms,
                      .postings = r.postings,
                      .bytes = r.bytes,
                      .vectors = kb_embed_match(k, model, edim) ? r.vectors : 0,
                      .embed_dim = k->p.embed ? k->p.embed_dim : 0,
                      .map_size = ei.me_mapsize,
                      .map_used = (uint64_t)(ei.me_last_pgno + 1) * st.ms_psize};
    return CORE_OK;
}

int kb_list(kb *k, arena *a, kb_doc **out, size_t *n, uint64_t *version)
{
    *out = NULL;
    *n = 0;
    MDB_txn *txn;
    int mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return kb_mdb(k, mrc, "begin");
    MDB_cursor *cur = NULL;
    kb_rec r;
    MDB_stat st;
    int rc = kb_get_rec(k, txn, &r);
    if (rc)
        goto out;
    if (version)
        *version = r.version;
    if ((mrc = mdb_stat(txn, k->docs, &st)) || (mrc = mdb_cursor_open(txn, k->docs, &cur))) {
        rc = kb_mdb(k, mrc, "listing");
        goto out;
    }
    kb_doc *list = arena_calloc(a, st.ms_entries ? st.ms_entries : 1, sizeof(*list));
    if (!list) {
        rc = CORE_ENOMEM;
        goto out;
    }
    size_t cnt = 0;
    MDB_val key, v;
    for (int op = MDB_FIRST; cnt < st.ms_entries && (mrc = mdb_cursor_get(cur, &key, &v, op)) == 0;
         op = MDB_NEXT) {
        kb_docrec dr;
        if (v.mv_size < sizeof(dr))
            continue;
        memcpy(&dr, v.mv_data, sizeof(dr));
        if (dr.magic != KB_MAGIC || v.mv_size < sizeof(dr) + dr.title_len)
            continue;
        kb_doc *d = &list[cnt];
        d->id = arena_strndup(a, key.mv_data, key.mv_size);
        d->title = arena_strndup(a, (const char *)v.mv_data + sizeof(dr), dr.title_len);
        if (!d->id || !d->title) {
            rc = CORE_ENOMEM;
            goto out;
        }
        d->type = (kb_type)dr.type;
        d->bytes = dr.bytes;
        d->chunks = dr.n;
        d->updated = dr.updated;
        cnt++;
    }
    *out = list;
    *n = cnt;
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- search ---------------------------------------------------------------------------------- */

typedef struct {
    char t[KBTEXT_MAX_TERM];
    uint8_t len;
    uint32_t qtf;
} kb_qterm;

typedef struct {
    kb_qterm *v;
    size_t n;
} kb_qterms;

static int kb_qterm_add(void *user, const char *t, size_t len)
{
    kb_qterms *q = user;
    for (size_t i = 0; i < q->n; i++)
        if (q->v[i].len == len && memcmp(q->v[i].t, t, len) == 0) {
            q->v[i].qtf++;
            return 0;
        }
    if (q->n == KB_MAX_QTERMS || len > KBTEXT_MAX_TERM)
        return 0;
    kb_qterm *x = &q->v[q->n++];
    memcpy(x->t, t, len);
    x->len = (uint8_t)len;
    x->qtf = 1;
    return 0;
}

/* BM25 over the postings of the query terms, best depth into out. */
static int kb_bm25(kb *k, MDB_txn *txn, const kb_rec *r, const kb_qterms *q, size_t depth,
                   rank_hit *out, size_t *n_out)
{
    *n_out = 0;
    if (q->n == 0 || r->chunks == 0)
        return CORE_OK;
    rank_bm25 *acc = rank_bm25_new(r->chunks, r->total_len, r->next_chunk);
    MDB_cursor *cur = NULL;
    rank_posting *buf = NULL;
    size_t cap = 0;
    int rc = CORE_OK, mrc;
    if (!acc)
        return CORE_ENOMEM;
    if ((mrc = mdb_cursor_open(txn, k->post, &cur))) {
        rc = kb_mdb(k, mrc, "cursor");
        goto out;
    }
    for (size_t i = 0; i < q->n; i++) {
        MDB_val key = {q->v[i].len, (void *)q->v[i].t}, v;
        mrc = mdb_cursor_get(cur, &key, &v, MDB_SET);
        if (mrc == MDB_NOTFOUND)
            continue;
        size_t df = 0;
        if (mrc || (mrc = mdb_cursor_count(cur, &df))) {
            rc = kb_mdb(k, mrc, "postings");
            goto out;
        }
        if (df > cap) {
            rank_posting *nb = realloc(buf, df * sizeof(*nb));
            if (!nb) {
                rc = CORE_ENOMEM;
                goto out;
            }
            buf = nb;
            cap = df;
        }
        size_t got = 0;
        for (int op = MDB_GET_MULTIPLE; (mrc = mdb_cursor_get(cur, &key, &v, op)) == 0;
             op = MDB_NEXT_MULTIPLE) {
            const uint8_t *p = v.mv_data;
            for (size_t j = 0; j + KB_POST <= v.mv_size && got < cap; j += KB_POST, p += KB_POST)
                buf[got++] = (rank_posting){kb_rd32(p), (uint32_t)p[4] << 8 | p[5],
                                            (uint32_t)p[6] << 8 | p[7]};
        }
        if (mrc != MDB_NOTFOUND) {
            rc = kb_mdb(k, mrc, "postings");
            goto out;
        }
        if (rank_bm25_add(acc, df, q->v[i].qtf, buf, got) != 0) {
            rc = CORE_ENOMEM;
            goto out;
        }
    }
    *n_out = rank_bm25_top(acc, depth, out);
out:
    if (cur)
        mdb_cursor_close(cur);
    free(buf);
    rank_bm25_free(acc);
    return rc;
}

#define KB_DENSE_BATCH 256

static int kb_dense(kb *k, MDB_txn *txn, const float *qv, size_t depth, rank_hit *out,
                    size_t *n_out)
{
    size_t dim = (size_t)k->p.embed_dim;
    *n_out = 0;
    float *vecs = malloc(KB_DENSE_BATCH * dim * sizeof(float));
    uint32_t ids[KB_DENSE_BATCH];
    if (!vecs)
        return CORE_ENOMEM;
    MDB_cursor *cur;
    int mrc = mdb_cursor_open(txn, k->vec, &cur);
    if (mrc) {
        free(vecs);
        return kb_mdb(k, mrc, "cursor");
    }
    rank_topk t;
    rank_topk_init(&t, out, depth);
    size_t n = 0;
    MDB_val key, v;
    for (int op = MDB_FIRST; (mrc = mdb_cursor_get(cur, &key, &v, op)) == 0; op = MDB_NEXT) {
        if (key.mv_size != 4 || v.mv_size != dim * sizeof(float))
            continue;
        ids[n] = kb_rd32(key.mv_data);
        memcpy(vecs + n * dim, v.mv_data, v.mv_size); /* LMDB values are only 2-aligned */
        if (++n == KB_DENSE_BATCH) {
            rank_dense(&t, qv, vecs, ids, n, dim);
            n = 0;
        }
    }
    rank_dense(&t, qv, vecs, ids, n, dim);
    mdb_cursor_close(cur);
    free(vecs);
    if (mrc != MDB_NOTFOUND)
        return kb_mdb(k, mrc, "vectors");
    *n_out = rank_topk_sort(&t);
    return CORE_OK;
}

/* Fills a hit from the chunk and document records. found false: gone. */
static int kb_fill_hit(kb *k, MDB_txn *txn, arena *a, uint32_t id, double score, kb_hit *h,
                       bool *found)
{
    uint8_t ck[4];
    kb_be32(ck, id);
    MDB_val key = {4, ck}, v;
    *found = false;
    int mrc = mdb_get(txn, k->chunks, &key, &v);
    if (mrc == MDB_NOTFOUND)
        return CORE_OK;
    if (mrc)
        return kb_mdb(k, mrc, "reading a chunk");
    kb_chunkrec cr;
    if (v.mv_size < sizeof(cr))
        return CORE_OK;
    memcpy(&cr, v.mv_data, sizeof(cr));
    if (v.mv_size < sizeof(cr) + cr.id_len + cr.title_len + cr.text_len)
        return CORE_OK;
    const char *p = (const char *)v.mv_data + sizeof(cr);
    h->doc_id = arena_strndup(a, p, cr.id_len);
    h->title = arena_strndup(a, p + cr.id_len, cr.title_len);
    h->text = arena_strndup(a, p + cr.id_len + cr.title_len, cr.text_len);
    h->text_len = cr.text_len;
    h->chunk = cr.index;
    h->score = score;
    h->start = cr.start;
    h->end = cr.end;
    if (!h->doc_id || !h->title || !h->text)
        return CORE_ENOMEM;
    MDB_val dk = {cr.id_len, (void *)p}, dv;
    kb_docrec dr;
    h->doc_title = h->doc_id;
    if (mdb_get(txn, k->docs, &dk, &dv) == 0 && dv.mv_size >= sizeof(dr)) {
        memcpy(&dr, dv.mv_data, sizeof(dr));
        if (dv.mv_size >= sizeof(dr) + dr.title_len) {
            h->doc_title = arena_strndup(a, (const char *)dv.mv_data + sizeof(dr), dr.title_len);
            if (!h->doc_title)
                return CORE_ENOMEM;
        }
    }
    *found = true;
    return CORE_OK;
}

int kb_search(kb *k, const char *query, size_t len, const kb_query *q, arena *a,
              kb_result *out, char *msg, size_t msg_size)
{
    memset(out, 0, sizeof(*out));
    kb_query dq = {0};
    if (!q)
        q = &dq;
    size_t top = q->top_k ? q->top_k : 5;
    if (!k || !a || !query || len == 0)
        return core_errf(CORE_EINVAL, msg, msg_size, "the query is empty");
    if (len > KB_MAX_QUERY_BYTES)
        return core_errf(CORE_EINVAL, msg, msg_size, "the query is longer than %d bytes",
                         KB_MAX_QUERY_BYTES);
    if (top > KB_MAX_TOP_K)
        return core_errf(CORE_EINVAL, msg, msg_size, "top_k must be 1..%d", KB_MAX_TOP_K);
    kb_qterm qv_terms[KB_MAX_QTERMS];
    kb_qterms qt = {qv_terms, 0};
    kbtext_terms(query, len, kb_qterm_add, &qt);
    out->terms = qt.n;

    MDB_txn *txn = NULL;
    float *qvec = NULL;
    rank_hit *lists = NULL;
    int rc = CORE_OK;
    int mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn);
    if (mrc)
        return core_errf(kb_mdb(k, mrc, "begin"), msg, msg_size, "%s", k->err);
    kb_rec r;
    char model[256];
    uint32_t edim;
    if ((rc = kb_get_rec(k, txn, &r)) || (rc = kb_get_embed(k, txn, model, sizeof(model), &edim)))
        goto fail;
    out->version = r.version;
    bool dense_ok = kb_embed_match(k, model, edim) && r.vectors > 0;
    kb_mode mode = q->mode;
    if (mode == KB_MODE_AUTO)
        mode = dense_ok ? KB_MODE_HYBRID : KB_MODE_BM25;
    out->mode = mode;
    if (mode != KB_MODE_BM25 && !k->p.embed) {
        mdb_txn_abort(txn);
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "%s search needs an embedding model (kb.embedding_model)",
                         kb_mode_name(mode));
    }
    const float *qv = q->query_vec;
    if (mode != KB_MODE_BM25 && !qv) {
        /* The embedder may be slow: the snapshot is taken again after it. */
        mdb_txn_abort(txn);
        txn = NULL;
        qvec = malloc((size_t)k->p.embed_dim * sizeof(float));
        if (!qvec)
            return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
        rc = k->p.embed(k->p.embed_user, query, len, qvec);
        if (rc) {
            free(qvec);
            return core_errf(rc, msg, msg_size, "embedding the query failed: %s",
                             core_strerror(rc));
        }
        qv = qvec;
        if ((mrc = mdb_txn_begin(k->env, NULL, MDB_RDONLY, &txn))) {
            rc = kb_mdb(k, mrc, "begin");
            goto fail;
        }
        if ((rc = kb_get_rec(k, txn, &r)))
            goto fail;
        out->version = r.version;
    }
    size_t depth = mode == KB_MODE_HYBRID ? (top * 4 > 50 ? top * 4 : 50) : top;
    lists = malloc(3 * depth * sizeof(*lists));
    if (!lists) {
        rc = CORE_ENOMEM;
        goto fail;
    }
    rank_hit *lb = lists, *ld = lists + depth, *best = lists + 2 * depth;
    size_t nb = 0, nd = 0, n = 0;
    if (mode != KB_MODE_DENSE && (rc = kb_bm25(k, txn, &r, &qt, depth, lb, &nb)))
        goto fail;
    if (mode != KB_MODE_BM25 && dense_ok && (rc = kb_dense(k, txn, qv, depth, ld, &nd)))
        goto fail;
    if (mode == KB_MODE_HYBRID) {
        const rank_hit *ls[2] = {lb, ld};
        size_t ns[2] = {nb, nd};
        long m = rank_rrf(ls, ns, 2, top, best);
        if (m < 0) {
            rc = CORE_ENOMEM;
            goto fail;
        }
        n = (size_t)m;
    } else {
        best = mode == KB_MODE_DENSE ? ld : lb;
        n = mode == KB_MODE_DENSE ? nd : nb;
        n = n < top ? n : top;
    }
    out->hits = arena_calloc(a, n ? n : 1, sizeof(kb_hit));
    if (!out->hits) {
        rc = CORE_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        bool found;
        if ((rc = kb_fill_hit(k, txn, a, best[i].id, best[i].score, &out->hits[out->n], &found)))
            goto fail;
        out->n += found;
    }
    mdb_txn_abort(txn);
    free(qvec);
    free(lists);
    return CORE_OK;
fail:
    if (txn)
        mdb_txn_abort(txn);
    free(qvec);
    free(lists);
    out->n = 0;
    return core_errf(rc, msg, msg_size, "%s", rc == CORE_ENOMEM ? "out of memory" : k->err);
}
