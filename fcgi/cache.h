/* cache.h: the response cache, in LMDB, keyed by SHA-256 of a canonical
 * form of the request.
 *
 * Keys: the caller feeds everything that changes the answer into a
 * cache_keyb (endpoint, model identity, normalised messages, every sampling
 * parameter, the client id unless the cache is shared) and gets the
 * SHA-256 (FIPS 180-4, implemented here) of an unambiguous encoding: each
 * field is a type tag, then for strings an 8-byte length, then the bytes,
 * so ("ab","c") and ("a","bc") or the string "1" and the integer 1 can
 * never produce the same byte stream. Doubles are hashed by their bits
 * after folding -0 into 0 and every NaN into one NaN.
 *
 * Entries: the response body plus metadata (model, client, created, TTL,
 * size, prompt and completion tokens, hits). A get of an expired entry is a
 * miss and deletes it. Puts that would pass max_bytes, or that LMDB
 * refuses with MDB_MAP_FULL, evict least recently used entries and retry
 * rather than fail; recency is a sequence number bumped by every get and
 * put (an LRU index keyed by it), so it needs no clock agreement between
 * processes. Hits, misses and evictions are counted in the file itself, so
 * every worker sees the same totals.
 *
 * Every get is one LMDB write transaction (it moves the entry to the front
 * of the LRU and counts the hit). To keep that cheap the file is opened
 * MDB_WRITEMAP | MDB_NOSYNC: process crashes are harmless, but an OS crash
 * or power cut may corrupt the file, so keep it on tmpfs (e.g. /run) or
 * delete it at boot; it only holds copies. The file is sparse, with an
 * apparent size of map_size.
 *
 * LMDB rules: open after fork() (an LMDB environment must not cross a
 * fork), one handle per process and file, used by one thread at a time.
 * mdb_reader_check() runs at open and every reader_check_s, and before
 * evicting on MDB_MAP_FULL, to clear reader slots of crashed processes
 * (they would pin old pages and keep the map full).
 *
 * Ownership: cache_open() copies the path; cache_close() frees. Bodies
 * come back in the caller's sbuf; cache_info is a value with its own
 * copies of the strings.
 */
#ifndef CACHE_H
#define CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbuf.h"

#define CACHE_MAX_ID 255 /* bytes in a model or client id */

/* ---- SHA-256 and the key builder ------------------------------------------ */

typedef struct {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    uint8_t buf[64];
    size_t n; /* bytes waiting in buf */
} cache_sha256;

void cache_sha256_init(cache_sha256 *s);
void cache_sha256_update(cache_sha256 *s, const void *data, size_t len);
void cache_sha256_final(cache_sha256 *s, uint8_t out[32]);

typedef struct {
    uint8_t b[32];
} cache_key;

typedef struct {
    cache_sha256 sha;
} cache_keyb;

void cache_key_init(cache_keyb *kb);
void cache_key_add_str(cache_keyb *kb, const char *s, size_t len); /* s may hold NULs */
void cache_key_add_i64(cache_keyb *kb, int64_t v);
void cache_key_add_f64(cache_keyb *kb, double v);
void cache_key_final(cache_keyb *kb, cache_key *out);
/* 64 lowercase hex digits and a NUL. */
void cache_key_hex(const cache_key *k, char out[65]);
/* CORE_EFORMAT unless s is exactly 64 hex digits (either case). */
int cache_key_from_hex(const char *s, size_t len, cache_key *out);

/* ---- the cache --------------------------------------------------------------- */

typedef struct {
    const char *path;        /* required: the LMDB file (MDB_NOSUBDIR); "-lock" beside it */
    size_t map_size;         /* 256 MiB */
    size_t max_bytes;        /* bound on stored bytes; 0: half the map */
    long long default_ttl_s; /* when a put names none; 0: no expiry */
    int reader_check_s;      /* 10 */
    /* Clock (Unix seconds), for tests; NULL: time(). */
    long long (*now)(void *user);
    void *now_user;
} cache_params;

cache_params cache_default_params(void);

typedef struct cache cache;

int cache_open(const cache_params *p, cache **out, char *msg, size_t msg_size);
void cache_close(cache *c); /* NULL is a no-op */
/* Text of the last LMDB failure (for the log); "" when none. */
const char *cache_errmsg(const cache *c);

/* What a put stores besides the body; strings are copied. */
typedef struct {
    const char *model;  /* may be NULL */
    const char *client; /* may be NULL (a shared cache) */
    long long ttl_s;    /* < 0: the default TTL; 0: no expiry */
    long long prompt_tokens, completion_tokens;
    const char *finish; /* finish_reason to replay ("stop", "length"); may be NULL; <= 15 bytes */
    bool has_kb_version; /* an answer made from the knowledge base (QA): */
    long long kb_version; /* its version (>= 0), for {"kb_version_below":N} */
} cache_entry;

typedef struct {
    char model[CACHE_MAX_ID + 1];
    char client[CACHE_MAX_ID + 1];
    long long created; /* Unix seconds */
    long long ttl_s;
    long long size;    /* bytes the entry occupies (body and metadata) */
    long long body_len;
    long long prompt_tokens, completion_tokens;
    long long hits;    /* including this one */
    char finish[16];
    long long kb_version; /* -1: not made from the knowledge base */
} cache_info;

/* On a hit, body gets the stored body (appended after clearing) and info
 * (may be NULL) the metadata. *hit false: not there or expired. */
int cache_get(cache *c, const cache_key *k, bool *hit, cache_info *info, sbuf *body);
/* cache_get() for a lookup that hands a miss on to another one (the status
 * lane, worker.c): a miss is not counted, so it is counted once. */
int cache_get_hit(cache *c, const cache_key *k, bool *hit, cache_info *info, sbuf *body);
/* Stores (or replaces) an entry, evicting LRU entries to make room.
 * CORE_EINVAL for ids over CACHE_MAX_ID, a finish over 15 bytes, or a body
 * that can never fit
 * (larger than max_bytes); CORE_EIO when LMDB fails otherwise. */
int cache_put(cache *c, const cache_key *k, const cache_entry *e, const void *body, size_t len);

typedef enum {
    CACHE_PURGE_ALL,
    CACHE_PURGE_MODEL,
    CACHE_PURGE_CLIENT,
    CACHE_PURGE_OLDER, /* created more than older_than_s ago */
    CACHE_PURGE_KEY,
    CACHE_PURGE_KB_BELOW, /* made from a knowledge base older than kb_version_below */
} cache_purge_kind;

typedef struct {
    cache_purge_kind kind;
    char id[CACHE_MAX_ID + 1]; /* MODEL, CLIENT */
    long long older_than_s;    /* OLDER */
    cache_key key;             /* KEY */
    long long kb_version_below; /* KB_BELOW */
} cache_purge;

/* Removes the selected entries; *removed says how many. */
int cache_purge_run(cache *c, const cache_purge *sel, size_t *removed);

/* The body of POST /admin/cache/purge, exactly one member of
 *   {"all":true} {"model":"id"} {"client":"id"} {"older_than_s":N} {"key":"64 hex"}
 *   {"kb_version_below":N} (N >= 0; entries without a knowledge base version stay)
 * CORE_EFORMAT with a reason in msg (naming the member) for anything else;
 * *param (may be NULL) gets the offending member's name or NULL. */
int cache_purge_parse(const char *body, size_t len, cache_purge *out, const char **param,
                      char *msg, size_t msg_size);

typedef struct {
    uint64_t entries, bytes;
    uint64_t hits, misses, evictions, expired, puts;
    uint64_t map_full;        /* times MDB_MAP_FULL forced evictions */
    uint64_t map_size, max_bytes;
    uint64_t readers_cleared; /* stale reader slots cleared by this handle */
} cache_stats;

int cache_get_stats(cache *c, cache_stats *out);
/* Prometheus text (families edgegate_cache_*); 0 or -1 when out of memory. */
int cache_metrics_render(const cache_stats *s, sbuf *out);
/* mdb_reader_check() now; *cleared (may be NULL) gets the count. */
int cache_reader_check(cache *c, int *cleared);

#endif
