/* transcript.c -- POST /transcripts bodies -> the normalised stream entry of
 * stream agent_transcripts (see api.h, README "History API"). Pure function
 * of its input (plus SHA-256 from libcrypto); thread-safe.
 *
 * In:  {"session_id", "agent_id"?, "transcript_path"?,
 *       "messages": [{"uuid"?, "role", "text"?, "model"?, "tokens"?, "timestamp"?}]}
 * Out: the same shape with every message carrying uuid and an ISO-8601 UTC
 *      timestamp, tokens under canonical names, unknown fields dropped, and
 *      "received_at" added. Secrets in the free-text fields (session_id,
 *      agent_id, transcript_path; each message's text and model) are
 *      redacted first, so the derived message ids never hash a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "api.h"
#include "ev.h"
#include "redact.h"

const struct transcript_limits transcript_default_limits = {
	.max_messages = 2000,
	.max_text = 256 * 1024,
};

/* Byte limits of the short string fields. */
#define MAX_ID 256
#define MAX_PATH 4096
#define MAX_MODEL 128

static const char *const token_keys[4] = {"input", "output", "cache_read", "cache_creation"};
static const char *const token_alias[4] = {"input_tokens", "output_tokens",
	"cache_read_input_tokens", "cache_creation_input_tokens"};

static int fail(struct api_error *err, int status, const char *field, const char *msg)
{
	err->status = status;
	snprintf(err->field, sizeof err->field, "%.95s", field);
	snprintf(err->message, sizeof err->message, "%s", msg);
	return -1;
}

/* Optional string member: absent/null -> NULL; else must be a string of
 * 1..max bytes. */
static int opt_string(const cJSON *o, const char *name, size_t max, int required,
                      const char **out, const char *field, struct api_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	char msg[96];
	*out = NULL;
	if (!v || cJSON_IsNull(v)) {
		if (required)
			return fail(err, 400, field, "required");
		return 0;
	}
	if (!cJSON_IsString(v))
		return fail(err, 400, field, "must be a string");
	size_t n = strlen(v->valuestring);
	if (n == 0 && required)
		return fail(err, 400, field, "must not be empty");
	if (n > max) {
		snprintf(msg, sizeof msg, "longer than %zu bytes", max);
		return fail(err, n > 65536 ? 413 : 400, field, msg);
	}
	*out = n ? v->valuestring : NULL;
	return 0;
}

/* sha256(parts joined by NUL) -> "h-" + 32 hex digits */
static void derive_id(const char *const *parts, size_t n, char out[40])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	static const char hex[] = "0123456789abcdef";
	memset(md, 0, sizeof md);
	if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		for (size_t i = 0; i < n; i++)
			EVP_DigestUpdate(ctx, parts[i] ? parts[i] : "", strlen(parts[i] ? parts[i] : "") + 1);
		EVP_DigestFinal_ex(ctx, md, &mdlen);
	}
	EVP_MD_CTX_free(ctx);
	out[0] = 'h';
	out[1] = '-';
	for (int i = 0; i < 16; i++) {
		out[2 + 2 * i] = hex[md[i] >> 4];
		out[3 + 2 * i] = hex[md[i] & 15];
	}
	out[34] = '\0';
}

static int norm_tokens(const cJSON *t, cJSON *msg_out, const char *field, struct api_error *err)
{
	char f[96];
	if (!t || cJSON_IsNull(t))
		return 0;
	snprintf(f, sizeof f, "%s.tokens", field);
	if (!cJSON_IsObject(t))
		return fail(err, 400, f, "must be an object");
	cJSON *out = cJSON_CreateObject();
	for (int i = 0; i < 4; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, token_keys[i]);
		if (!v)
			v = cJSON_GetObjectItemCaseSensitive(t, token_alias[i]);
		if (!v || cJSON_IsNull(v))
			continue;
		snprintf(f, sizeof f, "%s.tokens.%s", field, token_keys[i]);
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9e15 ||
		    v->valuedouble != (double)(long long)v->valuedouble) {
			cJSON_Delete(out);
			return fail(err, 400, f, "must be a non-negative integer");
		}
		cJSON_AddNumberToObject(out, token_keys[i], v->valuedouble);
	}
	if (out->child)
		cJSON_AddItemToObject(msg_out, "tokens", out);
	else
		cJSON_Delete(out);
	return 0;
}

static int one_message(const cJSON *m, size_t index, const char *agent_id, int64_t now_ms,
                       const struct transcript_limits *lim, cJSON *out_arr, struct api_error *err)
{
	char field[64], f[96], ts[32], id[40];
	const char *uuid, *role, *text, *model;
	snprintf(field, sizeof field, "messages[%zu]", index);
	if (!cJSON_IsObject(m))
		return fail(err, 400, field, "must be an object");
	snprintf(f, sizeof f, "%s.uuid", field);
	if (opt_string(m, "uuid", 128, 0, &uuid, f, err))
		return -1;
	if (!uuid) {
		snprintf(f, sizeof f, "%s.id", field);
		if (opt_string(m, "id", 128, 0, &uuid, f, err))
			return -1;
	}
	snprintf(f, sizeof f, "%s.role", field);
	if (opt_string(m, "role", 32, 1, &role, f, err))
		return -1;
	snprintf(f, sizeof f, "%s.text", field);
	if (opt_string(m, "text", (size_t)-1 / 2, 0, &text, f, err))
		return -1;
	/* Over-long text is cut (at a UTF-8 character boundary) and flagged,
	 * not refused: one huge tool output must not lose the whole turn. */
	size_t tlen = text ? strlen(text) : 0, keep = tlen;
	if (tlen > lim->max_text) {
		keep = lim->max_text;
		while (keep > 0 && ((unsigned char)text[keep] & 0xC0) == 0x80)
			keep--;
	}
	snprintf(f, sizeof f, "%s.model", field);
	if (opt_string(m, "model", MAX_MODEL, 0, &model, f, err))
		return -1;

	int64_t t = now_ms;
	const cJSON *tv = cJSON_GetObjectItemCaseSensitive(m, "timestamp");
	const char *ts_given = NULL;
	char ts_num[40];
	if (tv && !cJSON_IsNull(tv)) {
		snprintf(f, sizeof f, "%s.timestamp", field);
		if (ev_parse_time(tv, &t))
			return fail(err, 400, f, "must be epoch seconds or milliseconds, or an ISO-8601 string");
		if (t < 946684800000LL || t > now_ms + 86400000LL)
			return fail(err, 400, f, "out of range (2000-01-01 to now + 24 h)");
		if (cJSON_IsString(tv)) {
			ts_given = tv->valuestring;
		} else {
			snprintf(ts_num, sizeof ts_num, "%lld", (long long)t);
			ts_given = ts_num;
		}
	}
	ev_format_iso8601(t, ts);
	if (!uuid) {
		/* Same message sent again -> same id; a message with neither uuid nor
		 * timestamp is identified by its author and words alone. */
		const char *parts[4] = {agent_id, role, ts_given, text};
		derive_id(parts, 4, id);
		uuid = id;
	}

	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "uuid", uuid);
	cJSON_AddStringToObject(o, "role", role);
	if (keep < tlen) {
		char *cut = malloc(keep + 1);
		if (!cut) {
			cJSON_Delete(o);
			return fail(err, 503, f, "out of memory");
		}
		memcpy(cut, text, keep);
		cut[keep] = '\0';
		cJSON_AddStringToObject(o, "text", cut);
		cJSON_AddTrueToObject(o, "truncated");
		free(cut);
	} else {
		cJSON_AddStringToObject(o, "text", text ? text : "");
	}
	if (model)
		cJSON_AddStringToObject(o, "model", model);
	if (norm_tokens(cJSON_GetObjectItemCaseSensitive(m, "tokens"), o, field, err)) {
		cJSON_Delete(o);
		return -1;
	}
	cJSON_AddStringToObject(o, "timestamp", ts);
	cJSON_AddItemToArray(out_arr, o);
	return 0;
}

/* Redact one length-limited string field in place. A value already over
 * `max` is left for the length check to refuse (the request is answered 400
 * and nothing is stored); a value within it stays within it: a marker that
 * makes it longer is cut at a UTF-8 boundary, so redaction never turns a
 * valid batch into a refused one. */
static void redact_limited(cJSON *item, size_t max)
{
	if (!cJSON_IsString(item) || !item->valuestring || strlen(item->valuestring) > max)
		return;
	if (!redact_json(item) || strlen(item->valuestring) <= max)
		return;
	char *v = item->valuestring;
	size_t keep = max;
	while (keep > 0 && ((unsigned char)v[keep] & 0xC0) == 0x80)
		keep--; /* v[keep] starts a character: cut before it */
	v[keep] = '\0';
}

/* Redact the client's tree in place: the fields that carry free text, not
 * the ids, roles, timestamps and counts. */
static void redact_free_text(cJSON *root)
{
	static const struct {
		const char *name;
		size_t max;
	} top[] = {{"session_id", MAX_ID}, {"agent_id", MAX_ID}, {"transcript_path", MAX_PATH}};
	if (!cJSON_IsObject(root))
		return;
	for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
		redact_limited(cJSON_GetObjectItemCaseSensitive(root, top[i].name), top[i].max);
	cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
	for (cJSON *m = cJSON_IsArray(msgs) ? msgs->child : NULL; m; m = m->next) {
		if (!cJSON_IsObject(m))
			continue;
		redact_json(cJSON_GetObjectItemCaseSensitive(m, "text"));
		redact_limited(cJSON_GetObjectItemCaseSensitive(m, "model"), MAX_MODEL);
	}
}

int transcript_normalise(const char *body, size_t len, int64_t now_ms,
                         const struct transcript_limits *lim, char **out, size_t *outlen,
                         size_t *n_messages, struct api_error *err)
{
	char msg[160], recv[32];
	size_t bad_at;
	const char *session_id, *agent_id, *path;
	cJSON *root = NULL, *norm = NULL;
	int rc = -1;

	*out = NULL;
	*outlen = 0;
	*n_messages = 0;
	if (!ev_utf8_valid(body, len, &bad_at)) {
		snprintf(msg, sizeof msg, "body is not valid UTF-8 (byte %zu)", bad_at);
		return fail(err, 400, "", msg);
	}
	const char *end = NULL;
	root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
	if (!root) {
		snprintf(msg, sizeof msg, "malformed JSON at byte %zu",
		         end && end >= body ? (size_t)(end - body) : 0);
		return fail(err, 400, "", msg);
	}
	for (const char *p = end; p < body + len; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
			snprintf(msg, sizeof msg, "malformed JSON at byte %zu (data after the object)",
			         (size_t)(p - body));
			fail(err, 400, "", msg);
			goto out;
		}
	}
	if (!cJSON_IsObject(root)) {
		fail(err, 400, "", "body must be one JSON object {session_id, agent_id, messages: [...]}");
		goto out;
	}
	redact_free_text(root);
	if (opt_string(root, "session_id", MAX_ID, 1, &session_id, "session_id", err) ||
	    opt_string(root, "agent_id", MAX_ID, 0, &agent_id, "agent_id", err) ||
	    opt_string(root, "transcript_path", MAX_PATH, 0, &path, "transcript_path", err))
		goto out;
	const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
	if (!cJSON_IsArray(msgs)) {
		fail(err, 400, "messages", msgs ? "must be an array" : "required");
		goto out;
	}
	size_t n = (size_t)cJSON_GetArraySize(msgs);
	if (n == 0) {
		fail(err, 400, "messages", "must hold at least one message");
		goto out;
	}
	if (n > lim->max_messages) {
		snprintf(msg, sizeof msg, "%zu messages in one request, more than %zu", n, lim->max_messages);
		fail(err, 413, "messages", msg);
		goto out;
	}
	norm = cJSON_CreateObject();
	cJSON_AddStringToObject(norm, "session_id", session_id);
	if (agent_id)
		cJSON_AddStringToObject(norm, "agent_id", agent_id);
	if (path)
		cJSON_AddStringToObject(norm, "transcript_path", path);
	ev_format_iso8601(now_ms, recv);
	cJSON_AddStringToObject(norm, "received_at", recv);
	cJSON *arr = cJSON_AddArrayToObject(norm, "messages");
	size_t i = 0;
	for (const cJSON *m = msgs->child; m; m = m->next, i++)
		if (one_message(m, i, agent_id, now_ms, lim, arr, err))
			goto out;
	*out = cJSON_PrintUnformatted(norm);
	if (!*out) {
		fail(err, 503, "", "out of memory");
		goto out;
	}
	*outlen = strlen(*out);
	*n_messages = n;
	rc = 0;
out:
	cJSON_Delete(root);
	cJSON_Delete(norm);
	return rc;
}
