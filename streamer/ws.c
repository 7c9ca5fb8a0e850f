/* ws.c -- the streamer's libwebsockets side: the HTTP endpoints (/healthz,
 * /readyz, /metrics, /config.json, the dashboard's files at /, all with the
 * security headers of webconf.c), the WebSocket endpoint /stream, and the
 * fan-out of events to clients.
 *
 * Sections: state and helpers; request parsing (filter/since/backlog);
 * HTTP; clients (open, queue, drop, close); frames (one lws_write per
 * writable callback); client messages (filter change, ping); the wake-up
 * from the reader, the worker and the acceptor; the periodic tick;
 * accepting; life cycle.
 *
 * Shards: streamer.threads lws contexts, each served by its own thread
 * (shard 0 by the main thread), each with its own clients, client index and
 * buffers; shard 0 also accepts every connection and deals it out (see
 * "Accepting"). Why: Debian's libwebsockets 4.1.6 is built with
 * LWS_MAX_SMP 1, so a context has one service thread, and with every client
 * unfiltered (1,000 clients x 1,000 events/s) that thread spends its time in
 * send(2) -- loopback TCP does the receiver's side inside the sender's
 * system call -- and the time one round of writes over its clients takes is
 * the lag. Shards split the round between cores, when there are cores to
 * spare: on a 2-core machine that also runs the clients (make bench) a
 * second shard only takes CPU from them and made the lag worse, hence the
 * default of one per core but one (main.c). A client and everything it
 * holds belong to its shard's thread; what shards share is read-only after
 * ws_start (W below) or atomic (the client counts, serials, metrics,
 * W.closing).
 *
 * Each client has a bounded queue of references to its shard's hold on a
 * shared event record (struct qev: the reference counts that client queues
 * move stay thread-local; the record is counted once per shard). A
 * writable callback first takes what the reader handed over since the last
 * look, so that an event read during a round of writes still reaches the
 * clients not yet written to in that round; then it sends control messages,
 * then replayed events, then queued live events, several at a time as one
 * JSON array when the client is behind. A client whose queue overflows, or
 * whose oldest queued event has waited too long, is closed with code 4008
 * and counted; nothing a slow client does can block the loop, because lws
 * only calls us back when its socket can take more.
 *
 * With API keys configured (S.auth), /stream needs the read role and the key
 * comes as the subprotocol "agent-obs.key.<key>" offered beside
 * "agent-obs-stream" (browsers cannot set an Authorization header on a
 * WebSocket, and a query string ends up in access logs); an Authorization
 * header is accepted too. /metrics needs read; /healthz, /readyz and the
 * dashboard's files are open.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

#include "auth.h"
#include "ev.h"
#include "log.h"
#include "met.h"
#include "sig.h"
#include "streamer.h"
#include "tls.h"

#define PROTO_WS "agent-obs-stream"
#define CLOSE_TOO_SLOW 4008 /* private-use close code: the client fell too far behind */
/* lws's own value for a close frame (lws-write.h leaves 4 out: "handled by
 * lws_close_reason()"); see client_hangup for why we write it ourselves */
#define WRITE_CLOSE ((enum lws_write_protocol)4)
#define RX_MAX 8192         /* largest message a client may send */
#define ARG_MAX 8192        /* largest decoded query argument */
#define TICK_US (250 * LWS_US_PER_MS)

/* ------------------------------------------------------------------------ */
/* State */

struct ctl {
	struct ctl *next;
	size_t len;
	char msg[];
};

enum cstate { C_REPLAY_WAIT, C_REPLAY_SEND, C_LIVE };

/* A shard's hold on a shared record: what its client queues point to. */
struct qev {
	struct sev *e; /* one reference, released with the last queue's */
	int refs;      /* queues holding this (and the fan-out loop, while it runs) */
	int64_t t_in;  /* monotonic ms when fanned out to client queues */
};

struct shard;

/* Per WebSocket connection (lws allocates and zeroes it). */
struct client {
	struct shard *sh;
	struct lws *wsi;
	struct client *prev, *next;
	uint64_t serial;
	int active;   /* in the client list */
	int dropping; /* being closed: send nothing more than the close frame */
	int close_sent;
	unsigned char close_frame[2 + 123]; /* code (big-endian) and reason */
	size_t close_len;
	int wake;     /* got events in this wake-up: ask for a writable callback */
	int asked;    /* a writable callback is asked for and has not come yet */
	enum cstate state;
	struct filter flt;
	struct rs_id covered; /* with skip: live events <= covered came by replay */
	int skip;
	struct replay *rp;    /* replay answer being sent */
	size_t rp_pos;
	struct qev **q;       /* ring of qcap (a power of two) slots */
	size_t qcap, qhead, qn, qbytes;
	struct ctl *ctl, *ctl_tail;
	char *rx;
	size_t rxlen;
};

/* Per HTTP request on the first protocol. */
struct http_req {
	unsigned char *resp; /* LWS_PRE + headers + body */
	size_t hlen, len;    /* header bytes, body bytes */
	int deferred;        /* a request body is coming: answer when it is read */
};

/* What /stream?... asks for. */
struct stream_req {
	struct filter flt;
	enum replay_mode mode;
	struct rs_id since;
	long long backlog;
};

/* One lws context and everything its service thread owns. */
struct shard {
	int idx;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct mailbox *box; /* from the reader and the worker */
	pthread_t th;        /* shards 1..n-1 (shard 0: the main thread) */
	int th_started;
	struct client *head;
	size_t nclients;
	atomic_size_t load;  /* nclients, for shard 0's acceptor to read */
	unsigned char *fbuf; /* LWS_PRE + frame */
	size_t fcap;
	struct sev **spare;  /* the inbox array swapped out last time */
	size_t spare_cap;
	int *fds_spare;      /* the same for the accepted connections */
	size_t fds_spare_cap;
	struct route *route; /* clients by the session / agent they filter on */
	struct client **woken; /* clients that got events in this wake-up */
	size_t nwoken, woken_cap;
	lws_sorted_usec_list_t tick;
	/* metrics gathered here, added to the shared series once per loop turn
	 * (an atomic per frame and event, fought over by the shards, cost more) */
	struct met_local lag;
	double frames, events_sent;
	size_t queued_shown; /* this shard's part of the queued-events gauge */
};

/* Shared by the shards: set by ws_start, read-only afterwards, or atomic. */
static struct {
	struct streamer *s;
	struct shard *sh;
	int nshards;
	atomic_size_t nclients;   /* all shards */
	atomic_uint_fast64_t next_serial;
	atomic_int closing;
	int listen_fd;            /* shard 0 accepts on it, -1 when closed */
	unsigned next_shard;      /* acceptor's round-robin start (shard 0 only) */
	char web_root[PATH_MAX];
	struct lws_http_mount mounts[6];
	struct webconf web;                       /* /config.json, CSP */
	struct lws_protocol_vhost_options hdr[5]; /* security headers of every answer */
	lws_retry_bo_t retry;
} W;

static struct shard *shard_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

/* {"error":{"status":S,"field":F,"message":M}} (malloc'd; NULL on OOM). */
static char *error_json(int status, const char *field, const char *message)
{
	cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
	char *out = NULL;
	if (e && cJSON_AddNumberToObject(e, "status", status) &&
	    (!field || cJSON_AddStringToObject(e, "field", field)) &&
	    cJSON_AddStringToObject(e, "message", message))
		out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* The same error as a message on the socket: {"type":"error","error":{...}}. */
static char *error_msg(const char *field, const char *message)
{
	char *e = error_json(400, field, message), *out = NULL;
	size_t n;
	if (!e)
		return NULL;
	n = strlen(e) + 16;
	out = malloc(n + 1);
	if (out)
		snprintf(out, n + 1, "{\"type\":\"error\",%s", e + 1);
	free(e);
	return out;
}

/* ------------------------------------------------------------------------ */
/* Request parsing: /stream?filter=...&since=...&backlog=... */

static void stream_req_free(struct stream_req *r)
{
	flt_free(&r->flt);
}

static int parse_args(struct lws *wsi, const struct streamer_conf *cf, struct stream_req *out,
                      const char **field, char *err, size_t errlen);

/* Parse the query arguments of the current request. 0 (the caller frees
 * *out), or -1 with the offending parameter in field and the problem in err
 * (*out then owns nothing). */
static int stream_req_parse(struct lws *wsi, const struct streamer_conf *cf, struct stream_req *out,
                            const char **field, char *err, size_t errlen)
{
	if (parse_args(wsi, cf, out, field, err, errlen) == 0)
		return 0;
	stream_req_free(out);
	return -1;
}

static int parse_args(struct lws *wsi, const struct streamer_conf *cf, struct stream_req *out,
                      const char **field, char *err, size_t errlen)
{
	char buf[ARG_MAX];
	int seen_filter = 0, seen_since = 0, seen_backlog = 0;
	char ferr[256];

	memset(out, 0, sizeof *out);
	*field = NULL;
	if (flt_parse("", 0, &out->flt, err, errlen))
		return -1;
	for (int i = 0;; i++) {
		int flen = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
		if (flen <= 0 && lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
			break;
		if (flen >= (int)sizeof buf) {
			*field = "query";
			snprintf(err, errlen, "query argument %d is longer than %d bytes", i + 1, ARG_MAX - 1);
			return -1;
		}
		if (lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
			break;
		char *eq = strchr(buf, '=');
		const char *val = eq ? eq + 1 : "";
		if (eq)
			*eq = '\0';
		if (strcmp(buf, "filter") == 0) {
			*field = "filter";
			if (seen_filter++) {
				snprintf(err, errlen, "filter given twice (join clauses with ',')");
				return -1;
			}
			flt_free(&out->flt);
			if (flt_parse(val, strlen(val), &out->flt, ferr, sizeof ferr)) {
				snprintf(err, errlen, "%s", ferr);
				return -1;
			}
		} else if (strcmp(buf, "since") == 0) {
			*field = "since";
			if (seen_since++) {
				snprintf(err, errlen, "since given twice");
				return -1;
			}
			if (rs_id_parse(val, &out->since) || !*val || *val == '-' || *val == '+') {
				snprintf(err, errlen, "not a stream id (\"<ms>-<seq>\" or \"<ms>\"): \"%.64s\"", val);
				return -1;
			}
			out->mode = REPLAY_SINCE;
		} else if (strcmp(buf, "backlog") == 0) {
			char *end;
			*field = "backlog";
			if (seen_backlog++) {
				snprintf(err, errlen, "backlog given twice");
				return -1;
			}
			errno = 0;
			long long n = *val >= '0' && *val <= '9' ? strtoll(val, &end, 10) : -1;
			if (n < 0 || errno || *end || n > cf->replay_max) {
				snprintf(err, errlen, "must be an integer from 0 to %lld: \"%.64s\"", cf->replay_max, val);
				return -1;
			}
			out->backlog = n;
		} else {
			*field = "query";
			snprintf(err, errlen, "unknown parameter \"%.64s\" (expected filter, since or backlog)", buf);
			return -1;
		}
	}
	*field = NULL;
	if (seen_since && seen_backlog) {
		*field = "backlog";
		snprintf(err, errlen, "give since or backlog, not both");
		return -1;
	}
	if (seen_backlog && out->backlog > 0)
		out->mode = REPLAY_BACKLOG;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* HTTP */

/* Build status line, headers and body into one buffer (after LWS_PRE).
 * *resp is malloc'd; *hlen is the header length. -1 on failure. */
static int http_build(struct lws *wsi, unsigned status, const char *ctype, const char *body,
                      size_t blen, const struct auth_verdict *v, unsigned char **resp, size_t *hlen)
{
	char ra[24];
	size_t cap = LWS_PRE + 1024 + blen;
	unsigned char *buf = malloc(cap), *start, *p, *end;
	if (!buf)
		return -1;
	start = p = buf + LWS_PRE;
	end = buf + LWS_PRE + 1024;
	if (lws_add_http_common_headers(wsi, status, ctype, blen, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
	                                 (const unsigned char *)"no-store", 8, &p, end) ||
	    (v && v->status == 401 &&
	     lws_add_http_header_by_name(wsi, (const unsigned char *)"www-authenticate:",
	                                 (const unsigned char *)"Bearer realm=\"agent-obs\"", 23, &p, end)) ||
	    (v && v->retry_after_s > 0 &&
	     lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:", (const unsigned char *)ra,
	                                 snprintf(ra, sizeof ra, "%ld", v->retry_after_s), &p, end)) ||
	    lws_finalize_http_header(wsi, &p, end)) {
		free(buf);
		return -1;
	}
	*hlen = (size_t)(p - start);
	memcpy(p, body, blen);
	*resp = buf;
	return 0;
}

/* Reject an upgrade with a complete HTTP answer written at once. */
static int upgrade_reject_v(struct lws *wsi, unsigned status, const char *field, const char *msg,
                            const struct auth_verdict *v)
{
	char *body = error_json((int)status, field, msg);
	unsigned char *resp = NULL;
	size_t hlen;
	int rc = -1;
	met_inc(W.s->m.bad_requests, 1);
	if (body && http_build(wsi, status, "application/json", body, strlen(body), v, &resp, &hlen) == 0 &&
	    lws_write(wsi, resp + LWS_PRE, hlen + strlen(body), LWS_WRITE_HTTP_HEADERS) >= 0)
		rc = 1; /* answered: lws completes the transaction */
	free(resp);
	free(body);
	return rc;
}

static int upgrade_reject(struct lws *wsi, unsigned status, const char *field, const char *msg)
{
	return upgrade_reject_v(wsi, status, field, msg, NULL);
}

/* The first token of a Sec-WebSocket-Protocol list that starts with
 * `prefix` (whole token when exact); NULL when none. *n gets its length. */
static const char *proto_token(const char *list, const char *prefix, int exact, size_t *n)
{
	size_t pl = strlen(prefix);
	for (const char *t = list; *t;) {
		t += strspn(t, " \t,");
		*n = strcspn(t, " \t,");
		if (*n >= pl && strncmp(t, prefix, pl) == 0 && (!exact || *n == pl))
			return t;
		t += *n;
	}
	return NULL;
}

/* The key of an upgrade: the "agent-obs.key.<key>" subprotocol, else the
 * Authorization header. Checked for `need`; 0 ok, -1 with *v. */
static int check_key(struct lws *wsi, int need, int ws, struct auth_verdict *v)
{
	char hdr[1024], cred[1100];
	const char *cr = NULL, *t;
	size_t n;
	int rc;
	if (!W.s->auth)
		return auth_check(NULL, NULL, need, v);
	if (ws && lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_PROTOCOL) > 0 &&
	    (t = proto_token(hdr, AUTH_WS_KEY_PREFIX, 0, &n))) {
		const size_t pl = sizeof AUTH_WS_KEY_PREFIX - 1;
		snprintf(cred, sizeof cred, "Bearer %.*s", (int)(n - pl), t + pl);
		cr = cred;
	}
	if (!cr && lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
		cr = hdr;
	rc = auth_check(W.s->auth, cr, need, v);
	explicit_bzero(hdr, sizeof hdr);
	explicit_bzero(cred, sizeof cred);
	return rc;
}

static int confirm_upgrade(struct lws *wsi)
{
	struct auth_verdict v;
	char path[256], err[320];
	const char *field;
	struct stream_req req;

	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) < 0 || strcmp(path, "/stream") != 0)
		return upgrade_reject(wsi, 404, NULL, "WebSocket endpoint is /stream");
	if (check_key(wsi, AUTH_READ, 1, &v))
		return upgrade_reject_v(wsi, v.status, v.field, v.message, &v);
	/* subprotocols offered without ours would end in a silent close */
	char protos[1024];
	size_t n;
	if (lws_hdr_copy(wsi, protos, sizeof protos, WSI_TOKEN_PROTOCOL) > 0 &&
	    !proto_token(protos, PROTO_WS, 1, &n))
		return upgrade_reject(wsi, 400, "Sec-WebSocket-Protocol",
		                      "offer the subprotocol \"" PROTO_WS "\" (beside agent-obs.key.<key>)");
	if (atomic_load(&W.closing))
		return upgrade_reject(wsi, 503, NULL, "shutting down");
	/* all shards' clients; two upgrades on two shards at once may pass
	 * together, so the limit can be passed by up to streamer.threads - 1 */
	if ((long long)atomic_load(&W.nclients) >= W.s->cf.max_clients)
		return upgrade_reject(wsi, 503, NULL, "too many clients (streamer.max_clients)");
	if (stream_req_parse(wsi, &W.s->cf, &req, &field, err, sizeof err))
		return upgrade_reject(wsi, 400, field, err);
	stream_req_free(&req);
	return 0;
}

static int ready(char *why, size_t whylen)
{
	struct streamer *s = W.s;
	if (atomic_load(&s->redis_ok))
		return 1;
	pthread_mutex_lock(&s->mu);
	snprintf(why, whylen, "redis unavailable%s%s", s->redis_error[0] ? ": " : "", s->redis_error);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* Headers now (one write), the body in the writable callback. */
static int http_send_headers(struct lws *wsi, struct http_req *h)
{
	h->deferred = 0;
	if (lws_write(wsi, h->resp + LWS_PRE, h->hlen, LWS_WRITE_HTTP_HEADERS) < 0)
		return -1;
	memmove(h->resp + LWS_PRE, h->resp + LWS_PRE + h->hlen, h->len);
	lws_callback_on_writable(wsi);
	return 0;
}

/* Answer a request on one of the callback mounts. */
static int http_request(struct lws *wsi, struct http_req *h)
{
	char *uri = NULL, why[256], *owned = NULL;
	int ulen = 0;
	int method = lws_http_get_uri_and_method(wsi, &uri, &ulen);
	unsigned status = 200;
	const char *ctype = "application/json", *body = NULL;
	size_t blen, hlen;
	struct auth_verdict v = {0};
	int is_metrics = ulen == 8 && memcmp(uri, "/metrics", 8) == 0;

	if (is_metrics && check_key(wsi, AUTH_READ, 0, &v)) {
		status = v.status;
		body = owned = error_json((int)v.status, v.field, v.message);
	} else if (method != 0) { /* GET */
		status = 405;
		body = owned = error_json(405, NULL, "use GET");
	} else if (ulen == 8 && memcmp(uri, "/healthz", 8) == 0) {
		body = "{\"status\":\"ok\"}";
	} else if (ulen == 7 && memcmp(uri, "/readyz", 7) == 0) {
		if (ready(why, sizeof why)) {
			body = "{\"status\":\"ready\"}";
		} else {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "status", "not ready");
			cJSON_AddStringToObject(o, "reason", why);
			body = owned = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			status = 503;
		}
	} else if (ulen == 12 && memcmp(uri, "/config.json", 12) == 0) {
		body = W.web.config_json;
	} else if (ulen == 8 && memcmp(uri, "/metrics", 8) == 0) {
		size_t mlen = 0;
		if (met_render(W.s->m.reg, &owned, &mlen) == 0) {
			ctype = "text/plain; version=0.0.4; charset=utf-8";
			body = owned;
		} else {
			status = 500;
			body = owned = error_json(500, NULL, "rendering metrics failed");
		}
	} else if (ulen == 7 && memcmp(uri, "/stream", 7) == 0) {
		struct stream_req req;
		const char *field;
		char err[320];
		/* also the dashboard's probe: is my key good for the stream? */
		if (check_key(wsi, AUTH_READ, 0, &v)) {
			status = v.status;
			body = owned = error_json((int)v.status, v.field, v.message);
		} else if (stream_req_parse(wsi, &W.s->cf, &req, &field, err, sizeof err)) {
			met_inc(W.s->m.bad_requests, 1);
			status = 400;
			body = owned = error_json(400, field, err);
		} else {
			stream_req_free(&req);
			status = 426;
			body = owned = error_json(426, NULL, "valid request; connect with a WebSocket upgrade");
		}
	} else {
		status = 404;
		body = owned = error_json(404, NULL, "not found");
	}
	if (!body) {
		free(owned);
		return -1;
	}
	blen = strlen(body);
	if (http_build(wsi, status, ctype, body, blen, v.status ? &v : NULL, &h->resp, &hlen)) {
		free(owned);
		return -1;
	}
	free(owned);
	h->hlen = hlen;
	h->len = blen;
	/* A request with a body (only ever refused here) is answered once lws
	 * has read the body (LWS_CALLBACK_HTTP_BODY_COMPLETION). */
	if (method != 0 && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		h->deferred = 1;
		return 0;
	}
	return http_send_headers(wsi, h);
}

static int http_write_body(struct lws *wsi, struct http_req *h)
{
	if (!h->resp)
		return 0;
	int n = lws_write(wsi, h->resp + LWS_PRE, h->len, LWS_WRITE_HTTP_FINAL);
	free(h->resp);
	h->resp = NULL;
	if (n < 0)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
	struct http_req *h = user;
	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		return confirm_upgrade(wsi);
	case LWS_CALLBACK_HTTP:
		return http_request(wsi, h);
	case LWS_CALLBACK_HTTP_BODY:
		return 0; /* discarded: no endpoint takes a body */
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (h && h->resp && h->deferred)
			return http_send_headers(wsi, h);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (h && h->resp && !h->deferred)
			return http_write_body(wsi, h);
		break;
	case LWS_CALLBACK_CLOSED_HTTP:
		if (h) {
			free(h->resp);
			h->resp = NULL;
		}
		break;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ------------------------------------------------------------------------ */
/* Clients */

/* Ask for a writable callback, once: lws keeps the request (POLLOUT) until
 * the callback comes, and a fan-out of every event to every client would
 * otherwise ask again for each client already waiting for its turn. */
static void want_write(struct client *c)
{
	if (!c->asked) {
		c->asked = 1;
		lws_callback_on_writable(c->wsi);
	}
}

static void ctl_push(struct client *c, char *json) /* takes json (may be NULL: OOM) */
{
	if (!json)
		return;
	size_t n = strlen(json);
	struct ctl *m = malloc(sizeof *m + n + 1);
	if (m) {
		m->next = NULL;
		m->len = n;
		memcpy(m->msg, json, n + 1);
		if (c->ctl_tail)
			c->ctl_tail->next = m;
		else
			c->ctl = m;
		c->ctl_tail = m;
	}
	free(json);
}

static void qev_unref(struct qev *q)
{
	if (--q->refs == 0) {
		sev_unref(q->e);
		free(q);
	}
}

/* The i-th queued event (0: the oldest). */
static inline struct qev **qslot(struct client *c, size_t i)
{
	return &c->q[(c->qhead + i) & (c->qcap - 1)];
}

static void queue_clear(struct client *c)
{
	for (size_t i = 0; i < c->qn; i++)
		qev_unref(*qslot(c, i));
	c->qhead = c->qn = c->qbytes = 0;
}

/* Keep only queued events for which keep() says yes (order preserved). */
static void queue_retain(struct client *c, int (*keep)(struct client *, struct sev *))
{
	size_t w = 0;
	for (size_t i = 0; i < c->qn; i++) {
		struct qev *q = *qslot(c, i);
		if (keep(c, q->e)) {
			*qslot(c, w) = q;
			w++;
		} else {
			c->qbytes -= q->e->len;
			qev_unref(q);
		}
	}
	c->qn = w;
}

/* Release the replay answer a client holds; events before rp_pos were
 * already released as they were sent. */
static void client_replay_free(struct client *c)
{
	struct replay *r = c->rp;
	if (!r)
		return;
	for (size_t i = c->rp_pos; i < r->n; i++)
		sev_unref(r->ev[i]);
	r->n = 0;
	replay_free(r);
	c->rp = NULL;
	c->rp_pos = 0;
}

/* Close with this code and reason: the close frame is the next (and last)
 * frame the client gets, written by client_write; a socket that never drains,
 * or a client that never answers the close, is cut off by the timeout.
 * Written by us, not by lws after lws_close_reason() and a -1 return: lws
 * keeps that reason in the buffer its keep-alive pings use, so a ping due
 * at the same time garbled it (seen: close code 22494). */
static void client_hangup(struct client *c, int code, const char *why, int timeout_s)
{
	size_t n = strlen(why) > sizeof c->close_frame - 2 ? sizeof c->close_frame - 2 : strlen(why);
	c->dropping = 1;
	c->close_frame[0] = (unsigned char)(code >> 8);
	c->close_frame[1] = (unsigned char)code;
	memcpy(c->close_frame + 2, why, n);
	c->close_len = 2 + n;
	want_write(c);
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, timeout_s);
}

static void drop_client(struct client *c, const char *reason, const char *detail)
{
	char serial[24], queued[24];
	if (c->dropping)
		return;
	c->dropping = 1;
	snprintf(serial, sizeof serial, "%llu", (unsigned long long)c->serial);
	snprintf(queued, sizeof queued, "%zu", c->qn);
	log_kv(LOG_WARN, "dropping a client that fell too far behind", "client", serial, "reason",
	       reason, "queued", queued, NULL);
	met_inc(met_series(W.s->m.dropped, reason), 1);
	queue_clear(c);
	client_replay_free(c);
	client_hangup(c, CLOSE_TOO_SLOW, detail, 5); /* lws allowed 5 s to send a close, too */
}

static void enqueue(struct client *c, struct qev *q)
{
	const struct streamer_conf *cf = &W.s->cf;
	const struct sev *e = q->e;
	struct shard *sh = c->sh;
	if (c->skip && rs_id_cmp(e->id, c->covered) <= 0)
		return; /* sent (or filtered) by the replay */
	if ((long long)c->qn >= cf->client_queue_max) {
		drop_client(c, "queue_full", "too slow: send queue full (events)");
		return;
	}
	if ((long long)(c->qbytes + e->len) > cf->client_queue_bytes) {
		drop_client(c, "queue_bytes", "too slow: send queue full (bytes)");
		return;
	}
	if (c->qn == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 64;
		struct qev **nq = malloc(ncap * sizeof *nq);
		if (!nq) {
			drop_client(c, "out_of_memory", "server out of memory");
			return;
		}
		for (size_t i = 0; i < c->qn; i++)
			nq[i] = *qslot(c, i);
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	c->qn++;
	*qslot(c, c->qn - 1) = q;
	c->qbytes += e->len;
	q->refs++;
	if (!c->wake && !c->asked && sh->nwoken < sh->woken_cap) {
		c->wake = 1;
		sh->woken[sh->nwoken++] = c;
	}
}

static char *hello_json(const struct client *c, enum replay_mode mode)
{
	cJSON *o = cJSON_CreateObject();
	char *out;
	cJSON_AddStringToObject(o, "type", "hello");
	cJSON_AddStringToObject(o, "server", "agent-obs-streamer");
	cJSON_AddNumberToObject(o, "protocol", 1);
	cJSON_AddStringToObject(o, "filter", c->flt.text ? c->flt.text : "");
	cJSON_AddStringToObject(o, "replay", mode == REPLAY_SINCE ? "since"
	                                     : mode == REPLAY_BACKLOG ? "backlog" : "none");
	cJSON_AddNumberToObject(o, "server_ms", (double)ev_now_ms());
	out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

static void client_close(struct client *c);

static int client_open(struct lws *wsi, struct client *c)
{
	struct stream_req req;
	const char *field;
	char err[320];

	struct shard *sh = shard_of(wsi);
	memset(c, 0, sizeof *c);
	c->sh = sh;
	c->wsi = wsi;
	/* With the default 16 KiB a 64 KiB batch left in pieces, one poll()
	 * round over every client for each (at 1,000 clients, the fan-out fell
	 * seconds behind while its thread idled). Failure only costs speed. */
	int sndbuf = (int)W.s->cf.client_sndbuf;
	if (sndbuf > 0)
		(void)setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	if (stream_req_parse(wsi, &W.s->cf, &req, &field, err, sizeof err)) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)err,
		                 strlen(err) > 120 ? 120 : strlen(err));
		return -1;
	}
	c->flt = req.flt; /* moved */
	if (sh->nclients + 1 > sh->woken_cap) { /* room to list every client as woken */
		size_t cap = sh->woken_cap ? sh->woken_cap * 2 : 256;
		struct client **v = realloc(sh->woken, cap * sizeof *v);
		if (!v) {
			flt_free(&c->flt);
			return -1;
		}
		sh->woken = v;
		sh->woken_cap = cap;
	}
	if (route_add(sh->route, c, &c->flt)) {
		flt_free(&c->flt);
		return -1;
	}
	c->serial = atomic_fetch_add(&W.next_serial, 1) + 1;
	c->next = sh->head;
	if (sh->head)
		sh->head->prev = c;
	sh->head = c;
	c->active = 1;
	sh->nclients++;
	atomic_store(&sh->load, sh->nclients);
	atomic_fetch_add(&W.nclients, 1);
	met_inc(W.s->m.clients, 1);
	met_inc(W.s->m.connections, 1);
	ctl_push(c, hello_json(c, req.mode));
	if (req.mode == REPLAY_NONE) {
		c->state = C_LIVE;
	} else {
		struct replay *r = calloc(1, sizeof *r);
		if (!r || !(r->filter = strdup(c->flt.text ? c->flt.text : ""))) {
			free(r);
			client_close(c);
			return -1;
		}
		r->client = c->serial;
		r->shard = sh->idx;
		r->mode = req.mode;
		r->since = req.since;
		r->backlog = req.backlog;
		c->state = C_REPLAY_WAIT;
		source_request_replay(W.s, r);
	}
	want_write(c);
	return 0;
}

static void client_close(struct client *c)
{
	if (!c || !c->active)
		return;
	struct shard *sh = c->sh;
	c->active = 0;
	if (c->prev)
		c->prev->next = c->next;
	else
		sh->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	sh->nclients--;
	atomic_store(&sh->load, sh->nclients);
	atomic_fetch_sub(&W.nclients, 1);
	met_inc(W.s->m.clients, -1);
	route_remove(sh->route, c, &c->flt);
	if (c->wake) /* closed during a wake-up: leave the woken list */
		for (size_t i = 0; i < sh->nwoken; i++)
			if (sh->woken[i] == c)
				sh->woken[i] = sh->woken[--sh->nwoken];
	queue_clear(c);
	free(c->q);
	c->q = NULL;
	client_replay_free(c);
	while (c->ctl) {
		struct ctl *m = c->ctl;
		c->ctl = m->next;
		free(m);
	}
	c->ctl_tail = NULL;
	free(c->rx);
	c->rx = NULL;
	flt_free(&c->flt);
}

static int drop_covered(struct client *c, struct sev *e)
{
	return rs_id_cmp(e->id, c->covered) > 0;
}

static int keep_matching(struct client *c, struct sev *e)
{
	return flt_match(&c->flt, &e->f);
}

/* The worker answered this client's replay. */
static void replay_ready(struct client *c, struct replay *r)
{
	if (c->dropping || c->state != C_REPLAY_WAIT) {
		replay_free(r);
		return;
	}
	/* The filter may have changed since the request: apply the current one. */
	size_t w = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (flt_match(&c->flt, &r->ev[i]->f))
			r->ev[w++] = r->ev[i];
		else
			sev_unref(r->ev[i]);
	}
	r->n = w;
	c->covered = r->covered;
	c->skip = 1;
	queue_retain(c, drop_covered);
	c->rp = r;
	c->rp_pos = 0;
	c->state = C_REPLAY_SEND;
	want_write(c);
}

static char *replay_done_json(const struct replay *r)
{
	char covered[48];
	cJSON *o = cJSON_CreateObject();
	char *out;
	rs_id_format(r->covered, covered);
	cJSON_AddStringToObject(o, "type", "replay_done");
	cJSON_AddNumberToObject(o, "count", (double)r->n);
	cJSON_AddStringToObject(o, "covered", covered);
	cJSON_AddBoolToObject(o, "complete", r->complete);
	if (!r->complete)
		cJSON_AddStringToObject(o, "note", r->note);
	out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* ------------------------------------------------------------------------ */
/* Frames */

static int fbuf_reserve(struct shard *sh, size_t n)
{
	if (LWS_PRE + n <= sh->fcap)
		return 0;
	size_t cap = sh->fcap ? sh->fcap : 65536;
	while (cap < LWS_PRE + n)
		cap *= 2;
	unsigned char *nb = realloc(sh->fbuf, cap);
	if (!nb)
		return -1;
	sh->fbuf = nb;
	sh->fcap = cap;
	return 0;
}

/* Copy events get(0..) into the shard's frame buffer: a lone event as
 * itself, more as a JSON array, within the frame limits (at least one
 * event). Returns the number of events taken, 0 on OOM; *len receives the
 * frame length. */
static size_t frame_build(struct sev *(*get)(struct client *, size_t), struct client *c,
                          size_t avail, size_t *len)
{
	const struct streamer_conf *cf = &W.s->cf;
	struct shard *sh = c->sh;
	size_t k = 0, bytes = 0;
	while (k < avail && (long long)k < cf->frame_max_events) {
		size_t add = get(c, k)->len + 1;
		if (k > 0 && (long long)(bytes + add) > cf->frame_max_bytes)
			break;
		bytes += add;
		k++;
	}
	if (fbuf_reserve(sh, bytes + 2))
		return 0;
	unsigned char *p = sh->fbuf + LWS_PRE;
	if (k == 1) {
		struct sev *e = get(c, 0);
		memcpy(p, e->msg, e->len);
		*len = e->len;
		return 1;
	}
	*p++ = '[';
	for (size_t i = 0; i < k; i++) {
		struct sev *e = get(c, i);
		if (i)
			*p++ = ',';
		memcpy(p, e->msg, e->len);
		p += e->len;
	}
	*p++ = ']';
	*len = (size_t)(p - (sh->fbuf + LWS_PRE));
	return k;
}

static struct sev *get_queued(struct client *c, size_t i)
{
	return (*qslot(c, i))->e;
}

static struct sev *get_replayed(struct client *c, size_t i)
{
	return c->rp->ev[c->rp_pos + i];
}

static int write_text(struct client *c, const void *src, size_t len)
{
	struct shard *sh = c->sh;
	if (src && fbuf_reserve(sh, len))
		return -1;
	if (src)
		memcpy(sh->fbuf + LWS_PRE, src, len);
	int n = lws_write(c->wsi, sh->fbuf + LWS_PRE, len, LWS_WRITE_TEXT);
	if (n < 0)
		return -1;
	sh->frames++;
	return 0;
}

/* One writable callback: exactly one lws_write, then ask for the next
 * callback while anything is left. */
static int client_write(struct client *c)
{
	struct shard *sh = c->sh;
	size_t len = 0, k;

	if (c->dropping) { /* the close frame, once; then wait for the answer or the timeout */
		if (c->close_sent)
			return 0;
		c->close_sent = 1;
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 5); /* for the client's answer */
		if (fbuf_reserve(sh, c->close_len))
			return -1;
		memcpy(sh->fbuf + LWS_PRE, c->close_frame, c->close_len);
		return lws_write(c->wsi, sh->fbuf + LWS_PRE, c->close_len, WRITE_CLOSE) < 0 ? -1 : 0;
	}
	if (c->ctl) {
		struct ctl *m = c->ctl;
		c->ctl = m->next;
		if (!c->ctl)
			c->ctl_tail = NULL;
		int rc = write_text(c, m->msg, m->len);
		free(m);
		if (rc)
			return -1;
	} else if (c->state == C_REPLAY_SEND) {
		if (c->rp_pos < c->rp->n) {
			k = frame_build(get_replayed, c, c->rp->n - c->rp_pos, &len);
			if (!k || write_text(c, NULL, len))
				return -1;
			for (size_t i = 0; i < k; i++)
				sev_unref(c->rp->ev[c->rp_pos + i]);
			c->rp_pos += k;
			sh->events_sent += (double)k;
		}
		if (c->rp_pos >= c->rp->n) {
			ctl_push(c, replay_done_json(c->rp));
			client_replay_free(c);
			c->state = C_LIVE;
		}
	} else if (c->state == C_LIVE && c->qn) {
		k = frame_build(get_queued, c, c->qn, &len);
		if (!k || write_text(c, NULL, len))
			return -1;
		int64_t now = ev_now_ms();
		for (size_t i = 0; i < k; i++) {
			struct qev *q = *qslot(c, i);
			met_local_observe(&sh->lag, (double)(now - (int64_t)q->e->id.ms) / 1000.0);
			c->qbytes -= q->e->len;
			qev_unref(q);
		}
		c->qhead = (c->qhead + k) & (c->qcap - 1);
		c->qn -= k;
		sh->events_sent += (double)k;
		if (c->qn == 0 && c->qcap > 256) { /* caught up: give back a burst's memory */
			free(c->q);
			c->q = NULL;
			c->qcap = c->qhead = 0;
		}
	} else {
		return 0;
	}
	if (c->ctl || c->state == C_REPLAY_SEND || (c->state == C_LIVE && c->qn))
		want_write(c);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Messages from clients: {"type":"filter","filter":"..."} and {"type":"ping"} */

static void client_message(struct client *c, const char *msg, size_t len)
{
	cJSON *o = cJSON_ParseWithLength(msg, len);
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	char err[320];

	if (!cJSON_IsObject(o) || !cJSON_IsString(type)) {
		ctl_push(c, error_msg("type", "expected a JSON object with a string \"type\" "
		                                     "(\"filter\" or \"ping\")"));
	} else if (strcmp(type->valuestring, "filter") == 0) {
		const cJSON *ft = cJSON_GetObjectItemCaseSensitive(o, "filter");
		struct filter nf;
		if (!cJSON_IsString(ft)) {
			ctl_push(c, error_msg("filter", "\"filter\" must be a string (\"\" for everything)"));
		} else if (flt_parse(ft->valuestring, strlen(ft->valuestring), &nf, err, sizeof err)) {
			met_inc(W.s->m.bad_requests, 1);
			ctl_push(c, error_msg("filter", err)); /* the old filter stays */
		} else {
			route_remove(c->sh->route, c, &c->flt);
			flt_free(&c->flt);
			c->flt = nf;
			if (route_add(c->sh->route, c, &c->flt)) {
				/* unrouted, it would silently miss events: hang up instead */
				cJSON_Delete(o);
				drop_client(c, "out_of_memory", "server out of memory");
				return;
			}
			/* from the acknowledgement on, only matching events arrive */
			queue_retain(c, keep_matching);
			if (c->rp) {
				size_t w = c->rp_pos;
				for (size_t i = c->rp_pos; i < c->rp->n; i++) {
					if (flt_match(&c->flt, &c->rp->ev[i]->f))
						c->rp->ev[w++] = c->rp->ev[i];
					else
						sev_unref(c->rp->ev[i]);
				}
				c->rp->n = w;
			}
			cJSON *a = cJSON_CreateObject();
			cJSON_AddStringToObject(a, "type", "filter");
			cJSON_AddStringToObject(a, "filter", c->flt.text);
			ctl_push(c, cJSON_PrintUnformatted(a));
			cJSON_Delete(a);
		}
	} else if (strcmp(type->valuestring, "ping") == 0) {
		cJSON *a = cJSON_CreateObject();
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "t");
		cJSON_AddStringToObject(a, "type", "pong");
		if (cJSON_IsNumber(t))
			cJSON_AddNumberToObject(a, "t", t->valuedouble);
		cJSON_AddNumberToObject(a, "server_ms", (double)ev_now_ms());
		cJSON_AddNumberToObject(a, "queued", (double)c->qn);
		ctl_push(c, cJSON_PrintUnformatted(a));
		cJSON_Delete(a);
	} else {
		ctl_push(c, error_msg("type", "unknown message type (expected \"filter\" or \"ping\")"));
	}
	cJSON_Delete(o);
	if (c->ctl)
		want_write(c);
}

static int client_receive(struct client *c, struct lws *wsi, const void *in, size_t len)
{
	if (c->dropping)
		return 0;
	if (lws_frame_is_binary(wsi)) {
		client_hangup(c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "text only", 2);
		return 0;
	}
	if (c->rxlen + len > RX_MAX) {
		client_hangup(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message over 8 KiB", 2);
		return 0;
	}
	if (!c->rx && !(c->rx = malloc(RX_MAX)))
		return -1;
	memcpy(c->rx + c->rxlen, in, len);
	c->rxlen += len;
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return 0;
	client_message(c, c->rx, c->rxlen);
	c->rxlen = 0;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Wake-up: new events from the reader, replay answers from the worker */

/* Offer one event to the clients of this shard that want it: queued, or
 * (q NULL: no memory for the shard's hold) hung up, since they would
 * otherwise miss it without knowing. */
static void fan_out(struct shard *sh, struct sev *e, struct qev *q)
{
	const struct route_list *ls[3];
	size_t nl = route_lookup(sh->route, &e->f, ls);
	for (size_t l = 0; l < nl; l++) {
		for (size_t j = 0; j < ls[l]->n; j++) {
			struct client *c = ls[l]->v[j];
			if (c->dropping || !flt_match(&c->flt, &e->f))
				continue;
			if (q)
				enqueue(c, q);
			else
				drop_client(c, "out_of_memory", "server out of memory");
		}
	}
}

/* Take what the mailbox holds. Runs on every wake-up, and from a writable
 * callback when the reader has handed over more since (mid-round). */
static void service_wake(struct shard *sh)
{
	struct mailbox *b = sh->box;
	struct sev **v;
	size_t n;
	struct replay *done;

	pthread_mutex_lock(&b->mu);
	v = b->inbox;
	n = b->inbox_n;
	size_t vcap = b->inbox_cap;
	b->inbox = sh->spare;
	b->inbox_cap = sh->spare_cap;
	b->inbox_n = 0;
	done = b->done_head;
	b->done_head = b->done_tail = NULL;
	int *fds = b->fds;
	size_t nfds = b->nfds, fcap = b->fds_cap;
	b->fds = sh->fds_spare;
	b->fds_cap = sh->fds_spare_cap;
	b->nfds = 0;
	atomic_store(&b->ready, 0);
	pthread_cond_broadcast(&b->drained);
	pthread_mutex_unlock(&b->mu);
	sh->spare = v; /* emptied below, reused at the next wake-up */
	sh->spare_cap = vcap;
	sh->fds_spare = fds;
	sh->fds_spare_cap = fcap;

	for (size_t i = 0; i < nfds; i++)
		if (!lws_adopt_socket_vhost(sh->vh, fds[i])) /* it closed the socket */
			log_warn("libwebsockets could not adopt a connection");

	while (done) {
		struct replay *r = done;
		struct client *c;
		done = r->next;
		r->next = NULL;
		for (c = sh->head; c && c->serial != r->client; c = c->next)
			;
		if (c)
			replay_ready(c, r);
		else
			replay_free(r);
	}

	int64_t now = ev_mono_ms();
	for (size_t i = 0; i < n; i++) {
		struct qev *q = malloc(sizeof *q);
		if (!q) {
			fan_out(sh, v[i], NULL);
			sev_unref(v[i]);
			continue;
		}
		q->e = v[i]; /* the mailbox's reference, now the hold's */
		q->refs = 1; /* this loop's, dropped below */
		q->t_in = now;
		fan_out(sh, q->e, q);
		qev_unref(q);
	}
	for (size_t i = 0; i < sh->nwoken; i++) {
		struct client *c = sh->woken[i];
		c->wake = 0;
		if (!c->dropping && c->state == C_LIVE)
			want_write(c);
	}
	sh->nwoken = 0;
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
	struct client *c = user;
	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		return client_open(wsi, c);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!c || !c->active)
			return 0;
		c->asked = 0;
		/* Events read while this round of writes goes on reach the clients
		 * still to come in it, instead of waiting for the next round. */
		if (atomic_load_explicit(&c->sh->box->ready, memory_order_relaxed))
			service_wake(c->sh);
		return client_write(c);
	case LWS_CALLBACK_RECEIVE:
		return c && c->active ? client_receive(c, wsi, in, len) : 0;
	case LWS_CALLBACK_CLOSED:
		client_close(c);
		break;
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (W.s)
			service_wake(shard_of(wsi));
		break;
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* new connections start bound to the vhost's default protocol,
		 * which is this one (see pvo below) */
		return confirm_upgrade(wsi);
	default:
		/* plain HTTP on this protocol (the file mount): lws's own handling */
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Periodic tick: drop clients whose oldest queued event waited too long,
 * refresh gauges, and let the loop notice a stop request. */

static void tick(lws_sorted_usec_list_t *sul)
{
	struct shard *sh = lws_container_of(sul, struct shard, tick);
	int64_t now = ev_mono_ms();
	size_t queued = 0;
	for (struct client *c = sh->head; c; c = c->next) {
		queued += c->qn;
		if (!c->dropping && c->state == C_LIVE && c->qn &&
		    now - (*qslot(c, 0))->t_in > W.s->cf.client_max_lag_ms)
			drop_client(c, "lag", "too slow: events waited too long");
	}
	/* the gauge is the sum over shards: add this shard's change */
	met_inc(W.s->m.queued, (double)queued - (double)sh->queued_shown);
	sh->queued_shown = queued;
	if (sh->idx == 0) { /* the fullest mailbox, for all */
		size_t most = 0;
		for (int k = 0; k < W.nshards; k++) {
			struct mailbox *b = W.sh[k].box;
			pthread_mutex_lock(&b->mu);
			if (b->inbox_n > most)
				most = b->inbox_n;
			pthread_mutex_unlock(&b->mu);
		}
		met_set(W.s->m.inbox, (double)most);
	}
	lws_sul_schedule(sh->ctx, 0, &sh->tick, tick, TICK_US);
}

/* ------------------------------------------------------------------------ */
/* Accepting: shard 0 takes every new connection from the one listening
 * socket and deals it to the shard with the fewest clients (round-robin
 * among equals, so that a burst of connections spreads evenly before any
 * of them is counted). Not SO_REUSEPORT with a listener per shard: lws
 * 4.1.6 sets that option only for its own multi-thread service, and the
 * kernel's hash spreads connections only roughly; one exclusive listener
 * also keeps a second streamer from binding the port beside this one. */

static void deal(int fd)
{
	int best = -1;
	for (int i = 0; i < W.nshards; i++) {
		int k = (int)((W.next_shard + (unsigned)i) % (unsigned)W.nshards);
		if (best < 0 || atomic_load(&W.sh[k].load) < atomic_load(&W.sh[best].load))
			best = k;
	}
	W.next_shard = (unsigned)best + 1;
	struct shard *sh = &W.sh[best];
	if (best == 0) { /* this thread's own */
		if (!lws_adopt_socket_vhost(sh->vh, fd))
			log_warn("libwebsockets could not adopt a connection");
		return;
	}
	struct mailbox *b = sh->box;
	pthread_mutex_lock(&b->mu);
	if (b->nfds == b->fds_cap) {
		size_t cap = b->fds_cap ? b->fds_cap * 2 : 64;
		int *nf = realloc(b->fds, cap * sizeof *nf);
		if (!nf) {
			pthread_mutex_unlock(&b->mu);
			close(fd);
			log_error("accept: out of memory; connection closed");
			return;
		}
		b->fds = nf;
		b->fds_cap = cap;
	}
	b->fds[b->nfds++] = fd;
	atomic_store(&b->ready, 1);
	pthread_mutex_unlock(&b->mu);
	lws_cancel_service(sh->ctx);
}

/* The listening socket, watched by shard 0's lws loop as a raw descriptor. */
static int cb_accept(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
	(void)wsi, (void)user, (void)in, (void)len;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		for (int i = 0; i < 64; i++) { /* then let the loop serve the others */
			int one = 1, fd = accept4(W.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				    errno != ECONNABORTED)
					log_kv(LOG_ERROR, "accept failed", "error", strerror(errno), NULL);
				break;
			}
			/* as lws's own listener does: no Nagle delay on small frames */
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			deal(fd);
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		W.listen_fd = -1; /* lws closed it (context destroyed) */
		return 0;
	case LWS_CALLBACK_ESTABLISHED: /* a WebSocket that asked for this name: no */
		return -1;
	default:
		return 0;
	}
}

/* Bind and listen on iface:port. 0 / -1 with err. */
static int listen_open(const char *iface, long long port, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
	char ps[8];
	int one = 1, rc;
	snprintf(ps, sizeof ps, "%lld", port);
	rc = getaddrinfo(iface, ps, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot listen on %s:%lld: %s", iface, port, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, SOMAXCONN)) {
		snprintf(err, errlen, "cannot listen on %s:%lld: %s", iface, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	W.listen_fd = fd;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

/* Not const: ws_start sets the stream protocol's tx_packet_size. */
static struct lws_protocols protocols[] = {
	{"http", cb_http, sizeof(struct http_req), 0, 0, NULL, 0},
	{PROTO_WS, cb_ws, sizeof(struct client), 4096, 0, NULL, 0},
	{"agent-obs-accept", cb_accept, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Make the stream protocol the default for upgrades that name none. */
static const struct lws_protocol_vhost_options pvo_default = {NULL, NULL, "default", "1"};
static const struct lws_protocol_vhost_options pvo = {NULL, &pvo_default, PROTO_WS, ""};

static void lws_log(int level, const char *line)
{
	char msg[512];
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	snprintf(msg, sizeof msg, "%.*s", (int)n, line);
	log_kv(level & LLL_ERR ? LOG_ERROR : LOG_WARN, "libwebsockets", "detail", msg, NULL);
}

int ws_start(struct streamer *s, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	static const char *const cb_paths[] = {"/healthz", "/readyz", "/metrics", "/stream", "/config.json"};
	static const char *const hdr[][2] = {
		{"content-security-policy:", NULL}, /* W.web.csp */
		{"x-content-type-options:", "nosniff"},
		{"x-frame-options:", "deny"},
		{"referrer-policy:", "no-referrer"},
		{"cross-origin-opener-policy:", "same-origin"},
	};
	struct stat st;
	char warn[512];
	int tls = 0;

	W.s = s;
	W.nshards = s->nshards;
	W.listen_fd = -1;
	if (!(W.sh = calloc((size_t)W.nshards, sizeof *W.sh))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int k = 0; k < W.nshards; k++) {
		struct shard *sh = &W.sh[k];
		sh->idx = k;
		sh->box = &s->box[k];
		sh->route = route_new();
		if (!sh->route || met_local_init(&sh->lag, s->m.lag)) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
	/* check the files first: lws would only say the vhost failed */
	if (tls_load("streamer.tls_cert", s->cf.tls_cert, "streamer.tls_key", s->cf.tls_key, &tls, NULL, NULL, warn,
	             sizeof warn, err, errlen))
		return -1;
	if (warn[0])
		log_kv(LOG_WARN, "TLS certificate", "warning", warn, NULL);
	s->tls = tls;

	if (!realpath(s->cf.web_root, W.web_root)) {
		log_kv(LOG_WARN, "dashboard files not found (run make); / will answer 404", "web_root",
		       s->cf.web_root, NULL);
		snprintf(W.web_root, sizeof W.web_root, "%s", s->cf.web_root);
	} else {
		char index[PATH_MAX + 16];
		snprintf(index, sizeof index, "%s/index.html", W.web_root);
		if (stat(index, &st) != 0)
			log_kv(LOG_WARN, "dashboard index.html missing (run make); / will answer 404", "web_root",
			       W.web_root, NULL);
	}

	if (webconf_build(s->cf.api_url, &W.web, err, errlen))
		return -1;
	/* lws' own best-practice headers, with the history API in connect-src */
	memset(W.hdr, 0, sizeof W.hdr);
	for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++) {
		W.hdr[i].next = i + 1 < sizeof hdr / sizeof hdr[0] ? &W.hdr[i + 1] : NULL;
		W.hdr[i].name = hdr[i][0];
		W.hdr[i].value = hdr[i][1] ? hdr[i][1] : W.web.csp;
	}

	memset(W.mounts, 0, sizeof W.mounts);
	W.mounts[0].mountpoint = "/";
	W.mounts[0].origin = W.web_root;
	W.mounts[0].def = "index.html";
	W.mounts[0].origin_protocol = LWSMPRO_FILE;
	W.mounts[0].mountpoint_len = 1;
	for (int i = 0; i < 5; i++) {
		struct lws_http_mount *m = &W.mounts[i + 1];
		m->mount_next = &W.mounts[i];
		m->mountpoint = cb_paths[i];
		m->protocol = "http";
		m->origin_protocol = LWSMPRO_CALLBACK;
		m->mountpoint_len = (unsigned char)strlen(cb_paths[i]);
	}

	memset(&W.retry, 0, sizeof W.retry);
	W.retry.secs_since_valid_ping = (uint16_t)s->cf.ping_interval_s;
	W.retry.secs_since_valid_hangup = (uint16_t)s->cf.ping_timeout_s;

	/* A frame leaves in one send(): lws otherwise sends at most
	 * rx_buffer_size (4 KiB) per call and the rest one chunk per loop turn,
	 * each a poll() over every client -- at 1,000 clients a 64 KiB batch
	 * took 16 turns, and the fan-out fell seconds behind with its thread
	 * two-thirds idle. (+ 14: the largest WebSocket frame header.) */
	protocols[1].tx_packet_size = (size_t)s->cf.frame_max_bytes + 14;

	const char *iface = strcmp(s->cf.bind, "localhost") == 0 ? "127.0.0.1" : s->cf.bind;
	if (listen_open(iface, s->cf.port, err, errlen))
		return -1;

	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* connections come from deal() */
	info.protocols = protocols;
	info.pvo = &pvo;
	info.mounts = &W.mounts[5];
	info.headers = &W.hdr[0];
	info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
	info.retry_and_idle_policy = &W.retry;
	info.max_http_header_data = 16384;
	/* no fd_limit_per_thread: lws sizes its fd table from RLIMIT_NOFILE (set
	 * in main.c); a smaller table makes it look up sockets linearly */
	info.count_threads = 1;
	info.server_string = "agent-obs-streamer";
	if (tls) { /* https:// and wss:// only; plain HTTP on this port is refused */
		/* on every context: without it lws serves that vhost in the clear */
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = s->cf.tls_cert;
		info.ssl_private_key_filepath = s->cf.tls_key;
		info.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1; /* TLS 1.2 and 1.3 only */
	}
	/* lws's poll() loop: each turn polls every socket of its shard. lws on a
	 * libuv (epoll) loop cut that CPU, but delayed events by up to ~1.5 s at
	 * 1,000 clients (cause not found), so it is not used. */
	for (int k = 0; k < W.nshards; k++) {
		struct shard *sh = &W.sh[k];
		info.user = sh;
		sh->ctx = lws_create_context(&info);
		sh->vh = sh->ctx ? lws_get_vhost_by_name(sh->ctx, "default") : NULL;
		if (!sh->vh) {
			snprintf(err, errlen, "cannot start libwebsockets%s",
			         tls ? " (TLS set-up failed?)" : "");
			return -1;
		}
		sh->box->lws = sh->ctx;
		lws_sul_schedule(sh->ctx, 0, &sh->tick, tick, TICK_US);
	}
	lws_sock_file_fd_type lfd = {.filefd = W.listen_fd};
	if (!lws_adopt_descriptor_vhost(W.sh[0].vh, LWS_ADOPT_RAW_FILE_DESC, lfd, "agent-obs-accept", NULL)) {
		snprintf(err, errlen, "libwebsockets could not watch the listening socket");
		return -1;
	}
	return 0;
}

/* Add what the shard counted to the shared metrics. */
static void shard_flush(struct shard *sh)
{
	met_local_flush(&sh->lag);
	if (sh->frames > 0)
		met_inc(W.s->m.frames, sh->frames);
	if (sh->events_sent > 0)
		met_inc(W.s->m.events_sent, sh->events_sent);
	sh->frames = sh->events_sent = 0;
}

/* Serve until a stop is requested, then say goodbye (1001) to every client
 * and give the frames up to 1.5 s to leave. */
static void shard_serve(struct shard *sh)
{
	/* signals reach the main thread only (shard 0's, see ws_run), which
	 * passes a stop on to the others through W.closing */
	while (!atomic_load(&W.closing) && !(sh->idx == 0 && sig_stop)) {
		if (lws_service(sh->ctx, 0) < 0) {
			log_error("libwebsockets service loop failed; stopping");
			break;
		}
		shard_flush(sh);
	}
	/* the first to notice wakes the others and refuses new clients */
	if (!atomic_exchange(&W.closing, 1)) {
		log_info("shutting down: closing clients");
		for (int k = 0; k < W.nshards; k++)
			lws_cancel_service(W.sh[k].ctx);
	}
	for (struct client *c = sh->head; c; c = c->next) {
		if (!c->dropping)
			client_hangup(c, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down", 1);
	}
	int64_t deadline = ev_mono_ms() + 1500;
	while (sh->head && ev_mono_ms() < deadline)
		if (lws_service(sh->ctx, 0) < 0)
			break;
	shard_flush(sh);
}

static void *shard_main(void *arg)
{
	shard_serve(arg);
	return NULL;
}

void ws_run(struct streamer *s)
{
	sigset_t all, old;
	(void)s;
	/* signals go to the main thread (the shard threads inherit this mask) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int k = 1; k < W.nshards; k++) {
		int rc = pthread_create(&W.sh[k].th, NULL, shard_main, &W.sh[k]);
		if (rc) {
			log_kv(LOG_ERROR, "cannot start a service thread; stopping", "error", strerror(rc),
			       NULL);
			sig_request_stop();
			break;
		}
		W.sh[k].th_started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	shard_serve(&W.sh[0]);
	for (int k = 1; k < W.nshards; k++)
		if (W.sh[k].th_started)
			pthread_join(W.sh[k].th, NULL);
}

void ws_stop(struct streamer *s)
{
	for (int k = 0; W.sh && k < W.nshards; k++) {
		struct shard *sh = &W.sh[k];
		if (sh->ctx) {
			lws_sul_cancel(&sh->tick);
			lws_context_destroy(sh->ctx); /* closes what is left: client_close */
			sh->ctx = NULL;
			sh->box->lws = NULL;
		}
	}
	for (int k = 0; W.sh && k < W.nshards; k++) {
		struct shard *sh = &W.sh[k];
		shard_flush(sh);
		met_local_free(&sh->lag);
		free(sh->fbuf);
		free(sh->spare);
		free(sh->fds_spare);
		route_free(sh->route);
		free(sh->woken);
	}
	free(W.sh);
	W.sh = NULL;
	if (W.listen_fd >= 0) /* never handed to lws, or lws left it open */
		close(W.listen_fd);
	W.listen_fd = -1;
	webconf_free(&W.web);
	(void)s;
}
