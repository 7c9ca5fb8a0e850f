/* test_rules.c -- unit tests for alerter/rules.c: the shipped rule file,
 * every condition kind's parameters and defaults, FILE:LINE:COL errors,
 * matching (values, lists, not, regex, exists, payload paths, numbers) and
 * durations. Linked with alerter/rules.o (see the Makefile). Rule files go to
 * a private temporary directory removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../alerter/alerter.h"
#include "log.h"

static char tmpdir[] = "/tmp/test_rules.XXXXXX";
static char path[512];
static char err[700];

static const char *yaml(const char *text)
{
	static int seq;
	snprintf(path, sizeof path, "%s/r%d.yaml", tmpdir, seq++);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	return path;
}

static struct ruleset *load(const char *text)
{
	struct ruleset *rs = rules_load(yaml(text), err, sizeof err);
	if (!rs)
		fail_msg("unexpected error: %s", err);
	return rs;
}

/* Expect the load to fail with "<path>:<rest>". */
static void expect_error(const char *text, const char *rest)
{
	char want[1024];
	const char *p = yaml(text);
	assert_null(rules_load(p, err, sizeof err));
	snprintf(want, sizeof want, "%s:%s", p, rest);
	assert_string_equal(err, want);
}

/* A normalised event as the stream carries it. */
static void row_of(struct ev_row *row, const char *fields)
{
	char json[2048];
	struct ev_error ee;
	snprintf(json, sizeof json,
	         "{\"id\":\"6f1c2a4e-1b2c-4d3e-8f90-123456789abc\",\"timestamp\":\"2026-01-01T00:00:00.000Z\","
	         "\"received_at\":\"2026-01-01T00:00:00.001Z\"%s%s}",
	         fields[0] ? "," : "", fields);
	assert_int_equal(ev_row_parse(json, strlen(json), row, &ee), 0);
}

static void test_shipped_file(void **state)
{
	(void)state;
	struct ruleset *rs = rules_load("config/alerts.yaml", err, sizeof err);
	if (!rs)
		fail_msg("config/alerts.yaml: %s", err);
	assert_int_equal(rs->n, 7);
	assert_string_equal(rs->v[0].name, "DangerousCommandBlocked");
	assert_int_equal(rs->v[0].kind, COND_EVERY);
	assert_string_equal(rs->v[1].name, "ToolFailureSpike");
	assert_int_equal(rs->v[1].kind, COND_COUNT);
	assert_int_equal(rs->v[1].window_ms, 30000);
	assert_true(rs->v[1].threshold == 5);
	assert_string_equal(rs->v[1].group_by[0].name, "session_id");
	int kinds[6] = {0};
	for (size_t i = 0; i < rs->n; i++)
		kinds[rs->v[i].kind]++;
	for (int k = 0; k < 6; k++)
		assert_true(kinds[k] > 0); /* every kind is shown */
	rules_free(rs);
}

static void test_kinds_and_defaults(void **state)
{
	(void)state;
	struct ruleset *rs = load("rules:\n"
	                          "  - name: E\n    severity: critical\n    condition: {kind: every}\n"
	                          "  - name: C\n    severity: page\n"
	                          "    condition: {kind: count, window: 1m30s, threshold: 3, op: \">\"}\n"
	                          "  - name: R\n    severity: w\n"
	                          "    condition: {kind: ratio, window: 5m, threshold: 0.25, numerator: {status: error}}\n"
	                          "  - name: Q\n    severity: w\n"
	                          "    condition: {kind: quantile, field: latency_ms, quantile: 0.95, window: 10s,"
	                          " threshold: 100, min_count: 4}\n"
	                          "  - name: S\n    severity: w\n"
	                          "    condition: {kind: sum, field: payload.bytes, threshold: 10}\n"
	                          "  - name: A\n    severity: w\n    condition: {kind: absence, after: 2m}\n");
	assert_int_equal(rs->n, 6);
	assert_int_equal(rs->v[0].hold_ms, 300000); /* every: hold 5m by default */
	assert_int_equal(rs->v[0].match.n, 0);       /* no match: every event */
	assert_int_equal(rs->v[1].window_ms, 90000);
	assert_int_equal(rs->v[1].strict, 1);
	assert_int_equal(rs->v[2].min_count, 1);
	assert_int_equal(rs->v[2].numerator.n, 1);
	assert_true(rs->v[3].quantile == 0.95);
	assert_int_equal(rs->v[3].min_count, 4);
	assert_int_equal(rs->v[3].field.id, F_LATENCY_MS);
	assert_int_equal(rs->v[4].window_ms, 0); /* whole session */
	assert_int_equal(rs->v[4].field.id, F_PAYLOAD);
	assert_string_equal(rs->v[4].field.path, "bytes");
	assert_int_equal(rs->v[4].forget_ms, 24 * 3600000LL);
	assert_int_equal(rs->v[5].after_ms, 120000);
	/* absence ends on Stop / SessionEnd / StopFailure by default */
	struct ev_row row;
	row_of(&row, "\"event_type\":\"Stop\"");
	assert_true(match_event(&rs->v[5].until, &row));
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PreToolUse\"");
	assert_false(match_event(&rs->v[5].until, &row));
	ev_row_free(&row);
	assert_int_equal(rs->v[5].line, 17);
	rules_free(rs);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: count, window: 30x, threshold: 5}\n",
	             "4:38: condition.window: \"30x\" is not a duration (like 250ms, 30s, 5m, 1h30m)");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition:\n      kind: count\n      window: 1m\n",
	             "5:7: condition: kind count needs \"threshold\"");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every, window: 1m}\n",
	             "4:30: condition: \"window\" does not apply to kind every");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: sometimes}\n",
	             "4:23: condition.kind: unknown kind \"sometimes\" (every, count, ratio, quantile, sum, absence)");
	expect_error("rules:\n  - name: X\n    severity: s\n    match: {tol: Bash}\n    condition: {kind: every}\n",
	             "4:13: match.tol: unknown field \"tol\" (event_type, status, tool, session_id, agent_id, "
	             "agent_role, parent_agent_id, source_app, trace_id, latency_ms, cost_usd, "
	             "tokens.input|output|cache_read|cache_creation|total, payload.<path>)");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every}\n"
	             "  - name: X\n    severity: s\n    condition: {kind: every}\n",
	             "5:5: rule name \"X\" used twice (first at line 2)");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every\n",
	             "5:1: did not find expected ',' or '}' while parsing a flow mapping");
	expect_error("rules:\n  - name: X\n    severity: s\n    match: {payload.command: {regex: \"(\"}}\n"
	             "    condition: {kind: every}\n",
	             "4:38: match.payload.command: bad regex: Unmatched ( or \\(");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every}\n"
	             "    annotations: {summary: \"{nope} x\"}\n",
	             "5:28: summary: unknown placeholder {nope} (use value, threshold, window, count, rule, "
	             "severity, or an event field such as session_id or payload.command)");
	expect_error("rules:\n  - name: bad-name\n    severity: s\n    condition: {kind: every}\n",
	             "2:11: name \"bad-name\": use letters, digits and _ (like ToolFailureSpike)");
	expect_error("rules:\n  - name: X\n    condition: {kind: every}\n",
	             "2:5: rule X: missing severity (e.g. critical, page, warning, info)");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: quantile, field: latency_ms, "
	             "quantile: 95, window: 1m, threshold: 1}\n",
	             "4:62: condition.quantile must be in (0, 1], e.g. 0.95");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: sum, field: tool, threshold: 1}\n",
	             "4:35: condition.field: \"tool\" is not a numeric field");
	expect_error("rules:\n  - name: X\n    severity: s\n    severity: t\n    condition: {kind: every}\n",
	             "4:5: rule: key \"severity\" given twice");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every}\n    colour: red\n",
	             "5:5: rule: unknown key \"colour\" (expected one of: name, severity, match, condition, "
	             "group_by, labels, annotations)");
	expect_error("rules: {}\n", "1:8: rules must be a list");
	expect_error("", " empty file: expected a mapping with a \"rules:\" list");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: ratio, window: 1m, "
	             "threshold: 2, numerator: {status: error}}\n",
	             "4:53: condition.threshold of a ratio must be in [0, 1]");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: every}\n    labels: {severity: x}\n",
	             "5:14: labels: \"severity\" is set by the rule itself");
	expect_error("rules:\n  - name: X\n    severity: s\n    condition: {kind: count, window: 1m, threshold: 1,"
	             " op: \"<\"}\n",
	             "4:60: condition.op must be \">\" or \">=\"");
	/* a missing file names the file */
	assert_null(rules_load("/nonexistent/alerts.yaml", err, sizeof err));
	assert_string_equal(err, "/nonexistent/alerts.yaml: cannot open: No such file or directory");
}

static void test_matching(void **state)
{
	(void)state;
	struct ruleset *rs = load("rules:\n"
	                          "  - name: M\n    severity: s\n"
	                          "    match:\n"
	                          "      event_type: [PreToolUse, PostToolUse]\n"
	                          "      tool: {not: [Read, Glob]}\n"
	                          "      payload.command: {regex: \"rm +-rf\"}\n"
	                          "      payload.meta.level: 3\n"
	                          "      agent_id: {exists: false}\n"
	                          "    condition: {kind: every}\n");
	const struct match *m = &rs->v[0].match;
	struct ev_row row;
	row_of(&row, "\"event_type\":\"PreToolUse\",\"tool\":\"Bash\","
	             "\"payload\":{\"command\":\"sudo rm  -rf /\",\"meta\":{\"level\":3}}");
	assert_true(match_event(m, &row));
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PreToolUse\",\"tool\":\"Read\","
	             "\"payload\":{\"command\":\"rm -rf /\",\"meta\":{\"level\":3}}");
	assert_false(match_event(m, &row)); /* tool excluded */
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"Stop\",\"tool\":\"Bash\","
	             "\"payload\":{\"command\":\"rm -rf /\",\"meta\":{\"level\":3}}");
	assert_false(match_event(m, &row)); /* event type */
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PostToolUse\",\"tool\":\"Bash\","
	             "\"payload\":{\"command\":\"ls\",\"meta\":{\"level\":3}}");
	assert_false(match_event(m, &row)); /* regex */
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PostToolUse\",\"tool\":\"Bash\",\"agent_id\":\"a1\","
	             "\"payload\":{\"command\":\"rm -rf x\",\"meta\":{\"level\":3}}");
	assert_false(match_event(m, &row)); /* exists: false */
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PostToolUse\",\"tool\":\"Bash\","
	             "\"payload\":{\"command\":\"rm -rf x\",\"meta\":{\"level\":4}}");
	assert_false(match_event(m, &row)); /* number compared as text */
	ev_row_free(&row);
	row_of(&row, "\"event_type\":\"PostToolUse\",\"tool\":\"Bash\",\"payload\":{\"command\":\"rm -rf x\"}");
	assert_false(match_event(m, &row)); /* missing payload path */
	ev_row_free(&row);
	rules_free(rs);
}

static void test_fields(void **state)
{
	(void)state;
	struct field_ref f;
	struct ev_row row;
	double d;
	char buf[64];
	const char *t;
	row_of(&row, "\"event_type\":\"PostToolUse\",\"latency_ms\":12.5,\"cost_usd\":0.25,"
	             "\"tokens\":{\"input\":10,\"output\":20,\"cache_read\":5},"
	             "\"payload\":{\"n\":\"42\",\"ok\":true}");
	assert_int_equal(field_parse("tokens.total", &f), 0);
	assert_int_equal(field_number(&row, &f, &d), 0);
	assert_true(d == 35);
	field_free(&f);
	assert_int_equal(field_parse("tokens.cache_creation", &f), 0);
	assert_int_equal(field_number(&row, &f, &d), -1); /* absent */
	field_free(&f);
	assert_int_equal(field_parse("payload.n", &f), 0);
	assert_int_equal(field_number(&row, &f, &d), 0); /* numeric string */
	assert_true(d == 42);
	field_free(&f);
	assert_int_equal(field_parse("payload.ok", &f), 0);
	assert_int_equal(field_text(&row, &f, &t, buf, sizeof buf), 0);
	assert_string_equal(t, "true");
	field_free(&f);
	assert_int_equal(field_parse("latency_ms", &f), 0);
	assert_int_equal(field_text(&row, &f, &t, buf, sizeof buf), 0);
	assert_string_equal(t, "12.5");
	field_free(&f);
	assert_int_equal(field_parse("payload.", &f), -1);
	assert_int_equal(field_parse("payload.a..b", &f), -1);
	assert_int_equal(field_parse("nope", &f), -1);
	ev_row_free(&row);
}

static void test_durations(void **state)
{
	(void)state;
	char buf[32];
	assert_int_equal(parse_duration("30s"), 30000);
	assert_int_equal(parse_duration("250ms"), 250);
	assert_int_equal(parse_duration("1h30m"), 5400000);
	assert_int_equal(parse_duration("2"), 2000);
	assert_int_equal(parse_duration("0.5"), 500);
	assert_int_equal(parse_duration("1d"), 86400000);
	assert_int_equal(parse_duration("5x"), -1);
	assert_int_equal(parse_duration("m"), -1);
	assert_int_equal(parse_duration(""), -1);
	assert_int_equal(parse_duration("-1s"), -1);
	format_duration(90000, buf, sizeof buf);
	assert_string_equal(buf, "1m30s");
	format_duration(30000, buf, sizeof buf);
	assert_string_equal(buf, "30s");
	format_duration(1500, buf, sizeof buf);
	assert_string_equal(buf, "1s500ms");
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_file), cmocka_unit_test(test_kinds_and_defaults),
		cmocka_unit_test(test_errors),       cmocka_unit_test(test_matching),
		cmocka_unit_test(test_fields),       cmocka_unit_test(test_durations),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed;
}
