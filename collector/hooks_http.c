/* hooks_http.c -- POST /hooks/claude-code and POST /v1/logs (see
 * hooks_http.h). Same life as a POST /events request in server.c: the body
 * is accumulated (bounded by collector.max_body_bytes), turned into
 * canonical events (common/hookmap.c, common/otlp.c; redacted and bounded
 * by hook_finish, then ev_normalise_print) and handed to the writer; the
 * answer waits until Redis has them.
 *
 * Answers: a hook gets 200 with the hook output JSON ("{}" or, for a
 * blocked PreToolUse, the deny decision). A PreToolUse is always answered
 * with its decision, even when its event could not be queued: the guard
 * must not depend on Redis. Other events answer 503 + Retry-After when not
 * queued (Claude Code does not block on a failed http hook). /v1/logs
 * answers as OTLP/HTTP expects: 200 with {} or {"partialSuccess":...},
 * 400 for a body that is not OTLP JSON, 415 for protobuf, 503 to retry. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "collector.h"
#include "guard.h"
#include "hookmap.h"
#include "hooks_http.h"
#include "http.h"
#include "log.h"
#include "otlp.h"

enum kind { K_HOOK = 1, K_OTLP = 2 };

struct hreq {
	enum kind kind;
	char *body;
	size_t len, cap;
	int too_large, bad_type, not_post;
	int decision; /* a PreToolUse: always answer `answer` */
	char *answer; /* 200 body once queued (malloc) */
	struct ingest_result events;
	struct job job;
	int submitted;
};

/* ---------- guard policy, loaded once ---------- */

static pthread_once_t policy_once = PTHREAD_ONCE_INIT;
static struct guard_policy *policy;

static void load_policy(void)
{
	char err[512];
	const char *path = getenv("OBS_HOOK_POLICY");
	if (!path || !*path)
		path = access("config/hook-policy.yaml", R_OK) == 0 ? "config/hook-policy.yaml" : NULL;
	if (path) {
		policy = guard_policy_load(path, err, sizeof err);
		if (!policy)
			log_kv(LOG_WARN, "hook policy not loaded; using the built-in rules", "error", err, NULL);
		else
			log_kv(LOG_INFO, "hook policy loaded", "path", path, NULL);
	}
	if (!policy)
		policy = guard_policy_builtin();
}

/* ---------- routing ---------- */

int hooks_http_route(const char *method, const char *url)
{
	(void)method;
	return !strcmp(url, "/hooks/claude-code") || !strcmp(url, "/v1/logs");
}

void hooks_http_free(void *state)
{
	struct hreq *r = state;
	if (!r)
		return;
	writer_cancel(&r->job);
	ingest_result_free(&r->events);
	free(r->body);
	free(r->answer);
	free(r);
}

static int json_type(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || !*ct)
		return 1;
	size_t n = strcspn(ct, "; \t");
	return (n == 16 && !strncasecmp(ct, "application/json", n)) ||
	       (n == 10 && !strncasecmp(ct, "text/plain", n));
}

static enum MHD_Result answer(struct MHD_Connection *c, int *code, unsigned status, const char *body)
{
	*code = (int)status;
	return http_reply_json(c, status, body);
}

static enum MHD_Result unavailable(struct MHD_Connection *c, const struct collector_conf *cf,
                                   int *code, const char *msg)
{
	char ra[24];
	*code = 503;
	char *s = http_error_body(503, NULL, msg, NULL);
	if (!s)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_COPY);
	cJSON_free(s);
	snprintf(ra, sizeof ra, "%lld", cf->retry_after_s);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	enum MHD_Result ret = http_queue(c, 503, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---------- events ---------- */

/* Finish and normalise events (consumed) into r->events. Returns the
 * number refused. */
static size_t add_events(struct hreq *r, cJSON **evs, size_t n, const struct collector_conf *cf)
{
	struct ev_limits lim = collector_limits(cf);
	struct ingest_result *out = &r->events;
	size_t refused = 0;
	int64_t now = ev_now_ms();
	size_t fit = lim.max_event_bytes > 4096 ? lim.max_event_bytes - 1024 : lim.max_event_bytes;
	out->data = calloc(n ? n : 1, sizeof *out->data);
	out->lens = calloc(n ? n : 1, sizeof *out->lens);
	out->ids = calloc(n ? n : 1, sizeof *out->ids);
	out->probe = calloc(n ? n : 1, sizeof *out->probe);
	if (!out->data || !out->lens || !out->ids || !out->probe)
		return n;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		char *s = hook_finish(evs[i], 64 * 1024, fit, &len); /* redact, repair, bound */
		int finished = s != NULL;
		cJSON_free(s);
		struct ev_error err;
		char *data;
		if (!finished || ev_normalise_print(evs[i], now, &lim, &data, &len, &err)) {
			log_kv(LOG_WARN, "hook event refused", "field", finished ? err.field : "", "error",
			       finished ? err.problem : "out of memory", NULL);
			refused++;
			continue;
		}
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(evs[i], "id");
		out->data[out->n] = data;
		out->lens[out->n] = len;
		out->probe[out->n] = 0; /* id and timestamp are fixed: a retry collides with itself */
		snprintf(out->ids[out->n], 37, "%s", id->valuestring);
		out->n++;
	}
	return refused;
}

static int prepare_hook(struct hreq *r, struct MHD_Connection *c, const struct collector_conf *cf,
                        int *code, enum MHD_Result *ret)
{
	size_t bad;
	if (!ev_utf8_valid(r->body, r->len, &bad)) {
		*ret = (*code = 400, http_reply_error(c, 400, "", "body is not valid UTF-8"));
		return -1;
	}
	cJSON *in = cJSON_ParseWithLength(r->body, r->len);
	if (!cJSON_IsObject(in)) {
		cJSON_Delete(in);
		*ret = (*code = 400, http_reply_error(c, 400, "", "expected a Claude Code hook input (a JSON object)"));
		return -1;
	}
	struct hook_opts o = {"claude-code", "http", ev_now_ms()};
	cJSON *ev = hook_map(in, NULL, &o);
	cJSON_Delete(in);
	if (!ev) {
		*ret = MHD_NO;
		return -1;
	}
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "event_type");
	if (!strcmp(type->valuestring, "PreToolUse")) {
		cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
		const cJSON *tool = cJSON_GetObjectItemCaseSensitive(ev, "tool");
		const cJSON *cwd = cJSON_GetObjectItemCaseSensitive(payload, "cwd");
		struct guard_ctx cx = {NULL, cJSON_IsString(cwd) ? cwd->valuestring : NULL};
		struct guard_verdict v;
		pthread_once(&policy_once, load_policy);
		r->decision = 1;
		if (cJSON_IsString(tool) &&
		    guard_check_tool(policy, tool->valuestring, cJSON_GetObjectItemCaseSensitive(payload, "tool_input"),
		                     &cx, &v)) {
			hook_mark_blocked(ev, &v);
			char *d = hook_decision_json(&v);
			r->answer = d ? strdup(d) : NULL;
			cJSON_free(d);
		}
	}
	if (!r->answer)
		r->answer = strdup("{}");
	size_t refused = add_events(r, &ev, 1, cf);
	cJSON_Delete(ev);
	if (refused && !r->decision) {
		*ret = (*code = 400, http_reply_error(c, 400, "", "the hook input could not be turned into a valid event"));
		return -1;
	}
	return 0;
}

static int prepare_otlp(struct hreq *r, struct MHD_Connection *c, const struct collector_conf *cf,
                        int *code, enum MHD_Result *ret)
{
	char err[160], buf[256];
	size_t bad, rejected = 0;
	if (!ev_utf8_valid(r->body, r->len, &bad)) {
		*ret = (*code = 400, http_reply_error(c, 400, "", "body is not valid UTF-8"));
		return -1;
	}
	cJSON *req = cJSON_ParseWithLength(r->body, r->len);
	cJSON *arr = cJSON_CreateArray();
	if (!req || otlp_logs_to_events(req, ev_now_ms(), arr, &rejected, err, sizeof err)) {
		cJSON_Delete(req);
		cJSON_Delete(arr);
		*ret = (*code = 400, http_reply_error(c, 400, "", req ? err : "malformed JSON: expected OTLP/HTTP JSON logs"));
		return -1;
	}
	cJSON_Delete(req);
	size_t n = (size_t)cJSON_GetArraySize(arr);
	if (n > (size_t)cf->max_events_per_request) {
		cJSON_Delete(arr);
		snprintf(buf, sizeof buf, "more than %lld log records in one request", cf->max_events_per_request);
		*ret = (*code = 413, http_reply_error(c, 413, "", buf));
		return -1;
	}
	cJSON **evs = calloc(n ? n : 1, sizeof *evs);
	size_t k = 0;
	for (cJSON *e = arr->child; evs && e; e = e->next)
		evs[k++] = e;
	rejected += evs ? add_events(r, evs, n, cf) : n;
	free(evs);
	cJSON_Delete(arr);
	if (rejected)
		snprintf(buf, sizeof buf,
		         "{\"partialSuccess\":{\"rejectedLogRecords\":\"%zu\",\"errorMessage\":\"%zu log records could not be stored as events\"}}",
		         rejected, rejected);
	r->answer = strdup(rejected ? buf : "{}");
	return 0;
}

/* ---------- the handler ---------- */

enum MHD_Result hooks_http_handle(struct MHD_Connection *c, const struct collector_conf *cf,
                                  const char *method, const char *url, const char *upload,
                                  size_t *upload_size, void **state, int *code)
{
	struct hreq *r = *state;
	char why[192];
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		*state = r;
		r->kind = !strcmp(url, "/v1/logs") ? K_OTLP : K_HOOK;
		r->not_post = strcmp(method, "POST") != 0;
		r->bad_type = !json_type(c);
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (r->too_large || r->not_post || r->bad_type)
			return MHD_YES;
		if (r->len + n > (size_t)cf->max_body_bytes) {
			r->too_large = 1;
			free(r->body);
			r->body = NULL;
			r->len = r->cap = 0;
			return MHD_YES;
		}
		if (r->len + n > r->cap) {
			size_t cap = r->cap ? r->cap : 4096;
			while (cap < r->len + n)
				cap *= 2;
			char *b = realloc(r->body, cap);
			if (!b)
				return MHD_NO;
			r->body = b;
			r->cap = cap;
		}
		memcpy(r->body + r->len, upload, n);
		r->len += n;
		return MHD_YES;
	}

	if (r->submitted) {
		if (r->job.status == 0)
			return MHD_YES; /* Redis has not answered yet: called again next pass */
		if (r->job.status == 202)
			server_count_accepted(r->job.events->n);
		if (r->job.status == 202 || r->decision)
			return answer(c, code, 200, r->answer ? r->answer : "{}");
		return unavailable(c, cf, code, r->job.err);
	}
	if (r->not_post) {
		*code = 405;
		return http_reply_error(c, 405, NULL, r->kind == K_OTLP ? "use POST to send OTLP logs"
		                                                        : "use POST to send Claude Code hook input");
	}
	if (r->bad_type) {
		*code = 415;
		return http_reply_error(c, 415, "Content-Type",
		                        r->kind == K_OTLP ? "only OTLP/HTTP JSON is supported: application/json"
		                                          : "use application/json");
	}
	if (r->too_large) {
		char msg[128];
		snprintf(msg, sizeof msg, "body exceeds the %lld-byte limit", cf->max_body_bytes);
		*code = 413;
		return http_reply_error(c, 413, "", msg);
	}
	if (r->len == 0) {
		*code = 400;
		return http_reply_error(c, 400, "", "empty body");
	}
	enum MHD_Result ret = MHD_NO;
	if ((r->kind == K_HOOK ? prepare_hook : prepare_otlp)(r, c, cf, code, &ret))
		return ret;
	free(r->body);
	r->body = NULL;
	if (r->events.n == 0)
		return answer(c, code, 200, r->answer ? r->answer : "{}");
	if (writer_admit(why, sizeof why)) {
		if (r->decision)
			return answer(c, code, 200, r->answer ? r->answer : "{}");
		return unavailable(c, cf, code, why);
	}
	r->job.events = &r->events;
	r->submitted = 1;
	writer_submit(&r->job);
	return MHD_YES;
}
