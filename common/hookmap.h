/* hookmap.h -- Claude Code hook input (the JSON a hook gets on stdin, or an
 * HTTP hook's body) -> canonical event (README "Event contract"), shared by
 * agent-hook and the collector's POST /hooks/claude-code. Also: the
 * PreToolUse decision answer, the last pass before sending (redaction,
 * UTF-8 repair, size limits), and token usage from transcript JSONL.
 * Pure functions over caller-owned cJSON trees (hook_transcript_messages
 * also reads the clock, to drop times POST /transcripts would refuse);
 * thread-safe. */
#ifndef HOOKMAP_H
#define HOOKMAP_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "guard.h"

/* The 31 hook events of claude-code-hooks.md, in its order. */
#define HOOK_EVENT_COUNT 31
extern const char *const hook_event_names[HOOK_EVENT_COUNT];
int hook_event_known(const char *name);

struct hook_opts {
	const char *source_app; /* NULL: "claude-code" */
	const char *via;        /* payload.via: "agent-hook", "http" (NULL: omitted) */
	int64_t now_ms;         /* the event's timestamp */
};

/* Map hook input `in` to a new canonical event. Members of `in` move into
 * the event (in is left a shell; the caller deletes it). name_hint names
 * the event when `in` has no valid hook_event_name. Mapping:
 *   event_type <- hook_event_name    session_id <- session_id
 *   agent_id   <- agent_id, else "main"   agent_role <- agent_type, else "main"
 *   parent_agent_id <- "main" inside a sub-agent    tool <- tool_name
 *   latency_ms <- duration_ms        source_app <- opts (claude-code)
 *   status: error (PostToolUseFailure, StopFailure, a tool_response with
 *   success:false / is_error:true), denied (PermissionDenied), else derived
 *   payload <- every other field (cwd, tool_input, tool_response,
 *   tool_use_id, prompt, message, permission_mode, stop reasons, ...).
 * Always returns an event (NULL only when out of memory); a non-object
 * input gives a payload.error. id (UUIDv7) and timestamp are set, so a
 * re-sent event stays the same event. */
cJSON *hook_map(cJSON *in, const char *name_hint, const struct hook_opts *o);

/* Status "blocked", payload.blocked = true, payload.guard {rule, reason}. */
void hook_mark_blocked(cJSON *ev, const struct guard_verdict *v);

/* The PreToolUse answer for a blocked call (cJSON allocator; cJSON_free):
 * {"hookSpecificOutput":{"hookEventName":"PreToolUse",
 *  "permissionDecision":"deny","permissionDecisionReason":"..."}} */
char *hook_decision_json(const struct guard_verdict *v);

/* Last pass before an event leaves: redact secrets (payload.redacted = n),
 * repair invalid UTF-8, cut strings longer than max_string (payload.truncated),
 * bound nesting/array/object sizes, and shrink until the serialised event
 * fits max_event_bytes. Returns the serialised event (cJSON allocator) and
 * its length, NULL when out of memory. */
char *hook_finish(cJSON *ev, size_t max_string, size_t max_event_bytes, size_t *len);

/* ---- transcripts ---- */

/* Recently counted API responses (hashes of message.id + requestId). */
#define HOOK_SEEN_MAX 512
struct hook_seen {
	uint64_t h[HOOK_SEEN_MAX];
	size_t n, next; /* ring */
};
int hook_seen_has(const struct hook_seen *s, uint64_t h);
void hook_seen_add(struct hook_seen *s, uint64_t h);

struct hook_usage {
	long long input, output, cache_read, cache_creation;
	char model[128]; /* of the last counted response */
	long lines;      /* complete lines read */
	long responses;  /* distinct API responses counted */
	long duplicates; /* lines of responses already counted */
};

/* Scan the complete lines of [buf, buf+len) (JSONL; a trailing partial line
 * is left for next time) and add the token usage of assistant messages not
 * yet in `seen`. Returns the bytes consumed (through the last newline). */
size_t hook_transcript_scan(const char *buf, size_t len, struct hook_seen *seen,
                            struct hook_usage *u);

/* The messages of the complete lines of [buf, buf+len) for POST /transcripts
 * (user and assistant lines): {uuid, role, text, timestamp, model, tokens},
 * appended to the array `out`. text joins the text blocks, tool calls
 * ("[tool_use Bash] {...}") and tool results, redacted and cut at
 * max_text bytes; tokens only on the first line of an API response (`seen`).
 * uuid, model and timestamp are passed on only when POST /transcripts takes
 * them (valid UTF-8 within its limits; a time from 2000 to now + 24 h), so
 * one odd line cannot cost the whole batch.
 * Stops before max_messages messages or max_bytes of JSON. Returns the bytes
 * consumed: everything up to the last line taken (or skipped). */
size_t hook_transcript_messages(const char *buf, size_t len, struct hook_seen *seen,
                                size_t max_messages, size_t max_bytes, size_t max_text,
                                cJSON *out);

/* tokens {input, output, cache_read, cache_creation}, payload.model and
 * payload.transcript {lines, responses} when u counted any response. */
void hook_set_usage(cJSON *ev, const struct hook_usage *u);

/* 64-bit FNV-1a (seed 0 -> the standard offset basis). */
uint64_t hook_hash(const void *data, size_t n, uint64_t seed);

#endif
