/* fuzz_config.c: libFuzzer harness for the config loader (libconfig text ->
 * validated cfg). Input: one config file's text. */
#define _GNU_SOURCE /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"

/* libconfig 1.5 leaks its string buffer on some syntax errors (an
 * unterminated string); that is not ours to fix, ours must still be clean. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Includes would read other files; the loader's own logic is the target. */
    if (size > 65536 || memmem(data, size, "@include", 8))
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cfg *c = NULL;
    char msg[512];
    if (cfg_parse_string(text, "fuzz.conf", "/nonexistent", &c, msg, sizeof(msg)) == 0) {
        cfg_client_cap(c, "alice");
        cfg_find_model(c, "demo");
    }
    cfg_free(c);
    free(text);
    return 0;
}
