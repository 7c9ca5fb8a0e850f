/* otlp.c -- OTLP/HTTP JSON logs -> canonical events (see otlp.h). */
#include "otlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev.h"
#include "hookmap.h"

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

cJSON *otlp_value(const cJSON *any)
{
	const cJSON *v;
	if (!cJSON_IsObject(any))
		return NULL;
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "stringValue")) && cJSON_IsString(v))
		return cJSON_CreateString(v->valuestring);
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "boolValue")) && cJSON_IsBool(v))
		return cJSON_CreateBool(cJSON_IsTrue(v));
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "intValue"))) {
		/* int64 is a decimal string in OTLP JSON; some exporters send numbers */
		if (cJSON_IsNumber(v))
			return cJSON_CreateNumber(v->valuedouble);
		if (cJSON_IsString(v)) {
			char *end;
			double d = strtod(v->valuestring, &end);
			return *end || end == v->valuestring ? cJSON_CreateString(v->valuestring) : cJSON_CreateNumber(d);
		}
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "doubleValue"))) {
		if (cJSON_IsNumber(v))
			return cJSON_CreateNumber(v->valuedouble);
		if (cJSON_IsString(v))
			return cJSON_CreateString(v->valuestring); /* "NaN", "Infinity" */
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "bytesValue")) && cJSON_IsString(v))
		return cJSON_CreateString(v->valuestring);
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "arrayValue"))) {
		cJSON *a = cJSON_CreateArray();
		const cJSON *vals = cJSON_GetObjectItemCaseSensitive(v, "values");
		for (const cJSON *e = cJSON_IsArray(vals) ? vals->child : NULL; e; e = e->next) {
			cJSON *x = otlp_value(e);
			cJSON_AddItemToArray(a, x ? x : cJSON_CreateNull());
		}
		return a;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(any, "kvlistValue"))) {
		cJSON *o = cJSON_CreateObject();
		const cJSON *vals = cJSON_GetObjectItemCaseSensitive(v, "values");
		for (const cJSON *e = cJSON_IsArray(vals) ? vals->child : NULL; e; e = e->next) {
			const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, "key");
			if (!cJSON_IsString(k) || cJSON_GetObjectItemCaseSensitive(o, k->valuestring))
				continue;
			cJSON *x = otlp_value(cJSON_GetObjectItemCaseSensitive(e, "value"));
			cJSON_AddItemToObject(o, k->valuestring, x ? x : cJSON_CreateNull());
		}
		return o;
	}
	return NULL;
}

/* [{key, value: AnyValue}, ...] -> {key: plain value} */
static cJSON *attrs_of(const cJSON *list)
{
	cJSON *o = cJSON_CreateObject();
	for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e; e = e->next) {
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, "key");
		if (!cJSON_IsString(k) || !k->valuestring[0] || cJSON_GetObjectItemCaseSensitive(o, k->valuestring))
			continue;
		cJSON *x = otlp_value(cJSON_GetObjectItemCaseSensitive(e, "value"));
		cJSON_AddItemToObject(o, k->valuestring, x ? x : cJSON_CreateNull());
	}
	return o;
}

/* A number attribute (number or numeric string) in [0, max], detached from
 * attrs. Anything else stays in attrs (and so in the payload): a value the
 * event contract refuses must not cost the whole record. */
static int take_num(cJSON *attrs, const char *key, double max, double *out)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(attrs, key);
	double d;
	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
	} else if (cJSON_IsString(v)) {
		char *end;
		d = strtod(v->valuestring, &end);
		if (end == v->valuestring || *end)
			return 0;
	} else {
		return 0;
	}
	if (!(d >= 0 && d <= max)) /* also false for NaN */
		return 0;
	cJSON_DeleteItemFromObjectCaseSensitive(attrs, key);
	*out = d;
	return 1;
}

static char *take_str(cJSON *attrs, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(attrs, key);
	if (!cJSON_IsString(v) || !v->valuestring[0])
		return NULL;
	char *s = strdup(v->valuestring);
	cJSON_DeleteItemFromObjectCaseSensitive(attrs, key);
	return s;
}

/* Nanoseconds since the epoch (string or number) -> ms; 0 when absent, or
 * beyond what int64 ms can hold (the caller then tries another time). */
static int64_t nanos_ms(const cJSON *v)
{
	double d = 0;
	if (cJSON_IsString(v))
		d = strtod(v->valuestring, NULL);
	else if (cJSON_IsNumber(v))
		d = v->valuedouble;
	d /= 1e6;
	return d > 0 && d < 9e18 ? (int64_t)d : 0; /* also false for NaN and inf */
}

static void uuid_of(const char *text, char out[37])
{
	uint64_t a = hook_hash(text, strlen(text), 0);
	uint64_t b = hook_hash(text, strlen(text), 0x84222325cbf29ce4ULL ^ a);
	unsigned char u[16];
	for (int i = 0; i < 8; i++) {
		u[i] = (unsigned char)(a >> (56 - 8 * i));
		u[8 + i] = (unsigned char)(b >> (56 - 8 * i));
	}
	u[6] = (unsigned char)((u[6] & 0x0F) | 0x80); /* version 8: custom */
	u[8] = (unsigned char)((u[8] & 0x3F) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
	         u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int is_true(const cJSON *v)
{
	return cJSON_IsTrue(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, "true"));
}

static cJSON *record_event(const cJSON *rec, const cJSON *res_attrs, const char *service,
                           const char *scope, int64_t now_ms)
{
	cJSON *attrs = attrs_of(cJSON_GetObjectItemCaseSensitive(rec, "attributes"));
	cJSON *ev = cJSON_CreateObject();
	char name[80], id[37], ts[32];
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(rec, "body");
	cJSON *bodyv = otlp_value(body);
	int claude = (service && !strcmp(service, "claude-code")) ||
	             (cJSON_IsString(bodyv) && !strncmp(bodyv->valuestring, "claude_code.", 12));

	const cJSON *en = cJSON_GetObjectItemCaseSensitive(attrs, "event.name");
	if (cJSON_IsString(en) && valid_type(en->valuestring))
		snprintf(name, sizeof name, "%s%s", claude && !strchr(en->valuestring, '.') ? "claude_code." : "",
		         en->valuestring);
	else if (cJSON_IsString(bodyv) && valid_type(bodyv->valuestring))
		snprintf(name, sizeof name, "%s", bodyv->valuestring);
	else
		snprintf(name, sizeof name, "otlp.log");
	if (!valid_type(name))
		snprintf(name, sizeof name, "otlp.log");

	/* identity: the record's content, so a retried export is the same event */
	char *fp_attrs = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(rec, "attributes"));
	const cJSON *tn = cJSON_GetObjectItemCaseSensitive(rec, "timeUnixNano");
	const cJSON *on = cJSON_GetObjectItemCaseSensitive(rec, "observedTimeUnixNano");
	char tbuf[48];
	snprintf(tbuf, sizeof tbuf, "%lld/%lld", (long long)nanos_ms(tn), (long long)nanos_ms(on));
	size_t fl = strlen(name) + strlen(tbuf) + (fp_attrs ? strlen(fp_attrs) : 0) + (service ? strlen(service) : 0) + 8;
	char *fp = malloc(fl);
	if (fp) {
		snprintf(fp, fl, "%s|%s|%s|%s", name, tbuf, service ? service : "", fp_attrs ? fp_attrs : "");
		uuid_of(fp, id);
		free(fp);
	} else {
		ev_uuid_v7(id);
	}
	cJSON_free(fp_attrs);

	int64_t t = nanos_ms(tn);
	if (!t)
		t = nanos_ms(on);
	const cJSON *ets = cJSON_GetObjectItemCaseSensitive(attrs, "event.timestamp");
	if (!t && cJSON_IsString(ets))
		ev_parse_iso8601(ets->valuestring, &t);
	if (t < 946684800000LL || t > now_ms + 86400000LL)
		t = now_ms;
	ev_format_iso8601(t, ts);

	cJSON_AddStringToObject(ev, "id", id);
	cJSON_AddStringToObject(ev, "event_type", name);
	cJSON_AddStringToObject(ev, "timestamp", ts);
	cJSON_AddStringToObject(ev, "source_app", service ? service : "otlp");
	char *s;
	if ((s = take_str(attrs, "session.id"))) {
		if (strlen(s) <= 256)
			cJSON_AddStringToObject(ev, "session_id", s);
		free(s);
	}
	double d;
	if (take_num(attrs, "duration_ms", 1e10, &d)) /* the limits of ev_normalise */
		cJSON_AddNumberToObject(ev, "latency_ms", d);

	const char *base = !strncmp(name, "claude_code.", 12) ? name + 12 : name;
	if (!strcmp(base, "api_request")) {
		static const char *const keys[4][2] = {{"input_tokens", "input"}, {"output_tokens", "output"},
			{"cache_read_tokens", "cache_read"}, {"cache_creation_tokens", "cache_creation"}};
		cJSON *tok = cJSON_CreateObject();
		for (int i = 0; i < 4; i++)
			if (take_num(attrs, keys[i][0], 1e15, &d) && d == floor(d))
				cJSON_AddNumberToObject(tok, keys[i][1], d);
		if (tok->child)
			cJSON_AddItemToObject(ev, "tokens", tok);
		else
			cJSON_Delete(tok);
		if (take_num(attrs, "cost_usd", 1e9, &d))
			cJSON_AddNumberToObject(ev, "cost_usd", d);
		cJSON_AddStringToObject(ev, "status", "success");
	} else if (!strcmp(base, "api_error")) {
		cJSON_AddStringToObject(ev, "status", "error");
	} else if (!strcmp(base, "tool_result") || !strcmp(base, "tool_decision")) {
		if ((s = take_str(attrs, "tool_name"))) {
			if (strlen(s) <= 256)
				cJSON_AddStringToObject(ev, "tool", s);
			free(s);
		}
		if (!strcmp(base, "tool_result")) {
			const cJSON *ok = cJSON_GetObjectItemCaseSensitive(attrs, "success");
			cJSON_AddStringToObject(ev, "status", ok ? (is_true(ok) ? "success" : "error") : "success");
		}
	}

	cJSON *payload = attrs;
	if (cJSON_IsObject(res_attrs) && res_attrs->child)
		cJSON_AddItemToObject(payload, "resource", cJSON_Duplicate(res_attrs, 1));
	if (bodyv && !(cJSON_IsString(bodyv) && !strcmp(bodyv->valuestring, name)))
		cJSON_AddItemToObject(payload, "body", bodyv);
	else
		cJSON_Delete(bodyv);
	const cJSON *sev = cJSON_GetObjectItemCaseSensitive(rec, "severityText");
	if (cJSON_IsString(sev) && sev->valuestring[0])
		cJSON_AddStringToObject(payload, "severity", sev->valuestring);
	if (scope)
		cJSON_AddStringToObject(payload, "scope", scope);
	const cJSON *trace = cJSON_GetObjectItemCaseSensitive(rec, "traceId");
	const cJSON *span = cJSON_GetObjectItemCaseSensitive(rec, "spanId");
	if (cJSON_IsString(trace) && trace->valuestring[0] && strlen(trace->valuestring) <= 128)
		cJSON_AddStringToObject(ev, "trace_id", trace->valuestring);
	if (cJSON_IsString(span) && span->valuestring[0] && strlen(span->valuestring) <= 128)
		cJSON_AddStringToObject(ev, "span_id", span->valuestring);
	cJSON_AddStringToObject(payload, "via", "otlp");
	cJSON_AddItemToObject(ev, "payload", payload);
	return ev;
}

int otlp_logs_to_events(const cJSON *req, int64_t now_ms, cJSON *out, size_t *rejected, char *err,
                        size_t errlen)
{
	*rejected = 0;
	const cJSON *rl = cJSON_GetObjectItemCaseSensitive(req, "resourceLogs");
	if (!cJSON_IsObject(req) || (rl && !cJSON_IsArray(rl))) {
		snprintf(err, errlen, "expected an OTLP ExportLogsServiceRequest: {\"resourceLogs\":[...]}");
		return -1;
	}
	for (const cJSON *r = rl ? rl->child : NULL; r; r = r->next) {
		const cJSON *res = cJSON_GetObjectItemCaseSensitive(r, "resource");
		cJSON *res_attrs = attrs_of(cJSON_GetObjectItemCaseSensitive(res, "attributes"));
		const cJSON *svc = cJSON_GetObjectItemCaseSensitive(res_attrs, "service.name");
		char service[129] = "";
		if (cJSON_IsString(svc))
			snprintf(service, sizeof service, "%s", svc->valuestring);
		const cJSON *sl = cJSON_GetObjectItemCaseSensitive(r, "scopeLogs");
		for (const cJSON *s = cJSON_IsArray(sl) ? sl->child : NULL; s; s = s->next) {
			const cJSON *scope = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "scope"), "name");
			const cJSON *recs = cJSON_GetObjectItemCaseSensitive(s, "logRecords");
			for (const cJSON *rec = cJSON_IsArray(recs) ? recs->child : NULL; rec; rec = rec->next) {
				if (!cJSON_IsObject(rec)) {
					(*rejected)++;
					continue;
				}
				cJSON *ev = record_event(rec, res_attrs, service[0] ? service : NULL,
				                         cJSON_IsString(scope) ? scope->valuestring : NULL, now_ms);
				if (ev)
					cJSON_AddItemToArray(out, ev);
				else
					(*rejected)++;
			}
		}
		cJSON_Delete(res_attrs);
	}
	return 0;
}
