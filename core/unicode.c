/* unicode.c: code point classes, case and decomposition lookups, UTF-8 and
 * the GPT-2 byte alphabet. See unicode.h. */
#include "unicode.h"

unsigned uni_flags(uint32_t cp)
{
    if (cp >= UNI_MAX_CP)
        return UNI_UNDEFINED;
    /* Largest range start <= cp; entry 0 starts at 0. */
    size_t lo = 0, hi = uni_n_flag_ranges;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (uni_flag_ranges[mid].start <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return uni_flag_ranges[lo].flags;
}

static uint32_t uni_map(const uni_pair *tab, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tab[mid].from < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && tab[lo].from == cp ? tab[lo].to : cp;
}

uint32_t uni_tolower(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return uni_map(uni_lower, uni_lower_n, cp);
}

uint32_t uni_nfd_first(uint32_t cp)
{
    return cp < 0xC0 ? cp : uni_map(uni_nfd, uni_nfd_n, cp);
}

uint32_t uni_decode(const char *str, size_t len, size_t *off)
{
    const unsigned char *s = (const unsigned char *)str + *off;
    size_t left = len - *off;
    unsigned c = s[0];
    if (c < 0x80) {
        *off += 1;
        return c;
    }
    size_t n = (c & 0x40) == 0 ? 0 : (c & 0x20) == 0 ? 2 : (c & 0x10) == 0 ? 3 : (c & 0x08) == 0 ? 4 : 0;
    if (n == 0 || n > left)
        goto bad;
    uint32_t cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto bad;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    *off += n;
    return cp;
bad:
    *off += 1;
    return 0xFFFD;
}

size_t uni_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= UNI_MAX_CP)
        cp = 0xFFFD;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int uni_byte_is_self(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t uni_byte_to_cp(unsigned char b)
{
    if (uni_byte_is_self(b))
        return b;
    /* n-th byte (in byte order) outside the self-mapped set -> 0x100 + n. */
    unsigned n = b <= 0x20 ? b : b <= 0xA0 ? 33 + (b - 0x7F) : 33 + 34;
    return 0x100 + n;
}

int uni_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return uni_byte_is_self(cp) ? (int)cp : -1;
    if (cp < 0x100 + 33)
        return (int)(cp - 0x100);
    if (cp < 0x100 + 33 + 34)
        return (int)(cp - 0x100 - 33 + 0x7F);
    if (cp == 0x100 + 67)
        return 0xAD;
    return -1;
}
