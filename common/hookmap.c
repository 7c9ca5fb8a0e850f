/* hookmap.c -- Claude Code hook input -> canonical event, the PreToolUse
 * answer, the last pass before sending, transcript token usage (see
 * hookmap.h). Sections: names, mapping, finishing, transcripts. */
#include "hookmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev.h"
#include "redact.h"

/* ---------- names ---------- */

const char *const hook_event_names[HOOK_EVENT_COUNT] = {
	"SessionStart", "Setup", "InstructionsLoaded", "UserPromptSubmit", "UserPromptExpansion",
	"MessageDisplay", "PreToolUse", "PermissionRequest", "PermissionDenied", "PostToolUse",
	"PostToolUseFailure", "PostToolBatch", "Notification", "SubagentStart", "SubagentStop",
	"TaskCreated", "TaskCompleted", "Stop", "StopFailure", "TeammateIdle", "ConfigChange",
	"CwdChanged", "DirectoryAdded", "FileChanged", "WorktreeCreate", "WorktreeRemove",
	"PreCompact", "PostCompact", "SessionEnd", "Elicitation", "ElicitationResult",
};

int hook_event_known(const char *name)
{
	if (!name)
		return 0;
	for (int i = 0; i < HOOK_EVENT_COUNT; i++)
		if (!strcmp(name, hook_event_names[i]))
			return 1;
	return 0;
}

/* What the collector accepts as event_type: 1-64 of [A-Za-z0-9_.]. */
static int valid_type(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '.'))
			return 0;
	return 1;
}

/* ---------- mapping ---------- */

/* Copy of s cut to at most max bytes at a UTF-8 boundary. */
static void add_str_max(cJSON *obj, const char *key, const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max) {
		cJSON_AddStringToObject(obj, key, s);
		return;
	}
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	char *c = malloc(max + 1);
	if (!c)
		return;
	memcpy(c, s, max);
	c[max] = 0;
	cJSON_AddStringToObject(obj, key, c);
	free(c);
}

static const char *str_of(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

cJSON *hook_map(cJSON *in, const char *name_hint, const struct hook_opts *o)
{
	char id[37], ts[32];
	cJSON *ev = cJSON_CreateObject(), *payload = cJSON_CreateObject();
	if (!ev || !payload) {
		cJSON_Delete(ev);
		cJSON_Delete(payload);
		return NULL;
	}
	int is_obj = cJSON_IsObject(in);
	const char *name = is_obj ? str_of(in, "hook_event_name") : NULL;
	if (!valid_type(name))
		name = valid_type(name_hint) ? name_hint : "Unknown";

	ev_uuid_v7(id);
	ev_format_iso8601(o->now_ms, ts);
	cJSON_AddStringToObject(ev, "id", id);
	cJSON_AddStringToObject(ev, "event_type", name);
	cJSON_AddStringToObject(ev, "timestamp", ts);
	cJSON_AddStringToObject(ev, "source_app", o->source_app ? o->source_app : "claude-code");
	if (!is_obj) {
		cJSON_AddStringToObject(payload, "error", "hook input is not a JSON object");
		goto done;
	}

	const char *v;
	if ((v = str_of(in, "session_id")))
		add_str_max(ev, "session_id", v, 256);
	const char *agent = str_of(in, "agent_id"), *atype = str_of(in, "agent_type");
	if (agent || atype) {
		add_str_max(ev, "agent_id", agent ? agent : atype, 256);
		add_str_max(ev, "agent_role", atype ? atype : "subagent", 128);
		cJSON_AddStringToObject(ev, "parent_agent_id", "main");
	} else {
		cJSON_AddStringToObject(ev, "agent_id", "main");
		cJSON_AddStringToObject(ev, "agent_role", "main");
	}
	if ((v = str_of(in, "tool_name")))
		add_str_max(ev, "tool", v, 256);
	const cJSON *dur = cJSON_GetObjectItemCaseSensitive(in, "duration_ms");
	if (cJSON_IsNumber(dur) && dur->valuedouble >= 0 && dur->valuedouble <= 1e10)
		cJSON_AddNumberToObject(ev, "latency_ms", dur->valuedouble);

	const char *status = NULL;
	if (!strcmp(name, "PostToolUseFailure") || !strcmp(name, "StopFailure")) {
		status = "error";
	} else if (!strcmp(name, "PermissionDenied")) {
		status = "denied";
	} else if (!strcmp(name, "PostToolUse")) {
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(in, "tool_response");
		const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "success");
		const cJSON *iserr = cJSON_GetObjectItemCaseSensitive(r, "is_error");
		status = cJSON_IsFalse(ok) || cJSON_IsTrue(iserr) ? "error" : "success";
	}
	if (status)
		cJSON_AddStringToObject(ev, "status", status);

	/* everything else is the payload, in the order it came */
	static const char *const mapped[] = {"hook_event_name", "session_id", "agent_id", "agent_type",
		"tool_name", "duration_ms", NULL};
	for (cJSON *c = in->child, *next; c; c = next) {
		next = c->next;
		int skip = !c->string;
		for (const char *const *m = mapped; !skip && *m; m++)
			skip = !strcmp(c->string, *m);
		if (skip)
			continue;
		if (cJSON_GetObjectItemCaseSensitive(payload, c->string))
			continue; /* duplicate key: the first wins */
		cJSON *d = cJSON_DetachItemViaPointer(in, c);
		cJSON_AddItemToObject(payload, d->string, d);
	}
	if (!hook_event_known(name))
		cJSON_AddBoolToObject(payload, "unknown_event", 1);
done:
	if (o->via)
		cJSON_AddStringToObject(payload, "via", o->via);
	cJSON_AddItemToObject(ev, "payload", payload);
	return ev;
}

void hook_mark_blocked(cJSON *ev, const struct guard_verdict *v)
{
	cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	cJSON_DeleteItemFromObjectCaseSensitive(ev, "status");
	cJSON_AddStringToObject(ev, "status", "blocked");
	if (!cJSON_IsObject(payload))
		return;
	cJSON_DeleteItemFromObjectCaseSensitive(payload, "blocked");
	cJSON_DeleteItemFromObjectCaseSensitive(payload, "guard");
	cJSON_AddBoolToObject(payload, "blocked", 1);
	cJSON *g = cJSON_AddObjectToObject(payload, "guard");
	cJSON_AddStringToObject(g, "decision", "deny");
	cJSON_AddStringToObject(g, "rule", v->rule);
	cJSON_AddStringToObject(g, "reason", v->reason);
}

char *hook_decision_json(const struct guard_verdict *v)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *h = cJSON_AddObjectToObject(o, "hookSpecificOutput");
	cJSON_AddStringToObject(h, "hookEventName", "PreToolUse");
	cJSON_AddStringToObject(h, "permissionDecision", "deny");
	cJSON_AddStringToObject(h, "permissionDecisionReason", v->reason);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* ---------- finishing ---------- */

#define MAX_NEST 24     /* levels below the event (the collector allows 32) */
#define MAX_MEMBERS 500 /* per object (collector: 1,000) */
#define MAX_ELEMENTS 2000 /* per array (collector: 10,000) */

struct fin {
	size_t max_string;
	int cut; /* anything truncated or dropped */
};

/* Valid UTF-8 copy (bad bytes -> U+FFFD), cut to max bytes plus a marker
 * (mark), or to at most max bytes in all (!mark: a field with a hard limit).
 * NULL when s is fine as is. */
static char *fix_text(const char *s, size_t max, int mark, int *cut)
{
	size_t n = strlen(s), bad;
	int valid = ev_utf8_valid(s, n, &bad);
	if (valid && n <= max)
		return NULL;
	char *fixed = NULL;
	const char *t = s;
	size_t tn = n;
	if (!valid) {
		fixed = malloc(n * 3 + 1);
		if (!fixed)
			return NULL;
		size_t o = 0, i = 0;
		while (i < n) {
			size_t at;
			if (ev_utf8_valid(s + i, n - i, &at))
				at = n - i;
			memcpy(fixed + o, s + i, at);
			o += at;
			i += at;
			if (i < n) {
				memcpy(fixed + o, "\xEF\xBF\xBD", 3);
				o += 3;
				i++;
			}
		}
		fixed[o] = 0;
		t = fixed;
		tn = o;
	}
	if (tn <= max)
		return fixed;
	size_t keep = max;
	while (keep > 0 && ((unsigned char)t[keep] & 0xC0) == 0x80)
		keep--;
	char tail[64] = "";
	int tl = mark ? snprintf(tail, sizeof tail, "\xE2\x80\xA6[truncated %zu bytes]", tn - keep) : 0;
	char *out = malloc(keep + (size_t)tl + 1);
	if (out) {
		memcpy(out, t, keep);
		memcpy(out + keep, tail, (size_t)tl + 1);
		*cut = 1;
	}
	free(fixed);
	return out;
}

/* cJSON_ReplaceItemViaPointer does not carry the member name over. */
static void replace(cJSON *parent, cJSON *item, cJSON *repl)
{
	if (!repl)
		return;
	if (item->string) {
		size_t n = strlen(item->string) + 1;
		repl->string = cJSON_malloc(n);
		if (!repl->string) {
			cJSON_Delete(repl);
			return;
		}
		memcpy(repl->string, item->string, n);
		repl->type &= ~cJSON_StringIsConst;
	}
	cJSON_ReplaceItemViaPointer(parent, item, repl);
}

static void fix_tree(cJSON *node, int depth, struct fin *f)
{
	size_t count = 0;
	int is_obj = cJSON_IsObject(node);
	for (cJSON *c = node->child, *next; c; c = next, count++) {
		next = c->next;
		if (count >= (is_obj ? MAX_MEMBERS : MAX_ELEMENTS)) {
			cJSON_Delete(cJSON_DetachItemViaPointer(node, c));
			f->cut = 1;
			continue;
		}
		if (is_obj && c->string && !(c->type & cJSON_StringIsConst)) {
			int dummy = 0;
			char *k = fix_text(c->string, 256, 1, &dummy);
			if (k) {
				size_t kl = strlen(k) + 1;
				char *nk = cJSON_malloc(kl);
				if (nk) {
					memcpy(nk, k, kl);
					cJSON_free(c->string);
					c->string = nk;
				}
				free(k);
				f->cut |= dummy;
			}
		}
		if (cJSON_IsString(c) && c->valuestring) {
			/* the event's own fields (session_id ...) have hard limits, and a
			 * repair (1 bad byte -> 3) or a redaction marker can go past them */
			size_t hard = depth == 1 && is_obj ? ev_str_field_max(c->string) : 0;
			char *s = hard && hard <= f->max_string ? fix_text(c->valuestring, hard, 0, &f->cut)
			                                         : fix_text(c->valuestring, f->max_string, 1, &f->cut);
			if (s) {
				cJSON_SetValuestring(c, s);
				free(s);
			}
		} else if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
			if (depth >= MAX_NEST) {
				replace(node, c, cJSON_CreateString("[dropped: nested too deep]"));
				f->cut = 1;
			} else {
				fix_tree(c, depth + 1, f);
			}
		} else if (cJSON_IsNumber(c) && (c->valuedouble != c->valuedouble ||
		                                 c->valuedouble > 1e300 || c->valuedouble < -1e300)) {
			replace(node, c, cJSON_CreateNull());
		}
	}
}

static void set_flag(cJSON *ev, const char *key, cJSON *val)
{
	cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	if (!cJSON_IsObject(p)) {
		cJSON_Delete(val);
		return;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(p, key);
	cJSON_AddItemToObject(p, key, val);
}

/* Replace payload members that print larger than `min` bytes. */
static void drop_large(cJSON *ev, size_t min)
{
	cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	for (cJSON *c = cJSON_IsObject(p) ? p->child : NULL, *next; c; c = next) {
		next = c->next;
		if (!cJSON_IsObject(c) && !cJSON_IsArray(c) && !cJSON_IsString(c))
			continue;
		char *t = cJSON_PrintUnformatted(c);
		size_t n = t ? strlen(t) : 0;
		cJSON_free(t);
		if (n > min) {
			char msg[64];
			snprintf(msg, sizeof msg, "[dropped: %zu bytes, event too large]", n);
			replace(p, c, cJSON_CreateString(msg));
		}
	}
}

char *hook_finish(cJSON *ev, size_t max_string, size_t max_event_bytes, size_t *len)
{
	int n = redact_event(ev);
	if (n)
		set_flag(ev, "redacted", cJSON_CreateNumber(n));
	struct fin f = {max_string ? max_string : 16384, 0};
	for (int round = 0;; round++) {
		fix_tree(ev, 1, &f);
		if (f.cut)
			set_flag(ev, "truncated", cJSON_CreateTrue());
		char *s = cJSON_PrintUnformatted(ev);
		if (!s)
			return NULL;
		size_t l = strlen(s);
		if (l <= max_event_bytes || round == 7) {
			*len = l;
			return s;
		}
		cJSON_free(s);
		if (round < 4) {
			/* strings first: a quarter of the length per round */
			f.max_string = f.max_string / 4 > 64 ? f.max_string / 4 : 64;
		} else if (round < 6) {
			/* then the bulky payload members, keeping the small ones (ids, cwd...) */
			drop_large(ev, round == 4 ? 1024 : 128);
			f.cut = 1;
		} else {
			/* last resort: keep the envelope, drop the payload */
			cJSON *p = cJSON_CreateObject();
			cJSON_AddStringToObject(p, "dropped", "event too large");
			cJSON_DeleteItemFromObjectCaseSensitive(ev, "payload");
			cJSON_AddItemToObject(ev, "payload", p);
		}
	}
}

/* ---------- transcripts ---------- */

uint64_t hook_hash(const void *data, size_t n, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = seed ? seed : 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

int hook_seen_has(const struct hook_seen *s, uint64_t h)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->h[i] == h)
			return 1;
	return 0;
}

void hook_seen_add(struct hook_seen *s, uint64_t h)
{
	s->h[s->next] = h;
	s->next = (s->next + 1) % HOOK_SEEN_MAX;
	if (s->n < HOOK_SEEN_MAX)
		s->n++;
}

static long long usage_num(const cJSON *u, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(u, key);
	return cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e15 ? (long long)v->valuedouble : 0;
}

static void scan_line(const char *line, size_t n, struct hook_seen *seen, struct hook_usage *u)
{
	/* cheap filter: only assistant lines with usage are parsed */
	if (!memmem(line, n, "\"usage\"", 7) || !memmem(line, n, "assistant", 9))
		return;
	cJSON *o = cJSON_ParseWithLength(line, n);
	if (!o)
		return;
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
	const cJSON *usage = cJSON_GetObjectItemCaseSensitive(msg, "usage");
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "assistant") || !cJSON_IsObject(usage))
		goto out;
	const cJSON *mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const cJSON *rid = cJSON_GetObjectItemCaseSensitive(o, "requestId");
	if (cJSON_IsString(mid) || cJSON_IsString(rid)) {
		const char *a = cJSON_IsString(mid) ? mid->valuestring : "";
		const char *b = cJSON_IsString(rid) ? rid->valuestring : "";
		uint64_t h = hook_hash(a, strlen(a), 0);
		h = hook_hash("\x1f", 1, h);
		h = hook_hash(b, strlen(b), h);
		if (hook_seen_has(seen, h)) {
			u->duplicates++;
			goto out;
		}
		hook_seen_add(seen, h);
	}
	u->input += usage_num(usage, "input_tokens");
	u->output += usage_num(usage, "output_tokens");
	u->cache_read += usage_num(usage, "cache_read_input_tokens");
	u->cache_creation += usage_num(usage, "cache_creation_input_tokens");
	u->responses++;
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(msg, "model");
	if (cJSON_IsString(model) && model->valuestring[0] && model->valuestring[0] != '<')
		snprintf(u->model, sizeof u->model, "%s", model->valuestring);
out:
	cJSON_Delete(o);
}

size_t hook_transcript_scan(const char *buf, size_t len, struct hook_seen *seen, struct hook_usage *u)
{
	size_t off = 0;
	while (off < len) {
		const char *nl = memchr(buf + off, '\n', len - off);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (buf + off));
		if (n > 0)
			scan_line(buf + off, n, seen, u);
		u->lines++;
		off += n + 1;
	}
	return off;
}

struct tb {
	char *p;
	size_t len, cap, max;
};

static void tb_put(struct tb *b, const char *s, size_t n)
{
	if (b->len >= b->max)
		return;
	if (n > b->max - b->len)
		n = b->max - b->len;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void tb_str(struct tb *b, const char *s)
{
	if (b->len)
		tb_put(b, "\n", 1);
	tb_put(b, s, strlen(s));
}

/* Text of a content value: a string, or an array of blocks. */
static void content_text(struct tb *b, const cJSON *content)
{
	if (cJSON_IsString(content)) {
		tb_str(b, content->valuestring);
		return;
	}
	for (const cJSON *blk = cJSON_IsArray(content) ? content->child : NULL; blk; blk = blk->next) {
		const char *type = str_of(blk, "type");
		if (!type)
			continue;
		if (!strcmp(type, "text") && str_of(blk, "text")) {
			tb_str(b, str_of(blk, "text"));
		} else if (!strcmp(type, "tool_use")) {
			char head[160];
			snprintf(head, sizeof head, "[tool_use %s] ", str_of(blk, "name") ? str_of(blk, "name") : "?");
			tb_str(b, head);
			char *in = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(blk, "input"));
			if (in)
				tb_put(b, in, strlen(in) > 2048 ? 2048 : strlen(in));
			cJSON_free(in);
		} else if (!strcmp(type, "tool_result")) {
			tb_str(b, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(blk, "is_error")) ? "[tool_result error]"
			                                                                              : "[tool_result]");
			struct tb inner = {0};
			inner.max = 4096;
			content_text(&inner, cJSON_GetObjectItemCaseSensitive(blk, "content"));
			if (inner.p) {
				tb_put(b, " ", 1);
				tb_put(b, inner.p, inner.len);
			}
			free(inner.p);
		} else if (!strcmp(type, "image")) {
			tb_str(b, "[image]");
		}
	}
}

/* 1 for valid UTF-8 of at most max bytes (what POST /transcripts takes). */
static int short_text(const char *s, size_t max)
{
	size_t n = strlen(s), bad;
	return n <= max && ev_utf8_valid(s, n, &bad);
}

/* One transcript line -> a message (NULL: not a user/assistant line);
 * *h gets the response hash when the line carried usage (0 otherwise). */
static cJSON *line_message(const char *line, size_t n, const struct hook_seen *seen, size_t max_text,
                           uint64_t *h)
{
	*h = 0;
	if (!memmem(line, n, "\"message\"", 9))
		return NULL;
	cJSON *o = cJSON_ParseWithLength(line, n);
	const char *type = str_of(o, "type");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
	if (!type || (strcmp(type, "user") && strcmp(type, "assistant")) || !cJSON_IsObject(msg) ||
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "isMeta"))) {
		cJSON_Delete(o);
		return NULL;
	}
	struct tb text = {0};
	text.max = max_text + 4; /* a little over: cut properly below */
	content_text(&text, cJSON_GetObjectItemCaseSensitive(msg, "content"));
	cJSON *m = cJSON_CreateObject();
	const char *v;
	if ((v = str_of(o, "uuid")) && short_text(v, 128))
		cJSON_AddStringToObject(m, "uuid", v);
	cJSON_AddStringToObject(m, "role", !strcmp(type, "user") ? "user" : "assistant");
	if (text.p) {
		size_t rl;
		int cnt = 0;
		char *r = redact_buf(text.p, text.len, &rl, &cnt);
		char *t = r ? r : text.p;
		size_t tl = r ? rl : text.len;
		if (tl > max_text) {
			tl = max_text;
			while (tl > 0 && ((unsigned char)t[tl] & 0xC0) == 0x80)
				tl--;
			t[tl] = 0;
		}
		size_t bad;
		if (ev_utf8_valid(t, tl, &bad))
			cJSON_AddStringToObject(m, "text", t);
		free(r);
	}
	free(text.p);
	/* a time the collector refuses would cost the whole batch: without
	 * one, it uses its receive time */
	int64_t t;
	if ((v = str_of(o, "timestamp")) && short_text(v, 64) && !ev_parse_iso8601(v, &t) &&
	    t >= 946684800000LL && t <= ev_now_ms() + 86400000LL)
		cJSON_AddStringToObject(m, "timestamp", v);
	if (!strcmp(type, "assistant")) {
		const char *model = str_of(msg, "model");
		if (model && model[0] != '<' && short_text(model, 128))
			cJSON_AddStringToObject(m, "model", model);
		const cJSON *usage = cJSON_GetObjectItemCaseSensitive(msg, "usage");
		if (cJSON_IsObject(usage)) {
			const char *a = str_of(msg, "id"), *b = str_of(o, "requestId");
			uint64_t hh = hook_hash(a ? a : "", a ? strlen(a) : 0, 0);
			hh = hook_hash("\x1f", 1, hh);
			hh = hook_hash(b ? b : "", b ? strlen(b) : 0, hh);
			if (!hook_seen_has(seen, hh)) {
				*h = hh;
				cJSON *t = cJSON_AddObjectToObject(m, "tokens");
				cJSON_AddNumberToObject(t, "input", (double)usage_num(usage, "input_tokens"));
				cJSON_AddNumberToObject(t, "output", (double)usage_num(usage, "output_tokens"));
				cJSON_AddNumberToObject(t, "cache_read", (double)usage_num(usage, "cache_read_input_tokens"));
				cJSON_AddNumberToObject(t, "cache_creation",
				                        (double)usage_num(usage, "cache_creation_input_tokens"));
			}
		}
	}
	cJSON_Delete(o);
	return m;
}

size_t hook_transcript_messages(const char *buf, size_t len, struct hook_seen *seen,
                                size_t max_messages, size_t max_bytes, size_t max_text, cJSON *out)
{
	size_t off = 0, bytes = 0, count = 0;
	while (off < len && count < max_messages) {
		const char *nl = memchr(buf + off, '\n', len - off);
		if (!nl)
			break;
		size_t n = (size_t)(nl - (buf + off));
		uint64_t h;
		cJSON *m = n ? line_message(buf + off, n, seen, max_text, &h) : NULL;
		if (m) {
			char *t = cJSON_PrintUnformatted(m);
			size_t sz = t ? strlen(t) + 1 : 0;
			cJSON_free(t);
			if (count > 0 && bytes + sz > max_bytes) {
				cJSON_Delete(m);
				break; /* this line goes in the next request */
			}
			bytes += sz;
			count++;
			if (h)
				hook_seen_add(seen, h);
			cJSON_AddItemToArray(out, m);
		}
		off += n + 1;
	}
	return off;
}

void hook_set_usage(cJSON *ev, const struct hook_usage *u)
{
	cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	if (u->responses > 0) {
		cJSON_DeleteItemFromObjectCaseSensitive(ev, "tokens");
		cJSON *t = cJSON_AddObjectToObject(ev, "tokens");
		cJSON_AddNumberToObject(t, "input", (double)u->input);
		cJSON_AddNumberToObject(t, "output", (double)u->output);
		cJSON_AddNumberToObject(t, "cache_read", (double)u->cache_read);
		cJSON_AddNumberToObject(t, "cache_creation", (double)u->cache_creation);
		if (cJSON_IsObject(p) && u->model[0]) {
			cJSON_DeleteItemFromObjectCaseSensitive(p, "model");
			cJSON_AddStringToObject(p, "model", u->model);
		}
	}
	if (cJSON_IsObject(p)) {
		cJSON_DeleteItemFromObjectCaseSensitive(p, "transcript");
		cJSON *tr = cJSON_AddObjectToObject(p, "transcript");
		cJSON_AddNumberToObject(tr, "lines", (double)u->lines);
		cJSON_AddNumberToObject(tr, "responses", (double)u->responses);
		if (u->duplicates)
			cJSON_AddNumberToObject(tr, "duplicate_lines", (double)u->duplicates);
	}
}
