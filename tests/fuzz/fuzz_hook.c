/* fuzz_hook.c -- libFuzzer target: the hook input parser, the JSON Claude
 * Code hands a hook on stdin (or POSTs to /hooks/claude-code). The input goes
 * the way of both readers: agent-hook's hook mode (hooks/main.c run_hook:
 * cJSON parse, common/hookmap.c hook_map, on PreToolUse the guard
 * guard_check_tool and the deny decision, then hook_finish) and the
 * collector's (collector/hooks_http.c prepare_hook: an object only, then
 * hook_finish and ev_normalise_print); and hook_finish once more with tight
 * limits, to reach its shrinking rounds. What hook_finish returns is what the
 * collector receives: it must be valid UTF-8 within the size asked for, and
 * an event the collector accepts; anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "ev.h"
#include "guard.h"
#include "hookmap.h"

#define NOW_MS 1800000000123LL
#define HOOK_MAX_STRING 16384          /* agent-hook's OBS_HOOK_MAX_STRING default */
#define HOOK_MAX_EVENT (240 * 1024)    /* agent-hook's MAX_EVENT_BYTES */

static struct guard_policy *policy;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	policy = guard_policy_builtin();
	if (!policy)
		abort();
	return 0;
}

static const char *str_at(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The guard on a PreToolUse, as both readers ask it. */
static void guard(cJSON *ev, const char *home)
{
	struct guard_verdict v;
	cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	struct guard_ctx cx = {home, str_at(payload, "cwd")};
	const char *tool = str_at(ev, "tool");
	if (!tool || !guard_check_tool(policy, tool, cJSON_GetObjectItemCaseSensitive(payload, "tool_input"),
	                               &cx, &v))
		return;
	if (!v.block || !v.rule[0] || !memchr(v.reason, 0, sizeof v.reason))
		abort();
	hook_mark_blocked(ev, &v);
	char *d = hook_decision_json(&v);
	cJSON *dj = d ? cJSON_Parse(d) : NULL;
	if (!cJSON_IsObject(dj)) {
		fprintf(stderr, "the deny decision is not a JSON object: %s\n", d ? d : "(null)");
		abort();
	}
	cJSON_Delete(dj);
	cJSON_free(d);
}

/* hook_finish's result must be an event the collector accepts, within
 * max_bytes unless hard is 0 (a tiny limit the envelope alone can pass). */
static void finish(cJSON *ev, size_t max_string, size_t max_bytes, int hard)
{
	size_t len, bad;
	struct ev_error err;
	char *s = hook_finish(ev, max_string, max_bytes, &len);
	if (!s)
		abort();
	if (len != strlen(s) || (hard && len > max_bytes) || !ev_utf8_valid(s, len, &bad)) {
		fprintf(stderr, "hook_finish: %zu bytes (limit %zu), UTF-8 %d\n", len, max_bytes,
		        ev_utf8_valid(s, len, &bad));
		abort();
	}
	cJSON *back = cJSON_ParseWithLength(s, len);
	char *out = NULL;
	size_t n;
	if (!back || ev_normalise_print(back, NOW_MS, &ev_default_limits, &out, &n, &err)) {
		fprintf(stderr, "the collector refuses the hook's event: %s: %s\n%s\n", back ? err.field : "",
		        back ? err.problem : "not JSON", s);
		abort();
	}
	cJSON_free(out);
	cJSON_Delete(back);
	cJSON_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *input = fuzz_copy(data, size, 1); /* read_stdin terminates the buffer */

	/* agent-hook */
	struct hook_opts o = {"claude-code", "agent-hook", NOW_MS};
	cJSON *in = size ? cJSON_ParseWithLength(input, size) : NULL;
	cJSON *ev = hook_map(in, NULL, &o);
	if (!ev)
		abort();
	if (!in && size)
		cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(ev, "payload"), "raw_input", input);
	const char *type = str_at(ev, "event_type");
	if (!type)
		abort();
	if (!strcmp(type, "PreToolUse"))
		guard(ev, "/home/dev");
	cJSON *small = cJSON_Duplicate(ev, 1);
	finish(ev, HOOK_MAX_STRING, HOOK_MAX_EVENT, 1);
	/* tight limits: every shrinking round of hook_finish on small inputs */
	if (small)
		finish(small, 256, 1024, 0);
	cJSON_Delete(small);
	cJSON_Delete(ev);
	cJSON_Delete(in);

	/* the collector's POST /hooks/claude-code: valid UTF-8 and an object only */
	size_t bad;
	in = ev_utf8_valid(input, size, &bad) ? cJSON_ParseWithLength(input, size) : NULL;
	if (cJSON_IsObject(in)) {
		struct hook_opts h = {"claude-code", "http", NOW_MS};
		ev = hook_map(in, NULL, &h);
		if (!ev)
			abort();
		if (!strcmp(str_at(ev, "event_type"), "PreToolUse"))
			guard(ev, NULL);
		finish(ev, 64 * 1024, 256 * 1024 - 1024, 1);
		cJSON_Delete(ev);
	}
	cJSON_Delete(in);
	free(input);
	return 0;
}
