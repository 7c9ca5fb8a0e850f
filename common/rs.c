/* rs.c -- Redis Streams helpers (see rs.h). Every function works on the
 * caller's redisContext (one per thread) and frees every reply it gets;
 * entry data copied into rs_batch is owned by the batch. */
#include "rs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sig.h"

static void set_err(char *err, size_t len, const char *what, const redisContext *c,
                    const redisReply *r)
{
	if (!err || !len)
		return;
	if (r && r->type == REDIS_REPLY_ERROR)
		snprintf(err, len, "%s: %s", what, r->str);
	else if (c && c->err)
		snprintf(err, len, "%s: %s", what, c->errstr);
	else
		snprintf(err, len, "%s: unexpected reply", what);
}

redisContext *rs_connect(const struct rs_conf *cf, char *err, size_t errlen)
{
	struct timeval tv = {cf->timeout_ms / 1000, (cf->timeout_ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(cf->host, cf->port, tv);
	redisReply *r = NULL;

	if (!c) {
		snprintf(err, errlen, "redis connect %s:%d: out of memory", cf->host, cf->port);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "redis connect %s:%d: %s", cf->host, cf->port, c->errstr);
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errlen, "redis set timeout: %s", c->errstr);
		goto fail;
	}
	if (cf->password && cf->password[0]) {
		if (cf->username && cf->username[0])
			r = redisCommand(c, "AUTH %s %s", cf->username, cf->password);
		else
			r = redisCommand(c, "AUTH %s", cf->password);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			set_err(err, errlen, "redis AUTH", c, r);
			goto fail;
		}
		freeReplyObject(r);
	}
	r = redisCommand(c, "PING");
	if (!r || r->type == REDIS_REPLY_ERROR) {
		set_err(err, errlen, "redis PING", c, r);
		goto fail;
	}
	freeReplyObject(r);
	return c;
fail:
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return NULL;
}

redisContext *rs_connect_retry(const struct rs_conf *cf, volatile sig_atomic_t *stop)
{
	long delay = 100;
	char err[256], last[256] = "";
	while (!*stop) {
		redisContext *c = rs_connect(cf, err, sizeof err);
		if (c) {
			if (last[0])
				log_kv(LOG_INFO, "redis connected", "addr", cf->host, NULL);
			return c;
		}
		if (strcmp(err, last) != 0)
			log_kv(LOG_WARN, "redis unavailable, retrying", "error", err, NULL);
		snprintf(last, sizeof last, "%s", err);
		sig_sleep_ms(delay);
		delay = delay * 2 > 5000 ? 5000 : delay * 2;
	}
	return NULL;
}

/* ---------- ids ---------- */

int rs_id_parse(const char *s, struct rs_id *out)
{
	char *end;
	errno = 0;
	unsigned long long ms = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned long long seq = 0;
	if (*end == '-') {
		const char *q = end + 1;
		seq = strtoull(q, &end, 10);
		if (errno || end == q)
			return -1;
	}
	if (*end)
		return -1;
	out->ms = ms;
	out->seq = seq;
	return 0;
}

int rs_id_cmp(struct rs_id a, struct rs_id b)
{
	if (a.ms != b.ms)
		return a.ms < b.ms ? -1 : 1;
	if (a.seq != b.seq)
		return a.seq < b.seq ? -1 : 1;
	return 0;
}

void rs_id_format(struct rs_id id, char out[48])
{
	snprintf(out, 48, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
}

/* ---------- batches ---------- */

void rs_batch_clear(struct rs_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i].data);
	b->n = 0;
}

void rs_batch_free(struct rs_batch *b)
{
	if (!b)
		return;
	rs_batch_clear(b);
	free(b->v);
	b->v = NULL;
	b->cap = 0;
}

int rs_batch_push(struct rs_batch *b, const char *id, const char *data, size_t len)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		struct rs_entry *v = realloc(b->v, cap * sizeof *v);
		if (!v)
			return -1;
		b->v = v;
		b->cap = cap;
	}
	struct rs_entry *e = &b->v[b->n];
	snprintf(e->id, sizeof e->id, "%s", id);
	e->data = NULL;
	e->len = 0;
	e->deliveries = 0;
	e->probe = 0;
	if (data) {
		e->data = malloc(len + 1);
		if (!e->data)
			return -1;
		memcpy(e->data, data, len);
		e->data[len] = '\0';
		e->len = len;
	}
	b->n++;
	return 0;
}

/* ---------- XADD ---------- */

int rs_xadd_append(redisContext *c, const char *stream, const char *data, size_t len, int probe)
{
	const char *argv[7] = {"XADD", stream, "*", "e", data, "p", "1"};
	size_t argl[7] = {4, strlen(stream), 1, 1, len, 1, 1};
	return redisAppendCommandArgv(c, probe ? 7 : 5, argv, argl) == REDIS_OK ? 0 : -1;
}

int rs_dead_letter(redisContext *c, const char *dead_stream, const struct rs_entry *e,
                   const char *reason, const char *detail)
{
	const char *argv[11] = {"XADD", dead_stream, "*", "e", e->data ? e->data : "", "reason", reason,
	                        "detail", detail, "source_id", e->id};
	size_t argl[11] = {4, strlen(dead_stream), 1, 1, e->data ? e->len : 0, 6, strlen(reason), 6,
	                   strlen(detail), 9, strlen(e->id)};
	redisReply *r = redisCommandArgv(c, 11, argv, argl);
	int ok = r && r->type == REDIS_REPLY_STRING;
	if (r)
		freeReplyObject(r);
	return ok ? 0 : -1;
}

int rs_group_ensure(redisContext *c, const char *stream, const char *group,
                    const char *start, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "XGROUP CREATE %s %s %s MKSTREAM", stream, group, start);
	int rc = 0;
	if (!r) {
		set_err(err, errlen, "redis XGROUP CREATE", c, NULL);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
		set_err(err, errlen, "redis XGROUP CREATE", c, r);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

/* ---------- reading ---------- */

int rs_parse_entries(const redisReply *arr, struct rs_batch *out)
{
	if (arr->type != REDIS_REPLY_ARRAY)
		return -1;
	int added = 0;
	for (size_t i = 0; i < arr->elements; i++) {
		const redisReply *ent = arr->element[i];
		if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 1 ||
		    ent->element[0]->type != REDIS_REPLY_STRING)
			return -1;
		const char *data = NULL;
		size_t len = 0;
		int probe = 0;
		if (ent->elements >= 2 && ent->element[1]->type == REDIS_REPLY_ARRAY) {
			const redisReply *kv = ent->element[1];
			for (size_t k = 0; k + 1 < kv->elements; k += 2) {
				if (kv->element[k]->type != REDIS_REPLY_STRING ||
				    kv->element[k + 1]->type != REDIS_REPLY_STRING)
					continue;
				if (strcmp(kv->element[k]->str, "e") == 0) {
					data = kv->element[k + 1]->str;
					len = kv->element[k + 1]->len;
				} else if (strcmp(kv->element[k]->str, "p") == 0) {
					probe = 1;
				}
			}
		}
		if (rs_batch_push(out, ent->element[0]->str, data, len))
			return -1;
		out->v[out->n - 1].probe = probe;
		added++;
	}
	return added;
}

int rs_parse_read_reply(const redisReply *r, struct rs_batch *out)
{
	if (r->type == REDIS_REPLY_NIL)
		return 0;
	if (r->type != REDIS_REPLY_ARRAY)
		return -1;
	int added = 0;
	for (size_t s = 0; s < r->elements; s++) {
		const redisReply *st = r->element[s];
		if (st->type != REDIS_REPLY_ARRAY || st->elements != 2)
			return -1;
		int n = rs_parse_entries(st->element[1], out);
		if (n < 0)
			return -1;
		added += n;
	}
	return added;
}

int rs_readgroup(redisContext *c, const char *stream, const char *group,
                 const char *consumer, const char *id, long count, long block_ms,
                 struct rs_batch *out, char *err, size_t errlen)
{
	redisReply *r;
	if (block_ms >= 0)
		r = redisCommand(c, "XREADGROUP GROUP %s %s COUNT %ld BLOCK %ld STREAMS %s %s", group,
		                 consumer, count, block_ms, stream, id);
	else
		r = redisCommand(c, "XREADGROUP GROUP %s %s COUNT %ld STREAMS %s %s", group, consumer,
		                 count, stream, id);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		set_err(err, errlen, "redis XREADGROUP", c, r);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	int n = rs_parse_read_reply(r, out);
	if (n < 0)
		snprintf(err, errlen, "redis XREADGROUP: malformed reply");
	freeReplyObject(r);
	return n;
}

int rs_autoclaim(redisContext *c, const char *stream, const char *group,
                 const char *consumer, long long min_idle_ms, const char *start, long count,
                 char next[48], struct rs_batch *out, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "XAUTOCLAIM %s %s %s %lld %s COUNT %ld", stream, group,
	                             consumer, min_idle_ms, start, count);
	int n = -1;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		set_err(err, errlen, "redis XAUTOCLAIM", c, r);
		goto out;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		snprintf(err, errlen, "redis XAUTOCLAIM: malformed reply");
		goto out;
	}
	snprintf(next, 48, "%s", r->element[0]->str);
	n = rs_parse_entries(r->element[1], out);
	if (n < 0)
		snprintf(err, errlen, "redis XAUTOCLAIM: malformed entries");
out:
	if (r)
		freeReplyObject(r);
	return n;
}

int rs_ack(redisContext *c, const char *stream, const char *group, const char *const *ids,
           size_t n, char *err, size_t errlen)
{
	enum { CHUNK = 500 };
	const char *argv[3 + CHUNK];
	size_t argl[3 + CHUNK];
	size_t sent = 0;
	argv[0] = "XACK";
	argv[1] = stream;
	argv[2] = group;
	argl[0] = 4;
	argl[1] = strlen(stream);
	argl[2] = strlen(group);
	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;
		for (size_t i = 0; i < k; i++) {
			argv[3 + i] = ids[off + i];
			argl[3 + i] = strlen(ids[off + i]);
		}
		if (redisAppendCommandArgv(c, (int)(3 + k), argv, argl) != REDIS_OK) {
			set_err(err, errlen, "redis XACK", c, NULL);
			return -1;
		}
		sent++;
	}
	int rc = 0;
	for (size_t i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
			set_err(err, errlen, "redis XACK", c, NULL);
			return -1;
		}
		if (r->type != REDIS_REPLY_INTEGER) {
			set_err(err, errlen, "redis XACK", c, r);
			rc = -1;
		}
		freeReplyObject(r);
	}
	return rc;
}

/* ---------- trimming ---------- */

static const redisReply *field(const redisReply *map, const char *name)
{
	if (map->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < map->elements; i += 2)
		if (map->element[i]->type == REDIS_REPLY_STRING && strcmp(map->element[i]->str, name) == 0)
			return map->element[i + 1];
	return NULL;
}

int rs_trim_floor(redisContext *c, const char *stream, struct rs_id *floor, int *has,
                  char *err, size_t errlen)
{
	redisReply *groups = redisCommand(c, "XINFO GROUPS %s", stream);
	int rc = -1;
	*has = 0;
	if (!groups || groups->type != REDIS_REPLY_ARRAY) {
		set_err(err, errlen, "redis XINFO GROUPS", c, groups);
		goto out;
	}
	for (size_t g = 0; g < groups->elements; g++) {
		const redisReply *info = groups->element[g];
		const redisReply *name = field(info, "name");
		const redisReply *last = field(info, "last-delivered-id");
		const redisReply *pending = field(info, "pending");
		struct rs_id gfloor;
		if (!name || name->type != REDIS_REPLY_STRING || !last ||
		    last->type != REDIS_REPLY_STRING || rs_id_parse(last->str, &gfloor)) {
			snprintf(err, errlen, "redis XINFO GROUPS: malformed reply");
			goto out;
		}
		if (pending && pending->type == REDIS_REPLY_INTEGER && pending->integer > 0) {
			redisReply *p = redisCommand(c, "XPENDING %s %s", stream, name->str);
			if (!p || p->type != REDIS_REPLY_ARRAY || p->elements < 2) {
				set_err(err, errlen, "redis XPENDING", c, p);
				if (p)
					freeReplyObject(p);
				goto out;
			}
			struct rs_id oldest;
			if (p->element[1]->type == REDIS_REPLY_STRING &&
			    rs_id_parse(p->element[1]->str, &oldest) == 0 &&
			    rs_id_cmp(oldest, gfloor) < 0)
				gfloor = oldest;
			freeReplyObject(p);
		}
		if (!*has || rs_id_cmp(gfloor, *floor) < 0)
			*floor = gfloor;
		*has = 1;
	}
	rc = 0;
out:
	if (groups)
		freeReplyObject(groups);
	return rc;
}

int rs_int(redisContext *c, long long *out, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (!r || r->type != REDIS_REPLY_INTEGER) {
		set_err(err, errlen, "redis command", c, r);
		if (r)
			freeReplyObject(r);
		return -1;
	}
	*out = r->integer;
	freeReplyObject(r);
	return 0;
}
