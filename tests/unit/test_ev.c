/* test_ev.c -- unit tests for the event model (common/ev.c): validation,
 * normalisation, time parsing, UTF-8, UUIDs and typed rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ev.h"

static const int64_t NOW = 1795400000000LL; /* 2026-11-24T... */

static cJSON *norm(const char *json, int expect_ok, struct ev_error *err)
{
	cJSON *o = cJSON_Parse(json);
	assert_non_null(o);
	int rc = ev_normalise(o, NOW, &ev_default_limits, err);
	assert_int_equal(rc, expect_ok ? 0 : -1);
	return o;
}

static const char *str(cJSON *o, const char *k)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_minimal_event_gets_defaults(void **state)
{
	(void)state;
	struct ev_error e;
	cJSON *o = norm("{\"event_type\":\"PostToolUse\",\"payload\":{\"success\":false}}", 1, &e);
	assert_true(ev_uuid_valid(str(o, "id")));
	assert_string_equal(str(o, "event_type"), "PostToolUse");
	assert_string_equal(str(o, "status"), "error");
	char iso[32];
	ev_format_iso8601(NOW, iso);
	assert_string_equal(str(o, "timestamp"), iso);
	assert_string_equal(str(o, "received_at"), iso);
	/* canonical key order: id first, payload last */
	assert_string_equal(o->child->string, "id");
	cJSON *last = o->child;
	while (last->next)
		last = last->next;
	assert_string_equal(last->string, "payload");
	cJSON_Delete(o);
}

static void test_status_derivation(void **state)
{
	(void)state;
	struct ev_error e;
	struct { const char *json, *status; } cases[] = {
		{"{\"event_type\":\"PostToolUseFailure\"}", "error"},
		{"{\"event_type\":\"PostToolUse\",\"payload\":{\"success\":true}}", "success"},
		{"{\"event_type\":\"PreToolUse\",\"payload\":{\"blocked\":true}}", "blocked"},
		{"{\"event_type\":\"X\",\"payload\":{\"error\":\"boom\"}}", "error"},
		{"{\"event_type\":\"X\",\"payload\":{\"error\":null}}", "success"},
		{"{\"event_type\":\"X\",\"status\":\"BLOCKED\"}", "blocked"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cJSON *o = norm(cases[i].json, 1, &e);
		assert_string_equal(str(o, "status"), cases[i].status);
		cJSON_Delete(o);
	}
}

static void test_unknown_fields_move_into_payload(void **state)
{
	(void)state;
	struct ev_error e;
	cJSON *o = norm("{\"event_type\":\"Stop\",\"hook_event_name\":\"Stop\",\"payload\":{\"a\":1}}", 1, &e);
	assert_null(cJSON_GetObjectItem(o, "hook_event_name"));
	cJSON *p = cJSON_GetObjectItem(o, "payload");
	assert_string_equal(str(p, "hook_event_name"), "Stop");
	assert_int_equal(cJSON_GetObjectItem(p, "a")->valueint, 1);
	cJSON_Delete(o);
}

static void test_tokens_aliases_and_numbers(void **state)
{
	(void)state;
	struct ev_error e;
	cJSON *o = norm("{\"event_type\":\"Stop\",\"tokens\":{\"input_tokens\":5,\"cache_read_input_tokens\":7},"
	                "\"latency_ms\":1.5,\"cost_usd\":0.25}", 1, &e);
	cJSON *t = cJSON_GetObjectItem(o, "tokens");
	assert_int_equal(cJSON_GetObjectItem(t, "input")->valueint, 5);
	assert_int_equal(cJSON_GetObjectItem(t, "cache_read")->valueint, 7);
	assert_null(cJSON_GetObjectItem(t, "input_tokens"));
	cJSON_Delete(o);
}

static void expect_error(const char *json, int status, const char *field, const char *frag)
{
	struct ev_error e;
	cJSON *o = norm(json, 0, &e);
	assert_int_equal(e.status, status);
	assert_string_equal(e.field, field);
	if (!strstr(e.problem, frag))
		fail_msg("problem \"%s\" lacks \"%s\"", e.problem, frag);
	cJSON_Delete(o);
}

static void test_errors_name_field_and_problem(void **state)
{
	(void)state;
	expect_error("{}", 400, "event_type", "required");
	expect_error("[]", 400, "", "JSON object");
	expect_error("{\"event_type\":\"a b\"}", 400, "event_type", "letters");
	expect_error("{\"event_type\":\"A\",\"latency_ms\":-0.5}", 400, "latency_ms", ">= 0");
	expect_error("{\"event_type\":\"A\",\"timestamp\":\"soon\"}", 400, "timestamp", "ISO-8601");
	expect_error("{\"event_type\":\"A\",\"timestamp\":\"1999-12-31T23:59:59Z\"}", 400, "timestamp", "range");
	expect_error("{\"event_type\":\"A\",\"id\":\"123\"}", 400, "id", "UUID");
	expect_error("{\"event_type\":\"A\",\"agent_id\":[]}", 400, "agent_id", "string");
	expect_error("{\"event_type\":\"A\",\"tokens\":{\"output\":1.5}}", 400, "tokens.output", "integer");
	expect_error("{\"event_type\":\"A\",\"payload\":\"x\"}", 400, "payload", "object");
}

static void test_depth_limit(void **state)
{
	(void)state;
	char buf[512] = "{\"event_type\":\"A\",\"payload\":";
	for (int i = 0; i < 40; i++)
		strcat(buf, "[");
	for (int i = 0; i < 40; i++)
		strcat(buf, "]");
	strcat(buf, "}");
	struct ev_error e;
	cJSON *o = norm(buf, 0, &e);
	assert_int_equal(e.status, 400);
	assert_non_null(strstr(e.problem, "nesting"));
	cJSON_Delete(o);
}

static void test_event_size_limit_is_413(void **state)
{
	(void)state;
	struct ev_limits lim = ev_default_limits;
	lim.max_event_bytes = 300;
	char json[600];
	snprintf(json, sizeof json, "{\"event_type\":\"A\",\"payload\":{\"x\":\"%0400d\"}}", 1);
	cJSON *o = cJSON_Parse(json);
	char *out = NULL;
	size_t len;
	struct ev_error e;
	assert_int_equal(ev_normalise_print(o, NOW, &lim, &out, &len, &e), -1);
	assert_int_equal(e.status, 413);
	assert_null(out);
	cJSON_Delete(o);
}

/* One size limit: the status, the field path and the limit in the message. */
static void expect_limit(const struct ev_limits *lim, const char *json, const char *field,
                         const char *frag)
{
	cJSON *o = cJSON_Parse(json);
	assert_non_null(o);
	struct ev_error e;
	assert_int_equal(ev_normalise(o, NOW, lim, &e), -1);
	assert_int_equal(e.status, 413);
	if (strcmp(e.field, field))
		fail_msg("field \"%s\", want \"%s\" (%s)", e.field, field, e.problem);
	if (!strstr(e.problem, frag))
		fail_msg("problem \"%s\" lacks \"%s\"", e.problem, frag);
	cJSON_Delete(o);
}

static void test_string_field_array_limits(void **state)
{
	(void)state;
	struct ev_limits lim = ev_default_limits;
	lim.max_string = 12; /* "event_type" is 10 */
	lim.max_members = 3;
	lim.max_array = 4;
	expect_limit(&lim, "{\"event_type\":\"A\",\"payload\":{\"cmd\":\"1234567890123\"}}", "payload.cmd",
	             "string is 13 bytes, more than the 12-byte limit");
	expect_limit(&lim, "{\"event_type\":\"A\",\"payload\":{\"l\":[\"ok\",{\"deep\":\"0123456789abc\"}]}}",
	             "payload.l[1].deep", "12-byte limit");
	expect_limit(&lim, "{\"event_type\":\"A\",\"payload\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}}",
	             "payload", "object has 5 fields, more than the 3-field limit");
	expect_limit(&lim, "{\"event_type\":\"A\",\"payload\":{\"x\":{\"files\":[1,2,3,4,5,6]}}}",
	             "payload.x.files", "array has 6 elements, more than the 4-element limit");
	expect_limit(&lim, "{\"event_type\":\"A\",\"payload\":{\"averyveryverylongname\":1}}", "payload",
	             "field name is 21 bytes");
	/* the event object itself counts its fields */
	expect_limit(&lim, "{\"event_type\":\"A\",\"a\":1,\"b\":2,\"c\":3}", "", "4 fields");
	/* at the limits: accepted */
	cJSON *o = cJSON_Parse("{\"event_type\":\"A\",\"payload\":{\"s\":\"123456789012\",\"l\":[1,2,3,4]}}");
	struct ev_error e;
	assert_int_equal(ev_normalise(o, NOW, &lim, &e), 0);
	cJSON_Delete(o);
}

static void test_time_parsing(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(ev_parse_iso8601("2026-01-02T03:04:05Z", &ms), 0);
	assert_int_equal(ms, 1767323045000LL);
	assert_int_equal(ev_parse_iso8601("2026-01-02T03:04:05.678+01:00", &ms), 0);
	assert_int_equal(ms, 1767323045678LL - 3600000);
	assert_int_equal(ev_parse_iso8601("2026-01-02 03:04:05.1", &ms), 0);
	assert_int_equal(ms, 1767323045100LL);
	assert_int_equal(ev_parse_iso8601("2024-02-29T00:00:00Z", &ms), 0);
	assert_int_equal(ev_parse_iso8601("2023-02-29T00:00:00Z", &ms), -1);
	assert_int_equal(ev_parse_iso8601("2026-13-01T00:00:00Z", &ms), -1);
	assert_int_equal(ev_parse_iso8601("2026-01-01T00:00:00Zjunk", &ms), -1);
	assert_int_equal(ev_parse_iso8601("2026-01-01", &ms), -1);
	cJSON *n = cJSON_CreateNumber(1767323045.5); /* seconds */
	assert_int_equal(ev_parse_time(n, &ms), 0);
	assert_int_equal(ms, 1767323045500LL);
	cJSON_SetNumberValue(n, 1767323045123.0); /* milliseconds */
	assert_int_equal(ev_parse_time(n, &ms), 0);
	assert_int_equal(ms, 1767323045123LL);
	cJSON_Delete(n);
	char iso[32];
	ev_format_iso8601(1767323045678LL, iso);
	assert_string_equal(iso, "2026-01-02T03:04:05.678Z");
}

static void test_utf8(void **state)
{
	(void)state;
	size_t bad = 0;
	assert_true(ev_utf8_valid("plain ascii", 11, &bad));
	assert_true(ev_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, &bad));
	assert_false(ev_utf8_valid("ab\xff", 3, &bad));
	assert_int_equal(bad, 2);
	assert_false(ev_utf8_valid("\xc0\xaf", 2, &bad));        /* overlong */
	assert_false(ev_utf8_valid("\xed\xa0\x80", 3, &bad));    /* surrogate */
	assert_false(ev_utf8_valid("\xf4\x90\x80\x80", 4, &bad)); /* > U+10FFFF */
	assert_false(ev_utf8_valid("x\xe2\x82", 3, &bad));       /* truncated */
	assert_int_equal(bad, 1);
}

static void test_uuid(void **state)
{
	(void)state;
	char a[37], b[37];
	int64_t before = ev_now_ms();
	ev_uuid_v7(a);
	ev_uuid_v7(b);
	int64_t after = ev_now_ms();
	assert_true(ev_uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '7');
	assert_true(strchr("89ab", a[19]) != NULL);
	/* the first 48 bits are the time in ms: 8 + 4 hex digits */
	char hex[13];
	memcpy(hex, a, 8);
	memcpy(hex + 8, a + 9, 4);
	hex[12] = '\0';
	int64_t ms = (int64_t)strtoll(hex, NULL, 16);
	assert_true(ms >= before && ms <= after);
	/* ids made in later milliseconds sort after earlier ones */
	char c[37];
	while (ev_now_ms() == after)
		;
	ev_uuid_v7(c);
	assert_true(strcmp(a, c) < 0 && strcmp(b, c) < 0);
	assert_false(ev_uuid_valid("0000-0000"));
	assert_false(ev_uuid_valid("zzzzzzzz-0000-0000-0000-000000000000"));
}

static void test_row_roundtrip(void **state)
{
	(void)state;
	struct ev_error e;
	cJSON *o = norm("{\"event_type\":\"PostToolUse\",\"session_id\":\"s\",\"tool\":\"Bash\","
	                "\"latency_ms\":3,\"tokens\":{\"output\":9},\"payload\":{\"k\":\"v\"}}", 1, &e);
	char *s = cJSON_PrintUnformatted(o);
	struct ev_row row;
	assert_int_equal(ev_row_parse(s, strlen(s), &row, &e), 0);
	assert_string_equal(row.session_id, "s");
	assert_string_equal(row.tool, "Bash");
	assert_true(row.has_latency);
	assert_true(row.has_tokens[1]);
	assert_false(row.has_tokens[0]);
	assert_int_equal(row.tokens[1], 9);
	assert_string_equal(row.payload, "{\"k\":\"v\"}");
	assert_int_equal(row.ts_ms, NOW);
	ev_row_free(&row);
	ev_row_free(NULL);
	assert_int_equal(ev_row_parse("{\"id\":\"x\"}", 10, &row, &e), -1);
	assert_int_equal(ev_row_parse("nope", 4, &row, &e), -1);
	free(s);
	cJSON_Delete(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_event_gets_defaults),
		cmocka_unit_test(test_status_derivation),
		cmocka_unit_test(test_unknown_fields_move_into_payload),
		cmocka_unit_test(test_tokens_aliases_and_numbers),
		cmocka_unit_test(test_errors_name_field_and_problem),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_event_size_limit_is_413),
		cmocka_unit_test(test_string_field_array_limits),
		cmocka_unit_test(test_time_parsing),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_row_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
