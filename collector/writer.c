/* writer.c -- the collector's Redis side. Each HTTP loop thread (server.c)
 * owns one writer: a non-blocking redisContext on which the requests of one
 * loop pass are pipelined (group commit). Handlers append their XADDs with
 * writer_submit; the loop flushes once per pass, reads the replies as they
 * arrive and sets each job's status when all of its events are in Redis.
 * Connecting blocks (AUTH, PING), so the monitor thread does it and hands the
 * context over; it also samples the backlog for back-pressure. A job is owned
 * by its request; the writer's queue only points at it while replies are due
 * (writer_cancel forgets a job whose request went away). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "collector.h"
#include "log.h"
#include "rs.h"

/* A job in the queue; j is NULL once its request has gone (its replies are
 * still read and dropped). */
struct slot {
	struct job *j;
	size_t left; /* XADD replies still due */
	char err[160];
};

struct writer {
	redisContext *c;
	_Atomic(redisContext *) incoming; /* connected by the monitor, not yet adopted */
	atomic_int want_conn;             /* asks the monitor for a connection */
	int ep;                           /* the loop's epoll set; c->fd is in it with `tag` */
	uint64_t tag;
	uint32_t armed;                   /* epoll events registered for c->fd */
	struct slot *ring;                /* jobs appended, replies due, in order */
	size_t cap, first, count;
	int progress;                     /* a job finished since writer_progress() */
	size_t unflushed;                 /* events appended since the last flush */
	int64_t oldest_ms;                /* last progress on flushed jobs (0: none due) */
	struct writer *next_all;          /* monitor's list of writers */
};

static const struct collector_conf *conf;
static struct writer_stats *stats;
static struct rs_conf rconf;
static _Thread_local struct writer *cur; /* the writer of this loop thread */

static pthread_t monitor;
static pthread_mutex_t mon_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mon_cond = PTHREAD_COND_INITIALIZER;
static struct writer *all; /* under mon_lock */
static int monitor_stop, monitor_started;
static atomic_int redis_up = 1; /* last contact succeeded */
static atomic_int backlog_over; /* stream longer than max_backlog */
static atomic_llong stream_len;

static int64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int writer_admit(char *why, size_t whylen)
{
	if (!atomic_load(&redis_up)) {
		snprintf(why, whylen, "redis unavailable; retry later");
		return -1;
	}
	if (atomic_load(&backlog_over)) {
		snprintf(why, whylen, "backlog of %lld unprocessed events exceeds the limit of %lld; retry later",
		         atomic_load(&stream_len), conf->max_backlog);
		return -1;
	}
	return 0;
}

int writer_ready(void *ud, char *why, size_t whylen)
{
	(void)ud;
	return writer_admit(why, whylen) == 0;
}

static void finish(struct job *j, int status, const char *err)
{
	if (!j)
		return;
	j->status = status;
	j->queued = 0;
	snprintf(j->err, sizeof j->err, "%s", err ? err : "");
}

/* A job answered at submit time: the loop must pass again before sleeping. */
static void finish_now(struct writer *w, struct job *j, int status, const char *err)
{
	finish(j, status, err);
	if (w)
		w->progress = 1;
}

static struct slot *slot_at(struct writer *w, size_t i)
{
	return &w->ring[(w->first + i) % w->cap];
}

static void fail_all(struct writer *w, const char *why)
{
	for (size_t i = 0; i < w->count; i++)
		finish(slot_at(w, i)->j, 503, why);
	w->first = w->count = 0;
	w->oldest_ms = 0;
	w->progress = 1;
}

static redisContext *connect_nonblocking(char *err, size_t errlen);

static void ask_connection(struct writer *w)
{
	if (atomic_exchange(&w->want_conn, 1))
		return;
	pthread_mutex_lock(&mon_lock);
	pthread_cond_signal(&mon_cond);
	pthread_mutex_unlock(&mon_lock);
}

static void arm(struct writer *w, uint32_t events)
{
	if (!w->c || w->armed == events)
		return;
	struct epoll_event e = {.events = events, .data.u64 = w->tag};
	epoll_ctl(w->ep, w->armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->c->fd, &e);
	w->armed = events;
}

/* Drop the connection: every job whose replies are due fails with 503 (a
 * broken connection may have applied some XADDs; the client retries and the
 * processor de-duplicates on the event id). */
static void disconnect(struct writer *w, const char *why)
{
	if (w->c) {
		log_kv(LOG_ERROR, "redis write failed", "error", why, NULL);
		if (stats)
			met_inc(stats->redis_errors, 1);
		if (w->armed)
			epoll_ctl(w->ep, EPOLL_CTL_DEL, w->c->fd, NULL);
		redisFree(w->c);
		w->c = NULL;
		w->armed = 0;
	}
	fail_all(w, "redis write failed; retry later");
	w->unflushed = 0;
	atomic_store(&redis_up, 0);
	ask_connection(w);
}

static void adopt(struct writer *w)
{
	if (w->c)
		return;
	redisContext *c = atomic_exchange(&w->incoming, NULL);
	if (!c)
		return;
	w->c = c;
	w->armed = 0;
	arm(w, EPOLLIN);
}

struct writer *writer_new(int ep, uint64_t tag)
{
	struct writer *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->ep = ep;
	w->tag = tag;
	/* at start, before the loop runs, connecting here may block */
	char err[256];
	redisContext *c = connect_nonblocking(err, sizeof err);
	if (c)
		atomic_store(&w->incoming, c);
	pthread_mutex_lock(&mon_lock);
	w->next_all = all;
	all = w;
	pthread_mutex_unlock(&mon_lock);
	if (!c)
		ask_connection(w);
	return w;
}

void writer_bind(struct writer *w)
{
	cur = w;
}

void writer_submit(struct job *j)
{
	struct writer *w = cur;
	j->status = 0;
	j->err[0] = '\0';
	if (!j->events->n) {
		finish_now(w, j, 202, NULL);
		return;
	}
	if (!w) { /* not a loop thread: the loops have stopped */
		finish_now(w, j, 503, "collector is shutting down; retry later");
		return;
	}
	adopt(w);
	if (!w->c) {
		ask_connection(w);
		finish_now(w, j, 503, "redis unavailable; retry later");
		return;
	}
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct slot *r = malloc(cap * sizeof *r);
		if (!r) {
			finish_now(w, j, 503, "collector out of memory; retry later");
			return;
		}
		for (size_t i = 0; i < w->count; i++)
			r[i] = *slot_at(w, i);
		free(w->ring);
		w->ring = r;
		w->cap = cap;
		w->first = 0;
	}
	const char *stream = j->stream ? j->stream : conf->stream;
	for (size_t i = 0; i < j->events->n; i++) {
		if (rs_xadd_append(w->c, stream, j->events->data[i], j->events->lens[i],
		                   !j->events->probe || j->events->probe[i])) {
			/* the earlier appends of this job are in the buffer: their
			 * replies would be mismatched, so the connection goes */
			finish_now(w, j, 503, "collector out of memory; retry later");
			disconnect(w, "redis XADD: out of memory");
			return;
		}
	}
	struct slot *sl = slot_at(w, w->count++);
	sl->j = j;
	sl->left = j->events->n;
	sl->err[0] = '\0';
	j->queued = 1;
	w->unflushed += j->events->n;
}

void writer_cancel(struct job *j)
{
	struct writer *w = cur;
	if (!j->queued || !w)
		return;
	for (size_t i = 0; i < w->count; i++)
		if (slot_at(w, i)->j == j)
			slot_at(w, i)->j = NULL;
	j->queued = 0;
}

int writer_progress(struct writer *w)
{
	int p = w->progress;
	w->progress = 0;
	return p;
}

void writer_flush(struct writer *w)
{
	if (!w->c || (!w->unflushed && !(w->armed & EPOLLOUT)))
		return;
	int done = 0;
	if (redisBufferWrite(w->c, &done) != REDIS_OK) {
		char why[192];
		snprintf(why, sizeof why, "redis XADD: %s", w->c->errstr);
		disconnect(w, why);
		return;
	}
	if (w->unflushed) {
		if (stats)
			met_observe(stats->batch_events, (double)w->unflushed);
		if (!w->oldest_ms)
			w->oldest_ms = mono_ms();
		w->unflushed = 0;
	}
	arm(w, done ? EPOLLIN : EPOLLIN | EPOLLOUT);
}

void writer_read(struct writer *w)
{
	if (!w->c)
		return;
	if (redisBufferRead(w->c) != REDIS_OK) {
		char why[192];
		snprintf(why, sizeof why, "redis XADD reply: %s", w->c->errstr);
		disconnect(w, why);
		return;
	}
	for (;;) {
		redisReply *r = NULL;
		if (redisGetReplyFromReader(w->c, (void **)&r) != REDIS_OK) {
			char why[192];
			snprintf(why, sizeof why, "redis XADD reply: %s", w->c->errstr);
			disconnect(w, why);
			return;
		}
		if (!r)
			break;
		if (!w->count) { /* a reply nobody asked for: the stream is out of step */
			freeReplyObject(r);
			disconnect(w, "redis: unexpected reply");
			return;
		}
		struct slot *sl = slot_at(w, 0);
		if (r->type != REDIS_REPLY_STRING && !sl->err[0])
			snprintf(sl->err, sizeof sl->err, "redis XADD: %s; retry later",
			         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		freeReplyObject(r);
		if (--sl->left == 0) {
			if (sl->err[0] && stats)
				met_inc(stats->redis_errors, 1);
			finish(sl->j, sl->err[0] ? 503 : 202, sl->err[0] ? sl->err : NULL);
			w->first = (w->first + 1) % w->cap;
			w->count--;
			w->oldest_ms = w->count ? mono_ms() : 0;
			w->progress = 1;
		}
	}
	atomic_store(&redis_up, 1);
}

void writer_tick(struct writer *w)
{
	adopt(w);
	if (w->count && w->oldest_ms && mono_ms() - w->oldest_ms > rconf.timeout_ms) {
		char why[128];
		snprintf(why, sizeof why, "redis XADD: no reply within %d ms", rconf.timeout_ms);
		disconnect(w, why);
	}
}

int writer_busy(const struct writer *w)
{
	return w->count > 0;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&mon_lock);
	for (struct writer **p = &all; *p; p = &(*p)->next_all)
		if (*p == w) {
			*p = w->next_all;
			break;
		}
	pthread_mutex_unlock(&mon_lock);
	fail_all(w, "collector is shutting down; retry later");
	free(w->ring);
	if (w->c) {
		if (w->armed)
			epoll_ctl(w->ep, EPOLL_CTL_DEL, w->c->fd, NULL);
		redisFree(w->c);
	}
	redisContext *c = atomic_exchange(&w->incoming, NULL);
	if (c)
		redisFree(c);
	if (cur == w)
		cur = NULL;
	free(w);
}

/* A connected context switched to non-blocking use (hiredis returns "try
 * again" on EAGAIN only without REDIS_BLOCK). */
static redisContext *connect_nonblocking(char *err, size_t errlen)
{
	redisContext *c = rs_connect(&rconf, err, errlen);
	if (!c)
		return NULL;
	int fl = fcntl(c->fd, F_GETFL);
	if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "redis connect: set non-blocking: %s", strerror(errno));
		redisFree(c);
		return NULL;
	}
	c->flags &= ~REDIS_BLOCK;
	return c;
}

/* Entries the processor group has not finished: its lag (not yet delivered)
 * plus its pending entries. Acknowledged entries kept in the stream for live
 * replay do not count. Falls back to XLEN when the group does not exist yet
 * or Redis cannot tell the lag. */
static int backlog_of(redisContext *c, long long *out, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "XINFO GROUPS %s", conf->stream);
	int found = 0;
	long long lag = -1, pending = 0;
	if (!r) {
		snprintf(err, errlen, "redis XINFO: %s", c->errstr);
		return -1;
	}
	for (size_t g = 0; r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
		const redisReply *info = r->element[g];
		int mine = 0;
		long long glag = -1, gpend = 0;
		for (size_t i = 0; info->type == REDIS_REPLY_ARRAY && i + 1 < info->elements; i += 2) {
			const redisReply *k = info->element[i], *v = info->element[i + 1];
			if (k->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(k->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
				mine = strcmp(v->str, conf->backlog_group) == 0;
			else if (strcmp(k->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
				glag = v->integer;
			else if (strcmp(k->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
				gpend = v->integer;
		}
		if (mine) {
			found = 1;
			lag = glag;
			pending = gpend;
		}
	}
	freeReplyObject(r);
	if (found && lag >= 0) {
		*out = lag + pending;
		return 0;
	}
	return rs_int(c, out, err, errlen, "XLEN %s", conf->stream);
}

/* Connect the writers that asked, with backoff while Redis is away. */
static void serve_connections(int64_t *next_try, long *backoff)
{
	char err[256];
	for (;;) {
		struct writer *w = NULL;
		pthread_mutex_lock(&mon_lock);
		for (struct writer *x = all; x && !w; x = x->next_all)
			if (atomic_load(&x->want_conn) && !atomic_load(&x->incoming))
				w = x;
		pthread_mutex_unlock(&mon_lock);
		if (!w || mono_ms() < *next_try)
			return;
		/* the writer stays listed while its loop runs: writer_free is
		 * called only after monitor_stop (server.c stops loops first) */
		redisContext *c = connect_nonblocking(err, sizeof err);
		if (!c) {
			*backoff = *backoff ? (*backoff * 2 > 2000 ? 2000 : *backoff * 2) : 100;
			*next_try = mono_ms() + *backoff;
			atomic_store(&redis_up, 0);
			if (stats)
				met_inc(stats->redis_errors, 1);
			log_kv(LOG_WARN, "redis unavailable", "error", err, NULL);
			return;
		}
		*backoff = 0;
		*next_try = 0;
		atomic_store(&w->want_conn, 0);
		atomic_store(&w->incoming, c);
		atomic_store(&redis_up, 1);
	}
}

static void *monitor_main(void *arg)
{
	redisContext *c = NULL;
	char err[256];
	int64_t next_sample = 0, next_try = 0;
	long backoff = 0;
	(void)arg;
	pthread_mutex_lock(&mon_lock);
	while (!monitor_stop) {
		pthread_mutex_unlock(&mon_lock);
		serve_connections(&next_try, &backoff);
		if (mono_ms() >= next_sample) {
			next_sample = mono_ms() + 200;
			if (!c)
				c = rs_connect(&rconf, err, sizeof err);
			long long len;
			if (c && backlog_of(c, &len, err, sizeof err) == 0) {
				next_try = 0; /* Redis answers: connect waiting writers now */
				backoff = 0;
				atomic_store(&stream_len, len);
				atomic_store(&backlog_over, len > conf->max_backlog);
				atomic_store(&redis_up, 1);
				if (stats)
					met_set(stats->stream_len, (double)len);
			} else {
				if (c)
					redisFree(c);
				c = NULL;
				atomic_store(&redis_up, 0);
			}
		}
		pthread_mutex_lock(&mon_lock);
		if (monitor_stop)
			break;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		long wait_ms = next_try > mono_ms() ? (long)(next_try - mono_ms()) : 200;
		if (wait_ms > 200)
			wait_ms = 200;
		until.tv_nsec += wait_ms * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&mon_cond, &mon_lock, &until);
	}
	pthread_mutex_unlock(&mon_lock);
	if (c)
		redisFree(c);
	return NULL;
}

int writer_start(const struct collector_conf *cf, struct writer_stats *st)
{
	conf = cf;
	stats = st;
	rconf = CFG_RS_CONF(*cf);
	monitor_stop = 0;
	if (pthread_create(&monitor, NULL, monitor_main, NULL))
		return -1;
	monitor_started = 1;
	return 0;
}

void writer_stop(void)
{
	if (!monitor_started)
		return;
	pthread_mutex_lock(&mon_lock);
	monitor_stop = 1;
	pthread_cond_broadcast(&mon_cond);
	pthread_mutex_unlock(&mon_lock);
	pthread_join(monitor, NULL);
	monitor_started = 0;
}
