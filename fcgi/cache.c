/* cache.c: the LMDB response cache; see cache.h.
 *
 * File format (one LMDB environment, MDB_NOSUBDIR, four named DBs; all
 * integers host byte order unless noted, the file never leaves the host):
 *   "cache_entries" key: 32-byte SHA-256 -> value:
 *       cache_hdr (72 bytes: u32 magic "ECE3", u16 model_len, u16 client_len,
 *       i64 created, i64 ttl_s, i64 prompt_tokens, i64 completion_tokens,
 *       u64 body_len, char finish[16] NUL-padded, i64 kb_version (-1: none)),
 *       then the model id, the client id, the body. Entries of another
 *       magic (an older layout) read as misses and go with any purge.
 *   "cache_access"  key: 32-byte SHA-256 -> {u64 seq, u64 hits}, the mutable
 *       part, so a hit never rewrites a large body.
 *   "cache_lru"     key: u64 seq, BIG-endian (so LMDB's byte order is recency
 *       order) -> the 32-byte SHA-256. The first record is the least
 *       recently used entry.
 *   "cache_meta"    key "stats" -> cache_rec: counters, stored bytes and the
 *       sequence counter.
 * An entry's size is its value size plus CACHE_OVERHEAD (key, access and
 * LRU records); max_bytes bounds the sum.
 */
#include "cache.h"

#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "core_err.h"
#include "json.h"

#define CACHE_MAGIC 0x33454345u /* "ECE3" */
#define CACHE_OVERHEAD (32 + 48 + 40)
#define CACHE_RETRIES 12

/* ---- SHA-256 (FIPS 180-4) --------------------------------------------------- */

static const uint32_t cache_k256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t cache_ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void cache_sha_block(cache_sha256 *s, const uint8_t *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = cache_ror(w[i - 15], 7) ^ cache_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = cache_ror(w[i - 2], 17) ^ cache_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (cache_ror(e, 6) ^ cache_ror(e, 11) ^ cache_ror(e, 25)) +
                      ((e & f) ^ (~e & g)) + cache_k256[i] + w[i];
        uint32_t t2 = (cache_ror(a, 2) ^ cache_ror(a, 13) ^ cache_ror(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void cache_sha256_init(cache_sha256 *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof(iv));
    s->len = 0;
    s->n = 0;
}

void cache_sha256_update(cache_sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->len += len;
    if (s->n) {
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
        if (s->n < 64)
            return;
        cache_sha_block(s, s->buf);
        s->n = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        cache_sha_block(s, p);
    memcpy(s->buf, p, len);
    s->n = len;
}

void cache_sha256_final(cache_sha256 *s, uint8_t out[32])
{
    uint64_t bits = s->len * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = s->n < 56 ? 56 - s->n : 120 - s->n;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    cache_sha256_update(s, pad, padlen);
    cache_sha256_update(s, lenb, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

/* ---- keys ---------------------------------------------------------------------- */

static void cache_key_u64(cache_keyb *kb, char tag, uint64_t v)
{
    uint8_t b[9];
    b[0] = (uint8_t)tag;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    cache_sha256_update(&kb->sha, b, sizeof(b));
}

void cache_key_init(cache_keyb *kb)
{
    cache_sha256_init(&kb->sha);
    cache_sha256_update(&kb->sha, "edgegate-cache-key-v1", 21);
}

void cache_key_add_str(cache_keyb *kb, const char *s, size_t len)
{
    cache_key_u64(kb, 's', (uint64_t)len);
    if (len)
        cache_sha256_update(&kb->sha, s, len);
}

void cache_key_add_i64(cache_keyb *kb, int64_t v)
{
    cache_key_u64(kb, 'i', (uint64_t)v);
}

void cache_key_add_f64(cache_keyb *kb, double v)
{
    uint64_t bits;
    if (isnan(v))
        bits = 0x7ff8000000000000ull;
    else {
        if (v == 0.0)
            v = 0.0; /* -0 -> +0 */
        memcpy(&bits, &v, sizeof(bits));
    }
    cache_key_u64(kb, 'f', bits);
}

void cache_key_final(cache_keyb *kb, cache_key *out)
{
    cache_sha256_final(&kb->sha, out->b);
}

void cache_key_hex(const cache_key *k, char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[k->b[i] >> 4];
        out[2 * i + 1] = hx[k->b[i] & 15];
    }
    out[64] = '\0';
}

static int cache_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cache_key_from_hex(const char *s, size_t len, cache_key *out)
{
    if (!s || len != 64)
        return CORE_EFORMAT;
    for (int i = 0; i < 32; i++) {
        int hi = cache_hexval(s[2 * i]), lo = cache_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CORE_EFORMAT;
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return CORE_OK;
}

/* ---- the store -------------------------------------------------------------------- */

typedef struct {
    uint32_t magic;
    uint16_t model_len, client_len;
    int64_t created, ttl_s, prompt_tokens, completion_tokens;
    uint64_t body_len;
    char finish[16]; /* NUL-padded */
    int64_t kb_version; /* -1: none */
} cache_hdr;

typedef struct {
    uint64_t seq, hits;
} cache_acc;

typedef struct {
    uint64_t hits, misses, evictions, expired, puts, bytes, seq;
    uint64_t map_full; /* times MDB_MAP_FULL made us evict */
} cache_rec;

struct cache {
    MDB_env *env;
    MDB_dbi entries, access, lru, meta;
    cache_params p;
    size_t max_bytes;
    long long last_check;
    uint64_t readers_cleared;
    char err[160];
};

_Static_assert(sizeof(cache_hdr) == 72, "cache_hdr layout");

cache_params cache_default_params(void)
{
    return (cache_params){.path = NULL,
                          .map_size = 256u << 20,
                          .max_bytes = 0,
                          .default_ttl_s = 3600,
                          .reader_check_s = 10};
}

const char *cache_errmsg(const cache *c)
{
    return c ? c->err : "";
}

static long long cache_now(const cache *c)
{
    return c->p.now ? c->p.now(c->p.now_user) : (long long)time(NULL);
}

static int cache_fail(cache *c, int mrc, const char *what)
{
    snprintf(c->err, sizeof(c->err), "cache: %s: %s", what, mdb_strerror(mrc));
    return CORE_EIO;
}

static void cache_seq_key(uint64_t seq, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(seq >> (56 - 8 * i));
}

static int cache_load_rec(cache *c, MDB_txn *txn, cache_rec *r)
{
    MDB_val k = {5, "stats"}, v;
    memset(r, 0, sizeof(*r));
    int rc = mdb_get(txn, c->meta, &k, &v);
    if (rc == 0 && v.mv_size == sizeof(*r)) {
        memcpy(r, v.mv_data, sizeof(*r));
        return 0;
    }
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    /* No usable record: continue the sequence after the newest LRU key, so
     * new keys never overwrite old ones. */
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, c->lru, &cur);
    if (rc)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        for (int i = 0; i < 8; i++)
            r->seq = r->seq << 8 | ((const uint8_t *)k.mv_data)[i];
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int cache_save_rec(cache *c, MDB_txn *txn, const cache_rec *r)
{
    MDB_val k = {5, "stats"}, v = {sizeof(*r), (void *)r};
    return mdb_put(txn, c->meta, &k, &v, 0);
}

/* Deletes one entry with its access and LRU records. */
static int cache_del(cache *c, MDB_txn *txn, const uint8_t key[32], cache_rec *r, bool *found)
{
    MDB_val k = {32, (void *)key}, v;
    *found = false;
    int rc = mdb_get(txn, c->entries, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    uint64_t size = v.mv_size + CACHE_OVERHEAD;
    rc = mdb_del(txn, c->entries, &k, NULL);
    if (rc)
        return rc;
    *found = true;
    r->bytes = r->bytes > size ? r->bytes - size : 0;
    rc = mdb_get(txn, c->access, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    cache_acc a = {0, 0};
    if (v.mv_size == sizeof(a))
        memcpy(&a, v.mv_data, sizeof(a));
    rc = mdb_del(txn, c->access, &k, NULL);
    if (rc)
        return rc;
    uint8_t sk[8];
    cache_seq_key(a.seq, sk);
    MDB_val lk = {8, sk};
    rc = mdb_del(txn, c->lru, &lk, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Evicts the least recently used entry; *done false when there is none. */
static int cache_evict_one(cache *c, MDB_txn *txn, cache_rec *r, bool *done)
{
    MDB_cursor *cur;
    *done = false;
    int rc = mdb_cursor_open(txn, c->lru, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    uint8_t key[32];
    bool have = rc == 0 && v.mv_size == 32;
    if (have)
        memcpy(key, v.mv_data, 32);
    if (rc == 0 && !have)
        rc = mdb_cursor_del(cur, 0); /* a foreign record: drop it */
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc || !have)
        return rc;
    bool found;
    rc = cache_del(c, txn, key, r, &found);
    if (rc)
        return rc;
    if (!found) { /* an LRU record without its entry */
        MDB_val lk = k;
        rc = mdb_del(txn, c->lru, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    } else {
        r->evictions++;
    }
    *done = true;
    return 0;
}

static void cache_maybe_check(cache *c)
{
    long long now = cache_now(c);
    if (now - c->last_check >= c->p.reader_check_s || now < c->last_check)
        cache_reader_check(c, NULL);
}

int cache_reader_check(cache *c, int *cleared)
{
    int dead = 0;
    if (!c)
        return CORE_EINVAL;
    int rc = mdb_reader_check(c->env, &dead);
    c->last_check = cache_now(c);
    if (rc)
        return cache_fail(c, rc, "reader check");
    c->readers_cleared += (uint64_t)(dead > 0 ? dead : 0);
    if (cleared)
        *cleared = dead;
    return CORE_OK;
}

/* Frees room after MDB_MAP_FULL: evicts n LRU entries in their own
 * transaction, or empties the cache when even that does not fit. */
static int cache_make_room(cache *c, int n)
{
    cache_reader_check(c, NULL); /* dead readers pin pages */
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc)
        return rc;
    cache_rec r;
    rc = cache_load_rec(c, txn, &r);
    r.map_full++;
    bool any = false, done = true;
    for (int i = 0; i < n && rc == 0 && done; i++) {
        rc = cache_evict_one(c, txn, &r, &done);
        any |= done;
    }
    if (rc == 0)
        rc = cache_save_rec(c, txn, &r);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == 0)
        return any ? 0 : MDB_NOTFOUND;
    if (rc != MDB_MAP_FULL)
        return rc;
    /* Deleting needs pages too; dropping whole trees needs the fewest. */
    rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = cache_load_rec(c, txn, &r);
    MDB_stat st;
    if (rc == 0)
        rc = mdb_stat(txn, c->entries, &st);
    if (rc == 0) {
        r.map_full++;
        r.evictions += st.ms_entries;
        r.bytes = 0;
        any = st.ms_entries > 0;
    }
    if (rc == 0)
        rc = mdb_drop(txn, c->entries, 0);
    if (rc == 0)
        rc = mdb_drop(txn, c->access, 0);
    if (rc == 0)
        rc = mdb_drop(txn, c->lru, 0);
    if (rc == 0)
        rc = cache_save_rec(c, txn, &r);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc == 0 && !any ? MDB_NOTFOUND : rc;
}

/* Runs fn in a write transaction, making room and retrying on MAP_FULL.
 * fn returns an LMDB code, or -1 with its own CORE code in *core. */
typedef int (*cache_txn_fn)(cache *c, MDB_txn *txn, void *ctx, int *core);

static int cache_write(cache *c, cache_txn_fn fn, void *ctx, const char *what)
{
    int n = 1;
    for (int attempt = 0; attempt < CACHE_RETRIES; attempt++) {
        MDB_txn *txn;
        int core = CORE_OK;
        int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
        if (rc)
            return cache_fail(c, rc, "begin");
        rc = fn(c, txn, ctx, &core);
        if (rc == -1) {
            mdb_txn_abort(txn);
            return core;
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        if (rc == 0)
            return CORE_OK;
        if (rc != MDB_MAP_FULL)
            return cache_fail(c, rc, what);
        int mr = cache_make_room(c, n);
        if (mr == MDB_NOTFOUND) {
            snprintf(c->err, sizeof(c->err), "cache: %s: the map is full with nothing to evict",
                     what);
            return CORE_EIO;
        }
        if (mr)
            return cache_fail(c, mr, "evicting");
        n *= 2;
    }
    snprintf(c->err, sizeof(c->err), "cache: %s: still full after evicting", what);
    return CORE_EIO;
}

/* ---- get ---------------------------------------------------------------------- */

typedef struct {
    const cache_key *k;
    bool *hit;
    cache_info *info;
    sbuf *body;
    long long now;
    bool quiet_miss; /* cache_get_hit(): a miss is counted by the next lookup */
} cache_get_ctx;

static bool cache_hdr_ok(const MDB_val *v, cache_hdr *h)
{
    if (v->mv_size < sizeof(*h))
        return false;
    memcpy(h, v->mv_data, sizeof(*h));
    return h->magic == CACHE_MAGIC && h->model_len <= CACHE_MAX_ID &&
           h->client_len <= CACHE_MAX_ID &&
           v->mv_size == sizeof(*h) + h->model_len + h->client_len + h->body_len;
}

static bool cache_expired(const cache_hdr *h, long long now)
{
    return h->ttl_s > 0 && now >= h->created + h->ttl_s;
}

static int cache_get_fn(cache *c, MDB_txn *txn, void *vctx, int *core)
{
    cache_get_ctx *x = vctx;
    *x->hit = false;
    cache_rec r;
    int rc = cache_load_rec(c, txn, &r);
    if (rc)
        return rc;
    MDB_val k = {32, (void *)x->k->b}, v;
    rc = mdb_get(txn, c->entries, &k, &v);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    cache_hdr h;
    if (rc == 0 && (!cache_hdr_ok(&v, &h) || cache_expired(&h, x->now))) {
        bool found;
        rc = cache_del(c, txn, x->k->b, &r, &found);
        if (rc)
            return rc;
        r.expired++;
        rc = MDB_NOTFOUND;
    }
    if (rc == MDB_NOTFOUND) {
        r.misses += !x->quiet_miss;
        return cache_save_rec(c, txn, &r);
    }
    const char *p = (const char *)v.mv_data + sizeof(h);
    if (x->body) {
        sbuf_clear(x->body);
        if (sbuf_put(x->body, p + h.model_len + h.client_len, h.body_len) != 0 ||
            sbuf_putc(x->body, '\0') != 0) {
            *core = CORE_ENOMEM;
            return -1;
        }
        x->body->len--; /* NUL-terminated for convenience, not counted */
    }
    cache_acc a = {0, 0};
    MDB_val av;
    rc = mdb_get(txn, c->access, &k, &av);
    if (rc == 0 && av.mv_size == sizeof(a))
        memcpy(&a, av.mv_data, sizeof(a));
    else if (rc && rc != MDB_NOTFOUND)
        return rc;
    if (x->info) {
        cache_info *i = x->info;
        memcpy(i->model, p, h.model_len);
        i->model[h.model_len] = '\0';
        memcpy(i->client, p + h.model_len, h.client_len);
        i->client[h.client_len] = '\0';
        i->created = h.created;
        i->ttl_s = h.ttl_s;
        i->size = (long long)(v.mv_size + CACHE_OVERHEAD);
        i->body_len = (long long)h.body_len;
        i->prompt_tokens = h.prompt_tokens;
        i->completion_tokens = h.completion_tokens;
        i->hits = (long long)a.hits + 1;
        memcpy(i->finish, h.finish, sizeof(h.finish));
        i->finish[sizeof(h.finish) - 1] = '\0';
        i->kb_version = h.kb_version;
    }
    /* Move to the front of the LRU. */
    uint8_t sk[8];
    if (a.seq) {
        cache_seq_key(a.seq, sk);
        MDB_val lk = {8, sk};
        rc = mdb_del(txn, c->lru, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    a.seq = ++r.seq;
    a.hits++;
    cache_seq_key(a.seq, sk);
    MDB_val lk = {8, sk}, lv = {32, (void *)x->k->b}, nav = {sizeof(a), &a};
    if ((rc = mdb_put(txn, c->access, &k, &nav, 0)) || (rc = mdb_put(txn, c->lru, &lk, &lv, 0)))
        return rc;
    r.hits++;
    rc = cache_save_rec(c, txn, &r);
    if (rc == 0)
        *x->hit = true;
    return rc;
}

static int cache_lookup(cache *c, const cache_key *k, bool *hit, cache_info *info, sbuf *body,
                        bool quiet_miss)
{
    if (!c || !k || !hit)
        return CORE_EINVAL;
    *hit = false;
    cache_maybe_check(c);
    cache_get_ctx x = {.k = k, .hit = hit, .info = info, .body = body, .now = cache_now(c),
                       .quiet_miss = quiet_miss};
    return cache_write(c, cache_get_fn, &x, "get");
}

int cache_get(cache *c, const cache_key *k, bool *hit, cache_info *info, sbuf *body)
{
    return cache_lookup(c, k, hit, info, body, false);
}

int cache_get_hit(cache *c, const cache_key *k, bool *hit, cache_info *info, sbuf *body)
{
    return cache_lookup(c, k, hit, info, body, true);
}

/* ---- put ---------------------------------------------------------------------- */

typedef struct {
    const cache_key *k;
    const cache_entry *e;
    const void *body;
    size_t len;
    size_t mlen, clen;
    long long now, ttl;
} cache_put_ctx;

static int cache_put_fn(cache *c, MDB_txn *txn, void *vctx, int *core)
{
    (void)core;
    cache_put_ctx *x = vctx;
    cache_rec r;
    int rc = cache_load_rec(c, txn, &r);
    if (rc)
        return rc;
    bool found, done = true;
    rc = cache_del(c, txn, x->k->b, &r, &found);
    if (rc)
        return rc;
    size_t vsize = sizeof(cache_hdr) + x->mlen + x->clen + x->len;
    uint64_t size = vsize + CACHE_OVERHEAD;
    while (r.bytes + size > c->max_bytes && done) {
        rc = cache_evict_one(c, txn, &r, &done);
        if (rc)
            return rc;
    }
    MDB_val k = {32, (void *)x->k->b}, v = {vsize, NULL};
    rc = mdb_put(txn, c->entries, &k, &v, MDB_RESERVE);
    if (rc)
        return rc;
    cache_hdr h = {.magic = CACHE_MAGIC,
                   .model_len = (uint16_t)x->mlen,
                   .client_len = (uint16_t)x->clen,
                   .created = x->now,
                   .ttl_s = x->ttl,
                   .prompt_tokens = x->e ? x->e->prompt_tokens : 0,
                   .completion_tokens = x->e ? x->e->completion_tokens : 0,
                   .body_len = x->len,
                   .kb_version = x->e && x->e->has_kb_version ? x->e->kb_version : -1};
    if (x->e && x->e->finish)
        strncpy(h.finish, x->e->finish, sizeof(h.finish) - 1);
    char *p = v.mv_data;
    memcpy(p, &h, sizeof(h));
    p += sizeof(h);
    if (x->mlen)
        memcpy(p, x->e->model, x->mlen);
    p += x->mlen;
    if (x->clen)
        memcpy(p, x->e->client, x->clen);
    p += x->clen;
    if (x->len)
        memcpy(p, x->body, x->len);
    cache_acc a = {++r.seq, 0};
    uint8_t sk[8];
    cache_seq_key(a.seq, sk);
    MDB_val av = {sizeof(a), &a}, lk = {8, sk}, lv = {32, (void *)x->k->b};
    if ((rc = mdb_put(txn, c->access, &k, &av, 0)) || (rc = mdb_put(txn, c->lru, &lk, &lv, 0)))
        return rc;
    r.bytes += size;
    r.puts++;
    return cache_save_rec(c, txn, &r);
}

int cache_put(cache *c, const cache_key *k, const cache_entry *e, const void *body, size_t len)
{
    if (!c || !k || (len && !body))
        return CORE_EINVAL;
    size_t mlen = e && e->model ? strlen(e->model) : 0;
    size_t clen = e && e->client ? strlen(e->client) : 0;
    if (mlen > CACHE_MAX_ID || clen > CACHE_MAX_ID || (e && e->finish && strlen(e->finish) > 15))
        return CORE_EINVAL;
    if (len > c->max_bytes ||
        sizeof(cache_hdr) + mlen + clen + len + CACHE_OVERHEAD > c->max_bytes) {
        snprintf(c->err, sizeof(c->err), "cache: a %zu-byte body exceeds the cache's bound", len);
        return CORE_EINVAL;
    }
    cache_maybe_check(c);
    long long ttl = e && e->ttl_s >= 0 ? e->ttl_s : c->p.default_ttl_s;
    cache_put_ctx x = {.k = k, .e = e, .body = body, .len = len, .mlen = mlen, .clen = clen,
                       .now = cache_now(c), .ttl = ttl};
    return cache_write(c, cache_put_fn, &x, "put");
}

/* ---- purge -------------------------------------------------------------------- */

typedef struct {
    const cache_purge *sel;
    size_t removed;
    long long now;
} cache_purge_ctx;

static bool cache_matches(const cache_purge_ctx *x, const MDB_val *v)
{
    cache_hdr h;
    if (!cache_hdr_ok(v, &h))
        return true; /* unreadable entries go with any purge */
    const char *p = (const char *)v->mv_data + sizeof(h);
    const char *id = x->sel->id;
    switch (x->sel->kind) {
    case CACHE_PURGE_MODEL:
        return h.model_len == strlen(id) && memcmp(p, id, h.model_len) == 0;
    case CACHE_PURGE_CLIENT:
        return h.client_len == strlen(id) && memcmp(p + h.model_len, id, h.client_len) == 0;
    case CACHE_PURGE_OLDER:
        return x->now - h.created > x->sel->older_than_s;
    case CACHE_PURGE_KB_BELOW:
        return h.kb_version >= 0 && h.kb_version < x->sel->kb_version_below;
    default:
        return true;
    }
}

static int cache_purge_fn(cache *c, MDB_txn *txn, void *vctx, int *core)
{
    cache_purge_ctx *x = vctx;
    x->removed = 0;
    cache_rec r;
    int rc = cache_load_rec(c, txn, &r);
    if (rc)
        return rc;
    if (x->sel->kind == CACHE_PURGE_KEY) {
        bool found;
        rc = cache_del(c, txn, x->sel->key.b, &r, &found);
        x->removed = found;
    } else if (x->sel->kind == CACHE_PURGE_ALL) {
        MDB_stat st;
        rc = mdb_stat(txn, c->entries, &st);
        x->removed = rc ? 0 : st.ms_entries;
        if (rc == 0 && (rc = mdb_drop(txn, c->entries, 0)) == 0 &&
            (rc = mdb_drop(txn, c->access, 0)) == 0)
            rc = mdb_drop(txn, c->lru, 0);
        r.bytes = 0;
    } else {
        /* Collect first: deleting in the other DBs while a cursor walks
         * this one is fine in LMDB, but a list keeps the walk simple. */
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, c->entries, &cur);
        if (rc)
            return rc;
        uint8_t(*keys)[32] = NULL;
        size_t n = 0, cap = 0;
        MDB_val k, v;
        for (int op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
            if (k.mv_size != 32 || !cache_matches(x, &v))
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                void *nk = realloc(keys, cap * 32);
                if (!nk) {
                    mdb_cursor_close(cur);
                    free(keys);
                    *core = CORE_ENOMEM;
                    return -1;
                }
                keys = nk;
            }
            memcpy(keys[n++], k.mv_data, 32);
        }
        mdb_cursor_close(cur);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
        for (size_t i = 0; i < n && rc == 0; i++) {
            bool found;
            rc = cache_del(c, txn, keys[i], &r, &found);
            x->removed += found;
        }
        free(keys);
    }
    if (rc == 0)
        rc = cache_save_rec(c, txn, &r);
    return rc;
}

int cache_purge_run(cache *c, const cache_purge *sel, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!c || !sel || sel->kind > CACHE_PURGE_KB_BELOW)
        return CORE_EINVAL;
    cache_purge_ctx x = {.sel = sel, .now = cache_now(c)};
    int rc = cache_write(c, cache_purge_fn, &x, "purge");
    if (rc == CORE_OK && removed)
        *removed = x.removed;
    return rc;
}

static int cache_purge_id(const json_value *m, const char *name, cache_purge *out,
                          char *msg, size_t msg_size)
{
    if (m->type != JSON_STRING)
        return core_errf(CORE_EFORMAT, msg, msg_size, "'%s' must be a string", name);
    size_t n = m->u.str.len;
    if (n == 0 || n > CACHE_MAX_ID)
        return core_errf(CORE_EFORMAT, msg, msg_size, "'%s' must have 1 to %d bytes", name,
                         CACHE_MAX_ID);
    if (memchr(m->u.str.s, '\0', n) || !json_utf8_valid(m->u.str.s, n))
        return core_errf(CORE_EFORMAT, msg, msg_size, "'%s' must be valid UTF-8 without NUL",
                         name);
    memcpy(out->id, m->u.str.s, n);
    out->id[n] = '\0';
    return CORE_OK;
}

int cache_purge_parse(const char *body, size_t len, cache_purge *out, const char **param,
                      char *msg, size_t msg_size)
{
    static const char *const names[] = {"all", "model", "client", "older_than_s", "key",
                                        "kb_version_below"};
    if (param)
        *param = NULL;
    memset(out, 0, sizeof(*out));
    arena *a = arena_new(4096);
    if (!a)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    json_value *v;
    int rc = json_parse(a, body, len, &v, msg, msg_size);
    if (rc)
        goto out;
    if (v->type != JSON_OBJECT || v->u.kids.n != 1) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size,
                       "expected an object with exactly one of all, model, client, "
                       "older_than_s, key, kb_version_below");
        goto out;
    }
    const json_value *m = v->u.kids.first;
    int which = -1;
    for (int i = 0; i < 6; i++)
        if (m->key_len == strlen(names[i]) && memcmp(m->key, names[i], m->key_len) == 0)
            which = i;
    if (which < 0) {
        rc = core_errf(CORE_EFORMAT, msg, msg_size, "unknown purge selector");
        goto out;
    }
    if (param)
        *param = names[which];
    switch (which) {
    case 0:
        out->kind = CACHE_PURGE_ALL;
        if (m->type != JSON_BOOL || !m->u.b)
            rc = core_errf(CORE_EFORMAT, msg, msg_size, "'all' must be true");
        break;
    case 1:
        out->kind = CACHE_PURGE_MODEL;
        rc = cache_purge_id(m, "model", out, msg, msg_size);
        break;
    case 2:
        out->kind = CACHE_PURGE_CLIENT;
        rc = cache_purge_id(m, "client", out, msg, msg_size);
        break;
    case 3:
        out->kind = CACHE_PURGE_OLDER;
        if (m->type != JSON_NUMBER || !m->u.num.is_int || m->u.num.i < 0)
            rc = core_errf(CORE_EFORMAT, msg, msg_size,
                           "'older_than_s' must be a non-negative integer");
        else
            out->older_than_s = m->u.num.i;
        break;
    case 4:
        out->kind = CACHE_PURGE_KEY;
        if (m->type != JSON_STRING || cache_key_from_hex(m->u.str.s, m->u.str.len, &out->key))
            rc = core_errf(CORE_EFORMAT, msg, msg_size, "'key' must be 64 hex digits");
        break;
    default:
        out->kind = CACHE_PURGE_KB_BELOW;
        if (m->type != JSON_NUMBER || !m->u.num.is_int || m->u.num.i < 0)
            rc = core_errf(CORE_EFORMAT, msg, msg_size,
                           "'kb_version_below' must be a non-negative integer");
        else
            out->kb_version_below = m->u.num.i;
        break;
    }
    if (rc == CORE_OK && param)
        *param = NULL;
out:
    arena_free(a);
    return rc;
}

/* ---- stats, open, close ------------------------------------------------------------ */

int cache_get_stats(cache *c, cache_stats *out)
{
    if (!c || !out)
        return CORE_EINVAL;
    memset(out, 0, sizeof(*out));
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return cache_fail(c, rc, "begin");
    cache_rec r;
    MDB_stat st;
    rc = cache_load_rec(c, txn, &r);
    if (rc == 0)
        rc = mdb_stat(txn, c->entries, &st);
    mdb_txn_abort(txn);
    if (rc)
        return cache_fail(c, rc, "stats");
    out->entries = st.ms_entries;
    out->bytes = r.bytes;
    out->hits = r.hits;
    out->misses = r.misses;
    out->evictions = r.evictions;
    out->expired = r.expired;
    out->puts = r.puts;
    out->map_full = r.map_full;
    out->map_size = c->p.map_size;
    out->max_bytes = c->max_bytes;
    out->readers_cleared = c->readers_cleared;
    return CORE_OK;
}

int cache_metrics_render(const cache_stats *s, sbuf *o)
{
    sbuf_printf(o,
                "# HELP edgegate_cache_hits_total Responses served from the cache.\n"
                "# TYPE edgegate_cache_hits_total counter\nedgegate_cache_hits_total %llu\n"
                "# HELP edgegate_cache_misses_total Lookups that found nothing (or expired).\n"
                "# TYPE edgegate_cache_misses_total counter\nedgegate_cache_misses_total %llu\n"
                "# HELP edgegate_cache_evictions_total Entries evicted to make room.\n"
                "# TYPE edgegate_cache_evictions_total counter\n"
                "edgegate_cache_evictions_total %llu\n"
                "# HELP edgegate_cache_expired_total Entries dropped at lookup after their TTL.\n"
                "# TYPE edgegate_cache_expired_total counter\nedgegate_cache_expired_total %llu\n"
                "# HELP edgegate_cache_map_full_total Times a full LMDB map forced evictions.\n"
                "# TYPE edgegate_cache_map_full_total counter\nedgegate_cache_map_full_total %llu\n"
                "# HELP edgegate_cache_entries Entries stored.\n"
                "# TYPE edgegate_cache_entries gauge\nedgegate_cache_entries %llu\n"
                "# HELP edgegate_cache_bytes Bytes stored (bodies and metadata).\n"
                "# TYPE edgegate_cache_bytes gauge\nedgegate_cache_bytes %llu\n"
                "# HELP edgegate_cache_max_bytes The configured bound on stored bytes.\n"
                "# TYPE edgegate_cache_max_bytes gauge\nedgegate_cache_max_bytes %llu\n",
                (unsigned long long)s->hits, (unsigned long long)s->misses,
                (unsigned long long)s->evictions, (unsigned long long)s->expired,
                (unsigned long long)s->map_full, (unsigned long long)s->entries,
                (unsigned long long)s->bytes,
                (unsigned long long)s->max_bytes);
    return o->oom ? -1 : 0;
}

int cache_open(const cache_params *p, cache **out, char *msg, size_t msg_size)
{
    *out = NULL;
    if (!p || !p->path || !*p->path)
        return core_errf(CORE_EINVAL, msg, msg_size, "cache: path is required");
    if (p->map_size < (64u << 10) || p->default_ttl_s < 0 || p->reader_check_s < 1)
        return core_errf(CORE_EINVAL, msg, msg_size,
                         "cache: map_size must be >= 64 KiB, default_ttl_s >= 0, "
                         "reader_check_s >= 1");
    if (p->max_bytes > p->map_size)
        return core_errf(CORE_EINVAL, msg, msg_size, "cache: max_bytes exceeds map_size");
    cache *c = calloc(1, sizeof(*c));
    if (!c)
        return core_errf(CORE_ENOMEM, msg, msg_size, "out of memory");
    c->p = *p;
    c->p.path = NULL;
    c->max_bytes = p->max_bytes ? p->max_bytes : p->map_size / 2;
    int rc = CORE_OK;
    int mrc = mdb_env_create(&c->env);
    if (mrc == 0)
        mrc = mdb_env_set_mapsize(c->env, p->map_size);
    if (mrc == 0)
        mrc = mdb_env_set_maxdbs(c->env, 4);
    if (mrc == 0)
        mrc = mdb_env_open(c->env, p->path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP, 0660);
    if (mrc) {
        rc = core_errf(CORE_EIO, msg, msg_size, "cache: opening %s: %s", p->path,
                       mdb_strerror(mrc));
        goto out;
    }
    cache_reader_check(c, NULL);
    MDB_txn *txn;
    mrc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (mrc == 0) {
        if ((mrc = mdb_dbi_open(txn, "cache_entries", MDB_CREATE, &c->entries)) == 0 &&
            (mrc = mdb_dbi_open(txn, "cache_access", MDB_CREATE, &c->access)) == 0 &&
            (mrc = mdb_dbi_open(txn, "cache_lru", MDB_CREATE, &c->lru)) == 0 &&
            (mrc = mdb_dbi_open(txn, "cache_meta", MDB_CREATE, &c->meta)) == 0)
            mrc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (mrc)
        rc = core_errf(CORE_EIO, msg, msg_size, "cache: %s: %s", p->path, mdb_strerror(mrc));
out:
    if (rc) {
        cache_close(c);
        return rc;
    }
    *out = c;
    return CORE_OK;
}

void cache_close(cache *c)
{
    if (!c)
        return;
    if (c->env)
        mdb_env_close(c->env);
    free(c);
}
