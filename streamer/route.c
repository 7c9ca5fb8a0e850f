/* route.c -- which clients an event can concern, without asking every
 * client's filter. A client whose filter has a positive clause on session
 * or agent with exact values ("session:a|b") is filed under each of those
 * values; every other client (the match-all filter included) is in the scan
 * list, offered every event. The candidates are a superset of the matches:
 * the caller still runs flt_match. With 1,000 clients each watching one
 * session, an event meets its session's watchers and the scan list instead
 * of 1,000 filters.
 * Memory: the index owns its entries; items are the caller's pointers, and
 * the caller must remove an item with the very filter it was added with.
 * Thread: whoever owns the clients (each shard's service thread has an
 * index of its own). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamer.h"

struct route_ent {
	struct route_ent *next;
	enum flt_key key;
	struct route_list items;
	size_t len;
	char val[];
};

struct route {
	struct route_ent **tab;
	size_t nb, nent; /* buckets (a power of two), entries */
	struct route_list scan;
};

struct route *route_new(void)
{
	struct route *r = calloc(1, sizeof *r);
	if (r && !(r->tab = calloc(r->nb = 64, sizeof *r->tab))) {
		free(r);
		r = NULL;
	}
	return r;
}

void route_free(struct route *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nb; i++) {
		while (r->tab[i]) {
			struct route_ent *e = r->tab[i];
			r->tab[i] = e->next;
			free(e->items.v);
			free(e);
		}
	}
	free(r->tab);
	free(r->scan.v);
	free(r);
}

static uint64_t hash(enum flt_key key, const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)key;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* The clause a filter is filed under, or -1: scan it for every event. */
static int index_clause(const struct filter *f)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct flt_clause *c = &f->c[i];
		if (c->neg || (c->key != FK_SESSION && c->key != FK_AGENT) || c->n == 0)
			continue;
		size_t k = 0;
		while (k < c->n && !c->v[k].prefix)
			k++;
		if (k == c->n)
			return (int)i;
	}
	return -1;
}

static struct route_ent **slot(struct route *r, enum flt_key key, const char *s, size_t len)
{
	struct route_ent **p = &r->tab[hash(key, s, len) & (r->nb - 1)];
	while (*p && !((*p)->key == key && (*p)->len == len && memcmp((*p)->val, s, len) == 0))
		p = &(*p)->next;
	return p;
}

static int grow(struct route *r)
{
	size_t nb = r->nb * 2;
	struct route_ent **tab = calloc(nb, sizeof *tab);
	if (!tab)
		return -1;
	for (size_t i = 0; i < r->nb; i++) {
		while (r->tab[i]) {
			struct route_ent *e = r->tab[i];
			r->tab[i] = e->next;
			struct route_ent **p = &tab[hash(e->key, e->val, e->len) & (nb - 1)];
			e->next = *p;
			*p = e;
		}
	}
	free(r->tab);
	r->tab = tab;
	r->nb = nb;
	return 0;
}

static int list_add(struct route_list *l, void *item)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		void **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = item;
	return 0;
}

static void list_remove(struct route_list *l, void *item)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i] == item) {
			l->v[i] = l->v[--l->n];
			return;
		}
	}
}

static void remove_value(struct route *r, void *item, enum flt_key key, const struct flt_value *v)
{
	struct route_ent **p = slot(r, key, v->s, v->len), *e = *p;
	if (!e)
		return;
	list_remove(&e->items, item);
	if (e->items.n == 0) {
		*p = e->next;
		free(e->items.v);
		free(e);
		r->nent--;
	}
}

void route_remove(struct route *r, void *item, const struct filter *f)
{
	int ci = index_clause(f);
	if (ci < 0) {
		list_remove(&r->scan, item);
		return;
	}
	const struct flt_clause *c = &f->c[ci];
	for (size_t k = 0; k < c->n; k++)
		remove_value(r, item, c->key, &c->v[k]);
}

int route_add(struct route *r, void *item, const struct filter *f)
{
	int ci = index_clause(f);
	if (ci < 0)
		return list_add(&r->scan, item);
	const struct flt_clause *c = &f->c[ci];
	for (size_t k = 0; k < c->n; k++) {
		const struct flt_value *v = &c->v[k];
		struct route_ent **p = slot(r, c->key, v->s, v->len), *e = *p;
		if (e) {
			size_t i = 0;
			while (i < e->items.n && e->items.v[i] != item)
				i++;
			if (i < e->items.n)
				continue; /* the same value twice: "session:a|a" */
		} else {
			if (r->nent >= r->nb && grow(r) == 0)
				p = slot(r, c->key, v->s, v->len);
			e = calloc(1, sizeof *e + v->len + 1);
			if (!e)
				goto fail;
			e->key = c->key;
			e->len = v->len;
			memcpy(e->val, v->s, v->len);
			*p = e;
			r->nent++;
		}
		if (list_add(&e->items, item)) {
			if (e->items.n == 0) {
				*slot(r, c->key, v->s, v->len) = e->next;
				free(e);
				r->nent--;
			}
			goto fail;
		}
	}
	return 0;
fail:
	route_remove(r, item, f);
	return -1;
}

size_t route_lookup(const struct route *r, const struct flt_fields *ev, const struct route_list *out[3])
{
	static const enum flt_key keys[] = {FK_SESSION, FK_AGENT};
	size_t n = 0;
	if (r->scan.n)
		out[n++] = &r->scan;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		enum flt_key k = keys[i];
		if (!ev->v[k])
			continue;
		struct route_ent *e = *slot((struct route *)r, k, ev->v[k], ev->len[k]);
		if (e)
			out[n++] = &e->items;
	}
	return n;
}
