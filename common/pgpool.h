/* pgpool.h -- a small pool of libpq connections shared by threads: a mutex
 * guards the idle list; a connection is used by one thread at a time between
 * pgpool_get() and pgpool_put(). Connections open lazily, run a session setup
 * (e.g. SET statement_timeout) once, and are dropped when broken. After a
 * failed connect the pool answers "down" at once for a short backoff instead
 * of making every caller wait on PostgreSQL. */
#ifndef PGPOOL_H
#define PGPOOL_H

#include <stddef.h>

#include <libpq-fe.h>

#include "pgconn.h"

struct pgpool;

/* `size` connections at most; `setup_sql` (may be NULL) runs after each
 * connect; `app_name` becomes application_name; `auth` (may be NULL; the
 * pool keeps copies) adds the password and TLS settings (see pgconn.h).
 * connect_timeout defaults to 3 s unless conninfo sets one. NULL on out of
 * memory. */
struct pgpool *pgpool_new(const char *conninfo, const struct pg_auth *auth, int size,
                          const char *setup_sql, const char *app_name);
void pgpool_free(struct pgpool *p); /* closes idle connections; NULL is a no-op */

/* An idle or new connection. Waits up to wait_ms for one to be returned when
 * all `size` are in use. NULL with err filled when PostgreSQL cannot be
 * reached (or was unreachable less than the backoff ago) or on timeout. */
PGconn *pgpool_get(struct pgpool *p, long wait_ms, char *err, size_t errlen);

/* Give a connection back. A broken connection, or one left inside a
 * transaction, is closed instead of kept. */
void pgpool_put(struct pgpool *p, PGconn *c);

/* Close a connection obtained from pgpool_get without keeping it. */
void pgpool_discard(struct pgpool *p, PGconn *c);

#endif
