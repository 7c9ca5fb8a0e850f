/* test_api.c -- unit tests for the pure half of the history API
 * (collector/api_query.c, collector/transcript.c): endpoint table, cursor
 * encoding, query-parameter checking, the SQL builders (values only as
 * parameters) and POST /transcripts normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "../../collector/api.h"

#define NOW_MS 1795000000000LL /* 2026-11-18T11:06:40Z */
static const struct api_limits lim = {.max_limit = 1000, .max_range_ms = 31LL * 86400000};

/* ------------------------------------------------------------ endpoints -- */

static void test_endpoint_of(void **state)
{
	(void)state;
	const char *arg = "x";
	assert_int_equal(api_endpoint_of("/events", &arg), API_EVENTS);
	assert_null(arg);
	assert_int_equal(api_endpoint_of("/observability/events", NULL), API_EVENTS);
	assert_int_equal(api_endpoint_of("/events/recent", NULL), API_EVENTS_RECENT);
	assert_int_equal(api_endpoint_of("/sessions", NULL), API_SESSIONS);
	assert_int_equal(api_endpoint_of("/sessions/abc/def", &arg), API_SESSION);
	assert_string_equal(arg, "abc/def");
	assert_int_equal(api_endpoint_of("/transcripts", NULL), API_TRANSCRIPTS);
	assert_int_equal(api_endpoint_of("/transcripts/search", NULL), API_SEARCH);
	assert_int_equal(api_endpoint_of("/events/", NULL), API_NONE);
	assert_int_equal(api_endpoint_of("/healthz", NULL), API_NONE);
	assert_int_equal(api_endpoint_of("/observability/event", NULL), API_NONE);
}

/* ---------------------------------------------------------------- cursor -- */

static void roundtrip(char kind, int desc, int64_t us, const char *key)
{
	struct api_cursor c = {.kind = kind, .desc = desc, .ts_us = us}, d;
	char enc[1024];
	snprintf(c.key, sizeof c.key, "%s", key);
	assert_int_equal(api_cursor_encode(&c, enc, sizeof enc), 0);
	for (const char *p = enc; *p; p++) /* URL-safe, no padding */
		assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
	assert_int_equal(api_cursor_decode(enc, &d), 0);
	assert_int_equal(d.kind, kind);
	assert_int_equal(d.desc, desc);
	assert_true(d.ts_us == us);
	assert_string_equal(d.key, key);
}

static void test_cursor_roundtrip(void **state)
{
	(void)state;
	roundtrip('e', 1, 1795000000123456LL, "6f1c2d3e-0000-4000-8000-000000000001");
	roundtrip('e', 0, 0, "6f1c2d3e-0000-4000-8000-000000000001");
	roundtrip('s', 1, -5, "session:with:colons");
	roundtrip('m', 0, 1, "h-0123456789abcdef0123456789abcdef");
	roundtrip('s', 1, 42, "\xc3\xa9t\xc3\xa9"); /* UTF-8 */
	roundtrip('s', 1, 42, "a"); /* every padding length */
	roundtrip('s', 1, 42, "ab");
	roundtrip('s', 1, 42, "abc");
	char longkey[API_MAX_ID + 1];
	memset(longkey, 'k', API_MAX_ID);
	longkey[API_MAX_ID] = '\0';
	roundtrip('m', 1, 9, longkey);
}

static void test_cursor_rejects(void **state)
{
	(void)state;
	struct api_cursor c;
	char enc[1024];
	assert_int_equal(api_cursor_decode("", &c), -1);
	assert_int_equal(api_cursor_decode("a", &c), -1);
	assert_int_equal(api_cursor_decode("not a cursor!", &c), -1);
	assert_int_equal(api_cursor_decode("MWVkMTc5====", &c), -1); /* padding is not ours */
	assert_int_equal(api_cursor_decode("a+b/", &c), -1);
	/* well-formed base64 of things that are not cursors */
	struct { const char *raw; } bad[] = {
		{"2ed1:abc"},    /* version */
		{"1xd1:abc"},    /* kind */
		{"1eq1:abc"},    /* direction */
		{"1ed:abc"},     /* no time */
		{"1ed12x:abc"},  /* time not a number */
		{"1ed12:"},      /* no key */
		{"1ed12abc"},    /* no colon */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		/* encode by hand through a cursor-shaped wrapper: reuse the encoder's alphabet */
		static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		const unsigned char *s = (const unsigned char *)bad[i].raw;
		size_t n = strlen(bad[i].raw), o = 0;
		for (size_t k = 0; k < n; k += 3) {
			unsigned v = (unsigned)s[k] << 16 | (k + 1 < n ? (unsigned)s[k + 1] << 8 : 0) |
			             (k + 2 < n ? s[k + 2] : 0);
			enc[o++] = b64[(v >> 18) & 63];
			enc[o++] = b64[(v >> 12) & 63];
			if (k + 1 < n)
				enc[o++] = b64[(v >> 6) & 63];
			if (k + 2 < n)
				enc[o++] = b64[v & 63];
		}
		enc[o] = '\0';
		assert_int_equal(api_cursor_decode(enc, &c), -1);
	}
	/* a key longer than the limit cannot be encoded into a small buffer */
	struct api_cursor big = {.kind = 's', .desc = 1, .ts_us = 1};
	memset(big.key, 'x', API_MAX_ID);
	assert_int_equal(api_cursor_encode(&big, enc, 16), -1);
}

/* ------------------------------------------------------------------ time -- */

static void test_parse_time(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(api_parse_time("1700000000", &ms), 0);
	assert_true(ms == 1700000000000LL);
	assert_int_equal(api_parse_time("1700000000.25", &ms), 0);
	assert_true(ms == 1700000000250LL);
	assert_int_equal(api_parse_time("1700000000123", &ms), 0);
	assert_true(ms == 1700000000123LL);
	assert_int_equal(api_parse_time("2026-01-02T03:04:05.678Z", &ms), 0);
	assert_true(ms == 1767323045678LL);
	assert_int_equal(api_parse_time("2026-01-02T04:04:05+01:00", &ms), 0);
	assert_true(ms == 1767323045000LL);
	assert_int_equal(api_parse_time("yesterday", &ms), -1);
	assert_int_equal(api_parse_time("12ab", &ms), -1);
	assert_int_equal(api_parse_time("-5", &ms), -1);
	assert_int_equal(api_parse_time("99999999999999999", &ms), -1);

	char out[40];
	api_format_us(1767323045678901LL, out);
	assert_string_equal(out, "2026-01-02T03:04:05.678901Z");
	api_format_us(0, out);
	assert_string_equal(out, "1970-01-01T00:00:00.000000Z");
}

/* ------------------------------------------------------------ parameters -- */

static int parse(enum api_endpoint ep, const char *path_arg, struct api_params *p,
                 struct api_error *e, ...)
{
	struct api_kv kv[32];
	size_t n = 0;
	va_list ap;
	va_start(ap, e);
	for (const char *k; (k = va_arg(ap, const char *)) && n < 32; n++) {
		kv[n].key = k;
		kv[n].value = va_arg(ap, const char *);
	}
	va_end(ap);
	memset(e, 0, sizeof *e);
	return api_params_parse(ep, kv, n, path_arg, NOW_MS, &lim, p, e);
}

static void expect_400(enum api_endpoint ep, const char *field, const char *needle, ...)
{
	/* helper for one bad parameter: (key, value) */
	struct api_params p;
	struct api_error e;
	va_list ap;
	va_start(ap, needle);
	const char *k = va_arg(ap, const char *), *v = va_arg(ap, const char *);
	va_end(ap);
	struct api_kv kv[1] = {{k, v}};
	memset(&e, 0, sizeof e);
	assert_int_equal(api_params_parse(ep, kv, 1, NULL, NOW_MS, &lim, &p, &e), -1);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.field, field);
	if (needle && !strstr(e.message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
}

static void test_params_defaults(void **state)
{
	(void)state;
	struct api_params p;
	struct api_error e;
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, NULL), 0);
	assert_int_equal(p.limit, 100);
	assert_int_equal(p.desc, 1);
	assert_int_equal(p.has_from, 1); /* implicit: to - max range */
	assert_true(p.from_ms == NOW_MS - lim.max_range_ms);
	assert_int_equal(p.has_to, 0);
	assert_int_equal(p.has_cursor, 0);
	api_params_free(&p);

	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "session_id", "s1", "agent_id", "a1", "type",
	                       "PostToolUse", "tool", "Bash", "status", "ERROR", "q", "rm -rf",
	                       "limit", "1000", "order", "asc", "from", "1794000000", "to",
	                       "2026-11-18T00:00:00Z", NULL), 0);
	assert_string_equal(p.session_id, "s1");
	assert_string_equal(p.agent_id, "a1");
	assert_string_equal(p.type, "PostToolUse");
	assert_string_equal(p.tool, "Bash");
	assert_string_equal(p.status, "error"); /* lower-cased like stored */
	assert_string_equal(p.q, "rm -rf");
	assert_int_equal(p.limit, 1000);
	assert_int_equal(p.desc, 0);
	assert_true(p.from_ms == 1794000000000LL);
	assert_int_equal(p.has_to, 1);
	api_params_free(&p);

	assert_int_equal(parse(API_EVENTS_RECENT, NULL, &p, &e, "session", "abc", NULL), 0);
	assert_string_equal(p.session_id, "abc");
	assert_int_equal(p.limit, 50);
	api_params_free(&p);
	assert_int_equal(parse(API_SEARCH, NULL, &p, &e, "q", "\"flux capacitor\"", NULL), 0);
	assert_int_equal(p.limit, 20);
	api_params_free(&p);
	assert_int_equal(parse(API_SESSIONS, NULL, &p, &e, "has_errors", "true", "agent_id", "x", NULL), 0);
	assert_int_equal(p.has_errors, 1);
	assert_int_equal(p.has_from, 0); /* sessions: no implicit range */
	api_params_free(&p);
	assert_int_equal(parse(API_SESSION, "sess/1", &p, &e, NULL), 0);
	assert_string_equal(p.session_id, "sess/1");
	api_params_free(&p);
}

static void test_params_errors(void **state)
{
	(void)state;
	struct api_params p;
	struct api_error e;
	expect_400(API_EVENTS, "sesion_id", "unknown parameter", "sesion_id", "x");
	expect_400(API_EVENTS, "limit", "1 to 1000", "limit", "0");
	expect_400(API_EVENTS, "limit", "1 to 1000", "limit", "1001");
	expect_400(API_EVENTS, "limit", "1 to 1000", "limit", "10x");
	expect_400(API_EVENTS, "limit", "1 to 1000", "limit", "-1");
	expect_400(API_SEARCH, "limit", "1 to 100", "limit", "101");
	expect_400(API_EVENTS, "session_id", "empty", "session_id", "");
	expect_400(API_EVENTS, "session_id", "empty", "session_id", NULL);
	expect_400(API_EVENTS, "from", "ISO-8601", "from", "last tuesday");
	expect_400(API_EVENTS, "order", "asc or desc", "order", "up");
	expect_400(API_EVENTS, "cursor", "next_cursor", "cursor", "garbage");
	expect_400(API_EVENTS, "session_id", "UTF-8", "session_id", "\xff\xfe");
	expect_400(API_SESSIONS, "has_errors", "true or false", "has_errors", "maybe");
	expect_400(API_SESSIONS, "type", "unknown parameter", "type", "Stop"); /* not a sessions filter */
	expect_400(API_EVENTS_RECENT, "session", "required", "limit", "5");
	expect_400(API_TRANSCRIPTS, "session_id", "required", "limit", "5");
	expect_400(API_SEARCH, "q", "required", "limit", "5");

	char big[API_MAX_ID + 2];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	expect_400(API_EVENTS, "session_id", "longer than", "session_id", big);

	/* repeated parameter, and session/session_id both given */
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "tool", "a", "tool", "b", NULL), -1);
	assert_string_equal(e.field, "tool");
	assert_non_null(strstr(e.message, "more than once"));
	assert_int_equal(parse(API_EVENTS_RECENT, NULL, &p, &e, "session", "a", "session_id", "b", NULL), -1);

	/* time range */
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "from", "1794000000", "to", "1794000000", NULL), -1);
	assert_string_equal(e.field, "to");
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "from", "1700000000", NULL), -1);
	assert_string_equal(e.field, "from");
	assert_non_null(strstr(e.message, "31 days"));
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "from", "1700000000", "to", "1790000000", NULL), -1);
	assert_string_equal(e.field, "to");
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "from", "1792400000", NULL), 0); /* 30 days */
	api_params_free(&p);

	/* session detail without an id */
	assert_int_equal(parse(API_SESSION, "", &p, &e, NULL), -1);
	assert_string_equal(e.field, "session_id");
	assert_int_equal(parse(API_SESSION, "x", &p, &e, "limit", "1", NULL), -1);
	assert_string_equal(e.field, "limit");
}

static void test_params_cursor(void **state)
{
	(void)state;
	struct api_params p;
	struct api_error e;
	struct api_cursor c = {.kind = 'e', .desc = 1, .ts_us = 1795000000000000LL};
	char enc[512], senc[512];
	snprintf(c.key, sizeof c.key, "%s", "6f1c2d3e-0000-4000-8000-000000000001");
	api_cursor_encode(&c, enc, sizeof enc);
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "cursor", enc, NULL), 0);
	assert_int_equal(p.has_cursor, 1);
	assert_true(p.cursor.ts_us == c.ts_us);
	api_params_free(&p);
	/* made for desc, used with asc */
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "cursor", enc, "order", "asc", NULL), -1);
	assert_string_equal(e.field, "cursor");
	/* an events cursor is not a sessions cursor */
	assert_int_equal(parse(API_SESSIONS, NULL, &p, &e, "cursor", enc, NULL), -1);
	assert_string_equal(e.field, "cursor");
	/* an events cursor must carry a UUID */
	struct api_cursor s = {.kind = 'e', .desc = 1, .ts_us = 5};
	snprintf(s.key, sizeof s.key, "%s", "not-a-uuid");
	api_cursor_encode(&s, senc, sizeof senc);
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "cursor", senc, NULL), -1);
	/* sessions cursor on sessions */
	s.kind = 's';
	api_cursor_encode(&s, senc, sizeof senc);
	assert_int_equal(parse(API_SESSIONS, NULL, &p, &e, "cursor", senc, NULL), 0);
	assert_string_equal(p.cursor.key, "not-a-uuid");
	api_params_free(&p);
}

/* ------------------------------------------------------------------- SQL -- */

static void assert_params_numbered(const struct api_sql *q)
{
	char tag[16];
	assert_false(q->overflow);
	for (int i = 1; i <= q->n; i++) {
		snprintf(tag, sizeof tag, "$%d", i);
		assert_non_null(strstr(q->text, tag));
		assert_non_null(q->values[i - 1]);
	}
	snprintf(tag, sizeof tag, "$%d", q->n + 1);
	assert_null(strstr(q->text, tag));
}

static void test_sql_values_are_parameters(void **state)
{
	(void)state;
	struct api_params p;
	struct api_error e;
	struct api_sql q;
	const char *evil = "x'); DROP TABLE agent_events; --";
	struct api_cursor c = {.kind = 'e', .desc = 1, .ts_us = 1795000000000001LL};
	char enc[512];
	snprintf(c.key, sizeof c.key, "%s", "6f1c2d3e-0000-4000-8000-000000000001");
	api_cursor_encode(&c, enc, sizeof enc);
	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "session_id", evil, "agent_id", evil, "type",
	                       evil, "tool", evil, "status", evil, "q", evil, "cursor", enc, "limit", "7",
	                       "to", "1795000000", NULL), 0);
	api_sql_events(&p, &q);
	assert_null(strstr(q.text, "DROP"));
	assert_params_numbered(&q);
	assert_int_equal(q.n, 11); /* from, to, 5 filters, q, cursor ts + id, limit */
	assert_string_equal(q.values[q.n - 1], "8"); /* limit + 1: is there a next page? */
	assert_string_equal(q.values[q.n - 2], c.key);
	assert_string_equal(q.values[q.n - 3], "2026-11-18T11:06:40.000001Z");
	assert_non_null(strstr(q.text, "ORDER BY ts DESC, id DESC"));
	assert_null(strstr(q.text, "OFFSET"));
	api_params_free(&p);

	assert_int_equal(parse(API_EVENTS, NULL, &p, &e, "order", "asc", NULL), 0);
	api_sql_events(&p, &q);
	assert_params_numbered(&q);
	assert_non_null(strstr(q.text, "ORDER BY ts, id"));
	api_params_free(&p);

	assert_int_equal(parse(API_SESSIONS, NULL, &p, &e, "agent_id", evil, "source_app", evil,
	                       "has_errors", "false", "from", "1794000000", "to", "1795000000", NULL), 0);
	api_sql_sessions(&p, &q);
	assert_null(strstr(q.text, "DROP"));
	assert_params_numbered(&q);
	assert_non_null(strstr(q.text, "s.errors = 0"));
	api_params_free(&p);

	assert_int_equal(parse(API_TRANSCRIPTS, NULL, &p, &e, "session_id", evil, "agent_id", evil, NULL), 0);
	api_sql_messages(&p, &q);
	assert_null(strstr(q.text, "DROP"));
	assert_params_numbered(&q);
	api_params_free(&p);

	assert_int_equal(parse(API_SEARCH, NULL, &p, &e, "q", evil, "session_id", evil, "role", evil,
	                       "from", "1794000000", NULL), 0);
	api_sql_search(&p, &q);
	assert_null(strstr(q.text, "DROP"));
	assert_params_numbered(&q);
	api_params_free(&p);

	assert_int_equal(parse(API_EVENTS_RECENT, NULL, &p, &e, "session", evil, NULL), 0);
	api_sql_recent(&p, &q);
	assert_null(strstr(q.text, "DROP"));
	assert_params_numbered(&q);
	api_params_free(&p);
}

/* ------------------------------------------------------------ transcripts -- */

static cJSON *normalise_ok(const char *body, size_t *n)
{
	char *out = NULL;
	size_t len = 0;
	struct api_error e;
	memset(&e, 0, sizeof e);
	int rc = transcript_normalise(body, strlen(body), NOW_MS, &transcript_default_limits, &out, &len,
	                              n, &e);
	if (rc)
		fail_msg("refused: %d %s: %s", e.status, e.field, e.message);
	assert_int_equal(len, strlen(out));
	cJSON *j = cJSON_Parse(out);
	free(out);
	assert_non_null(j);
	return j;
}

static void normalise_bad(const char *body, int status, const char *field)
{
	char *out = NULL;
	size_t len = 0, n = 0;
	struct api_error e;
	memset(&e, 0, sizeof e);
	assert_int_equal(transcript_normalise(body, strlen(body), NOW_MS, &transcript_default_limits,
	                                      &out, &len, &n, &e), -1);
	assert_null(out);
	assert_int_equal(e.status, status);
	if (strcmp(e.field, field) != 0)
		fail_msg("field \"%s\" != \"%s\" (%s)", e.field, field, e.message);
}

static void test_transcript_normalise(void **state)
{
	(void)state;
	size_t n;
	cJSON *j = normalise_ok("{\"session_id\":\"s1\",\"agent_id\":\"a1\",\"transcript_path\":\"/t.jsonl\","
	                        "\"extra\":1,\"messages\":[{\"uuid\":\"u1\",\"role\":\"user\",\"text\":\"hi\","
	                        "\"timestamp\":\"2026-11-18T00:00:00+01:00\"},{\"role\":\"assistant\","
	                        "\"text\":\"hello\",\"model\":\"claude-sonnet-4-5\",\"tokens\":"
	                        "{\"input_tokens\":3,\"output\":5,\"cache_read_input_tokens\":0},"
	                        "\"timestamp\":1794000000}]}", &n);
	assert_int_equal(n, 2);
	assert_string_equal(cJSON_GetObjectItem(j, "session_id")->valuestring, "s1");
	assert_string_equal(cJSON_GetObjectItem(j, "agent_id")->valuestring, "a1");
	assert_string_equal(cJSON_GetObjectItem(j, "transcript_path")->valuestring, "/t.jsonl");
	assert_null(cJSON_GetObjectItem(j, "extra"));
	assert_non_null(cJSON_GetObjectItem(j, "received_at"));
	cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0);
	cJSON *m1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 1);
	assert_string_equal(cJSON_GetObjectItem(m0, "uuid")->valuestring, "u1");
	assert_string_equal(cJSON_GetObjectItem(m0, "timestamp")->valuestring, "2026-11-17T23:00:00.000Z");
	assert_string_equal(cJSON_GetObjectItem(m1, "timestamp")->valuestring, "2026-11-06T21:20:00.000Z");
	const char *derived = cJSON_GetObjectItem(m1, "uuid")->valuestring;
	assert_int_equal(strncmp(derived, "h-", 2), 0);
	assert_int_equal(strlen(derived), 34);
	cJSON *tok = cJSON_GetObjectItem(m1, "tokens");
	assert_int_equal(cJSON_GetObjectItem(tok, "input")->valueint, 3);
	assert_int_equal(cJSON_GetObjectItem(tok, "output")->valueint, 5);
	assert_int_equal(cJSON_GetObjectItem(tok, "cache_read")->valueint, 0);
	assert_string_equal(cJSON_GetObjectItem(m1, "model")->valuestring, "claude-sonnet-4-5");

	/* the same message sent again gets the same id; other words another one */
	cJSON *again = normalise_ok("{\"session_id\":\"s1\",\"agent_id\":\"a1\",\"messages\":[{\"role\":"
	                            "\"assistant\",\"text\":\"hello\",\"timestamp\":1794000000}]}", &n);
	cJSON *other = normalise_ok("{\"session_id\":\"s1\",\"agent_id\":\"a1\",\"messages\":[{\"role\":"
	                            "\"assistant\",\"text\":\"hello!\",\"timestamp\":1794000000}]}", &n);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(again, "messages"), 0),
	                                        "uuid")->valuestring, derived);
	assert_string_not_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(other, "messages"), 0),
	                                            "uuid")->valuestring, derived);
	cJSON_Delete(j);
	cJSON_Delete(again);
	cJSON_Delete(other);

	/* a message without a timestamp gets the receive time */
	j = normalise_ok("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\"}]}", &n);
	m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0);
	assert_string_equal(cJSON_GetObjectItem(m0, "timestamp")->valuestring, "2026-11-18T11:06:40.000Z");
	assert_string_equal(cJSON_GetObjectItem(m0, "text")->valuestring, "");
	assert_null(cJSON_GetObjectItem(j, "agent_id"));
	cJSON_Delete(j);
}

/* Secrets in the free-text fields are redacted; ids, roles and timestamps
 * are not; a derived id is the id of the redacted text (never a hash of a
 * secret), so the raw and the already-redacted message get the same one. */
static void test_transcript_redaction(void **state)
{
	(void)state;
	size_t n;
	cJSON *j = normalise_ok("{\"session_id\":\"s-1\",\"transcript_path\":\"/h/.claude/x.jsonl\","
	                        "\"messages\":[{\"uuid\":\"m-1\",\"role\":\"user\",\"text\":\"use "
	                        "DB_PASSWORD=hunter2xyz and postgres://app:s3cr3tpw@db/x\"},"
	                        "{\"role\":\"assistant\",\"text\":\"key sk-ant-api03-abcDEF1234567890abcdEF12\","
	                        "\"timestamp\":1794000000}]}", &n);
	cJSON *msgs = cJSON_GetObjectItem(j, "messages");
	cJSON *m0 = cJSON_GetArrayItem(msgs, 0), *m1 = cJSON_GetArrayItem(msgs, 1);
	assert_string_equal(cJSON_GetObjectItem(m0, "uuid")->valuestring, "m-1");
	assert_string_equal(cJSON_GetObjectItem(m0, "text")->valuestring,
	                    "use DB_PASSWORD=[REDACTED:secret] and postgres://app:[REDACTED:url_password]@db/x");
	assert_string_equal(cJSON_GetObjectItem(m1, "text")->valuestring, "key [REDACTED:anthropic_key]");
	assert_string_equal(cJSON_GetObjectItem(j, "transcript_path")->valuestring, "/h/.claude/x.jsonl");
	cJSON *pre = normalise_ok("{\"session_id\":\"s-1\",\"messages\":[{\"role\":\"assistant\","
	                          "\"text\":\"key [REDACTED:anthropic_key]\",\"timestamp\":1794000000}]}", &n);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(pre, "messages"), 0),
	                                        "uuid")->valuestring,
	                    cJSON_GetObjectItem(m1, "uuid")->valuestring);
	cJSON_Delete(pre);
	cJSON_Delete(j);
}

/* A marker longer than the secret it replaces must not push a short field
 * over its limit and get the whole batch refused (found by fuzz_transcript). */
static void test_transcript_redaction_keeps_limits(void **state)
{
	(void)state;
	size_t n;
	char model[129], body[600];
	memset(model, 'm', sizeof model);
	memcpy(model + 110, " password=hunter22", 18); /* 128 bytes; the marker is 9 longer */
	model[128] = '\0';
	snprintf(body, sizeof body, "{\"session_id\":\"s-1\",\"messages\":[{\"uuid\":\"m-1\",\"role\":"
	         "\"assistant\",\"text\":\"hi\",\"model\":\"%s\"}]}", model);
	cJSON *j = normalise_ok(body, &n);
	const char *got = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0),
	                                      "model")->valuestring;
	assert_true(strlen(got) <= 128);
	assert_null(strstr(got, "hunter22"));
	assert_non_null(strstr(got, "password=[REDACT")); /* the marker, cut at the limit */
	cJSON_Delete(j);
}

static void test_transcript_truncates_long_text(void **state)
{
	(void)state;
	size_t big = transcript_default_limits.max_text + 10, n;
	char *body = malloc(big + 200);
	char *p = body + sprintf(body, "{\"session_id\":\"s\",\"messages\":[{\"role\":\"tool\",\"text\":\"");
	/* multi-byte characters across the cut */
	for (size_t i = 0; i < big / 2; i++) {
		*p++ = '\xc3';
		*p++ = '\xa9';
	}
	strcpy(p, "\"}]}");
	cJSON *j = normalise_ok(body, &n);
	cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0);
	const char *text = cJSON_GetObjectItem(m0, "text")->valuestring;
	assert_true(strlen(text) <= transcript_default_limits.max_text);
	assert_int_equal(strlen(text) % 2, 0); /* cut between characters */
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m0, "truncated")));
	cJSON_Delete(j);
	free(body);
}

static void test_transcript_errors(void **state)
{
	(void)state;
	normalise_bad("", 400, "");
	normalise_bad("[1,2]", 400, "");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[]} x", 400, "");
	normalise_bad("{\"messages\":[{\"role\":\"user\"}]}", 400, "session_id");
	normalise_bad("{\"session_id\":\"\",\"messages\":[{\"role\":\"user\"}]}", 400, "session_id");
	normalise_bad("{\"session_id\":7,\"messages\":[{\"role\":\"user\"}]}", 400, "session_id");
	normalise_bad("{\"session_id\":\"s\"}", 400, "messages");
	normalise_bad("{\"session_id\":\"s\",\"messages\":{}}", 400, "messages");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[]}", 400, "messages");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[7]}", 400, "messages[0]");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\"},{\"text\":\"x\"}]}", 400,
	              "messages[1].role");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"text\":5}]}", 400,
	              "messages[0].text");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"timestamp\":\"soon\"}]}",
	              400, "messages[0].timestamp");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"timestamp\":1}]}", 400,
	              "messages[0].timestamp");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"tokens\":{\"input\":-1}}]}",
	              400, "messages[0].tokens.input");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"tokens\":{\"output\":1.5}}]}",
	              400, "messages[0].tokens.output");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"tokens\":3}]}", 400,
	              "messages[0].tokens");
	normalise_bad("{\"session_id\":\"s\",\"messages\":[{\"role\":\"user\",\"uuid\":[]}]}", 400,
	              "messages[0].uuid");
	normalise_bad("{\"session_id\":\"\xff\",\"messages\":[]}", 400, "");

	/* too many messages: 413 */
	size_t n = transcript_default_limits.max_messages + 1;
	char *body = malloc(n * 20 + 64), *p = body;
	p += sprintf(p, "{\"session_id\":\"s\",\"messages\":[");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"role\":\"user\"}", i ? "," : "");
	strcpy(p, "]}");
	normalise_bad(body, 413, "messages");
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoint_of),
		cmocka_unit_test(test_cursor_roundtrip),
		cmocka_unit_test(test_cursor_rejects),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_params_defaults),
		cmocka_unit_test(test_params_errors),
		cmocka_unit_test(test_params_cursor),
		cmocka_unit_test(test_sql_values_are_parameters),
		cmocka_unit_test(test_transcript_normalise),
		cmocka_unit_test(test_transcript_redaction),
		cmocka_unit_test(test_transcript_redaction_keeps_limits),
		cmocka_unit_test(test_transcript_truncates_long_text),
		cmocka_unit_test(test_transcript_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
