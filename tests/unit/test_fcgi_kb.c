/* test_fcgi_kb.c: the knowledge base in LMDB: ingest, replace, delete and
 * the version; no-op re-ingest; counters back to zero after deleting all;
 * BM25 finds the right chunk (English and Chinese); bad input; a full map;
 * dense and hybrid ranking with a test embedder, re-embedding after a
 * model change; a writer process replacing documents while reader
 * processes search (every result must come from one snapshot). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "core_err.h"
#include "kb.h"

static char dir[64];
static char path[96];
static arena *ar;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_kb.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/kb.mdb", dir);
    ar = arena_new(0);
    return ar ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char lock[128];
    snprintf(lock, sizeof(lock), "%s-lock", path);
    unlink(path);
    unlink(lock);
    rmdir(dir);
    arena_free(ar);
    return 0;
}

/* Each test starts from an empty file. */
static int fresh(void **state)
{
    (void)state;
    char lock[128];
    snprintf(lock, sizeof(lock), "%s-lock", path);
    unlink(path);
    unlink(lock);
    arena_reset(ar);
    return 0;
}

static kb *open_kb(const kb_params *p)
{
    kb *k = NULL;
    char msg[256] = "";
    if (kb_open(p, &k, msg, sizeof(msg)) != CORE_OK)
        fail_msg("kb_open: %s", msg);
    return k;
}

static kb_params params(void)
{
    kb_params p = kb_default_params();
    p.path = path;
    p.map_size = 32u << 20;
    p.chunk_bytes = 300;
    p.overlap_bytes = 50;
    return p;
}

static kb_ingest_result ingest(kb *k, const char *id, const char *text)
{
    kb_doc_in d = {.id = id, .data = text, .len = strlen(text)};
    kb_ingest_result r;
    char msg[256] = "";
    if (kb_ingest(k, &d, &r, msg, sizeof(msg)) != CORE_OK)
        fail_msg("kb_ingest(%s): %s", id, msg);
    return r;
}

static kb_result search(kb *k, const char *q, size_t top, kb_mode mode)
{
    kb_query opt = {.top_k = top, .mode = mode};
    kb_result r;
    char msg[256] = "";
    if (kb_search(k, q, strlen(q), &opt, ar, &r, msg, sizeof(msg)) != CORE_OK)
        fail_msg("kb_search(%s): %s", q, msg);
    return r;
}

static const char guide_md[] =
    "# Router guide\n\n"
    "## Reset\n\nTo reset the router hold the pin button for ten seconds until the lamp "
    "blinks amber. The configuration returns to factory defaults.\n\n"
    "## Wireless\n\nThe wireless network name is printed on the label under the device. "
    "Change the passphrase in the admin console under Security.\n\n"
    "## Firmware\n\nFirmware updates are downloaded automatically every night at 03:00 and "
    "installed after a reboot.\n";

static const char cooking_html[] =
    "<html><head><title>Bread</title><script>var router = 'reset wireless';</script></head>"
    "<body><h1>Sourdough</h1><p>Feed the starter with flour and water and let it rise "
    "overnight in a warm kitchen.</p><h2>Baking</h2><p>Bake the loaf at 230 degrees for "
    "forty minutes with steam.</p></body></html>";

static const char chinese_txt[] =
    "\xe8\xb7\xaf\xe7\x94\xb1\xe5\x99\xa8\xe7\x9a\x84\xe9\xbb\x98\xe8\xae\xa4\xe5\xaf\x86"
    "\xe7\xa0\x81\xe6\x98\xaf\xe5\x8d\xb0\xe5\x9c\xa8\xe6\xa0\x87\xe7\xad\xbe\xe4\xb8\x8a"
    "\xe7\x9a\x84\xe3\x80\x82\n\n" /* 路由器的默认密码是印在标签上的。 */
    "\xe9\x9d\xa2\xe5\x8c\x85\xe9\x9c\x80\xe8\xa6\x81\xe7\x83\xa4\xe5\x9b\x9b\xe5\x8d\x81"
    "\xe5\x88\x86\xe9\x92\x9f\xe3\x80\x82\n"; /* 面包需要烤四十分钟。 */

static void test_lifecycle(void **state)
{
    (void)state;
    kb_params p = params();
    kb *k = open_kb(&p);
    uint64_t v;
    assert_int_equal(kb_version(k, &v), CORE_OK);
    assert_int_equal(v, 0);

    kb_ingest_result r = ingest(k, "guide.md", guide_md);
    assert_int_equal(r.version, 1);
    assert_int_equal(r.chunks, 3);
    assert_false(r.replaced);
    assert_false(r.unchanged);
    assert_int_equal(r.type, KB_TYPE_MARKDOWN);
    r = ingest(k, "bread.html", cooking_html);
    assert_int_equal(r.version, 2);
    assert_int_equal(r.type, KB_TYPE_HTML);

    /* Identical content: nothing written, no new version. */
    r = ingest(k, "guide.md", guide_md);
    assert_true(r.unchanged);
    assert_int_equal(r.version, 2);
    assert_int_equal(r.chunks, 3);

    kb_stats st;
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.documents, 2);
    assert_int_equal(st.chunks, 5);
    assert_int_equal(st.bytes, strlen(guide_md) + strlen(cooking_html));
    assert_int_equal(st.version, 2);
    assert_true(st.terms > 20);
    uint64_t terms_before = st.terms, postings_before = st.postings;

    kb_doc *docs;
    size_t n;
    assert_int_equal(kb_list(k, ar, &docs, &n, &v), CORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v, 2);
    assert_string_equal(docs[0].id, "bread.html");
    assert_string_equal(docs[0].title, "Bread"); /* from <title> */
    assert_string_equal(docs[1].id, "guide.md");
    assert_string_equal(docs[1].title, "Router guide");
    assert_int_equal(docs[1].chunks, 3);

    /* A changed document replaces its chunks. */
    char changed[sizeof(guide_md) + 64];
    snprintf(changed, sizeof(changed), "%s\n## Lamp\n\nA red lamp means no uplink.\n", guide_md);
    r = ingest(k, "guide.md", changed);
    assert_true(r.replaced);
    assert_int_equal(r.chunks, 4);
    assert_int_equal(r.version, 3);
    kb_result s = search(k, "red lamp uplink", 5, KB_MODE_AUTO);
    assert_int_equal(s.mode, KB_MODE_BM25);
    assert_true(s.n >= 1);
    assert_string_equal(s.hits[0].doc_id, "guide.md");
    assert_string_equal(s.hits[0].title, "Router guide > Lamp");
    assert_int_equal(s.hits[0].chunk, 3);
    /* Back to the old text: back to the old counters. */
    ingest(k, "guide.md", guide_md);
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.terms, terms_before);
    assert_int_equal(st.postings, postings_before);
    assert_int_equal(st.version, 4);

    bool found = true;
    assert_int_equal(kb_delete(k, "nope", &found, &v), CORE_OK);
    assert_false(found);
    assert_int_equal(v, 4);
    assert_int_equal(kb_delete(k, "guide.md", &found, &v), CORE_OK);
    assert_true(found);
    assert_int_equal(v, 5);
    s = search(k, "reset router", 5, KB_MODE_BM25);
    assert_int_equal(s.n, 0); /* the script's words were never indexed */
    assert_int_equal(s.version, 5);
    assert_int_equal(kb_delete(k, "bread.html", &found, &v), CORE_OK);
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.documents, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.terms, 0);
    assert_int_equal(st.postings, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.version, 6);
    kb_close(k);
    kb_close(NULL);

    /* The version survives a reopen. */
    k = open_kb(&p);
    assert_int_equal(kb_version(k, &v), CORE_OK);
    assert_int_equal(v, 6);
    kb_close(k);
}

static void test_search(void **state)
{
    (void)state;
    kb_params p = params();
    kb *k = open_kb(&p);
    ingest(k, "guide.md", guide_md);
    ingest(k, "bread.html", cooking_html);
    ingest(k, "zh.txt", chinese_txt);
    kb_result s = search(k, "How do I reset the router to factory defaults?", 3, KB_MODE_BM25);
    assert_true(s.n >= 1);
    assert_string_equal(s.hits[0].doc_id, "guide.md");
    assert_string_equal(s.hits[0].title, "Router guide > Reset");
    assert_string_equal(s.hits[0].doc_title, "Router guide");
    assert_non_null(strstr(s.hits[0].text, "pin button"));
    assert_true(s.hits[0].score > 0);
    for (size_t i = 1; i < s.n; i++)
        assert_true(s.hits[i - 1].score >= s.hits[i].score);
    /* Offsets point at the chunk in the original document. */
    assert_memory_equal(guide_md + s.hits[0].start, "To reset", 8);
    assert_int_equal(s.version, 3);

    s = search(k, "baking loaf temperature", 3, KB_MODE_BM25);
    assert_string_equal(s.hits[0].doc_id, "bread.html");
    assert_string_equal(s.hits[0].title, "Sourdough > Baking");
    s = search(k, "update the firmware", 1, KB_MODE_AUTO);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.hits[0].chunk, 2);

    /* Chinese: bigrams find the sentence; a single character too. */
    s = search(k, "\xe9\xbb\x98\xe8\xae\xa4\xe5\xaf\x86\xe7\xa0\x81", 3, KB_MODE_BM25); /* 默认密码 */
    assert_true(s.n >= 1);
    assert_string_equal(s.hits[0].doc_id, "zh.txt");
    assert_int_equal(s.hits[0].chunk, 0);
    assert_non_null(strstr(s.hits[0].text, "\xe8\xb7\xaf\xe7\x94\xb1\xe5\x99\xa8"));
    s = search(k, "\xe7\x83\xa4\xe9\x9d\xa2\xe5\x8c\x85", 3, KB_MODE_BM25); /* 烤面包 */
    assert_true(s.n >= 1);
    assert_string_equal(s.hits[0].doc_id, "zh.txt");
    assert_non_null(strstr(s.hits[0].text, "\xe9\x9d\xa2\xe5\x8c\x85"));

    /* Only stopwords: nothing to match, not an error. */
    s = search(k, "what is the", 3, KB_MODE_BM25);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.terms, 0);

    kb_query q = {.top_k = 3};
    kb_result r;
    char msg[256] = "";
    assert_int_equal(kb_search(k, "", 0, &q, ar, &r, msg, sizeof(msg)), CORE_EINVAL);
    char *huge = malloc(KB_MAX_QUERY_BYTES + 2);
    memset(huge, 'a', KB_MAX_QUERY_BYTES + 1);
    huge[KB_MAX_QUERY_BYTES + 1] = '\0';
    assert_int_equal(kb_search(k, huge, strlen(huge), &q, ar, &r, msg, sizeof(msg)),
                     CORE_EINVAL);
    free(huge);
    q.top_k = KB_MAX_TOP_K + 1;
    assert_int_equal(kb_search(k, "router", 6, &q, ar, &r, msg, sizeof(msg)), CORE_EINVAL);
    q.top_k = 3;
    q.mode = KB_MODE_DENSE;
    assert_int_equal(kb_search(k, "router", 6, &q, ar, &r, msg, sizeof(msg)), CORE_EINVAL);
    assert_non_null(strstr(msg, "embedding model"));
    kb_close(k);
}

static void test_bad_input(void **state)
{
    (void)state;
    kb_params p = params();
    p.max_document_bytes = 1000;
    kb *k = open_kb(&p);
    char msg[256];
    kb_doc_in d = {.id = "bin", .data = "abc\0def", .len = 7};
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EFORMAT);
    assert_non_null(strstr(msg, "binary"));
    d.data = "caf\xe9";
    d.len = 4;
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EFORMAT);
    d.data = "  \n\n ";
    d.len = 5;
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EFORMAT);
    assert_non_null(strstr(msg, "empty"));
    d.data = "";
    d.len = 0;
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EFORMAT);
    char big[1001];
    memset(big, 'x', sizeof(big));
    d.data = big;
    d.len = sizeof(big);
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EINVAL);
    assert_non_null(strstr(msg, "too large"));
    d.data = "fine";
    d.len = 4;
    d.id = "";
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EINVAL);
    d.id = "tab\there";
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EINVAL);
    char longid[KB_MAX_ID + 2];
    memset(longid, 'i', KB_MAX_ID + 1);
    longid[KB_MAX_ID + 1] = '\0';
    d.id = longid;
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EINVAL);
    kb_stats st;
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.version, 0);
    assert_int_equal(st.documents, 0);
    kb_close(k);

    p = params();
    p.overlap_bytes = p.chunk_bytes;
    assert_int_equal(kb_open(&p, &k, msg, sizeof(msg)), CORE_EINVAL);
    p = params();
    p.path = NULL;
    assert_int_equal(kb_open(&p, &k, msg, sizeof(msg)), CORE_EINVAL);
}

/* A map too small for a document: a clear error, and nothing half-written. */
static void test_full(void **state)
{
    (void)state;
    kb_params p = params();
    p.map_size = 256u << 10;
    kb *k = open_kb(&p);
    ingest(k, "small", "a small document about routers");
    size_t n = 600000;
    char *text = malloc(n + 1);
    uint32_t x = 7;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        text[i] = (x >> 16) % 7 == 0 ? ' ' : (char)('a' + (x >> 20) % 26);
    }
    text[n] = '\0';
    kb_doc_in d = {.id = "big", .data = text, .len = n};
    char msg[256] = "";
    assert_int_equal(kb_ingest(k, &d, NULL, msg, sizeof(msg)), CORE_EIO);
    assert_true(kb_full(k));
    assert_non_null(strstr(msg, "full"));
    assert_non_null(strstr(kb_errmsg(k), "map_size_mb"));
    kb_stats st;
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.documents, 1);
    assert_int_equal(st.version, 1);
    kb_result s = search(k, "routers", 3, KB_MODE_BM25);
    assert_int_equal(s.n, 1);
    ingest(k, "small2", "another small one");
    assert_false(kb_full(k));
    free(text);
    kb_close(k);
}

/* ---- dense: a test embedder (hashed bag of terms, normalised) ------------------ */

#define DIM 64

static int calls;

static int toy_embed(void *user, const char *text, size_t len, float *out)
{
    (void)user;
    calls++;
    memset(out, 0, DIM * sizeof(float));
    size_t i = 0;
    while (i < len) {
        while (i < len && !((text[i] | 0x20) >= 'a' && (text[i] | 0x20) <= 'z'))
            i++;
        uint32_t h = 2166136261u;
        size_t s = i;
        while (i < len && ((text[i] | 0x20) >= 'a' && (text[i] | 0x20) <= 'z'))
            h = (h ^ (uint32_t)(text[i++] | 0x20)) * 16777619u;
        if (i > s + 3) /* words of 4+ letters */
            out[h % DIM] += 1.0f;
    }
    double n = 0;
    for (int d = 0; d < DIM; d++)
        n += out[d] * out[d];
    for (int d = 0; d < DIM && n > 0; d++)
        out[d] /= (float)sqrt(n);
    return 0;
}

static void test_dense(void **state)
{
    (void)state;
    kb_params p = params();
    p.embed = toy_embed;
    p.embed_dim = DIM;
    p.embed_model = "toy-1";
    kb *k = open_kb(&p);
    calls = 0;
    ingest(k, "guide.md", guide_md);
    ingest(k, "bread.html", cooking_html);
    assert_int_equal(calls, 5); /* one per chunk */
    kb_stats st;
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.vectors, 5);
    assert_int_equal(st.embed_dim, DIM);

    kb_result s = search(k, "passphrase wireless network label", 3, KB_MODE_DENSE);
    assert_int_equal(s.mode, KB_MODE_DENSE);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.hits[0].title, "Router guide > Wireless");
    assert_true(s.hits[0].score > 0.3 && s.hits[0].score <= 1.0001);
    s = search(k, "passphrase wireless network label", 3, KB_MODE_AUTO);
    assert_int_equal(s.mode, KB_MODE_HYBRID);
    assert_string_equal(s.hits[0].title, "Router guide > Wireless");
    assert_true(fabs(s.hits[0].score - 2.0 / 61) < 1e-9); /* first in both lists */
    /* A caller's vector is used as given (no embedder call). */
    float qv[DIM];
    toy_embed(NULL, "starter flour water", 19, qv);
    calls = 0;
    kb_query q = {.top_k = 1, .mode = KB_MODE_DENSE, .query_vec = qv};
    kb_result r;
    char msg[256];
    assert_int_equal(kb_search(k, "x", 1, &q, ar, &r, msg, sizeof(msg)), CORE_OK);
    assert_int_equal(calls, 0);
    assert_string_equal(r.hits[0].title, "Sourdough");
    /* Deleting removes the vectors too. */
    bool found;
    assert_int_equal(kb_delete(k, "bread.html", &found, NULL), CORE_OK);
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.vectors, 3);
    kb_close(k);

    /* Another model: its vectors are not those; dense finds nothing until
     * kb_reembed() recomputes them. */
    p.embed_model = "toy-2";
    k = open_kb(&p);
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.vectors, 0);
    s = search(k, "passphrase wireless", 3, KB_MODE_AUTO);
    assert_int_equal(s.mode, KB_MODE_BM25);
    s = search(k, "passphrase wireless", 3, KB_MODE_DENSE);
    assert_int_equal(s.n, 0);
    size_t done = 0;
    assert_int_equal(kb_reembed(k, &done, msg, sizeof(msg)), CORE_OK);
    assert_int_equal(done, 3);
    assert_int_equal(kb_reembed(k, &done, msg, sizeof(msg)), CORE_OK);
    assert_int_equal(done, 0);
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.vectors, 3);
    s = search(k, "passphrase wireless network label", 3, KB_MODE_DENSE);
    assert_string_equal(s.hits[0].title, "Router guide > Wireless");
    kb_close(k);

    /* Without an embedder: BM25 only, reembed refuses. */
    p = params();
    k = open_kb(&p);
    assert_int_equal(kb_reembed(k, &done, msg, sizeof(msg)), CORE_EINVAL);
    s = search(k, "passphrase wireless", 3, KB_MODE_AUTO);
    assert_int_equal(s.mode, KB_MODE_BM25);
    kb_close(k);
}

/* ---- concurrency ---------------------------------------------------------------------- */

/* Version v of document "d": chunks that all say "marker" and "gen<v%2>",
 * 6 chunks when v is even, 9 when odd. */
static char *doc_version(int v)
{
    char *s = malloc(20000);
    size_t n = 0;
    int chunks = v % 2 ? 9 : 6;
    for (int c = 0; c < chunks; c++)
        n += (size_t)sprintf(s + n, "## Part %d\n\nmarker gen%s text of part %d in version %d "
                                    "with enough words to stand alone.\n\n",
                             c, v % 2 ? "odd" : "even", c, v);
    return s;
}

static void test_concurrent(void **state)
{
    (void)state;
    kb_params p = params();
    kb *k = open_kb(&p);
    char *d0 = doc_version(0);
    ingest(k, "d", d0);
    free(d0);
    kb_close(k); /* never carry an environment across fork() */

    enum { READERS = 2, ROUNDS = 40 };
    pid_t kids[READERS + 1];
    for (int i = 0; i <= READERS; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] > 0)
            continue;
        int bad = 0;
        kb *c = NULL;
        char msg[256];
        if (kb_open(&p, &c, msg, sizeof(msg)) != CORE_OK)
            _exit(10);
        arena *a = arena_new(0);
        if (i == READERS) { /* the writer */
            for (int v = 1; v <= ROUNDS; v++) {
                char *t = doc_version(v);
                kb_doc_in d = {.id = "d", .data = t, .len = strlen(t)};
                kb_ingest_result r;
                if (kb_ingest(c, &d, &r, msg, sizeof(msg)) != CORE_OK || !r.replaced)
                    bad = 11;
                free(t);
            }
        } else {
            uint64_t last = 0;
            for (int round = 0; round < 150 && !bad; round++) {
                kb_query q = {.top_k = 20, .mode = KB_MODE_BM25};
                kb_result r;
                arena_reset(a);
                if (kb_search(c, "marker", 6, &q, a, &r, msg, sizeof(msg)) != CORE_OK) {
                    bad = 12;
                    break;
                }
                /* One snapshot: all chunks of one version, all of them. */
                int odd = 0, even = 0;
                for (size_t h = 0; h < r.n; h++) {
                    odd += strstr(r.hits[h].text, "genodd") != NULL;
                    even += strstr(r.hits[h].text, "geneven") != NULL;
                }
                if (!((odd == 9 && even == 0) || (even == 6 && odd == 0)))
                    bad = 13;
                if (r.version < last)
                    bad = 14;
                last = r.version;
            }
        }
        arena_free(a);
        kb_close(c);
        _exit(bad);
    }
    for (int i = 0; i <= READERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != 0)
            fail_msg("process %d exited with %d", i, WEXITSTATUS(st));
    }
    k = open_kb(&p);
    uint64_t v;
    assert_int_equal(kb_version(k, &v), CORE_OK);
    assert_int_equal(v, ROUNDS + 1);
    kb_stats st;
    assert_int_equal(kb_get_stats(k, &st), CORE_OK);
    assert_int_equal(st.chunks, 6); /* version 40 is even */
    kb_close(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lifecycle, fresh),
        cmocka_unit_test_setup(test_search, fresh),
        cmocka_unit_test_setup(test_bad_input, fresh),
        cmocka_unit_test_setup(test_full, fresh),
        cmocka_unit_test_setup(test_dense, fresh),
        cmocka_unit_test_setup(test_concurrent, fresh),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
