/* pgconn.c -- libpq connect with configured secrets (see pgconn.h). Owns
 * nothing; the PGconn returned belongs to the caller. Any thread. */
#include "pgconn.h"

#include <stdio.h>
#include <string.h>

static const char *nz(const char *s)
{
	return s && *s ? s : NULL;
}

PGconn *pg_connect(const char *conninfo, const struct pg_auth *auth, const char *app_name,
                   const char *connect_timeout, char *err, size_t errlen)
{
	/* libpq uses the last non-empty value of a repeated keyword: the defaults
	 * come before the expanded conninfo ("dbname"), the configured secrets
	 * after it. NULL values are skipped. */
	const char *keys[] = {"connect_timeout", "application_name", "dbname", "password", "sslmode",
	                      "sslrootcert", NULL};
	const char *vals[] = {connect_timeout, app_name, conninfo ? conninfo : "",
	                      auth ? nz(auth->password) : NULL, auth ? nz(auth->sslmode) : NULL,
	                      auth ? nz(auth->sslrootcert) : NULL, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	if (!c) {
		snprintf(err, errlen, "postgres connect: out of memory");
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "postgres connect: %s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = '\0';
		PQfinish(c);
		return NULL;
	}
	return c;
}

int pg_sslmode_check(const char *setting, const char *mode, char *err, size_t errlen)
{
	static const char *const modes[] = {"disable", "allow", "prefer", "require", "verify-ca",
	                                    "verify-full", NULL};
	if (!mode || !*mode)
		return 0;
	for (const char *const *m = modes; *m; m++)
		if (strcmp(mode, *m) == 0)
			return 0;
	snprintf(err, errlen,
	         "%s: unknown sslmode \"%s\" (disable, allow, prefer, require, verify-ca, verify-full)",
	         setting, mode);
	return -1;
}
