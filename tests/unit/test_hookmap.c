/* test_hookmap.c -- unit tests for common/hookmap.c (hook input -> canonical
 * event, blocked events, the PreToolUse answer, hook_finish's redaction and
 * bounds, transcript usage with de-duplication) and common/otlp.c (OTLP
 * JSON logs -> events). Every mapped event must pass ev_normalise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ev.h"
#include "hookmap.h"
#include "otlp.h"

#define NOW 1795430400000LL /* 2026-11-23T10:40:00Z */

static const struct hook_opts opts = {NULL, "agent-hook", NOW};

static cJSON *map(const char *json, const char *hint)
{
	cJSON *in = cJSON_Parse(json);
	cJSON *ev = hook_map(in, hint, &opts);
	cJSON_Delete(in);
	assert_non_null(ev);
	return ev;
}

static const char *s(const cJSON *o, const char *path)
{
	char key[128];
	const cJSON *cur = o;
	while (cur && *path) {
		size_t n = strcspn(path, ".");
		snprintf(key, sizeof key, "%.*s", (int)n, path);
		cur = cJSON_GetObjectItemCaseSensitive(cur, key);
		path += n + (path[n] == '.');
	}
	return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

/* The collector must accept what we produce. */
static void assert_normalises(cJSON *ev)
{
	cJSON *d = cJSON_Duplicate(ev, 1);
	struct ev_error err;
	int rc = ev_normalise(d, NOW, &ev_default_limits, &err);
	if (rc)
		print_error("ev_normalise: %s: %s\n", err.field, err.problem);
	assert_int_equal(rc, 0);
	cJSON_Delete(d);
}

static void test_names(void **state)
{
	(void)state;
	assert_int_equal(HOOK_EVENT_COUNT, 31);
	for (int i = 0; i < HOOK_EVENT_COUNT; i++)
		assert_true(hook_event_known(hook_event_names[i]));
	assert_false(hook_event_known("PreToolUse2"));
	assert_false(hook_event_known(NULL));
}

static void test_pre_post_tool(void **state)
{
	(void)state;
	cJSON *pre = map("{\"session_id\":\"s1\",\"transcript_path\":\"/t.jsonl\",\"cwd\":\"/w\","
	                 "\"hook_event_name\":\"PreToolUse\",\"permission_mode\":\"default\",\"tool_name\":\"Bash\","
	                 "\"tool_input\":{\"command\":\"ls\"},\"tool_use_id\":\"toolu_1\"}", NULL);
	assert_string_equal(s(pre, "event_type"), "PreToolUse");
	assert_string_equal(s(pre, "session_id"), "s1");
	assert_string_equal(s(pre, "agent_id"), "main");
	assert_string_equal(s(pre, "agent_role"), "main");
	assert_null(s(pre, "parent_agent_id"));
	assert_string_equal(s(pre, "tool"), "Bash");
	assert_string_equal(s(pre, "source_app"), "claude-code");
	assert_true(ev_uuid_valid(s(pre, "id")));
	assert_string_equal(s(pre, "timestamp"), "2026-11-23T10:40:00.000Z");
	assert_null(cJSON_GetObjectItem(pre, "status")); /* derived: success */
	assert_string_equal(s(pre, "payload.tool_use_id"), "toolu_1");
	assert_string_equal(s(pre, "payload.cwd"), "/w");
	assert_string_equal(s(pre, "payload.permission_mode"), "default");
	assert_string_equal(s(pre, "payload.tool_input.command"), "ls");
	assert_string_equal(s(pre, "payload.via"), "agent-hook");
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(pre, "payload"), "hook_event_name"));
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(pre, "payload"), "tool_name"));
	assert_normalises(pre);
	cJSON_Delete(pre);

	cJSON *post = map("{\"session_id\":\"s1\",\"hook_event_name\":\"PostToolUse\",\"tool_name\":\"Bash\","
	                  "\"tool_use_id\":\"toolu_1\",\"duration_ms\":1834,"
	                  "\"tool_response\":{\"stdout\":\"x\",\"success\":false}}", NULL);
	assert_string_equal(s(post, "status"), "error");
	assert_true(num(post, "latency_ms") == 1834);
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(post, "payload"), "duration_ms"));
	assert_normalises(post);
	cJSON_Delete(post);

	cJSON *ok = map("{\"hook_event_name\":\"PostToolUse\",\"tool_response\":{\"stdout\":\"x\"}}", NULL);
	assert_string_equal(s(ok, "status"), "success");
	cJSON_Delete(ok);

	cJSON *fail = map("{\"session_id\":\"s1\",\"hook_event_name\":\"PostToolUseFailure\",\"tool_name\":\"Edit\","
	                  "\"error\":\"String not found\",\"is_interrupt\":false,\"duration_ms\":-5}", NULL);
	assert_string_equal(s(fail, "status"), "error");
	assert_null(cJSON_GetObjectItem(fail, "latency_ms")); /* negative: dropped */
	assert_string_equal(s(fail, "payload.error"), "String not found");
	assert_normalises(fail);
	cJSON_Delete(fail);
}

static void test_subagent_and_others(void **state)
{
	(void)state;
	cJSON *ev = map("{\"session_id\":\"s1\",\"hook_event_name\":\"SubagentStop\",\"agent_id\":\"a-7\","
	                "\"agent_type\":\"Explore\",\"agent_transcript_path\":\"/a.jsonl\","
	                "\"stop_hook_active\":false,\"last_assistant_message\":\"done\"}", NULL);
	assert_string_equal(s(ev, "agent_id"), "a-7");
	assert_string_equal(s(ev, "agent_role"), "Explore");
	assert_string_equal(s(ev, "parent_agent_id"), "main");
	assert_string_equal(s(ev, "payload.last_assistant_message"), "done");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "stop_hook_active")));
	assert_normalises(ev);
	cJSON_Delete(ev);

	ev = map("{\"session_id\":\"s1\",\"hook_event_name\":\"Notification\",\"message\":\"needs permission\","
	         "\"title\":\"Claude Code\",\"notification_type\":\"permission_prompt\"}", NULL);
	assert_string_equal(s(ev, "payload.message"), "needs permission");
	assert_string_equal(s(ev, "payload.notification_type"), "permission_prompt");
	cJSON_Delete(ev);

	ev = map("{\"session_id\":\"s1\",\"hook_event_name\":\"PermissionDenied\",\"tool_name\":\"Bash\"}", NULL);
	assert_string_equal(s(ev, "status"), "denied");
	cJSON_Delete(ev);
	ev = map("{\"session_id\":\"s1\",\"hook_event_name\":\"StopFailure\",\"error\":\"rate_limit\"}", NULL);
	assert_string_equal(s(ev, "status"), "error");
	cJSON_Delete(ev);

	/* the name from the command line when the input has none; unknown names are kept and flagged */
	ev = map("{\"session_id\":\"s1\"}", "UserPromptSubmit");
	assert_string_equal(s(ev, "event_type"), "UserPromptSubmit");
	cJSON_Delete(ev);
	ev = map("{\"session_id\":\"s1\",\"hook_event_name\":\"FutureEvent\"}", "Stop");
	assert_string_equal(s(ev, "event_type"), "FutureEvent");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "unknown_event")));
	cJSON_Delete(ev);
	ev = map("{\"hook_event_name\":\"bad name!\"}", NULL);
	assert_string_equal(s(ev, "event_type"), "Unknown");
	assert_normalises(ev);
	cJSON_Delete(ev);
	/* not an object */
	ev = map("[1,2]", "Stop");
	assert_string_equal(s(ev, "event_type"), "Stop");
	assert_non_null(s(ev, "payload.error"));
	assert_normalises(ev);
	cJSON_Delete(ev);
	ev = hook_map(NULL, NULL, &opts);
	assert_string_equal(s(ev, "event_type"), "Unknown");
	cJSON_Delete(ev);
	/* over-long identifiers are cut to what the collector accepts */
	char big[1200];
	memset(big, 'x', 1000);
	big[1000] = 0;
	char json[2600];
	snprintf(json, sizeof json, "{\"hook_event_name\":\"Stop\",\"session_id\":\"%s\",\"agent_type\":\"%s\"}",
	         big, big);
	ev = map(json, NULL);
	assert_int_equal(strlen(s(ev, "session_id")), 256);
	assert_int_equal(strlen(s(ev, "agent_role")), 128);
	assert_normalises(ev);
	cJSON_Delete(ev);
}

static void test_blocked_and_decision(void **state)
{
	(void)state;
	struct guard_verdict v = {1, "rm-root", "agent-obs guard blocked this command (rm-root): \"x\""};
	cJSON *ev = map("{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\"}", NULL);
	hook_mark_blocked(ev, &v);
	assert_string_equal(s(ev, "status"), "blocked");
	assert_string_equal(s(ev, "payload.guard.rule"), "rm-root");
	assert_string_equal(s(ev, "payload.guard.decision"), "deny");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "blocked")));
	assert_normalises(ev);
	cJSON_Delete(ev);
	char *d = hook_decision_json(&v);
	cJSON *j = cJSON_Parse(d);
	assert_string_equal(s(j, "hookSpecificOutput.hookEventName"), "PreToolUse");
	assert_string_equal(s(j, "hookSpecificOutput.permissionDecision"), "deny");
	assert_string_equal(s(j, "hookSpecificOutput.permissionDecisionReason"), v.reason);
	cJSON_Delete(j);
	cJSON_free(d);
}

static void test_finish(void **state)
{
	(void)state;
	/* secrets, invalid UTF-8, long strings */
	cJSON *ev = map("{\"hook_event_name\":\"PostToolUse\",\"tool_input\":{\"command\":"
	                "\"curl -u x https://u:pass1234@h/\"},\"tool_response\":{\"stdout\":\"\"}}", NULL);
	cJSON *resp = cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "tool_response");
	char *long_s = malloc(100001);
	memset(long_s, 'a', 100000);
	long_s[100000] = 0;
	memcpy(long_s + 10, "\xff\xfe", 2);        /* invalid bytes */
	memcpy(long_s + 1998, "\xc3\xa9", 2);      /* an é across the cut */
	cJSON_ReplaceItemInObject(resp, "stdout", cJSON_CreateString(long_s));
	free(long_s);
	size_t len;
	char *out = hook_finish(ev, 1999, 240 * 1024, &len);
	assert_non_null(out);
	assert_int_equal(len, strlen(out));
	size_t bad;
	assert_true(ev_utf8_valid(out, len, &bad));
	assert_non_null(strstr(out, "[REDACTED:url_password]"));
	assert_non_null(strstr(out, "\"redacted\":1"));
	assert_non_null(strstr(out, "\"truncated\":true"));
	assert_non_null(strstr(out, "[truncated "));
	const char *so = s(ev, "payload.tool_response.stdout");
	assert_true(strlen(so) < 2100);
	assert_non_null(strstr(so, "\xef\xbf\xbd"));
	assert_normalises(ev);
	cJSON_free(out);
	cJSON_Delete(ev);

	/* too big as a whole: shrunk until it fits */
	ev = map("{\"hook_event_name\":\"PostToolUse\"}", NULL);
	cJSON *p = cJSON_GetObjectItem(ev, "payload");
	cJSON *arr = cJSON_AddArrayToObject(p, "files");
	char item[2048];
	memset(item, 'f', sizeof item - 1);
	item[sizeof item - 1] = 0;
	for (int i = 0; i < 3000; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(item));
	cJSON_AddStringToObject(p, "tool_use_id", "toolu_keep");
	out = hook_finish(ev, 16384, 64 * 1024, &len);
	assert_true(len <= 64 * 1024);
	assert_string_equal(s(ev, "payload.tool_use_id"), "toolu_keep"); /* small members survive */
	assert_non_null(strstr(s(ev, "payload.files"), "[dropped: "));
	assert_normalises(ev);
	cJSON_free(out);
	/* many small strings: the string cut alone is enough */
	cJSON_DeleteItemFromObject(p = cJSON_GetObjectItem(ev, "payload"), "files");
	arr = cJSON_AddArrayToObject(p, "files");
	for (int i = 0; i < 100; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(item));
	out = hook_finish(ev, 16384, 100 * 1024, &len);
	assert_true(len <= 100 * 1024);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "files")), 100);
	assert_normalises(ev);
	cJSON_free(out);
	cJSON_Delete(ev);

	/* nesting deeper than the collector allows */
	char deep[2048];
	size_t o = (size_t)snprintf(deep, sizeof deep, "{\"hook_event_name\":\"Stop\",\"x\":");
	for (int i = 0; i < 60; i++)
		deep[o++] = '[';
	for (int i = 0; i < 60; i++)
		deep[o++] = ']';
	snprintf(deep + o, sizeof deep - o, "}");
	ev = map(deep, NULL);
	out = hook_finish(ev, 16384, 240 * 1024, &len);
	assert_non_null(strstr(out, "nested too deep"));
	assert_normalises(ev);
	cJSON_free(out);
	cJSON_Delete(ev);

	/* found by fuzz_hook: hook_map cuts session_id at 256 bytes, but repairing
	 * its bad bytes (1 -> 3 bytes each) made it longer than the collector's
	 * limit, which then refused the event. The fields keep their limits. */
	char bad_id[300];
	memset(bad_id, 0, sizeof bad_id);
	memset(bad_id, 0xff, 200);
	cJSON *in = cJSON_CreateObject();
	cJSON_AddStringToObject(in, "hook_event_name", "Stop");
	cJSON_AddStringToObject(in, "session_id", bad_id);
	cJSON_AddStringToObject(in, "tool_name", bad_id);
	ev = hook_map(in, NULL, &opts);
	cJSON_Delete(in);
	out = hook_finish(ev, 16384, 240 * 1024, &len);
	assert_true(ev_utf8_valid(out, len, &bad));
	assert_true(strlen(s(ev, "session_id")) <= 256);
	assert_true(strlen(s(ev, "session_id")) > 250); /* cut, not dropped */
	assert_true(strlen(s(ev, "tool")) <= 256);
	assert_non_null(strstr(out, "\"truncated\":true"));
	assert_normalises(ev);
	cJSON_free(out);
	cJSON_Delete(ev);
}

static const char *line(char *buf, size_t n, const char *mid, const char *rid, int in, int out, const char *model)
{
	snprintf(buf, n,
	         "{\"type\":\"assistant\",\"requestId\":\"%s\",\"message\":{\"id\":\"%s\",\"model\":\"%s\","
	         "\"role\":\"assistant\",\"usage\":{\"input_tokens\":%d,\"output_tokens\":%d,"
	         "\"cache_read_input_tokens\":%d,\"cache_creation_input_tokens\":%d}}}\n",
	         rid, mid, model, in, out, in * 10, in / 2);
	return buf;
}

static void test_transcript(void **state)
{
	(void)state;
	char a[512], b[512], c[512], text[4096];
	struct hook_seen seen;
	struct hook_usage u;
	memset(&seen, 0, sizeof seen);
	memset(&u, 0, sizeof u);
	snprintf(text, sizeof text, "%s%s%s{\"type\":\"user\",\"message\":{\"content\":\"usage\"}}\n%s",
	         line(a, sizeof a, "m1", "r1", 100, 10, "claude-opus-4-1"),
	         line(b, sizeof b, "m1", "r1", 100, 10, "claude-opus-4-1"), /* same response: once */
	         line(c, sizeof c, "m2", "r2", 200, 20, "claude-sonnet-4-5"), "{\"type\":\"assistant\",\"mess");
	size_t used = hook_transcript_scan(text, strlen(text), &seen, &u);
	assert_int_equal(used, strlen(text) - strlen("{\"type\":\"assistant\",\"mess"));
	assert_int_equal(u.responses, 2);
	assert_int_equal(u.duplicates, 1);
	assert_int_equal(u.lines, 4);
	assert_int_equal(u.input, 300);
	assert_int_equal(u.output, 30);
	assert_int_equal(u.cache_read, 3000);
	assert_int_equal(u.cache_creation, 150);
	assert_string_equal(u.model, "claude-sonnet-4-5");
	/* the next call sees m2 again (written on both sides of a Stop) and m3 */
	struct hook_usage u2;
	memset(&u2, 0, sizeof u2);
	snprintf(text, sizeof text, "%s%s{broken json\n", line(a, sizeof a, "m2", "r2", 200, 20, "x"),
	         line(b, sizeof b, "m3", "r3", 1, 2, "<synthetic>"));
	hook_transcript_scan(text, strlen(text), &seen, &u2);
	assert_int_equal(u2.responses, 1);
	assert_int_equal(u2.input, 1);
	assert_string_equal(u2.model, ""); /* <synthetic> is not a model */
	cJSON *ev = map("{\"hook_event_name\":\"Stop\"}", NULL);
	hook_set_usage(ev, &u);
	cJSON *t = cJSON_GetObjectItem(ev, "tokens");
	assert_true(num(t, "input") == 300 && num(t, "output") == 30 && num(t, "cache_read") == 3000 &&
	            num(t, "cache_creation") == 150);
	assert_string_equal(s(ev, "payload.model"), "claude-sonnet-4-5");
	assert_normalises(ev);
	cJSON_Delete(ev);
	/* nothing counted: no tokens, but the transcript summary */
	struct hook_usage none;
	memset(&none, 0, sizeof none);
	ev = map("{\"hook_event_name\":\"Stop\"}", NULL);
	hook_set_usage(ev, &none);
	assert_null(cJSON_GetObjectItem(ev, "tokens"));
	assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "payload"), "transcript"));
	cJSON_Delete(ev);
	/* the seen ring forgets the oldest beyond its size */
	memset(&seen, 0, sizeof seen);
	for (uint64_t h = 1; h <= HOOK_SEEN_MAX + 10; h++)
		hook_seen_add(&seen, h);
	assert_false(hook_seen_has(&seen, 5));
	assert_true(hook_seen_has(&seen, HOOK_SEEN_MAX + 10));
	assert_true(hook_seen_has(&seen, 11));
}

static void test_transcript_messages(void **state)
{
	(void)state;
	char a[512], b[512];
	char text[8192];
	struct hook_seen seen;
	memset(&seen, 0, sizeof seen);
	snprintf(text, sizeof text,
	         "{\"type\":\"summary\",\"summary\":\"x\"}\n"
	         "{\"type\":\"user\",\"uuid\":\"u-1\",\"timestamp\":\"2026-11-23T10:00:00.000Z\","
	         "\"message\":{\"role\":\"user\",\"content\":\"use password=hunter22 now\"}}\n"
	         "{\"type\":\"user\",\"isMeta\":true,\"uuid\":\"u-meta\",\"message\":{\"role\":\"user\",\"content\":\"caveat\"}}\n"
	         "{\"type\":\"assistant\",\"uuid\":\"a-1\",\"requestId\":\"r1\",\"message\":{\"id\":\"m1\","
	         "\"model\":\"claude-x\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Running.\"},"
	         "{\"type\":\"tool_use\",\"name\":\"Bash\",\"input\":{\"command\":\"ls\"}}],"
	         "\"usage\":{\"input_tokens\":5,\"output_tokens\":3}}}\n"
	         "{\"type\":\"user\",\"uuid\":\"u-2\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
	         "\"is_error\":true,\"content\":[{\"type\":\"text\",\"text\":\"ls: denied\"}]}]}}\n"
	         "%s%s{\"type\":\"user\",\"uuid\":\"partial",
	         line(a, sizeof a, "m1", "r1", 5, 3, "claude-x"), line(b, sizeof b, "m2", "r2", 7, 1, "claude-x"));
	cJSON *out = cJSON_CreateArray();
	size_t used = hook_transcript_messages(text, strlen(text), &seen, 100, 1 << 20, 1000, out);
	assert_int_equal(used, strlen(text) - strlen("{\"type\":\"user\",\"uuid\":\"partial"));
	assert_int_equal(cJSON_GetArraySize(out), 5);
	cJSON *u1 = cJSON_GetArrayItem(out, 0), *a1 = cJSON_GetArrayItem(out, 1), *u2 = cJSON_GetArrayItem(out, 2);
	assert_string_equal(s(u1, "uuid"), "u-1");
	assert_string_equal(s(u1, "role"), "user");
	assert_string_equal(s(u1, "text"), "use password=[REDACTED:secret] now");
	assert_string_equal(s(u1, "timestamp"), "2026-11-23T10:00:00.000Z");
	assert_string_equal(s(a1, "text"), "Running.\n[tool_use Bash] {\"command\":\"ls\"}");
	assert_string_equal(s(a1, "model"), "claude-x");
	assert_true(num(cJSON_GetObjectItem(a1, "tokens"), "input") == 5);
	assert_string_equal(s(u2, "text"), "[tool_result error] ls: denied");
	/* m1 again (another line of the same response): no tokens; m2: tokens */
	assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 3), "tokens"));
	assert_true(num(cJSON_GetObjectItem(cJSON_GetArrayItem(out, 4), "tokens"), "input") == 7);
	cJSON_Delete(out);
	/* limits: messages per batch, and long texts are cut */
	memset(&seen, 0, sizeof seen);
	out = cJSON_CreateArray();
	used = hook_transcript_messages(text, strlen(text), &seen, 2, 1 << 20, 10, out);
	assert_int_equal(cJSON_GetArraySize(out), 2);
	assert_int_equal(strlen(s(cJSON_GetArrayItem(out, 0), "text")), 10);
	const char *rest = text + used;
	assert_int_equal(strncmp(rest, "{\"type\":\"user\",\"uuid\":\"u-2\"", 26), 0);
	cJSON_Delete(out);

	/* found by fuzz_transcript: a field POST /transcripts refuses (bad UTF-8,
	 * too long, a time it cannot read or out of range) cost the whole batch;
	 * now the message goes without it */
	char model[200];
	memset(model, 'm', sizeof model - 1);
	model[sizeof model - 1] = 0;
	snprintf(text, sizeof text,
	         "{\"type\":\"user\",\"uuid\":\"u-\xff\",\"timestamp\":\"2026-1\xce\xcc-23T10:00:00Z\","
	         "\"message\":{\"role\":\"user\",\"content\":\"one\"}}\n"
	         "{\"type\":\"user\",\"uuid\":\"u-4\",\"timestamp\":\"2199-01-01T00:00:00Z\","
	         "\"message\":{\"role\":\"user\",\"content\":\"two\"}}\n"
	         "{\"type\":\"assistant\",\"uuid\":\"a-5\",\"timestamp\":\"yesterday\","
	         "\"message\":{\"model\":\"%s\",\"content\":\"three\"}}\n"
	         "{\"type\":\"assistant\",\"uuid\":\"a-6\",\"timestamp\":\"2026-11-23T10:00:00Z\","
	         "\"message\":{\"model\":\"claude-x\",\"content\":\"four\"}}\n",
	         model);
	memset(&seen, 0, sizeof seen);
	out = cJSON_CreateArray();
	assert_int_equal(hook_transcript_messages(text, strlen(text), &seen, 100, 1 << 20, 1000, out),
	                 strlen(text));
	assert_int_equal(cJSON_GetArraySize(out), 4);
	cJSON *m0 = cJSON_GetArrayItem(out, 0), *m1 = cJSON_GetArrayItem(out, 1),
	      *m2 = cJSON_GetArrayItem(out, 2), *m3 = cJSON_GetArrayItem(out, 3);
	assert_null(s(m0, "uuid"));
	assert_null(s(m0, "timestamp"));
	assert_string_equal(s(m0, "text"), "one");
	assert_string_equal(s(m1, "uuid"), "u-4");
	assert_null(s(m1, "timestamp"));
	assert_null(s(m2, "model"));
	assert_null(s(m2, "timestamp"));
	assert_string_equal(s(m3, "model"), "claude-x");
	assert_string_equal(s(m3, "timestamp"), "2026-11-23T10:00:00Z");
	cJSON_Delete(out);
}

/* ---------- OTLP ---------- */

static const char *otlp_req =
	"{\"resourceLogs\":[{\"resource\":{\"attributes\":["
	"{\"key\":\"service.name\",\"value\":{\"stringValue\":\"claude-code\"}},"
	"{\"key\":\"service.version\",\"value\":{\"stringValue\":\"2.0.50\"}}]},"
	"\"scopeLogs\":[{\"scope\":{\"name\":\"com.anthropic.claude_code.events\"},\"logRecords\":["
	"{\"timeUnixNano\":\"1795430400123000000\",\"body\":{\"stringValue\":\"claude_code.api_request\"},"
	"\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"api_request\"}},"
	"{\"key\":\"session.id\",\"value\":{\"stringValue\":\"sess-1\"}},"
	"{\"key\":\"model\",\"value\":{\"stringValue\":\"claude-sonnet-4-5\"}},"
	"{\"key\":\"cost_usd\",\"value\":{\"doubleValue\":0.0123}},"
	"{\"key\":\"duration_ms\",\"value\":{\"intValue\":\"4210\"}},"
	"{\"key\":\"input_tokens\",\"value\":{\"intValue\":\"1520\"}},"
	"{\"key\":\"output_tokens\",\"value\":{\"stringValue\":\"318\"}},"
	"{\"key\":\"cache_read_tokens\",\"value\":{\"intValue\":20480}},"
	"{\"key\":\"cache_creation_tokens\",\"value\":{\"intValue\":\"0\"}}]},"
	"{\"timeUnixNano\":\"1795430400200000000\",\"body\":{\"stringValue\":\"claude_code.tool_result\"},"
	"\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"tool_result\"}},"
	"{\"key\":\"session.id\",\"value\":{\"stringValue\":\"sess-1\"}},"
	"{\"key\":\"tool_name\",\"value\":{\"stringValue\":\"Bash\"}},"
	"{\"key\":\"success\",\"value\":{\"stringValue\":\"false\"}},"
	"{\"key\":\"error\",\"value\":{\"stringValue\":\"Exit code 1\"}},"
	"{\"key\":\"duration_ms\",\"value\":{\"intValue\":\"99\"}},"
	"{\"key\":\"tool_parameters\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"a\",\"value\":{\"boolValue\":true}}]}}},"
	"{\"key\":\"list\",\"value\":{\"arrayValue\":{\"values\":[{\"intValue\":\"1\"},{\"stringValue\":\"b\"}]}}}]},"
	"{\"observedTimeUnixNano\":\"1795430400300000000\",\"body\":{\"stringValue\":\"something happened\"},"
	"\"severityText\":\"WARN\",\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"spanId\":\"00f067aa0ba902b7\"},"
	"42]}]}]}";

static void test_otlp(void **state)
{
	(void)state;
	cJSON *req = cJSON_Parse(otlp_req), *out = cJSON_CreateArray();
	char err[128];
	size_t rejected;
	assert_non_null(req);
	assert_int_equal(otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err), 0);
	assert_int_equal(rejected, 1); /* the 42 */
	assert_int_equal(cJSON_GetArraySize(out), 3);
	cJSON *api = cJSON_GetArrayItem(out, 0), *tool = cJSON_GetArrayItem(out, 1), *other = cJSON_GetArrayItem(out, 2);
	assert_string_equal(s(api, "event_type"), "claude_code.api_request");
	assert_string_equal(s(api, "session_id"), "sess-1");
	assert_string_equal(s(api, "source_app"), "claude-code");
	assert_string_equal(s(api, "timestamp"), "2026-11-23T10:40:00.123Z");
	assert_string_equal(s(api, "payload.model"), "claude-sonnet-4-5");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(api, "payload"), "resource"),
	                                        "service.version")->valuestring, "2.0.50");
	assert_true(num(api, "cost_usd") == 0.0123 && num(api, "latency_ms") == 4210);
	cJSON *t = cJSON_GetObjectItem(api, "tokens");
	assert_true(num(t, "input") == 1520 && num(t, "output") == 318 && num(t, "cache_read") == 20480 &&
	            num(t, "cache_creation") == 0);
	assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(api, "payload"), "input_tokens"));
	assert_string_equal(s(tool, "tool"), "Bash");
	assert_string_equal(s(tool, "status"), "error");
	assert_true(num(tool, "latency_ms") == 99);
	assert_string_equal(s(tool, "payload.error"), "Exit code 1");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(tool, "payload"),
	                                                                 "tool_parameters"), "a")));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(tool, "payload"), "list")), 2);
	assert_string_equal(s(other, "event_type"), "otlp.log");
	assert_string_equal(s(other, "payload.body"), "something happened");
	assert_string_equal(s(other, "payload.severity"), "WARN");
	assert_string_equal(s(other, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(s(other, "timestamp"), "2026-11-23T10:40:00.300Z");
	for (cJSON *e = out->child; e; e = e->next) {
		assert_true(ev_uuid_valid(s(e, "id")));
		assert_normalises(e);
	}
	/* the same records give the same ids (a retried export is stored once) */
	cJSON *again = cJSON_CreateArray();
	otlp_logs_to_events(req, NOW + 5000, again, &rejected, err, sizeof err);
	for (int i = 0; i < 3; i++)
		assert_string_equal(s(cJSON_GetArrayItem(out, i), "id"), s(cJSON_GetArrayItem(again, i), "id"));
	assert_string_not_equal(s(api, "id"), s(tool, "id"));
	cJSON_Delete(again);
	cJSON_Delete(out);
	cJSON_Delete(req);

	/* not an export request */
	out = cJSON_CreateArray();
	req = cJSON_Parse("{\"resourceLogs\":{}}");
	assert_int_equal(otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err), -1);
	assert_non_null(strstr(err, "resourceLogs"));
	cJSON_Delete(req);
	req = cJSON_Parse("{}"); /* empty: nothing to do */
	assert_int_equal(otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err), 0);
	assert_int_equal(cJSON_GetArraySize(out), 0);
	cJSON_Delete(req);
	cJSON_Delete(out);
	/* a timestamp out of range falls back to now */
	out = cJSON_CreateArray();
	req = cJSON_Parse("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"timeUnixNano\":\"5\","
	                  "\"attributes\":[{\"key\":\"event.name\",\"value\":{\"stringValue\":\"custom.thing\"}}]}]}]}]}");
	otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err);
	assert_string_equal(s(cJSON_GetArrayItem(out, 0), "event_type"), "custom.thing");
	assert_string_equal(s(cJSON_GetArrayItem(out, 0), "source_app"), "otlp");
	assert_string_equal(s(cJSON_GetArrayItem(out, 0), "timestamp"), "2026-11-23T10:40:00.000Z");
	cJSON_Delete(req);
	cJSON_Delete(out);
	/* found by fuzz_otlp: a time beyond int64 ms was converted anyway
	 * (undefined behaviour); now it is no time, and observedTimeUnixNano counts */
	out = cJSON_CreateArray();
	req = cJSON_Parse("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":["
	                  "{\"timeUnixNano\":\"17954304001230000777777777777777777777777700\","
	                  "\"observedTimeUnixNano\":1795430400456000000},"
	                  "{\"timeUnixNano\":1e300,\"observedTimeUnixNano\":\"1e30\"}]}]}]}");
	assert_int_equal(otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err), 0);
	assert_string_equal(s(cJSON_GetArrayItem(out, 0), "timestamp"), "2026-11-23T10:40:00.456Z");
	assert_string_equal(s(cJSON_GetArrayItem(out, 1), "timestamp"), "2026-11-23T10:40:00.000Z");
	cJSON_Delete(req);
	cJSON_Delete(out);
	/* found by fuzz_otlp: a duration or cost beyond the event contract's
	 * limits made an event the collector refused, losing the record; now the
	 * value stays an attribute in the payload */
	out = cJSON_CreateArray();
	req = cJSON_Parse("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{"
	                  "\"body\":{\"stringValue\":\"claude_code.api_request\"},\"attributes\":["
	                  "{\"key\":\"duration_ms\",\"value\":{\"doubleValue\":4.4e70}},"
	                  "{\"key\":\"cost_usd\",\"value\":{\"stringValue\":\"5e9\"}},"
	                  "{\"key\":\"input_tokens\",\"value\":{\"intValue\":\"12\"}}]}]}]}]}");
	assert_int_equal(otlp_logs_to_events(req, NOW, out, &rejected, err, sizeof err), 0);
	cJSON *big = cJSON_GetArrayItem(out, 0);
	assert_null(cJSON_GetObjectItem(big, "latency_ms"));
	assert_null(cJSON_GetObjectItem(big, "cost_usd"));
	assert_true(num(cJSON_GetObjectItem(big, "tokens"), "input") == 12);
	assert_true(num(cJSON_GetObjectItem(big, "payload"), "duration_ms") == 4.4e70);
	assert_string_equal(s(big, "payload.cost_usd"), "5e9");
	assert_normalises(big);
	cJSON_Delete(req);
	cJSON_Delete(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_pre_post_tool),
		cmocka_unit_test(test_subagent_and_others),
		cmocka_unit_test(test_blocked_and_decision),
		cmocka_unit_test(test_finish),
		cmocka_unit_test(test_transcript),
		cmocka_unit_test(test_transcript_messages),
		cmocka_unit_test(test_otlp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
