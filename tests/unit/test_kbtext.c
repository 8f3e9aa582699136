/* test_kbtext.c: format detection, binary detection, text/Markdown/HTML
 * parsing (headings, code fences, dropped script/style/noscript/template,
 * entities, <title>), chunk sizes, overlap and byte offsets, terms
 * (stopwords, Porter stems, diacritics, CJK bigrams). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_err.h"
#include "kbtext.h"

static kbtext_doc *parse(const char *s, kbtext_format f, size_t cb, size_t ov)
{
    kbtext_params p = {cb, ov};
    kbtext_doc *d = NULL;
    char msg[200] = "";
    if (kbtext_parse(s, strlen(s), f, &p, &d, msg, sizeof(msg)) != CORE_OK)
        fail_msg("kbtext_parse: %s", msg);
    return d;
}

/* All terms of s joined by spaces. */
typedef struct {
    char buf[2048];
    size_t n;
} terms_out;

static int collect(void *user, const char *t, size_t len)
{
    terms_out *o = user;
    if (o->n + len + 2 >= sizeof(o->buf))
        return 1;
    if (o->n)
        o->buf[o->n++] = ' ';
    memcpy(o->buf + o->n, t, len);
    o->n += len;
    o->buf[o->n] = '\0';
    return 0;
}

static const char *terms(const char *s, terms_out *o)
{
    o->n = 0;
    o->buf[0] = '\0';
    kbtext_terms(s, strlen(s), collect, o);
    return o->buf;
}

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(kbtext_detect("a/b.HTML", "x", 1), KBTEXT_HTML);
    assert_int_equal(kbtext_detect("a.htm", "x", 1), KBTEXT_HTML);
    assert_int_equal(kbtext_detect("a.md", "x", 1), KBTEXT_MARKDOWN);
    assert_int_equal(kbtext_detect("a.markdown", "<html>", 6), KBTEXT_MARKDOWN);
    assert_int_equal(kbtext_detect("a.txt", "# x", 3), KBTEXT_TEXT);
    assert_int_equal(kbtext_detect("a.d/README", "\n  <!DOCTYPE html><p>", 20), KBTEXT_HTML);
    assert_int_equal(kbtext_detect(NULL, "intro\n## Setup\n", 15), KBTEXT_MARKDOWN);
    assert_int_equal(kbtext_detect(NULL, "```\ncode\n```", 12), KBTEXT_MARKDOWN);
    assert_int_equal(kbtext_detect(NULL, "just words #hashtag", 19), KBTEXT_TEXT);
}

static void test_binary(void **state)
{
    (void)state;
    assert_false(kbtext_is_binary("plain ascii", 11));
    assert_false(kbtext_is_binary("caf\xc3\xa9 \xe4\xb8\xad\xf0\x9f\x98\x80", 13));
    assert_true(kbtext_is_binary("a\0b", 3));
    assert_true(kbtext_is_binary("\xff\xfe", 2));
    assert_true(kbtext_is_binary("\xc0\xaf", 2));         /* overlong '/' */
    assert_true(kbtext_is_binary("\xed\xa0\x80", 3));     /* surrogate */
    assert_true(kbtext_is_binary("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_true(kbtext_is_binary("ab\xe4\xb8", 4));        /* truncated */
    kbtext_params p = {200, 20};
    kbtext_doc *d = NULL;
    char msg[200] = "";
    assert_int_equal(kbtext_parse("ok\0no", 5, KBTEXT_TEXT, &p, &d, msg, sizeof(msg)),
                     CORE_EFORMAT);
    assert_non_null(strstr(msg, "binary"));
    assert_null(d);
    assert_int_equal(kbtext_parse(" \n\t\n", 4, KBTEXT_TEXT, &p, &d, msg, sizeof(msg)),
                     CORE_EFORMAT);
    assert_non_null(strstr(msg, "empty"));
    assert_int_equal(kbtext_parse("<script>x</script><!-- y -->", 28, KBTEXT_HTML, &p, &d, msg,
                                  sizeof(msg)),
                     CORE_EFORMAT);
    assert_non_null(strstr(msg, "empty"));
    p.overlap_bytes = 100;
    assert_int_equal(kbtext_parse("x", 1, KBTEXT_TEXT, &p, &d, msg, sizeof(msg)), CORE_EINVAL);
}

static void test_markdown(void **state)
{
    (void)state;
    const char *md = "# Guide\n\nIntro text here.\n\n## Install\n\nRun the installer.\n"
                     "Then reboot.\n\n```sh\n# not a heading\n\nmake install\n```\n\n"
                     "Setext Title\n============\n\n- item one\n- item two\n";
    kbtext_doc *d = parse(md, KBTEXT_MARKDOWN, 1000, 100);
    assert_string_equal(d->title, "Guide");
    assert_int_equal(d->n, 3);
    assert_string_equal(d->chunks[0].title, "Guide");
    assert_string_equal(d->chunks[0].text, "Intro text here.");
    assert_string_equal(d->chunks[1].title, "Guide > Install");
    /* Paragraph lines are joined; the fence's content is kept verbatim. */
    assert_string_equal(d->chunks[1].text,
                        "Run the installer. Then reboot.\n\n# not a heading\n\nmake install");
    assert_string_equal(d->chunks[2].title, "Setext Title");
    assert_string_equal(d->chunks[2].text, "item one\n\nitem two");
    /* Offsets point at the original bytes. */
    for (size_t i = 0; i < d->n; i++) {
        const kbtext_chunk *c = &d->chunks[i];
        assert_true(c->start < c->end && c->end <= strlen(md));
    }
    const kbtext_chunk *c = &d->chunks[0];
    assert_memory_equal(md + c->start, "Intro text here.", 16);
    assert_int_equal(c->end - c->start, 16);
    c = &d->chunks[1];
    assert_memory_equal(md + c->start, "Run the installer.", 18);
    assert_memory_equal(md + c->end - 12, "make install", 12);
    kbtext_doc_free(d);
}

static void test_html(void **state)
{
    (void)state;
    const char *html =
        "<!DOCTYPE html><html><head><title>The &amp; Title</title>"
        "<style>p { color: red }</style><script>var secret = 'scriptword';</script></head>"
        "<body><h1>Top</h1><p>First&nbsp;para &lt;b&gt; caf&eacute; &#x4E2D;&#25991;.</p>"
        "<!-- hidden commentword --><noscript>noscriptword</noscript>"
        "<template><p>templateword</p></template>"
        "<h2>Sub <em>part</em></h2><div>Second<br>line</div>"
        "<pre>  code\n   kept</pre><script type=\"x\">if (a < b) {}</script>"
        "<p>after</p></body></html>";
    kbtext_doc *d = parse(html, KBTEXT_HTML, 1000, 100);
    assert_string_equal(d->title, "The & Title");
    assert_int_equal(d->n, 2);
    assert_string_equal(d->chunks[0].title, "Top");
    assert_string_equal(d->chunks[0].text, "First para <b> caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87.");
    assert_string_equal(d->chunks[1].title, "Top > Sub part");
    assert_string_equal(d->chunks[1].text, "Second\n\nline\n\n  code\n   kept\n\nafter");
    for (size_t i = 0; i < d->n; i++) {
        assert_null(strstr(d->chunks[i].text, "word"));
        assert_null(strstr(d->chunks[i].text, "color"));
    }
    /* "First" starts the first chunk; the decoded "." ends it. */
    assert_memory_equal(html + d->chunks[0].start, "First", 5);
    assert_memory_equal(html + d->chunks[0].end - 1, ".</p>", 5);
    assert_memory_equal(html + d->chunks[1].end - 5, "after", 5);
    kbtext_doc_free(d);
}

/* Long text: chunks near the target size, overlapping, offsets exact. */
static void test_chunking(void **state)
{
    (void)state;
    char *text = malloc(60000);
    size_t n = 0;
    for (int p = 0; p < 40; p++) {
        for (int s = 0; s < 12; s++)
            n += (size_t)sprintf(text + n, "%sParagraph %d sentence %d says word%d%d here.",
                                 s ? " " : "", p, s, p, s);
        n += (size_t)sprintf(text + n, "\n\n");
    }
    kbtext_doc *d = parse(text, KBTEXT_TEXT, 600, 100);
    assert_true(d->n > 20);
    for (size_t i = 0; i < d->n; i++) {
        const kbtext_chunk *c = &d->chunks[i];
        assert_true(c->len <= 600);
        assert_true(c->len >= 100);
        /* Plain text without runs of spaces maps byte for byte. */
        assert_int_equal(c->end - c->start, c->len);
        assert_memory_equal(text + c->start, c->text, c->len);
        if (i) { /* overlap: this chunk starts before the previous one ended */
            assert_true(c->start < d->chunks[i - 1].end);
            assert_true(c->start > d->chunks[i - 1].start);
        }
    }
    assert_int_equal(d->chunks[0].start, 0);
    assert_int_equal(d->chunks[d->n - 1].end, n - 2);
    kbtext_doc_free(d);
    /* A paragraph with no spaces at all is cut at character boundaries. */
    n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)sprintf(text + n, "\xe4\xb8\xad");
    d = parse(text, KBTEXT_TEXT, 300, 50);
    size_t total = 0;
    for (size_t i = 0; i < d->n; i++) {
        assert_false(kbtext_is_binary(d->chunks[i].text, d->chunks[i].len));
        total += d->chunks[i].len;
    }
    assert_true(total >= n);
    kbtext_doc_free(d);
    free(text);
}

/* A code fence is not cut even when it is longer than a chunk. */
static void test_code_whole(void **state)
{
    (void)state;
    char md[8000];
    size_t n = (size_t)sprintf(md, "# C\n\nSome introduction text that is long enough to "
                                   "stand alone as its own chunk before the code.\n\n```\n");
    for (int i = 0; i < 30; i++)
        n += (size_t)sprintf(md + n, "int line_%02d = %d; /* comment */\n", i, i);
    n += (size_t)sprintf(md + n, "```\n\nAfter the code.\n");
    kbtext_doc *d = parse(md, KBTEXT_MARKDOWN, 300, 40);
    int found = 0;
    for (size_t i = 0; i < d->n; i++)
        if (strstr(d->chunks[i].text, "line_00") && strstr(d->chunks[i].text, "line_29"))
            found++;
    assert_int_equal(found, 1);
    kbtext_doc_free(d);
}

static void test_terms(void **state)
{
    (void)state;
    terms_out o;
    assert_string_equal(terms("The Running dogs were connected to the server's configurations",
                              &o),
                        "run dog connect server configur");
    assert_string_equal(terms("CAF\xc3\x89 na\xc3\xafve \xc3\x85ngstr\xc3\xb6m", &o),
                        "cafe naiv angstrom");
    assert_string_equal(terms("x86_64 v1.2 mdb_env_open()", &o), "x86 64 v1 2 mdb env open");
    assert_string_equal(terms("don't", &o), "dont");
    /* CJK: bigrams; a lone character is its own term. */
    assert_string_equal(terms("\xe4\xb8\xad\xe6\x96\x87\xe5\x88\x86\xe8\xaf\x8d", &o),
                        "\xe4\xb8\xad\xe6\x96\x87 \xe6\x96\x87\xe5\x88\x86 "
                        "\xe5\x88\x86\xe8\xaf\x8d");
    assert_string_equal(terms("\xe4\xb8\xad, GPU", &o), "\xe4\xb8\xad gpu");
    assert_string_equal(terms("the of and", &o), "");
    char longw[200];
    memset(longw, 'a', 100);
    strcpy(longw + 100, " ok");
    assert_string_equal(terms(longw, &o), "ok");
}

/* Porter's published examples (the 1980 paper's vocabulary). */
static void test_stem(void **state)
{
    (void)state;
    static const char *const pairs[][2] = {
        {"caresses", "caress"}, {"ponies", "poni"},       {"ties", "ti"},
        {"caress", "caress"},   {"cats", "cat"},          {"feed", "feed"},
        {"agreed", "agre"},     {"plastered", "plaster"}, {"bled", "bled"},
        {"motoring", "motor"},  {"sing", "sing"},         {"conflated", "conflat"},
        {"troubled", "troubl"}, {"sized", "size"},        {"hopping", "hop"},
        {"tanned", "tan"},      {"falling", "fall"},      {"hissing", "hiss"},
        {"fizzed", "fizz"},     {"failing", "fail"},      {"filing", "file"},
        {"happy", "happi"},     {"sky", "sky"},           {"relational", "relat"},
        {"conditional", "condit"}, {"rational", "ration"}, {"valenci", "valenc"},
        {"digitizer", "digit"}, {"conformabli", "conform"}, {"radicalli", "radic"},
        {"differentli", "differ"}, {"vileli", "vile"},    {"analogousli", "analog"},
        {"vietnamization", "vietnam"}, {"predication", "predic"}, {"operator", "oper"},
        {"feudalism", "feudal"}, {"decisiveness", "decis"}, {"hopefulness", "hope"},
        {"callousness", "callous"}, {"formaliti", "formal"}, {"sensitiviti", "sensit"},
        {"sensibiliti", "sensibl"}, {"triplicate", "triplic"}, {"formative", "form"},
        {"formalize", "formal"}, {"electriciti", "electr"}, {"electrical", "electr"},
        {"hopeful", "hope"},    {"goodness", "good"},     {"revival", "reviv"},
        {"allowance", "allow"}, {"inference", "infer"},   {"airliner", "airlin"},
        {"adjustable", "adjust"}, {"defensible", "defens"}, {"irritant", "irrit"},
        {"replacement", "replac"}, {"adjustment", "adjust"}, {"dependent", "depend"},
        {"adoption", "adopt"},  {"homologou", "homolog"}, {"communism", "commun"},
        {"activate", "activ"},  {"angulariti", "angular"}, {"homologous", "homolog"},
        {"effective", "effect"}, {"bowdlerize", "bowdler"}, {"probate", "probat"},
        {"rate", "rate"},       {"cease", "ceas"},        {"controll", "control"},
        {"roll", "roll"},       {"generalizations", "gener"}, {"oscillators", "oscil"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        char w[64];
        strcpy(w, pairs[i][0]);
        size_t n = kbtext_stem(w, strlen(w));
        if (n != strlen(pairs[i][1]) || memcmp(w, pairs[i][1], n) != 0)
            fail_msg("stem(%s) = %.*s, want %s", pairs[i][0], (int)n, w, pairs[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),   cmocka_unit_test(test_binary),
        cmocka_unit_test(test_markdown), cmocka_unit_test(test_html),
        cmocka_unit_test(test_chunking), cmocka_unit_test(test_code_whole),
        cmocka_unit_test(test_terms),    cmocka_unit_test(test_stem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
