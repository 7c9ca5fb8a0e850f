/* mask.h -- hide secrets in text bound for logs and error messages: the
 * password of a URL and of a libpq connection string. Pure functions that
 * write into the caller's buffer (always NUL-terminated, truncated to fit);
 * safe on any thread. */
#ifndef MASK_H
#define MASK_H

#include <stddef.h>

#define MASK_HIDDEN "***"

/* "https://user:pw@host/p?token=x" -> "https://user:***@host/p?token=***":
 * the password of the userinfo, and the values of query parameters that
 * name a secret (password, passwd, pass, token, secret, key, api_key,
 * access_token, auth). Text that is not a URL is copied unchanged. */
void mask_url(const char *in, char *out, size_t outlen);

/* A libpq connection string, either "key=value ..." (values may be
 * single-quoted) or a postgres:// / postgresql:// URI: the password (and
 * sslpassword) values become ***. */
void mask_conninfo(const char *in, char *out, size_t outlen);

#endif
