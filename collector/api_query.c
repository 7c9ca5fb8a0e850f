/* api_query.c -- the pure half of the history API (see api.h): which path is
 * which endpoint, query-parameter checking, opaque keyset cursors and the
 * parameterised SQL of each endpoint. No I/O, no globals: thread-safe and
 * unit-tested (tests/unit/test_api.c).
 *
 * Pagination is keyset on (ts, key) -- never OFFSET: a page asks for the rows
 * strictly after the last row of the previous page in a total order, so rows
 * inserted meanwhile never shift a page and no row is skipped or repeated.
 * Client values only ever travel as bound parameters ($n). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "ev.h"

/* ------------------------------------------------------------ endpoints -- */

static const struct {
	const char *path;
	enum api_endpoint ep;
} paths[] = {
	{"/events", API_EVENTS},          {"/observability/events", API_EVENTS},
	{"/events/recent", API_EVENTS_RECENT}, {"/sessions", API_SESSIONS},
	{"/transcripts", API_TRANSCRIPTS}, {"/transcripts/search", API_SEARCH},
};

enum api_endpoint api_endpoint_of(const char *url, const char **path_arg)
{
	if (path_arg)
		*path_arg = NULL;
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
		if (strcmp(url, paths[i].path) == 0)
			return paths[i].ep;
	if (strncmp(url, "/sessions/", 10) == 0) {
		if (path_arg)
			*path_arg = url + 10;
		return API_SESSION;
	}
	return API_NONE;
}

const char *api_endpoint_name(enum api_endpoint ep)
{
	switch (ep) {
	case API_EVENTS: return "events";
	case API_EVENTS_RECENT: return "events_recent";
	case API_SESSIONS: return "sessions";
	case API_SESSION: return "session";
	case API_TRANSCRIPTS: return "transcripts";
	case API_SEARCH: return "transcripts_search";
	case API_POST_TRANSCRIPT: return "transcripts_post";
	case API_NONE: break;
	}
	return "none";
}

/* ---------------------------------------------------------------- cursor -- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

int api_cursor_encode(const struct api_cursor *c, char *out, size_t outlen)
{
	char raw[API_MAX_ID + 40];
	int n = snprintf(raw, sizeof raw, "1%c%c%lld:%s", c->kind, c->desc ? 'd' : 'a',
	                 (long long)c->ts_us, c->key);
	if (n < 0 || (size_t)n >= sizeof raw)
		return -1;
	size_t need = ((size_t)n * 4 + 2) / 3 + 1, o = 0;
	if (need > outlen)
		return -1;
	const unsigned char *s = (const unsigned char *)raw;
	for (int i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
	return 0;
}

int api_cursor_decode(const char *s, struct api_cursor *c)
{
	unsigned char raw[API_MAX_ID + 40];
	size_t len = strlen(s), o = 0;
	if (len < 2 || len > ((sizeof raw - 1) * 4) / 3 || len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4] = {0, 0, 0, 0}, k = 0;
		for (; k < 4 && i + (size_t)k < len; k++)
			if ((v[k] = b64_val(s[i + (size_t)k])) < 0)
				return -1;
		unsigned x = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
		raw[o++] = (unsigned char)(x >> 16);
		if (k > 2)
			raw[o++] = (unsigned char)(x >> 8);
		if (k > 3)
			raw[o++] = (unsigned char)x;
	}
	raw[o] = '\0';
	if (memchr(raw, '\0', o)) /* an embedded NUL */
		return -1;
	memset(c, 0, sizeof *c);
	if (o < 6 || raw[0] != '1' || !strchr("esm", raw[1]) || !raw[1] || (raw[2] != 'a' && raw[2] != 'd'))
		return -1;
	c->kind = (char)raw[1];
	c->desc = raw[2] == 'd';
	const char *p = (const char *)raw + 3, *colon = strchr(p, ':');
	if (!colon || colon == p || colon - p > 20)
		return -1;
	long long us = 0;
	for (const char *q = (*p == '-') ? p + 1 : p; q < colon; q++) {
		if (!isdigit((unsigned char)*q))
			return -1;
		us = us * 10 + (*q - '0');
	}
	c->ts_us = *p == '-' ? -us : us;
	const char *key = colon + 1;
	size_t klen = strlen(key);
	if (klen == 0 || klen > API_MAX_ID)
		return -1;
	memcpy(c->key, key, klen + 1);
	return 0;
}

/* ------------------------------------------------------------------ time -- */

int api_parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	int digits = 0, dot = 0;
	for (; *p; p++) {
		if (isdigit((unsigned char)*p))
			digits++;
		else if (*p == '.' && !dot && digits)
			dot = 1;
		else
			break;
	}
	if (*p == '\0' && digits) {
		errno = 0;
		char *end;
		double v = strtod(s, &end);
		if (errno || *end)
			return -1;
		if (v < 1e11)
			v *= 1000.0;
		if (v > 4102444800000.0) /* 2100-01-01 */
			return -1;
		*ms = (int64_t)(v + 0.5);
		return 0;
	}
	return ev_parse_iso8601(s, ms);
}

void api_format_us(int64_t us, char out[40])
{
	int64_t sec = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
	long frac = (long)(us - sec * 1000000);
	time_t t = (time_t)sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	char day[32];
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%06ldZ", day, frac);
}

/* ------------------------------------------------------------ parameters -- */

enum {
	P_SESSION_ID = 1u << 0, P_AGENT_ID = 1u << 1, P_TYPE = 1u << 2, P_TOOL = 1u << 3,
	P_STATUS = 1u << 4, P_FROM = 1u << 5, P_TO = 1u << 6, P_Q = 1u << 7,
	P_LIMIT = 1u << 8, P_CURSOR = 1u << 9, P_ORDER = 1u << 10, P_SESSION = 1u << 11,
	P_SOURCE_APP = 1u << 12, P_HAS_ERRORS = 1u << 13, P_ROLE = 1u << 14,
};

static const struct {
	const char *name;
	unsigned bit;
} pnames[] = {
	{"session_id", P_SESSION_ID}, {"agent_id", P_AGENT_ID}, {"type", P_TYPE},
	{"tool", P_TOOL}, {"status", P_STATUS}, {"from", P_FROM}, {"to", P_TO}, {"q", P_Q},
	{"limit", P_LIMIT}, {"cursor", P_CURSOR}, {"order", P_ORDER}, {"session", P_SESSION},
	{"source_app", P_SOURCE_APP}, {"has_errors", P_HAS_ERRORS}, {"role", P_ROLE},
};
#define N_PNAMES (sizeof pnames / sizeof pnames[0])

static unsigned allowed_params(enum api_endpoint ep)
{
	switch (ep) {
	case API_EVENTS:
		return P_SESSION_ID | P_AGENT_ID | P_TYPE | P_TOOL | P_STATUS | P_FROM | P_TO | P_Q |
		       P_LIMIT | P_CURSOR | P_ORDER;
	case API_EVENTS_RECENT: return P_SESSION | P_SESSION_ID | P_LIMIT;
	case API_SESSIONS:
		return P_AGENT_ID | P_SOURCE_APP | P_FROM | P_TO | P_HAS_ERRORS | P_LIMIT | P_CURSOR;
	case API_TRANSCRIPTS: return P_SESSION_ID | P_AGENT_ID | P_LIMIT | P_CURSOR;
	case API_SEARCH: return P_Q | P_SESSION_ID | P_AGENT_ID | P_ROLE | P_FROM | P_TO | P_LIMIT;
	default: return 0;
	}
}

static int bad(struct api_error *err, int status, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int bad(struct api_error *err, int status, const char *field, const char *fmt, ...)
{
	va_list ap;
	err->status = status;
	snprintf(err->field, sizeof err->field, "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

static void list_allowed(unsigned allowed, char *out, size_t len)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < N_PNAMES; i++) {
		if (!(allowed & pnames[i].bit))
			continue;
		int n = snprintf(out + o, len - o, "%s%s", o ? ", " : "", pnames[i].name);
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
	if (!o)
		snprintf(out, len, "none");
}

static char **str_slot(struct api_params *p, unsigned bit)
{
	switch (bit) {
	case P_SESSION_ID:
	case P_SESSION: return &p->session_id;
	case P_AGENT_ID: return &p->agent_id;
	case P_TYPE: return &p->type;
	case P_TOOL: return &p->tool;
	case P_STATUS: return &p->status;
	case P_Q: return &p->q;
	case P_SOURCE_APP: return &p->source_app;
	case P_ROLE: return &p->role;
	default: return NULL;
	}
}

void api_params_free(struct api_params *p)
{
	if (!p)
		return;
	free(p->session_id);
	free(p->agent_id);
	free(p->type);
	free(p->tool);
	free(p->status);
	free(p->q);
	free(p->source_app);
	free(p->role);
	memset(p, 0, sizeof *p);
}

static char cursor_kind(enum api_endpoint ep)
{
	return ep == API_EVENTS ? 'e' : ep == API_SESSIONS ? 's' : ep == API_TRANSCRIPTS ? 'm' : 0;
}

int api_params_parse(enum api_endpoint ep, const struct api_kv *kv, size_t n,
                     const char *path_arg, int64_t now_ms, const struct api_limits *lim,
                     struct api_params *out, struct api_error *err)
{
	unsigned allowed = allowed_params(ep), seen = 0;
	char list[256];
	size_t bad_at;

	memset(out, 0, sizeof *out);
	out->ep = ep;
	out->desc = 1;
	out->has_errors = -1;
	long max_limit = lim->max_limit > 0 ? lim->max_limit : 1000;
	if (ep == API_SEARCH && max_limit > 100)
		max_limit = 100;
	out->limit = ep == API_EVENTS_RECENT ? 50 : ep == API_SEARCH ? 20 : 100;
	if (out->limit > max_limit)
		out->limit = max_limit;

	for (size_t i = 0; i < n; i++) {
		const char *key = kv[i].key ? kv[i].key : "", *val = kv[i].value;
		unsigned bit = 0;
		for (size_t k = 0; k < N_PNAMES; k++)
			if (strcmp(key, pnames[k].name) == 0)
				bit = pnames[k].bit;
		if (!(bit & allowed)) {
			list_allowed(allowed, list, sizeof list);
			bad(err, 400, key, "unknown parameter \"%.64s\"; this endpoint takes: %s", key, list);
			goto fail;
		}
		if ((seen & bit) || (bit == P_SESSION && (seen & P_SESSION_ID)) ||
		    (bit == P_SESSION_ID && (seen & P_SESSION))) {
			bad(err, 400, key, "given more than once");
			goto fail;
		}
		seen |= bit;
		if (!val || !*val) {
			bad(err, 400, key, "must not be empty");
			goto fail;
		}
		size_t vlen = strlen(val);
		if (!ev_utf8_valid(val, vlen, &bad_at)) {
			bad(err, 400, key, "not valid UTF-8 (byte %zu)", bad_at);
			goto fail;
		}
		char **slot = str_slot(out, bit);
		if (slot) {
			size_t max = bit == P_Q ? API_MAX_Q : API_MAX_ID;
			if (vlen > max) {
				bad(err, 400, key, "longer than %zu bytes", max);
				goto fail;
			}
			if (!(*slot = strdup(val))) {
				bad(err, 503, key, "out of memory");
				goto fail;
			}
			if (bit == P_STATUS) /* stored lower-cased */
				for (char *c = *slot; *c; c++)
					*c = (char)tolower((unsigned char)*c);
			continue;
		}
		switch (bit) {
		case P_FROM:
		case P_TO: {
			int64_t ms;
			if (api_parse_time(val, &ms)) {
				bad(err, 400, key, "must be epoch seconds or milliseconds, or ISO-8601 "
				                   "(e.g. 2026-01-02T03:04:05Z)");
				goto fail;
			}
			if (bit == P_FROM) {
				out->has_from = 1;
				out->from_ms = ms;
			} else {
				out->has_to = 1;
				out->to_ms = ms;
			}
			break;
		}
		case P_LIMIT: {
			long v = 0;
			const char *p = val;
			for (; *p && isdigit((unsigned char)*p) && v <= 1000000; p++)
				v = v * 10 + (*p - '0');
			if (*p || v < 1 || v > max_limit) {
				bad(err, 400, key, "must be an integer from 1 to %ld", max_limit);
				goto fail;
			}
			out->limit = v;
			break;
		}
		case P_CURSOR:
			if (api_cursor_decode(val, &out->cursor) || out->cursor.kind != cursor_kind(ep) ||
			    (ep == API_EVENTS && !ev_uuid_valid(out->cursor.key))) {
				bad(err, 400, key, "not a cursor of this endpoint: pass next_cursor from the "
				                   "previous page unchanged");
				goto fail;
			}
			out->has_cursor = 1;
			break;
		case P_ORDER:
			if (strcmp(val, "asc") == 0)
				out->desc = 0;
			else if (strcmp(val, "desc") == 0)
				out->desc = 1;
			else {
				bad(err, 400, key, "must be asc or desc");
				goto fail;
			}
			break;
		case P_HAS_ERRORS:
			if (strcasecmp(val, "true") == 0 || strcmp(val, "1") == 0)
				out->has_errors = 1;
			else if (strcasecmp(val, "false") == 0 || strcmp(val, "0") == 0)
				out->has_errors = 0;
			else {
				bad(err, 400, key, "must be true or false");
				goto fail;
			}
			break;
		}
	}

	/* required parameters */
	if (ep == API_EVENTS_RECENT && !out->session_id) {
		bad(err, 400, "session", "required: the session id");
		goto fail;
	}
	if (ep == API_TRANSCRIPTS && !out->session_id) {
		bad(err, 400, "session_id", "required");
		goto fail;
	}
	if (ep == API_SEARCH && !out->q) {
		bad(err, 400, "q", "required: the words or \"phrase\" to search for");
		goto fail;
	}
	if (ep == API_SESSION) {
		size_t plen = path_arg ? strlen(path_arg) : 0;
		if (plen == 0) {
			bad(err, 400, "session_id", "missing: use /sessions/{session_id}");
			goto fail;
		}
		if (plen > API_MAX_ID || !ev_utf8_valid(path_arg, plen, &bad_at)) {
			bad(err, 400, "session_id", "longer than %d bytes or not UTF-8", API_MAX_ID);
			goto fail;
		}
		if (!(out->session_id = strdup(path_arg))) {
			bad(err, 503, "session_id", "out of memory");
			goto fail;
		}
	}

	/* time range */
	if (out->has_from && out->has_to && out->from_ms >= out->to_ms) {
		bad(err, 400, "to", "must be later than from");
		goto fail;
	}
	if (ep == API_EVENTS) {
		int64_t upper = out->has_to ? out->to_ms : now_ms;
		if (!out->has_from) {
			out->has_from = 1;
			out->from_ms = upper - lim->max_range_ms;
		} else if (upper - out->from_ms > lim->max_range_ms) {
			bad(err, 400, out->has_to ? "to" : "from",
			    "time range from..to (to defaults to now) is longer than the limit of %lld days",
			    (long long)(lim->max_range_ms / 86400000));
			goto fail;
		}
	}
	if (out->has_cursor && ep == API_EVENTS && out->cursor.desc != out->desc) {
		bad(err, 400, "cursor", "was made for order=%s", out->cursor.desc ? "desc" : "asc");
		goto fail;
	}
	return 0;
fail:
	api_params_free(out);
	return -1;
}

/* ------------------------------------------------------------------- SQL -- */

static void sql_add(struct api_sql *q, const char *s)
{
	size_t n = strlen(s);
	if (q->len + n + 1 > sizeof q->text) {
		q->overflow = 1;
		return;
	}
	memcpy(q->text + q->len, s, n + 1);
	q->len += n;
}

/* Append text with %d placeholders for parameter numbers only. */
static void sql_addf(struct api_sql *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sql_addf(struct api_sql *q, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(q->text + q->len, sizeof q->text - q->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof q->text - q->len) {
		q->overflow = 1;
		q->text[q->len] = '\0';
		return;
	}
	q->len += (size_t)n;
}

/* Bind a value; returns its $ number. */
static int sql_bind(struct api_sql *q, const char *value)
{
	if (q->n >= API_MAX_PARAMS) {
		q->overflow = 1;
		return API_MAX_PARAMS;
	}
	q->values[q->n] = value;
	return ++q->n;
}

static int sql_bind_ms(struct api_sql *q, int64_t ms)
{
	if (q->n >= API_MAX_PARAMS) {
		q->overflow = 1;
		return API_MAX_PARAMS;
	}
	api_format_us(ms * 1000, q->own[q->n]);
	q->values[q->n] = q->own[q->n];
	return ++q->n;
}

static int sql_bind_us(struct api_sql *q, int64_t us)
{
	if (q->n >= API_MAX_PARAMS) {
		q->overflow = 1;
		return API_MAX_PARAMS;
	}
	api_format_us(us, q->own[q->n]);
	q->values[q->n] = q->own[q->n];
	return ++q->n;
}

static int sql_bind_long(struct api_sql *q, long v)
{
	if (q->n >= API_MAX_PARAMS) {
		q->overflow = 1;
		return API_MAX_PARAMS;
	}
	snprintf(q->own[q->n], sizeof q->own[q->n], "%ld", v);
	q->values[q->n] = q->own[q->n];
	return ++q->n;
}

static void sql_init(struct api_sql *q)
{
	q->len = 0;
	q->n = 0;
	q->overflow = 0;
	q->text[0] = '\0';
}

static void sql_eq(struct api_sql *q, const char *column, const char *value)
{
	if (value)
		sql_addf(q, " AND %s = $%d", column, sql_bind(q, value));
}

#define TS_JSON(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define TS_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define TOKENS_JSON(p)                                                                        \
	"CASE WHEN num_nonnulls(" p "tokens_input, " p "tokens_output, " p "tokens_cache_read, " \
	p "tokens_cache_creation) > 0 THEN json_build_object('input', " p "tokens_input, "       \
	"'output', " p "tokens_output, 'cache_read', " p "tokens_cache_read, 'cache_creation', "  \
	p "tokens_cache_creation) END"

/* The event as the README's contract describes it (absent fields: null). */
#define EVENT_JSON                                                                            \
	"json_build_object('id', id, 'event_type', event_type, 'timestamp', " TS_JSON("ts") ", " \
	"'session_id', session_id, 'agent_id', agent_id, 'agent_role', agent_role, "            \
	"'parent_agent_id', parent_agent_id, 'source_app', source_app, 'tool', tool, "          \
	"'status', status, 'latency_ms', latency_ms, 'tokens', " TOKENS_JSON("") ", "          \
	"'cost_usd', cost_usd, 'trace_id', trace_id, 'span_id', span_id, 'payload', payload, "   \
	"'received_at', " TS_JSON("received_at") ", 'stored_at', " TS_JSON("created_at") ")::text"

void api_sql_events(const struct api_params *p, struct api_sql *q)
{
	sql_init(q);
	sql_add(q, "SELECT " EVENT_JSON ", " TS_US("ts") ", id::text FROM agent_events WHERE ");
	sql_addf(q, "ts >= $%d::timestamptz", sql_bind_ms(q, p->from_ms));
	if (p->has_to)
		sql_addf(q, " AND ts < $%d::timestamptz", sql_bind_ms(q, p->to_ms));
	sql_eq(q, "session_id", p->session_id);
	sql_eq(q, "agent_id", p->agent_id);
	sql_eq(q, "event_type", p->type);
	sql_eq(q, "tool", p->tool);
	sql_eq(q, "status", p->status);
	if (p->q)
		sql_addf(q, " AND to_tsvector('simple', payload) @@ websearch_to_tsquery('simple', $%d)",
		         sql_bind(q, p->q));
	if (p->has_cursor) {
		int t = sql_bind_us(q, p->cursor.ts_us), k = sql_bind(q, p->cursor.key);
		/* the plain ts bound lets the (x, ts) indexes narrow the scan */
		sql_addf(q, " AND ts %s $%d::timestamptz AND (ts, id) %s ($%d::timestamptz, $%d::uuid)",
		         p->desc ? "<=" : ">=", t, p->desc ? "<" : ">", t, k);
	}
	sql_addf(q, p->desc ? " ORDER BY ts DESC, id DESC LIMIT $%d" : " ORDER BY ts, id LIMIT $%d",
	         sql_bind_long(q, p->limit + 1));
}

void api_sql_recent(const struct api_params *p, struct api_sql *q)
{
	sql_init(q);
	sql_add(q, "SELECT j, us, k FROM (SELECT " EVENT_JSON " AS j, " TS_US("ts") " AS us, "
	           "id::text AS k, ts AS t, id AS i FROM agent_events WHERE ");
	sql_addf(q, "session_id = $%d ORDER BY ts DESC, id DESC LIMIT $%d) r ORDER BY t, i",
	         sql_bind(q, p->session_id), sql_bind_long(q, p->limit));
}

#define SESSION_JSON                                                                           \
	"json_build_object('session_id', s.session_id, 'first_seen', " TS_JSON("s.first_seen") \
	", 'last_seen', " TS_JSON("s.last_seen") ", "                                           \
	"'duration_s', extract(epoch FROM s.last_seen - s.first_seen)::float8, "               \
	"'events', s.events, 'errors', s.errors, 'event_types', s.event_types, "              \
	"'agents', s.agents, 'source_app', s.source_app, "                                     \
	"'tokens', json_build_object('input', s.tokens_input, 'output', s.tokens_output, "      \
	"'cache_read', s.tokens_cache_read, 'cache_creation', s.tokens_cache_creation, "        \
	"'total', s.tokens_input + s.tokens_output + s.tokens_cache_read + s.tokens_cache_creation), " \
	"'cost_usd', s.cost_usd, 'transcript_messages', coalesce((SELECT sum(t.messages) "      \
	"FROM chat_transcripts t WHERE t.session_id = s.session_id), 0))::text"

void api_sql_sessions(const struct api_params *p, struct api_sql *q)
{
	sql_init(q);
	sql_add(q, "SELECT " SESSION_JSON ", " TS_US("s.last_seen") ", s.session_id "
	           "FROM session_summaries s WHERE true");
	if (p->has_from)
		sql_addf(q, " AND s.last_seen >= $%d::timestamptz", sql_bind_ms(q, p->from_ms));
	if (p->has_to)
		sql_addf(q, " AND s.first_seen < $%d::timestamptz", sql_bind_ms(q, p->to_ms));
	if (p->agent_id)
		sql_addf(q, " AND s.agents @> ARRAY[$%d::text]", sql_bind(q, p->agent_id));
	sql_eq(q, "s.source_app", p->source_app);
	if (p->has_errors == 1)
		sql_add(q, " AND s.errors > 0");
	else if (p->has_errors == 0)
		sql_add(q, " AND s.errors = 0");
	if (p->has_cursor) {
		int t = sql_bind_us(q, p->cursor.ts_us), k = sql_bind(q, p->cursor.key);
		sql_addf(q, " AND s.last_seen <= $%d::timestamptz AND (s.last_seen, s.session_id) < "
		            "($%d::timestamptz, $%d::text)", t, t, k);
	}
	sql_addf(q, " ORDER BY s.last_seen DESC, s.session_id DESC LIMIT $%d",
	         sql_bind_long(q, p->limit + 1));
}

const char *const api_sql_session_summary =
	"SELECT " SESSION_JSON " FROM session_summaries s WHERE s.session_id = $1";

const char *const api_sql_session_agents =
	"SELECT json_build_object('agent_id', agent_id, 'parent_agent_id', max(parent_agent_id), "
	"'agent_role', max(agent_role), 'first_seen', " TS_JSON("min(ts)") ", "
	"'last_seen', " TS_JSON("max(ts)") ", 'events', count(*), "
	"'errors', count(*) FILTER (WHERE status = 'error'), "
	"'tokens', json_build_object('input', coalesce(sum(tokens_input), 0), "
	"'output', coalesce(sum(tokens_output), 0), 'cache_read', coalesce(sum(tokens_cache_read), 0), "
	"'cache_creation', coalesce(sum(tokens_cache_creation), 0)), "
	"'cost_usd', coalesce(sum(cost_usd), 0))::text, agent_id, max(parent_agent_id) "
	"FROM agent_events WHERE session_id = $1 GROUP BY agent_id "
	"ORDER BY min(ts), agent_id NULLS FIRST LIMIT 1000";

const char *const api_sql_session_transcripts =
	"SELECT json_build_object('agent_id', nullif(agent_id, ''), 'transcript_path', transcript_path, "
	"'messages', messages, 'first_ts', " TS_JSON("first_ts") ", 'last_ts', " TS_JSON("last_ts") ", "
	"'model', model, 'tokens', json_build_object('input', tokens_input, 'output', tokens_output, "
	"'cache_read', tokens_cache_read, 'cache_creation', tokens_cache_creation))::text "
	"FROM chat_transcripts WHERE session_id = $1 ORDER BY first_ts, agent_id LIMIT 1000";

void api_sql_messages(const struct api_params *p, struct api_sql *q)
{
	sql_init(q);
	sql_add(q, "SELECT json_build_object('id', message_id, 'agent_id', nullif(agent_id, ''), "
	           "'role', role, 'text', text, 'model', model, 'tokens', " TOKENS_JSON("") ", "
	           "'timestamp', " TS_JSON("ts") ")::text, " TS_US("ts") ", message_id "
	           "FROM transcript_messages WHERE ");
	sql_addf(q, "session_id = $%d", sql_bind(q, p->session_id));
	sql_eq(q, "agent_id", p->agent_id);
	if (p->has_cursor) {
		int t = sql_bind_us(q, p->cursor.ts_us), k = sql_bind(q, p->cursor.key);
		sql_addf(q, " AND ts >= $%d::timestamptz AND (ts, message_id) > ($%d::timestamptz, $%d::text)",
		         t, t, k);
	}
	sql_addf(q, " ORDER BY ts, message_id LIMIT $%d", sql_bind_long(q, p->limit + 1));
}

void api_sql_search(const struct api_params *p, struct api_sql *q)
{
	sql_init(q);
	sql_addf(q, "WITH q AS (SELECT websearch_to_tsquery('english', $%d) AS query), "
	            "hits AS (SELECT m.session_id, m.agent_id, m.message_id, m.ts, m.role, m.model, "
	            "m.text, ts_rank_cd(m.tsv, q.query) AS rank FROM transcript_messages m, q "
	            "WHERE m.tsv @@ q.query", sql_bind(q, p->q));
	sql_eq(q, "m.session_id", p->session_id);
	sql_eq(q, "m.agent_id", p->agent_id);
	sql_eq(q, "m.role", p->role);
	if (p->has_from)
		sql_addf(q, " AND m.ts >= $%d::timestamptz", sql_bind_ms(q, p->from_ms));
	if (p->has_to)
		sql_addf(q, " AND m.ts < $%d::timestamptz", sql_bind_ms(q, p->to_ms));
	sql_addf(q, " ORDER BY rank DESC, m.ts DESC, m.message_id LIMIT $%d) "
	            "SELECT h.session_id, nullif(h.agent_id, ''), h.message_id, " TS_JSON("h.ts") ", "
	            "h.role, h.model, h.rank, ts_headline('english', h.text, q.query, "
	            "'StartSel=' || chr(2) || ', StopSel=' || chr(3) || "
	            "', MaxWords=35, MinWords=12, MaxFragments=2, FragmentDelimiter=\" ... \"') "
	            "FROM hits h, q ORDER BY h.rank DESC, h.ts DESC, h.message_id",
	         sql_bind_long(q, p->limit));
}
