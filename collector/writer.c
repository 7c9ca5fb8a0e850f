/* writer.c -- the collector's Redis side. Request threads queue jobs (the
 * events of one suspended HTTP request); writer threads take every queued
 * job, pipeline all their XADDs in one round trip (group commit), then resume
 * the requests. A monitor thread samples the stream length for back-pressure.
 * Each thread owns its own redisContext. Jobs are owned by their request. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collector.h"
#include "log.h"
#include "rs.h"

#define MAX_WRITERS 8
#define MAX_PIPELINE_EVENTS 20000

static const struct collector_conf *conf;
static struct writer_stats *stats;
static struct rs_conf rconf;

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static struct job *q_head, *q_tail;
static int q_stopping;
static int writers_done; /* after this, submitted jobs are failed at once */

static pthread_t writers[MAX_WRITERS], monitor;
static int n_writers;
static atomic_int redis_up = 1;      /* last writer/monitor contact succeeded */
static atomic_int backlog_over;      /* stream longer than max_backlog */
static atomic_llong stream_len;
static volatile sig_atomic_t monitor_stop;

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

static void finish(struct job *jobs, int status, const char *err);

void writer_submit(struct job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&q_lock);
	if (writers_done) {
		pthread_mutex_unlock(&q_lock);
		finish(j, 503, "collector is shutting down; retry later");
		return;
	}
	if (q_tail)
		q_tail->next = j;
	else
		q_head = j;
	q_tail = j;
	pthread_cond_signal(&q_cond);
	pthread_mutex_unlock(&q_lock);
}

/* Take queued jobs up to MAX_PIPELINE_EVENTS events (at least one job), all
 * for the same stream (jobs of one stream share one `stream` pointer). */
static struct job *take(void)
{
	pthread_mutex_lock(&q_lock);
	while (!q_head && !q_stopping)
		pthread_cond_wait(&q_cond, &q_lock);
	struct job *first = q_head, *last = NULL;
	size_t events = 0;
	for (struct job *j = q_head; j; j = j->next) {
		if (last && (events + j->events->n > MAX_PIPELINE_EVENTS || j->stream != first->stream))
			break;
		events += j->events->n;
		last = j;
	}
	if (last) {
		q_head = last->next;
		if (!q_head)
			q_tail = NULL;
		last->next = NULL;
	}
	pthread_mutex_unlock(&q_lock);
	return first;
}

static void finish(struct job *jobs, int status, const char *err)
{
	for (struct job *j = jobs, *next; j; j = next) {
		next = j->next;
		j->status = status;
		if (err)
			snprintf(j->err, sizeof j->err, "%s", err);
		/* After resume the request thread owns the job again. */
		MHD_resume_connection(j->conn);
	}
}

static int write_jobs(redisContext *c, struct job *jobs, char *err, size_t errlen)
{
	size_t n = 0;
	for (struct job *j = jobs; j; j = j->next)
		n += j->events->n;
	const char **data = malloc(n * sizeof *data);
	size_t *lens = malloc(n * sizeof *lens);
	unsigned char *probe = malloc(n ? n : 1);
	int rc = -1;
	if (!data || !lens || !probe) {
		snprintf(err, errlen, "redis XADD: out of memory");
		goto out;
	}
	size_t k = 0;
	for (struct job *j = jobs; j; j = j->next) {
		for (size_t i = 0; i < j->events->n; i++, k++) {
			data[k] = j->events->data[i];
			lens[k] = j->events->lens[i];
			probe[k] = j->events->probe ? j->events->probe[i] : 1;
		}
	}
	rc = rs_xadd_many(c, jobs->stream ? jobs->stream : conf->stream, data, lens, probe, n, NULL,
	                  err, errlen);
	if (rc == 0 && stats)
		met_observe(stats->batch_events, (double)n);
out:
	free(data);
	free(lens);
	free(probe);
	return rc;
}

static void *writer_main(void *arg)
{
	redisContext *c = NULL;
	char err[256];
	long backoff_ms = 0;
	struct timespec last_fail = {0, 0};
	(void)arg;

	for (;;) {
		struct job *jobs = take();
		if (!jobs)
			break; /* stopping and queue empty */
		if (!c) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long since = (now.tv_sec - last_fail.tv_sec) * 1000 +
			             (now.tv_nsec - last_fail.tv_nsec) / 1000000;
			if (backoff_ms && since < backoff_ms) {
				finish(jobs, 503, "redis unavailable; retry later");
				continue;
			}
			c = rs_connect(&rconf, err, sizeof err);
			if (!c) {
				last_fail = now;
				backoff_ms = backoff_ms ? (backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2) : 100;
				atomic_store(&redis_up, 0);
				if (stats)
					met_inc(stats->redis_errors, 1);
				log_kv(LOG_WARN, "redis unavailable", "error", err, NULL);
				finish(jobs, 503, "redis unavailable; retry later");
				continue;
			}
			backoff_ms = 0;
			atomic_store(&redis_up, 1);
		}
		if (write_jobs(c, jobs, err, sizeof err)) {
			/* A broken connection may have applied some XADDs: the client
			 * retries and the processor de-duplicates on the event id. */
			log_kv(LOG_ERROR, "redis write failed", "error", err, NULL);
			if (stats)
				met_inc(stats->redis_errors, 1);
			if (c->err) {
				redisFree(c);
				c = NULL;
				atomic_store(&redis_up, 0);
			}
			finish(jobs, 503, "redis write failed; retry later");
			continue;
		}
		finish(jobs, 202, NULL);
	}
	if (c)
		redisFree(c);
	return NULL;
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

static void *monitor_main(void *arg)
{
	redisContext *c = NULL;
	char err[256];
	(void)arg;
	while (!monitor_stop) {
		if (!c)
			c = rs_connect(&rconf, err, sizeof err);
		if (c) {
			long long len;
			if (backlog_of(c, &len, err, sizeof err) == 0) {
				atomic_store(&stream_len, len);
				atomic_store(&backlog_over, len > conf->max_backlog);
				atomic_store(&redis_up, 1);
				if (stats)
					met_set(stats->stream_len, (double)len);
			} else {
				redisFree(c);
				c = NULL;
			}
		}
		if (!c)
			atomic_store(&redis_up, 0);
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (c)
		redisFree(c);
	return NULL;
}

int writer_start(const struct collector_conf *cf, struct writer_stats *st)
{
	conf = cf;
	stats = st;
	rconf = CFG_RS_CONF(*cf);
	n_writers = 1;
	for (int i = 0; i < n_writers; i++)
		if (pthread_create(&writers[i], NULL, writer_main, NULL))
			return -1;
	if (pthread_create(&monitor, NULL, monitor_main, NULL))
		return -1;
	return 0;
}

void writer_stop(void)
{
	pthread_mutex_lock(&q_lock);
	int already = q_stopping;
	q_stopping = 1;
	pthread_cond_broadcast(&q_cond);
	pthread_mutex_unlock(&q_lock);
	if (already)
		return;
	for (int i = 0; i < n_writers; i++)
		pthread_join(writers[i], NULL);
	pthread_mutex_lock(&q_lock);
	writers_done = 1;
	struct job *left = q_head;
	q_head = q_tail = NULL;
	pthread_mutex_unlock(&q_lock);
	finish(left, 503, "collector is shutting down; retry later");
	monitor_stop = 1;
	pthread_join(monitor, NULL);
}
