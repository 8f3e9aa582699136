/* test_fcgi_pool.c: the pool end to end without nginx: a master with two
 * workers serving a real (tiny) model, driven by a minimal FastCGI client
 * over its unix socket. Covers what nginx would hide: status codes made by
 * the pool itself, X-Request-Id, SSE framing on the wire, the deadline
 * header, SIGHUP and SIGTERM. Needs ../shared (skips visibly without it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cfg.h"
#include "master.h"
#include "sbuf.h"

#define MODEL "../shared/fixtures/llm/tiny-llama-spm-q8_0.gguf"

static char tdir[64], sock[96], logf[128], conf[128];
static pid_t master = -1;

/* ---- a minimal FastCGI client (responder role, one request per connection) */

static void fc_record(sbuf *b, int type, const void *data, size_t len)
{
    unsigned char h[8] = {1, (unsigned char)type, 0, 1, (unsigned char)(len >> 8),
                          (unsigned char)(len & 255), 0, 0};
    sbuf_put(b, h, 8);
    sbuf_put(b, data, len);
}

static void fc_len(sbuf *b, size_t n)
{
    if (n < 128) {
        sbuf_putc(b, (char)n);
    } else {
        unsigned char l[4] = {(unsigned char)((n >> 24) | 0x80), (unsigned char)(n >> 16),
                              (unsigned char)(n >> 8), (unsigned char)n};
        sbuf_put(b, l, 4);
    }
}

typedef struct {
    int status;
    char head[2048];
    sbuf body;
} fc_resp;

/* params: NULL-terminated name, value pairs. Returns 0, or -1 if the pool
 * could not be reached. */
static int fc_request(const char *const *params, const char *body, size_t body_len, fc_resp *out)
{
    memset(out, 0, sizeof(*out));
    sbuf_init(&out->body);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    sbuf w, pb;
    sbuf_init(&w);
    sbuf_init(&pb);
    static const unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* responder, no keep-conn */
    fc_record(&w, 1, begin, 8);
    for (const char *const *p = params; *p; p += 2) {
        fc_len(&pb, strlen(p[0]));
        fc_len(&pb, strlen(p[1]));
        sbuf_puts(&pb, p[0]);
        sbuf_puts(&pb, p[1]);
    }
    char cl[32];
    snprintf(cl, sizeof(cl), "%zu", body_len);
    fc_len(&pb, 14);
    fc_len(&pb, strlen(cl));
    sbuf_puts(&pb, "CONTENT_LENGTH");
    sbuf_puts(&pb, cl);
    fc_record(&w, 4, pb.data, pb.len);
    fc_record(&w, 4, "", 0);
    for (size_t off = 0; off < body_len; off += 60000)
        fc_record(&w, 5, body + off, body_len - off < 60000 ? body_len - off : 60000);
    fc_record(&w, 5, "", 0);
    size_t off = 0;
    while (off < w.len) {
        ssize_t n = write(fd, w.data + off, w.len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    sbuf_free(&w);
    sbuf_free(&pb);

    sbuf raw;
    sbuf_init(&raw);
    for (;;) {
        unsigned char h[8];
        size_t got = 0;
        while (got < 8) {
            ssize_t n = read(fd, h + got, 8 - got);
            if (n <= 0)
                goto done;
            got += (size_t)n;
        }
        size_t len = ((size_t)h[4] << 8) | h[5], pad = h[6];
        char buf[65536 + 256];
        got = 0;
        while (got < len + pad) {
            ssize_t n = read(fd, buf + got, len + pad - got);
            if (n <= 0)
                goto done;
            got += (size_t)n;
        }
        if (h[1] == 6) /* STDOUT */
            sbuf_put(&raw, buf, len);
        if (h[1] == 3) /* END_REQUEST */
            break;
    }
done:
    close(fd);
    const char *sep = raw.data ? strstr(raw.data, "\r\n\r\n") : NULL;
    if (sep) {
        size_t hl = (size_t)(sep - raw.data);
        snprintf(out->head, sizeof(out->head), "%.*s", (int)hl, raw.data);
        sbuf_put(&out->body, sep + 4, raw.len - hl - 4);
        const char *st = strstr(out->head, "Status: ");
        out->status = st ? atoi(st + 8) : 200;
    }
    sbuf_free(&raw);
    return 0;
}

static int fc_simple(const char *method, const char *path, const char *client, const char *body,
                     fc_resp *out)
{
    const char *params[] = {"REQUEST_METHOD", method, "DOCUMENT_URI", path, "REQUEST_ID",
                            "0123456789abcdef0123456789abcdef", "EDGEGATE_CLIENT", client ? client : "",
                            NULL};
    if (!client)
        params[6] = NULL;
    return fc_request(params, body ? body : "", body ? strlen(body) : 0, out);
}

static bool has_header(const fc_resp *r, const char *line)
{
    return strstr(r->head, line) != NULL;
}

/* ---- the pool -------------------------------------------------------------- */

static void write_conf(int deadline_ms)
{
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "socket = \"%s\";\nsocket_group = \"\";\npid_file = \"%s/pool.pid\";\n"
            "log_file = \"%s\";\nlog_level = \"info\";\nworkers = 2;\nshutdown_timeout_ms = 5000;\n"
            "models = ( { id = \"tiny\"; path = \"%s/" MODEL "\"; threads = 1; n_ctx = 128; } );\n"
            "limits = { max_body_bytes = 4096; default_max_tokens = 4; max_tokens_cap = 8;\n"
            "           deadline_ms = %d; max_messages = 8; };\n"
            "clients = ( { id = \"small\"; max_tokens_cap = 2; } );\n",
            sock, tdir, logf, getcwd((char[4096]){0}, 4096), deadline_ms);
    fclose(f);
}

static bool pool_ready(void)
{
    for (int i = 0; i < 300; i++) {
        fc_resp r;
        if (fc_simple("GET", "/health", NULL, NULL, &r) == 0) {
            bool ok = r.status == 200 && r.body.data && strstr(r.body.data, "\"status\":\"ok\"");
            sbuf_free(&r.body);
            if (ok)
                return true;
        }
        usleep(20000);
    }
    return false;
}

static int start_pool(void **state)
{
    (void)state;
    if (access(MODEL, R_OK) != 0) {
        print_message("SKIP: ../shared absent\n");
        return 0;
    }
    snprintf(tdir, sizeof(tdir), "/tmp/eg_pool_XXXXXX");
    if (!mkdtemp(tdir))
        return -1;
    snprintf(sock, sizeof(sock), "%s/run/pool.sock", tdir);
    snprintf(logf, sizeof(logf), "%s/pool.log", tdir);
    snprintf(conf, sizeof(conf), "%s/pool.conf", tdir);
    write_conf(60000);
    cfg *c = NULL;
    char msg[512];
    if (cfg_load(conf, &c, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "%s\n", msg);
        return -1;
    }
    master = fork();
    if (master == 0)
        _exit(master_run(c));
    cfg_free(c);
    return pool_ready() ? 0 : -1;
}

static int stop_pool(void **state)
{
    (void)state;
    if (master > 0) {
        kill(master, SIGKILL);
        waitpid(master, NULL, 0);
    }
    if (tdir[0]) {
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tdir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

#define NEED_POOL()                                                                        \
    do {                                                                                   \
        if (master <= 0)                                                                   \
            skip();                                                                        \
    } while (0)

static void test_health_and_models(void **state)
{
    (void)state;
    NEED_POOL();
    fc_resp r;
    assert_int_equal(fc_simple("GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "X-Request-Id: 0123456789abcdef0123456789abcdef"));
    assert_non_null(strstr(r.body.data, "\"workers\":{\"alive\":2,\"configured\":2}"));
    assert_non_null(strstr(r.body.data, "\"model\":{\"id\":\"tiny\",\"loaded\":true}"));
    sbuf_free(&r.body);
    assert_int_equal(fc_simple("GET", "/v1/models", "c1", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"id\":\"tiny\""));
    sbuf_free(&r.body);
}

static const char chat[] = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]";

static void test_chat(void **state)
{
    (void)state;
    NEED_POOL();
    char body[512];
    snprintf(body, sizeof(body), "%s,\"max_tokens\":100,\"temperature\":0}", chat);
    fc_resp r;
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: application/json"));
    assert_non_null(strstr(r.body.data, "\"id\":\"chatcmpl-0123456789abcdef0123456789abcdef\""));
    assert_non_null(strstr(r.body.data, "\"object\":\"chat.completion\""));
    /* 100 asked, the global cap is 8: at most 8 generated */
    const char *ct = strstr(r.body.data, "\"completion_tokens\":");
    assert_non_null(ct);
    int n = atoi(ct + 20);
    assert_true(n >= 1 && n <= 8);
    assert_false(has_header(&r, "X-Edgegate-Deadline"));
    sbuf_free(&r.body);

    /* the client "small" is capped at 2 */
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "small", body, &r), 0);
    assert_int_equal(r.status, 200);
    ct = strstr(r.body.data, "\"completion_tokens\":");
    assert_true(atoi(ct + 20) <= 2);
    sbuf_free(&r.body);
}

static void test_stream(void **state)
{
    (void)state;
    NEED_POOL();
    char body[512];
    snprintf(body, sizeof(body),
             "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":3}", chat);
    fc_resp r;
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/event-stream"));
    assert_true(has_header(&r, "X-Accel-Buffering: no"));
    const char *b = r.body.data;
    assert_memory_equal(b, "data: {", 7);
    assert_non_null(strstr(b, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    assert_non_null(strstr(b, "\"choices\":[],\"usage\":{\"prompt_tokens\":"));
    size_t len = r.body.len;
    assert_true(len > 14);
    assert_string_equal(b + len - 14, "data: [DONE]\n\n");
    sbuf_free(&r.body);
}

static void test_pool_errors(void **state)
{
    (void)state;
    NEED_POOL();
    fc_resp r;
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", NULL, chat, &r), 0);
    assert_int_equal(r.status, 401);
    sbuf_free(&r.body);
    assert_int_equal(fc_simple("GET", "/v1/chat/completions", "c1", NULL, &r), 0);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "Allow: POST"));
    sbuf_free(&r.body);
    assert_int_equal(fc_simple("GET", "/admin/x", "admin", NULL, &r), 0);
    assert_int_equal(r.status, 403);
    sbuf_free(&r.body);
    assert_int_equal(fc_simple("GET", "/nowhere", "c1", NULL, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body.data, "\"error\":{"));
    sbuf_free(&r.body);
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", "{nope", &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body.data, "\"code\":\"invalid_json\""));
    sbuf_free(&r.body);

    char big[6000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", big, &r), 0);
    assert_int_equal(r.status, 413);
    sbuf_free(&r.body);

    /* n_ctx is 128: a 3000-character prompt cannot fit */
    char longp[3600];
    int k = snprintf(longp, sizeof(longp), "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 600; i++)
        k += snprintf(longp + k, sizeof(longp) - (size_t)k, "word ");
    snprintf(longp + k, sizeof(longp) - (size_t)k, "\"}]}");
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", longp, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body.data, "\"code\":\"context_length_exceeded\""));
    sbuf_free(&r.body);

    /* The pool still serves after all of that. */
    assert_true(pool_ready());
}

static void test_metrics_count(void **state)
{
    (void)state;
    NEED_POOL();
    fc_resp r;
    assert_int_equal(fc_simple("GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body.data, "edgegate_requests_total{endpoint=\"chat\",status=\"200\"}"));
    assert_non_null(strstr(r.body.data, "edgegate_requests_total{endpoint=\"chat\",status=\"413\"} 1\n"));
    assert_non_null(strstr(r.body.data, "edgegate_workers_alive 2\n"));
    sbuf_free(&r.body);
}

static int count_in_log(const char *needle)
{
    FILE *f = fopen(logf, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Reload to a 1 ms deadline: new workers, and long generations are cut. */
static void test_reload_and_deadline(void **state)
{
    (void)state;
    NEED_POOL();
    write_conf(1);
    assert_int_equal(kill(master, SIGHUP), 0);
    for (int i = 0; i < 300 && count_in_log("\"reload done\"") == 0; i++)
        usleep(20000);
    assert_int_equal(count_in_log("\"reload done\""), 1);
    for (int i = 0; i < 300 && count_in_log("\"worker stopped\"") < 2; i++)
        usleep(20000);
    assert_int_equal(count_in_log("\"worker stopped\""), 2);

    char body[512];
    snprintf(body, sizeof(body), "%s,\"max_tokens\":8}", chat);
    fc_resp r;
    assert_int_equal(fc_simple("POST", "/v1/chat/completions", "c1", body, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "X-Edgegate-Deadline: hit"));
    assert_non_null(strstr(r.body.data, "\"finish_reason\":\"length\""));
    assert_non_null(strstr(r.body.data, "\"edgegate\":{\"deadline_hit\":true}"));
    sbuf_free(&r.body);
}

static void test_worker_restart(void **state)
{
    (void)state;
    NEED_POOL();
    /* Find a worker through its log line and kill it. */
    FILE *f = fopen(logf, "r");
    assert_non_null(f);
    char line[4096];
    long pid = 0;
    while (fgets(line, sizeof(line), f)) {
        static const char key[] = "\"worker started\",\"worker_pid\":";
        const char *p = strstr(line, key);
        if (p)
            pid = atol(p + sizeof(key) - 1);
    }
    fclose(f);
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    for (int i = 0; i < 300 && count_in_log("\"worker died\"") == 0; i++)
        usleep(20000);
    assert_int_equal(count_in_log("\"worker died\""), 1);
    assert_true(pool_ready()); /* back to 2 of 2 */
}

static void test_graceful_stop(void **state)
{
    (void)state;
    NEED_POOL();
    assert_int_equal(kill(master, SIGTERM), 0);
    int st;
    assert_int_equal(waitpid(master, &st, 0), master);
    master = -1;
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct stat sb;
    assert_int_not_equal(stat(sock, &sb), 0); /* socket removed */
    assert_int_equal(count_in_log("\"pool stopped\""), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_models), cmocka_unit_test(test_chat),
        cmocka_unit_test(test_stream),            cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_metrics_count),     cmocka_unit_test(test_reload_and_deadline),
        cmocka_unit_test(test_worker_restart),    cmocka_unit_test(test_graceful_stop),
    };
    return cmocka_run_group_tests(tests, start_pool, stop_pool);
}
