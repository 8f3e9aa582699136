/* core_err.h: the one error enum of the inference core.
 *
 * Every core function that can fail returns one of these (0 = ok) and, where
 * a caller may show the reason to a person, also fills a message buffer
 * (char *msg, size_t msg_size; msg may be NULL). Messages name the thing that
 * is wrong ("tensor 'blk.3.attn_q.weight' extends past end of file").
 */
#ifndef CORE_ERR_H
#define CORE_ERR_H

#include <stddef.h>

typedef enum {
    CORE_OK = 0,
    CORE_ENOMEM,       /* allocation failed */
    CORE_EIO,          /* open/read/mmap failed (errno in the message) */
    CORE_EFORMAT,      /* malformed or truncated file / input */
    CORE_EUNSUPPORTED, /* well-formed but unsupported: type, architecture, tokenizer */
    CORE_ENOTFOUND,    /* a required key or tensor is missing */
    CORE_EINVAL,       /* bad argument from the caller */
    CORE_ECONTEXT,     /* the prompt does not fit in the context */
    CORE_EABORTED,     /* stopped by core_abort() or the token callback */
    CORE_ERR_COUNT
} core_err;

/* Static string; never NULL, also for unknown codes. */
const char *core_strerror(int err);

/* snprintf into msg when msg != NULL && size > 0; returns err, so that
 * `return core_errf(CORE_EFORMAT, msg, n, "bad %s", x);` reads naturally. */
int core_errf(int err, char *msg, size_t msg_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
