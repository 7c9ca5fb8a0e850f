/* buf.c -- growable NUL-terminated byte buffer (see buf.h). Doubles its
 * capacity from 64 bytes; owns nothing but b->p. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

int buf_put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int buf_put_line(struct buf *b, const char *s, size_t n)
{
	size_t old = b->len;
	if (buf_put(b, s, n) || buf_put(b, "\n", 1)) {
		b->len = old;
		if (b->p)
			b->p[old] = '\0';
		return -1;
	}
	return 0;
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
