/* build/edgegate-run's options are used by people and by checks, so their
 * behaviour is pinned here: --tokenize-tests reproduces llama.cpp's .out
 * files, --dump-logits writes the .ref layout, generation prints text, bad
 * arguments exit 2. Vocabularies and models come from ../shared when present,
 * else from edgegate-make-model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static const char *cli_build(void)
{
    const char *b = getenv("EDGEGATE_BUILD");
    return b ? b : "build";
}

static int cli_run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void t_tokenize_tests(void **state)
{
    (void)state;
    static const char *const vocabs[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "bert-bge"};
    char cmd[2048];
    int ran = 0;
    for (size_t i = 0; i < sizeof vocabs / sizeof *vocabs; i++) {
        char f[256];
        snprintf(f, sizeof f, "../shared/fixtures/tokenizer/ggml-vocab-%s.gguf", vocabs[i]);
        if (access(f, R_OK)) {
            print_message("SKIP: %s absent\n", f);
            continue;
        }
        snprintf(cmd, sizeof cmd, "%s/edgegate-run -m %s --tokenize-tests %s.inp | cmp -s - %s.out",
                 cli_build(), f, f, f);
        if (cli_run(cmd))
            fail_msg("--tokenize-tests differs from %s.out", f);
        ran++;
    }
    if (!ran)
        skip();
}

static void t_model_commands(void **state)
{
    (void)state;
    char model[512], ref[512], cmd[2048];
    const char *fx = "../shared/fixtures/llm/tiny-llama-spm-q8_0.gguf";
    if (!access(fx, R_OK)) {
        snprintf(model, sizeof model, "%s", fx);
    } else {
        snprintf(model, sizeof model, "%s/tests/cli-tiny.gguf", cli_build());
        snprintf(cmd, sizeof cmd, "%s/edgegate-make-model --shape tiny --type q4_0 --seed 3 -o %s >/dev/null",
                 cli_build(), model);
        assert_int_equal(cli_run(cmd), 0);
    }
    snprintf(ref, sizeof ref, "%s/tests/cli-dump.ref", cli_build());
    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m %s -p 'Hello there' --dump-logits %s 2>/dev/null",
             cli_build(), model, ref);
    assert_int_equal(cli_run(cmd), 0);
    FILE *f = fopen(ref, "rb");
    assert_non_null(f);
    int32_t hdr[2];
    assert_int_equal(fread(hdr, 4, 2, f), 2);
    assert_true(hdr[0] > 1 && hdr[1] > 100);
    fseek(f, 0, SEEK_END);
    assert_int_equal(ftell(f), 8 + 4L * hdr[0] + 4L * hdr[0] * hdr[1]);
    fclose(f);

    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m %s -p 'Hello' -n 5 --temp 0 --seed 1 -t 2 2>/dev/null | wc -c",
             cli_build(), model);
    FILE *p = popen(cmd, "r");
    long bytes = -1;
    assert_int_equal(fscanf(p, "%ld", &bytes), 1);
    assert_int_equal(pclose(p), 0);
    assert_true(bytes > 0);
    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m %s -p 'Hi' --chat -n 3 >/dev/null 2>&1", cli_build(), model);
    assert_int_equal(cli_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m %s -p x --dump-logits /nonexistent/dir/x.ref 2>/dev/null",
             cli_build(), model);
    assert_int_equal(cli_run(cmd), 1);
}

static void t_bad_arguments(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/edgegate-run 2>/dev/null", cli_build());
    assert_int_equal(cli_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m x --bogus 2>/dev/null", cli_build());
    assert_int_equal(cli_run(cmd), 2);
    snprintf(cmd, sizeof cmd, "%s/edgegate-run -m /nonexistent.gguf -p hi 2>/dev/null", cli_build());
    assert_int_equal(cli_run(cmd), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_tokenize_tests),
        cmocka_unit_test(t_model_commands),
        cmocka_unit_test(t_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
