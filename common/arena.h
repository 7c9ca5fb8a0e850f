/* arena.h -- a bump allocator for short-lived cJSON work. While an arena is
 * current on a thread (arena_enter), cJSON allocations on that thread come
 * from it and cJSON frees of its memory are no-ops; arena_free releases it
 * all at once. Outside an arena cJSON uses malloc/free as usual, so plain
 * free() of a cJSON string stays correct there. One arena, one thread at a time. */
#ifndef ARENA_H
#define ARENA_H

#include <stddef.h>

struct arena;

/* Route cJSON's allocator through the arena hooks; call once at start-up. */
void arena_install_cjson_hooks(void);

struct arena *arena_new(void);
void arena_free(struct arena *a); /* NULL is a no-op */
void *arena_alloc(struct arena *a, size_t n);
/* Make `a` current on this thread (NULL: none); returns the previous one. */
struct arena *arena_enter(struct arena *a);
size_t arena_bytes(const struct arena *a);

#endif
