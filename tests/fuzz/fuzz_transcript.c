/* fuzz_transcript.c -- libFuzzer target: agent-hook's transcript reader
 * (common/hookmap.c), the Claude Code transcript JSONL a Stop hook reads:
 * hook_transcript_scan (token usage) and hook_transcript_messages (the
 * messages forwarded to POST /transcripts), as hooks/transcript.c calls
 * them. Both must consume whole lines only and counts must stay sane; the
 * request body hooks/transcript.c builds from the messages must be one the
 * collector takes (collector/transcript.c transcript_normalise): it refuses
 * a whole batch for one bad message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#include "../../collector/api.h"
#include "ev.h"
#include "hookmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct hook_seen seen, seen2;
	struct hook_usage u;
	char *buf = fuzz_copy(data, size, 0);
	memset(&seen, 0, sizeof seen);
	memset(&u, 0, sizeof u);
	size_t used = hook_transcript_scan(buf, size, &seen, &u);
	fuzz_check(used <= size && (used == 0 || buf[used - 1] == '\n'), "scan consumes whole lines");
	fuzz_check(u.input >= 0 && u.output >= 0 && u.cache_read >= 0 && u.cache_creation >= 0, "usage >= 0");
	fuzz_check(memchr(u.model, 0, sizeof u.model) != NULL, "model is a string");
	/* the same lines again: the responses are known now (duplicates path) */
	struct hook_usage again;
	memset(&again, 0, sizeof again);
	hook_transcript_scan(buf, used, &seen, &again);
	fuzz_check(seen.n <= HOOK_SEEN_MAX && seen.next < HOOK_SEEN_MAX, "seen ring bound");

	cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "session_id", "sess-1");
	cJSON_AddNullToObject(body, "agent_id");
	cJSON_AddStringToObject(body, "transcript_path", "/home/dev/.claude/projects/p/sess-1.jsonl");
	cJSON *msgs = cJSON_AddArrayToObject(body, "messages");
	memset(&seen2, 0, sizeof seen2);
	used = hook_transcript_messages(buf, size, &seen2, 8, 16384, 2000, msgs);
	fuzz_check(used <= size && (used == 0 || buf[used - 1] == '\n'), "messages consume whole lines");
	fuzz_check(cJSON_GetArraySize(msgs) <= 8, "message count bound");
	if (cJSON_GetArraySize(msgs) > 0) {
		char *s = cJSON_PrintUnformatted(body), *norm = NULL;
		size_t nlen, n;
		struct api_error err;
		fuzz_check(s != NULL, "print");
		if (transcript_normalise(s, strlen(s), ev_now_ms(), &transcript_default_limits, &norm, &nlen,
		                         &n, &err)) {
			fprintf(stderr, "the collector refuses the batch: %s: %s\n%s\n", err.field, err.message, s);
			abort();
		}
		fuzz_check(n == (size_t)cJSON_GetArraySize(msgs), "every message taken");
		cJSON_free(norm);
		cJSON_free(s);
	}
	cJSON_Delete(body);
	free(buf);
	return 0;
}
