/* ev.c -- canonical event validation and normalisation (see ev.h and the
 * README's "Event contract"). Works on caller-owned cJSON trees; allocates
 * only the strings it returns. Thread-safe (per-thread random pool). */
#include "ev.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const struct ev_limits ev_default_limits = {
	.max_depth = 32,
	.max_string = 192 * 1024,
	.max_members = 1000,
	.max_array = 10000,
	.max_event_bytes = 256 * 1024,
};

/* Optional string fields and their byte limits. */
static const struct {
	const char *name;
	size_t max;
} str_fields[] = {
	{"session_id", 256}, {"agent_id", 256},   {"agent_role", 128},
	{"parent_agent_id", 256}, {"source_app", 128}, {"tool", 256},
	{"trace_id", 128},   {"span_id", 128},
};
#define N_STR_FIELDS (sizeof str_fields / sizeof str_fields[0])

size_t ev_str_field_max(const char *name)
{
	for (size_t i = 0; name && i < N_STR_FIELDS; i++)
		if (!strcmp(str_fields[i].name, name))
			return str_fields[i].max;
	return 0;
}

/* Canonical token keys and the aliases Claude Code and OTLP use. */
static const char *const token_keys[4] = {"input", "output", "cache_read", "cache_creation"};
static const char *const token_alias[4] = {"input_tokens", "output_tokens",
	"cache_read_input_tokens", "cache_creation_input_tokens"};

static int fail(struct ev_error *err, int status, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct ev_error *err, int status, const char *field, const char *fmt, ...)
{
	va_list ap;
	err->status = status;
	snprintf(err->field, sizeof err->field, "%s", field);
	va_start(ap, fmt);
	vsnprintf(err->problem, sizeof err->problem, fmt, ap);
	va_end(ap);
	return -1;
}

int64_t ev_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ev_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- UTF-8 ---------- */

int ev_utf8_valid(const char *str, size_t n, size_t *bad_at)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		unsigned min, cp;
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1; cp = c & 0x1F; min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2; cp = c & 0x0F; min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3; cp = c & 0x07; min = 0x10000;
		} else {
			goto bad;
		}
		if (i + need >= n)
			goto bad;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			goto bad;
		i += need + 1;
	}
	return 1;
bad:
	if (bad_at)
		*bad_at = i;
	return 0;
}

/* ---------- time ---------- */

/* Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int ev_parse_iso8601(const char *s, int64_t *ms_out)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int Y, M, D, h, mi, sec, ms = 0;
	const char *p = s;

	if (digits(&p, 4, &Y) || *p++ != '-' || digits(&p, 2, &M) || *p++ != '-' ||
	    digits(&p, 2, &D))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
	    digits(&p, 2, &sec))
		return -1;
	if (*p == '.' || *p == ',') {
		p++;
		int nd = 0;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p)) {
			if (nd < 3)
				ms = ms * 10 + (*p - '0');
			nd++;
			p++;
		}
		for (; nd < 3; nd++)
			ms *= 10;
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;
		if (digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
		offset_min = sign * (oh * 60 + om);
	}
	if (*p != '\0')
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 60)
		return -1;
	if (M == 2 && D == 29 && !((Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0))
		return -1;
	int64_t days = days_from_civil(Y, (unsigned)M, (unsigned)D);
	int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)offset_min * 60;
	*ms_out = secs * 1000 + ms;
	return 0;
}

/* Civil date from days since 1970-01-01 (H. Hinnant); no locale or tz lock. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

void ev_format_iso8601(int64_t ms, char out[32])
{
	int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	int64_t rem = ms - days * 86400000; /* 0 .. 86399999 */
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	if (y < 0 || y > 9999) {
		snprintf(out, 32, "%s", y < 0 ? "0000-01-01T00:00:00.000Z" : "9999-12-31T23:59:59.999Z");
		return;
	}
	/* YYYY-MM-DDTHH:MM:SS.mmmZ */
	memcpy(out, "0000-00-00T00:00:00.000Z", 25);
	put_digits(out, (unsigned)y, 4);
	put_digits(out + 5, m, 2);
	put_digits(out + 8, d, 2);
	put_digits(out + 11, (unsigned)(rem / 3600000), 2);
	put_digits(out + 14, (unsigned)(rem / 60000 % 60), 2);
	put_digits(out + 17, (unsigned)(rem / 1000 % 60), 2);
	put_digits(out + 20, (unsigned)(rem % 1000), 3);
}

int ev_parse_time(const cJSON *item, int64_t *ms_out)
{
	if (cJSON_IsNumber(item)) {
		double v = item->valuedouble;
		if (!isfinite(v) || v < 0)
			return -1;
		if (v < 1e11)
			v *= 1000.0; /* seconds */
		if (v > 9e15)
			return -1;
		*ms_out = (int64_t)llround(v);
		return 0;
	}
	if (cJSON_IsString(item))
		return ev_parse_iso8601(item->valuestring, ms_out);
	return -1;
}

/* ---------- UUID ---------- */

static _Thread_local unsigned char rnd_pool[4096];
static _Thread_local size_t rnd_left;

static void random_bytes(unsigned char *out, size_t n)
{
	while (n > 0) {
		if (rnd_left == 0) {
			size_t got = 0;
			while (got < sizeof rnd_pool) {
				ssize_t r = getrandom(rnd_pool + got, sizeof rnd_pool - got, 0);
				if (r > 0)
					got += (size_t)r;
			}
			rnd_left = sizeof rnd_pool;
		}
		size_t take = n < rnd_left ? n : rnd_left;
		memcpy(out, rnd_pool + sizeof rnd_pool - rnd_left, take);
		/* never hand out the same bytes twice */
		memset(rnd_pool + sizeof rnd_pool - rnd_left, 0, take);
		rnd_left -= take;
		out += take;
		n -= take;
	}
}

static void uuid_format(const unsigned char b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = hex[b[i] >> 4];
		*o++ = hex[b[i] & 15];
	}
	*o = '\0';
}

void ev_uuid_v7(char out[37])
{
	unsigned char b[16];
	uint64_t ms = (uint64_t)ev_now_ms();
	random_bytes(b + 6, sizeof b - 6);
	for (int i = 5; i >= 0; i--, ms >>= 8)
		b[i] = (unsigned char)(ms & 0xFF);
	b[6] = (unsigned char)((b[6] & 0x0F) | 0x70);
	b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
	uuid_format(b, out);
}

int ev_uuid_valid(const char *s)
{
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return s[36] == '\0';
}

/* ---------- structural limits ---------- */

/* Prepend one path step ("key." or "[i]") to err->field while unwinding. */
static void prepend_step(struct ev_error *err, const cJSON *parent, const cJSON *child, size_t index)
{
	char step[64];
	if (cJSON_IsObject(parent))
		snprintf(step, sizeof step, "%.40s%s", child->string,
		         err->field[0] && err->field[0] != '[' ? "." : "");
	else
		snprintf(step, sizeof step, "[%zu]%s", index,
		         err->field[0] && err->field[0] != '[' ? "." : "");
	size_t ls = strlen(step), lf = strlen(err->field), cap = sizeof err->field - 1;
	if (ls > cap)
		ls = cap;
	if (ls + lf > cap)
		lf = cap - ls;
	memmove(err->field + ls, err->field, lf);
	memcpy(err->field, step, ls);
	err->field[ls + lf] = '\0';
}

/* Walks the tree once; the error path is built only when something fails.
 * Sizes and counts over a limit are 413, structure (nesting, numbers) 400. */
static int check_tree(const cJSON *node, int depth, const struct ev_limits *lim,
                      struct ev_error *err)
{
	if (depth > lim->max_depth)
		return fail(err, 400, "", "nesting deeper than %d levels", lim->max_depth);
	if (cJSON_IsString(node)) {
		size_t n = strlen(node->valuestring);
		if (n > lim->max_string)
			return fail(err, 413, "", "string is %zu bytes, more than the %zu-byte limit", n,
			            lim->max_string);
		return 0;
	}
	if (cJSON_IsNumber(node)) {
		if (!isfinite(node->valuedouble))
			return fail(err, 400, "", "number out of range");
		return 0;
	}
	int is_obj = cJSON_IsObject(node);
	if (!is_obj && !cJSON_IsArray(node))
		return 0;
	size_t count = 0;
	for (const cJSON *c = node->child; c; c = c->next, count++) {
		if (is_obj && count >= lim->max_members)
			return fail(err, 413, "", "object has %d fields, more than the %zu-field limit",
			            cJSON_GetArraySize(node), lim->max_members);
		if (!is_obj && count >= lim->max_array)
			return fail(err, 413, "", "array has %d elements, more than the %zu-element limit",
			            cJSON_GetArraySize(node), lim->max_array);
		if (is_obj && c->string && strlen(c->string) > lim->max_string)
			return fail(err, 413, "", "a field name is %zu bytes, more than the %zu-byte limit",
			            strlen(c->string), lim->max_string);
		if (c->child || cJSON_IsString(c) || cJSON_IsNumber(c)) {
			if (check_tree(c, depth + 1, lim, err)) {
				prepend_step(err, node, c, count);
				return -1;
			}
		}
	}
	return 0;
}

/* ---------- normalisation ---------- */

static int valid_name(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (const char *p = s; *p; p++) {
		if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
			return 0;
	}
	return 1;
}

/* Replace or add `key` in obj, keeping it at the end (canonical order). */
static void put(cJSON *obj, const char *key, cJSON *val)
{
	cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
	cJSON_AddItemToObject(obj, key, val);
}

static int is_canonical_key(const char *k)
{
	static const char *const keys[] = {"id", "event_type", "timestamp", "received_at",
		"status", "payload", "latency_ms", "tokens", "cost_usd"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(k, keys[i]) == 0)
			return 1;
	for (size_t i = 0; i < N_STR_FIELDS; i++)
		if (strcmp(k, str_fields[i].name) == 0)
			return 1;
	return 0;
}

static const char *derive_status(const char *type, const cJSON *payload)
{
	if (strcmp(type, "PostToolUseFailure") == 0 || strcmp(type, "StopFailure") == 0)
		return "error";
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, "success");
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? "success" : "error";
	v = cJSON_GetObjectItemCaseSensitive(payload, "blocked");
	if (cJSON_IsTrue(v))
		return "blocked";
	v = cJSON_GetObjectItemCaseSensitive(payload, "error");
	if ((cJSON_IsString(v) && v->valuestring[0]) || cJSON_IsObject(v) || cJSON_IsTrue(v))
		return "error";
	return "success";
}

static int norm_tokens(cJSON *obj, struct ev_error *err)
{
	cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
	if (!t || cJSON_IsNull(t)) {
		cJSON_DeleteItemFromObjectCaseSensitive(obj, "tokens");
		return 0;
	}
	if (!cJSON_IsObject(t))
		return fail(err, 400, "tokens", "must be an object");
	cJSON *out = cJSON_CreateObject();
	for (cJSON *c = t->child; c; c = c->next) {
		int k = -1;
		for (int i = 0; i < 4; i++)
			if (strcmp(c->string, token_keys[i]) == 0 || strcmp(c->string, token_alias[i]) == 0)
				k = i;
		char f[96];
		snprintf(f, sizeof f, "tokens.%.60s", c->string);
		if (k < 0) {
			cJSON_Delete(out);
			return fail(err, 400, f, "unknown token kind (input, output, cache_read, cache_creation)");
		}
		if (cJSON_IsNull(c))
			continue;
		double v = c->valuedouble;
		if (!cJSON_IsNumber(c) || v < 0 || v > 1e15 || v != floor(v)) {
			cJSON_Delete(out);
			return fail(err, 400, f, "must be a non-negative integer");
		}
		put(out, token_keys[k], cJSON_CreateNumber(v));
	}
	put(obj, "tokens", out);
	return 0;
}

static int norm_number(cJSON *obj, const char *key, double max, struct ev_error *err)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v || cJSON_IsNull(v)) {
		cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
		return 0;
	}
	if (!cJSON_IsNumber(v))
		return fail(err, 400, key, "must be a number");
	if (v->valuedouble < 0)
		return fail(err, 400, key, "must be >= 0");
	if (v->valuedouble > max)
		return fail(err, 400, key, "must be <= %.0f", max);
	put(obj, key, cJSON_CreateNumber(v->valuedouble));
	return 0;
}

int ev_normalise(cJSON *obj, int64_t now_ms, const struct ev_limits *lim,
                 struct ev_error *err)
{
	char buf[40];

	if (!cJSON_IsObject(obj))
		return fail(err, 400, "", "event must be a JSON object");
	if (check_tree(obj, 1, lim, err))
		return -1;

	/* event_type */
	cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "event_type");
	if (!type || cJSON_IsNull(type))
		return fail(err, 400, "event_type", "required");
	if (!cJSON_IsString(type))
		return fail(err, 400, "event_type", "must be a string");
	if (!valid_name(type->valuestring, 64, "_."))
		return fail(err, 400, "event_type", "must be 1-64 letters, digits, '_' or '.'");

	/* payload: object; unknown top-level fields move into it */
	cJSON *payload = cJSON_DetachItemFromObjectCaseSensitive(obj, "payload");
	if (!payload || cJSON_IsNull(payload)) {
		cJSON_Delete(payload);
		payload = cJSON_CreateObject();
	} else if (!cJSON_IsObject(payload)) {
		cJSON_Delete(payload);
		return fail(err, 400, "payload", "must be an object");
	}
	for (cJSON *c = obj->child, *next; c; c = next) {
		next = c->next;
		if (is_canonical_key(c->string))
			continue;
		cJSON *moved = cJSON_DetachItemViaPointer(obj, c);
		if (cJSON_GetObjectItemCaseSensitive(payload, moved->string))
			cJSON_Delete(moved);
		else
			cJSON_AddItemToObject(payload, moved->string, moved);
	}

	/* id */
	cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
	char idbuf[37];
	if (!id || cJSON_IsNull(id)) {
		ev_uuid_v7(idbuf);
	} else if (!cJSON_IsString(id) || !ev_uuid_valid(id->valuestring)) {
		cJSON_Delete(payload);
		return fail(err, 400, "id", "must be a UUID string (8-4-4-4-12 hex digits)");
	} else {
		for (int i = 0; i < 37; i++)
			idbuf[i] = (char)tolower((unsigned char)id->valuestring[i]);
	}
	char type_copy[65];
	snprintf(type_copy, sizeof type_copy, "%s", type->valuestring);

	/* timestamp */
	int64_t ts = now_ms;
	cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "timestamp");
	if (t && !cJSON_IsNull(t)) {
		if (ev_parse_time(t, &ts)) {
			cJSON_Delete(payload);
			return fail(err, 400, "timestamp",
			            "must be epoch seconds or milliseconds, or an ISO-8601 string");
		}
		if (ts < 946684800000LL || ts > now_ms + 86400000LL) {
			cJSON_Delete(payload);
			return fail(err, 400, "timestamp", "out of range (2000-01-01 to now + 24 h)");
		}
	}

	/* optional strings */
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, str_fields[i].name);
		if (!v)
			continue;
		if (cJSON_IsNull(v)) {
			cJSON_DeleteItemFromObjectCaseSensitive(obj, str_fields[i].name);
			continue;
		}
		if (!cJSON_IsString(v)) {
			cJSON_Delete(payload);
			return fail(err, 400, str_fields[i].name, "must be a string");
		}
		if (strlen(v->valuestring) > str_fields[i].max) {
			cJSON_Delete(payload);
			return fail(err, 400, str_fields[i].name, "longer than %zu bytes", str_fields[i].max);
		}
	}

	/* status */
	char status[33];
	cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
	if (st && !cJSON_IsNull(st)) {
		if (!cJSON_IsString(st) || !valid_name(st->valuestring, 32, "_-")) {
			cJSON_Delete(payload);
			return fail(err, 400, "status", "must be 1-32 letters, digits, '_' or '-'");
		}
		for (size_t i = 0; i <= strlen(st->valuestring); i++)
			status[i] = (char)tolower((unsigned char)st->valuestring[i]);
	} else {
		snprintf(status, sizeof status, "%s", derive_status(type_copy, payload));
	}

	if (norm_number(obj, "latency_ms", 1e10, err) || norm_number(obj, "cost_usd", 1e9, err) ||
	    norm_tokens(obj, err)) {
		cJSON_Delete(payload);
		return -1;
	}

	/* Rebuild in canonical order: fixed keys first, then the rest as is. */
	cJSON *rest = cJSON_CreateObject();
	for (cJSON *c = obj->child, *next; c; c = next) {
		next = c->next;
		cJSON *d = cJSON_DetachItemViaPointer(obj, c);
		if (strcmp(d->string, "id") == 0 || strcmp(d->string, "event_type") == 0 ||
		    strcmp(d->string, "timestamp") == 0 || strcmp(d->string, "received_at") == 0 ||
		    strcmp(d->string, "status") == 0)
			cJSON_Delete(d);
		else
			cJSON_AddItemToObject(rest, d->string, d);
	}
	cJSON_AddStringToObject(obj, "id", idbuf);
	cJSON_AddStringToObject(obj, "event_type", type_copy);
	ev_format_iso8601(ts, buf);
	cJSON_AddStringToObject(obj, "timestamp", buf);
	ev_format_iso8601(now_ms, buf);
	cJSON_AddStringToObject(obj, "received_at", buf);
	cJSON_AddStringToObject(obj, "status", status);
	for (cJSON *c = rest->child, *next; c; c = next) {
		next = c->next;
		cJSON *d = cJSON_DetachItemViaPointer(rest, c);
		cJSON_AddItemToObject(obj, d->string, d);
	}
	cJSON_Delete(rest);
	cJSON_AddItemToObject(obj, "payload", payload);
	return 0;
}

int ev_print(const cJSON *obj, const struct ev_limits *lim, char **out, size_t *len,
             struct ev_error *err)
{
	char *s = cJSON_PrintUnformatted(obj);
	if (!s)
		return fail(err, 500, "", "out of memory serialising event");
	size_t n = strlen(s);
	if (n > lim->max_event_bytes) {
		cJSON_free(s);
		return fail(err, 413, "", "event is %zu bytes, more than the %zu-byte limit", n,
		            lim->max_event_bytes);
	}
	*out = s;
	*len = n;
	return 0;
}

int ev_normalise_print(cJSON *obj, int64_t now_ms, const struct ev_limits *lim,
                       char **out, size_t *len, struct ev_error *err)
{
	if (ev_normalise(obj, now_ms, lim, err))
		return -1;
	return ev_print(obj, lim, out, len, err);
}

/* ---------- typed row for storage ---------- */

static const char *opt_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int ev_row_parse(const char *json, size_t len, struct ev_row *row, struct ev_error *err)
{
	memset(row, 0, sizeof *row);
	row->json = cJSON_ParseWithLength(json, len);
	if (!row->json || !cJSON_IsObject(row->json)) {
		ev_row_free(row);
		return fail(err, 400, "", "stream entry is not a JSON object");
	}
	cJSON *o = row->json;
	row->id = opt_str(o, "id");
	row->event_type = opt_str(o, "event_type");
	row->timestamp = opt_str(o, "timestamp");
	row->received_at = opt_str(o, "received_at");
	if (!row->id || !ev_uuid_valid(row->id)) {
		ev_row_free(row);
		return fail(err, 400, "id", "missing or not a UUID");
	}
	if (!row->event_type || !valid_name(row->event_type, 64, "_.")) {
		ev_row_free(row);
		return fail(err, 400, "event_type", "missing or invalid");
	}
	if (!row->timestamp || ev_parse_iso8601(row->timestamp, &row->ts_ms) || !row->received_at ||
	    ev_parse_iso8601(row->received_at, &row->received_ms)) {
		ev_row_free(row);
		return fail(err, 400, "timestamp", "missing or not ISO-8601");
	}
	row->session_id = opt_str(o, "session_id");
	row->agent_id = opt_str(o, "agent_id");
	row->agent_role = opt_str(o, "agent_role");
	row->parent_agent_id = opt_str(o, "parent_agent_id");
	row->source_app = opt_str(o, "source_app");
	row->tool = opt_str(o, "tool");
	row->status = opt_str(o, "status");
	row->trace_id = opt_str(o, "trace_id");
	row->span_id = opt_str(o, "span_id");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "latency_ms");
	if (cJSON_IsNumber(v)) {
		row->has_latency = 1;
		row->latency_ms = v->valuedouble;
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "cost_usd");
	if (cJSON_IsNumber(v)) {
		row->has_cost = 1;
		row->cost_usd = v->valuedouble;
	}
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(o, "tokens");
	for (int i = 0; i < 4 && cJSON_IsObject(tok); i++) {
		v = cJSON_GetObjectItemCaseSensitive(tok, token_keys[i]);
		if (cJSON_IsNumber(v)) {
			row->has_tokens[i] = 1;
			row->tokens[i] = (long long)v->valuedouble;
		}
	}
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "payload");
	if (cJSON_IsObject(p)) {
		row->payload = cJSON_PrintUnformatted(p);
	} else if ((row->payload = cJSON_malloc(3))) {
		memcpy(row->payload, "{}", 3);
	}
	if (!row->payload) {
		ev_row_free(row);
		return fail(err, 500, "payload", "out of memory");
	}
	return 0;
}

void ev_row_free(struct ev_row *row)
{
	if (!row)
		return;
	cJSON_Delete(row->json);
	cJSON_free(row->payload);
	memset(row, 0, sizeof *row);
}
