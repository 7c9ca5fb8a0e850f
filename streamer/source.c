/* source.c -- the streamer's Redis side: two threads, each with its own
 * hiredis context (a redisContext is not thread-safe).
 *
 * Reader: XREAD BLOCK on the event stream with a cursor of its own, starting
 * at the stream's end. Not a consumer group, on purpose: a group splits the
 * entries between its consumers, while fan-out needs every event in every
 * streamer instance; and a streamer has nothing to acknowledge (it stores
 * nothing, and a client that missed events asks for them with since=), so a
 * group would only leave a pending list to clean up and a group that pins the
 * processor's trim floor. The cursor survives a Redis reconnect, so a short
 * outage leaves no gap. Entries become shared records (event.c), one
 * reference per shard, and go to every shard's mailbox; the reader waits when
 * a mailbox is full (that shard is stalled) instead of growing without bound.
 *
 * Replay worker: answers since= / backlog= requests with XRANGE / XREVRANGE,
 * off the service threads so that a large replay never stalls live clients,
 * and hands each answer to the asking client's shard.
 *
 * Memory: a mailbox owns what it holds until its shard takes it;
 * source_free releases what no shard took.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "log.h"
#include "met.h"
#include "sig.h"
#include "streamer.h"

#define INBOX_MAX 200000 /* records waiting for the service thread */
#define CHUNK 1000       /* entries per XRANGE / XREVRANGE call */

static int stopping(struct streamer *s)
{
	return sig_stop || atomic_load(&s->stop);
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		sev_unref(r->ev[i]);
	free(r->ev);
	free(r->filter);
	free(r);
}

/* ------------------------------------------------------------------------ */
/* Reader */

/* Hand a batch to one shard; waits while its inbox is full. The records
 * carry a reference for this mailbox already. */
static int box_push(struct streamer *s, struct mailbox *b, struct sev **v, size_t n)
{
	pthread_mutex_lock(&b->mu);
	while (b->inbox_n + n > INBOX_MAX && b->inbox_n > 0 && !stopping(s))
		pthread_cond_wait(&b->drained, &b->mu);
	if (b->inbox_n + n > b->inbox_cap) {
		size_t cap = b->inbox_cap ? b->inbox_cap : 1024;
		while (cap < b->inbox_n + n)
			cap *= 2;
		struct sev **nv = realloc(b->inbox, cap * sizeof *nv);
		if (!nv) {
			pthread_mutex_unlock(&b->mu);
			return -1;
		}
		b->inbox = nv;
		b->inbox_cap = cap;
	}
	memcpy(b->inbox + b->inbox_n, v, n * sizeof *v);
	int wake = b->inbox_n == 0; /* else a wake-up is pending: it takes these too */
	b->inbox_n += n;
	atomic_store(&b->ready, 1);
	pthread_mutex_unlock(&b->mu);
	if (wake)
		lws_cancel_service(b->lws);
	return 0;
}

/* Hand a batch to every shard. On failure the shards that did not get the
 * batch have released their references, and the reader stops. */
static int inbox_push(struct streamer *s, struct sev **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sev_share(v[i], s->nshards);
	for (int k = 0; k < s->nshards; k++) {
		if (box_push(s, &s->box[k], v, n) == 0)
			continue;
		for (; k < s->nshards; k++)
			for (size_t i = 0; i < n; i++)
				sev_unref(v[i]);
		return -1;
	}
	return 0;
}

/* The id of the newest entry ("0-0" for an empty or missing stream). */
static int stream_end(redisContext *c, const char *stream, char out[48], char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "XREVRANGE %s + - COUNT 1", stream);
	int rc = -1;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "redis XREVRANGE: %s",
		         r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
		goto out;
	}
	snprintf(out, 48, "0-0");
	if (r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements > 0 && r->element[0]->element[0]->type == REDIS_REPLY_STRING)
		snprintf(out, 48, "%s", r->element[0]->element[0]->str);
	rc = 0;
out:
	if (r)
		freeReplyObject(r);
	return rc;
}

static void reader_failed(struct streamer *s, redisContext **c, const char *what)
{
	met_inc(s->m.redis_errors, 1);
	atomic_store(&s->redis_ok, 0);
	pthread_mutex_lock(&s->mu);
	snprintf(s->redis_error, sizeof s->redis_error, "%s", what);
	pthread_mutex_unlock(&s->mu);
	log_kv(LOG_WARN, "redis read failed; reconnecting (no events are lost: the cursor is kept)",
	       "error", what, NULL);
	if (*c) {
		redisFree(*c);
		*c = NULL;
	}
	sig_sleep_ms(100);
}

static void *reader_main(void *arg)
{
	struct streamer *s = arg;
	redisContext *c = NULL;
	struct rs_batch b = {0};
	struct sev **recs = NULL;
	size_t recs_cap = 0;
	char cursor[48] = "", err[256];
	long block = s->cf.redis_timeout_ms / 2 < 1000 ? (long)s->cf.redis_timeout_ms / 2 : 1000;

	while (!stopping(s)) {
		if (!c) {
			c = rs_connect_retry(&s->rconf, &sig_stop);
			if (!c)
				break;
			if (!cursor[0]) {
				if (stream_end(c, s->cf.stream, cursor, err, sizeof err)) {
					cursor[0] = '\0';
					reader_failed(s, &c, err);
					continue;
				}
				log_kv(LOG_INFO, "reading the event stream", "stream", s->cf.stream, "from", cursor, NULL);
			}
			pthread_mutex_lock(&s->mu);
			s->redis_error[0] = '\0';
			pthread_mutex_unlock(&s->mu);
			atomic_store(&s->redis_ok, 1);
		}
		redisReply *r = redisCommand(c, "XREAD COUNT %lld BLOCK %ld STREAMS %s %s", s->cf.read_count,
		                             block, s->cf.stream, cursor);
		if (!r || r->type == REDIS_REPLY_ERROR) {
			snprintf(err, sizeof err, "redis XREAD: %s", r ? r->str : c->errstr);
			if (r)
				freeReplyObject(r);
			reader_failed(s, &c, err);
			continue;
		}
		rs_batch_clear(&b);
		int got = rs_parse_read_reply(r, &b);
		freeReplyObject(r);
		if (got < 0) {
			reader_failed(s, &c, "redis XREAD: malformed reply");
			continue;
		}
		if (b.n == 0)
			continue;
		if (b.n > recs_cap) {
			struct sev **nr = realloc(recs, b.n * sizeof *nr);
			if (!nr) {
				log_error("reader: out of memory");
				break;
			}
			recs = nr;
			recs_cap = b.n;
		}
		size_t n = 0;
		for (size_t i = 0; i < b.n; i++) {
			struct sev *e = b.v[i].data ? sev_new(b.v[i].id, b.v[i].data, b.v[i].len) : NULL;
			if (e) {
				recs[n++] = e;
			} else {
				met_inc(s->m.invalid, 1);
				log_kv(LOG_WARN, "skipping a stream entry without a JSON event in field e",
				       "stream_id", b.v[i].id, NULL);
			}
		}
		snprintf(cursor, sizeof cursor, "%s", b.v[b.n - 1].id);
		met_inc(s->m.read, (double)b.n);
		if (n && inbox_push(s, recs, n)) {
			log_error("reader: out of memory");
			break;
		}
	}
	atomic_store(&s->redis_ok, 0);
	rs_batch_free(&b);
	free(recs);
	if (c)
		redisFree(c);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Replay worker */

static int push_ev(struct replay *r, size_t *cap, struct sev *e)
{
	if (r->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		struct sev **nv = realloc(r->ev, nc * sizeof *nv);
		if (!nv)
			return -1;
		r->ev = nv;
		*cap = nc;
	}
	r->ev[r->n++] = e;
	return 0;
}

/* Redis 7's XINFO STREAM reports the highest id ever deleted or trimmed:
 * entries after `since` may be gone when since is below it. */
static int maybe_trimmed(redisContext *c, const char *stream, struct rs_id since)
{
	redisReply *r = redisCommand(c, "XINFO STREAM %s", stream);
	int gone = 0;
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		struct rs_id del;
		if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "max-deleted-entry-id") == 0 &&
		    v->type == REDIS_REPLY_STRING && rs_id_parse(v->str, &del) == 0)
			gone = rs_id_cmp(since, del) < 0;
	}
	if (r)
		freeReplyObject(r);
	return gone;
}

/* One range call; appends entries to b. -1 with err on failure. */
static int range(redisContext *c, const char *cmd, const char *stream, const char *a,
                 const char *z, struct rs_batch *b, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "%s %s %s %s COUNT %d", cmd, stream, a, z, CHUNK);
	int n = -1;
	if (!r || r->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "redis %s: %s", cmd, r ? r->str : c->errstr);
	else if ((n = rs_parse_entries(r, b)) < 0)
		snprintf(err, errlen, "redis %s: malformed reply", cmd);
	if (r)
		freeReplyObject(r);
	return n;
}

static void replay_run(struct streamer *s, redisContext *c, struct replay *r)
{
	struct filter f;
	struct rs_batch b = {0};
	char err[200], a[56], z[56];
	size_t cap = 0;
	int done = 0;

	r->complete = 1;
	if (flt_parse(r->filter, strlen(r->filter), &f, err, sizeof err)) {
		r->complete = 0;
		snprintf(r->note, sizeof r->note, "filter: %s", err);
		return;
	}
	if (r->mode == REPLAY_SINCE) {
		r->covered = r->since;
		if (r->since.ms || r->since.seq) {
			char id[48];
			rs_id_format(r->since, id);
			snprintf(a, sizeof a, "(%s", id);
			if (maybe_trimmed(c, s->cf.stream, r->since)) {
				r->complete = 0;
				snprintf(r->note, sizeof r->note,
				         "entries after since were already trimmed from the stream");
			}
		} else {
			snprintf(a, sizeof a, "-");
		}
		snprintf(z, sizeof z, "+");
	} else {
		r->covered = (struct rs_id){0, 0};
		snprintf(a, sizeof a, "+");
		snprintf(z, sizeof z, "-");
	}

	while (!done && !stopping(s)) {
		rs_batch_clear(&b);
		int got = range(c, r->mode == REPLAY_SINCE ? "XRANGE" : "XREVRANGE", s->cf.stream, a, z, &b,
		                err, sizeof err);
		if (got < 0) {
			r->complete = 0;
			snprintf(r->note, sizeof r->note, "%s", err);
			break;
		}
		for (size_t i = 0; i < b.n && !done; i++) {
			struct rs_id id;
			if (rs_id_parse(b.v[i].id, &id))
				continue;
			if (r->mode == REPLAY_SINCE || r->scanned == 0) {
				if (rs_id_cmp(id, r->covered) > 0)
					r->covered = id;
			}
			r->scanned++;
			struct sev *e = b.v[i].data ? sev_new(b.v[i].id, b.v[i].data, b.v[i].len) : NULL;
			if (e && flt_match(&f, &e->f)) {
				if (push_ev(r, &cap, e)) {
					sev_unref(e);
					r->complete = 0;
					snprintf(r->note, sizeof r->note, "out of memory");
					done = 1;
					break;
				}
			} else {
				sev_unref(e);
			}
			if (r->mode == REPLAY_BACKLOG && (long long)r->n >= r->backlog) {
				done = 1;
			} else if (r->mode == REPLAY_SINCE && (long long)r->n >= s->cf.replay_max) {
				r->complete = 0;
				snprintf(r->note, sizeof r->note,
				         "more than %lld matching events after since: reconnect with since=<last id>",
				         s->cf.replay_max);
				done = 1;
			} else if (r->scanned >= s->cf.replay_scan_max) {
				if (r->mode == REPLAY_SINCE) {
					r->complete = 0;
					snprintf(r->note, sizeof r->note,
					         "scanned %lld entries: reconnect with since=<last id> for more",
					         r->scanned);
				}
				done = 1;
			}
		}
		if (b.n < CHUNK)
			break;
		/* next chunk: after (XRANGE) or before (XREVRANGE) the last entry seen */
		snprintf(a, sizeof a, "(%s", b.v[b.n - 1].id);
	}
	if (r->mode == REPLAY_BACKLOG) { /* newest first -> ascending */
		for (size_t i = 0; i < r->n / 2; i++) {
			struct sev *t = r->ev[i];
			r->ev[i] = r->ev[r->n - 1 - i];
			r->ev[r->n - 1 - i] = t;
		}
	}
	rs_batch_free(&b);
	flt_free(&f);
}

static void *worker_main(void *arg)
{
	struct streamer *s = arg;
	redisContext *c = NULL;
	char err[256];

	for (;;) {
		pthread_mutex_lock(&s->mu);
		while (!s->req_head && !stopping(s))
			pthread_cond_wait(&s->work, &s->mu);
		struct replay *r = s->req_head;
		if (stopping(s) || !r) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		s->req_head = r->next;
		if (!s->req_head)
			s->req_tail = NULL;
		r->next = NULL;
		pthread_mutex_unlock(&s->mu);

		if (!c && !(c = rs_connect(&s->rconf, err, sizeof err))) {
			r->complete = 0;
			snprintf(r->note, sizeof r->note, "%s", err);
		} else {
			replay_run(s, c, r);
			if (c->err) {
				met_inc(s->m.redis_errors, 1);
				redisFree(c);
				c = NULL;
			}
		}
		met_inc(s->m.replays, 1);
		met_inc(s->m.replayed, (double)r->n);

		struct mailbox *b = &s->box[r->shard];
		pthread_mutex_lock(&b->mu);
		if (b->done_tail)
			b->done_tail->next = r;
		else
			b->done_head = r;
		b->done_tail = r;
		atomic_store(&b->ready, 1);
		pthread_mutex_unlock(&b->mu);
		lws_cancel_service(b->lws);
	}
	if (c)
		redisFree(c);
	return NULL;
}

void source_request_replay(struct streamer *s, struct replay *r)
{
	r->next = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->req_tail)
		s->req_tail->next = r;
	else
		s->req_head = r;
	s->req_tail = r;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

int source_init(struct streamer *s)
{
	s->box = calloc((size_t)s->nshards, sizeof *s->box);
	if (!s->box)
		return -1;
	for (int k = 0; k < s->nshards; k++) {
		pthread_mutex_init(&s->box[k].mu, NULL);
		pthread_cond_init(&s->box[k].drained, NULL);
	}
	return 0;
}

static void wake_all(struct streamer *s)
{
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->mu);
	for (int k = 0; k < s->nshards; k++) {
		pthread_mutex_lock(&s->box[k].mu);
		pthread_cond_broadcast(&s->box[k].drained);
		pthread_mutex_unlock(&s->box[k].mu);
	}
}

int source_start(struct streamer *s, char *err, size_t errlen)
{
	int rc = pthread_create(&s->reader, NULL, reader_main, s);
	if (rc) {
		snprintf(err, errlen, "pthread_create reader: %s", strerror(rc));
		return -1;
	}
	rc = pthread_create(&s->worker, NULL, worker_main, s);
	if (rc) {
		snprintf(err, errlen, "pthread_create replay worker: %s", strerror(rc));
		atomic_store(&s->stop, 1);
		wake_all(s);
		pthread_join(s->reader, NULL);
		return -1;
	}
	s->threads_started = 1;
	return 0;
}

void source_stop(struct streamer *s)
{
	if (!s->threads_started)
		return;
	s->threads_started = 0; /* a second call is harmless */
	atomic_store(&s->stop, 1);
	wake_all(s);
	pthread_join(s->reader, NULL);
	pthread_join(s->worker, NULL);
}

void source_free(struct streamer *s)
{
	while (s->req_head) {
		struct replay *r = s->req_head;
		s->req_head = r->next;
		replay_free(r);
	}
	s->req_tail = NULL;
	for (int k = 0; s->box && k < s->nshards; k++) {
		struct mailbox *b = &s->box[k];
		for (size_t i = 0; i < b->inbox_n; i++)
			sev_unref(b->inbox[i]);
		free(b->inbox);
		while (b->done_head) {
			struct replay *r = b->done_head;
			b->done_head = r->next;
			replay_free(r);
		}
		for (size_t i = 0; i < b->nfds; i++)
			close(b->fds[i]);
		free(b->fds);
		pthread_cond_destroy(&b->drained);
		pthread_mutex_destroy(&b->mu);
	}
	free(s->box);
	s->box = NULL;
}
