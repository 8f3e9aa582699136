#include "core_err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const core_err_names[CORE_ERR_COUNT] = {
    [CORE_OK] = "ok",
    [CORE_ENOMEM] = "out of memory",
    [CORE_EIO] = "i/o error",
    [CORE_EFORMAT] = "malformed input",
    [CORE_EUNSUPPORTED] = "unsupported",
    [CORE_ENOTFOUND] = "not found",
    [CORE_EINVAL] = "invalid argument",
    [CORE_ECONTEXT] = "prompt exceeds the context",
    [CORE_EABORTED] = "aborted",
};

const char *core_strerror(int err)
{
    if (err < 0 || err >= CORE_ERR_COUNT || !core_err_names[err])
        return "unknown error";
    return core_err_names[err];
}

int core_errf(int err, char *msg, size_t msg_size, const char *fmt, ...)
{
    if (msg && msg_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
