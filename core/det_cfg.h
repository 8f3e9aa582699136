/* det_cfg.h: darknet .cfg files, parsed into sections of key=value options.
 *
 * The syntax is darknet's: one item a line; all whitespace inside a line is
 * dropped ("anchors = 10,14,  23,27" is "anchors=10,14,23,27"); lines that
 * are empty or start with '#' or ';' are comments; "[type]" opens a section;
 * "key=value" (split at the first '=') adds an option to the current
 * section. Anything else, or an option before the first section, is
 * CORE_EFORMAT naming the line. What the options mean is det_net.c's job.
 *
 * Ownership: det_cfg_parse() fills *out with memory freed by det_cfg_free()
 * (which resets it; a zeroed det_cfg is safe to free). The text is copied.
 */
#ifndef DET_CFG_H
#define DET_CFG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *key, *val;
    int line;
    bool used; /* set by the getters: an option nobody read is reported */
} det_cfg_opt;

typedef struct {
    const char *type; /* between the brackets: "convolutional" */
    int line;
    det_cfg_opt *opts;
    int n_opts;
} det_cfg_sect;

typedef struct {
    det_cfg_sect *sects;
    int n_sects;
    char *text;
    det_cfg_opt *opt_store;
} det_cfg;

/* CORE_EFORMAT (syntax, msg "line N: ..."), CORE_EINVAL (over 4 MiB), CORE_ENOMEM. */
int det_cfg_parse(const char *text, size_t len, det_cfg *out, char *msg, size_t msg_size);
void det_cfg_free(det_cfg *c);

/* Getters: *val keeps def when the key is absent. CORE_EFORMAT when the
 * value is not a number (msg names the line and key). A key given twice:
 * the last one wins, as in darknet's option lists. */
int det_cfg_int(det_cfg_sect *s, const char *key, int def, int *val, char *msg, size_t msg_size);
int det_cfg_float(det_cfg_sect *s, const char *key, float def, float *val, char *msg, size_t msg_size);
/* NULL when absent. */
const char *det_cfg_str(det_cfg_sect *s, const char *key);
/* A comma-separated list of numbers: allocates *vals (caller frees), *n its
 * length; *vals = NULL, *n = 0 when absent. CORE_EFORMAT on a bad item. */
int det_cfg_floats(det_cfg_sect *s, const char *key, float **vals, int *n, char *msg, size_t msg_size);
int det_cfg_ints(det_cfg_sect *s, const char *key, int **vals, int *n, char *msg, size_t msg_size);

#endif
