/* edgegate-run: try a model from the command line, and the checks' tool.
 *
 *   edgegate-run -m MODEL.gguf -p PROMPT [-n N] [-t THREADS] [--temp T] [--seed S] [--chat]
 *   edgegate-run -m MODEL.gguf -p PROMPT --dump-logits OUT.ref
 *   edgegate-run -m VOCAB.gguf --tokenize-tests FILE.inp
 *   edgegate-run -m MODEL.gguf --bench [-t THREADS]
 *   edgegate-run --detect CFG WEIGHTS IMAGE [--names FILE] [--confidence C] [--iou I] [-t THREADS]
 *                [--dump-heads OUT.bin] (raw yolo/region outputs, tests/ref/darknet_ref.c's format)
 *
 * Options beyond those: --ctx N, --isa scalar|avx2|avx512, --top-k K, --top-p P,
 * --min-p P, --repeat-penalty R, --chat-template NAME.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "detect.h"
#include "image.h"
#include "gguf.h"
#include "tokenizer.h"

typedef struct {
    const char *model, *prompt, *dump, *tok_tests, *isa, *chat_template;
    const char *detect_cfg, *names, *dump_heads;
    float confidence, iou;
    int n_predict, n_threads, n_ctx, chat, bench;
    core_sampling samp;
} run_opts;

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: edgegate-run -m MODEL.gguf -p PROMPT [-n N] [-t THREADS] [--temp T] [--seed S] [--chat]\n"
            "       edgegate-run -m MODEL.gguf -p PROMPT --dump-logits OUT.ref\n"
            "       edgegate-run -m VOCAB.gguf --tokenize-tests FILE.inp\n"
            "       edgegate-run -m MODEL.gguf --bench [-t THREADS]\n"
            "       edgegate-run --detect CFG WEIGHTS IMAGE [--names FILE] [--confidence C] [--iou I]\n"
            "options: --ctx N  --isa scalar|avx2|avx512  --top-k K  --top-p P  --min-p P\n"
            "         --repeat-penalty R  --chat-template chatml|llama3|llama2|phi3|gemma\n");
}

static double run_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

/* llama.cpp's .inp format: test strings separated by "\n__ggml_vocab_test__\n",
 * the last one followed by a final "\n__ggml_vocab_test__\n" too. */
static int run_tokenize_tests(const run_opts *o)
{
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char msg[512];
    gguf *g = NULL;
    tok_vocab *v = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t len, cap = 1 << 16;
    int rc = gguf_open(o->model, &g, msg, sizeof msg);
    if (!rc)
        rc = tok_load(g, &v, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "edgegate-run: %s: %s\n", o->model, msg);
        goto out;
    }
    if (run_read_file(o->tok_tests, &text, &len)) {
        fprintf(stderr, "edgegate-run: %s: %s\n", o->tok_tests, strerror(errno));
        rc = 1;
        goto out;
    }
    ids = malloc(cap * sizeof *ids);
    if (!ids) {
        rc = 1;
        goto out;
    }
    for (char *p = text; p < text + len;) {
        char *e = strstr(p, sep);
        size_t n = e ? (size_t)(e - p) : strlen(p);
        size_t nt;
        if ((rc = tok_encode(v, p, n, false, false, ids, cap, &nt))) {
            fprintf(stderr, "edgegate-run: tokenize: %s\n", core_strerror(rc));
            goto out;
        }
        for (size_t i = 0; i < nt; i++)
            printf(" %d", ids[i]);
        printf("\n");
        if (!e)
            break;
        p = e + sizeof sep - 1;
    }
out:
    free(ids);
    free(text);
    tok_free(v);
    gguf_close(g);
    return rc ? 1 : 0;
}

static int run_tokenize(core_model *m, const char *text, bool parse_special, int32_t **toks, size_t *n)
{
    size_t cap = strlen(text) + 16;
    *toks = malloc(cap * sizeof **toks);
    if (!*toks)
        return CORE_ENOMEM;
    return core_tokenize(m, text, strlen(text), true, parse_special, *toks, cap, n);
}

static int run_dump_logits(const run_opts *o, core_model *m)
{
    core_info info;
    core_get_info(m, &info);
    int32_t *toks = NULL;
    float *logits = NULL;
    size_t n = 0;
    char msg[512] = "";
    FILE *f = NULL;
    int rc = run_tokenize(m, o->prompt, false, &toks, &n);
    if (!rc && !(logits = malloc(n * (size_t)info.n_vocab * sizeof *logits)))
        rc = CORE_ENOMEM;
    if (!rc)
        rc = core_eval_all(m, toks, n, logits, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "edgegate-run: %s %s\n", core_strerror(rc), msg);
        goto out;
    }
    int32_t hdr[2] = {(int32_t)n, info.n_vocab};
    if (!(f = fopen(o->dump, "wb")) || fwrite(hdr, sizeof hdr, 1, f) != 1 ||
        fwrite(toks, sizeof *toks, n, f) != n ||
        fwrite(logits, sizeof *logits * info.n_vocab, n, f) != n || fclose(f)) {
        fprintf(stderr, "edgegate-run: %s: %s\n", o->dump, strerror(errno));
        f = NULL;
        rc = CORE_EIO;
        goto out;
    }
    f = NULL;
    fprintf(stderr, "wrote %zu positions x %d logits to %s\n", n, info.n_vocab, o->dump);
out:
    if (f)
        fclose(f);
    free(toks);
    free(logits);
    return rc ? 1 : 0;
}

static int run_print_token(void *user, int32_t tok, const char *text, size_t len)
{
    (void)user;
    (void)tok;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int run_generate(const run_opts *o, core_model *m)
{
    char msg[512] = "";
    char *text = NULL;
    int32_t *toks = NULL;
    size_t n = 0;
    int rc = 0;
    const char *prompt = o->prompt;
    if (o->chat) {
        core_chat_msg cm = {"user", o->prompt};
        size_t need = 0, cap = strlen(o->prompt) + 256;
        if (!(text = malloc(cap)))
            return 1;
        rc = core_chat_format(m, &cm, 1, true, text, cap, &need);
        if (rc == CORE_EINVAL && need >= cap) {
            char *t = realloc(text, need + 1);
            if (!t) {
                free(text);
                return 1;
            }
            text = t;
            rc = core_chat_format(m, &cm, 1, true, text, need + 1, &need);
        }
        if (rc) {
            fprintf(stderr, "edgegate-run: chat template: %s\n", core_strerror(rc));
            goto out;
        }
        prompt = text;
    }
    if ((rc = run_tokenize(m, prompt, o->chat, &toks, &n))) {
        fprintf(stderr, "edgegate-run: tokenize: %s\n", core_strerror(rc));
        goto out;
    }
    double t0 = run_now();
    if ((rc = core_prefill(m, toks, n, msg, sizeof msg))) {
        fprintf(stderr, "edgegate-run: %s: %s\n", core_strerror(rc), msg);
        goto out;
    }
    double t1 = run_now();
    core_gen_params gp = {.max_tokens = o->n_predict, .sampling = o->samp};
    core_gen_result res;
    if ((rc = core_generate(m, &gp, run_print_token, NULL, &res, msg, sizeof msg))) {
        fprintf(stderr, "\nedgegate-run: %s: %s\n", core_strerror(rc), msg);
        goto out;
    }
    double t2 = run_now();
    static const char *const finish[] = {"stop", "length", "abort"};
    fprintf(stderr, "\n[prompt %zu tokens, %.1f tok/s; generated %zu tokens, %.1f tok/s; finish %s]\n", n,
            n / (t1 - t0), res.n_tokens, res.n_tokens > 1 ? (res.n_tokens - 1) / (t2 - t1) : 0.0,
            finish[res.finish]);
out:
    free(text);
    free(toks);
    return rc ? 1 : 0;
}

/* ---- --bench ---- */

typedef struct {
    const uint64_t *buf;
    size_t n;
    uint64_t sum;
} run_bw_arg;

static void *run_bw_thread(void *v)
{
    run_bw_arg *a = v;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->buf[i];
        s1 += a->buf[i + 1];
        s2 += a->buf[i + 2];
        s3 += a->buf[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static int run_cmp_double(const void *a, const void *b);

/* Read bandwidth of n_threads threads streaming a buffer far larger than the
 * caches; the median of several passes, in bytes per second (the machine is
 * shared: a best pass would flatter the bound that decode is measured by). */
static double run_bandwidth(int n_threads)
{
    size_t bytes = (size_t)1 << 30, words = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf)
        return 0;
    for (size_t i = 0; i < words; i++)
        buf[i] = i;
    enum { PASSES = 7 };
    double bws[PASSES];
    pthread_t th[64];
    run_bw_arg args[64];
    if (n_threads > 64)
        n_threads = 64;
    for (int pass = 0; pass < PASSES; pass++) {
        double t0 = run_now();
        for (int i = 0; i < n_threads; i++) {
            args[i] = (run_bw_arg){buf + words / n_threads * i, words / n_threads, 0};
            pthread_create(&th[i], NULL, run_bw_thread, &args[i]);
        }
        for (int i = 0; i < n_threads; i++)
            pthread_join(th[i], NULL);
        bws[pass] = bytes / (run_now() - t0);
    }
    free(buf);
    qsort(bws, PASSES, sizeof *bws, run_cmp_double);
    return bws[PASSES / 2];
}

static int run_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_bench(core_model *m)
{
    enum { PP = 128, TG = 64, REPS = 3 };
    core_info info;
    core_get_info(m, &info);
    char msg[512] = "";
    int32_t toks[PP];
    /* a fixed pseudo-random prompt: same work on every run */
    uint32_t x = 12345;
    for (int i = 0; i < PP; i++) {
        x = x * 1664525u + 1013904223u;
        toks[i] = (int32_t)((x >> 8) % (uint32_t)info.n_vocab);
    }
    double pp[REPS], tg[REPS];
    for (int r = 0; r < REPS; r++) {
        core_reset(m);
        double t0 = run_now();
        int rc = core_prefill(m, toks, PP, msg, sizeof msg);
        double t1 = run_now();
        for (int i = 0; i < TG && !rc; i++)
            rc = core_prefill(m, &toks[i], 1, msg, sizeof msg);
        double t2 = run_now();
        if (rc) {
            fprintf(stderr, "edgegate-run: %s: %s\n", core_strerror(rc), msg);
            return 1;
        }
        pp[r] = PP / (t1 - t0);
        tg[r] = TG / (t2 - t1);
    }
    qsort(pp, REPS, sizeof *pp, run_cmp_double);
    qsort(tg, REPS, sizeof *tg, run_cmp_double);
    double bw = run_bandwidth(info.n_threads);
    printf("{\"model\":\"%s\",\"type\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"params\":%lld,"
           "\"prefill_tokens\":%d,\"prefill_tok_s\":%.1f,\"decode_tokens\":%d,\"decode_tok_s\":%.2f,"
           "\"weight_bytes_per_token\":%zu,\"read_bandwidth_gb_s\":%.2f,\"decode_bound_tok_s\":%.2f,"
           "\"decode_of_bound\":%.3f}\n",
           info.name, info.ftype, info.isa, info.n_threads, (long long)info.n_params, PP, pp[REPS / 2],
           TG, tg[REPS / 2], info.weight_bytes, bw / 1e9, bw / info.weight_bytes,
           tg[REPS / 2] / (bw / info.weight_bytes));
    return 0;
}

/* ---- --detect: the JSON of POST /v1/vision/detect ---- */

static void run_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* int32 n_heads; per head int32 c, h, w and float32 [c][h][w] */
static int run_dump_heads(const det_model *m, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int32_t n = 0, shape[3];
    const float *d;
    while (!det_head_output(m, n, &d, &shape[0], &shape[1], &shape[2]))
        n++;
    int bad = fwrite(&n, 4, 1, f) != 1;
    for (int i = 0; i < n && !bad; i++) {
        det_head_output(m, i, &d, &shape[0], &shape[1], &shape[2]);
        size_t cnt = (size_t)shape[0] * shape[1] * shape[2];
        bad = fwrite(shape, 4, 3, f) != 3 || fwrite(d, 4, cnt, f) != cnt;
    }
    return fclose(f) || bad ? -1 : 0;
}

static int run_detect(const run_opts *o, char **args, int n_args)
{
    if (n_args != 2) {
        run_usage(stderr);
        return 2;
    }
    char msg[512] = "";
    char *data = NULL;
    size_t len = 0;
    img im = {0};
    det_model *m = NULL;
    det_box *boxes = NULL;
    int rc;
    det_params p = det_default_params();
    p.cfg_path = o->detect_cfg;
    p.weights_path = args[0];
    p.names_path = o->names;
    p.n_threads = o->n_threads;
    p.isa = o->isa;
    if ((rc = det_load(&p, &m, msg, sizeof msg))) {
        fprintf(stderr, "edgegate-run: %s: %s\n", core_strerror(rc), msg);
        goto out;
    }
    if (run_read_file(args[1], &data, &len)) {
        fprintf(stderr, "edgegate-run: %s: %s\n", args[1], strerror(errno));
        rc = CORE_EIO;
        goto out;
    }
    img_limits lim = img_default_limits();
    double t0 = run_now();
    if ((rc = img_decode(data, len, &lim, &im, msg, sizeof msg))) {
        fprintf(stderr, "edgegate-run: %s: %s: %s\n", args[1], core_strerror(rc), msg);
        goto out;
    }
    double t1 = run_now();
    det_opts dop = det_default_opts();
    if (o->confidence >= 0)
        dop.confidence = o->confidence;
    if (o->iou >= 0)
        dop.iou = o->iou;
    size_t n = 0, cap = (size_t)dop.max_detections;
    if (!(boxes = malloc(cap * sizeof *boxes))) {
        rc = CORE_ENOMEM;
        goto out;
    }
    if ((rc = det_run(m, im.rgb, im.w, im.h, &dop, boxes, cap, &n, msg, sizeof msg))) {
        fprintf(stderr, "edgegate-run: %s: %s\n", core_strerror(rc), msg);
        goto out;
    }
    double t2 = run_now();
    if (o->dump_heads && run_dump_heads(m, o->dump_heads)) {
        fprintf(stderr, "edgegate-run: %s: %s\n", o->dump_heads, strerror(errno));
        rc = CORE_EIO;
        goto out;
    }
    det_info info;
    det_get_info(m, &info);
    /* the model's name: the cfg's file name without directory and extension */
    const char *base = strrchr(o->detect_cfg, '/');
    base = base ? base + 1 : o->detect_cfg;
    const char *dot = strrchr(base, '.');
    char name[256];
    snprintf(name, sizeof name, "%.*s", dot && dot > base ? (int)(dot - base) : (int)strlen(base), base);
    printf("{\"model\":");
    run_json_str(name);
    printf(",\"width\":%d,\"height\":%d,\"detections\":[", im.w, im.h);
    for (size_t i = 0; i < n; i++) {
        printf("%s{\"class_id\":%d,\"label\":", i ? "," : "", boxes[i].class_id);
        run_json_str(info.labels[boxes[i].class_id]);
        printf(",\"confidence\":%.4f,\"box\":{\"x\":%.1f,\"y\":%.1f,\"w\":%.1f,\"h\":%.1f}}",
               boxes[i].confidence, boxes[i].x, boxes[i].y, boxes[i].w, boxes[i].h);
    }
    printf("],\"timing\":{\"decode_ms\":%.2f,\"inference_ms\":%.2f,\"queue_ms\":0}}\n", (t1 - t0) * 1e3,
           (t2 - t1) * 1e3);
out:
    free(boxes);
    img_free(&im);
    free(data);
    det_free(m);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    run_opts o = {.n_predict = 64, .samp = core_default_sampling(), .confidence = -1, .iou = -1};
    enum { O_TEMP = 256, O_SEED, O_CHAT, O_DUMP, O_TOKT, O_BENCH, O_CTX, O_ISA, O_TOPK, O_TOPP, O_MINP,
           O_REP, O_TMPL, O_DETECT, O_NAMES, O_CONF, O_IOU, O_DUMPH };
    static const struct option lo[] = {
        {"temp", 1, 0, O_TEMP}, {"seed", 1, 0, O_SEED}, {"chat", 0, 0, O_CHAT},
        {"dump-logits", 1, 0, O_DUMP}, {"tokenize-tests", 1, 0, O_TOKT}, {"bench", 0, 0, O_BENCH},
        {"ctx", 1, 0, O_CTX}, {"isa", 1, 0, O_ISA}, {"top-k", 1, 0, O_TOPK}, {"top-p", 1, 0, O_TOPP},
        {"min-p", 1, 0, O_MINP}, {"repeat-penalty", 1, 0, O_REP}, {"chat-template", 1, 0, O_TMPL},
        {"detect", 1, 0, O_DETECT}, {"names", 1, 0, O_NAMES}, {"confidence", 1, 0, O_CONF},
        {"iou", 1, 0, O_IOU}, {"dump-heads", 1, 0, O_DUMPH}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:t:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'p': o.prompt = optarg; break;
        case 'n': o.n_predict = atoi(optarg); break;
        case 't': o.n_threads = atoi(optarg); break;
        case O_TEMP: o.samp.temperature = strtof(optarg, NULL); break;
        case O_SEED: o.samp.seed = strtoull(optarg, NULL, 10); break;
        case O_CHAT: o.chat = 1; break;
        case O_DUMP: o.dump = optarg; break;
        case O_TOKT: o.tok_tests = optarg; break;
        case O_BENCH: o.bench = 1; break;
        case O_CTX: o.n_ctx = atoi(optarg); break;
        case O_ISA: o.isa = optarg; break;
        case O_TOPK: o.samp.top_k = atoi(optarg); break;
        case O_TOPP: o.samp.top_p = strtof(optarg, NULL); break;
        case O_MINP: o.samp.min_p = strtof(optarg, NULL); break;
        case O_REP: o.samp.repeat_penalty = strtof(optarg, NULL); break;
        case O_TMPL: o.chat_template = optarg; break;
        case O_DETECT: o.detect_cfg = optarg; break;
        case O_NAMES: o.names = optarg; break;
        case O_CONF: o.confidence = strtof(optarg, NULL); break;
        case O_IOU: o.iou = strtof(optarg, NULL); break;
        case O_DUMPH: o.dump_heads = optarg; break;
        case 'h': run_usage(stdout); return 0;
        default: run_usage(stderr); return 2;
        }
    }
    if (o.detect_cfg)
        return run_detect(&o, argv + optind, argc - optind);
    if (!o.model || (!o.prompt && !o.tok_tests && !o.bench) || o.n_predict <= 0) {
        run_usage(stderr);
        return 2;
    }
    if (o.tok_tests)
        return run_tokenize_tests(&o);
    core_params p = core_default_params();
    p.path = o.model;
    p.n_threads = o.n_threads;
    p.n_ctx = o.n_ctx;
    p.isa = o.isa;
    p.chat_template = o.chat_template;
    char msg[512] = "";
    core_model *m;
    int rc = core_load(&p, &m, msg, sizeof msg);
    if (rc) {
        fprintf(stderr, "edgegate-run: %s: %s\n", core_strerror(rc), msg);
        return 1;
    }
    rc = o.bench ? run_bench(m) : o.dump ? run_dump_logits(&o, m) : run_generate(&o, m);
    core_free(m);
    return rc;
}
