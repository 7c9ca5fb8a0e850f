/* streamer.h -- shared declarations of the streamer's parts:
 *   main.c    life cycle: config, threads, the lws service loops, drain, exit
 *   source.c  Redis side: the reader thread (XREAD BLOCK with a cursor) and
 *             the replay worker (XRANGE / XREVRANGE for since= / backlog=)
 *   event.c   one stream entry as a shared, immutable, pre-framed record
 *   ws.c      libwebsockets: the shards (one lws context and service thread
 *             each), HTTP endpoints, WS clients, fan-out
 *   filter.c  the filter grammar and matcher (pure; unit-tested)
 *   webconf.c /config.json and the security headers from streamer.api_url
 *             (pure; unit-tested)
 *   route.c   the index of clients by the session / agent they filter on
 *
 * Threads: streamer.threads shards, each an lws context with its own service
 * thread (shard 0 runs on the main thread). Shard 0 accepts every
 * connection on the one listening socket and hands it to the shard with the
 * fewest clients, which adopts it. A shard owns its clients and everything
 * they point to. The reader hands every batch of records to every shard's
 * mailbox, the worker a replay answer to the asking client's shard, the
 * acceptor a new connection to its shard; then they call
 * lws_cancel_service() on that shard's context (the one lws call that is
 * safe from another thread). A
 * record is shared by the shards (an atomic count, one reference per shard),
 * never by the reference counting of client queues, which stays inside a
 * shard (ws.c).
 */
#ifndef STREAMER_H
#define STREAMER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "rs.h"
#include "settings.h"

struct lws_context;
struct met_registry;
struct met_series;
struct met_family;

struct streamer_conf {
	char *bind;
	long long port;
	char *tls_cert, *tls_key; /* PEM files; both empty: plain HTTP/WS */
	char *web_root;
	char *api_url;
	long long max_clients;
	long long read_count;
	long long client_queue_max;
	long long client_queue_bytes;
	long long client_max_lag_ms;
	long long client_sndbuf;
	long long frame_max_events;
	long long frame_max_bytes;
	long long replay_max;
	long long replay_scan_max;
	long long ping_interval_s;
	long long ping_timeout_s;
	long long threads;
	CFG_FIELDS_COMMON;
};

/* ---- event.c ---- */

/* One stream entry, shared by the shards (and a replay answer) that hold
 * it. Immutable after sev_new() but for `refs`, one per holder, which any
 * thread may drop. */
struct sev {
	atomic_int refs;
	struct rs_id id;
	char sid[48];            /* stream id as text */
	struct flt_fields f;     /* point into the record */
	size_t len;              /* bytes of msg */
	char *msg;               /* {"type":"event","id":"<sid>","event":{...}} */
	char data[];
};

/* Build a record from an entry's id and field "e". NULL when the entry is
 * not a JSON object (the caller counts it) or out of memory. refs == 1. */
struct sev *sev_new(const char *sid, const char *json, size_t len);
void sev_unref(struct sev *e); /* NULL is a no-op */
/* Before hand-over: one reference for each of n holders (n >= 1). */
void sev_share(struct sev *e, int n);

/* ---- route.c ---- */

/* Clients filed by the session / agent their filter names, so that an event
 * is offered only to clients that can want it (a superset: still run
 * flt_match). Items are the caller's pointers. */
struct route;
struct route_list {
	void **v;
	size_t n, cap;
};
struct route *route_new(void);
void route_free(struct route *r); /* NULL is a no-op */
/* File item under filter f: 0, or -1 (out of memory; nothing filed). */
int route_add(struct route *r, void *item, const struct filter *f);
/* Remove item, filed with the same filter f (absent: a no-op). */
void route_remove(struct route *r, void *item, const struct filter *f);
/* The lists (at most 3) whose items may match ev; no item is in two. */
size_t route_lookup(const struct route *r, const struct flt_fields *ev, const struct route_list *out[3]);

/* ---- source.c ---- */

enum replay_mode { REPLAY_NONE, REPLAY_SINCE, REPLAY_BACKLOG };

/* A replay asked for by a client, answered by the worker thread. */
struct replay {
	struct replay *next;
	uint64_t client;         /* serial of the asking client */
	int shard;               /* ... which lives on this shard */
	char *filter;            /* filter text at connect time (owned) */
	enum replay_mode mode;
	struct rs_id since;
	long long backlog;
	/* answer */
	struct sev **ev;         /* matching events, ascending ids (owned refs) */
	size_t n;
	struct rs_id covered;    /* every entry <= covered was considered */
	long long scanned;
	int complete;            /* 0: a gap may remain (limit hit, trimmed, error) */
	char note[320];          /* why not complete */
};
void replay_free(struct replay *r);

/* What the reader, the worker and the acceptor hand one shard's service
 * thread. */
struct mailbox {
	struct lws_context *lws; /* the shard's context (set by ws_start) */
	atomic_int ready;        /* inbox, done or fds not empty: a hint read without mu */
	pthread_mutex_t mu;      /* guards everything below */
	pthread_cond_t drained;  /* reader: the service thread emptied the inbox, or stop */
	struct sev **inbox;      /* reader -> shard, stream order, one reference each */
	size_t inbox_n, inbox_cap;
	struct replay *done_head, *done_tail; /* worker -> shard */
	int *fds;                /* accepted connections: shard 0 -> shard (owned) */
	size_t nfds, fds_cap;
};

struct streamer {
	struct streamer_conf cf;
	struct rs_conf rconf;
	int nshards;             /* cf.threads */
	struct mailbox *box;     /* one per shard */
	int tls;                 /* listener speaks https/wss (set by ws_start) */
	struct auth *auth;       /* API keys (NULL: none, loopback only); read-only */
	atomic_int redis_ok;     /* reader connected and reading */
	atomic_int stop;         /* threads must finish (set by source_stop) */

	pthread_mutex_t mu;      /* guards everything below */
	pthread_cond_t work;     /* worker: a request arrived, or stop */
	struct replay *req_head, *req_tail;   /* shards -> worker */
	char redis_error[160];   /* why the reader is not connected ("" when it is) */

	pthread_t reader, worker;
	int threads_started;

	struct {
		struct met_registry *reg;
		struct met_series *clients, *connections, *frames, *events_sent, *lag, *read,
			*invalid, *redis_errors, *replays, *replayed, *bad_requests, *queued,
			*inbox;
		struct met_family *dropped;
	} m;
};

/* Mailboxes (s->nshards of them, zeroed or not) for ws_start to fill in. */
int source_init(struct streamer *s);
void source_free(struct streamer *s); /* what no shard took; after source_stop */
/* Start / stop the reader and the worker; source_start needs every
 * mailbox's lws. source_stop may be called twice. */
int source_start(struct streamer *s, char *err, size_t errlen);
void source_stop(struct streamer *s);
/* Queue a replay request (a shard's service thread); the worker answers
 * through that shard's mailbox and lws_cancel_service(). Takes r. */
void source_request_replay(struct streamer *s, struct replay *r);

/* ---- webconf.c ---- */

struct webconf {
	char *config_json; /* {"api_url":"..."}: GET /config.json */
	char *csp;         /* Content-Security-Policy of every answer */
};

/* From streamer.api_url: "" (no history API), an http(s) URL, or a path on
 * the dashboard's own origin ("/api", behind a reverse proxy); trailing '/'
 * dropped. -1 with err naming the setting when the URL is unusable. */
int webconf_build(const char *api_url, struct webconf *wc, char *err, size_t errlen);
void webconf_free(struct webconf *wc); /* NULL is a no-op */

/* ---- ws.c ---- */

/* Create the shards' lws contexts, all listening on cf.bind:cf.port.
 * 0 / -1 with err. */
int ws_start(struct streamer *s, char *err, size_t errlen);
/* Run every shard's service loop (shard 0 on the calling thread) until a
 * stop is requested; then each closes its clients (1001 going away), and
 * ws_run returns when all are done. */
void ws_run(struct streamer *s);
/* Destroy the contexts (after source_stop: its threads wake them). */
void ws_stop(struct streamer *s);

#endif
