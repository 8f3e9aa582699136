/* main.c: edgegate-fcgi, the FastCGI pool behind nginx.
 *
 *   edgegate-fcgi -c CONFIG [--test-config]
 *
 * --test-config parses and validates CONFIG, prints "config ok" or
 * "FILE:LINE: what is wrong", and exits 0 or 1. Without it the process
 * becomes the pool's master (see master.h) and stays in the foreground.
 */
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "master.h"

static void main_usage(FILE *f)
{
    fputs("usage: edgegate-fcgi -c CONFIG [--test-config]\n"
          "  -c CONFIG        libconfig file (see conf/edgegate.conf)\n"
          "  --test-config    check CONFIG, print \"config ok\" or FILE:LINE: error, exit\n",
          f);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int test_only = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--test-config") == 0 || strcmp(argv[i], "-t") == 0) {
            test_only = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            main_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "edgegate-fcgi: unexpected argument '%s'\n", argv[i]);
            main_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        main_usage(stderr);
        return 2;
    }
    char msg[512];
    cfg *c = NULL;
    if (cfg_load(path, &c, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    if (test_only) {
        puts("config ok");
        cfg_free(c);
        return 0;
    }
    return master_run(c);
}
