/* json.h: a JSON document tree built in an arena, with yajl as the lexer.
 *
 * Why not yajl_tree: it mallocs every node, frees recursively (a deeply
 * nested body would overflow the stack) and rejects invalid UTF-8 without
 * saying where. Here nesting is capped, nodes live in the request arena, and
 * strings arrive unvalidated with their length, so the request parser can
 * name the field that holds bad UTF-8 or a NUL byte.
 *
 * Ownership: every node and string belongs to the arena given to
 * json_parse() and lives until its next reset.
 */
#ifndef JSON_H
#define JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "sbuf.h"

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    const char *key; /* member name when the parent is an object (NUL-terminated) */
    size_t key_len;
    json_value *next; /* next sibling */
    union {
        bool b;
        struct {
            double d;
            int64_t i;
            bool is_int; /* written without fraction/exponent and fits int64 */
        } num;
        struct {
            const char *s; /* NUL-terminated; may also hold NULs (see len) */
            size_t len;
        } str;
        struct {
            json_value *first, *last;
            size_t n;
        } kids; /* arrays and objects */
    } u;
};

#define JSON_MAX_DEPTH 32

/* Parses exactly one JSON value from buf. On failure returns CORE_EFORMAT
 * with a short reason and the byte offset in msg, or CORE_ENOMEM. */
int json_parse(arena *a, const char *buf, size_t len, json_value **out, char *msg,
               size_t msg_size);

/* First member named key, or NULL (also when obj is not an object). */
json_value *json_get(const json_value *obj, const char *key);
const char *json_type_name(json_type t);

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
bool json_utf8_valid(const char *s, size_t len);

/* Appends s as a quoted JSON string; invalid UTF-8 bytes become U+FFFD. */
int json_put_str(sbuf *b, const char *s, size_t len);

#endif
