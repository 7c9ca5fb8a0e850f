/* collector.h -- shared declarations of the collector's parts:
 * main.c (life cycle), server.c (HTTP routing and request bodies),
 * ingest.c (body -> normalised events), writer.c (pipelined Redis writes). */
#ifndef COLLECTOR_H
#define COLLECTOR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "ev.h"
#include "met.h"
#include "settings.h"

struct collector_conf {
	char *bind;
	long long port;
	char *tls_cert, *tls_key; /* PEM files; both empty: plain HTTP */
	long long threads;
	long long max_connections;
	long long max_body_bytes;
	long long max_event_bytes;
	long long max_depth;
	long long max_string_bytes;
	long long max_fields;
	long long max_array;
	long long max_events_per_request;
	long long max_backlog;
	char *backlog_group;
	long long retry_after_s;
	/* history API (api.c) */
	char *pg_conninfo;
	char *pg_password, *pg_password_file, *pg_sslmode, *pg_sslrootcert;
	long long api_threads;
	long long api_statement_timeout_ms;
	long long api_max_range_days;
	char *cors_origin;
	char *transcript_stream;
	char *redaction_file;
	CFG_FIELDS_COMMON;
};

/* ---- ingest.c ---- */
enum ingest_format { FMT_JSON, FMT_NDJSON };

/* Normalised events of one request, or the reasons they were refused. */
struct ingest_result {
	size_t n;
	char **data;  /* n serialised canonical events (owned) */
	size_t *lens;
	char (*ids)[37];  /* event ids, for the reply */
	unsigned char *probe; /* 1: client gave an id but no timestamp (see rs_xadd_append) */
	int status;       /* 0 ok, else the HTTP status to answer */
	char *error_json; /* body for the error reply */
	int in_arena;     /* data and error_json live in the request's arena */
};
int ingest_parse(const char *body, size_t len, enum ingest_format fmt, int64_t now_ms,
                 const struct ev_limits *lim, size_t max_events, struct ingest_result *out);
void ingest_result_free(struct ingest_result *r);

/* ---- writer.c ---- */
struct job {
	struct ingest_result *events;
	const char *stream;  /* NULL: the event stream; else e.g. conf->transcript_stream */
	int status;          /* 0 = pending; 202 done; 503 failed (err says why) */
	int queued;          /* in a writer's queue (writer_cancel removes it) */
	char err[160];
};

struct writer_stats {
	struct met_series *redis_errors;
	struct met_series *stream_len; /* gauge: unprocessed events (backlog) */
	struct met_series *batch_events; /* histogram: events per pipelined batch */
};

/* The monitor thread: backlog sampling, and Redis connections for writers. */
int writer_start(const struct collector_conf *cf, struct writer_stats *st);
/* One writer per loop thread; its socket joins epoll set `ep` as data.u64 = tag. */
struct writer *writer_new(int ep, uint64_t tag);
void writer_free(struct writer *w); /* fails (503) and resumes jobs still due */
void writer_bind(struct writer *w); /* the writer of the calling loop thread */
/* From a request handler on a loop thread: append the job's XADDs. The
 * handler returns MHD_YES without a response while job->status is 0;
 * libmicrohttpd calls it again on each pass until the writer has set it.
 * (Cheaper than suspend/resume, which re-registers the socket with epoll
 * twice per request.) */
void writer_submit(struct job *j);
/* The request owning j goes away (client closed): forget j (loop thread). */
void writer_cancel(struct job *j);
/* 1 when a job finished since the last call (the loop must not sleep). */
int writer_progress(struct writer *w);
void writer_flush(struct writer *w); /* send what was appended (loop pass end, or EPOLLOUT) */
void writer_read(struct writer *w);  /* on EPOLLIN: take replies, resume finished jobs */
void writer_tick(struct writer *w);  /* adopt a new connection; time out a silent Redis */
int writer_busy(const struct writer *w); /* jobs whose replies are due */
/* Fast check before accepting work: 0 ok, else 503 reason written. */
int writer_admit(char *why, size_t whylen);
int writer_ready(void *ud, char *why, size_t whylen);
void writer_stop(void); /* stops the monitor (after the writers are freed) */

/* ---- server.c ---- */
struct auth;
/* The event limits of collector.max_* (every ingest route uses them). */
struct ev_limits collector_limits(const struct collector_conf *cf);
/* auth: the API keys (NULL: none, every route open). */
int server_start(const struct collector_conf *cf, struct met_registry *reg, struct auth *auth,
                 char *err, size_t errlen);
void server_quiesce(void);
/* Count events appended to the stream by any route (agent_obs_events_accepted_total). */
void server_count_accepted(size_t n);
/* 1 when the listener speaks HTTPS (collector.tls_cert/tls_key set). */
int server_tls_enabled(void);
void server_stop(void);

#endif
