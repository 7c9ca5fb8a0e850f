/* buf.h -- a growable byte buffer, always NUL-terminated after its contents.
 * The caller owns b->p (free() it, or buf_free). Not thread-safe. */
#ifndef BUF_H
#define BUF_H

#include <stddef.h>

struct buf {
	char *p;
	size_t len, cap;
};

/* Append n bytes of s; 0 / -1 when out of memory (the buffer is unchanged). */
int buf_put(struct buf *b, const char *s, size_t n);
/* Append s then one '\n' (an NDJSON line). */
int buf_put_line(struct buf *b, const char *s, size_t n);
void buf_free(struct buf *b); /* NULL is a no-op; safe twice */

#endif
