/* cfg.h: the pool's configuration (libconfig), loaded and validated whole.
 *
 * Every problem is reported as "FILE:LINE: what is wrong" (the line of the
 * offending setting, or of the parse error); unknown settings are errors, so
 * a typo never silently falls back to a default. Relative paths are resolved
 * against the directory of the config file.
 *
 * Ownership: cfg_load() returns a cfg the caller frees with cfg_free(); all
 * strings in it are owned by it. A loaded cfg is read-only.
 */
#ifndef CFG_H
#define CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "elog.h"

#define CFG_MAX_WORKERS 64
#define CFG_MAX_MODELS 8
#define CFG_MAX_VISION 8
#define CFG_STATUS_SUFFIX ".status" /* the status socket: socket path + this */

typedef struct {
    char *id;            /* the name requests use in "model" */
    char *path;          /* absolute GGUF path */
    char *chat_template; /* NULL: detect from the model ("auto") */
    int threads;         /* 0: one per online CPU */
    int n_ctx;           /* 0: the model's own */
} cfg_model;

/* vision = ( { ... } ): detectors of POST /v1/vision/detect (detect.h). */
typedef struct {
    char *id;      /* the name requests use in "model"; unique among all models */
    char *cfg;     /* absolute darknet .cfg path */
    char *weights; /* absolute .weights path */
    char *names;   /* absolute class names path; NULL: "class N" */
    int threads;   /* 0: one per online CPU */
} cfg_vision;

/* images = { ... }: limits on images sent to vision endpoints (image.h). */
typedef struct {
    long long max_bytes;  /* encoded image bytes (after base64 decoding) */
    int max_width, max_height;
    long long max_pixels; /* width x height */
} cfg_images;

typedef struct {
    char *id;           /* EDGEGATE_CLIENT value */
    int max_tokens_cap; /* replaces limits.max_tokens_cap for this client */
    long long tokens_per_day, tokens_per_month; /* -1: the default tier; 0: no limit */
} cfg_client;

/* npu = { ... }: the arbiter (npu.h). */
typedef struct {
    char *lock_file;  /* absolute; default: beside the socket, npu.lock */
    int classes;      /* 1..NPU_MAX_CLASSES; 0 is served first */
    int chat_class;   /* class of /v1/chat/completions */
    int short_class;  /* class of short jobs (vision, QA, embeddings) */
    int max_waiters, max_wait_ms;
    int slice_tokens, slice_ms, reap_ms;
} cfg_npu;

/* cache = { ... }: the response cache (cache.h). */
typedef struct {
    bool enabled;
    char *path;       /* absolute; default: beside the socket, cache.mdb */
    long long map_size_mb, max_kb; /* max_kb 0: half the map */
    long long ttl_s;  /* 0: never expire */
    bool shared;      /* true: the client id is not part of the key */
    int reader_check_s;
} cfg_cache;

/* budgets = { ... }: token budgets (budget.h). */
typedef struct {
    bool enabled;
    char *path;       /* absolute; default: beside the socket, budgets.mdb */
    long long map_size_mb;
    bool sync;
    long long tokens_per_day, tokens_per_month; /* default tier; 0: no limit */
    bool charge_cache_hits;
} cfg_budgets;

/* kb = { ... }: the knowledge base (kb.h). */
typedef struct {
    bool enabled;
    char *path;                 /* absolute; default: beside the socket, kb.mdb */
    long long map_size_mb;
    long long chunk_bytes, overlap_bytes;
    long long max_document_bytes;
    char *embedding_model;      /* embedding model id; NULL: BM25 only */
} cfg_kb;

/* qa = { ... }: POST /v1/qa (qa.h). */
typedef struct {
    char *model;            /* chat model for answers; NULL: models[0] */
    int top_k;              /* chunks retrieved when a request names none (1..20) */
    double min_score;       /* best BM25 score below: "not in the knowledge base" */
    int max_question_bytes; /* longer questions are a 400 */
    int max_tokens;         /* answer tokens when a request names none */
} cfg_qa;

typedef struct {
    long max_body_bytes;
    int default_max_tokens; /* when a request names none */
    int max_tokens_cap;     /* upper bound on any request's max_tokens */
    int deadline_ms;        /* generation deadline per request; 0: none */
    int max_messages;
} cfg_limits;

typedef struct {
    char *file;         /* the config file as given */
    char *socket;       /* absolute path of the FastCGI unix socket */
    char *status_socket; /* socket + ".status": GET /health, /v1/models and
                          * /metrics over kept-alive connections (worker.c) */
    char *socket_group; /* NULL: leave the group alone */
    gid_t socket_gid;
    unsigned socket_mode;
    char *pid_file; /* NULL: none */
    char *log_file; /* NULL: stderr */
    elog_level log_level;
    int workers;
    int shutdown_timeout_ms;
    cfg_model *models; /* models[0] is the default */
    size_t n_models;
    cfg_limits limits;
    cfg_client *clients;
    size_t n_clients;
    cfg_npu npu;
    cfg_cache cache;
    cfg_budgets budgets;
    cfg_kb kb;
    cfg_qa qa;
    cfg_vision *vision; /* may be empty */
    size_t n_vision;
    cfg_images images;
} cfg;

int cfg_load(const char *path, cfg **out, char *msg, size_t msg_size);
/* Same from text; name is used in messages, base_dir for relative paths. */
int cfg_parse_string(const char *text, const char *name, const char *base_dir, cfg **out,
                     char *msg, size_t msg_size);
void cfg_free(cfg *c); /* NULL is a no-op */

const cfg_model *cfg_find_model(const cfg *c, const char *id);
/* The max_tokens cap for a client id (NULL or unknown: the global cap). */
int cfg_client_cap(const cfg *c, const char *client);

#endif
