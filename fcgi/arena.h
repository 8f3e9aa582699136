/* arena.h: a bump allocator for everything one request needs.
 *
 * The worker owns one arena and calls arena_reset() after every request, so
 * a request can allocate freely (parsed JSON, prompt text, token ids) and
 * nothing leaks across requests. Memory from arena_alloc() lives until the
 * next arena_reset() or arena_free(); it is never freed one piece at a time.
 */
#ifndef ARENA_H
#define ARENA_H

#include <stddef.h>

typedef struct arena arena;

/* block_size: bytes kept between requests (0: 64 KiB). NULL when out of memory. */
arena *arena_new(size_t block_size);
void arena_free(arena *a); /* NULL is a no-op */

/* 16-byte aligned, uninitialized; NULL when out of memory or n overflows. */
void *arena_alloc(arena *a, size_t n);
void *arena_calloc(arena *a, size_t count, size_t size);
/* Copies n bytes and appends a NUL. */
char *arena_strndup(arena *a, const char *s, size_t n);

/* Forgets every allocation; keeps the first block for the next request. */
void arena_reset(arena *a);
/* Bytes handed out since the last reset (for logs and tests). */
size_t arena_used(const arena *a);

#endif
