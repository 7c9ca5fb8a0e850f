/* mask.c -- secret masking for logs (see mask.h). Pure: reads `in`, writes
 * the caller's `out`; no allocation, any thread. */
#include "mask.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Bounded appender: keeps out NUL-terminated, drops what does not fit. */
struct sink {
	char *p;
	size_t len, cap;
};

static void put(struct sink *s, const char *t, size_t n)
{
	if (s->cap == 0)
		return;
	size_t room = s->cap - 1 - s->len;
	if (n > room)
		n = room;
	memcpy(s->p + s->len, t, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void puts_(struct sink *s, const char *t)
{
	put(s, t, strlen(t));
}

static int secret_param(const char *k, size_t n)
{
	static const char *const names[] = {"password", "passwd", "pass", "pwd", "token", "secret", "key",
	                                    "api_key", "apikey", "access_token", "auth", "sslpassword", NULL};
	for (const char *const *p = names; *p; p++)
		if (strlen(*p) == n && strncasecmp(k, *p, n) == 0)
			return 1;
	return 0;
}

/* The query (after '?', up to '#') with secret values replaced. */
static void mask_query(struct sink *s, const char *q, const char *end)
{
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(stop - q));
		if (eq && secret_param(q, (size_t)(eq - q))) {
			put(s, q, (size_t)(eq + 1 - q));
			puts_(s, MASK_HIDDEN);
		} else {
			put(s, q, (size_t)(stop - q));
		}
		if (amp)
			put(s, "&", 1);
		q = amp ? amp + 1 : end;
	}
}

void mask_url(const char *in, char *out, size_t outlen)
{
	struct sink s = {out, 0, outlen};
	if (outlen)
		out[0] = '\0';
	if (!in)
		return;
	const char *scheme_end = strstr(in, "://");
	if (!scheme_end) {
		puts_(&s, in);
		return;
	}
	const char *auth = scheme_end + 3;
	const char *auth_end = auth + strcspn(auth, "/?#");
	put(&s, in, (size_t)(auth - in));
	/* userinfo ends at the last '@' of the authority */
	const char *at = NULL;
	for (const char *p = auth; p < auth_end; p++)
		if (*p == '@')
			at = p;
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (colon) {
		put(&s, auth, (size_t)(colon + 1 - auth));
		puts_(&s, MASK_HIDDEN);
		put(&s, at, (size_t)(auth_end - at));
	} else {
		put(&s, auth, (size_t)(auth_end - auth));
	}
	const char *p = auth_end;
	const char *qm = strchr(p, '?');
	if (!qm) {
		puts_(&s, p);
		return;
	}
	put(&s, p, (size_t)(qm + 1 - p));
	const char *hash = strchr(qm, '#');
	const char *qend = hash ? hash : qm + strlen(qm);
	mask_query(&s, qm + 1, qend);
	puts_(&s, qend);
}

void mask_conninfo(const char *in, char *out, size_t outlen)
{
	struct sink s = {out, 0, outlen};
	if (outlen)
		out[0] = '\0';
	if (!in)
		return;
	if (strncmp(in, "postgres://", 11) == 0 || strncmp(in, "postgresql://", 13) == 0) {
		mask_url(in, out, outlen);
		return;
	}
	/* key = value pairs; a value is 'quoted' (\' and \\ escapes) or runs to
	 * the next space. Anything that does not parse is copied as it is. */
	const char *p = in;
	while (*p) {
		if (isspace((unsigned char)*p)) {
			put(&s, p++, 1);
			continue;
		}
		const char *k = p;
		while (*p && (isalnum((unsigned char)*p) || *p == '_'))
			p++;
		size_t klen = (size_t)(p - k);
		const char *q = p;
		while (isspace((unsigned char)*q))
			q++;
		if (klen == 0 || *q != '=') {
			put(&s, k, (size_t)(q - k) + (*q ? 1 : 0));
			p = *q ? q + 1 : q;
			continue;
		}
		q++;
		while (isspace((unsigned char)*q))
			q++;
		const char *v = q;
		if (*q == '\'') {
			q++;
			while (*q && *q != '\'') {
				if (*q == '\\' && q[1])
					q++;
				q++;
			}
			if (*q == '\'')
				q++;
		} else {
			while (*q && !isspace((unsigned char)*q))
				q++;
		}
		int secret = (klen == 8 && strncmp(k, "password", 8) == 0) ||
		             (klen == 11 && strncmp(k, "sslpassword", 11) == 0);
		put(&s, k, (size_t)(v - k));
		if (secret)
			puts_(&s, MASK_HIDDEN);
		else
			put(&s, v, (size_t)(q - v));
		p = q;
	}
}
