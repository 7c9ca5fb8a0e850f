/* redact.c -- secret redaction (see redact.h). One left-to-right pass over
 * the text: at every word start a few detectors look for a known token
 * prefix (sk-ant-, ghp_, AKIA...), a PEM private key block, a URL with a
 * password, an Authorization value, or an identifier naming a secret
 * followed by = or : and a value. The output is built lazily: text with no
 * secret costs one scan and no allocation.
 *
 * Sections: helpers, key names, detectors, the scan, cJSON walk. */
#include "redact.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------- helpers ---------- */

struct hit {
	size_t start, end; /* replaced span */
	const char *kind;
};

static int is_word(unsigned char c)
{
	return isalnum(c) || c == '_';
}

static int is_tok(unsigned char c) /* base64url-ish token characters */
{
	return isalnum(c) || c == '_' || c == '-';
}

static int starts(const char *s, size_t n, size_t i, const char *lit)
{
	size_t k = strlen(lit);
	return i + k <= n && memcmp(s + i, lit, k) == 0;
}

static int starts_ci(const char *s, size_t n, size_t i, const char *lit)
{
	size_t k = strlen(lit);
	return i + k <= n && strncasecmp(s + i, lit, k) == 0;
}

/* End of a run of characters accepted by `ok` from i. */
static size_t run(const char *s, size_t n, size_t i, int (*ok)(unsigned char))
{
	while (i < n && ok((unsigned char)s[i]))
		i++;
	return i;
}

static int alnum_c(unsigned char c)
{
	return isalnum(c);
}

static int upper_digit(unsigned char c)
{
	return isupper(c) || isdigit(c);
}

static int b64_c(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '/' || c == '=' || c == '-' || c == '_' || c == '.' ||
	       c == '~';
}

/* Random-looking: at least one digit and one letter. */
static int mixed(const char *s, size_t a, size_t b)
{
	int d = 0, l = 0;
	for (size_t i = a; i < b; i++) {
		d |= isdigit((unsigned char)s[i]) != 0;
		l |= isalpha((unsigned char)s[i]) != 0;
	}
	return d && l;
}

/* ---------- key names ---------- */

static int in_list(const char *w, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(w, *list) == 0)
			return 1;
	return 0;
}

static int ends_with(const char *w, const char *suf)
{
	size_t a = strlen(w), b = strlen(suf);
	return a >= b && strcmp(w + a - b, suf) == 0;
}

/* Split an identifier into lower-case segments at _ . - and camelCase
 * boundaries; then decide whether it names a secret. */
static int ident_is_secret(const char *id, size_t len, int *aws)
{
	static const char *const secret_seg[] = {
		"password", "passwd", "passphrase", "pwd", "pass", "secret", "token", "apikey",
		"credential", "credentials", "privatekey", "accesstoken", "authtoken",
		"refreshtoken", "secretkey", "accesskey", "clientsecret", "sessiontoken", NULL};
	static const char *const key_prefix[] = {
		"api", "access", "private", "secret", "signing", "encryption", "master", "session",
		"client", "auth", "license", "ssh", "account", NULL};
	static const char *const not_last[] = {
		"length", "len", "count", "file", "path", "dir", "type", "name", "id", "url",
		"min", "max", "size", "env", "var", "policy", "hint", "prompt", "field", "label",
		"required", "enabled", "expires", "expiry", "expiration", "ttl", "timeout", "limit",
		"header", "endpoint", "usage", "budget", "format", "kind", "mode", "ref", NULL};
	static const char *const not_first[] = {"max", "min", "num", "n", "total", "input",
		"output", "cache", "is", "has", "use", "no", NULL};
	char seg[16][32];
	int nseg = 0, allcaps = 1, any_alpha = 0;
	size_t k = 0;
	if (len == 0 || len > 96)
		return 0;
	for (size_t i = 0; i <= len && nseg < 16; i++) {
		unsigned char c = i < len ? (unsigned char)id[i] : 0;
		int brk = c == 0 || c == '_' || c == '.' || c == '-';
		int camel = i > 0 && i < len && isupper(c) && islower((unsigned char)id[i - 1]);
		if (islower(c))
			allcaps = 0;
		if (isalpha(c))
			any_alpha = 1;
		if ((brk || camel) && k > 0) {
			seg[nseg][k] = 0;
			nseg++;
			k = 0;
		}
		if (brk || nseg >= 16)
			continue;
		if (k < sizeof seg[0] - 1)
			seg[nseg][k++] = (char)tolower(c);
	}
	if (nseg == 0 || !any_alpha)
		return 0;
	if (in_list(seg[nseg - 1], not_last) || (nseg > 1 && in_list(seg[0], not_first)))
		return 0;
	int hit = 0;
	for (int i = 0; i < nseg && !hit; i++) {
		const char *w = seg[i];
		if (in_list(w, secret_seg) || ends_with(w, "password") || ends_with(w, "token") ||
		    ends_with(w, "secret") || ends_with(w, "apikey"))
			hit = 1;
		else if (strcmp(w, "key") == 0 && i > 0 && in_list(seg[i - 1], key_prefix))
			hit = 1;
		else if (strcmp(w, "key") == 0 && i == nseg - 1 && i > 0 && allcaps)
			hit = 1; /* STRIPE_KEY=..., env-var style */
	}
	if (hit && aws) {
		int a = 0, s = 0;
		for (int i = 0; i < nseg; i++) {
			a |= strcmp(seg[i], "aws") == 0;
			s |= strcmp(seg[i], "secret") == 0;
		}
		*aws = a && s;
	}
	return hit;
}

int redact_key_is_secret(const char *key)
{
	if (!key)
		return 0;
	if (strcasecmp(key, "authorization") == 0 || strcasecmp(key, "proxy-authorization") == 0 ||
	    strcasecmp(key, "cookie") == 0 || strcasecmp(key, "set-cookie") == 0)
		return 1;
	return ident_is_secret(key, strlen(key), NULL);
}

/* ---------- detectors ---------- */

/* A prefix, then at least `min` characters of class `ok` (the whole run is
 * the secret). `need_mixed`: the run must hold a digit and a letter. */
static int prefixed(const char *s, size_t n, size_t i, const char *prefix, size_t min,
                    int (*ok)(unsigned char), int need_mixed, const char *kind, struct hit *h)
{
	if (!starts(s, n, i, prefix))
		return 0;
	size_t b = i + strlen(prefix), e = run(s, n, b, ok);
	if (e - b < min || (need_mixed && !mixed(s, b, e)))
		return 0;
	h->start = i;
	h->end = e;
	h->kind = kind;
	return 1;
}

/* Known token formats starting at i. */
static int detect_token(const char *s, size_t n, size_t i, struct hit *h)
{
	switch (s[i]) {
	case 's':
		return prefixed(s, n, i, "sk-ant-", 20, is_tok, 1, "anthropic_key", h) ||
		       prefixed(s, n, i, "sk-", 20, is_tok, 1, "openai_key", h) ||
		       prefixed(s, n, i, "sk_live_", 16, alnum_c, 0, "stripe_key", h) ||
		       prefixed(s, n, i, "sk_test_", 16, alnum_c, 0, "stripe_key", h);
	case 'r':
		return prefixed(s, n, i, "rk_live_", 16, alnum_c, 0, "stripe_key", h) ||
		       prefixed(s, n, i, "rk_test_", 16, alnum_c, 0, "stripe_key", h);
	case 'g':
		return prefixed(s, n, i, "ghp_", 30, alnum_c, 0, "github_token", h) ||
		       prefixed(s, n, i, "gho_", 30, alnum_c, 0, "github_token", h) ||
		       prefixed(s, n, i, "ghu_", 30, alnum_c, 0, "github_token", h) ||
		       prefixed(s, n, i, "ghs_", 30, alnum_c, 0, "github_token", h) ||
		       prefixed(s, n, i, "ghr_", 30, alnum_c, 0, "github_token", h) ||
		       prefixed(s, n, i, "github_pat_", 20, is_word, 0, "github_token", h) ||
		       prefixed(s, n, i, "glpat-", 20, is_tok, 0, "gitlab_token", h);
	case 'x':
		if (starts(s, n, i, "xox") && i + 4 < n && strchr("abposr", s[i + 3]) && s[i + 4] == '-') {
			size_t e = run(s, n, i + 5, is_tok);
			if (e - (i + 5) >= 10) {
				*h = (struct hit){i, e, "slack_token"};
				return 1;
			}
		}
		return 0;
	case 'A':
		if (starts(s, n, i, "AKIA") || starts(s, n, i, "ASIA") || starts(s, n, i, "ABIA") ||
		    starts(s, n, i, "ACCA")) {
			size_t e = run(s, n, i + 4, upper_digit);
			if (e - (i + 4) == 16 && (e == n || !isalnum((unsigned char)s[e]))) {
				*h = (struct hit){i, e, "aws_access_key"};
				return 1;
			}
		}
		return prefixed(s, n, i, "AIza", 30, is_tok, 0, "google_api_key", h);
	case 'e': {
		/* JWT: three base64url segments, the first two JSON objects ("eyJ") */
		if (!starts(s, n, i, "eyJ"))
			return 0;
		size_t a = run(s, n, i, is_tok);
		if (a - i < 10 || a >= n || s[a] != '.' || !starts(s, n, a + 1, "eyJ"))
			return 0;
		size_t b = run(s, n, a + 1, is_tok);
		if (b - a < 10 || b >= n || s[b] != '.')
			return 0;
		size_t c = run(s, n, b + 1, is_tok);
		if (c - b < 10)
			return 0;
		*h = (struct hit){i, c, "jwt"};
		return 1;
	}
	case 'n':
		return prefixed(s, n, i, "npm_", 36, alnum_c, 0, "npm_token", h);
	case 'h':
		return prefixed(s, n, i, "hf_", 30, alnum_c, 0, "huggingface_token", h);
	}
	return 0;
}

/* -----BEGIN ... PRIVATE KEY----- ... -----END ... ----- (the whole block). */
static int detect_pem(const char *s, size_t n, size_t i, struct hit *h)
{
	if (!starts(s, n, i, "-----BEGIN "))
		return 0;
	size_t j = i + 11, hdr_end = 0;
	for (; j + 5 <= n && j < i + 80; j++) {
		if (s[j] == '\n')
			return 0;
		if (memcmp(s + j, "-----", 5) == 0) {
			hdr_end = j;
			break;
		}
	}
	if (!hdr_end)
		return 0;
	const char *pk = memmem(s + i, hdr_end - i, "PRIVATE KEY", 11);
	if (!pk)
		return 0;
	const char *end = memmem(s + hdr_end + 5, n - hdr_end - 5, "-----END", 8);
	size_t e = n;
	if (end) {
		size_t k = (size_t)(end - s) + 8;
		const char *close = memmem(s + k, n - k < 80 ? n - k : 80, "-----", 5);
		e = close ? (size_t)(close - s) + 5 : n;
	}
	*h = (struct hit){i, e, "private_key"};
	return 1;
}

/* scheme://user:password@host -> the password. */
static int detect_url(const char *s, size_t n, size_t i, struct hit *h)
{
	if (!isalpha((unsigned char)s[i]))
		return 0;
	size_t j = i;
	while (j < n && j - i < 32 && (isalnum((unsigned char)s[j]) || s[j] == '+' || s[j] == '.' || s[j] == '-'))
		j++;
	if (!starts(s, n, j, "://"))
		return 0;
	size_t u = j + 3, at = 0, colon = 0;
	for (size_t k = u; k < n && k - u < 512; k++) {
		unsigned char c = (unsigned char)s[k];
		if (isspace(c) || c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c == '<' ||
		    c == '>' || c == '`' || c == '\\')
			break;
		if (c == '@')
			at = k;
	}
	if (!at)
		return 0;
	for (size_t k = u; k < at; k++)
		if (s[k] == ':') {
			colon = k;
			break;
		}
	if (!colon || at - colon < 2 || starts(s, n, colon + 1, "[REDACTED"))
		return 0;
	*h = (struct hit){colon + 1, at, "url_password"};
	return 1;
}

/* "Bearer <token>" (the token only). */
static int detect_bearer(const char *s, size_t n, size_t i, struct hit *h)
{
	if (!starts_ci(s, n, i, "bearer") || i + 6 >= n || (s[i + 6] != ' ' && s[i + 6] != '\t'))
		return 0;
	size_t b = i + 6;
	while (b < n && (s[b] == ' ' || s[b] == '\t'))
		b++;
	size_t e = run(s, n, b, b64_c);
	if (e - b < 8 || !mixed(s, b, e) || starts(s, n, b, "[REDACTED"))
		return 0;
	*h = (struct hit){b, e, "bearer_token"};
	return 1;
}

/* Authorization: <scheme> <credential> (the credential only). */
static int detect_authz(const char *s, size_t n, size_t i, struct hit *h)
{
	if (!starts_ci(s, n, i, "authorization"))
		return 0;
	size_t j = i + 13;
	if (j < n && (s[j] == '"' || s[j] == '\''))
		j++;
	while (j < n && (s[j] == ' ' || s[j] == '\t'))
		j++;
	if (j >= n || (s[j] != ':' && s[j] != '='))
		return 0;
	j++;
	while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '"' || s[j] == '\''))
		j++;
	static const char *const schemes[] = {"bearer", "basic", "token", "digest", "bot", NULL};
	for (const char *const *sc = schemes; *sc; sc++) {
		size_t k = strlen(*sc);
		if (starts_ci(s, n, j, *sc) && j + k < n && (s[j + k] == ' ' || s[j + k] == '\t')) {
			j += k;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			break;
		}
	}
	size_t e = j;
	while (e < n && !isspace((unsigned char)s[e]) && s[e] != '"' && s[e] != '\'' && s[e] != ',')
		e++;
	if (e - j < 4 || s[j] == '$' || starts(s, n, j, "[REDACTED"))
		return 0;
	*h = (struct hit){j, e, "authorization"};
	return 1;
}

static int is_ident_c(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '.' || c == '-';
}

/* IDENT = value, "ident": "value", ident: value, ident := value, ident => value
 * where IDENT names a secret: the value only. */
static int detect_keyval(const char *s, size_t n, size_t i, struct hit *h)
{
	static const char *const not_values[] = {"null", "none", "nil", "true", "false", "undefined",
		"string", "str", "number", "int", "bool", "boolean", "any", "unknown", "object",
		"optional", "required", "bytes", NULL};
	if (!isalpha((unsigned char)s[i]) && s[i] != '_')
		return 0;
	size_t e = run(s, n, i, is_ident_c);
	while (e > i && (s[e - 1] == '.' || s[e - 1] == '-'))
		e--;
	size_t j = e;
	int quoted_key = i > 0 && (s[i - 1] == '"' || s[i - 1] == '\'');
	if (quoted_key) {
		if (j < n && s[j] == '\\')
			j++;
		if (j < n && s[j] == s[i - 1])
			j++;
		else
			return 0;
	}
	while (j < n && (s[j] == ' ' || s[j] == '\t'))
		j++;
	int colon;
	if (starts(s, n, j, "=>") || starts(s, n, j, ":=")) {
		colon = 0;
		j += 2;
	} else if (j < n && s[j] == '=' && !starts(s, n, j, "==")) {
		colon = 0;
		j++;
	} else if (j < n && s[j] == ':' && !starts(s, n, j, "::") && !starts(s, n, j, "://")) {
		colon = 1;
		j++;
	} else {
		return 0;
	}
	int aws = 0;
	if (!ident_is_secret(s + i, e - i, &aws))
		return 0;
	while (j < n && (s[j] == ' ' || s[j] == '\t'))
		j++;
	size_t vb, ve;
	int quoted = 0;
	if (j < n && s[j] == '\\' && j + 1 < n && (s[j + 1] == '"' || s[j + 1] == '\''))
		j++;
	if (j < n && (s[j] == '"' || s[j] == '\'' || s[j] == '`')) {
		char q = s[j];
		vb = j + 1;
		ve = vb;
		while (ve < n && ve - vb < 4096 && s[ve] != q && s[ve] != '\n') {
			if (s[ve] == '\\' && ve + 1 < n && s[ve + 1] == q)
				break; /* an escaped quote ends an embedded JSON value */
			if (s[ve] == '\\' && ve + 1 < n)
				ve++;
			ve++;
		}
		if (ve >= n || (s[ve] != q && s[ve] != '\\'))
			return 0;
		quoted = 1;
	} else {
		vb = j;
		ve = j;
		while (ve < n && !isspace((unsigned char)s[ve]) && !strchr("\"'`;&|,)}]<>\\", s[ve]))
			ve++;
	}
	size_t vl = ve - vb;
	if (vl == 0 || s[vb] == '$' || s[vb] == '<' || s[vb] == '{' || s[vb] == '(' ||
	    s[vb] == '[' || s[vb] == '%')
		return 0;
	if (memchr(s + vb, '(', vl))
		return 0; /* a call, not a literal */
	char low[24];
	if (vl < sizeof low) {
		for (size_t k = 0; k < vl; k++)
			low[k] = (char)tolower((unsigned char)s[vb + k]);
		low[vl] = 0;
		if (in_list(low, not_values))
			return 0;
		if (vl == e - i && strncasecmp(s + vb, s + i, vl) == 0)
			return 0; /* token=token: passing a variable */
	}
	size_t digits = 0;
	for (size_t k = vb; k < ve; k++)
		digits += isdigit((unsigned char)s[k]) != 0;
	if (digits == vl && vl < 6)
		return 0;
	if (colon && !quoted && vl < 4)
		return 0;
	struct hit t;
	const char *kind = aws ? "aws_secret_key" : "secret";
	if (detect_token(s, ve, vb, &t) && t.end == ve)
		kind = t.kind;
	*h = (struct hit){vb, ve, kind};
	return 1;
}

static int detect(const char *s, size_t n, size_t i, struct hit *h)
{
	unsigned char c = (unsigned char)s[i];
	if (c == '-')
		return detect_pem(s, n, i, h);
	if (!isalpha(c) && c != '_')
		return 0;
	return detect_token(s, n, i, h) || detect_url(s, n, i, h) || detect_bearer(s, n, i, h) ||
	       detect_authz(s, n, i, h) || detect_keyval(s, n, i, h);
}

/* ---------- the scan ---------- */

struct out {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 256;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->oom = 1;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = 0;
}

char *redact_buf(const char *s, size_t n, size_t *outlen, int *count)
{
	struct out o = {0};
	size_t last = 0, i = 0;
	int found = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if ((c != '-' && !isalpha(c) && c != '_') || (i > 0 && is_word((unsigned char)s[i - 1]))) {
			i++;
			continue;
		}
		struct hit h;
		if (!detect(s, n, i, &h)) {
			i++;
			continue;
		}
		char tag[48];
		int tl = snprintf(tag, sizeof tag, "[REDACTED:%s]", h.kind);
		put(&o, s + last, h.start - last);
		put(&o, tag, (size_t)tl);
		last = h.end;
		i = h.end > i ? h.end : i + 1;
		found++;
	}
	if (!found)
		return NULL;
	put(&o, s + last, n - last);
	if (o.oom) {
		free(o.p);
		return NULL;
	}
	if (count)
		*count += found;
	if (outlen)
		*outlen = o.len;
	return o.p;
}

/* ---------- cJSON walk ---------- */

static int walk(cJSON *node, int depth)
{
	int n = 0;
	if (depth > 64)
		return 0;
	for (cJSON *it = node->child; it; it = it->next) {
		if (cJSON_IsString(it) && it->valuestring) {
			if (node->type == cJSON_Object && it->string && *it->valuestring &&
			    redact_key_is_secret(it->string) &&
			    strncmp(it->valuestring, "[REDACTED", 9) != 0) {
				if (cJSON_SetValuestring(it, "[REDACTED:secret]"))
					n++;
				continue;
			}
			size_t len;
			char *r = redact_buf(it->valuestring, strlen(it->valuestring), &len, &n);
			if (r) {
				cJSON_SetValuestring(it, r);
				free(r);
			}
		} else if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
			n += walk(it, depth + 1);
		}
	}
	return n;
}

int redact_json(cJSON *node)
{
	if (!node)
		return 0;
	if (cJSON_IsString(node) && node->valuestring) {
		int n = 0;
		size_t len;
		char *r = redact_buf(node->valuestring, strlen(node->valuestring), &len, &n);
		if (r) {
			cJSON_SetValuestring(node, r);
			free(r);
		}
		return n;
	}
	return walk(node, 0);
}
