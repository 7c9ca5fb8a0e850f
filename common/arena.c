/* arena.c -- bump allocator for per-request cJSON work (see arena.h).
 * Chunks are malloc'd and owned by the arena; the current arena is a
 * thread-local pointer, so threads never share one. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define CHUNK 65536
#define FIRST_CHUNK 8192 /* most requests fit; malloc recycles it from its bins */

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	size_t bytes;
	uintptr_t lo, hi; /* address window covering every chunk */
};

static _Thread_local struct arena *current;

struct arena *arena_new(void)
{
	return calloc(1, sizeof(struct arena));
}

void arena_free(struct arena *a)
{
	if (!a)
		return;
	for (struct chunk *c = a->head, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	if (current == a)
		current = NULL;
	free(a);
}

static void cover(struct arena *a, const struct chunk *c)
{
	uintptr_t lo = (uintptr_t)c->data, hi = lo + c->cap;
	if (!a->lo || lo < a->lo)
		a->lo = lo;
	if (hi > a->hi)
		a->hi = hi;
}

void *arena_alloc(struct arena *a, size_t n)
{
	n = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
	struct chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > CHUNK / 4 ? n : c ? CHUNK : FIRST_CHUNK;
		struct chunk *nc = malloc(sizeof *nc + cap);
		if (!nc)
			return NULL;
		nc->used = 0;
		nc->cap = cap;
		cover(a, nc);
		if (c && n > CHUNK / 4) {
			/* a big block gets its own chunk behind the current one */
			nc->next = c->next;
			c->next = nc;
			a->bytes += cap;
			nc->used = n;
			return nc->data;
		}
		nc->next = c;
		a->head = nc;
		a->bytes += cap;
		c = nc;
	}
	void *p = (char *)c->data + c->used;
	c->used += n;
	return p;
}

size_t arena_bytes(const struct arena *a)
{
	return a ? a->bytes : 0;
}

struct arena *arena_enter(struct arena *a)
{
	struct arena *prev = current;
	current = a;
	return prev;
}

/* O(1): inside the window spanned by the chunks. A heap block that cJSON
 * allocated before the arena was entered and that lies inside the window
 * would be leaked, never double-freed; code inside an arena only frees
 * cJSON memory it allocated there. */
static int owns(const struct arena *a, const void *p)
{
	return (uintptr_t)p >= a->lo && (uintptr_t)p < a->hi;
}

static void *hook_malloc(size_t n)
{
	return current ? arena_alloc(current, n) : malloc(n);
}

static void hook_free(void *p)
{
	if (!p || (current && owns(current, p)))
		return;
	free(p);
}

void arena_install_cjson_hooks(void)
{
	cJSON_Hooks h = {.malloc_fn = hook_malloc, .free_fn = hook_free};
	cJSON_InitHooks(&h);
}
