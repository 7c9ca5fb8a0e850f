/* seen.c -- the event ids the alerter evaluated lately, so that an event
 * that reaches the stream twice (a client retrying after a lost answer, a
 * hook re-sending its spool) is evaluated once: counted once, fired once.
 * Two generations of an open-addressing set of 128-bit id fingerprints; when
 * the current one holds SEEN_GEN ids it becomes the previous one and the old
 * previous one is cleared, so between SEEN_GEN and 2 x SEEN_GEN of the latest
 * ids are remembered in fixed memory. Owned by the caller; main thread only. */
#include <stdlib.h>
#include <string.h>

#include "alerter.h"

#define SLOTS (SEEN_GEN * 2) /* load factor at most 1/2 */

struct fp {
	uint64_t a, b; /* {0, 0}: empty */
};

struct seen {
	struct fp *gen[2]; /* [cur], [1 - cur] */
	size_t n;          /* ids in gen[cur] */
	int cur;
};

struct seen *seen_new(void)
{
	struct seen *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->gen[0] = calloc(SLOTS, sizeof(struct fp));
	s->gen[1] = calloc(SLOTS, sizeof(struct fp));
	if (!s->gen[0] || !s->gen[1]) {
		seen_free(s);
		return NULL;
	}
	return s;
}

void seen_free(struct seen *s)
{
	if (!s)
		return;
	free(s->gen[0]);
	free(s->gen[1]);
	free(s);
}

static struct fp fingerprint(const char *id)
{
	/* FNV-1a 64 and a second FNV-1a with another basis, finished with splitmix */
	uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		a = (a ^ *p) * 0x100000001b3ULL;
		b = (b ^ *p) * 0x100000001b3ULL;
		b ^= b >> 29;
	}
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdULL;
	a ^= a >> 33;
	struct fp f = {a, b};
	if (!f.a && !f.b)
		f.b = 1;
	return f;
}

/* The slot holding f, or the empty slot where it would go. */
static struct fp *slot(struct fp *t, struct fp f)
{
	size_t i = (size_t)(f.a & (SLOTS - 1));
	while (t[i].a || t[i].b) {
		if (t[i].a == f.a && t[i].b == f.b)
			return &t[i];
		i = (i + 1) & (SLOTS - 1);
	}
	return &t[i];
}

int seen_check_add(struct seen *s, const char *id)
{
	if (!s || !id || !*id)
		return 0;
	struct fp f = fingerprint(id);
	struct fp *c = slot(s->gen[s->cur], f);
	if (c->a || c->b)
		return 1;
	struct fp *p = slot(s->gen[1 - s->cur], f);
	if (p->a || p->b)
		return 1;
	if (s->n >= SEEN_GEN) {
		s->cur = 1 - s->cur;
		memset(s->gen[s->cur], 0, SLOTS * sizeof(struct fp));
		s->n = 0;
		c = slot(s->gen[s->cur], f);
	}
	*c = f;
	s->n++;
	return 0;
}
