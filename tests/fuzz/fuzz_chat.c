/* fuzz_chat: template detection over arbitrary template bytes, and
 * rendering of arbitrary conversations in every family.
 *
 * Input: byte 0 = flags (bit 0: generation prompt; bits 1-7: a small
 * capacity for the truncation check), then NUL-separated fields: the
 * template, then messages whose first byte picks the role (0 system,
 * 1 user, 2 assistant, 3 an invalid "tool") and whose rest is the content.
 *
 * Checks: detection stays in range; a size query, a full rendering and a
 * truncated one agree (length, NUL, prefix); invalid roles fail cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define FUZZ_MAX_MSGS 16

static void fuzz_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    char *copy = malloc(size); /* NUL-terminated fields */
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    size_t n_bytes = size - 1;

    /* The template: everything up to the first NUL. */
    size_t tlen = strnlen(copy, n_bytes);
    int fam = chat_detect(copy, tlen);
    fuzz_check(fam >= -1 && fam < CHAT_FAMILY_COUNT);
    int byname = chat_family_from_name(copy);
    fuzz_check(byname >= -1 && byname < CHAT_FAMILY_COUNT);
    if (byname >= 0)
        fuzz_check(chat_detect(copy, tlen) == byname);
    /* Detection over the whole buffer, NULs included. */
    int whole = chat_detect(copy, n_bytes);
    fuzz_check(whole >= -1 && whole < CHAT_FAMILY_COUNT);

    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    core_chat_msg msgs[FUZZ_MAX_MSGS];
    size_t n = 0;
    bool bad_role = false;
    size_t pos = tlen + 1;
    while (pos < n_bytes && n < FUZZ_MAX_MSGS) {
        size_t flen = strnlen(copy + pos, n_bytes - pos);
        int r = flen ? (uint8_t)copy[pos] % 4 : 1;
        bad_role |= r == 3;
        msgs[n].role = roles[r];
        msgs[n].content = flen ? copy + pos + 1 : copy + pos;
        n++;
        pos += flen + 1;
    }

    bool gen = flags & 1;
    size_t small = flags >> 1;
    for (int f = -1; f <= CHAT_FAMILY_COUNT; f++) {
        size_t need = 1;
        int rc = chat_format(f, msgs, n, gen, NULL, 0, &need);
        if (f < 0 || f == CHAT_FAMILY_COUNT || bad_role) {
            fuzz_check(rc == CORE_EINVAL && need == 0);
            continue;
        }
        fuzz_check(rc == CORE_EINVAL);
        char *buf = malloc(need + 1);
        if (!buf)
            break;
        size_t len = 0;
        fuzz_check(chat_format(f, msgs, n, gen, buf, need + 1, &len) == 0);
        fuzz_check(len == need && strlen(buf) == len);
        if (small) {
            char *tb = malloc(small);
            if (tb) {
                size_t tl = 0;
                rc = chat_format(f, msgs, n, gen, tb, small, &tl);
                fuzz_check(tl == len);
                fuzz_check(rc == (len < small ? 0 : CORE_EINVAL));
                size_t kept = len < small ? len : small - 1;
                fuzz_check(strlen(tb) == kept && memcmp(tb, buf, kept) == 0);
                free(tb);
            }
        }
        free(buf);
    }
    free(copy);
    return 0;
}
