/* test_filter.c -- unit tests for the streamer's filter grammar and matcher
 * (streamer/filter.c) and for the event records filters are matched against
 * (streamer/event.c): parsing, every error with its offset, escapes,
 * prefixes, negation, AND/OR, absent fields, limits; and the index of
 * clients by filter (streamer/route.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../streamer/filter.h"
#include "../../streamer/streamer.h"

static struct filter parse_ok(const char *s)
{
	struct filter f;
	char err[256] = "";
	int rc = flt_parse(s, strlen(s), &f, err, sizeof err);
	if (rc != 0)
		fail_msg("flt_parse(\"%s\") failed: %s", s, err);
	return f;
}

/* Parse must fail, with a message containing `want`. */
static void parse_bad(const char *s, const char *want)
{
	struct filter f;
	char err[256] = "";
	assert_int_equal(flt_parse(s, strlen(s), &f, err, sizeof err), -1);
	if (!strstr(err, want))
		fail_msg("flt_parse(\"%s\"): error \"%s\" lacks \"%s\"", s, err, want);
	assert_null(f.c);
	assert_null(f.text);
	assert_int_equal(f.n, 0);
}

/* Fields of an event, as pairs "key", "value", ..., NULL. */
static struct flt_fields fields(const char *k, ...)
{
	struct flt_fields ev;
	va_list ap;
	memset(&ev, 0, sizeof ev);
	va_start(ap, k);
	for (; k; k = va_arg(ap, const char *)) {
		const char *v = va_arg(ap, const char *);
		int found = 0;
		for (int i = 0; i < FK_COUNT; i++) {
			if (strcmp(flt_key_name((enum flt_key)i), k) == 0) {
				ev.v[i] = v;
				ev.len[i] = strlen(v);
				found = 1;
			}
		}
		if (!found)
			fail_msg("no key %s", k);
	}
	va_end(ap);
	return ev;
}

static int matches(const char *flt, struct flt_fields ev)
{
	struct filter f = parse_ok(flt);
	int m = flt_match(&f, &ev);
	flt_free(&f);
	return m;
}

static void test_empty_filter_matches_everything(void **state)
{
	(void)state;
	struct filter f = parse_ok("");
	assert_true(flt_is_all(&f));
	assert_string_equal(f.text, "");
	struct flt_fields none = fields(NULL);
	assert_true(flt_match(&f, &none));
	struct flt_fields some = fields("session", "s1", "type", "Stop", NULL);
	assert_true(flt_match(&f, &some));
	flt_free(&f);
	flt_free(&f); /* twice is harmless */
}

static void test_single_keys(void **state)
{
	(void)state;
	struct flt_fields ev = fields("session", "s1", "agent", "a1", "parent", "main", "type",
	                              "PostToolUse", "tool", "Bash", "status", "error", "role",
	                              "subagent", "app", "claude-code", NULL);
	assert_true(matches("session:s1", ev));
	assert_false(matches("session:s2", ev));
	assert_true(matches("agent:a1", ev));
	assert_true(matches("parent:main", ev));
	assert_true(matches("type:PostToolUse", ev));
	assert_false(matches("type:posttooluse", ev)); /* case-sensitive */
	assert_true(matches("tool:Bash", ev));
	assert_true(matches("status:error", ev));
	assert_true(matches("role:subagent", ev));
	assert_true(matches("app:claude-code", ev));
	assert_false(matches("session:s", ev)); /* exact, not prefix */
	assert_false(matches("session:s1x", ev));
}

static void test_and_or_combinations(void **state)
{
	(void)state;
	struct flt_fields ev = fields("session", "s1", "type", "Stop", "tool", "Read", NULL);
	assert_true(matches("session:s1,type:Stop", ev));
	assert_false(matches("session:s1,type:PreToolUse", ev));
	assert_true(matches("type:PreToolUse|Stop", ev));
	assert_true(matches("session:s0|s1|s2,type:PreToolUse|Stop,tool:Read", ev));
	assert_false(matches("session:s0|s2,type:Stop", ev));
	/* the same key twice is two clauses, both must hold */
	assert_false(matches("type:Stop,type:PreToolUse", ev));
	assert_true(matches("type:Stop,type:Stop|X", ev));
	/* spaces before a clause are allowed */
	assert_true(matches("session:s1, type:Stop", ev));
}

static void test_absent_fields(void **state)
{
	(void)state;
	struct flt_fields ev = fields("session", "s1", NULL);
	assert_false(matches("tool:Bash", ev));
	assert_false(matches("tool:*", ev)); /* any value, but present */
	assert_true(matches("!tool:Bash", ev));
	assert_true(matches("!tool:*", ev)); /* no tool at all */
	struct flt_fields with = fields("tool", "Bash", NULL);
	assert_true(matches("tool:*", with));
	assert_false(matches("!tool:*", with));
}

static void test_prefix_and_negation(void **state)
{
	(void)state;
	struct flt_fields ev = fields("tool", "mcp__github__create_issue", "type", "PreToolUse",
	                              "status", "success", NULL);
	assert_true(matches("tool:mcp__*", ev));
	assert_true(matches("tool:mcp__github__*", ev));
	assert_false(matches("tool:mcp__slack__*", ev));
	assert_true(matches("tool:mcp__github__create_issue*", ev)); /* prefix of itself */
	assert_true(matches("!status:error", ev));
	assert_false(matches("!status:success|error", ev));
	assert_true(matches("type:Pre*|Post*,!tool:Bash", ev));
	assert_false(matches("!type:Pre*", ev));
}

static void test_escapes(void **state)
{
	(void)state;
	struct flt_fields ev = fields("session", "a,b|c*d\\e:f", NULL);
	assert_true(matches("session:a\\,b\\|c\\*d\\\\e:f", ev));
	assert_true(matches("session:a\\,b*", ev));
	struct filter f = parse_ok("session:x\\*");
	assert_int_equal(f.c[0].v[0].prefix, 0); /* escaped star is literal */
	assert_string_equal(f.c[0].v[0].s, "x*");
	flt_free(&f);
	struct flt_fields star = fields("session", "x*", NULL);
	assert_true(matches("session:x\\*", star));
	struct flt_fields xy = fields("session", "xy", NULL);
	assert_false(matches("session:x\\*", xy));
	assert_true(matches("session:x*", xy));
	/* a colon inside a value needs no escape */
	struct flt_fields colon = fields("agent", "host:1", NULL);
	assert_true(matches("agent:host:1", colon));
}

static void test_parsed_structure(void **state)
{
	(void)state;
	struct filter f = parse_ok("!type:A|B*,session:s1");
	assert_int_equal(f.n, 2);
	assert_int_equal(f.c[0].key, FK_TYPE);
	assert_int_equal(f.c[0].neg, 1);
	assert_int_equal(f.c[0].n, 2);
	assert_string_equal(f.c[0].v[0].s, "A");
	assert_int_equal(f.c[0].v[0].prefix, 0);
	assert_string_equal(f.c[0].v[1].s, "B");
	assert_int_equal(f.c[0].v[1].prefix, 1);
	assert_int_equal(f.c[1].key, FK_SESSION);
	assert_int_equal(f.c[1].neg, 0);
	assert_string_equal(f.text, "!type:A|B*,session:s1");
	assert_false(flt_is_all(&f));
	flt_free(&f);
	assert_string_equal(flt_key_field(FK_ROLE), "agent_role");
	assert_string_equal(flt_key_name(FK_APP), "app");
}

static void test_errors_name_the_problem_and_offset(void **state)
{
	(void)state;
	parse_bad("sesion:x", "offset 0: unknown key \"sesion\"");
	parse_bad("session:x,bogus:1", "offset 10: unknown key \"bogus\"");
	parse_bad("session", "expected key:value, got \"session\"");
	parse_bad("session:", "offset 8: empty value");
	parse_bad("session:a|", "offset 10: empty value");
	parse_bad("session:a||b", "offset 10: empty value");
	parse_bad(",session:a", "offset 0: empty clause");
	parse_bad("session:a,,type:b", "offset 10: empty clause");
	parse_bad("session:a,", "empty clause after the last comma");
	parse_bad("session:a\\", "dangling backslash");
	parse_bad(":x", "offset 0: empty clause");
	parse_bad("!", "empty clause");
	parse_bad("session:a,b", "got \"b\"");
	parse_bad("Session:a", "unknown key \"Session\"");
}

static void test_limits(void **state)
{
	(void)state;
	char buf[FLT_MAX_TEXT + 64];
	struct filter f;
	char err[256];
	/* too long */
	memset(buf, 'x', sizeof buf);
	memcpy(buf, "session:", 8);
	assert_int_equal(flt_parse(buf, FLT_MAX_TEXT + 1, &f, err, sizeof err), -1);
	assert_non_null(strstr(err, "longer than"));
	/* exactly the limit is fine */
	assert_int_equal(flt_parse(buf, FLT_MAX_TEXT, &f, err, sizeof err), 0);
	flt_free(&f);
	/* clauses */
	size_t n = 0;
	for (int i = 0; i <= FLT_MAX_CLAUSES; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%stype:t%d", i ? "," : "", i);
	assert_int_equal(flt_parse(buf, n, &f, err, sizeof err), -1);
	assert_non_null(strstr(err, "more than 16 clauses"));
	/* values */
	n = (size_t)snprintf(buf, sizeof buf, "type:v");
	for (int i = 0; i < FLT_MAX_VALUES; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "|v%d", i);
	assert_int_equal(flt_parse(buf, n, &f, err, sizeof err), -1);
	assert_non_null(strstr(err, "more than 64 values"));
	/* NUL inside */
	assert_int_equal(flt_parse("type:a\0b", 8, &f, err, sizeof err), -1);
	assert_non_null(strstr(err, "offset 6: NUL byte"));
	/* a tiny error buffer is never overrun */
	char tiny[8];
	assert_int_equal(flt_parse("nope:x", 6, &f, tiny, sizeof tiny), -1);
	assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

static void test_event_records(void **state)
{
	(void)state;
	const char *json = "{\"id\":\"u1\",\"event_type\":\"PostToolUse\",\"session_id\":\"s1\","
	                   "\"agent_id\":\"sub\",\"parent_agent_id\":\"main\",\"tool\":\"Bash\","
	                   "\"status\":\"error\",\"agent_role\":\"subagent\",\"payload\":{\"x\":1}}";
	struct sev *e = sev_new("1700000000000-7", json, strlen(json));
	assert_non_null(e);
	assert_int_equal(e->refs, 1);
	assert_int_equal(e->id.ms, 1700000000000ULL);
	assert_int_equal(e->id.seq, 7);
	char want[1024];
	snprintf(want, sizeof want, "{\"type\":\"event\",\"id\":\"1700000000000-7\",\"event\":%s}", json);
	assert_string_equal(e->msg, want);
	assert_int_equal(e->len, strlen(want));
	assert_string_equal(e->f.v[FK_SESSION], "s1");
	assert_string_equal(e->f.v[FK_PARENT], "main");
	assert_string_equal(e->f.v[FK_ROLE], "subagent");
	assert_null(e->f.v[FK_APP]);
	assert_true(matches("session:s1,tool:Bash,status:error,!app:*", e->f));
	assert_false(matches("app:*", e->f));
	e->refs++;
	sev_unref(e);
	assert_int_equal(e->refs, 1);
	sev_unref(e);
	sev_unref(NULL);

	/* not an object, not JSON, bad id: refused */
	assert_null(sev_new("1-0", "[1,2]", 5));
	assert_null(sev_new("1-0", "{\"a\":", 5));
	assert_null(sev_new("x-0", "{}", 2));
	assert_null(sev_new("1-0", NULL, 0));
	/* non-string fields are treated as absent */
	e = sev_new("2-0", "{\"session_id\":5,\"tool\":null}", 28);
	assert_non_null(e);
	assert_null(e->f.v[FK_SESSION]);
	assert_null(e->f.v[FK_TOOL]);
	sev_unref(e);
}

/* route.c: the candidates for an event include every client whose filter
 * matches it, none twice, and leave when removed. */
static void test_route_offers_every_match_once(void **state)
{
	(void)state;
	static const char *const filters[] = {
		"", "session:s1", "session:s2|s1", "session:s1,type:Stop", "agent:a1", "agent:a2|a1,session:s9",
		"session:s*", "!session:s1", "type:PostToolUse", "session:s1|s1", "session:s3",
	};
	enum { NF = sizeof filters / sizeof filters[0] };
	static const char *const events[] = {
		"{\"session_id\":\"s1\",\"agent_id\":\"a1\",\"event_type\":\"PostToolUse\"}",
		"{\"session_id\":\"s2\",\"agent_id\":\"a2\",\"event_type\":\"Stop\"}",
		"{\"session_id\":\"s9\",\"event_type\":\"Stop\"}",
		"{\"agent_id\":\"a1\"}",
		"{}",
	};
	struct filter f[NF];
	struct route *r = route_new();
	assert_non_null(r);
	for (size_t i = 0; i < NF; i++) {
		f[i] = parse_ok(filters[i]);
		assert_int_equal(route_add(r, (void *)(uintptr_t)(i + 1), &f[i]), 0);
	}
	for (int round = 0; round < 2; round++) {
		for (size_t k = 0; k < sizeof events / sizeof events[0]; k++) {
			struct sev *e = sev_new("1-1", events[k], strlen(events[k]));
			assert_non_null(e);
			const struct route_list *ls[3];
			size_t nl = route_lookup(r, &e->f, ls), seen[NF + 1] = {0};
			for (size_t l = 0; l < nl; l++)
				for (size_t j = 0; j < ls[l]->n; j++)
					seen[(uintptr_t)ls[l]->v[j]]++;
			for (size_t i = 0; i < NF; i++) {
				int removed = round == 1 && i % 2 == 1;
				if (seen[i + 1] > 1)
					fail_msg("event %zu offered to \"%s\" %zu times", k, filters[i], seen[i + 1]);
				if (removed && seen[i + 1])
					fail_msg("event %zu offered to removed \"%s\"", k, filters[i]);
				if (!removed && flt_match(&f[i], &e->f) && !seen[i + 1])
					fail_msg("event %zu matches \"%s\" but was not offered", k, filters[i]);
			}
			sev_unref(e);
		}
		if (round == 0)
			for (size_t i = 1; i < NF; i += 2)
				route_remove(r, (void *)(uintptr_t)(i + 1), &f[i]);
	}
	/* an s3 event meets the scan list and s3's watcher only */
	const char *json = "{\"session_id\":\"s3\"}";
	struct sev *e = sev_new("1-2", json, strlen(json));
	const struct route_list *ls[3];
	size_t nl = route_lookup(r, &e->f, ls), total = 0;
	for (size_t l = 0; l < nl; l++)
		total += ls[l]->n;
	assert_int_equal(total, 4); /* "", "session:s*", "type:PostToolUse" (scanned), "session:s3" */
	sev_unref(e);
	route_remove(r, (void *)(uintptr_t)99, &f[1]); /* absent: a no-op */
	route_free(r);
	route_free(NULL);
	for (size_t i = 0; i < NF; i++)
		flt_free(&f[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_filter_matches_everything),
		cmocka_unit_test(test_single_keys),
		cmocka_unit_test(test_and_or_combinations),
		cmocka_unit_test(test_absent_fields),
		cmocka_unit_test(test_prefix_and_negation),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_parsed_structure),
		cmocka_unit_test(test_errors_name_the_problem_and_offset),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_event_records),
		cmocka_unit_test(test_route_offers_every_match_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
