/* main.c: edgegate-fcgi, the FastCGI pool behind nginx.
 *
 *   edgegate-fcgi -c CONFIG [--test-config]
 *   edgegate-fcgi -c CONFIG --cache-stats | --cache-purge JSON
 *                           | --budgets | --budget CLIENT | --budget-reset CLIENT
 *                           | --kb-ingest PATH... | --kb-list | --kb-delete ID
 *                           | --kb-reembed | --kb-search QUERY [MODE [TOP_K]]
 *
 * --test-config parses and validates CONFIG, prints "config ok" or
 * "FILE:LINE: what is wrong", and exits 0 or 1. The operator commands open
 * the response cache or the budget store named by CONFIG (with or without
 * a running pool: LMDB is multi-process), print the same JSON as the admin
 * API and exit 0, or 1 with a message. Without any of them the process
 * becomes the pool's master (see master.h) and stays in the foreground.
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "cfg.h"
#include "core_err.h"
#include "kbadmin.h"
#include "master.h"
#include "sbuf.h"

typedef enum {
    MAIN_SERVE,
    MAIN_CACHE_STATS,
    MAIN_CACHE_PURGE,
    MAIN_BUDGETS,
    MAIN_BUDGET,
    MAIN_BUDGET_RESET,
} main_cmd;

/* One operator command; prints JSON on stdout, errors on stderr. */
static int main_operator(const cfg *c, main_cmd cmd, const char *arg)
{
    char msg[512] = "";
    sbuf out;
    sbuf_init(&out);
    int rc;
    if (cmd == MAIN_CACHE_STATS || cmd == MAIN_CACHE_PURGE) {
        cache *ch = NULL;
        rc = admin_open_cache(c, &ch, msg, sizeof(msg));
        if (rc == CORE_OK && cmd == MAIN_CACHE_STATS) {
            rc = admin_cache_stats_json(ch, &out);
        } else if (rc == CORE_OK) {
            const char *param = NULL;
            rc = admin_cache_purge_json(ch, arg, strlen(arg), &out, &param, msg, sizeof(msg));
        }
        if (rc != CORE_OK && !msg[0] && ch)
            snprintf(msg, sizeof(msg), "%s", cache_errmsg(ch));
        cache_close(ch);
    } else {
        budget *b = NULL;
        rc = admin_open_budget(c, &b, msg, sizeof(msg));
        if (rc == CORE_OK && cmd == MAIN_BUDGETS)
            rc = admin_budgets_json(b, &out);
        else if (rc == CORE_OK && cmd == MAIN_BUDGET)
            rc = admin_budget_json(b, arg, &out);
        else if (rc == CORE_OK)
            rc = admin_budget_reset_json(b, arg, &out);
        if (rc != CORE_OK && !msg[0] && b)
            snprintf(msg, sizeof(msg), "%s", rc == CORE_EINVAL ? "invalid client id"
                                                                : budget_errmsg(b));
        budget_close(b);
    }
    if (rc == CORE_OK)
        printf("%s\n", out.data ? out.data : "");
    else
        fprintf(stderr, "edgegate-fcgi: %s: %s\n", core_strerror(rc), msg);
    sbuf_free(&out);
    return rc == CORE_OK ? 0 : 1;
}

static void main_usage(FILE *f)
{
    fputs("usage: edgegate-fcgi -c CONFIG [--test-config | OPERATOR COMMAND]\n"
          "  -c CONFIG             libconfig file (see conf/edgegate.conf)\n"
          "  --test-config         check CONFIG, print \"config ok\" or FILE:LINE: error, exit\n"
          "operator commands (print JSON, as the admin API does):\n"
          "  --cache-stats         response cache statistics\n"
          "  --cache-purge JSON    purge: {\"all\":true} {\"model\":ID} {\"client\":ID}\n"
          "                        {\"older_than_s\":N} {\"key\":HEX}\n"
          "                        {\"kb_version_below\":N} (QA answers of older KBs)\n"
          "  --budgets             token usage of every client\n"
          "  --budget CLIENT       one client's usage\n"
          "  --budget-reset CLIENT forget a client's usage\n"
          "  --kb-ingest PATH...   add or replace documents (files; directories recursively:\n"
          "                        .txt .md .markdown .html .htm), a JSON line each\n"
          "  --kb-list             knowledge base documents and statistics\n"
          "  --kb-delete ID        remove a document\n"
          "  --kb-reembed          vectors for chunks without one (kb.embedding_model)\n"
          "  --kb-search QUERY [MODE [TOP_K]]\n"
          "                        the best chunks (MODE auto|bm25|dense|hybrid, TOP_K 5)\n",
          f);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int test_only = 0;
    main_cmd cmd = MAIN_SERVE;
    const char *arg = NULL;
    const char *kb_op = NULL;
    const char *const *kb_args = NULL;
    size_t kb_n = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--cache-stats") == 0) {
            cmd = MAIN_CACHE_STATS;
        } else if (strcmp(argv[i], "--budgets") == 0) {
            cmd = MAIN_BUDGETS;
        } else if (strcmp(argv[i], "--cache-purge") == 0 && i + 1 < argc) {
            cmd = MAIN_CACHE_PURGE;
            arg = argv[++i];
        } else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            cmd = MAIN_BUDGET;
            arg = argv[++i];
        } else if (strcmp(argv[i], "--budget-reset") == 0 && i + 1 < argc) {
            cmd = MAIN_BUDGET_RESET;
            arg = argv[++i];
        } else if (strcmp(argv[i], "--kb-ingest") == 0 && i + 1 < argc) {
            kb_op = "ingest";
            kb_args = (const char *const *)argv + i + 1;
            for (kb_n = 0; i + 1 < argc && argv[i + 1][0] != '-'; kb_n++)
                i++;
        } else if (strcmp(argv[i], "--kb-list") == 0 || strcmp(argv[i], "--kb-reembed") == 0) {
            kb_op = argv[i][5] == 'l' ? "list" : "reembed";
        } else if (strcmp(argv[i], "--kb-delete") == 0 && i + 1 < argc) {
            kb_op = "delete";
            kb_args = (const char *const *)argv + ++i;
            kb_n = 1;
        } else if (strcmp(argv[i], "--kb-search") == 0 && i + 1 < argc) {
            kb_op = "search"; /* QUERY [MODE [TOP_K]] */
            kb_args = (const char *const *)argv + ++i;
            for (kb_n = 1; kb_n < 3 && i + 1 < argc && argv[i + 1][0] != '-'; kb_n++)
                i++;
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
    if (kb_op) {
        int status = kbadmin_cli(c, kb_op, kb_args, kb_n);
        cfg_free(c);
        return status;
    }
    if (cmd != MAIN_SERVE) {
        int status = main_operator(c, cmd, arg);
        cfg_free(c);
        return status;
    }
    return master_run(c);
}
