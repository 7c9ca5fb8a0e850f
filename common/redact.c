/* redact.c -- secret redaction (see redact.h). One left-to-right pass over
 * the text: at every word start a few detectors look for a known token
 * prefix (sk-ant-, ghp_, AKIA...), a PEM private key block, a URL with a
 * password, an Authorization value, or an identifier naming a secret
 * followed by = or : and a value. The output is built lazily: text with no
 * secret costs one scan and no allocation. E-mail addresses (when on) are
 * found at their '@'. Configured regular expressions run afterwards, one
 * regexec pass each, never inside an earlier marker. The configuration is
 * installed once (redact_use) and only read afterwards.
 *
 * Sections: helpers, key names, detectors, configuration, the scan, cJSON
 * walk. */
#include "redact.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "met.h"

/* ---------- helpers ---------- */

struct hit {
	size_t start, end; /* replaced span */
	int kind;          /* enum redact_kind or a pattern's index */
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

/* A cheap first look (one pass, no copies): every name ident_is_secret or
 * redact_key_is_secret accepts contains one of these words. Most keys
 * (session_id, command, file_path ...) stop here. */
static int maybe_secret_name(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i] | 0x20) {
		case 'p':
			if (starts_ci(s, n, i, "pass") || starts_ci(s, n, i, "pwd"))
				return 1;
			break;
		case 's':
			if (starts_ci(s, n, i, "secret"))
				return 1;
			break;
		case 't':
			if (starts_ci(s, n, i, "token"))
				return 1;
			break;
		case 'k':
			if (starts_ci(s, n, i, "key"))
				return 1;
			break;
		case 'c':
			if (starts_ci(s, n, i, "credential") || starts_ci(s, n, i, "cookie"))
				return 1;
			break;
		case 'a':
			if (starts_ci(s, n, i, "authorization"))
				return 1;
			break;
		}
	}
	return 0;
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
	if (len == 0 || len > 96 || !maybe_secret_name(id, len))
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
	size_t n = key ? strlen(key) : 0;
	if (!maybe_secret_name(key, n))
		return 0;
	if (strcasecmp(key, "authorization") == 0 || strcasecmp(key, "proxy-authorization") == 0 ||
	    strcasecmp(key, "cookie") == 0 || strcasecmp(key, "set-cookie") == 0)
		return 1;
	return ident_is_secret(key, n, NULL);
}

/* ---------- detectors ---------- */

/* A prefix, then at least `min` characters of class `ok` (the whole run is
 * the secret). `need_mixed`: the run must hold a digit and a letter. */
static int prefixed(const char *s, size_t n, size_t i, const char *prefix, size_t min,
                    int (*ok)(unsigned char), int need_mixed, int kind, struct hit *h)
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
		return prefixed(s, n, i, "sk-ant-", 20, is_tok, 1, RK_ANTHROPIC_KEY, h) ||
		       prefixed(s, n, i, "sk-", 20, is_tok, 1, RK_OPENAI_KEY, h) ||
		       prefixed(s, n, i, "sk_live_", 16, alnum_c, 0, RK_STRIPE_KEY, h) ||
		       prefixed(s, n, i, "sk_test_", 16, alnum_c, 0, RK_STRIPE_KEY, h);
	case 'r':
		return prefixed(s, n, i, "rk_live_", 16, alnum_c, 0, RK_STRIPE_KEY, h) ||
		       prefixed(s, n, i, "rk_test_", 16, alnum_c, 0, RK_STRIPE_KEY, h);
	case 'g':
		return prefixed(s, n, i, "ghp_", 30, alnum_c, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "gho_", 30, alnum_c, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "ghu_", 30, alnum_c, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "ghs_", 30, alnum_c, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "ghr_", 30, alnum_c, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "github_pat_", 20, is_word, 0, RK_GITHUB_TOKEN, h) ||
		       prefixed(s, n, i, "glpat-", 20, is_tok, 0, RK_GITLAB_TOKEN, h);
	case 'x':
		if (starts(s, n, i, "xox") && i + 4 < n && strchr("abposr", s[i + 3]) && s[i + 4] == '-') {
			size_t e = run(s, n, i + 5, is_tok);
			if (e - (i + 5) >= 10) {
				*h = (struct hit){i, e, RK_SLACK_TOKEN};
				return 1;
			}
		}
		return 0;
	case 'A':
		if (starts(s, n, i, "AKIA") || starts(s, n, i, "ASIA") || starts(s, n, i, "ABIA") ||
		    starts(s, n, i, "ACCA")) {
			size_t e = run(s, n, i + 4, upper_digit);
			if (e - (i + 4) == 16 && (e == n || !isalnum((unsigned char)s[e]))) {
				*h = (struct hit){i, e, RK_AWS_ACCESS_KEY};
				return 1;
			}
		}
		return prefixed(s, n, i, "AIza", 30, is_tok, 0, RK_GOOGLE_API_KEY, h);
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
		*h = (struct hit){i, c, RK_JWT};
		return 1;
	}
	case 'n':
		return prefixed(s, n, i, "npm_", 36, alnum_c, 0, RK_NPM_TOKEN, h);
	case 'h':
		return prefixed(s, n, i, "hf_", 30, alnum_c, 0, RK_HUGGINGFACE_TOKEN, h);
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
	*h = (struct hit){i, e, RK_PRIVATE_KEY};
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
	*h = (struct hit){colon + 1, at, RK_URL_PASSWORD};
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
	*h = (struct hit){b, e, RK_BEARER_TOKEN};
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
	*h = (struct hit){j, e, RK_AUTHORIZATION};
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
	int kind = aws ? RK_AWS_SECRET_KEY : RK_SECRET;
	if (detect_token(s, ve, vb, &t) && t.end == ve)
		kind = t.kind;
	*h = (struct hit){vb, ve, kind};
	return 1;
}

/* user@example.org (with e-mail redaction on), found at its '@': the local
 * part back to `floor` (the end of the last replacement), a domain with at
 * least one dot and a top-level label of 2+ letters. */
static int email_local(unsigned char c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static int detect_email(const char *s, size_t n, size_t at, size_t floor, struct hit *h)
{
	size_t a = at;
	while (a > floor && at - a < 64 && email_local((unsigned char)s[a - 1]))
		a--;
	if (a == at || s[a] == '.')
		return 0;
	size_t j = at + 1, label = 0, last_dot = 0;
	while (j < n && j - at < 255) {
		unsigned char c = (unsigned char)s[j];
		if (isalnum(c) || c == '-') {
			label++;
		} else if (c == '.' && label > 0 && j + 1 < n && isalnum((unsigned char)s[j + 1])) {
			last_dot = j;
			label = 0;
		} else {
			break;
		}
		j++;
	}
	if (!last_dot || j - last_dot - 1 < 2)
		return 0;
	for (size_t k = last_dot + 1; k < j; k++)
		if (!isalpha((unsigned char)s[k]))
			return 0;
	*h = (struct hit){a, j, RK_EMAIL};
	return 1;
}

/* ---------- configuration ---------- */

static const char *const kind_names[RK_BUILTIN] = {
	"anthropic_key", "openai_key", "stripe_key", "github_token", "gitlab_token",
	"slack_token", "aws_access_key", "aws_secret_key", "google_api_key", "jwt",
	"npm_token", "huggingface_token", "private_key", "url_password", "bearer_token",
	"authorization", "secret", "email"};

/* Installed by redact_use() before threads start; NULL: built-in defaults. */
static const struct redact_conf *active;

static int kind_on(int k)
{
	return active ? active->on[k] : k != RK_EMAIL;
}

void redact_conf_init(struct redact_conf *rc)
{
	memset(rc, 0, sizeof *rc);
	for (int k = 0; k < RK_BUILTIN; k++)
		rc->on[k] = k != RK_EMAIL;
}

void redact_conf_clear(struct redact_conf *rc)
{
	if (!rc)
		return;
	for (size_t i = 0; i < rc->npat; i++)
		regfree(&rc->pat[i].re);
	redact_conf_init(rc);
}

void redact_use(const struct redact_conf *rc)
{
	active = rc;
}

int redact_kind_of(const struct redact_conf *rc, const char *name)
{
	for (int k = 0; k < RK_BUILTIN; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	for (size_t i = 0; rc && i < rc->npat; i++)
		if (strcmp(name, rc->pat[i].name) == 0)
			return RK_BUILTIN + (int)i;
	return -1;
}

const char *redact_kind_name(const struct redact_conf *rc, int kind)
{
	if (kind >= 0 && kind < RK_BUILTIN)
		return kind_names[kind];
	if (rc && kind >= RK_BUILTIN && (size_t)(kind - RK_BUILTIN) < rc->npat)
		return rc->pat[kind - RK_BUILTIN].name;
	return "secret";
}

int redact_conf_set(struct redact_conf *rc, const char *kind, int on, char *err, size_t errlen)
{
	int k = redact_kind_of(NULL, kind);
	if (k < 0) {
		char list[400];
		size_t off = 0;
		for (int i = 0; i < RK_BUILTIN && off < sizeof list; i++)
			off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", kind_names[i]);
		snprintf(err, errlen, "unknown kind \"%.40s\" (built-in kinds: %s)", kind, list);
		return -1;
	}
	rc->on[k] = on != 0;
	return 0;
}

int redact_conf_add_pattern(struct redact_conf *rc, const char *name, const char *regex,
                            int icase, char *err, size_t errlen)
{
	size_t n = strlen(name);
	if (n == 0 || n > REDACT_MAX_NAME || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != n) {
		snprintf(err, errlen, "pattern \"%.40s\": name must be 1-%d of a-z, 0-9, _", name,
		         REDACT_MAX_NAME);
		return -1;
	}
	if (redact_kind_of(rc, name) >= 0) {
		snprintf(err, errlen, "pattern \"%s\": name already used by %s", name,
		         redact_kind_of(NULL, name) >= 0 ? "a built-in kind" : "another pattern");
		return -1;
	}
	if (rc->npat == REDACT_MAX_PATTERNS) {
		snprintf(err, errlen, "pattern \"%s\": more than %d patterns", name, REDACT_MAX_PATTERNS);
		return -1;
	}
	struct redact_pattern *p = &rc->pat[rc->npat];
	int rcode = regcomp(&p->re, regex, REG_EXTENDED | (icase ? REG_ICASE : 0));
	if (rcode) {
		char why[160];
		regerror(rcode, &p->re, why, sizeof why);
		snprintf(err, errlen, "pattern \"%s\": invalid regular expression /%.80s/: %s", name, regex, why);
		return -1;
	}
	regmatch_t m;
	if (regexec(&p->re, "", 1, &m, 0) == 0) {
		regfree(&p->re);
		snprintf(err, errlen, "pattern \"%s\": /%.80s/ matches the empty string", name, regex);
		return -1;
	}
	snprintf(p->name, sizeof p->name, "%s", name);
	rc->on[RK_BUILTIN + rc->npat] = 1;
	rc->npat++;
	return 0;
}

void redact_conf_metrics(struct redact_conf *rc, struct met_family *fam)
{
	for (int k = 0; k < RK_BUILTIN + (int)rc->npat; k++)
		rc->counter[k] = fam && rc->on[k] ? met_series(fam, redact_kind_name(rc, k)) : NULL;
}

static void counted(const struct redact_conf *rc, int kind)
{
	if (rc && rc->counter[kind])
		met_inc(rc->counter[kind], 1);
}

/* ---------- the scan ---------- */

static int detect(const char *s, size_t n, size_t i, struct hit *h)
{
	unsigned char c = (unsigned char)s[i];
	if (c == '-')
		return detect_pem(s, n, i, h) && kind_on(h->kind);
	if (!isalpha(c) && c != '_')
		return 0;
	if ((detect_token(s, n, i, h) && kind_on(h->kind)) || (detect_url(s, n, i, h) && kind_on(h->kind)) ||
	    (detect_bearer(s, n, i, h) && kind_on(h->kind)) || (detect_authz(s, n, i, h) && kind_on(h->kind)))
		return 1;
	if (!detect_keyval(s, n, i, h))
		return 0;
	if (!kind_on(h->kind)) /* a token kind turned off: still a secret by its key name */
		h->kind = RK_SECRET;
	return kind_on(h->kind);
}

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

static void put_marker(struct out *o, const struct redact_conf *rc, int kind)
{
	char tag[16 + REDACT_MAX_NAME];
	int tl = snprintf(tag, sizeof tag, "[REDACTED:%s]", redact_kind_name(rc, kind));
	put(o, tag, (size_t)tl);
	counted(rc, kind);
}

/* The text after the last replacement; NULL when nothing was replaced (or
 * out of memory: the caller then keeps the original). */
static char *finish(struct out *o, const char *rest, size_t n, size_t *outlen)
{
	if (!o->p && !o->oom)
		return NULL;
	put(o, rest, n);
	if (o->oom) {
		free(o->p);
		return NULL;
	}
	*outlen = o->len;
	return o->p;
}

/* The built-in detectors: NULL when nothing was found. */
static char *scan(const struct redact_conf *rc, const char *s, size_t n, size_t *outlen, int *found)
{
	struct out o = {0};
	size_t last = 0, i = 0;
	int email = rc && rc->on[RK_EMAIL];
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		struct hit h;
		int got;
		if (c == '@')
			got = email && detect_email(s, n, i, last, &h);
		else if ((c != '-' && !isalpha(c) && c != '_') || (i > 0 && is_word((unsigned char)s[i - 1])))
			got = 0;
		else
			got = detect(s, n, i, &h);
		if (!got) {
			i++;
			continue;
		}
		put(&o, s + last, h.start - last);
		put_marker(&o, rc, h.kind);
		last = h.end;
		i = h.end > i ? h.end : i + 1;
		(*found)++;
	}
	return finish(&o, s + last, n - last, outlen);
}

/* One configured pattern over [s, s+n), never inside a "[REDACTED:...]"
 * marker: NULL when it did not match. */
static char *scan_pattern(const struct redact_conf *rc, size_t pi, const char *s, size_t n,
                          size_t *outlen, int *found)
{
	struct out o = {0};
	size_t last = 0, pos = 0;
	int kind = RK_BUILTIN + (int)pi;
	while (pos < n) {
		const char *m = memmem(s + pos, n - pos, "[REDACTED:", 10);
		size_t seg_end = m ? (size_t)(m - s) : n, from = pos;
		while (from < seg_end) {
			regmatch_t rm = {.rm_so = (regoff_t)from, .rm_eo = (regoff_t)seg_end};
			int fl = REG_STARTEND | (from > 0 ? REG_NOTBOL : 0) | (seg_end < n ? REG_NOTEOL : 0);
			if (regexec(&rc->pat[pi].re, s, 1, &rm, fl) != 0)
				break;
			size_t a = (size_t)rm.rm_so, b = (size_t)rm.rm_eo;
			if (b <= a) {
				from = a + 1;
				continue;
			}
			put(&o, s + last, a - last);
			put_marker(&o, rc, kind);
			last = from = b;
			(*found)++;
		}
		if (!m)
			break;
		const char *close = memchr(m, ']', n - (size_t)(m - s));
		pos = close ? (size_t)(close - s) + 1 : n;
	}
	return finish(&o, s + last, n - last, outlen);
}

/* `terminated`: s[n] is a NUL the regex pass may rely on (cJSON strings);
 * otherwise a configured pattern first gets a terminated copy (regexec and
 * sanitizers read up to the NUL whatever REG_STARTEND says). */
static char *redact_text(const char *s, size_t n, int terminated, size_t *outlen, int *count)
{
	const struct redact_conf *rc = active;
	int found = 0;
	size_t len = 0;
	char *r = scan(rc, s, n, &len, &found), *copy = NULL;
	if (rc && rc->npat && !r && !terminated) {
		copy = malloc(n + 1);
		if (!copy)
			return NULL;
		memcpy(copy, s, n);
		copy[n] = 0;
		s = copy;
	}
	for (size_t pi = 0; rc && pi < rc->npat; pi++) {
		size_t l2;
		char *r2 = scan_pattern(rc, pi, r ? r : s, r ? len : n, &l2, &found);
		if (r2) {
			free(r);
			r = r2;
			len = l2;
		}
	}
	free(copy);
	if (!r)
		return NULL;
	if (count)
		*count += found;
	if (outlen)
		*outlen = len;
	return r;
}

char *redact_buf(const char *s, size_t n, size_t *outlen, int *count)
{
	return redact_text(s, n, 0, outlen, count);
}

/* ---------- cJSON walk ---------- */

static int is_envelope(const char *k)
{
	if (!strchr("ietrs", k[0]))
		return 0;
	return !strcmp(k, "id") || !strcmp(k, "event_type") || !strcmp(k, "timestamp") ||
	       !strcmp(k, "received_at") || !strcmp(k, "status");
}

/* skip_envelope: leave this object's envelope members alone (not nested ones). */
static int walk(cJSON *node, int depth, int skip_envelope)
{
	int n = 0;
	if (depth > 64)
		return 0;
	for (cJSON *it = node->child; it; it = it->next) {
		if (skip_envelope && it->string && is_envelope(it->string))
			continue;
		if (cJSON_IsString(it) && it->valuestring) {
			if (node->type == cJSON_Object && it->string && *it->valuestring && kind_on(RK_SECRET) &&
			    redact_key_is_secret(it->string) &&
			    strncmp(it->valuestring, "[REDACTED", 9) != 0) {
				if (cJSON_SetValuestring(it, "[REDACTED:secret]")) {
					n++;
					counted(active, RK_SECRET);
				}
				continue;
			}
			size_t len;
			char *r = redact_text(it->valuestring, strlen(it->valuestring), 1, &len, &n);
			if (r) {
				cJSON_SetValuestring(it, r);
				free(r);
			}
		} else if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
			n += walk(it, depth + 1, 0);
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
		char *r = redact_text(node->valuestring, strlen(node->valuestring), 1, &len, &n);
		if (r) {
			cJSON_SetValuestring(node, r);
			free(r);
		}
		return n;
	}
	return walk(node, 0, 0);
}

int redact_event(cJSON *ev)
{
	if (!cJSON_IsObject(ev))
		return redact_json(ev);
	return walk(ev, 0, 1);
}
