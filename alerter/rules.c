/* rules.c -- the alert rule file (see config/alerts.yaml for the format):
 * loading with libyaml's document API, validation with "FILE:LINE:COL:
 * problem" errors, and matching events against rules. A loaded ruleset owns
 * all its strings and compiled regexes; rules_free() releases them. No
 * global state; thread-safe for distinct rulesets. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "alerter.h"

#define MAX_RULES 1000
#define MAX_LIST 256   /* values in one matcher */
#define MAX_GROUP_BY 32 /* group_by fields, static labels */
#define MAX_ANNOTATIONS 64

/* ------------------------------------------------------------------------ */
/* Durations and names */

int64_t parse_duration(const char *s)
{
	int64_t total = 0;
	const char *p = s;
	if (!s || !*s)
		return -1;
	/* A bare number is seconds. */
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (end != s && *end == '\0' && errno == 0 && d >= 0 && isfinite(d) && d < 1e10)
		return (int64_t)llround(d * 1000.0);
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -1;
		errno = 0;
		long long n = strtoll(p, &end, 10);
		if (errno || n < 0 || n > 100000000)
			return -1;
		p = end;
		int64_t unit;
		if (strncmp(p, "ms", 2) == 0) {
			unit = 1;
			p += 2;
		} else if (*p == 's') {
			unit = 1000;
			p++;
		} else if (*p == 'm') {
			unit = 60000;
			p++;
		} else if (*p == 'h') {
			unit = 3600000;
			p++;
		} else if (*p == 'd') {
			unit = 86400000;
			p++;
		} else {
			return -1;
		}
		total += n * unit;
		if (total > (int64_t)366 * 86400000)
			return -1;
	}
	return total;
}

void format_duration(int64_t ms, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	if (ms <= 0) {
		snprintf(buf, len, "0s");
		return;
	}
	static const struct {
		int64_t unit;
		const char *name;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
	for (size_t i = 0; i < 5 && o + 1 < len; i++) {
		if (ms >= units[i].unit) {
			int w = snprintf(buf + o, len - o, "%lld%s", (long long)(ms / units[i].unit),
			                 units[i].name);
			if (w < 0 || (size_t)w >= len - o)
				return;
			o += (size_t)w;
			ms %= units[i].unit;
		}
	}
}

const char *cond_kind_name(enum cond_kind k)
{
	switch (k) {
	case COND_EVERY: return "every";
	case COND_COUNT: return "count";
	case COND_RATIO: return "ratio";
	case COND_QUANTILE: return "quantile";
	case COND_SUM: return "sum";
	case COND_ABSENCE: return "absence";
	}
	return "?";
}

static const struct {
	const char *name;
	enum field_id id;
} field_names[] = {
	{"event_type", F_EVENT_TYPE},
	{"status", F_STATUS},
	{"tool", F_TOOL},
	{"session_id", F_SESSION_ID},
	{"agent_id", F_AGENT_ID},
	{"agent_role", F_AGENT_ROLE},
	{"parent_agent_id", F_PARENT_AGENT_ID},
	{"source_app", F_SOURCE_APP},
	{"trace_id", F_TRACE_ID},
	{"latency_ms", F_LATENCY_MS},
	{"cost_usd", F_COST_USD},
	{"tokens.input", F_TOKENS_INPUT},
	{"tokens.output", F_TOKENS_OUTPUT},
	{"tokens.cache_read", F_TOKENS_CACHE_READ},
	{"tokens.cache_creation", F_TOKENS_CACHE_CREATION},
	{"tokens.total", F_TOKENS_TOTAL},
};
#define N_FIELDS (sizeof field_names / sizeof field_names[0])

static int is_number_field(enum field_id id)
{
	return id >= F_LATENCY_MS && id <= F_TOKENS_TOTAL;
}

/* "payload.command" -> F_PAYLOAD, path "command". 0 / -1. */
int field_parse(const char *s, struct field_ref *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < N_FIELDS; i++) {
		if (strcmp(s, field_names[i].name) == 0) {
			out->id = field_names[i].id;
			out->name = strdup(s);
			return out->name ? 0 : -1;
		}
	}
	if (strncmp(s, "payload.", 8) != 0 || !s[8])
		return -1;
	for (const char *p = s + 8; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
			return -1;
		if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
			return -1;
	}
	out->id = F_PAYLOAD;
	out->name = strdup(s);
	out->path = strdup(s + 8);
	return out->name && out->path ? 0 : -1;
}

void field_free(struct field_ref *f)
{
	free(f->name);
	free(f->path);
	f->name = f->path = NULL;
}

static int valid_label_name(const char *s)
{
	if (!*s || !(isalpha((unsigned char)*s) || *s == '_'))
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Events */

static const char *str_field(const struct ev_row *r, enum field_id id)
{
	switch (id) {
	case F_EVENT_TYPE: return r->event_type;
	case F_STATUS: return r->status;
	case F_TOOL: return r->tool;
	case F_SESSION_ID: return r->session_id;
	case F_AGENT_ID: return r->agent_id;
	case F_AGENT_ROLE: return r->agent_role;
	case F_PARENT_AGENT_ID: return r->parent_agent_id;
	case F_SOURCE_APP: return r->source_app;
	case F_TRACE_ID: return r->trace_id;
	default: return NULL;
	}
}

static const cJSON *payload_item(const struct ev_row *r, const char *path)
{
	const cJSON *o = r->json ? cJSON_GetObjectItemCaseSensitive(r->json, "payload") : NULL;
	char key[256];
	while (o && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		if (n >= sizeof key || !cJSON_IsObject(o))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		o = cJSON_GetObjectItemCaseSensitive(o, key);
		path += n + (dot ? 1 : 0);
	}
	return o;
}

static int num_field(const struct ev_row *r, enum field_id id, double *out)
{
	switch (id) {
	case F_LATENCY_MS:
		*out = r->latency_ms;
		return r->has_latency ? 0 : -1;
	case F_COST_USD:
		*out = r->cost_usd;
		return r->has_cost ? 0 : -1;
	case F_TOKENS_INPUT:
	case F_TOKENS_OUTPUT:
	case F_TOKENS_CACHE_READ:
	case F_TOKENS_CACHE_CREATION: {
		int i = (int)(id - F_TOKENS_INPUT);
		*out = (double)r->tokens[i];
		return r->has_tokens[i] ? 0 : -1;
	}
	case F_TOKENS_TOTAL: {
		int any = 0;
		*out = 0;
		for (int i = 0; i < 4; i++) {
			if (r->has_tokens[i]) {
				*out += (double)r->tokens[i];
				any = 1;
			}
		}
		return any ? 0 : -1;
	}
	default: return -1;
	}
}

int field_number(const struct ev_row *row, const struct field_ref *f, double *out)
{
	if (f->id != F_PAYLOAD)
		return num_field(row, f->id, out);
	const cJSON *v = payload_item(row, f->path);
	if (cJSON_IsNumber(v)) {
		*out = v->valuedouble;
		return 0;
	}
	if (cJSON_IsString(v) && v->valuestring[0]) {
		char *end;
		double d = strtod(v->valuestring, &end);
		if (*end == '\0' && isfinite(d)) {
			*out = d;
			return 0;
		}
	}
	return -1;
}

int field_text(const struct ev_row *row, const struct field_ref *f, const char **out, char *buf,
               size_t buflen)
{
	*out = "";
	if (f->id == F_PAYLOAD) {
		const cJSON *v = payload_item(row, f->path);
		if (cJSON_IsString(v)) {
			*out = v->valuestring;
			return 0;
		}
		if (cJSON_IsBool(v)) {
			*out = cJSON_IsTrue(v) ? "true" : "false";
			return 0;
		}
		if (cJSON_IsNumber(v)) {
			snprintf(buf, buflen, "%.15g", v->valuedouble);
			*out = buf;
			return 0;
		}
		return -1;
	}
	if (is_number_field(f->id)) {
		double d;
		if (num_field(row, f->id, &d))
			return -1;
		snprintf(buf, buflen, "%.15g", d);
		*out = buf;
		return 0;
	}
	const char *s = str_field(row, f->id);
	if (!s)
		return -1;
	*out = s;
	return 0;
}

static int matcher_ok(const struct matcher *m, const struct ev_row *row)
{
	char buf[64];
	const char *v;
	int present = field_text(row, &m->f, &v, buf, sizeof buf) == 0;
	switch (m->op) {
	case MATCH_EXISTS:
		return (present && *v) == m->exists;
	case MATCH_REGEX:
		return present && regexec(&m->re, v, 0, NULL, 0) == 0;
	case MATCH_EQ:
	case MATCH_NOT: {
		int eq = 0;
		for (size_t i = 0; present && i < m->nvalues && !eq; i++)
			eq = strcmp(m->values[i], v) == 0;
		return m->op == MATCH_EQ ? eq : !eq;
	}
	}
	return 0;
}

int match_event(const struct match *m, const struct ev_row *row)
{
	for (size_t i = 0; i < m->n; i++)
		if (!matcher_ok(&m->v[i], row))
			return 0;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Freeing */

static void match_free(struct match *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct matcher *x = &m->v[i];
		field_free(&x->f);
		for (size_t j = 0; j < x->nvalues; j++)
			free(x->values[j]);
		free(x->values);
		if (x->has_re)
			regfree(&x->re);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

static void kv_free(struct kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].value);
	}
	free(v);
}

static void rule_free(struct rule *r)
{
	free(r->name);
	free(r->severity);
	match_free(&r->match);
	match_free(&r->numerator);
	match_free(&r->until);
	field_free(&r->field);
	for (size_t i = 0; i < r->ngroup_by; i++)
		field_free(&r->group_by[i]);
	free(r->group_by);
	kv_free(r->labels, r->nlabels);
	kv_free(r->annotations, r->nannotations);
	memset(r, 0, sizeof *r);
}

void rules_free(struct ruleset *rs)
{
	if (!rs)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_free(&rs->v[i]);
	free(rs->v);
	free(rs->path);
	free(rs);
}

/* ------------------------------------------------------------------------ */
/* Loading */

struct ld {
	yaml_document_t doc;
	const char *path;
	char *err;
	size_t errlen;
};

static int lerr(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int lerr(struct ld *l, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n)
		snprintf(l->err, l->errlen, "%s:%zu:%zu: %s", l->path, n->start_mark.line + 1,
		         n->start_mark.column + 1, msg);
	else
		snprintf(l->err, l->errlen, "%s: %s", l->path, msg);
	return -1;
}

static yaml_node_t *node(struct ld *l, int id)
{
	return yaml_document_get_node(&l->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A mapping's pairs as (key text, key node, value node); checks that keys
 * are scalars, known (allowed[], NULL-terminated) and not repeated. */
struct pair {
	const char *key;
	yaml_node_t *k, *v;
};

static int pairs(struct ld *l, yaml_node_t *map, const char *what, const char *const *allowed,
                 struct pair *out, size_t max, size_t *n)
{
	*n = 0;
	if (!map || map->type != YAML_MAPPING_NODE)
		return lerr(l, map, "%s must be a mapping", what);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
		const char *ks = scalar(k);
		if (!ks)
			return lerr(l, k, "%s: keys must be plain strings", what);
		if (allowed) {
			int ok = 0;
			for (size_t i = 0; allowed[i] && !ok; i++)
				ok = strcmp(allowed[i], ks) == 0;
			if (!ok) {
				char list[400] = "";
				size_t o = 0;
				for (size_t i = 0; allowed[i] && o < sizeof list - 1; i++)
					o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "",
					                      allowed[i]);
				return lerr(l, k, "%s: unknown key \"%s\" (expected one of: %s)", what, ks, list);
			}
		}
		for (size_t i = 0; i < *n; i++)
			if (strcmp(out[i].key, ks) == 0)
				return lerr(l, k, "%s: key \"%s\" given twice", what, ks);
		if (*n >= max)
			return lerr(l, k, "%s: too many keys (at most %zu)", what, max);
		out[*n].key = ks;
		out[*n].k = k;
		out[*n].v = v;
		(*n)++;
	}
	return 0;
}

static yaml_node_t *get(struct pair *p, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].key, key) == 0)
			return p[i].v;
	return NULL;
}

static int get_string(struct ld *l, yaml_node_t *n, const char *what, char **out)
{
	const char *s = scalar(n);
	if (!s)
		return lerr(l, n, "%s must be a string", what);
	if (strlen(s) != n->data.scalar.length)
		return lerr(l, n, "%s contains a NUL byte", what);
	*out = strdup(s);
	if (!*out)
		return lerr(l, n, "out of memory");
	return 0;
}

static int get_number(struct ld *l, yaml_node_t *n, const char *what, double *out)
{
	const char *s = scalar(n);
	char *end;
	if (!s || !*s)
		return lerr(l, n, "%s must be a number", what);
	errno = 0;
	*out = strtod(s, &end);
	if (*end || errno || !isfinite(*out))
		return lerr(l, n, "%s must be a number, not \"%s\"", what, s);
	return 0;
}

static int get_duration(struct ld *l, yaml_node_t *n, const char *what, int64_t min_ms,
                        int64_t *out)
{
	const char *s = scalar(n);
	if (!s)
		return lerr(l, n, "%s must be a duration like 30s, 5m, 1h", what);
	*out = parse_duration(s);
	if (*out < 0)
		return lerr(l, n, "%s: \"%s\" is not a duration (like 250ms, 30s, 5m, 1h30m)", what, s);
	if (*out < min_ms)
		return lerr(l, n, "%s must be at least %lldms", what, (long long)min_ms);
	return 0;
}

static int get_field(struct ld *l, yaml_node_t *n, const char *what, int numeric,
                     struct field_ref *out)
{
	const char *s = scalar(n);
	if (!s)
		return lerr(l, n, "%s must be a field name", what);
	if (field_parse(s, out))
		return lerr(l, n,
		            "%s: unknown field \"%s\" (event_type, status, tool, session_id, agent_id, "
		            "agent_role, parent_agent_id, source_app, trace_id, latency_ms, cost_usd, "
		            "tokens.input|output|cache_read|cache_creation|total, payload.<path>)",
		            what, s);
	if (numeric && !is_number_field(out->id) && out->id != F_PAYLOAD) {
		field_free(out);
		return lerr(l, n, "%s: \"%s\" is not a numeric field", what, s);
	}
	return 0;
}

/* Scalars of a scalar-or-sequence node. */
static int get_values(struct ld *l, yaml_node_t *n, const char *what, char ***vals, size_t *nv)
{
	*vals = NULL;
	*nv = 0;
	if (n && n->type == YAML_SCALAR_NODE) {
		*vals = calloc(1, sizeof **vals);
		if (!*vals || get_string(l, n, what, &(*vals)[0]))
			return *vals ? -1 : lerr(l, n, "out of memory");
		*nv = 1;
		return 0;
	}
	if (!n || n->type != YAML_SEQUENCE_NODE)
		return lerr(l, n, "%s must be a value or a list of values", what);
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (cnt == 0)
		return lerr(l, n, "%s: empty list", what);
	if (cnt > MAX_LIST)
		return lerr(l, n, "%s: more than %d values", what, MAX_LIST);
	*vals = calloc(cnt, sizeof **vals);
	if (!*vals)
		return lerr(l, n, "out of memory");
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *v = node(l, *it);
		if (get_string(l, v, what, &(*vals)[*nv]))
			return -1;
		(*nv)++;
	}
	return 0;
}

static int load_match(struct ld *l, yaml_node_t *n, const char *what, struct match *m)
{
	struct pair p[64];
	size_t np;
	if (pairs(l, n, what, NULL, p, 64, &np))
		return -1;
	m->v = calloc(np ? np : 1, sizeof *m->v);
	if (!m->v)
		return lerr(l, n, "out of memory");
	for (size_t i = 0; i < np; i++) {
		struct matcher *x = &m->v[i];
		char w[300];
		snprintf(w, sizeof w, "%s.%s", what, p[i].key);
		if (field_parse(p[i].key, &x->f)) {
			m->n = i;
			return get_field(l, p[i].k, w, 0, &x->f);
		}
		m->n = i + 1;
		yaml_node_t *v = p[i].v;
		if (v->type != YAML_MAPPING_NODE) {
			x->op = MATCH_EQ;
			if (get_values(l, v, w, &x->values, &x->nvalues))
				return -1;
			continue;
		}
		static const char *const ops[] = {"not", "regex", "exists", NULL};
		struct pair q[3];
		size_t nq;
		if (pairs(l, v, w, ops, q, 3, &nq))
			return -1;
		if (nq != 1)
			return lerr(l, v, "%s: give exactly one of not, regex, exists", w);
		if (strcmp(q[0].key, "not") == 0) {
			x->op = MATCH_NOT;
			if (get_values(l, q[0].v, w, &x->values, &x->nvalues))
				return -1;
		} else if (strcmp(q[0].key, "regex") == 0) {
			const char *re = scalar(q[0].v);
			x->op = MATCH_REGEX;
			if (!re)
				return lerr(l, q[0].v, "%s: regex must be a string", w);
			int rc = regcomp(&x->re, re, REG_EXTENDED | REG_NOSUB);
			if (rc) {
				char msg[200];
				regerror(rc, &x->re, msg, sizeof msg);
				return lerr(l, q[0].v, "%s: bad regex: %s", w, msg);
			}
			x->has_re = 1;
		} else {
			const char *b = scalar(q[0].v);
			x->op = MATCH_EXISTS;
			if (b && (strcmp(b, "true") == 0 || strcmp(b, "yes") == 0))
				x->exists = 1;
			else if (b && (strcmp(b, "false") == 0 || strcmp(b, "no") == 0))
				x->exists = 0;
			else
				return lerr(l, q[0].v, "%s: exists must be true or false", w);
		}
	}
	return 0;
}

static int load_kvs(struct ld *l, yaml_node_t *n, const char *what, int check_names, size_t max,
                    struct kv **out, size_t *nout)
{
	struct pair p[MAX_LIST];
	size_t np;
	if (pairs(l, n, what, NULL, p, max, &np))
		return -1;
	*out = calloc(np ? np : 1, sizeof **out);
	if (!*out)
		return lerr(l, n, "out of memory");
	for (size_t i = 0; i < np; i++) {
		if (check_names && !valid_label_name(p[i].key))
			return lerr(l, p[i].k, "%s: \"%s\" is not a valid label name", what, p[i].key);
		if (check_names && (strcmp(p[i].key, "alertname") == 0 || strcmp(p[i].key, "severity") == 0))
			return lerr(l, p[i].k, "%s: \"%s\" is set by the rule itself", what, p[i].key);
		(*out)[i].key = strdup(p[i].key);
		*nout = i + 1;
		if (!(*out)[i].key || get_string(l, p[i].v, what, &(*out)[i].value))
			return -1;
	}
	return 0;
}

/* Placeholders a template may use besides field names. */
static const char *const builtins[] = {"value", "threshold", "window", "count", "rule", "severity",
                                       "kind", "quantile", "min_count", "field", NULL};

static int check_template(struct ld *l, yaml_node_t *n, const char *what, const char *t)
{
	for (const char *p = t; *p; p++) {
		if (*p == '{' && p[1] == '{') {
			p++;
			continue;
		}
		if (*p == '}' && p[1] == '}') {
			p++;
			continue;
		}
		if (*p == '}')
			return lerr(l, n, "%s: unmatched '}' (write }} for a literal brace)", what);
		if (*p != '{')
			continue;
		const char *end = strchr(p, '}');
		if (!end)
			return lerr(l, n, "%s: unclosed '{'", what);
		char name[200];
		size_t len = (size_t)(end - p - 1);
		if (len == 0 || len >= sizeof name)
			return lerr(l, n, "%s: empty or overlong placeholder", what);
		memcpy(name, p + 1, len);
		name[len] = '\0';
		int ok = 0;
		for (size_t i = 0; builtins[i] && !ok; i++)
			ok = strcmp(builtins[i], name) == 0;
		struct field_ref f;
		if (!ok && field_parse(name, &f) == 0) {
			ok = 1;
			field_free(&f);
		}
		if (!ok)
			return lerr(l, n, "%s: unknown placeholder {%s} (use value, threshold, window, count, "
			            "rule, severity, or an event field such as session_id or payload.command)",
			            what, name);
		p = end;
	}
	return 0;
}

static int load_condition(struct ld *l, yaml_node_t *n, struct rule *r)
{
	static const char *const keys[] = {"kind", "window", "threshold", "op", "min_count", "quantile",
	                                   "field", "numerator", "hold", "after", "until", "forget", NULL};
	struct pair p[16];
	size_t np;
	if (pairs(l, n, "condition", keys, p, 16, &np))
		return -1;
	yaml_node_t *kind = get(p, np, "kind");
	const char *ks = scalar(kind);
	if (!kind)
		return lerr(l, n, "condition: missing kind (every, count, ratio, quantile, sum, absence)");
	static const enum cond_kind kinds[] = {COND_EVERY, COND_COUNT, COND_RATIO, COND_QUANTILE,
	                                       COND_SUM, COND_ABSENCE};
	int found = 0;
	for (size_t i = 0; i < 6 && ks && !found; i++) {
		if (strcmp(ks, cond_kind_name(kinds[i])) == 0) {
			r->kind = kinds[i];
			found = 1;
		}
	}
	if (!found)
		return lerr(l, kind, "condition.kind: unknown kind \"%s\" (every, count, ratio, quantile, "
		            "sum, absence)", ks ? ks : "");

	/* Which keys apply to which kind: required (R), optional (O). */
	static const struct {
		const char *key;
		char use[6]; /* every count ratio quantile sum absence */
	} applies[] = {
		{"window", {0, 'R', 'R', 'R', 'O', 0}},
		{"threshold", {0, 'R', 'R', 'R', 'R', 0}},
		{"op", {0, 'O', 'O', 'O', 'O', 0}},
		{"min_count", {0, 0, 'O', 'O', 0, 0}},
		{"quantile", {0, 0, 0, 'R', 0, 0}},
		{"field", {0, 0, 0, 'R', 'R', 0}},
		{"numerator", {0, 0, 'R', 0, 0, 0}},
		{"hold", {'O', 0, 0, 0, 0, 0}},
		{"after", {0, 0, 0, 0, 0, 'R'}},
		{"until", {0, 0, 0, 0, 0, 'O'}},
		{"forget", {0, 0, 0, 0, 'O', 'O'}},
	};
	for (size_t i = 0; i < sizeof applies / sizeof applies[0]; i++) {
		yaml_node_t *v = get(p, np, applies[i].key);
		char use = applies[i].use[r->kind];
		if (v && !use) {
			for (size_t j = 0; j < np; j++)
				if (p[j].v == v)
					return lerr(l, p[j].k, "condition: \"%s\" does not apply to kind %s",
					            applies[i].key, ks);
		}
		if (!v && use == 'R')
			return lerr(l, n, "condition: kind %s needs \"%s\"", ks, applies[i].key);
	}

	yaml_node_t *v;
	r->hold_ms = 5 * 60000;
	r->forget_ms = 24 * 3600000LL;
	r->min_count = 1;
	if ((v = get(p, np, "window")) && get_duration(l, v, "condition.window", 1, &r->window_ms))
		return -1;
	if ((v = get(p, np, "hold")) && get_duration(l, v, "condition.hold", 1, &r->hold_ms))
		return -1;
	if ((v = get(p, np, "after")) && get_duration(l, v, "condition.after", 1, &r->after_ms))
		return -1;
	if ((v = get(p, np, "forget")) && get_duration(l, v, "condition.forget", 1, &r->forget_ms))
		return -1;
	if ((v = get(p, np, "threshold")) && get_number(l, v, "condition.threshold", &r->threshold))
		return -1;
	if ((v = get(p, np, "op"))) {
		const char *op = scalar(v);
		if (op && strcmp(op, ">") == 0)
			r->strict = 1;
		else if (!op || strcmp(op, ">=") != 0)
			return lerr(l, v, "condition.op must be \">\" or \">=\"");
	}
	if ((v = get(p, np, "min_count"))) {
		double d;
		if (get_number(l, v, "condition.min_count", &d))
			return -1;
		if (d < 1 || d != floor(d) || d > 1e9)
			return lerr(l, v, "condition.min_count must be a whole number >= 1");
		r->min_count = (long long)d;
	}
	if ((v = get(p, np, "quantile"))) {
		if (get_number(l, v, "condition.quantile", &r->quantile))
			return -1;
		if (!(r->quantile > 0 && r->quantile <= 1))
			return lerr(l, v, "condition.quantile must be in (0, 1], e.g. 0.95");
	}
	if ((v = get(p, np, "field")) && get_field(l, v, "condition.field", 1, &r->field))
		return -1;
	if ((v = get(p, np, "numerator")) && load_match(l, v, "condition.numerator", &r->numerator))
		return -1;
	if (r->kind == COND_RATIO && r->numerator.n == 0)
		return lerr(l, get(p, np, "numerator"), "condition.numerator must name at least one field");
	if (r->kind == COND_RATIO && (r->threshold < 0 || r->threshold > 1))
		return lerr(l, get(p, np, "threshold"), "condition.threshold of a ratio must be in [0, 1]");
	if (r->kind == COND_COUNT && r->threshold < 1)
		return lerr(l, get(p, np, "threshold"), "condition.threshold of a count must be >= 1");
	if ((v = get(p, np, "until"))) {
		if (load_match(l, v, "condition.until", &r->until))
			return -1;
	} else if (r->kind == COND_ABSENCE) {
		/* default: the session ended */
		r->until.v = calloc(1, sizeof *r->until.v);
		if (!r->until.v)
			return lerr(l, n, "out of memory");
		struct matcher *x = &r->until.v[0];
		r->until.n = 1;
		x->op = MATCH_EQ;
		x->values = calloc(3, sizeof *x->values);
		if (!x->values || field_parse("event_type", &x->f))
			return lerr(l, n, "out of memory");
		x->values[0] = strdup("Stop");
		x->values[1] = strdup("SessionEnd");
		x->values[2] = strdup("StopFailure");
		x->nvalues = 3;
		if (!x->values[0] || !x->values[1] || !x->values[2])
			return lerr(l, n, "out of memory");
	}
	return 0;
}

static int load_rule(struct ld *l, yaml_node_t *n, struct rule *r)
{
	static const char *const keys[] = {"name", "severity", "match", "condition", "group_by",
	                                   "labels", "annotations", NULL};
	struct pair p[8];
	size_t np;
	r->line = (int)n->start_mark.line + 1;
	if (pairs(l, n, "rule", keys, p, 8, &np))
		return -1;
	yaml_node_t *v = get(p, np, "name");
	if (!v)
		return lerr(l, n, "rule: missing name");
	if (get_string(l, v, "name", &r->name))
		return -1;
	if (!valid_label_name(r->name))
		return lerr(l, v, "name \"%s\": use letters, digits and _ (like ToolFailureSpike)", r->name);
	if (!(v = get(p, np, "severity")))
		return lerr(l, n, "rule %s: missing severity (e.g. critical, page, warning, info)", r->name);
	if (get_string(l, v, "severity", &r->severity))
		return -1;
	if (!r->severity[0])
		return lerr(l, v, "severity must not be empty");
	if ((v = get(p, np, "match")) && load_match(l, v, "match", &r->match))
		return -1;
	if (!(v = get(p, np, "condition")))
		return lerr(l, n, "rule %s: missing condition", r->name);
	if (load_condition(l, v, r))
		return -1;
	if ((v = get(p, np, "group_by"))) {
		char **names = NULL;
		size_t nn = 0;
		int bad = get_values(l, v, "group_by", &names, &nn);
		if (!bad && nn > MAX_GROUP_BY)
			bad = lerr(l, v, "group_by: at most %d fields", MAX_GROUP_BY);
		if (!bad) {
			r->group_by = calloc(nn, sizeof *r->group_by);
			if (!r->group_by)
				bad = lerr(l, v, "out of memory");
		}
		for (size_t i = 0; !bad && i < nn; i++) {
			if (field_parse(names[i], &r->group_by[i]))
				bad = lerr(l, v, "group_by: unknown field \"%s\"", names[i]);
			else
				r->ngroup_by = i + 1;
			for (size_t j = 0; !bad && j < i; j++)
				if (strcmp(names[i], names[j]) == 0)
					bad = lerr(l, v, "group_by: \"%s\" given twice", names[i]);
		}
		for (size_t i = 0; i < nn; i++)
			free(names[i]);
		free(names);
		if (bad)
			return -1;
	}
	if ((v = get(p, np, "labels")) && load_kvs(l, v, "labels", 1, MAX_GROUP_BY, &r->labels, &r->nlabels))
		return -1;
	for (size_t i = 0; i < r->nlabels; i++) {
		for (size_t j = 0; j < r->ngroup_by; j++) {
			char lname[256];
			snprintf(lname, sizeof lname, "%s", r->group_by[j].name);
			for (char *c = lname; *c; c++)
				if (*c == '.')
					*c = '_';
			if (strcmp(lname, r->labels[i].key) == 0)
				return lerr(l, get(p, np, "labels"), "labels: \"%s\" is also a group_by label",
				            lname);
		}
	}
	if ((v = get(p, np, "annotations"))) {
		if (load_kvs(l, v, "annotations", 1, MAX_ANNOTATIONS, &r->annotations, &r->nannotations))
			return -1;
		struct pair q[MAX_LIST];
		size_t nq;
		pairs(l, v, "annotations", NULL, q, MAX_LIST, &nq);
		for (size_t i = 0; i < nq && i < r->nannotations; i++)
			if (check_template(l, q[i].v, r->annotations[i].key, r->annotations[i].value))
				return -1;
	}
	return 0;
}

struct ruleset *rules_load(const char *path, char *err, size_t errlen)
{
	struct ld l = {.path = path, .err = err, .errlen = errlen};
	yaml_parser_t parser;
	struct ruleset *rs = NULL;
	int have_doc = 0, ok = 0;
	FILE *f = fopen(path, "rb");

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: out of memory", path);
		fclose(f);
		return NULL;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &l.doc)) {
		const char *problem = parser.problem ? parser.problem : "YAML error";
		snprintf(err, errlen, "%s:%zu:%zu: %s%s%s", path, parser.problem_mark.line + 1,
		         parser.problem_mark.column + 1, problem, parser.context ? " " : "",
		         parser.context ? parser.context : "");
		goto out;
	}
	have_doc = 1;
	rs = calloc(1, sizeof *rs);
	if (!rs || !(rs->path = strdup(path))) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	yaml_node_t *root = yaml_document_get_root_node(&l.doc);
	if (!root) {
		lerr(&l, NULL, "empty file: expected a mapping with a \"rules:\" list");
		goto out;
	}
	static const char *const top[] = {"rules", NULL};
	struct pair p[2];
	size_t np;
	if (pairs(&l, root, "top level", top, p, 2, &np))
		goto out;
	yaml_node_t *list = get(p, np, "rules");
	if (!list) {
		lerr(&l, root, "missing \"rules:\" list");
		goto out;
	}
	if (list->type != YAML_SEQUENCE_NODE) {
		lerr(&l, list, "rules must be a list");
		goto out;
	}
	size_t cnt = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
	if (cnt > MAX_RULES) {
		lerr(&l, list, "more than %d rules", MAX_RULES);
		goto out;
	}
	rs->v = calloc(cnt ? cnt : 1, sizeof *rs->v);
	if (!rs->v) {
		lerr(&l, list, "out of memory");
		goto out;
	}
	for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top;
	     it++) {
		yaml_node_t *rn = node(&l, *it);
		struct rule *r = &rs->v[rs->n++];
		if (load_rule(&l, rn, r))
			goto out;
		for (size_t i = 0; i + 1 < rs->n; i++) {
			if (strcmp(rs->v[i].name, r->name) == 0) {
				lerr(&l, rn, "rule name \"%s\" used twice (first at line %d)", r->name,
				     rs->v[i].line);
				goto out;
			}
		}
	}
	ok = 1;
out:
	if (have_doc)
		yaml_document_delete(&l.doc);
	yaml_parser_delete(&parser);
	fclose(f);
	if (!ok) {
		rules_free(rs);
		return NULL;
	}
	return rs;
}
