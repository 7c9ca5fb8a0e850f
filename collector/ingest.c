/* ingest.c -- turns a request body (one JSON object, a JSON array, or NDJSON)
 * into serialised canonical events, or an error body naming each invalid
 * event by index. All-or-nothing: one invalid event refuses the request.
 * Secrets are redacted after validation (common/redact.c, the collector's
 * installed configuration). Pure function of its input and that
 * configuration; runs on libmicrohttpd's worker threads. */
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "http.h"
#include "redact.h"

#define MAX_REPORTED_ERRORS 50

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void ingest_result_free(struct ingest_result *r)
{
	if (!r)
		return;
	if (!r->in_arena) {
		for (size_t i = 0; i < r->n; i++)
			cJSON_free(r->data[i]);
		cJSON_free(r->error_json);
	}
	free(r->data);
	free(r->lens);
	free(r->ids);
	free(r->probe);
	int in_arena = r->in_arena; /* a property of the request, kept */
	memset(r, 0, sizeof *r);
	r->in_arena = in_arena;
}

static void set_error(struct ingest_result *r, int status, cJSON *errors, const char *field,
                      const char *message)
{
	r->status = status;
	r->error_json = http_error_body((unsigned)status, field, message, errors);
}

/* Parse one JSON text of exactly [s, s+len) (trailing whitespace allowed). */
static cJSON *parse_exact(const char *s, size_t len, size_t *err_at)
{
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
	if (!j) {
		*err_at = end && end >= s ? (size_t)(end - s) : 0;
		return NULL;
	}
	for (const char *p = end; p < s + len; p++) {
		if (!is_ws(*p)) {
			*err_at = (size_t)(p - s);
			cJSON_Delete(j);
			return NULL;
		}
	}
	return j;
}

static int add_event(struct ingest_result *r, size_t cap, char *data, size_t len, const char *id,
                     int probe)
{
	if (r->n == cap)
		return -1;
	r->data[r->n] = data;
	r->lens[r->n] = len;
	r->probe[r->n] = (unsigned char)probe;
	snprintf(r->ids[r->n], 37, "%s", id);
	r->n++;
	return 0;
}

/* Secrets out of a normalised event, before it is serialised for Redis;
 * payload.redacted counts them (added to a count agent-hook already made). */
static void redact_one(cJSON *ev)
{
	int n = redact_event(ev);
	if (!n)
		return;
	cJSON *payload = cJSON_GetObjectItemCaseSensitive(ev, "payload");
	cJSON *prev = cJSON_GetObjectItemCaseSensitive(payload, "redacted");
	double total = n + (cJSON_IsNumber(prev) && prev->valuedouble > 0 ? prev->valuedouble : 0);
	cJSON_DeleteItemFromObjectCaseSensitive(payload, "redacted");
	cJSON_AddNumberToObject(payload, "redacted", total);
}

/* Normalise and redact one element; on failure append {"index":i,"field":..,"message":..}. */
static int one(struct ingest_result *r, size_t cap, cJSON *ev, size_t index, int64_t now_ms,
               const struct ev_limits *lim, cJSON *errors, int *worst)
{
	struct ev_error e;
	char *s;
	size_t n;
	/* A client-chosen id without a client timestamp gets a new timestamp on
	 * every retry: the store must look for an earlier copy of that id. */
	const cJSON *cid = cJSON_GetObjectItemCaseSensitive(ev, "id");
	const cJSON *cts = cJSON_GetObjectItemCaseSensitive(ev, "timestamp");
	int probe = cid && !cJSON_IsNull(cid) && (!cts || cJSON_IsNull(cts));
	if (ev_normalise(ev, now_ms, lim, &e) || (redact_one(ev), ev_print(ev, lim, &s, &n, &e))) {
		if (cJSON_GetArraySize(errors) < MAX_REPORTED_ERRORS) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddNumberToObject(o, "index", (double)index);
			cJSON_AddStringToObject(o, "field", e.field);
			cJSON_AddStringToObject(o, "message", e.problem);
			cJSON_AddItemToArray(errors, o);
		}
		if (e.status > *worst)
			*worst = e.status;
		return -1;
	}
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "id");
	add_event(r, cap, s, n, id->valuestring, probe);
	return 0;
}

static int alloc_slots(struct ingest_result *r, size_t cap)
{
	r->data = calloc(cap ? cap : 1, sizeof *r->data);
	r->lens = calloc(cap ? cap : 1, sizeof *r->lens);
	r->ids = calloc(cap ? cap : 1, sizeof *r->ids);
	r->probe = calloc(cap ? cap : 1, sizeof *r->probe);
	return r->data && r->lens && r->ids && r->probe ? 0 : -1;
}

int ingest_parse(const char *body, size_t len, enum ingest_format fmt, int64_t now_ms,
                 const struct ev_limits *lim, size_t max_events, struct ingest_result *out)
{
	char msg[160];
	size_t bad;
	int worst = 0;
	cJSON *errors = NULL, *root = NULL;

	int in_arena = out->in_arena;
	memset(out, 0, sizeof *out);
	out->in_arena = in_arena;
	if (!ev_utf8_valid(body, len, &bad)) {
		snprintf(msg, sizeof msg, "body is not valid UTF-8 (byte %zu)", bad);
		set_error(out, 400, NULL, "", msg);
		return -1;
	}
	errors = cJSON_CreateArray();

	if (fmt == FMT_NDJSON) {
		size_t lines = 0;
		for (size_t i = 0; i < len; i++)
			lines += body[i] == '\n';
		size_t cap = lines + 1;
		if (cap > max_events)
			cap = max_events;
		if (alloc_slots(out, cap))
			goto oom;
		size_t index = 0;
		for (const char *p = body, *end = body + len; p < end;) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			const char *le = nl ? nl : end;
			const char *q = p;
			while (q < le && is_ws(*q))
				q++;
			if (q < le) {
				if (index >= max_events) {
					snprintf(msg, sizeof msg, "more than %zu events in one request", max_events);
					cJSON_Delete(errors);
					set_error(out, 413, NULL, "", msg);
					return -1;
				}
				size_t at = 0;
				cJSON *ev = parse_exact(q, (size_t)(le - q), &at);
				if (!ev) {
					if (cJSON_GetArraySize(errors) < MAX_REPORTED_ERRORS) {
						cJSON *o = cJSON_CreateObject();
						cJSON_AddNumberToObject(o, "index", (double)index);
						cJSON_AddStringToObject(o, "field", "");
						snprintf(msg, sizeof msg, "malformed JSON at byte %zu of line %zu", at,
						         index + 1);
						cJSON_AddStringToObject(o, "message", msg);
						cJSON_AddItemToArray(errors, o);
					}
					worst = worst > 400 ? worst : 400;
				} else {
					one(out, cap, ev, index, now_ms, lim, errors, &worst);
					cJSON_Delete(ev);
				}
				index++;
			}
			p = nl ? nl + 1 : end;
		}
		if (index == 0) {
			cJSON_Delete(errors);
			set_error(out, 400, NULL, "", "no events in body");
			return -1;
		}
	} else {
		size_t at = 0;
		root = parse_exact(body, len, &at);
		if (!root) {
			snprintf(msg, sizeof msg, "malformed JSON at byte %zu", at);
			cJSON_Delete(errors);
			set_error(out, 400, NULL, "", msg);
			return -1;
		}
		if (cJSON_IsArray(root)) {
			size_t cnt = (size_t)cJSON_GetArraySize(root);
			if (cnt == 0) {
				cJSON_Delete(errors);
				cJSON_Delete(root);
				set_error(out, 400, NULL, "", "empty array: no events in body");
				return -1;
			}
			if (cnt > max_events) {
				snprintf(msg, sizeof msg, "%zu events in one request, more than %zu", cnt,
				         max_events);
				cJSON_Delete(errors);
				cJSON_Delete(root);
				set_error(out, 413, NULL, "", msg);
				return -1;
			}
			if (alloc_slots(out, cnt))
				goto oom;
			size_t index = 0;
			for (cJSON *ev = root->child; ev; ev = ev->next, index++)
				one(out, cnt, ev, index, now_ms, lim, errors, &worst);
		} else {
			if (alloc_slots(out, 1))
				goto oom;
			if (one(out, 1, root, 0, now_ms, lim, errors, &worst)) {
				/* single event: report its field directly */
				cJSON *e0 = cJSON_GetArrayItem(errors, 0);
				const char *f = cJSON_GetObjectItem(e0, "field")->valuestring;
				const char *m = cJSON_GetObjectItem(e0, "message")->valuestring;
				char fbuf[96], mbuf[192];
				snprintf(fbuf, sizeof fbuf, "%s", f);
				snprintf(mbuf, sizeof mbuf, "%s", m);
				cJSON_Delete(errors);
				cJSON_Delete(root);
				ingest_result_free(out);
				set_error(out, worst, NULL, fbuf, mbuf);
				return -1;
			}
		}
		cJSON_Delete(root);
		root = NULL;
	}

	if (cJSON_GetArraySize(errors) > 0 || worst) {
		ingest_result_free(out);
		set_error(out, worst ? worst : 400, errors, NULL,
		          "invalid events; nothing was queued (the request is all-or-nothing)");
		return -1;
	}
	cJSON_Delete(errors);
	return 0;
oom:
	cJSON_Delete(errors);
	cJSON_Delete(root);
	ingest_result_free(out);
	set_error(out, 500, NULL, "", "out of memory");
	return -1;
}
