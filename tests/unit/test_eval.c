/* test_eval.c -- unit tests for alerter/eval.c, the window and condition
 * logic: each condition kind firing and resolving on a made-up clock,
 * grouping by labels, late and out-of-order events, re-sends, the
 * "resolve only after delivery" rule, SIGHUP-style reloads that keep window
 * state, memory bounds, and the annotations (templates, dashboard link).
 * Linked with alerter/rules.o and eval.o (see the Makefile); notes are
 * captured by fake hooks instead of a sender. */
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

static char tmpdir[] = "/tmp/test_eval.XXXXXX";
static char err[700];

/* ---- captured notes ---- */
struct seen {
	char alertname[64];
	char labels[512]; /* "k=v,k=v" */
	char summary[512], description[512], dashboard[512], value[64];
	int firing;
	int64_t starts, ends, trigger;
	uint64_t seq;
};
static struct seen notes[256];
static size_t nnotes;
static uint64_t next_seq = 1, delivered_upto = UINT64_MAX;

static uint64_t fake_send(void *ud, const struct alert_note *n)
{
	(void)ud;
	assert_true(nnotes < 256);
	struct seen *s = &notes[nnotes++];
	memset(s, 0, sizeof *s);
	snprintf(s->alertname, sizeof s->alertname, "%s", n->label_values[0]);
	size_t o = 0;
	for (size_t i = 0; i < n->nlabels; i++)
		o += (size_t)snprintf(s->labels + o, sizeof s->labels - o, "%s%s=%s", i ? "," : "",
		                      n->label_names[i], n->label_values[i]);
	for (size_t i = 0; i < n->nann; i++) {
		char *dst = NULL;
		size_t len = 0;
		if (strcmp(n->ann_names[i], "summary") == 0)
			dst = s->summary, len = sizeof s->summary;
		else if (strcmp(n->ann_names[i], "description") == 0)
			dst = s->description, len = sizeof s->description;
		else if (strcmp(n->ann_names[i], "dashboard") == 0)
			dst = s->dashboard, len = sizeof s->dashboard;
		else if (strcmp(n->ann_names[i], "value") == 0)
			dst = s->value, len = sizeof s->value;
		if (dst)
			snprintf(dst, len, "%s", n->ann_values[i]);
	}
	s->firing = n->firing;
	s->starts = n->starts_ms;
	s->ends = n->ends_ms;
	s->trigger = n->trigger_ms;
	s->seq = next_seq++;
	return s->seq;
}

static int fake_delivered(void *ud, uint64_t seq)
{
	(void)ud;
	return delivered_upto != UINT64_MAX ? seq <= delivered_upto : 1;
}

static const struct seen *last(void)
{
	assert_true(nnotes > 0);
	return &notes[nnotes - 1];
}

/* ---- set-up ---- */
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

static struct engine *eng;
static int64_t min_firing; /* engine_opts.min_firing_ms for the next start() */

static struct ruleset *rules_from(const char *text)
{
	static int seq;
	char path[600];
	snprintf(path, sizeof path, "%s/r%d.yaml", tmpdir, seq++);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	struct ruleset *rs = rules_load(path, err, sizeof err);
	if (!rs)
		fail_msg("rules: %s", err);
	return rs;
}

static void start(const char *rules, size_t max_groups, size_t max_samples)
{
	struct engine_opts o = {
		.resend_ms = 60000, .min_firing_ms = min_firing,
		.max_groups = max_groups, .max_samples = max_samples,
		.dashboard_url = "http://127.0.0.1:7071/", .grafana_url = "",
		.external_url = "http://127.0.0.1:7073",
	};
	struct engine_hooks h = {fake_send, fake_delivered, NULL};
	nnotes = 0;
	delivered_upto = UINT64_MAX;
	eng = engine_new(&o, &h);
	assert_non_null(eng);
	engine_set_rules(eng, rules_from(rules), T0);
}

static int teardown(void **state)
{
	(void)state;
	engine_free(eng);
	eng = NULL;
	min_firing = 0;
	return 0;
}

/* Feed one event with event time ts (ms) at wall time now. */
static void feed(int64_t now, int64_t ts, const char *fields)
{
	char json[2048], tsb[32], rb[32];
	struct ev_row row;
	struct ev_error ee;
	ev_format_iso8601(ts, tsb);
	ev_format_iso8601(now, rb);
	snprintf(json, sizeof json,
	         "{\"id\":\"6f1c2a4e-1b2c-4d3e-8f90-123456789abc\",\"timestamp\":\"%s\","
	         "\"received_at\":\"%s\",%s}", tsb, rb, fields);
	assert_int_equal(ev_row_parse(json, strlen(json), &row, &ee), 0);
	engine_event(eng, &row, now);
	ev_row_free(&row);
}

static const char *FAIL_S1 = "\"event_type\":\"PostToolUse\",\"status\":\"error\",\"session_id\":\"s1\","
                             "\"tool\":\"Bash\"";
static const char *FAIL_S2 = "\"event_type\":\"PostToolUse\",\"status\":\"error\",\"session_id\":\"s 2/x\"";
static const char *OK_S1 = "\"event_type\":\"PostToolUse\",\"status\":\"success\",\"session_id\":\"s1\"";

static const char *SPIKE = "rules:\n"
                           "  - name: ToolFailureSpike\n    severity: page\n"
                           "    match: {event_type: [PostToolUse, PostToolUseFailure], status: error}\n"
                           "    condition: {kind: count, window: 30s, threshold: 5}\n"
                           "    group_by: [session_id]\n";

/* ---- tests ---- */

static void test_count_fires_and_resolves(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	for (int i = 0; i < 4; i++)
		feed(T0 + i * 1000, T0 + i * 1000, FAIL_S1);
	feed(T0 + 4500, T0 + 4500, OK_S1);   /* not matched */
	feed(T0 + 4600, T0 + 4600, FAIL_S2); /* another session */
	assert_int_equal(nnotes, 0);
	feed(T0 + 5000, T0 + 5000, FAIL_S1); /* 5th failure within 30 s */
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->alertname, "ToolFailureSpike");
	assert_string_equal(last()->labels, "alertname=ToolFailureSpike,severity=page,session_id=s1");
	assert_true(last()->firing);
	assert_string_equal(last()->value, "5");
	assert_int_equal(last()->starts, T0 + 5000);
	assert_int_equal(last()->ends, T0 + 5000 + 4 * 60000);
	assert_int_equal(last()->trigger, T0 + 5000); /* receipt time of the 5th */
	assert_string_equal(last()->dashboard, "http://127.0.0.1:7071/?session=s1");
	assert_string_equal(last()->summary, "ToolFailureSpike (session_id s1)");
	assert_string_equal(last()->description, "5 matching events in the last 30s (threshold 5)");
	/* a 6th failure keeps it firing without another note (no re-send yet) */
	feed(T0 + 6000, T0 + 6000, FAIL_S1);
	assert_int_equal(nnotes, 1);
	/* 30 s after the first failure the window holds 5: still firing */
	engine_tick(eng, T0 + 30500);
	assert_int_equal(nnotes, 1);
	/* the second one leaves the window at T0+31000: 4 left -> resolved */
	engine_tick(eng, T0 + 31000);
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
	assert_int_equal(last()->ends, T0 + 31000);
	assert_int_equal(engine_firing(eng, "ToolFailureSpike"), 0);
	/* once every sample expired the groups are forgotten */
	engine_tick(eng, T0 + 40000);
	struct engine_stats st;
	engine_get_stats(eng, &st);
	assert_int_equal(st.groups, 0);
	assert_int_equal(st.fired, 1);
	assert_int_equal(st.resolved, 1);
}

static void test_count_late_and_out_of_order(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	/* already older than the window on arrival: not counted */
	for (int i = 0; i < 5; i++)
		feed(T0 + 60000, T0 + 1000 * i, FAIL_S1);
	assert_int_equal(nnotes, 0);
	/* out of order within the window: counted, kept sorted */
	feed(T0 + 60000, T0 + 59000, FAIL_S1);
	feed(T0 + 60000, T0 + 40000, FAIL_S1);
	feed(T0 + 60000, T0 + 50000, FAIL_S1);
	feed(T0 + 60000, T0 + 45000, FAIL_S1);
	/* an event from the future is clamped to now */
	feed(T0 + 60000, T0 + 3600000, FAIL_S1);
	assert_int_equal(nnotes, 1);
	assert_true(last()->firing);
	/* the oldest (T0+40000) leaves at T0+70000 */
	engine_tick(eng, T0 + 69999);
	assert_int_equal(nnotes, 1);
	engine_tick(eng, T0 + 70000);
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
}

static void test_groups_are_independent(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	for (int i = 0; i < 5; i++) {
		feed(T0 + i, T0 + i, FAIL_S1);
		feed(T0 + i, T0 + i, FAIL_S2);
	}
	assert_int_equal(nnotes, 2);
	assert_string_equal(notes[0].labels, "alertname=ToolFailureSpike,severity=page,session_id=s1");
	assert_string_equal(notes[1].labels, "alertname=ToolFailureSpike,severity=page,session_id=s 2/x");
	/* the session id is URL-encoded in the dashboard link */
	assert_string_equal(notes[1].dashboard, "http://127.0.0.1:7071/?session=s%202%2Fx");
	assert_int_equal(engine_firing(eng, "ToolFailureSpike"), 2);
}

static void test_resend_and_delivery(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	delivered_upto = 0; /* Alertmanager unreachable: nothing delivered */
	for (int i = 0; i < 5; i++)
		feed(T0 + i, T0 + i, FAIL_S1);
	assert_int_equal(nnotes, 1);
	uint64_t fire_seq = last()->seq;
	/* the window empties, but the firing note never arrived: keep firing */
	engine_tick(eng, T0 + 40000);
	assert_int_equal(nnotes, 1);
	engine_tick(eng, T0 + 60004);
	assert_int_equal(nnotes, 2); /* re-sent after resend_ms */
	assert_true(last()->firing);
	assert_int_equal(last()->ends, T0 + 60004 + 240000);
	assert_int_equal(last()->trigger, 0); /* re-sends carry no trigger time */
	delivered_upto = fire_seq;
	engine_tick(eng, T0 + 60005);
	assert_int_equal(nnotes, 3);
	assert_false(last()->firing);
}

static void test_min_firing_after_delivery(void **state)
{
	(void)state;
	min_firing = 5000;
	start(SPIKE, 100, 1000);
	for (int i = 0; i < 5; i++)
		feed(T0 + i, T0 + i, FAIL_S1);
	assert_int_equal(nnotes, 1);
	/* first seen delivered at this tick, when the window is already empty:
	 * Alertmanager gets min_firing to notify before the alert resolves */
	engine_tick(eng, T0 + 30004);
	engine_tick(eng, T0 + 35003);
	assert_int_equal(nnotes, 1);
	engine_tick(eng, T0 + 35004);
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
}

static void test_resend_while_firing(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	for (int i = 0; i < 5; i++)
		feed(T0 + 20000, T0 + 20000, FAIL_S1);
	/* keep it firing with a failure every 10 s, ticking every second */
	for (int64_t t = T0 + 21000; t <= T0 + 90000; t += 1000) {
		if ((t - T0) % 10000 == 0)
			for (int i = 0; i < 5; i++)
				feed(t, t, FAIL_S1);
		engine_tick(eng, t);
	}
	assert_int_equal(nnotes, 2); /* fired at 20 s, re-sent at 80 s */
	assert_true(notes[1].firing);
	assert_int_equal(notes[1].starts, T0 + 20000); /* startsAt is kept */
}

static void test_every(void **state)
{
	(void)state;
	start("rules:\n"
	      "  - name: DangerousCommandBlocked\n    severity: critical\n"
	      "    match: {event_type: PreToolUse, status: blocked}\n"
	      "    condition: {kind: every, hold: 1m}\n"
	      "    group_by: [session_id, agent_id, tool]\n"
	      "    labels: {team: security}\n"
	      "    annotations:\n"
	      "      summary: \"Blocked {tool} in {session_id}\"\n"
	      "      description: \"{agent_id} tried {payload.command} ({count}x)\"\n",
	      100, 1000);
	const char *ev = "\"event_type\":\"PreToolUse\",\"status\":\"blocked\",\"session_id\":\"s9\","
	                 "\"tool\":\"Bash\",\"payload\":{\"command\":\"rm -rf /\"}";
	feed(T0 + 1000, T0 + 500, ev);
	assert_int_equal(nnotes, 1);
	assert_true(last()->firing);
	/* no agent_id: the empty label is left out */
	assert_string_equal(last()->labels,
	                    "alertname=DangerousCommandBlocked,severity=critical,session_id=s9,tool=Bash,"
	                    "team=security");
	assert_string_equal(last()->summary, "Blocked Bash in s9");
	assert_string_equal(last()->description, " tried rm -rf / (1x)");
	assert_int_equal(last()->starts, T0 + 500); /* the event's time */
	/* a blocked PreToolUse with another status does not match */
	feed(T0 + 2000, T0 + 2000, "\"event_type\":\"PreToolUse\",\"status\":\"success\",\"session_id\":\"s9\"");
	assert_int_equal(nnotes, 1);
	/* a second one 30 s later extends the hold */
	feed(T0 + 31000, T0 + 31000, ev);
	engine_tick(eng, T0 + 60000);
	assert_int_equal(nnotes, 1);
	engine_tick(eng, T0 + 91000);
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
	/* the next one fires again */
	feed(T0 + 95000, T0 + 95000, ev);
	assert_int_equal(nnotes, 3);
	assert_true(last()->firing);
}

static void test_ratio(void **state)
{
	(void)state;
	start("rules:\n"
	      "  - name: ErrRate\n    severity: warning\n"
	      "    match: {event_type: PostToolUse}\n"
	      "    condition: {kind: ratio, window: 1m, numerator: {status: error}, threshold: 0.5, min_count: 6}\n"
	      "    group_by: [tool]\n",
	      100, 1000);
	const char *bad = "\"event_type\":\"PostToolUse\",\"status\":\"error\",\"tool\":\"Bash\"";
	const char *good = "\"event_type\":\"PostToolUse\",\"status\":\"success\",\"tool\":\"Bash\"";
	for (int i = 0; i < 5; i++)
		feed(T0 + i, T0 + i, bad); /* 100% errors, but fewer than min_count */
	assert_int_equal(nnotes, 0);
	feed(T0 + 10, T0 + 10, good); /* 5/6 */
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->value, "0.8333");
	for (int i = 0; i < 5; i++)
		feed(T0 + 20 + i, T0 + 20 + i, good); /* 5/11 < 0.5 */
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
}

static void test_quantile(void **state)
{
	(void)state;
	/* two rules around the interpolated p95 of the samples below */
	start("rules:\n"
	      "  - name: Slow\n    severity: warning\n"
	      "    match: {event_type: PostToolUse}\n"
	      "    condition: {kind: quantile, field: latency_ms, quantile: 0.95, window: 1m, threshold: 900,"
	      " min_count: 20}\n"
	      "    group_by: [tool]\n"
	      "  - name: Above430\n    severity: info\n"
	      "    condition: {kind: quantile, field: latency_ms, quantile: 0.95, window: 1m, threshold: 430.5,"
	      " min_count: 20}\n"
	      "  - name: Above431\n    severity: info\n"
	      "    condition: {kind: quantile, field: latency_ms, quantile: 0.95, window: 1m, threshold: 431,"
	      " min_count: 20}\n",
	      100, 1000);
	char ev[200];
	/* latencies 10, 20, ..., 190 (19 samples): below min_count */
	for (int i = 1; i < 20; i++) {
		snprintf(ev, sizeof ev, "\"event_type\":\"PostToolUse\",\"tool\":\"Web\",\"latency_ms\":%d", i * 10);
		feed(T0 + i, T0 + i, ev);
	}
	/* an event without latency_ms is no sample */
	feed(T0 + 30, T0 + 30, "\"event_type\":\"PostToolUse\",\"tool\":\"Web\"");
	assert_int_equal(nnotes, 0);
	feed(T0 + 40, T0 + 40, "\"event_type\":\"PostToolUse\",\"tool\":\"Web\",\"latency_ms\":5000");
	/* 20 samples: p95 at rank 18.05 between 190 and 5000 = 190 + 0.05*4810 = 430.5 */
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->alertname, "Above430");
	assert_string_equal(last()->value, "430.5");
	feed(T0 + 50, T0 + 50, "\"event_type\":\"PostToolUse\",\"tool\":\"Web\",\"latency_ms\":5000");
	/* 21 samples: rank 19 -> 5000; Slow and Above431 fire */
	assert_int_equal(nnotes, 3);
	assert_string_equal(notes[1].alertname, "Slow");
	assert_string_equal(notes[1].value, "5000");
	assert_string_equal(notes[1].description,
	                    "quantile 0.95 of latency_ms is 5000 over 21 events in the last 1m (threshold 900)");
	assert_string_equal(notes[2].alertname, "Above431");
	engine_tick(eng, T0 + 60100); /* all gone: resolved */
	assert_int_equal(nnotes, 6);
	assert_false(last()->firing);
}

static void test_sum(void **state)
{
	(void)state;
	start("rules:\n"
	      "  - name: Budget\n    severity: warning\n"
	      "    condition: {kind: sum, field: tokens.total, threshold: 1000, forget: 1h}\n"
	      "    group_by: [session_id]\n"
	      "  - name: CostPerMinute\n    severity: warning\n"
	      "    condition: {kind: sum, field: cost_usd, threshold: 1, window: 1m, op: \">\"}\n",
	      100, 1000);
	feed(T0, T0, "\"event_type\":\"Stop\",\"session_id\":\"b\",\"tokens\":{\"input\":400,\"output\":100},"
	             "\"cost_usd\":0.5");
	assert_int_equal(nnotes, 0);
	feed(T0 + 120000, T0 + 120000,
	     "\"event_type\":\"Stop\",\"session_id\":\"b\",\"tokens\":{\"input\":300,\"cache_read\":200},"
	     "\"cost_usd\":0.5");
	/* tokens: 1000 over the session's life, >= 1000 fires; cost: 0.5 in the last minute */
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->alertname, "Budget");
	assert_string_equal(last()->value, "1000");
	feed(T0 + 130000, T0 + 130000, "\"event_type\":\"Stop\",\"cost_usd\":0.5");
	assert_int_equal(nnotes, 1); /* 1.0 is not > 1 */
	feed(T0 + 140000, T0 + 140000, "\"event_type\":\"Stop\",\"cost_usd\":0.01");
	assert_int_equal(nnotes, 2);
	assert_string_equal(last()->alertname, "CostPerMinute");
	assert_string_equal(last()->labels, "alertname=CostPerMinute,severity=warning");
	engine_tick(eng, T0 + 190001); /* 0.01 left in the window */
	assert_int_equal(nnotes, 4);
	assert_string_equal(notes[2].alertname, "Budget"); /* re-sent after a minute */
	assert_true(notes[2].firing);
	assert_string_equal(last()->alertname, "CostPerMinute");
	assert_false(last()->firing);
	/* the budget alert holds while the session is remembered ... */
	engine_tick(eng, T0 + 120000 + 3600000 - 1);
	assert_int_equal(nnotes, 5);
	assert_true(last()->firing);
	/* ... and resolves when it is forgotten after `forget` of silence */
	engine_tick(eng, T0 + 120000 + 3600000);
	assert_int_equal(nnotes, 6);
	assert_string_equal(last()->alertname, "Budget");
	assert_false(last()->firing);
	struct engine_stats st;
	engine_get_stats(eng, &st);
	assert_int_equal(st.groups, 0);
}

static void test_absence(void **state)
{
	(void)state;
	start("rules:\n"
	      "  - name: AgentStalled\n    severity: warning\n"
	      "    condition: {kind: absence, after: 10m}\n"
	      "    group_by: [session_id]\n",
	      100, 1000);
	feed(T0, T0, "\"event_type\":\"PreToolUse\",\"session_id\":\"quiet\"");
	feed(T0, T0, "\"event_type\":\"PreToolUse\",\"session_id\":\"done\"");
	feed(T0 + 1000, T0 + 1000, "\"event_type\":\"Stop\",\"session_id\":\"done\"");
	/* too old to be an active session */
	feed(T0, T0 - 700000, "\"event_type\":\"PreToolUse\",\"session_id\":\"old\"");
	engine_tick(eng, T0 + 599999);
	assert_int_equal(nnotes, 0);
	engine_tick(eng, T0 + 600000);
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->labels, "alertname=AgentStalled,severity=warning,session_id=quiet");
	assert_string_equal(last()->description, "no event for 10m and no end of session");
	assert_int_equal(last()->trigger, 0);
	/* activity resumes: resolved */
	feed(T0 + 700000, T0 + 700000, "\"event_type\":\"PostToolUse\",\"session_id\":\"quiet\"");
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
	/* then it stops for good: no alert after that */
	feed(T0 + 701000, T0 + 701000, "\"event_type\":\"SessionEnd\",\"session_id\":\"quiet\"");
	engine_tick(eng, T0 + 2000000);
	assert_int_equal(nnotes, 2);
	struct engine_stats st;
	engine_get_stats(eng, &st);
	assert_int_equal(st.groups, 0);
}

static void test_reload_keeps_state(void **state)
{
	(void)state;
	start(SPIKE, 100, 1000);
	for (int i = 0; i < 3; i++)
		feed(T0 + i, T0 + i, FAIL_S1);
	feed(T0 + 5, T0 + 5, "\"event_type\":\"PreToolUse\",\"status\":\"blocked\"");
	assert_int_equal(nnotes, 0);
	/* same rule with a lower threshold, plus a new one: the 3 failures are kept */
	engine_set_rules(eng,
	                 rules_from("rules:\n"
	                            "  - name: Blocked\n    severity: critical\n"
	                            "    match: {status: blocked}\n    condition: {kind: every}\n"
	                            "  - name: ToolFailureSpike\n    severity: page\n"
	                            "    match: {status: error}\n"
	                            "    condition: {kind: count, window: 30s, threshold: 3}\n"
	                            "    group_by: [session_id]\n"),
	                 T0 + 10);
	engine_tick(eng, T0 + 20);
	assert_int_equal(nnotes, 1);
	assert_string_equal(last()->alertname, "ToolFailureSpike");
	assert_string_equal(last()->value, "3");
	/* regrouped (shape change): state starts afresh and its alert is resolved */
	engine_set_rules(eng,
	                 rules_from("rules:\n"
	                            "  - name: ToolFailureSpike\n    severity: page\n"
	                            "    match: {status: error}\n"
	                            "    condition: {kind: count, window: 30s, threshold: 3}\n"
	                            "    group_by: [tool]\n"),
	                 T0 + 30);
	assert_int_equal(nnotes, 2);
	assert_false(last()->firing);
	assert_string_equal(last()->labels, "alertname=ToolFailureSpike,severity=page,session_id=s1");
	struct engine_stats st;
	engine_get_stats(eng, &st);
	assert_int_equal(st.groups, 0);
	assert_int_equal(engine_rules(eng)->n, 1);
}

static void test_bounds(void **state)
{
	(void)state;
	start(SPIKE, 3, 4);
	char ev[200];
	for (int i = 0; i < 5; i++) {
		snprintf(ev, sizeof ev, "\"event_type\":\"PostToolUse\",\"status\":\"error\",\"session_id\":\"g%d\"", i);
		feed(T0 + i, T0 + i, ev);
	}
	struct engine_stats st;
	engine_get_stats(eng, &st);
	assert_int_equal(st.groups, 3);
	assert_int_equal(st.groups_evicted, 2);
	/* a group holds at most 4 samples: the count saturates below 5 */
	for (int i = 0; i < 10; i++)
		feed(T0 + 100 + i, T0 + 100 + i, FAIL_S1);
	engine_get_stats(eng, &st);
	assert_int_equal(st.samples_dropped, 6);
	assert_int_equal(nnotes, 0);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	log_init("test_eval", LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_count_fires_and_resolves, teardown),
		cmocka_unit_test_teardown(test_count_late_and_out_of_order, teardown),
		cmocka_unit_test_teardown(test_groups_are_independent, teardown),
		cmocka_unit_test_teardown(test_resend_and_delivery, teardown),
		cmocka_unit_test_teardown(test_min_firing_after_delivery, teardown),
		cmocka_unit_test_teardown(test_resend_while_firing, teardown),
		cmocka_unit_test_teardown(test_every, teardown),
		cmocka_unit_test_teardown(test_ratio, teardown),
		cmocka_unit_test_teardown(test_quantile, teardown),
		cmocka_unit_test_teardown(test_sum, teardown),
		cmocka_unit_test_teardown(test_absence, teardown),
		cmocka_unit_test_teardown(test_reload_keeps_state, teardown),
		cmocka_unit_test_teardown(test_bounds, teardown),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return failed;
}
