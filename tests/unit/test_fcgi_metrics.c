/* test_fcgi_metrics.c: the shared table aggregates what separate processes
 * write, and /metrics is well-formed Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "sbuf.h"

/* Value of the sample line that starts with `series ` exactly, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void check_format(const char *text)
{
    regex_t help, type, line;
    assert_int_equal(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+$", REG_EXTENDED), 0);
    assert_int_equal(regcomp(&type,
                             "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$",
                             REG_EXTENDED),
                     0);
    assert_int_equal(regcomp(&line,
                             "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})? "
                             "(-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN)$",
                             REG_EXTENDED),
                     0);
    char *copy = strdup(text);
    int n = 0;
    for (char *save, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save), n++) {
        bool ok = regexec(&help, l, 0, NULL, 0) == 0 || regexec(&type, l, 0, NULL, 0) == 0 ||
                  regexec(&line, l, 0, NULL, 0) == 0;
        if (!ok)
            fail_msg("bad exposition line: %s", l);
    }
    assert_true(n > 20);
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(copy);
    regfree(&help);
    regfree(&type);
    regfree(&line);
}

static void test_aggregates_across_processes(void **state)
{
    (void)state;
    metrics *m = metrics_create(8);
    assert_non_null(m);
    metrics_set_configured(m, 2);
    int s0 = metrics_slot_acquire(m), s1 = metrics_slot_acquire(m);
    assert_int_equal(s0, 0);
    assert_int_equal(s1, 1);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int slot = k == 0 ? s0 : s1;
            metrics_set_model_loaded(m, slot, true);
            for (int i = 0; i < 10; i++) {
                metrics_request_begin(m, slot);
                metrics_sample x = {.endpoint = METRICS_EP_CHAT,
                                    .status = i < 8 ? 200 : 400,
                                    .latency_us = 20000, /* 20 ms */
                                    .prompt_tokens = 5,
                                    .completion_tokens = i < 8 ? 4 : 0,
                                    .gen_us = i < 8 ? 100000 : 0,
                                    .deadline_hit = i == 0,
                                    .disconnected = false,
                                    .has_queue_wait = i < 5,
                                    .queue_wait_us = 3000};
                metrics_request_end(m, slot, &x);
            }
            metrics_request_begin(m, slot); /* left in flight */
            _exit(0);
        }
        kids[k] = pid;
        metrics_slot_bind(m, k == 0 ? s0 : s1, pid);
    }
    for (int k = 0; k < 2; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    metrics_summary sum;
    metrics_summarize(m, &sum);
    assert_int_equal(sum.workers_alive, 2);
    assert_int_equal(sum.workers_configured, 2);
    assert_int_equal(sum.workers_with_model, 2);
    assert_int_equal(sum.in_flight, 2);

    sbuf b;
    sbuf_init(&b);
    long long backlog = 7;
    assert_int_equal(metrics_render(m, &backlog, &b), 0);
    check_format(b.data);
    assert_true(sample(b.data, "edgegate_queue_depth") == 7);
    assert_true(sample(b.data, "edgegate_queue_wait_seconds_bucket{le=\"0.0025\"}") == 0);
    assert_true(sample(b.data, "edgegate_queue_wait_seconds_bucket{le=\"0.005\"}") == 10);
    assert_true(sample(b.data, "edgegate_queue_wait_seconds_count") == 10);
    double qs = sample(b.data, "edgegate_queue_wait_seconds_sum");
    assert_true(qs > 0.0299 && qs < 0.0301);
    assert_true(sample(b.data, "edgegate_requests_total{endpoint=\"chat\",status=\"200\"}") == 16);
    assert_true(sample(b.data, "edgegate_requests_total{endpoint=\"chat\",status=\"400\"}") == 4);
    assert_true(sample(b.data, "edgegate_requests_total{endpoint=\"health\",status=\"200\"}") == -1);
    assert_true(sample(b.data,
                       "edgegate_request_duration_seconds_bucket{endpoint=\"chat\",le=\"0.01\"}") ==
                0);
    assert_true(sample(b.data,
                       "edgegate_request_duration_seconds_bucket{endpoint=\"chat\",le=\"0.025\"}") ==
                20);
    assert_true(sample(b.data,
                       "edgegate_request_duration_seconds_bucket{endpoint=\"chat\",le=\"+Inf\"}") ==
                20);
    assert_true(sample(b.data, "edgegate_request_duration_seconds_count{endpoint=\"chat\"}") == 20);
    double s = sample(b.data, "edgegate_request_duration_seconds_sum{endpoint=\"chat\"}");
    assert_true(s > 0.399 && s < 0.401);
    assert_true(sample(b.data, "edgegate_prompt_tokens_total") == 100);
    assert_true(sample(b.data, "edgegate_completion_tokens_total") == 64);
    double gs = sample(b.data, "edgegate_generation_seconds_total");
    assert_true(gs > 1.599 && gs < 1.601);
    double tps = sample(b.data, "edgegate_generation_tokens_per_second");
    assert_true(tps > 39.99 && tps < 40.01);
    assert_true(sample(b.data, "edgegate_requests_in_flight") == 2);
    assert_true(sample(b.data, "edgegate_deadline_hits_total") == 2);
    assert_true(sample(b.data, "edgegate_workers_alive") == 2);
    assert_true(sample(b.data, "edgegate_workers_configured") == 2);

    /* A reaped worker's gauges go; its counters stay. */
    metrics_slot_release(m, s1);
    metrics_count_restart(m);
    metrics_summarize(m, &sum);
    assert_int_equal(sum.workers_alive, 1);
    assert_int_equal(sum.in_flight, 1);
    sbuf_clear(&b);
    metrics_render(m, NULL, &b);
    check_format(b.data);
    assert_true(sample(b.data, "edgegate_queue_depth") == -1); /* unknown: not shown */
    assert_true(sample(b.data, "edgegate_requests_total{endpoint=\"chat\",status=\"200\"}") == 16);
    assert_true(sample(b.data, "edgegate_worker_restarts_total") == 1);
    assert_true(sample(b.data, "edgegate_workers_alive") == 1);
    assert_int_equal(metrics_slot_acquire(m), s1); /* the freed slot is reused */
    sbuf_free(&b);
    metrics_destroy(m);
}

static void test_slots_run_out(void **state)
{
    (void)state;
    metrics *m = metrics_create(2);
    assert_int_equal(metrics_slot_acquire(m), 0);
    assert_int_equal(metrics_slot_acquire(m), 1);
    assert_int_equal(metrics_slot_acquire(m), -1);
    metrics_slot_release(m, 0);
    assert_int_equal(metrics_slot_acquire(m), 0);
    /* Out-of-range slots are ignored, not written. */
    metrics_sample x = {.endpoint = METRICS_EP_OTHER, .status = 404};
    metrics_request_end(m, 7, &x);
    metrics_request_end(m, -1, &x);
    metrics_summary sum;
    metrics_summarize(m, &sum);
    assert_int_equal(sum.in_flight, 0);
    assert_null(metrics_create(0));
    metrics_destroy(m);
    metrics_destroy(NULL);
}

static void test_unknown_status(void **state)
{
    (void)state;
    metrics *m = metrics_create(1);
    metrics_sample x = {.endpoint = METRICS_EP_OTHER, .status = 418, .latency_us = 99000000};
    metrics_request_end(m, 0, &x);
    sbuf b;
    sbuf_init(&b);
    metrics_render(m, NULL, &b);
    check_format(b.data);
    assert_true(sample(b.data, "edgegate_requests_total{endpoint=\"other\",status=\"other\"}") == 1);
    assert_true(sample(b.data, "edgegate_queue_wait_seconds_count") == 0);
    assert_true(sample(b.data,
                       "edgegate_request_duration_seconds_bucket{endpoint=\"other\",le=\"30\"}") ==
                0);
    assert_true(sample(b.data,
                       "edgegate_request_duration_seconds_bucket{endpoint=\"other\",le=\"+Inf\"}") ==
                1);
    sbuf_free(&b);
    metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregates_across_processes),
        cmocka_unit_test(test_slots_run_out),
        cmocka_unit_test(test_unknown_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
