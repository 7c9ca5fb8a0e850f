/* pgconn.h -- open a libpq connection from a connection string plus the
 * secrets and TLS settings kept out of it (password, sslmode, sslrootcert
 * from configuration). Any thread; the caller owns the returned PGconn. */
#ifndef PGCONN_H
#define PGCONN_H

#include <stddef.h>

#include <libpq-fe.h>

/* Settings that override the connection string when non-empty (NULL or ""
 * leaves the string's value, or libpq's default / PG* environment). */
struct pg_auth {
	const char *password;
	const char *sslmode;     /* disable | allow | prefer | require | verify-ca | verify-full */
	const char *sslrootcert; /* CA file for verify-ca / verify-full */
};

/* Connect (blocking). `connect_timeout` and `app_name` are defaults the
 * connection string may override. NULL with err filled (one line, no
 * secrets) on failure. */
PGconn *pg_connect(const char *conninfo, const struct pg_auth *auth, const char *app_name,
                   const char *connect_timeout, char *err, size_t errlen);

/* 0 when `mode` is "" or a libpq sslmode; else -1 with err naming `setting`. */
int pg_sslmode_check(const char *setting, const char *mode, char *err, size_t errlen);

#endif
