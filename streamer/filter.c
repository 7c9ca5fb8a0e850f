/* filter.c -- parse and match the streamer's event filters (see filter.h for
 * the grammar). The parser makes one pass over the text; every string it
 * keeps is a malloc'd, unescaped copy owned by the filter. Matching is a few
 * memcmp per clause and allocates nothing, so the service thread can run it
 * for every client on every event. */
#include "filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name, *field;
} keys[FK_COUNT] = {
	[FK_SESSION] = {"session", "session_id"},
	[FK_AGENT] = {"agent", "agent_id"},
	[FK_PARENT] = {"parent", "parent_agent_id"},
	[FK_TYPE] = {"type", "event_type"},
	[FK_TOOL] = {"tool", "tool"},
	[FK_STATUS] = {"status", "status"},
	[FK_ROLE] = {"role", "agent_role"},
	[FK_APP] = {"app", "source_app"},
};

const char *flt_key_name(enum flt_key k)
{
	return k < FK_COUNT ? keys[k].name : "?";
}

const char *flt_key_field(enum flt_key k)
{
	return k < FK_COUNT ? keys[k].field : "?";
}

static void seterr(char *err, size_t len, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void seterr(char *err, size_t len, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;
	if (!err || !len)
		return;
	n = snprintf(err, len, "offset %zu: ", at);
	if (n < 0 || (size_t)n >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, len - (size_t)n, fmt, ap);
	va_end(ap);
}

void flt_free(struct filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++) {
		for (size_t j = 0; j < f->c[i].n; j++)
			free(f->c[i].v[j].s);
		free(f->c[i].v);
	}
	free(f->c);
	free(f->text);
	memset(f, 0, sizeof *f);
}

int flt_is_all(const struct filter *f)
{
	return f->n == 0;
}

/* ------------------------------------------------------------------------ */
/* Parsing */

struct parser {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static int at_end(const struct parser *p)
{
	return p->pos >= p->len;
}

/* Parse one value up to an unescaped ',' or '|' or the end, unescaping it. */
static int parse_value(struct parser *p, struct flt_value *out)
{
	size_t start = p->pos, n = 0;
	char *buf = malloc(p->len - p->pos + 1);
	int last_escaped = 0;

	if (!buf) {
		seterr(p->err, p->errlen, start, "out of memory");
		return -1;
	}
	while (!at_end(p) && p->s[p->pos] != ',' && p->s[p->pos] != '|') {
		char ch = p->s[p->pos];
		if (ch == '\\') {
			if (p->pos + 1 >= p->len) {
				seterr(p->err, p->errlen, p->pos, "dangling backslash at the end");
				free(buf);
				return -1;
			}
			buf[n++] = p->s[p->pos + 1];
			p->pos += 2;
			last_escaped = 1;
			continue;
		}
		buf[n++] = ch;
		p->pos++;
		last_escaped = 0;
	}
	buf[n] = '\0';
	out->prefix = 0;
	if (n > 0 && buf[n - 1] == '*' && !last_escaped) {
		out->prefix = 1;
		buf[--n] = '\0';
	}
	if (n == 0 && !out->prefix) {
		seterr(p->err, p->errlen, start, "empty value (write key:* to ask for any value)");
		free(buf);
		return -1;
	}
	out->s = buf;
	out->len = n;
	return 0;
}

static int parse_key(struct parser *p, enum flt_key *out)
{
	size_t start = p->pos;
	while (!at_end(p) && p->s[p->pos] != ':' && p->s[p->pos] != ',' && p->s[p->pos] != '|')
		p->pos++;
	size_t klen = p->pos - start;
	if (klen == 0 || at_end(p) || p->s[p->pos] != ':') {
		if (klen == 0)
			seterr(p->err, p->errlen, start, "empty clause (expected key:value)");
		else
			seterr(p->err, p->errlen, start,
			       "expected key:value, got \"%.*s\" (write a ',' or '|' inside a value as '\\,' or '\\|')",
			       (int)(klen > 64 ? 64 : klen), p->s + start);
		return -1;
	}
	for (int k = 0; k < FK_COUNT; k++) {
		if (strlen(keys[k].name) == klen && memcmp(keys[k].name, p->s + start, klen) == 0) {
			*out = (enum flt_key)k;
			p->pos++; /* ':' */
			return 0;
		}
	}
	seterr(p->err, p->errlen, start,
	       "unknown key \"%.*s\" (expected session, agent, parent, type, tool, status, role or app)",
	       (int)(klen > 64 ? 64 : klen), p->s + start);
	return -1;
}

static int parse_clause(struct parser *p, struct flt_clause *c)
{
	while (!at_end(p) && p->s[p->pos] == ' ')
		p->pos++;
	if (!at_end(p) && p->s[p->pos] == '!') {
		c->neg = 1;
		p->pos++;
	}
	if (parse_key(p, &c->key))
		return -1;
	c->v = calloc(FLT_MAX_VALUES, sizeof *c->v);
	if (!c->v) {
		seterr(p->err, p->errlen, p->pos, "out of memory");
		return -1;
	}
	for (;;) {
		if (c->n == FLT_MAX_VALUES) {
			seterr(p->err, p->errlen, p->pos, "more than %d values in one clause", FLT_MAX_VALUES);
			return -1;
		}
		if (parse_value(p, &c->v[c->n]))
			return -1;
		c->n++;
		if (at_end(p) || p->s[p->pos] != '|')
			return 0;
		p->pos++; /* '|' */
	}
}

int flt_parse(const char *s, size_t len, struct filter *out, char *err, size_t errlen)
{
	struct parser p = {s, len, 0, err, errlen};
	memset(out, 0, sizeof *out);

	if (len > FLT_MAX_TEXT) {
		seterr(err, errlen, FLT_MAX_TEXT, "filter longer than %d bytes", FLT_MAX_TEXT);
		return -1;
	}
	if (memchr(s, '\0', len)) {
		seterr(err, errlen, (size_t)((const char *)memchr(s, '\0', len) - s), "NUL byte in filter");
		return -1;
	}
	out->text = malloc(len + 1);
	if (!out->text) {
		seterr(err, errlen, 0, "out of memory");
		return -1;
	}
	memcpy(out->text, s, len);
	out->text[len] = '\0';
	if (len == 0)
		return 0;
	out->c = calloc(FLT_MAX_CLAUSES, sizeof *out->c);
	if (!out->c) {
		seterr(err, errlen, 0, "out of memory");
		goto fail;
	}
	for (;;) {
		if (out->n == FLT_MAX_CLAUSES) {
			seterr(err, errlen, p.pos, "more than %d clauses", FLT_MAX_CLAUSES);
			goto fail;
		}
		out->n++; /* counted before parsing so that flt_free sees a half-parsed clause */
		if (parse_clause(&p, &out->c[out->n - 1]))
			goto fail;
		if (at_end(&p))
			return 0;
		p.pos++; /* ',' */
		if (at_end(&p)) {
			seterr(err, errlen, p.pos, "empty clause after the last comma");
			goto fail;
		}
	}
fail:
	flt_free(out);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Matching */

static int value_matches(const struct flt_value *v, const char *s, size_t len)
{
	if (v->prefix)
		return len >= v->len && memcmp(s, v->s, v->len) == 0;
	return len == v->len && memcmp(s, v->s, len) == 0;
}

static int clause_matches(const struct flt_clause *c, const struct flt_fields *ev)
{
	const char *s = ev->v[c->key];
	int hit = 0;
	if (s) {
		for (size_t i = 0; i < c->n && !hit; i++)
			hit = value_matches(&c->v[i], s, ev->len[c->key]);
	}
	return c->neg ? !hit : hit;
}

int flt_match(const struct filter *f, const struct flt_fields *ev)
{
	for (size_t i = 0; i < f->n; i++)
		if (!clause_matches(&f->c[i], ev))
			return 0;
	return 1;
}
